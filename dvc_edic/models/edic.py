"""EDIC: the one learned coder class behind I-frames, motion vectors and residuals.

An autoencoder with channel attention, a hyperprior that predicts a
K-component Gaussian mixture for every element of y (no autoregressive
context, so decoding is fully parallel), a factorized bottleneck for z, a
decoder-side enhancement net, and gain units for variable rate. The three
uses differ only by :class:`CoderConfig`.

``forward`` serves training (noisy / straight-through quantization, returns
likelihoods). ``compress`` / ``decompress`` produce and read real bytes; the
encoder's reconstruction is computed by the decoder's own code path
(:meth:`EDIC.reconstruct`) on the symbols it just wrote, so the two match by
construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dvc_edic.bitstream.version import FORMAT_VERSION
from dvc_edic.config import check_bool, check_choice, check_int, check_keys
from dvc_edic.entropy import GmmEntropyCoder, gmm_likelihood, quantize_gmm
from dvc_edic.entropy.factorized import FactorizedBottleneck
from dvc_edic.entropy.zcoder import decode_z, encode_z, z_likelihoods, z_medians
from dvc_edic.errors import BitstreamError
from dvc_edic.models.gain import GainUnit
from dvc_edic.models.layers import (
    GDN,
    AttentionBlock,
    EnhancementNet,
    ResidualBlock,
    conv,
    one_thread_for,
    upsample,
)

if TYPE_CHECKING:  # the preset module imports CoderConfig from here
    from dvc_edic.models.preset import Preset

HYPER_STRIDE_STAGES = 2  # h_a halves twice: z is 4x smaller than y per side
QUANTIZATION_MODES = ("mixed", "noise", "ste")
# What stands at the attention points of g_a and g_s: the residual blocks gated by channel
# attention (EDIC), the same blocks without the gate (the attention ablated at equal
# capacity), or nothing (the blocks removed). Only an ablation (eval.ablation) sets it;
# a preset without the key is EDIC as shipped, so its digest and weights stay the same.
ATTENTION_MODES = ("channel", "residual", "none")
DEFAULT_ATTENTION = "channel"


@dataclass(frozen=True)
class EnhancementConfig:
    enabled: bool
    channels: int
    blocks: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> EnhancementConfig:
        """Parse an ``enhancement:`` mapping; sizes are required even when it is disabled,
        so that enabling it is a one-word edit."""
        check_keys(d, where, [f.name for f in fields(cls)])
        return cls(
            enabled=check_bool(f"{where}.enabled", d["enabled"]),
            channels=check_int(f"{where}.channels", d["channels"], 1),
            blocks=check_int(f"{where}.blocks", d["blocks"], 1),
        )


@dataclass(frozen=True)
class CoderConfig:
    """Sizes of one EDIC coder, read from a preset's ``intra``/``mv``/``residual`` section."""

    in_channels: int
    N: int
    M: int
    downsample: int
    kernel: int
    up_kernel: int
    attention_reduction: int
    hyper_N: int
    enhancement: EnhancementConfig
    attention: str = DEFAULT_ATTENTION  # one of ATTENTION_MODES; optional in a preset

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> CoderConfig:
        """Parse one coder's section of a preset; ``where`` (``intra``...) starts every
        message, so a refusal names the field as the YAML spells it."""
        names = [f.name for f in fields(cls) if f.name != "attention"]
        check_keys(d, where, names, ["attention"])
        sizes = {n: check_int(f"{where}.{n}", d[n], 1) for n in names if n != "enhancement"}
        enhancement = EnhancementConfig.from_dict(d["enhancement"], f"{where}.enhancement")
        attention = check_choice(f"{where}.attention", d.get("attention", DEFAULT_ATTENTION),
                                 ATTENTION_MODES)
        return cls(**sizes, enhancement=enhancement, attention=attention)

    @property
    def stride(self) -> int:
        """Inputs must be a multiple of this size; the caller pads."""
        return 2**self.downsample


@dataclass(frozen=True)
class CodedLatents:
    """What one EDIC coder writes for one picture: two byte strings and their shapes, and
    the format version that says how y is coded (GmmEntropyCoder)."""

    z: bytes
    y: bytes
    z_shape: tuple[int, int, int]
    y_shape: tuple[int, int, int]
    version: int = FORMAT_VERSION


def _attention(channels: int, cfg: CoderConfig) -> list[nn.Module]:
    """The block at one attention point of g_a / g_s, as ``cfg.attention`` asks (0 or 1)."""
    if cfg.attention == "none":
        return []
    if cfg.attention == "residual":
        return [ResidualBlock(channels)]
    return [AttentionBlock(channels, cfg.attention_reduction)]


def _analysis(cfg: CoderConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    ch = cfg.in_channels
    for i in range(cfg.downsample):
        last = i == cfg.downsample - 1
        out = cfg.M if last else cfg.N
        layers.append(conv(ch, out, cfg.kernel, stride=2))
        if not last:
            layers.append(GDN(out))
        if i == cfg.downsample // 2 - 1:
            layers += _attention(out, cfg)
        ch = out
    layers += _attention(cfg.M, cfg)
    return nn.Sequential(*layers)


def _synthesis(cfg: CoderConfig) -> nn.Sequential:
    layers: list[nn.Module] = _attention(cfg.M, cfg)
    ch = cfg.M
    for i in range(cfg.downsample):
        last = i == cfg.downsample - 1
        out = cfg.in_channels if last else cfg.N
        layers.append(upsample(ch, out, cfg.up_kernel))
        if not last:
            layers.append(GDN(out, inverse=True))
        if i == cfg.downsample // 2 - 1:
            layers += _attention(out, cfg)
        ch = out
    return nn.Sequential(*layers)


def _hyper_analysis(cfg: CoderConfig) -> nn.Sequential:
    layers: list[nn.Module] = [conv(cfg.M, cfg.hyper_N, 3), nn.LeakyReLU(inplace=True)]
    for i in range(HYPER_STRIDE_STAGES):
        layers.append(conv(cfg.hyper_N, cfg.hyper_N, 5, stride=2))
        if i < HYPER_STRIDE_STAGES - 1:
            layers.append(nn.LeakyReLU(inplace=True))
    return nn.Sequential(*layers)


def _hyper_synthesis(cfg: CoderConfig, mixtures: int) -> nn.Sequential:
    wide = cfg.hyper_N * 3 // 2
    return nn.Sequential(
        upsample(cfg.hyper_N, cfg.hyper_N, cfg.up_kernel),
        nn.LeakyReLU(inplace=True),
        upsample(cfg.hyper_N, wide, cfg.up_kernel),
        nn.LeakyReLU(inplace=True),
        conv(wide, 3 * mixtures * cfg.M, 3),
    )


class EDIC(nn.Module):
    # The modules the decoder runs (g_a and h_a are the encoder's): what a count of the
    # decoder's multiply-adds takes (eval.ablation).
    decoder_modules = ("g_s", "h_s", "enhance")

    def __init__(self, cfg: CoderConfig, preset: Preset) -> None:
        """``cfg``: this coder's section of ``preset``, which sets what the three coders
        share (entropy model, quality levels, gain init, training quantization)."""
        super().__init__()
        entropy = preset.entropy
        self.cfg = cfg
        self.entropy_cfg = entropy
        self.training_quantization = preset.training_quantization
        self.g_a = _analysis(cfg)
        self.g_s = _synthesis(cfg)
        self.h_a = _hyper_analysis(cfg)
        self.h_s = _hyper_synthesis(cfg, entropy.mixtures)
        self.z_bottleneck = FactorizedBottleneck(cfg.hyper_N)
        self.gain = GainUnit(preset.quality_levels, cfg.M, *preset.gain_init)
        self.enhance = (
            EnhancementNet(cfg.in_channels, cfg.enhancement.channels, cfg.enhancement.blocks)
            if cfg.enhancement.enabled
            else None
        )
        self._coder = GmmEntropyCoder(entropy)

    # ----------------------------------------------------------------- shared
    def _mixture(self, z_hat: torch.Tensor, y_size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """Mixture logits, means and scales, each (B, K, M, h, w), cropped to y's size.

        The softplus runs in one thread for inference: its rounding depends on where
        torch splits the tensor between threads, and a scale one ulp off can fall
        in another cell of the grid the entropy coder quantises it to.
        """
        p = self.h_s(z_hat)[..., : y_size[0], : y_size[1]]
        b, _, h, w = p.shape
        k, m = self.entropy_cfg.mixtures, self.cfg.M
        logits, means, scales = p.reshape(b, 3, k, m, h, w).unbind(dim=1)
        with one_thread_for(scales):
            scales = nn.functional.softplus(scales)
        return logits, means, scales

    def reconstruct(self, y_hat: torch.Tensor, quality: float | torch.Tensor) -> torch.Tensor:
        """The decoder's synthesis from dequantized y (in the gained domain)."""
        x = self.g_s(y_hat * self.gain.inverse_gain(quality))
        if self.enhance is not None:
            x = self.enhance(x)
        return x

    def _check_input(self, x: torch.Tensor) -> None:
        if (
            x.shape[1] != self.cfg.in_channels
            or x.shape[-1] % self.cfg.stride
            or (x.shape[-2] % self.cfg.stride)
        ):
            raise ValueError(
                f"EDIC input must be (B, {self.cfg.in_channels}, H, W) with H, W multiples of "
                f"{self.cfg.stride}; got {tuple(x.shape)}"
            )

    # --------------------------------------------------------------- training
    def forward(self, x: torch.Tensor, quality: float | torch.Tensor) -> dict[str, Any]:
        """Training/analysis pass: reconstruction plus likelihoods of y and z."""
        self._check_input(x)
        y = self.g_a(x) * self.gain.gain(quality)
        z = self.h_a(y)
        z_tilde, z_likelihoods = self.z_bottleneck(z)
        logits, means, scales = self._mixture(z_tilde, (y.shape[-2], y.shape[-1]))
        if self.training and self.training_quantization != "ste":
            y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            y_noisy = y + (torch.round(y) - y).detach()
        y_likelihoods = gmm_likelihood(y_noisy, logits, means, scales, self.entropy_cfg)
        if self.training and self.training_quantization == "noise":
            y_dec = y_noisy
        else:
            y_dec = y + (torch.round(y) - y).detach()
        return {
            "x_hat": self.reconstruct(y_dec, quality),
            "likelihoods": {"y": y_likelihoods, "z": z_likelihoods},
        }

    # ------------------------------------------------------------------ bytes
    @torch.no_grad()
    def analyse(self, x: torch.Tensor, quality: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The continuous latents (y, z) of one picture (batch 1), before rounding.

        The encoder may refine them (dvc_edic.encoder.refine) before
        :meth:`compress_latents` codes them: any y and z decode correctly.
        """
        self._check_input(x)
        if x.shape[0] != 1:
            raise ValueError(f"compress codes one picture at a time, got batch {x.shape[0]}")
        y = self.g_a(x) * self.gain.gain(quality)
        return y, self.h_a(y)

    @torch.no_grad()
    def compress_latents(
        self, y: torch.Tensor, z: torch.Tensor, quality: float, version: int = FORMAT_VERSION
    ) -> tuple[CodedLatents, torch.Tensor]:
        """Round and code (y, z) as format ``version`` does; returns the bytes and the
        decoder's reconstruction."""
        z_bytes, z_hat = encode_z(z, self.z_bottleneck)
        q = quantize_gmm(*self._mixture(z_hat, (y.shape[-2], y.shape[-1])), self.entropy_cfg)
        symbols = torch.round(y).to(torch.int64).cpu().numpy().reshape(-1)
        y_bytes, coded = self._coder.encode(symbols, q, version)
        y_hat = torch.from_numpy(coded.astype("float32")).reshape(y.shape)
        latents = CodedLatents(z=z_bytes, y=y_bytes, z_shape=tuple(z.shape[1:]),
                               y_shape=tuple(y.shape[1:]), version=version)  # fmt: skip
        return latents, self.reconstruct(y_hat, quality)

    def compress(self, x: torch.Tensor, quality: float) -> tuple[CodedLatents, torch.Tensor]:
        """Code one picture (batch 1). Returns the bytes and the decoder's reconstruction."""
        return self.compress_latents(*self.analyse(x, quality), quality)

    def rate_bits(self, y_hat: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
        """Estimated bits of already-rounded (y_hat, z_hat), differentiable in both.

        What the entropy coder will spend, up to its integer tables: the
        encoder's latent refinement minimises it.
        """
        logits, means, scales = self._mixture(z_hat, (y_hat.shape[-2], y_hat.shape[-1]))
        p_y = gmm_likelihood(y_hat, logits, means, scales, self.entropy_cfg)
        p_z = z_likelihoods(self.z_bottleneck, z_hat)
        return -(p_y.log2().sum() + p_z.log2().sum())

    def z_centres(self) -> torch.Tensor:
        """The per-channel values z is rounded around, (1, C, 1, 1)."""
        return z_medians(self.z_bottleneck)

    def latent_shapes(self, size: tuple[int, int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(y_shape, z_shape) for an input of ``size`` = (H, W), padded to the stride."""
        h, w = (-(-s // self.cfg.stride) for s in size)
        factor = 2**HYPER_STRIDE_STAGES
        return (self.cfg.M, h, w), (self.cfg.hyper_N, -(-h // factor), -(-w // factor))

    @torch.no_grad()
    def decompress(
        self, latents: CodedLatents, quality: float, size: tuple[int, int]
    ) -> torch.Tensor:
        """Rebuild a picture of ``size`` from its bytes.

        The shapes written in the stream must be the ones this model produces
        for that size; checking them first means a corrupt shape can never
        make the decoder allocate.
        """
        y_shape, z_shape = self.latent_shapes(size)
        if tuple(latents.y_shape) != y_shape or tuple(latents.z_shape) != z_shape:
            raise BitstreamError(
                f"latent shapes y {tuple(latents.y_shape)}, z {tuple(latents.z_shape)} do not "
                f"match the model's y {y_shape}, z {z_shape} for a {size[0]}x{size[1]} input"
            )
        z_hat = decode_z(latents.z, latents.z_shape, self.z_bottleneck)
        m, h, w = latents.y_shape
        q = quantize_gmm(*self._mixture(z_hat, (h, w)), self.entropy_cfg)
        symbols = self._coder.decode(latents.y, q, latents.version)
        y_hat = torch.from_numpy(symbols.astype("float32")).reshape(1, m, h, w)
        return self.reconstruct(y_hat, quality)
