"""Format version 7's coding of the DCT layer (dvc_edic.dctlayer): contexts from the
levels already decoded, and cell parameters coded in the stream instead of raw bytes.

Why: version 6 spent two raw bytes on every non-empty (plane, band, class) cell and
one on every empty one. On small pictures that table was an eighth to a sixth of the
layer (carphone, bikes), and the cells could not be split further without paying for
it again. Here each cell costs a few bits: its scale index is coded against the same
cell's index one band lower, and the largest level R is gone, replaced by a half-width
that follows from the scale (the encoder only picks scales whose rows reach the
cell's largest level). That leaves room for a second context: within a block, how
much of the lower bands was coded. A block whose low frequencies are all zero rarely
has high ones; the encoder picks per frame how finely to split on that
(``CONTEXT_SPLITS``), since on small frames the extra cells cost more than they save.

The transform, the blocks, the bands and the activity classes are dctlayer's; only
the entropy coding differs from version 6. Decoding goes band by band, each band's
contexts computed from the bands before it for every block at once, so the cost
stays a few NumPy passes per band, not a loop over blocks.

Section layout (``dct``, versions 7 to 9):

    u16 step_q        little endian, >= 1 (units of 2**-STEP_FRACTION_BITS sample)
    u8 split          index into CONTEXT_SPLITS
    u8 chroma_ratio   version 9 only, >= 1: the U and V planes dequantize with
                      dctlayer.chroma_step_q(step_q, chroma_ratio), step_q times
                      chroma_ratio / 64 (before version 9 every plane uses step_q)
    rest              one ANS stream (trimmed words): for each band, each plane, each
                      activity class, each context (band 0 has one), every cell that
                      has coefficients in this frame: its head symbol, then, when its
                      t > 0, its levels

A cell's head is t = 0 (every level zero) or t = s + 1 for scale index s, coded as
t - p + SCALE_LEVELS under ``head_row(version)`` (its scale index is 16 in version 7,
28 from version 8), where p is the t of the last coded cell of the
same plane, class and context (band 0's cell counts for every context), or in band 0
the t of the previous coded cell (0 for the first). Its levels are coded as
level + H(s) under ``frequency_row(s, H(s))``, H = ``half_widths()[s]``.

From version 11 the head has one of three rows, by what predicts it (HEAD_GROUPS): band
0's cells, cells whose p is 0 (nothing coded in the band below: 88 % of them code
nothing either) and cells whose p is a scale (the next band's scale is lower, by 2.6
steps on average); each group's predictor is p + offset, clamped to 0..SCALE_LEVELS,
and t - (p + offset) + SCALE_LEVELS is coded under ``frequency_row(scale, 64)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cache, lru_cache

import numpy as np

from dvc_edic.bitstream.version import (
    CHROMA_STEP_VERSION,
    CONTEXT_LAYER_VERSION,
    FORMAT_VERSION,
    GROUPED_HEAD_VERSION,
    WIDE_HEAD_VERSION,
)
from dvc_edic.dctlayer import (
    BAND,
    BANDS,
    BLOCK,
    CHROMA_RATIO_ONE,
    CLASSES,
    MAX_LEVEL,
    PLANES,
    PROB_BITS,
    ROW_CONFIG,
    SCALE_LEVELS,
    SECTION,
    TAIL_STEPS,
    DctLayer,
    activity_classes,
    check_shapes,
    frequency_row,
    layer_shapes,
)
from dvc_edic.entropy.ans import AnsCoder, decode_words, fixed_model, trim_words, untrim_words
from dvc_edic.entropy.grids import scale_grid
from dvc_edic.errors import BitstreamError, InputError
from dvc_edic.io.frames import Frame

# The format's constants: changing any of them changes the stream.
# Thresholds on e = sum of |level| over a block's bands below the coefficient's: the
# context is how many thresholds e reaches. Index 0 splits nothing.
CONTEXT_SPLITS: tuple[tuple[int, ...], ...] = ((), (1, 3), (1, 2, 4, 9))
HALF_WIDTH_SIGMAS = 16  # H(s) covers 16 sigma of the row's tail component
MIN_HALF_WIDTH = 2
# Scale index of the head symbols' row, by format version: 16 (core sigma 0.31, tail 0.96)
# in version 7 was too narrow for how far a cell's scale moves from its predictor; 28
# codes the medium preset's layers of the dev clips in 0.9-3.4 % fewer bytes.
HEAD_SCALES = {CONTEXT_LAYER_VERSION: 16, WIDE_HEAD_VERSION: 28}
HEAD_HALF = SCALE_LEVELS  # t - p lies in -64..64
# Version 11: (scale index of the row, offset added to p) of each head group: band 0,
# p = 0, p > 0. Fitted on the medium preset's layers of the dev clips (45,000 cells;
# each clip's own best is within 1-3 % of these bits): the heads in 31 % fewer bits.
HEAD_GROUPS = ((42, 3), (4, 0), (36, -3))
_HEAD_BYTES = 3  # u16 step_q, u8 split
_CHROMA_BYTES = 1  # from version 9: u8 chroma_ratio after the split

POSITIONS = BLOCK * BLOCK
# Flat positions of each band, and of all bands below it, within a block (raster order).
BAND_POSITIONS = tuple(np.flatnonzero(BAND.ravel() == b) for b in range(BANDS))
_LOWER = tuple(BAND.ravel() < b for b in range(BANDS))


def head_bytes(version: int) -> int:
    """Bytes before the ANS stream in a section of ``version``."""
    return _HEAD_BYTES + (_CHROMA_BYTES if version >= CHROMA_STEP_VERSION else 0)


@lru_cache(maxsize=1)
def half_widths() -> tuple[int, ...]:
    """H(s) for every scale index: the row of scale s codes levels -H..H.

    From the exact scale grid (dvc_edic.entropy.grids): 16 times a power of two is
    exact in a float, so the ceiling is the same on every machine (a test pins it).
    """
    sigmas = scale_grid(ROW_CONFIG).sigmas
    return tuple(
        min(MAX_LEVEL, max(MIN_HALF_WIDTH, math.ceil(
            HALF_WIDTH_SIGMAS * float(sigmas[min(s + TAIL_STEPS, SCALE_LEVELS - 1)]))))
        for s in range(SCALE_LEVELS)
    )


def head_row(version: int = FORMAT_VERSION) -> np.ndarray:
    """The row of head symbols t - p + 64 (129 symbols) in a stream of ``version`` before
    11 (from 11: ``head_coding``)."""
    return frequency_row(head_scale(version), HEAD_HALF)


@cache
def head_row_of(scale: int) -> np.ndarray:
    """The head row of scale index ``scale`` (129 symbols)."""
    return frequency_row(scale, HEAD_HALF)


def head_coding(version: int, band: int, p: int) -> tuple[int, int]:
    """(scale index of the row, predictor) of a cell's head whose last coded t is ``p``:
    the head symbol is t - predictor + 64 under ``head_row_of(scale)``."""
    if version < GROUPED_HEAD_VERSION:
        return head_scale(version), p
    scale, offset = HEAD_GROUPS[0 if band == 0 else 1 if p == 0 else 2]
    return scale, min(max(p + offset, 0), SCALE_LEVELS)


def head_scale(version: int) -> int:
    """The head row's scale index for a stream of ``version`` (7 or later)."""
    if version < CONTEXT_LAYER_VERSION:
        raise ValueError(f"format version {version} has no context-coded dct sections")
    return HEAD_SCALES[max(v for v in HEAD_SCALES if v <= version)]


def level_row(scale: int) -> np.ndarray:
    """The row of a cell of scale index ``scale``: symbols level + H(scale)."""
    return frequency_row(scale, half_widths()[scale])


@lru_cache(maxsize=1)
def level_bits() -> np.ndarray:
    """(SCALE_LEVELS, 2 * MAX_LEVEL + 1) bits of level l (column l + MAX_LEVEL) under each
    scale's row; inf where the row does not reach. The encoder's scale search."""
    bits = np.full((SCALE_LEVELS, 2 * MAX_LEVEL + 1), np.inf)
    for s, half in enumerate(half_widths()):
        row = level_row(s).astype(np.float64)
        bits[s, MAX_LEVEL - half: MAX_LEVEL + half + 1] = PROB_BITS - np.log2(row)
    bits.flags.writeable = False
    return bits


def best_scale(levels: np.ndarray) -> tuple[int, float]:
    """(scale index, bits) that codes ``levels`` (not all zero) in the fewest bits, among
    the scales whose rows reach their largest |level|; ties go to the lowest index."""
    counts = np.bincount(levels.ravel() + MAX_LEVEL, minlength=2 * MAX_LEVEL + 1)
    used = np.flatnonzero(counts)
    bits = level_bits()[:, used] @ counts[used].astype(np.float64)
    scale = int(np.argmin(bits))
    return scale, float(bits[scale])


def block_contexts(flat: np.ndarray, band: int, split: tuple[int, ...]) -> np.ndarray:
    """Context of every block (nblocks,) for ``band``, from its own lower bands."""
    if band == 0 or not split:
        return np.zeros(flat.shape[0], dtype=np.int64)
    energy = np.abs(flat[:, _LOWER[band]]).sum(axis=1, dtype=np.int64)
    return np.searchsorted(np.asarray(split), energy, side="right")


def coded_cells(
    flats: list[np.ndarray], classes: tuple[np.ndarray, ...], split: tuple[int, ...]
) -> Iterator[tuple[int, int, int, int, np.ndarray]]:
    """(band, plane, class, context, block indices) of every cell with coefficients, in
    stream order. Lazy: a band's contexts are computed when its first cell is reached,
    so the decoder has filled ``flats`` with the bands below by then.

    The contexts are block_contexts', with each plane's lower-band energy kept as a
    running sum (band b's added when band b + 1 starts, after its cells are final)
    instead of summed again over every lower band: the same integers for a third of
    the reads, which decoding a large frame notices."""
    energy = [np.zeros(f.shape[0], dtype=np.int64) for f in flats]
    edges = np.asarray(split)
    of_class = [[c == cls for cls in range(CLASSES)] for c in classes]
    for band in range(BANDS):
        for plane in range(PLANES):
            if band and split:
                below = flats[plane][:, BAND_POSITIONS[band - 1]]
                energy[plane] += np.abs(below).sum(axis=1, dtype=np.int64)
                contexts = np.searchsorted(edges, energy[plane], side="right")
            else:
                contexts = np.zeros(flats[plane].shape[0], dtype=np.int64)
            for cls in range(CLASSES):
                for ctx in range(len(split) + 1 if band else 1):
                    rows = np.flatnonzero(of_class[plane][cls] & (contexts == ctx))
                    if rows.size:  # a cell without coefficients is not in the stream
                        yield band, plane, cls, ctx, rows


class _Heads:
    """The head predictor p of each cell (see the module docstring)."""

    def __init__(self, contexts: int) -> None:
        self.contexts = contexts
        self.last: dict[tuple[int, int, int], int] = {}
        self.band0 = 0

    def predict(self, band: int, plane: int, cls: int, ctx: int) -> int:
        return self.band0 if band == 0 else self.last[(plane, cls, ctx)]

    def update(self, band: int, plane: int, cls: int, ctx: int, t: int) -> None:
        if band == 0:
            self.band0 = t
            for x in range(self.contexts):
                self.last[(plane, cls, x)] = t
        else:
            self.last[(plane, cls, ctx)] = t


def _split_bytes(flats: list[np.ndarray], classes: tuple[np.ndarray, ...], step_q: int,
                 chroma_ratio: int, split_index: int, version: int) -> bytes:
    split = CONTEXT_SPLITS[split_index]
    heads = _Heads(len(split) + 1)
    items: list[tuple[np.ndarray, np.ndarray]] = []  # (symbols, row), in decode order
    for band, plane, cls, ctx, rows in coded_cells(flats, classes, split):
        levels = flats[plane][np.ix_(rows, BAND_POSITIONS[band])].ravel()
        t = best_scale(levels)[0] + 1 if levels.any() else 0
        scale, pred = head_coding(version, band, heads.predict(band, plane, cls, ctx))
        items.append((np.array([t - pred + HEAD_HALF], dtype=np.int32), head_row_of(scale)))
        if t:
            items.append(((levels + half_widths()[t - 1]).astype(np.int32), level_row(t - 1)))
        heads.update(band, plane, cls, ctx, t)
    out = step_q.to_bytes(2, "little") + bytes([split_index])
    if version >= CHROMA_STEP_VERSION:
        out += bytes([chroma_ratio])
    coder = AnsCoder()
    for symbols, row in reversed(items):  # a stack: the decoder pops the first first
        coder.encode_reverse(symbols, fixed_model(row))
    return out + trim_words(coder.get_compressed().astype("<u4").tobytes())


def layer_bytes(layer: DctLayer, base: Frame, version: int = FORMAT_VERSION) -> bytes:
    """The ``dct`` section of ``layer`` over ``base`` for a stream of ``version`` (7 or
    later): the shortest of the context splits, each cell at its cheapest scale, so its
    length is the layer's cost."""
    check_shapes(layer, base, "layer_bytes")
    if layer.chroma_ratio != CHROMA_RATIO_ONE and version < CHROMA_STEP_VERSION:
        raise InputError(f"layer_bytes: a version-{version} section has one step for every "
                         f"plane, got chroma_ratio {layer.chroma_ratio} (expected "
                         f"{CHROMA_RATIO_ONE}; version {CHROMA_STEP_VERSION} carries it)")
    classes = tuple(c.ravel() for c in activity_classes(base))
    flats = [lv.reshape(-1, POSITIONS) for lv in layer.levels]
    return min(
        (_split_bytes(flats, classes, layer.step_q, layer.chroma_ratio, i, version)
         for i in range(len(CONTEXT_SPLITS))),
        key=len,
    )


def read_layer(data: bytes, base: Frame, version: int = FORMAT_VERSION) -> DctLayer:
    """Inverse of :func:`layer_bytes`; any inconsistency in ``data`` raises BitstreamError."""
    data = bytes(data)
    head = head_bytes(version)
    if len(data) < head:
        fields = "step_q, split" + (", chroma_ratio" if head > _HEAD_BYTES else "")
        raise BitstreamError(
            f"{SECTION}: expected at least {head} bytes ({fields}), got {len(data)}"
        )
    step_q = int.from_bytes(data[:2], "little")
    if step_q == 0:
        raise BitstreamError(f"{SECTION}: step_q at offset 0 is 0, expected >= 1")
    split_index = data[2]
    if split_index >= len(CONTEXT_SPLITS):
        raise BitstreamError(
            f"{SECTION}: context split {split_index} at offset 2, expected < "
            f"{len(CONTEXT_SPLITS)}"
        )
    chroma_ratio = data[_HEAD_BYTES] if head > _HEAD_BYTES else CHROMA_RATIO_ONE
    if chroma_ratio == 0:
        raise BitstreamError(
            f"{SECTION}: chroma_ratio at offset {_HEAD_BYTES} is 0, expected 1..255"
        )
    split = CONTEXT_SPLITS[split_index]
    classes = tuple(c.ravel() for c in activity_classes(base))
    shapes = layer_shapes(base)
    flats = [np.zeros((nby * nbx, POSITIONS), dtype=np.int32) for nby, nbx in shapes]
    what = f"{SECTION} (ANS stream at byte {head})"
    payload = data[head:]

    def work(coder: AnsCoder) -> None:
        heads = _Heads(len(split) + 1)
        models = {}  # head rows' models by scale index, each built once
        for band, plane, cls, ctx, rows in coded_cells(flats, classes, split):
            scale, pred = head_coding(version, band, heads.predict(band, plane, cls, ctx))
            if scale not in models:
                models[scale] = fixed_model(head_row_of(scale))
            t = int(coder.decode(models[scale])) - HEAD_HALF + pred
            if not 0 <= t <= SCALE_LEVELS:
                raise BitstreamError(
                    f"{what}: cell (band {band}, plane {'yuv'[plane]}, class {cls}, context "
                    f"{ctx}) has head {t}, expected 0..{SCALE_LEVELS} (corrupt stream)"
                )
            if t:
                positions = BAND_POSITIONS[band]
                symbols = coder.decode(fixed_model(level_row(t - 1)), rows.size * positions.size)
                levels = np.asarray(symbols, dtype=np.int32) - half_widths()[t - 1]
                flats[plane][np.ix_(rows, positions)] = levels.reshape(rows.size, positions.size)
            heads.update(band, plane, cls, ctx, t)

    decode_words(untrim_words(payload, what), work, what, "every cell")
    levels = tuple(f.reshape(nby, nbx, BLOCK, BLOCK) for f, (nby, nbx) in zip(flats, shapes,
                                                                              strict=True))
    return DctLayer(step_q=step_q, levels=(levels[0], levels[1], levels[2]),
                    chroma_ratio=chroma_ratio)
