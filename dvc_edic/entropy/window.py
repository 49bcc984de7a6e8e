"""Format 12's windows for the y coder: each element coded under a row sized from its own mixture.

Why. Up to format 11 every element of a GMM-coded latent is coded under a row of
2R+1 integer frequencies, where R is the largest |symbol - centre| in the whole
tensor (36-53 at quality 4, 1080p), set by a handful of outliers. Almost every
element's mixture lies within a few symbols of its centre, and both costs of
the coder grow with the row: building the rows (numpy, int64 per cell) and
constriction's per-symbol model (it scans the row). At 1080p, quality 4, that
was 0.6 s of table building and 0.3 s of decoding per I-frame.

What. An element's window half-width w is the smallest of a few fixed classes
(configs/bitstream.yaml, by format version) above the reach of its mixture: over
its live components (weight > 0), the distance from the centre to the symbol
nearest the component's mean, plus ceil(reach_sigmas * sigma)
(:func:`dvc_edic.entropy.grids.scale_reach`); w is capped at R. All of it is
integer arithmetic on the QuantizedGmm, so the decoder computes the same w on
any machine and any thread count. The element is coded under the same integer
row as before (:func:`dvc_edic.entropy.tables.mixture_frequencies`), but with
half-width w: its end symbols carry the mixture's tails, so they mean "w or
more from the centre, on this side". When w < R and the symbol lands on an end,
its distance beyond, d = |symbol - centre| - w in [0, R - w], is an escape.

Order. Elements are coded by increasing w, in element order within one w (a
stable sort of w, a pure function of the parameters); then every escape, in
the same order, under a fixed row of Exp-Golomb shape over [0, R - w]
(:func:`escape_row`), by the same ANS coder. The coder builds the rows of each
w in chunks of ``tables.chunk_size(w)`` elements, so every chunk's rows have
one length; the chunks change no byte.

What it costs: with 2.5 sigmas, 1-13 elements in 10,000 escape (1080p, qualities
1-8), and the shorter rows spend fewer counts on the one-per-symbol floor: y
comes out 0.03-0.21 % smaller than format 11's on real content. The rows average
7-16 symbols instead of 37-187, and y decodes in half the CPU time or less
(docs/architecture.md, Decode speed).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dvc_edic.bitstream.version import Y_WINDOW_VERSION
from dvc_edic.config import CONFIG_ROOT, check_int, check_int_list, check_keys, load_yaml
from dvc_edic.entropy import parallel
from dvc_edic.entropy.config import MAX_HALF_WIDTH_LIMIT, GmmConfig
from dvc_edic.entropy.grids import PHI_Z_MAX, scale_reach
from dvc_edic.entropy.quantize import QuantizedGmm, centres
from dvc_edic.entropy.tables import cells_dtype, chunk_size, window_cells
from dvc_edic.errors import InputError

BITSTREAM_CONFIG = CONFIG_ROOT / "bitstream.yaml"
SECTION = "y_window"  # the file's section, which every message names
PLAN_SPAN = 1 << 15  # elements per span of the plan's parallel work
# Escape distances d follow freq(d) = 4**(ESCAPE_TOP - bit_length(d + 1)): Exp-Golomb's
# lengths (2 * floor(log2(d + 1)) + 1 bits); d < R <= MAX_HALF_WIDTH_LIMIT, so every
# frequency is an integer >= 1 and they sum to less than 2**(2 * ESCAPE_TOP).
ESCAPE_TOP = MAX_HALF_WIDTH_LIMIT.bit_length()


@dataclass(frozen=True)
class WindowConfig:
    """One entry of configs/bitstream.yaml's ``y_window`` (see its comments)."""

    classes: tuple[int, ...]  # the half-widths a window may take, increasing
    reach_sigmas: float  # a component reaches ceil(reach_sigmas * sigma) past its mean

    def __post_init__(self) -> None:
        where = f"{SECTION}.classes"
        ordered = list(self.classes) == sorted(set(self.classes))
        if not (self.classes and ordered and self.classes[0] >= 1
                and self.classes[-1] <= MAX_HALF_WIDTH_LIMIT):  # fmt: skip
            raise InputError(
                f"{where}: expected increasing half-widths in [1, {MAX_HALF_WIDTH_LIMIT}], "
                f"got {list(self.classes)}"
            )
        if not 0 < self.reach_sigmas <= PHI_Z_MAX:
            raise InputError(
                f"{SECTION}.reach_sigmas: expected a number in (0, {PHI_Z_MAX}], "
                f"got {self.reach_sigmas!r}"
            )

    @classmethod
    def from_dict(cls, d: object, where: str) -> WindowConfig:
        section = check_keys(d, where, ("classes", "reach_sigmas"))
        sigmas = section["reach_sigmas"]
        if isinstance(sigmas, bool) or not isinstance(sigmas, (int, float)):
            raise InputError(f"{where}.reach_sigmas: expected a number, got {sigmas!r}")
        return cls(
            classes=check_int_list(f"{where}.classes", section["classes"], 1),
            reach_sigmas=float(sigmas),
        )


@lru_cache(maxsize=1)
def _entries() -> dict[int, WindowConfig]:
    raw = load_yaml(BITSTREAM_CONFIG)
    table = raw.get(SECTION)
    if not isinstance(table, dict) or not table:
        raise InputError(f"{BITSTREAM_CONFIG}: expected a non-empty mapping {SECTION!r}")
    return {
        check_int(f"{SECTION} key", v, Y_WINDOW_VERSION): WindowConfig.from_dict(
            entry, f"{SECTION}.{v}"
        )
        for v, entry in table.items()
    }


def window_config(version: int) -> WindowConfig:
    """The window settings of format ``version`` (Y_WINDOW_VERSION or later)."""
    entries = _entries()
    known = [v for v in entries if v <= version]
    if not known:
        raise InputError(f"{BITSTREAM_CONFIG}: no {SECTION} entry for format version {version}")
    return entries[max(known)]


@lru_cache(maxsize=8)
def _class_lookup(classes: tuple[int, ...]) -> np.ndarray:
    """lookup[r]: the smallest class above r, for r < the largest class; the last entry,
    for every reach beyond, is MAX_HALF_WIDTH_LIMIT (then capped at R)."""
    reach = np.arange(classes[-1] + 1)
    table = np.asarray([*classes, MAX_HALF_WIDTH_LIMIT], dtype=np.int64)
    return table[np.searchsorted(np.asarray(classes), reach, side="right")]


def window_widths(
    q: QuantizedGmm, centre: np.ndarray, half: int, cfg: GmmConfig, wcfg: WindowConfig
) -> np.ndarray:
    """Each element's window half-width (int64, 1..half) from its parameters alone."""
    lookup = _class_lookup(wcfg.classes)
    # int32 throughout: |means| <= MEAN_ABS_MAX << mean_step_log2 and reaches stay far below.
    m = q.means.astype(np.int32, copy=False)
    # The symbol nearest each component's mean, rounded as centres() rounds (so the
    # heaviest component's is the centre itself), then the component's reach beyond it.
    far = (m + np.int32(1 << (cfg.mean_step_log2 - 1))) >> cfg.mean_step_log2
    far -= centre.astype(np.int32)[:, None]
    np.abs(far, out=far)
    far += np.take(_reach_table(cfg, wcfg.reach_sigmas), q.scale_idx)
    far[q.weights <= 0] = 0  # a weightless component reaches nowhere
    reach = column_max(far)
    return np.minimum(np.take(lookup, np.minimum(reach, lookup.size - 1)), half)


@lru_cache(maxsize=8)
def _reach_table(cfg: GmmConfig, sigmas: float) -> np.ndarray:
    return scale_reach(cfg, sigmas).astype(np.int32)


def column_max(a: np.ndarray) -> np.ndarray:
    """a.max(axis=1) of an (E, K) array with few columns, a column at a time: numpy's
    reduction along a short last axis costs about ten times as much."""
    out = a[:, 0].copy()
    for k in range(1, a.shape[1]):
        np.maximum(out, a[:, k], out=out)
    return out


@dataclass(frozen=True, eq=False)
class WindowPlan:
    """The coding order of one tensor: position p codes element ``order[p]`` under a
    window of half-width ``width[p]``, with ``spans`` cutting the positions into chunks of
    one width; ``cells`` are each element's tables.window_cells, in element order."""

    centre: np.ndarray  # int64 (N,), in element order
    order: np.ndarray  # intp (N,)
    width: np.ndarray  # int64 (N,), non-decreasing
    spans: list[tuple[int, int]]
    cells: np.ndarray  # int32 (N, 2K): index | weights

    def rows_cells(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(index, weights) of coding positions start..stop-1: one gather of whole rows."""
        part = np.take(self.cells, self.order[start:stop], axis=0)
        k = part.shape[1] // 2
        return part[:, :k], part[:, k:]


def window_plan(q: QuantizedGmm, half: int, cfg: GmmConfig, version: int,
                centre: np.ndarray | None = None) -> WindowPlan:  # fmt: skip
    """The order, widths and chunks for a tensor of half-width ``half`` >= 1 (and the
    centres, unless given). Each element's width and cells depend on its own parameters
    only, so spans of elements are worked out side by side (entropy.parallel)."""
    wcfg = window_config(version)
    n, k = q.weights.shape
    if centre is None:
        centre = np.empty(n, dtype=np.int64)
        find_centres = True
    else:
        find_centres = False
    width = np.empty(n, dtype=np.uint16)  # <= MAX_HALF_WIDTH_LIMIT; numpy radix-sorts 16 bits
    cells = np.empty((n, 2 * k), dtype=cells_dtype(cfg))

    def span(start: int, stop: int) -> None:
        part = QuantizedGmm(q.weights[start:stop], q.means[start:stop], q.scale_idx[start:stop])
        if find_centres:
            centre[start:stop] = centres(part, cfg)
        c = centre[start:stop]
        w = window_widths(part, c, half, cfg, wcfg)
        width[start:stop] = w
        cells[start:stop, :k], cells[start:stop, k:] = window_cells(part, c, w, cfg)

    parallel.run(span, n, PLAN_SPAN)
    order = np.argsort(width, kind="stable")
    counts = np.bincount(width, minlength=half + 1)
    spans: list[tuple[int, int]] = []
    start = 0
    for w in np.flatnonzero(counts):
        size = int(counts[w])
        spans += [(start + a, start + b) for a, b in parallel.chunks(size, chunk_size(int(w)))]
        start += size
    return WindowPlan(centre=centre, order=order, width=width[order].astype(np.int64),
                      spans=spans, cells=cells)  # fmt: skip


@lru_cache(maxsize=64)
def escape_row(count: int) -> np.ndarray:
    """Frequencies (float64, exact integers) of the escape distances d = 0 .. count - 1."""
    powers = 1 << np.arange(ESCAPE_TOP + 1, dtype=np.int64)
    bits = np.searchsorted(powers, np.arange(1, count + 1), side="right")  # bit_length(d + 1)
    return np.ldexp(1.0, 2 * (ESCAPE_TOP - bits))
