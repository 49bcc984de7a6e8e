"""``python -m dvc_edic.export CKPT OUT.safetensors [--fp16]``: checkpoint -> shipped weights.

The weights file is what the encoder and decoder load (dvc_edic.weights):
safetensors, so loading it never unpickles anything, with the preset and the
training record in its metadata (config, steps of every stage through the
init_from chain, the data each stage saw, dates and hardware).
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
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.train.checkpoint import hardware, load_checkpoint
from dvc_edic.weights import load_state, save_weights


def training_metadata(state: dict[str, Any], source: Path) -> dict[str, Any]:
    """What the weights' metadata says about how they were made."""
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
        "trained_on": sorted({entry["hardware"] for entry in history}),
        "exported_on": hardware(),
    }


def export(checkpoint: str | Path, out: str | Path, *, half: bool = False,
           overwrite: bool = False) -> Path:
    source = Path(checkpoint)
    target = check_output_path(out, overwrite=overwrite, inputs=[source])
    if target.suffix != ".safetensors":
        raise InputError(f"{target}: the weights file name must end in .safetensors")
    state = load_checkpoint(source)
    model = VideoCodecModel(state["preset"])
    load_state(model, state["model"], source=str(source))
    model.eval()
    save_weights(model, target, metadata=training_metadata(state, source), half=half)
    return target


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dvc_edic.export",
        description="Write a training checkpoint's model as a safetensors weights file.",
    )
    p.add_argument("checkpoint", help="training checkpoint (runs/<stage>/checkpoint.pt)")
    p.add_argument("out", help="output .safetensors file")
    p.add_argument("--fp16", action="store_true", help="store float tensors as float16")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        path = export(args.checkpoint, args.out, half=args.fp16, overwrite=args.force)
    except DvcEdicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_ERROR
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
