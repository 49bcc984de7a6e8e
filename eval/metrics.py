"""Quality metrics, computed the same way for every codec from decoded planar YUV.

PSNRs come from dvc_edic.metrics (the codec's own summary uses the same code);
this module adds MS-SSIM, per-sequence averaging and the rate numbers. The
conventions are stated in every results file (see `CONVENTIONS`):
- PSNR per plane with peak 2^bit_depth - 1; a frame whose error is zero scores
  `PSNR_CAP_DB` instead of infinity, so averages and JSON stay finite.
- PSNR-YUV = (6·PSNR-Y + PSNR-U + PSNR-V) / 8 per frame (on PSNRs, not on MSEs).
- PSNR-RGB on BT.709 limited-range R'G'B' in [0, 1] (peak 1) from dvc_edic.colour.
- MS-SSIM from pytorch_msssim on the Y plane only, with its default 5 scales; it is
  undefined (null) for frames whose shorter side is too small for 5 scales.
- Sequence values are the mean of the per-frame values (not PSNR of the mean MSE).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from dvc_edic import metrics as codec_metrics
from dvc_edic.errors import InputError
from dvc_edic.io import Frame, max_sample_value

# Cap for identical frames: above any real codec, and finite for JSON and averages.
PSNR_CAP_DB = codec_metrics.MAX_PSNR
# Colour conversion used for PSNR-RGB (the HD sets are BT.709, limited range).
RGB_MATRIX = "bt709"
RGB_FULL_RANGE = False
# pytorch_msssim's default: 5 scales with an 11-tap window need a shorter side > 10·2^4.
MSSSIM_WINDOW = 11
MSSSIM_SCALES = 5
MSSSIM_MIN_SIDE = (MSSSIM_WINDOW - 1) * 2 ** (MSSSIM_SCALES - 1) + 1
# Per-frame record keys that are not metrics (never averaged).
NON_METRIC_KEYS = ("frame",)

CONVENTIONS = {
    "psnr_peak": "2^bit_depth - 1 per plane; RGB: 1.0 on [0,1] floats",
    "psnr_cap_db": PSNR_CAP_DB,
    "psnr_yuv": "(6*PSNR_Y + PSNR_U + PSNR_V) / 8 per frame",
    "psnr_rgb": f"{RGB_MATRIX}, full_range={RGB_FULL_RANGE}, via dvc_edic.colour.frame_to_rgb",
    "ms_ssim": f"pytorch_msssim on Y, {MSSSIM_SCALES} scales, data_range = peak; "
    f"null when the shorter side < {MSSSIM_MIN_SIDE}",
    "averaging": "sequence value = mean of per-frame values",
    "bpp": "bits / (width * height * frames)",
    "kbps": "bits * fps / frames / 1000",
}


def ms_ssim_y(ref_y: np.ndarray, dec_y: np.ndarray, bit_depth: int) -> float | None:
    """MS-SSIM of the luma planes, or None where 5 scales do not fit the frame."""
    if min(ref_y.shape) < MSSSIM_MIN_SIDE:
        return None
    import torch
    from pytorch_msssim import ms_ssim

    def as_tensor(plane: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(plane.astype(np.float32))[None, None]

    with torch.no_grad():
        value = ms_ssim(
            as_tensor(ref_y),
            as_tensor(dec_y),
            data_range=float(max_sample_value(bit_depth)),
            size_average=True,
            win_size=MSSSIM_WINDOW,
        )
    return float(value)


def frame_metrics(ref: Frame, dec: Frame, *, with_ms_ssim: bool = True) -> dict[str, float | None]:
    """Every metric of one decoded frame against its original."""
    if ref.bit_depth != dec.bit_depth:
        raise InputError(f"bit depths differ: original {ref.bit_depth}, decoded {dec.bit_depth}")
    try:
        out: dict[str, float | None] = dict(
            codec_metrics.frame_metrics(ref, dec, matrix=RGB_MATRIX, full_range=RGB_FULL_RANGE)
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if with_ms_ssim:
        out["ms_ssim"] = ms_ssim_y(ref.y, dec.y, ref.bit_depth)
    return out


def average(per_frame: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Mean of per-frame values per metric; None if any frame lacks the metric."""
    if not per_frame:
        raise InputError("no frames to average")
    keys = [k for k in per_frame[0] if k not in NON_METRIC_KEYS]
    out: dict[str, float | None] = {}
    for key in keys:
        values = [f[key] for f in per_frame]
        out[key] = None if any(v is None for v in values) else float(np.mean(values))
    return out


def rate_numbers(bits: int, width: int, height: int, frames: int, fps: float) -> dict[str, float]:
    return {
        "bits": int(bits),
        "bpp": bits / (width * height * frames),
        "kbps": bits * fps / frames / 1000.0,
    }


def compare_sequences(
    ref_frames: Iterable[Frame],
    dec_frames: Iterable[Frame],
    expected: int,
    decoded_path: Path | str,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Per-frame metrics of two frame streams; the decoded one must hold `expected` frames."""
    per_frame: list[dict[str, Any]] = []
    ref_iter, dec_iter = iter(ref_frames), iter(dec_frames)
    for index in range(expected):
        ref = next(ref_iter, None)
        dec = next(dec_iter, None)
        if ref is None:
            raise InputError(f"original ended after {index} frames, expected {expected}")
        if dec is None:
            raise InputError(f"{decoded_path}: decoded {index} frames, expected {expected}")
        per_frame.append({"frame": index, **frame_metrics(ref, dec, **kwargs)})
    return per_frame
