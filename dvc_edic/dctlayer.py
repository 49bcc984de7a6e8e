"""The DCT layer: an 8x8 transform-coded residual on top of a decoded frame.

Why it exists: the learned coders saturate at high rates (their quality stops
rising however many bits they are given), while a plain block-DCT residual
keeps buying quality at a steady rate. A packet may carry one ``dct`` section;
the decoder decodes the learned parts, rounds them to an integer
:class:`~dvc_edic.io.Frame` (the *base*), and adds this layer's residual.

Everything the decoder does here is integer arithmetic (integer sums are exact
in any order; the inverse transform runs its integer products in float64, where
every value it meets is an integer below 2**53 and so exact), and the one float
table, the DCT matrix, is rounded to integers whose float values sit far from
every rounding boundary (tests/test_dctlayer.py checks it), so encoder and
decoder agree bit for bit on every machine.

Each plane (y, u, v) is tiled by 8x8 blocks, padded at the bottom and right for
the transform only. Block levels are dequantized (``levels * step_q``, in units
of 2**-STEP_FRACTION_BITS sample) and inverse transformed with the integer
matrix ``CI = round(C * 2**COEF_BITS)``; the residual is rounded half up.

Entropy coding uses contexts the decoder knows from the base frame alone: the
band of a coefficient (``min(i + j, BANDS - 1)``) and the activity class of its
block (the base's summed absolute gradients inside the block), so textured
blocks, where the base is least accurate, get their own statistics without any
side information. The symbols of a cell (plane, band, class) all share one
integer frequency row, a two-Gaussian mixture from the project's entropy
tables, whose scale the encoder picks per cell.

Section layout (``dct``) of format version 6; version 7 codes the same levels as
dvc_edic.dctcontext lays them out, and the writer uses that; version 9 adds a byte
there, ``chroma_ratio``, and the U and V planes dequantize with
``chroma_step_q(step_q, chroma_ratio)`` instead of ``step_q``:

    u16 step_q          little endian, >= 1 (units of 2**-STEP_FRACTION_BITS sample)
    72 x cell           per cell (plane, band, class), planes outermost, classes
                        innermost: u8 R = max |level| of the cell; when R > 0 a
                        second u8, the scale index s (< SCALE_LEVELS) of its row
    rest                one ANS stream with every cell of R > 0 in cell order,
                        symbol = level + R; constriction's 32-bit words little
                        endian, with the zero high bytes of the last word dropped
                        (empty when every R is 0)

Within a cell the symbols are its blocks in raster order (blocks of the cell's
class only) and, within each block, the positions of the cell's band in raster
order. Symbol counts come from the base frame, so a stream can never make the
decoder allocate more than the frame's own size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dvc_edic.entropy.ans import AnsCoder, decode_words, fixed_model, trim_words, untrim_words
from dvc_edic.entropy.config import GmmConfig
from dvc_edic.entropy.quantize import QuantizedGmm
from dvc_edic.entropy.tables import mixture_frequencies
from dvc_edic.errors import BitstreamError, InputError
from dvc_edic.io.frames import Frame, max_sample_value, sample_dtype

SECTION = "dct"  # the section's name in a packet, and in every error message

# The format's constants: changing any of them changes the stream.
BLOCK = 8  # transform block side, in samples of the plane
COEF_BITS = 12  # the integer DCT matrix is round(C * 2**COEF_BITS)
STEP_FRACTION_BITS = 4  # step_q counts 2**-4 samples: steps from 1/16 sample up
# Final shift of the inverse transform: two matrix factors and the step's fraction.
SHIFT = 2 * COEF_BITS + STEP_FRACTION_BITS
MAX_LEVEL = 255  # |level| bound: R fits a byte and every product stays inside int64
MAX_STEP_Q = (1 << 16) - 1  # step_q is a u16
# Version 9: the chroma planes' step is step_q times chroma_ratio / 64, chroma_ratio a u8
# (1..255: from 1/64 of the luma step to just under 4 times it).
CHROMA_RATIO_BITS = 6
CHROMA_RATIO_ONE = 1 << CHROMA_RATIO_BITS
MAX_CHROMA_RATIO = 255
BANDS = 8  # coefficient (i, j) is in band min(i + j, BANDS - 1): band 7 holds the 36 highest
# Block activity: summed |horizontal| + |vertical| differences inside the block (112 pairs)
# of the base at 8-bit scale; mean gradient 2 and 8 per pair separate the classes.
ACTIVITY_THRESHOLDS = (224, 896)
CLASSES = len(ACTIVITY_THRESHOLDS) + 1  # flat, moderate, textured
PLANES = 3  # y, u, v
CELLS = PLANES * BANDS * CLASSES  # 72 context cells, each with its own R and scale
SCALE_LEVELS = 64  # scale indices of the frequency rows: one per grid scale
TAIL_STEPS = 10  # the tail component's scale index offset: sigma about 3x the core's
# The cell rows: an integer mixture of two Gaussians centred on 0, core weight 3/4
# and a 1/4 tail component; the third component has weight 0 (QuantizedGmm rows
# carry GmmConfig.mixtures components).
ROW_WEIGHTS = (192, 64, 0)
ROW_CONFIG = GmmConfig.from_dict(
    {
        "mixtures": 3,
        "mean_step_log2": 4,
        # 0.05, not the models' 0.11: with 0.11 a zero could never cost less than about
        # 0.05 bits, and sparse cells (one level of 1 among thousands of zeros) cost 5-8x
        # their entropy; 0.05 with a 10-step tail brings them to it
        "scale_min": 0.05,
        "scale_max": 64.0,
        "scale_levels": SCALE_LEVELS,
        "weight_bits": 8,
        "prob_bits": 16,
        "max_half_width": MAX_LEVEL,
    }
)
PROB_BITS = ROW_CONFIG.prob_bits  # every row sums to 2**16
_HEAD_BYTES = 2  # the u16 step_q


def _dct_matrix() -> np.ndarray:
    """The orthonormal DCT-II matrix C[k, n] (float64), the encoder's forward transform."""
    k = np.arange(BLOCK, dtype=np.float64)[:, None]
    n = np.arange(BLOCK, dtype=np.float64)[None, :]
    c = math.sqrt(2.0 / BLOCK) * np.cos(math.pi * (2.0 * n + 1.0) * k / (2.0 * BLOCK))
    c[0] *= 1.0 / math.sqrt(2.0)
    return c


DCT_MATRIX = _dct_matrix()
DCT_MATRIX.flags.writeable = False
# The decoder's matrix. Every entry of C * 2**12 is far from a .5 boundary (a test checks
# it), so an ulp of libm's cos cannot change the rounding on any machine.
DCT_MATRIX_INT = np.rint(DCT_MATRIX * (1 << COEF_BITS)).astype(np.int64)
DCT_MATRIX_INT.flags.writeable = False

# Band of each position (i, j) of a block.
BAND = np.minimum(np.add.outer(np.arange(BLOCK), np.arange(BLOCK)), BANDS - 1)
BAND.flags.writeable = False
_BAND_MASKS = tuple(np.equal(BAND, b) for b in range(BANDS))

# Worst-case |R| = MAX_LEVEL * MAX_STEP_Q * (BLOCK * max|CI|)**2 must fit int64 with the
# rounding constant added.
if MAX_LEVEL * MAX_STEP_Q * (BLOCK * int(np.abs(DCT_MATRIX_INT).max())) ** 2 >= 1 << 62:
    raise ImportError("dct layer: inverse transform could overflow int64")
# The 2-D inverse transform as one matrix on row-major blocks: entry ((k, l), (i, j)) is
# CI[k, i] * CI[l, j], so flat(D) @ _KRON_FLOAT = flat(CI.T @ D @ CI).
_KRON_FLOAT = np.kron(DCT_MATRIX_INT, DCT_MATRIX_INT).astype(np.float64)
_KRON_FLOAT.flags.writeable = False
# Doubles hold every integer below 2**53 exactly, and no partial sum of a column of that
# product exceeds |D| times the column's absolute sum: below 2**53, the float64 product is
# exact integer math.
if MAX_LEVEL * MAX_STEP_Q * int(np.abs(_KRON_FLOAT).sum(axis=0).max()) >= 1 << 53:
    raise ImportError("dct layer: the inverse transform's sums could leave float64's exact range")


@dataclass(frozen=True, eq=False)
class DctLayer:
    """Quantized DCT levels of each plane, (nby, nbx, 8, 8) int32, with their step.

    Validated on construction so that a layer that could not be written (or could
    overflow the inverse transform) is caught where it is made. Equality compares
    every level, so a round trip can be checked with ``==``.
    """

    step_q: int  # dequantization step in units of 2**-STEP_FRACTION_BITS sample
    levels: tuple[np.ndarray, np.ndarray, np.ndarray]
    # the chroma planes' step relative to step_q, in 1/CHROMA_RATIO_ONE (format version 9;
    # CHROMA_RATIO_ONE: the same step, all a stream of an earlier version can carry)
    chroma_ratio: int = CHROMA_RATIO_ONE

    def __post_init__(self) -> None:
        for name, value, top in (("step_q", self.step_q, MAX_STEP_Q),
                                 ("chroma_ratio", self.chroma_ratio, MAX_CHROMA_RATIO)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InputError(f"DctLayer: {name} must be an integer, got {value!r}")
            if not 1 <= int(value) <= top:
                raise InputError(f"DctLayer: {name} must be in [1, {top}], got {value}")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.levels, (tuple, list)) or len(self.levels) != PLANES:
            raise InputError(f"DctLayer: expected {PLANES} level arrays (y, u, v)")
        out = []
        for name, a in zip("yuv", self.levels, strict=True):
            if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu":
                raise InputError(f"DctLayer: levels of plane {name} must be an integer array")
            if a.ndim != 4 or a.shape[2:] != (BLOCK, BLOCK):
                raise InputError(
                    f"DctLayer: levels of plane {name} must have shape (nby, nbx, {BLOCK}, "
                    f"{BLOCK}), got {a.shape}"
                )
            if a.size and np.abs(a.astype(np.int64)).max() > MAX_LEVEL:
                raise InputError(f"DctLayer: levels of plane {name} exceed +-{MAX_LEVEL}")
            out.append(np.ascontiguousarray(a, dtype=np.int32))
        object.__setattr__(self, "levels", tuple(out))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DctLayer):
            return NotImplemented
        return (self.step_q, self.chroma_ratio) == (other.step_q, other.chroma_ratio) and all(
            a.shape == b.shape and np.array_equal(a, b)
            for a, b in zip(self.levels, other.levels, strict=True)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable arrays: not hashable

    @property
    def step(self) -> float:
        return step_samples(self.step_q)

    @property
    def plane_steps(self) -> tuple[int, int, int]:
        return plane_step_qs(self.step_q, self.chroma_ratio)


def plane_step_qs(step_q: int, ratio: int) -> tuple[int, int, int]:
    """The step_q of the y, u and v planes: chroma's follows from the ratio."""
    chroma = chroma_step_q(step_q, ratio)
    return step_q, chroma, chroma


def chroma_step_q(step_q: int, ratio: int) -> int:
    """The chroma planes' step_q: ``(step_q * ratio + 32) >> 6``, kept in [1, MAX_STEP_Q].
    Integer arithmetic, so encoder and decoder agree; ratio CHROMA_RATIO_ONE gives step_q."""
    rounded = (step_q * ratio + (CHROMA_RATIO_ONE >> 1)) >> CHROMA_RATIO_BITS
    return min(max(rounded, 1), MAX_STEP_Q)


def step_samples(step_q: int) -> float:
    """The dequantization step in samples: step_q counts 2**-STEP_FRACTION_BITS samples
    (exact in a float)."""
    return step_q / (1 << STEP_FRACTION_BITS)


def layer_shapes(base: Frame) -> tuple[tuple[int, int], ...]:
    """(block rows, block columns) of each plane: the layer's shape follows from the frame."""
    return tuple((-(-p.shape[0] // BLOCK), -(-p.shape[1] // BLOCK)) for p in base.planes)


def check_shapes(layer: DctLayer, base: Frame, where: str) -> None:
    for name, a, shape in zip("yuv", layer.levels, layer_shapes(base), strict=True):
        if a.shape[:2] != shape:
            raise InputError(
                f"{where}: levels of plane {name} have {a.shape[:2]} blocks, the "
                f"{base.width}x{base.height} frame has {shape}"
            )


def activity_classes(base: Frame, planes: int = PLANES) -> tuple[np.ndarray, ...]:
    """Activity class (0 .. CLASSES-1) of every block of each plane, (nby, nbx) int64;
    of the first ``planes`` planes only (the in-loop filter needs luma's).

    Computed on the base at 8-bit scale, so the thresholds mean the same at every
    bit depth; only differences inside a block count, so a block's class does not
    depend on its neighbours (nor on how the frame is cut into blocks elsewhere).
    A block's sum stays below 2 * 56 * 255, so int32 holds it.
    """
    shift = base.bit_depth - 8
    out = []
    for plane, (nby, nbx) in zip(base.planes[:planes], layer_shapes(base)[:planes],
                                 strict=True):
        # at 8-bit scale int16 holds every sample and difference; the padded plane seen
        # as (block row, y, block column, x) needs no transposed copy
        a = np.pad((plane >> shift).astype(np.int16),
                   ((0, nby * BLOCK - plane.shape[0]), (0, nbx * BLOCK - plane.shape[1])),
                   mode="edge").reshape(nby, BLOCK, nbx, BLOCK)
        g = (np.abs(np.diff(a, axis=3)).sum(axis=(1, 3), dtype=np.int32)
             + np.abs(np.diff(a, axis=1)).sum(axis=(1, 3), dtype=np.int32))
        cls = np.zeros(g.shape, dtype=np.int64)
        for threshold in ACTIVITY_THRESHOLDS:
            cls += g >= threshold
        out.append(cls)
    return tuple(out)


def inverse_transform(levels: np.ndarray, step_q: int) -> np.ndarray:
    """Residual in samples (int64) of blocks (..., 8, 8) of levels; exact integer math.

    ``(CI.T @ (levels * step_q) @ CI + 2**(SHIFT-1)) >> SHIFT``: the shift floors,
    so the result is the exact product rounded half up, whatever the order of sums.
    The transform runs as one float64 product of the flattened blocks with
    ``kron(CI, CI)`` (BLAS; about twice as fast as numpy's int64 loops): every
    operand, product and partial sum is an integer below 2**53 in magnitude (checked
    at import), so each is exact in a double and the sums agree in any order, on
    any thread count.
    """
    flat = levels.reshape(-1, BLOCK * BLOCK).astype(np.float64) * float(step_q)
    out = np.matmul(flat, _KRON_FLOAT).reshape(levels.shape).astype(np.int64)
    out += 1 << (SHIFT - 1)
    out >>= SHIFT
    return out


def apply_layer(base: Frame, layer: DctLayer) -> Frame:
    """The base frame plus the layer's residual, clipped to the sample range (a new Frame)."""
    check_shapes(layer, base, "apply_layer")
    top = max_sample_value(base.bit_depth)
    dtype = sample_dtype(base.bit_depth)
    planes = []
    for plane, levels, step_q in zip(base.planes, layer.levels, layer.plane_steps, strict=True):
        nby, nbx = levels.shape[:2]
        res = inverse_transform(levels, step_q)
        res = res.transpose(0, 2, 1, 3).reshape(nby * BLOCK, nbx * BLOCK)
        out = plane.astype(np.int64) + res[: plane.shape[0], : plane.shape[1]]
        planes.append(np.clip(out, 0, top).astype(dtype))
    return Frame(y=planes[0], u=planes[1], v=planes[2], bit_depth=base.bit_depth)


def _mixtures(scales: np.ndarray) -> QuantizedGmm:
    """The cell rows' mixtures (ROW_WEIGHTS, centred on 0) for scale indices ``scales``."""
    s = scales.astype(np.int32)
    return QuantizedGmm(
        weights=np.tile(np.asarray(ROW_WEIGHTS, dtype=np.int32), (s.size, 1)),
        means=np.zeros((s.size, len(ROW_WEIGHTS)), dtype=np.int32),
        scale_idx=np.stack([s, np.minimum(s + TAIL_STEPS, SCALE_LEVELS - 1), s], axis=1),
    )


@lru_cache(maxsize=MAX_LEVEL + 1)
def _scale_table(half_width: int) -> np.ndarray:
    """Rows of every scale index for symbols -R..R: (SCALE_LEVELS, 2R+1) int32, read-only.

    One call of the mixture tables for all scales (each row depends on its own
    scale only); cached because a frame needs a handful of distinct R (int32, as
    entries are at most 2**16: all 256 tables together stay under 34 MB).
    """
    rows = mixture_frequencies(
        _mixtures(np.arange(SCALE_LEVELS)), np.zeros(SCALE_LEVELS, dtype=np.int64), half_width,
        0, SCALE_LEVELS, ROW_CONFIG, np.int32,
    )
    if np.any(rows.sum(axis=1, dtype=np.int64) != 1 << PROB_BITS) or rows.min() < 1:
        raise AssertionError("dct layer: a frequency row is not a PMF")  # cannot happen
    rows.flags.writeable = False
    return rows


def frequency_row(scale: int, half_width: int) -> np.ndarray:
    """Integer frequencies (2R+1,) of symbols level + R of a cell: each >= 1, sum 2**16."""
    if not 0 <= scale < SCALE_LEVELS or not 1 <= half_width <= MAX_LEVEL:
        raise InputError(
            f"frequency_row: expected scale in [0, {SCALE_LEVELS - 1}] and R in "
            f"[1, {MAX_LEVEL}], got {scale}, {half_width}"
        )
    return _one_row(scale, half_width)


@lru_cache(maxsize=4096)
def _one_row(scale: int, half_width: int) -> np.ndarray:
    """One cell's row alone: the decoder needs at most 72 per frame, so it does not build
    the encoder's table of all 64 scales for each R (a tenth of a second per R at the
    top). Each row depends on its own mixture only: it equals the table's row (tested)."""
    row = mixture_frequencies(
        _mixtures(np.array([scale])), np.zeros(1, dtype=np.int64), half_width, 0, 1,
        ROW_CONFIG, np.int32,
    )[0]
    row.flags.writeable = False
    return row


def _cell_name(index: int) -> str:
    plane, rest = divmod(index, BANDS * CLASSES)
    band, cls = divmod(rest, CLASSES)
    return f"cell {index} (plane {'yuv'[plane]}, band {band}, class {cls})"


def _cell_counts(classes: tuple[np.ndarray, ...]) -> list[int]:
    """Symbols of each cell, in cell order."""
    band_sizes = [int(m.sum()) for m in _BAND_MASKS]
    return [
        int(np.count_nonzero(cls == c)) * band_sizes[b]
        for cls in classes
        for b in range(BANDS)
        for c in range(CLASSES)
    ]


def _cell_symbols(layer: DctLayer, classes: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """The levels of each cell (int32, C-order of blocks then positions), in cell order."""
    out = []
    for levels, cls in zip(layer.levels, classes, strict=True):
        per_class = [levels[cls == c] for c in range(CLASSES)]  # (n_c, 8, 8), raster order
        for mask in _BAND_MASKS:
            out.extend(blocks[:, mask].reshape(-1) for blocks in per_class)
    return out


def _best_scale(symbols: np.ndarray, half_width: int) -> int:
    """The scale index whose row codes ``symbols`` (level + R) in the fewest bits.

    Exact code length under the integer rows, from the histogram; ties go to the
    lowest index. Only the encoder runs this: the decoder reads the index.
    """
    counts = np.bincount(symbols, minlength=2 * half_width + 1).astype(np.float64)
    bits = (PROB_BITS - np.log2(_scale_table(half_width))) @ counts
    return int(np.argmin(bits))


def layer_bytes(layer: DctLayer, base: Frame) -> bytes:
    """The ``dct`` section of ``layer`` over ``base`` (the decoder's frame before the layer).

    Each cell's scale index is chosen here, as the one that codes the cell in the
    fewest bits, so the section is a function of (step_q, levels) and its length
    is the layer's real cost.
    """
    check_shapes(layer, base, "layer_bytes")
    if layer.chroma_ratio != CHROMA_RATIO_ONE:
        raise InputError(f"layer_bytes: a version-6 section has one step for every plane, "
                         f"got chroma_ratio {layer.chroma_ratio} (expected {CHROMA_RATIO_ONE})")
    cells = _cell_symbols(layer, activity_classes(base))
    table = bytearray(layer.step_q.to_bytes(_HEAD_BYTES, "little"))
    coded: list[tuple[np.ndarray, int, int]] = []  # (symbols, R, scale) of cells with R > 0
    for levels in cells:
        half = int(np.abs(levels).max()) if levels.size else 0
        table.append(half)
        if half:
            symbols = (levels + half).astype(np.int32)
            scale = _best_scale(symbols, half)
            table.append(scale)
            coded.append((symbols, half, scale))
    if not coded:
        return bytes(table)
    coder = AnsCoder()
    for symbols, half, scale in reversed(coded):  # a stack: the decoder pops the first first
        coder.encode_reverse(symbols, fixed_model(frequency_row(scale, half)))
    words = coder.get_compressed().astype("<u4").tobytes()
    return bytes(table) + trim_words(words)


def read_layer(data: bytes, base: Frame) -> DctLayer:
    """Inverse of :func:`layer_bytes`; any inconsistency in ``data`` raises BitstreamError."""
    data = bytes(data)
    if len(data) < _HEAD_BYTES:
        raise BitstreamError(
            f"{SECTION}: expected at least {_HEAD_BYTES} bytes (step_q), got {len(data)}"
        )
    step_q = int.from_bytes(data[:_HEAD_BYTES], "little")
    if step_q == 0:
        raise BitstreamError(f"{SECTION}: step_q at offset 0 is 0, expected >= 1")
    classes = activity_classes(base)
    counts = _cell_counts(classes)
    pos = _HEAD_BYTES
    heads: list[tuple[int, int]] = []  # (R, scale) of each cell
    for index, count in enumerate(counts):
        if pos >= len(data):
            raise BitstreamError(
                f"{SECTION}: the cell table ends at byte {pos} in {_cell_name(index)}, "
                f"expected {CELLS} cells"
            )
        half = data[pos]
        pos += 1
        scale = 0
        if half:
            if pos >= len(data):
                raise BitstreamError(
                    f"{SECTION}: the cell table ends at byte {pos}, expected the scale index "
                    f"of {_cell_name(index)}"
                )
            scale = data[pos]
            if scale >= SCALE_LEVELS:
                raise BitstreamError(
                    f"{SECTION}: scale index {scale} of {_cell_name(index)} at byte {pos}, "
                    f"expected < {SCALE_LEVELS}"
                )
            pos += 1
            if not count:
                raise BitstreamError(
                    f"{SECTION}: {_cell_name(index)} has R={half} but this frame gives it "
                    "no coefficients"
                )
        heads.append((half, scale))
    payload = data[pos:]
    cells = [np.zeros(count, dtype=np.int32) for count in counts]
    if any(half for half, _ in heads):
        _decode_cells(payload, pos, heads, cells)
    elif payload:
        raise BitstreamError(
            f"{SECTION}: {len(payload)} bytes after the cell table at byte {pos}, expected "
            "none (every cell is zero)"
        )
    return DctLayer(step_q=step_q, levels=_place(cells, classes, base))


def _decode_cells(
    payload: bytes, offset: int, heads: list[tuple[int, int]], cells: list[np.ndarray]
) -> None:
    """Decode the ANS stream into ``cells`` (levels, in place); errors become BitstreamError."""
    what = f"{SECTION} (ANS stream at byte {offset})"

    def work(coder: AnsCoder) -> None:
        for out, (half, scale) in zip(cells, heads, strict=True):
            if half:
                out[:] = coder.decode(fixed_model(frequency_row(scale, half)), out.size)

    decode_words(untrim_words(payload, what), work, what, "every cell")
    for index, (out, (half, _)) in enumerate(zip(cells, heads, strict=True)):
        if half:
            out -= half
            # The encoder writes R = max |level|: a cell that never reaches it is corrupt.
            actual = int(np.abs(out).max())
            if actual != half:
                raise BitstreamError(
                    f"{SECTION}: {_cell_name(index)} decodes to max |level| {actual}, "
                    f"expected R={half} (corrupt stream)"
                )


def _place(
    cells: list[np.ndarray], classes: tuple[np.ndarray, ...], base: Frame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell sequences back into (nby, nbx, 8, 8) level arrays (inverse of _cell_symbols)."""
    out = []
    it = iter(cells)
    for cls, (nby, nbx) in zip(classes, layer_shapes(base), strict=True):
        levels = np.zeros((nby, nbx, BLOCK, BLOCK), dtype=np.int32)
        selected = [cls == c for c in range(CLASSES)]
        per_class = [np.zeros((int(m.sum()), BLOCK, BLOCK), dtype=np.int32) for m in selected]
        for mask in _BAND_MASKS:
            for blocks in per_class:
                blocks[:, mask] = next(it).reshape(blocks.shape[0], int(mask.sum()))
        for m, blocks in zip(selected, per_class, strict=True):
            levels[m] = blocks
        out.append(levels)
    return out[0], out[1], out[2]
