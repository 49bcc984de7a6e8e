"""The transform-ceiling diagnostic: its rounded-latent figure is what the real decoder gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from dvc_edic.image import pad_even, rgb_to_frame
from dvc_edic.representation import crop_to, frame_to_tensor, pad_to_multiple
from dvc_edic.weights import save_weights
from eval import ceiling
from tests.test_eval_image_rd import photo_like

QUALITY = 5.0
SAME_DB = 0.01  # the diagnostic and the decoder round the same latents


def test_rounded_latent_psnr_matches_the_real_decode(tiny_model) -> None:
    x = frame_to_tensor(rgb_to_frame(pad_even(photo_like(45, 71, 3))), "yuv420")
    row = ceiling.image_ceiling(tiny_model, x, QUALITY)
    padded, size = pad_to_multiple(x, tiny_model.intra.cfg.stride)
    latents, recon = tiny_model.intra.compress(padded, QUALITY)
    decoded = tiny_model.intra.decompress(latents, QUALITY, tuple(padded.shape[-2:]))
    assert torch.equal(decoded, recon)
    real_db = ceiling._psnr(crop_to(decoded, size), x)
    assert row["rounded_db"] == pytest.approx(real_db, abs=SAME_DB)
    assert row["bpp_estimate"] > 0.0


def test_cli_prints_one_row_per_quality_level(
    tmp_path: Path, tiny_model, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed, size in enumerate([(45, 71), (64, 64)]):
        Image.fromarray(photo_like(*size, seed)).save(folder / f"p{seed}.png")
    weights = tmp_path / "tiny.safetensors"
    save_weights(tiny_model, weights)
    assert ceiling.main([str(folder), "--weights", str(weights), "--threads", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line[:3] in
            {f"| {q}" for q in range(1, 10)}]
    assert len(rows) == tiny_model.quality_levels
    assert ceiling.main([str(tmp_path / "missing"), "--weights", str(weights)]) == \
        ceiling.EXIT_INPUT
