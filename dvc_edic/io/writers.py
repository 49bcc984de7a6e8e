"""The writer interface: frames go to a temporary file that becomes the output
only when the `with` block ends cleanly."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from dvc_edic.errors import InputError
from dvc_edic.io.atomic import AtomicFile
from dvc_edic.io.frames import (
    MIN_BIT_DEPTH,
    Frame,
    VideoInfo,
    max_sample_value,
    sample_dtype,
)

PathLike = str | os.PathLike[str]


def planar_bytes(frame: Frame) -> list[memoryview]:
    """The three planes as stored on disk: bytes at 8 bits, 16-bit little-endian above."""
    little = sample_dtype(frame.bit_depth).newbyteorder("<")
    return [
        memoryview(np.ascontiguousarray(plane, dtype=little)).cast("B") for plane in frame.planes
    ]


class VideoWriter:
    """Context manager that writes frames of one fixed format.

    Subclasses say what goes before the stream and before each frame.
    """

    def __init__(
        self,
        path: PathLike,
        info: VideoInfo,
        *,
        overwrite: bool = False,
        inputs: Sequence[PathLike] = (),
    ) -> None:
        self.info = info
        self.frames_written = 0
        self._out = AtomicFile(path, overwrite=overwrite, inputs=inputs)
        self.path: Path = self._out.target
        try:
            self._out.file.write(self._stream_header())
        except BaseException:
            self._out.abort()
            raise

    def _stream_header(self) -> bytes:
        return b""

    def _frame_header(self) -> bytes:
        return b""

    def write(self, frame: Frame) -> None:
        if self._out.closed:
            raise InputError(f"{self.path}: writer is already closed")
        info = self.info
        if (frame.width, frame.height, frame.bit_depth) != (
            info.width,
            info.height,
            info.bit_depth,
        ):
            raise InputError(
                f"{self.path}: frame is {frame.width}x{frame.height} {frame.bit_depth}-bit, "
                f"the output is {info.width}x{info.height} {info.bit_depth}-bit"
            )
        if info.bit_depth > MIN_BIT_DEPTH:
            top = max(int(plane.max()) for plane in frame.planes)
            if top > max_sample_value(info.bit_depth):
                raise InputError(
                    f"{self.path}: frame {self.frames_written} has sample value {top}, above "
                    f"the {info.bit_depth}-bit maximum {max_sample_value(info.bit_depth)}"
                )
        file = self._out.file
        file.write(self._frame_header())
        for plane in planar_bytes(frame):
            file.write(plane)
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it onto the output name."""
        self._out.commit()

    def abort(self) -> None:
        """Discard everything written; the output name is left untouched."""
        self._out.abort()

    @property
    def closed(self) -> bool:
        return self._out.closed

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {self.info})"
