"""Building blocks shared by every EDIC coder and the motion-compensation net.

Kept in one place so the I-frame, MV and residual coders differ only by their
configuration, never by copied layer code.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from dvc_edic.models import gdn

UPSAMPLE_FACTOR = 2
# Narrowest stack width (output channels of every layer but the last) run blocked: the
# blocked layout pads channels to oneDNN's block (16 with AVX-512), so an 8-channel
# stack holds twice its samples. Measured at 4096x2304 (model tensor 2048x1152), one
# thread: an 8-channel enhancement or MC net peaked 40 % higher blocked (503 against
# 360 MiB) and took within 10 % of the plain path's time; from 16 channels the
# blocked path is both smaller and faster.
BLOCKED_MIN_WIDTH = 16
# GDN's channel mixing (rows x C by C x C) runs in one thread below this many
# multiply-adds, where it costs well under a millisecond: MKL splits the sum over the
# channels across threads for products of few rows (measured: C = 128 with 1 row and
# C = 192 with up to 7 rows at 2-8 threads; the cpu preset's 48 and 64 channels never
# did), which makes the result depend on the thread count. Larger products split their
# rows, bit-exact at 1 to 8 threads up to the 1080p decoder's 130,560 rows.
ONE_THREAD_MIX_MACS = 1 << 24


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch on ``n`` threads inside the block; its thread count is restored after.

    Setting the count costs well under a microsecond, and oneDNN keeps its
    kernels for the other counts (measured), so the layers below may step down to
    one thread for a single small operation.
    """
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _several_threads(x: torch.Tensor) -> bool:
    """Whether inference (no autograd) on CPU tensor ``x`` runs on more than one thread."""
    return torch.get_num_threads() > 1 and not torch.is_grad_enabled() and x.device.type == "cpu"


def one_thread_for(x: torch.Tensor) -> contextlib.AbstractContextManager[None]:
    """One torch thread for the block where inference on ``x`` runs on several, so its
    numbers are those of ``--threads 1``; nothing changes for training (autograd on).

    For steps whose kernels round differently with the thread count: torch splits an
    elementwise op over threads in chunks, and within each chunk runs the vectorised
    kernel on whole vectors and the scalar one on the tail, which for softplus and
    sigmoid rounds differently (measured); where the chunks start depends on the count.
    Reductions and BLAS can likewise split their sums.
    """
    return torch_threads(1) if _several_threads(x) else contextlib.nullcontext()


@functools.cache
def _pointwise_conv() -> Callable[..., torch.Tensor] | None:
    """oneDNN's convolution with a fused activation, or None where torch lacks it.

    A private op (the one torch's own compiler uses on CPU); looked up once, and
    the plain path is used wherever it is missing.
    """
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None


def blocked_path(x: torch.Tensor, layers: Sequence[nn.Conv2d]) -> bool:
    """Whether inference on ``x`` may run the stack of stride-1 ``layers`` (which keep
    its height and width) in oneDNN's blocked layout.

    Plain ``conv2d`` on a CPU float32 tensor large enough runs oneDNN's kernel on
    a blocked copy (channels interleaved in groups of 8 or 16), reordering the
    input into it and the output back at every layer; at full resolution those
    two copies cost about half as much as the convolution itself. Keeping
    activations blocked (``Tensor.to_mkldnn``) between consecutive convolutions
    runs the very same kernel on the very same numbers without the copies, and
    applies an activation inside the kernel instead of in another pass, so the
    output is bit-identical (tests/test_decode_paths.py checks it against the plain
    path) and as independent of the thread count as before. Only where torch
    would pick oneDNN for every layer of the stack, though: for small tensors
    it uses another kernel, whose sums round differently, and only for stacks at
    least :data:`BLOCKED_MIN_WIDTH` channels wide. Training needs autograd,
    which blocked tensors do not support, so it keeps the plain path.

    The decision is the one torch makes at one thread, whatever the thread count,
    so that every count takes the path ``--threads 1`` takes (oneDNN's kernels
    give the same bits at every count, see :class:`Conv2d`; the plain path's
    :class:`Conv2d` steps down to one thread wherever torch would not use them).
    """
    if (
        torch.is_grad_enabled()
        or any(layer.out_channels < BLOCKED_MIN_WIDTH for layer in layers[:-1])
        or x.device.type != "cpu"
        or x.dtype != torch.float32
        or x.dim() != 4
        or not torch.backends.mkldnn.enabled
        or _pointwise_conv() is None
    ):
        return False
    b, _, h, w = x.shape
    return all(
        _plain_conv_uses_onednn(
            tuple(layer.weight.shape), layer.stride, layer.padding, layer.dilation,
            layer.groups, (b, layer.in_channels, h, w), 1,
        )
        for layer in layers
    )  # fmt: skip


@functools.lru_cache(maxsize=1024)
def _plain_conv_uses_onednn(
    weight_shape: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...] | str,
    dilation: tuple[int, ...],
    groups: int,
    input_shape: tuple[int, ...],
    threads: int,
) -> bool:
    """Whether torch's ``conv2d`` of a float32 input runs oneDNN for this problem at
    ``threads`` threads (it depends on the sizes and, for 1x1 kernels, the thread
    count); False where torch cannot say."""
    select = getattr(torch._C, "_select_conv_backend", None)
    if select is None or isinstance(padding, str):
        return False
    try:
        with torch_threads(threads):
            backend = select(
                torch.empty(input_shape), torch.empty(weight_shape), None, list(stride),
                list(padding), list(dilation), False, [0] * len(stride), groups, None,
            )  # fmt: skip
    except (RuntimeError, TypeError):
        return False
    return str(backend).rsplit(".", 1)[-1] == "Mkldnn"


def _conv_needs_one_thread(layer: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether inference of ``layer`` on ``x`` must run in one thread to give the
    numbers it gives at one thread (see :class:`Conv2d`)."""
    if not _several_threads(x):
        return False
    if x.dtype != torch.float32 or x.dim() != 4 or not torch.backends.mkldnn.enabled:
        return True
    problem = (tuple(layer.weight.shape), layer.stride, layer.padding, layer.dilation,
               layer.groups, tuple(x.shape))  # fmt: skip
    return not (
        _plain_conv_uses_onednn(*problem, torch.get_num_threads())
        and _plain_conv_uses_onednn(*problem, 1)
    )


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` whose inference output does not depend on torch's thread count.

    torch runs a CPU float32 convolution with oneDNN when the input is large
    enough, and otherwise (a 3x3 kernel on up to 20,480 input samples, as in h_s
    and g_s on small pictures, or a 1x1 kernel at one thread) with im2col and
    MKL's sgemm, which splits the long sum over input channels and taps across
    threads for small outputs: h_s's last layer on a 3x3 z gave other floats at 2
    threads, enough to move a mixture parameter to another grid cell and break the
    ANS decode of a stream coded at 1. oneDNN's kernels gave the same bits as at
    one thread for every layer the decoder runs, at 2 to 8 and 16 threads from
    64x64 to 1920x1080 and at 2 and 3 up to 4096x2304 (measured; oneDNN does not
    promise it).
    So where inference would not run oneDNN at both the current count and one
    thread, the layer runs in one thread, as ``--threads 1`` runs it; the
    backend decision is cached per shape. These are the small layers: their time
    does not show at 1080p. Training (autograd on) is unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _conv_needs_one_thread(self, x):
            with torch_threads(1):
                return super().forward(x)
        return super().forward(x)


def blocked_conv(
    x: torch.Tensor, layer: nn.Conv2d, activation: str = "none", scalars: Sequence[float] = ()
) -> torch.Tensor:
    """``layer(x)``, then ``activation`` ("relu", "leaky_relu" with its slope), in one
    oneDNN call; a blocked input gives a blocked output. Only where
    :func:`blocked_path` says so."""
    op = _pointwise_conv()
    assert op is not None, "blocked_conv needs blocked_path() to be true"
    return op(
        x, layer.weight, layer.bias, list(layer.padding), list(layer.stride),
        list(layer.dilation), layer.groups, activation, list(scalars), "",
    )  # fmt: skip


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> Conv2d:
    """'Same' convolution; with stride 2 it halves (ceil) the spatial size."""
    return Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def upsample(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    """Doubles the spatial size: a convolution to 4x the channels, then pixel shuffle.

    Chosen over transposed convolution because oneDNN's transposed kernels
    can split their reduction across threads, which makes the decoder's
    output depend on the thread count; plain convolutions here do not.
    """
    return nn.Sequential(
        conv(in_ch, out_ch * UPSAMPLE_FACTOR**2, kernel), PixelShuffle(UPSAMPLE_FACTOR)
    )


class PixelShuffle(nn.PixelShuffle):
    """``nn.PixelShuffle``, moving the samples in two passes instead of one.

    torch's kernel interleaves the r x r sub-pictures with reads r*r channels
    apart for every output sample; gathering each output row's pieces first
    (r sub-columns side by side) and then the rows makes both passes close to
    a plain copy: a third to a quarter of the time at 1080p. Only samples move, so the
    result is the same tensor bit for bit, with the same gradient.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.upscale_factor
        if x.dim() != 4 or x.shape[1] % (r * r):
            return super().forward(x)
        b, c, h, w = x.shape
        c //= r * r
        # (b, c, i, j, h, w) -> (b, c, i, h, w, j) -> (b, c, h, i, w, j) = (b, c, h*r, w*r)
        columns = x.reshape(b, c, r, r, h, w).permute(0, 1, 2, 4, 5, 3).contiguous()
        return columns.permute(0, 1, 3, 2, 4, 5).reshape(b, c, h * r, w * r)


class GDN(gdn.GDN):
    """GDN (dvc_edic.models.gdn) with a thread-exact, faster path for decoding one picture.

    The layer mixes channels with a channels-last matrix product, not with a
    1x1 convolution as compressai does: oneDNN's convolution kernel is not
    always independent of the thread count, a matrix product over many pixels
    is, which keeps decoding bit-exact for any --threads. A product over few
    pixels is not (MKL then splits its sums), so inference runs those in one
    thread (:data:`ONE_THREAD_MIX_MACS`). Training and batches run the base
    layer's forward; parameters and maths are the base layer's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1 and x.is_contiguous() and not torch.is_grad_enabled():
            return self._inference(x, *self.effective_parameters())
        return super().forward(x)

    def _inference(self, x: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for one picture without autograd, bit for bit, in half the time.

        The matrix product is the very call ``F.linear`` makes on the permuted
        squares (the same transposed view of them, so the same BLAS problem);
        what changes is around it: the normaliser, which comes out
        channels-last, is transposed once into a planar tensor instead of being
        multiplied with ``x`` across mismatched layouts, and the elementwise
        steps work in place. Elementwise results do not depend on layout.
        """
        _, c, h, w = x.shape
        squares = (x * x).view(c, h * w).t()  # (HW, C): F.linear's view of the permuted squares
        small = h * w * c * c < ONE_THREAD_MIX_MACS
        with one_thread_for(x) if small else contextlib.nullcontext():
            norm = torch.mm(squares, gamma.t())
        norm.add_(beta)
        norm = norm.sqrt_() if self.inverse else norm.rsqrt_()
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        out.view(c, h * w).copy_(norm.t())
        return out.mul_(x)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation gate: lets the transform re-weight channels per image.

    Global average pooling sees the whole picture, so the gate adapts channel
    energy to content (flat sky vs. foliage) at the cost of two 1x1 convs.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.squeeze = Conv2d(channels, hidden, 1)
        self.excite = Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel factors (B, C, 1, 1) that :meth:`forward` multiplies ``x`` by.

        In one thread for inference (:func:`one_thread_for`): the mean is a sum, the
        sigmoid a kernel whose rounding depends on where torch's chunks start, and
        the rest acts on C numbers.
        """
        with one_thread_for(x):
            g = x.mean(dim=(2, 3), keepdim=True)
            return torch.sigmoid(self.excite(torch.relu(self.squeeze(g))))


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
        if torch.is_grad_enabled():
            return x + self.attention(self.body(x))
        # Inference: the same products and sums (both commute exactly), done in
        # place on the branch, whose two convolutions run blocked where they may.
        first, act, second = self.body
        if blocked_path(x, [first, second]):
            h = blocked_conv(x.to_mkldnn(), first, "leaky_relu", [act.negative_slope])
            branch = blocked_conv(h, second).to_dense()
        else:
            branch = self.body(x)
        return branch.mul_(self.attention.gate(branch)).add_(x)


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
        if blocked_path(x, self.convs()):
            return self.blocked(x.to_mkldnn()).to_dense()
        return x + self.body(x)

    def convs(self) -> list[nn.Conv2d]:
        return [self.body[0], self.body[2]]

    def blocked(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` on a blocked tensor, for inference (see :func:`blocked_path`)."""
        first, act, second = self.body
        h = blocked_conv(x, first, "leaky_relu", [act.negative_slope])
        return blocked_conv(h, second).add_(x)  # in place: a new tensor costs more than the sum


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
        out = blocked_stack(x, self.head, self.blocks, self.tail, x)
        if out is not None:
            return out
        return x + self.tail(self.blocks(self.head(x)))


def blocked_stack(
    x: torch.Tensor,
    head: nn.Conv2d,
    blocks: Iterable[ResidualBlock],
    tail: nn.Conv2d,
    base: torch.Tensor,
    head_activation: str = "none",
) -> torch.Tensor | None:
    """``base + tail(blocks(head_activation(head(x))))`` run in oneDNN's blocked layout, or
    None where :func:`blocked_path` says the stack must take the plain path.

    The enhancement nets and the MC net are this one shape; the blocked layout is
    entered once and left once for the whole stack.
    """
    if not blocked_path(x, [head, *(c for b in blocks for c in b.convs()), tail]):
        return None
    h = blocked_conv(x.to_mkldnn(), head, head_activation)
    for block in blocks:
        h = block.blocked(h)
    return blocked_conv(h, tail).to_dense().add_(base)
