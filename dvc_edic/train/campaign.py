"""``python -m dvc_edic.train.campaign --hours H``: the curriculum as a time-budgeted campaign.

Training on a 2-core CPU takes many sessions, each of which may be cut off at
any moment. A campaign turns the stage configs into one plan that every
session simply continues:

- The **plan** (``configs/train/campaign.yaml``) lists stages in order, each
  with its config and its share of the budget. ``--hours H`` is the whole
  campaign's budget of wall-clock training hours, summed over sessions; stage
  i may spend ``share_i * H`` of them.
- The **resume file** (``--state``, e.g. ``train_state/resume.pt``) says
  which stage the campaign is in. That stage continues until its share is
  spent (or its steps are done); the next stage then starts from its
  checkpoint (the whole model, or only ``previous_parts`` of it through
  ``init_parts``, the rest coming from the stage's own ``init_from``). Hours
  spent, per stage and in all, and CPU-hours travel inside every checkpoint
  (key ``campaign``), so they are exactly as old as the weights.
- Each stage writes full checkpoints to ``<work_dir>/<stage>/checkpoint.pt``
  every ``checkpoint.every_minutes``; SIGINT/SIGTERM stop at the next step
  with a checkpoint. A session that was cut off finds its own later work
  there: checkpoints carry the campaign's id, named after the resume file the
  campaign started from.
- The **ledger** (``--ledger``, CSV) gets a row at every validation (real
  bytes, at the plan's qualities, on the EMA weights) and at the end of every
  stage segment, with the UTC date, stage, step and cumulative hours.
- ``--compact-to PATH`` writes the compact resume file (dvc_edic.train.compact)
  of the last checkpoint at the end, also after a signal, atomically: passing
  the ``--state`` path keeps one resume file that the next session continues.

Exit status: 0 when the budget (or --session-hours) is spent, 128 + N after
signal N, 2 for a bad plan, config or argument, 1 for other errors.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import hashlib
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dvc_edic.cli import EXIT_ERROR, EXIT_USAGE
from dvc_edic.config import load_yaml
from dvc_edic.errors import DvcEdicError, InputError
from dvc_edic.models.video import MODULE_SECTIONS
from dvc_edic.train.checkpoint import checkpoint_path, load_checkpoint
from dvc_edic.train.compact import write_compact
from dvc_edic.train.config import load_train_config, normalise_config, total_steps
from dvc_edic.train.logs import CsvLog
from dvc_edic.train.loop import DRIVER_KEY, RunHooks, overlaps, train
from dvc_edic.train.signals import StopRequest, exit_code

DEFAULT_PLAN = "configs/train/campaign.yaml"
DEFAULT_STATE = "train_state/resume.pt"
DEFAULT_LEDGER = "train_state/ledger.csv"
SECONDS_PER_HOUR = 3600.0
MINUTES_PER_HOUR = 60.0
ID_HEX_DIGITS = 12  # of a sha256: plenty to tell a handful of campaigns apart
PLAN_KEYS = ("stages", "work_dir", "ledger_qualities")
STAGE_KEYS = ("config", "share", "set", "previous_parts")
# Ledger columns before the per-quality ones; values are rounded for reading, not for maths.
LEDGER_COLUMNS = ["date", "stage", "step", "event", "hours", "cpu_hours", "weights"]
HOURS_FORMAT = "{:.6f}"  # seconds resolution: short test runs must not read as 0
BPP_FORMAT = "{:.4f}"
PSNR_FORMAT = "{:.2f}"
SESSION_LIMIT = "session limit"


# ------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class PlanStage:
    stage: str
    config: Path
    share: float
    overrides: list[str]  # --set style KEY=VALUE, applied to the stage config
    previous_parts: list[str]  # modules taken from the previous stage ([]: all of them)


@dataclass(frozen=True)
class Plan:
    path: Path
    stages: list[PlanStage]
    work_dir: Path
    qualities: list[float]

    def index(self, stage: str, source: Path) -> int:
        names = [s.stage for s in self.stages]
        if stage not in names:
            raise InputError(f"{source}: holds stage {stage!r}, which the plan {self.path} "
                             f"does not list (its stages: {names})")
        return names.index(stage)

    def config(self, index: int) -> dict[str, Any]:
        """The stage's config as the campaign runs it: its own out_dir, the ledger's qualities."""
        entry = self.stages[index]
        cfg = load_train_config(entry.config, entry.overrides)
        cfg["out_dir"] = str(self.work_dir / entry.stage)
        cfg["validate"] = {**cfg["validate"], "qualities": list(self.qualities), "on_stop": True}
        return normalise_config(cfg, str(entry.config))


def with_overrides(plan: Plan, overrides: list[str]) -> Plan:
    """The plan with KEY=VALUE overrides added to every stage, after the plan's own.

    A lent GPU runs the same campaign as the CPU (same stages, shares, resume file) but
    with its own batch size, workers and data folders, which would be wrong in the plan.
    """
    if not overrides:
        return plan
    stages = [replace(s, overrides=[*s.overrides, *overrides]) for s in plan.stages]
    return replace(plan, stages=stages)


def _expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InputError(f"{where}: {what}, got {value!r}")
    return value


def load_plan(path: str | Path) -> Plan:
    """Read and check a plan; every error names the file, the entry and the bad value."""
    path = Path(path)
    raw = _expect(load_yaml(path), dict, str(path), "expected a mapping of " + str(PLAN_KEYS))
    unknown = sorted(set(raw) - set(PLAN_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown keys {unknown}; known keys: {list(PLAN_KEYS)}")
    entries = _expect(raw.get("stages"), list, str(path), "stages must be a non-empty list")
    if not entries:
        raise InputError(f"{path}: stages must be a non-empty list, got []")
    stages = []
    for i, entry in enumerate(entries):
        where = f"{path}: stages[{i}]"
        _expect(entry, dict, where, f"expected a mapping with keys {list(STAGE_KEYS)}")
        unknown = sorted(set(entry) - set(STAGE_KEYS))
        if unknown:
            raise InputError(f"{where}: unknown keys {unknown}; known keys: {list(STAGE_KEYS)}")
        config = Path(_expect(entry.get("config"), str, where, "config must be a YAML path"))
        share = float(_expect(entry.get("share"), (int, float), where,
                              "share must be a number in (0, 1]"))
        if not 0.0 < share <= 1.0:
            raise InputError(f"{where}: share must be in (0, 1], got {share}")
        overrides = _expect(entry.get("set", []), list, where, "set must be a list of KEY=VALUE")
        parts = _expect(entry.get("previous_parts", []), list, where,
                        "previous_parts must be a list of module names")
        unknown = [p for p in parts if not any(overlaps(m, [str(p)]) for m in MODULE_SECTIONS)]
        if unknown:
            raise InputError(f"{where}: previous_parts {unknown} name no module; modules: "
                             f"{sorted(MODULE_SECTIONS)}")
        stage = str(load_train_config(config, overrides)["stage"])
        stages.append(PlanStage(stage, config, share, [str(o) for o in overrides],
                                [str(p) for p in parts]))
    total = sum(s.share for s in stages)
    if not math.isclose(total, 1.0):
        raise InputError(f"{path}: the stages' shares must add up to 1, they add up to {total:g}")
    names = [s.stage for s in stages]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: a stage may appear once, the plan lists {names}")
    work_dir = Path(_expect(raw.get("work_dir"), str, str(path), "work_dir must be a folder"))
    qualities = _expect(raw.get("ledger_qualities"), list, str(path),
                        "ledger_qualities must be a list of quality levels")
    for q in qualities:
        _expect(q, (int, float), str(path), "ledger_qualities must be numbers")
    return Plan(path, stages, work_dir, [float(q) for q in qualities])


# ---------------------------------------------------------------- bookkeeping
def _cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished children (data workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def campaign_id(state: dict[str, Any] | None, plan: Plan) -> str:
    """A campaign is named after where it started.

    A session that restarts from that same resume file (nothing compacted over it
    in between) then recognises the checkpoints the last session left in the
    work folder as its own, and anything else there as someone else's.
    """
    if state is None:
        basis = f"fresh:{plan.stages[0].config}"
    else:
        basis = f"{state['stage']}:{state['step']}:{float(state['elapsed_s'])!r}"
    return hashlib.sha256(basis.encode()).hexdigest()[:ID_HEX_DIGITS]


class Clock:
    """The campaign's record (stored in checkpoints) plus the segment running now."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self._stage: str | None = None
        self._wall0 = self._cpu0 = 0.0

    def start(self, stage: str) -> None:
        self._stage, self._wall0, self._cpu0 = stage, time.monotonic(), _cpu_seconds()

    def snapshot(self) -> dict[str, Any]:
        """The record as of now (what a checkpoint written now must hold)."""
        out = {**self.record, "stage_hours": dict(self.record["stage_hours"])}
        if self._stage is not None:
            wall = (time.monotonic() - self._wall0) / SECONDS_PER_HOUR
            out["stage_hours"][self._stage] = out["stage_hours"].get(self._stage, 0.0) + wall
            out["hours"] += wall
            out["cpu_hours"] += (_cpu_seconds() - self._cpu0) / SECONDS_PER_HOUR
        return out

    def stop(self) -> None:
        self.record, self._stage = self.snapshot(), None

    def spent(self, stage: str) -> float:
        return float(self.snapshot()["stage_hours"].get(stage, 0.0))


class Ledger:
    """train_state/ledger.csv: one readable row per validation and per stage segment."""

    def __init__(self, path: Path, qualities: list[float]) -> None:
        self.qualities = qualities
        columns = [*LEDGER_COLUMNS,
                   *(f"{m}@q{q:g}" for q in qualities for m in ("bpp", "psnr"))]
        if path.is_file() and path.stat().st_size > 0:
            with path.open(newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            if header != columns:
                raise InputError(
                    f"{path}: the ledger's columns are {header}, but this plan's are {columns} "
                    f"(ledger_qualities {[f'{q:g}' for q in qualities]}); pass another --ledger"
                )
        path.parent.mkdir(parents=True, exist_ok=True)
        self.log = CsvLog(path, columns)

    def write(self, stage: str, step: int, event: str, record: dict[str, Any],
              weights: str = "", rows: Sequence[dict[str, Any]] = ()) -> None:
        row: dict[str, Any] = {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "stage": stage, "step": step, "event": event, "weights": weights,
            "hours": HOURS_FORMAT.format(record["hours"]),
            "cpu_hours": HOURS_FORMAT.format(record["cpu_hours"]),
        }
        for r in rows:
            q = r.get("quality")
            if isinstance(q, float) and q in self.qualities and "bpp" in r:
                row[f"bpp@q{q:g}"] = BPP_FORMAT.format(r["bpp"])
                row[f"psnr@q{q:g}"] = PSNR_FORMAT.format(r["psnr"])
        self.log.write(row)


# -------------------------------------------------------------------- session
@dataclass
class Position:
    """Where the campaign stands: the stage's plan index and its latest checkpoint."""

    index: int
    checkpoint: Path | None  # None: the stage has not started (nothing to resume)
    step: int = 0


def _owner(state: dict[str, Any]) -> str | None:
    record = state.get(DRIVER_KEY)
    return record.get("id") if isinstance(record, dict) else None


def find_start(plan: Plan, state_path: Path, fresh_ok: bool) -> tuple[Position, Clock]:
    """The most advanced checkpoint of this campaign: the resume file or its work folder."""
    if state_path.is_file():
        state = load_checkpoint(state_path)
        position = Position(plan.index(str(state["stage"]), state_path), state_path,
                            int(state["step"]))
        record = state.get(DRIVER_KEY) or None
        ident = _owner(state) or campaign_id(state, plan)
    elif fresh_ok:
        position, record, ident = Position(0, None), None, campaign_id(None, plan)
    else:
        raise InputError(f"{state_path}: no such resume file (pass --start to begin the plan "
                         f"{plan.path} at its first stage, {plan.stages[0].stage})")
    if record is None:
        record = {"id": ident, "plan": str(plan.path), "stage_hours": {}, "hours": 0.0,
                  "cpu_hours": 0.0}
    for index, entry in enumerate(plan.stages):
        path = checkpoint_path(plan.work_dir / entry.stage)
        if not path.is_file() or index < position.index:
            continue
        state = load_checkpoint(path)
        if _owner(state) != ident:
            continue  # refused by check_work_dir if the campaign ever needs that folder
        step = int(state["step"])
        if index > position.index or step >= position.step:
            position, record = Position(index, path, step), state[DRIVER_KEY]
    return position, Clock(record)


def check_work_dir(path: Path, ident: str, resume: Path | None) -> None:
    """Never write over a checkpoint that another run or campaign left there.

    The file being resumed is the campaign's own whatever it says (e.g. a stage's
    checkpoint given as --state), since the run continues it.
    """
    if not path.is_file() or (resume is not None and path.resolve() == resume.resolve()):
        return
    owner = _owner(load_checkpoint(path))
    if owner != ident:
        raise InputError(
            f"{path}: holds a checkpoint of {'campaign ' + owner if owner else 'another run'}, "
            f"not of this campaign ({ident}), and the campaign would write over it: move it "
            f"away or set another work_dir in the plan"
        )


def start_from_previous(cfg: dict[str, Any], entry: PlanStage,
                        previous: Path) -> tuple[dict[str, Any], Path | None]:
    """(config, init_from) that start a stage from the previous stage's checkpoint.

    With ``previous_parts`` only those modules come from it, through init_parts, and
    the rest from the config's init_from; with no init_from either, the rest starts
    fresh (init_fresh), since init_parts needs a model to join the parts into.
    """
    if not entry.previous_parts:
        return cfg, previous
    if cfg["init_from"] is not None:
        return {**cfg, "init_parts": {p: str(previous) for p in entry.previous_parts}}, None
    fresh = [m for m in MODULE_SECTIONS if not overlaps(m, entry.previous_parts)]
    return {**cfg, "init_fresh": fresh}, previous


@dataclass
class Options:
    hours: float
    session_hours: float | None = None
    compact_to: Path | None = None
    bf16_moments: bool = False


def _say(text: str) -> None:
    print(f"campaign: {text}", flush=True)


def run_campaign(plan: Plan, state_path: Path, ledger_path: Path, opts: Options, *,
                 fresh_ok: bool = False) -> int:
    """Run the plan from the resume file until the budget, the session or a signal ends it.

    Returns the exit status (0, or 128 + the signal that stopped it).
    """
    position, clock = find_start(plan, state_path, fresh_ok)
    ident = clock.record["id"]
    clock.record = {**clock.record, "budget_hours": opts.hours}
    ledger = Ledger(ledger_path, plan.qualities)
    session_end = None if opts.session_hours is None else (
        time.monotonic() + opts.session_hours * SECONDS_PER_HOUR)
    previous: Path | None = None  # the finished stage's checkpoint, the next stage's start
    caught: int | None = None

    def on_validate(stage: str, step: int, rows: list[dict[str, Any]], weights: str) -> None:
        ledger.write(stage, step, "validation", clock.snapshot(), weights, rows)

    hooks = RunHooks(on_validate=on_validate, driver_state=clock.snapshot)
    with StopRequest() as stop:
        while not stop.requested:
            entry = plan.stages[position.index]
            cfg = plan.config(position.index)
            left_h = entry.share * opts.hours - clock.spent(entry.stage)
            done = position.checkpoint is not None and position.step >= total_steps(cfg)
            if left_h <= 0 or done:
                why = "its steps are done" if done else "its share is spent"
                if position.index + 1 == len(plan.stages):
                    _say(f"stage {entry.stage}: {why}; the plan is complete "
                         f"({clock.record['hours']:.2f} of {opts.hours:g} h spent)")
                    break
                previous = position.checkpoint
                position = Position(position.index + 1, None)
                _say(f"stage {entry.stage}: {why}; next stage "
                     f"{plan.stages[position.index].stage}, from {previous}")
                continue
            session_left_h = math.inf if session_end is None else (
                (session_end - time.monotonic()) / SECONDS_PER_HOUR)
            if session_left_h <= 0:
                break
            resume, init_from = position.checkpoint, None
            check_work_dir(checkpoint_path(cfg["out_dir"]), ident, resume)
            if resume is None and previous is not None:
                cfg, init_from = start_from_previous(cfg, entry, previous)
            _say(f"stage {entry.stage}: {left_h:.2f} h of its {entry.share * opts.hours:.2f} "
                 f"h left; " + (f"resuming {resume} at step {position.step}" if resume
                                else f"starting from {init_from or cfg['init_from'] or 'scratch'}"
                                + (f" with {cfg['init_parts']}" if cfg["init_parts"] else "")))
            clock.start(entry.stage)
            try:
                result = train(cfg, resume=resume, init_from=init_from, hooks=hooks,
                               time_limit_minutes=min(left_h, session_left_h) * MINUTES_PER_HOUR)
            finally:
                clock.stop()
            position = Position(position.index, result.checkpoint, result.step)
            if result.signal is not None:
                caught = result.signal
                event = f"stopped by {signal.Signals(result.signal).name}"
            elif result.finished:
                event = "end of segment: stage steps done"
            elif session_left_h < left_h:
                event = f"end of segment: {SESSION_LIMIT}"
            else:
                event = "end of segment: share spent"
            ledger.write(entry.stage, result.step, event, clock.record)
            if caught is not None or event.endswith(SESSION_LIMIT):
                break
        caught = caught if caught is not None else stop.signal
    if opts.compact_to is not None and position.checkpoint is not None:
        target = write_compact(position.checkpoint, opts.compact_to,
                               bf16_moments=opts.bf16_moments)
        _say(f"wrote {target} (stage {plan.stages[position.index].stage}, step {position.step})")
    return exit_code(caught)


# ------------------------------------------------------------------------ CLI
def parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        prog="python -m dvc_edic.train.campaign",
        description=doc.split("\n\n", 1)[1].rsplit("\n\nExit status", 1)[0],
        epilog="Exit status: " + doc.rsplit("Exit status: ", 1)[-1].strip()
        + " See docs/training.md, 'Training as a campaign'.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--hours", type=float, required=True, metavar="H",
                   help="the campaign's whole budget of training hours (wall clock, summed "
                   "over sessions); stage i gets share_i * H")
    p.add_argument("--state", default=DEFAULT_STATE, metavar="CKPT",
                   help=f"resume file the campaign continues from (default: {DEFAULT_STATE})")
    p.add_argument("--ledger", default=DEFAULT_LEDGER, metavar="CSV",
                   help=f"ledger the rows are appended to (default: {DEFAULT_LEDGER})")
    p.add_argument("--plan", default=DEFAULT_PLAN, metavar="YAML",
                   help=f"stages, their configs and budget shares (default: {DEFAULT_PLAN})")
    p.add_argument("--compact-to", metavar="CKPT",
                   help="at the end, also after a signal, write the compact resume file here "
                   "(atomically; the --state path keeps one resume file)")
    p.add_argument("--bf16-moments", action="store_true",
                   help="compact file: Adam's first moment as bf16, not fp8 (larger; see "
                   "dvc_edic.train.compact)")
    p.add_argument("--session-hours", type=float, metavar="H",
                   help="stop this session (with a checkpoint) after this many hours")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of every stage's config, after the plan's own "
                   "(repeatable; values are YAML): the machine's settings, such as "
                   "device, batch_size or data, that do not belong in the plan")
    p.add_argument("--start", action="store_true",
                   help="when the --state file does not exist, begin the plan's first stage "
                   "from its config's init_from (without it, a missing file is an error)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise InputError("the campaign runs as one process; run stages under torchrun "
                             "with python -m dvc_edic.train")
        for name in ("hours", "session_hours"):
            value = getattr(args, name)
            if value is not None and not value > 0:
                raise InputError(f"--{name.replace('_', '-')} must be positive, got {value}")
        opts = Options(args.hours, args.session_hours,
                       None if args.compact_to is None else Path(args.compact_to),
                       args.bf16_moments)
        plan = with_overrides(load_plan(args.plan), args.set)
        return run_campaign(plan, Path(args.state), Path(args.ledger), opts,
                            fresh_ok=args.start)
    except DvcEdicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
