"""Determinism: across runs, across thread counts, and what holds between CPU and GPU.

What is promised (docs/architecture.md, Entropy coding and exactness):
- the same input, weights and flags encode to the same bytes in every run;
- a stream decodes to the same samples with any number of CPU threads, and
  those are the encoder's own reconstruction;
- CPU and GPU: the decoder's probability tables come from integers (the GMM
  parameters are quantized to fixed grids before any CDF is built), so a
  stream decodes on a GPU exactly when the GPU's float networks land every
  parameter on the same grid cell as the CPU's. The GPU test below checks
  precisely that, plus the reconstructed samples; it is skipped without CUDA.

The two CLI tests under -m slow run every command in its own fresh interpreter, so
nothing cached in one process (tables, seeds, thread pools) can make two runs agree by
accident. The default run keeps one fresh interpreter, which encodes, and compares it
with this process, which encodes the same input again and decodes with 1 and 2 threads
(each start of an interpreter costs seconds of importing torch).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dvc_edic.models.video import VideoCodecModel
from dvc_edic.weights import save_weights
from tests.conftest import (
    carphone_frames,
    finish_tool,
    run_tool,
    start_tool,
    tiny_preset,
    write_yuv,
)

FRAMES = 3  # I, P, P with --intra-period -1
ENCODE_THREADS = "2"  # the CLI default
QUALITY = 4.0


def _run(module: str, *args: str | Path, fresh: bool = True) -> None:
    result = run_tool(module, *args, fresh=fresh)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("determinism")
    torch.manual_seed(0)
    weights = d / "tiny.safetensors"
    save_weights(VideoCodecModel(tiny_preset()), weights)
    clip = write_yuv(d / "carphone_176x144_30.yuv", carphone_frames(FRAMES))
    return {"dir": d, "weights": weights, "clip": clip}


def _encode_args(files: dict[str, Path], out: Path) -> tuple[str | Path, ...]:
    return (files["clip"], "-o", out, "--weights", files["weights"], "--intra-period", "-1",
            "--threads", ENCODE_THREADS, "-q")


def _encode(files: dict[str, Path], out: Path, fresh: bool = True) -> Path:
    _run("dvc_edic.encode_sequence", *_encode_args(files, out), fresh=fresh)
    return out


def _decode(files: dict[str, Path], stream: Path, threads: str, fresh: bool = True) -> bytes:
    out = files["dir"] / f"{stream.stem}_decoded_{threads}_{'fresh' if fresh else 'here'}.yuv"
    _run("dvc_edic.decode_sequence", stream, "-o", out, "--weights", files["weights"],
         "--threads", threads, "-q", fresh=fresh)  # fmt: skip
    return out.read_bytes()


def test_a_fresh_interpreter_and_this_process_agree(files: dict[str, Path]) -> None:
    """The default run's twin of the two tests below: one fresh interpreter encodes; this
    process encodes the same bytes and decodes them to the same samples with 1 and 2
    threads (test_codec checks in process that those are the encoder's reconstruction).
    The fresh interpreter runs while this process works (they share only the inputs)."""
    fresh_out = files["dir"] / "fresh.dvce"
    proc = start_tool("dvc_edic.encode_sequence", *_encode_args(files, fresh_out))
    try:
        here = _encode(files, files["dir"] / "here.dvce", fresh=False)
        one, two = (_decode(files, here, threads, fresh=False) for threads in ("1", "2"))
        fresh = finish_tool(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert fresh.returncode == 0, fresh.stderr
    assert here.read_bytes() == fresh_out.read_bytes()
    assert one == two and len(one) == FRAMES * 176 * 144 * 3 // 2


@pytest.mark.slow  # twin in the default run: the test above
def test_encoding_twice_gives_identical_bytes(files: dict[str, Path]) -> None:
    first = _encode(files, files["dir"] / "first.dvce").read_bytes()
    second = _encode(files, files["dir"] / "second.dvce").read_bytes()
    assert first == second


@pytest.mark.slow  # twin in the default run: test_a_fresh_interpreter_and_this_process_agree
def test_decoding_with_one_and_two_threads_gives_identical_files(files: dict[str, Path]) -> None:
    stream = files["dir"] / "first.dvce"
    if not stream.exists():
        _encode(files, stream)
    outputs = [_decode(files, stream, threads) for threads in ("1", "2")]
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == FRAMES * 176 * 144 * 3 // 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: compares GPU with CPU")
def test_gpu_decoder_networks_match_the_cpu() -> None:
    """The decoder's float networks fed the same integer latents on CPU and CUDA (TF32 off).

    Compared, for a carphone I-frame coded on the CPU:
    1. the quantized GMM parameters (the integers every CDF is built from) that
       hyper-synthesis computes from the decoded z: equal means a CPU-made
       stream is entropy-decodable on the GPU;
    2. the 8-bit output samples that synthesis and enhancement make from the
       same integer y.
    Private `_mixture` is used because no public method stops at the parameters.
    """
    from dvc_edic.entropy.quantize import quantize_gmm
    from dvc_edic.entropy.zcoder import decode_z
    from dvc_edic.representation import frame_to_tensor, pad_to_multiple, tensor_to_frame

    models = []
    for _ in range(2):  # two identical models (the entropy coder cannot be deep-copied)
        torch.manual_seed(0)
        models.append(VideoCodecModel(tiny_preset()))
        models[-1].update_entropy_tables()
    model = models[0]
    cpu, gpu = model.eval().intra, models[1].eval().intra.to("cuda")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    frame = carphone_frames(1)[0]
    x, _ = pad_to_multiple(frame_to_tensor(frame, model.representation), model.stride)
    latents, _ = cpu.compress(x, QUALITY)
    z_hat = decode_z(latents.z, latents.z_shape, cpu.z_bottleneck)
    y_size = latents.y_shape[1:]
    with torch.no_grad():
        q_cpu = quantize_gmm(*cpu._mixture(z_hat, y_size), cpu.entropy_cfg)
        q_gpu = quantize_gmm(*gpu._mixture(z_hat.cuda(), y_size), gpu.entropy_cfg)
        for name in ("weights", "means", "scale_idx"):
            a, b = getattr(q_cpu, name), getattr(q_gpu, name)
            assert (a == b).all(), f"quantized GMM {name}: {int((a != b).sum())} elements differ"
        g = torch.Generator().manual_seed(0)
        y_hat = torch.randint(-4, 5, (1, *latents.y_shape), generator=g).float()
        out_cpu = cpu.reconstruct(y_hat, QUALITY)
        out_gpu = gpu.reconstruct(y_hat.cuda(), QUALITY).cpu()
    h, w = frame.height // 2, frame.width // 2  # the yuv420 model tensor, unpadded
    assert tensor_to_frame(out_cpu[..., :h, :w], model.representation, 8) == tensor_to_frame(
        out_gpu[..., :h, :w], model.representation, 8
    )
