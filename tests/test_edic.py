"""EDIC coder: training pass, real bytes, exact decoding, rate behaviour."""

from __future__ import annotations

import math

import pytest
import torch

from dvc_edic.errors import BitstreamError
from dvc_edic.models.edic import CodedLatents

LAMBDA_BOOST = 20.0


def _smooth(b: int, c: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b, c, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear")


def _bits(likelihoods: dict[str, torch.Tensor]) -> float:
    return float(sum((-torch.log2(v)).sum() for v in likelihoods.values()))


def test_forward_shapes_and_likelihoods(tiny_model) -> None:
    edic = tiny_model.intra.train()
    x = _smooth(2, 6, 64, 96, 0)
    out = edic(x, torch.tensor([1.0, 8.0]))
    assert out["x_hat"].shape == x.shape
    y, z = out["likelihoods"]["y"], out["likelihoods"]["z"]
    stride, m = edic.cfg.stride, edic.cfg.M
    y_hw = (64 // stride, 96 // stride)
    assert y.shape == (2, m, *y_hw) and z.shape == (2, 16, *(-(-s // 4) for s in y_hw))
    for v in (y, z):
        assert torch.all(v > 0) and torch.all(v <= 1)
    rate = sum((-torch.log2(v)).sum() for v in out["likelihoods"].values())
    loss = rate + ((out["x_hat"] - x) ** 2).mean()
    loss.backward()
    assert edic.g_a[0].weight.grad is not None and edic.gain.log_gain.grad is not None


def test_input_must_match_stride(tiny_model) -> None:
    stride = tiny_model.intra.cfg.stride
    with pytest.raises(ValueError, match=f"multiples of {stride}"):
        tiny_model.intra(torch.rand(1, 6, stride * 5 // 2, stride * 3), 4.0)


@pytest.mark.parametrize("threads", [1, 2])
def test_compress_decompress_exact(tiny_model, threads: int) -> None:
    edic = tiny_model.intra
    x = _smooth(1, 6, 96, 128, 1)
    latents, x_enc = edic.compress(x, 5.5)
    assert isinstance(latents.y, bytes) and len(latents.y) > 0
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x_dec = edic.decompress(latents, 5.5, (96, 128))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(x_enc, x_dec)


def test_decompress_rejects_wrong_shapes(tiny_model) -> None:
    edic = tiny_model.intra
    latents, _ = edic.compress(_smooth(1, 6, 64, 64, 2), 4.0)
    bad = CodedLatents(z=latents.z, y=latents.y, z_shape=latents.z_shape, y_shape=(16, 400, 400))
    with pytest.raises(BitstreamError, match="do not match"):
        edic.decompress(bad, 4.0, (64, 64))


@pytest.mark.usefixtures("one_thread")
def test_trained_rate_matches_real_bytes_and_grows_with_quality(tiny_model) -> None:
    """After a brief training, real bytes are within 10% of the likelihood estimate."""
    torch.manual_seed(0)
    edic = tiny_model.intra.train()
    main = [p for n, p in edic.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in edic.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.Adam(main, lr=2e-3)
    aux_opt = torch.optim.Adam(aux, lr=1e-2)
    # A steeper ladder than the preset so that 150 steps are enough to separate the levels.
    lambdas = torch.tensor(tiny_model.preset.lambdas) * LAMBDA_BOOST
    for step in range(150):
        x = _smooth(4, 6, 64, 64, 100 + step)
        q = torch.randint(1, 9, (4,)).float()
        out = edic(x, q)
        mse = ((out["x_hat"] - x) ** 2).mean(dim=(1, 2, 3))
        bpp = sum((-torch.log2(v)).sum(dim=(1, 2, 3)) for v in out["likelihoods"].values())
        loss = (lambdas[(q - 1).long()] * 255**2 * mse).mean() + bpp.mean() / (64 * 64)
        opt.zero_grad()
        loss.backward()
        opt.step()
        aux_opt.zero_grad()
        edic.z_bottleneck.loss().backward()
        aux_opt.step()
    edic.eval()
    tiny_model.update_entropy_tables()
    x = _smooth(1, 6, 256, 256, 7)
    sizes = []
    for q in (1.0, 3.0, 5.0, 8.0):
        with torch.no_grad():
            est_bits = _bits(edic(x, q)["likelihoods"])
        latents, _ = edic.compress(x, q)
        real_bits = 8 * (len(latents.y) + len(latents.z))
        assert math.isclose(real_bits, est_bits, rel_tol=0.10), (q, real_bits, est_bits)
        sizes.append(real_bits)
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_gain_units_interpolate_geometrically_like_the_lambda_ladder() -> None:
    """A half-way quality gets the geometric mean of its neighbours' gains, per channel,
    and qualities outside [1, levels] are clamped: the lambda ladder's rule (test_train)."""
    from dvc_edic.models.gain import GainUnit

    unit = GainUnit(levels=3, channels=2, init_low=1.0, init_high=16.0)
    with torch.no_grad():
        unit.log_gain.copy_(torch.log(torch.tensor([[1.0, 2.0], [4.0, 8.0], [16.0, 32.0]])))
    got = unit.gain(torch.tensor([0.5, 1.5, 2.0, 2.5, 9.0]))[:, :, 0, 0]
    want = torch.tensor([[1.0, 2.0], [2.0, 4.0], [4.0, 8.0], [8.0, 16.0], [16.0, 32.0]])
    assert got.shape == (5, 2) and torch.allclose(got, want, rtol=1e-6)
