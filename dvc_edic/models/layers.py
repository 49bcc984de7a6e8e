"""Building blocks shared by every EDIC coder and the motion-compensation net.

Kept in one place so the I-frame, MV and residual coders differ only by their
configuration, never by copied layer code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.layers import GDN as _CompressaiGDN
from torch import nn

UPSAMPLE_FACTOR = 2


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """'Same' convolution; with stride 2 it halves (ceil) the spatial size."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def upsample(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    """Doubles the spatial size: a convolution to 4x the channels, then pixel shuffle.

    Chosen over transposed convolution because oneDNN's transposed kernels
    can split their reduction across threads, which makes the decoder's
    output depend on the thread count; plain convolutions here do not.
    """
    return nn.Sequential(
        conv(in_ch, out_ch * UPSAMPLE_FACTOR**2, kernel), nn.PixelShuffle(UPSAMPLE_FACTOR)
    )


class GDN(_CompressaiGDN):
    """compressai's GDN with its channel mixing done as a matrix product.

    compressai computes the normaliser with a 1x1 convolution, whose oneDNN
    kernel is not always independent of the thread count; a channels-last
    matrix product over many pixels is, which keeps decoding bit-exact for
    any --threads. Parameters and maths are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma)
        norm = F.linear((x * x).permute(0, 2, 3, 1), gamma, beta).permute(0, 3, 1, 2)
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


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
