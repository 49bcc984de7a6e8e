"""The stream header: everything a decoder must know before the first packet.

Layout (little endian), identical in format versions 1 to 9 (they differ in the packets)::

    magic, version, width, height, fps_num, fps_den, bit_depth, chroma,
    representation, matrix, range, frame_count, quality, intra_period,
    weights_hash, model_id_len | model_id | crc32

The fixed part comes first so the reader can check magic and version before
it interprets anything else, and the only variable field (model id) has a
one-byte length that is bounded before it is read.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, replace
from fractions import Fraction

from dvc_edic.bitstream.fields import as_int, check_range, decode_name, encode_name
from dvc_edic.bitstream.limits import DEFAULT_LIMITS, U8_MAX, U16_MAX, U32_MAX, Limits
from dvc_edic.bitstream.source import ByteSource
from dvc_edic.bitstream.version import FORMAT_VERSION, READABLE_VERSIONS
from dvc_edic.errors import BitstreamError

MAGIC = b"DVCE"

# Enum codes as stored in the stream. New values may only be appended.
CHROMA_CODES: dict[str, int] = {"420": 0}
REPRESENTATION_CODES: dict[str, int] = {"yuv420": 0, "rgb": 1}
MATRIX_CODES: dict[str, int] = {"bt709": 0, "bt601": 1}
RANGE_LIMITED = 0
RANGE_FULL = 1

MIN_BIT_DEPTH = 8
MAX_BIT_DEPTH = 16
# Quality is stored as an integer number of thousandths so that encoder and
# decoder derive gains from the very same value.
QUALITY_SCALE = 1000
# All the container checks: what the u16 field holds. The range a stream may use
# is its model's (MIN_QUALITY..quality_levels of the preset), which the decoder
# checks once it has the model; a preset whose range the field cannot hold is
# refused when it is parsed.
MAX_STORED_QUALITY = U16_MAX / QUALITY_SCALE
# -1 means "only the first frame is intra"; N >= 1 means an I-frame every N frames.
INTRA_ONLY_FIRST = -1
I32_MAX = 0x7FFF_FFFF
WEIGHTS_HASH_LEN = 32  # sha256 digest

# (name, struct code) of the fixed part, in stream order.
FIXED_FIELDS: tuple[tuple[str, str], ...] = (
    ("magic", "4s"),
    ("version", "H"),
    ("width", "I"),
    ("height", "I"),
    ("fps_num", "I"),
    ("fps_den", "I"),
    ("bit_depth", "B"),
    ("chroma", "B"),
    ("representation", "B"),
    ("matrix", "B"),
    ("range", "B"),
    ("frame_count", "I"),
    ("quality", "H"),
    ("intra_period", "i"),
    ("weights_hash", f"{WEIGHTS_HASH_LEN}s"),
    ("model_id_len", "B"),
)
FIXED = struct.Struct("<" + "".join(code for _, code in FIXED_FIELDS))
FIELD_OFFSETS: dict[str, int] = {
    name: struct.calcsize("<" + "".join(code for _, code in FIXED_FIELDS[:i]))
    for i, (name, _) in enumerate(FIXED_FIELDS)
}
MAGIC_SIZE = len(MAGIC)
VERSION = struct.Struct("<H")
CRC = struct.Struct("<I")


# Integer fields and the range the format allows for each (limits come on top).
_INT_FIELD_RANGES: tuple[tuple[str, int, int], ...] = (
    ("width", 1, U32_MAX),
    ("height", 1, U32_MAX),
    ("fps_num", 1, U32_MAX),
    ("fps_den", 1, U32_MAX),
    ("bit_depth", MIN_BIT_DEPTH, MAX_BIT_DEPTH),
    ("frame_count", 0, U32_MAX),
)


def field_where(field: str) -> str:
    """How messages name a header field: by name and byte offset, for a hex viewer."""
    return f"header field {field} (offset {FIELD_OFFSETS[field]})"


def _decode_enum(codes: dict[str, int], code: int, field: str) -> str:
    for name, value in codes.items():
        if value == code:
            return name
    known = ", ".join(f"{v}={k}" for k, v in codes.items())
    raise BitstreamError(f"{field_where(field)}: unsupported code {code}, expected one of {known}")


def _check_enum(codes: dict[str, int], value: object, field: str) -> str:
    if value not in codes:
        raise BitstreamError(
            f"{field_where(field)}: expected one of {sorted(codes)}, got {value!r}"
        )
    return value  # type: ignore[return-value]


def quantize_quality(quality: float) -> float:
    """Snap a quality to the stored grid, so callers can build a valid Header."""
    return round(float(quality) * QUALITY_SCALE) / QUALITY_SCALE


@dataclass(frozen=True)
class Header:
    """Stream-level parameters; construction checks what the format can express.

    Bounds that a reader may choose (dimensions, frame count...) are checked
    separately by `check_limits`, since a caller may widen them.
    """

    width: int
    height: int
    fps_num: int
    fps_den: int
    bit_depth: int
    chroma: str
    representation: str
    matrix: str
    full_range: bool
    frame_count: int
    model_id: str
    weights_hash: bytes
    quality: float
    intra_period: int
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        def set_(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        for name, low, high in _INT_FIELD_RANGES:
            where = field_where(name)
            set_(name, check_range(as_int(getattr(self, name), where), low, high, where))
        _check_enum(CHROMA_CODES, self.chroma, "chroma")
        if self.chroma == "420" and (self.width % 2 or self.height % 2):
            raise BitstreamError(
                f"{field_where('width')}/height: 4:2:0 needs even dimensions, "
                f"got {self.width}x{self.height}"
            )
        _check_enum(REPRESENTATION_CODES, self.representation, "representation")
        _check_enum(MATRIX_CODES, self.matrix, "matrix")
        if not isinstance(self.full_range, bool):
            raise BitstreamError(
                f"{field_where('range')}: full_range must be a bool, got {self.full_range!r}"
            )
        encode_name(self.model_id, U8_MAX, "header field model_id")
        if not isinstance(self.weights_hash, (bytes, bytearray, memoryview)):
            raise BitstreamError(
                f"{field_where('weights_hash')}: expected bytes, "
                f"got {type(self.weights_hash).__name__}"
            )
        set_("weights_hash", bytes(self.weights_hash))
        if len(self.weights_hash) != WEIGHTS_HASH_LEN:
            raise BitstreamError(
                f"{field_where('weights_hash')}: expected {WEIGHTS_HASH_LEN} "
                f"bytes (sha256), got {len(self.weights_hash)}"
            )
        set_("quality", _checked_quality(self.quality))
        period = as_int(self.intra_period, field_where("intra_period"))
        if period != INTRA_ONLY_FIRST:
            check_range(
                period, 1, I32_MAX, field_where("intra_period") + f" (or {INTRA_ONLY_FIRST})"
            )
        set_("intra_period", period)
        if self.version not in READABLE_VERSIONS:
            raise BitstreamError(
                f"{field_where('version')}: expected one of {READABLE_VERSIONS}, "
                f"got {self.version!r}"
            )

    @property
    def fps(self) -> Fraction:
        return Fraction(self.fps_num, self.fps_den)

    def with_frame_count(self, frame_count: int) -> Header:
        return replace(self, frame_count=frame_count)

    def check_limits(self, limits: Limits = DEFAULT_LIMITS) -> None:
        """Raise BitstreamError if this header declares more than `limits` allow."""
        check_range(self.width, 1, limits.max_width, field_where("width"))
        check_range(self.height, 1, limits.max_height, field_where("height"))
        # The area, not a side, sets what decoding a frame allocates; checked here,
        # before the decoder has built anything of that size.
        pixels = self.width * self.height
        if pixels > limits.max_pixels:
            raise BitstreamError(
                f"header fields width, height (offsets {FIELD_OFFSETS['width']}, "
                f"{FIELD_OFFSETS['height']}): {self.width}x{self.height} is {pixels} pixels, "
                f"above the limit of {limits.max_pixels} (Limits.max_pixels); decoding needs "
                f"memory in proportion to the frame area. If the stream is trusted, raise the "
                f"limit: --max-pixels {pixels} on the command line, or "
                f"Limits(max_pixels={pixels}) in Python"
            )
        check_range(self.frame_count, 0, limits.max_frame_count, field_where("frame_count"))
        check_range(
            len(self.model_id),
            1,
            limits.max_model_id_len,
            f"{field_where('model_id_len')}: model_id length",
        )

    def to_bytes(self) -> bytes:
        model_id = self.model_id.encode("ascii")
        body = (
            FIXED.pack(
                MAGIC,
                self.version,
                self.width,
                self.height,
                self.fps_num,
                self.fps_den,
                self.bit_depth,
                CHROMA_CODES[self.chroma],
                REPRESENTATION_CODES[self.representation],
                MATRIX_CODES[self.matrix],
                RANGE_FULL if self.full_range else RANGE_LIMITED,
                self.frame_count,
                round(self.quality * QUALITY_SCALE),
                self.intra_period,
                self.weights_hash,
                len(model_id),
            )
            + model_id
        )
        return body + CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Header:
        """Parse a header that is exactly `data` (no packets after it)."""
        source = ByteSource.from_input(data)
        header = read_header(source, limits)
        if source.offset != len(data):
            raise BitstreamError(
                f"header ends at offset {source.offset}, but {len(data)} "
                f"bytes were given ({len(data) - source.offset} extra)"
            )
        return header


def _checked_quality(quality: object) -> float:
    if isinstance(quality, bool) or not isinstance(quality, (int, float)):
        raise BitstreamError(f"{field_where('quality')}: expected a float, got {quality!r}")
    value = float(quality)
    if not math.isfinite(value) or not 0.0 <= value <= MAX_STORED_QUALITY:
        raise BitstreamError(
            f"{field_where('quality')}: expected 0..{MAX_STORED_QUALITY} (what the field holds), "
            f"got {value}"
        )
    if quantize_quality(value) != value:
        raise BitstreamError(
            f"{field_where('quality')}: {value!r} is not a multiple of 1/{QUALITY_SCALE}, so it "
            f"cannot be stored exactly; pass quantize_quality({value!r})"
        )
    return value


def header_size(header: Header) -> int:
    """Serialized size of `header` in bytes."""
    return FIXED.size + len(header.model_id) + CRC.size


def read_header(source: ByteSource, limits: Limits = DEFAULT_LIMITS) -> Header:
    """Read and validate a header from the current position of `source`."""
    start = source.offset
    magic = source.read_upto(MAGIC_SIZE)
    if magic != MAGIC:
        got = f"{len(magic)} bytes in total" if len(magic) < MAGIC_SIZE else f"magic {magic!r}"
        raise BitstreamError(
            f"not a dvc_edic stream: expected magic {MAGIC!r} at offset {start}, got {got}"
        )
    (version,) = VERSION.unpack(source.read_exact(VERSION.size, field_where("version")))
    if version not in READABLE_VERSIONS:
        readable = f"{READABLE_VERSIONS[0]} to {READABLE_VERSIONS[-1]}"
        raise BitstreamError(
            f"stream format version {version}, this decoder reads versions {readable} "
            f"({field_where('version')})"
        )
    rest = source.read_exact(FIXED.size - MAGIC_SIZE - VERSION.size, "header fixed fields")
    fixed = magic + VERSION.pack(version) + rest
    values = dict(zip((name for name, _ in FIXED_FIELDS), FIXED.unpack(fixed), strict=True))
    model_id_len = values["model_id_len"]
    check_range(
        model_id_len, 1, limits.max_model_id_len, f"{field_where('model_id_len')}: model_id length"
    )
    model_id_raw = source.read_exact(model_id_len, f"header field model_id (offset {FIXED.size})")
    crc_offset = source.offset
    (stored_crc,) = CRC.unpack(source.read_exact(CRC.size, f"header crc32 (offset {crc_offset})"))
    computed_crc = zlib.crc32(fixed + model_id_raw)
    if stored_crc != computed_crc:
        raise BitstreamError(
            f"header CRC32 mismatch (offset {crc_offset}): stored 0x{stored_crc:08x}, computed "
            f"0x{computed_crc:08x} over bytes {start}..{crc_offset - 1}; the header is corrupted"
        )
    if values["range"] not in (RANGE_LIMITED, RANGE_FULL):
        raise BitstreamError(
            f"{field_where('range')}: expected {RANGE_LIMITED} (limited) or "
            f"{RANGE_FULL} (full), got {values['range']}"
        )
    header = Header(
        width=values["width"],
        height=values["height"],
        fps_num=values["fps_num"],
        fps_den=values["fps_den"],
        bit_depth=values["bit_depth"],
        chroma=_decode_enum(CHROMA_CODES, values["chroma"], "chroma"),
        representation=_decode_enum(
            REPRESENTATION_CODES, values["representation"], "representation"
        ),
        matrix=_decode_enum(MATRIX_CODES, values["matrix"], "matrix"),
        full_range=values["range"] == RANGE_FULL,
        frame_count=values["frame_count"],
        model_id=decode_name(model_id_raw, f"header field model_id (offset {FIXED.size})"),
        weights_hash=values["weights_hash"],
        quality=values["quality"] / QUALITY_SCALE,
        intra_period=values["intra_period"],
        version=version,
    )
    header.check_limits(limits)
    return header
