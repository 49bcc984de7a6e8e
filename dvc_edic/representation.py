"""How a frame becomes the model's input tensor, and how the output becomes a frame.

yuv420 (default): the luma plane is pixel-unshuffled by 2 into 4 channels and
stacked with U and V, giving 6 channels at half resolution. The network never
sees chroma upsampled, which quarters its work per pixel compared with RGB at
full size; and the mapping is a pure rearrangement, so it inverts bit-exactly.

rgb: R'G'B' at full resolution via dvc_edic.colour with nearest ("sample
replication") chroma upsampling, chosen because 2x2 averaging on the way back
undoes it exactly; the inverse is then off only where RGB had to be clamped to
[0,1] or by one code where float rounding lands on .5.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dvc_edic.colour import frame_planes, rgb_to_yuv, yuv_to_rgb
from dvc_edic.errors import InputError
from dvc_edic.io.frames import Frame, max_sample_value, sample_dtype
from flows.warp import backward_warp, block_bilinear_warp, block_cubic_warp

REPRESENTATIONS = ("yuv420", "rgb")

# pixel_unshuffle factor that turns the luma plane into chroma-sized channels.
_LUMA_FOLD = 2
_CHANNELS = {"yuv420": _LUMA_FOLD * _LUMA_FOLD + 2, "rgb": 3}
# Chroma filter of the rgb representation (see module docstring).
RGB_CHROMA_FILTER = "nearest"


def _check_rep(rep: str) -> str:
    if rep not in REPRESENTATIONS:
        raise InputError(f"unknown representation {rep!r}, expected one of {REPRESENTATIONS}")
    return rep


def representation_channels(rep: str) -> int:
    return _CHANNELS[_check_rep(rep)]


def representation_size(width: int, height: int, rep: str) -> tuple[int, int]:
    """(h, w) of the model tensor for a width x height frame."""
    if _check_rep(rep) == "yuv420":
        return height // _LUMA_FOLD, width // _LUMA_FOLD
    return height, width


def luma_fold(rep: str) -> int:
    """How many luma pixels one model-grid step spans, per side (1: luma is not folded)."""
    return _LUMA_FOLD if _check_rep(rep) == "yuv420" else 1


def luma_of(x: torch.Tensor, rep: str) -> tuple[torch.Tensor, int]:
    """(luma (B, 1, H, W) in [0, 1], how many luma pixels one model-grid step spans).

    Classical motion search works on luma at its own resolution; the second value
    maps its vectors back onto the model tensor's grid.
    """
    fold = luma_fold(rep)
    if fold > 1:
        return split_planes(x, rep)[0][0], fold
    return x.mean(dim=1, keepdim=True), 1


def split_planes(x: torch.Tensor, rep: str) -> list[tuple[torch.Tensor, int]]:
    """The model tensor as planes at their own resolution, each with how many of its
    pixels one model-grid step spans: yuv420's luma unfolded (2), then U and V (1); rgb
    as it is (1). ``join_planes`` inverts it exactly."""
    fold = luma_fold(rep)
    if fold == 1:
        return [(x, 1)]
    luma_channels = fold * fold
    return [(F.pixel_shuffle(x[:, :luma_channels], fold), fold), (x[:, luma_channels:], 1)]


def join_planes(planes: list[torch.Tensor], rep: str) -> torch.Tensor:
    """The model tensor from ``split_planes``' planes (same order)."""
    fold = luma_fold(rep)
    if fold == 1:
        return planes[0]
    luma, chroma = planes
    return torch.cat((F.pixel_unshuffle(luma, fold), chroma), dim=1)


def warp_planes(x: torch.Tensor, flow: torch.Tensor, rep: str,
                kernel: str = "bilinear") -> torch.Tensor:
    """``x`` warped by ``flow`` (model-grid samples), each plane at its own resolution.

    Warping the yuv420 tensor as it is would interpolate between luma pixels two apart
    (one sample holds a 2x2 luma block in four channels): a one-pixel luma shift would
    come out as the mean of the pixels on either side. Here the luma plane is rebuilt,
    warped by the flow scaled to luma pixels (each sample's vector on its 2x2 pixels)
    and folded back, and chroma is warped at its own grid. On the dev set this raised
    the PSNR of block-motion predictions by 0.8-2.2 dB at the same vectors
    (docs/encoder.md). The plain warp of format version 5 (``nomc``, block motion);
    ``kernel`` "cubic" is version 10's sharper choice for a block field.
    """
    warped = []
    for plane, scale in split_planes(x, rep):
        spread = flow.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        warped.append(backward_warp(plane, spread * scale, kernel=kernel))
    return join_planes(warped, rep)


def warp_planes_blocks(x: torch.Tensor, vectors: torch.Tensor, block: int,
                       precision_log2: int, rep: str, kernel: str) -> torch.Tensor:
    """``warp_planes(x, flow, rep, kernel)`` for a block field, bit for bit, through
    flows.block_bilinear_warp / block_cubic_warp: ``vectors`` int (2, rows, cols) in
    2^-precision_log2 model-grid samples, one per ``block`` x ``block`` samples. The
    decoder's path for block motion: at 1080p it costs a third of the per-sample warp
    (a block's vector is the same on all its samples, so its weights are too)."""
    warp = block_cubic_warp if kernel == "cubic" else block_bilinear_warp
    planes = []
    units = vectors.to(torch.int64)
    for plane, scale in split_planes(x, rep):
        scaled = units * scale  # in 2^-p pixels of this plane
        whole = scaled >> precision_log2  # floor, negative vectors too
        fraction = (scaled - (whole << precision_log2)).to(plane.dtype) / (1 << precision_log2)
        planes.append(warp(plane, whole, fraction, block * scale,
                           (plane.shape[-2], plane.shape[-1])))
    return join_planes(planes, rep)


def frame_to_tensor(
    frame: Frame, rep: str, *, matrix: str = "bt709", full_range: bool = False
) -> torch.Tensor:
    """(1, C, h, w) float32 in [0,1]; samples are normalised by (2^bit_depth - 1)."""
    y, u, v = frame_planes(frame, torch.float32)
    if _check_rep(rep) == "yuv420":
        return torch.cat((F.pixel_unshuffle(y, _LUMA_FOLD), u, v), dim=1)
    return yuv_to_rgb(
        y,
        u,
        v,
        matrix=matrix,
        full_range=full_range,
        bit_depth=frame.bit_depth,
        chroma_filter=RGB_CHROMA_FILTER,
    )


def _quantise(plane: torch.Tensor, bit_depth: int) -> np.ndarray:
    peak = max_sample_value(bit_depth)
    codes = torch.round(plane.clamp(0.0, 1.0) * peak)
    return codes[0, 0].numpy().astype(sample_dtype(bit_depth))


def tensor_to_frame(
    x: torch.Tensor,
    rep: str,
    bit_depth: int,
    *,
    matrix: str = "bt709",
    full_range: bool = False,
) -> Frame:
    """Inverse of frame_to_tensor: clamps to [0,1], rounds to code values."""
    _check_rep(rep)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    channels = representation_channels(rep)
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != channels:
        raise InputError(
            f"tensor_to_frame: expected (1, {channels}, h, w) for {rep}, got {tuple(x.shape)}"
        )
    x = x.detach().to("cpu", torch.float32)
    if rep == "yuv420":
        y = F.pixel_shuffle(x[:, : channels - 2], _LUMA_FOLD)
        u, v = x[:, channels - 2 : channels - 1], x[:, channels - 1 :]
    else:
        y, u, v = rgb_to_yuv(
            x.clamp(0.0, 1.0), matrix=matrix, full_range=full_range, bit_depth=bit_depth
        )
    return Frame(
        y=_quantise(y, bit_depth),
        u=_quantise(u, bit_depth),
        v=_quantise(v, bit_depth),
        bit_depth=bit_depth,
    )


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad bottom and right to a multiple of the network stride.

    Replication (not zeros) avoids a hard edge that would cost bits to code.
    Returns the padded tensor and the original (h, w) for crop_to.
    """
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise InputError(f"pad_to_multiple: multiple must be a positive integer, got {multiple!r}")
    height, width = int(x.shape[-2]), int(x.shape[-1])
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x, (height, width)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Cut the padding added by pad_to_multiple back off."""
    height, width = size
    if height > x.shape[-2] or width > x.shape[-1] or height < 1 or width < 1:
        raise InputError(f"crop_to: cannot crop {tuple(x.shape[-2:])} to {(height, width)}")
    return x[..., :height, :width]
