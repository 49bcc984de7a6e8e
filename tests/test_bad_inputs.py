"""The bad-input catalogue (docs/errors.md): each case, through the command-line tools.

Every case must either work or fail the way the CLIs promise: exit code 1 and
one line on stderr, ``error: ...``, naming the file and what was expected or
found, with no traceback and no file left behind. The tools run in-process
through their ``cli()`` entry points (a fresh interpreter per call would cost
seconds each); the Ctrl-C case sends a real SIGINT, in the default run to this process
mid-encode, under -m slow to a fresh process as well.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from dvc_edic import decode_sequence, encode_sequence
from dvc_edic.bitstream import FORMAT_VERSION, QUALITY_SCALE, BitstreamReader, Limits
from dvc_edic.bitstream.header import CRC, FIELD_OFFSETS, FIXED, VERSION
from dvc_edic.bitstream.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_PIXELS_FRAME
from dvc_edic.cli import EXIT_ERROR, EXIT_INTERRUPTED
from dvc_edic.codec import SequenceDecoder, SequenceEncoder
from dvc_edic.errors import InputError
from dvc_edic.io import VideoInfo, open_video, open_writer
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.packets import QUALITY_FIELD
from dvc_edic.weights import load_weights, save_weights
from tests.conftest import carphone_frames, smooth_frame, tiny_preset, write_yuv

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 176, 144  # carphone
FRAME_BYTES = WIDTH * HEIGHT * 3 // 2
CLIP = f"clip_{WIDTH}x{HEIGHT}_30.yuv"
# Frames of the clip the Ctrl-C test encodes: long enough to be interrupted mid-way.
LONG_CLIP_FRAMES = 60
# The in-process Ctrl-C comes at the second frame, so a third shows it stopped there.
INTERRUPTED_CLIP_FRAMES = 3
# How long the Ctrl-C test waits for the encoder to start writing, and to stop.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.05


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = VideoCodecModel(tiny_preset())
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(model, path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_yuv(tmp_path_factory.mktemp("clip") / CLIP, carphone_frames(2))


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    previous = torch.get_num_threads()  # the CLIs set the process-wide thread count
    yield
    torch.set_num_threads(previous)


class Tools:
    """encode/decode through the CLIs' own entry points, with stdout and stderr captured."""

    def __init__(self, capsys: pytest.CaptureFixture[str], weights: Path) -> None:
        self._capsys = capsys
        self._common = ["--weights", str(weights), "--threads", "1", "-q"]

    def _run(
        self, cli: Callable[[list[str]], int], args: tuple[str | Path, ...]
    ) -> tuple[int, str]:
        self._capsys.readouterr()
        code = cli([*map(str, args), *self._common])
        return code, self._capsys.readouterr().err

    def encode(self, *args: str | Path) -> tuple[int, str]:
        return self._run(encode_sequence.cli, args)

    def decode(self, *args: str | Path) -> tuple[int, str]:
        return self._run(decode_sequence.cli, args)


@pytest.fixture
def tools(capsys: pytest.CaptureFixture[str], weights: Path) -> Tools:
    return Tools(capsys, weights)


def assert_error(result: tuple[int, str], path: str | Path, *fragments: str) -> str:
    """Exit code 1 and exactly one stderr line, `error: ...`, naming `path` and `fragments`."""
    code, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == EXIT_ERROR, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert str(path) in lines[0], f"the message does not name {path}: {lines[0]}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} missing from: {lines[0]}"
    return lines[0]


def no_outputs(directory: Path, *names: str) -> bool:
    """None of `names` exists in `directory`, nor any temporary `.NAME.*.part` beside it."""
    return not any((directory / n).exists() or list(directory.glob(f".{n}.*.part")) for n in names)


def encode_ok(tools: Tools, src: Path, out: Path, *flags: str) -> None:
    code, err = tools.encode(src, "-o", out, *flags)
    assert code == 0, err


@pytest.mark.parametrize("tool", ["encode", "decode"])
def test_empty_file(tools: Tools, tmp_path: Path, tool: str) -> None:
    name = CLIP if tool == "encode" else "empty.dvce"
    src = tmp_path / name
    src.write_bytes(b"")
    run = tools.encode if tool == "encode" else tools.decode
    assert_error(run(src, "-o", tmp_path / "out.yuv"), src, "0 bytes")
    assert no_outputs(tmp_path, "out.yuv")


def test_size_not_a_multiple_of_the_frame_size(tools: Tools, clip: Path, tmp_path: Path) -> None:
    src = tmp_path / CLIP
    src.write_bytes(clip.read_bytes()[: FRAME_BYTES * 3 // 2])
    # the expected frame size and the bytes left over
    line = assert_error(tools.encode(src, "-o", tmp_path / "o.dvce"), src, str(FRAME_BYTES))
    assert str(FRAME_BYTES // 2) in line
    assert no_outputs(tmp_path, "o.dvce")


@pytest.mark.parametrize(
    "width,height,expect",
    [
        (175, 144, "175 is odd"),
        (176, 143, "143 is odd"),
        (0, 144, "got 0"),
        (176, 0, "got 0"),
        (100_000, 144, "100000 exceeds the maximum of 16384"),
        (16_384, 16_384, "402653184"),  # allowed, but the file is far smaller than one frame
    ],
)
def test_width_or_height_odd_zero_or_huge(
    tools: Tools, clip: Path, tmp_path: Path, width: int, height: int, expect: str
) -> None:
    out = tmp_path / "o.dvce"
    result = tools.encode(clip, "-o", out, "--width", str(width), "--height", str(height))
    assert_error(result, clip, expect)
    assert no_outputs(tmp_path, "o.dvce")


def test_frame_area_above_the_default_cap_is_refused_before_coding(
    tools: Tools, weights: Path, tmp_path: Path
) -> None:
    width, height = DEFAULT_MAX_PIXELS_FRAME[0] + 16, DEFAULT_MAX_PIXELS_FRAME[1]
    src = tmp_path / f"big_{width}x{height}_30.yuv"
    with src.open("wb") as f:  # one frame of the right size, sparse: no data is written
        f.truncate(width * height * 3 // 2)
    line = assert_error(
        tools.encode(src, "-o", tmp_path / "o.dvce"),
        src,
        f"{width}x{height}",
        str(width * height),
        str(DEFAULT_MAX_PIXELS),
        "--max-pixels",
    )
    assert "pixels" in line
    assert no_outputs(tmp_path, "o.dvce")
    # the Python API refuses the same frames, and takes the cap from its Limits
    info = VideoInfo(width=width, height=height, fps=Fraction(30), bit_depth=8)
    with pytest.raises(InputError, match="--max-pixels"):
        SequenceEncoder(load_weights(weights), info, 4.0, -1)
    roomy = Limits(max_pixels=width * height)
    assert SequenceEncoder(load_weights(weights), info, 4.0, -1, roomy).limits == roomy


# A frame small enough to code in a moment, and caps on either side of its area.
SMALL_W, SMALL_H = 64, 48
BELOW_SMALL_AREA = 1000
AT_SMALL_AREA = SMALL_W * SMALL_H


@pytest.fixture
def small_clip(tmp_path: Path) -> Path:
    frames = [smooth_frame(SMALL_H, SMALL_W, seed) for seed in range(2)]
    return write_yuv(tmp_path / f"small_{SMALL_W}x{SMALL_H}_30.yuv", frames)


def test_max_pixels_flag_bounds_the_encoder(tools: Tools, small_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.dvce"
    line = assert_error(
        tools.encode(small_clip, "-o", out, "--max-pixels", str(BELOW_SMALL_AREA)),
        small_clip,
        f"{SMALL_W}x{SMALL_H}",
        str(AT_SMALL_AREA),
        str(BELOW_SMALL_AREA),
        "--max-pixels",
    )
    assert "pixels" in line
    assert no_outputs(tmp_path, out.name)
    encode_ok(tools, small_clip, out, "--max-pixels", str(AT_SMALL_AREA))  # inclusive
    assert BitstreamReader(out.read_bytes()).header.width == SMALL_W


def test_max_pixels_flag_bounds_the_decoder(tools: Tools, small_clip: Path, tmp_path: Path) -> None:
    stream, out = tmp_path / "s.dvce", tmp_path / "o.yuv"
    encode_ok(tools, small_clip, stream)
    assert_error(
        tools.decode(stream, "-o", out, "--max-pixels", str(BELOW_SMALL_AREA)),
        stream,
        f"{SMALL_W}x{SMALL_H}",
        str(AT_SMALL_AREA),
        str(BELOW_SMALL_AREA),
        "--max-pixels",
    )
    assert no_outputs(tmp_path, out.name)
    code, err = tools.decode(stream, "-o", out, "--max-pixels", str(AT_SMALL_AREA))
    assert code == 0, err
    with open_video(out, width=SMALL_W, height=SMALL_H) as r:
        assert r.info.num_frames == 2


@pytest.mark.parametrize("tool", ["encode", "decode"])
def test_max_pixels_below_one_is_refused(
    tools: Tools, small_clip: Path, tmp_path: Path, tool: str
) -> None:
    run = tools.encode if tool == "encode" else tools.decode
    code, err = run(small_clip, "-o", tmp_path / "o.yuv", "--max-pixels", "0")
    assert code == EXIT_ERROR and "--max-pixels must be at least 1, got 0" in err, err
    assert no_outputs(tmp_path, "o.yuv")


def test_ten_bit_input_round_trips_as_ten_bit(tools: Tools, weights: Path, tmp_path: Path) -> None:
    frames = [smooth_frame(64, 96, seed, bit_depth=10) for seed in range(2)]
    info = VideoInfo(width=96, height=64, fps=Fraction(25), bit_depth=10)
    src = tmp_path / "ten.yuv"
    with open_writer(src, info) as w:
        for f in frames:
            w.write(f)
    stream, out = tmp_path / "ten.dvce", tmp_path / "ten.y4m"
    encode_ok(tools, src, stream, "--width", "96", "--height", "64", "--bit-depth", "10")
    header = BitstreamReader(stream.read_bytes()).header
    assert header.bit_depth == 10
    code, err = tools.decode(stream, "-o", out)
    assert code == 0, err
    with open_video(out) as r:
        assert r.info.bit_depth == 10 and r.info.num_frames == 2
        decoded = list(r)
    assert all(f.y.dtype == np.uint16 for f in decoded)
    assert b" C420p10" in out.read_bytes().split(b"\n", 1)[0]  # the file says 10-bit
    # the file holds exactly what the decoder computes in-process
    model = load_weights(weights)
    reader = BitstreamReader(stream.read_bytes())
    dec = SequenceDecoder(model, reader.header)
    assert decoded == [dec.decode(p) for p in reader]


def test_y4m_with_an_unsupported_colour_space(tools: Tools, tmp_path: Path) -> None:
    src = tmp_path / "c444.y4m"
    src.write_bytes(b"YUV4MPEG2 W16 H16 F30:1 C444\nFRAME\n" + bytes(16 * 16 * 3))
    assert_error(tools.encode(src, "-o", tmp_path / "o.dvce"), src, "C444", "4:2:0")
    assert no_outputs(tmp_path, "o.dvce")


def test_mp4_without_a_video_stream(tools: Tools, tmp_path: Path) -> None:
    import av

    src = tmp_path / "audio_only.mp4"
    rate, samples = 8000, 1024
    with av.open(str(src), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, samples), dtype=np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, i * samples
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert_error(tools.encode(src, "-o", tmp_path / "o.dvce"), src, "no video stream", "audio")
    assert no_outputs(tmp_path, "o.dvce")


@pytest.mark.parametrize("tool", ["encode", "decode"])
def test_directory_as_input(tools: Tools, tmp_path: Path, tool: str) -> None:
    src = tmp_path / "frames"
    src.mkdir()
    run = tools.encode if tool == "encode" else tools.decode
    assert_error(run(src, "-o", tmp_path / "o.yuv"), src, "is a directory")
    assert no_outputs(tmp_path, "o.yuv")


@pytest.mark.parametrize("where", ["missing directory", "under a regular file"])
def test_unwritable_output(tools: Tools, clip: Path, tmp_path: Path, where: str) -> None:
    parent = tmp_path / "missing"
    if where == "under a regular file":
        parent = tmp_path / "plain_file"
        parent.write_bytes(b"not a directory")
    out = parent / "o.dvce"
    before = sorted(tmp_path.iterdir())
    assert_error(tools.encode(clip, "-o", out), out, str(parent))
    assert sorted(tmp_path.iterdir()) == before  # nothing created, not even the directory


@pytest.fixture(scope="module")
def stream_bytes(weights: Path, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The clip encoded once by the CLI (the same flags as Tools): tests get their own copy."""
    path = tmp_path_factory.mktemp("stream") / "s.dvce"
    previous = torch.get_num_threads()
    try:
        code = encode_sequence.cli([str(clip), "-o", str(path), "--weights", str(weights),
                                    "--threads", "1", "-q"])
    finally:
        torch.set_num_threads(previous)
    assert code == 0
    return path.read_bytes()


@pytest.fixture
def stream(stream_bytes: bytes, tmp_path: Path) -> Path:
    path = tmp_path / "s.dvce"
    path.write_bytes(stream_bytes)
    return path


def patch_header(stream: Path, field: str, packed: bytes) -> None:
    """Overwrite one header field and its CRC: a stream whose header is intact but says
    something else, as a buggy or hostile encoder would write it."""
    data = bytearray(stream.read_bytes())
    at = FIELD_OFFSETS[field]
    data[at : at + len(packed)] = packed
    crc_at = FIXED.size + data[FIELD_OFFSETS["model_id_len"]]
    data[crc_at : crc_at + CRC.size] = CRC.pack(zlib.crc32(bytes(data[:crc_at])))
    stream.write_bytes(bytes(data))


def test_stream_of_another_format_version(tools: Tools, stream: Path, tmp_path: Path) -> None:
    patch_header(stream, "version", VERSION.pack(FORMAT_VERSION + 1))
    result = tools.decode(stream, "-o", tmp_path / "o.yuv")
    readable = f"versions 1 to {FORMAT_VERSION}"
    assert_error(result, stream, f"version {FORMAT_VERSION + 1}", readable)
    assert no_outputs(tmp_path, "o.yuv")


@pytest.mark.parametrize("quality", [9.0, 0.5])
def test_stream_quality_outside_the_models_range(
    tools: Tools, stream: Path, tmp_path: Path, quality: float
) -> None:
    """The header holds qualities up to 65.535; the model (8 levels here) decides."""
    patch_header(stream, "quality", QUALITY_FIELD.pack(round(quality * QUALITY_SCALE)))
    result = tools.decode(stream, "-o", tmp_path / "o.yuv")
    offset = FIELD_OFFSETS["quality"]
    assert_error(result, stream, f"header field quality (offset {offset}): the stream's "
                 f"quality {quality:g} is outside the range 1..8 of model 'dvc_edic-tiny-test-")
    assert no_outputs(tmp_path, "o.yuv")


def test_truncated_stream(tools: Tools, stream: Path, tmp_path: Path) -> None:
    stream.write_bytes(stream.read_bytes()[:-7])
    assert_error(tools.decode(stream, "-o", tmp_path / "o.yuv"), stream, "truncated")
    assert no_outputs(tmp_path, "o.yuv")


def test_output_equal_to_input_is_refused(tools: Tools, clip: Path, tmp_path: Path) -> None:
    src = tmp_path / CLIP
    src.write_bytes(clip.read_bytes())
    alias = tmp_path / "alias.yuv"
    alias.hardlink_to(src)
    for target in (src, alias):
        assert_error(tools.encode(src, "-o", target, "-f"), target, "over the input")
    # decoding a stream onto itself (a stream may have any name)
    raw_named = tmp_path / "stream.yuv"
    encode_ok(tools, src, raw_named, "--width", str(WIDTH), "--height", str(HEIGHT), "-f")
    before = raw_named.read_bytes()
    assert_error(tools.decode(raw_named, "-o", raw_named, "-f"), raw_named, "over the input")
    assert src.read_bytes() == clip.read_bytes() and raw_named.read_bytes() == before


@pytest.mark.parametrize("tool", ["encode", "decode"])
def test_existing_output_needs_force(
    tools: Tools, clip: Path, stream: Path, tmp_path: Path, tool: str
) -> None:
    src, run = (clip, tools.encode) if tool == "encode" else (stream, tools.decode)
    out = tmp_path / ("o.dvce" if tool == "encode" else "o.yuv")
    out.write_bytes(b"precious")
    assert_error(run(src, "-o", out), out, "already exists", "--force")
    assert out.read_bytes() == b"precious"
    code, err = run(src, "-o", out, "--force")
    assert code == 0, err
    assert out.read_bytes() != b"precious" and out.stat().st_size > 0
    assert not list(tmp_path.glob(f".{out.name}.*.part"))


def test_ctrl_c_mid_encode_leaves_no_file(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The default run's Ctrl-C: a real SIGINT, sent to this process as the encoder starts
    its second frame (the output's .part file is there by then) while the CLI's cli() runs
    (the test below, under -m slow, sends it from outside to a fresh `python -m` process)."""
    src = write_yuv(tmp_path / CLIP, carphone_frames(INTERRUPTED_CLIP_FRAMES))
    out = tmp_path / "long.dvce"
    real, calls, parts = SequenceEncoder.encode, [0], []

    def encode(self: SequenceEncoder, *args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == 2:
            parts.extend(tmp_path.glob(f".{out.name}.*.part"))
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SequenceEncoder, "encode", encode)
    # Python's own Ctrl-C handler, as in a fresh interpreter (see the test below).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = encode_sequence.cli([str(src), "-o", str(out), "--weights", str(weights),
                                    "--threads", "1", "-q"])
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C escaped the CLI")
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert parts, "the encoder had not started writing"
    assert calls[0] == 2 and code == EXIT_INTERRUPTED, err
    assert "interrupted" in err and "Traceback" not in err
    assert no_outputs(tmp_path, out.name)


@pytest.mark.slow  # twin in the default run: the test above (a real SIGINT mid-encode, the
# same checks); this one adds a fresh `python -m` process and its exit status
def test_ctrl_c_during_encode_leaves_no_file(weights: Path, tmp_path: Path) -> None:
    src = write_yuv(tmp_path / CLIP, carphone_frames(LONG_CLIP_FRAMES))
    out = tmp_path / "long.dvce"
    # A pytest started in the background by a non-interactive shell ignores SIGINT, and an
    # ignored signal stays ignored across exec, so the encoder would never see the Ctrl-C:
    # start it with the default disposition, as an interactive shell would.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dvc_edic.encode_sequence", str(src), "-o", str(out),
             "--weights", str(weights), "--threads", "1", "-q"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not list(tmp_path.glob(f".{out.name}.*.part")):  # it has started writing
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the encoder never started writing"
            time.sleep(POLL_S)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=STOP_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "interrupted" in err and "Traceback" not in err
    assert no_outputs(tmp_path, out.name)
