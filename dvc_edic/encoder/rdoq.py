"""Rate-distortion optimised quantization of the DCT layer (format version 7's coding).

Why: a dead-zone quantizer rounds every coefficient by one fixed offset, whatever a
level costs where it lands. In the version-7 layer a level's cost depends on its
cell (band, plane, activity class, context) and on the scale the cell is coded at,
so the same |c| / step is cheap to keep in a busy cell and dear in a quiet one. Here
each coefficient picks, among rounding up, rounding down and zero, the level of
lowest ``bits + weight * squared error`` under the bits its cell will be coded with,
as x264's trellis and HEVC's RDOQ do. The decoder is untouched: it sees levels.

The bits come from the cells the dead-zone quantizer fills (its levels fix each
cell's scale), taken band by band so that a block's context follows the levels
already chosen below it; each cell's scale is then re-fitted to the new levels once.
The effect of a level on the contexts of the bands above it is not priced.
"""

from __future__ import annotations

import numpy as np

from dvc_edic.dctcontext import (
    BAND_POSITIONS,
    CONTEXT_SPLITS,
    POSITIONS,
    best_scale,
    block_contexts,
    coded_cells,
    level_bits,
)
from dvc_edic.dctlayer import (
    BANDS,
    CHROMA_RATIO_ONE,
    MAX_LEVEL,
    PLANES,
    DctLayer,
    activity_classes,
    step_samples,
)
from dvc_edic.encoder.dctsearch import quantize_coefficients
from dvc_edic.io import Frame

# Scale re-fits per cell: the scale from the dead-zone levels prices the first choice,
# the scale of the chosen levels the second (a third changes under 0.1 % of the bits).
_FITS = 2
_OUT_OF_REACH = 1e30  # bits of a level beyond a row's half-width, as a finite number


def rdo_quantize(coefs: tuple[np.ndarray, ...], base: Frame, step: float, deadzone: float,
                 weight: float, chroma_ratio: int = CHROMA_RATIO_ONE) -> DctLayer:
    """The layer of ``error_coefficients`` at ``step`` whose levels minimise
    ``bits + weight * SSE`` cell by cell (``weight``: bits per squared sample error).

    Starts from ``quantize_coefficients(coefs, step, deadzone)``, whose step and
    clipping it keeps; a cell the dead zone leaves all zero stays zero. If the result
    is not cheaper than the start by the same rate model, the start is returned.
    """
    start = quantize_coefficients(coefs, step, deadzone, chroma_ratio)
    used = [step_samples(s) for s in start.plane_steps]
    classes = tuple(c.ravel() for c in activity_classes(base))
    starts = [lv.reshape(-1, POSITIONS) for lv in start.levels]
    magnitude = [np.abs(c).reshape(-1, POSITIONS) / u for c, u in zip(coefs, used, strict=True)]
    signs = [np.sign(c).reshape(-1, POSITIONS).astype(np.int64) for c in coefs]
    start_bits = {sp: _ideal_bits(starts, classes, sp) for sp in CONTEXT_SPLITS}
    split = min(CONTEXT_SPLITS, key=start_bits.__getitem__)
    out = [np.zeros_like(f) for f in starts]
    table = level_bits()
    # bits per squared error in steps, per plane (chroma may have its own step)
    per_error = [weight * u * u for u in used]
    for band, plane, _, _, rows in coded_cells(out, classes, split):
        where = np.ix_(rows, BAND_POSITIONS[band])
        first = starts[plane][where]
        if not first.any():
            continue
        x = magnitude[plane][where]
        up = np.minimum(np.floor(x + 0.5), MAX_LEVEL).astype(np.int64)
        trials = np.stack([up, np.maximum(up - 1, 0), np.zeros_like(up)])
        error = per_error[plane] * (x[None] - trials) ** 2
        scale = best_scale(first)[0]
        for _ in range(_FITS):
            cost = error + table[scale, trials + MAX_LEVEL]
            levels = np.take_along_axis(trials, np.argmin(cost, axis=0)[None], axis=0)[0]
            # a level the row cannot reach costs inf, so it is never kept over the zero
            chosen = (levels * signs[plane][where]).astype(np.int32)
            if not chosen.any():
                break
            refit = best_scale(chosen)[0]
            if refit == scale:
                break
            scale = refit
        out[plane][where] = chosen
    if (_ideal_bits(out, classes, split) + _weighted_error(out, magnitude, per_error)
            >= start_bits[split] + _weighted_error(starts, magnitude, per_error)):
        return start  # the rate model missed (white noise, say): keep the dead zone's
    shapes = [lv.shape for lv in start.levels]
    levels = tuple(f.reshape(s) for f, s in zip(out, shapes, strict=True))
    return DctLayer(step_q=start.step_q, levels=(levels[0], levels[1], levels[2]),
                    chroma_ratio=start.chroma_ratio)


def _weighted_error(flats: list[np.ndarray], magnitude: list[np.ndarray],
                    per_error: list[float]) -> float:
    """Bits' worth of the squared error of levels ``flats`` (in steps, each plane at its
    weight; the transform is orthonormal, so the coefficients' error is the samples')."""
    return sum(w * float(((m - np.abs(f)) ** 2).sum())
               for m, f, w in zip(magnitude, flats, per_error, strict=True))


def _ideal_bits(flats: list[np.ndarray], classes: tuple[np.ndarray, ...],
                split: tuple[int, ...]) -> float:
    """The levels' bits, each cell at its cheapest scale, under context ``split`` (heads
    not counted): which split the rate model of rdo_quantize follows.

    Per band and plane, one histogram of (cell, level) pairs priced against every
    scale's row at once; the same sum as best_scale over coded_cells, without a
    Python pass per cell."""
    # (levels, scales); a row that cannot reach a level prices it out instead of at inf,
    # so that a count of 0 times it stays 0
    table = np.minimum(level_bits().T, _OUT_OF_REACH)
    symbols = 2 * MAX_LEVEL + 1
    total = 0.0
    for band in range(BANDS):
        positions = BAND_POSITIONS[band]
        for plane in range(PLANES):
            levels = flats[plane][:, positions]
            if not levels.any():
                continue
            contexts = block_contexts(flats[plane], band, split)
            cell = classes[plane].astype(np.int64) * (len(split) + 1) + contexts
            keys = (cell[:, None] * symbols + levels + MAX_LEVEL).ravel()
            cells = int(cell.max()) + 1
            counts = np.bincount(keys, minlength=cells * symbols).reshape(cells, symbols)
            counts[:, MAX_LEVEL] *= counts.sum(axis=1) > counts[:, MAX_LEVEL]  # all-zero cells
            used = np.flatnonzero(counts.any(axis=0))
            bits = counts[:, used].astype(np.float64) @ table[used]
            total += float(bits.min(axis=1).sum())
    return total
