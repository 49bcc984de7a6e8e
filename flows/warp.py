"""Backward warping, the one sampler every flow user in the codec shares: bilinear, and
a sharper cubic kernel that the block-motion plain warp may choose (format version 10).

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

from dvc_edic.bitstream.limits import WARP_KERNELS
from dvc_edic.errors import InputError

# Padding modes: "border" replicates the edge pixel (the codec's default, since a
# replicated edge is a better predictor than black); "zeros" treats the outside as 0.
PADDING_MODES = ("border", "zeros")
# Interpolation kernels. "cubic" is Keys' cubic convolution with parameter CUBIC_A over
# 4 x 4 samples: bilinear interpolation low-passes every fractional position, which
# costs sharp content (e.g. carphone) 0.35-0.55 dB of block-motion prediction. Part of
# the format: a stream's decoded samples depend on CUBIC_A (docs/bitstream.md).
KERNELS = WARP_KERNELS
CUBIC_A = -0.5

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


def backward_warp(x: Tensor, flow: Tensor, padding_mode: str = "border",
                  kernel: str = "bilinear") -> Tensor:
    """Sample ``x`` at ``p + flow(p)``: out(p) = x(p + flow(p)), bilinear or cubic.

    x: (B, C, H, W); flow: (B, 2, H, W) in pixels, channel 0 horizontal, 1 vertical.
    "border" clamps the sampling position into the image (so the gradient with
    respect to the flow is zero where it points outside, as with grid_sample);
    "zeros" reads 0 for every neighbour outside the image. The cubic kernel reads
    the 4 x 4 neighbours of the unclamped position, each clamped into the image (the
    reference extended by its edge samples, as classical codecs pad it), and needs
    "border"; ``block_cubic_warp`` computes the same numbers for block translations.
    """
    if padding_mode not in PADDING_MODES:
        raise InputError(
            f"backward_warp: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}"
        )
    if kernel not in KERNELS or (kernel == "cubic" and padding_mode != "border"):
        raise InputError(f"backward_warp: kernel must be one of {KERNELS} (cubic with "
                         f"padding 'border'), got {kernel!r} with {padding_mode!r}")
    if x.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise InputError(
            f"backward_warp: expected x (B,C,H,W) and flow (B,2,H,W), "
            f"got {tuple(x.shape)} and {tuple(flow.shape)}"
        )
    batch, _, height, width = x.shape
    if flow.shape[0] != batch or flow.shape[2:] != x.shape[2:]:
        raise InputError(
            f"backward_warp: flow shape {tuple(flow.shape)} does not match x shape {tuple(x.shape)}"
        )

    cdtype = _coordinate_dtype(flow.dtype)
    xs, ys = base_grid(height, width, flow.device, cdtype)
    px = xs + flow[:, 0].to(cdtype)
    py = ys + flow[:, 1].to(cdtype)
    if kernel == "cubic":
        return _cubic(x, px, py)
    if padding_mode == "border":
        px = px.clamp(0, width - 1)
        py = py.clamp(0, height - 1)

    return _bilinear(x, px, py, padding_mode == "zeros")


def _bilinear(x: Tensor, px: Tensor, py: Tensor, zeros: bool) -> Tensor:
    """x (B, C, H, W) sampled bilinearly at positions px, py of any shape (B, *S) (already
    clamped for "border"): (B, C, *S). The one sequence of operations both the per-sample
    warp and the block path's edge blocks use, so they agree bit for bit."""
    batch, channels, height, width = x.shape
    shape = px.shape[1:]
    x0f = torch.floor(px)
    y0f = torch.floor(py)
    wx = (px - x0f).to(x.dtype).unsqueeze(1)  # (B, 1, *S)
    wy = (py - y0f).to(x.dtype).unsqueeze(1)
    x0 = x0f.long()
    y0 = y0f.long()
    x1 = x0 + 1
    y1 = y0 + 1
    if not zeros:
        # Positions are clamped, so x1 = W (or y1 = H) only happens with a weight of
        # exactly 0; reading the edge pixel there keeps the product finite and exact.
        x1 = x1.clamp(max=width - 1)
        y1 = y1.clamp(max=height - 1)

    flat = x.reshape(batch, channels, height * width)
    count = px[0].numel()

    def tap(yi: Tensor, xi: Tensor) -> Tensor:
        """x at integer positions (B, C, *S); in "zeros" mode 0 outside the image."""
        if zeros:
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            yi = yi.clamp(0, height - 1)
            xi = xi.clamp(0, width - 1)
        index = (yi * width + xi).view(batch, 1, count)
        values = flat.gather(2, index.expand(batch, channels, -1))
        values = values.view(batch, channels, *shape)
        if zeros:
            values = values * inside.unsqueeze(1).to(x.dtype)
        return values

    top = tap(y0, x0) * (1 - wx) + tap(y0, x1) * wx
    bottom = tap(y1, x0) * (1 - wx) + tap(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


def cubic_weights(t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Keys' weights of the samples at -1, 0, 1, 2 from a position ``t`` in [0, 1) past
    sample 0. Each is one fixed sequence of elementwise operations, so every machine
    and thread count gives the same numbers (no fused or reordered arithmetic), and
    t = 0 gives exactly (0, 1, 0, 0): integer vectors copy samples bit for bit."""
    a = CUBIC_A
    u = 1 - t
    near0 = ((a + 2) * t - (a + 3)) * t * t + 1  # distance t
    near1 = ((a + 2) * u - (a + 3)) * u * u + 1  # distance 1 - t
    far0 = a * t * u * u  # distance 1 + t: a(s^3 - 5s^2 + 8s - 4) = a (s-1)(s-2)^2
    far1 = a * u * t * t  # distance 2 - t
    return far0, near0, near1, far1


def _cubic(x: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """4 x 4 cubic convolution at (px, py), each tap clamped into the image; each row's
    taps summed left to right, then the rows top down."""
    batch, channels, height, width = x.shape
    x0f, y0f = torch.floor(px), torch.floor(py)
    kx = cubic_weights((px - x0f).to(x.dtype).unsqueeze(1))
    ky = cubic_weights((py - y0f).to(x.dtype).unsqueeze(1))
    x0, y0 = x0f.long(), y0f.long()
    flat = x.reshape(batch, channels, height * width)
    cols = [(x0 + d).clamp(0, width - 1) for d in (-1, 0, 1, 2)]
    out: Tensor | None = None
    for dy, weight_y in zip((-1, 0, 1, 2), ky, strict=True):
        row_base = (y0 + dy).clamp(0, height - 1) * width
        taps = []
        for xi in cols:
            index = (row_base + xi).view(batch, 1, height * width)
            taps.append(flat.gather(2, index.expand(batch, channels, -1))
                        .view(batch, channels, height, width))
        term = _four_taps(taps, kx) * weight_y
        out = term if out is None else out + term
    assert out is not None
    return out


def _four_taps(values: list[Tensor], weights: tuple[Tensor, ...]) -> Tensor:
    """((v0 w0 + v1 w1) + v2 w2) + v3 w3: the one order every cubic path sums in."""
    return values[0] * weights[0] + values[1] * weights[1] + values[2] * weights[2] \
        + values[3] * weights[3]


def block_cubic_warp(x: Tensor, whole: Tensor, fraction: Tensor, side: int,
                     size: tuple[int, int]) -> Tensor:
    """``backward_warp(x, flow, kernel="cubic")`` for a flow that is constant on square
    blocks, bit for bit, at a fraction of the cost: each block's (side + 3)^2 source
    patch is gathered once and filtered separably with the block's own four weights
    per axis, instead of 16 gathers and weight sets per sample.

    x: (B, C, H, W). whole: int64 (2, rows, cols), the integer part of each block's
    vector (horizontal, vertical; floor); fraction: (2, rows, cols) in [0, 1), its
    fractional part, exact in x's dtype. Blocks cover the plane in raster order,
    ``side`` samples a side (the last row and column may stick out); ``size`` (H, W).
    """
    patches = _patches(x, whole, side, -1, side + 2, size)  # taps -1 .. side + 1
    kx = [w[..., None, None] for w in cubic_weights(fraction[0].to(x.dtype))]
    ky = [w[..., None, None] for w in cubic_weights(fraction[1].to(x.dtype))]
    across = _four_taps([patches[..., :, i:i + side] for i in range(4)], kx)
    return _plane(_four_taps([across[..., j:j + side, :] for j in range(4)], ky), size)


def _patches(x: Tensor, whole: Tensor, side: int, low: int, high: int,
             size: tuple[int, int]) -> Tensor:
    """Every block's source patch, offsets low .. high - 1 around its whole-sample
    position, rows and columns clamped into the plane (the edge-extended plane):
    (B, C, rows, cols, high - low, high - low)."""
    height, width = size
    rows, cols = whole.shape[1:]
    reach = torch.arange(low, high, device=x.device)
    top = torch.arange(rows, device=x.device) * side
    left = torch.arange(cols, device=x.device) * side
    ys = ((top[:, None] + whole[1])[..., None] + reach).clamp(0, height - 1)
    xs = ((left[None, :] + whole[0])[..., None] + reach).clamp(0, width - 1)
    return x[:, :, ys[..., :, None], xs[..., None, :]]


def _plane(blocks: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, C, rows, cols, side, side) blocks laid out as the (B, C, H, W) plane."""
    batch, channels, rows, cols, side, _ = blocks.shape
    plane = blocks.permute(0, 1, 2, 4, 3, 5).reshape(batch, channels, rows * side, cols * side)
    return plane[..., : size[0], : size[1]]


def block_bilinear_warp(x: Tensor, whole: Tensor, fraction: Tensor, side: int,
                        size: tuple[int, int]) -> Tensor:
    """``backward_warp(x, flow)`` (bilinear, "border") for a flow that is constant on
    square blocks, bit for bit: each block's (side + 1)^2 patch is gathered once and
    interpolated with the block's own weights. Where some sample of a block reads past
    the plane, the per-sample warp clamps the position (not the taps), which changes
    its weights there, so those blocks' samples are computed by the per-sample
    arithmetic itself. Arguments as ``block_cubic_warp``."""
    height, width = size
    rows, cols = whole.shape[1:]
    patches = _patches(x, whole, side, 0, side + 1, size)
    wx = fraction[0].to(x.dtype)[..., None, None]
    wy = fraction[1].to(x.dtype)[..., None, None]
    across = patches[..., :, :side] * (1 - wx) + patches[..., :, 1:] * wx
    plane = _plane(across[..., :side, :] * (1 - wy) + across[..., 1:, :] * wy, size).contiguous()
    batch = x.shape[0]
    top = torch.arange(rows, device=x.device) * side
    left = torch.arange(cols, device=x.device) * side
    first_y, first_x = top[:, None] + whole[1], left[None, :] + whole[0]  # (rows, cols)
    # blocks with a sample whose position leaves the plane (its last own sample counts;
    # samples past the plane's edge are cropped away)
    last_y = torch.clamp(top + side, max=height)[:, None] - 1 - top[:, None] + first_y
    last_x = torch.clamp(left + side, max=width)[None, :] - 1 - left[None, :] + first_x
    moving_x = fraction[0] > 0
    moving_y = fraction[1] > 0
    edge = ((first_x < 0) | (last_x + moving_x.long() > width - 1)
            | (first_y < 0) | (last_y + moving_y.long() > height - 1))
    if bool(edge.any()):
        mask = edge.repeat_interleave(side, 0).repeat_interleave(side, 1)[:height, :width]
        yy, xx = mask.nonzero(as_tuple=True)
        rows_of, cols_of = yy // side, xx // side
        cdtype = _coordinate_dtype(x.dtype)
        px = (xx.to(cdtype) + whole[0][rows_of, cols_of].to(cdtype)
              + fraction[0][rows_of, cols_of].to(cdtype)).clamp(0, width - 1)
        py = (yy.to(cdtype) + whole[1][rows_of, cols_of].to(cdtype)
              + fraction[1][rows_of, cols_of].to(cdtype)).clamp(0, height - 1)
        values = _bilinear(x, px.expand(batch, -1), py.expand(batch, -1), zeros=False)
        plane[:, :, yy, xx] = values
    return plane
