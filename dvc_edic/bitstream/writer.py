"""Streams a header and packets to a file, patching the frame count at the end.

The encoder does not know how many frames it will write until the input ends,
so the header is written first with whatever count the caller gave and
`finalize()` rewrites it in place (same size, only frame_count and the CRC
change). Every header and packet is checked against the reader's limits
first, so this writer never produces a stream the default reader refuses.
"""

from __future__ import annotations

from types import TracebackType
from typing import BinaryIO

from dvc_edic.bitstream.header import Header
from dvc_edic.bitstream.limits import DEFAULT_LIMITS, Limits
from dvc_edic.bitstream.packet import Packet
from dvc_edic.errors import BitstreamError


class BitstreamWriter:
    """Writes one stream to `fileobj` (binary, ideally seekable for `finalize`)."""

    def __init__(self, fileobj: BinaryIO, header: Header, limits: Limits = DEFAULT_LIMITS) -> None:
        if not isinstance(header, Header):
            raise BitstreamError(f"expected a Header, got {type(header).__name__}")
        header.check_limits(limits)
        self._file = fileobj
        self._header = header
        self._limits = limits
        self._packets = 0
        self._bytes = 0
        self._finalized = False
        self._start: int | None
        try:
            self._start = fileobj.tell() if fileobj.seekable() else None
        except (AttributeError, OSError):
            self._start = None
        self._write(header.to_bytes())

    @property
    def header(self) -> Header:
        """The header as last written (frame_count is patched by finalize)."""
        return self._header

    @property
    def bytes_written(self) -> int:
        return self._bytes

    @property
    def packets_written(self) -> int:
        return self._packets

    def _write_all(self, data: bytes) -> None:
        # Raw files may write less than asked; buffered ones write everything.
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            if written is None:  # a raw non-blocking file that could not write now
                raise BitstreamError("the output did not accept the data (non-blocking file?)")
            view = view[written:]

    def _write(self, data: bytes) -> None:
        self._write_all(data)
        self._bytes += len(data)

    def write_packet(self, packet: Packet) -> int:
        """Append one packet; returns its size in bytes."""
        if self._finalized:
            raise BitstreamError("write_packet after finalize(): the stream is closed")
        if not isinstance(packet, Packet):
            raise BitstreamError(f"expected a Packet, got {type(packet).__name__}")
        if self._packets >= self._limits.max_frame_count:
            raise BitstreamError(
                f"packet {self._packets}: a stream holds at most "
                f"{self._limits.max_frame_count} frames (Limits.max_frame_count)"
            )
        version = self._header.version
        packet.check_limits(self._limits, f"packet {self._packets}", version)
        data = packet.to_bytes(version)
        self._write(data)
        self._packets += 1
        return len(data)

    def finalize(self) -> Header:
        """Set the header's frame_count to the packets written; returns the final header."""
        if self._finalized:
            return self._header
        if self._header.frame_count != self._packets:
            if self._start is None:
                raise BitstreamError(
                    f"cannot patch frame_count: the output cannot seek, the header says "
                    f"{self._header.frame_count} frames, {self._packets} were written"
                )
            final = self._header.with_frame_count(self._packets)
            end = self._file.tell()
            self._file.seek(self._start)
            self._write_all(final.to_bytes())
            self._file.seek(end)
            self._header = final
        flush = getattr(self._file, "flush", None)
        if callable(flush):
            flush()
        self._finalized = True
        return self._header

    def __enter__(self) -> BitstreamWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # On an exception the stream stays unfinalized, which a reader reports.
        if exc_type is None:
            self.finalize()
