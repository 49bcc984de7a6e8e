"""Clips with known motion, made from still photos or procedural textures.

Each clip is a camera path (pan, zoom, rotation at constant sub-pixel rates)
over one picture, plus optional patches that slide independently over it. The
ground-truth flow comes from the same maps that render the frames, so motion
estimation can be supervised before it ever sees real video. This data is
marked synthetic (dataset.synthetic, item["synthetic"], description) so logs
and exported weights can say what a model was trained on.

Item: dict(frames=(n, C, h, w), flow=(n-1, 2, h_m, w_m), valid=(n-1, 1, h_m, w_m),
synthetic=True). flow[t] is the backward flow at model resolution in model
pixels (channel 0 = x, 1 = y): frames[t+1](p) ~ frames[t](p + flow[t](p)), i.e.
flows.backward_warp(frames[t], flow[t]) predicts frames[t+1]. valid is 1 where
that holds up to interpolation: the point lies inside frame t and is not
occluded or uncovered by a patch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dvc_edic.data.base import RandomCropDataset, describe_names
from dvc_edic.data.convert import frame_to_model, rgb_to_frame
from dvc_edic.data.images import DEFAULT_CACHE_IMAGES, PhotoStore
from dvc_edic.data.motion import CameraPath, MotionLimits, MovingPatch, layer_map
from dvc_edic.data.sampling import check_count, parse_crop
from dvc_edic.data.sources import PathLike, resolve_sources
from dvc_edic.data.textures import DEFAULT_MAX_SHAPES, DEFAULT_SPECTRAL_SLOPE, procedural_texture
from dvc_edic.errors import InputError
from dvc_edic.representation import representation_channels, representation_size

# Items per epoch of the procedural variant (it has no natural length).
DEFAULT_PROCEDURAL_SAMPLES = 1024
# Default motion: up to 8 px/frame pan, 2 %/frame zoom, 1 degree/frame rotation,
# up to 2 patches of 15-40 % of the crop side moving up to 6 px/frame.
DEFAULT_LIMITS = MotionLimits(max_translation=8.0, max_zoom=0.02, max_rotation=1.0)
DEFAULT_PATCHES = 2
DEFAULT_PATCH_SIZE = (0.15, 0.4)
DEFAULT_PATCH_TRANSLATION = 6.0
INTERPOLATIONS = ("bicubic", "bilinear")
# Extra picture pixels around the footprint: the bicubic kernel reads 2 beyond a point.
_SUPPORT = 2.0
# Patch-edge band (in source pixels, times the model fold) where valid is 0: mixed pixels
# and the warp's bilinear support straddle two layers there.
_EDGE_BAND = 1.5


def _to_grid(points: np.ndarray, height: int, width: int) -> torch.Tensor:
    """(..., 2) pixel positions -> grid_sample coordinates with align_corners=True."""
    scale = np.array([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)])
    return torch.from_numpy((points * scale - 1.0).astype(np.float32))


def _sample(picture: torch.Tensor, points: np.ndarray, mode: str, padding: str) -> torch.Tensor:
    """picture (1, 3, H, W) read at (n, h, w, 2) points -> (n, 3, h, w)."""
    height, width = picture.shape[-2:]
    grid = _to_grid(points, height, width)
    batch = picture.expand(grid.shape[0], -1, -1, -1)
    return F.grid_sample(batch, grid, mode=mode, padding_mode=padding, align_corners=True)


class SyntheticMotionDataset(RandomCropDataset):
    """Synthetic clips of `frames` (>= 2) frames with ground-truth backward flow.

    images: a photo folder/list (as ImageFolderDataset takes), or None for
    procedural textures. Every strength is an argument: max_translation (px/frame),
    max_zoom (log-scale/frame), max_rotation (degrees/frame), patches (most moving
    patches per clip), patch_size (min, max fraction of the crop's sides),
    patch_max_translation (px/frame). Photos too small for the motion are
    mirror-extended (grid_sample reflection).
    """

    synthetic = True

    def __init__(
        self,
        images: PathLike | Sequence[PathLike] | None = None,
        *,
        frames: int = 2,
        crop: tuple[int, int] | int,
        representation: str = "yuv420",
        max_translation: float = DEFAULT_LIMITS.max_translation,
        max_zoom: float = DEFAULT_LIMITS.max_zoom,
        max_rotation: float = DEFAULT_LIMITS.max_rotation,
        patches: int = DEFAULT_PATCHES,
        patch_size: tuple[float, float] = DEFAULT_PATCH_SIZE,
        patch_max_translation: float = DEFAULT_PATCH_TRANSLATION,
        interpolation: str = "bicubic",
        texture_slope: float = DEFAULT_SPECTRAL_SLOPE,
        texture_shapes: int = DEFAULT_MAX_SHAPES,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        exclude: Sequence[str] = (),
        cache_images: int = DEFAULT_CACHE_IMAGES,
    ) -> None:
        where = type(self).__name__
        super().__init__(seed=seed, samples_per_epoch=samples_per_epoch, where=where)
        self.frames = check_count(frames, "frames", where, minimum=2)
        crop_hw = parse_crop(crop, where)
        if crop_hw is None:
            raise InputError(f"{where}: a crop (height, width) is required")
        self.crop = crop_hw
        representation_channels(representation)
        self.representation = representation
        model_h, _ = representation_size(self.crop[1], self.crop[0], representation)
        self.fold = self.crop[0] // model_h  # source pixels per model pixel
        for name, value in (
            ("max_translation", max_translation),
            ("max_zoom", max_zoom),
            ("max_rotation", max_rotation),
            ("patch_max_translation", patch_max_translation),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise InputError(f"{where}: {name} must be a finite number >= 0, got {value!r}")
        self.limits = MotionLimits(float(max_translation), float(max_zoom), float(max_rotation))
        self.patches = check_count(patches, "patches", where, minimum=0)
        low, high = (float(v) for v in patch_size)
        if not 0.0 < low <= high <= 1.0:
            raise InputError(f"{where}: patch_size must be 0 < min <= max <= 1, got {patch_size}")
        self.patch_size = (low, high)
        self.patch_max_translation = float(patch_max_translation)
        if interpolation not in INTERPOLATIONS:
            raise InputError(
                f"{where}: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}"
            )
        self.interpolation = interpolation
        self.texture_slope = float(texture_slope)
        self.texture_shapes = check_count(texture_shapes, "texture_shapes", where, minimum=0)
        self.photos: PhotoStore | None = None
        if images is not None:
            paths = resolve_sources(images, kind="image", exclude=exclude)
            if not paths:
                raise InputError(f"{where}: no PNG/JPEG photos found in {os.fspath(images)!r}")
            self.photos = PhotoStore(paths, cache_images)

    def natural_length(self) -> int:
        return len(self.photos) if self.photos is not None else DEFAULT_PROCEDURAL_SAMPLES

    @property
    def description(self) -> str:
        if self.photos is None:
            origin = "procedural textures"
        else:
            origin = f"{len(self.photos)} photos [{describe_names(self.photos.paths)}]"
        limits = self.limits
        return (
            f"SYNTHETIC motion clips from {origin}: pan <= {limits.max_translation:g} px/frame, "
            f"zoom <= {limits.max_zoom:g}/frame, rotation <= {limits.max_rotation:g} deg/frame, "
            f"<= {self.patches} moving patches; {self.frames} frames/item, "
            f"crop {self.crop[1]}x{self.crop[0]}, {self.representation}"
        )

    # --- pictures ---------------------------------------------------------------------

    def _picture(
        self, rng: np.random.Generator, index: int, height: int, width: int
    ) -> tuple[np.ndarray, bool]:
        """A background (H', W', 3) float32 and whether it is exactly the asked size."""
        if self.photos is None:
            texture = procedural_texture(
                rng, height, width, slope=self.texture_slope, max_shapes=self.texture_shapes
            )
            return texture, True
        count = len(self.photos)
        pick = index % count if self.samples_per_epoch is None else int(rng.integers(count))
        return self.photos[pick].astype(np.float32) / 255.0, False

    def _patch_texture(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        if self.photos is None:
            return procedural_texture(
                rng, height, width, slope=self.texture_slope, max_shapes=self.texture_shapes
            )
        photo = self.photos[int(rng.integers(len(self.photos)))]
        top = int(rng.integers(max(1, photo.shape[0] - height + 1)))
        left = int(rng.integers(max(1, photo.shape[1] - width + 1)))
        window = photo[top : top + height, left : left + width].astype(np.float32) / 255.0
        if window.shape[:2] != (height, width):  # a photo smaller than the patch
            window = np.pad(
                window,
                ((0, height - window.shape[0]), (0, width - window.shape[1]), (0, 0)),
                mode="symmetric",
            )
        return window

    # --- one clip: draw_patches, place, render, ground_truth (public for tests/tools) --

    def draw_patches(self, rng: np.random.Generator) -> list[MovingPatch]:
        height, width = self.crop
        drawn = []
        for _ in range(int(rng.integers(self.patches + 1))):
            ph = max(2, round(rng.uniform(*self.patch_size) * height))
            pw = max(2, round(rng.uniform(*self.patch_size) * width))
            corner = np.array([rng.uniform(0, width - pw), rng.uniform(0, height - ph)])
            angle = rng.uniform(0.0, 2.0 * math.pi)
            speed = rng.uniform(0.0, self.patch_max_translation)
            velocity = speed * np.array([math.cos(angle), math.sin(angle)])
            drawn.append(MovingPatch(self._patch_texture(rng, ph, pw), corner, velocity))
        return drawn

    def place(
        self, rng: np.random.Generator, index: int, path: CameraPath
    ) -> tuple[torch.Tensor, CameraPath, str]:
        """The background picture and the path moved so that its footprint lies inside."""
        (xmin, ymin), (xmax, ymax) = path.footprint(self.frames, self.crop, _SUPPORT)
        need_w, need_h = math.ceil(xmax - xmin) + 1, math.ceil(ymax - ymin) + 1
        picture, exact = self._picture(rng, index, need_h, need_w)
        pic_h, pic_w = picture.shape[:2]
        low = np.array([-xmin, -ymin])
        padding = "border"
        if exact:
            origin = low
        else:
            spare = np.array([pic_w - 1 - (xmax - xmin), pic_h - 1 - (ymax - ymin)])
            # Uniform where the footprint fits; centred (and mirror-extended) where not.
            offset = rng.random(2) * np.maximum(spare, 0.0)
            origin = low + np.where(spare >= 0, offset, spare / 2.0)
            if np.any(spare < 0):
                padding = "reflection"
        tensor = torch.from_numpy(np.ascontiguousarray(picture)).permute(2, 0, 1)[None]
        return tensor, path.moved_to(origin), padding

    def render(
        self,
        picture: torch.Tensor,
        path: CameraPath,
        padding: str,
        patches: list[MovingPatch],
    ) -> torch.Tensor:
        """(n, 3, H, W) R'G'B' in [0, 1] at source resolution."""
        height, width = self.crop
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        grid = np.stack([xs, ys], axis=-1)
        points = np.stack([path.to_picture(t, grid) for t in range(self.frames)])
        frames = _sample(picture, points, self.interpolation, padding)
        for patch in patches:
            texture = torch.from_numpy(np.ascontiguousarray(patch.texture)).permute(2, 0, 1)[None]
            local = np.stack([grid - patch.corner_at(t) for t in range(self.frames)])
            content = _sample(texture, local, self.interpolation, "border")
            cover = np.stack([patch.coverage(t, self.crop) for t in range(self.frames)])
            alpha = torch.from_numpy(cover.astype(np.float32))[:, None]
            frames = frames * (1.0 - alpha) + content * alpha
        return frames.clamp(0.0, 1.0)

    def ground_truth(
        self, path: CameraPath, patches: list[MovingPatch]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Backward flow (n-1, 2, h_m, w_m) in model pixels and its valid mask."""
        fold = self.fold
        model_h, model_w = self.crop[0] // fold, self.crop[1] // fold
        ys, xs = np.mgrid[0:model_h, 0:model_w].astype(np.float64)
        # A model pixel stands for the centre of its fold x fold block of source pixels.
        centres = np.stack([xs, ys], axis=-1) * fold + (fold - 1) / 2.0
        band = _EDGE_BAND * fold
        height, width = self.crop
        flows, valids = [], []
        for t in range(self.frames - 1):
            flow = path.flow(t, centres)
            for patch in patches:  # later patches are on top, as in render()
                flow[patch.inside(t + 1, centres)] = -patch.velocity
            source = centres + flow
            layer_now, unsure_now = layer_map(patches, t + 1, centres, band)
            layer_then, unsure_then = layer_map(patches, t, source, band)
            inside = (
                (source[..., 0] >= 0)
                & (source[..., 0] <= width - 1)
                & (source[..., 1] >= 0)
                & (source[..., 1] <= height - 1)
            )
            valid = inside & (layer_now == layer_then) & ~unsure_now & ~unsure_then
            flows.append(np.moveaxis(flow / fold, -1, 0))
            valids.append(valid[None])
        return (
            torch.from_numpy(np.stack(flows).astype(np.float32)),
            torch.from_numpy(np.stack(valids).astype(np.float32)),
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        path = CameraPath.draw(rng, self.limits, self.crop)
        picture, path, padding = self.place(rng, index, path)
        patches = self.draw_patches(rng)
        rgb = self.render(picture, path, padding, patches)
        frames = torch.stack([frame_to_model(rgb_to_frame(x), self.representation) for x in rgb])
        flow, valid = self.ground_truth(path, patches)
        return {"frames": frames, "flow": flow, "valid": valid, "synthetic": True}
