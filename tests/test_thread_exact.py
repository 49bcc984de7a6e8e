"""The decoder's numbers do not depend on torch's thread count, at any picture size.

Some CPU kernels round differently with the thread count: im2col + MKL sgemm, which
torch runs for convolutions of small inputs (h_s and g_s on small pictures), MKL's
matrix product of few rows (GDN), and the elementwise softplus and sigmoid, whose
vectorised and scalar paths round differently at the chunk boundaries that the
thread count sets. The layers run those in one thread for inference
(dvc_edic.models.layers.Conv2d, one_thread_for). A float one ulp off can move a
mixture parameter to another grid cell, and then a stream coded with one thread count
does not decode with another: these tests code real pictures with the shipped weights
(whose y, unlike the tiny test model's, does not sit at the centres) with one count and
decode them with the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from dvc_edic.bitstream import BitstreamReader, FrameType
from dvc_edic.codec import SequenceDecoder, SequenceEncoder, _Pipeline
from dvc_edic.encoder import EncoderSettings
from dvc_edic.encoder.settings import load_encoder_settings
from dvc_edic.io import Frame, VideoInfo
from dvc_edic.models.edic import EDIC
from dvc_edic.models.layers import GDN, ChannelAttention, Conv2d, blocked_path
from tests.conftest import carphone_frames, encode_in_memory, tiny_preset

# The fast preset (block motion, the plain warp or the MC net, DCT layer, loop filter)
# and P-frames through every net the decoder has: the MV coder, the MC net and the
# residual coder.
SETTINGS = {
    "fast": load_encoder_settings("fast"),
    "learned": EncoderSettings("thread-test", ("learned",), skip_residual=False,
                               intra_fallback=False, dis_preset="ultrafast"),
}
FRAMES = 4  # I, P, P, P


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _encode(model, frames: list[Frame], quality: float,
            settings: EncoderSettings) -> tuple[bytes, list[Frame]]:
    info = VideoInfo(width=frames[0].width, height=frames[0].height, fps=Fraction(30),
                     bit_depth=8)
    return encode_in_memory(
        SequenceEncoder(model, info, quality, intra_period=-1, settings=settings), frames)


def _decode(model, data: bytes, monkeypatch: pytest.MonkeyPatch,
            ) -> tuple[list[Frame], list[torch.Tensor]]:
    """The decoded frames, and the float pictures the networks made before rounding."""
    floats = []
    rounding = _Pipeline.round_frame

    def round_frame(pipe: _Pipeline, x: torch.Tensor, size: tuple[int, int]) -> Frame:
        floats.append(x.clone())
        return rounding(pipe, x, size)

    with monkeypatch.context() as m:
        m.setattr(_Pipeline, "round_frame", round_frame)
        reader = BitstreamReader(data)
        dec = SequenceDecoder(model, reader.header)
        return [dec.decode(p) for p in reader], floats


@pytest.fixture(scope="module")
def carphone() -> list[Frame]:
    return carphone_frames(FRAMES)


@pytest.mark.parametrize(("settings", "quality"), [
    ("fast", 8.0), ("learned", 8.0), ("learned", 1.5),
    pytest.param("fast", 1.5, marks=pytest.mark.slow),  # 3 s a direction, little more to see
], ids=["fast-q8", "learned-q8", "learned-q1.5", "fast-q1.5"])
@pytest.mark.parametrize(("encode_threads", "decode_threads"), [(1, 2), (2, 1)],
                         ids=["encode1-decode2", "encode2-decode1"])
def test_shipped_weights_decode_with_another_thread_count(
    shipped_model, carphone: list[Frame], settings: str, quality: float, encode_threads: int,
    decode_threads: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """176x144: z is 3x3 and y 12x10 (h_s's last layer sees 12x12), below torch's oneDNN
    size threshold for every layer of h_s and g_s's first stage; an I-frame and three
    P-frames. Before the fix, the fast preset's quality-8 stream coded with one thread
    failed to decode with two (the ANS state check), and the networks' float pictures
    differed (at 8 bits they mostly round alike)."""
    with _threads(encode_threads):
        data, recons = _encode(shipped_model, carphone, quality, SETTINGS[settings])
    types = [p.frame_type for p in BitstreamReader(data)]
    assert types == [FrameType.I] + [FrameType.P] * (FRAMES - 1)
    floats = {}
    for n in (decode_threads, encode_threads):
        with _threads(n):
            decoded, floats[n] = _decode(shipped_model, data, monkeypatch)
        assert decoded == recons, f"decoded with {n} threads"
    assert all(torch.equal(a, b) for a, b in zip(floats[1], floats[2], strict=True))


# (in, out, kernel, height, width). torch runs a 3x3 convolution of a batch-1 float32
# input with oneDNN above 20,480 input samples, with im2col + sgemm at or below; a 1x1
# kernel runs im2col + sgemm at one thread whatever its size and oneDNN at several
# above the same threshold (so there the backend itself depends on the count).
CONV_SHAPES = [
    (96, 864, 3, 12, 12),  # h_s's last layer on a 3x3 z: differed at 2 threads
    (64, 256, 3, 1, 1),
    (96, 256, 3, 4, 4),
    (96, 96, 3, 10, 12),
    (96, 96, 3, 14, 15),  # 20,160 samples: the last size below the threshold
    (96, 96, 3, 15, 15),  # 21,600: oneDNN
    (32, 32, 3, 40, 48),
    (96, 24, 1, 1, 1),  # channel attention's squeeze
    (24, 96, 1, 1, 1),
    (96, 24, 1, 14, 15),
    (96, 24, 1, 15, 15),  # oneDNN at 2 threads, im2col + sgemm at 1
    (192, 192, 1, 20, 24),
]


def _at_threads(n: int, fn, *args) -> torch.Tensor:
    with _threads(n), torch.no_grad():
        return fn(*args)


# Thread counts whose chunks end mid-row or mid-vector for the shapes below (2 and 3
# often split a tensor of C x H x W samples at a row's end, where nothing changes).
COUNTS = (2, 3, 5, 7)


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_conv_at_several_threads_gives_the_one_thread_numbers(shape: tuple[int, ...]) -> None:
    cin, cout, k, h, w = shape
    g = torch.Generator().manual_seed(sum(shape))
    layer = Conv2d(cin, cout, k, padding=k // 2).eval()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.1)
        layer.bias.copy_(torch.randn(cout, generator=g))
    x = torch.randn(1, cin, h, w, generator=g)
    one = _at_threads(1, layer, x)
    # at one thread it is torch's own convolution, untouched
    assert torch.equal(one, _at_threads(1, F.conv2d, x, layer.weight, layer.bias, 1, k // 2))
    for n in COUNTS[:3]:
        assert torch.equal(_at_threads(n, layer, x), one), n


def test_blocked_path_decides_as_at_one_thread() -> None:
    """A stack of 1x1 layers runs oneDNN at two threads but not at one: it must keep the
    plain path (the one ``--threads 1`` takes), while 3x3 stacks decide by size alone."""
    for kernel, size, blocked in [(1, (40, 48), False), (3, (40, 48), True), (3, (8, 8), False)]:
        layers = [Conv2d(32, 32, kernel, padding=kernel // 2) for _ in range(2)]
        x = torch.randn(1, 32, *size)
        for n in (1, 2):
            assert _at_threads(n, blocked_path, x, layers) == blocked, (kernel, size, n)


def test_gdn_and_attention_at_several_threads_give_the_one_thread_numbers() -> None:
    """GDN's product on few pixels (MKL split its sum over 192 channels for up to 7 rows,
    and over 128 for 1) and the attention gate (a mean and a sigmoid)."""
    g = torch.Generator().manual_seed(3)
    cases = []
    for c, h, w in [(192, 1, 1), (192, 2, 3), (128, 1, 1), (64, 40, 48)]:
        gdn = GDN(c, inverse=True).eval()
        with torch.no_grad():
            gdn.gamma.copy_(torch.rand(c, c, generator=g) * 0.2)
        cases.append((gdn, torch.randn(1, c, h, w, generator=g)))
    for c, h, w in [(96, 1, 1), (64, 5, 700), (48, 100, 101)]:
        cases.append((ChannelAttention(c, 4).eval().gate, torch.randn(1, c, h, w, generator=g)))
    for module, x in cases:
        one = _at_threads(1, module, x)
        for n in COUNTS:
            assert torch.equal(_at_threads(n, module, x), one), (module, tuple(x.shape), n)


def test_mixture_parameters_at_several_threads_are_the_one_thread_numbers() -> None:
    """The softplus of the mixture scales: torch's vectorised and scalar softplus round
    differently on about one value in nine, and which values take the scalar path (the
    tail of each thread's chunk of a row) depends on the count. y cropped from h_s's
    96x96 to 94x93, so that chunks end mid-row at 5 and 7 threads."""
    preset = tiny_preset()
    torch.manual_seed(0)
    coder = EDIC(preset.intra, preset).eval()
    z = torch.randn(1, preset.intra.hyper_N, 24, 24, generator=torch.Generator().manual_seed(4))
    one = _at_threads(1, coder._mixture, z, (94, 93))
    for n in COUNTS:
        params = _at_threads(n, coder._mixture, z, (94, 93))
        assert all(torch.equal(a, b) for a, b in zip(params, one, strict=True)), n
