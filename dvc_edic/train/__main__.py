"""``python -m dvc_edic.train configs/train/<stage>.yaml [--resume [CKPT]] [--init CKPT]``.

Exit status: 0 when the stage finished or stopped at --stop-after / --time-limit
(with a checkpoint); 128 + N when signal N (SIGINT: 130, SIGTERM: 143) stopped
it (with a checkpoint); 2 for a bad config or argument; 1 for other errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dvc_edic.cli import EXIT_ERROR, EXIT_USAGE
from dvc_edic.errors import DvcEdicError, InputError
from dvc_edic.train.checkpoint import checkpoint_path, load_checkpoint
from dvc_edic.train.config import load_train_config
from dvc_edic.train.loop import train
from dvc_edic.train.signals import exit_code

AUTO = "auto"
YAML_SUFFIXES = (".yaml", ".yml")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dvc_edic.train",
        description="Train one stage of the dvc_edic codec (see docs/training.md).",
    )
    p.add_argument("config", nargs="?", help="stage YAML (configs/train/*.yaml); optional "
                   "with --resume CKPT, which stores its config")
    p.add_argument("--resume", nargs="?", const=AUTO, metavar="CKPT",
                   help="continue from a checkpoint (default: the stage's own out_dir/"
                   "checkpoint.pt)")
    p.add_argument("--init", metavar="CKPT", help="start from this checkpoint or "
                   ".safetensors instead of the config's init_from")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set steps=100 --set "
                   "optimizer.lr=5e-4 (repeatable; values are YAML)")
    p.add_argument("--stop-after", type=int, metavar="STEPS",
                   help="checkpoint and stop after this many steps of this run")
    p.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="checkpoint and stop after this much wall time")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        resume = args.resume
        if args.config is None and resume is not None and Path(resume).suffix in YAML_SUFFIXES:
            # `--resume configs/x.yaml`: argparse gave the config to --resume's optional value
            args.config, resume = resume, AUTO
        if args.stop_after is not None and args.stop_after < 1:
            raise InputError(f"--stop-after must be at least 1, got {args.stop_after}")
        if args.time_limit is not None and args.time_limit <= 0:
            raise InputError(f"--time-limit must be positive, got {args.time_limit}")
        if resume is not None and resume != AUTO:
            base = load_checkpoint(resume)["config"] if args.config is None else None
            cfg = load_train_config(args.config, args.set, base=base)
        else:
            cfg = load_train_config(args.config, args.set)
            if resume == AUTO:
                resume = str(checkpoint_path(cfg["out_dir"]))
        result = train(
            cfg, resume=resume, init_from=args.init, stop_after=args.stop_after,
            time_limit_minutes=args.time_limit,
        )
    except DvcEdicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_ERROR
    state = "finished" if result.finished else "stopped"
    if os.environ.get("RANK", "0") == "0":
        print(f"stage {result.stage} {state} at step {result.step}/{result.total_steps}; "
              f"checkpoint {Path(result.checkpoint)}")
    return exit_code(result.signal)


if __name__ == "__main__":
    sys.exit(main())
