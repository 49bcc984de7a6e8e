"""Training-time likelihood of y under the Gaussian mixture (float, differentiable).

This is the rate term of the loss. The coder uses the quantized version of the
same mixture (see :mod:`dvc_edic.entropy.quantize`); ``dequantize_gmm`` gives
the parameters it actually sees if a loss wants to account for that.
"""

from __future__ import annotations

import math

import torch

from dvc_edic.entropy.config import GmmConfig
from dvc_edic.errors import InputError
from dvc_edic.lowerbound import lower_bound

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * _INV_SQRT2)


def gmm_likelihood(
    y: torch.Tensor,
    weight_logits: torch.Tensor,
    means: torch.Tensor,
    scales: torch.Tensor,
    cfg: GmmConfig,
) -> torch.Tensor:
    """P(y - 1/2 < Y < y + 1/2) per element of y (B, M, H, W); params are (B, K, M, H, W).

    The mass is taken on the side of each mean that keeps both CDF arguments
    negative, where erfc is accurate, so far-tail values do not cancel to zero.
    """
    if weight_logits.shape != means.shape or means.shape != scales.shape:
        raise InputError(
            "gmm_likelihood: parameter shapes differ: "
            f"{tuple(weight_logits.shape)}, {tuple(means.shape)}, {tuple(scales.shape)}"
        )
    expected = (y.shape[0], cfg.mixtures, *y.shape[1:])
    if y.dim() != 4 or tuple(means.shape) != expected:
        raise InputError(
            f"gmm_likelihood: expected y (B, M, H, W) and params {expected}, got y "
            f"{tuple(y.shape)} and params {tuple(means.shape)}"
        )
    weights = torch.softmax(weight_logits, dim=1)
    sigma = lower_bound(scales, cfg.scale_min)
    dist = (y.unsqueeze(1) - means).abs()
    upper = _std_normal_cdf((0.5 - dist) / sigma)
    lower = _std_normal_cdf((-0.5 - dist) / sigma)
    likelihood = (weights * (upper - lower)).sum(dim=1)
    # The real coder gives every symbol at least one count out of 2**prob_bits,
    # so no symbol ever costs more than about prob_bits bits; flooring the
    # training likelihood there keeps the rate term honest about the tails.
    return lower_bound(likelihood, 2.0 ** -cfg.prob_bits)
