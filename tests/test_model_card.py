"""The model card is generated from the weights' metadata and the runners' output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dvc_edic.errors import InputError
from dvc_edic.models.preset import Preset
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.weights import save_weights
from eval.model_card import main

HISTORY = [
    {"stage": "1_image", "steps": 120, "total_steps": 300, "elapsed_s": 7200.0,
     "hardware": "test cpu", "processes": 1, "modules": ["intra"],
     "data": {"image": ["photos (real): 3 images"]}},
    {"stage": "5_pframe", "steps": 40, "total_steps": 50, "elapsed_s": 1800.0,
     "hardware": "test cpu", "processes": 1, "data": {"pframe": ["video clips (real): 1 file"]}},
]


def _results(folder: Path) -> None:
    point = {"rate_param": 3.0, "bpp": 0.1234, "kbps": 98.7, "decoded_frames": 4,
             "encode_s": 2.0, "decode_s": 1.0, "info": {"intra_fallbacks": 1},
             "avg": {"psnr_yuv": 31.25, "psnr_y": 30.5, "ms_ssim": None}}
    report = {"set": "unit", "config": "c.yaml", "machine": {"cpu": "X", "cores": 2},
              "sequences": {"s1": {"width": 64, "height": 48, "frames": 4, "intra_period": 2}},
              "results": {"dvc_edic": {"s1": [point]}}}
    (folder / "plots").mkdir(parents=True)
    (folder / "plots" / "s1.png").write_bytes(b"png")
    (folder / "results.json").write_text(json.dumps(report))
    (folder / "table.md").write_text("### unit: BD-rate vs x264\n\n| s1 | +12.34% |\n")


def test_card_states_the_metadata_and_copies_the_runner_output(tmp_path: Path) -> None:
    weights = tmp_path / "w" / "default.safetensors"
    weights.parent.mkdir()
    meta = {"history": HISTORY, "config": {"stage": "6_multiframe",
            "init_parts": {"intra": "runs/1_image/checkpoint.pt"}}, "stage": "6_multiframe"}
    save_weights(VideoCodecModel(Preset.load("tiny")), weights, metadata=meta, half=True)
    video = tmp_path / "video"
    _results(video)
    assert main(["--weights", str(weights), "--video", str(video),
                 "--image", str(tmp_path / "none")]) == 0
    card = (weights.parent / "MODEL_CARD.md").read_text()
    assert "| 1_image | intra | 120 / 300 | 2.00 h | test cpu | 1 |" in card
    assert "Total training wall time: 2.50 h." in card
    assert "`intra` from `runs/1_image/checkpoint.pt`" in card
    assert "| s1 | +12.34% |" in card  # the runner's table, verbatim
    assert "| 3 | 0.1234 | 98.7 | 31.25 | 30.50 | n/a | 2.00 | 4.00 | 1 |" in card
    assert "![s1](../video/plots/s1.png)" in card


def test_missing_weights_is_an_error(tmp_path: Path) -> None:
    assert main(["--weights", str(tmp_path / "absent.safetensors")]) == 1


def test_readme_blocks_are_filled_from_the_tables(tmp_path: Path) -> None:
    from eval.model_card import fill_readme

    text = "intro\n<!-- results:video -->\nold\n<!-- /results:video -->\nend\n"
    filled = fill_readme(text, {"video": "| new |\n"})
    assert filled == "intro\n<!-- results:video -->\n| new |\n<!-- /results:video -->\nend\n"
    assert fill_readme(filled, {"video": "| new |"}) == filled  # idempotent
    with pytest.raises(InputError, match="results:image"):
        fill_readme("no markers", {"image": "x"})
