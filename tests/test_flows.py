"""Tests for flows/: warping, correlation, the SpyNet / PWC-style estimators, the builder."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from dvc_edic.errors import InputError
from flows import (
    HAVE_SAMPLER,
    FlowConfig,
    PwcLite,
    SpyNet,
    backward_warp,
    build_flow_estimator,
    conv_macs,
    correlation,
    correlation_torch,
)
from flows.warp import base_grid, cubic_weights

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "models"


def flow_section(preset: str) -> dict:
    with (PRESETS / f"{preset}.yaml").open(encoding="utf-8") as f:
        return yaml.safe_load(f)["flow"]


def smooth_image(batch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Random low-frequency content in [0, 1], so a small shift is recoverable."""
    low = torch.rand(batch, channels, height // 8 + 2, width // 8 + 2)
    return F.interpolate(low, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)


def pixel_grid_flow(flow_x: torch.Tensor, flow_y: torch.Tensor) -> torch.Tensor:
    return torch.stack([flow_x, flow_y], dim=1)


# ---------------------------------------------------------------- warp


@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 6, 1, 9), (1, 2, 7, 1), (1, 1, 1, 1)])
@pytest.mark.parametrize("mode", ["border", "zeros"])
def test_zero_flow_is_exact_identity(shape: tuple[int, ...], mode: str) -> None:
    x = torch.randn(shape)
    flow = torch.zeros(shape[0], 2, *shape[2:])
    assert torch.equal(backward_warp(x, flow, mode), x)


@pytest.mark.parametrize("dx, dy", [(3, 0), (0, -2), (-4, 5), (1, 1)])
def test_integer_shift_is_exact_in_interior(dx: int, dy: int) -> None:
    x = torch.rand(2, 4, 20, 31)
    flow = torch.zeros(2, 2, 20, 31)
    flow[:, 0], flow[:, 1] = dx, dy
    out = backward_warp(x, flow)
    h, w = 20, 31
    ys = slice(max(0, -dy), h - max(0, dy))
    xs = slice(max(0, -dx), w - max(0, dx))
    src_ys = slice(ys.start + dy, ys.stop + dy)
    src_xs = slice(xs.start + dx, xs.stop + dx)
    assert torch.equal(out[:, :, ys, xs], x[:, :, src_ys, src_xs])


@pytest.mark.parametrize("mode", ["border", "zeros"])
def test_per_pixel_integer_flow_is_a_gather(mode: str) -> None:
    torch.manual_seed(1)
    b, c, h, w = 2, 3, 9, 13
    x = torch.randn(b, c, h, w)
    flow = torch.randint(-15, 16, (b, 2, h, w)).float()
    out = backward_warp(x, flow, mode)
    for bi, yi, xi in itertools.product(range(b), range(h), range(w)):
        sx = xi + int(flow[bi, 0, yi, xi])
        sy = yi + int(flow[bi, 1, yi, xi])
        if mode == "border":
            expected = x[bi, :, min(max(sy, 0), h - 1), min(max(sx, 0), w - 1)]
        elif 0 <= sx < w and 0 <= sy < h:
            expected = x[bi, :, sy, sx]
        else:
            expected = torch.zeros(c)
        assert torch.equal(out[bi, :, yi, xi], expected)


def test_border_behaviour_subpixel() -> None:
    x = torch.arange(1.0, 6.0).view(1, 1, 1, 5)  # [1, 2, 3, 4, 5]
    flow = torch.zeros(1, 2, 1, 5)
    flow[:, 0] = -0.5
    # border: position -0.5 is clamped to 0 and reads the edge pixel
    assert torch.equal(
        backward_warp(x, flow, "border"), torch.tensor([[[[1, 1.5, 2.5, 3.5, 4.5]]]])
    )
    # zeros: half of the edge pixel, half of the zero outside
    assert torch.equal(
        backward_warp(x, flow, "zeros"), torch.tensor([[[[0.5, 1.5, 2.5, 3.5, 4.5]]]])
    )
    flow[:, 0] = 100.0
    assert torch.equal(backward_warp(x, flow, "border"), torch.full((1, 1, 1, 5), 5.0))
    assert torch.equal(backward_warp(x, flow, "zeros"), torch.zeros(1, 1, 1, 5))
    # vertical direction, other edge
    col = torch.arange(1.0, 5.0).view(1, 1, 4, 1)
    fy = torch.zeros(1, 2, 4, 1)
    fy[:, 1] = 0.25
    expected = torch.tensor([1.25, 2.25, 3.25, 4.0]).view(1, 1, 4, 1)
    assert torch.allclose(backward_warp(col, fy), expected, atol=0, rtol=1e-6)


@pytest.mark.parametrize("mode", ["border", "zeros"])
def test_matches_grid_sample_for_subpixel_flow(mode: str) -> None:
    torch.manual_seed(2)
    b, c, h, w = 2, 3, 11, 16
    x = torch.rand(b, c, h, w, dtype=torch.float64)
    flow = torch.randn(b, 2, h, w, dtype=torch.float64) * 4
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    grid = torch.stack(
        [2 * (xs + flow[:, 0]) / (w - 1) - 1, 2 * (ys + flow[:, 1]) / (h - 1) - 1], dim=-1
    )
    ref = F.grid_sample(x, grid, mode="bilinear", padding_mode=mode, align_corners=True)
    assert torch.allclose(backward_warp(x, flow, mode), ref, atol=1e-10)


@pytest.mark.parametrize("mode", ["border", "zeros"])
def test_gradient_wrt_flow_and_input(mode: str) -> None:
    torch.manual_seed(3)
    x = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    # keep positions off integer coordinates, where bilinear is not differentiable
    flow = (torch.randint(-3, 4, (1, 2, 5, 6)) + torch.rand(1, 2, 5, 6) * 0.8 + 0.1).double()
    flow.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, f: backward_warp(a, f, mode), (x, flow))


def test_gradient_is_zero_where_border_clamps() -> None:
    x = torch.rand(1, 1, 4, 4)
    flow = torch.full((1, 2, 4, 4), 50.0, requires_grad=True)
    backward_warp(x, flow).sum().backward()
    assert flow.grad is not None
    assert torch.equal(flow.grad, torch.zeros_like(flow))


def test_base_grid_is_cached() -> None:
    a = base_grid(7, 9, torch.device("cpu"), torch.float32)
    b = base_grid(7, 9, torch.device("cpu"), torch.float32)
    c = base_grid(7, 9, torch.device("cpu"), torch.float64)
    assert a[0] is b[0] and a[1] is b[1]
    assert c[0].dtype == torch.float64 and c[0] is not a[0]


def test_cubic_kernel_copies_integer_shifts_and_keeps_ramps_and_constants() -> None:
    """The cubic kernel is an interpolator: integer vectors copy samples bit for bit (so a
    cubic block field at whole samples is the bilinear one), its weights sum to one, and
    Keys' kernel at a = -0.5 reproduces a linear ramp away from the border."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 19, 27, generator=g)
    flow = torch.zeros(1, 2, 19, 27)
    flow[:, 0], flow[:, 1] = 2.0, -3.0
    assert torch.equal(backward_warp(x, flow, kernel="cubic"), backward_warp(x, flow))
    t = torch.rand(500, generator=g)
    assert torch.allclose(sum(cubic_weights(t)), torch.ones(500), atol=1e-6)
    assert [float(w) for w in cubic_weights(torch.tensor(0.5))] == [-0.0625, 0.5625, 0.5625,
                                                                      -0.0625]
    ramp = torch.arange(30.0).view(1, 1, 1, 30).expand(1, 1, 6, 30).contiguous()
    flow = torch.zeros(1, 2, 6, 30)
    flow[:, 0] = 0.375
    out = backward_warp(ramp, flow, kernel="cubic")[0, 0, :, 1:28]
    assert torch.allclose(out, ramp[0, 0, :, 1:28] + 0.375, atol=1e-5)
    constant = torch.full((1, 2, 9, 9), 0.3)
    wild = torch.rand(1, 2, 9, 9, generator=g) * 20 - 10  # far past every border
    assert torch.allclose(backward_warp(constant, wild, kernel="cubic"), constant, atol=1e-6)


def test_cubic_warp_is_the_same_at_any_thread_count() -> None:
    """The decoder's prediction must not depend on how many threads computed it."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(1, 3, 130, 170, generator=g)
    flow = torch.rand(1, 2, 130, 170, generator=g) * 16 - 8
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = backward_warp(x, flow, kernel="cubic")
        torch.set_num_threads(2)
        two = backward_warp(x, flow, kernel="cubic")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_warp_rejects_bad_arguments() -> None:
    x = torch.rand(1, 3, 4, 4)
    with pytest.raises(InputError, match="padding_mode"):
        backward_warp(x, torch.zeros(1, 2, 4, 4), "reflection")
    with pytest.raises(InputError, match="kernel"):
        backward_warp(x, torch.zeros(1, 2, 4, 4), kernel="lanczos")
    with pytest.raises(InputError, match="kernel"):
        backward_warp(x, torch.zeros(1, 2, 4, 4), "zeros", kernel="cubic")
    with pytest.raises(InputError, match="does not match"):
        backward_warp(x, torch.zeros(1, 2, 4, 5))
    with pytest.raises(InputError):
        backward_warp(x, torch.zeros(1, 3, 4, 4))


# ---------------------------------------------------------------- correlation


def naive_correlation(f1: torch.Tensor, f2: torch.Tensor, d: int) -> torch.Tensor:
    b, c, h, w = f1.shape
    side = 2 * d + 1
    out = torch.zeros(b, side * side, h, w, dtype=f1.dtype)
    for bi, i, j, y, x in itertools.product(range(b), range(side), range(side), range(h), range(w)):
        sy, sx = y + i - d, x + j - d
        if 0 <= sy < h and 0 <= sx < w:
            out[bi, i * side + j, y, x] = (
                sum(float(f1[bi, ch, y, x]) * float(f2[bi, ch, sy, sx]) for ch in range(c)) / c
            )
    return out


@pytest.mark.parametrize("d", [0, 1, 2])
def test_correlation_torch_matches_naive_loop(d: int) -> None:
    torch.manual_seed(4)
    f1 = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    f2 = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    out = correlation_torch(f1, f2, d)
    assert out.shape == (2, (2 * d + 1) ** 2, 5, 6)
    assert torch.allclose(out, naive_correlation(f1, f2, d), atol=1e-12)


def test_correlation_peaks_at_the_true_displacement() -> None:
    torch.manual_seed(5)
    d, dx, dy = 3, 2, -1
    f2 = F.normalize(torch.randn(1, 8, 24, 24), dim=1)  # unit vectors: self-match is max
    f1 = torch.roll(f2, shifts=(-dy, -dx), dims=(2, 3))  # f1(p) = f2(p + (dx, dy))
    best = correlation_torch(f1, f2, d)[0, :, 8:16, 8:16].argmax(dim=0)
    assert torch.all(best == (dy + d) * (2 * d + 1) + (dx + d))


def test_correlation_dispatch_and_errors() -> None:
    f1, f2 = torch.randn(1, 4, 6, 7), torch.randn(1, 4, 6, 7)
    if not HAVE_SAMPLER:
        assert torch.equal(correlation(f1, f2, 2), correlation_torch(f1, f2, 2))
    with pytest.raises(InputError):
        correlation_torch(f1, torch.randn(1, 4, 6, 8), 2)
    with pytest.raises(InputError):
        correlation_torch(f1, f2, -1)


@pytest.mark.skipif(
    not HAVE_SAMPLER, reason="spatial_correlation_sampler is not installed (optional extra)"
)
def test_sampler_matches_pure_torch() -> None:
    from flows.correlation import correlation_sampler

    torch.manual_seed(6)
    f1, f2 = torch.randn(2, 5, 9, 11), torch.randn(2, 5, 9, 11)
    for d in (1, 3):
        assert torch.allclose(
            correlation_sampler(f1, f2, d), correlation_torch(f1, f2, d), atol=1e-5
        )


# ---------------------------------------------------------------- estimators


def cpu_spynet() -> SpyNet:
    cfg = flow_section("cpu")
    return SpyNet(cfg["levels"], cfg["channels"], cfg["in_channels"], kernel=cfg["kernel"])


def cpu_pwc() -> PwcLite:
    cfg = flow_section("cpu")
    return PwcLite(
        cfg["levels"],
        cfg["channels"],
        cfg["in_channels"],
        cfg["max_displacement"],
        cfg["feature_channels"],
        kernel=cfg["kernel"],
    )


@pytest.mark.parametrize("make", [cpu_spynet, cpu_pwc])
@pytest.mark.parametrize("shape", [(1, 6, 68, 100), (2, 6, 64, 64), (1, 6, 67, 99), (1, 6, 5, 3)])
def test_estimator_shapes_and_zero_start(make, shape: tuple[int, ...]) -> None:
    torch.manual_seed(7)
    model = make()
    target, reference = torch.rand(shape), torch.rand(shape)
    with torch.no_grad():
        flow = model(target, reference)
    assert flow.shape == (shape[0], 2, *shape[2:])
    # the zero-initialised heads make an untrained estimator output exactly zero flow
    assert torch.equal(flow, torch.zeros_like(flow))


@pytest.mark.parametrize("make", [cpu_spynet, cpu_pwc])
def test_estimator_rejects_mismatched_inputs(make) -> None:
    model = make()
    with pytest.raises(InputError, match="input channels"):
        model(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    with pytest.raises(InputError, match="one shape"):
        model(torch.rand(1, 6, 16, 16), torch.rand(1, 6, 16, 17))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("make", [cpu_spynet, cpu_pwc])
def test_few_steps_reduce_warping_loss(make) -> None:
    """A smooth image and its sub-pixel shift: 30 Adam steps must recover the motion
    (one pair is enough: test_estimator_shapes_and_zero_start covers batches)."""
    torch.manual_seed(0)
    model = make()
    reference = smooth_image(1, 6, 48, 48)
    true_flow = torch.tensor([1.5, -1.0]).view(1, 2, 1, 1).expand(1, 2, 48, 48)
    target = backward_warp(reference, true_flow)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        flow = model(target, reference)
        loss = F.mse_loss(backward_warp(reference, flow), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    mean_flow = flow.detach()[:, :, 8:-8, 8:-8].mean(dim=(0, 2, 3))
    assert torch.allclose(mean_flow, torch.tensor([1.5, -1.0]), atol=0.4)


def test_spynet_integer_shift_channel_convention() -> None:
    """With a hand-set flow, backward_warp(reference, flow) reproduces target exactly:
    checks x/y order against torch.roll so estimator and warp agree on conventions."""
    reference = torch.rand(1, 6, 16, 16)
    target = torch.roll(reference, shifts=(-2, -3), dims=(2, 3))  # target(p) = ref(p + (3, 2))
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0], flow[:, 1] = 3, 2
    assert torch.equal(backward_warp(reference, flow)[..., :14, :13], target[..., :14, :13])


# ---------------------------------------------------------------- builder and cost


def build(cfg: dict) -> torch.nn.Module:
    return build_flow_estimator(FlowConfig.from_dict(cfg))


def test_builder_picks_the_class() -> None:
    cfg = flow_section("cpu")
    model = build(cfg)
    assert type(model) is SpyNet and model.levels == cfg["levels"]
    assert type(build({**cfg, "type": "pwc"})) is PwcLite
    assert type(build(flow_section("paper"))) is SpyNet
    pwc_only = ("max_displacement", "feature_channels")
    assert type(build({k: v for k, v in cfg.items() if k not in pwc_only})) is SpyNet


def test_builder_rejects_bad_config() -> None:
    cfg = flow_section("cpu")
    with pytest.raises(InputError, match=r"flow\.type: expected one of \('spynet', 'pwc'\)"):
        build({**cfg, "type": "raft"})
    with pytest.raises(InputError, match=r"missing \['levels'\]"):
        build({k: v for k, v in cfg.items() if k != "levels"})
    with pytest.raises(InputError, match=r"flow\.channels\[1\]: expected an integer >= 1, got 0"):
        build({**cfg, "channels": [8, 0]})
    pwc = {k: v for k, v in cfg.items() if k != "max_displacement"}
    with pytest.raises(InputError, match="max_displacement"):
        build({**pwc, "type": "pwc"})


def test_spynet_conv_macs_match_hand_count() -> None:
    cfg = flow_section("cpu")
    model = build(cfg)
    k, c = cfg["kernel"], cfg["in_channels"]
    widths = [2 * c + 2, *cfg["channels"], 2]
    per_pixel = k * k * sum(a * b for a, b in itertools.pairwise(widths))
    size = 64
    pixels = sum((size >> level) ** 2 for level in range(cfg["levels"]))
    pair = (torch.zeros(1, c, size, size), torch.zeros(1, c, size, size))
    assert conv_macs(model, *pair) == per_pixel * pixels
