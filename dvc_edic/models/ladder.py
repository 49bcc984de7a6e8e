"""The lambda ladder: what one quality level trades between rate and distortion.

Training weighs its loss with it, and the encoder's intra fallback judges its
candidates with the same number, so a frame is coded the way the model was
trained to value it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MIN_QUALITY = 1.0  # the lowest level; levels are numbered 1..len(ladder)
# The ladders are quoted for D = LADDER_PEAK^2 * MSE on [0, 1] samples (CompressAI's
# lambdas are defined for MSE on 8-bit sample values); training and the encoder both use it.
LADDER_PEAK = 255.0


def interpolate_ladder(ladder: Sequence[float], quality: torch.Tensor) -> torch.Tensor:
    """Geometric interpolation of a lambda ladder at continuous qualities in [1, levels]."""
    table = torch.log(torch.as_tensor(ladder, dtype=torch.float64, device=quality.device))
    pos = (quality.to(torch.float64) - MIN_QUALITY).clamp(0.0, len(ladder) - 1.0)
    lo = pos.floor().long().clamp(max=len(ladder) - 2)
    t = pos - lo.to(pos.dtype)
    logs = table[lo] * (1.0 - t) + table[lo + 1] * t
    return logs.exp().to(torch.float32)
