"""Y'CbCr <-> R'G'B' conversion for BT.709 and BT.601, limited and full range.

Everything works on torch tensors of code values normalised by (2^bit_depth - 1),
the same scaling the readers' integer planes get, so conversion needs the bit
depth only to place limited range's black level and span.

Chroma is 4:2:0. Going to RGB, chroma is upsampled by one of two filters:
- "bilinear" (default): centre-sited bilinear, i.e. torch's
  interpolate(align_corners=False) with edge replication. It matches the siting
  that 2x2 averaging implies and CompressAI's yuv_420_to_444, so RGB metrics are
  comparable with theirs.
- "nearest": each chroma sample covers its 2x2 luma block. 2x2 averaging undoes
  it exactly, so YUV -> RGB -> YUV returns the input (up to float rounding) for
  in-gamut colours; the rgb model representation uses it for that reason.
Going to YUV, chroma is downsampled by averaging each 2x2 block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dvc_edic.errors import InputError
from dvc_edic.io.frames import Frame, check_bit_depth, max_sample_value

# Luma weights (Kr, Kb) of each matrix; Kg = 1 - Kr - Kb.
# BT.709-6 Table 3 item 3.2 and BT.601-7 section 2.5.1.
MATRIX_COEFFICIENTS: dict[str, tuple[float, float]] = {
    "bt709": (0.2126, 0.0722),
    "bt601": (0.299, 0.114),
}

# Limited ("video") range code values at 8 bits; at n bits each is multiplied by
# 2^(n-8) (BT.709-6 Table 4 items 4.6-4.8, BT.2100 Table 9).
LIMITED_LUMA_BLACK_8BIT = 16
LIMITED_LUMA_SPAN_8BIT = 219  # 16..235
LIMITED_CHROMA_SPAN_8BIT = 224  # 16..240 around 128
CHROMA_ZERO_8BIT = 128

CHROMA_FILTERS = ("bilinear", "nearest")
DEFAULT_CHROMA_FILTER = "bilinear"

# 4:2:0: one chroma sample per 2x2 luma block.
_SUBSAMPLING = 2
_LOWEST_DEPTH = 8


@dataclass(frozen=True)
class _Affine:
    """Normalised code value -> signal value: signal = scale * code + offset."""

    scale: float
    offset: float

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.offset) / self.scale


def _code_mappings(bit_depth: int, full_range: bool) -> tuple[_Affine, _Affine]:
    """Maps from normalised codes to Y' in [0,1] and to Cb/Cr in [-0.5, 0.5]."""
    bit_depth = check_bit_depth(bit_depth, "colour conversion")
    peak = float(max_sample_value(bit_depth))
    if full_range:
        zero = (1 << (bit_depth - 1)) / peak  # chroma zero is 2^(n-1), BT.2100 Table 9
        return _Affine(1.0, 0.0), _Affine(1.0, -zero)
    step = float(1 << (bit_depth - _LOWEST_DEPTH))
    luma_scale = peak / (LIMITED_LUMA_SPAN_8BIT * step)
    chroma_scale = peak / (LIMITED_CHROMA_SPAN_8BIT * step)
    luma = _Affine(luma_scale, -LIMITED_LUMA_BLACK_8BIT / LIMITED_LUMA_SPAN_8BIT)
    chroma = _Affine(chroma_scale, -CHROMA_ZERO_8BIT / LIMITED_CHROMA_SPAN_8BIT)
    return luma, chroma


def _weights(matrix: str) -> tuple[float, float, float]:
    try:
        kr, kb = MATRIX_COEFFICIENTS[matrix]
    except KeyError:
        raise InputError(
            f"unknown colour matrix {matrix!r}, expected one of {tuple(MATRIX_COEFFICIENTS)}"
        ) from None
    return kr, 1.0 - kr - kb, kb


def _upsample(chroma: torch.Tensor, size: tuple[int, int], chroma_filter: str) -> torch.Tensor:
    if chroma_filter == "bilinear":
        return F.interpolate(chroma, size=size, mode="bilinear", align_corners=False)
    if chroma_filter == "nearest":
        return F.interpolate(chroma, size=size, mode="nearest")
    raise InputError(f"unknown chroma filter {chroma_filter!r}, expected one of {CHROMA_FILTERS}")


def yuv_to_rgb(
    y: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    *,
    matrix: str = "bt709",
    full_range: bool = False,
    bit_depth: int = 8,
    chroma_filter: str = DEFAULT_CHROMA_FILTER,
    clamp: bool = True,
) -> torch.Tensor:
    """(B,1,H,W) luma and (B,1,H/2,W/2) chroma -> (B,3,H,W) R'G'B' in [0,1].

    clamp=False keeps out-of-gamut values (below 0 or above 1), which is what a
    lossless round trip through RGB needs.
    """
    if y.dim() != 4 or y.shape[1] != 1:
        raise InputError(f"yuv_to_rgb: luma must be (B,1,H,W), got {tuple(y.shape)}")
    height, width = y.shape[-2:]
    expected = (y.shape[0], 1, height // _SUBSAMPLING, width // _SUBSAMPLING)
    for name, plane in (("u", u), ("v", v)):
        if tuple(plane.shape) != expected:
            raise InputError(
                f"yuv_to_rgb: {name} must be {expected} for luma {tuple(y.shape)}, "
                f"got {tuple(plane.shape)}"
            )
    kr, kg, kb = _weights(matrix)
    luma_map, chroma_map = _code_mappings(bit_depth, full_range)
    luma = luma_map.forward(y)
    cb = chroma_map.forward(_upsample(u, (height, width), chroma_filter))
    cr = chroma_map.forward(_upsample(v, (height, width), chroma_filter))
    red = luma + 2.0 * (1.0 - kr) * cr
    blue = luma + 2.0 * (1.0 - kb) * cb
    green = (luma - kr * red - kb * blue) / kg
    rgb = torch.cat((red, green, blue), dim=1)
    return rgb.clamp(0.0, 1.0) if clamp else rgb


def rgb_to_yuv(
    rgb: torch.Tensor,
    *,
    matrix: str = "bt709",
    full_range: bool = False,
    bit_depth: int = 8,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B,3,H,W) R'G'B' -> normalised (B,1,H,W) Y and (B,1,H/2,W/2) U, V.

    Chroma is averaged over each 2x2 block. The result is neither rounded nor
    clamped; callers that need code values quantise it themselves.
    """
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise InputError(f"rgb_to_yuv: expected (B,3,H,W), got {tuple(rgb.shape)}")
    height, width = rgb.shape[-2:]
    if height % _SUBSAMPLING or width % _SUBSAMPLING:
        raise InputError(f"rgb_to_yuv: 4:2:0 needs an even size, got {width}x{height}")
    kr, kg, kb = _weights(matrix)
    luma_map, chroma_map = _code_mappings(bit_depth, full_range)
    red, green, blue = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    luma = kr * red + kg * green + kb * blue
    cb = F.avg_pool2d((blue - luma) / (2.0 * (1.0 - kb)), _SUBSAMPLING)
    cr = F.avg_pool2d((red - luma) / (2.0 * (1.0 - kr)), _SUBSAMPLING)
    return luma_map.inverse(luma), chroma_map.inverse(cb), chroma_map.inverse(cr)


def frame_planes(frame: Frame, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """The frame's planes as (1,1,h,w) tensors normalised by (2^bit_depth - 1)."""
    peak = float(max_sample_value(frame.bit_depth))
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    return tuple(
        torch.from_numpy(plane.astype(np_dtype))[None, None].to(dtype) / peak
        for plane in frame.planes
    )


def frame_to_rgb(
    frame: Frame,
    matrix: str = "bt709",
    full_range: bool = False,
    *,
    chroma_filter: str = DEFAULT_CHROMA_FILTER,
) -> np.ndarray:
    """(H,W,3) float64 R'G'B' in [0,1], for RGB metrics such as PSNR-RGB."""
    y, u, v = frame_planes(frame, torch.float64)
    rgb = yuv_to_rgb(
        y,
        u,
        v,
        matrix=matrix,
        full_range=full_range,
        bit_depth=frame.bit_depth,
        chroma_filter=chroma_filter,
    )
    return rgb[0].permute(1, 2, 0).contiguous().numpy()
