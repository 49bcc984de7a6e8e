"""Thin wrapper over constriction's ANS coder with per-symbol integer tables.

Frequencies are passed as integer-valued float64 arrays: they are exact, so
constriction's fixed-point quantization of them is a pure function of the
integers, and encoder and decoder agree on every machine.
"""

from __future__ import annotations

import constriction
import numpy as np

from dvc_edic.errors import BitstreamError

WORD_BYTES = 4  # constriction emits 32-bit words
PANIC_EXCEPTION_NAME = "PanicException"  # pyo3's wrapper for a panic inside constriction
# constriction's submodules are attributes of its compiled module, not importable paths.
AnsCoder = constriction.stream.stack.AnsCoder
_MODEL = constriction.stream.model.Categorical(perfect=False)


def ans_encode(symbols: np.ndarray, freqs: np.ndarray) -> bytes:
    """Code ``symbols`` (N,) where symbol i follows the row ``freqs[i]`` (N, L)."""
    coder = AnsCoder()
    if symbols.size:
        coder.encode_reverse(
            np.ascontiguousarray(symbols, dtype=np.int32),
            _MODEL,
            np.ascontiguousarray(freqs, dtype=np.float64),
        )
    return coder.get_compressed().astype("<u4").tobytes()


def ans_decode(data: bytes, freqs: np.ndarray) -> np.ndarray:
    """Decode ``len(freqs)`` symbols; any inconsistency becomes a BitstreamError."""
    if len(data) % WORD_BYTES:
        raise BitstreamError(
            f"entropy-coded section has {len(data)} bytes, not a multiple of {WORD_BYTES}"
        )
    n = freqs.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    try:
        coder = AnsCoder(words)
        out = coder.decode(_MODEL, np.ascontiguousarray(freqs, dtype=np.float64))
        consumed = coder.is_empty()
    except Exception as exc:  # constriction reports corrupt input as assorted errors
        raise BitstreamError(f"entropy decoding failed: {exc}") from exc
    except BaseException as exc:
        raise_if_panic(exc)
        raise
    if not consumed:
        raise BitstreamError(
            f"entropy decoding of {n} symbols did not end in the coder's initial state "
            "(truncated or corrupt stream)"
        )
    return np.asarray(out, dtype=np.int32)


def raise_if_panic(exc: BaseException) -> None:
    """A Rust panic surfaces as pyo3's PanicException, a BaseException: make it a stream error."""
    if type(exc).__name__ == PANIC_EXCEPTION_NAME:
        raise BitstreamError(f"entropy decoder panicked: {exc}") from exc
