"""Resume files: everything needed to continue a stage on the same loss curve.

A stage keeps ONE resume file, overwritten atomically (write beside, fsync,
rename), so an interruption at any moment leaves either the previous or the
new checkpoint, never a torn one, and disk use does not grow with steps.

Only tensors, numbers, strings, lists and dicts go in, so the file loads with
``torch.load(weights_only=True)``: opening a checkpoint never runs pickled code.
"""

from __future__ import annotations

import platform
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvc_edic.errors import WeightsError
from dvc_edic.io.atomic import AtomicFile

CHECKPOINT_FORMAT = "dvc_edic-train-checkpoint-1"
CHECKPOINT_NAME = "checkpoint.pt"


def checkpoint_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / CHECKPOINT_NAME


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    state = {"format": CHECKPOINT_FORMAT, **state}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with AtomicFile(path, overwrite=True) as f:
        torch.save(state, f)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; all mean "unusable"
        raise WeightsError(f"{path}: not a readable training checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise WeightsError(
            f"{path}: not a dvc_edic training checkpoint (format {found!r}, "
            f"expected {CHECKPOINT_FORMAT!r})"
        )
    return state


# ------------------------------------------------------------------ RNG states
def capture_rng() -> dict[str, Any]:
    """This process's global generators, as tensors and lists (weights_only-safe)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos),
                  int(np_has_gauss), float(np_gauss)],
        "python": [int(py_version), list(py_state), py_gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def hardware() -> str:
    """One line naming the machine that trained, for the history and exported metadata."""
    parts = [f"{platform.machine()} {platform.processor() or 'cpu'}".strip(),
             f"{torch.get_num_threads()} threads", f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        parts.append(f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}")
    return ", ".join(parts)
