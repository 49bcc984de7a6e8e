"""eval.compare puts several RD runs' codecs side by side."""

from __future__ import annotations

from eval.compare import table


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
