"""Latent refinement: the encoder optimises y and z for R + lambda*D against the frozen decoder.

The analysis net guesses the latents in one pass, and ours has had a few
CPU-hours of training, so its guess is far from the latents that minimise the
very loss the model was trained for. Gradient descent on (y, z) through the
decoder's own path (hyper-synthesis, mixture, synthesis, enhancement) finds
better ones at encode time only: the decoder is unchanged and the stream is
an ordinary one (Yang, Bamler and Mandt 2020; Campos et al. 2019).

Rounding has no gradient, so the forward pass rounds for real (the objective
evaluated is exactly the coded latents' estimated cost) while the backward
pass follows a soft rounding whose sharpness anneals from ``alpha_start`` to
``alpha_end`` (Agustsson and Theis 2020). Because each step's forward value is
the true objective of the rounded latents, the best iterate is known and
kept: refinement never returns latents worse (by the model's estimate) than
the analysis net's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

# RefineSettings lives with the other settings, which must not import torch; it is
# re-exported here, beside the refinement it configures.
from dvc_edic.encoder.settings import RefineSettings
from dvc_edic.models.edic import EDIC

__all__ = ["Distortion", "RefineSettings", "refine_latents", "round_soft_grad", "soft_round"]

# distortion(x_hat) -> MSE per sample of the decoded picture against its target
Distortion = Callable[[torch.Tensor], torch.Tensor]


def soft_round(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """A differentiable rounding: the identity as alpha -> 0, round() as alpha -> inf."""
    m = torch.floor(x) + 0.5
    return m + 0.5 * torch.tanh(alpha * (x - m)) / math.tanh(alpha / 2.0)


def round_soft_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """round(x) in the forward pass, soft_round's gradient in the backward pass."""
    s = soft_round(x, alpha)
    return s + (torch.round(x) - s).detach()


@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """No gradients for the weights: only the latents are optimised."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def refine_latents(
    coder: EDIC,
    y: torch.Tensor,
    z: torch.Tensor,
    quality: float,
    distortion: Distortion,
    weight: float,
    settings: RefineSettings,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (y, z) of lowest estimated bits + ``weight`` * distortion met during the search.

    ``weight`` converts MSE to bits: lambda * 255^2 * pixels, as in the
    encoder's mode decision (dvc_edic.encoder.decision.rd_cost).
    """
    if settings.steps == 0:
        return y, z
    centres = coder.z_centres()
    y_var = y.detach().clone().requires_grad_(True)
    z_var = z.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([y_var, z_var], lr=settings.lr)
    best = (math.inf, y, z)
    ratio = settings.alpha_end / settings.alpha_start
    with _frozen(coder), torch.enable_grad():
        for step in range(settings.steps + 1):
            frac = step / max(settings.steps, 1)
            alpha = settings.alpha_start * ratio**frac
            y_hat = round_soft_grad(y_var, alpha)
            z_hat = centres + round_soft_grad(z_var - centres, alpha)
            x_hat = coder.reconstruct(y_hat, quality)
            cost = coder.rate_bits(y_hat, z_hat) + weight * distortion(x_hat)
            value = float(cost.detach())
            if value < best[0]:
                best = (value, y_var.detach().clone(), z_var.detach().clone())
            if step == settings.steps:
                break  # the last evaluation only scores the last update
            opt.zero_grad(set_to_none=True)
            cost.backward()
            opt.step()
    return best[1], best[2]
