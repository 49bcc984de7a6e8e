"""The DVC P-frame codec, built from two EDIC coders and a flow estimator.

    v_t   = flow(x_t, x̂_{t-1})                 encoder only
    v̂_t   = MV coder (EDIC on 2-channel flow)
    x̄_t   = MC(warp(x̂_{t-1}, v̂_t), x̂_{t-1}, v̂_t)
    r̂_t   = residual coder (EDIC on x_t - x̄_t)
    x̂_t   = clamp(x̄_t + r̂_t)

:meth:`PFrameCodec.predict` and :meth:`PFrameCodec.finish` are the decoder's
code; the encoder calls them on what it has just coded, so both sides compute
the same x̂_t.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dvc_edic.blockmotion import BlockMotion
from dvc_edic.config import check_int, check_keys
from dvc_edic.errors import BitstreamError
from dvc_edic.models.edic import EDIC, CodedLatents
from dvc_edic.models.layers import ResidualBlock, blocked_stack, conv
from dvc_edic.representation import warp_planes, warp_planes_blocks
from flows import backward_warp, build_flow_estimator

if TYPE_CHECKING:  # the preset module imports MotionCompensationConfig from here
    from dvc_edic.models.preset import Preset


@dataclass(frozen=True)
class MotionCompensationConfig:
    """Sizes of the MC net, the preset's ``motion_compensation:`` section."""

    channels: int  # hidden width
    blocks: int  # residual blocks

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> MotionCompensationConfig:
        names = [f.name for f in fields(cls)]
        check_keys(d, where, names)
        return cls(**{n: check_int(f"{where}.{n}", d[n], 1) for n in names})


class MotionCompensation(nn.Module):
    """Refines the warped reference using the reference itself and the decoded flow.

    Output = warped + learned correction; the correction starts at zero so an
    untrained network predicts plain warping.
    """

    def __init__(self, channels: int, hidden: int, blocks: int) -> None:
        super().__init__()
        self.head = conv(2 * channels + 2, hidden, 3)
        self.body = nn.Sequential(*(ResidualBlock(hidden) for _ in range(blocks)))
        self.tail = conv(hidden, channels, 3)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(
        self, warped: torch.Tensor, reference: torch.Tensor, flow: torch.Tensor
    ) -> torch.Tensor:
        x = torch.cat([warped, reference, flow], dim=1)
        out = blocked_stack(x, self.head, self.body, self.tail, warped, "relu")
        if out is not None:  # the same numbers without layout copies
            return out
        h = torch.relu(self.head(x))
        return warped + self.tail(self.body(h))


@dataclass(frozen=True)
class PFrameLatents:
    """A P-frame's coded parts; a part left out is a mode, not an error.

    ``mv is None``: zero motion, nothing coded for it. ``residual is None``: the
    frame is the motion-compensated prediction itself (skip). ``mc`` False: the
    prediction is the plainly warped reference, for content where the MC net,
    still undertrained, predicts worse than warping alone. All are encoder
    choices that the decoder follows without knowing why they were made.
    """

    mv: CodedLatents | None
    residual: CodedLatents | None
    mc: bool = True  # False: the prediction is the warped reference, without the MC net
    # the motion as block vectors instead of the MV coder's latents (format version 3)
    block: BlockMotion | None = None
    # the residual's latents are the I-frame coder's, of residual + INTRA_RESIDUAL_OFFSET
    intra_residual: bool = False
    # the plain warp samples each plane at its own resolution (format version 5);
    # False: the model tensor is warped as it is (streams of versions 1-4)
    fine_warp: bool = True

    def __post_init__(self) -> None:
        if self.mv is not None and self.block is not None:
            raise BitstreamError("a P-frame has either MV latents or block motion, not both")

    def flow(self, pf: PFrameCodec, reference: torch.Tensor, quality: float) -> torch.Tensor:
        """The decoded motion on the reference's grid: what the decoder warps with."""
        if self.block is not None:
            return self.block.to_flow(reference)
        if self.mv is None:
            return pf.zero_motion(reference)
        return pf.mv_coder.decompress(self.mv, quality, (reference.shape[-2], reference.shape[-1]))


# The I-frame coder codes pictures in [0, 1]; a residual shifted by this is one.
INTRA_RESIDUAL_OFFSET = 0.5


class PFrameCodec(nn.Module):
    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.flow = build_flow_estimator(preset.flow)
        self.mv_coder = EDIC(preset.mv, preset)
        self.residual_coder = EDIC(preset.residual, preset)
        self.representation = preset.representation
        mc = preset.motion_compensation
        self.mc = MotionCompensation(preset.residual.in_channels, mc.channels, mc.blocks)

    def predict(self, reference: torch.Tensor, flow_hat: torch.Tensor) -> torch.Tensor:
        """Motion-compensated prediction x̄_t from the decoded reference and flow. The MC
        net takes the model tensor warped as it is, as it was trained."""
        return self.mc(backward_warp(reference, flow_hat), reference, flow_hat)

    def plain_warp(self, reference: torch.Tensor, flow_hat: torch.Tensor,
                   fine: bool = True) -> torch.Tensor:
        """The prediction of a packet without MC: the reference warped, plane by plane
        (``fine``) or as the model tensor (streams before format version 5)."""
        if fine:
            return warp_planes(reference, flow_hat, self.representation)
        return backward_warp(reference, flow_hat)

    def block_warp(self, reference: torch.Tensor, block: BlockMotion) -> torch.Tensor:
        """The plain warp (plane by plane) of a block field, block by block: the same numbers
        as ``plain_warp`` of its dense flow with its kernel (bilinear, or cubic where
        format version 10 flags it), without the dense flow."""
        return warp_planes_blocks(reference, torch.from_numpy(block.vectors), block.block,
                                  block.precision_log2, self.representation, block.kernel)

    @staticmethod
    def finish(prediction: torch.Tensor, residual_hat: torch.Tensor) -> torch.Tensor:
        return (prediction + residual_hat).clamp(0.0, 1.0)

    def forward(
        self, x: torch.Tensor, reference: torch.Tensor, quality: float | torch.Tensor,
        flow: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """Training pass; returns x̂, the prediction and every latent's likelihoods.

        ``flow``: the motion to code (None: the flow net's), as the encoder may
        take it from another estimator.
        """
        if flow is None:
            flow = self.flow(x, reference)
        mv = self.mv_coder(flow, quality)
        prediction = self.predict(reference, mv["x_hat"])
        res = self.residual_coder(x - prediction, quality)
        return {
            "x_hat": self.finish(prediction, res["x_hat"]),
            "prediction": prediction,
            "flow": flow,
            "flow_hat": mv["x_hat"],
            "likelihoods": {
                "mv_y": mv["likelihoods"]["y"],
                "mv_z": mv["likelihoods"]["z"],
                "res_y": res["likelihoods"]["y"],
                "res_z": res["likelihoods"]["z"],
            },
        }

    @torch.no_grad()
    def compress(
        self, x: torch.Tensor, reference: torch.Tensor, quality: float
    ) -> tuple[PFrameLatents, torch.Tensor]:
        flow = self.flow(x, reference)
        mv, flow_hat = self.mv_coder.compress(flow, quality)
        prediction = self.predict(reference, flow_hat)
        res, residual_hat = self.residual_coder.compress(x - prediction, quality)
        return PFrameLatents(mv=mv, residual=res), self.finish(prediction, residual_hat)

    @staticmethod
    def zero_motion(reference: torch.Tensor) -> torch.Tensor:
        """The decoded flow of a frame coded without motion."""
        b, _, h, w = reference.shape
        return reference.new_zeros(b, 2, h, w)

    @torch.no_grad()
    def decompress(
        self, latents: PFrameLatents, reference: torch.Tensor, quality: float,
        intra: EDIC | None = None,
    ) -> torch.Tensor:
        """``intra``: the I-frame coder, which decodes the residual of an ``intra_residual``
        packet (the P-frame codec does not own it)."""
        size = (reference.shape[-2], reference.shape[-1])
        if latents.block is not None and not latents.mc and latents.fine_warp:
            prediction = self.block_warp(reference, latents.block)  # no dense flow needed
        elif latents.mc:
            prediction = self.predict(reference, latents.flow(self, reference, quality))
        else:
            prediction = self.plain_warp(reference, latents.flow(self, reference, quality),
                                         latents.fine_warp)
        if latents.residual is None:
            return prediction.clamp(0.0, 1.0)
        if latents.intra_residual:
            if intra is None:
                raise BitstreamError("an intra-coded residual needs the I-frame coder")
            shifted = intra.decompress(latents.residual, quality, size)
            return self.finish(prediction, shifted - INTRA_RESIDUAL_OFFSET)
        residual_hat = self.residual_coder.decompress(latents.residual, quality, size)
        return self.finish(prediction, residual_hat)
