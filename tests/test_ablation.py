"""The equal-budget ablation (eval.ablation): its plan, the CPU budget, the CompressAI
baselines in the training loop, the measurements and the page, on tiny models and
photos made here (nothing downloaded, no data folder)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dvc_edic.cli import EXIT_USAGE
from dvc_edic.config import CONFIG_ROOT, load_preset
from dvc_edic.entropy.factorized import FactorizedBottleneck
from dvc_edic.errors import InputError
from dvc_edic.models.edic import EDIC, CoderConfig
from dvc_edic.models.layers import AttentionBlock, ResidualBlock
from dvc_edic.models.preset import Preset
from dvc_edic.train import load_checkpoint, load_train_config
from dvc_edic.train.baselines import BaselineImageModel, build_model, from_rgb, to_rgb
from dvc_edic.train.loop import Trainer, train
from dvc_edic.train.optim import lr_factor
from eval.ablation.__main__ import main as ablation_main
from eval.ablation.doc import (
    NO,
    UNCLEAR,
    YES,
    Row,
    claim_paragraph,
    claim_verdict,
    pareto_front,
    ranking_changed,
    render,
    rows,
    verdict,
)
from eval.ablation.measure import BaselineCoder, complexity
from eval.ablation.plan import ON_PAR, load_plan, parse_plan, variant_runs
from eval.ablation.runner import Ablation, load_results
from tests.test_eval_image_rd import photo_like

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PLANS = CONFIG_ROOT / "train" / "ablation"
PHOTO_SIZE = (48, 64)
PHOTOS = 4
TINY_BASELINE = {"arch": "bmshj2018-hyperprior", "N": 8, "M": 8}
# A budget of a few tiny steps: 0.003 CPU-minutes is 0.18 CPU-seconds.
TINY_BUDGET_MINUTES = 0.003


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(PHOTOS):
        Image.fromarray(photo_like(*PHOTO_SIZE, seed=i)).save(folder / f"{i:03d}.png")
    return folder


def base_config(folder: Path, photos: Path) -> Path:
    """A stage-1-like config on the tiny preset and the photos made here."""
    images = {"type": "images", "root": str(photos), "crop": [64, 64], "samples_per_epoch": 8,
              "holdout": {"fraction": 0.5, "seed": 0}}
    cfg = {
        "stage": "base", "model": "tiny", "seed": 1, "threads": 1, "task": "image",
        "steps": 1000, "batch_size": 1, "trainable": ["intra"], "optimizer": {"lr": 1.0e-3},
        "schedule": {"decay": "step", "decay_at": [0.5], "gamma": 0.1},
        "data": {"train": images, "val": {**images, "flips": False, "split": "holdout"}},
        "validate": {"every": 0, "items": 1}, "memory_format": "contiguous",
        "checkpoint": {"every_steps": 0, "every_minutes": 0},
        "log": {"every": 1, "tensorboard": False, "progress": False},
    }
    path = folder / "base.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def tiny_plan(tmp_path: Path, photos: Path) -> dict[str, Any]:
    raw = yaml.safe_load((PLANS / "plan.yaml").read_text(encoding="utf-8"))
    raw.update(
        base=str(base_config(tmp_path, photos)),
        budget={"cpu_minutes": TINY_BUDGET_MINUTES, "measure_at": [0.5, 1.0],
                "min_cpu_minutes": 30},
        baselines={"levels": [1, 8], "split_budget": True},
        variants=[{"name": "edic", "label": "EDIC"},
                  {"name": "small", "label": "Small", "image_coder": TINY_BASELINE}],
        claims=[{"name": "baselines", "claim": "EDIC beats the small one",
                 "variants": ["small"]}],
    )
    raw["evaluation"].update(images=str(photos), holdout={"fraction": 0.5, "seed": 0},
                             edic_qualities=[1, 8],
                             decode={"width": 64, "height": 64, "level": 8, "threads": 1,
                                     "repeats": 1})
    return raw


# ------------------------------------------------------------------ config switches
def test_every_shipped_variant_config_parses_and_builds(tmp_path: Path) -> None:
    """plan.yaml and smoke.yaml: every run's config normalises and its model builds,
    and each switch does what the variant's name says."""
    smoke = load_plan(PLANS / "smoke.yaml")
    for variant in smoke.variants:
        for run in variant_runs(smoke, variant, tmp_path / "smoke"):
            assert run.cfg["cpu_budget_minutes"] == pytest.approx(run.budget_minutes)
    plan = load_plan(PLANS / "plan.yaml")
    built: dict[str, torch.nn.Module] = {}
    for variant in plan.variants:
        (run, *others) = variant_runs(plan, variant, tmp_path / "plan")
        preset = Preset.from_dict(load_preset(run.cfg["model"]))
        if variant.kind == "edic":  # the part that trains: the I-frame coder
            built[variant.name] = EDIC(preset.intra, preset)
            assert not others and run.budget_minutes == plan.cpu_minutes
            continue
        model = build_model(preset, run.cfg["image_coder"])
        assert isinstance(model, BaselineImageModel)
        assert (model.intra.net.N, model.intra.net.M) == (64, 96)  # the preset's intra
        assert run.cfg["phase_list"][0]["loss"]["fixed_quality"] == run.level
        assert sum(r.budget_minutes for r in [run, *others]) == pytest.approx(plan.cpu_minutes)
    assert built["edic_k1"].entropy_cfg.mixtures == 1
    assert built["edic_no_enhancement"].enhance is None
    kinds = {type(m) for m in built["edic_no_attention"].modules()}
    assert AttentionBlock not in kinds and ResidualBlock in kinds
    edic = variant_runs(plan, plan.variant("edic"), tmp_path / "plan")[0]
    assert Preset.load(edic.cfg["model"]).digest == Preset.load("cpu").digest


def test_attention_switch_is_optional_and_checked() -> None:
    section = copy.deepcopy(load_preset("tiny")["intra"])
    assert CoderConfig.from_dict(section, "intra").attention == "channel"
    section["attention"] = "none"
    assert CoderConfig.from_dict(section, "intra").attention == "none"
    section["attention"] = "off"
    with pytest.raises(InputError, match=r"intra\.attention"):
        CoderConfig.from_dict(section, "intra")


def test_plan_refuses_a_decode_level_no_baseline_trains_at(tmp_path: Path,
                                                          photos: Path) -> None:
    raw = tiny_plan(tmp_path, photos)
    raw["evaluation"]["decode"]["level"] = 5
    with pytest.raises(InputError, match=r"decode\.level"):
        parse_plan(raw, tmp_path / "plan.yaml")


# ------------------------------------------------------------------ the budget
def test_lr_decays_follow_the_share_of_the_budget() -> None:
    schedule = {"warmup_steps": 0, "decay": "step", "decay_at": [0.5], "gamma": 0.1}
    assert lr_factor(0, 100, schedule, progress=0.49) == 1.0
    assert lr_factor(0, 100, schedule, progress=0.5) == pytest.approx(0.1)
    cosine = {**schedule, "decay": "cosine", "final_factor": 0.01}
    assert lr_factor(3, 100, cosine, progress=1.0) == pytest.approx(0.01)


def test_cpu_budget_stops_a_run_and_a_driver_can_stop_halfway(tmp_path: Path,
                                                             photos: Path) -> None:
    cfg = load_train_config(base_config(tmp_path, photos), [
        f"out_dir={tmp_path / 'run'}", f"cpu_budget_minutes={TINY_BUDGET_MINUTES}"])
    trainer = Trainer(cfg)
    try:
        half = trainer.cpu_budget_s / 2
        first = trainer.run(until_cpu_s=half)
        assert not first.finished and trainer.cpu_s >= half
        second = trainer.run()
    finally:
        trainer.close()
    assert second.budget_spent and second.finished and second.step < cfg["steps"]
    state = load_checkpoint(second.checkpoint)
    assert state["cpu_s"] >= trainer.cpu_budget_s
    assert state["step"] == second.step


# ------------------------------------------------------------------ the baselines
def test_a_compressai_model_trains_through_the_loop(tmp_path: Path, photos: Path) -> None:
    cfg = load_train_config(base_config(tmp_path, photos), [
        f"out_dir={tmp_path / 'run'}", "steps=2", "loss.quality=fixed",
        "loss.fixed_quality=8", "image_coder={arch: bmshj2018-hyperprior, N: 8, M: 8}"])
    result = train(cfg)
    assert result.finished and len(result.losses) == 2
    assert all(np.isfinite(result.losses))
    state = load_checkpoint(result.checkpoint)
    assert any(k.startswith("intra.net.g_a") for k in state["model"])
    # the auxiliary loss fitted compressai's own bottleneck: its quantiles left their start
    quantiles = state["model"]["intra.net.entropy_bottleneck.quantiles"]
    assert not torch.equal(quantiles, FactorizedBottleneck(quantiles.shape[0]).quantiles.detach())
    # the validation coded real bytes with the net's own compress
    assert (tmp_path / "run" / "val.csv").read_text().count("\n") >= 2


def test_rgb_conversion_of_the_adapter_is_exact_and_the_stream_decodes_alone() -> None:
    x = torch.rand(1, 6, 16, 24)
    assert torch.allclose(from_rgb(to_rgb(x, "yuv420"), "yuv420"), x, atol=1e-6)
    torch.manual_seed(0)
    for arch in ("bmshj2018-hyperprior", "mbt2018"):
        model = build_model(Preset.load("tiny"), {**TINY_BASELINE, "arch": arch})
        model.eval()
        model.update_entropy_tables()
        coder = BaselineCoder(model)
        rgb = photo_like(30, 50, seed=3)  # odd sizes: padded to even and to the stride
        data, decoded = coder.encode(rgb, 1.0)
        assert decoded.shape == rgb.shape
        assert np.array_equal(coder.decode(data), decoded)
        stats = complexity(model)
        assert 0 < stats["decoder_kmac_per_pixel"] < stats["kmac_per_pixel"]


# ------------------------------------------------------------------ end to end
def test_a_tiny_ablation_runs_resumes_and_writes_its_page(tmp_path: Path,
                                                          photos: Path) -> None:
    raw = tiny_plan(tmp_path, photos)
    raw["baselines"]["levels"] = [8]  # one run of the baseline is enough here
    plan = parse_plan(raw, tmp_path / "plan.yaml")
    out = tmp_path / "out"
    results = Ablation(plan, out, say=lambda _: None).run()
    assert results["status"] == "complete"
    edic = results["variants"]["edic"]["runs"]["all"]["measurements"]
    assert set(edic) == {"0.5", "1"}
    assert edic["1"]["cpu_s"] >= TINY_BUDGET_MINUTES * 60
    assert [p["rate_param"] for p in edic["1"]["points"]] == [1, 8]
    assert edic["1"]["decode"]["seconds"] > 0
    photo = edic["1"]["points"][0]["per_image"][0]
    assert photo["bytes"] < photo["stream_bytes"]  # the container's header is not charged
    small = results["variants"]["small"]["runs"]
    assert set(small) == {"level8"} and "decode" in small["level8"]["measurements"]["1"]
    # a second call finds everything measured and trains nothing
    again = Ablation(plan, out, say=lambda _: pytest.fail("trained again")).run()
    assert again["variants"] == results["variants"]
    # timing again: from each timed run's last checkpoint, the first timing kept beside it
    first = edic["1"]["decode"]
    retimed = Ablation(plan, out, say=lambda _: None).retime(repeats=2)
    timed = retimed["variants"]["edic"]["runs"]["all"]["measurements"]["1"]
    assert timed["decode_first"] == first and len(timed["decode"]["all_seconds"]) == 2
    assert timed["decode"]["bytes"] == first["bytes"]  # the same weights code the same
    assert "retimed" in timed["decode"]
    half = retimed["variants"]["edic"]["runs"]["all"]["measurements"]["0.5"]
    assert "decode_first" not in half  # no checkpoint of half the budget is kept
    small_timed = retimed["variants"]["small"]["runs"]["level8"]["measurements"]["1"]
    assert "retimed" in small_timed["decode"]
    assert "timed again back to back" in render(retimed, plan, tmp_path / "again.md")
    doc = tmp_path / "docs" / "ablations.md"
    text = render(results, plan, doc)
    assert "Smoke run" in text and "none (smoke run)" in text
    assert (doc.parent / "ablations" / "rd_full.png").is_file()


def synthetic_results(plan_raw: dict[str, Any], bd_shift: float) -> dict[str, Any]:
    """Results where the small baseline needs ``bd_shift`` times EDIC's bits."""
    def points(scale: float, qualities: list[float]) -> list[dict[str, float]]:
        # straight in log-rate, so interpolation is exact and BD-rate is scale - 1
        return [{"rate_param": q, "bpp": 0.1 * q * scale, "psnr_rgb": 30.0 + 3.0 * np.log2(q)}
                for q in qualities]

    def measured(qualities: list[float], scale: float, timed: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"cpu_s": 900.0, "steps": 700,
                                 "points": points(scale, qualities)}
        if timed:
            entry["decode"] = {"seconds": 0.5}
        return entry

    stats = {"parameters": 2_000_000, "kmac_per_pixel": 90.0, "decoder_kmac_per_pixel": 40.0}
    return {
        "plan": plan_raw, "plan_path": "plan.yaml", "images": ["a.png"], "status": "complete",
        "machine": {"date": "2026-01-01", "git_commit": "abc", "cpu": "test CPU"},
        "variants": {
            "edic": {"label": "EDIC", "kind": "edic", "complexity": stats, "runs": {"all": {
                "measurements": {s: measured([1, 2, 4, 8], 1.0, True) for s in ("0.5", "1")}}}},
            "small": {"label": "Small", "kind": "compressai", "complexity": stats, "runs": {
                f"level{q}": {"measurements": {s: measured([q], bd_shift, q == 8)
                                               for s in ("0.5", "1")}} for q in (1, 8)}},
        },
    }


def test_the_page_states_the_numbers_and_derives_the_verdict(tmp_path: Path,
                                                             photos: Path) -> None:
    raw = tiny_plan(tmp_path, photos)
    raw["budget"]["cpu_minutes"] = 30  # a real budget: verdicts are drawn
    plan = parse_plan(raw, tmp_path / "plan.yaml")
    text = render(synthetic_results(raw, 1.2), plan, tmp_path / "ablations.md")
    assert "| Small | +20.0 % (-0.79 dB) |" in text
    assert "| EDIC | reference | 0.50 s | 2.00 M | 40.0 / 90.0 | 700 | 15.0 |" in text
    assert ("| Small | +20.0 % (-0.79 dB) | 0.50 s | 2.00 M | 40.0 / 90.0 | 1400 (700 + 700) "
            "| 30.0 |") in text
    assert "EDIC beats the small one: **yes**" in text
    assert "Smoke run" not in text
    worse = render(synthetic_results(raw, 0.8), plan, tmp_path / "ablations.md")
    assert "EDIC beats the small one: **no**" in worse


def test_pending_page_says_nothing_is_measured(tmp_path: Path) -> None:
    text = render(None, load_plan(PLANS / "plan.yaml"), tmp_path / "ablations.md")
    assert "not run yet" in text and "python -m eval.ablation run" in text
    assert "## Results" not in text


def test_verdict_rules() -> None:
    assert verdict(5.0, 4.0, 2.0) == YES
    assert verdict(5.0, -3.0, 2.0) == UNCLEAR  # half the budget points the other way
    assert verdict(-5.0, None, 2.0) == NO
    assert verdict(1.0, 1.0, 2.0) == UNCLEAR
    assert verdict(None, 5.0, 2.0) == UNCLEAR
    assert claim_verdict([YES, YES]) == YES
    assert claim_verdict([YES, NO]) == UNCLEAR
    assert claim_verdict([]) == UNCLEAR


def test_a_changed_ranking_is_named() -> None:
    assert ranking_changed(5.0, -3.0, 2.0)
    assert not ranking_changed(5.0, -1.0, 2.0)  # within the margin at half: no swap
    assert not ranking_changed(5.0, 3.0, 2.0)
    assert not ranking_changed(5.0, None, 2.0)


def test_on_par_verdict_rules() -> None:
    # BD-rate of the variant against EDIC: below -margin, the variant needs fewer bits
    assert verdict(-1.5, 0.5, 2.0, ON_PAR) == YES  # within the margin at both points
    assert verdict(10.0, 5.0, 2.0, ON_PAR) == YES  # EDIC better: on par or better
    assert verdict(-5.0, -4.0, 2.0, ON_PAR) == NO
    assert verdict(-5.0, None, 2.0, ON_PAR) == NO
    assert verdict(-5.0, 1.0, 2.0, ON_PAR) == UNCLEAR  # the ranking changed
    assert verdict(None, 1.0, 2.0, ON_PAR) == UNCLEAR


def test_an_on_par_claim_on_the_page(tmp_path: Path, photos: Path) -> None:
    raw = tiny_plan(tmp_path, photos)
    raw["budget"]["cpu_minutes"] = 30
    raw["claims"] = [{"name": "par", "claim": "EDIC matches the small one",
                      "variants": ["small"], "test": "on_par"}]
    plan = parse_plan(raw, tmp_path / "plan.yaml")
    assert "EDIC matches the small one: **yes**" in render(
        synthetic_results(raw, 1.01), plan, tmp_path / "a.md")
    assert "EDIC matches the small one: **no**" in render(
        synthetic_results(raw, 0.9), plan, tmp_path / "a.md")
    raw["claims"][0]["test"] = "about_the_same"
    with pytest.raises(InputError, match=r"claims\[0\]\.test"):
        parse_plan(raw, tmp_path / "plan.yaml")


def test_results_outlive_a_change_of_claims_but_not_of_budget(tmp_path: Path,
                                                              photos: Path) -> None:
    raw = tiny_plan(tmp_path, photos)
    results = synthetic_results(raw, 1.2)
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**results, "overrides": []}), encoding="utf-8")
    reworded = copy.deepcopy(raw)
    reworded["claims"][0]["claim"] = "EDIC is at least as good as the small one"
    reworded["verdict"]["margin_pct"] = 1.0
    loaded = load_results(path, parse_plan(reworded, tmp_path / "plan.yaml"), [])
    assert loaded is not None and loaded["plan"] == reworded
    longer = copy.deepcopy(raw)
    longer["budget"]["cpu_minutes"] = 60
    with pytest.raises(InputError, match="another plan"):
        load_results(path, parse_plan(longer, tmp_path / "plan.yaml"), [])
    # the page command takes the new wording, and refuses a plan that measures otherwise
    plan_file = tmp_path / "new_plan.yaml"
    plan_file.write_text(yaml.safe_dump(reworded), encoding="utf-8")
    doc = tmp_path / "page.md"
    assert ablation_main(["report", str(path), "--plan", str(plan_file), "--doc", str(doc)]) == 0
    assert "EDIC is at least as good as the small one: **" in doc.read_text(encoding="utf-8")
    plan_file.write_text(yaml.safe_dump(longer), encoding="utf-8")
    assert ablation_main(["report", str(path), "--plan", str(plan_file),
                          "--doc", str(doc)]) == EXIT_USAGE


def test_dominated_points_leave_the_curve() -> None:
    points = [{"bpp": 0.1, "psnr_rgb": 20.0, "rate_param": 1},
              {"bpp": 0.3, "psnr_rgb": 22.0, "rate_param": 3},
              {"bpp": 0.2, "psnr_rgb": 21.0, "rate_param": 2},
              {"bpp": 0.4, "psnr_rgb": 21.9, "rate_param": 4}]  # more bits, less PSNR
    kept, dropped = pareto_front(points)
    assert [p["rate_param"] for p in kept] == [1, 2, 3]
    assert [p["rate_param"] for p in dropped] == [4]


def test_bd_psnr_decides_where_the_curves_share_no_psnr_range(tmp_path: Path,
                                                              photos: Path) -> None:
    raw = tiny_plan(tmp_path, photos)
    raw["budget"]["cpu_minutes"] = 30
    plan = parse_plan(raw, tmp_path / "plan.yaml")

    def row(name: str, db: float | None) -> Row:
        bd = None if db is None else {"bd_rate_pct": None, "bd_psnr_db": db, "notes": []}
        return Row(name=name, label=name, curve={}, steps=[1], cpu_minutes=30.0,
                   decode_s=None, complexity={}, bd=bd)

    for db, word in ((-3.0, "yes"), (3.0, "no"), (-0.05, "unclear")):
        rows = {"edic": row("edic", None), "small": row("small", db)}
        text = "\n".join(claim_paragraph(plan.claims[0], plan, rows, rows, smoke=False))
        assert f"**{word}**" in text and "BD-PSNR decides" in text


def test_a_baseline_with_runs_not_begun_is_not_in_the_table(tmp_path: Path,
                                                            photos: Path) -> None:
    raw = tiny_plan(tmp_path, photos)
    plan = parse_plan(raw, tmp_path / "plan.yaml")
    results = synthetic_results(raw, 1.2)
    assert "small" in rows(results, plan, 1.0)
    del results["variants"]["small"]["runs"]["level8"]  # results.json before it began
    assert "small" not in rows(results, plan, 1.0)
