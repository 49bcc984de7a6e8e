"""Checks shared by the header and packet code, all raising BitstreamError.

Both the writer (values from the encoder) and the reader (values from an
untrusted file) go through these, so a value either side accepts is one the
other side accepts too.
"""

from __future__ import annotations

import operator

from dvc_edic.errors import BitstreamError

# Every size the codec reports is of bytes written; rates are those times this.
BITS_PER_BYTE = 8
# Printable ASCII without space: names stay readable in error messages and logs.
NAME_FIRST_CHAR = 0x21
NAME_LAST_CHAR = 0x7E


def as_int(value: object, what: str) -> int:
    """Accept Python and numpy integers, refuse bools and floats (which would truncate)."""
    if isinstance(value, bool):
        raise BitstreamError(f"{what}: expected an integer, got bool {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise BitstreamError(
            f"{what}: expected an integer, got {type(value).__name__} {value!r}"
        ) from None


def check_range(value: int, low: int, high: int, what: str) -> int:
    if not low <= value <= high:
        raise BitstreamError(f"{what}: expected {low}..{high}, got {value}")
    return value


def encode_name(value: object, max_len: int, what: str) -> bytes:
    """Validate a short ASCII name and return its bytes."""
    if not isinstance(value, str):
        raise BitstreamError(f"{what}: expected a str, got {type(value).__name__}")
    raw = value.encode("ascii", errors="replace")
    if not 1 <= len(raw) <= max_len:
        raise BitstreamError(f"{what}: expected 1..{max_len} characters, got {len(raw)}")
    if not value.isascii() or any(not NAME_FIRST_CHAR <= b <= NAME_LAST_CHAR for b in raw):
        raise BitstreamError(f"{what}: expected printable ASCII without spaces, got {value!r}")
    return raw


def decode_name(raw: bytes, what: str) -> str:
    """Inverse of encode_name for bytes read from a stream."""
    if any(not NAME_FIRST_CHAR <= b <= NAME_LAST_CHAR for b in raw):
        raise BitstreamError(f"{what}: expected printable ASCII without spaces, got bytes {raw!r}")
    return raw.decode("ascii")
