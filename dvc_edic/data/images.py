"""Random crops of photographs for the I-frame codec.

Photos are RGB; every crop is converted to an 8-bit BT.709 limited-range 4:2:0
frame (the same coding as decoded video) and from there to the model
representation, so the image codec trains on what it will code.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from dvc_edic.data.base import RandomCropDataset, describe_names
from dvc_edic.data.cache import LruCache
from dvc_edic.data.convert import frame_to_model, rgb_to_frame
from dvc_edic.data.sampling import crop_origin, draw_flips, parse_crop
from dvc_edic.data.sources import PathLike, resolve_sources
from dvc_edic.errors import InputError
from dvc_edic.representation import representation_channels

# Decoded photos kept per process; ~3 MB each at the 1276x850 of the project's photos.
DEFAULT_CACHE_IMAGES = 64
# What to do with a photo smaller than the crop: mirror it out to size, or leave it out.
SMALL_IMAGE_POLICIES = ("pad", "skip")
# 16-bit greyscale PNG samples -> 8 bits: 65535 / 255.
_SIXTEEN_TO_EIGHT = 257


def load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8, upright (EXIF orientation applied); InputError names the file."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit greyscale PNG
                grey = np.asarray(image, dtype=np.float64) / _SIXTEEN_TO_EIGHT
                grey = np.clip(np.round(grey), 0, 255).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read as an image: {exc}") from None


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header only, after EXIF rotation."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: cannot be read as an image: {exc}") from None
    rotated = orientation in (5, 6, 7, 8)  # EXIF orientations that swap the axes
    return (width, height) if rotated else (height, width)


def mirror_pad(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Mirror (edge included) the bottom and right out to at least height x width."""
    pad_h, pad_w = max(0, height - rgb.shape[0]), max(0, width - rgb.shape[1])
    if pad_h == 0 and pad_w == 0:
        return rgb
    return np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")


def rgb_window(
    rgb: np.ndarray,
    top: int,
    left: int,
    crop: tuple[int, int],
    horizontal: bool,
    vertical: bool,
) -> np.ndarray:
    """The crop of an (H, W, 3) picture, mirrored as asked (a view, not a copy)."""
    window = rgb[top : top + crop[0], left : left + crop[1]]
    if horizontal:
        window = window[:, ::-1]
    if vertical:
        window = window[::-1]
    return window


def rgb_array_to_model(rgb: np.ndarray, representation: str) -> torch.Tensor:
    """(H, W, 3) uint8 -> (C, h, w) via 8-bit BT.709 limited 4:2:0."""
    scaled = np.asarray(rgb, dtype=np.float32) / np.float32(255.0)  # a fresh, writable array
    return frame_to_model(rgb_to_frame(torch.from_numpy(scaled).permute(2, 0, 1)), representation)


class PhotoStore:
    """Photos of a folder (or list), decoded on demand through a bounded LRU cache."""

    def __init__(self, paths: list[Path], cache_images: int) -> None:
        self.paths = paths
        self._cache: LruCache[np.ndarray] = LruCache(cache_images)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        cached = self._cache.get(index)
        if cached is None:
            cached = load_rgb(self.paths[index])
            self._cache.put(index, cached)
        return cached

    @property
    def cache(self) -> LruCache[np.ndarray]:
        return self._cache

    def __getstate__(self) -> dict[str, Any]:
        return {"paths": self.paths, "_cache": LruCache(self._cache.capacity)}


class ImageFolderDataset(RandomCropDataset):
    """Random crops (C, h, w) of the PNG/JPEG photos under `root`.

    `root` is a folder (searched recursively), a file, or a list of either. Photos
    smaller than the crop are mirror-padded (small="pad", the default) or left out
    with a warning (small="skip"). Item `index` uses photo index % N when
    samples_per_epoch is None (one crop per photo per epoch), otherwise a photo
    drawn at random; crop origin and flips come from (seed, epoch, index).
    """

    def __init__(
        self,
        root: PathLike | Sequence[PathLike],
        *,
        crop: tuple[int, int] | int,
        representation: str = "yuv420",
        flips: bool = True,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        small: str = "pad",
        exclude: Sequence[str] = (),
        cache_images: int = DEFAULT_CACHE_IMAGES,
    ) -> None:
        where = type(self).__name__
        super().__init__(seed=seed, samples_per_epoch=samples_per_epoch, where=where)
        crop_hw = parse_crop(crop, where)
        if crop_hw is None:
            raise InputError(f"{where}: photos differ in size, so a crop is required")
        self.crop = crop_hw
        representation_channels(representation)
        self.representation = representation
        self.flips = bool(flips)
        if small not in SMALL_IMAGE_POLICIES:
            raise InputError(f"{where}: small must be one of {SMALL_IMAGE_POLICIES}, got {small!r}")
        self.small = small
        paths = resolve_sources(root, kind="image", exclude=exclude)
        if small == "skip":
            paths = self._drop_small(paths, where)
        if not paths:
            raise InputError(f"{where}: no PNG/JPEG photos found in {os.fspath(root)!r}")
        self.photos = PhotoStore(paths, cache_images)

    def _drop_small(self, paths: list[Path], where: str) -> list[Path]:
        kept, dropped = [], []
        for path in paths:
            height, width = image_size(path)
            fits = height >= self.crop[0] and width >= self.crop[1]
            (kept if fits else dropped).append(path)
        if dropped:
            warnings.warn(
                f"{where}: skipped {len(dropped)} photos smaller than the "
                f"{self.crop[1]}x{self.crop[0]} crop: {describe_names(dropped)}",
                stacklevel=3,
            )
        return kept

    @property
    def files(self) -> list[Path]:
        return list(self.photos.paths)

    def natural_length(self) -> int:
        return len(self.photos)

    @property
    def description(self) -> str:
        return (
            f"photos (real): {len(self.photos)} images [{describe_names(self.photos.paths)}]; "
            f"crop {self.crop[1]}x{self.crop[0]}, small photos {self.small}, "
            f"flips {'on' if self.flips else 'off'}, {self.representation}"
        )

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = self.rng(index)
        count = len(self.photos)
        photo = index % count if self.samples_per_epoch is None else int(rng.integers(count))
        rgb = mirror_pad(self.photos[photo], *self.crop)
        top, left = crop_origin(rng, rgb.shape[:2], self.crop)
        horizontal, vertical = draw_flips(rng, self.flips)
        window = rgb_window(rgb, top, left, self.crop, horizontal, vertical)
        return rgb_array_to_model(window, self.representation)
