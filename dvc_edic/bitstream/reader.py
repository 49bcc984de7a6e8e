"""Reads a stream: header on construction, packets on iteration.

Nothing is allocated from a declared size until that size has been checked
against `Limits` and against the bytes actually left in the input, so a
crafted file can cost no more memory than its own length.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from dvc_edic.bitstream.header import FIELD_OFFSETS, Header, header_size, read_header
from dvc_edic.bitstream.limits import DEFAULT_LIMITS, Limits
from dvc_edic.bitstream.packet import Packet, looks_like_packet, min_packet_size, read_packet
from dvc_edic.bitstream.source import ByteSource
from dvc_edic.errors import BitstreamError

# How many trailing bytes to read, at most, to report them on a pipe.
TRAILING_PROBE = 64


class BitstreamReader:
    """`BitstreamReader(bytes_or_binary_file)`; iterate for packets."""

    def __init__(
        self, source: bytes | bytearray | memoryview | BinaryIO, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        if not isinstance(limits, Limits):
            raise BitstreamError(f"limits must be a Limits, got {type(limits).__name__}")
        self._limits = limits
        self._source = ByteSource.from_input(source)
        self.header: Header = read_header(self._source, limits)
        self.header_size = header_size(self.header)
        self.packet_sizes: list[int] = []
        self._started = False
        remaining = self._source.remaining()
        smallest = min_packet_size(self.header.version)
        needed = self.header.frame_count * smallest
        if remaining is not None and needed > remaining:
            raise BitstreamError(
                f"truncated or corrupted stream: header field frame_count (offset "
                f"{FIELD_OFFSETS['frame_count']}) says {self.header.frame_count}; that many need "
                f"at least {needed} bytes of packets ({smallest} per packet), but only "
                f"{remaining} bytes follow the header"
            )

    def __iter__(self) -> Iterator[Packet]:
        if self._started:
            self._source.rewind(self.header_size)
        self._started = True
        self.packet_sizes = []
        return self._packets()

    def read_all(self) -> list[Packet]:
        """All packets, with the stream fully checked (frame count, trailing bytes)."""
        return list(self)

    def _packets(self) -> Iterator[Packet]:
        expected = self.header.frame_count
        for index in range(expected):
            start = self._source.offset
            if self._source.remaining() == 0:
                self._missing(index, start)
            try:
                packet = read_packet(self._source, self._limits, index, self.header.version)
            except BitstreamError:
                if self._source.offset == start:  # an input of unknown size just ended
                    self._missing(index, start)
                raise
            self.packet_sizes.append(self._source.offset - start)
            yield packet
        self._check_end()

    def _missing(self, index: int, offset: int) -> None:
        raise BitstreamError(
            f"truncated stream: it ends at offset {offset} after {index} packets, but the "
            f"header (field frame_count, offset {FIELD_OFFSETS['frame_count']}) says "
            f"{self.header.frame_count}"
        )

    def _check_end(self) -> None:
        offset = self._source.offset
        remaining = self._source.remaining()
        if remaining == 0:
            return
        trailing = self._source.read_upto(min(TRAILING_PROBE, remaining or TRAILING_PROBE))
        if not trailing:
            return
        amount = f"{remaining} bytes" if remaining is not None else "trailing bytes"
        hint = ""
        if looks_like_packet(trailing, self.header.version):
            hint = (
                " that look like another packet: the header's frame_count is too small "
                "(was BitstreamWriter.finalize() called?)"
            )
        raise BitstreamError(
            f"{amount} at offset {offset}, after the last of the {self.header.frame_count} "
            f"packets the header announces{hint}; expected the end of the stream"
        )
