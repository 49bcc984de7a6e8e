"""The encoder's side of the in-loop filter (dvc_edic.loopfilter): fitting each plane's
filter to the frame by least squares, and choosing per plane between no filter, the
decoder's last one and the new one by bits + weight * squared error.

The fit minimises the squared error of the unrounded filter; the choice prices the
coefficients as written and the error of the decoder's own integer filter, so what
it compares is what the stream will cost and give.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dvc_edic.dctlayer import BLOCK, activity_classes
from dvc_edic.io import Frame
from dvc_edic.loopfilter import (
    COEF_BITS,
    COEF_LIMIT,
    MODE_KEEP,
    MODE_NEW,
    MODE_OFF,
    PLANE_TAPS,
    Filters,
    LoopFilter,
    coefficient_shape,
    exp_golomb_bits,
    filter_plane,
    second_differences,
)

# Ridge on the normal equations, relative to their mean diagonal: keeps a class with few
# or flat samples from fitting wild coefficients. Not part of the format.
RIDGE = 1e-6
_CHUNK = 1 << 18  # samples per product when forming the normal equations (bounds memory)


def fit_plane(target: np.ndarray, recon: np.ndarray, plane: int,
              classes: np.ndarray | None) -> np.ndarray:
    """Quantized coefficients ((classes, taps) int32) that bring ``recon`` closest to
    ``target`` in the least-squares sense, class by class."""
    n_classes, n_taps = coefficient_shape(plane)
    diffs = np.stack(list(second_differences(recon, PLANE_TAPS[plane]))).reshape(n_taps, -1)
    error = (target.astype(np.int64) - recon.astype(np.int64)).ravel()
    labels = np.zeros(error.size, dtype=np.int64) if classes is None else classes.ravel()
    out = np.zeros((n_classes, n_taps), dtype=np.int32)
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)
        if idx.size < n_taps:
            continue
        gram = np.zeros((n_taps, n_taps))
        rhs = np.zeros(n_taps)
        for start in range(0, idx.size, _CHUNK):
            part = idx[start:start + _CHUNK]
            a = diffs[:, part].astype(np.float64)
            gram += a @ a.T
            rhs += a @ error[part].astype(np.float64)
        ridge = RIDGE * max(float(np.trace(gram)) / n_taps, 1.0)
        coef = np.linalg.solve(gram + ridge * np.eye(n_taps), rhs)
        out[c] = np.clip(np.round(coef * (1 << COEF_BITS)), -COEF_LIMIT, COEF_LIMIT)
    return out


def _sse(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.int64) - b.astype(np.int64)
    return float(np.dot(d.ravel(), d.ravel()))


class FittedFilter(NamedTuple):
    """The section to send and the frame the decoder makes with it (already filtered
    here by the decoder's own filter_plane, so the caller need not filter again)."""

    section: LoopFilter
    frame: Frame


def fit_loop_filter(source: Frame, recon: Frame, last: Filters,
                    weights: tuple[float, float, float]) -> FittedFilter | None:
    """Each plane's cheapest of off, the last filter and a new fit, by bits + its weight *
    SSE (``weights``: bits per squared sample error of Y, U and V); None when every plane
    is off."""
    blocks = activity_classes(recon, planes=1)[0]
    h, w = recon.y.shape
    classes = np.repeat(np.repeat(blocks, BLOCK, axis=0), BLOCK, axis=1)[:h, :w]
    modes: list[int] = []
    coefficients: list[np.ndarray | None] = []
    planes: list[np.ndarray] = []
    for plane, (src, rec, weight) in enumerate(zip(source.planes, recon.planes, weights,
                                                    strict=True)):
        cls = blocks if plane == 0 else None
        new = fit_plane(src, rec, plane, classes if plane == 0 else None)
        prev = last[plane]
        deltas = new if prev is None else new - prev
        options = [(weight * _sse(src, rec), MODE_OFF, rec)]
        new_bits = sum(exp_golomb_bits(int(v)) for v in deltas.ravel())
        filtered = filter_plane(rec, new, plane, cls, recon.bit_depth)
        options.append((weight * _sse(src, filtered) + new_bits, MODE_NEW, filtered))
        if prev is not None:
            kept = filter_plane(rec, prev, plane, cls, recon.bit_depth)
            options.append((weight * _sse(src, kept), MODE_KEEP, kept))
        _, mode, out = min(options, key=lambda option: option[:2])
        modes.append(mode)
        coefficients.append(new if mode == MODE_NEW else None)
        planes.append(out)
    if not any(modes):
        return None
    section = LoopFilter((modes[0], modes[1], modes[2]),
                         (coefficients[0], coefficients[1], coefficients[2]))
    return FittedFilter(section, Frame(planes[0], planes[1], planes[2], recon.bit_depth))
