"""dvc_edic's own factorized bottleneck and GDN compute what compressai's did, bit for bit.

dvc_edic used compressai's ``EntropyBottleneck`` and ``GDN`` until importing
compressai was found to cost most of every command's start-up; it now owns
both (dvc_edic.entropy.factorized, dvc_edic.models.gdn). The shipped weights
and the training checkpoints were made with compressai's classes, so these
tests hold the new ones to compressai 1.2.8 (still a dependency): the same
state-dict names in the same order, the same initial values from the same
random draws, and the same forward values, likelihoods, gradients, auxiliary
loss and integer tables, compared exactly (``torch.equal``), on random
parameters and inputs. Only GDN's channel mixing differs on purpose (a matrix
product instead of compressai's convolution; dvc_edic.models.layers.GDN says
why), so its output is compared to a tolerance, and everything before the
mixing exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compressai._CXX import pmf_to_quantized_cdf as compressai_quantized_cdf
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN as CompressaiGDN
from torch import nn

from dvc_edic.entropy.factorized import (
    LIKELIHOOD_FLOOR,
    FactorizedBottleneck,
    is_table_buffer,
)
from dvc_edic.entropy.integer_cdf import PRECISION, quantized_cdf
from dvc_edic.entropy.zcoder import z_likelihoods
from dvc_edic.lowerbound import lower_bound
from dvc_edic.models import gdn
from dvc_edic.models.layers import GDN

CHANNEL_COUNTS = (1, 5, 16)


def _same_state(ours: nn.Module, theirs: nn.Module) -> None:
    """Same tensor names in the same order, same dtypes, shapes and values."""
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert torch.equal(a[name], b[name]), name
    # the optimizers' states in a checkpoint are stored by parameter position
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]


def _randomised_pair(channels: int, seed: int) -> tuple[FactorizedBottleneck, EntropyBottleneck]:
    """Both bottlenecks holding the same random, trained-looking parameters."""
    theirs = EntropyBottleneck(channels)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if name == "quantiles":  # spreads of 0.3 to 12 around medians in [-2, 2]
                med = torch.rand(channels, generator=g) * 4 - 2
                low = med - (torch.rand(channels, generator=g) * 12 + 0.3)
                high = med + (torch.rand(channels, generator=g) * 12 + 0.3)
                p.copy_(torch.stack((low, med, high), dim=1)[:, None, :])
            else:
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
    ours = FactorizedBottleneck(channels)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _grads(module: nn.Module) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.clone() for n, p in module.named_parameters()}


# ------------------------------------------------------------ the bottleneck
@pytest.mark.parametrize("channels", CHANNEL_COUNTS)
def test_a_new_bottleneck_is_compressais_from_the_same_draws(channels: int) -> None:
    torch.manual_seed(3)
    theirs = EntropyBottleneck(channels)
    after_theirs = torch.rand(4)
    torch.manual_seed(3)
    ours = FactorizedBottleneck(channels)
    after_ours = torch.rand(4)
    _same_state(ours, theirs)
    assert torch.equal(after_ours, after_theirs)  # the same random numbers were consumed


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("channels", CHANNEL_COUNTS)
def test_forward_values_likelihoods_and_gradients_are_compressais(
        channels: int, training: bool) -> None:
    ours, theirs = _randomised_pair(channels, seed=channels)
    ours.train(training)
    theirs.train(training)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, channels, 5, 3, generator=g) * 4
    upstream = torch.randn(2, channels, 5, 3, generator=g)
    results = []
    for module in (ours, theirs):
        xin = x.clone().requires_grad_(True)
        torch.manual_seed(11)  # the same training noise for both
        values, likelihood = module(xin)
        (values * upstream + likelihood.log2() * upstream.flip(0)).sum().backward()
        results.append((values, likelihood, xin.grad, _grads(module)))
    (v_a, l_a, gx_a, gp_a), (v_b, l_b, gx_b, gp_b) = results
    assert torch.equal(v_a, v_b) and torch.equal(l_a, l_b) and torch.equal(gx_a, gx_b)
    assert gp_a.keys() == gp_b.keys()
    for name in gp_a:
        assert (gp_a[name] is None) == (gp_b[name] is None), name
        assert gp_a[name] is None or torch.equal(gp_a[name], gp_b[name]), name
    assert bool((l_a >= LIKELIHOOD_FLOOR).all())


def test_the_likelihood_of_rounded_values_is_compressais_floored_density() -> None:
    """What the encoder's refinement prices (z_likelihoods), far tails (the floor) included."""
    ours, theirs = _randomised_pair(6, seed=1)
    z_hat = torch.round(torch.randn(1, 6, 4, 4, generator=torch.Generator().manual_seed(2)) * 6)
    z_hat[0, :, 0, 0] = 1e4  # far beyond every channel's density: the floor holds it
    mine = z_hat.clone().requires_grad_(True)
    p_ours = z_likelihoods(ours, mine)
    p_ours.log2().sum().backward()
    ref = z_hat.clone().requires_grad_(True)
    values = ref.transpose(0, 1).reshape(6, 1, -1)
    mass, _, _ = theirs._likelihood(values)
    p_theirs = theirs.likelihood_lower_bound(mass).reshape(6, 1, 4, 4).transpose(0, 1)
    p_theirs.log2().sum().backward()
    assert torch.equal(p_ours, p_theirs) and torch.equal(mine.grad, ref.grad)
    assert bool((p_ours[0, :, 0, 0] == LIKELIHOOD_FLOOR).all())


def test_the_auxiliary_loss_and_its_gradient_are_compressais() -> None:
    ours, theirs = _randomised_pair(7, seed=4)
    for module in (ours, theirs):
        module.loss().backward()
    assert torch.equal(ours.loss(), theirs.loss())
    assert torch.equal(ours.quantiles.grad, theirs.quantiles.grad)
    # only the quantiles learn from it
    assert all(p.grad is None for n, p in ours.named_parameters() if n != "quantiles")


@pytest.mark.parametrize("seed", range(6))
def test_update_builds_compressais_integer_tables(seed: int) -> None:
    ours, theirs = _randomised_pair(12, seed=seed)
    assert ours.update() and theirs.update()
    assert not ours.update()  # kept without force
    for name in ("_quantized_cdf", "_offset", "_cdf_length"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert a.dtype == b.dtype == torch.int32 and torch.equal(a, b), name
    _same_state(ours, theirs)


def test_the_shipped_weights_tables_rebuild_as_compressai_rebuilds_them(shipped_model) -> None:
    """On the trained densities of the shipped weights, not only on random ones."""
    bottlenecks = shipped_model.entropy_bottlenecks()
    assert bottlenecks
    for ours in bottlenecks:
        density = {k: v for k, v in ours.state_dict().items() if not is_table_buffer(k)}
        mine = FactorizedBottleneck(ours.channels)
        theirs = EntropyBottleneck(ours.channels)
        mine.load_state_dict(density, strict=False)
        theirs.load_state_dict(density, strict=False)
        mine.update(force=True)
        theirs.update(force=True)
        for name in ("_quantized_cdf", "_offset", "_cdf_length"):
            assert torch.equal(getattr(mine, name), getattr(theirs, name)), name


def test_the_tables_are_read_through_one_method_and_built_on_first_use() -> None:
    torch.manual_seed(0)
    eb = FactorizedBottleneck(4)
    cdf, lengths, offsets = eb.integer_tables()
    assert cdf.dtype == lengths.dtype == offsets.dtype == torch.int32
    assert cdf.shape[0] == lengths.shape[0] == offsets.shape[0] == 4
    assert int(lengths.max()) <= cdf.shape[1]
    assert eb.medians().shape == (4,)
    assert is_table_buffer("intra.z_bottleneck._quantized_cdf")
    assert not is_table_buffer("intra.z_bottleneck.quantiles")


# ---------------------------------------------------- the integer CDF procedure
def _both(p: np.ndarray) -> tuple[object, object]:
    """compressai's C++ result and ours for float32 ``p``, or the exception type each raised."""
    out: list[object] = []
    for fn in (lambda: compressai_quantized_cdf(p.tolist(), PRECISION),
               lambda: quantized_cdf(p, PRECISION).tolist()):
        try:
            out.append(fn())
        except (ValueError, RuntimeError) as exc:  # pybind turns domain_error into ValueError
            out.append(type(exc).__name__)
    return out[0], out[1]


def test_the_integer_cdf_is_compressais_on_random_and_awkward_inputs() -> None:
    rng = np.random.default_rng(0)
    unit = 2.0**-PRECISION
    cases = [
        np.array([1.0], np.float32),
        np.array([0.0, 1.0, 0.0], np.float32),  # empty symbols take counts from the full one
        np.array([0.5, 0.5, 0.0, 0.0, 1e-12], np.float32),
        np.array([(k + 0.5) * unit for k in range(8)], np.float32),  # every count on a half
        np.full(300, 1 / 300, np.float32),
        np.array([0.9, *([1e-7] * 60), 0.1], np.float32),  # many steals, from both sides
        np.array([1e-30, 1.0, 1e-30], np.float32),
    ]
    for n in rng.integers(1, 400, 200):
        p = rng.random(n) ** rng.choice([1, 4, 12])
        p[rng.random(n) < 0.3] = 0
        p[rng.integers(n)] += 0.01
        cases.append((p / p.sum()).astype(np.float32))
    for p in cases:
        theirs, ours = _both(p)
        assert ours == theirs, p


def test_the_integer_cdf_refuses_what_compressai_refuses() -> None:
    for p in ([0.5, -0.1], [0.5, float("nan")], [0.5, float("inf")], [0.0, 0.0], [1e-9]):
        theirs, ours = _both(np.array(p, np.float32))
        assert ours == theirs == "ValueError", (p, theirs, ours)


# ------------------------------------------------------------------------ GDN
@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_parameters_and_state_names_are_compressais(inverse: bool) -> None:
    for cls in (gdn.GDN, GDN):
        _same_state(cls(6, inverse=inverse), CompressaiGDN(6, inverse=inverse))


def _randomised_gdns(channels: int, inverse: bool) -> tuple[GDN, CompressaiGDN]:
    theirs = CompressaiGDN(channels, inverse=inverse)
    g = torch.Generator().manual_seed(channels)
    with torch.no_grad():
        # some entries below the reparametrisation's floor, where the bound's rule matters
        theirs.beta.copy_(torch.rand(channels, generator=g) * 2 - 0.2)
        theirs.gamma.copy_(torch.rand(channels, channels, generator=g) * 0.6 - 0.1)
    ours = GDN(channels, inverse=inverse)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_reparametrisation_and_its_gradients_are_compressais(inverse: bool) -> None:
    """beta and gamma as applied, and the gradients the floor lets through, exactly."""
    ours, theirs = _randomised_gdns(8, inverse)
    g = torch.Generator().manual_seed(5)
    up_beta, up_gamma = torch.randn(8, generator=g), torch.randn(8, 8, generator=g)
    beta, gamma = ours.effective_parameters()
    ref_beta, ref_gamma = theirs.beta_reparam(theirs.beta), theirs.gamma_reparam(theirs.gamma)
    assert torch.equal(beta, ref_beta) and torch.equal(gamma, ref_gamma)
    ((beta * up_beta).sum() + (gamma * up_gamma).sum()).backward()
    ((ref_beta * up_beta).sum() + (ref_gamma * up_gamma).sum()).backward()
    assert torch.equal(ours.beta.grad, theirs.beta.grad)
    assert torch.equal(ours.gamma.grad, theirs.gamma.grad)
    # below the floor, a gradient flows only where it would raise the parameter
    below = theirs.beta.detach() < theirs.beta_reparam.lower_bound.bound
    assert bool(below.any())
    lifted = ours.beta.grad[below] != 0
    assert bool((up_beta[below][lifted] < 0).all())


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_output_and_gradients_match_compressais_convolution(inverse: bool) -> None:
    """The product differs from compressai's 1x1 convolution by rounding only."""
    ours, theirs = _randomised_gdns(8, inverse)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 8, 6, 5, generator=g)
    upstream = torch.randn(2, 8, 6, 5, generator=g)
    outs, grads = [], []
    for module in (ours, theirs):
        xin = x.clone().requires_grad_(True)
        out = module(xin)
        (out * upstream).sum().backward()
        outs.append(out)
        grads.append((xin.grad, module.beta.grad, module.gamma.grad))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # the decoder's one-picture path
        torch.testing.assert_close(ours(x[:1].contiguous()), theirs(x[:1]), rtol=1e-5, atol=1e-6)


def test_the_lower_bound_is_compressais_with_a_number_or_a_buffer() -> None:
    from compressai.ops import LowerBound as CompressaiLowerBound

    x = torch.tensor([-1.0, 0.0, 1e-10, 1e-9, 0.5, float("nan")], requires_grad=True)
    upstream = torch.tensor([1.0, -1.0, -2.0, 3.0, -4.0, 5.0])
    reference = CompressaiLowerBound(1e-9)
    expected = reference(x)
    (expected * upstream).sum().backward()
    expected_grad = x.grad.clone()
    for bound in (1e-9, reference.bound):
        x.grad = None
        out = lower_bound(x, bound)
        (out * upstream).sum().backward()
        assert torch.equal(out.view(torch.int32), expected.view(torch.int32))  # NaN too
        assert torch.equal(x.grad, expected_grad)
