"""The ablation plan (configs/train/ablation/plan.yaml) and the training runs it implies.

A plan names one stage config every variant starts from (``base``: stage 1's, so
the data, crops, batch, seed, optimizer and schedule are the I-frame coder's own),
the overrides every variant shares, the CPU budget, and the variants: EDIC
variants edit the base's model preset (``preset: [KEY=VALUE]``), baselines name a
CompressAI coder (``image_coder``). Every edit uses the ``--set`` syntax of
``python -m dvc_edic.train``, through the same parser.

A baseline is single-rate, so it is one run per lambda of ``baselines.levels``;
with ``split_budget`` those runs share the variant's budget (each gets its
fraction), so every variant costs the same CPU time in all. An EDIC variant is
one variable-rate run with the whole budget.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dvc_edic.config import (
    check_bool,
    check_int,
    check_keys,
    check_list,
    check_positive,
    load_preset,
    load_yaml,
)
from dvc_edic.errors import InputError
from dvc_edic.train.config import DEFAULTS, apply_override, normalise_config, parse_override

PLAN_KEYS = ("base", "train", "budget", "baselines", "evaluation", "verdict", "reference",
             "variants", "claims")
# verdict.margin_db when a plan gives none: 0.1 dB is about 2 % of rate on a usual curve
DEFAULT_MARGIN_DB = 0.1
# what only the page reads: a results file stays valid when these change
PAGE_KEYS = ("verdict", "claims")
# how a claim is tested against the reference's BD-rate (see eval.ablation.doc.verdict)
FEWER_BITS, ON_PAR = "fewer_bits", "on_par"
CLAIM_TESTS = (FEWER_BITS, ON_PAR)
EXTENDS = "extends"  # a plan that changes another (smoke.yaml): see load_plan
# Lists that a plan extending another adds to (the parent's first); every other value,
# lists included, replaces the parent's.
APPENDED_LISTS = ("train",)
STAGE_PREFIX = "ablation_"
EDIC_RUN = "all"  # the one run of a variable-rate variant
PRESET_FILE = "preset.yaml"


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    preset: tuple[str, ...] = ()  # KEY=VALUE edits of the base config's model preset
    image_coder: Mapping[str, Any] | None = None  # a CompressAI coder in place of EDIC

    @property
    def kind(self) -> str:
        return "edic" if self.image_coder is None else "compressai"


@dataclass(frozen=True)
class Claim:
    name: str
    text: str  # the claim, as the paper makes it
    variants: tuple[str, ...]  # the variants the reference is compared with
    # fewer_bits: each variant should need more bits than the reference; on_par: none
    # should need fewer (the reference is as good or better)
    test: str = FEWER_BITS


@dataclass(frozen=True)
class DecodeTiming:
    width: int
    height: int
    level: float  # the quality the timed picture is coded at (a baseline level)
    threads: int
    repeats: int  # timed decodes after one warm-up; the fastest is reported


@dataclass(frozen=True)
class Evaluation:
    images: Path
    holdout: tuple[float, int] | None  # (fraction, seed) of the split training held back
    max_images: int | None  # the first this many (smoke runs)
    crop: tuple[int, int] | None  # (height, width) centre crop of each photo (smoke runs)
    edic_qualities: tuple[float, ...]
    encoder: Mapping[str, Any]  # EncoderSettings.with_overrides() of the encoder preset
    decode: DecodeTiming


@dataclass(frozen=True)
class Plan:
    path: Path
    raw: dict[str, Any]  # as read (extends resolved): recorded in results.json
    base: Path
    train: tuple[str, ...]
    cpu_minutes: float
    measure_at: tuple[float, ...]  # shares of the budget, ascending, the last 1
    min_cpu_minutes: float  # below this a run is a smoke test: no verdicts
    levels: tuple[float, ...]
    split_budget: bool
    evaluation: Evaluation
    margin_pct: float
    margin_db: float  # the same rule on BD-PSNR where the curves share no PSNR range
    reference: str
    variants: tuple[Variant, ...]
    claims: tuple[Claim, ...]

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise InputError(f"{self.path}: no variant {name!r}; the plan has "
                         f"{[v.name for v in self.variants]}")

    @property
    def is_smoke(self) -> bool:
        return self.cpu_minutes < self.min_cpu_minutes


@dataclass(frozen=True)
class RunPlan:
    """One training run: a variant's only run, or one lambda of a baseline."""

    variant: Variant
    name: str
    level: float | None  # the baseline's fixed quality level; None: variable rate
    budget_minutes: float
    cfg: dict[str, Any]  # the normalised stage config it trains with


# ------------------------------------------------------------------ reading
def _merge(parent: dict[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(parent)
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        elif key in APPENDED_LISTS and isinstance(value, list):
            out[key] = [*out.get(key, []), *value]
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_plan(path: Path) -> dict[str, Any]:
    """The plan's mapping, with ``extends`` (relative to the plan's folder) resolved."""
    raw = load_yaml(path)
    parent = raw.pop(EXTENDS, None)
    if parent is None:
        return raw
    return _merge(read_plan(path.parent / str(parent)), raw)


def load_plan(path: str | Path) -> Plan:
    path = Path(path)
    return parse_plan(read_plan(path), path)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = check_list(where, value or [])
    if not all(isinstance(v, str) for v in items):
        raise InputError(f"{where}: expected KEY=VALUE strings, got {items!r}")
    for text in items:
        parse_override(text)  # a malformed edit fails here, not after hours of training
    return tuple(items)


def _numbers(value: Any, where: str) -> tuple[float, ...]:
    items = check_list(where, value)
    if not items:
        raise InputError(f"{where}: expected at least one number")
    return tuple(check_positive(f"{where}[{i}]", v) for i, v in enumerate(items))


def _size(value: Any, where: str) -> tuple[int, int]:
    h, w = (check_int(f"{where}[{i}]", v, 1) for i, v in enumerate(check_list(where, value, 2)))
    return h, w


def encoder_switches() -> list[str]:
    """What ``evaluation.encoder`` may set besides the preset: the encoder's own switches
    (EncoderSettings.with_overrides, which the command-line flags go through too)."""
    from dvc_edic.encoder.settings import EncoderSettings

    return [n for n in inspect.signature(EncoderSettings.with_overrides).parameters
            if n != "self"]


def _evaluation(d: Any, where: str) -> Evaluation:
    keys = ("images", "holdout", "max_images", "crop", "edic_qualities", "encoder", "decode")
    check_keys(d, where, ["images", "edic_qualities", "encoder", "decode"], keys)
    holdout = d.get("holdout")
    if holdout is not None:
        check_keys(holdout, f"{where}.holdout", ["fraction", "seed"])
        holdout = (check_positive(f"{where}.holdout.fraction", holdout["fraction"]),
                   check_int(f"{where}.holdout.seed", holdout["seed"], 0))
    dec = check_keys(d["decode"], f"{where}.decode",
                     ["width", "height", "level", "threads", "repeats"])
    max_images = d.get("max_images")
    return Evaluation(
        images=Path(str(d["images"])).expanduser(),
        holdout=holdout,
        max_images=None if max_images is None else check_int(f"{where}.max_images",
                                                             max_images, 1),
        crop=None if d.get("crop") is None else _size(d["crop"], f"{where}.crop"),
        edic_qualities=_numbers(d["edic_qualities"], f"{where}.edic_qualities"),
        encoder=dict(check_keys(d["encoder"], f"{where}.encoder", ["preset"],
                                encoder_switches())),
        decode=DecodeTiming(
            width=check_int(f"{where}.decode.width", dec["width"], 2),
            height=check_int(f"{where}.decode.height", dec["height"], 2),
            level=check_positive(f"{where}.decode.level", dec["level"]),
            threads=check_int(f"{where}.decode.threads", dec["threads"], 1),
            repeats=check_int(f"{where}.decode.repeats", dec["repeats"], 1),
        ),
    )


def _variant(d: Any, where: str) -> Variant:
    check_keys(d, where, ["name", "label"], ["preset", "image_coder"])
    if d.get("preset") and d.get("image_coder"):
        raise InputError(f"{where}: a variant edits the EDIC preset or names an image_coder, "
                         f"not both")
    return Variant(name=str(d["name"]), label=str(d["label"]),
                   preset=_strings(d.get("preset"), f"{where}.preset"),
                   image_coder=d.get("image_coder"))


def measured_part(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A plan's raw mapping without what only the page reads (claims, verdict rule):
    two plans with the same measured part train and measure the same things."""
    return {k: v for k, v in raw.items() if k not in PAGE_KEYS}


def parse_plan(raw: dict[str, Any], path: Path) -> Plan:
    """Check a plan's mapping; every refusal names the file and the field."""
    where = str(path)
    check_keys(raw, where, PLAN_KEYS)
    budget = check_keys(raw["budget"], f"{where}: budget",
                        ["cpu_minutes", "measure_at", "min_cpu_minutes"])
    measure_at = _numbers(budget["measure_at"], f"{where}: budget.measure_at")
    if list(measure_at) != sorted(set(measure_at)) or measure_at[-1] != 1.0:
        raise InputError(f"{where}: budget.measure_at must rise and end at 1 (the whole "
                         f"budget), got {list(measure_at)}")
    base = check_keys(raw["baselines"], f"{where}: baselines", ["levels", "split_budget"])
    verdict = check_keys(raw["verdict"], f"{where}: verdict", ["margin_pct"], ["margin_db"])
    variants = tuple(_variant(v, f"{where}: variants[{i}]")
                     for i, v in enumerate(check_list(f"{where}: variants", raw["variants"])))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise InputError(f"{where}: variant names must differ, got {names}")
    claims = []
    for i, c in enumerate(check_list(f"{where}: claims", raw["claims"])):
        check_keys(c, f"{where}: claims[{i}]", ["name", "claim", "variants"], ["test"])
        test = str(c.get("test", FEWER_BITS))
        if test not in CLAIM_TESTS:
            raise InputError(f"{where}: claims[{i}].test must be one of {list(CLAIM_TESTS)}, "
                             f"got {test!r}")
        claims.append(Claim(str(c["name"]), str(c["claim"]), tuple(c["variants"]), test))
    plan = Plan(
        path=path,
        raw=raw,
        base=Path(str(raw["base"])),
        train=_strings(raw["train"], f"{where}: train"),
        cpu_minutes=check_positive(f"{where}: budget.cpu_minutes", budget["cpu_minutes"]),
        measure_at=measure_at,
        min_cpu_minutes=check_positive(f"{where}: budget.min_cpu_minutes",
                                       budget["min_cpu_minutes"]),
        levels=_numbers(base["levels"], f"{where}: baselines.levels"),
        split_budget=check_bool(f"{where}: baselines.split_budget", base["split_budget"]),
        evaluation=_evaluation(raw["evaluation"], f"{where}: evaluation"),
        margin_pct=check_positive(f"{where}: verdict.margin_pct", verdict["margin_pct"]),
        margin_db=check_positive(f"{where}: verdict.margin_db",
                                 verdict.get("margin_db", DEFAULT_MARGIN_DB)),
        reference=str(raw["reference"]),
        variants=variants,
        claims=tuple(claims),
    )
    reference = plan.variant(plan.reference)
    if reference.kind != "edic":
        raise InputError(f"{where}: the reference {plan.reference!r} must be an EDIC variant")
    for claim in plan.claims:
        for name in claim.variants:
            plan.variant(name)
    if plan.evaluation.decode.level not in plan.levels:
        raise InputError(f"{where}: evaluation.decode.level {plan.evaluation.decode.level:g} "
                         f"must be one of baselines.levels {list(plan.levels)}, which the "
                         f"single-rate baselines are trained at")
    return plan


# ------------------------------------------------------------------ runs
def _edit(raw: dict[str, Any], edits: Sequence[str]) -> None:
    for text in edits:
        apply_override(raw, *parse_override(text))


def variant_preset(plan: Plan, variant: Variant, model: str, out: Path) -> str:
    """The model an EDIC variant trains: the base preset itself, or a copy with the
    variant's edits written to ``out`` (the run folder) and named after the variant."""
    if not variant.preset:
        return model
    preset = load_preset(model)
    _edit(preset, variant.preset)
    preset["name"] = f"{preset['name']}-{variant.name}"
    from dvc_edic.models.preset import Preset

    Preset.from_dict(preset)  # refuse a bad edit before training starts
    path = out / PRESET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(preset, sort_keys=False), encoding="utf-8")
    return str(path)


def variant_runs(plan: Plan, variant: Variant, out: Path,
                 overrides: Sequence[str] = ()) -> list[RunPlan]:
    """The training runs of one variant, each with its config; ``overrides`` (--set) come
    after the plan's own. Their folders are ``out/<variant>/<run>``."""
    folder = out / variant.name
    levels: list[float | None] = [None] if variant.kind == "edic" else list(plan.levels)
    share = 1.0 / len(levels) if plan.split_budget else 1.0
    runs = []
    for level in levels:
        name = EDIC_RUN if level is None else f"level{level:g}"
        raw = load_yaml(plan.base)
        _edit(raw, [*plan.train, *overrides])
        raw.update(stage=f"{STAGE_PREFIX}{variant.name}_{name}", out_dir=str(folder / name),
                   cpu_budget_minutes=plan.cpu_minutes * share)
        if variant.kind == "edic":
            model = str(raw.get("model", DEFAULTS["model"]))
            raw["model"] = variant_preset(plan, variant, model, folder)
        else:
            _edit(raw, ["loss.quality=fixed", f"loss.fixed_quality={level}",
                        f"validate.qualities=[{level}]"])
            raw["image_coder"] = dict(variant.image_coder or {})
        cfg = normalise_config(raw, f"{plan.path}: variant {variant.name}, run {name}")
        runs.append(RunPlan(variant, name, level, plan.cpu_minutes * share, cfg))
    return runs
