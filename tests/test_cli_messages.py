"""What the command-line tools say, beyond the error catalogue of test_bad_inputs.py.

Warnings for what a tool assumed or dropped, errors that name their file and
stand on their own line next to a progress bar, summaries in English. The
tools run in-process through their ``cli()`` entry points on a tiny model and
64x48 clips, so each case costs about a second.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dvc_edic import decode_sequence, encode_sequence, image
from dvc_edic.bitstream import FORMAT_VERSION
from dvc_edic.cli import EXIT_ERROR
from dvc_edic.errors import InputError
from dvc_edic.io import Frame
from dvc_edic.io.atomic import check_output_path
from tests.conftest import smooth_frame, write_yuv

W, H = 64, 48


@pytest.fixture
def weights(tiny_weights: Path) -> Path:
    return tiny_weights


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    previous = torch.get_num_threads()  # the CLIs set the process-wide thread count
    yield
    torch.set_num_threads(previous)


Cli = Callable[[list[str]], int]


def run(capsys: pytest.CaptureFixture[str], cli: Cli, *args: str | Path) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one in-process run."""
    capsys.readouterr()
    code = cli([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def png(path: Path, mode: str, width: int, height: int) -> Path:
    rng = np.random.default_rng(0)
    channels = len(mode)
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    Image.fromarray(pixels, mode).save(path)
    return path


def test_existing_output_names_the_flag_not_a_python_parameter(tmp_path: Path) -> None:
    out = tmp_path / "o.dvce"
    out.write_bytes(b"x")
    with pytest.raises(InputError) as err:
        check_output_path(out, overwrite=False, inputs=[])
    assert str(err.value) == f"{out}: already exists; pass --force to replace it"


def test_one_frame_is_singular_and_an_assumed_frame_rate_is_a_warning(
    capsys: pytest.CaptureFixture[str], weights: Path, tmp_path: Path
) -> None:
    src = write_yuv(tmp_path / f"clip_{W}x{H}.yuv", [smooth_frame(H, W, 0)])  # no fps in it
    stream = tmp_path / "clip.dvce"
    common = ("--weights", weights, "--threads", "1")
    code, out, err = run(capsys, encode_sequence.cli, src, "-o", stream, "--preset", "fast",
                         *common)
    assert code == 0, err
    assert f"{stream}: 1 frame {W}x{H}," in out and "1 frames" not in out
    # the warning names the file and the rate assumed; then the first progress line
    assert lines(err) == [
        f"warning: {src}: raw YUV has no header and its name gives no frame rate; assuming "
        "30 fps, which the stream records and the kbps figures use (pass --fps to set it)",
        f"encode {src} -> {stream}: 1 frame {W}x{H} 8-bit at 30 fps | preset fast, quality 4",
    ]
    code, _, err = run(capsys, encode_sequence.cli, src, "-o", stream, "-f", "--fps", "25",
                       "-q", *common)
    assert code == 0 and err == "", err  # a stated rate: nothing to warn about
    decoded = tmp_path / "clip.y4m"
    code, out, err = run(capsys, decode_sequence.cli, stream, "-o", decoded, "-q", *common)
    assert code == 0, err
    assert f"{decoded}: 1 frame {W}x{H} decoded" in out and "1 frames" not in out


def _clip_failing_at_frame_1(tmp_path: Path) -> Path:
    """Two 10-bit frames; the second has samples above 511, so reading it as 9-bit fails."""
    def frame(luma: int) -> Frame:
        chroma = np.full((H // 2, W // 2), 200, np.uint16)
        return Frame(y=np.full((H, W), luma, np.uint16), u=chroma, v=chroma, bit_depth=10)

    return write_yuv(tmp_path / f"clip_{W}x{H}_30.yuv", [frame(300), frame(900)])


class FakeTerminal(io.StringIO):
    """A stderr that says it is a terminal, so tqdm draws its bar as it would for a user."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [False, True])
def test_an_error_during_coding_is_a_line_of_its_own_after_the_progress_bar(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, weights: Path,
    tmp_path: Path, terminal: bool,
) -> None:
    src = _clip_failing_at_frame_1(tmp_path)
    out = tmp_path / "o.dvce"
    args = [str(src), "-o", str(out), "--bit-depth", "9", "--preset", "fast", "--weights",
            str(weights), "--threads", "1"]
    fake = FakeTerminal()
    if terminal:
        monkeypatch.setattr("sys.stderr", fake)
    code, _, err = run(capsys, encode_sequence.cli, *args)
    if terminal:
        err = fake.getvalue()
    assert code == EXIT_ERROR
    message = f"error: {src}: frame 1 has sample value 900, above the 9-bit maximum 511"
    assert err.endswith("\n") and err.rstrip("\n").rsplit("\n", 1)[-1].startswith(message), err
    before_error = err[: err.rindex("error: ")]
    assert before_error.endswith("\n"), f"the error is glued to the line before it: {err!r}"
    assert "\r" not in err[err.rindex("error: "):], "the bar was drawn again after the error"
    if terminal:
        assert "| 1/2 [" in before_error  # the bar was there, and ended its line
    else:
        first, *rest = lines(err)  # the first progress line, then only the error
        assert first.startswith(f"encode {src} -> {out}: ") and len(rest) == 1, err
        assert "encode:" not in err  # no bar where stderr is not a terminal
    assert not out.exists()


def test_image_errors_name_the_file(
    capsys: pytest.CaptureFixture[str], weights: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.dvce"
    bad.write_bytes(b"DVCE" + bytes(40))
    code, _, err = run(capsys, image.cli, "decode", bad, tmp_path / "o.png", "--weights", weights)
    assert code == EXIT_ERROR
    assert lines(err) == [f"error: {bad}: stream format version 0, this decoder reads versions "
                          f"1 to {FORMAT_VERSION} (header field version (offset 4))"]


def test_an_alpha_channel_is_dropped_with_a_warning(
    capsys: pytest.CaptureFixture[str], weights: Path, tmp_path: Path
) -> None:
    src = png(tmp_path / "rgba.png", "RGBA", 20, 14)
    code, _, err = run(capsys, image.cli, "encode", src, tmp_path / "o.dvce", "--weights",
                       weights, "--threads", "1")
    assert code == 0, err
    assert lines(err) == [f"warning: {src}: has an alpha channel (mode RGBA), which is dropped: "
                          "the codec codes colour only, so transparent areas come back as the "
                          "colour stored under them"]
    code, _, err = run(capsys, image.cli, "encode", png(tmp_path / "rgb.png", "RGB", 20, 14),
                       tmp_path / "p.dvce", "--weights", weights, "--threads", "1")
    assert code == 0 and err == "", err


def _y4m_planes(path: Path) -> tuple[str, list[np.ndarray]]:
    """A one-frame 8-bit Y4M's header line and its Y, U, V planes (chroma rounded up)."""
    header, frame_line, data = path.read_bytes().split(b"\n", 2)
    assert frame_line == b"FRAME"
    fields = {f[:1]: f[1:] for f in header.split()}
    w, h = int(fields[b"W"]), int(fields[b"H"])
    cw, ch = -(-w // 2), -(-h // 2)
    sizes = [(h, w), (ch, cw), (ch, cw)]
    planes, at = [], 0
    for rows, cols in sizes:
        planes.append(np.frombuffer(data, np.uint8, rows * cols, at).reshape(rows, cols))
        at += rows * cols
    assert at == len(data), "the file holds more than one frame"
    return header.decode(), planes


def test_decode_sequence_writes_an_odd_sized_image_stream_at_its_true_size(
    capsys: pytest.CaptureFixture[str], weights: Path, tmp_path: Path
) -> None:
    """An image is coded at its size padded to even; its crop section gives the true size,
    which decode_sequence writes (Y4M and raw YUV lay out odd sides with chroma rounded
    up), never the padded picture."""
    from dvc_edic.bitstream import BitstreamReader
    from dvc_edic.codec import SequenceDecoder
    from dvc_edic.image import split_crop
    from dvc_edic.weights import load_model

    stream = tmp_path / "odd.dvce"
    code, _, err = run(capsys, image.cli, "encode", png(tmp_path / "odd.png", "RGB", 45, 31),
                       stream, "--weights", weights, "--threads", "1")
    assert code == 0, err
    out = tmp_path / "odd.y4m"
    code, printed, err = run(capsys, decode_sequence.cli, stream, "-o", out, "--weights",
                             weights, "--threads", "1")
    assert code == 0, err
    assert lines(err)[0] == (f"decode {stream} -> {out}: 1 frame 45x31 (a still image, coded "
                             "as 46x32) 8-bit")
    assert f"{out}: 1 frame 45x31 decoded" in printed
    header, planes = _y4m_planes(out)
    assert " W45 H31 " in header
    # the planes are the coded picture's, cropped: luma 45x31, chroma 23x16
    reader = BitstreamReader(stream.read_bytes())
    picture, size = split_crop(reader.read_all()[0], reader.header.width, reader.header.height)
    assert size == (31, 45)
    padded = SequenceDecoder(load_model(weights), reader.header).decode(picture)
    assert (padded.width, padded.height) == (46, 32)
    for got, coded in zip(planes, padded.planes, strict=True):
        np.testing.assert_array_equal(got, coded[: got.shape[0], : got.shape[1]])
    assert [p.shape for p in planes] == [(31, 45), (16, 23), (16, 23)]
    raw = tmp_path / "odd.yuv"
    code, _, err = run(capsys, decode_sequence.cli, stream, "-o", raw, "--weights", weights,
                       "-q", "--threads", "1")
    assert code == 0, err
    assert raw.read_bytes() == b"".join(p.tobytes() for p in planes)
    # the image tool gives the same true size back
    back = tmp_path / "odd_back.png"
    code, _, err = run(capsys, image.cli, "decode", stream, back, "--weights", weights)
    assert code == 0, err
    assert np.asarray(Image.open(back)).shape == (31, 45, 3)


@pytest.mark.parametrize("tool, command", [(encode_sequence, []), (decode_sequence, []),
                                           (image, ["encode"]), (image, ["decode"])])
def test_force_help_names_no_python_parameter(
    capsys: pytest.CaptureFixture[str], tool: object, command: list[str]
) -> None:
    """--help says what --force does in the user's words, not as ``overwrite=True``."""
    with pytest.raises(SystemExit) as done:
        tool.main([*command, "--help"])  # type: ignore[attr-defined]
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--force" in text and "overwrite an existing output file" in text
    assert "overwrite=" not in text and "True" not in text, text
