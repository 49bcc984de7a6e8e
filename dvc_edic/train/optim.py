"""Which parameters train in a stage, their optimizers, and the learning-rate schedule.

As in CompressAI, the entropy bottlenecks' ``quantiles`` are not part of the
rate-distortion loss: they are fitted by their own auxiliary loss with their
own Adam, so they live in a separate optimizer (and are kept out of DDP's
gradient reduction; every rank computes the same auxiliary step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dvc_edic.entropy.factorized import QUANTILES
from dvc_edic.errors import InputError
from dvc_edic.models.edic import EDIC
from dvc_edic.models.video import VideoCodecModel


def matches_prefix(name: str, prefixes: list[str]) -> bool:
    """Whether a module or tensor name is one of the prefixes or lies under one."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def select_trainable(model: nn.Module, trainable: list[str], freeze: list[str]) -> list[str]:
    """Set requires_grad from the config's prefix lists; returns the trainable names."""
    names = [n for n, _ in model.named_parameters()]
    for prefix in [*trainable, *freeze]:
        if not any(matches_prefix(n, [prefix]) for n in names):
            raise InputError(
                f"trainable/freeze entry {prefix!r} names no parameter of the model "
                f"(top-level modules: {sorted({n.split('.')[0] for n in names})}; "
                f"e.g. intra, pframe.flow, pframe.mv_coder, pframe.mc, pframe.residual_coder)"
            )
    chosen = []
    for name, p in model.named_parameters():
        p.requires_grad_(matches_prefix(name, trainable) and not matches_prefix(name, freeze))
        if p.requires_grad:
            chosen.append(name)
    return chosen


def apply_modes(model: VideoCodecModel) -> None:
    """Train mode, except coders with nothing to train: those run as the decoder does.

    A frozen EDIC in eval mode rounds its latents instead of adding noise, so
    a frozen I-frame coder supplies the references the real decoder would.
    """
    model.train()
    for module in model.modules():
        if isinstance(module, EDIC) and not any(p.requires_grad for p in module.parameters()):
            module.eval()


def aux_bottlenecks(model: nn.Module) -> list[nn.Module]:
    """Bottlenecks whose quantiles train (their auxiliary loss is minimised every step).

    Found by what they hold (a ``quantiles`` parameter and a ``loss`` method), not by
    class: the codec's own FactorizedBottleneck (dvc_edic.entropy.factorized) and the
    compressai bottlenecks of eval.ablation's baselines (dvc_edic.train.baselines) both
    need their quantiles fitted, or the baselines' integer tables keep their first range.
    """
    return [m for m in model.modules()
            if isinstance(getattr(m, QUANTILES, None), nn.Parameter)
            and getattr(m, QUANTILES).requires_grad and callable(getattr(m, "loss", None))]


def build_optimizers(
    model: VideoCodecModel, cfg: dict[str, Any]
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
    """Adam on every trainable non-quantile parameter; Adam on the trainable quantiles."""
    opt = cfg["optimizer"]
    main = [p for n, p in model.named_parameters()
            if p.requires_grad and not n.endswith("." + QUANTILES)]
    aux = [p for n, p in model.named_parameters()
           if p.requires_grad and n.endswith("." + QUANTILES)]
    if not main:
        raise InputError("the trainable lists select no parameter to optimise")
    optimizer = torch.optim.Adam(
        main, lr=float(opt["lr"]), betas=tuple(opt["betas"]),
        weight_decay=float(opt["weight_decay"]),
    )
    aux_optimizer = torch.optim.Adam(aux, lr=float(opt["aux_lr"])) if aux else None
    return optimizer, aux_optimizer


def lr_factor(step: int, total: int, schedule: dict[str, Any],
              progress: float | None = None) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total``.

    ``progress`` (0..1), when given, is the share of a CPU budget spent
    (``cpu_budget_minutes``): the decays then follow it instead of ``step / total``,
    so variants that run at different speeds decay at the same share of their budget.
    The warm-up counts steps either way.
    """
    warmup = int(schedule["warmup_steps"])
    factor = 1.0
    if warmup > 0 and step < warmup:
        factor = (step + 1) / warmup
    decay = schedule["decay"]
    if decay == "step":
        for fraction in schedule["decay_at"]:
            if (step >= fraction * total) if progress is None else (progress >= fraction):
                factor *= float(schedule["gamma"])
    elif decay == "cosine" and (total > warmup or progress is not None):
        done = progress if progress is not None else (step - warmup) / (total - warmup)
        done = min(1.0, max(0.0, done))
        final = float(schedule["final_factor"])
        factor *= final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * done))
    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, total: int, schedule: dict[str, Any],
    progress: Callable[[], float] | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """``progress``: the share of the CPU budget spent so far (None: the schedule is in
    steps), read each time the scheduler steps."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, total, schedule, None if progress is None else progress()),
    )
