"""The dvc_edic stream container: a versioned header, then one packet per frame.

The format is specified in docs/bitstream.md. Everything here raises only
`dvc_edic.errors.BitstreamError` on bad data, and checks every declared size
against `Limits` before allocating.
"""

from __future__ import annotations

from dvc_edic.bitstream.fields import BITS_PER_BYTE
from dvc_edic.bitstream.header import (
    MAGIC,
    MAX_STORED_QUALITY,
    QUALITY_SCALE,
    Header,
    header_size,
    quantize_quality,
)
from dvc_edic.bitstream.limits import DEFAULT_LIMITS, Limits
from dvc_edic.bitstream.packet import FrameType, Packet, Section
from dvc_edic.bitstream.reader import BitstreamReader
from dvc_edic.bitstream.version import FORMAT_VERSION, READABLE_VERSIONS
from dvc_edic.bitstream.writer import BitstreamWriter

__all__ = [
    "BITS_PER_BYTE",
    "DEFAULT_LIMITS",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_STORED_QUALITY",
    "QUALITY_SCALE",
    "READABLE_VERSIONS",
    "BitstreamReader",
    "BitstreamWriter",
    "FrameType",
    "Header",
    "Limits",
    "Packet",
    "Section",
    "header_size",
    "quantize_quality",
]
