"""Gaussian-mixture entropy model: likelihood, quantization, integer tables and the coder."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dvc_edic.bitstream.version import FORMAT_VERSION, MV_CONTEXT_VERSION, Y_WINDOW_VERSION
from dvc_edic.entropy import (
    GmmConfig,
    GmmEntropyCoder,
    QuantizedGmm,
    dequantize_gmm,
    gmm_likelihood,
    quantize_gmm,
    tables,
)
from dvc_edic.entropy.ans import ans_decode, ans_encode
from dvc_edic.entropy.grids import (
    INV_SCALE_BITS,
    LOGIT_STEP_LOG2,
    PHI_BITS,
    PHI_GRID_LOG2,
    WEIGHT_EXP_BITS,
    phi_table,
    scale_grid,
    scale_reach,
    weight_exp_table,
)
from dvc_edic.entropy.quantize import QUANTIZE_SPAN, centres
from dvc_edic.entropy.tables import (
    _phi_fixed,
    chunk_size,
    component_cdf_table,
    ideal_code_length,
    mixture_frequencies,
    window_frequencies,
)
from dvc_edic.entropy.window import (
    WindowConfig,
    escape_row,
    window_config,
    window_plan,
    window_widths,
)
from dvc_edic.errors import BitstreamError, InputError

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "models"


def _preset_cfg(name: str = "cpu") -> GmmConfig:
    with (PRESETS / f"{name}.yaml").open() as f:
        return GmmConfig.from_dict(yaml.safe_load(f)["entropy"])


CFG = _preset_cfg()
CFG1 = dataclasses.replace(CFG, mixtures=1)
# The last format whose y rows span the whole tensor, and both y layouts to test.
OLD_VERSION = Y_WINDOW_VERSION - 1
assert OLD_VERSION == MV_CONTEXT_VERSION
Y_VERSIONS = pytest.mark.parametrize("version", [OLD_VERSION, FORMAT_VERSION],
                                     ids=lambda v: f"v{v}")


def _params(
    rng: np.random.Generator,
    n: int,
    k: int,
    mean_spread: float = 3.0,
    log_scale: tuple[float, float] = (0.0, 1.0),
    mean_offset: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float parameters shaped (1, K, n, 1, 1)."""
    shape = (1, k, n, 1, 1)
    logits = torch.from_numpy(rng.normal(size=shape) * 2).float()
    means = torch.from_numpy(rng.normal(size=shape) * mean_spread + mean_offset).float()
    scales = torch.from_numpy(np.exp(rng.normal(log_scale[0], log_scale[1], size=shape))).float()
    return logits, means, scales


def _sample(q: QuantizedGmm, cfg: GmmConfig, rng: np.random.Generator) -> np.ndarray:
    """round(y) with y drawn from the (dequantized) mixture itself."""
    w, m, s = (t.double().numpy() for t in dequantize_gmm(q, cfg))
    u = rng.random(w.shape[0])[:, None]
    comp = np.minimum((np.cumsum(w, axis=1) < u).sum(axis=1), w.shape[1] - 1)
    rows = np.arange(w.shape[0])
    y = m[rows, comp] + s[rows, comp] * rng.normal(size=w.shape[0])
    return np.rint(y).astype(np.int64)


# ----------------------------------------------------------------------------- config


def test_presets_parse_and_agree() -> None:
    assert _preset_cfg("cpu") == _preset_cfg("paper")
    assert CFG.mixtures == 3 and CFG.prob_bits == 16


@pytest.mark.parametrize(
    "change",
    [
        {"mixtures": 0},
        {"prob_bits": 30},
        {"scale_min": -1.0},
        {"max_half_width": 5000},
        {"mean_step_log2": 0},
        {"scale_levels": True},
        {"extra_key": 1},
        {"weight_bits": 16, "prob_bits": 20},  # int64 mixture sums would overflow
    ],
)
def test_bad_config_is_input_error(change: dict) -> None:
    d = dataclasses.asdict(CFG) | change
    with pytest.raises(InputError):
        GmmConfig.from_dict(d)


def test_missing_config_key_is_named() -> None:
    d = dataclasses.asdict(CFG)
    del d["weight_bits"]
    with pytest.raises(InputError, match="weight_bits"):
        GmmConfig.from_dict(d)


# ----------------------------------------------------------------------------- constant tables


def test_phi_table_matches_high_precision_references() -> None:
    table = phi_table()
    unit = 1 << PHI_BITS
    z = np.arange(table.size) / (1 << PHI_GRID_LOG2)
    ref = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) * unit for v in z])
    assert np.max(np.abs(table - ref)) <= 1.0
    # Published values of Phi (30+ digits), independent of libm.
    known = {
        1: "0.841344746068542948585232545632",
        2: "0.977249868051820792799717362833",
        3: "0.998650101968369905473348185232",
    }
    from decimal import Decimal

    for zv, val in known.items():
        exact = Decimal(val) * unit
        assert abs(Decimal(int(table[zv << PHI_GRID_LOG2])) - exact) <= Decimal("0.5")
    assert table[0] == unit // 2 and table[-1] == unit
    assert np.all(np.diff(table) >= 0)


def test_weight_exp_and_scale_grid_tables() -> None:
    e = weight_exp_table()
    j = np.arange(e.size)
    ref = np.exp(-j / (1 << LOGIT_STEP_LOG2)) * (1 << WEIGHT_EXP_BITS)
    assert np.max(np.abs(e - ref)) <= 1.0 and e[-1] == 0 and e[0] == 1 << WEIGHT_EXP_BITS
    g = scale_grid(CFG)
    assert g.sigmas[0] == pytest.approx(CFG.scale_min, rel=1e-15)
    assert g.sigmas[-1] == CFG.scale_max
    ratios = g.sigmas[1:] / g.sigmas[:-1]
    assert np.allclose(ratios, ratios[0], rtol=1e-12)
    assert np.all(np.abs(g.inverse - (1 << INV_SCALE_BITS) / g.sigmas) <= 0.5 + 1e-6)
    assert np.all((g.sigmas[:-1] < g.boundaries) & (g.boundaries < g.sigmas[1:]))


def test_golden_hashes_pin_the_format() -> None:
    """Tables and bytes for fixed integer inputs; a change here breaks old streams."""
    digest = hashlib.sha256(component_cdf_table(CFG).values.astype("<i8").tobytes()).hexdigest()
    n = 4000
    i = np.arange(n, dtype=np.int64)
    q = QuantizedGmm(
        weights=np.stack(
            [
                (i * 7) % 200 + 20,
                (i * 13) % 30 + 6,
                256 - ((i * 7) % 200 + 20) - ((i * 13) % 30 + 6),
            ],
            axis=1,
        ).astype(np.int32),
        means=np.stack([(i * 37) % 801 - 400, (i * 11) % 97, -(i % 500)], axis=1).astype(np.int32),
        scale_idx=np.stack([i % 64, (i * 5) % 64, 63 - i % 64], axis=1).astype(np.int32),
    )
    sym = centres(q, CFG) + (i % 9) - 4
    data, _ = GmmEntropyCoder(CFG).encode(sym, q, OLD_VERSION)
    # quantize_gmm on fixed floats (dyadic, so the inputs themselves are exact).
    x = torch.from_numpy(((np.arange(3 * 500) * 7919) % 4001 - 2000) / 64.0).float()
    x = x.reshape(1, 3, 500, 1, 1)
    qf = quantize_gmm(x / 8, x, x.abs() / 4, CFG)
    qbytes = b"".join(a.astype("<i4").tobytes() for a in (qf.weights, qf.means, qf.scale_idx))
    got = (digest, hashlib.sha256(data).hexdigest(), hashlib.sha256(qbytes).hexdigest())
    assert got == GOLDEN


def test_golden_hash_pins_the_windowed_format() -> None:
    """Format 12's bytes for fixed integer inputs whose windows take many widths, with
    escapes and elements at R; a change here breaks format 12 streams."""
    n = 6000
    i = np.arange(n, dtype=np.int64)
    heavy = (i * 7) % 120 + 90
    light = (i * 13) % 40 + 1
    q = QuantizedGmm(
        weights=np.stack([heavy, light, 256 - heavy - light], axis=1).astype(np.int32),
        means=np.stack([(i * 37) % 801 - 400, (i * 11) % 97, -(i % 50)], axis=1).astype(np.int32),
        scale_idx=np.stack([i % 40, (i * 5) % 30, (i * 3) % 25], axis=1).astype(np.int32),
    )
    sym = centres(q, CFG) + ((i * 7919) % 11) - 5
    sym[::97] += ((i[::97] * 31) % 121) - 60  # outliers: R = 65, escapes
    coder = GmmEntropyCoder(CFG)
    data, coded = coder.encode(sym, q, Y_WINDOW_VERSION)
    assert np.array_equal(coded, sym) and data[0] == 65
    plan = window_plan(q, 65, CFG, Y_WINDOW_VERSION)
    assert len(set(plan.width.tolist())) >= 5  # the test covers many windows
    assert np.array_equal(coder.decode(data, q, Y_WINDOW_VERSION), sym)
    assert hashlib.sha256(data).hexdigest() == GOLDEN_WINDOWED
    # The settings the bytes were made with (configs/bitstream.yaml): editing them breaks
    # every format 12 stream, so they are pinned here with the bytes.
    assert window_config(Y_WINDOW_VERSION) == WindowConfig(WINDOW_CLASSES_12, 2.5)


WINDOW_CLASSES_12 = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80,
                     96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896)
# Recomputed only on purpose, together with a stream format version bump.
GOLDEN_WINDOWED = "6a0f361c5f50be8631284715e4dd504666cdf256f214fb32e462ad783c2cefa7"
GOLDEN = (
    "394ce188d9a4407b5f546f7f4377b91b2b4282d6e901246cbd44b47a8db32838",
    "e3fa4620290fde4ab2e1901521a1ab29e129df7a0fab0ce27585b46a06a12038",
    "64ad5e63d496bf3e6fee32db3e7694763bcc562cc074456e46823cd544521119",
)


# ----------------------------------------------------------------------------- likelihood


def test_likelihood_is_a_pmf_and_differentiable() -> None:
    rng = np.random.default_rng(0)
    logits, means, scales = (t.reshape(1, 3, 4, 2, 3) for t in _params(rng, 24, 3))
    scales = scales.clone()
    scales.view(-1)[:3] = 0.01  # below scale_min: lower-bounded, not a spike
    logits, means, scales = (t.clone().requires_grad_(True) for t in (logits, means, scales))
    support = torch.arange(-60, 61, dtype=torch.float32)
    y = support.reshape(-1, 1, 1, 1).expand(-1, 4, 2, 3)
    p = gmm_likelihood(
        y, *(t.expand(support.numel(), -1, -1, -1, -1) for t in (logits, means, scales)), CFG
    )
    assert p.shape == y.shape
    assert torch.all(p > 0) and torch.all(p <= 1)
    # Each symbol carries at least the coder's minimum probability 2**-prob_bits.
    floor_mass = support.numel() * 2.0**-CFG.prob_bits
    assert torch.allclose(p.sum(dim=0), torch.ones(4, 2, 3), atol=1e-4 + floor_mass)
    assert torch.all(p >= 2.0**-CFG.prob_bits)
    bits = -torch.log2(p[60]).sum()
    bits.backward()
    for t in (logits, means, scales):
        assert t.grad is not None and torch.all(torch.isfinite(t.grad))
        assert t.grad.abs().sum() > 0
    # Far-tail values stay finite (floored), with finite gradients.
    far = gmm_likelihood(torch.full((1, 4, 2, 3), 1e4), logits, means, scales, CFG)
    assert torch.all(far >= 2.0**-CFG.prob_bits) and torch.isfinite(torch.log2(far)).all()


def test_likelihood_rejects_mismatched_shapes() -> None:
    with pytest.raises(InputError):
        gmm_likelihood(
            torch.zeros(1, 4, 2, 2),
            torch.zeros(1, 2, 4, 2, 2),
            torch.zeros(1, 2, 4, 2, 2),
            torch.ones(1, 2, 4, 2, 2),
            CFG,
        )


# ----------------------------------------------------------------------------- quantization


def test_quantize_dequantize_grids() -> None:
    rng = np.random.default_rng(1)
    logits, means, scales = _params(rng, 20000, 3, mean_spread=50, log_scale=(0.0, 3.0))
    logits[0, :, :5] = torch.tensor([0.0, 0.0, -1e9]).reshape(3, 1, 1, 1)  # ties, dead one
    q = quantize_gmm(logits, means, scales, CFG)
    assert q.weights.dtype == q.means.dtype == q.scale_idx.dtype == np.int32
    assert q.weights.shape == (20000, 3)
    assert np.all(q.weights.astype(np.int64).sum(axis=1) == 1 << CFG.weight_bits)
    assert q.weights.min() >= 0 and np.all(q.weights[:5, 2] == 0)
    assert np.all(q.weights[:5, 0] == q.weights[:5, 1])
    w, m, s = dequantize_gmm(q, CFG)
    soft = torch.softmax(logits[0, :, :, 0, 0].T, dim=1)
    assert torch.max(torch.abs(w - soft)) <= 2.0 / (1 << CFG.weight_bits)
    step = 1.0 / (1 << CFG.mean_step_log2)
    assert torch.max(torch.abs(m - means[0, :, :, 0, 0].T)) <= step / 2 + 1e-6
    sig = scale_grid(CFG).sigmas
    s_in = scales[0, :, :, 0, 0].T.double().clamp(CFG.scale_min, CFG.scale_max)
    half_log_step = math.log(sig[1] / sig[0]) / 2
    assert torch.max(torch.abs(torch.log(s.double()) - torch.log(s_in))) <= half_log_step + 1e-6
    assert set(np.unique(s.numpy())) <= set(sig.astype(np.float32))


def test_quantize_element_order_and_shape_round_trip() -> None:
    m_, h, w_ = 3, 4, 5
    means = torch.arange(2 * m_ * h * w_, dtype=torch.float32).reshape(1, 2, m_, h, w_)
    cfg2 = dataclasses.replace(CFG, mixtures=2)
    q = quantize_gmm(torch.zeros_like(means), means, torch.ones_like(means), cfg2)
    step = 1 << cfg2.mean_step_log2
    assert np.array_equal(q.means[:, 0], np.arange(m_ * h * w_) * step)  # C-order of (M,H,W)
    _, back, _ = dequantize_gmm(q, cfg2, shape=(m_, h, w_))
    assert torch.equal(back, means)


def test_quantize_rejects_bad_shapes() -> None:
    z = torch.zeros(2, 3, 4, 1, 1)
    with pytest.raises(InputError):
        quantize_gmm(z, z, z, CFG)  # B = 2
    z = torch.zeros(1, 2, 4, 1, 1)
    with pytest.raises(InputError):
        quantize_gmm(z, z, z, CFG)  # K != mixtures


# ----------------------------------------------------------------------------- integer PMFs


def _reference_frequencies(q: QuantizedGmm, cfg: GmmConfig, half: int) -> np.ndarray:
    """Element by element, straight from the definition in tables.py's docstring."""
    grid = scale_grid(cfg)
    step = 1 << cfg.mean_step_log2
    c = centres(q, cfg)
    n = 2 * half + 1
    total = 1 << cfg.prob_bits
    bits = cfg.weight_bits + PHI_BITS
    out = np.empty((c.size, n), dtype=np.int64)
    for i in range(c.size):
        mix = np.zeros(n + 1, dtype=np.int64)
        for k in range(q.weights.shape[1]):
            s = int(q.scale_idx[i, k])
            u = c[i] - half + np.arange(n + 1) - (int(q.means[i, k]) // step)
            u = np.clip(u, -grid.half_width[s], grid.half_width[s])
            num = u * step - step // 2 - (int(q.means[i, k]) % step)
            mix += int(q.weights[i, k]) * _phi_fixed(num, int(grid.inverse[s]), cfg.mean_step_log2)
        mix[0], mix[n] = 0, 1 << bits
        cdf = ((mix * (total - n)) >> bits) + np.arange(n + 1)
        out[i] = np.diff(cdf)
    return out


@pytest.mark.parametrize("cfg", [CFG, CFG1], ids=["K3", "K1"])
def test_frequencies_match_reference(cfg: GmmConfig) -> None:
    rng = np.random.default_rng(2)
    n = 300
    logits, means, scales = _params(rng, n, cfg.mixtures, mean_spread=30, log_scale=(0.0, 2.5))
    means[0, :, :50] += 4000.0  # far from zero
    means[0, 0, 50:60] = -400.0  # components far from the centre, beyond the support
    q = quantize_gmm(logits, means, scales, cfg)
    c = centres(q, cfg)
    for half in (1, 2, 7, 40):
        freq = mixture_frequencies(q, c, half, 0, n, cfg)
        assert np.array_equal(freq, _reference_frequencies(q, cfg, half))
        assert freq.min() >= 1 and np.all(freq.sum(axis=1) == 1 << cfg.prob_bits)
        # Format 12's rows of one window width: the same integers, from the inner edges.
        rows = window_frequencies(q, c, half, cfg, np.float32)
        assert rows.dtype == np.float32 and np.array_equal(rows, freq)


@Y_VERSIONS
def test_entropy_stage_identical_across_thread_counts(version: int) -> None:
    """quantize_gmm and the y coder split their work over threads (entropy.parallel): with
    several quantisation spans and coder chunks, both the pool and the in-order hand-over
    run, and must give the same integers and bytes as one thread."""
    rng = np.random.default_rng(3)
    n = max(QUANTIZE_SPAN, 5 * chunk_size(40)) + 11
    params = _params(rng, n, 3, log_scale=(0.5, 1.5))
    offsets = rng.integers(-40, 41, n)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            q = quantize_gmm(*params, CFG)
            coder = GmmEntropyCoder(CFG)
            data, coded = coder.encode(centres(q, CFG) + offsets, q, version)
            freq = mixture_frequencies(q, centres(q, CFG), 20, 0, 5000, CFG)
            results.append((q, freq, data, coded, coder.decode(data, q, version)))
    finally:
        torch.set_num_threads(before)
    (q1, f1, d1, c1, o1), (q2, f2, d2, c2, o2) = results
    for name in ("weights", "means", "scale_idx"):
        assert np.array_equal(getattr(q1, name), getattr(q2, name))
    assert np.array_equal(f1, f2)
    assert d1 == d2 and np.array_equal(c1, c2)
    assert np.array_equal(o1, c1) and np.array_equal(o2, c2)


# ----------------------------------------------------------------------------- coder


@pytest.mark.parametrize(
    ("cfg", "spread", "log_scale", "offset"),
    [
        (CFG, 3.0, (0.0, 1.0), 0.0),
        (CFG, 40.0, (0.0, 3.0), 0.0),  # tiny (< scale_min) to huge (> scale_max) scales
        (CFG, 2.0, (-3.0, 0.5), 0.0),  # mostly below scale_min: nearly deterministic
        (CFG, 5.0, (2.5, 0.5), -3000.0),  # wide, far from zero
        (CFG1, 3.0, (0.0, 1.5), 700.0),
    ],
)
@Y_VERSIONS
def test_round_trip_exact(cfg: GmmConfig, spread: float, log_scale: tuple, offset: float,
                          version: int) -> None:  # fmt: skip
    rng = np.random.default_rng(4)
    n = 6000
    q = quantize_gmm(*_params(rng, n, cfg.mixtures, spread, log_scale, offset), cfg)
    sym = _sample(q, cfg, rng)
    coder = GmmEntropyCoder(cfg)
    data, coded = coder.encode(sym, q, version)
    assert coded.dtype == np.int32 and coded.shape == (n,)
    c = centres(q, cfg)
    inside = np.abs(sym - c) <= cfg.max_half_width
    assert np.array_equal(coded[inside], sym[inside])
    assert np.array_equal(coder.decode(data, q, version), coded)


@Y_VERSIONS
def test_clamping_and_degenerate_sizes(version: int) -> None:
    rng = np.random.default_rng(5)
    n = 500
    q = quantize_gmm(*_params(rng, n, 3), CFG)
    c = centres(q, CFG)
    coder = GmmEntropyCoder(CFG)
    sym = c.copy()
    sym[7] += 10**6
    sym[8] -= 300
    data, coded = coder.encode(sym.astype(np.float64), q, version)  # integer floats are fine
    assert data[0] == CFG.max_half_width
    assert coded[7] == c[7] + CFG.max_half_width and coded[8] == c[8] - CFG.max_half_width
    assert np.array_equal(np.delete(coded, [7, 8]), np.delete(c, [7, 8]))
    assert np.array_equal(coder.decode(data, q, version), coded)
    # Every symbol at its centre: R = 0, only the header is written.
    data, coded = coder.encode(c, q, version)
    assert data == b"\x00" and np.array_equal(coder.decode(data, q, version), c)
    empty = QuantizedGmm(*(np.zeros((0, 3), dtype=np.int32) for _ in range(3)))
    data, coded = coder.encode(np.zeros(0, dtype=np.int64), empty, version)
    assert data == b"\x00" and coded.size == 0
    assert coder.decode(data, empty, version).size == 0
    for bad in (b"\x01", b"\x00\x01", b"\x01\x01"):  # R > 0 or a payload: nothing to code
        with pytest.raises(BitstreamError):
            coder.decode(bad, empty, version)
    with pytest.raises(InputError):
        coder.encode(np.zeros(n + 1, dtype=np.int64), q)
    with pytest.raises(InputError):
        coder.encode(np.full(n, 0.5), q)


def test_rate_matches_ideal_and_float_estimate() -> None:
    rng = np.random.default_rng(6)
    m_, h, w_ = 16, 50, 50
    n = m_ * h * w_
    logits, means, scales = (
        t.reshape(1, 3, m_, h, w_) for t in _params(rng, n, 3, log_scale=(0.3, 1.0))
    )
    q = quantize_gmm(logits, means, scales, CFG)
    sym = _sample(q, CFG, rng)
    data, coded = GmmEntropyCoder(CFG).encode(sym, q)
    ideal = ideal_code_length(coded, q, data[0], CFG) / 8
    real = len(data)
    assert 0.995 * ideal <= real <= 1.01 * ideal + 16  # + a few bytes of ANS flush
    y = torch.from_numpy(coded.astype(np.float32)).reshape(1, m_, h, w_)
    estimate = float(-torch.log2(gmm_likelihood(y, logits, means, scales, CFG)).sum()) / 8
    assert abs(real - estimate) <= 0.1 * estimate


def test_encoding_is_deterministic() -> None:
    rng = np.random.default_rng(7)
    q = quantize_gmm(*_params(rng, 3000, 3), CFG)
    sym = _sample(q, CFG, rng)
    a = GmmEntropyCoder(CFG).encode(sym, q)
    b = GmmEntropyCoder(CFG).encode(sym.copy(), q)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])


def test_chunked_coding_spans_many_chunks() -> None:
    rng = np.random.default_rng(8)
    n = 3 * chunk_size(60) + 17
    q = quantize_gmm(*_params(rng, n, 3, log_scale=(2.0, 0.3)), CFG)
    sym = _sample(q, CFG, rng)
    sym[0] = centres(q, CFG)[0] + 60  # force R = 60 at least
    coder = GmmEntropyCoder(CFG)
    data, coded = coder.encode(sym, q)
    assert np.array_equal(coder.decode(data, q), coded)


def test_memory_stays_bounded() -> None:
    rng = np.random.default_rng(9)
    n = 200_000
    q = quantize_gmm(*_params(rng, n, 3, log_scale=(1.0, 0.7)), CFG)
    sym = centres(q, CFG) + rng.integers(-64, 65, size=n)
    coder = GmmEntropyCoder(CFG)
    tracemalloc.start()
    try:
        data, coded = coder.encode(sym, q)
        assert data[0] == 64
        out = coder.decode(data, q)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(out, coded)
    assert peak < 200 * 2**20


# ----------------------------------------------------------------------------- windows (format 12)


def _one_element(weights: list[int], means: list[int], scales: list[int]) -> QuantizedGmm:
    return QuantizedGmm(*(np.asarray([a], dtype=np.int32) for a in (weights, means, scales)))


def test_window_widths_follow_the_live_components_reach() -> None:
    wcfg = window_config(Y_WINDOW_VERSION)
    reach = scale_reach(CFG, wcfg.reach_sigmas)
    step = 1 << CFG.mean_step_log2

    def width(weights: list[int], means: list[int], scales: list[int], half: int = 500) -> int:
        q = _one_element(weights, means, scales)
        return int(window_widths(q, centres(q, CFG), half, CFG, wcfg)[0])

    def above(r: int) -> int:  # the smallest class above a reach of r
        return min(c for c in wcfg.classes if c > r)

    assert reach[0] == 1 and width([256, 0, 0], [5 * step, 0, 0], [0, 0, 0]) == above(1)
    assert width([256, 0, 0], [0, 0, 0], [40, 0, 0]) == above(int(reach[40]))
    # A light component 20 symbols away widens the window; a weightless one does not.
    far = [200, 56, 0], [0, 20 * step, 0], [0, 0, 0]
    assert width(*far) == above(20 + int(reach[0]))
    assert width([256, 0, 0], [0, 20 * step, -90 * step], [0, 63, 63]) == above(1)
    # Reaches beyond the largest class, and windows wider than the tensor's R, take R.
    assert width([255, 1, 0], [0, 9000 * step, 0], [0, 0, 0]) == 500
    assert width(*far, half=7) == 7


def test_windowed_coding_escapes_outliers_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Symbols beyond their window are coded as the window's end plus an escape distance;
    sampled symbols and outliers alike decode exactly, for little rate, and how the coder
    cuts them into chunks changes no byte."""
    rng = np.random.default_rng(12)
    n = 40_000
    q = quantize_gmm(*_params(rng, n, 3, mean_spread=2.0, log_scale=(-0.5, 1.0)), CFG)
    c = centres(q, CFG)
    coder = GmmEntropyCoder(CFG)
    sym = _sample(q, CFG, rng)
    plain, _ = coder.encode(sym, q, OLD_VERSION)
    windowed, coded = coder.encode(sym, q, Y_WINDOW_VERSION)
    assert np.array_equal(coded, sym)
    assert len(windowed) <= 1.005 * len(plain)  # what escapes cost, and they are rare
    out = rng.choice(n, 300, replace=False)
    sym[out] += rng.choice([-1, 1], 300) * rng.integers(5, 120, 300)
    data, coded = coder.encode(sym, q, Y_WINDOW_VERSION)
    half = int(np.abs(sym - c).max())
    plan = window_plan(q, half, CFG, Y_WINDOW_VERSION)
    offset = (sym - c)[plan.order]
    escaped = (np.abs(offset) >= plan.width) & (plan.width < half)
    assert escaped.sum() >= 200 and np.any(np.abs(offset) > plan.width + 30)
    assert np.array_equal(coded, sym)
    assert np.array_equal(coder.decode(data, q, Y_WINDOW_VERSION), sym)
    monkeypatch.setattr(tables, "CHUNK_CELLS", 100)  # chunks of 2 to 49 elements
    assert len(window_plan(q, half, CFG, Y_WINDOW_VERSION).spans) > 1000
    assert coder.encode(sym, q, Y_WINDOW_VERSION)[0] == data
    assert np.array_equal(coder.decode(data, q, Y_WINDOW_VERSION), sym)
    monkeypatch.undo()
    # The same symbols in format 11 are other bytes, and each decodes by its own version.
    old, _ = coder.encode(sym, q, OLD_VERSION)
    assert old != data and np.array_equal(coder.decode(old, q, OLD_VERSION), sym)


def test_escape_row_is_exp_golomb_shaped_and_exact() -> None:
    row = escape_row(1023)
    bits = np.floor(np.log2(np.arange(1, 1024))).astype(np.int64)
    assert np.all(row == np.rint(row)) and row.min() >= 1 and row.sum() < 2**24
    assert np.array_equal(row, 4.0 ** (bits.max() - bits) * row[-1])
    assert escape_row(2).tolist() == row[:2].tolist()


def test_window_config_is_read_by_version_and_checked() -> None:
    wcfg = window_config(Y_WINDOW_VERSION)
    assert window_config(Y_WINDOW_VERSION + 5) == wcfg  # the newest entry at or below
    assert list(wcfg.classes) == sorted(set(wcfg.classes)) and wcfg.reach_sigmas > 0
    with pytest.raises(InputError, match="no y_window entry"):
        window_config(OLD_VERSION)
    for classes in ((), (0, 1), (2, 2)):
        with pytest.raises(InputError, match="increasing half-widths"):
            WindowConfig(classes, 2.5)
    good = {"classes": [1, 2, 4], "reach_sigmas": 3}
    assert WindowConfig.from_dict(good, "y_window.12") == WindowConfig((1, 2, 4), 3.0)
    for bad in ({"classes": [2, 1], "reach_sigmas": 3}, {"classes": [0, 1], "reach_sigmas": 3},
                {"classes": [1, 5000], "reach_sigmas": 3}, {"classes": [], "reach_sigmas": 3},
                {"classes": [1], "reach_sigmas": 0}, {"classes": [1], "reach_sigmas": "3"},
                {"classes": [1]}, {**good, "extra": 1}):
        with pytest.raises(InputError):
            WindowConfig.from_dict(bad, "y_window.12")


# ----------------------------------------------------------------------------- corrupt input


def test_ans_strings_hold_nothing_but_their_symbols() -> None:
    """No symbols code to no bytes, and a trimmed string never ends in a zero byte: bytes
    beyond those (a stream edited behind its CRC) are refused, not ignored."""
    table = np.ones((3, 8))
    data = ans_encode(np.array([1, 2, 3], np.int32), table, trim=True)
    assert ans_encode(np.zeros(0, np.int32), table[:0], trim=True) == b""
    assert np.array_equal(ans_decode(data, table, trim=True), [1, 2, 3])
    for bad, rows in ((b"\x01", table[:0]), (b"\x00\x00\x00\x00", table[:0]),
                      (data + b"\x00", table)):
        with pytest.raises(BitstreamError):
            ans_decode(bad, rows, trim=True)


@Y_VERSIONS
def test_corrupted_streams_raise_bitstream_error_only(version: int) -> None:
    rng = np.random.default_rng(10)
    n = 2000
    q = quantize_gmm(*_params(rng, n, 3), CFG)
    coder = GmmEntropyCoder(CFG)
    sym = _sample(q, CFG, rng)
    sym[::50] += rng.integers(-40, 41, size=sym[::50].size)  # escapes in format 12
    data, coded = coder.encode(sym, q, version)
    assert np.array_equal(coder.decode(data, q, version), coded)
    cases = [data[:i] for i in range(0, len(data), max(1, len(data) // 25))]
    cases += [
        bytes(rng.integers(0, 256, size=rng.integers(0, 2 * len(data)), dtype=np.uint8))
        for _ in range(25)
    ]
    for _ in range(25):
        b = bytearray(data)
        b[rng.integers(0, len(b))] ^= 1 << int(rng.integers(0, 8))
        cases.append(bytes(b))
    cases += [data + b"\x01", data + b"\x00", b"", b"\x00\x01"]
    for bad in cases:
        try:
            out = coder.decode(bad, q, version)
        except BitstreamError:
            continue
        assert out.shape == (n,) and out.dtype == np.int32
    big = dataclasses.replace(CFG, max_half_width=300, prob_bits=16)
    with pytest.raises(BitstreamError, match="max_half_width"):
        GmmEntropyCoder(big).decode((301).to_bytes(2, "little") + b"\x01", q)
