"""Shrink a training checkpoint so it can be committed and resumed elsewhere.

A full checkpoint (fp32 weights of the whole model, the EMA of the trainable
ones, and Adam's two moments) is about 60-75 MB for the cpu preset, too large
to keep in the repository. The compact copy stores:

- the weights and the EMA as fp16 (the EMA is a weight average; fp16 keeps it
  to ~3 significant digits, as it keeps the weights);
- Adam's second moment as bf16 (bf16 keeps fp32's exponent range, so tiny
  second moments do not underflow to zero);
- Adam's first moment as fp8 (e4m3) times one fp32 scale per tensor, unless
  ``bf16_moments``. That keeps the file of every cpu-preset stage under 30 MB
  (stages 5 and 6 train 3.2 M parameters: with the EMA and both moments at
  2 bytes it would be 31 MB). The first moment is the one that tolerates it:
  it is a ~10-step average of the gradients, which the next steps rewrite,
  and 3 mantissa bits still give each element's update its direction to ~6 %,
  while the second moment, a ~1000-step average, sets each element's step
  size for much longer. (Dropping the first moment instead made the tiny
  test's resumed losses drift by 17 %.)

torch casts optimizer state back to the parameters' dtype on load, the weight
loader and the EMA cast to fp32, and the trainer applies the first moment's
scale (:func:`decode_moments`), so ``--resume`` accepts the result unchanged.
The resumed run continues from the rounded values: it is close to, not
bit-identical with, the uninterrupted run (full checkpoints stay bit-exact).

    python -m dvc_edic.train.compact runs/1_image/checkpoint.pt train_state/resume.pt
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dvc_edic.cli import run_cli
from dvc_edic.train.checkpoint import load_checkpoint, save_checkpoint
from dvc_edic.train.ema import EMA_KEY

FIRST_MOMENT = "exp_avg"  # Adam's name for its running mean of the gradients
FIRST_MOMENT_SCALE = "exp_avg_scale"  # what the fp8 first moment is multiplied by on load
OPTIMIZER_KEYS = ("optimizer", "aux_optimizer")
WEIGHT_DTYPE = torch.float16
MOMENT_DTYPE = torch.bfloat16
FIRST_MOMENT_DTYPE = torch.float8_e4m3fn
BYTES_PER_MB = 1e6


def _cast_floats(obj: Any, dtype: torch.dtype) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(dtype) if obj.is_floating_point() and obj.dim() > 0 else obj
    if isinstance(obj, dict):
        return {k: _cast_floats(v, dtype) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cast_floats(v, dtype) for v in obj]
    return obj


def _fp8_first_moment(moments: dict[str, Any]) -> dict[str, Any]:
    """One parameter's first moment as fp8 and its per-tensor scale (nothing if it has none)."""
    first = moments.get(FIRST_MOMENT)
    if first is None or not first.is_floating_point():
        return {}
    peak = float(first.abs().max()) if first.numel() else 0.0
    scale = peak / torch.finfo(FIRST_MOMENT_DTYPE).max if peak > 0 else 1.0
    return {FIRST_MOMENT: (first.float() / scale).to(FIRST_MOMENT_DTYPE),
            FIRST_MOMENT_SCALE: torch.tensor(scale, dtype=torch.float32)}


def compact_state(state: dict[str, Any], *, bf16_moments: bool = False) -> dict[str, Any]:
    out = dict(state)
    out["model"] = _cast_floats(state["model"], WEIGHT_DTYPE)
    ema = state.get(EMA_KEY)
    if ema:
        out[EMA_KEY] = {**ema, "tensors": _cast_floats(ema["tensors"], WEIGHT_DTYPE)}
    for key in OPTIMIZER_KEYS:
        opt = state.get(key)
        if opt is not None:
            # the fp8 first moment is made from the fp32 values, not from their bf16 rounding
            per_param = {index: {**_cast_floats(moments, MOMENT_DTYPE),
                                 **({} if bf16_moments else _fp8_first_moment(moments))}
                         for index, moments in opt["state"].items()}
            out[key] = {**opt, "state": per_param}
    return out


def decode_moments(optimizer: torch.optim.Optimizer) -> None:
    """Scale back the fp8 first moments of a compact file, after ``load_state_dict``.

    A no-op for full checkpoints, so their resumption stays bit-exact.
    """
    for moments in optimizer.state.values():
        scale = moments.pop(FIRST_MOMENT_SCALE, None)
        if scale is not None:
            moments[FIRST_MOMENT].mul_(scale)


def write_compact(checkpoint: str | Path, output: str | Path, *,
                  bf16_moments: bool = False) -> Path:
    """Write the compact copy of ``checkpoint`` atomically (``output`` may be that very file)."""
    save_checkpoint(compact_state(load_checkpoint(checkpoint), bf16_moments=bf16_moments),
                    output)
    return Path(output)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dvc_edic.train.compact", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("checkpoint", help="a checkpoint.pt written by dvc_edic.train")
    ap.add_argument("output", help="where to write the compact copy (overwritten atomically)")
    ap.add_argument("--bf16-moments", action="store_true",
                    help="store Adam's first moment as bf16 too, not fp8: a slightly closer "
                    "resume, a larger file")
    args = ap.parse_args(argv)
    out = write_compact(args.checkpoint, args.output, bf16_moments=args.bf16_moments)
    size_mb = out.stat().st_size / BYTES_PER_MB
    print(f"{out}: compact checkpoint of {args.checkpoint} ({size_mb:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
