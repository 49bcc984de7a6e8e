"""eval.compare puts several RD runs' codecs side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dvc_edic.errors import InputError
from eval.compare import against_first, main, table


def _report(codec: str, bd: float) -> dict:
    point = {"per_frame": [{}] * 24, "encode_s": 12.0, "decode_s": 6.0}
    return {
        "bd": {"metric": "psnr_yuv", "anchor": "x264"},
        "sequences": {"walk": {}},
        "codecs": {"x264": {"kind": "x264"}, codec: {"kind": "dvc_edic"}},
        "results": {"x264": {"walk": [point]}, codec: {"walk": [point, point]}},
        "bd_rate": {"psnr_yuv": {codec: {"walk": {"bd_rate_pct": bd}}}},
        "bd_rate_class_average": {"psnr_yuv": {codec: {"dev": {"bd_rate_pct": bd}}}},
    }


def test_one_row_per_codec_with_speeds() -> None:
    text = table([_report("dvc_fast", 250.0), _report("dvc_slow", 200.0)])
    assert "| dvc_fast | +250.0 % | +250.0 % | 2.00 | 4.00 |" in text
    assert "| dvc_slow | +200.0 % |" in text
    assert "x264 |" not in text.split("\n", 3)[-1]  # the anchor is not a row


def _run(bits: list[int], psnr: list[float]) -> dict:
    points = [{"rate_param": float(i + 1), "bits": b, "bpp": b / 1e5, "avg": {"psnr_yuv": q}}
              for i, (b, q) in enumerate(zip(bits, psnr, strict=True))]
    return {"bd": {"metric": "psnr_yuv", "method": "pchip"},
            "results": {"dvc_edic": {"walk": points}}}


def test_against_first_prices_the_later_run_in_bits_at_equal_quality() -> None:
    base = _run([1000, 2000, 4000, 8000], [30.0, 32.0, 34.0, 36.0])
    cheaper = _run([900, 1800, 3600, 7200], [30.0, 32.0, 34.0, 36.0])  # 10 % fewer bits
    text = against_first([base, cheaper], ["old", "new"])
    assert "walk: -10.00 %" in text
    assert "1: -10.00% / +0.000" in text
    # only the points asked for, and only where both runs coded them
    text = against_first([base, cheaper], ["old", "new"], rates={1.0, 2.0, 3.0})
    assert "4: " not in text and "walk: -10.00 %" in text
    assert "fewer than 2 common rate points" in against_first(
        [base, cheaper], ["old", "new"], rates={1.0})


def test_against_first_needs_two_runs_and_numeric_rates(tmp_path: Path) -> None:
    one = tmp_path / "a.json"
    one.write_text(json.dumps(_run([1000, 2000], [30.0, 32.0])))
    with pytest.raises(InputError, match="at least two"):
        main(["--against-first", str(one)])
    with pytest.raises(InputError, match="--rates must be numbers"):
        main(["--against-first", "--rates", "1,x", str(one), str(one)])
