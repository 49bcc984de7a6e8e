"""The decoder against hostile streams: a bounded fuzz, and the memory bound.

The fuzz runs the generator of bench/fuzz_campaign.py (which runs longer
campaigns) for a few hundred fixed seeds, so any failure here reproduces with
``python -m bench.fuzz_campaign --replay SEED``.
"""

from __future__ import annotations

import tracemalloc
from collections import Counter

import pytest

from bench.fuzz_campaign import (
    ALLOWED_OUTCOMES,
    DECODED,
    MUTATORS,
    Fuzzer,
    bounded,
    decode_stream,
    fix_header_crc,
)
from dvc_edic.bitstream import FORMAT_VERSION, BitstreamReader, FrameType, Header, Packet, Section
from dvc_edic.bitstream.header import FIELD_OFFSETS
from dvc_edic.bitstream.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_PIXELS_FRAME, DEFAULT_MAX_SIDE
from dvc_edic.bitstream.packet import SYNC, PayloadCursor
from dvc_edic.errors import BitstreamError
from dvc_edic.models.edic import EDIC
from dvc_edic.weights import weights_hash

# The default run fuzzes the first 250 seeds; -m slow adds the next 250 (each half
# alone meets every check below: all mutators, decodes, refusals, deep edits).
FUZZ_SEEDS = range(250)
SLOW_FUZZ_SEEDS = range(250, 500)
V1 = 1  # the format version that stored latent shapes, and so could lie about them
# Seconds one fuzz case may take; a clean decode takes well under 0.1 s.
CASE_SECONDS = 10.0
# What a crafted stream may be: "a 1 KB file".
CRAFTED_MAX_BYTES = 1024
# What such a file may cost: it must never make the decoder allocate gigabytes.
CRAFTED_ADDRESS_BUDGET = 1 << 30
# Python and numpy allocations (which tracemalloc sees) for a refused crafted stream.
REFUSAL_TRACED_PEAK = 1 << 20
SECONDS_PER_CRAFTED = 30.0


@pytest.fixture(scope="module")
def fuzzer() -> Fuzzer:
    return Fuzzer.build()


def test_corpus_streams_are_real_and_decode_exactly(fuzzer: Fuzzer) -> None:
    names = {s.name for stream in fuzzer.corpus
             for p in BitstreamReader(stream.data).read_all() for s in p.sections}
    # every P layout of format version 3, a packet carrying its own quality, the DCT
    # layer and the in-loop filter
    assert {"mv_y", "res_y", "nomc", "bmv", "ires_z", "ires_y", "q", "dct", "lf"} <= names, names
    # format 9's chroma step: the dct sections carry a chroma_ratio other than 64
    ratios = {bytes(s.data)[3] for stream in fuzzer.corpus
              for p in BitstreamReader(stream.data).read_all() for s in p.sections
              if s.name == "dct"}
    assert ratios == {38}, ratios
    # format 11's block-motion layouts: residuals in contexts (bit 0 of the length varint)
    # and with one table per component
    flags = {PayloadCursor(memoryview(bytes(s.data))[2:], 2, "bmv").varint("n") & 1
             for stream in fuzzer.corpus for p in BitstreamReader(stream.data).read_all()
             for s in p.sections if s.name == "bmv"}
    assert flags == {0, 1}, flags
    for stream in fuzzer.corpus:
        assert decode_stream(fuzzer.model, stream.data) == list(stream.recons)
        packets = BitstreamReader(stream.data).read_all()
        assert {p.frame_type for p in packets} == {FrameType.I, FrameType.P}, stream.spec.name
        # y sections carry symbols (more than the half-width byte), so the fuzz
        # reaches the GMM entropy decoder too
        y_sizes = [len(s.data) for p in packets for s in p.sections if s.name.endswith("y")]
        assert min(y_sizes) > 1, (stream.spec.name, y_sizes)


@pytest.mark.parametrize("seeds", [FUZZ_SEEDS, pytest.param(SLOW_FUZZ_SEEDS,
                                                               marks=pytest.mark.slow)],
                         ids=["seeds_0_250", "seeds_250_500"])
def test_mutated_streams_only_raise_bitstream_errors(fuzzer: Fuzzer, one_thread: None,
                                                     seeds: range) -> None:
    results = [fuzzer.case(seed, CASE_SECONDS) for seed in seeds]
    failures = [r for r in results if r.outcome not in ALLOWED_OUTCOMES]
    assert not failures, (
        "\n".join(
            f"seed {r.seed} ({r.stream}, {r.mutation}): {r.outcome}: {r.detail}" for r in failures
        )
        + "\nreproduce with: python -m bench.fuzz_campaign --replay SEED"
    )
    outcomes = Counter(r.outcome for r in results)
    assert outcomes[DECODED] and outcomes[BitstreamError.__name__], outcomes
    assert {r.kind for r in results} == {name for name, _, _ in MUTATORS}
    # Edits behind a recomputed CRC must be caught by the checks beyond it.
    deep = [r for r in results if "valid CRC" in r.mutation and r.outcome != DECODED]
    assert deep and not any("CRC32 mismatch" in r.detail for r in deep)
    assert max(r.seconds for r in results) < CASE_SECONDS


@pytest.mark.parametrize("field,value", [("height", 143), ("width", 175), ("width", 1)])
def test_odd_dimensions_in_a_valid_header_are_a_bitstream_error(
    fuzzer: Fuzzer, field: str, value: int
) -> None:
    buf = bytearray(fuzzer.corpus[0].data)
    at = FIELD_OFFSETS[field]
    buf[at : at + 4] = value.to_bytes(4, "little")
    fix_header_crc(buf)
    with pytest.raises(BitstreamError, match=str(value)):
        decode_stream(fuzzer.model, bytes(buf))


def _crafted(
    fuzzer: Fuzzer, size: tuple[int, int], sections: tuple[Section, ...], frames: int = 1,
    version: int = FORMAT_VERSION,
) -> bytes:
    """A stream with a valid header and packet CRCs: only the checks behind them can refuse it.

    `size` is the header's (width, height). Version 1 stores the sections' shapes,
    so only a version-1 stream can claim latents of another size.
    """
    model = fuzzer.model
    header = Header(
        width=size[0], height=size[1], fps_num=30, fps_den=1, bit_depth=8, chroma="420",
        representation=model.representation, matrix="bt709", full_range=False,
        frame_count=frames, model_id=model.model_id, weights_hash=weights_hash(model),
        quality=4.0, intra_period=-1, version=version,
    )  # fmt: skip
    data = header.to_bytes() + Packet(FrameType.I, sections).to_bytes(version)
    assert len(data) <= CRAFTED_MAX_BYTES
    return data


def _consistent(fuzzer: Fuzzer, size: tuple[int, int], with_p: bool = False) -> bytes:
    """Frames whose latent shapes match the header, each latent an empty z and a y with R=0.

    Such a stream is legitimately tiny (a flat frame codes to almost nothing), so
    only the frame-area limit can bound what decoding it costs. `with_p` adds a
    P-frame after the I-frame, so the flow, warp and motion compensation run too.
    """
    width, height = size
    model = fuzzer.model

    def latent(prefix: str, coder: EDIC) -> tuple[Section, Section]:
        y_shape, z_shape = coder.latent_shapes((height // 2, width // 2))
        return Section(f"{prefix}z", z_shape, b""), Section(f"{prefix}y", y_shape, b"\x00")

    data = _crafted(fuzzer, size, latent("", model.intra), frames=2 if with_p else 1)
    if with_p:
        mv, res = latent("mv_", model.pframe.mv_coder), latent("res_", model.pframe.residual_coder)
        data += Packet(FrameType.P, mv + res).to_bytes()
    assert len(data) <= CRAFTED_MAX_BYTES
    return data


def _decode_bounded(fuzzer: Fuzzer, data: bytes) -> tuple[BaseException | None, int]:
    """(what decoding raised, peak traced bytes) under the address-space budget."""
    tracemalloc.start()
    try:
        with bounded(SECONDS_PER_CRAFTED, CRAFTED_ADDRESS_BUDGET):
            try:
                decode_stream(fuzzer.model, data)
            except Exception as exc:  # the test reports the type below
                return exc, tracemalloc.get_traced_memory()[1]
        return None, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _huge_claims(fuzzer: Fuzzer) -> dict[str, bytes]:
    # The largest frame the default reader accepts, so that the header passes and
    # the checks on the packet are the ones that must refuse these.
    size = DEFAULT_MAX_PIXELS_FRAME
    small = b"\x01\x02\x03\x04"
    over_cap = (16, 1 << 16, 1 << 16)  # 2^36 elements: past Limits.max_section_elements
    under_cap = (16, 1 << 13, 1 << 13)  # 2^30 elements: within the cap, not the header's shape
    wrong = (Section("z", under_cap, small), Section("y", under_cap, b"\x00"))
    huge_payload = bytearray(_crafted(fuzzer, size, wrong, version=V1))
    length_at = huge_payload.index(SYNC) + len(SYNC) + 1  # after the frame type
    huge_payload[length_at : length_at + 4] = (1 << 30).to_bytes(4, "little")
    return {
        "over the element cap": _crafted(
            fuzzer, size, (Section("z", over_cap, small), Section("y", over_cap, b"\x00")),
            version=V1,
        ),
        "latents unlike the header's": _crafted(fuzzer, size, wrong, version=V1),
        "2^24 frames": _crafted(fuzzer, size, wrong, frames=1 << 24, version=V1),
        "a 1 GiB payload": bytes(huge_payload),
    }


# What refuses each claim: the check behind the header, not the frame-area limit.
HUGE_CLAIM_REFUSALS = {
    "over the element cap": "shape",
    "latents unlike the header's": "do not match",
    "2^24 frames": "frame_count",
    "a 1 GiB payload": "payload_length",
}


@pytest.mark.parametrize("claim", list(HUGE_CLAIM_REFUSALS))
def test_a_1kb_stream_claiming_huge_sizes_is_refused_before_allocating(
    fuzzer: Fuzzer, one_thread: None, claim: str
) -> None:
    data = _huge_claims(fuzzer)[claim]
    raised, traced_peak = _decode_bounded(fuzzer, data)
    assert isinstance(raised, BitstreamError), repr(raised)
    assert HUGE_CLAIM_REFUSALS[claim] in str(raised) and "max_pixels" not in str(raised)
    assert traced_peak < REFUSAL_TRACED_PEAK


def test_a_1kb_stream_with_consistent_16k_latents_is_refused_before_allocating(
    fuzzer: Fuzzer, one_thread: None
) -> None:
    # Within max_width and max_height, with latents that match it: only the area is wrong.
    side = DEFAULT_MAX_SIDE
    raised, traced_peak = _decode_bounded(fuzzer, _consistent(fuzzer, (side, side)))
    assert isinstance(raised, BitstreamError), repr(raised)
    message = str(raised)
    for fragment in (f"{side}x{side}", str(side * side), str(DEFAULT_MAX_PIXELS), "--max-pixels"):
        assert fragment in message, (fragment, message)
    assert traced_peak < REFUSAL_TRACED_PEAK


def test_a_1kb_stream_at_the_pixel_limit_decodes_within_budget(
    fuzzer: Fuzzer, one_thread: None
) -> None:
    """The costliest crafted stream the default reader accepts still fits the budget."""
    size = DEFAULT_MAX_PIXELS_FRAME
    assert size[0] * size[1] == DEFAULT_MAX_PIXELS
    raised, _ = _decode_bounded(fuzzer, _consistent(fuzzer, size, with_p=True))
    assert raised is None, repr(raised)
