"""The typed model preset: parsed once, refused with the field's name, and naming the model
exactly as the dict it came from did (shipped weights and streams depend on that)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dvc_edic.config import load_preset
from dvc_edic.errors import InputError, WeightsError
from dvc_edic.models.ladder import MIN_QUALITY, QualityRange
from dvc_edic.models.preset import MAX_QUALITY_LEVELS, Preset
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.weights import load_weights, save_weights
from tests.conftest import tiny_preset

# The model ids of the shipped presets before the preset was typed: the typed
# preset must name each model exactly as the raw dict did, or the shipped weights
# and every stream written so far stop loading.
PINNED_MODEL_IDS = {
    "cpu": "dvc_edic-cpu-v1-4424b39f",
    "tiny": "dvc_edic-tiny-v1-48830601",
    "paper": "dvc_edic-paper-v1-95bdabbb",
}


@pytest.mark.parametrize("name", sorted(PINNED_MODEL_IDS))
def test_model_id_is_the_raw_presets(name: str) -> None:
    raw = load_preset(name)
    preset = Preset.from_dict(raw)
    assert VideoCodecModel(preset).model_id == PINNED_MODEL_IDS[name]
    assert preset.to_dict() == raw
    assert preset.canonical == json.dumps(raw, sort_keys=True, separators=(",", ":"))


def test_typed_sections() -> None:
    preset = Preset.load("cpu")
    assert preset.quality_range == QualityRange(MIN_QUALITY, 8.0)
    assert (preset.min_quality, preset.max_quality) == (1.0, 8.0)
    assert preset.intra.N == 64 and preset.intra.enhancement.enabled
    assert preset.flow.channels == (32, 64, 32, 16) and preset.motion_compensation.blocks == 1
    assert preset.gain_init == (0.5, 2.0) and len(preset.lambdas) == preset.quality_levels
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.quality_levels = 4  # type: ignore[misc]


def _set(d: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A copy of ``d`` with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    d = copy.deepcopy(d)
    *parents, leaf = path.split(".")
    node = d
    for key in parents:
        node = node[key]
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return d


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("quality_levels", 1, "quality_levels: expected an integer in [2, 65], got 1"),
        ("quality_levels", MAX_QUALITY_LEVELS + 1,
         f"quality_levels: expected an integer in [2, 65], got {MAX_QUALITY_LEVELS + 1}"),
        ("quality_levels", 8.0, "quality_levels: expected an integer in [2, 65], got 8.0"),
        ("lambdas", [0.01] * 7, "lambdas: expected a list of 8 items, got"),
        ("gain_init", [0.5, -2.0], "gain_init[1]: expected a finite number > 0, got -2.0"),
        ("representation", "yuv444",
         "representation: expected one of ('yuv420', 'rgb'), got 'yuv444'"),
        ("training_quantization", "round",
         "training_quantization: expected one of ('mixed', 'noise', 'ste'), got 'round'"),
        ("intra.N", 0, "intra.N: expected an integer >= 1, got 0"),
        ("residual.kernel", "5", "residual.kernel: expected an integer >= 1, got '5'"),
        ("mv.enhancement.enabled", "yes", "mv.enhancement.enabled: expected true or false"),
        ("mv.in_channels", 6, "mv.in_channels: expected 2 (the flow's x and y), got 6"),
        ("intra.in_channels", 3,
         "intra.in_channels: expected 6 (the yuv420 representation's channels), got 3"),
        ("entropy.mixtures", 0, "entropy.mixtures: expected an integer in [1, 16], got 0"),
        ("flow.type", "raft", "flow.type: expected one of ('spynet', 'pwc'), got 'raft'"),
        ("motion_compensation.blocks", ..., "motion_compensation: expected keys"),
        ("lamdbas", [0.01] * 8, "top level: expected keys ["),
        ("lamdbas", [0.01] * 8, "got unknown ['lamdbas'] and missing []"),
    ],
)
def test_bad_field_is_refused_by_name(path: str, value: object, message: str) -> None:
    with pytest.raises(InputError) as info:
        Preset.from_dict(_set(load_preset("cpu"), path, value))
    assert str(info.value).startswith("model preset 'cpu': ")
    assert message in str(info.value)


def test_name_must_be_a_string() -> None:
    with pytest.raises(InputError, match=r"name: expected a non-empty string, got 3"):
        Preset.from_dict({**load_preset("cpu"), "name": 3})


def test_training_quantization_defaults_to_mixed_without_changing_the_id() -> None:
    raw = load_preset("cpu")
    del raw["training_quantization"]
    preset = Preset.from_dict(raw)
    assert preset.training_quantization == "mixed"
    assert "training_quantization" not in preset.to_dict()  # the id is the file's, as written


def test_weights_with_a_bad_preset_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(VideoCodecModel(tiny_preset()), path)
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    preset = json.loads(meta["preset"])
    preset["intra"]["M"] = -1
    meta["preset"] = json.dumps(preset)
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(WeightsError, match=r"intra\.M: expected an integer >= 1, got -1"):
        load_weights(path)
