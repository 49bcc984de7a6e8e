"""The lambda ladder: what one quality level trades between rate and distortion.

Training weighs its loss with it, and the encoder's intra fallback judges its
candidates with the same number, so a frame is coded the way the model was
trained to value it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# The lowest quality of every model, and its only definition: levels are numbered
# MIN_QUALITY..quality_levels, so the highest quality is the preset's to set.
MIN_QUALITY = 1.0
# The ladders are quoted for D = LADDER_PEAK^2 * MSE on [0, 1] samples (CompressAI's
# lambdas are defined for MSE on 8-bit sample values); training and the encoder both use it.
LADDER_PEAK = 255.0


@dataclass(frozen=True)
class QualityRange:
    """The qualities a model codes at, ``low`` to ``high`` inclusive.

    One object for what the encoder's --quality check, the rate controller, the
    training sampler and the decoder's stream checks all ask: a stream's quality
    is only as valid as the model that decodes it.
    """

    low: float
    high: float

    @classmethod
    def of_levels(cls, levels: int) -> QualityRange:
        """The range of a model with ``levels`` gain pairs (the preset's quality_levels)."""
        return cls(MIN_QUALITY, float(levels))

    def __contains__(self, quality: object) -> bool:
        return isinstance(quality, (int, float)) and self.low <= quality <= self.high

    def clamp(self, quality: float) -> float:
        return min(max(quality, self.low), self.high)

    @property
    def span(self) -> float:
        return self.high - self.low

    def levels(self) -> list[float]:
        """The whole levels in the range: the qualities that have gains of their own."""
        return [float(q) for q in range(math.ceil(self.low), math.floor(self.high) + 1)]

    def __str__(self) -> str:
        return f"{self.low:g}..{self.high:g}"


def geometric_interpolation(log_table: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Values between quality levels, from the logarithms of each level's values.

    ``log_table`` holds one row per level (level 1 first); ``quality`` holds continuous
    qualities in [1, levels] (clamped there), in the table's dtype. The result, one row
    per quality, is interpolated linearly in the log domain, i.e. geometrically: a
    half-way quality gets the geometric mean of its neighbours, which keeps the
    rate-quality curve smooth. The gain units and the lambda ladder both use it, so a
    fractional quality means the same position between two levels to both.
    """
    levels = log_table.shape[0]
    pos = (quality - MIN_QUALITY).clamp(0.0, levels - 1.0)
    lo = pos.floor().long().clamp(max=levels - 2)
    t = pos - lo.to(pos.dtype)
    t = t.reshape(t.shape + (1,) * (log_table.dim() - 1))  # broadcast over a row
    logs = log_table[lo] * (1.0 - t) + log_table[lo + 1] * t
    return logs.exp()


def interpolate_ladder(ladder: Sequence[float], quality: torch.Tensor) -> torch.Tensor:
    """Geometric interpolation of a lambda ladder at continuous qualities in [1, levels]."""
    table = torch.log(torch.as_tensor(ladder, dtype=torch.float64, device=quality.device))
    return geometric_interpolation(table, quality.to(torch.float64)).to(torch.float32)
