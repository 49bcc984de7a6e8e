"""Frame-quality metrics used by the encoder's summary, the RD evaluation and training.

Computed on integer planes, with the peak taken from the bit depth, so every
codec (ours, x264, x265) is scored identically. `mse_to_psnr` is the project's
only PSNR formula: the image tool, the image RD runner, the transform-ceiling
probe and training's logs all go through it, so a PSNR means the same thing (and
is capped the same way) wherever it is printed.
"""

from __future__ import annotations

import math

import numpy as np

from dvc_edic.colour import frame_to_rgb
from dvc_edic.io import Frame

MAX_PSNR = 100.0  # reported for identical planes, instead of infinity
UNIT_PEAK = 1.0  # the peak of samples in [0, 1]: model tensors and RGB from dvc_edic.colour
YUV_WEIGHTS = (6.0, 1.0, 1.0)  # PSNR-YUV weighting, as in JVET common test conditions


def mse_to_psnr(mse: float, peak: float) -> float:
    """PSNR in dB, capped at MAX_PSNR so that averages and JSON stay finite."""
    if mse <= 0.0:
        return MAX_PSNR
    return min(MAX_PSNR, 10.0 * math.log10(peak * peak / mse))


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def array_psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    """PSNR of two same-shaped arrays (a plane, an RGB image), the error taken in float64."""
    return mse_to_psnr(_mse(a, b), peak)


def pooled_mse(ref: Frame, dec: Frame, chroma_weight: float = 1.0) -> float:
    """MSE over every Y, U and V sample together, on [0, 1] samples, a U or V sample's
    squared error counted ``chroma_weight`` times.

    With weight 1 this is the distortion training minimises (the mean over the 4:2:0
    model tensor's channels), so an encoder decision judged with it values quality
    as the model was trained to; the encoder's presets weigh chroma more, as the
    metrics do (dvc_edic.encoder.decision.Rd).
    """
    peak = float((1 << ref.bit_depth) - 1)
    planes = ((ref.y, dec.y, 1.0), (ref.u, dec.u, chroma_weight), (ref.v, dec.v, chroma_weight))
    samples = sum(a.size for a, _, _ in planes)
    return sum(_mse(a, b) * a.size * w for a, b, w in planes) / samples / (peak * peak)


def plane_psnrs(ref: Frame, dec: Frame) -> tuple[float, float, float]:
    """PSNR of Y, U and V."""
    if (ref.width, ref.height) != (dec.width, dec.height):
        raise ValueError(
            f"frame sizes differ: reference {ref.width}x{ref.height}, "
            f"decoded {dec.width}x{dec.height}"
        )
    peak = float((1 << ref.bit_depth) - 1)
    return tuple(  # type: ignore[return-value]
        array_psnr(a, b, peak) for a, b in ((ref.y, dec.y), (ref.u, dec.u), (ref.v, dec.v))
    )


def psnr_yuv(psnr_y: float, psnr_u: float, psnr_v: float) -> float:
    wy, wu, wv = YUV_WEIGHTS
    return (wy * psnr_y + wu * psnr_u + wv * psnr_v) / (wy + wu + wv)


def psnr_rgb(ref: Frame, dec: Frame, *, matrix: str = "bt709", full_range: bool = False) -> float:
    a = frame_to_rgb(ref, matrix=matrix, full_range=full_range)
    b = frame_to_rgb(dec, matrix=matrix, full_range=full_range)
    return array_psnr(a, b, UNIT_PEAK)


def frame_metrics(
    ref: Frame, dec: Frame, *, matrix: str = "bt709", full_range: bool = False
) -> dict[str, float]:
    y, u, v = plane_psnrs(ref, dec)
    return {
        "psnr_y": y,
        "psnr_u": u,
        "psnr_v": v,
        "psnr_yuv": psnr_yuv(y, u, v),
        "psnr_rgb": psnr_rgb(ref, dec, matrix=matrix, full_range=full_range),
    }
