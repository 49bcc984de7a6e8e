"""Helpers shared by the coarse-to-fine estimators: padding to the pyramid stride and
flow upsampling."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dvc_edic.errors import InputError

# Each pyramid level halves the resolution, so flow values double going one level finer.
LEVEL_SCALE = 2


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad right and bottom to a multiple of ``multiple``.

    Only right/bottom, so pixel (0, 0) stays put and the flow of the padded image,
    cropped, is the flow of the original.
    """
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def upsample_flow(flow: Tensor, height: int, width: int) -> Tensor:
    """Bilinear ×2 upsampling of a flow field; its values double with the resolution."""
    up = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
    return up * LEVEL_SCALE


def check_pair(name: str, target: Tensor, reference: Tensor, in_channels: int) -> None:
    """Reject mismatched inputs early with a message that names both shapes."""
    if target.dim() != 4 or target.shape != reference.shape:
        raise InputError(
            f"{name}: target and reference must be (B,C,H,W) of one shape, "
            f"got {tuple(target.shape)} and {tuple(reference.shape)}"
        )
    if target.shape[1] != in_channels:
        raise InputError(f"{name}: expected {in_channels} input channels, got {target.shape[1]}")
