"""A lower bound that does not trap what falls below it.

Three places floor a value that training moves: the Gaussian mixture's scales
and likelihoods (dvc_edic.entropy.likelihood), the factorized density of z
(dvc_edic.entropy.factorized) and GDN's non-negative parameters
(dvc_edic.models.gdn). A plain clamp has zero gradient below its bound, so a
value that once crossed it would stay stuck there; this one lets a gradient
through wherever it would lift the value, and wherever the value is above the
bound anyway.
"""

from __future__ import annotations

import torch
from torch import nn


class _LowerBound(torch.autograd.Function):
    """max(x, bound), whose gradient passes where x >= bound or where it points up.

    "Points up": the loss falls as x rises (a negative incoming gradient, since
    the optimiser steps against it), which is the direction that brings x back.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float | torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return torch.clamp(x, min=bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through.to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float | torch.Tensor) -> torch.Tensor:
    """``max(x, bound)`` with the gradient rule of :class:`_LowerBound`.

    ``bound`` is a number or a one-element tensor (a :class:`LowerBound`'s buffer).
    """
    return _LowerBound.apply(x, bound)


class LowerBound(nn.Module):
    """:func:`lower_bound` with its bound kept as a buffer named ``bound``.

    A module rather than a number because the bound is part of the state dict of
    the layers that use it: the shipped weights and the training checkpoints hold
    ``...likelihood_lower_bound.bound`` and ``...beta_reparam.lower_bound.bound``
    (the names compressai gave them, kept so those files load unchanged).
    """

    bound: torch.Tensor

    def __init__(self, bound: float) -> None:
        super().__init__()
        self.register_buffer("bound", torch.tensor([float(bound)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lower_bound(x, self.bound)
