"""Block motion: one vector per square block of the model grid, coded losslessly.

Why it exists: after a few CPU-hours of training the learned flow net barely
finds motion (on the dev set its warp predicts walk at 25 dB where OpenCV's
DIS flow predicts 31.8 dB, and bikes at 28 dB against 42 dB), and the MV
autoencoder, trained on that net's near-zero fields, cannot code a real motion
field. A field of block vectors that the encoder searches for, coded exactly
with a median predictor and a Laplace model (as x264 codes its macroblocks'
vectors), gives the prediction the motion it lacks. The decoder's extra work
is the entropy decoding of two symbols per block and one warp.

Section layout (``bmv``, format version 4; docs/bitstream.md):

    u16 head            bits 0-2 block_log2 (block side 2^block_log2 model-grid
                        samples), 3-4 precision_log2 (vectors in units of
                        2^-precision_log2 samples), 5-9 scale_x and 10-14
                        scale_y (Laplace scale indices of the horizontal and
                        vertical residuals), 15 cubic (version 10; zero before)
    varint n            bytes of the main ANS stream (version 11: 2n + contexts)
    [u24 scales]        version 11 with contexts: the scale indices of contexts 1
                        and 2, 5 bits each: x1, x2, y1, y2 from bit 0; bits 20-23 zero
    bytes[n]            the residuals, x then y per block in raster order (with
                        contexts: blocks by anti-diagonal i + j, then by row i)
    rest                the escaped residuals' remainders (second ANS stream)

Contexts (version 11). In a smooth field most residuals are 0, and the rest gather
where motion changes, at object edges; one table per component prices both alike.
With contexts each residual takes the table of its context: how many of
CONTEXT_THRESHOLDS the sum of |d| of its left and top neighbours (same component,
escapes counting as |d| = ESCAPE, missing neighbours as 0) reaches, context 0 at the
head's scale. The encoder sets the flag when that makes the section shorter (on small
fields the extra scales cost more than they save). Every block's neighbours lie on the
anti-diagonal before its own, so the decoder decodes one anti-diagonal at a time.

Both ANS streams drop the zero high bytes of their last word. Version 3 kept the
four head fields in a byte each and both streams in whole words.

A residual is the vector minus the median of its left, top and top-right
neighbours. Residuals with ``|d| >= ESCAPE`` are coded as the escape symbol of
their sign, and ``|d| - ESCAPE`` as two base-``ESCAPE_BASE`` digits after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from dvc_edic.bitstream.limits import PRECISION_LOG2_MAX
from dvc_edic.bitstream.packet import PayloadCursor, encode_varint
from dvc_edic.bitstream.version import (
    CUBIC_WARP_VERSION,
    FORMAT_VERSION,
    LEAN_PACKET_VERSION,
    MV_CONTEXT_VERSION,
)
from dvc_edic.entropy.ans import (
    AnsCoder,
    ans_decode,
    ans_encode,
    decode_batch,
    decode_words,
    untrim_words,
)
from dvc_edic.errors import BitstreamError

# The format's constants: changing any of them changes the stream (docs/bitstream.md).
BLOCK_LOG2_RANGE = (1, 6)  # block sides 2..64 model-grid samples
ESCAPE = 64  # residuals with |d| >= ESCAPE leave the Laplace alphabet
ESCAPE_BASE = 128  # their remainder |d| - ESCAPE: two digits of this base
MAX_VECTOR = 8191  # |component| bound, in precision units; keeps every residual codable
TOTAL_FREQ_LOG2 = 16  # integer frequencies of each table sum to 2^16
# Laplace scales (mean |d|) of the residual tables: SCALE_COUNT values log-spaced
# from SCALE_MIN to SCALE_MAX; each table's decay is round(2^16 * exp(-1/scale)).
SCALE_COUNT, SCALE_MIN, SCALE_MAX = 32, 0.125, 256.0
_RATIO_ONE = 1 << 16
_HEAD_BYTES_V3 = 4
# Version 4 packs the head into a u16: (field, lowest bit, bits) from bit 0 up.
_HEAD_BITS = (("block_log2", 0, 3), ("precision_log2", 3, 2), ("scale_x", 5, 5),
              ("scale_y", 10, 5))
_HEAD_BYTES = 2
_CUBIC_BIT = 15  # version 10: the field's plain warp uses the cubic kernel
_PEAK_LOG2 = 40  # fixed-point precision of the unnormalised Laplace masses
ALPHABET = 2 * ESCAPE + 1  # symbol = d + ESCAPE, clamped: 0 and 2*ESCAPE are the escapes
# Version 11: a residual's context is how many of these |d_left| + |d_top| reaches (in the
# field's precision units; from a proxy over the dev set's coded fields, docs/encoder.md).
CONTEXT_THRESHOLDS = (1, 4)
CONTEXTS = len(CONTEXT_THRESHOLDS) + 1
_CONTEXT_SCALE_BITS = 5
_CONTEXT_SCALES_BYTES = 3  # scales of contexts 1.. of x, then of y, 5 bits each


@dataclass(frozen=True)
class BlockMotion:
    """A motion field of block vectors: ``vectors[0]`` horizontal, ``[1]`` vertical,
    in units of ``2^-precision_log2`` model-grid samples, one per block in raster order."""

    vectors: np.ndarray  # int32 (2, rows, cols)
    block_log2: int
    precision_log2: int
    # the plain warp samples this field with the cubic kernel, not bilinear (version 10)
    cubic: bool = False

    def __post_init__(self) -> None:
        lo, hi = BLOCK_LOG2_RANGE
        if not lo <= self.block_log2 <= hi:
            raise BitstreamError(f"block motion: block_log2 must be in {lo}..{hi}, "
                                 f"got {self.block_log2}")
        if not 0 <= self.precision_log2 <= PRECISION_LOG2_MAX:
            raise BitstreamError(f"block motion: precision_log2 must be in 0..{PRECISION_LOG2_MAX}"
                                 f", got {self.precision_log2}")
        v = self.vectors
        if v.ndim != 3 or v.shape[0] != 2 or v.dtype != np.int32:
            raise BitstreamError(f"block motion: vectors must be int32 (2, rows, cols), got "
                                 f"{v.dtype} {v.shape}")
        if v.size and int(np.abs(v).max()) > MAX_VECTOR:
            raise BitstreamError(f"block motion: a vector component exceeds {MAX_VECTOR} "
                                 f"(got {int(np.abs(v).max())})")

    @property
    def block(self) -> int:
        return 1 << self.block_log2

    @property
    def kernel(self) -> str:
        """The plain warp's interpolation kernel (flows.warp.KERNELS)."""
        return "cubic" if self.cubic else "bilinear"

    def to_flow(self, like: torch.Tensor) -> torch.Tensor:
        """The dense backward flow on ``like``'s grid (B=1): each block's vector on each of its
        samples. Dyadic fractions, so the decoder's flow is exact on every machine."""
        height, width = like.shape[-2:]
        check_grid(self.vectors.shape[1:], (height, width), self.block_log2)
        v = torch.from_numpy(self.vectors).to(device=like.device, dtype=like.dtype)
        v = v / (1 << self.precision_log2)
        dense = v.repeat_interleave(self.block, 1).repeat_interleave(self.block, 2)
        return dense[None, :, :height, :width]


def grid_of(size: tuple[int, int], block_log2: int) -> tuple[int, int]:
    """Block rows and columns that cover a model grid of ``size`` (partial blocks at the edge)."""
    side = 1 << block_log2
    return -(-size[0] // side), -(-size[1] // side)


def check_grid(shape: tuple[int, ...], size: tuple[int, int], block_log2: int) -> None:
    if tuple(shape) != grid_of(size, block_log2):
        raise BitstreamError(f"block motion: {tuple(shape)} blocks do not cover a {size} grid at "
                             f"block side {1 << block_log2}; expected {grid_of(size, block_log2)}")


def predictors(vectors: np.ndarray) -> np.ndarray:
    """Each block's predictor: the median of its left, top and top-right neighbours.

    Missing neighbours: the first row predicts from the left (0 at the corner); the
    first column's left is its top; the last column's top-right is its top.
    Vectorised for the encoder; the decoder computes the same values one by one.
    """
    _, rows, cols = vectors.shape
    pred = np.zeros_like(vectors)
    if cols > 1:
        pred[:, 0, 1:] = vectors[:, 0, :-1]
    if rows > 1:
        top = vectors[:, :-1, :]
        left = np.concatenate([top[:, :, :1], vectors[:, 1:, :-1]], axis=2)
        top_right = np.concatenate([top[:, :, 1:], top[:, :, -1:]], axis=2)
        pred[:, 1:, :] = np.median(np.stack([left, top, top_right]), axis=0).astype(np.int32)
    return pred


def _median3(a: int, b: int, c: int) -> int:
    return max(min(a, b), min(max(a, b), c))


@cache
def laplace_freqs(scale_index: int) -> np.ndarray:
    """Integer frequencies (ALPHABET,) summing to 2^16, every one >= 1: a discrete Laplace
    over -(ESCAPE-1)..ESCAPE-1 with the tail mass on the escape symbols.

    Integer arithmetic throughout (only the decay ratio comes from floating point, and
    the golden test pins the tables), so encoder and decoder agree on every machine.
    """
    scale = SCALE_MIN * (SCALE_MAX / SCALE_MIN) ** (scale_index / (SCALE_COUNT - 1))
    ratio = min(max(round(_RATIO_ONE * math.exp(-1.0 / scale)), 1), _RATIO_ONE - 1)
    mass = [1 << _PEAK_LOG2]
    for _ in range(ESCAPE):
        mass.append(mass[-1] * ratio >> 16)
    tail = mass[ESCAPE] * _RATIO_ONE // (_RATIO_ONE - ratio)
    masses = [tail, *mass[ESCAPE - 1:0:-1], *mass[:ESCAPE], tail]
    total = sum(masses)
    spare = (1 << TOTAL_FREQ_LOG2) - ALPHABET
    freqs = [1 + m * spare // total for m in masses]
    freqs[ESCAPE] += (1 << TOTAL_FREQ_LOG2) - sum(freqs)
    return np.asarray(freqs, dtype=np.int64)


@cache
def _freq_table() -> np.ndarray:
    """(SCALE_COUNT, ALPHABET) every table's frequencies as float64 rows, as the ANS coder
    takes them (indexed by scale index; read-only)."""
    table = np.stack([laplace_freqs(i) for i in range(SCALE_COUNT)]).astype(np.float64)
    table.flags.writeable = False
    return table


@cache
def _bits_table() -> np.ndarray:
    """(SCALE_COUNT, ALPHABET) ideal code lengths, for the encoder's choices."""
    return TOTAL_FREQ_LOG2 - np.log2(_freq_table())


ESCAPE_DIGIT_BITS = 2 * math.log2(ESCAPE_BASE)


def scale_index(mean_abs: float) -> int:
    """The table whose Laplace scale is nearest ``mean_abs`` (log scale), clamped to the set."""
    position = (SCALE_COUNT - 1) * math.log(mean_abs / SCALE_MIN) / math.log(SCALE_MAX / SCALE_MIN)
    return min(max(round(position), 0), SCALE_COUNT - 1)


def residual_symbols(d: np.ndarray) -> np.ndarray:
    return np.clip(d, -ESCAPE, ESCAPE) + ESCAPE


def best_scale(d: np.ndarray) -> tuple[int, float]:
    """The table index that codes the residuals ``d`` in the fewest bits, and those bits."""
    counts = np.bincount(residual_symbols(d.ravel()), minlength=ALPHABET)
    bits = _bits_table() @ counts + ESCAPE_DIGIT_BITS * int((np.abs(d) >= ESCAPE).sum())
    index = int(np.argmin(bits))
    return index, float(bits[index])


def residual_bits(d: np.ndarray, scale_index: int) -> np.ndarray:
    """Bits of each residual under one table (the encoder's per-block rate)."""
    escaped = np.abs(d) >= ESCAPE
    return _bits_table()[scale_index][residual_symbols(d)] + ESCAPE_DIGIT_BITS * escaped


def residual_contexts(d: np.ndarray) -> np.ndarray:
    """Context (0 .. CONTEXTS-1) of each residual of ``d`` (2, rows, cols): how many of
    CONTEXT_THRESHOLDS the clipped |d| of its left and top neighbours reach together."""
    a = np.minimum(np.abs(d), ESCAPE)
    near = np.zeros_like(a)
    near[:, :, 1:] += a[:, :, :-1]
    near[:, 1:, :] += a[:, :-1, :]
    return np.searchsorted(np.asarray(CONTEXT_THRESHOLDS), near, side="right")


@cache
def diagonal_order(rows: int, cols: int) -> np.ndarray:
    """Raster indices of a rows x cols grid by anti-diagonal i + j, then by row i: the
    order in which context-coded residuals are stored."""
    i, j = np.divmod(np.arange(rows * cols), cols)
    order = np.lexsort((i, i + j))
    order.flags.writeable = False
    return order


def _context_fit(d: np.ndarray, contexts: np.ndarray) -> tuple[np.ndarray, float]:
    """(2, CONTEXTS) cheapest table of each component's residuals in each context (0 for
    an empty context, which costs nothing), and the residuals' bits under them."""
    fits = [[best_scale(d[c][contexts[c] == k]) if (contexts[c] == k).any() else (0, 0.0)
             for k in range(CONTEXTS)] for c in range(2)]
    return (np.array([[scale for scale, _ in row] for row in fits]),
            sum(bits for row in fits for _, bits in row))


def field_bits(vectors: np.ndarray, version: int = FORMAT_VERSION) -> float:
    """Ideal bits of a field's residuals as the section of ``version`` will code them, with
    the extra scales contexts carry: the encoder's price of a whole field."""
    d = vectors.astype(np.int64) - predictors(vectors)
    plain = sum(best_scale(d[c])[1] for c in range(2))
    if version < MV_CONTEXT_VERSION:
        return plain
    coded = _context_fit(d, residual_contexts(d))[1]
    return min(plain, coded + 8 * _CONTEXT_SCALES_BYTES)


def encode_block_motion(motion: BlockMotion, version: int = FORMAT_VERSION) -> bytes:
    """The ``bmv`` section of ``motion`` for a stream of ``version``: from version 11 the
    shorter of the plain and the context-coded layouts."""
    v = motion.vectors.astype(np.int64)
    d = v - predictors(motion.vectors)
    plain = _encode(motion, d, None)
    if version < MV_CONTEXT_VERSION:
        return _with_flag(plain, None)
    with_contexts = _encode(motion, d, residual_contexts(d))
    return min(_with_flag(plain, False), _with_flag(with_contexts, True), key=len)


def _encode(motion: BlockMotion, d: np.ndarray, contexts: np.ndarray | None
            ) -> tuple[bytes, bytes, bytes, bytes]:
    """(head, scales of contexts 1.., main stream, escape stream) of a field."""
    rows, cols = d.shape[1:]
    if contexts is None:
        scales = np.array([[best_scale(d[c])[0]] for c in range(2)])
        flat = d.transpose(1, 2, 0).reshape(-1)  # x, y of each block in raster order
        rows_of = scales[np.arange(flat.size) % 2, 0]
        extra_scales = b""
    else:
        scales = _context_fit(d, contexts)[0]
        order = diagonal_order(rows, cols)
        flat = d.reshape(2, -1)[:, order].T.reshape(-1)
        rows_of = scales[np.arange(flat.size) % 2,
                         contexts.reshape(2, -1)[:, order].T.reshape(-1)]
        packed = sum(int(s) << (_CONTEXT_SCALE_BITS * n)
                     for n, s in enumerate([*scales[0, 1:], *scales[1, 1:]]))
        extra_scales = packed.to_bytes(_CONTEXT_SCALES_BYTES, "little")
    main = ans_encode(residual_symbols(flat), _freq_table()[rows_of], trim=True)
    escaped = np.abs(flat[np.abs(flat) >= ESCAPE]) - ESCAPE
    digits = np.stack([escaped // ESCAPE_BASE, escaped % ESCAPE_BASE], axis=1).reshape(-1)
    extra = ans_encode(digits, np.ones((digits.size, ESCAPE_BASE)), trim=True)
    values = (motion.block_log2, motion.precision_log2, int(scales[0, 0]), int(scales[1, 0]))
    head = sum(value << low for value, (_, low, _) in zip(values, _HEAD_BITS, strict=True))
    head |= int(motion.cubic) << _CUBIC_BIT
    return head.to_bytes(_HEAD_BYTES, "little"), extra_scales, main, extra


def _with_flag(parts: tuple[bytes, bytes, bytes, bytes], contexts: bool | None) -> bytes:
    """The section from ``_encode``'s parts; ``contexts`` None: before version 11 (the
    varint is the main stream's length alone)."""
    head, extra_scales, main, extra = parts
    length = len(main) if contexts is None else 2 * len(main) + int(contexts)
    return head + encode_varint(length) + extra_scales + main + extra


def _read_head(cursor: PayloadCursor, version: int) -> tuple[tuple[int, ...], bool]:
    """The head's four fields and the cubic flag."""
    if version < LEAN_PACKET_VERSION:
        return tuple(cursor.take(_HEAD_BYTES_V3, "head")), False
    head = int.from_bytes(cursor.take(_HEAD_BYTES, "head"), "little")
    cubic = version >= CUBIC_WARP_VERSION and bool(head >> _CUBIC_BIT & 1)
    if head >> sum(bits for _, _, bits in _HEAD_BITS) != int(cubic):
        raise BitstreamError(f"section 'bmv': head 0x{head:04x} has its top bit set, which "
                             f"version {version} leaves zero (the cubic flag came with "
                             f"version {CUBIC_WARP_VERSION})")
    return tuple(head >> low & ((1 << bits) - 1) for _, low, bits in _HEAD_BITS), cubic


def decode_block_motion(
    data: bytes, size: tuple[int, int], version: int = FORMAT_VERSION
) -> BlockMotion:
    """The field of a ``bmv`` section of a stream of format ``version`` for a model grid of
    ``size``; a stream error otherwise."""
    cursor = PayloadCursor(memoryview(data), 0, "section 'bmv'")
    (block_log2, precision_log2, scale_x, scale_y), cubic = _read_head(cursor, version)
    for name, s in (("scale_x", scale_x), ("scale_y", scale_y)):
        if s >= SCALE_COUNT:
            raise BitstreamError(f"section 'bmv': {name} {s} is not below {SCALE_COUNT}")
    lo, hi = BLOCK_LOG2_RANGE
    if not lo <= block_log2 <= hi or precision_log2 > PRECISION_LOG2_MAX:
        raise BitstreamError(f"section 'bmv': block_log2 {block_log2} (expected {lo}..{hi}) or "
                             f"precision_log2 {precision_log2} (expected 0..{PRECISION_LOG2_MAX})")
    length = cursor.varint("main stream length")
    contexts = version >= MV_CONTEXT_VERSION and bool(length & 1)
    if version >= MV_CONTEXT_VERSION:
        length >>= 1
    scales = np.array([[scale_x], [scale_y]])
    if contexts:
        packed = int.from_bytes(cursor.take(_CONTEXT_SCALES_BYTES, "context scales"), "little")
        extra_bits = 2 * (CONTEXTS - 1) * _CONTEXT_SCALE_BITS
        if packed >> extra_bits:
            raise BitstreamError(f"section 'bmv': context scales 0x{packed:06x} set bits above "
                                 f"bit {extra_bits - 1}, which must be zero")
        more = [packed >> (_CONTEXT_SCALE_BITS * n) & (SCALE_COUNT - 1)
                for n in range(2 * (CONTEXTS - 1))]
        scales = np.array([[scale_x, *more[:CONTEXTS - 1]], [scale_y, *more[CONTEXTS - 1:]]])
    main = bytes(cursor.take(length, "main stream"))
    extra = bytes(cursor.take(len(data) - cursor.pos, "escape stream"))
    rows, cols = grid_of(size, block_log2)
    count = 2 * rows * cols
    trim = version >= LEAN_PACKET_VERSION
    if contexts:
        d = _decode_in_contexts(main, scales, rows, cols)
    else:
        rows_of = np.array([scale_x, scale_y])[np.arange(count) % 2]
        symbols = ans_decode(main, _freq_table()[rows_of], trim=trim).astype(np.int64)
        d = symbols - ESCAPE
    escaped = np.flatnonzero(np.abs(d) == ESCAPE)
    digits = ans_decode(extra, np.ones((2 * escaped.size, ESCAPE_BASE)), trim=trim)
    remainder = digits[0::2].astype(np.int64) * ESCAPE_BASE + digits[1::2]
    d[escaped] = np.sign(d[escaped]) * (ESCAPE + remainder)
    if contexts:  # stored by anti-diagonal: back to raster order
        raster = np.empty_like(d)
        raster.reshape(-1, 2)[diagonal_order(rows, cols)] = d.reshape(-1, 2)
        d = raster
    return BlockMotion(_accumulate(d.reshape(rows, cols, 2)), block_log2, precision_log2, cubic)


def _decode_in_contexts(main: bytes, scales: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The residual symbols - ESCAPE (escapes still at +-ESCAPE) of a context-coded main
    stream, in its anti-diagonal order; one batch per anti-diagonal."""
    grid = np.zeros((2, rows, cols), dtype=np.int64)  # clipped residuals decoded so far
    out = np.empty(2 * rows * cols, dtype=np.int64)
    thresholds = np.asarray(CONTEXT_THRESHOLDS)
    what = "section 'bmv' (main stream)"

    def work(coder: AnsCoder) -> None:
        start = 0
        for k in range(rows + cols - 1):
            i = np.arange(max(0, k - cols + 1), min(k, rows - 1) + 1)
            j = k - i
            near = np.zeros((2, i.size), dtype=np.int64)
            near += np.where(j > 0, np.abs(grid[:, i, np.maximum(j - 1, 0)]), 0)
            near += np.where(i > 0, np.abs(grid[:, np.maximum(i - 1, 0), j]), 0)
            table = scales[np.arange(2)[:, None], np.searchsorted(thresholds, near, side="right")]
            symbols = decode_batch(coder, _freq_table()[table.T.reshape(-1)]).astype(np.int64)
            symbols -= ESCAPE
            grid[:, i, j] = symbols.reshape(-1, 2).T
            out[start:start + symbols.size] = symbols
            start += symbols.size

    decode_words(untrim_words(main, what), work, what, f"all {out.size} residuals")
    return out


def _accumulate(d: np.ndarray) -> np.ndarray:
    """Vectors from residuals, block by block: each predictor needs the blocks before it."""
    rows, cols, _ = d.shape
    out = np.zeros((2, rows, cols), dtype=np.int32)
    res = d.tolist()
    for c in range(2):
        v = [[0] * cols for _ in range(rows)]
        for i in range(rows):
            for j in range(cols):
                if i == 0:
                    p = v[0][j - 1] if j else 0
                else:
                    top = v[i - 1][j]
                    left = v[i][j - 1] if j else top
                    top_right = v[i - 1][j + 1] if j + 1 < cols else top
                    p = _median3(left, top, top_right)
                value = p + res[i][j][c]
                if abs(value) > MAX_VECTOR:
                    raise BitstreamError(f"section 'bmv': block ({i}, {j}) has a vector "
                                         f"component {value}, beyond +-{MAX_VECTOR}")
                v[i][j] = value
        out[c] = np.asarray(v, dtype=np.int32)
    return out
