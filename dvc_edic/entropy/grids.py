"""Constant integer tables that both the encoder and the decoder derive their PMFs from.

Why ``decimal``: these tables must come out bit-identical on every machine, and
libm's ``exp``/``log``/``erfc`` may differ by an ulp between platforms, which
could flip a rounded table entry. Python's ``decimal`` module is specified to
the last digit (+, -, *, /, ``sqrt``, ``exp`` and ``ln`` are correctly rounded
in a fixed context), so everything here is computed in ``decimal`` at
``DECIMAL_DIGITS`` digits and only then rounded to integers. The one binary
float that enters is ``math.pi`` (a fixed IEEE constant, identical everywhere);
its 1e-16 error moves Phi by far less than one unit of ``PHI_BITS`` and is the
same on every machine, so it costs neither accuracy nor determinism.

Tables (all built once, lazily, and cached):

- ``phi_table()``: Phi(z) = P(Z <= z) for z = i / 2**PHI_GRID_LOG2, 0 <= z <= PHI_Z_MAX,
  in units of 2**-PHI_BITS. Negative z uses Phi(-z) = 1 - Phi(z).
- ``weight_exp_table()``: round(2**WEIGHT_EXP_BITS * exp(-j / 2**LOGIT_STEP_LOG2)), which
  turns quantized logit differences into mixture weights without a float ``exp``.
- ``scale_grid(cfg)``: the log-spaced scales, their fixed-point inverses (for integer z
  computation) and the float decision boundaries used by ``quantize_gmm``.
- ``scale_reach(cfg, k)``: ceil(k * sigma_i) per level, for the y coder's windows
  (dvc_edic.entropy.window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, localcontext
from functools import lru_cache

import numpy as np

from dvc_edic.entropy.config import GmmConfig

DECIMAL_DIGITS = 50  # working precision of every decimal computation below

PHI_BITS = 30  # Phi and component CDFs are integers in units of 2**-30
PHI_GRID_LOG2 = 7  # Phi tabulated every 1/128 in z; linear interpolation in between
PHI_Z_MAX = 8  # 2**30 * Phi(-8) ~ 7e-7 rounds to 0: the table is saturated well before
PHI_INTERP_BITS = 16  # fractional bits of the interpolation position between grid points
INV_SCALE_BITS = 24  # 1/sigma stored as round(2**24 / sigma)

LOGIT_STEP_LOG2 = 6  # logit differences quantized to 1/64 (weight error <= ~0.8%)
WEIGHT_EXP_BITS = 24  # exp(-x) tabulated in units of 2**-24 before normalisation


def _round_int(x: Decimal) -> int:
    return int(x.to_integral_value(rounding=ROUND_HALF_EVEN))


@lru_cache(maxsize=1)
def phi_table() -> np.ndarray:
    """Phi(i / 2**PHI_GRID_LOG2) * 2**PHI_BITS, rounded, i = 0 .. PHI_Z_MAX * 2**PHI_GRID_LOG2.

    Uses the everywhere-convergent series with positive terms
    Phi(z) = 1/2 + phi(z) * sum_n z**(2n+1) / (1*3*...*(2n+1)), so no cancellation.
    """
    steps = PHI_Z_MAX << PHI_GRID_LOG2
    out = np.empty(steps + 1, dtype=np.int64)
    with localcontext() as ctx:
        ctx.prec = DECIMAL_DIGITS
        half = Decimal(1) / 2
        norm = 1 / (2 * Decimal(math.pi)).sqrt()
        unit = Decimal(2) ** PHI_BITS
        tiny = Decimal(10) ** -(DECIMAL_DIGITS - 5)
        for i in range(steps + 1):
            z = Decimal(i) / (1 << PHI_GRID_LOG2)
            z2 = z * z
            term = z
            total = z
            n = 1
            while term > tiny * total:
                n += 2
                term = term * z2 / n
                total += term
            phi = half + norm * (-z2 / 2).exp() * total
            out[i] = _round_int(phi * unit)
    return out


@lru_cache(maxsize=1)
def weight_exp_table() -> np.ndarray:
    """round(2**WEIGHT_EXP_BITS * exp(-j / 2**LOGIT_STEP_LOG2)) for j = 0 .. first zero."""
    values: list[int] = []
    with localcontext() as ctx:
        ctx.prec = DECIMAL_DIGITS
        unit = Decimal(2) ** WEIGHT_EXP_BITS
        ratio = (Decimal(-1) / (1 << LOGIT_STEP_LOG2)).exp()
        x = unit
        while True:
            v = _round_int(x)
            values.append(v)
            if v == 0:
                break
            x *= ratio
    return np.asarray(values, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class ScaleGrid:
    """Quantized scales: sigma_i = scale_min * (scale_max / scale_min) ** (i / (levels - 1))."""

    sigmas: np.ndarray  # float64 (levels,), for dequantize_gmm only
    inverse: np.ndarray  # int64 (levels,), round(2**INV_SCALE_BITS / sigma_i)
    half_width: np.ndarray  # int64 (levels,), ceil(PHI_Z_MAX * sigma_i) + 2: CDF saturates beyond
    boundaries: np.ndarray  # float64 (levels - 1,), sqrt(sigma_i * sigma_i+1): nearest in log


def _sigmas(cfg: GmmConfig) -> list[Decimal]:
    """The grid's scales in ``decimal`` (call inside a DECIMAL_DIGITS context)."""
    levels = cfg.scale_levels
    lo = Decimal(repr(float(cfg.scale_min)))
    hi = Decimal(repr(float(cfg.scale_max)))
    log_ratio = (hi / lo).ln()
    sig = [lo * (log_ratio * i / (levels - 1)).exp() for i in range(levels)]
    sig[-1] = hi
    return sig


@lru_cache(maxsize=16)
def scale_grid(cfg: GmmConfig) -> ScaleGrid:
    """Build the scale grid of ``cfg`` exactly (see module docstring)."""
    levels = cfg.scale_levels
    with localcontext() as ctx:
        ctx.prec = DECIMAL_DIGITS
        sig = _sigmas(cfg)
        unit = Decimal(2) ** INV_SCALE_BITS
        inverse = [_round_int(unit / s) for s in sig]
        half_width = [
            int((s * PHI_Z_MAX).to_integral_value(rounding=ROUND_CEILING)) + 2 for s in sig
        ]
        bounds = [float((sig[i] * sig[i + 1]).sqrt()) for i in range(levels - 1)]
    return ScaleGrid(
        sigmas=np.asarray([float(s) for s in sig], dtype=np.float64),
        inverse=np.asarray(inverse, dtype=np.int64),
        half_width=np.asarray(half_width, dtype=np.int64),
        boundaries=np.asarray(bounds, dtype=np.float64),
    )


@lru_cache(maxsize=16)
def scale_reach(cfg: GmmConfig, sigmas: float) -> np.ndarray:
    """ceil(sigmas * sigma_i) for every level i (int64), exactly: how far from its mean a
    component of that scale keeps all but its far tails (dvc_edic.entropy.window)."""
    with localcontext() as ctx:
        ctx.prec = DECIMAL_DIGITS
        times = Decimal(repr(float(sigmas)))
        reach = [int((s * times).to_integral_value(rounding=ROUND_CEILING)) for s in _sigmas(cfg)]
    return np.asarray(reach, dtype=np.int64)
