"""Metrics of the RD evaluation against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dvc_edic.errors import InputError
from dvc_edic.io import Frame
from eval.metrics import (
    MSSSIM_MIN_SIDE,
    PSNR_CAP_DB,
    average,
    compare_sequences,
    frame_metrics,
    ms_ssim_y,
    rate_numbers,
)


def _frame(h: int, w: int, bit_depth: int = 8, seed: int = 0) -> Frame:
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    top = (1 << bit_depth) - 1
    # keep away from the extremes so +/- offsets never clip
    y = rng.integers(16, top - 16, size=(h, w)).astype(dtype)
    u = rng.integers(16, top - 16, size=(h // 2, w // 2)).astype(dtype)
    v = rng.integers(16, top - 16, size=(h // 2, w // 2)).astype(dtype)
    return Frame(y=y, u=u, v=v, bit_depth=bit_depth)


def _offset(f: Frame, dy: int, du: int, dv: int) -> Frame:
    return Frame(
        y=(f.y + dy).astype(f.y.dtype),
        u=(f.u + du).astype(f.u.dtype),
        v=(f.v + dv).astype(f.v.dtype),
        bit_depth=f.bit_depth,
    )


def test_identical_frames_hit_the_cap_everywhere() -> None:
    f = _frame(MSSSIM_MIN_SIDE + 15, MSSSIM_MIN_SIDE + 31)
    m = frame_metrics(f, f)
    for key in ("psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "psnr_rgb"):
        assert m[key] == PSNR_CAP_DB, key
    assert m["ms_ssim"] == pytest.approx(1.0, abs=1e-6)


def test_plane_psnrs_and_6_1_1_weighting_by_hand() -> None:
    f = _frame(16, 24)
    m = frame_metrics(f, _offset(f, 1, 2, 0), with_ms_ssim=False)
    y = 10 * math.log10(255**2 / 1.0)  # every Y sample off by 1: MSE 1
    u = 10 * math.log10(255**2 / 4.0)  # every U sample off by 2: MSE 4
    assert m["psnr_y"] == pytest.approx(y, abs=1e-12)
    assert m["psnr_u"] == pytest.approx(u, abs=1e-12)
    assert m["psnr_v"] == PSNR_CAP_DB
    assert m["psnr_yuv"] == pytest.approx((6 * y + u + PSNR_CAP_DB) / 8, abs=1e-12)
    assert 0 < m["psnr_rgb"] < PSNR_CAP_DB


def test_ten_bit_uses_peak_1023() -> None:
    f = _frame(16, 16, bit_depth=10)
    m = frame_metrics(f, _offset(f, 1, 1, 1), with_ms_ssim=False)
    assert m["psnr_y"] == pytest.approx(10 * math.log10(1023**2), abs=1e-12)


def test_sequence_average_is_mean_of_frame_psnrs_not_of_mse() -> None:
    a, b = _frame(16, 16, seed=1), _frame(16, 16, seed=2)
    per_frame = compare_sequences(
        [a, b], [_offset(a, 1, 0, 0), _offset(b, 2, 0, 0)], 2, "dec.yuv", with_ms_ssim=False
    )
    p1, p2 = 10 * math.log10(255**2 / 1), 10 * math.log10(255**2 / 4)
    avg = average(per_frame)
    assert avg["psnr_y"] == pytest.approx((p1 + p2) / 2, abs=1e-12)
    assert "frame" not in avg
    assert [f["frame"] for f in per_frame] == [0, 1]


def test_ms_ssim_is_null_below_five_scales_and_drops_with_noise() -> None:
    small = _frame(MSSSIM_MIN_SIDE - 1, 300)
    assert ms_ssim_y(small.y, small.y, 8) is None
    big = _frame(MSSSIM_MIN_SIDE + 1, MSSSIM_MIN_SIDE + 1)  # smallest even size with 5 scales
    noisy = _offset(big, 8, 0, 0).y
    value = ms_ssim_y(big.y, noisy, 8)
    assert value is not None and 0.0 < value < 1.0


def test_rate_numbers_by_hand() -> None:
    r = rate_numbers(bits=12_000, width=40, height=30, frames=5, fps=25.0)
    assert r == {"bits": 12_000, "bpp": 12_000 / (40 * 30 * 5), "kbps": 12_000 * 25 / 5 / 1000}


def test_short_decode_and_bit_depth_mismatch_are_input_errors() -> None:
    a = _frame(16, 16)
    with pytest.raises(InputError, match=r"dec\.yuv: decoded 1 frames, expected 2"):
        compare_sequences([a, a], [a], 2, "dec.yuv", with_ms_ssim=False)
    with pytest.raises(InputError, match="bit depths differ"):
        frame_metrics(a, _frame(16, 16, bit_depth=10), with_ms_ssim=False)


def test_every_psnr_goes_through_one_formula() -> None:
    """The image tools' RGB PSNR is the per-plane formula to the last bit (the same float64
    error and cap), and training's logs share the cap instead of printing infinity."""
    from dvc_edic.metrics import MAX_PSNR, UNIT_PEAK, array_psnr, mse_to_psnr
    from eval.image_rd import psnr_rgb8

    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (12, 10, 3)).astype(np.uint8)
    b = np.clip(a.astype(np.int16) + rng.integers(-3, 4, a.shape), 0, 255).astype(np.uint8)
    by_hand = 10.0 * math.log10(255.0**2 / float(np.mean((a.astype(np.float64) - b) ** 2)))
    assert psnr_rgb8(a, b) == array_psnr(a, b, 255.0) == pytest.approx(by_hand, abs=1e-12)
    assert psnr_rgb8(a, a) == mse_to_psnr(0.0, UNIT_PEAK) == MAX_PSNR
