"""The decoder's inference paths give the training path's numbers, bit for bit.

Inference (no autograd) runs some layers differently for speed: conv stacks in
oneDNN's blocked layout with fused activations (layers.blocked_path), GDN's
normaliser transposed once instead of multiplied across layouts, in-place
gating. Every decoded sample depends on these being exact, since streams made
before them must decode to the same bytes, and the encoder's reconstruction
must match the decoder's. Each case compares the two paths on random weights,
at sizes where torch picks oneDNN for every layer (the blocked path runs) and
at sizes where it does not (the blocked path must step aside), with 1 and 2
threads.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dvc_edic.models.layers import (
    GDN,
    AttentionBlock,
    EnhancementNet,
    PixelShuffle,
    ResidualBlock,
    blocked_path,
)
from dvc_edic.models.pframe import MotionCompensation

LARGE = (96, 112)  # every conv input (even 2 channels) above torch's oneDNN size threshold
SMALL = (6, 10)  # below it: plain convolution kernels


def _randomised(module: nn.Module, seed: int) -> nn.Module:
    """Random weights everywhere, including the zero-initialised tails."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (0.3 if p.dim() == 1 else 0.0))
    return module.eval()


def _both_paths(module: nn.Module, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the training path at one thread, the inference path at the current count): inference
    gives the one-thread numbers at every count (tests/test_thread_exact.py), training
    does not promise to."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():  # the training path
            plain = module(*inputs).detach()
    finally:
        torch.set_num_threads(before)
    with torch.inference_mode():
        fast = module(*inputs)
    return plain, fast


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request: pytest.FixtureRequest):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("size", [LARGE, SMALL], ids=["large", "small"])
def test_inference_matches_training_path(threads: int, size: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(1)
    h, w = size
    cases: list[tuple[nn.Module, tuple[torch.Tensor, ...]]] = [
        (EnhancementNet(6, 32, 2), (torch.rand(1, 6, h, w, generator=g),)),
        (EnhancementNet(2, 16, 1), (torch.randn(1, 2, h, w, generator=g) * 4,)),
        (MotionCompensation(6, 24, 1), (torch.rand(1, 6, h, w, generator=g),
                                        torch.rand(1, 6, h, w, generator=g),
                                        torch.randn(1, 2, h, w, generator=g))),
        (ResidualBlock(24), (torch.randn(1, 24, h, w, generator=g),)),
        (AttentionBlock(48, 4), (torch.randn(1, 48, h, w, generator=g),)),
        (GDN(48), (torch.randn(1, 48, h, w, generator=g),)),
        (GDN(48, inverse=True), (torch.randn(1, 48, h, w, generator=g),)),
    ]  # fmt: skip
    for seed, (module, inputs) in enumerate(cases):
        plain, fast = _both_paths(_randomised(module, seed), *inputs)
        assert torch.equal(plain, fast), f"{type(module).__name__} differs at {size}"


def test_blocked_path_runs_where_torch_uses_onednn() -> None:
    """Otherwise the test above would compare the plain path with itself."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("torch without oneDNN: the blocked path never runs")
    net = EnhancementNet(6, 32, 2)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        assert blocked_path(torch.rand(1, 6, *LARGE), convs)
        assert not blocked_path(torch.rand(1, 6, *SMALL), convs)
        mv = [m for m in EnhancementNet(2, 16, 1).modules() if isinstance(m, nn.Conv2d)]
        assert blocked_path(torch.rand(1, 2, *LARGE), mv)
        # Narrower than a oneDNN block: padded, the stack would hold twice its samples.
        narrow = [m for m in EnhancementNet(6, 8, 1).modules() if isinstance(m, nn.Conv2d)]
        assert not blocked_path(torch.rand(1, 6, *LARGE), narrow)
    assert not blocked_path(torch.rand(1, 6, *LARGE), convs)  # autograd on: plain path


def test_pixel_shuffle_is_torchs() -> None:
    g = torch.Generator().manual_seed(2)
    for shape in [(1, 192, 17, 30), (2, 8, 5, 7), (1, 4, 1, 1)]:
        x = torch.randn(shape, generator=g, requires_grad=True)
        x2 = x.detach().clone().requires_grad_(True)
        ours, theirs = PixelShuffle(2)(x), F.pixel_shuffle(x2, 2)
        assert torch.equal(ours, theirs)
        grad = torch.randn(theirs.shape, generator=g)
        ours.backward(grad)
        theirs.backward(grad)
        assert torch.equal(x.grad, x2.grad)
