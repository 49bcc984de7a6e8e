"""Stage configs: one YAML per training stage, read into plain dicts with defaults filled in.

Configs stay plain dicts (not dataclasses) because the whole dict is stored in
every checkpoint and in the exported weights' metadata: a user can always see
exactly which settings produced a model, including ones added after it was
trained. Every default lives in :data:`DEFAULTS`, so nothing hides in the loop.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import yaml

from dvc_edic.config import load_yaml
from dvc_edic.errors import InputError
from dvc_edic.train.ema import WEIGHT_KINDS, check_settings

TASKS = ("image", "flow_supervised", "warp", "mv", "mc", "pframe", "multiframe")
DISTORTIONS = ("mse", "ms-ssim")
QUALITY_MODES = ("per_sample", "per_batch", "fixed")
FLOW_SOURCES = ("learned", "dis", "block")  # what the MV coder, MC net and residual coder train on
REFERENCES = ("original", "intra")
DECAYS = ("none", "step", "cosine")
MEMORY_FORMATS = ("channels_last", "contiguous")

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")

# Dataset configs belong to dvc_edic.data, and init_parts is keyed by module names: both
# are replaced whole, never merged key by key.
OPAQUE_KEYS = ("train", "val", "init_parts")

# Keys a phase may set for itself; everything else belongs to the whole stage
# (one optimizer, one set of trainable parameters, one output folder).
PHASE_KEYS = ("name", "task", "steps", "batch_size", "data", "loss")

DEFAULTS: dict[str, Any] = {
    "stage": None,  # required: the name recorded in checkpoints and exported weights
    "model": "cpu",  # preset name in configs/models/ or path to a preset YAML
    "init_from": None,  # previous stage's checkpoint (.pt) or exported weights (.safetensors)
    # {module prefix: checkpoint}: after init_from, take these modules from other runs,
    # e.g. {intra: runs/1_image/checkpoint.pt} when the I-frame coder trained on in parallel
    "init_parts": {},
    # module prefixes (keys of MODULE_SECTIONS) that start from fresh weights instead of
    # init_from's: lets a stage keep the trained parts when one part's preset section changed
    "init_fresh": [],
    # ema | raw: which weights of an init_from / init_parts checkpoint this stage starts from
    # (a checkpoint without an EMA gives its raw weights either way)
    "init_weights": "ema",
    "out_dir": None,  # default: runs/<stage>
    "seed": 1,
    "threads": 2,  # torch intra-op threads per process
    "device": "auto",  # auto | cpu | cuda
    # channels_last | contiguous: the layout of the model's 4-D weights (and so of its
    # activations) while it trains. Speed only: on 2 CPU cores oneDNN's convolutions run
    # stage 1's steps 12-17 % faster channels-last (bench/results/train.json)
    "memory_format": "channels_last",
    "task": None,
    "steps": None,
    # Stop when the optimizer steps (forward, backward, updates) have used this much CPU
    # time of the process, all threads summed, and run the lr schedule's decays over that
    # budget instead of over `steps` (which then only caps the run): what an equal-budget
    # comparison needs, where each variant runs at its own speed (eval.ablation). Loading
    # the batches, validating and checkpointing are not counted: the same work per step
    # whatever trains.
    "cpu_budget_minutes": None,
    # A CompressAI image codec trained in place of the EDIC I-frame coder, for the
    # equal-budget comparisons of eval.ablation: {arch: bmshj2018-hyperprior |
    # mbt2018-mean | mbt2018, N, M} (N, M default to the preset's intra section). The
    # model then holds only `intra`, so only the image task can train it.
    "image_coder": None,
    "batch_size": 8,  # per process: under torchrun the global batch is N times this
    "num_workers": 0,
    "trainable": [],  # module-name prefixes that train, e.g. [intra] or [pframe.flow]
    "freeze": [],  # prefixes taken back out of `trainable`
    "optimizer": {
        "lr": 1.0e-4,
        "aux_lr": 1.0e-3,  # Adam on the entropy bottlenecks' quantiles (CompressAI practice)
        "betas": [0.9, 0.999],
        "weight_decay": 0.0,
        "grad_clip": 1.0,  # max global gradient norm; 0 turns clipping off
    },
    # A step whose loss or gradient is not finite is skipped (no update, no EMA); this
    # many in a row stop the run as diverged.
    "nonfinite": {"max_consecutive": 8},
    "schedule": {
        "warmup_steps": 0,
        "decay": "step",  # none | step | cosine
        "decay_at": [0.8],  # step decay: fractions of the stage's total steps
        "gamma": 0.1,  # step decay: lr factor at each decay_at point
        "final_factor": 0.01,  # cosine decay: lr factor at the last step
    },
    "loss": {
        "distortion": "mse",  # mse | ms-ssim
        "lambdas": None,  # mse ladder; None = the preset's `lambdas`
        # ms-ssim ladder for L = lambda * (1 - MS-SSIM) + bpp (CompressAI's MS-SSIM ladder)
        "msssim_lambdas": [2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.00],
        "msssim_weights": None,  # 5 per-scale weights; None = pytorch-msssim's default
        "quality": "per_sample",  # per_sample | per_batch | fixed
        "fixed_quality": None,  # used when quality is fixed
        "reference": "intra",  # P tasks: reference is the original frame 0 or its I-frame decode
        "detach_reference": True,  # multiframe: stop gradients between frames
        "warp_weight": 1.0,  # warp task: weight of the warping MSE
        # mv/mc/pframe/multiframe: the flow that is coded, from the model's flow net
        # (which then trains too) or from the encoder's DIS (configs/encoder.yaml `dis`),
        # so the later parts learn on the flows `--motion dis` will send
        "flow_source": "learned",
        # share of P-frame steps that predict by block motion (the encoder's `block` source:
        # DIS averaged per block, plain warp) and so train only the residual coder;
        # flow_source `block` makes it every step
        "block_share": 0.0,
    },
    "data": {
        "train": None,  # dataset config(s) for dvc_edic.data.build_dataset (a list is concatenated)
        "val": None,  # held-aside dataset config(s); None = the last `holdout` train items
        "holdout": 0,  # train items set aside for validation when `val` is not given
    },
    "validate": {
        "every": 0,  # steps between validations; 0 = only at the end of the stage
        "items": 4,  # validation items per run
        "qualities": None,  # None = lowest, middle and highest quality level
        # also validate when --stop-after / --time-limit stops the run (validation leaves
        # the random generators as it found them); the campaign uses this for its ledger
        "on_stop": False,
    },
    "checkpoint": {
        "every_steps": 500,
        "every_minutes": 10.0,
    },
    "log": {
        "every": 10,  # steps per CSV/TensorBoard row (values are means over those steps)
        "tensorboard": True,
        "progress": True,  # tqdm bar (rank 0 only)
    },
    "ddp": {
        "find_unused_parameters": False,
        "timeout_minutes": 30,
    },
    "phases": None,  # optional list of {name, task, steps, batch_size, data, loss}
    # exponential moving average of the trainable weights (dvc_edic.train.ema): what
    # validation, export and the next stage use. `ema: null` or decay 0 turns it off.
    "ema": {
        "decay": 0.999,  # weight of the old average at each optimizer step (~1000-step horizon)
        # update u uses min(decay, (1 + u) / (warmup + u)), so the starting weights fade
        # quickly; 0 disables the warm-up
        "warmup": 10,
    },
}


def _merge(base: dict[str, Any], over: dict[str, Any], where: str) -> dict[str, Any]:
    """Recursive update that refuses unknown keys, so a typo never silently does nothing."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if key not in base:
            raise InputError(f"{where}: unknown key {key!r}; known keys: {sorted(base)}")
        if key not in OPAQUE_KEYS and isinstance(base[key], dict) and isinstance(value, dict):
            out[key] = _merge(base[key], value, f"{where}.{key}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` from the command line; the value is read as YAML (numbers, lists...)."""
    if "=" not in text:
        raise InputError(f"--set expects KEY=VALUE (e.g. steps=100), got {text!r}")
    key, value = text.split("=", 1)
    path = [k for k in key.strip().split(".") if k]
    if not path:
        raise InputError(f"--set {text!r}: empty key")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise InputError(f"--set {text!r}: value is not valid YAML ({exc})") from exc
    if isinstance(parsed, str) and _FLOAT.fullmatch(parsed.strip()):
        parsed = float(parsed)  # YAML 1.1 reads 5e-4 (no dot) as a string
    return path, parsed


def apply_override(raw: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``raw[a][b]... = value``; an integer key indexes a list (data.train.0.root=...)."""
    node: Any = raw
    where = ".".join(path)
    for i, key in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise InputError(f"--set {where}: {key!r} is not an index of a "
                                 f"{len(node)}-item list")
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                if node.get(key) is None:
                    node[key] = {}
                node = node[key]
        else:
            raise InputError(f"--set {where}: {path[i - 1]!r} is neither a mapping nor a list")


def _check_choice(value: Any, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise InputError(f"{what} must be one of {choices}, got {value!r}")


def _normalise_phases(cfg: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """Every stage becomes a list of phases; a stage without `phases` is a single phase."""
    raw = cfg["phases"] or [{}]
    if not isinstance(raw, list):
        raise InputError(f"{where}: phases must be a list, got {type(raw).__name__}")
    phases = []
    for i, over in enumerate(raw):
        if not isinstance(over, dict):
            raise InputError(f"{where}: phase {i} must be a mapping")
        unknown = sorted(set(over) - set(PHASE_KEYS))
        if unknown:
            raise InputError(f"{where}: phase {i} has unknown keys {unknown}; allowed {PHASE_KEYS}")
        phase = {
            "name": over.get("name", cfg["task"] if len(raw) == 1 else f"phase{i}"),
            "task": over.get("task", cfg["task"]),
            "steps": over.get("steps", cfg["steps"]),
            "batch_size": over.get("batch_size", cfg["batch_size"]),
            "data": _merge(cfg["data"], over.get("data", {}), f"{where}.phases[{i}].data"),
            "loss": _merge(cfg["loss"], over.get("loss", {}), f"{where}.phases[{i}].loss"),
        }
        _check_choice(phase["task"], TASKS, f"{where}: phase {i} task")
        if not isinstance(phase["steps"], int) or phase["steps"] < 0:
            raise InputError(f"{where}: phase {i} steps must be an integer >= 0, "
                             f"got {phase['steps']!r}")
        if not isinstance(phase["batch_size"], int) or phase["batch_size"] < 1:
            raise InputError(f"{where}: phase {i} batch_size must be a positive integer, "
                             f"got {phase['batch_size']!r}")
        if phase["data"]["train"] is None:
            raise InputError(f"{where}: phase {i} has no data.train dataset config")
        loss = phase["loss"]
        _check_choice(loss["distortion"], DISTORTIONS, f"{where}: loss.distortion")
        _check_choice(loss["quality"], QUALITY_MODES, f"{where}: loss.quality")
        _check_choice(loss["reference"], REFERENCES, f"{where}: loss.reference")
        _check_choice(loss["flow_source"], FLOW_SOURCES, f"{where}: loss.flow_source")
        share = loss["block_share"]
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise InputError(f"{where}: loss.block_share must be a number in 0..1, got {share!r}")
        if loss["quality"] == "fixed" and loss["fixed_quality"] is None:
            raise InputError(f"{where}: loss.quality is fixed but loss.fixed_quality is not set")
        phases.append(phase)
    return phases


def normalise_config(raw: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """Defaults filled in, choices checked, `phases` expanded. Idempotent."""
    raw = {k: v for k, v in raw.items() if k != "phase_list"}
    cfg = _merge(DEFAULTS, raw, where)
    if not cfg["stage"]:
        raise InputError(f"{where}: `stage` (the stage's name) is required")
    if cfg["out_dir"] is None:
        cfg["out_dir"] = str(Path("runs") / str(cfg["stage"]))
    _check_choice(cfg["schedule"]["decay"], DECAYS, f"{where}: schedule.decay")
    _check_choice(cfg["device"], ("auto", "cpu", "cuda"), f"{where}: device")
    _check_choice(cfg["memory_format"], MEMORY_FORMATS, f"{where}: memory_format")
    _check_choice(cfg["init_weights"], WEIGHT_KINDS, f"{where}: init_weights")
    check_settings(cfg["ema"], where)
    budget = cfg["cpu_budget_minutes"]
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                               or not 0 < budget < math.inf):
        raise InputError(f"{where}: cpu_budget_minutes must be a positive number or null, "
                         f"got {budget!r}")
    if cfg["image_coder"] is not None:
        from dvc_edic.train.baselines import parse_image_coder

        parse_image_coder(cfg["image_coder"], f"{where}: image_coder")
    if not isinstance(cfg["threads"], int) or cfg["threads"] < 1:
        raise InputError(f"{where}: threads must be a positive integer, got {cfg['threads']!r}")
    if not cfg["trainable"]:
        raise InputError(f"{where}: `trainable` lists no module: nothing would train")
    from dvc_edic.models.video import MODULE_SECTIONS

    fresh = cfg["init_fresh"]
    if not isinstance(fresh, list) or any(m not in MODULE_SECTIONS for m in fresh):
        raise InputError(
            f"{where}: init_fresh must be a list of {sorted(MODULE_SECTIONS)}, got {fresh!r}"
        )
    cfg["phase_list"] = _normalise_phases(cfg, where)
    return cfg


def load_train_config(
    path: str | Path | None, overrides: list[str] = (), base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Read a stage YAML (or start from ``base``, e.g. a checkpoint's config) and apply --set."""
    if path is not None:
        raw = load_yaml(path)
        where = str(path)
    elif base is not None:
        raw = {k: v for k, v in copy.deepcopy(base).items() if k != "phase_list"}
        where = "checkpoint config"
    else:
        raise InputError("no training config: pass a stage YAML or --resume a checkpoint")
    for text in overrides:
        apply_override(raw, *parse_override(text))
    return normalise_config(raw, where)


def total_steps(cfg: dict[str, Any]) -> int:
    return sum(p["steps"] for p in cfg["phase_list"])


def phase_at(cfg: dict[str, Any], step: int) -> tuple[int, int]:
    """(phase index, first step of that phase) for a global step."""
    start = 0
    phases = cfg["phase_list"]
    for i, phase in enumerate(phases):
        if step < start + phase["steps"]:
            return i, start
        start += phase["steps"]
    return len(phases) - 1, start - phases[-1]["steps"]
