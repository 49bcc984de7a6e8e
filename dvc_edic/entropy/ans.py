"""The one wrapper over constriction's ANS coder: every entropy-coded byte goes through here.

Each symbol i is coded under its own row of integer frequencies (a categorical
distribution over that row's columns), passed to constriction's
``Categorical(perfect=False)`` family as floats. They are exact integers (sums
stay below 2**24), so constriction's fixed-point quantization of them is a
pure function of the integers, and encoder and decoder agree on every machine.
The row dtype is part of the format of each caller (float64 for z and block
motion, float32 for y): it is kept as the caller gives it.

Bytes: constriction's 32-bit words, little-endian; with ``trim`` the zero high
bytes of the last word are dropped (that word is never zero), and the decoder
puts them back.

Rows are built in chunks by a caller's function, so memory stays bounded for any
number of symbols. Building them is most of the work, and each chunk's rows
depend only on the chunk, so while the coder works through one chunk the rows
of the next ones are built by other threads (dvc_edic.entropy.parallel): the
ANS stack itself is sequential, so this is where a second core helps. Chunks
are pushed onto the stack last-first so the decoder pops them first-last; how
the symbols are cut into chunks does not change the bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import constriction
import numpy as np

from dvc_edic.entropy.parallel import chunks, in_order
from dvc_edic.errors import BitstreamError

WORD_BYTES = 4  # constriction emits 32-bit words
PANIC_EXCEPTION_NAME = "PanicException"  # pyo3's wrapper for a panic inside constriction
# constriction's submodules are attributes of its compiled module, not importable paths.
AnsCoder = constriction.stream.stack.AnsCoder
_MODEL = constriction.stream.model.Categorical(perfect=False)

SECTION = "entropy-coded section"  # what errors call the data unless the caller names it
# rows(start, stop): the frequency rows (stop - start, L) of symbols start .. stop-1.
Rows = Callable[[int, int], np.ndarray]
Spans = Sequence[tuple[int, int]]  # (start, stop) of consecutive chunks of symbols
# then(coder, symbols): reads what a section codes after its symbols, knowing them.
Then = Callable[[AnsCoder, np.ndarray], None]


def fixed_model(freqs: np.ndarray) -> constriction.stream.model.Categorical:
    """One categorical model for many symbols, from one row of integer frequencies.

    Same quantization as the per-symbol family above (constriction builds both the
    same way from the same floats), so a symbol costs the same bytes either way,
    but the row is read once instead of once per symbol: for sections whose symbols
    share a row (dvc_edic.dctlayer) coding time no longer grows with the row's length.
    """
    return constriction.stream.model.Categorical(
        np.ascontiguousarray(freqs, dtype=np.float64), perfect=False
    )


def trim_words(data: bytes) -> bytes:
    """Drop the zero high bytes of the last word: constriction never ends on a zero word."""
    return data.rstrip(b"\0")


def untrim_words(data: bytes, what: str = SECTION) -> bytes:
    """Inverse of :func:`trim_words`; a trimmed string never ends in a zero byte, so one that
    does was not written by this coder."""
    if data and not data[-1]:
        raise BitstreamError(f"{what}: ends in a zero byte, which a trimmed string never does")
    return bytes(data) + b"\0" * (-len(data) % WORD_BYTES)


def encode_rows(symbols: np.ndarray, rows: Rows, step: int, *, trim: bool = False) -> bytes:
    """Code ``symbols`` (N,), symbol i under row i of ``rows``, built ``step`` symbols at a time."""
    return encode_spans(symbols, rows, chunks(np.size(symbols), step), trim=trim)


def decode_rows(
    data: bytes, count: int, rows: Rows, step: int, *, trim: bool = False, what: str = SECTION
) -> np.ndarray:
    """Inverse of :func:`encode_rows` for ``count`` symbols (int32); ``what`` names the
    section in errors. Any inconsistency becomes a BitstreamError."""
    return decode_spans(data, count, rows, chunks(count, step), trim=trim, what=what)


def encode_spans(symbols: np.ndarray, rows: Rows, spans: Spans, *, trim: bool = False,
                 then: Sequence[tuple[np.ndarray, Any]] = ()) -> bytes:  # fmt: skip
    """Code ``symbols`` (N,), symbol i under row i of ``rows``, built one span at a time
    (``spans`` cover 0..N-1 in order); then each (symbols, model) of ``then`` in turn."""
    coder = AnsCoder()
    for more, model in reversed(then):  # a stack: what is decoded last goes in first
        coder.encode_reverse(np.ascontiguousarray(more, dtype=np.int32), model)
    symbols = np.ascontiguousarray(symbols, dtype=np.int32)
    backwards = list(spans)[::-1]
    for (start, stop), probs in zip(backwards, in_order(rows, backwards), strict=True):
        coder.encode_reverse(symbols[start:stop], _MODEL, probs)
    data = coder.get_compressed().astype("<u4").tobytes()
    return trim_words(data) if trim else data


def decode_spans(data: bytes, count: int, rows: Rows, spans: Spans, *, trim: bool = False,
                 what: str = SECTION, then: Then | None = None) -> np.ndarray:  # fmt: skip
    """Inverse of :func:`encode_spans` for ``count`` symbols (int32): ``then(coder,
    symbols)`` reads what followed them. Any inconsistency becomes a BitstreamError
    naming ``what``."""
    if trim:
        data = untrim_words(data, what)
    elif len(data) % WORD_BYTES:
        raise BitstreamError(f"{what}: {len(data)} bytes, not a multiple of {WORD_BYTES}")
    out = np.empty(count, dtype=np.int32)
    if count == 0:
        if data:  # nothing coded writes nothing: bytes here are not this coder's
            raise BitstreamError(f"{what}: {len(data)} bytes where no symbol is coded")
        return out

    def work(coder: AnsCoder) -> None:
        for (start, stop), probs in zip(spans, in_order(rows, spans), strict=True):
            out[start:stop] = coder.decode(_MODEL, probs)
        if then is not None:
            then(coder, out)

    decode_words(data, work, what, f"all {count} symbols")
    return out


def decode_batch(coder: AnsCoder, rows: np.ndarray) -> np.ndarray:
    """The next ``len(rows)`` symbols from a decoder that :func:`decode_words` handed over,
    symbol i under row i (float64): for callers whose rows depend on what they decoded
    before, so that they cannot give all rows up front."""
    return coder.decode(_MODEL, np.ascontiguousarray(rows, dtype=np.float64))


def decode_words(data: bytes, work: Callable[[AnsCoder], None], what: str,
                 symbols: str) -> None:
    """Run ``work`` on a decoder over ``data`` (whole words), then check that every word
    was used: any inconsistency becomes a BitstreamError naming ``what``."""
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    try:
        coder = AnsCoder(words)
        work(coder)
        consumed = coder.is_empty()
    except BitstreamError:
        raise
    except Exception as exc:  # constriction reports corrupt input as assorted errors
        raise BitstreamError(f"{what}: entropy decoding failed: {exc}") from exc
    except BaseException as exc:
        raise_if_panic(exc, what)
        raise
    if not consumed:
        # ANS returns to its initial state only if every word was consumed in order,
        # so truncation, extra bytes and most bit flips all end up here.
        raise BitstreamError(
            f"{what}: after decoding {symbols} the ANS state is not back at its start "
            "(truncated or corrupt stream)"
        )


def ans_encode(symbols: np.ndarray, freqs: np.ndarray, *, trim: bool = False) -> bytes:
    """Code ``symbols`` (N,) where symbol i follows the row ``freqs[i]`` (N, L), as float64."""
    table = np.ascontiguousarray(freqs, dtype=np.float64)
    return encode_rows(
        symbols, lambda start, stop: table[start:stop], max(1, len(table)), trim=trim
    )


def ans_decode(
    data: bytes, freqs: np.ndarray, what: str = SECTION, *, trim: bool = False
) -> np.ndarray:
    """Decode ``len(freqs)`` symbols coded by :func:`ans_encode` (with the same ``trim``)."""
    table = np.ascontiguousarray(freqs, dtype=np.float64)
    count = table.shape[0]
    return decode_rows(data, count, lambda start, stop: table[start:stop], max(1, count),
                       trim=trim, what=what)  # fmt: skip


def raise_if_panic(exc: BaseException, what: str = SECTION) -> None:
    """A Rust panic surfaces as pyo3's PanicException, a BaseException: make it a stream error."""
    if type(exc).__name__ == PANIC_EXCEPTION_NAME:
        raise BitstreamError(f"{what}: entropy decoder panicked: {exc}") from exc
