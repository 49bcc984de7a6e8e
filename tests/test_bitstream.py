"""The stream container: round trips, exact sizes, and hostile input.

The hostile-input tests hold the reader to its contract: whatever the bytes,
it raises BitstreamError (never another type), does not hang, and allocates
no more than the input's own size.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import struct
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dvc_edic.bitstream import (
    DEFAULT_LIMITS,
    FORMAT_VERSION,
    MAGIC,
    READABLE_VERSIONS,
    BitstreamReader,
    BitstreamWriter,
    FrameType,
    Header,
    Limits,
    Packet,
    Section,
    header_size,
    quantize_quality,
)
from dvc_edic.bitstream.header import FIELD_OFFSETS, FIXED
from dvc_edic.bitstream.limits import DEFAULT_MAX_PIXELS
from dvc_edic.bitstream.packet import (
    FIXED_SECTION_BYTES,
    LEAN_SECTION_ORDER,
    SECTION_IDS,
    TAG_MARK,
    encode_varint,
)
from dvc_edic.bitstream.source import READ_CHUNK
from dvc_edic.bitstream.version import COMPACT_SECTIONS_VERSION, LEAN_PACKET_VERSION
from dvc_edic.errors import BitstreamError, InputError

HASH = hashlib.sha256(b"weights").digest()
FUZZ_EXAMPLES = 200
# A crafted stream must be refused using far less memory than it claims (bytes).
CRAFTED_PEAK_BYTES = 256 * 1024
CRAFTED_SECONDS = 1.0


# The format version the current test writes: every test runs on each readable
# version, so the legacy layout keeps its coverage after a bump.
_version = FORMAT_VERSION


@pytest.fixture(autouse=True, params=READABLE_VERSIONS, ids=lambda v: f"v{v}")
def format_version(request: pytest.FixtureRequest) -> Iterator[int]:
    global _version
    _version = request.param
    yield request.param
    _version = FORMAT_VERSION


def costly_sweep(*default: int):
    """Run a costly test on the versions in ``default``, and on every other readable
    version under -m slow only (the same test ids, so ``-m slow`` runs the full sweep)."""
    return pytest.mark.parametrize(
        "format_version",
        [v if v in default else pytest.param(v, marks=pytest.mark.slow)
         for v in READABLE_VERSIONS],
        indirect=True, ids=lambda v: f"v{v}",
    )


# One version of each packet layout: shapes (1), compact sections (3, the last before
# lean packets) and lean packets (the newest); the versions between run under -m slow.
LAYOUT_SWEEP = costly_sweep(READABLE_VERSIONS[0], LEAN_PACKET_VERSION - 1, FORMAT_VERSION)
# For the tests that never read the version being tested (they build their input from
# FORMAT_VERSION): one run checks it all; the repeats, more random examples, are slow.
VERSION_FREE = costly_sweep(FORMAT_VERSION)


def make_header(**changes: object) -> Header:
    fields: dict[str, object] = dict(
        version=_version,
        width=64,
        height=48,
        fps_num=30000,
        fps_den=1001,
        bit_depth=8,
        chroma="420",
        representation="yuv420",
        matrix="bt709",
        full_range=False,
        frame_count=0,
        model_id="edic-cpu-v1",
        weights_hash=HASH,
        quality=3.5,
        intra_period=-1,
    )
    fields.update(changes)
    return Header(**fields)  # type: ignore[arg-type]


def make_packets() -> list[Packet]:
    if _version >= COMPACT_SECTIONS_VERSION:
        # Version 2 stores no shapes, and names come from the fixed id table.
        return [
            Packet(FrameType.I, (Section("y", (), b"\x01\x02\x03" * 20),
                                 Section("z", (), b"\xff"))),
            Packet(FrameType.P, (Section("mv_y", (), bytes(range(40))),
                                 Section("res_y", (), b"abc"), Section("res_z", (), b""))),
            Packet(FrameType.P, ()),
            Packet(FrameType.P, (Section("mv_z", (), b"x" * 200),)),
        ]
    return [
        Packet(
            FrameType.I,
            (
                Section("y", (8, 3, 4), b"\x01\x02\x03" * 5),
                Section("z", (8, 1, 1), b"\xff"),
                Section("q", (), b""),
            ),
        ),
        Packet(
            FrameType.P,
            (
                Section("mv.y", (4, 3, 4), bytes(range(40))),
                Section("res.y", (8, 3, 4), b"abc"),
                Section("side", (2,), struct.pack("<2i", -7, 9)),
            ),
        ),
        Packet(FrameType.P, ()),
        Packet(FrameType.P, (Section("t4", (1, 2, 3, 4), b"x" * 17),)),
    ]


def stored(packets: list[Packet]) -> list[Packet]:
    """Packets as a reader returns them: version 4 has an order of its own."""
    if _version >= LEAN_PACKET_VERSION:
        return [p.in_stored_order() for p in packets]
    return packets


def write_stream(header: Header | None = None, packets: list[Packet] | None = None) -> bytes:
    buf = io.BytesIO()
    with BitstreamWriter(buf, header or make_header()) as writer:
        for packet in make_packets() if packets is None else packets:
            writer.write_packet(packet)
    return buf.getvalue()


def read_stream(data: object, limits: Limits = DEFAULT_LIMITS) -> tuple[Header, list[Packet]]:
    reader = BitstreamReader(data, limits)  # type: ignore[arg-type]
    return reader.header, list(reader)


class Pipe:
    """A non-seekable input that also returns short reads, like a pipe."""

    def __init__(self, data: bytes, max_read: int = 7) -> None:
        self._data = data
        self._pos = 0
        self._max_read = max_read
        self.largest_request = 0  # a real pipe's read(n) may allocate n bytes up front

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        self.largest_request = max(self.largest_request, size)
        size = self._max_read if size < 0 else min(size, self._max_read)
        chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk


class SinkPipe:
    """A non-seekable output."""

    def __init__(self) -> None:
        self.data = bytearray()

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "changes",
    [
        {},
        dict(representation="rgb", matrix="bt601", full_range=True, bit_depth=10),
        dict(width=16384, height=2, fps_num=25, fps_den=1, quality=8.0, intra_period=1),
        dict(quality=1.0, intra_period=2**31 - 1, frame_count=12, model_id="x" * 64),
    ],
)
def test_header_round_trip(changes: dict[str, object]) -> None:
    header = make_header(**changes)
    data = header.to_bytes()
    assert len(data) == header_size(header)
    assert data[:4] == MAGIC
    assert struct.unpack_from("<H", data, 4)[0] == _version
    assert Header.from_bytes(data) == header


def test_quality_stored_exactly() -> None:
    """The container holds any quality its field can: the range is the model's to check
    (test_codec.py: a decoder refuses a quality outside its model's range)."""
    for milli in [*range(1000, 8001, 7), 0, 65535]:
        quality = milli / 1000
        assert Header.from_bytes(make_header(quality=quality).to_bytes()).quality == quality
    with pytest.raises(BitstreamError, match="multiple of 1/1000"):
        make_header(quality=3.14159)
    assert make_header(quality=quantize_quality(3.14159)).quality == 3.142
    assert make_header(quality=4).quality == 4.0


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(width=0), "width"),
        (dict(height=2**32), "height"),
        (dict(fps_den=0), "fps_den"),
        (dict(bit_depth=7), "bit_depth"),
        (dict(chroma="444"), "chroma"),
        (dict(representation="xyz"), "representation"),
        (dict(matrix="bt2020"), "matrix"),
        (dict(full_range=1), "full_range"),
        (dict(model_id=""), "model_id"),
        (dict(model_id="has space"), "model_id"),
        (dict(model_id="é"), "model_id"),
        (dict(weights_hash=b"\0" * 31), "weights_hash"),
        (dict(quality=65.536), "quality"),  # above what the u16 of thousandths holds
        (dict(quality=-0.001), "quality"),
        (dict(quality=float("nan")), "quality"),
        (dict(intra_period=0), "intra_period"),
        (dict(intra_period=-2), "intra_period"),
        (dict(width=64.0), "width"),
        (dict(width=True), "width"),
    ],
)
def test_header_rejects_bad_fields(changes: dict[str, object], match: str) -> None:
    with pytest.raises(BitstreamError, match=match):
        make_header(**changes)


def test_packet_round_trip() -> None:
    for packet in make_packets():
        data = packet.to_bytes(_version)
        assert [Packet.from_bytes(data, version=_version)] == stored([packet])
    with pytest.raises(BitstreamError, match="extra"):
        Packet.from_bytes(make_packets()[0].to_bytes(_version) + b"\0", version=_version)


def test_packet_section_lookup_and_validation() -> None:
    packet = make_packets()[0]
    assert packet.section("z").data == b"\xff"
    with pytest.raises(BitstreamError, match="no section 'nope'"):
        packet.section("nope")
    with pytest.raises(BitstreamError, match="twice"):
        Packet(FrameType.I, (Section("y", (), b""), Section("y", (), b"")))
    with pytest.raises(BitstreamError, match="frame_type"):
        Packet(2, ())  # type: ignore[arg-type]
    with pytest.raises(BitstreamError, match="shape"):
        Section("y", (-1,), b"")
    with pytest.raises(BitstreamError, match="shape"):
        Section("y", (2.5,), b"")  # type: ignore[arg-type]
    assert Packet(1, [Section("a", [2, 3], bytearray(b"ab"))]).sections[0].shape == (2, 3)  # type: ignore[arg-type]


def test_stream_round_trip_and_size_identity(tmp_path) -> None:
    path = tmp_path / "s.dvce"
    packets = make_packets()
    read_back = stored(packets)
    with open(path, "wb") as f:
        writer = BitstreamWriter(f, make_header(frame_count=0))
        sizes = [writer.write_packet(p) for p in packets]
        final = writer.finalize()
        assert writer.bytes_written == header_size(final) + sum(sizes)
    assert final.frame_count == len(packets)
    data = path.read_bytes()
    assert len(data) == header_size(final) + sum(sizes)
    with open(path, "rb") as f:
        reader = BitstreamReader(f)
        assert reader.header == final
        assert list(reader) == read_back
        assert reader.packet_sizes == sizes
        assert len(data) == reader.header_size + sum(reader.packet_sizes)
        assert reader.read_all() == read_back  # a seekable input can be read again
    assert read_stream(Pipe(data)) == (final, read_back)
    assert read_stream(bytearray(data)) == (final, read_back)


def test_empty_stream_round_trip() -> None:
    data = write_stream(packets=[])
    assert read_stream(data) == (make_header(frame_count=0), [])


def test_writer_checks_limits_and_state() -> None:
    with pytest.raises(BitstreamError, match="width"):
        BitstreamWriter(io.BytesIO(), make_header(width=16385))
    writer = BitstreamWriter(io.BytesIO(), make_header(), Limits(max_ndim=2))
    with pytest.raises(BitstreamError, match="ndim"):
        writer.write_packet(Packet(FrameType.I, (Section("y", (1, 2, 3), b""),)))
    writer.finalize()
    with pytest.raises(BitstreamError, match="after finalize"):
        writer.write_packet(make_packets()[0])


def test_finalize_on_unseekable_output() -> None:
    sink = SinkPipe()
    writer = BitstreamWriter(sink, make_header(frame_count=1))  # type: ignore[arg-type]
    writer.write_packet(make_packets()[0])
    writer.finalize()  # count already right: nothing to patch
    assert read_stream(bytes(sink.data))[1] == stored(make_packets()[:1])
    writer = BitstreamWriter(SinkPipe(), make_header(frame_count=5))  # type: ignore[arg-type]
    with pytest.raises(BitstreamError, match="cannot patch frame_count"):
        writer.finalize()


def test_limits_reject_bad_values() -> None:
    with pytest.raises(InputError):
        Limits(max_width=-1)
    with pytest.raises(InputError):
        Limits(max_sections=1 << 16)


def test_spec_tables_match_the_code() -> None:
    """docs/bitstream.md is the spec; its header offsets and default limits must not drift."""
    spec = (Path(__file__).resolve().parents[1] / "docs" / "bitstream.md").read_text()
    header_table = spec.split("## Header", 1)[1].split("## Packet", 1)[0]
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| `(\w+)` \|", header_table, flags=re.M)
    assert {name: int(offset) for offset, name in rows} == {**FIELD_OFFSETS, "model_id": FIXED.size}
    limits_table = spec.split("## Limits", 1)[1]
    defaults = dict(re.findall(r"^\| `(max_\w+)` \| (\d+)", limits_table, flags=re.M))
    assert {f.name: getattr(DEFAULT_LIMITS, f.name) for f in fields(Limits)} == {
        name: int(value) for name, value in defaults.items()
    }


# ---------------------------------------------------------------- clear errors


def test_bad_magic_message() -> None:
    data = bytearray(write_stream())
    data[:4] = b"RIFF"
    with pytest.raises(BitstreamError, match="not a dvc_edic stream"):
        BitstreamReader(bytes(data))
    with pytest.raises(BitstreamError, match="not a dvc_edic stream"):
        BitstreamReader(b"")


def test_other_version_message() -> None:
    data = bytearray(write_stream())
    struct.pack_into("<H", data, 4, FORMAT_VERSION + 1)
    with pytest.raises(
        BitstreamError,
        match=f"stream format version {FORMAT_VERSION + 1}, this decoder reads versions 1 to "
        f"{FORMAT_VERSION}",
    ):
        BitstreamReader(bytes(data))


def test_unfinalized_stream_is_reported() -> None:
    buf = io.BytesIO()
    writer = BitstreamWriter(buf, make_header(frame_count=0))
    writer.write_packet(make_packets()[0])  # no finalize(): the header still says 0 frames
    with pytest.raises(BitstreamError, match=r"finalize\(\)"):
        read_stream(buf.getvalue())


def test_trailing_garbage_and_missing_packets() -> None:
    data = write_stream()
    with pytest.raises(BitstreamError, match="3 bytes at offset"):
        read_stream(data + b"abc")
    with pytest.raises(BitstreamError, match="trailing bytes"):
        read_stream(Pipe(data + b"abc"))
    reader = BitstreamReader(data)
    short = data[: reader.header_size + len(make_packets()[0].to_bytes(_version))]
    for source in (short, Pipe(short)):
        with pytest.raises(BitstreamError, match=r"after 1 packets, but the header .* says 4"):
            read_stream(source)


def test_payload_crc_mismatch_names_packet() -> None:
    data = bytearray(write_stream())
    data[-1] ^= 0x10
    with pytest.raises(BitstreamError, match=r"packet 3 \(offset \d+\): CRC32 mismatch"):
        read_stream(bytes(data))


# ---------------------------------------------------------------- hostile input


def test_truncation_at_every_offset() -> None:
    data = write_stream()
    for cut in range(len(data)):
        for source in (data[:cut], Pipe(data[:cut])):
            with pytest.raises(BitstreamError):
                read_stream(source)


def test_random_bit_flips_are_all_detected() -> None:
    data = write_stream()
    rng = random.Random(1234)
    for _ in range(400):
        bit = rng.randrange(len(data) * 8)
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        # Header CRC, packet CRC (over type, length and payload) and sync markers
        # leave no bit unprotected, so every single flip must be refused.
        with pytest.raises(BitstreamError):
            read_stream(bytes(flipped))


def _crafted_packet(
    payload: bytes, length: int | None = None, frame_type: int = FrameType.I
) -> bytes:
    length = len(payload) if length is None else length
    if _version >= LEAN_PACKET_VERSION:
        prefix = bytes([(TAG_MARK | frame_type) & 0xFF]) + encode_varint(length)
        return prefix + struct.pack("<I", zlib.crc32(payload, zlib.crc32(prefix))) + payload
    crc = zlib.crc32(payload, zlib.crc32(struct.pack("<BI", frame_type, length)))
    return struct.pack("<4sBII", b"DVCF", frame_type, length, crc) + payload


def _refused_cheaply(data: object, limits: Limits = DEFAULT_LIMITS) -> str:
    tracemalloc.start()
    began = time.perf_counter()
    try:
        with pytest.raises(BitstreamError) as info:
            read_stream(data, limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - began < CRAFTED_SECONDS
    assert peak < CRAFTED_PEAK_BYTES
    return str(info.value)


def test_crafted_huge_claims_do_not_allocate(tmp_path: Path) -> None:
    huge = make_header(width=16384, height=16384, frame_count=2**31).to_bytes()
    crafted = huge + bytes(1024 - len(huge))
    assert "max_pixels" in _refused_cheaply(crafted)  # the frame area comes first
    big = Limits(max_pixels=16384 * 16384)
    assert "frame_count" in _refused_cheaply(crafted, big)
    wide = Limits(max_pixels=16384 * 16384, max_frame_count=2**32 - 1)
    assert "only" in _refused_cheaply(crafted, wide)  # frame count vs bytes that follow

    head = make_header(frame_count=1).to_bytes()
    big_payload = _crafted_packet(b"\0" * 900, length=2**31)
    assert "payload_length" in _refused_cheaply(head + big_payload)
    roomy = Limits(max_payload_bytes=2**32 - 1)
    assert "remain" in _refused_cheaply(head + big_payload, roomy)
    pipe = Pipe(head + big_payload, 4096)
    assert "stream ends" in _refused_cheaply(pipe, roomy)
    assert pipe.largest_request <= READ_CHUNK
    path = tmp_path / "crafted.dvce"
    path.write_bytes(head + big_payload)
    with open(path, "rb") as f:  # buffered file reads allocate what they are asked for
        assert "remain" in _refused_cheaply(f, roomy)

    # A section that claims 2 GB inside a small payload with a valid CRC.
    if _version >= LEAN_PACKET_VERSION:  # mask: y and res_z; y's length is a varint 2**31
        bits = [LEAN_SECTION_ORDER.index(name) for name in ("y", "res_z")]
        section = encode_varint(sum(1 << b for b in bits)) + encode_varint(2**31) + b"\0" * 800
        many = encode_varint((1 << len(SECTION_IDS)) - 1) + b"\0" * 800
    elif _version >= COMPACT_SECTIONS_VERSION:  # id 1 = y, varint 2**31
        section = b"\x01" + b"\x01" + encode_varint(2**31) + b"\0" * 800
        many = b"\xff" + b"\0" * 800
    else:
        section = (
            struct.pack("<H", 1)
            + b"\x01y"
            + b"\x01"
            + struct.pack("<I", 4)
            + struct.pack("<I", 2**31)
            + b"\0" * 800
        )
        many = struct.pack("<H", 65535) + b"\0" * 800
    message = _refused_cheaply(head + _crafted_packet(section))
    assert "section 0 'y' data" in message and "remain" in message

    few = Limits(max_sections=2)
    assert "section count" in _refused_cheaply(head + _crafted_packet(many), few)
    if _version >= LEAN_PACKET_VERSION:  # a mask bit past the id table, a runaway mask
        unknown = encode_varint(1 << len(SECTION_IDS)) + b"\0" * 800
        assert "unknown id" in _refused_cheaply(head + _crafted_packet(unknown))
        assert "varint longer" in _refused_cheaply(head + _crafted_packet(b"\xff" * 800))
        return
    if _version >= COMPACT_SECTIONS_VERSION:  # no shapes; an unknown id and a runaway varint
        assert "unknown id" in _refused_cheaply(head + _crafted_packet(b"\x01\x77" + b"\0" * 800))
        runaway = b"\x01\x01" + b"\xff" * 800
        assert "varint longer" in _refused_cheaply(head + _crafted_packet(runaway))
        return
    deep = struct.pack("<H", 1) + b"\x01y" + b"\xff" + b"\0" * 800
    assert "ndim" in _refused_cheaply(head + _crafted_packet(deep))
    wide_dim = struct.pack("<H", 1) + b"\x01y\x01" + struct.pack("<I", 2**32 - 1) + b"\0" * 800
    assert "shape[0]" in _refused_cheaply(head + _crafted_packet(wide_dim))


# ---------------------------------------------------------------- property tests

names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=32
)
sections = st.builds(
    Section,
    name=names,
    shape=st.lists(st.integers(0, 64), max_size=4).map(tuple),
    data=st.binary(max_size=64),
)
packets = st.builds(
    Packet,
    frame_type=st.sampled_from(FrameType),
    sections=st.lists(sections, max_size=5, unique_by=lambda s: s.name).map(tuple),
)


def _headers_of_width(width: int) -> st.SearchStrategy[Header]:
    # Heights up to 16384, but within Limits.max_pixels so the default reader takes them.
    max_half_height = min(8192, DEFAULT_MAX_PIXELS // width // 2)
    return st.builds(
        make_header,
        width=st.just(width),
        height=st.integers(1, max_half_height).map(lambda n: 2 * n),
        fps_num=st.integers(1, 2**32 - 1),
        fps_den=st.integers(1, 2**32 - 1),
        bit_depth=st.integers(8, 16),
        representation=st.sampled_from(["yuv420", "rgb"]),
        matrix=st.sampled_from(["bt709", "bt601"]),
        full_range=st.booleans(),
        model_id=names,
        quality=st.integers(1000, 8000).map(lambda m: m / 1000),
        intra_period=st.one_of(st.just(-1), st.integers(1, 2**31 - 1)),
    )


def _as_current_version(packet: Packet) -> Packet:
    """Version 2 stores only the named sections of its id table, without shapes."""
    if _version < COMPACT_SECTIONS_VERSION:
        return packet
    ids = list(LEAN_SECTION_ORDER if _version >= LEAN_PACKET_VERSION else SECTION_IDS)
    renamed = [Section(ids[i], (), s.data) for i, s in enumerate(packet.sections)]
    if _version >= LEAN_PACKET_VERSION:  # fixed-size sections have their size
        renamed = [_fixed_size(s) for s in renamed]
    return Packet(packet.frame_type, tuple(renamed))


def _fixed_size(section: Section) -> Section:
    size = FIXED_SECTION_BYTES.get(section.name)
    if size is None:
        return section
    return Section(section.name, (), section.data[:size].ljust(size, b"\0"))


headers = st.integers(1, 8192).map(lambda n: 2 * n).flatmap(_headers_of_width)
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@LAYOUT_SWEEP
@FUZZ
@given(header=headers, stream=st.lists(packets, max_size=4))
def test_fuzz_round_trip(header: Header, stream: list[Packet]) -> None:
    stream = [_as_current_version(p) for p in stream]
    data = write_stream(header, stream)
    assert read_stream(data) == (header.with_frame_count(len(stream)), stream)


def _mutations(data: bytes, edits: list[tuple[int, int, int]]) -> Iterator[bytes]:
    out = bytearray(data)
    for kind, pos, value in edits:
        pos %= len(out) + 1
        if kind == 0 and pos < len(out):
            out[pos] = value
        elif kind == 1:
            out.insert(pos, value)
        elif pos < len(out):
            del out[pos]
        yield bytes(out)


@LAYOUT_SWEEP
@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255)),
        min_size=1,
        max_size=6,
    )
)
def test_fuzz_mutated_streams_raise_only_bitstream_error(edits: list[tuple[int, int, int]]) -> None:
    data = write_stream()
    original = read_stream(data)
    for mutated in _mutations(data, edits):
        try:
            parsed = read_stream(mutated)
        except BitstreamError:
            continue
        assert mutated == data or parsed == original


@VERSION_FREE
@FUZZ
@given(tail=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_after_magic(tail: bytes) -> None:
    for data in (tail, MAGIC + tail, MAGIC + struct.pack("<H", FORMAT_VERSION) + tail):
        with pytest.raises(BitstreamError):
            read_stream(data)


@LAYOUT_SWEEP
@FUZZ
@given(payload=st.binary(max_size=200), frame_type=st.integers(0, 255))
def test_fuzz_payloads_with_valid_crc(payload: bytes, frame_type: int) -> None:
    """Past the CRC the section parser sees arbitrary bytes; it must refuse or be exact."""
    head = make_header(frame_count=1).to_bytes()
    data = head + _crafted_packet(payload, frame_type=frame_type)
    try:
        _, (packet,) = read_stream(data)
    except BitstreamError:
        return
    assert head + packet.to_bytes(_version) == data  # anything accepted is canonical


@VERSION_FREE
@FUZZ
@given(fixed=st.binary(min_size=64, max_size=64), model_id=st.binary(min_size=1, max_size=70))
def test_fuzz_headers_with_valid_crc(fixed: bytes, model_id: bytes) -> None:
    body = MAGIC + struct.pack("<H", FORMAT_VERSION) + fixed[:-1] + bytes([len(model_id)])
    body += model_id
    data = body + struct.pack("<I", zlib.crc32(body))
    try:
        header = Header.from_bytes(data)
    except BitstreamError:
        return
    assert header.to_bytes() == data


def test_odd_420_dimensions_are_a_stream_error() -> None:
    """4:2:0 cannot describe an odd size: such a header is corrupt, not a bad input file."""
    with pytest.raises(BitstreamError, match="even dimensions"):
        make_header(width=175)
