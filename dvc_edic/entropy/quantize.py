"""From the hyper-decoder's float mixture parameters to integers on fixed grids.

This is the only place where floats meet the coder. To keep even this step a
pure function of its input floats on every platform, it avoids transcendental
functions: the inputs are widened to float64 (exact) and only subtracted,
multiplied by powers of two, rounded and compared with constant boundaries,
all of which IEEE 754 rounds identically everywhere. Softmax weights come from
logit differences quantized to 1/2**LOGIT_STEP_LOG2 and an integer exp table.
What it cannot fix: the decoder must feed it the same floats the encoder did
(the hyper-decoder's output), bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dvc_edic.entropy import parallel
from dvc_edic.entropy.config import GmmConfig
from dvc_edic.entropy.grids import LOGIT_STEP_LOG2, scale_grid, weight_exp_table
from dvc_edic.errors import InputError

QUANTIZE_SPAN = 1 << 15  # elements per span of quantize_gmm's parallel work
MEAN_ABS_MAX = 1 << 15  # means are clamped to +-32768 latent units: keeps symbols in int32
PARAM_NDIM = 5  # (B, K, M, H, W)


@dataclass(frozen=True, eq=False)
class QuantizedGmm:
    """Per-element mixture on the integer grids; row i is element i in C-order of (M, H, W)."""

    weights: np.ndarray  # int32 (N, K), each row sums to 2**weight_bits
    means: np.ndarray  # int32 (N, K), units of 2**-mean_step_log2
    scale_idx: np.ndarray  # int32 (N, K), index into scale_grid(cfg), 0 .. scale_levels-1

    @property
    def num_elements(self) -> int:
        return int(self.weights.shape[0])


def _flat64(t: torch.Tensor) -> np.ndarray:
    """(1, K, M, H, W) tensor -> contiguous float64 (K, N) (widening is exact)."""
    a = t.detach().to(device="cpu", dtype=torch.float64).contiguous().numpy()[0]
    return a.reshape(a.shape[0], -1)


def _finite(a: np.ndarray) -> np.ndarray:
    big = np.finfo(np.float64).max / 4  # far beyond every clamp below, and safe to subtract
    return np.nan_to_num(a, nan=0.0, posinf=big, neginf=-big)


def _quantize_weights(logits: np.ndarray, weight_bits: int) -> np.ndarray:
    """Integer softmax over axis 0 of (K, N): non-negative int64 columns summing to
    exactly 2**weight_bits."""
    exp_table = weight_exp_table()
    last = exp_table.size - 1
    gap = logits.max(axis=0) - logits  # >= 0, exact-rounded
    j = np.rint(np.minimum(gap * (1 << LOGIT_STEP_LOG2), last)).astype(np.int64)
    e = exp_table[j]  # the heaviest component has j = 0, so each column sum is > 0
    total = e.sum(axis=0)
    scaled = e << weight_bits
    w = scaled // total
    rem = scaled - w * total
    # Largest remainders get the counts lost to flooring (ties: lower component index).
    deficit = (1 << weight_bits) - w.sum(axis=0)
    for k in range(w.shape[0]):
        ahead = np.zeros(w.shape[1], dtype=np.int64)
        for i in range(w.shape[0]):
            if i != k:
                ahead += (rem[i] > rem[k]) | ((rem[i] == rem[k]) & (i < k))
        w[k] += ahead < deficit
    return w


def quantize_gmm(
    weight_logits: torch.Tensor, means: torch.Tensor, scales: torch.Tensor, cfg: GmmConfig
) -> QuantizedGmm:
    """Quantize (1, K, M, H, W) float parameters; the result's rows follow C-order of (M, H, W).

    Each element depends on its own parameters only, so spans of elements are
    quantised side by side on the cores torch may use (entropy.parallel).
    """
    shapes = {tuple(t.shape) for t in (weight_logits, means, scales)}
    if len(shapes) != 1:
        raise InputError(f"quantize_gmm: parameter shapes differ: {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) != PARAM_NDIM or shape[0] != 1 or shape[1] != cfg.mixtures:
        raise InputError(f"quantize_gmm: expected shape (1, {cfg.mixtures}, M, H, W), got {shape}")
    step = 1 << cfg.mean_step_log2
    mean_limit = MEAN_ABS_MAX * step
    boundaries = scale_grid(cfg).boundaries
    logits64, means64, scales64 = (_flat64(t) for t in (weight_logits, means, scales))
    count = logits64.shape[1]
    out = [np.empty((count, cfg.mixtures), dtype=np.int32) for _ in range(3)]  # (N, K) each

    def span(start: int, stop: int) -> None:
        w = _quantize_weights(_finite(logits64[:, start:stop]), cfg.weight_bits)
        m = np.rint(np.clip(_finite(means64[:, start:stop]) * step, -mean_limit, mean_limit))
        s = np.searchsorted(boundaries, _finite(scales64[:, start:stop]), side="right")
        for dst, src in zip(out, (w, m, s), strict=True):
            dst[start:stop] = src.T

    parallel.run(span, count, QUANTIZE_SPAN)
    return QuantizedGmm(weights=out[0], means=out[1], scale_idx=out[2])


def dequantize_gmm(
    q: QuantizedGmm, cfg: GmmConfig, shape: tuple[int, int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float (weights, means, scales) that the coder actually uses.

    (N, K) float32 tensors, or (1, K, M, H, W) when ``shape`` = (M, H, W) is given.
    Weights are probabilities (rows sum to 1), not logits.
    """
    validate_quantized(q, cfg)
    weights = q.weights.astype(np.float64) / (1 << cfg.weight_bits)
    means = q.means.astype(np.float64) / (1 << cfg.mean_step_log2)
    scales = scale_grid(cfg).sigmas[q.scale_idx]
    out = []
    for a in (weights, means, scales):
        t = torch.from_numpy(a.astype(np.float32))
        if shape is not None:
            t = t.T.reshape(1, a.shape[1], *shape)
        out.append(t)
    return out[0], out[1], out[2]


def validate_quantized(q: QuantizedGmm, cfg: GmmConfig) -> None:
    """Raise InputError unless ``q`` is a well-formed mixture for ``cfg``."""
    arrays = {"weights": q.weights, "means": q.means, "scale_idx": q.scale_idx}
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.ndim != 2 or a.dtype.kind not in "iu":
            raise InputError(f"QuantizedGmm.{name}: expected a 2-D integer array, got {a!r:.80}")
        if a.shape != q.weights.shape:
            raise InputError(
                f"QuantizedGmm.{name}: expected shape {q.weights.shape}, got {a.shape}"
            )
    if q.weights.shape[1] != cfg.mixtures:
        raise InputError(
            f"QuantizedGmm: expected {cfg.mixtures} components, got {q.weights.shape[1]}"
        )
    if q.weights.size == 0:
        return
    row = q.weights[:, 0].astype(np.int64)
    for k in range(1, q.weights.shape[1]):  # a column at a time: see centres()
        row += q.weights[:, k]
    if q.weights.min() < 0 or np.any(row != 1 << cfg.weight_bits):
        raise InputError(
            f"QuantizedGmm.weights: expected non-negative rows summing to {1 << cfg.weight_bits}"
        )
    limit = MEAN_ABS_MAX << cfg.mean_step_log2
    if np.abs(q.means.astype(np.int64)).max() > limit:
        raise InputError(f"QuantizedGmm.means: expected |mean| <= {limit}")
    if q.scale_idx.min() < 0 or q.scale_idx.max() >= cfg.scale_levels:
        raise InputError(
            f"QuantizedGmm.scale_idx: expected values in [0, {cfg.scale_levels - 1}], got "
            f"[{q.scale_idx.min()}, {q.scale_idx.max()}]"
        )


def centres(q: QuantizedGmm, cfg: GmmConfig) -> np.ndarray:
    """Per-element integer centre: the heaviest component's mean rounded half up (int64);
    of equally heavy components, the first's."""
    # A column at a time (numpy's argmax along a short last axis costs several times more);
    # only a strictly heavier component replaces the one before, as argmax keeps the first.
    heaviest = q.weights[:, 0].copy()
    m = q.means[:, 0].astype(np.int64)
    for k in range(1, q.weights.shape[1]):
        heavier = q.weights[:, k] > heaviest
        np.copyto(heaviest, q.weights[:, k], where=heavier)
        np.copyto(m, q.means[:, k], where=heavier)
    return (m + (1 << (cfg.mean_step_log2 - 1))) >> cfg.mean_step_log2
