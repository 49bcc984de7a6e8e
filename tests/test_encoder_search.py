"""The encoder's search: P modes, motion sources, the per-frame report, v1 streams.

Every mode the encoder can choose must decode to exactly the encoder's own
reconstruction, and a stream written before the P modes existed must still decode.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from dvc_edic.bitstream import BitstreamReader, BitstreamWriter, FrameType, header_size
from dvc_edic.bitstream.version import Y_WINDOW_VERSION
from dvc_edic.blockmotion import BlockMotion
from dvc_edic.codec import SequenceDecoder, SequenceEncoder
from dvc_edic.encoder import Candidate, Decision, EncoderSettings, choose
from dvc_edic.encoder.decision import DCT_SUFFIX, LOOP_FILTER_SUFFIX, Picture, Rd
from dvc_edic.encoder.motion import dis_flow
from dvc_edic.encoder.settings import (
    BlockSearchSettings,
    DctLayerSettings,
    load_encoder_settings,
    preset_names,
)
from dvc_edic.errors import BitstreamError, InputError
from dvc_edic.io import Frame, VideoInfo
from dvc_edic.models.edic import EDIC
from dvc_edic.representation import warp_planes
from dvc_edic.weights import load_weights
from flows import backward_warp
from tests.conftest import carphone_frames, run_tool, write_yuv

V1_DIR = Path(__file__).parent / "data" / "v1"
F12_DIR = Path(__file__).parent / "data" / "f12"  # made by tests/make_golden.py
ALL_MODES = EncoderSettings("test", ("learned", "dis", "zero", "block"), skip_residual=True,
                            intra_fallback=True, dis_preset="ultrafast", plain_warp="search")
# Each P-frame layout in turn: both parts, motion only, residual only, neither; with and
# without the MC net.
MODE_CYCLE = ("learned", "dis+skip", "zero", "zero+skip", "learned+skip", "learned+nomc",
              "zero+nomc+skip", "block8+nomc", "block8+nomc+skip")
SECTIONS = {
    "learned": {"mv_z", "mv_y", "res_z", "res_y"},
    "dis+skip": {"mv_z", "mv_y"},
    "zero": {"res_z", "res_y"},
    "zero+skip": set(),
    "learned+skip": {"mv_z", "mv_y"},
    "learned+nomc": {"nomc", "mv_z", "mv_y", "res_z", "res_y"},
    "zero+nomc+skip": {"nomc"},
    "block8+nomc": {"nomc", "bmv", "res_z", "res_y"},
    "block8+nomc+skip": {"nomc", "bmv"},
}


# The search's structural and exactness tests code the middle of carphone, 112x80: a third
# of the pixels, and like 176x144 not a multiple of the model's stride, so padding stays
# in play. The DCT-layer tests (whose checks depend on what the content makes worth
# coding) and the CLI test code whole frames.
CROP_ROWS, CROP_COLS = slice(32, 112), slice(32, 144)  # even, so chroma lines up


def _middle(count: int) -> list[Frame]:
    """The middle 112x80 of carphone's first `count` frames."""
    def crop(plane: np.ndarray, scale: int) -> np.ndarray:
        rows, cols = (slice(s.start // scale, s.stop // scale) for s in (CROP_ROWS, CROP_COLS))
        return np.ascontiguousarray(plane[rows, cols])

    return [Frame(crop(f.y, 1), crop(f.u, 2), crop(f.v, 2), f.bit_depth)
            for f in carphone_frames(count)]


def _info(frame: Frame) -> VideoInfo:
    return VideoInfo(width=frame.width, height=frame.height, fps=Fraction(30),
                     bit_depth=frame.bit_depth)


def _cycle():
    turn = 0

    def pick(candidates: list[Candidate], source: Frame, rd: Rd) -> Decision:
        nonlocal turn
        ranked = choose(candidates, source, rd)
        if len(candidates) == 1:
            return ranked
        mode = MODE_CYCLE[turn % len(MODE_CYCLE)]
        turn += 1
        return Decision(next(c for c in candidates if c.mode == mode), None, candidates)

    return pick


def _code(enc: SequenceEncoder, frames: list[Frame]) -> tuple[bytes, list[Frame], list[dict]]:
    buf = io.BytesIO()
    writer = BitstreamWriter(buf, enc.header)
    recons, reports = [], []
    for f in frames:
        packet, recon = enc.encode(f)
        report = enc.last_decision.report(f)
        report["bytes"] = writer.write_packet(packet)
        recons.append(recon)
        reports.append(report)
    writer.finalize()
    return buf.getvalue(), recons, reports


def frames_sha256(frames: list[Frame]) -> str:
    """What the golden streams' JSON files record: sha256 of every frame's y, u, v bytes."""
    return hashlib.sha256(b"".join(f.y.tobytes() + f.u.tobytes() + f.v.tobytes()
                                   for f in frames)).hexdigest()


def _decode(model, data: bytes) -> list[Frame]:
    reader = BitstreamReader(data)
    dec = SequenceDecoder(model, reader.header)
    return [dec.decode(p) for p in reader]


def test_every_p_mode_decodes_exactly(tiny_model) -> None:
    frames = _middle(1 + len(MODE_CYCLE))
    enc = SequenceEncoder(tiny_model, _info(frames[0]), 5.0, -1, settings=ALL_MODES,
                          chooser=_cycle())
    data, recons, reports = _code(enc, frames)
    packets = list(BitstreamReader(data))
    assert [p.frame_type for p in packets] == [FrameType.I] + [FrameType.P] * len(MODE_CYCLE)
    for packet, mode in zip(packets[1:], MODE_CYCLE, strict=True):
        assert {s.name for s in packet.sections} == SECTIONS[mode]
    assert [r["mode"] for r in reports[1:]] == list(MODE_CYCLE)
    assert _decode(tiny_model, data) == recons


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_decodes_exactly(tiny_model, preset: str) -> None:
    """Presets change only the encoder's search: the one decoder must give back exactly
    what each preset's encoder reconstructed (refinement, block sizes, qualities and all)."""
    frames = _middle(3)
    settings = load_encoder_settings(preset)
    enc = SequenceEncoder(tiny_model, _info(frames[0]), 4.0, -1, settings=settings)
    data, recons, reports = _code(enc, frames)
    assert reports[0]["mode"].removesuffix(LOOP_FILTER_SUFFIX).removesuffix(DCT_SUFFIX) == "intra"
    assert len(reports) == len(frames)
    assert _decode(tiny_model, data) == recons


def test_the_dct_layer_decodes_exactly_and_is_kept_by_cost(tiny_model) -> None:
    """The layer (format version 6) is added where J says so, the decoder rebuilds exactly
    what the encoder did, and without it no packet carries a dct section."""
    frames = carphone_frames(3)
    layered = ALL_MODES.with_overrides(dct_steps=(0.5, 1.0, 2.0))
    enc = SequenceEncoder(tiny_model, _info(frames[0]), 8.0, -1, settings=layered)
    data, recons, reports = _code(enc, frames)
    with_dct = [("dct" in {s.name for s in p.sections}) for p in BitstreamReader(data)]
    assert any(with_dct)
    for report, has in zip(reports, with_dct, strict=True):
        assert report["mode"].endswith(DCT_SUFFIX) == has
        layered = [j for m, j in report["tried"].items() if DCT_SUFFIX in m]
        unlayered = [j for m, j in report["tried"].items() if DCT_SUFFIX not in m]
        assert layered  # every frame tried it, at three steps (two bases at P positions)
        assert report["J"] == min(layered + unlayered)  # and the lowest real J won
    assert _decode(tiny_model, data) == recons
    plain = SequenceEncoder(tiny_model, _info(frames[0]), 8.0, -1, settings=ALL_MODES)
    assert ALL_MODES.dct == DctLayerSettings()  # off unless asked for
    plain_data, _, _ = _code(plain, frames)
    assert not any("dct" in {s.name for s in p.sections} for p in BitstreamReader(plain_data))


def test_a_finer_chroma_step_travels_in_the_dct_sections(tiny_model) -> None:
    """Format version 9: the preset's chroma step ratio is written in every dct section
    (byte 3, in 1/64) and the decoder dequantizes chroma with it, bit-exactly."""
    frames = carphone_frames(3)
    base = ALL_MODES.with_overrides(dct_steps=(0.5, 1.0))
    finer = dataclasses.replace(base, dct=dataclasses.replace(base.dct, chroma_step_ratio=0.5))
    enc = SequenceEncoder(tiny_model, _info(frames[0]), 8.0, -1, settings=finer)
    data, recons, _ = _code(enc, frames)
    sections = [s for p in BitstreamReader(data) for s in p.sections if s.name == "dct"]
    assert sections and all(bytes(s.data)[3] == 32 for s in sections)
    assert _decode(tiny_model, data) == recons


def test_every_preset_codes_chroma_at_its_own_step_and_refuses_a_bad_ratio() -> None:
    """configs/encoder.yaml gives every preset the measured chroma step ratio, and a ratio
    the stream's byte cannot carry is refused where the settings are made."""
    for name in preset_names():
        assert 0 < load_encoder_settings(name).dct.chroma_step_ratio < 1
    for ratio in (0.0, -1.0, 4.0):
        with pytest.raises(ValueError, match="chroma_step_ratio"):
            DctLayerSettings(chroma_step_ratio=ratio)


def test_choice_is_the_lowest_rd_cost(tiny_model) -> None:
    frames = _middle(3)
    enc = SequenceEncoder(tiny_model, _info(frames[0]), 3.0, -1, settings=ALL_MODES)
    data, recons, reports = _code(enc, frames)
    for r in reports[1:]:
        p_modes = {f"{m}{w}{k}" for m in ("learned", "dis", "zero") for w in ("", "+nomc")
                   for k in ("", "+skip")}
        p_modes |= {"block8+nomc", "block8+nomc+skip"}  # block motion: never the MC net
        assert set(r["tried"]) == p_modes | {"intra"}
        assert r["J"] == min(r["tried"].values()) and r["runner_up_J"] >= r["J"]
        assert r["psnr_pred"] is not None and r["psnr_warped"] is not None
    assert _decode(tiny_model, data) == recons


def test_section_bytes_add_up_to_the_packet_sizes(tiny_model) -> None:
    frames = _middle(4)
    enc = SequenceEncoder(tiny_model, _info(frames[0]), 4.0, 12, settings=ALL_MODES,
                          chooser=_cycle())
    data, _, reports = _code(enc, frames)
    for r in reports:
        assert sum(r["sections"].values()) + r["overhead_bytes"] == r["bytes"]
        assert 0 < r["overhead_bytes"] < 32  # compact sections: id and length only
    assert len(data) == header_size(enc.header) + sum(r["bytes"] for r in reports)


def test_a_p_packet_with_half_a_coder_is_refused(tiny_model) -> None:
    frames = _middle(2)
    enc = SequenceEncoder(tiny_model, _info(frames[0]), 4.0, -1, settings=ALL_MODES,
                          chooser=_cycle())
    data, _, _ = _code(enc, frames)
    reader = BitstreamReader(data)
    packets = list(reader)
    from dvc_edic.bitstream import Packet, Section

    half = Packet(FrameType.P, tuple(s for s in packets[1].sections if s.name != "res_y"))
    dec = SequenceDecoder(tiny_model, reader.header)
    dec.decode(packets[0])
    with pytest.raises(BitstreamError, match="come together"):
        dec.decode(half)
    with pytest.raises(BitstreamError, match="must be empty"):
        dec.decode(Packet(FrameType.P, (Section("nomc", (), b"x"),)))
    with pytest.raises(BitstreamError, match="P-frames only"):
        dec.decode(Packet(FrameType.I, (*packets[0].sections, Section("nomc", (), b""))))


def test_a_version_6_stream_with_dct_sections_still_decodes(tiny_model, monkeypatch) -> None:
    """Format 6 coded the layer's cells as a raw table (dvc_edic.dctlayer); format 7 codes
    them in the stream (dvc_edic.dctcontext), format 8 under a wider heads' row, format
    9 with a chroma step of its own, and format 11 with its heads in groups. The decoder
    reads each by the header's version, so a stream made before a change decodes to what
    its encoder made."""
    from dvc_edic import blockmotion, dctcontext, dctlayer, packets
    from dvc_edic.encoder import decision

    frames = carphone_frames(3)
    layered = ALL_MODES.with_overrides(dct_steps=(0.5, 1.0))
    streams = {}
    writers = {6: dctlayer.layer_bytes,
               7: functools.partial(dctcontext.layer_bytes, version=7),
               8: functools.partial(dctcontext.layer_bytes, version=8),
               9: functools.partial(dctcontext.layer_bytes, version=9),
               11: decision.layer_bytes}
    current_bmv = packets.encode_block_motion
    for version, writer in writers.items():
        monkeypatch.setattr(decision, "layer_bytes", writer)
        # block motion as versions 4-10 lay it out (version 11 may code it in contexts)
        monkeypatch.setattr(packets, "encode_block_motion", current_bmv if version == 11 else
                            functools.partial(blockmotion.encode_block_motion, version=10))
        enc = SequenceEncoder(tiny_model, _info(frames[0]), 8.0, -1, settings=layered)
        enc.header = dataclasses.replace(enc.header, version=version)
        data, recons, _ = _code(enc, frames)
        assert BitstreamReader(data).header.version == version
        assert any("dct" in {s.name for s in p.sections} for p in BitstreamReader(data))
        assert _decode(tiny_model, data) == recons
        streams[version] = data
    assert len(set(streams.values())) == len(streams)


def test_a_version_11_stream_keeps_its_y_coding(tiny_model, monkeypatch) -> None:
    """Format 12 codes y under per-element windows (dvc_edic.entropy.window); a format 11
    stream's y, one row of 2R+1 per element, still decodes by the old path to what its
    encoder made, and each decodes to its encoder's reconstruction with 1 and 2 threads.
    The intra coder's analysis is scaled up so that y is not all at its centres (R = 0,
    nothing coded), as the untrained tiny model's would be."""
    last = [m for m in tiny_model.intra.g_a if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.mul_(30)
        last.bias.mul_(30)
    frames = carphone_frames(2)
    current = EDIC.compress_latents
    streams = {}
    for version in (Y_WINDOW_VERSION - 1, Y_WINDOW_VERSION):
        monkeypatch.setattr(EDIC, "compress_latents",
                            functools.partialmethod(current, version=version))  # fmt: skip
        enc = SequenceEncoder(tiny_model, _info(frames[0]), 4.0, -1)
        enc.header = dataclasses.replace(enc.header, version=version)
        data, recons, _ = _code(enc, frames)
        assert BitstreamReader(data).header.version == version
        before = torch.get_num_threads()
        try:
            for threads in (1, 2):  # the y stage splits its work over threads
                torch.set_num_threads(threads)
                assert _decode(tiny_model, data) == recons
        finally:
            torch.set_num_threads(before)
        streams[version] = [p.section("y").data for p in BitstreamReader(data)
                            if p.frame_type == FrameType.I]  # fmt: skip
    old, new = streams[Y_WINDOW_VERSION - 1][0], streams[Y_WINDOW_VERSION][0]
    assert old[0] == new[0] > 0 and old != new  # the same R, coded two ways


def test_version_1_stream_still_decodes() -> None:
    """A stream written by format version 1 (commit f9c4165), with its own weights."""
    expected = json.loads((V1_DIR / "carphone_96x64_3f.json").read_text())
    model = load_weights(V1_DIR / "tiny.safetensors")
    data = (V1_DIR / "carphone_96x64_3f.dvce").read_bytes()
    assert BitstreamReader(data).header.version == 1
    decoded = _decode(model, data)
    assert frames_sha256(decoded) == expected["decoded_sha256"]


def test_format_12_golden_stream_decodes_to_its_bytes() -> None:
    """A committed format-12 stream (tests/make_golden.py) with block motion, the DCT
    layer and the in-loop filter: decoder speed-ups must leave every output byte as it
    was (the decoder of commit 629aaa0, before the layer's float transform, gave these)."""
    expected = json.loads((F12_DIR / "carphone_112x80_4f_q8.json").read_text())
    model = load_weights(V1_DIR / "tiny.safetensors")
    data = (F12_DIR / "carphone_112x80_4f_q8.dvce").read_bytes()
    reader = BitstreamReader(data)
    assert reader.header.version == expected["format_version"]
    assert {s.name for p in reader for s in p.sections} >= {"bmv", "dct", "lf"}
    decoded = _decode(model, data)
    assert frames_sha256(decoded) == expected["decoded_sha256"]


def _shifted_pair(dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A textured model tensor and the same picture moved dx luma pixels to the right."""
    g = torch.Generator().manual_seed(3)
    low = torch.rand(1, 6, 12, 16, generator=g)
    ref = torch.nn.functional.interpolate(low, size=(48, 64), mode="bicubic").clamp(0, 1)
    cur = torch.roll(ref, shifts=dx // 2, dims=-1)  # one model-grid step is 2 luma pixels
    return cur, ref


def test_dis_finds_a_global_shift() -> None:
    cur, ref = _shifted_pair(4)
    flow = dis_flow(cur, ref, "yuv420", "medium")
    inner = (..., slice(8, -8), slice(8, -8))  # away from the wrapped-around border
    assert flow.shape == (1, 2, 48, 64)
    assert torch.allclose(flow[:, 0][inner].median(), torch.tensor(-2.0), atol=0.25)
    assert flow[:, 1][inner].abs().median() < 0.25
    zero_err = (cur - ref)[inner].abs().mean()
    warped_err = (cur - backward_warp(ref, flow))[inner].abs().mean()
    assert warped_err < zero_err / 4


@pytest.mark.parametrize("fresh", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["in_process", "fresh_interpreter"])
def test_cli_preset_and_motion_flags(tiny_model, tmp_path: Path, fresh: bool) -> None:
    from dvc_edic.weights import save_weights

    weights = tmp_path / "tiny.safetensors"
    save_weights(tiny_model, weights)
    src = write_yuv(tmp_path / "clip_176x144_30.yuv", carphone_frames(3))
    stats = tmp_path / "stats.json"
    out = tmp_path / "s.dvce"
    result = run_tool("dvc_edic.encode_sequence", src, "-o", out, "--weights", weights,
                      "--preset", "fast", "--motion", "auto", "--stats", stats, "-q", fresh=fresh)
    assert result.returncode == 0, result.stderr
    s = json.loads(stats.read_text())
    assert s["preset"] == "fast" and s["motion"] == ["learned", "dis", "zero", "block"]
    assert s["file_bytes"] == out.stat().st_size
    p_frames = [f for f in s["per_frame"] if f["type"] == "P"]
    for f in p_frames:  # fast: the proxy picks one prediction per source, each +-residual
        # the layer and the in-loop filter come after the search
        searched = [m for m in f["tried"] if DCT_SUFFIX not in m and LOOP_FILTER_SUFFIX not in m]
        assert len(searched) == 8 and not any(m.startswith("intra") for m in searched)
        assert {m.split("+")[0] for m in searched} == {"learned", "dis", "zero", "block8"}
    assert np.isfinite([f["J"] for f in s["per_frame"]]).all()


def test_the_chroma_step_flag_overrides_the_preset_and_refuses_bad_ratios(
        tmp_path: Path) -> None:
    medium = load_encoder_settings("medium")
    plain = medium.with_overrides(chroma_step_ratio=1.0)
    assert plain.dct == dataclasses.replace(medium.dct, chroma_step_ratio=1.0)
    both = medium.with_overrides(dct_steps=(1.0,), chroma_step_ratio=0.5)
    assert (both.dct.step_factors, both.dct.chroma_step_ratio) == ((1.0,), 0.5)
    src = write_yuv(tmp_path / "clip_176x144_30.yuv", carphone_frames(1))
    for bad in ("0", "4", "-1", "fine"):
        result = run_tool("dvc_edic.encode_sequence", src, "--chroma-step", bad, "-q")
        assert result.returncode == 2 and "--chroma-step" in result.stderr, (bad, result.stderr)
    for bad in ("0", "-2", "inf", "nan", "heavy"):
        result = run_tool("dvc_edic.encode_sequence", src, "--chroma-weight", bad, "-q")
        assert result.returncode == 2 and "--chroma-weight" in result.stderr, (bad, result.stderr)


def test_intra_frames_may_carry_their_own_quality(tiny_model) -> None:
    frames = _middle(3)
    boosted = EncoderSettings("test", ("learned",), skip_residual=False, intra_fallback=False,
                              dis_preset="ultrafast", intra_quality_offset=1.5)
    enc = SequenceEncoder(tiny_model, _info(frames[0]), 4.0, 2, settings=boosted)
    data, recons, _ = _code(enc, frames)
    packets = list(BitstreamReader(data))
    assert [p.frame_type for p in packets] == [FrameType.I, FrameType.P, FrameType.I]
    assert [("q" in {s.name for s in p.sections}) for p in packets] == [True, False, True]
    assert _decode(tiny_model, data) == recons
    plain = SequenceEncoder(tiny_model, _info(frames[0]), 4.0, 2,
                            settings=boosted.with_overrides(intra_quality_offset=0.0))
    plain_data, _, _ = _code(plain, frames)
    assert len(plain_data) < len(data)  # a higher quality costs bits
    capped = SequenceEncoder(tiny_model, _info(frames[0]), 7.5, 2, settings=boosted)
    assert capped._intra_quality() == tiny_model.quality_levels


def test_p_frames_follow_the_quality_pattern_by_gop_position(tiny_model) -> None:
    from dvc_edic.packets import frame_quality

    frames = _middle(6)
    pattern = EncoderSettings("test", ("learned",), skip_residual=False, intra_fallback=False,
                              dis_preset="ultrafast", p_quality_offsets=(1.0, -0.5))
    enc = SequenceEncoder(tiny_model, _info(frames[0]), 4.0, 4, settings=pattern)
    data, recons, _ = _code(enc, frames)
    packets = list(BitstreamReader(data))
    assert [p.frame_type for p in packets] == [FrameType.I, *[FrameType.P] * 3,
                                               FrameType.I, FrameType.P]
    got = [frame_quality(p, 4.0, tiny_model.quality_range) for p in packets]
    # GOP positions 0 1 2 3 | 0 1: P at odd positions -0.5, at even ones +1; I-frames as set
    assert got == [4.0, 3.5, 5.0, 3.5, 4.0, 3.5]
    assert _decode(tiny_model, data) == recons


def test_the_gop_tail_codes_the_last_p_frames_at_their_offsets(tiny_model) -> None:
    """The tail counts back from the next I-frame, so it lands on the same frames
    whatever the intra period, adds to the position pattern, and without a period (one
    I-frame) there is no tail."""
    from dvc_edic.packets import frame_quality

    frames = _middle(7)
    base = EncoderSettings("test", ("learned",), skip_residual=False, intra_fallback=False,
                           dis_preset="ultrafast")

    def qualities(settings: EncoderSettings, period: int) -> list[float]:
        enc = SequenceEncoder(tiny_model, _info(frames[0]), 4.0, period, settings=settings)
        data, recons, _ = _code(enc, frames)
        assert _decode(tiny_model, data) == recons
        return [frame_quality(p, 4.0, tiny_model.quality_range) for p in BitstreamReader(data)]

    tail = dataclasses.replace(base, gop_tail_offsets=(-0.5, -1.0))
    # GOP positions 0 1 2 3 4 | 0 1: the last two P-frames of a 5-frame GOP, and the
    # second GOP's P-frame is its GOP's second-to-last frame (period 5: 4 frames left)
    assert qualities(tail, 5) == [4.0, 4.0, 4.0, 3.5, 3.0, 4.0, 4.0]
    assert qualities(tail, 3) == [4.0, 3.5, 3.0, 4.0, 3.5, 3.0, 4.0]
    assert qualities(tail, -1) == [4.0] * 7
    both = dataclasses.replace(tail, p_quality_offsets=(0.0, 1.0))
    assert qualities(both, 3) == [4.0, 4.5, 3.0, 4.0, 4.5, 3.0, 4.0]
    with pytest.raises(InputError, match="finite"):
        dataclasses.replace(base, gop_tail_offsets=(math.nan,))


def test_an_intra_coded_residual_decodes_exactly(tiny_model) -> None:
    frames = _middle(3)
    settings = ALL_MODES.with_overrides(motion=("block", "zero"))

    def forced(candidates: list[Candidate], source: Frame, rd: Rd) -> Decision:
        decision = choose(candidates, source, rd)
        if len(candidates) == 1:
            return decision
        base = next(c for c in candidates if c.with_intra_residual is not None)
        other = base.with_intra_residual()
        other.price(source, rd)
        return Decision(other, None, candidates)

    enc = SequenceEncoder(tiny_model, _info(frames[0]), 5.0, -1, settings=settings,
                          chooser=forced)
    data, recons, reports = _code(enc, frames)
    for packet, report in zip(list(BitstreamReader(data))[1:], reports[1:], strict=True):
        names = {s.name for s in packet.sections}
        assert {"ires_z", "ires_y"} <= names and not names & {"res_z", "res_y"}
        assert report["mode"].endswith("+ires")
    assert _decode(tiny_model, data) == recons


def test_the_intra_residual_is_kept_only_when_it_costs_less(tiny_model) -> None:
    frames = _middle(3)
    settings = ALL_MODES.with_overrides(motion=("block", "zero"), intra_residual=True)
    enc = SequenceEncoder(tiny_model, _info(frames[0]), 5.0, -1, settings=settings)
    data, recons, reports = _code(enc, frames)
    for r in reports[1:]:
        assert sum(m.endswith("+ires") for m in r["tried"]) == 1
        assert r["J"] == min(r["tried"].values())
    assert _decode(tiny_model, data) == recons


def test_lambda_scale_weighs_every_decision(tiny_model) -> None:
    from dvc_edic.errors import InputError

    frames = carphone_frames(1)
    base = SequenceEncoder(tiny_model, _info(frames[0]), 4.0, -1, settings=ALL_MODES)
    half = SequenceEncoder(tiny_model, _info(frames[0]), 4.0, -1,
                           settings=ALL_MODES.with_overrides(lambda_scale=0.5))
    assert half.lam == pytest.approx(0.5 * base.lam)
    assert half._lambda(6.0) == pytest.approx(0.5 * base._lambda(6.0))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="lambda_scale"):
            ALL_MODES.with_overrides(lambda_scale=bad)
        with pytest.raises(InputError, match="chroma_weight"):
            ALL_MODES.with_overrides(chroma_weight=bad)


def test_chroma_weight_buys_chroma_quality_and_decodes_exactly(tiny_model) -> None:
    """Weighing chroma more moves quality from Y to U and V (or costs more bits for it)
    through the same decisions, and the stream still decodes to the encoder's frames."""
    from dvc_edic.metrics import plane_psnrs

    frames = carphone_frames(2)
    out = {}
    for weight in (1.0, 8.0):
        settings = ALL_MODES.with_overrides(motion=("block", "zero"), chroma_weight=weight,
                                            refine_steps=4, dct_steps=(1.0,), loop_filter=True)
        enc = SequenceEncoder(tiny_model, _info(frames[0]), 4.0, -1, settings=settings)
        data, recons, _ = _code(enc, frames)
        assert _decode(tiny_model, data) == recons
        psnrs = np.array([plane_psnrs(f, r) for f, r in zip(frames, recons, strict=True)])
        out[weight] = (len(data), psnrs.mean(axis=0))
    (bytes_1, (y1, u1, v1)), (bytes_8, (y8, u8, v8)) = out[1.0], out[8.0]
    assert (u8 + v8) - (u1 + v1) > 0.0 or bytes_8 > bytes_1
    assert (u8 + v8) - (u1 + v1) >= (y8 - y1)  # chroma gains against luma


def test_residual_quality_search_keeps_the_lowest_cost_and_decodes_exactly(tiny_model) -> None:
    """Each P position tries the best residual at the neighbouring qualities; the winner has
    the lowest J of all that was tried, and a packet at another quality carries it."""
    frames = _middle(3)
    settings = ALL_MODES.with_overrides(motion=("block", "zero"),
                                        residual_quality_deltas=(-1.0, 1.0))
    enc = SequenceEncoder(tiny_model, _info(frames[0]), 4.0, -1, settings=settings)
    data, recons, reports = _code(enc, frames)
    for r in reports[1:]:
        assert {"@q3", "@q5"} <= {m[m.index("@"):] for m in r["tried"] if "@" in m}
        assert r["J"] == min(r["tried"].values())
    for packet, r in zip(list(BitstreamReader(data))[1:], reports[1:], strict=True):
        has_q = "q" in {s.name for s in packet.sections}
        assert has_q == (r["residual_quality"] not in (None, 4.0))
    assert _decode(tiny_model, data) == recons


def test_block_fields_at_every_precision_are_candidates_and_decode_exactly(tiny_model) -> None:
    frames = _middle(3)
    block = BlockSearchSettings(block_log2=(4, 3), extra_precisions=(2,), size_choice="code")
    settings = EncoderSettings("test", ("block",), skip_residual=True, intra_fallback=False,
                               dis_preset="ultrafast", plain_warp="proxy", block=block)
    enc = SequenceEncoder(tiny_model, _info(frames[0]), 4.0, -1, settings=settings)
    data, recons, reports = _code(enc, frames)
    for report in reports[1:]:
        assert {m.split("+")[0] for m in report["tried"]} == {
            "block16", "block8", "block16p2", "block8p2"}
    assert _decode(tiny_model, data) == recons


def test_each_field_takes_the_kernel_that_predicts_closer(tiny_model) -> None:
    """A frame that is the cubic warp of a sharp reference by a half sample is predicted
    closer by the cubic kernel, one that is its bilinear warp by the bilinear one; the
    choice is the field's flag, and the packet decodes to the encoder's reconstruction."""
    from dvc_edic.encoder.decision import _kernel_choice

    pf = tiny_model.pframe
    g = torch.Generator().manual_seed(11)
    ref = torch.rand(1, 6, 32, 48, generator=g)  # sharp: every sample independent
    half = BlockMotion(np.full((2, 4, 6), 4, dtype=np.int32), 3, 3)  # 1/2 sample each way
    flow = half.to_flow(ref)
    both = ("bilinear", "cubic")
    for kernel in both:
        x = warp_planes(ref, flow, "yuv420", kernel)
        picture = Picture(x, (32, 48), lambda t: t)
        chosen = _kernel_choice(pf, picture, ref, half, both)
        assert chosen.kernel == kernel
        assert _kernel_choice(pf, picture, ref, half, ("bilinear",)).kernel == "bilinear"
    frames = _middle(3)
    block = BlockSearchSettings(block_log2=(4,), kernels=both, kernel_rounds=1)
    settings = EncoderSettings("test", ("block",), skip_residual=True, intra_fallback=False,
                               dis_preset="ultrafast", plain_warp="proxy", block=block)
    enc = SequenceEncoder(tiny_model, _info(frames[0]), 4.0, -1, settings=settings)
    data, recons, _ = _code(enc, frames)
    assert _decode(tiny_model, data) == recons


def test_the_block_kernels_flag_overrides_the_preset() -> None:
    from dvc_edic.encode_sequence import build_parser

    medium = load_encoder_settings("medium")
    assert medium.block.kernels == ("bilinear", "cubic")
    args = build_parser().parse_args(["x.yuv", "--block-kernels", "cubic"])
    assert medium.with_overrides(block_kernels=args.block_kernels).block.kernels == ("cubic",)
    for bad in ("lanczos", "cubic,cubic", ""):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["x.yuv", "--block-kernels", bad])
    with pytest.raises(ValueError, match="kernels"):
        BlockSearchSettings(kernels=("nearest",))


def test_the_block_precisions_flag_overrides_the_preset() -> None:
    from dvc_edic.encode_sequence import build_parser

    medium = load_encoder_settings("medium")
    args = build_parser().parse_args(["x.yuv", "--block-precisions", "2,3"])
    both = medium.with_overrides(block_precisions=args.block_precisions).block
    assert (both.precision_log2, both.extra_precisions) == (2, (3,))
    assert both.block_log2 == medium.block.block_log2
    for bad in ("4", "3,3", "-1", "half"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["x.yuv", "--block-precisions", bad])
