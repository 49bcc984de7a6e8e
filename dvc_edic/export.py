"""``python -m dvc_edic.export CKPT OUT.safetensors [--fp16] [--raw]``: checkpoint -> weights.

The weights file is what the encoder and decoder load (dvc_edic.weights):
safetensors, so loading it never unpickles anything, with the preset and the
training record in its metadata (config, steps of every stage through the
init_from chain, the data each stage saw, dates and hardware).

It holds the checkpoint's EMA of the weights (dvc_edic.train.ema), the
weights that ship, unless ``--raw`` asks for the last iterate; a checkpoint
without an EMA gives its raw weights. The metadata's ``weights`` says which.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dvc_edic.cli import EXIT_ERROR, EXIT_USAGE
from dvc_edic.errors import DvcEdicError, InputError
from dvc_edic.io.atomic import check_output_path
from dvc_edic.models.preset import Preset
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.train.checkpoint import hardware, load_checkpoint
from dvc_edic.train.ema import EMA, EMA_KEY, RAW, checkpoint_weights
from dvc_edic.weights import load_state, save_weights


def training_metadata(state: dict[str, Any], source: Path, weights: str) -> dict[str, Any]:
    """What the weights' metadata says about how they were made (``weights``: ema or raw)."""
    history = list(state["history"])
    config = {k: v for k, v in state["config"].items() if k != "phase_list"}
    steps: dict[str, int] = {}
    for entry in history:  # a stage run twice (e.g. fine-tuned again) counts both runs
        steps[entry["stage"]] = steps.get(entry["stage"], 0) + int(entry["steps"])
    return {
        "stage": state["stage"],
        "steps_per_stage": steps,
        "history": history,
        "data": {entry["stage"]: entry["data"] for entry in history},
        "synthetic_data": any("synthetic" in str(d).lower() for d in
                              (entry["data"] for entry in history)),
        "config": config,
        "checkpoint": source.name,
        "weights": weights,
        "ema": {k: v for k, v in (state.get(EMA_KEY) or {}).items() if k != "tensors"},
        "trained_on": sorted({entry["hardware"] for entry in history}),
        "exported_on": hardware(),
    }


def export(checkpoint: str | Path, out: str | Path, *, half: bool = False,
           overwrite: bool = False, weights: str = EMA) -> Path:
    """Write the checkpoint's ``weights`` (ema or raw) as a weights file; returns its path."""
    source = Path(checkpoint)
    target = check_output_path(out, overwrite=overwrite, inputs=[source])
    if target.suffix != ".safetensors":
        raise InputError(f"{target}: the weights file name must end in .safetensors")
    state = load_checkpoint(source)
    tensors, used = checkpoint_weights(state, weights)
    if used != weights:
        print(f"note: {source} holds no EMA of the weights; exporting its raw weights",
              file=sys.stderr)
    model = VideoCodecModel(Preset.from_dict(state["preset"]))
    load_state(model, tensors, source=str(source))
    model.eval()
    save_weights(model, target, metadata=training_metadata(state, source, used), half=half)
    return target


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dvc_edic.export",
        description="Write a training checkpoint's model as a safetensors weights file.",
    )
    p.add_argument("checkpoint", help="training checkpoint (runs/<stage>/checkpoint.pt)")
    p.add_argument("out", help="output .safetensors file")
    p.add_argument("--fp16", action="store_true", help="store float tensors as float16")
    p.add_argument("--raw", action="store_true",
                   help="export the raw (last-step) weights instead of their EMA, the default")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        path = export(args.checkpoint, args.out, half=args.fp16, overwrite=args.force,
                      weights=RAW if args.raw else EMA)
    except DvcEdicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_ERROR
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
