"""Build a flow estimator from the ``flow:`` section of a model preset (configs/models)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from dvc_edic.config import check_choice, check_int, check_int_list, check_keys
from dvc_edic.errors import InputError
from flows.pwc import PwcLite
from flows.spynet import DEFAULT_KERNEL, SpyNet

ESTIMATOR_TYPES = ("spynet", "pwc")
SECTION = "flow"  # the preset's section, which every message names
_REQUIRED = ("type", "levels", "channels", "in_channels")
_OPTIONAL = ("kernel", "max_displacement", "feature_channels")
_REQUIRED_PWC = ("max_displacement", "feature_channels")


@dataclass(frozen=True)
class FlowConfig:
    """The estimator's type and sizes, checked once when the preset is parsed.

    ``max_displacement`` and ``feature_channels`` size only a PWC estimator: a
    SpyNet preset may leave them out (None), and presets keep them so that
    switching ``type`` is a one-word edit.
    """

    type: str
    levels: int
    channels: tuple[int, ...]
    in_channels: int
    kernel: int = DEFAULT_KERNEL
    max_displacement: int | None = None
    feature_channels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        missing = [k for k in _REQUIRED_PWC if getattr(self, k) is None]
        if self.type == "pwc" and missing:
            raise InputError(f"{SECTION}: type pwc needs {list(_REQUIRED_PWC)}, missing {missing}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FlowConfig:
        """Parse a preset's ``flow:`` mapping; a missing, unknown or ill-typed key is an error."""
        check_keys(d, SECTION, _REQUIRED, _OPTIONAL)
        displacement = d.get("max_displacement")
        features = d.get("feature_channels")
        return cls(
            type=check_choice(f"{SECTION}.type", d["type"], ESTIMATOR_TYPES),
            levels=check_int(f"{SECTION}.levels", d["levels"], 1),
            channels=check_int_list(f"{SECTION}.channels", d["channels"], 1),
            in_channels=check_int(f"{SECTION}.in_channels", d["in_channels"], 1),
            kernel=check_int(f"{SECTION}.kernel", d.get("kernel", DEFAULT_KERNEL), 1),
            max_displacement=(None if displacement is None
                              else check_int(f"{SECTION}.max_displacement", displacement, 0)),
            feature_channels=(None if features is None
                              else check_int_list(f"{SECTION}.feature_channels", features, 1)),
        )


def build_flow_estimator(cfg: FlowConfig) -> nn.Module:
    """The estimator named by ``cfg.type``, sized by the rest of the config."""
    if cfg.type == "spynet":
        return SpyNet(cfg.levels, list(cfg.channels), cfg.in_channels, kernel=cfg.kernel)
    assert cfg.max_displacement is not None and cfg.feature_channels is not None  # post_init
    return PwcLite(
        cfg.levels,
        list(cfg.channels),
        cfg.in_channels,
        max_displacement=cfg.max_displacement,
        feature_channels=list(cfg.feature_channels),
        kernel=cfg.kernel,
    )
