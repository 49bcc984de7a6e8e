"""The encoder's side of the DCT layer (dvc_edic.dctlayer): quantizing the error left
by the learned coders, and the step that suits a rate-distortion weight.

Nothing here runs in the decoder: the layer it makes is written as levels and a
step, and the decoder only dequantizes them. So the forward transform can use
the float DCT matrix; the decoder's integer inverse differs from its exact
inverse by far less than the quantization error.
"""

from __future__ import annotations

import math

import numpy as np

from dvc_edic.dctlayer import (
    BLOCK,
    CHROMA_RATIO_ONE,
    DCT_MATRIX,
    MAX_CHROMA_RATIO,
    MAX_LEVEL,
    MAX_STEP_Q,
    STEP_FRACTION_BITS,
    DctLayer,
    layer_shapes,
    plane_step_qs,
    step_samples,
)
from dvc_edic.errors import InputError
from dvc_edic.io import Frame

MAX_DEADZONE = 0.5  # rounding offset of plain rounding; above it levels would overshoot


def quantize_layer(source: Frame, base: Frame, step: float, deadzone: float,
                   chroma_ratio: int = CHROMA_RATIO_ONE) -> DctLayer:
    """Levels of the DCT of ``source - base`` quantized with ``step`` (in samples).

    ``level = sign(c) * floor(|c| / step + deadzone)``, clipped to +-MAX_LEVEL:
    ``deadzone`` 0.5 is plain rounding; smaller values widen the zero bin and pull
    levels toward zero, which saves more bits than the distortion it costs
    (0.33 or so suits an entropy-coded layer). The step actually used is the
    stream's, ``step_q / 16``, so that the decoder dequantizes with exactly it.
    Outside the plane the error is taken as 0 (the decoder discards the residual
    there), which spends nothing on the padding.
    """
    return quantize_coefficients(error_coefficients(source, base), step, deadzone, chroma_ratio)


def error_coefficients(source: Frame, base: Frame) -> tuple[np.ndarray, ...]:
    """The forward DCT of ``source - base`` per plane, (nby, nbx, 8, 8) float64: what
    every step tried on one base quantizes, so the encoder transforms it once."""
    if source.planes[0].shape != base.planes[0].shape or source.bit_depth != base.bit_depth:
        raise InputError(
            f"quantize_layer: source {source.width}x{source.height} {source.bit_depth}-bit and "
            f"base {base.width}x{base.height} {base.bit_depth}-bit differ"
        )
    coefs = []
    for src, bas, (nby, nbx) in zip(source.planes, base.planes, layer_shapes(base), strict=True):
        error = np.zeros((nby * BLOCK, nbx * BLOCK), dtype=np.float64)
        error[: src.shape[0], : src.shape[1]] = src.astype(np.float64) - bas.astype(np.float64)
        blocks = error.reshape(nby, BLOCK, nbx, BLOCK).transpose(0, 2, 1, 3)
        coefs.append(DCT_MATRIX @ blocks @ DCT_MATRIX.T)
    return tuple(coefs)


def chroma_ratio_of(chroma_step_ratio: float) -> int:
    """The stream's chroma_ratio (1/64 units, format version 9) nearest a step ratio."""
    return min(max(round(chroma_step_ratio * CHROMA_RATIO_ONE), 1), MAX_CHROMA_RATIO)


def quantize_coefficients(coefs: tuple[np.ndarray, ...], step: float,
                          deadzone: float, chroma_ratio: int = CHROMA_RATIO_ONE) -> DctLayer:
    """The layer of ``error_coefficients`` at ``step`` (see quantize_layer), its chroma
    planes at the step ``chroma_ratio`` (1/64 units) gives them."""
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step < math.inf:
        raise InputError(f"quantize_layer: step must be a finite number > 0, got {step!r}")
    if isinstance(deadzone, bool) or not isinstance(deadzone, (int, float)) or not (
        0.0 <= deadzone <= MAX_DEADZONE
    ):
        raise InputError(
            f"quantize_layer: deadzone must be in [0, {MAX_DEADZONE}], got {deadzone!r}"
        )
    step_q = min(max(round(step * (1 << STEP_FRACTION_BITS)), 1), MAX_STEP_Q)
    steps = plane_step_qs(step_q, chroma_ratio)
    levels = []
    for coef, plane_step_q in zip(coefs, steps, strict=True):
        mag = np.floor(np.abs(coef) / step_samples(plane_step_q) + deadzone)
        levels.append(np.clip(np.sign(coef) * mag, -MAX_LEVEL, MAX_LEVEL).astype(np.int32))
    return DctLayer(step_q=step_q, levels=(levels[0], levels[1], levels[2]),
                    chroma_ratio=chroma_ratio)


def optimal_step(weight: float) -> float:
    """The step (in samples) that minimises ``J = bits + weight * SSE`` at high rate.

    An entropy-coded uniform quantizer costs h - log2(step) bits and step**2/12 of
    squared error per coefficient (the transform is orthonormal, so coefficient
    and sample errors are equal): dJ/dstep = -1/(step ln 2) + weight * step/6 = 0
    gives step = sqrt(6 / (weight ln 2)).
    """
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
        0 < weight < math.inf
    ):
        raise InputError(f"optimal_step: weight must be a finite number > 0, got {weight!r}")
    return math.sqrt(6.0 / (weight * math.log(2.0)))
