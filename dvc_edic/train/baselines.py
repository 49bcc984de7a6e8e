"""CompressAI's image codecs, trained by this project's loop in place of the EDIC I-frame coder.

eval.ablation compares EDIC with Ballé's scale hyperprior (``bmshj2018-hyperprior``)
and Minnen's mean-scale hyperprior without and with the autoregressive context
(``mbt2018-mean``, ``mbt2018``) at an equal training budget. For the comparison
to mean anything they must train on the very same batches, under the same loss,
through the same loop, so :class:`CompressaiCoder` gives them EDIC's interface:
it takes and returns model tensors (the preset's representation: 4:2:0 YUV
folded into 6 channels for the cpu preset), so the loop's data, its distortion
(255²·MSE over the Y, U and V samples) and its rate (bits per source pixel from
the likelihoods) apply to them unchanged. Inside, the tensor is turned into the
R'G'B' those nets are designed for and their output back, both in the graph; the
pair of conversions is exact (nearest chroma up, 2x2 mean down, no clamping).

They are single-rate models: ``quality`` is accepted and ignored, and a run
trains one of them at one point of the lambda ladder (``loss.quality: fixed``).
Their bytes are their own ``compress`` strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dvc_edic.config import check_choice, check_int, check_keys
from dvc_edic.models.edic import CodedLatents
from dvc_edic.models.ladder import QualityRange
from dvc_edic.models.preset import Preset
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.representation import join_planes, luma_fold, split_planes

# CompressAI's names (its zoo's) and the classes of compressai.models they name.
ARCHITECTURES = {
    "bmshj2018-hyperprior": "ScaleHyperprior",
    "mbt2018-mean": "MeanScaleHyperprior",
    "mbt2018": "JointAutoregressiveHierarchicalPriors",
}
# Each of them halves the picture 4 times in g_a and twice more in h_a: a picture must be
# a multiple of this many pixels a side for z, y and x to nest exactly.
NET_STRIDE = 64
Z_TO_Y = 4  # h_a's two halvings: y is this many times z per side
# Their modules that the decoder runs (the rest is the encoder's): for counting decoder MACs.
DECODER_MODULES = ("g_s", "h_s", "context_prediction", "entropy_parameters")
# The chroma filter whose 2x2 mean inverts it exactly (dvc_edic.representation's rgb).
CHROMA_FILTER = "nearest"


@dataclass(frozen=True)
class ImageCoderSpec:
    """A train config's ``image_coder``: which CompressAI net, and its widths."""

    arch: str
    N: int | None = None  # None: the preset's intra N
    M: int | None = None  # None: the preset's intra M


def parse_image_coder(spec: Any, where: str) -> ImageCoderSpec:
    """The ``image_coder`` mapping, checked; unknown keys and architectures are refused."""
    check_keys(spec, where, ["arch"], ["N", "M"])
    widths = {k: check_int(f"{where}.{k}", spec[k], 1) for k in ("N", "M")
              if spec.get(k) is not None}
    return ImageCoderSpec(arch=check_choice(f"{where}.arch", spec["arch"], tuple(ARCHITECTURES)),
                          **widths)


def _source_coding() -> dict[str, Any]:
    """The colour coding the training data's photos were converted with (read when used:
    the data package is only needed once training)."""
    from dvc_edic.data.convert import (
        RGB_SOURCE_BIT_DEPTH,
        RGB_SOURCE_FULL_RANGE,
        RGB_SOURCE_MATRIX,
    )

    return {"matrix": RGB_SOURCE_MATRIX, "full_range": RGB_SOURCE_FULL_RANGE,
            "bit_depth": RGB_SOURCE_BIT_DEPTH}


def to_rgb(x: torch.Tensor, representation: str) -> torch.Tensor:
    """A model tensor as R'G'B' (B, 3, H, W), differentiably and without clamping."""
    from dvc_edic.colour import yuv_to_rgb

    if luma_fold(representation) == 1:
        return x
    (luma, _), (chroma, _) = split_planes(x, representation)
    return yuv_to_rgb(luma, chroma[:, :1], chroma[:, 1:], chroma_filter=CHROMA_FILTER,
                      clamp=False, **_source_coding())


def from_rgb(rgb: torch.Tensor, representation: str) -> torch.Tensor:
    """The inverse of :func:`to_rgb`."""
    from dvc_edic.colour import rgb_to_yuv

    if luma_fold(representation) == 1:
        return rgb
    y, u, v = rgb_to_yuv(rgb, **_source_coding())
    return join_planes([y, torch.cat((u, v), dim=1)], representation)


class CompressaiCoder(nn.Module):
    """A CompressAI image net behind EDIC's coder interface (forward, compress, decompress)."""

    decoder_modules = tuple(f"net.{m}" for m in DECODER_MODULES)

    def __init__(self, spec: ImageCoderSpec, preset: Preset) -> None:
        import compressai.models

        super().__init__()
        self.spec = spec
        self.representation = preset.representation
        net = getattr(compressai.models, ARCHITECTURES[spec.arch])
        self.net = net(spec.N or preset.intra.N, spec.M or preset.intra.M)
        conditional = getattr(self.net, "gaussian_conditional", None)
        if conditional is not None:
            # the scale table is empty until first updated; filled now, its shape is fixed,
            # so a checkpoint loads into a fresh net (the CDF tables are resized on load)
            from compressai.models.google import get_scale_table

            conditional.update_scale_table(get_scale_table())
        self.stride = NET_STRIDE // luma_fold(self.representation)

    def forward(self, x: torch.Tensor, quality: float | torch.Tensor) -> dict[str, Any]:
        """Training pass, as EDIC's: reconstruction and the likelihoods of y and z."""
        out = self.net(to_rgb(x, self.representation))
        return {"x_hat": from_rgb(out["x_hat"], self.representation),
                "likelihoods": out["likelihoods"]}

    def latent_shapes(self, size: tuple[int, int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(y_shape, z_shape) for a model tensor of ``size`` = (h, w), padded to the stride."""
        zh, zw = (-(-s // self.stride) for s in size)
        return (self.net.M, zh * Z_TO_Y, zw * Z_TO_Y), (self.net.N, zh, zw)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> CodedLatents:
        """One picture (batch 1, sides multiples of :attr:`stride`) as the net's strings."""
        if x.shape[0] != 1 or x.shape[-2] % self.stride or x.shape[-1] % self.stride:
            raise ValueError(f"compress codes one picture whose sides are multiples of "
                             f"{self.stride}; got {tuple(x.shape)}")
        (y,), (z,) = self.net.compress(to_rgb(x, self.representation))["strings"]
        y_shape, z_shape = self.latent_shapes((x.shape[-2], x.shape[-1]))
        return CodedLatents(z=z, y=y, z_shape=z_shape, y_shape=y_shape)

    def compress(self, x: torch.Tensor, quality: float) -> tuple[CodedLatents, torch.Tensor]:
        """EDIC's compress: the strings and the decoder's reconstruction of them."""
        latents = self.encode(x)
        return latents, self.decompress(latents, quality, (x.shape[-2], x.shape[-1]))

    @torch.no_grad()
    def decompress(self, latents: CodedLatents, quality: float,
                   size: tuple[int, int]) -> torch.Tensor:
        """The decoder: strings back to a model tensor of ``size`` (cropped from the
        padded picture the strings code)."""
        out = self.net.decompress([[latents.y], [latents.z]], list(latents.z_shape[1:]))
        x_hat = from_rgb(out["x_hat"], self.representation)
        return x_hat[..., : size[0], : size[1]]


class BaselineImageModel(nn.Module):
    """What the training loop and its validation use of a VideoCodecModel, around a
    CompressAI coder: ``intra``, the preset's quality ladder, stride and representation."""

    def __init__(self, preset: Preset, spec: ImageCoderSpec) -> None:
        super().__init__()
        self.preset = preset
        self.intra = CompressaiCoder(spec, preset)

    @property
    def representation(self) -> str:
        return self.preset.representation

    @property
    def quality_range(self) -> QualityRange:
        return self.preset.quality_range

    @property
    def stride(self) -> int:
        return self.intra.stride

    def update_entropy_tables(self) -> None:
        """Rebuild the integer tables from the learned densities (before coding)."""
        self.intra.net.update(force=True)


def build_model(preset: Preset, image_coder: Mapping[str, Any] | None,
                ) -> VideoCodecModel | BaselineImageModel:
    """The model a stage trains: the codec, or a CompressAI image coder (``image_coder``)."""
    if image_coder is None:
        return VideoCodecModel(preset)
    return BaselineImageModel(preset, parse_image_coder(image_coder, "image_coder"))
