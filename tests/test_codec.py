"""Sequence coding end to end: real streams, exact decoding, sizes, GOP, CLIs."""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from dvc_edic.bitstream import BitstreamReader, BitstreamWriter, FrameType, header_size
from dvc_edic.codec import SequenceDecoder, SequenceEncoder
from dvc_edic.encoder import EncoderSettings
from dvc_edic.encoder.settings import load_encoder_settings
from dvc_edic.errors import WeightsError
from dvc_edic.io import Frame, VideoInfo, open_video
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.weights import load_weights, save_weights
from tests.conftest import carphone_frames, make_tiny_model, run_tool, smooth_frame, write_yuv


def _encode(model, frames, quality=4.0, intra_period=3):
    f0 = frames[0]
    info = VideoInfo(width=f0.width, height=f0.height, fps=Fraction(30), bit_depth=f0.bit_depth)
    return _encode_with(SequenceEncoder(model, info, quality, intra_period), frames)


def _encode_with(enc: SequenceEncoder, frames):
    """(stream bytes, reconstructions, packet sizes, header) from a ready encoder."""
    buf = io.BytesIO()
    writer = BitstreamWriter(buf, enc.header)
    recons, sizes = [], []
    for f in frames:
        packet, recon = enc.encode(f)
        sizes.append(writer.write_packet(packet))
        recons.append(recon)
    writer.finalize()
    return buf.getvalue(), recons, sizes, enc.header


def _decode(model, data: bytes):
    reader = BitstreamReader(data)
    dec = SequenceDecoder(model, reader.header)
    return [dec.decode(p) for p in reader]


def test_carphone_round_trip_is_exact(tiny_model) -> None:
    frames = carphone_frames(5)
    data, recons, sizes, header = _encode(tiny_model, frames)
    assert len(data) == header_size(header) + sum(sizes)
    decoded = _decode(tiny_model, data)
    assert len(decoded) == 5
    assert all(d == r for d, r in zip(decoded, recons, strict=True))
    types = [p.frame_type for p in BitstreamReader(data)]
    assert types == [FrameType.I, FrameType.P, FrameType.P, FrameType.I, FrameType.P]


@pytest.mark.parametrize("size", [(240, 426), (136, 200), (64, 64)])
def test_odd_multiple_sizes_work(tiny_model, size: tuple[int, int]) -> None:
    h, w = size
    frames = [smooth_frame(h, w, seed) for seed in range(2)]
    data, recons, _, _ = _encode(tiny_model, frames)
    decoded = _decode(tiny_model, data)
    assert [(d.height, d.width) for d in decoded] == [size, size]
    assert all(d == r for d, r in zip(decoded, recons, strict=True))


def test_ten_bit_round_trip(tiny_model) -> None:
    frames = [smooth_frame(64, 96, s, bit_depth=10) for s in range(2)]
    data, recons, _, header = _encode(tiny_model, frames)
    assert header.bit_depth == 10
    decoded = _decode(tiny_model, data)
    assert all(d == r and d.y.dtype == np.uint16 for d, r in zip(decoded, recons, strict=True))


@pytest.fixture(scope="module")
def shared_model():
    """The tiny model (as the tiny_model fixture makes it), for the tests below that only
    encode and decode with it and so can share it and its first encode."""
    return make_tiny_model()


@pytest.fixture(scope="module")
def carphone_ipp(shared_model) -> tuple[list[Frame], bytes, list[Frame]]:
    """(frames, stream, the encoder's reconstructions) of I, P, P carphone frames."""
    frames = carphone_frames(3)
    data, recons, _, _ = _encode(shared_model, frames, intra_period=-1)
    return frames, data, recons


def test_decode_with_one_and_two_threads_is_identical(shared_model, carphone_ipp) -> None:
    _, data, recons = carphone_ipp
    previous = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(_decode(shared_model, data))
    finally:
        torch.set_num_threads(previous)
    assert all(a == b == r for a, b, r in zip(*outs, recons, strict=True))


def test_encoding_twice_gives_identical_bytes(shared_model, carphone_ipp) -> None:
    """The same model encodes the same frames a second time (the first encode is the
    shared fixture's, made earlier in this module) to the same bytes."""
    frames, first, _ = carphone_ipp
    assert _encode(shared_model, frames, intra_period=-1)[0] == first


def test_pframe_forward_likelihoods(tiny_model) -> None:
    pf = tiny_model.pframe.train()
    x, ref = torch.rand(2, 6, 64, 64), torch.rand(2, 6, 64, 64)
    out = pf(x, ref, torch.tensor([2.0, 7.0]))
    assert out["x_hat"].shape == x.shape and out["flow"].shape == (2, 2, 64, 64)
    assert set(out["likelihoods"]) == {"mv_y", "mv_z", "res_y", "res_z"}
    for v in out["likelihoods"].values():
        assert torch.all(v > 0) and torch.all(v <= 1)


def test_pframe_compress_decompress_equal(tiny_model) -> None:
    x, ref = torch.rand(1, 6, 48, 64), torch.rand(1, 6, 48, 64)
    latents, x_enc = tiny_model.pframe.compress(x, ref, 3.0)
    assert torch.equal(x_enc, tiny_model.pframe.decompress(latents, ref, 3.0))


def test_other_weights_are_refused(tiny_model, tmp_path: Path) -> None:
    data, *_ = _encode(tiny_model, carphone_frames(1))
    torch.manual_seed(1)

    other = VideoCodecModel(tiny_model.preset)
    other.update_entropy_tables()
    with pytest.raises(WeightsError, match="weights"):
        _decode(other.eval(), data)


def test_intra_fallback_keeps_the_cheaper_candidate_and_decodes_exactly(
    tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a P position the encoder may code intra; the decoder follows the packet's type."""
    import dvc_edic.encoder.decision as decision

    frames = carphone_frames(3)
    info = VideoInfo(width=176, height=144, fps=Fraction(30), bit_depth=8)
    seen: list[int] = []

    def intra_is_cheaper(source, recon, bits, lam, chroma_weight=1.0) -> float:
        seen.append(bits)  # the I position first, then P and I at each P position
        return 0.0 if len(seen) % 2 == 1 else 1.0

    real_cost = decision.rd_cost
    monkeypatch.setattr(decision, "rd_cost", intra_is_cheaper)
    one_p_mode = EncoderSettings("test", ("learned",), skip_residual=False, intra_fallback=True,
                                 dis_preset="ultrafast")
    enc = SequenceEncoder(tiny_model, info, 4.0, intra_period=12, settings=one_p_mode)
    data, recons, _, _ = _encode_with(enc, frames)
    assert enc.fallbacks == 2 and len(seen) == 5  # P and I costed at each P position
    decoded = _decode(tiny_model, data)
    assert [p.frame_type for p in BitstreamReader(data)] == [FrameType.I] * 3
    assert all(d == r for d, r in zip(decoded, recons, strict=True))

    monkeypatch.setattr(decision, "rd_cost", real_cost)
    fixed = SequenceEncoder(tiny_model, info, 4.0, intra_period=12, intra_fallback=False)
    assert [fixed.encode(f)[0].frame_type for f in frames] == [FrameType.I] + [FrameType.P] * 2


def test_rd_cost_is_the_training_loss_per_frame() -> None:
    from dvc_edic.encoder.decision import rd_cost

    y = np.full((4, 4), 100, np.uint8)
    u = v = np.full((2, 2), 100, np.uint8)
    src = Frame(y, u, v, 8)
    off = Frame(y + 1, u, v, 8)  # 16 of 24 samples off by 1 (of 255)
    assert rd_cost(src, src, 40, 0.5) == 40.0
    assert rd_cost(src, off, 0, 0.5) == pytest.approx(0.5 * 255.0**2 * (16 / 255**2 / 24) * 16)


def test_pooled_mse_is_the_mse_training_sees_on_the_model_tensor() -> None:
    from dvc_edic.metrics import pooled_mse
    from dvc_edic.representation import frame_to_tensor

    a, b = carphone_frames(2)
    ta, tb = (frame_to_tensor(f, "yuv420") for f in (a, b))
    assert pooled_mse(a, b) == pytest.approx(float(((ta - tb) ** 2).mean()), rel=1e-5)


def test_chroma_weight_counts_chroma_error_that_many_times_in_j_and_in_refinement() -> None:
    """The encoder's J on frames and the refinement's distortion on the model tensor must
    weigh chroma alike, or a refined winner would be judged by another measure."""
    from dvc_edic.encoder.decision import Rd
    from dvc_edic.representation import frame_to_tensor

    y = np.full((4, 4), 100, np.uint8)
    u = v = np.full((2, 2), 100, np.uint8)
    src = Frame(y, u, v, 8)
    luma_off, chroma_off = Frame(y + 2, u, v, 8), Frame(y, u + 2, v, 8)
    plain, heavy = Rd(0.5), Rd(0.5, chroma_weight=3.0)
    assert heavy.cost(src, luma_off, 7) == plain.cost(src, luma_off, 7)
    assert heavy.cost(src, chroma_off, 0) == pytest.approx(3 * plain.cost(src, chroma_off, 0))
    assert heavy.plane_weights(src) == pytest.approx(
        tuple(w * c for w, c in zip(plain.plane_weights(src), (1, 3, 3), strict=True)))

    a, b = carphone_frames(2)
    ta, tb = (frame_to_tensor(f, "yuv420") for f in (a, b))
    for rd in (plain, heavy):
        picture = rd.picture(ta, (ta.shape[2], ta.shape[3]), lambda t: a, "yuv420")
        weighted_mse = rd.cost(a, b, 0) / rd.weight(a)
        assert float(picture.mse(tb)) == pytest.approx(weighted_mse, rel=1e-5)
    rgb = heavy.picture(frame_to_tensor(a, "rgb"), (a.height, a.width), lambda t: a, "rgb")
    assert rgb.channel_weights is None  # rgb channels mix the planes


# Each CLI test runs in this process by default (the tools' cli(), as `python -m` calls it)
# and, under -m slow, again in fresh interpreters as a user runs them; test_determinism and
# test_startup keep a fresh-interpreter run of the `-m` entry points in the default run.
IN_PROCESS_AND_FRESH = pytest.mark.parametrize(
    "fresh", [False, pytest.param(True, marks=pytest.mark.slow)],
    ids=["in_process", "fresh_interpreter"])


CLI_FRAMES = 3  # I, P, and a P whose reference is a P-frame


@IN_PROCESS_AND_FRESH
def test_cli_encode_decode_carphone(tiny_model, tmp_path: Path, fresh: bool) -> None:
    weights = tmp_path / "tiny.safetensors"
    save_weights(tiny_model, weights)
    assert load_weights(weights).model_id == tiny_model.model_id
    src = write_yuv(tmp_path / "carphone_176x144_30.yuv", carphone_frames(CLI_FRAMES))
    stream, stats = tmp_path / "c.dvce", tmp_path / "stats.json"
    enc = run_tool("dvc_edic.encode_sequence", src, "-o", stream, "--weights", weights,
                   "--quality", "5", "--intra-period", "12", "--stats", stats, "-q", fresh=fresh)
    assert enc.returncode == 0, enc.stderr
    assert "bpp" in enc.stdout and "PSNR-YUV" in enc.stdout
    s = json.loads(stats.read_text())
    assert s["file_bytes"] == stream.stat().st_size and s["frames"] == CLI_FRAMES
    assert [f["type"] for f in s["per_frame"]] == ["I", "P", "P"]
    out = tmp_path / "dec.yuv"
    dec = run_tool("dvc_edic.decode_sequence", stream, "-o", out, "--weights", weights, "-q",
                   fresh=fresh)
    assert dec.returncode == 0, dec.stderr
    with open_video(out, width=176, height=144) as r:
        assert r.info.num_frames == CLI_FRAMES
    # the encoder's own reconstruction, computed in-process, matches the decoded file
    _, recons, _, _ = _encode(tiny_model, carphone_frames(CLI_FRAMES), quality=5.0, intra_period=12)
    with open_video(out, width=176, height=144) as r:
        assert all(d == e for d, e in zip(r, recons, strict=True))


def test_cli_refuses_an_existing_output_and_the_wrong_weights(
        tiny_model, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both errors are one line and leave no file behind."""
    from dvc_edic import decode_sequence, encode_sequence

    weights = tmp_path / "tiny.safetensors"
    save_weights(tiny_model, weights)
    src = write_yuv(tmp_path / "carphone_176x144_30.yuv", carphone_frames(2))
    stream = tmp_path / "c.dvce"
    common = ["--threads", str(torch.get_num_threads()), "-q"]
    args = [str(src), "-o", str(stream), "--weights", str(weights), "--preset", "fast", *common]
    assert encode_sequence.cli(args) == 0
    capsys.readouterr()
    assert encode_sequence.cli(args) == 1 and "already exists" in capsys.readouterr().err
    wrong = tmp_path / "x.yuv"
    assert decode_sequence.cli([str(stream), "-o", str(wrong), *common]) == 1
    assert "weights" in capsys.readouterr().err and not wrong.exists()


@IN_PROCESS_AND_FRESH
def test_cli_image_round_trip(tiny_model, tmp_path: Path, fresh: bool) -> None:
    from PIL import Image

    weights = tmp_path / "tiny.safetensors"
    save_weights(tiny_model, weights)
    f = smooth_frame(70, 92, 3)
    rgb = np.stack([f.y, np.resize(f.u, f.y.shape), np.resize(f.v, f.y.shape)], axis=-1)
    rgb = np.ascontiguousarray(rgb[:, :91])  # odd width: padded and cropped back
    png = tmp_path / "in.png"
    Image.fromarray(rgb).save(png)
    stream, back = tmp_path / "in.dvce", tmp_path / "back.png"
    enc = run_tool("dvc_edic.image", "encode", png, stream, "--weights", weights,
                   "--quality", "6.5", fresh=fresh)
    assert enc.returncode == 0, enc.stderr
    assert "bpp" in enc.stdout and "PSNR-RGB" in enc.stdout
    dec = run_tool("dvc_edic.image", "decode", stream, back, "--weights", weights, fresh=fresh)
    assert dec.returncode == 0, dec.stderr
    assert np.asarray(Image.open(back)).shape == (70, 91, 3)


def test_image_pixel_cap_is_refused_naming_the_file(tiny_model, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A 70x92 (padded) image is refused under 6440 pixels, encoding and decoding."""
    from PIL import Image

    from dvc_edic import image

    weights = tmp_path / "tiny.safetensors"
    save_weights(tiny_model, weights)
    f = smooth_frame(70, 92, 3)
    rgb = np.ascontiguousarray(np.stack([f.y, f.y, f.y], axis=-1)[:, :91])
    png, stream = tmp_path / "in.png", tmp_path / "in.dvce"
    Image.fromarray(rgb).save(png)
    threads = ["--threads", str(torch.get_num_threads())]
    assert image.cli(["encode", str(png), str(stream), "--weights", str(weights), *threads]) == 0
    capsys.readouterr()
    small = tmp_path / "s.dvce"
    assert image.cli(["encode", str(png), str(small), "--weights", str(weights),
                      "--max-pixels", "6439", *threads]) == 1
    err = capsys.readouterr().err
    assert str(png) in err and "--max-pixels" in err and not small.exists()
    assert image.cli(["decode", str(stream), str(tmp_path / "s.png"), "--weights", str(weights),
                      "--max-pixels", "6439", *threads]) == 1
    assert "max_pixels" in capsys.readouterr().err


@pytest.mark.parametrize("quality", [0.5, 8.5])
def test_quality_outside_the_ladder_is_an_input_error(tiny_model, quality: float) -> None:
    from dvc_edic.errors import InputError

    info = VideoInfo(width=64, height=64, fps=Fraction(30), bit_depth=8)
    with pytest.raises(InputError, match="between 1 and 8"):
        SequenceEncoder(tiny_model, info, quality, 12)


def test_paper_preset_codes_a_short_sequence_exactly() -> None:
    """The GPU-sized preset is built from the same code; check it really codes, on a tiny clip."""
    from dvc_edic.models.preset import Preset

    torch.manual_seed(0)
    model = VideoCodecModel(Preset.load("paper"))
    model.update_entropy_tables()
    model.eval()
    frames = [smooth_frame(64, 96, s) for s in range(2)]
    data, recons, _, header = _encode(model, frames)
    assert header.model_id == model.model_id and model.model_id.startswith("dvc_edic-paper-v1-")
    assert all(d == r for d, r in zip(_decode(model, data), recons, strict=True))


def test_all_intra_codes_each_quality_as_asked(tiny_model) -> None:
    """With intra period 1 (and so for still images) no P-frame predicts from the I-frames,
    so the preset's intra quality offset must not apply: quality 7 and 8 were once the same
    stream, both clamped to the top of the ladder."""
    from dvc_edic import image

    f = smooth_frame(48, 64, 5)
    rgb = np.ascontiguousarray(np.stack([f.y, f.u.repeat(2, 0).repeat(2, 1),
                                         f.v.repeat(2, 0).repeat(2, 1)], axis=-1))
    settings = load_encoder_settings().with_overrides(intra_quality_offset=1.0)
    info = VideoInfo(f.y.shape[1], f.y.shape[0], Fraction(25), 8)
    top = tiny_model.quality_range.high
    assert SequenceEncoder(tiny_model, info, top - 1, 1, settings=settings).intra_offset == 0
    assert SequenceEncoder(tiny_model, info, top - 1, 12, settings=settings).intra_offset == 1
    streams = {q: image.encode_image(rgb, tiny_model, q)[0] for q in (top - 1, top)}
    assert streams[top - 1] != streams[top]
    for data in streams.values():  # the I packet carries no quality of its own
        (packet,) = BitstreamReader(data).read_all()
        assert "q" not in {s.name for s in packet.sections}
