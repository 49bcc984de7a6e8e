"""Count convolution multiply-accumulates of an estimator, for the performance budget.

Only convolutions are counted: they dominate, and warping/correlation costs are a few
operations per pixel per channel (correlation: (2d+1)^2 per channel per pixel, which
``correlation_macs`` adds for the PWC-style estimator).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def conv_macs(model: nn.Module, *inputs: Tensor, prefixes: Sequence[str] | None = None) -> int:
    """Total Conv2d and ConvTranspose2d MACs of one forward pass on ``inputs`` (batch
    included); ``prefixes``: only the modules under these names (e.g. a decoder's part of
    a model whose forward runs encoder and decoder)."""
    total = 0

    def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        if isinstance(module, nn.ConvTranspose2d):  # every input sample meets the kernel
            total += args[0].numel() * (module.out_channels // module.groups) * kh * kw
        else:
            total += output.numel() * (module.in_channels // module.groups) * kh * kw

    def counted(name: str) -> bool:
        return prefixes is None or any(name == p or name.startswith(p + ".") for p in prefixes)

    handles = [m.register_forward_hook(hook) for name, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and counted(name)]
    try:
        # with autograd on: inference-only fast paths (dvc_edic.models.layers' blocked
        # convolutions) call the kernels without the modules, where no hook sees them
        with torch.enable_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total


def macs_per_pixel(model: nn.Module, in_channels: int, height: int, width: int) -> float:
    """Conv MACs per input pixel for one (target, reference) pair of the given size."""
    pair = [torch.zeros(1, in_channels, height, width) for _ in range(2)]
    return conv_macs(model, *pair) / (height * width)
