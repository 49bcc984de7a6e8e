"""A PWC-Net-style estimator: feature pyramid, warping, cost volume, per-level decoder.

Where SpyNet compares raw pixels through a CNN, this compares learned features through
an explicit local correlation, which copes better with larger motion at a similar
cost. It is a small version: one feature stage and one flow decoder per level, no
context network, flow estimated down to full input resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dvc_edic.errors import InputError
from flows.correlation import correlation
from flows.pyramid import LEVEL_SCALE, check_pair, pad_to_multiple, upsample_flow
from flows.spynet import DEFAULT_KERNEL, FLOW_CHANNELS, flow_head
from flows.warp import backward_warp

# Negative slope of the leaky ReLUs, as in PWC-Net: keeps gradients alive on the
# cost volume, whose entries are often negative.
LEAKY_SLOPE = 0.1


def _act() -> nn.Module:
    return nn.LeakyReLU(LEAKY_SLOPE)


class PwcLite(nn.Module):
    """flow = PwcLite(...)(target, reference): target(p) ≈ reference(p + flow(p)).

    levels: pyramid depth; channels: hidden widths of each level's flow decoder;
    in_channels: channels of each image; max_displacement: cost-volume radius d in
    pixels at every level; feature_channels: feature width at each level, finest
    first (level 0 is at input resolution, level l at 1/2**l); kernel: conv size.
    """

    def __init__(
        self,
        levels: int,
        channels: Sequence[int],
        in_channels: int,
        max_displacement: int,
        feature_channels: Sequence[int],
        kernel: int = DEFAULT_KERNEL,
    ) -> None:
        super().__init__()
        if levels < 1:
            raise InputError(f"PwcLite: levels must be >= 1, got {levels}")
        if len(feature_channels) != levels:
            raise InputError(
                f"PwcLite: feature_channels needs one width per level ({levels}), "
                f"got {list(feature_channels)}"
            )
        if max_displacement < 0:
            raise InputError(f"PwcLite: max_displacement must be >= 0, got {max_displacement}")
        self.levels = levels
        self.in_channels = in_channels
        self.max_displacement = max_displacement
        pad = kernel // 2
        conv = partial(nn.Conv2d, kernel_size=kernel, padding=pad)

        # features[l]: level l-1 (or the image) -> level l; stride 2 except at level 0.
        stages = []
        width = in_channels
        for level, feat in enumerate(feature_channels):
            stride = 1 if level == 0 else LEVEL_SCALE
            stages.append(
                nn.Sequential(conv(width, feat, stride=stride), _act(), conv(feat, feat), _act())
            )
            width = feat
        self.features = nn.ModuleList(stages)

        cost_channels = (2 * max_displacement + 1) ** 2
        self.decoders = nn.ModuleList(
            flow_head(cost_channels + feat + FLOW_CHANNELS, list(channels), kernel, _act)
            for feat in feature_channels
        )

    def _pyramid(self, x: Tensor) -> list[Tensor]:
        out = []
        for stage in self.features:
            x = stage(x)
            out.append(x)
        return out

    def forward(self, target: Tensor, reference: Tensor) -> Tensor:
        check_pair("PwcLite", target, reference, self.in_channels)
        height, width = target.shape[-2:]
        stride = LEVEL_SCALE ** (self.levels - 1)
        # One pass over the stacked pair: both images share the feature extractor.
        both = pad_to_multiple(torch.cat([target, reference], dim=0), stride)
        batch = target.shape[0]
        pyramid = [(f[:batch], f[batch:]) for f in self._pyramid(both)]

        coarse = pyramid[-1][0]
        flow = coarse.new_zeros(batch, FLOW_CHANNELS, *coarse.shape[-2:])
        for level in reversed(range(self.levels)):
            f1, f2 = pyramid[level]
            if flow.shape[-2:] != f1.shape[-2:]:
                flow = upsample_flow(flow, *f1.shape[-2:])
            cost = correlation(f1, backward_warp(f2, flow), self.max_displacement)
            head_in = torch.cat([F.leaky_relu(cost, LEAKY_SLOPE), f1, flow], dim=1)
            flow = flow + self.decoders[level](head_in)
        return flow[..., :height, :width]
