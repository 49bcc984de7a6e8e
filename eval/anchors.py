"""x264 and x265 anchors in the low-delay settings learned-video-coding papers use.

The same options go to the `ffmpeg` binary when it is on PATH and to PyAV's bundled
libx264/libx265 otherwise, so a user without ffmpeg measures the same encoder
configuration. Bits are the size of the raw Annex-B elementary stream (no
container overhead); the encoder's own version string is read back from the SEI
message it writes into that stream, so the record says which build ran.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dvc_edic.errors import BitstreamError, InputError
from dvc_edic.io import Frame, open_writer
from eval.sources import RawSource, open_raw

# The low-delay defaults (DVC, DCVC and their followers use these with a crf ladder).
DEFAULT_PRESET = "veryfast"
DEFAULT_TUNE = "zerolatency"
# Presets x264 and x265 both accept; `medium` and slower are options for stronger anchors.
PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
# Valid crf range of both encoders (x264 accepts up to 51, x265 up to 51).
CRF_MAX = 51
# Encoder library, raw stream demuxer and file suffix per anchor.
ENCODERS = {"x264": "libx264", "x265": "libx265"}
DEMUXERS = {"x264": "h264", "x265": "hevc"}
SUFFIXES = {"x264": ".264", "x265": ".265"}
# The private-options key each encoder takes its native key=value list from.
PARAMS_KEY = {"x264": "x264-params", "x265": "x265-params"}
# Where each encoder's self-description ends inside its version SEI.
VERSION_PATTERNS = {
    "x264": re.compile(rb"(x264 - core [^\x00]*?) - H\.264"),
    "x265": re.compile(rb"(x265 \(build [^\x00]*?) - H\.265"),
}
# Pixel formats by bit depth (raw input and decoded output).
PIX_FMT_8BIT = "yuv420p"
PIX_FMT_10BIT = "yuv420p10le"


@dataclass(frozen=True)
class AnchorSettings:
    """Everything that decides an anchor's bitstream; it also keys the resume cache."""

    codec: str  # x264 | x265
    crf: float
    intra_period: int  # -1: a single intra frame
    frames: int
    preset: str = DEFAULT_PRESET
    tune: str | None = DEFAULT_TUNE
    extra_params: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.codec not in ENCODERS:
            raise InputError(f"anchor codec must be one of {sorted(ENCODERS)}, got {self.codec!r}")
        if self.preset not in PRESETS:
            raise InputError(f"{self.codec}: preset must be one of {PRESETS}, got {self.preset!r}")
        if not 0 <= self.crf <= CRF_MAX:
            raise InputError(f"{self.codec}: crf must be in [0, {CRF_MAX}], got {self.crf}")
        if self.frames <= 0:
            raise InputError(f"{self.codec}: frames must be positive, got {self.frames}")

    @property
    def keyint(self) -> int:
        """GOP length; with intra period -1, longer than the sequence so only frame 0 is intra."""
        return self.intra_period if self.intra_period > 0 else self.frames + 1


def _fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def native_params(s: AnchorSettings) -> dict[str, str]:
    """The encoder's own key=value options: GOP, no B-frames, no scene cuts."""
    params = {
        "keyint": str(s.keyint),
        "min-keyint": str(s.keyint),
        "bframes": "0",
        "scenecut": "0",
    }
    if s.codec == "x265":
        params["log-level"] = "error"  # x265 otherwise prints its banner per encode
    params.update({str(k): str(v) for k, v in s.extra_params.items()})
    return params


def encoder_options(s: AnchorSettings) -> dict[str, str]:
    """libavcodec private options, identical for the ffmpeg binary and PyAV."""
    opts = {"preset": s.preset, "crf": _fmt_number(s.crf)}
    if s.tune:
        opts["tune"] = s.tune
    opts[PARAMS_KEY[s.codec]] = ":".join(f"{k}={v}" for k, v in native_params(s).items())
    return opts


def pix_fmt(bit_depth: int) -> str:
    if bit_depth == 8:
        return PIX_FMT_8BIT
    if bit_depth == 10:
        return PIX_FMT_10BIT
    raise InputError(f"anchors code 8- or 10-bit 4:2:0 only, got bit depth {bit_depth}")


def ffmpeg_path() -> str | None:
    return shutil.which("ffmpeg")


def backend() -> str:
    """Which implementation runs the anchors here: the ffmpeg binary, else PyAV."""
    return "ffmpeg" if ffmpeg_path() else "pyav"


def ffmpeg_encode_command(src: RawSource, s: AnchorSettings, out: Path) -> list[str]:
    """The ffmpeg command line for one anchor point (raw input, raw Annex-B output)."""
    cmd = [
        ffmpeg_path() or "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_fmt(src.bit_depth),
        "-s",
        f"{src.width}x{src.height}",
        "-framerate",
        str(src.fps),
        "-i",
        str(src.path),
        "-frames:v",
        str(s.frames),
        "-c:v",
        ENCODERS[s.codec],
        "-pix_fmt",
        pix_fmt(src.bit_depth),
        "-g",
        str(s.keyint),
        "-keyint_min",
        str(s.keyint),
        "-bf",
        "0",
        "-sc_threshold",
        "0",
    ]
    for key, value in encoder_options(s).items():
        cmd += [f"-{key}", value]
    cmd += ["-f", DEMUXERS[s.codec], str(out)]
    return cmd


def ffmpeg_decode_command(stream: Path, codec: str, bit_depth: int, out: Path) -> list[str]:
    return [
        ffmpeg_path() or "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        DEMUXERS[codec],
        "-i",
        str(stream),
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_fmt(bit_depth),
        str(out),
    ]


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BitstreamError(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}"
        )


def frame_array(frame: Any, bit_depth: int) -> np.ndarray:
    """One frame's planes stacked the way PyAV's yuv420p(10le) from_ndarray expects."""
    y = np.asarray(frame.y)
    height, width = y.shape
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    flat = np.concatenate(
        [y.reshape(-1), np.asarray(frame.u).reshape(-1), np.asarray(frame.v).reshape(-1)]
    )
    return flat.astype(dtype, copy=False).reshape(height * 3 // 2, width)


def encoder_context(
    s: AnchorSettings, width: int, height: int, bit_depth: int, fps: Fraction
) -> Any:
    """A PyAV encoder for `s`, set up exactly as the ffmpeg command line sets it up."""
    import av

    ctx = av.CodecContext.create(ENCODERS[s.codec], "w")
    ctx.width = width
    ctx.height = height
    ctx.pix_fmt = pix_fmt(bit_depth)
    ctx.framerate = fps
    ctx.time_base = Fraction(1) / fps
    ctx.gop_size = s.keyint
    ctx.max_b_frames = 0
    ctx.options = encoder_options(s)
    return ctx


def decoded_frame(vf: Any, width: int, height: int, bit_depth: int, where: str) -> Frame:
    """A decoded PyAV picture as a planar Frame, checked against the coded size."""
    if (vf.width, vf.height) != (width, height):
        raise BitstreamError(f"{where}: decoded {vf.width}x{vf.height}, expected {width}x{height}")
    fmt = pix_fmt(bit_depth)
    if vf.format.name != fmt:
        vf = vf.reformat(format=fmt)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    flat = vf.to_ndarray().reshape(-1).astype(dtype, copy=False)
    luma, chroma = height * width, (height // 2) * (width // 2)
    return Frame(
        y=flat[:luma].reshape(height, width),
        u=flat[luma : luma + chroma].reshape(height // 2, width // 2),
        v=flat[luma + chroma : luma + 2 * chroma].reshape(height // 2, width // 2),
        bit_depth=bit_depth,
    )


def _pyav_packets(src: RawSource, s: AnchorSettings) -> Iterator[bytes]:
    import av

    ctx = encoder_context(s, src.width, src.height, src.bit_depth, src.fps)
    with open_raw(src.path, src, max_frames=s.frames) as reader:
        for index, frame in enumerate(reader):
            vf = av.VideoFrame.from_ndarray(frame_array(frame, src.bit_depth), format=ctx.pix_fmt)
            vf.pts = index
            for packet in ctx.encode(vf):
                yield bytes(packet)
    for packet in ctx.encode(None):
        yield bytes(packet)


def encode(src: RawSource, s: AnchorSettings, out: Path, use: str | None = None) -> dict[str, Any]:
    """Code `src` into a raw elementary stream at `out`; returns what ran and the bits."""
    use = use or backend()
    part = out.with_name(out.name + ".part")
    if use == "ffmpeg":
        _run(ffmpeg_encode_command(src, s, part), f"ffmpeg {s.codec} encode of {src.path}")
        # ffmpeg picks the muxer from -f; rename after, so a killed run leaves no "finished" file
    elif use == "pyav":
        with part.open("wb") as fh:
            for chunk in _pyav_packets(src, s):
                fh.write(chunk)
    else:
        raise InputError(f"anchor backend must be 'ffmpeg' or 'pyav', got {use!r}")
    part.replace(out)
    data = out.read_bytes()
    version_match = VERSION_PATTERNS[s.codec].search(data)
    return {
        "backend": use,
        "backend_version": backend_version(use),
        "encoder": ENCODERS[s.codec],
        "encoder_version": encoder_version_from_stream(data, s.codec),
        "options": encoder_options(s),
        "bits": 8 * len(data),
        # the encoder's version/options SEI is counted in `bits` (as in any ffmpeg output);
        # its size is recorded so very small or very low-rate streams can be judged
        "version_sei_bytes": _sei_payload_size(data, version_match),
    }


def decode(stream: Path, codec: str, src: RawSource, out: Path, use: str | None = None) -> int:
    """Decode a raw elementary stream to planar YUV at `out`; returns the frame count."""
    use = use or backend()
    if use == "ffmpeg":
        part = out.with_name(out.name + ".part")
        _run(
            ffmpeg_decode_command(stream, codec, src.bit_depth, part), f"ffmpeg decode of {stream}"
        )
        part.replace(out)
        return out.stat().st_size // src.frame_bytes
    import av

    try:
        with (
            av.open(str(stream), format=DEMUXERS[codec]) as container,
            open_writer(out, src.info, overwrite=True, inputs=[src.path, stream]) as writer,
        ):
            for vf in container.decode(video=0):
                writer.write(decoded_frame(vf, src.width, src.height, src.bit_depth, str(stream)))
            count = writer.frames_written
    except av.FFmpegError as exc:
        raise BitstreamError(
            f"{stream}: {DEMUXERS[codec]} stream could not be decoded: {exc}"
        ) from exc
    return count


def encoder_version_from_stream(data: bytes, codec: str) -> str | None:
    """The version string x264/x265 write into an SEI of every stream they make."""
    match = VERSION_PATTERNS[codec].search(data)
    return match.group(1).decode("ascii", "replace") if match else None


def _sei_payload_size(data: bytes, match: re.Match[bytes] | None) -> int | None:
    """Bytes of the version text up to its terminating NUL (the SEI's payload)."""
    if match is None:
        return None
    end = data.find(b"\x00", match.start())
    return (end if end >= 0 else len(data)) - match.start()


def backend_version(use: str) -> str:
    if use == "ffmpeg":
        proc = subprocess.run(
            [ffmpeg_path() or "ffmpeg", "-version"], capture_output=True, text=True, check=False
        )
        return proc.stdout.splitlines()[0] if proc.stdout else "unknown"
    import av

    libs = ", ".join(
        f"{k} {'.'.join(map(str, v))}" for k, v in av.library_versions.items() if k == "libavcodec"
    )
    return f"PyAV {av.__version__} ({libs})"
