"""EDIC image decode time against CompressAI's autoregressive mbt2018, same machine.

    python -m bench.bench_image [--threads 2] [--repeats 3] [--out bench/results/image.json]

Both models are untrained here: decode time does not depend on the weights'
values, only on the architecture (mbt2018 decodes its latent position by
position through its context model; EDIC decodes every element in parallel).
The input is a smooth random 768x512 picture, so no dataset is needed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import torch
from compressai.zoo import mbt2018

from bench.bench_sequence import amplify_analysis
from bench.machine import machine_info
from dvc_edic.codec import SequenceDecoder, SequenceEncoder
from dvc_edic.io import Frame, VideoInfo
from dvc_edic.weights import untrained_model

WIDTH, HEIGHT = 768, 512
MBT_QUALITY = 3
EDIC_QUALITY = 4.0
SEED = 0
# The untrained model's y rounds to all zeros, which would skip y's entropy
# decoding; scaling g_a's output (as bench_sequence does) makes y really coded.
ANALYSIS_GAIN = 8.0


def smooth_rgb(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, HEIGHT // 16, WIDTH // 16, generator=g)
    return torch.nn.functional.interpolate(low, size=(HEIGHT, WIDTH), mode="bicubic").clamp(0, 1)


def time_mbt(x: torch.Tensor, repeats: int) -> list[float]:
    net = mbt2018(quality=MBT_QUALITY, pretrained=False).eval()
    net.update(force=True)
    with torch.no_grad():
        out = net.compress(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            net.decompress(out["strings"], out["shape"])
            times.append(time.perf_counter() - t0)
    return times


def time_edic(x: torch.Tensor, repeats: int) -> tuple[list[float], int]:
    model = untrained_model()
    amplify_analysis(model, ANALYSIS_GAIN)
    ycc = (x * 255).round().to(torch.uint8)[0]
    # The codec's own front end takes YUV 4:2:0; feed it the luma-like planes of x.
    frame = Frame(
        y=ycc[0].numpy(),
        u=ycc[1, ::2, ::2].numpy().copy(),
        v=ycc[2, ::2, ::2].numpy().copy(),
        bit_depth=8,
    )
    info = VideoInfo(width=WIDTH, height=HEIGHT, fps=Fraction(1), bit_depth=8, num_frames=1)
    enc = SequenceEncoder(model, info, EDIC_QUALITY, intra_period=1)
    packet, _ = enc.encode(frame)
    times = []
    for _ in range(repeats):
        dec = SequenceDecoder(model, enc.header)
        t0 = time.perf_counter()
        dec.decode(packet)
        times.append(time.perf_counter() - t0)
    return times, len(packet.to_bytes())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = smooth_rgb(SEED)
    edic, edic_bytes = time_edic(x, args.repeats)
    mbt = time_mbt(x, args.repeats)
    res = {
        "size": f"{WIDTH}x{HEIGHT}",
        "threads": args.threads,
        "edic_weights": f"untrained (seeded), analysis gain {ANALYSIS_GAIN:g} so y is coded",
        "edic_packet_bytes": edic_bytes,
        "edic_cpu_decode_s": statistics.median(edic),
        "mbt2018_decode_s": statistics.median(mbt),
        "speedup": statistics.median(mbt) / statistics.median(edic),
        "edic_runs_s": edic,
        "mbt2018_runs_s": mbt,
        "machine": machine_info(),
    }
    print(
        f"{WIDTH}x{HEIGHT}, {args.threads} threads: "
        f"EDIC cpu decode {res['edic_cpu_decode_s']:.3f} s, "
        f"mbt2018 decode {res['mbt2018_decode_s']:.3f} s (medians of {args.repeats}) -> "
        f"EDIC is {res['speedup']:.1f}x faster"
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
