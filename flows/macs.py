"""Count convolution multiply-accumulates of an estimator, for the performance budget.

Only convolutions are counted: they dominate, and warping/correlation costs are a few
operations per pixel per channel (correlation: (2d+1)^2 per channel per pixel, which
``correlation_macs`` adds for the PWC-style estimator).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv_macs(model: nn.Module, *inputs: Tensor) -> int:
    """Total Conv2d MACs of one forward pass on ``inputs`` (batch included)."""
    total = 0

    def hook(module: nn.Module, _args: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)
        kh, kw = module.kernel_size
        per_output = (module.in_channels // module.groups) * kh * kw
        total += output.numel() * per_output

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total


def macs_per_pixel(model: nn.Module, in_channels: int, height: int, width: int) -> float:
    """Conv MACs per input pixel for one (target, reference) pair of the given size."""
    pair = [torch.zeros(1, in_channels, height, width) for _ in range(2)]
    return conv_macs(model, *pair) / (height * width)
