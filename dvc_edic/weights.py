"""Weights files: safetensors with their metadata, loaded without pickle.

Like torchvision's weight enums, a weights file carries what it needs to be
used: the preset it was built from, the model id, and how it was trained. The
decoder checks the model id and a hash of the weights against the stream
header, so a stream is never decoded with the wrong model.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from dvc_edic.entropy.factorized import is_table_buffer
from dvc_edic.errors import DvcEdicWarning, WeightsError
from dvc_edic.io.atomic import AtomicFile
from dvc_edic.models.preset import Preset
from dvc_edic.models.video import VideoCodecModel

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.safetensors"
DEFAULT_PRESET = "cpu"
UNTRAINED_SEED = 20261125  # makes the untrained fallback model identical on every run
FORMAT_TAG = "dvc_edic-weights-1"


class UntrainedModelWarning(DvcEdicWarning):
    """The codec is running on randomly initialised weights: its output is not meaningful."""


def weights_hash(model: VideoCodecModel) -> bytes:
    """SHA-256 over every tensor of the model, by name, as stored at run time."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.digest()


def save_weights(
    model: VideoCodecModel,
    path: str | Path,
    *,
    metadata: dict[str, Any] | None = None,
    half: bool = False,
) -> None:
    """Write a weights file atomically; float tensors optionally stored as fp16."""
    model.update_entropy_tables()
    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        tensors[name] = t.half() if half and t.is_floating_point() else t
    meta = {
        "format": FORMAT_TAG,
        "model_id": model.model_id,
        "preset": json.dumps(model.preset.to_dict(), sort_keys=True),
        "dtype": "float16" if half else "float32",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    for k, v in (metadata or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with AtomicFile(path, overwrite=True) as f:
        f.write(save(tensors, metadata=meta))


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != FORMAT_TAG:
        raise WeightsError(
            f"{path}: not a dvc_edic weights file (format {meta.get('format')!r}, "
            f"expected {FORMAT_TAG!r})"
        )
    return meta


def load_weights(path: str | Path) -> VideoCodecModel:
    """Build the model described by the file's metadata and load its tensors."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    meta = read_metadata(path)
    try:
        preset = Preset.from_dict(json.loads(meta.get("preset", "null")))
    except ValueError as exc:  # an InputError, or metadata that is not JSON
        raise WeightsError(f"{path}: the preset in its metadata is not usable: {exc}") from exc
    model = VideoCodecModel(preset)
    if model.model_id != meta.get("model_id"):
        raise WeightsError(
            f"{path}: model id {meta.get('model_id')!r} does not match this code's "
            f"{model.model_id!r} (weights from another version of dvc_edic?)"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{path}: cannot read tensors ({exc})") from exc
    load_state(model, tensors, source=str(path))
    model.eval()
    return model


def load_state(model: VideoCodecModel, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict, casting floats to the model's dtype and resizing CDF tables."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise WeightsError(
            f"{source}: tensors do not fit the model (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    for name, t in tensors.items():
        if is_table_buffer(name):  # shaped by training: replaced rather than copied into
            module_name, buf = name.rsplit(".", 1)
            setattr(model.get_submodule(module_name), buf, t.clone())
            continue
        if own[name].shape != t.shape:
            raise WeightsError(
                f"{source}: tensor {name} has shape {tuple(t.shape)}, "
                f"the model expects {tuple(own[name].shape)}"
            )
        with torch.no_grad():
            own[name].copy_(t.to(own[name].dtype))


def untrained_model(preset: str = DEFAULT_PRESET) -> VideoCodecModel:
    """A seeded, randomly initialised model: identical on every run of the same torch."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(UNTRAINED_SEED)
        model = VideoCodecModel(Preset.load(preset))
    finally:
        torch.random.set_rng_state(state)
    model.update_entropy_tables()
    return model.eval()


def load_model(path: str | Path | None = None) -> VideoCodecModel:
    """The weights at ``path``, else the shipped default, else a warned-about untrained model."""
    if path is not None:
        return load_weights(path)
    if DEFAULT_WEIGHTS.is_file():
        return load_weights(DEFAULT_WEIGHTS)
    warnings.warn(
        "no trained weights ship with this copy of dvc_edic: using a seeded UNTRAINED model. "
        "Its bitstreams are real and decode exactly, but its quality is meaningless. "
        "Pass --weights PATH to use trained weights.",
        UntrainedModelWarning,
        stacklevel=2,
    )
    return untrained_model()
