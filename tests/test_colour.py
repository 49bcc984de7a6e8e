"""Colour conversion: standard values, agreement with swscale, bounded round trips."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import Interpolation

from dvc_edic.colour import frame_to_rgb, rgb_to_yuv, yuv_to_rgb
from dvc_edic.errors import InputError
from dvc_edic.io import Frame

MATRICES = ("bt709", "bt601")


def codes(y: torch.Tensor, bit_depth: int = 8) -> np.ndarray:
    return torch.round(y * ((1 << bit_depth) - 1)).flatten().numpy().astype(int)


def solid(rgb: tuple[float, float, float], size: int = 2) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float64).view(1, 3, 1, 1).expand(1, 3, size, size)


# Published 8-bit limited-range Y'CbCr of the primaries (e.g. BT.709/BT.601 colour bars).
@pytest.mark.parametrize(
    ("matrix", "rgb", "ycbcr"),
    [
        ("bt709", (1, 0, 0), (63, 102, 240)),
        ("bt709", (0, 1, 0), (173, 42, 26)),
        ("bt709", (0, 0, 1), (32, 240, 118)),
        ("bt601", (1, 0, 0), (81, 90, 240)),
        ("bt601", (0, 1, 0), (145, 54, 34)),
        ("bt601", (0, 0, 1), (41, 240, 110)),
        ("bt709", (1, 1, 1), (235, 128, 128)),
        ("bt709", (0, 0, 0), (16, 128, 128)),
    ],
)
def test_primaries_limited_range(matrix: str, rgb: tuple, ycbcr: tuple) -> None:
    y, u, v = rgb_to_yuv(solid(rgb), matrix=matrix, full_range=False)
    assert (codes(y)[0], codes(u)[0], codes(v)[0]) == ycbcr
    back = yuv_to_rgb(y, u, v, matrix=matrix, full_range=False)
    assert torch.allclose(back, solid(rgb), atol=1e-9)


@pytest.mark.parametrize(
    ("bit_depth", "full_range", "white", "black"),
    [
        (10, False, (940, 512, 512), (64, 512, 512)),
        (10, True, (1023, 512, 512), (0, 512, 512)),
        (8, True, (255, 128, 128), (0, 128, 128)),
    ],
)
def test_white_and_black_levels(
    bit_depth: int, full_range: bool, white: tuple, black: tuple
) -> None:
    for rgb, expected in (((1, 1, 1), white), ((0, 0, 0), black)):
        y, u, v = rgb_to_yuv(solid(rgb), full_range=full_range, bit_depth=bit_depth)
        assert tuple(int(codes(p, bit_depth)[0]) for p in (y, u, v)) == expected


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


@pytest.mark.parametrize(("matrix", "swscale_name"), [("bt709", "ITU709"), ("bt601", "ITU601")])
def test_agrees_with_swscale(matrix: str, swscale_name: str) -> None:
    """FFmpeg's accurate converter (nearest chroma) is an independent reference."""
    frame = random_frame(32, 48, 8, seed=7)
    packed = np.concatenate([p.ravel() for p in frame.planes]).reshape(-1, 48)
    reference = av.VideoFrame.from_ndarray(packed, format="yuv420p").to_ndarray(
        format="rgb24",
        src_colorspace=swscale_name,
        interpolation=Interpolation.POINT
        | Interpolation.ACCURATE_RND
        | Interpolation.FULL_CHR_H_INT,
    )
    ours = frame_to_rgb(frame, matrix, False, chroma_filter="nearest")
    planes = [torch.from_numpy(p.astype(np.float64))[None, None] / 255 for p in frame.planes]
    raw = yuv_to_rgb(*planes, matrix=matrix, chroma_filter="nearest", clamp=False)
    in_gamut = ((raw > 0) & (raw < 1)).all(dim=1)[0].numpy()  # swscale clips differently
    assert in_gamut.sum() > 100
    diff = np.abs(np.round(ours * 255) - reference)[in_gamut]
    assert diff.max() <= 1


@pytest.mark.parametrize("matrix", MATRICES)
@pytest.mark.parametrize("full_range", [False, True])
@pytest.mark.parametrize("bit_depth", [8, 10])
def test_yuv_rgb_yuv_round_trip(matrix: str, full_range: bool, bit_depth: int) -> None:
    frame = random_frame(16, 24, bit_depth, seed=bit_depth)
    peak = (1 << bit_depth) - 1
    y, u, v = [torch.from_numpy(p.astype(np.float64))[None, None] / peak for p in frame.planes]
    kw = {"matrix": matrix, "full_range": full_range, "bit_depth": bit_depth}
    # Nearest upsampling is undone exactly by 2x2 averaging: every plane comes back.
    rgb = yuv_to_rgb(y, u, v, chroma_filter="nearest", clamp=False, **kw)
    for a, b in zip(rgb_to_yuv(rgb, **kw), (y, u, v), strict=True):
        assert torch.allclose(a, b, atol=1e-9)
    # Bilinear chroma changes chroma, but luma is still recovered exactly.
    rgb = yuv_to_rgb(y, u, v, chroma_filter="bilinear", clamp=False, **kw)
    assert torch.allclose(rgb_to_yuv(rgb, **kw)[0], y, atol=1e-9)


@pytest.mark.parametrize("matrix", MATRICES)
def test_rgb_yuv_rgb_smooth_image_bounded(matrix: str) -> None:
    rows = torch.linspace(0.1, 0.9, 32, dtype=torch.float64)
    cols = torch.linspace(0.0, 1.0, 48, dtype=torch.float64)
    red = rows[:, None].expand(32, 48)
    green = (0.5 + 0.4 * torch.sin(6 * cols))[None, :].expand(32, 48)
    blue = ((rows[:, None] + cols[None, :]) / 2).expand(32, 48)
    rgb = torch.stack((red, green, blue))[None]
    back = yuv_to_rgb(*rgb_to_yuv(rgb, matrix=matrix), matrix=matrix)
    # Chroma is subsampled, so the error is bounded by how fast colour changes:
    # never more than the largest step between neighbouring pixels.
    step = max((rgb.diff(dim=2).abs().max()), rgb.diff(dim=3).abs().max())
    assert (back - rgb).abs().max() <= step
    assert (back - rgb).abs().mean() < 0.003


def test_frame_to_rgb_shape_and_range() -> None:
    rgb = frame_to_rgb(random_frame(8, 16, 10, 1), "bt709", False)
    assert rgb.shape == (8, 16, 3) and rgb.dtype == np.float64
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0


def test_bad_arguments() -> None:
    y, c = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)
    with pytest.raises(InputError, match="matrix"):
        yuv_to_rgb(y, c, c, matrix="bt2020")
    with pytest.raises(InputError, match="chroma filter"):
        yuv_to_rgb(y, c, c, chroma_filter="lanczos")
    with pytest.raises(InputError, match="must be"):
        yuv_to_rgb(y, y, c)
    with pytest.raises(InputError, match="even"):
        rgb_to_yuv(torch.zeros(1, 3, 3, 4))
