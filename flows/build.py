"""Build a flow estimator from the ``flow:`` section of a model preset (configs/models)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from dvc_edic.errors import InputError
from flows.pwc import PwcLite
from flows.spynet import DEFAULT_KERNEL, SpyNet

ESTIMATOR_TYPES = ("spynet", "pwc")
_REQUIRED = ("type", "levels", "channels", "in_channels")
_REQUIRED_PWC = ("max_displacement", "feature_channels")


def _require(cfg: Mapping[str, Any], keys: tuple[str, ...], what: str) -> None:
    missing = [key for key in keys if key not in cfg]
    if missing:
        raise InputError(f"flow config ({what}): missing key(s) {missing}; got {sorted(cfg)}")


def build_flow_estimator(cfg: Mapping[str, Any]) -> nn.Module:
    """The estimator named by ``cfg["type"]``, sized by the rest of the section.

    Accepts the ``flow:`` section itself, or a whole preset that contains one.
    """
    if "flow" in cfg and isinstance(cfg["flow"], Mapping):
        cfg = cfg["flow"]
    _require(cfg, _REQUIRED, "all types")
    kind = cfg["type"]
    kernel = int(cfg.get("kernel", DEFAULT_KERNEL))
    levels = int(cfg["levels"])
    channels = [int(c) for c in cfg["channels"]]
    in_channels = int(cfg["in_channels"])
    if kind == "spynet":
        return SpyNet(levels, channels, in_channels, kernel=kernel)
    if kind == "pwc":
        _require(cfg, _REQUIRED_PWC, "pwc")
        return PwcLite(
            levels,
            channels,
            in_channels,
            max_displacement=int(cfg["max_displacement"]),
            feature_channels=[int(c) for c in cfg["feature_channels"]],
            kernel=kernel,
        )
    raise InputError(f"flow config: type must be one of {ESTIMATOR_TYPES}, got {kind!r}")
