"""BD-rate / BD-PSNR wrapper against cases computed by hand."""

from __future__ import annotations

import math

import pytest

from dvc_edic.errors import InputError
from eval.bd import bd_compare, mean_or_none
from eval.report import markdown_table

ANCHOR_BPP = [0.05, 0.1, 0.2, 0.4, 0.8]
SLOPE_DB_PER_DECADE = 10.0


def _psnr(bpp: float) -> float:
    # a straight line in (log10 rate, PSNR): every interpolator reproduces it exactly
    return SLOPE_DB_PER_DECADE * math.log10(bpp) + 40.0


@pytest.mark.parametrize("method", ["pchip", "akima"])
def test_rates_scaled_by_0_8_give_minus_20_percent(method: str) -> None:
    quality = [_psnr(r) for r in ANCHOR_BPP]
    test_bpp = [0.8 * r for r in ANCHOR_BPP]  # same quality at 80% of the bits
    result = bd_compare(ANCHOR_BPP, quality, test_bpp, quality, method=method)
    assert result.bd_rate_pct == pytest.approx(-20.0, abs=1e-9)
    # at equal rate the test curve sits SLOPE * log10(1/0.8) dB higher
    assert result.bd_psnr_db == pytest.approx(-SLOPE_DB_PER_DECADE * math.log10(0.8), abs=1e-9)
    assert result.method == method


def test_identical_curves_give_zero_and_order_does_not_matter() -> None:
    quality = [_psnr(r) for r in ANCHOR_BPP]
    result = bd_compare(ANCHOR_BPP, quality, ANCHOR_BPP[::-1], quality[::-1])
    assert result.bd_rate_pct == pytest.approx(0.0, abs=1e-12)
    assert result.bd_psnr_db == pytest.approx(0.0, abs=1e-12)
    assert result.notes == []


def test_non_monotone_curve_is_undefined_with_a_note() -> None:
    quality = [_psnr(r) for r in ANCHOR_BPP]
    bumpy = [*quality[:2], quality[1] - 1.0, *quality[3:]]
    result = bd_compare(ANCHOR_BPP, quality, ANCHOR_BPP, bumpy)
    assert result.bd_rate_pct is None and result.bd_psnr_db is None
    assert "not strictly increasing" in result.notes[0]


def test_disjoint_curves_are_undefined_and_the_package_warning_is_kept() -> None:
    quality = [_psnr(r) for r in ANCHOR_BPP]
    far = [q + 30.0 for q in quality]
    result = bd_compare(ANCHOR_BPP, quality, ANCHOR_BPP, far)
    assert result.bd_rate_pct is None
    assert any("overlap" in n for n in result.notes)


def test_too_few_points_and_bad_method_are_input_errors() -> None:
    with pytest.raises(InputError, match="at least 2"):
        bd_compare([0.1], [30.0], [0.1, 0.2], [30.0, 33.0])
    with pytest.raises(InputError, match="method"):
        bd_compare([0.1, 0.2], [30.0, 33.0], [0.1, 0.2], [30.0, 33.0], method="cubic")


def test_mean_or_none_skips_undefined() -> None:
    assert mean_or_none([-10.0, None, -20.0]) == -15.0
    assert mean_or_none([None]) is None


def test_markdown_table_rows_and_average() -> None:
    entry = {"bd_rate_pct": -12.345, "bd_psnr_db": 0.5, "notes": []}
    table = markdown_table(
        "UVG",
        "x264",
        "psnr_yuv",
        "pchip",
        {"x264": {"A": entry, "B": entry}, "ours": {"A": entry, "B": None}},
        ["A", "B"],
        {"ours": {"UVG": {"bd_rate_pct": -12.345, "bd_psnr_db": 0.5, "notes": []}}},
        "96 frames.",
    )
    lines = table.splitlines()
    assert "| Sequence | ours |" in lines
    assert "| A | -12.35% (+0.500 dB) |" in lines
    assert "| B | n/a |" in lines
    assert "| **Average UVG** | **-12.35% (+0.500 dB)** |" in lines
