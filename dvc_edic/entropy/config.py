"""Settings of the Gaussian-mixture entropy model (the ``entropy:`` section of a preset).

Every value here changes the bitstream: encoder and decoder must build their
probability tables from the same config, so it is a frozen, hashable dataclass
(hashable so that the tables built from it can be cached per config).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from dvc_edic.config import check_int, check_keys
from dvc_edic.errors import InputError

SECTION = "entropy"  # the preset's section, which every message names

# Limits that keep the integer tables small and every product inside int64.
MAX_MIXTURES = 16  # more components than this is a config typo, not a model
MAX_MEAN_STEP_LOG2 = 8  # finer mean grids multiply the CDF table size by 2**mean_step_log2
MAX_SCALE = 1024.0  # the CDF table grows linearly with scale_max
MAX_SCALE_LEVELS = 256
MAX_WEIGHT_BITS = 16
MAX_HALF_WIDTH_LIMIT = 1023  # symbols per element 2R+1 <= 2047; the table pads by 2R+1
CODER_PRECISION_BITS = 24  # constriction's AnsCoder quantizes every PMF to 2**24
# Integer mixture sums are weight * count * CDF < 2**(weight_bits + prob_bits + 30)
# (grids.PHI_BITS = 30) and must stay inside int64.
MAX_WEIGHT_PLUS_PROB_BITS = 32
INT64_SAFE_BITS = 62


@dataclass(frozen=True)
class GmmConfig:
    """Grids and precisions of the quantized mixture (see configs/models/*.yaml)."""

    mixtures: int
    mean_step_log2: int
    scale_min: float
    scale_max: float
    scale_levels: int
    weight_bits: int
    prob_bits: int
    max_half_width: int

    def __post_init__(self) -> None:
        _check_int("mixtures", self.mixtures, 1, MAX_MIXTURES)
        _check_int("mean_step_log2", self.mean_step_log2, 1, MAX_MEAN_STEP_LOG2)
        _check_int("scale_levels", self.scale_levels, 2, MAX_SCALE_LEVELS)
        _check_int("weight_bits", self.weight_bits, 1, MAX_WEIGHT_BITS)
        _check_int("max_half_width", self.max_half_width, 1, MAX_HALF_WIDTH_LIMIT)
        # The PMF must leave room for one count per symbol, and its integer
        # frequencies must be exact in constriction's float32 prefix sums.
        min_prob_bits = (2 * self.max_half_width + 1).bit_length() + 1
        _check_int("prob_bits", self.prob_bits, min_prob_bits, CODER_PRECISION_BITS)
        if self.weight_bits + self.prob_bits > MAX_WEIGHT_PLUS_PROB_BITS:
            raise InputError(
                f"entropy: expected weight_bits + prob_bits <= {MAX_WEIGHT_PLUS_PROB_BITS}, got "
                f"{self.weight_bits} + {self.prob_bits}"
            )
        for name in ("scale_min", "scale_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"entropy.{name}: expected a number, got {value!r}")
        if not 0.0 < self.scale_min < self.scale_max <= MAX_SCALE:
            raise InputError(
                "entropy: expected 0 < scale_min < scale_max <= "
                f"{MAX_SCALE}, got scale_min={self.scale_min}, scale_max={self.scale_max}"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GmmConfig:
        """Build from a preset's ``entropy:`` mapping; unknown or missing keys are errors."""
        names = [f.name for f in fields(cls)]
        check_keys(d, SECTION, names)
        values = {n: d[n] for n in names}
        for n in ("scale_min", "scale_max"):
            if isinstance(values[n], int) and not isinstance(values[n], bool):
                values[n] = float(values[n])
        return cls(**values)


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    check_int(f"{SECTION}.{name}", value, lo, hi)
