"""Image-mode RD: the x265 intra anchor, --holdout, and the same-bpp comparison."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from dvc_edic.data.sources import split_holdout
from dvc_edic.image import frame_to_rgb8, pad_even, rgb_to_frame
from eval import image_rd
from eval.anchors import AnchorSettings
from tests.conftest import run_tool

needs_x265 = pytest.mark.skipif(
    not image_rd.x265_available(),
    reason="this PyAV build lacks the libx265 encoder or the hevc decoder",
)

ODD_SIZE = (45, 71)  # rows, columns: both odd, so padding and cropping are exercised
SQUARE_SIZE = (64, 64)
NOISE_SIGMA = 4.0
# Below the colour-only ceiling at crf 22 (measured: about 2 dB); a picture cropped from
# the wrong corner of the padded frame would lose far more.
X265_CRF22_MAX_LOSS_DB = 6.0
HEVC_VPS_START = b"\x00\x00\x00\x01\x40\x01"  # Annex-B start code + VPS NAL header


def photo_like(rows: int, cols: int, seed: int) -> np.ndarray:
    """Smooth colour gradients plus noise: compressible, but not trivially so."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    base = np.stack(
        [
            128 + 100 * np.sin(x / cols * math.pi * 2 + seed),
            60 + 150 * y / rows,
            200 - 120 * (x + y) / (rows + cols),
        ],
        axis=-1,
    )
    noisy = base + rng.normal(0.0, NOISE_SIGMA, base.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(photo_like(*ODD_SIZE, seed=1)).save(d / "a_odd.png")
    Image.fromarray(photo_like(*SQUARE_SIZE, seed=2)).save(d / "b_square.png")
    return d


@needs_x265
def test_x265_points_round_trip_and_rate_follows_crf() -> None:
    rgb = photo_like(*SQUARE_SIZE, seed=3)
    points = [image_rd.x265_point(rgb, crf) for crf in (42, 32, 22)]
    bits = [b for b, _ in points]
    psnr = [image_rd.psnr_rgb8(rgb, dec) for _, dec in points]
    assert all(dec.shape == rgb.shape and dec.dtype == np.uint8 for _, dec in points)
    assert 0 < bits[0] < bits[1] < bits[2]
    assert all(math.isfinite(p) for p in psnr)
    assert psnr[0] < psnr[1] < psnr[2]


@needs_x265
def test_x265_stream_is_whole_and_has_no_version_sei() -> None:
    frame = rgb_to_frame(photo_like(*SQUARE_SIZE, seed=4))
    data = image_rd._encode_x265(frame, image_rd.x265_settings(32))
    assert data.startswith(HEVC_VPS_START)  # parameter sets are in the counted bytes
    assert b"x265 (build" not in data
    probe = image_rd.x265_version()
    assert probe is not None and probe.startswith("x265")


@needs_x265
def test_x265_codes_exactly_dvc_edic_yuv_and_crops_odd_sizes() -> None:
    """Lossless x265 must give back dvc_edic.image's own YUV, so only the coder differs."""
    rgb = photo_like(*ODD_SIZE, seed=5)
    frame = rgb_to_frame(pad_even(rgb))
    lossless = AnchorSettings("x265", 0, 1, 1, extra_params={"info": "0", "lossless": "1"})
    data = image_rd._encode_x265(frame, lossless)
    assert image_rd._decode_hevc(data, frame.width, frame.height) == frame
    _, dec = image_rd.x265_point(rgb, 22)
    assert dec.shape == rgb.shape
    # cropped from the padded picture's top-left, so it lines up with the original;
    # the colour round trip alone is the ceiling any YUV 4:2:0 coder can reach
    ceiling = image_rd.psnr_rgb8(rgb, frame_to_rgb8(frame)[: rgb.shape[0], : rgb.shape[1]])
    assert ceiling - X265_CRF22_MAX_LOSS_DB < image_rd.psnr_rgb8(rgb, dec) < ceiling


def test_psnr_at_bpp_interpolates_in_log_bpp_and_never_extrapolates() -> None:
    bpp, psnr = [0.4, 0.1, 1.6], [33.0, 27.0, 39.0]  # unsorted on purpose
    for b, p in zip(bpp, psnr, strict=True):
        assert image_rd.psnr_at_bpp(b, bpp, psnr) == p
    assert image_rd.psnr_at_bpp(0.2, bpp, psnr) == pytest.approx(30.0)  # log-midpoint
    assert image_rd.psnr_at_bpp(0.8, bpp, psnr) == pytest.approx(36.0)
    assert image_rd.psnr_at_bpp(0.099, bpp, psnr) is None
    assert image_rd.psnr_at_bpp(1.61, bpp, psnr) is None
    assert image_rd.psnr_at_bpp(0.5, [], []) is None


def test_same_bpp_rows_give_deltas_only_inside_the_anchor_range() -> None:
    curves = {
        "dvc_edic": {"rate_param": [2, 6], "bpp": [0.05, 0.4], "psnr_rgb": [26.0, 34.0]},
        "x265": {"rate_param": [42, 27], "bpp": [0.1, 1.0], "psnr_rgb": [28.0, 38.0]},
        "jpeg": {"rate_param": [10, 30, 90], "bpp": [0.2, 0.4, 2.0], "psnr_rgb": [25, 28, 40]},
    }
    rows = image_rd.same_bpp(curves, "dvc_edic", ["x265", "jpeg"])
    assert [r["rate_param"] for r in rows] == [2, 6]
    assert rows[0]["others"]["x265"] == {"psnr_rgb": None, "delta_db": None}
    at = image_rd.psnr_at_bpp(0.4, curves["x265"]["bpp"], curves["x265"]["psnr_rgb"])
    assert rows[1]["others"]["x265"]["psnr_rgb"] == at
    assert rows[1]["others"]["x265"]["delta_db"] == pytest.approx(34.0 - at)
    assert rows[1]["others"]["jpeg"]["delta_db"] == pytest.approx(34.0 - 28.0)
    table = "\n".join(image_rd.same_bpp_markdown(rows, "dvc_edic", ["x265", "jpeg"]))
    assert "| 2 | 0.0500 | 26.00 | n/a | n/a | n/a | n/a |" in table
    assert "| 6 | 0.4000 | 34.00 |" in table and "| +6.00 |" in table


def test_holdout_evaluates_exactly_the_images_training_held_back(tmp_path: Path) -> None:
    d = tmp_path / "many"
    d.mkdir()
    for i in range(12):
        Image.fromarray(photo_like(16, 24, seed=i)).save(d / f"{i:03d}.png")
    _, expected = split_holdout(d, fraction=0.25, seed=7, kind="image")
    chosen, record = image_rd.select_images(d, 0.25, 7)
    assert chosen == expected and len(chosen) == 3
    assert record is not None and record["images"] == [p.name for p in expected]
    assert image_rd.select_images(d, None, 0) == (image_rd.list_images(d), None)
    out = tmp_path / "out"
    argv = [str(d), "--out", str(out), "--codecs", "jpeg", "--jpeg-quality", "30,80"]
    assert image_rd.main([*argv, "--holdout", "0.25", "--holdout-seed", "7"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["images"] == [p.name for p in expected]
    assert results["holdout"]["images"] == [p.name for p in expected]
    assert (results["holdout"]["fraction"], results["holdout"]["seed"]) == (0.25, 7)
    assert [p["image"] for p in results["results"]["jpeg"][0]["per_image"]] == results["images"]
    assert image_rd.main([*argv, "--holdout", "1.5"]) == image_rd.EXIT_INPUT


@needs_x265
def test_cli_with_jpeg_and_x265_writes_results_table_and_plot(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [
        str(folder),
        "--out",
        str(out),
        "--codecs",
        "x265,jpeg",
        "--jpeg-quality",
        "20,60,90",
        "--x265-crf",
        "22,32,42",
    ]
    assert image_rd.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    x265 = results["results"]["x265"]
    assert [p["rate_param"] for p in x265] == [22, 32, 42]
    assert x265[0]["bpp"] > x265[1]["bpp"] > x265[2]["bpp"] > 0
    odd = next(p for p in x265[0]["per_image"] if p["image"] == "a_odd.png")
    assert odd["bpp"] == odd["bits"] / (ODD_SIZE[0] * ODD_SIZE[1])  # original pixel count
    settings = results["settings"]["x265"]
    assert "info=0" in settings["options"]["x265-params"]
    assert "keyint=1" in settings["options"]["x265-params"]
    assert settings["options"]["tune"] == "zerolatency"
    assert settings["encoder_version"].startswith("x265")
    assert "x265" in results["bd_rate"] and results["holdout"] is None
    assert results["same_bpp"]["rows"] == []  # no dvc_edic curve to compare
    assert "| x265" in (out / "table.md").read_text()
    assert (out / "plots" / "rd.png").read_bytes().startswith(b"\x89PNG")
    assert image_rd.main(argv) == 0
    assert json.loads((out / "results.json").read_text())["points_reused"] == 6


def test_unknown_codec_is_an_input_error(folder: Path, tmp_path: Path) -> None:
    argv = [str(folder), "--out", str(tmp_path / "o"), "--codecs", "jpeg,webp"]
    assert image_rd.main(argv) == image_rd.EXIT_INPUT


@needs_x265
def test_same_bpp_table_from_a_run_with_dvc_edic(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's plumbing, with dvc_edic's CLI stood in for by JPEG at quality q * 10."""

    def fake_dvc(path, quality, work, python, extra):  # same signature as dvc_point
        return image_rd.jpeg_point(image_rd.read_rgb(path), quality * 10)

    monkeypatch.setattr(image_rd, "dvc_point", fake_dvc)
    out = tmp_path / "out"
    argv = [str(folder), "--out", str(out), "--dvc-quality", "4,7", "--x265-crf", "22,32,42"]
    argv += ["--jpeg-quality", "20,40,70,90"]
    assert image_rd.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]) == {"jpeg", "x265", "dvc_edic"}
    same = results["same_bpp"]
    assert same["anchors"] == ["x265", "jpeg"]
    curves = results["curves"]
    for row, bpp, psnr in zip(
        same["rows"], curves["dvc_edic"]["bpp"], curves["dvc_edic"]["psnr_rgb"], strict=True
    ):
        assert (row["bpp"], row["psnr_rgb"]) == (bpp, psnr)
        for name in ("x265", "jpeg"):
            other = image_rd.psnr_at_bpp(bpp, curves[name]["bpp"], curves[name]["psnr_rgb"])
            assert row["others"][name]["psnr_rgb"] == other
    # the stand-in codes JPEG q40 and q70, measured points of the JPEG curve: exactly equal
    assert [row["others"]["jpeg"]["delta_db"] for row in same["rows"]] == [0.0, 0.0]
    table = (out / "table.md").read_text()
    assert "| dvc_edic quality | bpp | dvc_edic PSNR | x265 PSNR at that bpp | Δ |" in table


def _commands_in_process(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """subprocess.run for `python -m TOOL ...`, run by the tool's cli() in this process."""
    assert cmd[:2] == [sys.executable, "-m"], cmd
    done = run_tool(cmd[2], *cmd[3:])
    return subprocess.CompletedProcess(cmd, done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize("fresh", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["in_process", "fresh_interpreter"])
def test_real_dvc_edic_cli_point(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 fresh: bool) -> None:
    """One dvc_edic point through the real image CLI with tiny untrained weights: the
    commands the runner builds run in this process by default, in fresh interpreters (as
    the runner does) under -m slow."""
    from dvc_edic.models.video import VideoCodecModel
    from dvc_edic.weights import save_weights
    from tests.conftest import tiny_preset

    if not fresh:
        monkeypatch.setattr(image_rd, "subprocess", SimpleNamespace(run=_commands_in_process))

    weights = tmp_path / "tiny.safetensors"
    save_weights(VideoCodecModel(tiny_preset()), weights)
    (folder / "b_square.png").unlink()
    out = tmp_path / "out"
    argv = [str(folder), "--out", str(out), "--codecs", "jpeg,dvc_edic", "--dvc-quality", "3"]
    argv += ["--jpeg-quality", "20,90", "--dvc-args", f"--weights {weights}"]
    assert image_rd.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    (point,) = results["results"]["dvc_edic"]
    one = point["per_image"][0]
    assert one["bits"] > 0 and one["bpp"] == one["bits"] / (ODD_SIZE[0] * ODD_SIZE[1])
    assert math.isfinite(one["psnr_rgb"])
    assert len(results["same_bpp"]["rows"]) == 1
    assert results["bd_rate"]["dvc_edic"]["bd_rate_pct"] is None  # one point: a note, no crash
    assert "2 rate points" in results["bd_rate"]["dvc_edic"]["notes"][0]
