"""The complete codec model: the I-frame EDIC coder plus the P-frame codec."""

from __future__ import annotations

import math

from torch import nn

from dvc_edic.entropy.factorized import FactorizedBottleneck
from dvc_edic.models.edic import EDIC
from dvc_edic.models.ladder import QualityRange
from dvc_edic.models.pframe import PFrameCodec
from dvc_edic.models.preset import Preset

MODEL_FAMILY = "dvc_edic"
ARCH_VERSION = 1  # bump whenever a change makes old weights or streams incompatible
PRESET_DIGEST_HEX = 8  # hex digits of the preset digest in the model id
# The preset section that sizes each module: a module's weights fit another preset
# whenever that section (and every section outside this table) is the same.
MODULE_SECTIONS = {
    "intra": "intra",
    "pframe.flow": "flow",
    "pframe.mv_coder": "mv",
    "pframe.mc": "motion_compensation",
    "pframe.residual_coder": "residual",
}


class VideoCodecModel(nn.Module):
    """Everything a stream needs, built from one preset (the YAML in configs/models/)."""

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.preset = preset
        self.entropy_cfg = preset.entropy
        self.intra = EDIC(preset.intra, preset)
        self.pframe = PFrameCodec(preset)

    @property
    def model_id(self) -> str:
        """Family, preset name, code version and a digest of the preset's values.

        The digest makes a preset edit (a stride, a width) a new model id by
        itself, so weights and streams of two revisions of the same preset name
        can never be taken for each other.
        """
        digest = self.preset.digest[:PRESET_DIGEST_HEX]
        return f"{MODEL_FAMILY}-{self.preset.name}-v{ARCH_VERSION}-{digest}"

    @property
    def representation(self) -> str:
        return self.preset.representation

    @property
    def quality_levels(self) -> int:
        return self.preset.quality_levels

    @property
    def quality_range(self) -> QualityRange:
        """The qualities this model codes at; a stream's must lie in it."""
        return self.preset.quality_range

    @property
    def stride(self) -> int:
        """Model tensors are padded to a multiple of this (every coder's stride divides it)."""
        strides = [
            self.intra.cfg.stride,
            self.pframe.mv_coder.cfg.stride,
            self.pframe.residual_coder.cfg.stride,
        ]
        return math.lcm(*strides)

    def update_entropy_tables(self) -> None:
        """Recompute the integer z tables from the learned densities (before export/coding)."""
        for m in self.modules():
            if isinstance(m, FactorizedBottleneck):
                m.update(force=True)

    def entropy_bottlenecks(self) -> list[FactorizedBottleneck]:
        return [m for m in self.modules() if isinstance(m, FactorizedBottleneck)]
