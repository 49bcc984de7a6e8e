"""Integer PMFs of the quantized mixture, identical on every machine by construction.

Everything after ``quantize_gmm`` is numpy int64 arithmetic on the constant tables
of :mod:`dvc_edic.entropy.grids`, so the encoder and the decoder build the same
integers whatever the thread count, SIMD path or platform.

Component CDF. A mean m (integer, units of 1/S with S = 2**mean_step_log2) is
split into m = q*S + r with 0 <= r < S. The CDF of component (sigma_s, m) at the
lower edge t - 1/2 of integer symbol t depends only on (s, r, u = t - q):

    F[s, r, u] = Phi((u*S - S/2 - r) / (S * sigma_s))      (units of 2**-PHI_BITS)

with z computed in fixed point from round(2**INV_SCALE_BITS / sigma_s) and Phi
linearly interpolated (integer) in ``phi_table()``. F saturates for |u| >= U_s
(U_s = ceil(PHI_Z_MAX * sigma_s) + 2); by definition F[s, r, u] := F[s, r,
clip(u, -U_s, U_s)]. ``component_cdf_table`` stores F for every (s, r) with
2R_max+1 copies of the saturated end values on each side, so a row of
consecutive edges is one clipped start index plus an ``arange`` (a gather).

Mixture PMF over the 2R+1 symbols c-R .. c+R of an element with centre c:

    M[e] = sum_k w_k * F_k(c - R + e),  e = 0 .. 2R+1   (w_k sum to 2**weight_bits)
    M[0] := 0, M[2R+1] := 2**(weight_bits + PHI_BITS)   (tails go to the end symbols)
    cdf[e] = ((M[e] * (2**prob_bits - (2R+1))) >> (weight_bits + PHI_BITS)) + e
    freq[e] = cdf[e+1] - cdf[e] >= 1,  sum = 2**prob_bits

Format 12 codes each element under its own, short row of half-width w instead of
R (dvc_edic.entropy.window): the same PMF with w for R, built by
``window_cells`` (per element, where its components start in the table) and
``window_rows`` (the rows of a chunk of one w).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import as_strided

from dvc_edic.entropy.config import INT64_SAFE_BITS, MAX_WEIGHT_PLUS_PROB_BITS, GmmConfig
from dvc_edic.entropy.grids import (
    INV_SCALE_BITS,
    PHI_BITS,
    PHI_GRID_LOG2,
    PHI_INTERP_BITS,
    phi_table,
    scale_grid,
)
from dvc_edic.entropy.quantize import QuantizedGmm, centres

# Table cells (elements x edges) handled per chunk: bounds memory (a few int64
# temporaries of 2 MB each) independently of N and keeps them cache-friendly.
CHUNK_CELLS = 1 << 18

# Mixture sums reach 2**(weight_bits + prob_bits + PHI_BITS); GmmConfig caps the first two.
if PHI_BITS + MAX_WEIGHT_PLUS_PROB_BITS > INT64_SAFE_BITS:
    raise ImportError("entropy tables: PHI_BITS too large for int64 mixture sums")


@dataclass(frozen=True, eq=False)
class ComponentCdfTable:
    """F[s, r, u] flattened; see the module docstring."""

    values: np.ndarray  # int64 (total,), each in [0, 2**PHI_BITS]
    zero_index: np.ndarray  # int64 (levels, S): index of u = 0 for (s, r)
    u_min: np.ndarray  # int64 (levels,): lowest start u kept in the table (-(U_s + pad))
    u_max: np.ndarray  # int64 (levels,): highest start u (U_s); start + 2R+1 stays inside


def _phi_fixed(numerator: np.ndarray, inverse: int, mean_step_log2: int) -> np.ndarray:
    """Phi(numerator / (2**mean_step_log2 * sigma)) in units of 2**-PHI_BITS, integers only."""
    table = phi_table()
    last = table.size - 1
    ext = np.append(table, table[last])  # so that idx + 1 is valid at the end
    shift = INV_SCALE_BITS + mean_step_log2 - PHI_GRID_LOG2 - PHI_INTERP_BITS
    mag = np.abs(numerator) * inverse
    pos = mag >> shift if shift >= 0 else mag << -shift
    pos = np.minimum(pos, last << PHI_INTERP_BITS)
    idx = pos >> PHI_INTERP_BITS
    frac = pos & ((1 << PHI_INTERP_BITS) - 1)
    lo = ext[idx]
    val = lo + (((ext[idx + 1] - lo) * frac) >> PHI_INTERP_BITS)
    return np.where(numerator >= 0, val, (1 << PHI_BITS) - val)


@lru_cache(maxsize=4)
def component_cdf_table(cfg: GmmConfig) -> ComponentCdfTable:
    """All component CDFs of ``cfg`` (about 1.2M int64, 10 MB, for the shipped presets)."""
    grid = scale_grid(cfg)
    step = 1 << cfg.mean_step_log2
    pad = 2 * cfg.max_half_width + 1
    r = np.arange(step, dtype=np.int64)[:, None]
    blocks: list[np.ndarray] = []
    zero_index = np.empty((cfg.scale_levels, step), dtype=np.int64)
    offset = 0
    for s in range(cfg.scale_levels):
        half = int(grid.half_width[s])
        u = np.arange(-half, half + 1, dtype=np.int64)[None, :]
        numerator = u * step - step // 2 - r  # (S, 2U+1)
        f = _phi_fixed(numerator, int(grid.inverse[s]), cfg.mean_step_log2)
        f = np.pad(f, ((0, 0), (pad, pad)), mode="edge")
        width = f.shape[1]
        zero_index[s] = offset + np.arange(step) * width + pad + half
        offset += f.size
        blocks.append(f.reshape(-1))
    values = np.concatenate(blocks)
    if values.min() < 0 or values.max() > (1 << PHI_BITS):
        raise AssertionError("component CDF table out of range")  # cannot happen: Phi in [0,1]
    return ComponentCdfTable(
        values=np.ascontiguousarray(values, dtype=np.int64),
        zero_index=zero_index,
        u_min=-(grid.half_width + pad),
        u_max=grid.half_width.copy(),
    )


def chunk_size(half_width: int) -> int:
    """Elements per chunk for a support of 2*half_width+1 symbols."""
    return max(1, CHUNK_CELLS // (2 * half_width + 2))


def mixture_frequencies(
    q: QuantizedGmm,
    centre: np.ndarray,
    half_width: int,
    start: int,
    stop: int,
    cfg: GmmConfig,
    dtype: type[np.generic] = np.int64,
) -> np.ndarray:
    """Integer frequencies (stop-start, 2R+1) of elements start..stop-1, each row summing
    to 2**prob_bits with every entry >= 1; column j is symbol centre - R + j.

    ``dtype=np.float32`` gives the same integers (all at most 2**prob_bits <= 2**24,
    so exact) in the form constriction takes, without another pass over the table.

    Only the edges where some element's mixture can change are computed. R is the
    largest offset in the whole tensor, set by a few outliers, while a component's
    CDF is constant (saturated) beyond U_s of its mean: so M is constant on both
    sides of the span of edges where any component of the chunk is unsaturated
    (at q8, 1080p: about 60 % of the row). Outside that span every frequency is
    1, but for the end symbols, which take the tails: freq[0] = cdf(left) + 1
    and freq[2R] = spread - cdf(right) + 1 (the module docstring's M[0] := 0 and
    M[2R+1] := 2**(weight_bits + PHI_BITS), which are the row's own ends).
    """
    table = component_cdf_table(cfg)
    n = 2 * half_width + 1
    spread = (1 << cfg.prob_bits) - n  # counts left after the one-per-symbol floor
    c = centre[start:stop].astype(np.int64)
    w = q.weights[start:stop].astype(np.int64)  # (E, K)
    m = q.means[start:stop].astype(np.int64)
    s = q.scale_idx[start:stop].astype(np.int64)
    # Edge e of an element's row is its symbol c - R + e; component k is unsaturated
    # between its edges first_k -+ U (first_k: the edge of u = 0) and constant beyond.
    first = (m >> cfg.mean_step_log2) - (c - half_width)[:, None]
    reach = scale_grid(cfg).half_width[s]
    live = w > 0  # a weightless component adds nothing, wherever it is
    lo = int(np.where(live, first - reach, n).min(initial=n))
    hi = int(np.where(live, first + reach, 0).max(initial=0))
    a = min(max(lo, 0), n - 1)  # the computed edges a .. b: M is constant up to a and from b
    b = max(min(hi, n), a + 1)
    mix = _mixture_cdf(table, w * spread, m, s, first - a, b - a + 1, cfg)
    if a == 0:
        mix[:, 0] = 0  # the row's own ends, where the span reaches them
    if b == n:
        mix[:, -1] = spread
    out = np.ones((stop - start, n), dtype=dtype)
    np.subtract(mix[:, 1:], mix[:, :-1], out=out[:, a:b], casting="unsafe")  # exact: < 2**24
    out[:, a:b] += 1
    if a > 0:  # symbol 0 takes all the mass below edge 1, which is the mass below edge a
        out[:, 0] = mix[:, 0] + 1
    if b < n:  # symbol 2R all the mass above edge 2R, which is the mass above edge b
        out[:, n - 1] = spread - mix[:, -1] + 1
    return out


def window_frequencies(
    q: QuantizedGmm, centre: np.ndarray, half_width: int, cfg: GmmConfig,
    dtype: type[np.generic] = np.int64,
) -> np.ndarray:  # fmt: skip
    """The rows of :func:`mixture_frequencies` with half-width ``half_width`` for every
    element of ``q`` (E, 2w+1), by :func:`window_cells` and :func:`window_rows`."""
    width = np.full(centre.shape, half_width, dtype=np.int64)
    return window_rows(*window_cells(q, centre, width, cfg), half_width, cfg, dtype)


def cells_dtype(cfg: GmmConfig) -> type[np.generic]:
    """The integer type of :func:`window_cells`: int32 where every value fits, as for every
    shipped preset (half the memory traffic of int64), else int64. Table indices stay
    below the table's size, weights times spread below 2**(weight_bits + prob_bits), and
    the intermediate u and (s, r) values below 2**18 (MEAN_ABS_MAX, MAX_SCALE_LEVELS and
    MAX_MEAN_STEP_LOG2 bound them)."""
    small = cfg.weight_bits + cfg.prob_bits < 31
    return np.int32 if small and component_cdf_table(cfg).values.size < 2**31 else np.int64


@lru_cache(maxsize=4)
def _cell_tables(cfg: GmmConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The table's u_min, u_max and flattened zero_index as :func:`cells_dtype`."""
    table = component_cdf_table(cfg)
    dtype = cells_dtype(cfg)
    return tuple(a.reshape(-1).astype(dtype) for a in (table.u_min, table.u_max,
                                                       table.zero_index))  # type: ignore[return-value]


def window_cells(
    q: QuantizedGmm, centre: np.ndarray, width: np.ndarray, cfg: GmmConfig
) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`window_rows` needs of each element, whose row has half-width
    ``width[i]``: where its components' CDFs start in the table (at the row's first inner
    edge, the lower edge of symbol c - w + 1), and its weights times the row's spread
    (both (E, K), of :func:`cells_dtype`). Per element, so the windowed coder computes
    them in tensor order, in parallel, before putting them in coding order
    (dvc_edic.entropy.window)."""
    u_min, u_max, zero_index = _cell_tables(cfg)
    dtype = zero_index.dtype
    m = q.means.astype(dtype, copy=False)
    s = q.scale_idx.astype(dtype, copy=False)
    w = width.astype(dtype, copy=False)[:, None]
    # Component k's u at the first inner edge; clipped where the table is saturated.
    u = (centre.astype(dtype)[:, None] - w + 1) - (m >> cfg.mean_step_log2)
    # np.take: a third of the time of fancy indexing for these small gathers
    np.clip(u, np.take(u_min, s), np.take(u_max, s), out=u)
    index = np.take(zero_index, (s << cfg.mean_step_log2) | (m & ((1 << cfg.mean_step_log2) - 1)))
    index += u
    weights = q.weights.astype(dtype) * (dtype.type((1 << cfg.prob_bits) - 1) - 2 * w)
    return index, weights


def window_rows(
    index: np.ndarray, weights: np.ndarray, half_width: int, cfg: GmmConfig,
    dtype: type[np.generic] = np.int64,
) -> np.ndarray:  # fmt: skip
    """Rows (E, 2w+1) of elements whose :func:`window_cells` are ``index``, ``weights``:
    equal to :func:`mixture_frequencies`'s with half-width w (the module docstring's
    M[0] := 0 and M[2w+1] := the whole mass, so the end symbols take the tails).

    Only the 2w inner edges are computed: the windowed coder's rows are short and lie
    inside their mixture's span, where looking for constant stretches saves nothing.
    """
    table = component_cdf_table(cfg)
    n = 2 * half_width + 1
    spread = (1 << cfg.prob_bits) - n
    windows = _edge_windows(table, n - 1)
    mix = windows[index[:, 0]]  # (E, 2w) int64, a fresh copy
    mix *= weights[:, 0, None]
    for k in range(1, index.shape[1]):
        part = windows[index[:, k]]
        part *= weights[:, k, None]
        mix += part
    mix >>= cfg.weight_bits + PHI_BITS
    out = np.empty((mix.shape[0], n), dtype=dtype)
    np.subtract(mix[:, 1:], mix[:, :-1], out=out[:, 1:-1], casting="unsafe")  # exact: < 2**24
    out[:, 0] = mix[:, 0]  # symbol 0 takes all the mass below edge 1
    np.subtract(spread, mix[:, -1], out=out[:, -1], casting="unsafe")  # 2w: all above 2w
    out += 1
    return out


def _edge_windows(table: ComponentCdfTable, edges: int) -> np.ndarray:
    """Row i is values[i : i + edges]: one gather per element fetches all its consecutive
    edges (a view, nothing is copied here)."""
    return as_strided(
        table.values,
        shape=(table.values.size - edges + 1, edges),
        strides=(table.values.strides[0],) * 2,
        writeable=False,
    )


def _mixture_cdf(
    table: ComponentCdfTable,
    weights: np.ndarray,
    m: np.ndarray,
    s: np.ndarray,
    zero_edge: np.ndarray,
    edges: int,
    cfg: GmmConfig,
) -> np.ndarray:
    """(sum_k weights_k F_k) >> (weight_bits + PHI_BITS) on ``edges`` consecutive edges per
    element (E, edges), where component k's u = 0 is at edge ``zero_edge[:, k]``.

    ``weights`` already hold the factor 2**prob_bits - (2R+1): the products stay
    below 2**(weight_bits + prob_bits + PHI_BITS) <= 2**62.
    """
    windows = _edge_windows(table, edges)
    u0 = np.clip(-zero_edge, table.u_min[s], table.u_max[s])
    # zero_index[s, r] through its flat view: one gather instead of two index arrays
    flat = (s << cfg.mean_step_log2) | (m & ((1 << cfg.mean_step_log2) - 1))
    index = table.zero_index.reshape(-1)[flat] + u0  # (E, K)
    mix: np.ndarray | None = None
    for k in range(weights.shape[1]):
        if not weights[:, k].any():
            continue
        part = windows[index[:, k]]  # (E, edges) int64, a fresh copy
        part *= weights[:, k, None]
        if mix is None:
            mix = part
        else:
            mix += part
    if mix is None:  # unreachable for valid weights (rows sum to 2**weight_bits)
        mix = np.zeros((weights.shape[0], edges), dtype=np.int64)
    mix >>= cfg.weight_bits + PHI_BITS
    return mix


def ideal_code_length(coded: np.ndarray, q: QuantizedGmm, half_width: int, cfg: GmmConfig) -> float:
    """-sum log2 p(coded) in bits under the integer PMFs (the rate the coder aims at)."""
    centre = centres(q, cfg)
    total_bits = 0.0
    step = chunk_size(half_width)
    for start in range(0, centre.size, step):
        stop = min(start + step, centre.size)
        freq = mixture_frequencies(q, centre, half_width, start, stop, cfg)
        col = coded[start:stop].astype(np.int64) - centre[start:stop] + half_width
        f = freq[np.arange(stop - start), col]
        total_bits += float(np.sum(cfg.prob_bits - np.log2(f)))
    return total_bits
