"""Format version 7's coding of the DCT layer: any layer round-trips under every context
split, the bytes are what the spec in dvc_edic/dctcontext.py says (checked against an
independent per-symbol encoder), the encoder keeps the shortest split, and bad data is
refused with BitstreamError."""

from __future__ import annotations

import contextlib
import hashlib
import itertools

import numpy as np
import pytest

from dvc_edic import dctcontext
from dvc_edic.bitstream.version import FORMAT_VERSION
from dvc_edic.dctcontext import (
    CONTEXT_SPLITS,
    HEAD_HALF,
    best_scale,
    half_widths,
    head_row,
    layer_bytes,
    level_row,
    read_layer,
)
from dvc_edic.dctlayer import (
    BAND,
    BANDS,
    BLOCK,
    CLASSES,
    MAX_LEVEL,
    PROB_BITS,
    SCALE_LEVELS,
    DctLayer,
    activity_classes,
    frequency_row,
    layer_shapes,
)
from dvc_edic.dctlayer import layer_bytes as layer_bytes_v6
from dvc_edic.encoder.dctsearch import quantize_layer
from dvc_edic.entropy.ans import _MODEL, AnsCoder, trim_words
from dvc_edic.errors import BitstreamError, InputError
from tests.test_dctlayer import DEPTHS, SIZES, _pair, _random_layer

# sha256 of the half-widths H(0..63) as little-endian int64: they are the format.
HALF_WIDTHS_SHA256 = "67d5096583c093d4f5ff4a114a58e9dc47798f47f1743715920a7068230376f8"


def _layers(base, rng: np.random.Generator) -> list[DctLayer]:
    """Zero, sparse, dense and extreme layers over ``base``."""
    shapes = layer_shapes(base)
    zero = DctLayer(step_q=16, levels=tuple(np.zeros((*s, BLOCK, BLOCK), np.int32)
                                            for s in shapes))  # fmt: skip
    extreme = DctLayer(step_q=1, levels=tuple(
        rng.choice([-MAX_LEVEL, MAX_LEVEL], (*s, BLOCK, BLOCK)).astype(np.int32) for s in shapes))
    finer_chroma = _random_layer(rng, base, 24, 2.0)
    finer_chroma = DctLayer(step_q=finer_chroma.step_q, levels=finer_chroma.levels, chroma_ratio=37)
    return [zero, extreme, finer_chroma] + [_random_layer(rng, base, 24, spread)
                                            for spread in (0.2, 2.0, 40.0)]


@pytest.mark.parametrize("bit_depth", DEPTHS)
@pytest.mark.parametrize("size", SIZES)
def test_every_layer_round_trips_under_every_split(size: tuple[int, int], bit_depth: int) -> None:
    source, base = _pair(3, *size, bit_depth, "blur")
    rng = np.random.default_rng(4)
    layers = [quantize_layer(source, base, step, 0.33) for step in (0.5, 3.0)]
    for layer in layers + _layers(base, rng):
        classes = tuple(c.ravel() for c in activity_classes(base))
        flats = [lv.reshape(-1, BLOCK * BLOCK) for lv in layer.levels]
        coded = [dctcontext._split_bytes(flats, classes, layer.step_q, layer.chroma_ratio, i,
                                         FORMAT_VERSION)
                 for i in range(len(CONTEXT_SPLITS))]  # fmt: skip
        for data in coded:
            assert read_layer(data, base) == layer
        assert layer_bytes(layer, base) == min(coded, key=len)  # the shortest is kept


def _independent_bytes(layer: DctLayer, base, split_index: int, version: int) -> bytes:
    """The section as the module docstring describes it, coded symbol by symbol with the
    per-symbol model family, written without the module's helpers."""
    split = CONTEXT_SPLITS[split_index]
    classes = activity_classes(base)
    groups: list[tuple[list[int], np.ndarray]] = []  # (symbols, their row)
    last: dict[tuple[int, int, int], int] = {}
    previous_band0 = 0
    for band in range(BANDS):
        positions = [(i, j) for i in range(BLOCK) for j in range(BLOCK) if BAND[i, j] == band]
        for plane in range(3):
            levels, cls_map = layer.levels[plane], classes[plane]
            nby, nbx = cls_map.shape
            contexts = np.zeros((nby, nbx), dtype=np.int64)
            if band:
                lower = [[sum(abs(int(levels[by, bx, i, j])) for i in range(BLOCK)
                              for j in range(BLOCK) if BAND[i, j] < band)
                          for bx in range(nbx)] for by in range(nby)]  # fmt: skip
                contexts = np.array([[sum(e >= t for t in split) for e in row]
                                     for row in lower])  # fmt: skip
            for cls in range(CLASSES):
                for ctx in range(len(split) + 1 if band else 1):
                    cell = [int(levels[by, bx, i, j]) for by in range(nby) for bx in range(nbx)
                            if cls_map[by, bx] == cls and contexts[by, bx] == ctx
                            for (i, j) in positions]  # fmt: skip
                    if not cell:
                        continue
                    arr = np.asarray(cell)
                    t = 0
                    if arr.any():
                        costs = []
                        for s in range(SCALE_LEVELS):
                            h = half_widths()[s]
                            if np.abs(arr).max() > h:
                                costs.append(np.inf)
                                continue
                            row = level_row(s).astype(np.float64)
                            costs.append(float((PROB_BITS - np.log2(row[arr + h])).sum()))
                        t = int(np.argmin(costs)) + 1
                    pred = previous_band0 if band == 0 else last[(plane, cls, ctx)]
                    if version in DOCUMENTED_HEAD_GROUPS:  # a row and an offset per group
                        scale, offset = DOCUMENTED_HEAD_GROUPS[version][
                            0 if band == 0 else 1 if pred == 0 else 2]
                        pred = min(max(pred + offset, 0), SCALE_LEVELS)
                    else:
                        scale = DOCUMENTED_HEAD_SCALES[version]
                    groups.append(([t - pred + HEAD_HALF], frequency_row(scale, HEAD_HALF)))
                    if t:
                        h = half_widths()[t - 1]
                        groups.append(([int(v) + h for v in cell], level_row(t - 1)))
                    if band == 0:
                        previous_band0 = t
                        for x in range(len(split) + 1):
                            last[(plane, cls, x)] = t
                    else:
                        last[(plane, cls, ctx)] = t
    coder = AnsCoder()
    for symbols, row in reversed(groups):
        probs = np.tile(row.astype(np.float64), (len(symbols), 1))
        coder.encode_reverse(np.asarray(symbols, dtype=np.int32), _MODEL, probs)
    head = layer.step_q.to_bytes(2, "little") + bytes([split_index])
    if version >= 9:  # the chroma planes' step ratio
        head += bytes([layer.chroma_ratio])
    return head + trim_words(coder.get_compressed().astype("<u4").tobytes())


# The heads' row by format version, as docs/bitstream.md gives it; from version 11 a
# (scale, predictor offset) for band 0, for p = 0 and for p > 0.
DOCUMENTED_HEAD_SCALES = {7: 16, 8: 28, 9: 28}
DOCUMENTED_HEAD_GROUPS = {11: ((42, 3), (4, 0), (36, -3))}


@pytest.mark.parametrize("version", [*sorted(DOCUMENTED_HEAD_SCALES), 11])
@pytest.mark.parametrize("split_index", range(len(CONTEXT_SPLITS)))
def test_bytes_follow_the_documented_layout(split_index: int, version: int) -> None:
    source, base = _pair(5, 37, 29, 8, "blur")
    layer = quantize_layer(source, base, 1.5, 0.33)
    if version >= 9:  # chroma at its own step
        layer = DctLayer(step_q=layer.step_q, levels=layer.levels, chroma_ratio=45)
    classes = tuple(c.ravel() for c in activity_classes(base))
    flats = [lv.reshape(-1, BLOCK * BLOCK) for lv in layer.levels]
    data = dctcontext._split_bytes(flats, classes, layer.step_q, layer.chroma_ratio, split_index,
                                   version)
    assert data == _independent_bytes(layer, base, split_index, version)
    assert read_layer(data, base, version) == layer


def test_a_layer_reads_back_only_under_its_own_version() -> None:
    """Version 8 widened the heads' row, version 9 added the chroma ratio and version 11
    grouped the heads: the same
    layer costs different bytes, and a decoder reading them as another version's does
    not get the layer back."""
    source, base = _pair(6, 37, 29, 8, "blur")
    layer = quantize_layer(source, base, 1.5, 0.33)
    coded = {v: layer_bytes(layer, base, v) for v in (7, 8, 9, 11)}
    assert len(set(coded.values())) == 4 and layer_bytes(layer, base) == coded[11]
    for version, data in coded.items():
        assert read_layer(data, base, version) == layer
        for other in {7, 8, 9, 11} - {version}:
            with contextlib.suppress(BitstreamError):
                assert read_layer(data, base, other) != layer


def test_a_chroma_step_needs_version_9() -> None:
    source, base = _pair(6, 37, 29, 8, "blur")
    layer = quantize_layer(source, base, 1.5, 0.33, chroma_ratio=40)
    assert read_layer(layer_bytes(layer, base), base) == layer
    for version in (7, 8):
        with pytest.raises(InputError, match="chroma_ratio 40"):
            layer_bytes(layer, base, version)
    with pytest.raises(InputError, match="chroma_ratio 40"):
        layer_bytes_v6(layer, base)


def test_half_widths_are_pinned_and_reach_every_level() -> None:
    widths = half_widths()
    digest = hashlib.sha256(np.asarray(widths, dtype="<i8").tobytes()).hexdigest()
    assert digest == HALF_WIDTHS_SHA256
    assert widths[-1] == MAX_LEVEL  # the widest row holds any level the layer allows
    assert all(a <= b for a, b in itertools.pairwise(widths))
    assert len(head_row()) == 2 * HEAD_HALF + 1 and int(head_row().sum()) == 1 << PROB_BITS


def test_best_scale_reaches_the_largest_level_and_is_cheapest() -> None:
    levels = np.zeros(4000, dtype=np.int64)
    levels[7] = 150  # one outlier among zeros
    scale, bits = best_scale(levels)
    assert half_widths()[scale] >= 150
    for s in range(SCALE_LEVELS):
        if half_widths()[s] >= 150:
            row = level_row(s).astype(np.float64)
            cost = float((PROB_BITS - np.log2(row[levels + half_widths()[s]])).sum())
            assert cost >= bits - 1e-6


def test_cheaper_than_version_6_on_a_sparse_layer() -> None:
    """Why version 7 exists: v6's raw cell table dominated small, sparse layers."""
    source, base = _pair(6, 64, 48, 8, "noise")
    layer = quantize_layer(source, base, 8.0, 0.33)
    assert any(lv.any() for lv in layer.levels)
    assert len(layer_bytes(layer, base)) < len(layer_bytes_v6(layer, base))


# Corrupt data ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coded() -> tuple[bytes, object, DctLayer]:
    source, base = _pair(11, 64, 48, 8, "blur")
    layer = quantize_layer(source, base, 1.0, 0.33)
    data = layer_bytes(layer, base)
    assert len(data) > 40 and read_layer(data, base) == layer
    return data, base, layer


# case: (how the valid section is spoilt, what the error must say)
CORRUPTIONS = {
    "empty": (lambda b: bytearray(), "at least 4 bytes"),
    "two bytes": (lambda b: b[:2], "at least 4 bytes"),
    "three bytes": (lambda b: b[:3], "at least 4 bytes"),
    "step zero": (lambda b: b"\0\0" + b[2:], "step_q at offset 0 is 0"),
    "split 3": (lambda b: b[:2] + bytes([len(CONTEXT_SPLITS)]) + b[3:], "context split 3"),
    "chroma zero": (lambda b: b[:3] + b"\0" + b[4:], "chroma_ratio at offset 3 is 0"),
    "no stream": (lambda b: b[:4], "dct"),
    "ans cut": (lambda b: b[:-1], "dct"),
    "ans cut 4": (lambda b: b[:-4], "dct"),
    "extra byte": (lambda b: b + b"\x01", "dct"),
    "extra zero": (lambda b: b + b"\0", "zero byte"),
    "flip first": (lambda b: b[:4] + bytes([b[4] ^ 0x5A]) + b[5:], "dct"),
    "flip middle": (lambda b: b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 0x5A])
                    + b[len(b) // 2 + 1:], "dct"),
    "flip last": (lambda b: b[:-1] + bytes([b[-1] ^ 0x5A]), "dct"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupt_sections_are_refused(coded, case: str) -> None:
    data, base, _ = coded
    spoil, message = CORRUPTIONS[case]
    with pytest.raises(BitstreamError, match=message):
        read_layer(bytes(spoil(bytearray(data))), base)


def test_coded_cells_running_energy_gives_block_contexts_cells() -> None:
    """coded_cells keeps each plane's lower-band energy as a running sum; the cells must be
    the ones block_contexts' full sums give, for every split."""
    rng = np.random.default_rng(5)
    flats = [rng.integers(-4, 5, (n, dctcontext.POSITIONS)).astype(np.int32)
             * (rng.random((n, 1)) < 0.6) for n in (300, 80, 80)]
    classes = tuple(rng.integers(0, 3, f.shape[0]) for f in flats)
    for split in dctcontext.CONTEXT_SPLITS:
        expected = []
        for band in range(dctcontext.BANDS):
            for plane in range(3):
                contexts = dctcontext.block_contexts(flats[plane], band, split)
                for cls in range(3):
                    for ctx in range(len(split) + 1 if band else 1):
                        rows = np.flatnonzero((classes[plane] == cls) & (contexts == ctx))
                        if rows.size:
                            expected.append((band, plane, cls, ctx, rows.tolist()))
        got = [(b, p, c, x, r.tolist())
               for b, p, c, x, r in dctcontext.coded_cells(flats, classes, split)]
        assert got == expected
        assert len({x for _, _, _, x, _ in got}) == len(split) + 1  # every context occurs
