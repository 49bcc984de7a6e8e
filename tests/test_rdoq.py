"""Rate-distortion optimised quantization of the DCT layer (dvc_edic.encoder.rdoq): it
lowers the real J = bits + weight * SSE below the dead-zone quantizer's at the same
step, only ever moves a level toward zero from rounding, and its layers decode, alone
and inside a coded sequence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dvc_edic.bitstream import BitstreamReader
from dvc_edic.codec import SequenceEncoder
from dvc_edic.dctcontext import layer_bytes, read_layer
from dvc_edic.dctlayer import apply_layer
from dvc_edic.encoder.dctsearch import error_coefficients, optimal_step, quantize_coefficients
from dvc_edic.encoder.rdoq import rdo_quantize
from tests.conftest import carphone_frames
from tests.test_dctlayer import _pair, _sse
from tests.test_encoder_search import ALL_MODES, _code, _decode, _info

DEADZONE = 0.33


def _real_j(source, base, layer, weight: float) -> float:
    return 8 * len(layer_bytes(layer, base)) + weight * _sse(source, apply_layer(base, layer))


@pytest.mark.parametrize("weight", [0.002, 0.02, 0.2])
def test_rdoq_lowers_the_real_cost_of_structured_error(weight: float) -> None:
    """A blurred base leaves detail whose levels cluster by band and class: the cells'
    own bits tell which levels pay."""
    source, base = _pair(11, 96, 64, 8, "blur")
    coefs = error_coefficients(source, base)
    step = optimal_step(weight)
    plain = quantize_coefficients(coefs, step, DEADZONE)
    rdo = rdo_quantize(coefs, base, step, DEADZONE, weight)
    assert rdo.step_q == plain.step_q
    assert _real_j(source, base, rdo, weight) < 0.99 * _real_j(source, base, plain, weight)


@pytest.mark.parametrize("weight", [0.002, 0.02, 0.2])
def test_rdoq_costs_about_the_same_on_white_noise(weight: float) -> None:
    """Noise has no structure to exploit; the fallback to the dead zone's levels keeps
    the real cost within the rounding of the samples (under 1 %)."""
    source, base = _pair(11, 96, 64, 8, "noise")
    coefs = error_coefficients(source, base)
    step = optimal_step(weight)
    plain = _real_j(source, base, quantize_coefficients(coefs, step, DEADZONE), weight)
    assert _real_j(source, base, rdo_quantize(coefs, base, step, DEADZONE, weight),
                   weight) < 1.01 * plain


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_levels_only_move_toward_zero_from_rounding(bit_depth: int) -> None:
    source, base = _pair(12, 37, 29, bit_depth, "noise")
    coefs = error_coefficients(source, base)
    weight = 0.5 / 4 ** (bit_depth - 8)  # per squared sample: 10-bit errors are 4x larger
    step = optimal_step(weight)
    rdo = rdo_quantize(coefs, base, step, DEADZONE, weight)
    rounded = quantize_coefficients(coefs, step, 0.5)
    for levels, top in zip(rdo.levels, rounded.levels, strict=True):
        assert np.all(np.abs(levels) <= np.abs(top))
        assert np.all((levels == 0) | (np.sign(levels) == np.sign(top)))
    assert any(lv.any() for lv in rdo.levels)
    # and it is a layer like any other: it round-trips through the format-7 section
    assert read_layer(layer_bytes(rdo, base), base) == rdo


def test_a_heavier_weight_keeps_more_levels() -> None:
    source, base = _pair(13, 64, 48, 8, "blur")
    coefs = error_coefficients(source, base)
    kept = [sum(int(np.count_nonzero(lv)) for lv in rdo_quantize(
        coefs, base, 2.0, DEADZONE, w).levels) for w in (0.001, 0.1)]
    assert kept[0] < kept[1]


def test_an_encoder_with_rdoq_decodes_exactly(tiny_model) -> None:
    """Switched on (configs/encoder.yaml ``dct_layer: rdoq``), the layer's levels change
    and the decoder still rebuilds exactly what the encoder kept."""
    frames = carphone_frames(2)
    layered = dataclasses.replace(ALL_MODES.with_overrides(dct_steps=(1.0,)),
                                  motion=("block",))
    rdo = dataclasses.replace(layered, dct=dataclasses.replace(layered.dct, rdoq=True))
    coded = {}
    for name, settings in (("dead zone", layered), ("rdoq", rdo)):
        enc = SequenceEncoder(tiny_model, _info(frames[0]), 8.0, -1, settings=settings)
        data, recons, _ = _code(enc, frames)
        assert any("dct" in {s.name for s in p.sections} for p in BitstreamReader(data))
        assert _decode(tiny_model, data) == recons
        coded[name] = data
    assert coded["rdoq"] != coded["dead zone"]
