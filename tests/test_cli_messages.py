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
                          "1 to 4 (header field version (offset 4))"]


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


def test_decode_sequence_refuses_an_odd_sized_image_stream_instead_of_padding_it(
    capsys: pytest.CaptureFixture[str], weights: Path, tmp_path: Path
) -> None:
    stream = tmp_path / "odd.dvce"
    code, _, err = run(capsys, image.cli, "encode", png(tmp_path / "odd.png", "RGB", 45, 31),
                       stream, "--weights", weights, "--threads", "1")
    assert code == 0, err
    out = tmp_path / "odd.y4m"
    code, _, err = run(capsys, decode_sequence.cli, stream, "-o", out, "--weights", weights)
    assert code == EXIT_ERROR
    assert lines(err) == [f"error: {stream}: is a still image (45x31, coded as 46x32) made by "
                          "python -m dvc_edic.image; decode it with python -m dvc_edic.image "
                          f"decode {stream} OUT.png"]
    assert not out.exists() and not list(tmp_path.glob(".odd.y4m.*.part"))
    # the image tool gives the true size back
    back = tmp_path / "odd_back.png"
    code, _, err = run(capsys, image.cli, "decode", stream, back, "--weights", weights)
    assert code == 0, err
    assert np.asarray(Image.open(back)).shape == (31, 45, 3)
