"""Training speed of stages 1, 5 and 6 of the `cpu` preset: steps/s and megapixels/s.

    python -m bench.bench_train [--steps 10] [--warmup 2] [--threads 2] [--data FOLDER] \
        [--stages 1_image 5_pframe 6_multiframe] [--memory-formats contiguous channels_last] \
        [--out bench/results/train.json]

Each stage runs through the real trainer (`dvc_edic.train.train`) with its own
config from configs/train/: the same crop, batch, task, optimizer and EMA, and
the trainer's own per-step timing (train.csv's steps_per_s with log.every=1,
which covers fetching the batch and the whole optimizer step). Only the data
is swapped for the stage's `clips` entry pointed at --data (a folder of
videos), or by default at a smooth random clip written to a temporary folder,
so no dataset is needed. Weights start untrained: the time of a step does not
depend on their values. Validation, checkpoints and logs other than train.csv
are switched off or come after the timed steps.

Megapixels/s counts the source pixels of every frame of every batch item
(batch x frames x crop area): stage 5 feeds 2 frames per item, stage 6 five.

Each stage runs once per memory format of the model's weights (the training config's
``memory_format``): ``contiguous`` is how the trainer ran before it had the setting,
``channels_last`` its default since, so one run shows the throughput before and after
on the same machine, and the speed-up of each stage is printed.

The first --warmup steps (first-call allocations, the data worker starting)
are run but not timed. The load average is stored with the figures, since
other work on the machine slows every one of them; nothing is written unless
--out is given.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.machine import machine_info
from dvc_edic.io import Frame, VideoInfo, open_writer
from dvc_edic.train import load_train_config, train
from dvc_edic.train.config import MEMORY_FORMATS
from dvc_edic.train.logs import TRAIN_CSV

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("1_image", "5_pframe", "6_multiframe")
DEFAULT_STEPS = 10
DEFAULT_WARMUP = 2
DEFAULT_THREADS = 2
# The random clip: larger than the stages' 256x256 crops, long enough for 5-frame clips
# at temporal stride 2, smooth (noise upsampled by SMOOTHING) like real content.
CLIP_WIDTH, CLIP_HEIGHT, CLIP_FRAMES, CLIP_FPS = 480, 320, 12, 25
SMOOTHING = 8
SEED = 0
PIXEL_PEAK = 255
MEGA = 1e6


def random_clip(folder: Path) -> Path:
    """A smooth random 8-bit 4:2:0 clip that drifts one pixel a frame, as .y4m."""
    g = torch.Generator().manual_seed(SEED)

    def plane(height: int, width: int) -> np.ndarray:
        low = torch.rand(1, 1, height // SMOOTHING, width // SMOOTHING, generator=g)
        up = torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear")
        return (up[0, 0] * PIXEL_PEAK).round().to(torch.uint8).numpy()

    y = plane(CLIP_HEIGHT, CLIP_WIDTH)
    u, v = plane(CLIP_HEIGHT // 2, CLIP_WIDTH // 2), plane(CLIP_HEIGHT // 2, CLIP_WIDTH // 2)
    path = folder / f"bench_random_{CLIP_WIDTH}x{CLIP_HEIGHT}.y4m"
    info = VideoInfo(width=CLIP_WIDTH, height=CLIP_HEIGHT, fps=Fraction(CLIP_FPS), bit_depth=8)
    with open_writer(path, info) as writer:
        for t in range(CLIP_FRAMES):
            writer.write(Frame(np.roll(y, t, axis=1), np.roll(u, t, axis=1),
                               np.roll(v, t, axis=1), 8))
    return path


def _clips_entry(cfg: dict[str, Any], stage: str) -> dict[str, Any]:
    train_data = cfg["phase_list"][0]["data"]["train"]
    entries = train_data if isinstance(train_data, list) else [train_data]
    clips = [e for e in entries if e.get("type") == "clips"]
    if not clips:
        raise SystemExit(f"configs/train/{stage}.yaml: no `clips` entry in data.train to reuse")
    return clips[0]


def bench_stage(stage: str, data: Path, work: Path, steps: int, warmup: int,
                threads: int, memory_format: str) -> dict[str, Any]:
    """Train ``warmup + steps`` steps of the stage; the timed steps' figures."""
    cfg = load_train_config(ROOT / "configs" / "train" / f"{stage}.yaml")
    entry = {k: v for k, v in _clips_entry(cfg, stage).items() if k != "holdout"}
    entry["sources"] = [str(data)]
    out = work / f"{stage}_{memory_format}"
    overrides = {
        "out_dir": str(out), "init_from": None, "steps": warmup + steps, "threads": threads,
        "memory_format": memory_format,
        "phases": None, "data": {"train": entry, "val": None, "holdout": 0},
        "validate": {**cfg["validate"], "every": 0, "items": 0},
        "checkpoint": {"every_steps": 0, "every_minutes": 0},
        "log": {"every": 1, "tensorboard": False, "progress": False},
    }
    raw = {k: v for k, v in cfg.items() if k != "phase_list"}
    train(load_train_config(None, base={**raw, **overrides}))
    with (out / TRAIN_CSV).open(newline="") as f:
        seconds = [1.0 / float(r["steps_per_s"]) for r in csv.DictReader(f)][warmup:]
    crop_h, crop_w = entry["crop"]
    pixels = cfg["batch_size"] * int(entry["frames"]) * crop_h * crop_w
    return {
        "stage": stage, "memory_format": memory_format, "batch": cfg["batch_size"],
        "frames": int(entry["frames"]),
        "crop": [crop_h, crop_w], "steps": len(seconds), "warmup": warmup,
        "steps_per_s": len(seconds) / sum(seconds),
        "median_step_s": statistics.median(seconds),
        "megapixels_per_s": pixels * len(seconds) / sum(seconds) / MEGA,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="timed steps per stage")
    ap.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    ap.add_argument("--data", type=Path, help="folder of videos (default: a random clip)")
    ap.add_argument("--memory-formats", nargs="+", default=["contiguous", "channels_last"],
                    choices=MEMORY_FORMATS, help="the model's weight layouts to time, in order")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        ap.error(f"--steps must be >= 1 and --warmup >= 0, got {args.steps}, {args.warmup}")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        work = Path(tmp)
        data = args.data if args.data is not None else random_clip(work)
        rows = [bench_stage(s, data, work, args.steps, args.warmup, args.threads, fmt)
                for s in args.stages for fmt in args.memory_formats]
    result = {
        "machine": machine_info(),
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "threads": args.threads,
        "data": str(args.data) if args.data is not None else "random smooth clip",
        "stages": rows,
    }
    print(f"{'stage':<14}{'memory format':>15}{'batch x frames x crop':>24}{'steps/s':>10}"
          f"{'median s/step':>15}{'Mpixel/s':>10}{'vs first':>10}")
    first: dict[str, float] = {}
    for r in rows:
        shape = f"{r['batch']} x {r['frames']} x {r['crop'][0]}x{r['crop'][1]}"
        speed = first.setdefault(r["stage"], r["megapixels_per_s"])
        r["speedup_vs_first_format"] = r["megapixels_per_s"] / speed
        print(f"{r['stage']:<14}{r['memory_format']:>15}{shape:>24}{r['steps_per_s']:>10.3f}"
              f"{r['median_step_s']:>15.3f}{r['megapixels_per_s']:>10.3f}"
              f"{r['speedup_vs_first_format']:>9.2f}x")
    print(f"load average before/after: {result['load_average_before_after']}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
