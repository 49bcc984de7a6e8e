"""Gain units: one set of weights, many rates.

Each quality level owns a per-channel gain (applied to y before rounding) and
an inverse gain (applied after). A larger gain spreads y over more
quantization bins, so more bits and less distortion. Fractional qualities
interpolate geometrically between neighbouring levels, which keeps the
rate-quality curve smooth (as in "Asymmetric Gained Deep Image Compression").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dvc_edic.models.ladder import geometric_interpolation

MIN_GAIN = 1e-3  # keeps gains positive even if training pushes one towards zero


class GainUnit(nn.Module):
    def __init__(self, levels: int, channels: int, init_low: float, init_high: float) -> None:
        super().__init__()
        if levels < 2:
            raise ValueError(f"need at least 2 quality levels, got {levels}")
        self.levels = levels
        start = torch.linspace(math.log(init_low), math.log(init_high), levels)
        self.log_gain = nn.Parameter(start[:, None].repeat(1, channels).clone())
        self.log_inv_gain = nn.Parameter((-start)[:, None].repeat(1, channels).clone())

    def _interpolate(self, table: torch.Tensor, quality: float | torch.Tensor) -> torch.Tensor:
        """Per-sample (B, C, 1, 1) gains for quality values in [1, levels]."""
        q = torch.as_tensor(quality, dtype=table.dtype, device=table.device).reshape(-1)
        return geometric_interpolation(table, q).clamp_min(MIN_GAIN)[:, :, None, None]

    def gain(self, quality: float | torch.Tensor) -> torch.Tensor:
        return self._interpolate(self.log_gain, quality)

    def inverse_gain(self, quality: float | torch.Tensor) -> torch.Tensor:
        return self._interpolate(self.log_inv_gain, quality)
