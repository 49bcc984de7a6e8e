"""Building blocks shared by every EDIC coder and the motion-compensation net.

Kept in one place so the I-frame, MV and residual coders differ only by their
configuration, never by copied layer code.
"""

from __future__ import annotations

import torch
from torch import nn


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """'Same' convolution; with stride 2 it halves (ceil) the spatial size."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def deconv(in_ch: int, out_ch: int, kernel: int, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that exactly doubles the spatial size for stride 2."""
    return nn.ConvTranspose2d(
        in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation gate: lets the transform re-weight channels per image.

    Global average pooling sees the whole picture, so the gate adapts channel
    energy to content (flat sky vs. foliage) at the cost of two 1x1 convs.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.squeeze = nn.Conv2d(channels, hidden, 1)
        self.excite = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean(dim=(2, 3), keepdim=True)
        g = torch.sigmoid(self.excite(torch.relu(self.squeeze(g))))
        return x * g


class AttentionBlock(nn.Module):
    """Residual block whose branch is gated by channel attention (RCAB style).

    The residual path keeps the block close to identity at initialisation, so
    stacking it into an untrained transform does not disturb GDN's balance.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels, 3),
            nn.LeakyReLU(inplace=True),
            conv(channels, channels, 3),
        )
        self.attention = ChannelAttention(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.body(x))


class ResidualBlock(nn.Module):
    """Plain 3x3 residual block, used where channel attention would not pay for itself."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels, 3),
            nn.LeakyReLU(inplace=True),
            conv(channels, channels, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class EnhancementNet(nn.Module):
    """Decoder-side post-filter: adds a learned correction to the synthesis output.

    The last layer starts at zero so an untrained or freshly enabled
    enhancement is exactly the identity; training then only has to learn the
    correction, which is what makes the ablation switch meaningful.
    """

    def __init__(self, io_channels: int, channels: int, blocks: int) -> None:
        super().__init__()
        self.head = conv(io_channels, channels, 3)
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.tail = conv(channels, io_channels, 3)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.tail(self.blocks(self.head(x)))
