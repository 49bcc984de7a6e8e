"""The reader interface shared by raw YUV, Y4M and container inputs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np

from dvc_edic.errors import InputError
from dvc_edic.io.frames import (
    Frame,
    VideoInfo,
    chroma_size,
    max_sample_value,
    sample_dtype,
)


class InputNotFoundError(InputError, FileNotFoundError):
    """The input path does not exist (both an InputError and a FileNotFoundError)."""


def check_input_file(path: str | os.PathLike[str]) -> Path:
    """Reject missing paths, directories, special files and empty files up front."""
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a video file")
    if not p.is_file():
        raise InputError(f"{p}: is not a regular file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: is empty (0 bytes), expected a video file")
    return p


def open_binary(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot be opened for reading: {exc.strerror}") from None


def check_max_frames(max_frames: int | None) -> int | None:
    if max_frames is None:
        return None
    if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)):
        raise InputError(f"max_frames must be an integer, got {max_frames!r}")
    if max_frames < 1:
        raise InputError(f"max_frames must be at least 1, got {max_frames}")
    return int(max_frames)


def read_exact(file: BinaryIO, buffer: memoryview) -> int:
    """Fill buffer from file; return how many bytes arrived (short only at EOF)."""
    filled = 0
    while filled < len(buffer):
        count = file.readinto(buffer[filled:])
        if not count:
            break
        filled += count
    return filled


def planar_frame_from_file(
    file: BinaryIO, info: VideoInfo, where: str, index: int
) -> tuple[Frame | None, int]:
    """Read one planar 4:2:0 frame into a fresh buffer.

    Returns (frame, bytes_read); frame is None when fewer than a whole frame's
    bytes were available, so the caller can phrase the error for its format.
    Samples above the bit depth's maximum mean the wrong --bit-depth (or a
    16-bit file read as 10-bit), so they are rejected rather than passed on.
    """
    dtype = sample_dtype(info.bit_depth).newbyteorder("<")
    width, height = info.width, info.height
    cw, ch = chroma_size(width, height)
    samples = np.empty(width * height + 2 * cw * ch, dtype=dtype)
    got = read_exact(file, memoryview(samples).cast("B"))
    if got < samples.nbytes:
        return None, got
    samples = samples.astype(sample_dtype(info.bit_depth), copy=False)  # no-op on LE hosts
    if info.bit_depth > 8:
        top = int(samples.max())
        if top > max_sample_value(info.bit_depth):
            raise InputError(
                f"{where}: frame {index} has sample value {top}, above the "
                f"{info.bit_depth}-bit maximum {max_sample_value(info.bit_depth)}; "
                "is the bit depth right?"
            )
    luma_end = width * height
    y = samples[:luma_end].reshape(height, width)
    u = samples[luma_end : luma_end + cw * ch].reshape(ch, cw)
    v = samples[luma_end + cw * ch :].reshape(ch, cw)
    return Frame(y=y, u=u, v=v, bit_depth=info.bit_depth), got


class VideoReader:
    """Context manager and iterator over the frames of one input, one at a time.

    info.num_frames is the number of frames iteration will yield (already capped
    by max_frames) when the format states it, else None.
    """

    def __init__(self, path: Path, info: VideoInfo, max_frames: int | None) -> None:
        self.path = path
        self.info = info
        self.max_frames = max_frames
        self.frames_read = 0
        self._closed = False

    # Subclasses produce the next frame or None at the end of the input.
    def _read_frame(self) -> Frame | None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def read(self) -> Frame | None:
        """The next frame, or None once the input (or max_frames) is exhausted."""
        if self._closed:
            raise InputError(f"{self.path}: reader is closed")
        if self.max_frames is not None and self.frames_read >= self.max_frames:
            return None
        frame = self._read_frame()
        if frame is not None:
            self.frames_read += 1
        return frame

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        frame = self.read()
        if frame is None:
            raise StopIteration
        return frame

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {self.info})"


def merge_override(where: Path, name: str, header_value: Any, flag_value: Any | None) -> Any:
    """A flag may restate what a self-describing file says, not contradict it."""
    if flag_value is not None and flag_value != header_value:
        raise InputError(
            f"{where}: --{name.replace('_', '-')} {flag_value} contradicts the file, which "
            f"says {header_value}"
        )
    return header_value
