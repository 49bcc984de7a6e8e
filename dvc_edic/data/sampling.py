"""Random choices shared by every dataset: per-item generators, crops, flips, strides.

Every random choice an item makes comes from a generator seeded by
(seed, epoch, index), never from global state. That makes an item the same in
any process, worker count or visiting order, which is what lets a resumed run
reproduce the uninterrupted one and DDP ranks draw disjoint, repeatable data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dvc_edic.errors import InputError

# 4:2:0 chroma covers 2x2 luma samples: crops start and end on even luma positions
# so the chroma planes crop without resampling.
CROP_ALIGNMENT = 2

# Probability of each flip (horizontal, vertical) when flips are enabled.
FLIP_PROBABILITY = 0.5


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one item; independent streams for every (seed, epoch, index)."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def check_seed(seed: Any, where: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"{where}: seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_count(value: Any, name: str, where: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{where}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def parse_crop(crop: Any, where: str) -> tuple[int, int] | None:
    """(height, width) in source pixels from an int (square), a pair, or None (whole frame)."""
    if crop is None:
        return None
    if isinstance(crop, (int, np.integer)) and not isinstance(crop, bool):
        crop = (int(crop), int(crop))
    if not isinstance(crop, Sequence) or isinstance(crop, str) or len(crop) != 2:
        raise InputError(f"{where}: crop must be (height, width) or one integer, got {crop!r}")
    height, width = crop
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise InputError(f"{where}: crop {name} must be a positive integer, got {value!r}")
        if value % CROP_ALIGNMENT:
            raise InputError(
                f"{where}: crop {name} {value} is odd; 4:2:0 crops need even sizes "
                f"(the model stride may ask for more, which is the caller's choice)"
            )
    return int(height), int(width)


def crop_origin(
    rng: np.random.Generator, size: tuple[int, int], crop: tuple[int, int]
) -> tuple[int, int]:
    """Top-left (y, x) of a crop, uniformly over even positions where it fits."""
    (height, width), (crop_h, crop_w) = size, crop
    if crop_h > height or crop_w > width:
        raise InputError(f"crop {crop_w}x{crop_h} does not fit in a {width}x{height} picture")
    y_slots = (height - crop_h) // CROP_ALIGNMENT + 1
    x_slots = (width - crop_w) // CROP_ALIGNMENT + 1
    return (
        int(rng.integers(y_slots)) * CROP_ALIGNMENT,
        int(rng.integers(x_slots)) * CROP_ALIGNMENT,
    )


def draw_flips(rng: np.random.Generator, enabled: bool) -> tuple[bool, bool]:
    """(horizontal, vertical); two draws are consumed either way so that turning
    flips off does not change the crops an item gets."""
    draws = rng.random(2)
    if not enabled:
        return False, False
    return bool(draws[0] < FLIP_PROBABILITY), bool(draws[1] < FLIP_PROBABILITY)


def max_stride(available: int, frames: int, limit: int) -> int:
    """Largest temporal stride <= limit at which `frames` frames fit in `available`."""
    if frames <= 1:
        return 1
    return max(1, min(limit, (available - 1) // (frames - 1)))


def draw_stride(rng: np.random.Generator, available: int, frames: int, limit: int) -> int:
    """Uniform in [1, max_stride(...)]; a draw is consumed even when only 1 is possible."""
    return 1 + int(rng.integers(max_stride(available, frames, limit)))
