"""Backward bilinear warping, the one sampler every flow user in the codec shares.

The codec warps the decoded reference with the decoded motion on both sides of the
channel, and the flow estimators warp at every pyramid level; one implementation keeps
their border handling identical. It is written with gathers instead of
``F.grid_sample`` because grid_sample needs coordinates normalised to [-1, 1], and the
round trip through that normalisation is not exact in floating point: an integer shift
would come back as e.g. 2.9999998 and blend in a neighbour. Here the sampling position
is ``base + flow`` in pixels, so a zero or integer flow has fractional weights of
exactly 0 and returns source pixels bit for bit.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from dvc_edic.errors import InputError

# Padding modes: "border" replicates the edge pixel (the codec's default, since a
# replicated edge is a better predictor than black); "zeros" treats the outside as 0.
PADDING_MODES = ("border", "zeros")

# Number of (H, W, device, dtype) base grids kept. A pyramid uses one per level and
# training may see a few crop sizes; this bound keeps odd-sized inputs from growing it.
_GRID_CACHE_SIZE = 64


@functools.lru_cache(maxsize=_GRID_CACHE_SIZE)
def base_grid(
    height: int, width: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates (xs of shape (1, 1, W), ys of shape (1, H, 1)).

    Kept as two broadcastable vectors rather than a full (2, H, W) grid: adding them
    to the flow broadcasts for free. Callers must not modify them in place.
    """
    xs = torch.arange(width, device=device, dtype=dtype).view(1, 1, width)
    ys = torch.arange(height, device=device, dtype=dtype).view(1, height, 1)
    return xs, ys


def _coordinate_dtype(dtype: torch.dtype) -> torch.dtype:
    """Coordinates need float32 at least: half precision cannot hold x + 0.5 past 2048."""
    return torch.promote_types(dtype, torch.float32)


def backward_warp(x: Tensor, flow: Tensor, padding_mode: str = "border") -> Tensor:
    """Sample ``x`` at ``p + flow(p)``: out(p) = x(p + flow(p)), bilinear.

    x: (B, C, H, W); flow: (B, 2, H, W) in pixels, channel 0 horizontal, 1 vertical.
    "border" clamps the sampling position into the image (so the gradient with
    respect to the flow is zero where it points outside, as with grid_sample);
    "zeros" reads 0 for every neighbour outside the image.
    """
    if padding_mode not in PADDING_MODES:
        raise InputError(
            f"backward_warp: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}"
        )
    if x.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise InputError(
            f"backward_warp: expected x (B,C,H,W) and flow (B,2,H,W), "
            f"got {tuple(x.shape)} and {tuple(flow.shape)}"
        )
    batch, channels, height, width = x.shape
    if flow.shape[0] != batch or flow.shape[2:] != x.shape[2:]:
        raise InputError(
            f"backward_warp: flow shape {tuple(flow.shape)} does not match x shape {tuple(x.shape)}"
        )

    cdtype = _coordinate_dtype(flow.dtype)
    xs, ys = base_grid(height, width, flow.device, cdtype)
    px = xs + flow[:, 0].to(cdtype)
    py = ys + flow[:, 1].to(cdtype)
    if padding_mode == "border":
        px = px.clamp(0, width - 1)
        py = py.clamp(0, height - 1)

    x0f = torch.floor(px)
    y0f = torch.floor(py)
    wx = (px - x0f).to(x.dtype).unsqueeze(1)  # (B, 1, H, W)
    wy = (py - y0f).to(x.dtype).unsqueeze(1)
    x0 = x0f.long()
    y0 = y0f.long()
    x1 = x0 + 1
    y1 = y0 + 1
    zeros = padding_mode == "zeros"
    if not zeros:
        # Positions are clamped, so x1 = W (or y1 = H) only happens with a weight of
        # exactly 0; reading the edge pixel there keeps the product finite and exact.
        x1 = x1.clamp(max=width - 1)
        y1 = y1.clamp(max=height - 1)

    flat = x.reshape(batch, channels, height * width)

    def tap(yi: Tensor, xi: Tensor) -> Tensor:
        """x at integer positions (B, C, H, W); in "zeros" mode 0 outside the image."""
        if zeros:
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            yi = yi.clamp(0, height - 1)
            xi = xi.clamp(0, width - 1)
        index = (yi * width + xi).view(batch, 1, height * width)
        values = flat.gather(2, index.expand(batch, channels, -1))
        values = values.view(batch, channels, height, width)
        if zeros:
            values = values * inside.unsqueeze(1).to(x.dtype)
        return values

    top = tap(y0, x0) * (1 - wx) + tap(y0, x1) * wx
    bottom = tap(y1, x0) * (1 - wx) + tap(y1, x1) * wx
    return top * (1 - wy) + bottom * wy
