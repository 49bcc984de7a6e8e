"""One packet per frame: sync marker, frame type, payload length, CRC32, payload.

The payload is a list of named sections. The container does not interpret
section data; the codec decides what `y`, `z` or side-info sections hold. The
CRC covers the frame type and length as well as the payload, so any single
corrupted bit in a packet is detected.

Format version 1 writes each section as (name, shape, u32 length, bytes).
Version 2 writes (one-byte id, LEB128 length, bytes): the decoder derives every
latent shape from the frame size and the model, so storing it bought nothing,
and the 20-odd bytes a section cost were a tenth of a low-rate CIF P-frame.
Version 4 cuts the framing again, from about 22 bytes a P-frame to about 10: a
one-byte tag replaces the four-byte sync and the frame type, the payload length
is a varint, one bit mask names the sections (commonest first), and neither the
fixed-size sections nor the last one store a length. At the low end of the
ladder a skipped P-frame is little more than its framing, so this is where the
bytes were.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum

from dvc_edic.bitstream.fields import as_int, check_range, decode_name, encode_name
from dvc_edic.bitstream.limits import DEFAULT_LIMITS, U8_MAX, U16_MAX, U32_MAX, Limits
from dvc_edic.bitstream.source import ByteSource
from dvc_edic.bitstream.version import (
    COMPACT_SECTIONS_VERSION,
    FORMAT_VERSION,
    LEAN_PACKET_VERSION,
)
from dvc_edic.errors import BitstreamError

# Marks the start of each packet, so a reader that lost its place says so.
SYNC = b"DVCF"
# sync, frame type, payload length, payload crc32.
PACKET_HEAD = struct.Struct("<4sBII")
# The CRC starts right after the sync marker and stops before the CRC field.
CRC_COVERED = struct.Struct("<BI")
SECTION_COUNT = struct.Struct("<H")
U8 = struct.Struct("<B")
U32 = struct.Struct("<I")
# Version 4's head: a tag (TAG_MARK | frame type), a varint payload length, the CRC32.
TAG_MARK = 0xD0
TAG_MARK_BITS = 0xF0
# Smallest possible packet: head plus an empty section list (version 1's count is the wider;
# version 4's empty list is a one-byte mask of 0 after a one-byte length).
MIN_PACKET_SIZE = PACKET_HEAD.size + U8.size
MIN_LEAN_PACKET_SIZE = U8.size + U8.size + U32.size + U8.size
# Version 2 names sections by these ids. New names may only be appended.
SECTION_IDS: dict[str, int] = {
    "z": 0, "y": 1, "mv_z": 2, "mv_y": 3, "res_z": 4, "res_y": 5, "crop": 6, "q": 7,
    "nomc": 8, "bmv": 9, "ires_z": 10, "ires_y": 11, "dct": 12, "lf": 13,
}
_SECTION_NAMES = {code: name for name, code in SECTION_IDS.items()}
# Version 4's mask bit of each section, the commonest first, so that a usual packet
# (block motion, plain warp, a residual; or an I-frame) needs a one-byte mask. The
# payload holds the sections in this order. New names may only be appended.
LEAN_SECTION_ORDER = ("nomc", "bmv", "ires_z", "ires_y", "z", "y", "q",
                      "res_z", "res_y", "mv_z", "mv_y", "crop", "dct", "lf")
_LEAN_BITS = {name: bit for bit, name in enumerate(LEAN_SECTION_ORDER)}
# Sections whose data always has this many bytes: version 4 stores no length for them.
FIXED_SECTION_BYTES: dict[str, int] = {"nomc": 0, "q": 2, "crop": 8}
# LEB128: 7 payload bits a byte, high bit set on every byte but the last.
_VARINT_BITS = 7
_VARINT_MORE = 0x80
_VARINT_MASK = 0x7F
_VARINT_MAX_BYTES = 5  # enough for any u32


def encode_varint(value: int) -> bytes:
    check_range(value, 0, U32_MAX, "varint")
    out = bytearray()
    while True:
        low = value & _VARINT_MASK
        value >>= _VARINT_BITS
        if value:
            out.append(low | _VARINT_MORE)
        else:
            out.append(low)
            return bytes(out)


def min_packet_size(version: int) -> int:
    """The fewest bytes a packet of format ``version`` takes (bounds a header's frame count)."""
    return MIN_LEAN_PACKET_SIZE if version >= LEAN_PACKET_VERSION else MIN_PACKET_SIZE


def looks_like_packet(data: bytes, version: int) -> bool:
    """Whether ``data`` starts the way a packet of format ``version`` does (for error hints)."""
    if version >= LEAN_PACKET_VERSION:
        return bool(data) and data[0] & TAG_MARK_BITS == TAG_MARK
    return data.startswith(SYNC)


def read_varint(next_byte: Callable[[], int], what: str) -> int:
    """LEB128 as this format writes it: at most 5 bytes, no over-long form, <= 2**32 - 1."""
    value = 0
    for number in range(_VARINT_MAX_BYTES):
        byte = next_byte()
        value |= (byte & _VARINT_MASK) << (_VARINT_BITS * number)
        if not byte & _VARINT_MORE:
            if number and not byte:
                raise BitstreamError(f"{what}: over-long varint encoding")
            return check_range(value, 0, U32_MAX, what)
    raise BitstreamError(f"{what}: varint longer than {_VARINT_MAX_BYTES} bytes")


class FrameType(IntEnum):
    I = 0  # noqa: E741 - the codec's own name for an intra frame
    P = 1


@dataclass(frozen=True)
class Section:
    """A named blob with a shape the codec needs to decode it (e.g. a latent's (M, h, w))."""

    name: str
    shape: tuple[int, ...]
    data: bytes

    def __post_init__(self) -> None:
        what = f"section {self.name!r}"
        encode_name(self.name, U8_MAX, "section name")
        if isinstance(self.shape, (str, bytes)) or not isinstance(self.shape, Iterable):
            raise BitstreamError(f"{what}: shape must be a tuple of ints, got {self.shape!r}")
        shape = tuple(as_int(dim, f"{what} shape") for dim in self.shape)
        check_range(len(shape), 0, U8_MAX, f"{what}: number of dims")
        for axis, dim in enumerate(shape):
            check_range(dim, 0, U32_MAX, f"{what}: shape[{axis}]")
        object.__setattr__(self, "shape", shape)
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise BitstreamError(f"{what}: data must be bytes, got {type(self.data).__name__}")
        object.__setattr__(self, "data", bytes(self.data))
        check_range(len(self.data), 0, U32_MAX, f"{what}: data length")

    @property
    def num_elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    def to_bytes(self, version: int = FORMAT_VERSION) -> bytes:
        if version >= COMPACT_SECTIONS_VERSION:
            if self.name not in SECTION_IDS:
                raise BitstreamError(
                    f"section {self.name!r}: format version {version} can only store the "
                    f"sections {sorted(SECTION_IDS)}"
                )
            return U8.pack(SECTION_IDS[self.name]) + encode_varint(len(self.data)) + self.data
        name = self.name.encode("ascii")
        return b"".join(
            (
                U8.pack(len(name)),
                name,
                U8.pack(len(self.shape)),
                struct.pack(f"<{len(self.shape)}I", *self.shape),
                U32.pack(len(self.data)),
                self.data,
            )
        )

    def check_limits(self, limits: Limits, where: str) -> None:
        what = f"{where} section {self.name!r}"
        check_range(len(self.name), 1, limits.max_section_name_len, f"{what}: name length")
        check_range(len(self.shape), 0, limits.max_ndim, f"{what}: ndim")
        for axis, dim in enumerate(self.shape):
            check_range(dim, 0, limits.max_dim, f"{what}: shape[{axis}]")
        check_range(
            self.num_elements,
            0,
            limits.max_section_elements,
            f"{what}: number of elements of shape {self.shape}",
        )


@dataclass(frozen=True)
class Packet:
    """One coded frame."""

    frame_type: FrameType
    sections: tuple[Section, ...]

    def __post_init__(self) -> None:
        try:
            frame_type = FrameType(as_int(self.frame_type, "packet frame_type"))
        except ValueError:
            raise BitstreamError(
                f"packet frame_type: expected one of {[t.name for t in FrameType]}, "
                f"got {self.frame_type!r}"
            ) from None
        object.__setattr__(self, "frame_type", frame_type)
        if not isinstance(self.sections, Iterable):
            raise BitstreamError(f"packet sections: expected a sequence, got {self.sections!r}")
        sections = tuple(self.sections)
        seen: set[str] = set()
        for section in sections:
            if not isinstance(section, Section):
                raise BitstreamError(
                    f"packet sections: expected Section, got {type(section).__name__}"
                )
            if section.name in seen:
                raise BitstreamError(f"packet sections: name {section.name!r} appears twice")
            seen.add(section.name)
        check_range(len(sections), 0, U16_MAX, "packet section count")
        object.__setattr__(self, "sections", sections)

    def section(self, name: str) -> Section:
        for section in self.sections:
            if section.name == name:
                return section
        names = ", ".join(repr(s.name) for s in self.sections) or "none"
        raise BitstreamError(
            f"{self.frame_type.name}-frame packet has no section {name!r} (it has {names})"
        )

    def payload_bytes(self, version: int = FORMAT_VERSION) -> bytes:
        if version >= LEAN_PACKET_VERSION:
            return self._lean_payload()
        count = U8 if version >= COMPACT_SECTIONS_VERSION else SECTION_COUNT
        return count.pack(len(self.sections)) + b"".join(
            section.to_bytes(version) for section in self.sections
        )

    def in_stored_order(self) -> Packet:
        """The same packet with its sections in the order version 4 stores (and reads) them."""
        return Packet(self.frame_type, tuple(sorted(self.sections, key=_lean_bit)))

    def _lean_payload(self) -> bytes:
        ordered = self.in_stored_order().sections
        parts = [encode_varint(sum(1 << _lean_bit(s) for s in ordered))]
        for number, section in enumerate(ordered):
            fixed = FIXED_SECTION_BYTES.get(section.name)
            if fixed is not None and len(section.data) != fixed:
                raise BitstreamError(
                    f"section {section.name!r}: expected {fixed} bytes, got {len(section.data)}"
                )
            if fixed is None and number + 1 < len(ordered):
                parts.append(encode_varint(len(section.data)))
            parts.append(section.data)
        return b"".join(parts)

    def to_bytes(self, version: int = FORMAT_VERSION) -> bytes:
        payload = self.payload_bytes(version)
        check_range(len(payload), 0, U32_MAX, "packet payload length")
        if version >= LEAN_PACKET_VERSION:
            prefix = U8.pack(TAG_MARK | self.frame_type) + encode_varint(len(payload))
            return prefix + U32.pack(zlib.crc32(payload, zlib.crc32(prefix))) + payload
        covered = CRC_COVERED.pack(self.frame_type, len(payload))
        crc = zlib.crc32(payload, zlib.crc32(covered))
        return PACKET_HEAD.pack(SYNC, self.frame_type, len(payload), crc) + payload

    def check_limits(
        self, limits: Limits = DEFAULT_LIMITS, where: str = "packet", version: int = FORMAT_VERSION
    ) -> None:
        """Raise BitstreamError if a reader with `limits` would refuse this packet."""
        check_range(len(self.sections), 0, limits.max_sections, f"{where}: section count")
        for section in self.sections:
            section.check_limits(limits, where)
        size = len(self.payload_bytes(version))
        check_range(size, 0, limits.max_payload_bytes, f"{where}: payload length")

    @classmethod
    def from_bytes(
        cls, data: bytes, limits: Limits = DEFAULT_LIMITS, version: int = FORMAT_VERSION
    ) -> Packet:
        """Parse exactly one packet of format `version` from `data`."""
        source = ByteSource.from_input(data)
        packet = read_packet(source, limits, index=0, version=version)
        if source.offset != len(data):
            raise BitstreamError(
                f"packet ends at offset {source.offset}, but {len(data)} "
                f"bytes were given ({len(data) - source.offset} extra)"
            )
        return packet


def read_packet(
    source: ByteSource, limits: Limits, index: int, version: int = FORMAT_VERSION
) -> Packet:
    """Read packet number `index` at the current offset, checking each field as it comes."""
    if version >= LEAN_PACKET_VERSION:
        return _read_lean_packet(source, limits, index)
    start = source.offset
    where = f"packet {index} (offset {start})"
    head = source.read_exact(PACKET_HEAD.size, f"{where} head")
    sync, frame_code, length, stored_crc = PACKET_HEAD.unpack(head)
    if sync != SYNC:
        raise BitstreamError(
            f"{where}: expected sync marker {SYNC!r}, got {sync!r}; "
            "the stream is corrupted or not aligned on a packet"
        )
    if frame_code not in FrameType._value2member_map_:
        raise BitstreamError(
            f"{where} field frame_type (offset {start + len(SYNC)}): "
            f"unsupported value {frame_code}, expected 0 (I) or 1 (P)"
        )
    length_field = f"{where} field payload_length (offset {start + len(SYNC) + U8.size})"
    count_size = U8.size if version >= COMPACT_SECTIONS_VERSION else SECTION_COUNT.size
    check_range(length, count_size, limits.max_payload_bytes, length_field)
    covered = CRC_COVERED.pack(frame_code, length)
    payload, payload_offset = _checked_payload(
        source, where, length_field, length, (covered, "frame type"), stored_crc
    )
    parse = _parse_sections if version >= COMPACT_SECTIONS_VERSION else _parse_sections_v1
    sections = parse(PayloadCursor(memoryview(payload), payload_offset, where), limits)
    return Packet(FrameType(frame_code), sections)


def _checked_payload(
    source: ByteSource, where: str, length_field: str, length: int,
    covered: tuple[bytes, str], stored_crc: int,
) -> tuple[bytes, int]:
    """The payload and its stream offset, once its length fits the stream and the CRC
    over ``covered`` (the head's bytes before the length's end, and what they are called)
    and the payload matches."""
    remaining = source.remaining()
    if remaining is not None and length > remaining:
        raise BitstreamError(
            f"truncated stream: {length_field} says {length} bytes, but only "
            f"{remaining} remain in the stream"
        )
    payload_offset = source.offset
    payload = source.read_exact(length, f"{where} payload")
    head, head_name = covered
    computed_crc = zlib.crc32(payload, zlib.crc32(head))
    if computed_crc != stored_crc:
        raise BitstreamError(
            f"{where}: CRC32 mismatch, stored 0x{stored_crc:08x}, computed 0x{computed_crc:08x} "
            f"over the {head_name}, length and {length}-byte payload; the packet is corrupted"
        )
    return payload, payload_offset


def _read_lean_packet(source: ByteSource, limits: Limits, index: int) -> Packet:
    """Version 4: tag, varint payload length, CRC32 of both and the payload, payload."""
    start = source.offset
    where = f"packet {index} (offset {start})"
    prefix = bytearray(source.read_exact(U8.size, f"{where} tag"))
    tag = prefix[0]
    frame_code = tag & ~TAG_MARK_BITS & U8_MAX
    if tag & TAG_MARK_BITS != TAG_MARK or frame_code not in FrameType._value2member_map_:
        expected = ", ".join(f"0x{TAG_MARK | t:02x} ({t.name})" for t in FrameType)
        raise BitstreamError(
            f"{where} field tag: expected {expected}, got 0x{tag:02x}; the stream is "
            "corrupted or not aligned on a packet"
        )
    length_field = f"{where} field payload_length (offset {start + U8.size})"

    def next_byte() -> int:
        prefix.extend(source.read_exact(U8.size, length_field))
        return prefix[-1]

    length = read_varint(next_byte, length_field)
    check_range(length, U8.size, limits.max_payload_bytes, length_field)
    (stored_crc,) = U32.unpack(source.read_exact(U32.size, f"{where} crc"))
    payload, payload_offset = _checked_payload(
        source, where, length_field, length, (bytes(prefix), "tag"), stored_crc
    )
    cursor = PayloadCursor(memoryview(payload), payload_offset, where)
    return Packet(FrameType(frame_code), _parse_lean_sections(cursor, limits))


def _lean_bit(section: Section) -> int:
    bit = _LEAN_BITS.get(section.name)
    if bit is None:
        raise BitstreamError(
            f"section {section.name!r}: format versions 2 and later can only store the "
            f"sections {sorted(SECTION_IDS)}"
        )
    return bit


class PayloadCursor:
    """Reads a CRC-checked payload; every length is checked against what is left in it."""

    def __init__(self, payload: memoryview, base: int, where: str) -> None:
        self.payload = payload
        self.base = base
        self.where = where
        self.pos = 0

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def take(self, count: int, what: str) -> memoryview:
        left = len(self.payload) - self.pos
        if count > left:
            raise BitstreamError(
                f"{self.where} {what} (offset {self.offset}): needs {count} bytes, but only "
                f"{left} remain in the {len(self.payload)}-byte payload"
            )
        view = self.payload[self.pos : self.pos + count]
        self.pos += count
        return view

    def varint(self, what: str) -> int:
        field = f"{self.where} {what} (offset {self.offset})"
        return read_varint(lambda: self.take(U8.size, what)[0], field)

    def rest(self) -> int:
        return len(self.payload) - self.pos

    def check_end(self) -> None:
        if self.pos != len(self.payload):
            raise BitstreamError(
                f"{self.where}: {len(self.payload) - self.pos} unused bytes after the last "
                f"section (offset {self.offset}); the payload is malformed"
            )


def _parse_sections(cursor: PayloadCursor, limits: Limits) -> tuple[Section, ...]:
    """Version 2: (id, varint length, data) per section; shapes are the decoder's to derive."""
    where = cursor.where
    (count,) = U8.unpack(cursor.take(U8.size, "section count"))
    check_range(count, 0, limits.max_sections, f"{where} section count (offset {cursor.base})")
    sections: list[Section] = []
    for number in range(count):
        id_offset = cursor.offset
        (code,) = U8.unpack(cursor.take(U8.size, f"section {number} id"))
        name = _SECTION_NAMES.get(code)
        if name is None:
            raise BitstreamError(
                f"{where} section {number} id (offset {id_offset}): unknown id {code}, "
                f"expected one of {sorted(_SECTION_NAMES)}"
            )
        what = f"section {number} {name!r}"
        if any(s.name == name for s in sections):
            raise BitstreamError(f"{where} {what} (offset {id_offset}): duplicate section")
        length = cursor.varint(f"{what} data length")
        data = bytes(cursor.take(length, f"{what} data of {length} bytes"))
        sections.append(Section(name, (), data))
    cursor.check_end()
    return tuple(sections)


def _parse_lean_sections(cursor: PayloadCursor, limits: Limits) -> tuple[Section, ...]:
    """Version 4: a mask of the sections present, then each one's data in mask-bit order,
    with a varint length before it unless its size is fixed or it is the last."""
    mask_offset = cursor.offset
    mask = cursor.varint("section mask")
    if mask >> len(LEAN_SECTION_ORDER):
        raise BitstreamError(
            f"{cursor.where} section mask (offset {mask_offset}): 0x{mask:x} has bits for "
            f"unknown ids; expected only bits 0..{len(LEAN_SECTION_ORDER) - 1}"
        )
    names = [name for bit, name in enumerate(LEAN_SECTION_ORDER) if mask >> bit & 1]
    check_range(
        len(names), 0, limits.max_sections,
        f"{cursor.where} section count (mask at offset {mask_offset})",
    )
    sections: list[Section] = []
    for number, name in enumerate(names):
        what = f"section {number} {name!r}"
        length = FIXED_SECTION_BYTES.get(name)
        if length is None:
            last = number + 1 == len(names)
            length = cursor.rest() if last else cursor.varint(f"{what} data length")
        sections.append(Section(name, (), bytes(cursor.take(length, f"{what} data"))))
    cursor.check_end()
    return tuple(sections)


def _parse_sections_v1(cursor: PayloadCursor, limits: Limits) -> tuple[Section, ...]:
    """Version 1: (name, shape, u32 length, data) per section."""
    where, base, take = cursor.where, cursor.base, cursor.take
    (count,) = SECTION_COUNT.unpack(take(SECTION_COUNT.size, "section count"))
    check_range(count, 0, limits.max_sections, f"{where} section count (offset {base})")
    sections: list[Section] = []
    names: set[str] = set()
    for number in range(count):
        what = f"section {number}"
        field_offset = cursor.offset
        (name_len,) = U8.unpack(take(U8.size, f"{what} name length"))
        check_range(
            name_len,
            1,
            limits.max_section_name_len,
            f"{where} {what} name length (offset {field_offset})",
        )
        name = decode_name(
            bytes(take(name_len, f"{what} name")),
            f"{where} {what} name (offset {field_offset + U8.size})",
        )
        what = f"section {number} {name!r}"
        if name in names:
            raise BitstreamError(f"{where} {what} (offset {field_offset}): duplicate name")
        names.add(name)
        ndim_offset = cursor.offset
        (ndim,) = U8.unpack(take(U8.size, f"{what} ndim"))
        check_range(ndim, 0, limits.max_ndim, f"{where} {what} ndim (offset {ndim_offset})")
        shape = struct.unpack(f"<{ndim}I", take(ndim * U32.size, f"{what} shape"))
        for axis, dim in enumerate(shape):
            dim_offset = ndim_offset + U8.size + U32.size * axis
            check_range(
                dim, 0, limits.max_dim, f"{where} {what} shape[{axis}] (offset {dim_offset})"
            )
        (data_len,) = U32.unpack(take(U32.size, f"{what} data length"))
        data = bytes(take(data_len, f"{what} data of {data_len} bytes"))
        section = Section(name, shape, data)
        section.check_limits(limits, where)
        sections.append(section)
    cursor.check_end()
    return tuple(sections)
