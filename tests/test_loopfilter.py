"""The in-loop adaptive filter (format version 8): its section, its integer filter, the
encoder's fit, and encoder and decoder agreeing on every filtered frame."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest
import torch

from dvc_edic.bitstream import BitstreamReader, BitstreamWriter, FrameType, Packet, Section
from dvc_edic.bitstream.version import FORMAT_VERSION
from dvc_edic.codec import SequenceDecoder, SequenceEncoder
from dvc_edic.encoder import EncoderSettings
from dvc_edic.encoder.decision import LOOP_FILTER_SUFFIX
from dvc_edic.encoder.loopfit import fit_loop_filter
from dvc_edic.errors import BitstreamError
from dvc_edic.io import Frame, VideoInfo
from dvc_edic.loopfilter import (
    COEF_LIMIT,
    MODE_KEEP,
    MODE_NEW,
    MODE_OFF,
    NO_FILTERS,
    LoopFilter,
    apply_filters,
    coefficient_shape,
    exp_golomb_bits,
    read_section,
    section_bytes,
)
from dvc_edic.packets import loop_filter_data
from tests.conftest import carphone_frames, smooth_frame


def _random_filter(rng: np.random.Generator, modes: tuple[int, int, int]) -> LoopFilter:
    coefs = tuple(
        rng.integers(-40, 41, coefficient_shape(p)).astype(np.int32) if m == MODE_NEW else None
        for p, m in enumerate(modes)
    )
    return LoopFilter(modes, coefs)  # type: ignore[arg-type]


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None
                                         and np.array_equal(a, b))


def test_filter_shapes_are_the_specs() -> None:
    assert coefficient_shape(0) == (3, 12)  # radius-3 diamond, one filter per activity class
    assert coefficient_shape(1) == coefficient_shape(2) == (1, 6)  # radius-2 diamond


@pytest.mark.parametrize("modes", [(2, 0, 0), (0, 2, 2), (2, 2, 2), (2, 1, 0), (1, 1, 2)])
def test_sections_round_trip_against_the_last_filters(modes) -> None:
    rng = np.random.default_rng(sum(modes))
    first = _random_filter(rng, (2, 2, 2))
    last = first.remembered(NO_FILTERS)
    section = _random_filter(rng, modes)
    data = section_bytes(section, last)
    back = read_section(data, last)
    assert back.modes == modes
    assert all(_same(a, b) for a, b in zip(back.coefficients, section.coefficients, strict=True))
    applied = back.filters(last)
    for plane, mode in enumerate(modes):
        expected = {MODE_OFF: None, MODE_KEEP: last[plane],
                    MODE_NEW: section.coefficients[plane]}[mode]
        assert _same(applied[plane], expected)
    # a new filter is coded as its change from the last one, so resending it costs 1 bit a
    # coefficient
    again = LoopFilter((2, 2, 2), last)
    assert len(section_bytes(again, last)) == -(-(6 + 12 * 3 + 6 + 6) // 8)


def test_exp_golomb_lengths_match_the_writer() -> None:
    for v in (-COEF_LIMIT, -5, -1, 0, 1, 2, 7, COEF_LIMIT):
        coefs = np.full((1, 6), v, dtype=np.int32)
        data = section_bytes(LoopFilter((0, 2, 0), (None, coefs, None)), NO_FILTERS)
        assert len(data) == -(-(6 + 6 * exp_golomb_bits(v)) // 8)


def _bits(text: str) -> bytes:
    text = text.replace(" ", "")
    text += "0" * (-len(text) % 8)
    return int(text, 2).to_bytes(len(text) // 8, "big")


@pytest.mark.parametrize(("data", "last", "message"), [
    (_bits("11 00 00"), NO_FILTERS, "mode 3"),
    (_bits("01 00 00"), NO_FILTERS, "none was sent"),
    (_bits("00 00 00"), NO_FILTERS, "every plane is off"),
    (_bits("00 10 00 1"), NO_FILTERS, "truncated"),
    (_bits("00 10 00" + " 1" * 6) + b"\0", NO_FILTERS, "bits after"),
    (_bits("00 10 00" + " 1" * 6 + " 1"), NO_FILTERS, "bits after"),
    (_bits("00 10 00 " + "0" * 11 + "1"), NO_FILTERS, "leading zeros"),
    # delta +128 from 0 (code 256: 8 zeros, then its 9 bits) leaves the range
    (_bits("00 10 00 00000000 100000000"), NO_FILTERS, "expected -127..127"),
    (b"", NO_FILTERS, "truncated"),
])
def test_malformed_sections_are_refused(data: bytes, last, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        read_section(data, last)


def test_an_lf_section_needs_format_version_8() -> None:
    packet = Packet(FrameType.P, (Section("lf", (), _bits("00 10 00" + " 1" * 6)),))
    assert loop_filter_data(packet, 8) is not None
    with pytest.raises(BitstreamError, match="needs version 8"):
        loop_filter_data(packet, 7)


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_the_filter_keeps_flat_planes_and_the_sample_range(bit_depth: int) -> None:
    rng = np.random.default_rng(bit_depth)
    top = (1 << bit_depth) - 1
    flat = Frame(np.full((20, 30), top // 3, np.uint16 if bit_depth > 8 else np.uint8),
                 np.full((10, 15), top, np.uint16 if bit_depth > 8 else np.uint8),
                 np.zeros((10, 15), np.uint16 if bit_depth > 8 else np.uint8), bit_depth)
    strong = _random_filter(rng, (2, 2, 2))
    assert apply_filters(flat, strong.filters(NO_FILTERS)) == flat
    noisy = smooth_frame(36, 52, seed=3, bit_depth=bit_depth)
    extreme = LoopFilter((2, 2, 2), tuple(  # type: ignore[arg-type]
        np.full(coefficient_shape(p), COEF_LIMIT, np.int32) for p in range(3)))
    out = apply_filters(noisy, extreme.filters(NO_FILTERS))
    for plane in out.planes:
        assert plane.dtype == noisy.y.dtype and plane.min() >= 0 and plane.max() <= top


def _box_blur(plane: np.ndarray) -> np.ndarray:
    p = np.pad(plane.astype(np.int32), 1, mode="edge")
    h, w = plane.shape
    total = sum(p[dy: dy + h, dx: dx + w] for dy in range(3) for dx in range(3))
    return ((total + 4) // 9).astype(plane.dtype)


def _psnr(a: Frame, b: Frame) -> float:
    pairs = zip(a.planes, b.planes, strict=True)
    se = sum(float(((x.astype(np.int64) - y) ** 2).sum()) for x, y in pairs)
    return 10 * np.log10(255**2 * sum(p.size for p in a.planes) / se)


def test_the_fit_undoes_a_blur_and_weighs_its_bits() -> None:
    source = carphone_frames(1)[0]
    blurred = Frame(*(_box_blur(p) for p in source.planes), source.bit_depth)
    fit = fit_loop_filter(source, blurred, NO_FILTERS, (1.0,) * 3)
    assert fit is not None and fit.section.modes[0] == MODE_NEW
    section = fit.section
    sharpened = apply_filters(blurred, section.filters(NO_FILTERS))
    assert fit.frame == sharpened  # the frame the fit hands back is the decoder's
    assert _psnr(source, sharpened) > _psnr(source, blurred) + 1.0
    # the previous frame's filter is kept when it does as well: no bits for coefficients
    kept = fit_loop_filter(source, blurred, section.remembered(NO_FILTERS), (1e-6,) * 3)
    assert kept is None or MODE_NEW not in kept.section.modes
    # and with distortion worth nothing, nothing is sent
    assert fit_loop_filter(source, blurred, NO_FILTERS, (1e-9,) * 3) is None


def test_filtered_streams_decode_exactly_across_gops(tiny_model) -> None:
    """Filters are sent, kept and forgotten at I-frames; the decoder's frames are the
    encoder's, and the filter is kept only where the real J says so."""
    frames = carphone_frames(5)
    settings = EncoderSettings("test", ("zero", "block"), skip_residual=True,
                               intra_fallback=False, dis_preset="ultrafast",
                               loop_filter=True)
    info = VideoInfo(width=frames[0].width, height=frames[0].height, fps=Fraction(30),
                     bit_depth=8)
    enc = SequenceEncoder(tiny_model, info, 6.0, 3, settings=settings)
    buf = io.BytesIO()
    writer = BitstreamWriter(buf, enc.header)
    recons = []
    for f in frames:
        packet, recon = enc.encode(f)
        report = enc.last_decision.report(f)
        assert report["J"] == min(report["tried"].values())
        assert report["mode"].endswith(LOOP_FILTER_SUFFIX) == ("lf" in report["sections"])
        writer.write_packet(packet)
        recons.append(recon)
    writer.finalize()
    reader = BitstreamReader(buf.getvalue())
    assert reader.header.version == FORMAT_VERSION
    packets = list(reader)
    assert sum("lf" in {s.name for s in p.sections} for p in packets) >= 2
    dec = SequenceDecoder(tiny_model, reader.header)
    assert [dec.decode(p) for p in packets] == recons
    off = SequenceEncoder(tiny_model, info, 6.0, 3,
                          settings=settings.with_overrides(loop_filter=False))
    assert all("lf" not in {s.name for s in off.encode(f)[0].sections} for f in frames[:2])


def _reference_filter(frame: Frame, filters) -> Frame:
    """The spec's formula sample by sample (docs/bitstream.md), written without the
    module's helpers: second differences over edge-repeated planes, luma classes from
    each 8x8 block's activity, a floor shift by 6."""
    planes = []
    top = (1 << frame.bit_depth) - 1
    for index, (plane, coef) in enumerate(zip(frame.planes, filters, strict=True)):
        if coef is None:
            planes.append(plane)
            continue
        radius = 3 if index == 0 else 2
        span = range(-radius, radius + 1)
        offsets = [(dy, dx) for dy in span for dx in span
                   if abs(dy) + abs(dx) <= radius and (dy, dx) > (0, 0)]
        x = np.pad(plane.astype(np.int64), radius, mode="edge")
        h, w = plane.shape
        if index == 0:
            a = np.pad(plane.astype(np.int64) >> (frame.bit_depth - 8),
                       ((0, -h % 8), (0, -w % 8)), mode="edge")
            classes = np.zeros((h, w), dtype=np.int64)
            for by in range(0, h, 8):
                for bx in range(0, w, 8):
                    block = a[by: by + 8, bx: bx + 8]
                    act = (np.abs(np.diff(block, axis=1)).sum()
                           + np.abs(np.diff(block, axis=0)).sum())
                    classes[by: by + 8, bx: bx + 8] = int(act >= 224) + int(act >= 896)
        else:
            classes = np.zeros((h, w), dtype=np.int64)
        out = np.empty((h, w), dtype=np.int64)
        for yy in range(h):
            for xx in range(w):
                c = x[yy + radius, xx + radius]
                total = sum(int(coef[classes[yy, xx], k]) * (
                    int(x[yy + radius + dy, xx + radius + dx])
                    + int(x[yy + radius - dy, xx + radius - dx]) - 2 * int(c))
                    for k, (dy, dx) in enumerate(offsets))
                out[yy, xx] = min(max(c + ((total + 32) >> 6), 0), top)
        planes.append(out.astype(plane.dtype))
    return Frame(planes[0], planes[1], planes[2], frame.bit_depth)


@pytest.mark.parametrize(("height", "width", "bit_depth"), [(14, 22, 8), (18, 26, 10)])
def test_the_filter_is_the_documented_formula(height: int, width: int, bit_depth: int) -> None:
    rng = np.random.default_rng(height)
    frame = smooth_frame(height, width, seed=height, bit_depth=bit_depth)
    noisy = Frame(*(np.clip(p.astype(np.int64) + rng.integers(-40, 41, p.shape), 0,
                            (1 << bit_depth) - 1).astype(p.dtype) for p in frame.planes),
                  bit_depth)
    for modes in ((2, 2, 2), (2, 0, 2), (0, 2, 0)):
        filters = _random_filter(rng, modes).filters(NO_FILTERS)
        assert apply_filters(noisy, filters) == _reference_filter(noisy, filters)


def test_thread_count_changes_no_sample() -> None:
    """Large planes are filtered in bands on the entropy stage's threads."""
    rng = np.random.default_rng(7)
    frame = Frame(rng.integers(0, 256, (600, 520), dtype=np.uint8),
                  rng.integers(0, 256, (300, 260), dtype=np.uint8),
                  rng.integers(0, 256, (300, 260), dtype=np.uint8), 8)
    assert frame.y.size >= 1 << 18  # so that the luma plane is split into bands
    filters = _random_filter(rng, (2, 2, 2)).filters(NO_FILTERS)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = apply_filters(frame, filters)
        torch.set_num_threads(2)
        assert apply_filters(frame, filters) == single
    finally:
        torch.set_num_threads(before)
