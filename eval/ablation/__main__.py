"""``python -m eval.ablation run|retime [PLAN]`` and ``python -m eval.ablation report [RESULTS]``.

``run`` trains and measures every variant of the plan (default
configs/train/ablation/plan.yaml) into ``--out`` (runs/ablation/), then writes
``--doc`` (docs/ablations.md); run again, it goes on where it stopped. ``retime``
times every variant's decoder again, back to back on idle cores, from the
checkpoints the runs ended with (never while ``run`` is going: both rewrite
results.json). ``report`` rewrites the page from a results.json, or
(``--pending``) from the plan alone, saying that nothing has been measured yet.

Exit status: 0 done; 2 a bad plan or argument; 1 another error; 128 + N when
signal N stopped a training run (its checkpoint is written, and the next call
resumes it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from dvc_edic.cli import EXIT_ERROR, EXIT_USAGE
from dvc_edic.config import CONFIG_ROOT
from dvc_edic.errors import DvcEdicError, InputError
from dvc_edic.train.signals import exit_code

DEFAULT_PLAN = CONFIG_ROOT / "train" / "ablation" / "plan.yaml"
DEFAULT_OUT = Path("runs") / "ablation"
DEFAULT_DOC = Path("docs") / "ablations.md"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.ablation",
                                description="EDIC's claims at an equal training budget "
                                "(docs/ablations.md).")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and measure every variant, then write the page")
    retime = sub.add_parser("retime", help="time every variant's decoder again, back to "
                            "back, from the checkpoints of its whole budget (run it on idle "
                            "cores after `run`), then write the page")
    for command in (run, retime):  # the same plan, run folder and overrides name the run
        command.add_argument("plan", nargs="?", default=str(DEFAULT_PLAN),
                             help=f"the plan (default {DEFAULT_PLAN})")
        command.add_argument("--out", default=str(DEFAULT_OUT),
                             help=f"run folder ({DEFAULT_OUT})")
        command.add_argument("--doc", default=str(DEFAULT_DOC), help=f"the page ({DEFAULT_DOC})")
        command.add_argument("--variants",
                             help="comma-separated names: only these (default: all)")
        command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                             help="override every variant's training config after the plan, "
                             "as `python -m dvc_edic.train --set` (repeatable; retime: the "
                             "overrides the run was made with)")
    retime.add_argument("--repeats", type=int, help="timed decodes each (default: the plan's)")
    report = sub.add_parser("report", help="write the page from results.json")
    report.add_argument("results", nargs="?", default=str(DEFAULT_OUT / "results.json"))
    report.add_argument("--doc", default=str(DEFAULT_DOC), help=f"the page ({DEFAULT_DOC})")
    report.add_argument("--plan", help="state the claims and verdict rule of this plan "
                        "(its training and measuring must match the results'); default: "
                        "the plan the results were made with")
    report.add_argument("--pending", metavar="PLAN", nargs="?", const=str(DEFAULT_PLAN),
                        help="no results yet: write the page from the plan alone")
    return p


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from eval.ablation.doc import write_doc
    from eval.ablation.plan import load_plan
    from eval.ablation.runner import Ablation, Interrupted

    plan = load_plan(args.plan)
    variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
    ablation = Ablation(plan, Path(args.out), args.set, variants,
                        say=lambda m: print(m, flush=True), argv=argv)
    if args.command == "retime":
        results = ablation.retime(args.repeats)
        print(f"results: {ablation.path}\npage:    {write_doc(results, plan, Path(args.doc))}")
        return 0
    try:
        results = ablation.run()
    except Interrupted as exc:
        print(f"stopped: {exc}; run the same command again to go on", file=sys.stderr)
        return exit_code(exc.signal)
    print(f"results: {ablation.path}\npage:    {write_doc(results, plan, Path(args.doc))}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from eval.ablation.doc import plan_of, write_doc
    from eval.ablation.plan import load_plan, measured_part

    if args.pending is not None:
        print(write_doc(None, load_plan(args.pending), Path(args.doc)))
        return 0
    path = Path(args.results)
    if not path.is_file():
        raise InputError(f"{path}: no results file (run `python -m eval.ablation run` first, "
                         "or pass --pending)")
    results = json.loads(path.read_text(encoding="utf-8"))
    plan = plan_of(results)
    if args.plan is not None:
        plan = load_plan(args.plan)
        if measured_part(plan.raw) != measured_part(results["plan"]):
            raise InputError(f"{args.plan}: trains or measures otherwise than the plan "
                             f"{path} was made with; only its claims and verdict may differ")
        results = {**results, "plan": plan.raw}
    print(write_doc(results, plan, Path(args.doc)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _report(args) if args.command == "report" else _run(args, argv)
    except DvcEdicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, InputError) else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
