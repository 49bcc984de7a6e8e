"""Model representations: exact yuv420 inverse, bounded rgb inverse, pad/crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dvc_edic.colour import rgb_to_yuv
from dvc_edic.errors import InputError
from dvc_edic.io import Frame
from dvc_edic.representation import (
    REPRESENTATIONS,
    crop_to,
    frame_to_tensor,
    pad_to_multiple,
    representation_channels,
    representation_size,
    tensor_to_frame,
    warp_planes,
)
from flows import backward_warp


def random_frame(height: int, width: int, bit_depth: int, seed: int) -> Frame:
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    top = 1 << bit_depth
    return Frame(
        rng.integers(0, top, (height, width)).astype(dtype),
        rng.integers(0, top, (height // 2, width // 2)).astype(dtype),
        rng.integers(0, top, (height // 2, width // 2)).astype(dtype),
        bit_depth,
    )


def in_gamut_frame(height: int, width: int, bit_depth: int, matrix: str, full_range: bool) -> Frame:
    """Colour constant over each 2x2 block plus per-pixel grey detail, all inside [0.05, 0.95]."""
    rng = np.random.default_rng(bit_depth)
    blocks = torch.from_numpy(rng.uniform(0.1, 0.9, (1, 3, height // 2, width // 2)))
    rgb = blocks.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    rgb = rgb + torch.from_numpy(rng.uniform(-0.05, 0.05, (1, 1, height, width)))
    peak = (1 << bit_depth) - 1
    planes = rgb_to_yuv(rgb, matrix=matrix, full_range=full_range, bit_depth=bit_depth)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    y, u, v = (torch.round(p * peak)[0, 0].numpy().astype(dtype) for p in planes)
    return Frame(y, u, v, bit_depth)


def test_channels_and_sizes() -> None:
    assert [representation_channels(r) for r in REPRESENTATIONS] == [6, 3]
    assert representation_size(64, 32, "yuv420") == (16, 32)
    assert representation_size(64, 32, "rgb") == (32, 64)
    with pytest.raises(InputError, match="representation"):
        representation_channels("yuv444")


@pytest.mark.parametrize("bit_depth", [8, 10, 16])
def test_yuv420_is_bit_exact(bit_depth: int) -> None:
    frame = random_frame(24, 40, bit_depth, seed=bit_depth)
    x = frame_to_tensor(frame, "yuv420")
    assert x.shape == (1, 6, 12, 20) and x.dtype == torch.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    peak = (1 << bit_depth) - 1
    # Channel k of the unshuffled luma is the pixel at offset (k // 2, k % 2) in each 2x2 block.
    assert np.array_equal(np.round(x[0, 1].numpy() * peak), frame.y[0::2, 1::2])
    assert np.array_equal(np.round(x[0, 2].numpy() * peak), frame.y[1::2, 0::2])
    assert np.array_equal(np.round(x[0, 5].numpy() * peak), frame.v)
    assert tensor_to_frame(x, "yuv420", bit_depth) == frame


@pytest.mark.parametrize("bit_depth", [8, 10])
@pytest.mark.parametrize(("matrix", "full_range"), [("bt709", False), ("bt601", True)])
def test_rgb_inverse_is_bounded(bit_depth: int, matrix: str, full_range: bool) -> None:
    frame = in_gamut_frame(32, 48, bit_depth, matrix, full_range)
    x = frame_to_tensor(frame, "rgb", matrix=matrix, full_range=full_range)
    assert x.shape == (1, 3, 32, 48) and x.dtype == torch.float32
    back = tensor_to_frame(x, "rgb", bit_depth, matrix=matrix, full_range=full_range)
    for a, b in zip(back.planes, frame.planes, strict=True):
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.max() <= 1  # float32 rounding can only tip a .5 either way
        assert diff.mean() < 0.05


def test_tensor_to_frame_clamps_and_checks_shape() -> None:
    x = torch.full((1, 6, 4, 4), 1.7)
    x[:, :, 0, 0] = -3.0
    frame = tensor_to_frame(x, "yuv420", 10)
    assert frame.y.dtype == np.uint16 and frame.y.max() == 1023 and frame.y[0, 0] == 0
    assert tensor_to_frame(x[0], "yuv420", 8).y.shape == (8, 8)  # (C, h, w) is accepted too
    with pytest.raises(InputError, match="expected"):
        tensor_to_frame(torch.zeros(1, 3, 4, 4), "yuv420", 8)
    with pytest.raises(InputError, match="expected"):
        tensor_to_frame(torch.zeros(2, 6, 4, 4), "yuv420", 8)


@pytest.mark.parametrize(("h", "w", "multiple"), [(30, 45, 16), (32, 64, 16), (1, 1, 8)])
def test_pad_crop_inverse(h: int, w: int, multiple: int) -> None:
    x = torch.rand(1, 6, h, w)
    padded, size = pad_to_multiple(x, multiple)
    assert size == (h, w)
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert padded.shape[-2] - h < multiple and padded.shape[-1] - w < multiple
    assert torch.equal(crop_to(padded, size), x)
    assert torch.equal(padded[..., -1, :w], x[..., -1, :])  # replicated, not zero
    assert torch.equal(padded[..., :h, -1], x[..., :, -1])


def test_pad_crop_bad_arguments() -> None:
    x = torch.rand(1, 3, 4, 4)
    with pytest.raises(InputError, match="multiple"):
        pad_to_multiple(x, 0)
    with pytest.raises(InputError, match="crop"):
        crop_to(x, (5, 4))


def test_warp_planes_shifts_luma_by_whole_pixels_exactly() -> None:
    """A shift of one luma pixel is half a model-grid sample: the plane-wise warp must
    return the shifted luma bit for bit, where warping the folded tensor would blend
    pixels two apart. No motion returns the reference itself."""
    g = torch.Generator().manual_seed(3)
    y, chroma = torch.rand(1, 1, 16, 24, generator=g), torch.rand(1, 2, 8, 12, generator=g)
    x = torch.cat((F.pixel_unshuffle(y, 2), chroma), dim=1)
    flow = torch.zeros(1, 2, 8, 12)
    assert torch.equal(warp_planes(x, flow, "yuv420"), x)
    flow[:, 0] = 0.5  # out(p) = in(p + one luma pixel)
    warped = warp_planes(x, flow, "yuv420")
    luma = F.pixel_shuffle(warped[:, :4], 2)
    assert torch.equal(luma[..., :-1], y[..., 1:])
    assert torch.equal(luma[..., -1], y[..., -1])  # the border is clamped
    assert torch.equal(warped[:, 4:], backward_warp(chroma, flow))
    rgb = torch.rand(1, 3, 8, 12, generator=g)
    assert torch.equal(warp_planes(rgb, flow, "rgb"), backward_warp(rgb, flow))
