"""The Vimeo-90k septuplet layout: root/sequences/xxxxx/yyyy/im1.png .. im7.png.

The official lists (sep_trainlist.txt, sep_testlist.txt, one "xxxxx/yyyy" per
line) sit next to `sequences/`. Frames are RGB PNGs (448x256); each crop goes
through 8-bit BT.709 limited-range 4:2:0 like every RGB source here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from dvc_edic.data.base import RandomCropDataset, describe_clip_settings
from dvc_edic.data.cache import LruCache
from dvc_edic.data.images import load_rgb, rgb_array_to_model, rgb_window
from dvc_edic.data.sampling import (
    check_count,
    crop_origin,
    draw_flips,
    draw_stride,
    parse_crop,
)
from dvc_edic.errors import InputError
from dvc_edic.representation import representation_channels

SEPTUPLET_FRAMES = 7
SEQUENCES_DIR = "sequences"
TRAIN_LIST = "sep_trainlist.txt"
TEST_LIST = "sep_testlist.txt"
FRAME_NAME = "im{}.png"  # 1-based
# "test" and "holdout" name the same split, so configs can use either word.
SPLITS = ("train", "test", "holdout", "all")
# How many missing folders an error message lists.
_LISTED_MISSING = 5


def frame_path(sequence: Path, index: int) -> Path:
    """Path of 0-based frame `index` of a septuplet folder."""
    return sequence / FRAME_NAME.format(index + 1)


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the sequence list: {exc.strerror}") from None
    return [line.strip().strip("/") for line in lines if line.strip()]


def _scan(sequences: Path) -> list[str]:
    """Every xxxxx/yyyy folder that holds im1.png, sorted."""
    found = []
    for group in sorted(p for p in sequences.iterdir() if p.is_dir()):
        for clip in sorted(p for p in group.iterdir() if p.is_dir()):
            if frame_path(clip, 0).is_file():
                found.append(f"{group.name}/{clip.name}")
    return found


def list_septuplets(root: Path, split: str) -> list[str]:
    """Relative names ("00001/0001") of the split's sequences.

    train: sep_trainlist.txt, or, without it, every folder not in sep_testlist.txt;
    test/holdout: sep_testlist.txt (required); all: every folder found.
    """
    if split not in SPLITS:
        raise InputError(f"VimeoSeptupletDataset: split must be one of {SPLITS}, got {split!r}")
    sequences = root / SEQUENCES_DIR
    if not sequences.is_dir():
        raise InputError(
            f"{root}: no {SEQUENCES_DIR}/ folder; expected the Vimeo-90k septuplet layout "
            f"{SEQUENCES_DIR}/xxxxx/yyyy/im1..im{SEPTUPLET_FRAMES}.png (see data/README.md)"
        )
    train_list, test_list = root / TRAIN_LIST, root / TEST_LIST
    if split in ("test", "holdout"):
        if not test_list.is_file():
            raise InputError(f"{root}: split {split!r} needs {TEST_LIST}, which is missing")
        names = _read_list(test_list)
    elif split == "train" and train_list.is_file():
        names = _read_list(train_list)
    else:
        names = _scan(sequences)
        if split == "train" and test_list.is_file():
            held = set(_read_list(test_list))
            names = [n for n in names if n not in held]
    missing = [n for n in names if not (sequences / n).is_dir()]
    if missing:
        raise InputError(
            f"{root}: {len(missing)} listed sequences are missing under {SEQUENCES_DIR}/, "
            f"e.g. {missing[:_LISTED_MISSING]}"
        )
    if not names:
        raise InputError(f"{root}: split {split!r} holds no sequences")
    return names


class VimeoSeptupletDataset(RandomCropDataset):
    """Clips of `frames` (1..7) frames of a septuplet, cropped, strided and flipped.

    Item `index` is sequence index % N when samples_per_epoch is None, else a
    sequence drawn at random; the stride (in [1, max_temporal_stride], capped so
    the clip fits in 7 frames), first frame, crop origin and flips come from
    (seed, epoch, index). Only the frames an item needs are read.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        frames: int,
        crop: tuple[int, int] | int | None,
        representation: str = "yuv420",
        max_temporal_stride: int = 1,
        flips: bool = True,
        seed: int = 0,
        split: str = "train",
        samples_per_epoch: int | None = None,
        cache_frames: int = 0,
    ) -> None:
        where = type(self).__name__
        super().__init__(seed=seed, samples_per_epoch=samples_per_epoch, where=where)
        self.frames = check_count(frames, "frames", where)
        if self.frames > SEPTUPLET_FRAMES:
            raise InputError(
                f"{where}: septuplets hold {SEPTUPLET_FRAMES} frames, asked for {self.frames}"
            )
        self.crop = parse_crop(crop, where)
        representation_channels(representation)
        self.representation = representation
        self.max_temporal_stride = check_count(max_temporal_stride, "max_temporal_stride", where)
        self.flips = bool(flips)
        self.root = Path(os.path.expanduser(os.fspath(root)))
        self.split = split
        self.sequences = list_septuplets(self.root, split)
        self._cache: LruCache[np.ndarray] = LruCache(cache_frames)

    def natural_length(self) -> int:
        return len(self.sequences)

    @property
    def description(self) -> str:
        settings = describe_clip_settings(
            self.frames, self.crop, self.max_temporal_stride, self.flips, self.representation
        )
        return (
            f"Vimeo-90k septuplets (real): {len(self.sequences)} sequences ({self.split}) "
            f"from {self.root.name}; {settings}"
        )

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_cache"] = LruCache(self._cache.capacity)
        return state

    def _frame(self, sequence: str, index: int) -> np.ndarray:
        key = (sequence, index)
        cached = self._cache.get(key)
        if cached is None:
            cached = load_rgb(frame_path(self.root / SEQUENCES_DIR / sequence, index))
            self._cache.put(key, cached)
        return cached

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = self.rng(index)
        count = len(self.sequences)
        pick = index % count if self.samples_per_epoch is None else int(rng.integers(count))
        sequence = self.sequences[pick]
        stride = draw_stride(rng, SEPTUPLET_FRAMES, self.frames, self.max_temporal_stride)
        span = (self.frames - 1) * stride + 1
        first = int(rng.integers(SEPTUPLET_FRAMES - span + 1))
        clip = [self._frame(sequence, first + k * stride) for k in range(self.frames)]
        height, width = clip[0].shape[:2]
        for k, picture in enumerate(clip):
            if picture.shape[:2] != (height, width):
                path = frame_path(self.root / SEQUENCES_DIR / sequence, first + k * stride)
                raise InputError(
                    f"{path}: is {picture.shape[1]}x{picture.shape[0]}, the other frames of "
                    f"the sequence are {width}x{height}"
                )
        crop = self.crop or (height - height % 2, width - width % 2)
        if crop[0] > height or crop[1] > width:
            raise InputError(
                f"{self.root / SEQUENCES_DIR / sequence}: frames are {width}x{height}, smaller "
                f"than the {crop[1]}x{crop[0]} crop"
            )
        top, left = crop_origin(rng, (height, width), crop)
        horizontal, vertical = draw_flips(rng, self.flips)
        return torch.stack(
            [
                rgb_array_to_model(
                    rgb_window(picture, top, left, crop, horizontal, vertical),
                    self.representation,
                )
                for picture in clip
            ]
        )
