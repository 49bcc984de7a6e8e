"""Block motion: the ``bmv`` section codes any field exactly, refuses bad data, and the
encoder's search finds real motion."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from dvc_edic.bitstream import FrameType, Packet, Section
from dvc_edic.bitstream.packet import PayloadCursor, encode_varint
from dvc_edic.bitstream.version import FORMAT_VERSION
from dvc_edic.blockmotion import (
    ALPHABET,
    CONTEXT_THRESHOLDS,
    ESCAPE,
    MAX_VECTOR,
    SCALE_COUNT,
    TOTAL_FREQ_LOG2,
    BlockMotion,
    decode_block_motion,
    diagonal_order,
    encode_block_motion,
    field_bits,
    grid_of,
    laplace_freqs,
    residual_contexts,
)
from dvc_edic.encoder.blocksearch import search_block_motion
from dvc_edic.encoder.settings import BlockSearchSettings
from dvc_edic.entropy.ans import untrim_words
from dvc_edic.errors import BitstreamError
from dvc_edic.packets import p_latents
from dvc_edic.representation import warp_planes, warp_planes_blocks
from flows import backward_warp

# sha256 of every Laplace table (int64, little endian) in index order: pins the format.
TABLES_SHA256 = "1abc75eb63e49aec1447dcb6f0970ff349f429c57bbba656411f635e822bbd5a"
CONTEXT_SECTION_SHA256 = "2f962ae09a84f35e"  # sha256 prefix of the pinned section


def _field(rng: np.random.Generator, rows: int, cols: int, scale: float) -> np.ndarray:
    """A smooth-ish random field: a random walk along each row, clipped to the bound."""
    steps = np.round(rng.laplace(0.0, scale, (2, rows, cols)))
    return np.clip(steps.cumsum(axis=2), -MAX_VECTOR, MAX_VECTOR).astype(np.int32)


@pytest.mark.parametrize(("size", "block_log2", "scale"), [
    ((1, 1), 3, 1.0),  # one block, smaller than the block
    ((240, 360), 3, 2.0),
    ((61, 37), 2, 40.0),  # partial blocks at both edges, many escapes
    ((64, 64), 6, 0.0),  # all zero
])
def test_any_field_round_trips(size, block_log2, scale) -> None:
    rng = np.random.default_rng(7)
    rows, cols = grid_of(size, block_log2)
    motion = BlockMotion(_field(rng, rows, cols, scale), block_log2, 2)
    back = decode_block_motion(encode_block_motion(motion), size)
    assert np.array_equal(back.vectors, motion.vectors)
    assert (back.block_log2, back.precision_log2) == (block_log2, 2)


def test_extreme_vectors_round_trip() -> None:
    v = np.zeros((2, 5, 6), dtype=np.int32)
    v[0, 0, 0], v[1, 0, 1], v[0, 4, 5], v[1, 3, 2] = MAX_VECTOR, -MAX_VECTOR, -MAX_VECTOR, 1
    motion = BlockMotion(v, 1, 3)
    assert np.array_equal(decode_block_motion(encode_block_motion(motion), (10, 12)).vectors, v)


def test_a_smooth_field_costs_few_bits() -> None:
    v = np.full((2, 30, 45), 13, dtype=np.int32)
    data = encode_block_motion(BlockMotion(v, 3, 3))
    assert len(data) * 8 < 0.2 * v.size  # a constant field: well under a bit a vector


def test_tables_are_valid_and_pinned() -> None:
    tables = [laplace_freqs(i) for i in range(SCALE_COUNT)]
    for t in tables:
        assert t.shape == (ALPHABET,) and t.min() >= 1 and t.sum() == 1 << TOTAL_FREQ_LOG2
        assert t[ESCAPE] == t[1:-1].max()  # 0 is the most likely residual
    digest = hashlib.sha256(b"".join(t.astype("<i8").tobytes() for t in tables)).hexdigest()
    assert digest == TABLES_SHA256


def _edged_field(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Pans of a few regions with a little jitter: residuals 0 inside a region, large
    along its edges (what contexts are for)."""
    v = np.zeros((2, rows, cols), dtype=np.int32)
    for _ in range(6):
        r, c = rng.integers(0, rows), rng.integers(0, cols)
        v[:, r:, c:] = rng.integers(-40, 40, size=(2, 1, 1))
    jitter = rng.random((2, rows, cols)) < 0.05
    return v + jitter * rng.integers(-2, 3, size=(2, rows, cols)).astype(np.int32)


@pytest.mark.parametrize(("size", "block_log2", "precision_log2"), [
    ((240, 360), 3, 3), ((61, 37), 2, 2), ((8, 300), 2, 3), ((300, 8), 2, 1), ((1, 1), 3, 3),
])
def test_context_coded_fields_round_trip_and_the_shorter_layout_is_written(
        size, block_log2, precision_log2) -> None:
    rng = np.random.default_rng(11)
    rows, cols = grid_of(size, block_log2)
    for v in (_edged_field(rng, rows, cols), _field(rng, rows, cols, 2.0),
              _field(rng, rows, cols, 200.0)):
        motion = BlockMotion(v, block_log2, precision_log2, cubic=bool(rng.integers(0, 2)))
        v10, v11 = encode_block_motion(motion, 10), encode_block_motion(motion, 11)
        back = decode_block_motion(v11, size, 11)
        assert np.array_equal(back.vectors, v) and back.cubic == motion.cubic
        assert len(v11) <= len(v10) + 1  # the flag rides in the length varint


def test_contexts_pay_on_a_field_of_moving_regions() -> None:
    motion = BlockMotion(_edged_field(np.random.default_rng(3), 30, 45), 3, 3)
    plain, coded = encode_block_motion(motion, 10), encode_block_motion(motion, 11)
    assert len(coded) < 0.95 * len(plain)
    assert field_bits(motion.vectors, 11) < field_bits(motion.vectors, 10)


def test_contexts_count_the_left_and_top_residuals_and_order_by_anti_diagonal() -> None:
    d = np.zeros((2, 3, 4), dtype=np.int64)
    d[0, 1, 1] = 1  # its right and lower neighbours see 1: context 1
    d[1, 0, 2] = -ESCAPE - 500  # an escape counts as |d| = ESCAPE: context 2 below it
    ctx = residual_contexts(d)
    assert ctx[0, 1, 2] == ctx[0, 2, 1] == 1 and ctx[0].sum() == 2
    assert ctx[1, 1, 2] == ctx[1, 0, 3] == len(CONTEXT_THRESHOLDS) and ctx[1].sum() == 4
    order = diagonal_order(3, 4)
    i, j = np.divmod(order, 4)
    assert sorted(order.tolist()) == list(range(12))
    assert np.all(np.diff(i + j) >= 0) and (i[:3].tolist(), j[:3].tolist()) == ([0, 0, 1],
                                                                                  [0, 1, 0])


def test_a_context_coded_section_is_pinned_and_checked() -> None:
    """The version-11 layout, byte for byte: a change here is a format change."""
    motion = BlockMotion(_edged_field(np.random.default_rng(5), 20, 30), 3, 3, cubic=True)
    data = encode_block_motion(motion, 11)
    assert hashlib.sha256(data).hexdigest()[:16] == CONTEXT_SECTION_SHA256
    cursor = PayloadCursor(memoryview(data)[2:], 2, "test")
    assert cursor.varint("n") & 1  # the contexts flag
    scales_at = 2 + cursor.pos
    bad = bytearray(data)
    bad[scales_at + 2] |= 0x10  # bit 20 of the context scales
    with pytest.raises(BitstreamError, match="context scales"):
        decode_block_motion(bytes(bad), (160, 240), 11)
    assert np.array_equal(decode_block_motion(data, (160, 240), 11).vectors, motion.vectors)
    for cut in (data[:scales_at + 1], data[:-1], data + b"\x07"):
        with pytest.raises(BitstreamError):
            decode_block_motion(cut, (160, 240), 11)


def test_to_flow_spreads_each_vector_over_its_block() -> None:
    v = np.array([[[8, -4]], [[2, 0]]], dtype=np.int32)  # one row of two blocks
    flow = BlockMotion(v, 2, 2).to_flow(torch.zeros(1, 6, 3, 7))
    assert flow.shape == (1, 2, 3, 7)
    assert torch.equal(flow[0, 0, :, :4], torch.full((3, 4), 2.0))
    assert torch.equal(flow[0, 0, :, 4:], torch.full((3, 3), -1.0))
    assert torch.equal(flow[0, 1, :, :4], torch.full((3, 4), 0.5))


def test_bad_sections_are_stream_errors() -> None:
    rng = np.random.default_rng(1)
    v = _field(rng, 8, 8, 90.0)
    data = encode_block_motion(BlockMotion(v, 3, 3))
    head = int.from_bytes(data[:2], "little")
    bad = [
        b"",
        data[:1],
        data[:-4],  # the escape stream cut short
        ((head & ~0b111) | 7).to_bytes(2, "little") + data[2:],  # block_log2 out of range
        (head & ~0b111).to_bytes(2, "little") + data[2:],  # block_log2 0
        data + b"\x01\x00\x00\x00",
        data + b"\x00",  # an ANS string never ends in a zero byte
    ]
    for d in bad:
        with pytest.raises(BitstreamError):
            decode_block_motion(d, (64, 64))
    with pytest.raises(BitstreamError, match="cubic flag came with version 10"):
        decode_block_motion((head | 1 << 15).to_bytes(2, "little") + data[2:], (64, 64), 9)
    # Version 3's head: a byte a field, each checked for its range.
    main = encode_varint(4) + bytes(4)
    for head3 in ([9, 3, 0, 0], [3, 4, 0, 0], [3, 3, SCALE_COUNT, 0]):
        with pytest.raises(BitstreamError):
            decode_block_motion(bytes(head3) + main, (64, 64), 3)


def test_a_version_3_section_still_decodes() -> None:
    """Version 3 kept the head a byte a field and the ANS words whole."""
    v = _field(np.random.default_rng(2), 6, 5, 3.0)
    data = encode_block_motion(BlockMotion(v, 2, 2), 10)  # versions 4-10: the same layout
    head = int.from_bytes(data[:2], "little")
    fields = [head >> low & ((1 << bits) - 1) for low, bits in ((0, 3), (3, 2), (5, 5), (10, 5))]
    cursor = PayloadCursor(memoryview(data)[2:], 2, "test")
    main = untrim_words(bytes(cursor.take(cursor.varint("n"), "main")))
    extra = untrim_words(bytes(cursor.take(cursor.rest(), "extra")))
    old = bytes(fields) + encode_varint(len(main)) + main + extra
    assert np.array_equal(decode_block_motion(old, (24, 20), 3).vectors, v)
    with pytest.raises(BitstreamError, match="exceeds"):
        BlockMotion(np.full((2, 1, 1), MAX_VECTOR + 1, dtype=np.int32), 3, 3)


def test_p_packet_refuses_version_3_parts_in_older_streams_and_doubled_parts(tiny_model) -> None:
    pf = tiny_model.pframe
    zero = BlockMotion(np.zeros((2, 2, 2), np.int32), 3, 3)
    bmv = Section("bmv", (), encode_block_motion(zero, 10))  # versions 4-10: the same layout
    packet = Packet(FrameType.P, (bmv,))
    latents = p_latents(packet, pf.mv_coder, pf.residual_coder, tiny_model.intra, (16, 16), 4)
    assert latents.block is not None
    with pytest.raises(BitstreamError, match="version 3"):
        p_latents(packet, pf.mv_coder, pf.residual_coder, tiny_model.intra, (16, 16), 2)
    ires = Packet(FrameType.P, (Section("ires_z", (), b""), Section("ires_y", (), b"")))
    with pytest.raises(BitstreamError, match="version 3"):
        p_latents(ires, pf.mv_coder, pf.residual_coder, tiny_model.intra, (16, 16), 2)
    two = Packet(FrameType.P, (*ires.sections, Section("res_z", (), b""),
                               Section("res_y", (), b"")))
    with pytest.raises(BitstreamError, match="one residual"):
        p_latents(two, pf.mv_coder, pf.residual_coder, tiny_model.intra, (16, 16), 4)
    both = Packet(FrameType.P, (bmv, Section("mv_z", (), b""), Section("mv_y", (), b"")))
    with pytest.raises(BitstreamError, match="not both"):
        p_latents(both, pf.mv_coder, pf.residual_coder, tiny_model.intra, (16, 16), 4)


def test_search_finds_a_global_shift() -> None:
    g = torch.Generator().manual_seed(5)
    low = torch.rand(1, 6, 12, 16, generator=g)
    ref = torch.nn.functional.interpolate(low, size=(48, 64), mode="bicubic").clamp(0, 1)
    cur = torch.roll(ref, shifts=(1, -3), dims=(-2, -1))  # cur(p) = ref(p + (3, -1))
    settings = BlockSearchSettings(block_log2=(3,), precision_log2=2, dis_preset="medium")
    (searched,) = search_block_motion(cur, ref, (48, 64), "yuv420", settings, weight=1e6)
    motion = searched.motion
    inner = motion.vectors[:, 1:-1, 1:-1]  # away from the wrapped-around border
    assert np.array_equal(inner[0], np.full_like(inner[0], 3 * 4))
    assert np.array_equal(inner[1], np.full_like(inner[1], -1 * 4))
    warped = warp_planes(ref, motion.to_flow(cur), "yuv420")
    assert (cur - warped)[..., 8:-8, 8:-8].abs().max() < 1e-6


def test_search_prices_every_block_size_coarse_to_fine() -> None:
    """A global shift is found at every size, coarsest first, each size starting from the
    coarser field."""
    g = torch.Generator().manual_seed(6)
    low = torch.rand(1, 6, 12, 16, generator=g)
    ref = torch.nn.functional.interpolate(low, size=(64, 96), mode="bicubic").clamp(0, 1)
    cur = torch.roll(ref, shifts=(2, -1), dims=(-2, -1))  # cur(p) = ref(p + (1, -2))
    settings = BlockSearchSettings(block_log2=(3, 5, 4), precision_log2=2, dis_preset="medium",
                                   rounds=3, search_scale=0.7)
    fields = search_block_motion(cur, ref, (64, 96), "yuv420", settings, weight=1e8)
    assert [f.motion.block_log2 for f in fields] == [5, 4, 3]
    for f in fields:
        v = f.motion.vectors
        inner = v[:, 1:-1, 1:-1] if v.shape[1] > 2 else v
        assert np.array_equal(inner[0], np.full_like(inner[0], 1 * 4))
        assert np.array_equal(inner[1], np.full_like(inner[1], -2 * 4))
        assert np.isfinite(f.cost) and f.cost > 0


def test_each_extra_precision_gives_every_size_again() -> None:
    """A shift of one and a half samples: the quarter-sample fields find it exactly, the
    whole-sample ones cannot; each is its own candidate, with its own cost."""
    g = torch.Generator().manual_seed(9)
    low = torch.rand(1, 6, 12, 16, generator=g)
    ref = torch.nn.functional.interpolate(low, size=(64, 96), mode="bicubic").clamp(0, 1)
    # cur(p) = ref(p + (1.5, 0)) in model-grid samples (three luma pixels), as the decoder
    # warps it
    shift = BlockMotion((np.full((2, 8, 12), 6) * np.array([1, 0])[:, None, None]).astype(np.int32),
                        3, 2)
    cur = warp_planes(ref, shift.to_flow(ref), "yuv420")
    settings = BlockSearchSettings(block_log2=(4, 3), precision_log2=2, extra_precisions=(0,),
                                   dis_preset="medium", rounds=3)
    fields = search_block_motion(cur, ref, (64, 96), "yuv420", settings, weight=1e8)
    assert [(f.motion.block_log2, f.motion.precision_log2) for f in fields] == [
        (4, 2), (3, 2), (4, 0), (3, 0)]
    for fine, coarse in zip(fields[:2], fields[2:], strict=True):
        inner = fine.motion.vectors[:, 1:-1, 1:-2]
        assert (inner[0] == 6).all() and (inner[1] == 0).all()
        assert coarse.cost > 2 * fine.cost  # whole samples cannot follow it
    with pytest.raises(ValueError, match="block motion"):
        BlockSearchSettings(precision_log2=3, extra_precisions=(4,))


def test_a_cubic_field_searched_again_with_its_kernel_costs_no_more() -> None:
    """A frame that is the cubic warp of a sharp reference by a quarter sample: the field
    the bilinear search found, re-searched priced with the cubic warp, keeps its flag and
    predicts the frame at least as well for no more motion cost."""
    from dvc_edic.encoder.blocksearch import _KernelField, refine_for_kernel

    g = torch.Generator().manual_seed(12)
    ref = torch.rand(1, 6, 32, 48, generator=g)
    true = BlockMotion(np.full((2, 4, 6), 2, dtype=np.int32), 3, 3, cubic=True)
    cur = warp_planes_blocks(ref, torch.from_numpy(true.vectors), 8, 3, "yuv420", "cubic")
    settings = BlockSearchSettings(block_log2=(3,), kernel_rounds=2)
    start = BlockMotion(np.zeros((2, 4, 6), dtype=np.int32), 3, 3, cubic=True)
    again = refine_for_kernel(cur, ref, (32, 48), "yuv420", start, settings, weight=1e8)
    assert again.cubic
    field = _KernelField(cur, ref, (32, 48), "yuv420", 3, 3, "cubic")
    assert field.sse(again.vectors).sum() < field.sse(start.vectors).sum()
    assert np.array_equal(again.vectors, true.vectors)  # the true phase, found exactly
    off = replace(settings, kernel_rounds=0)
    assert refine_for_kernel(cur, ref, (32, 48), "yuv420", start, off, 1e8) is start


@pytest.mark.parametrize("representation", ["yuv420", "rgb"])
def test_the_search_prediction_matches_the_decoders_warp(representation: str) -> None:
    """The search prices fields with grid_sample; the decoder warps exactly. They must agree
    (border clamping included) to far below one code value, or the search prices the wrong
    prediction."""
    from dvc_edic.encoder.blocksearch import _Field

    g = torch.Generator().manual_seed(7)
    ref = torch.rand(1, 6 if representation == "yuv420" else 3, 40, 56, generator=g)
    vectors = torch.randint(-200, 200, (2, 5, 7), generator=g).numpy().astype(np.int32)
    field = _Field(ref, ref, (37, 50), representation, 3, 3)
    exact = warp_planes(ref, BlockMotion(vectors, 3, 3).to_flow(ref), representation)
    assert (field.predict(vectors) - exact).abs().max() < 1e-4


def test_the_cubic_flag_round_trips_and_the_decoder_warps_with_its_kernel(tiny_model) -> None:
    """Version 10's head bit 15: the field's plain warp samples with the cubic kernel. The
    flag travels with the field, and the decoder's prediction is the cubic warp."""
    v = _field(np.random.default_rng(5), 2, 2, 3.0)
    cubic = BlockMotion(v, 3, 3, cubic=True)
    data = encode_block_motion(cubic)
    assert int.from_bytes(data[:2], "little") >> 15 == 1
    assert decode_block_motion(data, (16, 16)).cubic
    assert not decode_block_motion(encode_block_motion(BlockMotion(v, 3, 3)), (16, 16)).cubic
    pf = tiny_model.pframe
    ref = torch.rand(1, 6, 16, 16, generator=torch.Generator().manual_seed(6))
    packet = Packet(FrameType.P, (Section("bmv", (), data), Section("nomc", (), b"")))
    latents = p_latents(packet, pf.mv_coder, pf.residual_coder, tiny_model.intra, (16, 16),
                        FORMAT_VERSION)
    decoded = pf.decompress(latents, ref, 1.0, tiny_model.intra)
    flow = cubic.to_flow(ref)
    assert torch.equal(decoded, warp_planes(ref, flow, "yuv420", "cubic").clamp(0, 1))
    assert not torch.equal(decoded, warp_planes(ref, flow, "yuv420").clamp(0, 1))


@pytest.mark.parametrize(("size", "block_log2", "precision_log2", "spread"), [
    ((40, 56), 3, 3, 200),  # whole blocks
    ((37, 50), 2, 2, 30),  # partial blocks at the right and bottom
    ((16, 16), 4, 3, 5000),  # vectors far past every edge
])
@pytest.mark.parametrize("representation", ["yuv420", "rgb"])
@pytest.mark.parametrize("kernel", ["bilinear", "cubic"])
def test_the_block_path_is_the_per_sample_warp(size, block_log2, precision_log2, spread,
                                               representation, kernel) -> None:
    """The decoder warps a block field block by block; the format defines the warp sample
    by sample (flows.backward_warp). Every bit must agree, edges included (where the
    bilinear warp clamps positions, its edge blocks take the per-sample arithmetic)."""
    g = torch.Generator().manual_seed(block_log2)
    x = torch.rand(1, 6 if representation == "yuv420" else 3, *size, generator=g)
    rows, cols = grid_of(size, block_log2)
    v = torch.randint(-spread, spread, (2, rows, cols), generator=g).numpy().astype(np.int32)
    v[:, rows // 2, :] = 0  # whole rows of still blocks, at the edges too
    v[0, :, 0] = -(1 << precision_log2)  # one sample left: the left edge clamps
    motion = BlockMotion(v, block_log2, precision_log2, cubic=kernel == "cubic")
    per_sample = warp_planes(x, motion.to_flow(x), representation, kernel)
    blockwise = warp_planes_blocks(x, torch.from_numpy(v), motion.block, precision_log2,
                                   representation, kernel)
    assert torch.equal(per_sample, blockwise)


def test_the_plain_warp_follows_the_stream_version(tiny_model) -> None:
    """Format 5 warps each plane at its own resolution; a version-4 stream keeps the warp
    it was encoded with, the model tensor warped as it is, so it decodes as before."""
    pf = tiny_model.pframe
    g = torch.Generator().manual_seed(8)
    ref = torch.rand(1, 6, 16, 16, generator=g)
    # one luma pixel to the right and one up: half a model-grid sample
    block = BlockMotion(np.array([[[4, 4]], [[-4, -4]]], np.int32).repeat(2, axis=1), 3, 3)
    packet = Packet(FrameType.P, (Section("bmv", (), encode_block_motion(block, 10)),
                                  Section("nomc", (), b"")))  # versions 4-10: one layout
    decoded = {}
    for version in (4, 5):
        latents = p_latents(packet, pf.mv_coder, pf.residual_coder, tiny_model.intra, (16, 16),
                            version)
        assert latents.fine_warp == (version >= 5)
        decoded[version] = pf.decompress(latents, ref, 1.0, tiny_model.intra)
    flow = block.to_flow(ref)
    assert torch.equal(decoded[4], backward_warp(ref, flow).clamp(0, 1))
    assert torch.equal(decoded[5], warp_planes(ref, flow, "yuv420").clamp(0, 1))
    assert not torch.equal(decoded[4], decoded[5])
