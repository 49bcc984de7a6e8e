"""Shrink a training checkpoint so it can be committed and resumed elsewhere.

A full checkpoint (fp32 weights of the whole model plus Adam's two moments)
is about 50 MB for the cpu preset, too large to keep in the repository. This
stores float weights as fp16 and the optimizer moments as bf16 (bf16 keeps
fp32's exponent range, so tiny second moments do not underflow to zero).
torch casts optimizer state back to the parameters' dtype on load, and the
weight loader casts to fp32, so ``--resume`` accepts the result unchanged.

The resumed run continues from the rounded values: it is close to, not
bit-identical with, the uninterrupted run (full checkpoints stay bit-exact).

    python -m dvc_edic.train.compact runs/1_image/checkpoint.pt train_state/resume.pt
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import torch

from dvc_edic.cli import run_cli
from dvc_edic.train.checkpoint import load_checkpoint, save_checkpoint


def _cast_floats(obj: Any, dtype: torch.dtype) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(dtype) if obj.is_floating_point() and obj.dim() > 0 else obj
    if isinstance(obj, dict):
        return {k: _cast_floats(v, dtype) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cast_floats(v, dtype) for v in obj]
    return obj


def compact_state(state: dict[str, Any]) -> dict[str, Any]:
    out = dict(state)
    out["model"] = _cast_floats(state["model"], torch.float16)
    for key in ("optimizer", "aux_optimizer"):
        opt = state.get(key)
        if opt is not None:
            out[key] = {**opt, "state": _cast_floats(opt["state"], torch.bfloat16)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dvc_edic.train.compact", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("checkpoint", help="a checkpoint.pt written by dvc_edic.train")
    ap.add_argument("output", help="where to write the compact copy (overwritten)")
    args = ap.parse_args(argv)
    save_checkpoint(compact_state(load_checkpoint(args.checkpoint)), args.output)
    print(f"{args.output}: compact checkpoint of {args.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
