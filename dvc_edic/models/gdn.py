"""Generalized divisive normalization (Ballé, Laparra and Simoncelli, 2016).

GDN divides every channel by a learned root of a weighted sum of all the
channels' squares, ``x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)``; the inverse
(IGDN, in the synthesis transforms) multiplies instead. beta and gamma must
stay positive, so they are trained through a square-root reparametrisation
that is floored, with a gradient that can lift a value off the floor
(:class:`NonNegative`).

dvc_edic subclassed compressai's ``GDN`` until importing compressai was found
to cost most of every command's start-up (docs/architecture.md, "Start-up").
This layer keeps its parameters, their initial values, the reparametrisation
and the state-dict names (``beta``, ``gamma``, ``beta_reparam.pedestal``,
``beta_reparam.lower_bound.bound`` and the same for gamma), so the shipped
weights and the training checkpoints load unchanged;
tests/test_compressai_equivalence.py compares it with compressai 1.2.8. The
channel mixing is a matrix product, not compressai's 1x1 convolution: see
dvc_edic.models.layers.GDN, which adds the decoder's thread-exact path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dvc_edic.lowerbound import LowerBound

# Parameters are stored as sqrt(value + OFFSET**2): the offset keeps the square root's
# gradient finite at zero (2**-18, as in the paper's reference code).
REPARAM_OFFSET = 2.0**-18
BETA_MIN = 1e-6  # beta's floor keeps the normaliser away from 0 (and rsqrt from infinity)
GAMMA_INIT = 0.1  # gamma starts diagonal: each channel divided by ~sqrt(1 + 0.1 x^2)


class NonNegative(nn.Module):
    """Trains a value v >= ``minimum`` as a parameter p with v = max(p, b)**2 - OFFSET**2.

    ``init`` gives the parameter for a wanted value; ``forward`` the value for a
    parameter. The floor b = sqrt(minimum + OFFSET**2) is a :class:`LowerBound`,
    so a parameter pushed below it still gets the gradient that raises it.
    """

    pedestal: torch.Tensor

    def __init__(self, minimum: float = 0.0) -> None:
        super().__init__()
        pedestal = REPARAM_OFFSET**2
        self.register_buffer("pedestal", torch.tensor([pedestal]))
        self.lower_bound = LowerBound((float(minimum) + pedestal) ** 0.5)

    def init(self, value: torch.Tensor) -> torch.Tensor:
        """The parameter that stands for ``value`` (values below zero count as zero)."""
        return torch.sqrt(torch.max(value + self.pedestal, self.pedestal))

    def forward(self, parameter: torch.Tensor) -> torch.Tensor:
        return self.lower_bound(parameter) ** 2 - self.pedestal


class GDN(nn.Module):
    """GDN over C channels (``inverse=True``: IGDN), on (B, C, H, W) tensors."""

    def __init__(self, in_channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = bool(inverse)
        self.beta_reparam = NonNegative(minimum=BETA_MIN)
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(in_channels)))
        self.gamma_reparam = NonNegative()
        self.gamma = nn.Parameter(self.gamma_reparam.init(GAMMA_INIT * torch.eye(in_channels)))

    def effective_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(beta (C,), gamma (C, C)) as the layer applies them: the reparametrised values."""
        return self.beta_reparam(self.beta), self.gamma_reparam(self.gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta, gamma = self.effective_parameters()
        # norm[b, i, h, w] = beta_i + sum_j gamma_ij x[b, j, h, w]^2, channels-last
        norm = F.linear((x * x).permute(0, 2, 3, 1), gamma, beta).permute(0, 3, 1, 2)
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))
