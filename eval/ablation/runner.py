"""Train every variant to each measuring point of its CPU budget, and measure it there.

A run is one :class:`dvc_edic.train.loop.Trainer`: it trains until the steps have
used the first share of ``budget.measure_at`` of its CPU budget, stops (with a
checkpoint), is measured, and goes on to the next share; the loop's
``run(until_cpu_s)`` continues exactly as an uninterrupted run would, and
measuring touches neither the training's weights nor its random streams. What is
measured is the EMA of the weights, as the loop's validation and the exported
weights use, copied into a fresh model.

results.json is rewritten after every measurement. Run again with the same plan
and folder, the command skips what is measured and resumes an unfinished run from
its checkpoint (the CPU time spent before is in the checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from dvc_edic.errors import InputError
from dvc_edic.train.baselines import build_model
from dvc_edic.train.checkpoint import capture_rng, checkpoint_path, restore_rng
from dvc_edic.train.loop import Trainer
from dvc_edic.weights import load_state
from eval.ablation.measure import (
    Pictures,
    complexity,
    decode_time,
    load_pictures,
    make_coder,
    measure,
)
from eval.ablation.plan import Plan, RunPlan, measured_part, variant_runs
from eval.report import machine_info, write_json_atomic

RESULTS_FILE = "results.json"
SCHEMA = 1
SECONDS_PER_MINUTE = 60.0


class Interrupted(Exception):
    """A signal stopped a training run (its checkpoint is written): the ablation stops."""

    def __init__(self, signal: int) -> None:
        super().__init__(f"stopped by signal {signal}")
        self.signal = signal


def share_key(share: float) -> str:
    return f"{share:g}"


def snapshot(trainer: Trainer) -> nn.Module:
    """A fresh model with the trainer's EMA weights (its raw ones without an EMA), in
    eval mode with its entropy tables built. The training's random generators are
    put back afterwards: building a model draws initial weights from them."""
    generators = capture_rng()
    try:
        applied = trainer.ema.applied() if trainer.ema is not None else contextlib.nullcontext()
        with applied:
            tensors = {k: v.detach().clone().contiguous()
                       for k, v in trainer.model.state_dict().items()}
        model = build_model(trainer.model.preset, trainer.cfg["image_coder"])
        load_state(model, tensors, source=f"stage {trainer.cfg['stage']} at step {trainer.step}")
    finally:
        restore_rng(generators)
    model.eval()
    model.update_entropy_tables()
    return model


def fresh_results(plan: Plan, overrides: Sequence[str], pictures: Pictures,
                  argv: Sequence[str] | None) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "plan": plan.raw,
        "plan_path": str(plan.path),
        "overrides": list(overrides),
        "images": pictures.names,
        "holdout": pictures.holdout,
        "machine": machine_info("eval.ablation", argv),
        "status": "partial",
        "variants": {},
    }


def load_results(path: Path, plan: Plan, overrides: Sequence[str]) -> dict[str, Any] | None:
    """The results of an earlier call with this plan, to go on from; None when none."""
    if not path.is_file():
        return None
    import json

    results = json.loads(path.read_text(encoding="utf-8"))
    if (measured_part(results.get("plan", {})) != measured_part(plan.raw)
            or results.get("overrides") != list(overrides)):
        raise InputError(f"{path} was written by another plan or other --set overrides; "
                         f"pass another --out, or move it away to start again")
    results["plan"] = plan.raw  # the claims and verdict rule the page now states
    return results


class Ablation:
    """Runs a plan into a folder: ``out/<variant>/<run>/`` for training, results.json."""

    def __init__(self, plan: Plan, out: Path, overrides: Sequence[str] = (),
                 variants: Sequence[str] | None = None,
                 say: Callable[[str], None] = print, argv: Sequence[str] | None = None) -> None:
        self.plan = plan
        self.out = out
        self.overrides = list(overrides)
        self.variants = [plan.variant(n) for n in variants] if variants else list(plan.variants)
        self.say = say
        self.path = out / RESULTS_FILE
        self.pictures = load_pictures(plan.evaluation)
        self.results = (load_results(self.path, plan, self.overrides)
                        or fresh_results(plan, self.overrides, self.pictures, argv))
        # every variant's configs are built (and checked) before the first one trains
        self.runs = {v.name: variant_runs(plan, v, out, self.overrides) for v in plan.variants}

    def run(self) -> dict[str, Any]:
        for variant in self.variants:
            entry = self.results["variants"].setdefault(variant.name, {
                "label": variant.label, "kind": variant.kind, "runs": {}})
            for run in self.runs[variant.name]:
                self._run(run, entry)
        records = self.results["variants"]
        done = all(not self._left(records.get(name, {}).get("runs", {}).get(run.name))
                   for name, runs in self.runs.items() for run in runs)
        self.results["status"] = "complete" if done else "partial"
        self._write()
        return self.results

    def _left(self, record: dict[str, Any] | None) -> list[float]:
        """The shares of the budget a run has still to be measured at."""
        measured = {} if record is None else record["measurements"]
        return [s for s in self.plan.measure_at if share_key(s) not in measured]

    def _run(self, run: RunPlan, entry: dict[str, Any]) -> None:
        record = entry["runs"].setdefault(run.name, {
            "level": run.level, "budget_cpu_s": run.budget_minutes * SECONDS_PER_MINUTE,
            "out_dir": run.cfg["out_dir"], "measurements": {}})
        left = self._left(record)
        if not left:
            return
        ckpt = checkpoint_path(run.cfg["out_dir"])
        trainer = Trainer(run.cfg, resume=ckpt if ckpt.is_file() else None)
        try:
            for share in left:
                self._train_to(trainer, run, share)
                self._measure(trainer, run, share, entry, record)
        finally:
            trainer.close()

    def _train_to(self, trainer: Trainer, run: RunPlan, share: float) -> None:
        budget_s = run.budget_minutes * SECONDS_PER_MINUTE
        target = share * budget_s
        if trainer.cpu_s >= target:
            return  # a resumed run already past this point is measured where it is
        self.say(f"{run.cfg['stage']}: training to {target / SECONDS_PER_MINUTE:.2f} "
                 f"CPU-minutes ({share:g} of {budget_s / SECONDS_PER_MINUTE:.2f})")
        result = trainer.run(until_cpu_s=None if share >= 1.0 else target)
        if result.signal is not None:
            raise Interrupted(result.signal)

    def _measure(self, trainer: Trainer, run: RunPlan, share: float, entry: dict[str, Any],
                 record: dict[str, Any]) -> None:
        start = time.perf_counter()
        model = snapshot(trainer)
        if "complexity" not in entry:
            entry["complexity"] = complexity(model)
        evaluation = self.plan.evaluation
        qualities = evaluation.edic_qualities if run.level is None else (run.level,)
        timed = run.level is None or run.level == evaluation.decode.level
        measured = measure(model, self.pictures, qualities, evaluation, timed)
        record["measurements"][share_key(share)] = {
            "share": share, "cpu_s": trainer.cpu_s, "steps": trainer.step,
            "train_wall_s": trainer.elapsed_s, **measured,
            "measure_seconds": time.perf_counter() - start,
        }
        self._write()
        points = ", ".join(f"q{p['rate_param']:g} {p['bpp']:.4f} bpp {p['psnr_rgb']:.2f} dB"
                           for p in measured["points"])
        self.say(f"{run.cfg['stage']} at {share:g} of its budget (step {trainer.step}, "
                 f"{trainer.cpu_s / SECONDS_PER_MINUTE:.2f} CPU-min): {points}")

    def retime(self, repeats: int | None = None) -> dict[str, Any]:
        """Time every variant's decoder again, one after the other, from the checkpoint
        its run ended with (the whole budget), and put that in place of the timing taken
        while the run was measured; the first timing is kept as ``decode_first``.

        Why: each variant is timed when its training ends, and whatever else the machine
        did at that moment is in its figure; timing them all back to back, on cores left
        idle for it, compares like with like. Only the whole budget is timed again (no
        checkpoint of the earlier shares is kept); runs without a checkpoint are skipped
        and named."""
        key = share_key(self.plan.measure_at[-1])
        timing = self.plan.evaluation.decode
        if repeats is not None:
            timing = dataclasses.replace(timing, repeats=repeats)
        for variant in self.variants:
            entry = self.results["variants"].get(variant.name)
            for run in self.runs[variant.name]:
                record = None if entry is None else entry["runs"].get(run.name)
                measured = None if record is None else record["measurements"].get(key)
                if measured is None or "decode" not in measured:
                    continue  # not measured with the whole budget, or not the timed run
                ckpt = checkpoint_path(run.cfg["out_dir"])
                if not ckpt.is_file():
                    self.say(f"{run.cfg['stage']}: no checkpoint at {ckpt}; timing kept")
                    continue
                trainer = Trainer(run.cfg, resume=ckpt)
                try:
                    if trainer.step != measured["steps"]:
                        self.say(f"{run.cfg['stage']}: checkpoint at step {trainer.step}, "
                                 f"measured at {measured['steps']}; timing kept")
                        continue
                    coder = make_coder(snapshot(trainer), dict(self.plan.evaluation.encoder))
                finally:
                    trainer.close()
                measured.setdefault("decode_first", measured["decode"])
                load = list(os.getloadavg())  # what the machine was doing as it began
                measured["decode"] = {**decode_time(coder, self.pictures.timed, timing),
                                      "retimed": {**machine_info("eval.ablation retime", None),
                                                  "load_average": load}}
                self._write()
                self.say(f"{run.cfg['stage']}: decode {measured['decode']['seconds']:.3f} s "
                         f"(first {measured['decode_first']['seconds']:.3f} s)")
        return self.results

    def _write(self) -> None:
        write_json_atomic(self.path, self.results)
