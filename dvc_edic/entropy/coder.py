"""Bytes for the latents y under the quantized Gaussian mixture.

Format of one coded tensor::

    R      little-endian unsigned, 1 byte (2 if max_half_width > 255): the support
           half-width; every element codes symbol - centre in [-R, R]
    words  constriction AnsCoder output (uint32, little-endian), with the zero
           high bytes of its last word dropped (that word is never zero), absent
           when R = 0 (every symbol equals its centre: nothing to code)

The words are those of :mod:`dvc_edic.entropy.ans` (the one ANS wrapper),
with each element's row of integer frequencies passed as float32. Those are
exact integers (sums stay below 2**24), so constriction's lazy rescaling to its
24-bit precision is a fixed sequence of IEEE operations on fixed inputs:
identical on every machine. Tables are built in chunks (``tables.CHUNK_CELLS``
cells) so memory stays bounded for any N.
"""

from __future__ import annotations

import numpy as np

from dvc_edic.entropy.ans import Rows, decode_rows, encode_rows
from dvc_edic.entropy.config import GmmConfig
from dvc_edic.entropy.quantize import QuantizedGmm, centres, validate_quantized
from dvc_edic.entropy.tables import chunk_size, component_cdf_table, mixture_frequencies
from dvc_edic.errors import BitstreamError, InputError

SECTION = "GMM-coded latent"  # how errors name the data
BYTE_LIMIT_ONE = 255  # half-widths up to this fit a 1-byte header
FLOAT_SYMBOL_LIMIT = float(1 << 40)  # float symbols are clipped here before the int64 cast


class GmmEntropyCoder:
    """Encode/decode integer symbols of one latent tensor under a QuantizedGmm."""

    def __init__(self, cfg: GmmConfig) -> None:
        self.cfg = cfg
        self._header_bytes = 1 if cfg.max_half_width <= BYTE_LIMIT_ONE else 2
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
        payload = encode_rows(index, self._rows(q, centre, half), chunk_size(half), trim=True)
        return header + payload, coded

    def decode(self, data: bytes, q: QuantizedGmm) -> np.ndarray:
        """Inverse of :meth:`encode`; any corruption it detects raises BitstreamError."""
        validate_quantized(q, self.cfg)
        data = bytes(data)
        if len(data) < self._header_bytes:
            raise BitstreamError(
                f"{SECTION}: expected at least {self._header_bytes} header bytes, "
                f"got {len(data)}"
            )
        half = int.from_bytes(data[: self._header_bytes], "little")
        payload = data[self._header_bytes :]
        if half > self.cfg.max_half_width:
            raise BitstreamError(
                f"{SECTION}: half-width {half} exceeds max_half_width "
                f"{self.cfg.max_half_width}"
            )
        centre = centres(q, self.cfg)
        n = centre.size
        if half == 0 or n == 0:
            if payload or (half and not n):
                raise BitstreamError(
                    f"{SECTION}: expected no payload for R={half}, N={n}, "
                    f"got {len(payload)} bytes"
                )
            return centre.astype(np.int32)
        if not payload or payload[-1] == 0:
            raise BitstreamError(
                f"{SECTION}: payload is empty or ends in a zero byte (truncated or corrupt)"
            )
        out = decode_rows(payload, n, self._rows(q, centre, half), chunk_size(half), trim=True,
                          what=SECTION)  # fmt: skip
        return (out + centre - half).astype(np.int32)

    def _rows(self, q: QuantizedGmm, centre: np.ndarray, half: int) -> Rows:
        """The frequency rows of elements start..stop-1, as float32 (the format's dtype)."""
        return lambda start, stop: mixture_frequencies(
            q, centre, half, start, stop, self.cfg, np.float32
        )


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
