"""BD-rate and BD-PSNR through the maintained `bjontegaard` package.

We only prepare the curves (sorted, validated) and keep what the package warns
about (too little overlap, no overlap) next to the number, so a table never shows
a BD-rate that the package itself flagged without saying so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dvc_edic.errors import InputError
from eval.sets import BD_METHODS

# Fewest rate points on a curve that an interpolated BD number is defined for.
MIN_POINTS = 2


@dataclass
class BDResult:
    """One BD comparison of a test curve against an anchor curve."""

    bd_rate_pct: float | None  # negative: the test needs fewer bits for the same quality
    bd_psnr_db: float | None  # positive: the test is better at the same rate
    method: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _curve(
    rates: Sequence[float], quality: Sequence[float], what: str
) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rates, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if r.shape != q.shape or r.ndim != 1:
        raise InputError(f"{what}: {r.size} rates but {q.size} quality values")
    if r.size < MIN_POINTS:
        raise InputError(f"{what}: BD needs at least {MIN_POINTS} rate points, got {r.size}")
    if np.any(r <= 0) or not np.all(np.isfinite(q)):
        raise InputError(f"{what}: rates must be positive and qualities finite: {r}, {q}")
    order = np.argsort(r)
    return r[order], q[order]


def _monotone(r: np.ndarray, q: np.ndarray) -> bool:
    return bool(np.all(np.diff(r) > 0) and np.all(np.diff(q) > 0))


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def bd_compare(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
    method: str = "pchip",
) -> BDResult:
    """BD-rate (%) and BD-PSNR (dB) of test against anchor; None where undefined, with a note."""
    import bjontegaard

    if method not in BD_METHODS:
        raise InputError(f"BD method must be one of {BD_METHODS}, got {method!r}")
    ra, qa = _curve(anchor_rates, anchor_quality, "anchor curve")
    rt, qt = _curve(test_rates, test_quality, "test curve")
    notes: list[str] = []
    for label, r, q in (("anchor", ra, qa), ("test", rt, qt)):
        if not _monotone(r, q):
            notes.append(
                f"{label} curve is not strictly increasing (rates {r.tolist()}, "
                f"quality {q.tolist()}); BD is undefined"
            )
    if notes:
        return BDResult(None, None, method, notes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rate = bjontegaard.bd_rate(ra, qa, rt, qt, method=method, require_matching_points=False)
        qual = bjontegaard.bd_psnr(ra, qa, rt, qt, method=method, require_matching_points=False)
    notes.extend(sorted({str(w.message) for w in caught}))
    return BDResult(_finite(rate), _finite(qual), method, notes)


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """Mean over the defined values; None when none is defined."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None
