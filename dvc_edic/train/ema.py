"""An exponential moving average (EMA) of the trainable weights: the weights that ship.

Adam's last iterate jitters around the minimum with the noise of the last few
batches; an average over the last ~1/(1 - decay) steps sits closer to it and
codes better at no training cost. So validation, export and the next stage's
start use the average (``init_weights: ema``), while training itself goes on
from the raw weights.

Only the trainable parameters are averaged. Frozen parameters and buffers do
not change during a stage, so the EMA's copy of them *is* the model's: the
checkpoint stores them once, and :func:`ema_weights` puts the two together.
The entropy coders' CDF tables are derived data, rebuilt from whichever
weights are loaded (``update_entropy_tables``), so they never go stale.

Checkpoints written before the EMA existed have none: the average then starts
from the loaded weights, which is what it would hold after a long run of
steps that did not move them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from dvc_edic.errors import InputError

EMA_KEY = "ema"  # where a checkpoint keeps the average (None: no EMA)
EMA, RAW = "ema", "raw"  # the two kinds of weights a checkpoint holds
WEIGHT_KINDS = (EMA, RAW)


def ema_settings(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The config's ``ema`` section, or None when it turns the average off (null or decay 0)."""
    section = cfg.get("ema")
    if section is None or float(section["decay"]) == 0.0:
        return None
    return section


def check_settings(section: Any, where: str) -> None:
    """Reject a decay outside [0, 1) or a negative warm-up before any step is spent."""
    if section is None:
        return
    decay, warmup = section.get("decay"), section.get("warmup")
    if not isinstance(decay, (int, float)) or not 0.0 <= float(decay) < 1.0:
        raise InputError(f"{where}: ema.decay must be a number in [0, 1), got {decay!r}")
    if not isinstance(warmup, (int, float)) or float(warmup) < 0.0:
        raise InputError(f"{where}: ema.warmup must be a number >= 0, got {warmup!r}")


class WeightEMA:
    """The running average of a model's named parameters, updated after each optimizer step."""

    def __init__(self, model: nn.Module, names: list[str], decay: float, warmup: float) -> None:
        params = dict(model.named_parameters())
        self.params = {n: params[n] for n in names}
        self.tensors = {n: p.detach().clone() for n, p in self.params.items()}
        self.decay = float(decay)
        self.warmup = float(warmup)
        self.updates = 0

    def current_decay(self) -> float:
        """The decay of the next update, lowered at first so the start is forgotten quickly.

        Without the warm-up, an average started from fresh (or older) weights would
        hold on to them for ~1/(1 - decay) steps; with it, update u weighs the old
        average by at most (1 + u) / (warmup + u), as TensorFlow's EMA does.
        """
        if self.warmup <= 0.0:
            return self.decay
        u = self.updates + 1
        return min(self.decay, (1.0 + u) / (self.warmup + u))

    @torch.no_grad()
    def update(self) -> None:
        weight = 1.0 - self.current_decay()
        for name, average in self.tensors.items():
            average.lerp_(self.params[name].detach(), weight)
        self.updates += 1

    def state(self) -> dict[str, Any]:
        """What the checkpoint stores (CPU tensors, weights_only-safe)."""
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "updates": self.updates,
            "tensors": {n: t.detach().cpu().clone() for n, t in self.tensors.items()},
        }

    @torch.no_grad()
    def load(self, state: dict[str, Any], source: str) -> None:
        """Continue a stored average; parameters it lacks start from the current weights.

        The config's decay and warm-up are kept (changing them does not change the
        training losses); the update count comes from the checkpoint.
        """
        stored = state["tensors"]
        added = sorted(set(self.tensors) - set(stored))
        dropped = sorted(set(stored) - set(self.tensors))
        if added or dropped:
            warnings.warn(
                f"{source}: the EMA in the checkpoint covers other parameters than this run "
                f"trains; {len(added)} start from the current weights, {len(dropped)} are "
                f"dropped (first ones: {(added or dropped)[:3]})",
                stacklevel=3,
            )
        for name, average in self.tensors.items():
            if name in stored:
                tensor = stored[name]
                if tensor.shape != average.shape:
                    raise InputError(
                        f"{source}: EMA tensor {name} has shape {tuple(tensor.shape)}, the "
                        f"model's has {tuple(average.shape)}"
                    )
                average.copy_(tensor)  # casts a compact file's fp16 back to the model's dtype
        self.updates = int(state["updates"])

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the average inside the block and its exact own weights after it.

        Swapping in place (rather than validating a copy) needs no second model, and
        the model cannot always be copied: its entropy coders hold native objects.
        """
        with torch.no_grad():
            saved = {n: p.detach().clone() for n, p in self.params.items()}
            for name, average in self.tensors.items():
                self.params[name].copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, weights in saved.items():
                    self.params[name].copy_(weights)


def ema_weights(state: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """A checkpoint's full EMA state dict (its model with the averaged tensors), or None."""
    ema = state.get(EMA_KEY)
    if not ema:
        return None
    return {**state["model"], **ema["tensors"]}


def checkpoint_weights(state: dict[str, Any], kind: str) -> tuple[dict[str, torch.Tensor], str]:
    """(tensors, kind really used) of a checkpoint: the EMA when asked and present, else raw."""
    if kind not in WEIGHT_KINDS:
        raise InputError(f"weights must be one of {WEIGHT_KINDS}, got {kind!r}")
    averaged = ema_weights(state) if kind == EMA else None
    if averaged is None:
        return state["model"], RAW
    return averaged, EMA
