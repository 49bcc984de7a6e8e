"""The model preset (configs/models/*.yaml), parsed and checked once.

Everything that sizes the model, or fixes what its streams mean, is read from
one :class:`Preset`, built by :meth:`Preset.from_dict` where the preset enters
the program (a YAML file, a weights file's metadata, a training checkpoint).
Modules take the typed sections they need instead of reading dict keys, so a
missing or misspelt key fails here, with its name, rather than deep inside a
constructor as a ``KeyError``.

The preset also names the model: the model id carries a digest of the preset
as sorted compact JSON, which shipped weights and every stream header record.
So the Preset keeps that JSON of the mapping it was parsed from, byte for byte
(:attr:`Preset.canonical`), rather than re-serialising its typed fields, whose
defaults and normalised types would change the digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dvc_edic.bitstream import MAX_STORED_QUALITY
from dvc_edic.config import (
    check_choice,
    check_int,
    check_keys,
    check_list,
    check_positive,
    load_preset,
)
from dvc_edic.entropy import GmmConfig
from dvc_edic.errors import InputError
from dvc_edic.models.edic import QUANTIZATION_MODES, CoderConfig
from dvc_edic.models.ladder import QualityRange
from dvc_edic.models.pframe import MotionCompensationConfig
from dvc_edic.representation import REPRESENTATIONS, representation_channels
from flows import FlowConfig
from flows.spynet import FLOW_CHANNELS

REQUIRED_KEYS = (
    "name", "representation", "quality_levels", "lambdas", "gain_init",
    "entropy", "intra", "mv", "residual", "flow", "motion_compensation",
)
OPTIONAL_KEYS = ("training_quantization",)
DEFAULT_TRAINING_QUANTIZATION = "mixed"
# Interpolating between levels needs two of them; the header's quality field
# (thousandths in a u16) bounds the highest level a stream can name.
MIN_QUALITY_LEVELS = 2
MAX_QUALITY_LEVELS = int(MAX_STORED_QUALITY)
GAIN_INIT_ITEMS = 2  # the initial gains of the lowest and the highest level
# What the model id's digest is taken over: the preset as sorted, compact JSON.
CANONICAL_JSON: dict[str, Any] = {"sort_keys": True, "separators": (",", ":")}


def canonical_json(preset: Mapping[str, Any]) -> str:
    """The preset as the model id's digest sees it."""
    try:
        return json.dumps(preset, **CANONICAL_JSON)
    except (TypeError, ValueError) as exc:
        raise InputError(f"model preset: not representable as JSON ({exc})") from exc


@dataclass(frozen=True)
class Preset:
    """One model preset, typed. Build it with :meth:`from_dict` (or :meth:`load`).

    ``canonical`` is the JSON of the mapping it was parsed from; the typed
    fields are that mapping's values, checked. Constructing a Preset directly
    would let the two disagree, and the model id follows ``canonical``.
    """

    name: str
    representation: str
    quality_levels: int
    lambdas: tuple[float, ...]  # the training ladder, one lambda per level
    gain_init: tuple[float, float]  # initial gains of the lowest and the highest level
    training_quantization: str
    entropy: GmmConfig
    intra: CoderConfig
    mv: CoderConfig
    residual: CoderConfig
    flow: FlowConfig
    motion_compensation: MotionCompensationConfig
    canonical: str = field(repr=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preset:
        """Parse and check a preset mapping; an InputError names the field at fault.

        Every message starts with the preset's name (when it has a usable one) and
        goes on with the field as the YAML spells it, e.g. ``intra.N``.
        """
        if not isinstance(d, Mapping):
            raise InputError(f"model preset: expected a mapping, got {type(d).__name__}")
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise InputError(f"model preset: name: expected a non-empty string, got {name!r}")
        try:
            return cls._parse(d, name)
        except InputError as exc:
            raise InputError(f"model preset {name!r}: {exc}") from exc

    @classmethod
    def _parse(cls, d: Mapping[str, Any], name: str) -> Preset:
        check_keys(d, "top level", REQUIRED_KEYS, OPTIONAL_KEYS)
        representation = check_choice("representation", d["representation"], REPRESENTATIONS)
        levels = check_int("quality_levels", d["quality_levels"], MIN_QUALITY_LEVELS,
                           MAX_QUALITY_LEVELS)
        lambdas = tuple(check_positive(f"lambdas[{i}]", v)
                        for i, v in enumerate(check_list("lambdas", d["lambdas"], levels)))
        low, high = (check_positive(f"gain_init[{i}]", v)
                     for i, v in enumerate(check_list("gain_init", d["gain_init"],
                                                      GAIN_INIT_ITEMS)))
        preset = cls(
            name=name,
            representation=representation,
            quality_levels=levels,
            lambdas=lambdas,
            gain_init=(low, high),
            training_quantization=check_choice(
                "training_quantization",
                d.get("training_quantization", DEFAULT_TRAINING_QUANTIZATION),
                QUANTIZATION_MODES,
            ),
            entropy=GmmConfig.from_dict(d["entropy"]),
            intra=CoderConfig.from_dict(d["intra"], "intra"),
            mv=CoderConfig.from_dict(d["mv"], "mv"),
            residual=CoderConfig.from_dict(d["residual"], "residual"),
            flow=FlowConfig.from_dict(d["flow"]),
            motion_compensation=MotionCompensationConfig.from_dict(
                d["motion_compensation"], "motion_compensation"
            ),
            canonical=canonical_json(d),
        )
        preset._check_channels()
        return preset

    def _check_channels(self) -> None:
        """The sections must agree on what they exchange: each takes the model tensor
        (the representation's channels), but the MV coder, which codes the flow."""
        picture = (representation_channels(self.representation),
                   f"the {self.representation} representation's channels")
        flow = (FLOW_CHANNELS, "the flow's x and y")
        wanted = {
            "intra.in_channels": (self.intra.in_channels, picture),
            "residual.in_channels": (self.residual.in_channels, picture),
            "flow.in_channels": (self.flow.in_channels, picture),
            "mv.in_channels": (self.mv.in_channels, flow),
        }
        for where, (got, (expected, what)) in wanted.items():
            if got != expected:
                raise InputError(f"{where}: expected {expected} ({what}), got {got}")

    @classmethod
    def load(cls, name_or_path: str | Path) -> Preset:
        """A shipped preset by name (``cpu``, ``paper``) or one from a YAML file."""
        return cls.from_dict(load_preset(name_or_path))

    def to_dict(self) -> dict[str, Any]:
        """The mapping it was parsed from, for weights files and checkpoints to store."""
        return json.loads(self.canonical)

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON: what the model id is made of."""
        return hashlib.sha256(self.canonical.encode("utf-8")).hexdigest()

    @property
    def quality_range(self) -> QualityRange:
        return QualityRange.of_levels(self.quality_levels)

    @property
    def min_quality(self) -> float:
        return self.quality_range.low

    @property
    def max_quality(self) -> float:
        return self.quality_range.high
