"""The complete codec model: the I-frame EDIC coder plus the P-frame codec."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from compressai.entropy_models import EntropyBottleneck
from torch import nn

from dvc_edic.entropy import GmmConfig
from dvc_edic.models.edic import EDIC, CoderConfig
from dvc_edic.models.pframe import PFrameCodec

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
    """Everything a stream needs, built from one preset dict (the YAML in configs/models/)."""

    def __init__(self, preset: dict[str, Any]) -> None:
        super().__init__()
        self.preset = preset
        self.entropy_cfg = GmmConfig.from_dict(preset["entropy"])
        self.intra = EDIC(
            CoderConfig.from_dict(preset["intra"]),
            self.entropy_cfg,
            int(preset["quality_levels"]),
            tuple(preset["gain_init"]),
            preset.get("training_quantization", "mixed"),
        )
        self.pframe = PFrameCodec(preset, self.entropy_cfg)

    @property
    def model_id(self) -> str:
        """Family, preset name, code version and a digest of the preset's values.

        The digest makes a preset edit (a stride, a width) a new model id by
        itself, so weights and streams of two revisions of the same preset name
        can never be taken for each other.
        """
        canonical = json.dumps(self.preset, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:PRESET_DIGEST_HEX]
        return f"{MODEL_FAMILY}-{self.preset['name']}-v{ARCH_VERSION}-{digest}"

    @property
    def representation(self) -> str:
        return str(self.preset["representation"])

    @property
    def quality_levels(self) -> int:
        return int(self.preset["quality_levels"])

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
            if isinstance(m, EntropyBottleneck):
                m.update(force=True)

    def entropy_bottlenecks(self) -> list[EntropyBottleneck]:
        return [m for m in self.modules() if isinstance(m, EntropyBottleneck)]
