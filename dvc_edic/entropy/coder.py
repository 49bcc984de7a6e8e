"""Bytes for the latents y under the quantized Gaussian mixture.

Format of one coded tensor::

    R      little-endian unsigned, 1 byte (2 if max_half_width > 255): the support
           half-width; every element codes symbol - centre in [-R, R]
    words  constriction AnsCoder output (uint32, little-endian), with the zero
           high bytes of its last word dropped (that word is never zero), absent
           when R = 0 (every symbol equals its centre: nothing to code)

Up to format 11 every element is coded under a row of 2R+1 symbols, in element
order. From format 12 (Y_WINDOW_VERSION) each element has a window of its own
(dvc_edic.entropy.window): rows of 2w+1 symbols, elements ordered by w, then
the distances of the symbols beyond their window (escapes), float64 rows.

The words are those of :mod:`dvc_edic.entropy.ans` (the one ANS wrapper),
with each element's row of integer frequencies passed as float32. Those are
exact integers (sums stay below 2**24), so constriction's lazy rescaling to its
24-bit precision is a fixed sequence of IEEE operations on fixed inputs:
identical on every machine. Tables are built in chunks (``tables.CHUNK_CELLS``
cells) so memory stays bounded for any N.
"""

from __future__ import annotations

import itertools

import numpy as np

from dvc_edic.bitstream.version import FORMAT_VERSION, Y_WINDOW_VERSION
from dvc_edic.entropy.ans import (
    AnsCoder,
    Rows,
    decode_rows,
    decode_spans,
    encode_rows,
    encode_spans,
    fixed_model,
)
from dvc_edic.entropy.config import GmmConfig
from dvc_edic.entropy.quantize import QuantizedGmm, centres, validate_quantized
from dvc_edic.entropy.tables import (
    chunk_size,
    component_cdf_table,
    mixture_frequencies,
    window_rows,
)
from dvc_edic.entropy.window import WindowPlan, escape_row, window_plan
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

    def encode(
        self, symbols: np.ndarray, q: QuantizedGmm, version: int = FORMAT_VERSION
    ) -> tuple[bytes, np.ndarray]:
        """Code ``symbols`` (N,) = round(y) as format ``version`` does; returns the bytes and
        the symbols coded.

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
        if version < Y_WINDOW_VERSION:
            index = (offset + half).astype(np.int32)
            payload = encode_rows(index, self._rows(q, centre, half), chunk_size(half), trim=True)
            return header + payload, coded
        plan = window_plan(q, half, self.cfg, version, centre)
        offset = offset[plan.order]
        index = (np.clip(offset, -plan.width, plan.width) + plan.width).astype(np.int32)
        ends = np.flatnonzero((np.abs(offset) >= plan.width) & (plan.width < half))
        beyond = np.abs(offset[ends]) - plan.width[ends]
        payload = encode_spans(index, self._window_rows(plan), plan.spans, trim=True,
                               then=_escape_groups(beyond, plan.width[ends], half))  # fmt: skip
        return header + payload, coded

    def decode(self, data: bytes, q: QuantizedGmm, version: int = FORMAT_VERSION) -> np.ndarray:
        """Inverse of :meth:`encode` for a stream of format ``version``; any corruption it
        detects raises BitstreamError."""
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
        n = q.num_elements
        if half == 0 or n == 0:
            if payload or (half and not n):
                raise BitstreamError(
                    f"{SECTION}: expected no payload for R={half}, N={n}, "
                    f"got {len(payload)} bytes"
                )
            return centres(q, self.cfg).astype(np.int32)
        if not payload or payload[-1] == 0:
            raise BitstreamError(
                f"{SECTION}: payload is empty or ends in a zero byte (truncated or corrupt)"
            )
        if version >= Y_WINDOW_VERSION:
            return self._decode_windows(payload, q, half, version)
        centre = centres(q, self.cfg)
        out = decode_rows(payload, n, self._rows(q, centre, half), chunk_size(half), trim=True,
                          what=SECTION)  # fmt: skip
        return (out + centre - half).astype(np.int32)

    def _decode_windows(self, payload: bytes, q: QuantizedGmm, half: int,
                        version: int) -> np.ndarray:  # fmt: skip
        """Format 12's payload: every symbol in window order, then the escapes."""
        plan = window_plan(q, half, self.cfg, version)
        offset = np.empty(q.num_elements, dtype=np.int64)  # in coding order

        def escapes(coder: AnsCoder, index: np.ndarray) -> None:
            np.subtract(index, plan.width, out=offset)
            ends = np.flatnonzero((np.abs(offset) == plan.width) & (plan.width < half))
            for width, (start, stop) in _groups(plan.width[ends]):
                beyond = coder.decode(fixed_model(escape_row(half - width + 1)), stop - start)
                at = ends[start:stop]
                offset[at] += np.sign(offset[at]) * beyond

        decode_spans(payload, q.num_elements, self._window_rows(plan), plan.spans, trim=True,
                     what=SECTION, then=escapes)  # fmt: skip
        out = plan.centre.copy()
        out[plan.order] += offset
        return out.astype(np.int32)

    def _rows(self, q: QuantizedGmm, centre: np.ndarray, half: int) -> Rows:
        """The frequency rows of elements start..stop-1, as float32 (the format's dtype)."""
        return lambda start, stop: mixture_frequencies(
            q, centre, half, start, stop, self.cfg, np.float32
        )

    def _window_rows(self, plan: WindowPlan) -> Rows:
        """The rows of coding positions start..stop-1 (one width), as float32."""
        return lambda start, stop: window_rows(
            *plan.rows_cells(start, stop), int(plan.width[start]), self.cfg, np.float32
        )


def _groups(widths: np.ndarray) -> list[tuple[int, tuple[int, int]]]:
    """(width, (start, stop)) of each run of equal values in non-decreasing ``widths``."""
    cuts = [0, *(np.flatnonzero(np.diff(widths)) + 1).tolist(), widths.size]
    return [(int(widths[a]), (a, b)) for a, b in itertools.pairwise(cuts) if b > a]


def _escape_groups(beyond: np.ndarray, widths: np.ndarray,
                   half: int) -> list[tuple[np.ndarray, object]]:  # fmt: skip
    """The escape distances (in coding order, so by width) and the row of each width."""
    return [(beyond[a:b], fixed_model(escape_row(half - w + 1))) for w, (a, b) in _groups(widths)]


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
