"""Frame-level crops and flips, and RGB pictures turned into 4:2:0 frames.

Crops and flips work on the planar 4:2:0 frame, before the model
representation is made: flipping the yuv420 tensor itself would be wrong,
because its four luma channels are pixel-unshuffled phases that a flip swaps.
RGB sources (PNG photos, Vimeo-90k) go through the same 8-bit BT.709
limited-range 4:2:0 frames as decoded video, so every dataset feeds the model
what the codec will see at inference.
"""

from __future__ import annotations

import numpy as np
import torch

from dvc_edic.colour import rgb_to_yuv
from dvc_edic.io.frames import CHROMA_SUBSAMPLING, Frame, max_sample_value, sample_dtype
from dvc_edic.representation import frame_to_tensor

# Colour coding that RGB sources are converted with (the common HD convention).
RGB_SOURCE_MATRIX = "bt709"
RGB_SOURCE_FULL_RANGE = False
RGB_SOURCE_BIT_DEPTH = 8


def crop_frame(frame: Frame, top: int, left: int, height: int, width: int) -> Frame:
    """The (even-aligned) window of a frame; shares no memory with the source."""
    c = CHROMA_SUBSAMPLING
    return Frame(
        y=frame.y[top : top + height, left : left + width].copy(),
        u=frame.u[top // c : (top + height) // c, left // c : (left + width) // c].copy(),
        v=frame.v[top // c : (top + height) // c, left // c : (left + width) // c].copy(),
        bit_depth=frame.bit_depth,
    )


def flip_frame(frame: Frame, horizontal: bool, vertical: bool) -> Frame:
    """Mirror every plane; chroma mirrors exactly because crops are even-aligned."""
    if not (horizontal or vertical):
        return frame
    axes = tuple(axis for axis, on in ((0, vertical), (1, horizontal)) if on)
    planes = [np.ascontiguousarray(np.flip(plane, axis=axes)) for plane in frame.planes]
    return Frame(y=planes[0], u=planes[1], v=planes[2], bit_depth=frame.bit_depth)


def rgb_to_frame(
    rgb: torch.Tensor,
    *,
    matrix: str = RGB_SOURCE_MATRIX,
    full_range: bool = RGB_SOURCE_FULL_RANGE,
    bit_depth: int = RGB_SOURCE_BIT_DEPTH,
) -> Frame:
    """(1,3,H,W) or (3,H,W) R'G'B' in [0,1] -> a quantised 4:2:0 frame (H, W even)."""
    if rgb.dim() == 3:
        rgb = rgb.unsqueeze(0)
    y, u, v = rgb_to_yuv(
        rgb.to(torch.float32).clamp(0.0, 1.0),
        matrix=matrix,
        full_range=full_range,
        bit_depth=bit_depth,
    )
    peak = max_sample_value(bit_depth)
    dtype = sample_dtype(bit_depth)
    planes = [
        torch.round(plane[0, 0].clamp(0.0, 1.0) * peak).numpy().astype(dtype) for plane in (y, u, v)
    ]
    return Frame(y=planes[0], u=planes[1], v=planes[2], bit_depth=bit_depth)


def frame_to_model(
    frame: Frame, representation: str, *, matrix: str = "bt709", full_range: bool = False
) -> torch.Tensor:
    """(C, h, w) float32 in [0,1] in the model representation."""
    return frame_to_tensor(frame, representation, matrix=matrix, full_range=full_range)[0]
