"""The training loop of one stage: setup, steps, logs, validation, checkpoints, stopping.

A stage is a list of phases (most stages have one) sharing one optimizer and
one resume file. Resuming restores the model, both optimizers, the scheduler,
the step, every RNG the loop draws from, and the data stream's position, so
the resumed run computes the very losses the uninterrupted one would have.
The EMA of the weights (dvc_edic.train.ema) is part of that state too.

A driver of several runs (dvc_edic.train.campaign) hooks in through
:class:`RunHooks`: it hears every validation and stores its own record in
every checkpoint, so its bookkeeping is exactly as old as the weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dvc_edic.config import load_preset
from dvc_edic.errors import InputError, WeightsError
from dvc_edic.metrics import UNIT_PEAK, mse_to_psnr
from dvc_edic.models.preset import Preset
from dvc_edic.models.video import MODULE_SECTIONS, VideoCodecModel
from dvc_edic.train import distributed
from dvc_edic.train.baselines import build_model
from dvc_edic.train.batches import BatchStream, ClipItems, describe, split_holdout, take
from dvc_edic.train.checkpoint import (
    capture_rng,
    checkpoint_path,
    hardware,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from dvc_edic.train.compact import decode_moments
from dvc_edic.train.config import phase_at, total_steps
from dvc_edic.train.ema import EMA, EMA_KEY, RAW, WeightEMA, checkpoint_weights, ema_settings
from dvc_edic.train.logs import TrainLogger
from dvc_edic.train.losses import QualitySampler, RateDistortion
from dvc_edic.train.optim import (
    QUANTILES,
    apply_modes,
    aux_bottlenecks,
    build_optimizers,
    build_scheduler,
    matches_prefix,
    select_trainable,
)
from dvc_edic.train.signals import StopRequest
from dvc_edic.train.stages import TaskModule
from dvc_edic.train.validate import default_qualities, validate

SECONDS_PER_MINUTE = 60.0
# Streams of random numbers derived from the config seed, one per use and rank.
_STREAM_GLOBAL = 0
_STREAM_QUALITY = 1
# Config keys that may change between a checkpoint and its resumption without
# changing the loss curve up to the checkpoint (anything else gets a warning).
# init_from, init_parts and init_fresh only say where a run started: a resumed run's
# weights come from its checkpoint whatever they say now.
_RESUME_SAFE_KEYS = ("steps", "phases", "phase_list", "validate", "checkpoint", "log",
                     "num_workers", "out_dir", "threads", "device", "memory_format", "nonfinite",
                     "init_from", "init_parts", "init_fresh", "init_weights", "ema")
# Checkpoint key of a driver's own record (see RunHooks), carried through plain resumes.
DRIVER_KEY = "campaign"


class TrainingDiverged(RuntimeError):
    """The loss stayed NaN or infinite; resume from the last checkpoint with a lower lr."""


@dataclass
class RunHooks:
    """What a driver of several runs adds to one run; rank 0 calls them, others never do."""

    # after each validation: (stage, step, rows as in val.csv, weights kind "ema" / "raw")
    on_validate: Callable[[str, int, list[dict[str, Any]], str], None] | None = None
    # the driver's record, stored under DRIVER_KEY in every checkpoint this run writes
    driver_state: Callable[[], dict[str, Any]] | None = None


@dataclass
class TrainResult:
    stage: str
    step: int  # global step reached
    total_steps: int
    checkpoint: Path
    losses: list[float] = field(default_factory=list)  # one per step run by this call
    signal: int | None = None  # the signal that stopped the run, if one did
    budget_spent: bool = False  # cpu_budget_minutes ended the stage

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps or self.budget_spent


def derived_seed(seed: int, *stream: int) -> int:
    """Independent seeds for (seed, stream, rank...) without collisions between them."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------- model setup
def _init_source(
    path: Path, weights: str = EMA
) -> tuple[dict[str, Any], dict[str, torch.Tensor], list[Any]]:
    """(preset, tensors, history) of a previous stage's checkpoint or exported weights.

    ``weights`` picks a checkpoint's EMA or raw weights (exported files hold one kind).
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        from dvc_edic.weights import read_metadata

        meta = read_metadata(path)
        history = json.loads(meta.get("history", "[]"))
        return json.loads(meta["preset"]), load_file(str(path)), history
    state = load_checkpoint(path)
    if state["step"] < state["total_steps"]:
        warnings.warn(
            f"{path}: stage {state['stage']!r} stopped at step {state['step']} of "
            f"{state['total_steps']}; starting the next stage from it anyway",
            stacklevel=3,
        )
    tensors, _ = checkpoint_weights(state, weights)
    return state["preset"], tensors, list(state["history"])


def _take_parts(
    tensors: dict[str, torch.Tensor],
    history: list[Any],
    parts: dict[str, str],
    cfg: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], list[Any]]:
    """Replace whole modules of a starting point with those of other runs.

    This lets the I-frame coder keep training while the P-frame stages run beside it
    (they only need *an* I-frame coder for their references), and the two lines join
    in the last stage. The history keeps every stage that trained a module of the
    joined model: a stage of a part replaces the same-named stage of the main line,
    whose weights for that module are gone.
    """
    merged = dict(tensors)
    taken: list[Any] = []
    for prefix, source in parts.items():
        preset, part_tensors, part_history = _init_source(Path(source), cfg["init_weights"])
        _check_preset(preset, cfg, str(source), supplies=[prefix])
        keys = [k for k in part_tensors if matches_prefix(k, [prefix])]
        if not keys:
            raise InputError(f"init_parts: {source} has no tensors under {prefix!r}")
        # the whole module is replaced (its layout may differ from init_from's when its
        # preset section changed); the model's own key check then proves it complete
        merged = {k: v for k, v in merged.items() if not matches_prefix(k, [prefix])}
        merged.update({k: part_tensors[k] for k in keys})
        taken += [{**entry, "modules": [prefix], "source": str(source)}
                  for entry in part_history]
    replaced = {entry["stage"] for entry in taken}
    return merged, [*taken, *(e for e in history if e["stage"] not in replaced)]


def overlaps(module: str, prefixes: list[str]) -> bool:
    """Whether a module lies under one of the prefixes or contains one of them."""
    return matches_prefix(module, prefixes) or any(matches_prefix(p, [module]) for p in prefixes)


def _check_preset(
    preset: dict[str, Any], cfg: dict[str, Any], source: str, supplies: list[str] | None = None
) -> None:
    """The source's weights must mean what the config's preset says they mean.

    ``supplies`` lists the modules taken from the source (None: all that are not
    fresh); the sections that size other modules may differ, since those
    modules' weights come from elsewhere.
    """
    wanted = load_preset(cfg["model"])
    if supplies is None:
        supplies = [m for m in MODULE_SECTIONS if m not in cfg["init_fresh"]
                    and not overlaps(m, list(cfg["init_parts"]))]
    free = {MODULE_SECTIONS[m] for m in MODULE_SECTIONS if not overlaps(m, supplies)}
    differing = sorted(k for k in set(wanted) | set(preset)
                       if k not in free and wanted.get(k) != preset.get(k))
    if differing:
        raise WeightsError(
            f"{source}: its model preset differs from the config's model {cfg['model']!r} "
            f"in {differing}"
        )


def _fresh_modules(
    tensors: dict[str, torch.Tensor], model: VideoCodecModel, fresh: list[str]
) -> dict[str, torch.Tensor]:
    """The init tensors with every fresh module's replaced by the new model's own."""
    own = model.state_dict()
    return {**{k: v for k, v in tensors.items() if not matches_prefix(k, fresh)},
            **{k: v for k, v in own.items() if matches_prefix(k, fresh)}}


def _config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = set(a) | set(b)
    return sorted(k for k in keys if k not in _RESUME_SAFE_KEYS and a.get(k) != b.get(k))


# ------------------------------------------------------------------ phase data
@dataclass
class PhaseData:
    stream: BatchStream
    val_items: list[dict[str, torch.Tensor]]
    descriptions: list[str]


def _entry_summary(spec: Any) -> str:
    """``images, root ~/data/x``: a dataset entry's type and the files it names."""
    if not isinstance(spec, dict):
        return type(spec).__name__
    named = [f"{k} {spec[k]}" for k in ("root", "sources", "images") if k in spec]
    return ", ".join([str(spec.get("type")), *named])


def _build(spec: Any, where: str) -> Any:
    """The dataset of a config entry; an error names the entry (``data.train[1]``) and folder."""
    # the data package is only needed once training
    from dvc_edic.data import MixedDataset, build_dataset

    if isinstance(spec, list):
        return MixedDataset([_build(part, f"{where}[{i}]") for i, part in enumerate(spec)])
    try:
        return build_dataset(spec)
    except InputError as exc:
        raise InputError(f"{where} ({_entry_summary(spec)}): {exc}") from exc


def _phase_data(
    phase: dict[str, Any], cfg: dict[str, Any], ctx: distributed.Context, epoch: int, offset: int,
) -> PhaseData:
    data = phase["data"]
    where = f"stage {cfg['stage']}: " + (
        f"phase {phase['name']}: " if len(cfg["phase_list"]) > 1 else "")
    train_set, held = split_holdout(_build(data["train"], f"{where}data.train"),
                                    int(data["holdout"]))
    val_set = _build(data["val"], f"{where}data.val") if data["val"] is not None else held
    val_items: list[dict[str, torch.Tensor]] = []
    if ctx.is_main and val_set is not None:
        val_items = take(ClipItems(val_set), int(cfg["validate"]["items"]))
    stream = BatchStream(
        ClipItems(train_set),
        batch_size=phase["batch_size"],
        num_workers=int(cfg["num_workers"]),
        seed=int(cfg["seed"]),
        rank=ctx.rank,
        world_size=ctx.world_size,
        epoch=epoch,
        offset=offset,
        pin_memory=ctx.device.type == "cuda",
    )
    return PhaseData(stream, val_items, describe(train_set))


# --------------------------------------------------------------------- trainer
class Trainer:
    """Holds the state of one stage's run; ``run()`` does the steps."""

    def __init__(
        self,
        cfg: dict[str, Any],
        *,
        resume: str | Path | None = None,
        init_from: str | Path | None = None,
        stop_after: int | None = None,
        time_limit_minutes: float | None = None,
        hooks: RunHooks | None = None,
    ) -> None:
        self.ctx = distributed.setup(cfg["device"], float(cfg["ddp"]["timeout_minutes"]))
        self.hooks = hooks or RunHooks()
        try:
            self._setup(cfg, resume, init_from, stop_after, time_limit_minutes)
        except BaseException:
            self.close()
            raise

    def _setup(
        self,
        cfg: dict[str, Any],
        resume: str | Path | None,
        init_from: str | Path | None,
        stop_after: int | None,
        time_limit_minutes: float | None,
    ) -> None:
        torch.set_num_threads(int(cfg["threads"]))
        if init_from is not None and resume is None:
            # checkpoints, exported weights and the model card record the start really used
            cfg = {**cfg, "init_from": str(init_from)}
        self.cfg = cfg
        self.out_dir = Path(cfg["out_dir"])
        self.ckpt_path = checkpoint_path(self.out_dir)
        self.total = total_steps(cfg)
        self.stop_after = stop_after
        self.time_limit_s = None if time_limit_minutes is None else (
            time_limit_minutes * SECONDS_PER_MINUTE)
        state = load_checkpoint(resume) if resume is not None else None
        if state is None and self.ckpt_path.exists():
            raise InputError(
                f"{self.ckpt_path} already exists: pass --resume to continue that run, or "
                f"move it away (or set another out_dir) to start the stage again"
            )
        if state is not None:
            self._check_resume(state, Path(resume))  # type: ignore[arg-type]

        seed = int(cfg["seed"])
        torch.manual_seed(seed)  # identical initial weights on every rank
        init = init_from if init_from is not None else cfg["init_from"]
        self.history: list[Any] = []
        if state is not None:
            preset, tensors = state["preset"], state["model"]
            self.history = list(state["history"][:-1])
        elif init is not None:
            preset, tensors, self.history = _init_source(Path(init), cfg["init_weights"])
            _check_preset(preset, cfg, str(init))
            if cfg["init_parts"]:
                tensors, self.history = _take_parts(tensors, self.history,
                                                    cfg["init_parts"], cfg)
            # the checks above make the config's preset describe every supplied tensor
            preset = load_preset(cfg["model"])
        else:
            preset, tensors = load_preset(cfg["model"]), None
        self.model = build_model(Preset.from_dict(preset), cfg["image_coder"])
        if tensors is not None and state is None and cfg["init_fresh"]:
            tensors = _fresh_modules(tensors, self.model, cfg["init_fresh"])
        if tensors is not None:
            from dvc_edic.weights import load_state

            load_state(self.model, tensors, source=str(resume or init))
        self.trainable = select_trainable(self.model, cfg["trainable"], cfg["freeze"])
        self.model.to(self.ctx.device)
        if cfg["memory_format"] == "channels_last":
            self.model.to(memory_format=torch.channels_last)
        apply_modes(self.model)
        # rank 0 alone averages: it alone validates and writes checkpoints, and DDP keeps
        # every rank's parameters identical. Made after the move, so it lives on the device.
        ema = ema_settings(cfg)
        self.ema = None if ema is None or not self.ctx.is_main else WeightEMA(
            self.model, self.trainable, float(ema["decay"]), float(ema["warmup"]))
        self.driver_record = None if state is None else state.get(DRIVER_KEY)
        self.validated_at = -1  # the step of the last validation
        self.optimizer, self.aux_optimizer = build_optimizers(self.model, cfg)
        budget = cfg["cpu_budget_minutes"]
        self.cpu_budget_s = None if budget is None else float(budget) * SECONDS_PER_MINUTE
        # CPU time of the optimizer steps (data loading left out), all runs of the stage
        self.cpu_s = 0.0
        if self.cpu_budget_s is not None and self.ctx.distributed:
            # each rank would measure its own CPU time, and so step its own lr
            raise InputError("cpu_budget_minutes needs a single process, not torchrun")
        self.scheduler = build_scheduler(
            self.optimizer, self.total, cfg["schedule"],
            None if self.cpu_budget_s is None else self.budget_progress)
        self.bottlenecks = aux_bottlenecks(self.model)
        self.task = TaskModule(self.model)
        self.step_module: nn.Module = self.task
        if self.ctx.distributed:
            ignore = [f"model.{n}" for n, _ in self.model.named_parameters()
                      if n.endswith("." + QUANTILES)]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.task, ignore)
            self.step_module = DistributedDataParallel(
                self.task,
                device_ids=[self.ctx.device] if self.ctx.device.type == "cuda" else None,
                broadcast_buffers=False,  # no running statistics; the CDF tables are rank 0's
                find_unused_parameters=bool(cfg["ddp"]["find_unused_parameters"]),
            )
        self.quality = QualitySampler(
            self.model.quality_range, "per_sample", None,
            derived_seed(seed, _STREAM_QUALITY, self.ctx.rank),
        )
        self.step = 0
        self.nonfinite_run = 0  # skipped steps in a row (see _train_step)
        self.skipped_steps = 0  # in this run
        self.elapsed_s = 0.0
        self.data_state = {"phase": 0, "epoch": 0, "offset": 0}
        self.descriptions: dict[str, list[str]] = {}
        if state is not None:
            self._restore(state)
        else:
            seed_everything(derived_seed(seed, _STREAM_GLOBAL, self.ctx.rank))

    # ------------------------------------------------------------- resuming
    def _check_resume(self, state: dict[str, Any], path: Path) -> None:
        if state["stage"] != self.cfg["stage"]:
            raise WeightsError(
                f"{path}: checkpoint of stage {state['stage']!r}, but the config is stage "
                f"{self.cfg['stage']!r} (use init_from / --init to start a new stage from it)"
            )
        differing = _config_differences(state["config"], self.cfg)
        if differing:
            warnings.warn(
                f"{path}: the config differs from the checkpoint's in {differing}; the "
                f"resumed losses will not match an uninterrupted run",
                stacklevel=3,
            )

    def _restore(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        decode_moments(self.optimizer)  # a compact file's fp8 first moments
        if self.aux_optimizer is not None and state["aux_optimizer"] is not None:
            self.aux_optimizer.load_state_dict(state["aux_optimizer"])
            decode_moments(self.aux_optimizer)
        # a checkpoint from before the EMA existed has none: the average starts from the
        # weights just loaded (WeightEMA's constructor already copied them)
        if self.ema is not None and state.get(EMA_KEY):
            self.ema.load(state[EMA_KEY], f"stage {self.cfg['stage']} checkpoint")
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.elapsed_s = float(state["elapsed_s"])
        self.cpu_s = float(state.get("cpu_s", 0.0))  # older checkpoints did not count it
        self.data_state = dict(state["data"])
        self.descriptions = {k: list(v) for k, v in state["descriptions"].items()}
        rngs = state["rng"]
        if len(rngs) == self.ctx.world_size:
            restore_rng(rngs[self.ctx.rank])
            self.quality.load_state(state["quality_rng"][self.ctx.rank])
        else:
            warnings.warn(
                f"checkpoint written by {len(rngs)} process(es), resumed by "
                f"{self.ctx.world_size}: random streams are re-derived, so the loss curve "
                f"continues but not bit for bit",
                stacklevel=3,
            )
            seed_everything(derived_seed(int(self.cfg["seed"]), self.step, self.ctx.rank))

    # ---------------------------------------------------------- checkpoints
    def _history_entry(self) -> dict[str, Any]:
        return {
            "stage": self.cfg["stage"],
            "steps": self.step,
            "total_steps": self.total,
            "data": self.descriptions,
            "hardware": hardware(),
            "processes": self.ctx.world_size,
            "elapsed_s": self.elapsed_s,
            "cpu_s": self.cpu_s,
        }

    def save(self) -> None:
        rngs = distributed.gather(self.ctx, capture_rng())
        qualities = distributed.gather(self.ctx, self.quality.state())
        if not self.ctx.is_main:
            return
        save_checkpoint(
            {
                "stage": self.cfg["stage"],
                "step": self.step,
                "total_steps": self.total,
                "elapsed_s": self.elapsed_s,
                "cpu_s": self.cpu_s,
                "config": self.cfg,
                "preset": self.model.preset.to_dict(),
                "history": [*self.history, self._history_entry()],
                "descriptions": self.descriptions,
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                EMA_KEY: None if self.ema is None else self.ema.state(),
                DRIVER_KEY: (self.driver_record if self.hooks.driver_state is None
                             else self.hooks.driver_state()),
                "optimizer": self.optimizer.state_dict(),
                "aux_optimizer": (None if self.aux_optimizer is None
                                  else self.aux_optimizer.state_dict()),
                "scheduler": self.scheduler.state_dict(),
                "rng": rngs,
                "quality_rng": qualities,
                "data": dict(self.data_state),
            },
            self.ckpt_path,
        )

    # ---------------------------------------------------------------- steps
    def _train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float] | None:
        """One optimizer step; None when the step was skipped for a non-finite loss.

        A rare batch can make the loss or a gradient infinite (a far-tail latent,
        an extreme crop). Stepping on it would write NaN into the weights and the
        EMA, and a resumed run, which replays the same batches, would meet it
        again; so such a step changes nothing and training goes on. Only
        ``nonfinite.max_consecutive`` skips in a row mean real divergence.
        """
        batch = {k: v.to(self.ctx.device, non_blocking=True) for k, v in batch.items()}
        q = self.quality.draw(batch["frames"].shape[0]).to(self.ctx.device)
        metrics = self.step_module(batch, q)
        loss = metrics["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        (bad_loss,) = distributed.agree_any(self.ctx, not math.isfinite(float(loss.detach())))
        bad = bad_loss
        if not bad_loss:
            loss.backward()
            clip = float(self.cfg["optimizer"]["grad_clip"])
            norm = nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)
            (bad,) = distributed.agree_any(self.ctx, not math.isfinite(float(norm)))
        if bad:
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_run += 1
            self.skipped_steps += 1
            limit = int(self.cfg["nonfinite"]["max_consecutive"])
            if self.nonfinite_run > limit:
                raise TrainingDiverged(
                    f"stage {self.cfg['stage']}: the {'loss' if bad_loss else 'gradient'} "
                    f"was not finite for {self.nonfinite_run} steps in a row (last at step "
                    f"{self.step + 1}); resume from {self.ckpt_path} with a lower optimizer.lr"
                )
        else:
            self.nonfinite_run = 0
            self.optimizer.step()
        self.scheduler.step()  # the schedule counts steps, skipped ones too
        if self.aux_optimizer is not None and self.bottlenecks:
            self.aux_optimizer.zero_grad(set_to_none=True)
            aux = torch.stack([eb.loss() for eb in self.bottlenecks]).sum()
            aux.backward()
            self.aux_optimizer.step()
        if bad:
            return None
        if self.ema is not None:
            self.ema.update()
        return {k: float(v.detach()) for k, v in metrics.items()}

    def _validate(self, phase: dict[str, Any], items: list[dict[str, torch.Tensor]],
                  logger: TrainLogger) -> None:
        """Validate (the EMA when there is one) without touching the training's randomness.

        The random generators are put back afterwards, so when and how often a run
        validates never changes its losses (``validate`` is a resume-safe key).
        The entropy tables validation builds from the EMA are rebuilt from whichever
        weights code next, and training does not read them.
        """
        self.validated_at = self.step
        if not (self.ctx.is_main and items):
            return
        qualities = self.cfg["validate"]["qualities"] or default_qualities(
            self.model.quality_range)
        weights = RAW if self.ema is None else EMA
        generators = capture_rng()
        try:
            with contextlib.nullcontext() if self.ema is None else self.ema.applied():
                rows = validate(self.model, phase["task"], items, list(qualities))
        finally:
            restore_rng(generators)
        for row in rows:
            row.update(step=self.step, phase=phase["name"], task=phase["task"], weights=weights)
        logger.val(rows)
        apply_modes(self.model)
        if self.hooks.on_validate is not None:
            self.hooks.on_validate(str(self.cfg["stage"]), self.step, rows, weights)

    @property
    def budget_spent(self) -> bool:
        """Whether ``cpu_budget_minutes`` is used up (never, without one)."""
        return self.cpu_budget_s is not None and self.cpu_s >= self.cpu_budget_s

    def budget_progress(self) -> float:
        """The share of the CPU budget spent, 0..1 (what the lr schedule follows)."""
        assert self.cpu_budget_s is not None
        return min(1.0, self.cpu_s / self.cpu_budget_s)

    def run(self, until_cpu_s: float | None = None) -> TrainResult:
        """Train until the stage's steps or CPU budget are done, a stop is asked for, or
        (``until_cpu_s``) the steps have used that much CPU time in all: a driver stops
        there, measures the weights and calls ``run`` again, which goes on exactly as
        an uninterrupted run would (eval.ablation's half-budget point)."""
        cfg = self.cfg
        log_every = max(1, int(cfg["log"]["every"]))
        val_every = int(cfg["validate"]["every"])
        save_steps = int(cfg["checkpoint"]["every_steps"])
        save_s = float(cfg["checkpoint"]["every_minutes"]) * SECONDS_PER_MINUTE
        logger = TrainLogger(
            self.out_dir, enabled=self.ctx.is_main, tensorboard=bool(cfg["log"]["tensorboard"]),
            progress=bool(cfg["log"]["progress"]), total_steps=self.total, start_step=self.step,
        )
        result = TrainResult(str(cfg["stage"]), self.step, self.total, self.ckpt_path)
        current = -1
        phase: dict[str, Any] = {}
        data: PhaseData | None = None
        window: dict[str, list[float]] = {}
        window_time = 0.0
        run_start = last_save = time.monotonic()
        steps_this_run = 0
        with StopRequest() as stop:
            while self.step < self.total and not self.budget_spent:
                index, start = phase_at(cfg, self.step)
                if index != current:
                    current, phase = index, cfg["phase_list"][index]
                    resumed = self.data_state["phase"] == index
                    data = _phase_data(
                        phase, cfg, self.ctx,
                        self.data_state["epoch"] if resumed else 0,
                        self.data_state["offset"] if resumed else 0,
                    )
                    self.descriptions[phase["name"]] = data.descriptions
                    self.task.configure(phase["task"], RateDistortion(phase["loss"],
                                        self.model.preset), phase["loss"])
                    self.quality.mode = phase["loss"]["quality"]
                    self.quality.fixed = phase["loss"]["fixed_quality"]
                    logger.message(f"stage {cfg['stage']}, phase {phase['name']} "
                                   f"({phase['task']}): steps {start}..{start + phase['steps']}"
                                   f" on {'; '.join(data.descriptions)}")
                assert data is not None
                t0 = time.monotonic()
                batch = data.stream.next()
                c0 = time.process_time()  # every thread of this process: the step's CPU
                values = self._train_step(batch)
                took = time.monotonic() - t0
                self.cpu_s += time.process_time() - c0
                window_time += took
                self.elapsed_s += took
                self.step += 1
                steps_this_run += 1
                self.data_state = {"phase": index, **data.stream.state()}
                if values is None:
                    logger.message(f"step {self.step}: the loss or its gradient was not "
                                   f"finite; the step was skipped ({self.skipped_steps} so far)")
                else:
                    result.losses.append(values["loss"])
                    for key, value in values.items():
                        window.setdefault(key, []).append(value)
                logger.advance()
                phase_end = self.step == start + phase["steps"] or self.budget_spent
                if self.step % log_every == 0 or phase_end:
                    logger.train(self._row(phase, window, window_time))
                    window, window_time = {}, 0.0
                if (val_every > 0 and self.step % val_every == 0) or phase_end:
                    self._validate(phase, data.val_items, logger)
                now = time.monotonic()
                want_stop = stop.requested or (
                    self.stop_after is not None and steps_this_run >= self.stop_after) or (
                    self.time_limit_s is not None and now - run_start >= self.time_limit_s) or (
                    until_cpu_s is not None and self.cpu_s >= until_cpu_s
                    and not self.budget_spent)
                want_save = (save_steps > 0 and self.step % save_steps == 0) or (
                    save_s > 0 and now - last_save >= save_s) or self.step == self.total or (
                    self.budget_spent)
                want_stop, want_save = distributed.agree_any(self.ctx, want_stop, want_save)
                # before the checkpoint, so a driver's record in it counts this time too;
                # a signal asks for a quick exit, so it skips this
                if (want_stop and cfg["validate"]["on_stop"] and stop.signal is None
                        and self.validated_at != self.step):
                    self._validate(phase, data.val_items, logger)
                if want_save or want_stop:
                    self.save()
                    last_save = time.monotonic()
                if want_stop:
                    if window:  # the steps since the last row would otherwise go unlogged
                        logger.train(self._row(phase, window, window_time))
                    result.signal = stop.signal
                    logger.message(f"stopped at step {self.step} of {self.total}; checkpoint "
                                   f"{self.ckpt_path} (continue with --resume)")
                    break
        logger.close()
        result.step = self.step
        result.budget_spent = self.budget_spent
        return result

    def _row(self, phase: dict[str, Any], window: dict[str, list[float]],
             seconds: float) -> dict[str, Any]:
        def mean(key: str) -> float:
            values = window.get(key)
            return sum(values) / len(values) if values else float("nan")

        steps = len(window.get("loss", []))
        return {
            "step": self.step,
            "phase": phase["name"],
            "task": phase["task"],
            "loss": mean("loss"),
            "bpp_est": mean("bpp"),
            "psnr": mse_to_psnr(mean("mse"), UNIT_PEAK) if "mse" in window else float("nan"),
            "epe": mean("epe"),
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "steps_per_s": steps / seconds if seconds > 0 else float("nan"),
            "elapsed_s": self.elapsed_s,
        }

    def close(self) -> None:
        distributed.teardown(self.ctx)


def train(
    cfg: dict[str, Any],
    *,
    resume: str | Path | None = None,
    init_from: str | Path | None = None,
    stop_after: int | None = None,
    time_limit_minutes: float | None = None,
    hooks: RunHooks | None = None,
) -> TrainResult:
    """Run (or continue) one stage; returns where it got to and this call's losses."""
    trainer = Trainer(cfg, resume=resume, init_from=init_from, stop_after=stop_after,
                      time_limit_minutes=time_limit_minutes, hooks=hooks)
    try:
        return trainer.run()
    finally:
        trainer.close()
