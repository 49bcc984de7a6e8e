"""Bytes for the latents y under the quantized Gaussian mixture.

Format of one coded tensor::

    R      little-endian unsigned, 1 byte (2 if max_half_width > 255): the support
           half-width; every element codes symbol - centre in [-R, R]
    words  constriction AnsCoder output (uint32, little-endian), with the zero
           high bytes of its last word dropped (that word is never zero), absent
           when R = 0 (every symbol equals its centre: nothing to code)

The coder is constriction's ``AnsCoder`` with a ``Categorical(perfect=False)``
model family fed our integer frequencies as float32. Those are exact integers
(sums stay below 2**24), so constriction's lazy rescaling to its 24-bit
precision is a fixed sequence of IEEE operations on fixed inputs: identical on
every machine. Tables are built in chunks (``tables.CHUNK_CELLS``) so memory
stays bounded for any N; chunks are pushed onto the ANS stack last-first so
the decoder can pop them first-last.
"""

from __future__ import annotations

import constriction
import numpy as np

from dvc_edic.entropy.ans import WORD_BYTES, raise_if_panic
from dvc_edic.entropy.config import GmmConfig
from dvc_edic.entropy.quantize import QuantizedGmm, centres, validate_quantized
from dvc_edic.entropy.tables import chunk_size, component_cdf_table, mixture_frequencies
from dvc_edic.errors import BitstreamError, InputError

BYTE_LIMIT_ONE = 255  # half-widths up to this fit a 1-byte header
FLOAT_SYMBOL_LIMIT = float(1 << 40)  # float symbols are clipped here before the int64 cast


class GmmEntropyCoder:
    """Encode/decode integer symbols of one latent tensor under a QuantizedGmm."""

    def __init__(self, cfg: GmmConfig) -> None:
        self.cfg = cfg
        self._header_bytes = 1 if cfg.max_half_width <= BYTE_LIMIT_ONE else 2
        self._family = constriction.stream.model.Categorical(perfect=False)
        component_cdf_table(cfg)  # build (and cache) the tables up front

    def encode(self, symbols: np.ndarray, q: QuantizedGmm) -> tuple[bytes, np.ndarray]:
        """Code ``symbols`` (N,) = round(y); returns the bytes and the symbols coded.

        Symbols further than ``max_half_width`` from their element's centre are
        clamped; the caller must reconstruct from the returned symbols.
        """
        validate_quantized(q, self.cfg)
        sym = _as_int64(symbols, q.num_elements)
        centre = centres(q, self.cfg)
        limit = self.cfg.max_half_width
        offset = np.clip(sym - centre, -limit, limit)
        coded = (centre + offset).astype(np.int32)
        half = int(np.abs(offset).max()) if offset.size else 0
        header = half.to_bytes(self._header_bytes, "little")
        if half == 0:
            return header, coded
        index = (offset + half).astype(np.int32)
        coder = constriction.stream.stack.AnsCoder()
        step = chunk_size(half)
        for start in reversed(range(0, index.size, step)):
            stop = min(start + step, index.size)
            freq = mixture_frequencies(q, centre, half, start, stop, self.cfg)
            coder.encode_reverse(index[start:stop], self._family, freq.astype(np.float32))
        payload = coder.get_compressed().astype("<u4").tobytes().rstrip(b"\0")
        return header + payload, coded

    def decode(self, data: bytes, q: QuantizedGmm) -> np.ndarray:
        """Inverse of :meth:`encode`; any corruption it detects raises BitstreamError."""
        validate_quantized(q, self.cfg)
        data = bytes(data)
        if len(data) < self._header_bytes:
            raise BitstreamError(
                f"GMM-coded latent: expected at least {self._header_bytes} header bytes, "
                f"got {len(data)}"
            )
        half = int.from_bytes(data[: self._header_bytes], "little")
        payload = data[self._header_bytes :]
        if half > self.cfg.max_half_width:
            raise BitstreamError(
                f"GMM-coded latent: half-width {half} exceeds max_half_width "
                f"{self.cfg.max_half_width}"
            )
        centre = centres(q, self.cfg)
        n = centre.size
        if half == 0 or n == 0:
            if payload or (half and not n):
                raise BitstreamError(
                    f"GMM-coded latent: expected no payload for R={half}, N={n}, "
                    f"got {len(payload)} bytes"
                )
            return centre.astype(np.int32)
        if not payload or payload[-1] == 0:
            raise BitstreamError(
                "GMM-coded latent: payload is empty or ends in a zero byte (truncated or corrupt)"
            )
        padded = payload + b"\0" * (-len(payload) % WORD_BYTES)
        words = np.frombuffer(padded, dtype="<u4").astype(np.uint32)
        out = np.empty(n, dtype=np.int64)
        step = chunk_size(half)
        try:
            coder = constriction.stream.stack.AnsCoder(words)
            for start in range(0, n, step):
                stop = min(start + step, n)
                freq = mixture_frequencies(q, centre, half, start, stop, self.cfg)
                out[start:stop] = coder.decode(self._family, freq.astype(np.float32))
            consumed = coder.is_empty()
        except Exception as exc:  # constriction reports corrupt input as assorted errors
            raise BitstreamError(f"GMM-coded latent: entropy decoding failed: {exc}") from exc
        except BaseException as exc:
            raise_if_panic(exc)
            raise
        if not consumed:
            # ANS returns to its initial state only if every word was consumed in order,
            # so truncation, extra bytes and most bit flips all end up here.
            raise BitstreamError(
                f"GMM-coded latent: after decoding all {n} symbols the ANS state is not "
                "back at its start (truncated or corrupt stream)"
            )
        return (out + centre - half).astype(np.int32)


def _as_int64(symbols: np.ndarray, n: int) -> np.ndarray:
    a = np.asarray(symbols)
    if a.shape != (n,):
        raise InputError(f"GmmEntropyCoder.encode: expected symbols of shape ({n},), got {a.shape}")
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    if a.dtype.kind != "f" or not np.all(np.isfinite(a)) or np.any(a != np.rint(a)):
        raise InputError("GmmEntropyCoder.encode: expected integer-valued symbols")
    # Anything this far out is clamped by encode() anyway; the clip keeps the cast defined.
    return np.clip(a, -FLOAT_SYMBOL_LIMIT, FLOAT_SYMBOL_LIMIT).astype(np.int64)
