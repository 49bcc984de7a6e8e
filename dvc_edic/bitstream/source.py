"""A byte source that never trusts a declared length.

Reads go through `read_exact`, which asks for at most `READ_CHUNK` bytes at a
time, so a stream that claims a 2 GB field but holds 1 KB costs 1 KB of
memory, whatever the file object is. For seekable inputs the size is known
up front and lengths are compared with it before anything is read.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

from dvc_edic.errors import BitstreamError

# Largest single read; bounds memory on inputs whose size is unknown (pipes).
READ_CHUNK = 1 << 20


def _probe_size(fileobj: BinaryIO) -> tuple[int, int] | None:
    """(start, end) positions of a seekable input, None if it cannot seek."""
    try:
        if not fileobj.seekable():
            return None
        start = fileobj.tell()
        end = fileobj.seek(0, os.SEEK_END)
        fileobj.seek(start)
    except (AttributeError, OSError, ValueError):
        return None
    return start, end


class ByteSource:
    """Wraps a binary file object; tracks the offset from where reading began."""

    def __init__(self, fileobj: BinaryIO) -> None:
        if not callable(getattr(fileobj, "read", None)):
            raise BitstreamError(
                f"cannot read a stream from {type(fileobj).__name__}: expected bytes or a "
                "binary file object"
            )
        self._file = fileobj
        self.offset = 0
        bounds = _probe_size(fileobj)
        self._start = None if bounds is None else bounds[0]
        self._size = None if bounds is None else max(bounds[1] - bounds[0], 0)

    @classmethod
    def from_input(cls, data: object) -> ByteSource:
        if isinstance(data, (bytes, bytearray, memoryview)):
            return cls(io.BytesIO(bytes(data)))
        return cls(data)  # type: ignore[arg-type]

    @property
    def seekable(self) -> bool:
        return self._start is not None

    def remaining(self) -> int | None:
        """Bytes left after the current offset, or None when the size is unknown."""
        return None if self._size is None else max(self._size - self.offset, 0)

    def rewind(self, offset: int) -> None:
        """Go back to `offset` (seekable inputs only)."""
        if self._start is None:
            raise BitstreamError("cannot re-read a stream from an input that cannot seek")
        self._file.seek(self._start + offset)
        self.offset = offset

    def read_upto(self, count: int) -> bytes:
        """Read up to `count` bytes; fewer only at the end of the stream."""
        parts: list[bytes] = []
        got = 0
        while got < count:
            chunk = self._file.read(min(count - got, READ_CHUNK))
            if not chunk:
                break
            if not isinstance(chunk, (bytes, bytearray)):
                raise BitstreamError(
                    f"the input returned {type(chunk).__name__}, not bytes: open it in binary mode"
                )
            parts.append(bytes(chunk))
            got += len(chunk)
        self.offset += got
        return b"".join(parts)

    def read_exact(self, count: int, what: str) -> bytes:
        """Read exactly `count` bytes or raise a BitstreamError naming `what`."""
        start = self.offset
        remaining = self.remaining()
        if remaining is not None and count > remaining:
            raise BitstreamError(
                f"truncated stream: {what} needs {count} bytes at offset {start}, "
                f"but only {remaining} remain (stream size {self._size})"
            )
        data = self.read_upto(count)
        if len(data) != count:
            raise BitstreamError(
                f"truncated stream: {what} needs {count} bytes at offset {start}, "
                f"but the stream ends after {len(data)} (at offset {self.offset})"
            )
        return data
