"""SpyNet-style coarse-to-fine optical flow, as used for motion estimation in DVC.

Each pyramid level has its own small CNN that sees [target, reference warped by the
flow so far, flow so far] and predicts a residual flow. Both images are downsampled by
average pooling; the flow is upsampled ×2 (and its values doubled) going one level
finer. The estimator runs only in the encoder, so it never has to be bit-exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dvc_edic.errors import InputError
from flows.pyramid import LEVEL_SCALE, check_pair, pad_to_multiple, upsample_flow
from flows.warp import backward_warp

# Two flow channels: x (horizontal) then y (vertical) displacement in pixels.
FLOW_CHANNELS = 2

# DVC's SpyNet uses 7x7 convolutions; the presets may choose smaller ones for speed.
DEFAULT_KERNEL = 7


def zero_init(conv: nn.Conv2d) -> nn.Conv2d:
    """Zero a flow head so an untrained estimator outputs exactly zero flow: training
    then starts from "no motion", a stable point, instead of random large vectors."""
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def flow_head(
    in_channels: int, channels: Sequence[int], kernel: int, activation: type[nn.Module]
) -> nn.Sequential:
    """conv-act-...-conv stack ending in a zero-initialised 2-channel flow output."""
    if kernel < 1 or kernel % 2 == 0:
        raise InputError(f"flow head: kernel must be a positive odd integer, got {kernel}")
    if not channels:
        raise InputError("flow head: channels must list at least one hidden width")
    layers: list[nn.Module] = []
    width = in_channels
    for hidden in channels:
        layers += [nn.Conv2d(width, hidden, kernel, padding=kernel // 2), activation()]
        width = hidden
    layers.append(zero_init(nn.Conv2d(width, FLOW_CHANNELS, kernel, padding=kernel // 2)))
    return nn.Sequential(*layers)


class SpyNet(nn.Module):
    """flow = SpyNet(...)(target, reference): target(p) ≈ reference(p + flow(p)).

    levels: pyramid depth (inputs are padded internally to a multiple of 2**(levels-1));
    channels: hidden widths of every level's CNN; in_channels: channels of each image;
    kernel: spatial size of every convolution.
    """

    def __init__(
        self,
        levels: int,
        channels: Sequence[int],
        in_channels: int,
        kernel: int = DEFAULT_KERNEL,
    ) -> None:
        super().__init__()
        if levels < 1:
            raise InputError(f"SpyNet: levels must be >= 1, got {levels}")
        self.levels = levels
        self.in_channels = in_channels
        head_in = 2 * in_channels + FLOW_CHANNELS
        # nets[0] is the finest level, nets[-1] the coarsest.
        self.nets = nn.ModuleList(
            flow_head(head_in, list(channels), kernel, nn.ReLU) for _ in range(levels)
        )

    def forward(self, target: Tensor, reference: Tensor) -> Tensor:
        check_pair("SpyNet", target, reference, self.in_channels)
        height, width = target.shape[-2:]
        stride = LEVEL_SCALE ** (self.levels - 1)
        targets = [pad_to_multiple(target, stride)]
        references = [pad_to_multiple(reference, stride)]
        for _ in range(self.levels - 1):
            targets.append(F.avg_pool2d(targets[-1], LEVEL_SCALE))
            references.append(F.avg_pool2d(references[-1], LEVEL_SCALE))

        coarse = targets[-1]
        flow = coarse.new_zeros(coarse.shape[0], FLOW_CHANNELS, *coarse.shape[-2:])
        for level in reversed(range(self.levels)):
            tgt, ref = targets[level], references[level]
            if flow.shape[-2:] != tgt.shape[-2:]:
                flow = upsample_flow(flow, *tgt.shape[-2:])
            warped = backward_warp(ref, flow)
            flow = flow + self.nets[level](torch.cat([tgt, warped, flow], dim=1))
        return flow[..., :height, :width]
