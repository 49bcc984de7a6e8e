"""The DCT layer: its section codes any layer exactly, refuses bad data, the integer decoder
is exact and portable, and the encoder's quantizer buys quality with bytes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from dvc_edic.dctlayer import (
    ACTIVITY_THRESHOLDS,
    BAND,
    BANDS,
    BLOCK,
    CELLS,
    CLASSES,
    COEF_BITS,
    DCT_MATRIX,
    DCT_MATRIX_INT,
    MAX_LEVEL,
    PROB_BITS,
    ROW_CONFIG,
    ROW_WEIGHTS,
    SCALE_LEVELS,
    SHIFT,
    TAIL_STEPS,
    DctLayer,
    activity_classes,
    apply_layer,
    chroma_step_q,
    frequency_row,
    inverse_transform,
    layer_bytes,
    layer_shapes,
    read_layer,
)
from dvc_edic.encoder.dctsearch import optimal_step, quantize_layer
from dvc_edic.entropy.ans import _MODEL, AnsCoder, trim_words
from dvc_edic.entropy.quantize import QuantizedGmm
from dvc_edic.entropy.tables import mixture_frequencies
from dvc_edic.errors import BitstreamError, InputError
from dvc_edic.io import Frame, max_sample_value
from dvc_edic.io.frames import sample_dtype

SIZES = ((37, 29), (64, 48))  # (width, height): odd sizes pad every plane's last blocks
DEPTHS = (8, 10)
# sha256 of DCT_MATRIX_INT as little-endian int64: the decoder's transform is the format.
MATRIX_SHA256 = "83d2fc2fec55428bb4958ccc946c31e32e61ec37221f44e3549b9939cf25138a"
# sha256 of the frequency rows of every scale for these R (little-endian int64, R order).
ROWS_SHA256 = "1ae4d1d78f205200712a2f2aec1a5e7d127710b883479572e8bdce26eecf64da"
PINNED_HALF_WIDTHS = (1, 2, 17, 255)


def _planes(rng: np.random.Generator, width: int, height: int, bit_depth: int) -> list[np.ndarray]:
    """Float planes of smooth gradients and waves plus noise, in samples of ``bit_depth``."""
    top = max_sample_value(bit_depth)
    chroma = (-(-height // 2), -(-width // 2))
    out = []
    for shape in ((height, width), chroma, chroma):
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
        phase = rng.uniform(0, 2 * np.pi, 3)
        smooth = (0.5 + 0.2 * np.sin(xx / 19.0 + phase[0]) * np.cos(yy / 23.0 + phase[1])
                  + 0.15 * (xx + yy) / (shape[0] + shape[1]) + 0.02 * np.sin(xx / 2.3 + phase[2]))
        # Noise from none at the left to strong at the right: blocks of every activity class.
        noise = rng.normal(0.0, top / 20, shape) * (xx / shape[1]) ** 2
        out.append(top * smooth + noise)
    return out


def _frame(planes: list[np.ndarray], bit_depth: int) -> Frame:
    top = max_sample_value(bit_depth)
    dtype = sample_dtype(bit_depth)
    y, u, v = (np.clip(np.rint(p), 0, top).astype(dtype) for p in planes)
    return Frame(y=y, u=u, v=v, bit_depth=bit_depth)


def _blur(p: np.ndarray) -> np.ndarray:
    """A 3x3 box blur with edge replication: a base that lost the fine detail."""
    q = np.pad(p, 1, mode="edge")
    h, w = p.shape
    return sum(q[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def _pair(seed: int, width: int, height: int, bit_depth: int, base: str) -> tuple[Frame, Frame]:
    """(source, base): base is the source blurred, or the source plus bounded noise."""
    rng = np.random.default_rng(seed)
    planes = _planes(rng, width, height, bit_depth)
    if base == "blur":
        degraded = [_blur(p) for p in planes]
    else:
        amp = 6 << (bit_depth - 8)
        degraded = [p + rng.integers(-amp, amp + 1, p.shape) for p in planes]
    return _frame(planes, bit_depth), _frame(degraded, bit_depth)


def _sse(a: Frame, b: Frame) -> float:
    return float(sum(((x.astype(np.float64) - y.astype(np.float64)) ** 2).sum()
                     for x, y in zip(a.planes, b.planes, strict=True)))  # fmt: skip


def _random_layer(rng: np.random.Generator, base: Frame, step_q: int, spread: float) -> DctLayer:
    """Laplacian levels of scale ``spread``, clipped to the level bound."""
    levels = tuple(
        np.clip(np.rint(rng.laplace(0.0, spread, (*shape, BLOCK, BLOCK))), -MAX_LEVEL, MAX_LEVEL)
        .astype(np.int32)
        for shape in layer_shapes(base)
    )
    return DctLayer(step_q=step_q, levels=levels)


def _table_end(data: bytes) -> tuple[int, int | None]:
    """(end of the cell table, offset of the first scale index or None), read from the spec."""
    pos, first_scale = 2, None
    for _ in range(CELLS):
        if data[pos]:
            first_scale = pos + 1 if first_scale is None else first_scale
            pos += 1
        pos += 1
    return pos, first_scale


# 1. Round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("bit_depth", DEPTHS)
@pytest.mark.parametrize("size", SIZES)
def test_quantized_layers_round_trip(size: tuple[int, int], bit_depth: int) -> None:
    source, base = _pair(1, *size, bit_depth, "blur")
    unit = 1 << (bit_depth - 8)
    for step in (0.5, 2.0, 6.0, 40.0):
        layer = quantize_layer(source, base, step * unit, 0.33)
        assert read_layer(layer_bytes(layer, base), base) == layer


@pytest.mark.parametrize("size", SIZES)
def test_extreme_layers_round_trip(size: tuple[int, int]) -> None:
    _, base = _pair(2, *size, 8, "noise")
    rng = np.random.default_rng(3)
    zero = DctLayer(step_q=7, levels=tuple(np.zeros((*s, 8, 8), np.int32)
                                           for s in layer_shapes(base)))  # fmt: skip
    data = layer_bytes(zero, base)
    assert len(data) == 2 + CELLS  # step_q and one zero R per cell, no ANS stream
    assert read_layer(data, base) == zero
    full = _random_layer(rng, base, 65535, 400.0)  # most levels clipped to +-255
    assert np.mean([np.mean(np.abs(a) == MAX_LEVEL) for a in full.levels]) > 0.4
    assert read_layer(layer_bytes(full, base), base) == full
    sparse = _random_layer(rng, base, 1, 0.3)
    assert read_layer(layer_bytes(sparse, base), base) == sparse


def test_single_symbol_of_zero_code_length_round_trips() -> None:
    """A layer whose one non-zero cell codes a symbol that leaves the ANS state at its start
    writes no ANS bytes at all: the decoder must accept that empty stream."""
    _, base = _pair(4, 8, 8, 8, "noise")
    levels = [np.zeros((*s, 8, 8), np.int32) for s in layer_shapes(base)]
    levels[1][0, 0, 0, 0] = -1  # the cell's lowest symbol, 0: cumulative frequency 0
    layer = DctLayer(step_q=16, levels=tuple(levels))
    data = layer_bytes(layer, base)
    assert len(data) == 2 + CELLS + 1  # step_q, the cell table with one scale index, no ANS
    assert read_layer(data, base) == layer


def test_bytes_follow_the_documented_layout() -> None:
    """An encoder written from the format's description alone gives the same bytes."""
    source, base = _pair(5, 64, 48, 8, "blur")
    layer = quantize_layer(source, base, 3.0, 0.33)
    classes = activity_classes(base)
    head = bytearray(layer.step_q.to_bytes(2, "little"))
    coded = []
    for levels, cls in zip(layer.levels, classes, strict=True):
        for b in range(BANDS):
            for c in range(CLASSES):
                seq = levels[(cls == c)[:, :, None, None] & np.equal(BAND, b)[None, None]]
                r = int(np.abs(seq).max()) if seq.size else 0
                head.append(r)
                if r:
                    sym = seq + r
                    bits = [-np.log2(frequency_row(s, r)[sym] / 2**PROB_BITS).sum()
                            for s in range(SCALE_LEVELS)]  # fmt: skip
                    head.append(int(np.argmin(bits)))
                    coded.append((sym.astype(np.int32), frequency_row(head[-1], r)))
    coder = AnsCoder()
    for sym, row in reversed(coded):
        probs = np.tile(row.astype(np.float64), (sym.size, 1))
        coder.encode_reverse(sym, _MODEL, probs)
    expected = bytes(head) + trim_words(coder.get_compressed().astype("<u4").tobytes())
    assert layer_bytes(layer, base) == expected


# 2. and 3. What the layer buys ----------------------------------------------------------


@pytest.mark.parametrize("bit_depth", DEPTHS)
@pytest.mark.parametrize("size", SIZES)
def test_fine_step_restores_the_source(size: tuple[int, int], bit_depth: int) -> None:
    source, base = _pair(6, *size, bit_depth, "noise")
    layer = quantize_layer(source, base, 0.5, 0.5)
    assert max(int(np.abs(a).max()) for a in layer.levels) < MAX_LEVEL  # nothing clipped
    out = apply_layer(base, read_layer(layer_bytes(layer, base), base))
    for got, want in zip(out.planes, source.planes, strict=True):
        assert np.abs(got.astype(np.int64) - want.astype(np.int64)).max() <= 1


@pytest.mark.parametrize("bit_depth", DEPTHS)
def test_smaller_steps_cost_more_bytes_and_leave_less_error(bit_depth: int) -> None:
    source, base = _pair(7, 64, 48, bit_depth, "blur")
    unit = 1 << (bit_depth - 8)
    results = []
    for step in (2.0, 4.0, 8.0):
        layer = quantize_layer(source, base, step * unit, 0.33)
        data = layer_bytes(layer, base)
        results.append((len(data), _sse(source, apply_layer(base, read_layer(data, base)))))
    sizes, errors = zip(*results, strict=True)
    assert sizes[0] > sizes[1] > sizes[2]
    assert errors[0] < errors[1] < errors[2] < _sse(source, base)


def test_identical_frames_give_an_empty_layer() -> None:
    source, _ = _pair(8, 37, 29, 8, "noise")
    layer = quantize_layer(source, source, 4.0, 0.33)
    assert all(not a.any() for a in layer.levels)
    assert apply_layer(source, layer) == source


def test_chroma_step_follows_the_documented_formula() -> None:
    """Version 9: chroma's step_q is (step_q * ratio + 32) >> 6, kept in [1, MAX_STEP_Q]."""
    cases = {(16, 64): 16, (16, 32): 8, (3, 96): 5, (1, 1): 1, (7, 9): 1, (65535, 255): 65535,
             (100, 255): 398, (1000, 45): 703}
    for (step_q, ratio), want in cases.items():
        assert chroma_step_q(step_q, ratio) == want
        assert DctLayer(step_q=step_q, levels=_zero_levels(), chroma_ratio=ratio).plane_steps == (
            step_q, want, want)
    for ratio in (0, 256, 1.5, True):
        with pytest.raises(InputError, match="chroma_ratio"):
            DctLayer(step_q=16, levels=_zero_levels(), chroma_ratio=ratio)  # type: ignore[arg-type]


def _zero_levels() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.zeros((2, 2, 8, 8), np.int32), np.zeros((1, 1, 8, 8), np.int32),
            np.zeros((1, 1, 8, 8), np.int32))


@pytest.mark.parametrize("bit_depth", DEPTHS)
def test_a_finer_chroma_step_dequantizes_chroma_with_its_own_step(bit_depth: int) -> None:
    """The same levels with a smaller chroma ratio: luma unchanged, chroma residuals
    are the inverse transform at chroma's own step, and chroma comes closer."""
    source, base = _pair(12, 48, 32, bit_depth, "blur")
    unit = 1 << (bit_depth - 8)
    plain = quantize_layer(source, base, 6.0 * unit, 0.33)
    fine = quantize_layer(source, base, 6.0 * unit, 0.33, chroma_ratio=24)
    assert np.array_equal(plain.levels[0], fine.levels[0])
    out_plain, out_fine = apply_layer(base, plain), apply_layer(base, fine)
    assert np.array_equal(out_plain.y, out_fine.y)
    top = (1 << bit_depth) - 1
    for plane in (1, 2):
        levels = fine.levels[plane]
        nby, nbx = levels.shape[:2]
        res = inverse_transform(levels, fine.plane_steps[plane])
        res = res.transpose(0, 2, 1, 3).reshape(nby * 8, nbx * 8)
        b = base.planes[plane].astype(np.int64)
        want = np.clip(b + res[: b.shape[0], : b.shape[1]], 0, top)
        assert np.array_equal(out_fine.planes[plane], want)
    chroma_sse = [sum(float(((source.planes[i].astype(np.float64) - o.planes[i]) ** 2).sum())
                      for i in (1, 2)) for o in (out_plain, out_fine)]  # fmt: skip
    assert chroma_sse[1] < chroma_sse[0]


def test_optimal_step_is_the_high_rate_stationary_point() -> None:
    w = 0.01
    step = optimal_step(w)

    def cost(s: float) -> float:  # bits (up to a constant) + w * SSE per coefficient
        return -np.log2(s) + w * s * s / 12

    assert cost(step) < cost(step * 1.01) and cost(step) < cost(step / 1.01)
    with pytest.raises(InputError):
        optimal_step(0.0)


# 4. and 6. The integer decoder ---------------------------------------------------------


def _reference_residual(levels: np.ndarray, step_q: int) -> list[list[int]]:
    """The spec's inverse transform with Python's unbounded ints and plain loops."""
    ci = [[int(x) for x in row] for row in DCT_MATRIX_INT.tolist()]
    d = [[int(levels[k, m]) * step_q for m in range(BLOCK)] for k in range(BLOCK)]
    out = []
    for r in range(BLOCK):
        row = []
        for c in range(BLOCK):
            total = sum(ci[k][r] * d[k][m] * ci[m][c] for k in range(BLOCK) for m in range(BLOCK))
            row.append((total + (1 << (SHIFT - 1))) >> SHIFT)  # >> floors, as in numpy
        out.append(row)
    return out


def test_inverse_transform_matches_big_int_reference() -> None:
    rng = np.random.default_rng(9)
    cases = [
        (rng.integers(-40, 41, (8, 8)), int(rng.integers(1, 200))),
        (rng.integers(-MAX_LEVEL, MAX_LEVEL + 1, (8, 8)), 65535),
        (np.full((8, 8), MAX_LEVEL), 65535),  # the int64 worst case
        (np.full((8, 8), -MAX_LEVEL), 65535),
    ]
    # the largest sums the transform can meet: every level at the bound with the signs of
    # the output's column of kron(CI, CI), for the column of CI with the largest |sum|
    col = int(np.abs(DCT_MATRIX_INT).sum(axis=0).argmax())
    signs = np.sign(np.outer(DCT_MATRIX_INT[:, col], DCT_MATRIX_INT[:, col]))
    cases += [(MAX_LEVEL * signs, 65535), (-MAX_LEVEL * signs, 65535)]
    for levels, step_q in cases:
        got = inverse_transform(levels.astype(np.int32)[None, None], step_q)[0, 0]
        assert got.tolist() == _reference_residual(levels, step_q)


def test_dct_matrix_rounds_the_same_everywhere() -> None:
    scaled = DCT_MATRIX * (1 << COEF_BITS)
    # An ulp of cos cannot move an entry across a .5 boundary.
    assert np.abs(scaled - np.floor(scaled) - 0.5).min() > 1e-6
    assert np.array_equal(DCT_MATRIX_INT, np.rint(scaled).astype(np.int64))
    assert np.allclose(DCT_MATRIX @ DCT_MATRIX.T, np.eye(BLOCK), atol=1e-12)
    digest = hashlib.sha256(DCT_MATRIX_INT.astype("<i8").tobytes()).hexdigest()
    assert digest == MATRIX_SHA256


def test_frequency_rows_are_the_documented_mixture() -> None:
    for r in PINNED_HALF_WIDTHS:
        for s in (0, 5, 31, 63):
            row = frequency_row(s, r)
            assert row.shape == (2 * r + 1,) and row.min() >= 1 and row.sum() == 2**PROB_BITS
            q = QuantizedGmm(
                weights=np.array([ROW_WEIGHTS], np.int32),
                means=np.zeros((1, 3), np.int32),
                scale_idx=np.array([[s, min(s + TAIL_STEPS, SCALE_LEVELS - 1), s]], np.int32),
            )
            single = mixture_frequencies(q, np.zeros(1, np.int64), r, 0, 1, ROW_CONFIG)[0]
            assert np.array_equal(row, single)
    rows = np.concatenate([frequency_row(s, r) for r in PINNED_HALF_WIDTHS
                           for s in range(SCALE_LEVELS)])  # fmt: skip
    assert hashlib.sha256(rows.astype("<i8").tobytes()).hexdigest() == ROWS_SHA256


@pytest.mark.parametrize("depth", [8, 10, 16])
def test_activity_classes_follow_the_definition(depth: int) -> None:
    source, _ = _pair(10, 37, 29, depth, "noise")
    classes = activity_classes(source)
    for plane, cls in zip(source.planes, classes, strict=True):
        a = (plane.astype(np.int64) >> (depth - 8)).tolist()
        h, w = plane.shape
        for by in range(cls.shape[0]):
            for bx in range(cls.shape[1]):
                # the block's samples, edge-replicated past the plane
                b = [[a[min(by * 8 + r, h - 1)][min(bx * 8 + c, w - 1)] for c in range(8)]
                     for r in range(8)]  # fmt: skip
                g = sum(abs(b[r][c + 1] - b[r][c]) for r in range(8) for c in range(7))
                g += sum(abs(b[r + 1][c] - b[r][c]) for r in range(7) for c in range(8))
                assert cls[by, bx] == sum(g >= t for t in ACTIVITY_THRESHOLDS)
    assert {int(c) for cls in classes for c in np.unique(cls)} == {0, 1, 2}  # all exercised


# 5. Corrupt data -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coded() -> tuple[bytes, Frame, DctLayer]:
    source, base = _pair(11, 64, 48, 8, "blur")
    layer = quantize_layer(source, base, 3.0, 0.33)
    return layer_bytes(layer, base), base, layer


def test_valid_section_decodes(coded: tuple[bytes, Frame, DctLayer]) -> None:
    data, base, layer = coded
    assert len(data) > _table_end(data)[0] + 16  # a real ANS stream to corrupt
    assert read_layer(data, base) == layer


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty", "at least 2 bytes"),
        ("one byte", "at least 2 bytes"),
        ("step zero", "step_q at offset 0 is 0"),
        ("table cut", "cell table ends"),
        ("scale cut", "scale index"),
        ("scale 64", "scale index 64"),
        ("ans cut", "dct.*not back at its start"),
        ("ans cut 4", "dct.*not back at its start"),
        ("extra byte", "dct.*not back at its start"),
        ("extra zero", "zero byte"),
        ("flip first", "dct.*not back at its start"),
        ("flip middle", "dct.*not back at its start"),
        ("flip last", "dct.*not back at its start"),
    ],
)
def test_corrupt_sections_are_refused(
    coded: tuple[bytes, Frame, DctLayer], case: str, message: str
) -> None:
    data, base, _ = coded
    end, first_scale = _table_end(data)
    assert first_scale is not None
    bad = bytearray(data)
    if case == "empty":
        bad = bytearray()
    elif case == "one byte":
        bad = bad[:1]
    elif case == "step zero":
        bad[0:2] = b"\0\0"
    elif case == "table cut":
        bad = bad[: end // 2]
    elif case == "scale cut":
        bad = bad[:first_scale]
    elif case == "scale 64":
        bad[first_scale] = SCALE_LEVELS
    elif case == "ans cut":
        bad = bad[:-1]
    elif case == "ans cut 4":
        bad = bad[:-4]
    elif case == "extra byte":
        bad += b"\x01"
    elif case == "extra zero":
        bad += b"\0"
    else:
        at = {"flip first": end, "flip middle": (end + len(bad)) // 2, "flip last": -1}[case]
        bad[at] ^= 0x5A
    with pytest.raises(BitstreamError, match=message):
        read_layer(bytes(bad), base)


def test_bytes_after_an_all_zero_table_are_refused() -> None:
    _, base = _pair(12, 37, 29, 8, "noise")
    data = bytes([16, 0]) + bytes(CELLS)
    assert not any(a.any() for a in read_layer(data, base).levels)
    with pytest.raises(BitstreamError, match="after the cell table"):
        read_layer(data + b"\x07", base)


def test_a_cell_without_coefficients_cannot_claim_levels() -> None:
    """On a flat frame every block is of class 0: R > 0 for class 2 is corrupt, not a
    reason to allocate anything."""
    flat = Frame(y=np.full((16, 16), 9, np.uint8), u=np.full((8, 8), 9, np.uint8),
                 v=np.full((8, 8), 9, np.uint8), bit_depth=8)  # fmt: skip
    table = bytearray(CELLS)
    table[2] = 3  # cell 2: plane y, band 0, class 2
    data = bytes([16, 0]) + bytes(table[:3]) + bytes([0]) + bytes(table[3:])
    with pytest.raises(BitstreamError, match="no coefficients"):
        read_layer(data, flat)


# 7. The frame API ------------------------------------------------------------------------


@pytest.mark.parametrize("bit_depth", DEPTHS)
def test_apply_layer_leaves_the_base_alone(bit_depth: int) -> None:
    source, base = _pair(13, 37, 29, bit_depth, "blur")
    before = [p.copy() for p in base.planes]
    layer = quantize_layer(source, base, 1.0, 0.33)
    out = apply_layer(base, layer)
    for got, plane, kept in zip(out.planes, base.planes, before, strict=True):
        assert np.array_equal(plane, kept)
        assert got.shape == plane.shape and got.dtype == plane.dtype
        assert not np.shares_memory(got, plane)
    assert out.bit_depth == bit_depth


def test_apply_layer_clips_to_the_sample_range() -> None:
    _, base = _pair(14, 37, 29, 10, "noise")
    rng = np.random.default_rng(15)
    out = apply_layer(base, _random_layer(rng, base, 65535, 400.0))
    top = max_sample_value(10)
    assert all(p.max() <= top for p in out.planes)
    assert any((p == top).any() for p in out.planes) and any((p == 0).any() for p in out.planes)


def test_bad_layers_are_input_errors() -> None:
    _, base = _pair(16, 37, 29, 8, "noise")
    good = [np.zeros((*s, 8, 8), np.int32) for s in layer_shapes(base)]
    for step_q in (0, 65536, 2.0, True):
        with pytest.raises(InputError):
            DctLayer(step_q=step_q, levels=tuple(good))  # type: ignore[arg-type]
    too_big = [a.copy() for a in good]
    too_big[0][0, 0, 0, 0] = MAX_LEVEL + 1
    for levels in (tuple(too_big), tuple(good[:2]), (good[0].astype(np.float32), *good[1:]),
                   (good[0][..., :4], *good[1:])):  # fmt: skip
        with pytest.raises(InputError):
            DctLayer(step_q=1, levels=levels)  # type: ignore[arg-type]
    wrong = DctLayer(step_q=1, levels=(good[1], good[1], good[2]))
    with pytest.raises(InputError):
        apply_layer(base, wrong)
    with pytest.raises(InputError):
        layer_bytes(wrong, base)
    with pytest.raises(InputError):
        quantize_layer(base, base, 1.0, 0.6)
    with pytest.raises(InputError):
        quantize_layer(base, base, 0.0, 0.3)


def test_a_dct_section_travels_in_a_packet_of_format_version_6() -> None:
    """Bit 12 of the lean mask; older versions refuse the section by name."""
    from dvc_edic.bitstream import FrameType, Packet, Section
    from dvc_edic.packets import dct_layer_data, with_dct_layer

    data = b"\x10\x00" + bytes(CELLS)  # step 1, every cell zero
    packet = with_dct_layer(Packet(FrameType.I, (Section("z", (), b"\x01"),
                                                 Section("y", (), b"\x02\x03"))), data)
    back = Packet.from_bytes(packet.to_bytes(6), version=6)
    assert dct_layer_data(back, 6) == data
    with pytest.raises(BitstreamError, match="version 5 does not have"):
        dct_layer_data(back, 5)
    with pytest.raises(BitstreamError, match="twice"):
        with_dct_layer(packet, data)
