"""The RD runner's bit breakdown adds up what --stats recorded."""

from __future__ import annotations

import pytest

from eval.breakdown import bit_breakdown, breakdown_table


def _frame(kind: str, sections: dict[str, int], mode: str, pred: float | None) -> dict:
    overhead = 10
    return {"type": kind, "bytes": sum(sections.values()) + overhead, "sections": sections,
            "overhead_bytes": overhead, "mode": mode, "psnr_warped": pred and pred - 1,
            "psnr_pred": pred, "psnr_yuv": 35.0}


def test_shares_add_up() -> None:
    frames = [
        _frame("I", {"z": 40, "y": 350}, "intra", None),
        _frame("P", {"mv_z": 5, "mv_y": 45, "res_z": 10, "res_y": 140}, "learned", 30.0),
        _frame("P", {"mv_z": 5, "mv_y": 35}, "learned+skip", 32.0),
    ]
    b = bit_breakdown(frames)
    assert b is not None
    assert b["bytes"] == 400 + 210 + 50
    assert b["i_share"] + b["p_share"] == pytest.approx(100.0)
    assert b["mv_share_of_p"] == pytest.approx(100 * 90 / 260)
    assert b["residual_share_of_p"] == pytest.approx(100 * 150 / 260)
    assert b["overhead_share"] == pytest.approx(100 * 30 / 660)
    assert b["mean_psnr_pred"] == pytest.approx(31.0)
    assert b["modes"] == {"intra": 1, "learned": 1, "learned+skip": 1}
    point = {"rate_param": 4.0, "bpp": 0.1, "info": {"breakdown": b}}
    table = breakdown_table({"dvc": {"walk": [point]}})
    assert table is not None and "| dvc | walk | 4 | 0.1000 |" in table


def test_old_stats_have_no_breakdown() -> None:
    assert bit_breakdown([{"type": "I", "bytes": 10}]) is None
    assert breakdown_table({"x264": {"walk": [{"rate_param": 22, "info": {}}]}}) is None
