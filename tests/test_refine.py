"""Latent refinement: it lowers the real R + lambda*D, never raises it, and stays exact."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from dvc_edic.bitstream import BitstreamReader, BitstreamWriter
from dvc_edic.codec import SequenceDecoder, SequenceEncoder
from dvc_edic.encoder import Candidate, Decision, EncoderSettings
from dvc_edic.encoder.decision import Picture, Rd, intra_candidate, refine_chosen
from dvc_edic.encoder.refine import RefineSettings, round_soft_grad, soft_round
from dvc_edic.encoder.settings import BlockSearchSettings, _merged
from dvc_edic.errors import InputError
from dvc_edic.io import Frame, VideoInfo
from tests.conftest import carphone_frames, write_yuv

REFINE = RefineSettings(steps=6, lr=0.01)


def _info(frame: Frame) -> VideoInfo:
    return VideoInfo(width=frame.width, height=frame.height, fps=Fraction(30),
                     bit_depth=frame.bit_depth)


def test_rounding_surrogate_rounds_forward_and_passes_a_gradient() -> None:
    x = torch.tensor([-1.7, -0.2, 0.3, 0.49, 0.51, 2.5001], requires_grad=True)
    y = round_soft_grad(x, 4.0)
    assert torch.equal(y.detach(), torch.round(x.detach()))
    y.sum().backward()
    assert (x.grad > 0).all()
    assert torch.allclose(soft_round(x.detach(), 1e-3), x.detach(), atol=1e-3)
    away = torch.tensor([-1.7, -0.2, 0.3, 2.2])  # off the half-integers, where it is steep
    assert torch.allclose(soft_round(away, 60.0), torch.round(away), atol=1e-3)


def _intra_j(model, frame: Frame, quality: float, refine: RefineSettings) -> tuple[float, Frame]:
    enc = SequenceEncoder(model, _info(frame), quality, 1)
    x, size = enc._pipe.to_tensor(frame)
    picture = Picture(x, size, lambda t: enc._pipe.round_frame(t, size))
    base = intra_candidate(model, picture, quality)
    decision = refine_chosen(Decision(base, None, [base]), frame, Rd(enc.lam), refine)
    decision.chosen.price(frame, Rd(enc.lam))
    return decision.chosen.cost, decision.chosen


def test_refinement_lowers_the_real_cost_with_the_shipped_weights(shipped_model) -> None:
    frame = carphone_frames(1)[0]
    plain, _ = _intra_j(shipped_model, frame, 4.0, RefineSettings())
    refined, chosen = _intra_j(shipped_model, frame, 4.0, RefineSettings(steps=10, lr=0.01))
    assert chosen.refined
    assert refined < 0.99 * plain  # measured about 3.6 % lower on carphone's first frame


def test_a_refined_winner_that_costs_more_is_not_kept(tiny_model) -> None:
    frame = carphone_frames(1)[0]
    enc = SequenceEncoder(tiny_model, _info(frame), 4.0, 1)
    x, size = enc._pipe.to_tensor(frame)
    base = intra_candidate(tiny_model, Picture(x, size, lambda t: enc._pipe.round_frame(t, size)),
                           4.0)
    worse = Candidate("intra", base.packet, _black(frame), refined=True)
    base.recode = lambda settings, weight: worse
    decision = Decision(base, None, [base])
    base.price(frame, Rd(enc.lam))
    kept = refine_chosen(decision, frame, Rd(enc.lam), REFINE)
    assert kept.chosen is base and not kept.chosen.refined
    better = Candidate("intra", base.packet, frame, refined=True)  # a perfect reconstruction
    base.recode = lambda settings, weight: better
    taken = refine_chosen(decision, frame, Rd(enc.lam), REFINE)
    assert taken.chosen is better and taken.runner_up is base


def _black(frame: Frame) -> Frame:
    return Frame(y=frame.y * 0, u=frame.u * 0, v=frame.v * 0, bit_depth=frame.bit_depth)


def test_refined_streams_decode_to_the_encoders_reconstruction(shipped_model) -> None:
    tiny_model = shipped_model  # an untrained model's refinement rarely beats its analysis
    frames = carphone_frames(3)  # I, P, P: refined latents of both coders
    settings = EncoderSettings("test", ("learned", "zero"), skip_residual=True,
                               intra_fallback=True, dis_preset="ultrafast", plain_warp="proxy",
                               refine=REFINE)
    enc = SequenceEncoder(tiny_model, _info(frames[0]), 5.0, 3, settings=settings)
    buf = io.BytesIO()
    writer = BitstreamWriter(buf, enc.header)
    recons, refined = [], []
    for f in frames:
        packet, recon = enc.encode(f)
        writer.write_packet(packet)
        recons.append(recon)
        refined.append(enc.last_decision.report(f)["refined"])
    writer.finalize()
    assert any(refined)
    reader = BitstreamReader(buf.getvalue())
    dec = SequenceDecoder(tiny_model, reader.header)
    assert [dec.decode(p) for p in reader] == recons


def test_bad_refine_settings_are_refused(tiny_model, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="refine"):
        _merged("medium", {"refine": {"lr": 0.01}}, "refine", {"steps": -1}, RefineSettings)
    with pytest.raises(InputError, match="refine"):
        _merged("medium", {}, "refine", {"steps": 3, "rate": 2}, RefineSettings)
    with pytest.raises(InputError, match="block_motion"):
        _merged("slow", {"block_motion": {"block_log2": [3]}}, "block_motion",
                {"dis_preset": "slowest"}, BlockSearchSettings)
    from dvc_edic import encode_sequence

    src = write_yuv(tmp_path / "clip_176x144_30.yuv", carphone_frames(1))
    with pytest.raises(InputError, match="--refine-steps must be 0 or more, got -1"):
        encode_sequence.main([str(src), "-o", str(tmp_path / "s.dvce"), "--refine-steps", "-1",
                              "--threads", str(torch.get_num_threads())])


def test_the_gop_i_frames_take_their_own_refinement(shipped_model) -> None:
    frames = carphone_frames(2)  # I, P
    settings = EncoderSettings("test", ("zero",), skip_residual=False, intra_fallback=False,
                               dis_preset="ultrafast", refine=RefineSettings(),
                               intra_refine=REFINE)
    assert settings.refine_for(True) == REFINE and settings.refine_for(False).steps == 0
    enc = SequenceEncoder(shipped_model, _info(frames[0]), 4.0, 2, settings=settings)
    refined = []
    for f in frames:
        enc.encode(f)
        refined.append(enc.last_decision.report(f)["refined"])
    assert refined == [True, False]


def test_intra_refine_overrides_the_preset_from_the_command_line() -> None:
    from dvc_edic.encode_sequence import build_parser
    from dvc_edic.encoder.settings import load_encoder_settings

    medium = load_encoder_settings("medium")
    args = build_parser().parse_args(["x.yuv", "--intra-refine", "40,0.003"])
    over = medium.with_overrides(intra_refine=args.intra_refine).refine_for(True)
    assert (over.steps, over.lr, over.alpha_end) == (40, 0.003, medium.refine.alpha_end)
    args = build_parser().parse_args(["x.yuv", "--intra-refine", "0"])
    assert medium.with_overrides(intra_refine=args.intra_refine).refine_for(True).steps == 0
    assert medium.with_overrides().refine_for(False) == medium.refine
    off = medium.with_overrides(refine_steps=0)  # alone, it sets the I-frames' too
    assert off.refine_for(True).steps == 0 and off.refine_for(False).steps == 0
    apart = medium.with_overrides(refine_steps=0, intra_refine=(5, None))
    assert (apart.refine_for(True).steps, apart.refine_for(False).steps) == (5, 0)
    for bad in ("-3", "ten", "40,-0.1", "40,nan"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["x.yuv", "--intra-refine", bad])
