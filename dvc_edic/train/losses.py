"""Rate, distortion and the per-sample lambda of L = lambda * D + R.

Rate is in bits per *source* pixel: a yuv420 model tensor of h x w stands for
a 2h x 2w frame, and bpp must mean the same thing here as in the RD results.
Distortion follows CompressAI's convention: D = 255^2 * MSE on [0, 1] samples
(so the MSE ladder of the presets applies unchanged), or D = 1 - MS-SSIM with
its own ladder.

Variable rate: every sample of a batch gets its own continuous quality q in
[1, levels]; the gain units interpolate their log-gains linearly in q, so
lambda is interpolated the same way (geometrically between ladder entries).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

from dvc_edic.errors import InputError
from dvc_edic.models.ladder import LADDER_PEAK, QualityRange, interpolate_ladder
from dvc_edic.models.preset import Preset
from dvc_edic.representation import representation_size

# sqrt(0) has an infinite derivative; the end-point error adds this under the root.
EPE_EPSILON = 1e-12
MSSSIM_WINDOW = 11  # pytorch-msssim's default Gaussian window
# pytorch-msssim requires each side above (window - 1) * 2^4 pixels (its 4 downsamplings),
# whatever the scale weights.
MSSSIM_MIN_SIDE = (MSSSIM_WINDOW - 1) * 2**4
_PROBE = 64  # any even size: used to read the representation's source-to-model pixel ratio


def source_pixels_per_model_pixel(representation: str) -> float:
    """How many source pixels one model-tensor pixel stands for (4 for yuv420, 1 for rgb)."""
    h, w = representation_size(_PROBE, _PROBE, representation)
    return (_PROBE * _PROBE) / (h * w)


def bits_per_sample(likelihoods: Iterable[torch.Tensor]) -> torch.Tensor:
    """Total -log2 likelihood of each batch element, summed over every latent given: (B,)."""
    total: torch.Tensor | None = None
    for lik in likelihoods:
        bits = -torch.log2(lik).flatten(1).sum(dim=1)
        total = bits if total is None else total + bits
    if total is None:
        raise ValueError("bits_per_sample needs at least one likelihood tensor")
    return total


def mse_per_sample(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (x_hat - x).pow(2).flatten(1).mean(dim=1)


def epe(flow: torch.Tensor, target: torch.Tensor,
        valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean end-point error (pixels) of each batch element over its valid pixels: (B,).

    ``valid`` (B, 1, h, w) marks where the ground truth holds (not occluded,
    inside the frame); elsewhere no flow is right and none is penalised.
    """
    err = (flow - target).pow(2).sum(dim=1).add(EPE_EPSILON).sqrt().flatten(1)
    if valid is None:
        return err.mean(dim=1)
    weight = valid.flatten(1).to(err.dtype)
    return (err * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1.0)


class QualitySampler:
    """Draws the quality of each sample from its own generator, so resuming is exact."""

    def __init__(
        self, qualities: QualityRange, mode: str, fixed: float | None, seed: int
    ) -> None:
        self.qualities = qualities
        self.mode = mode
        self.fixed = fixed
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self, batch: int) -> torch.Tensor:
        if self.mode == "fixed":
            return torch.full((batch,), float(self.fixed))
        n = batch if self.mode == "per_sample" else 1
        u = torch.rand(n, generator=self.generator)
        q = self.qualities.low + u * self.qualities.span
        return q.expand(batch).clone() if n == 1 else q

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def load_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def _luma_full_resolution(x: torch.Tensor, representation: str) -> torch.Tensor:
    """The plane MS-SSIM is computed on: full-resolution luma for yuv420, RGB for rgb.

    MS-SSIM on quarter-size chroma is not a metric anyone reports, and the
    pixel-unshuffled luma channels are not images; folding them back gives the
    luma plane the metric was designed for.
    """
    if representation == "yuv420":
        fold = round(math.sqrt(source_pixels_per_model_pixel(representation)))
        luma_channels = fold * fold
        return F.pixel_shuffle(x[:, :luma_channels], fold)
    return x


class RateDistortion:
    """L = lambda(q) * D + R with the lambda ladder and distortion chosen by a loss config."""

    def __init__(self, loss_cfg: dict[str, Any], preset: Preset) -> None:
        self.kind = loss_cfg["distortion"]
        self.representation = preset.representation
        self.levels = preset.quality_levels
        if self.kind == "mse":
            ladder = loss_cfg["lambdas"] or preset.lambdas
        else:
            ladder = loss_cfg["msssim_lambdas"]
        if len(ladder) != self.levels:
            raise InputError(
                f"loss: the {self.kind} lambda ladder has {len(ladder)} entries, "
                f"the model has {self.levels} quality levels"
            )
        self.ladder = [float(v) for v in ladder]
        self.msssim_weights = loss_cfg["msssim_weights"]
        self.pixel_ratio = source_pixels_per_model_pixel(self.representation)

    def lambdas(self, quality: torch.Tensor) -> torch.Tensor:
        return interpolate_ladder(self.ladder, quality)

    def source_pixels(self, x: torch.Tensor) -> float:
        return float(x.shape[-2] * x.shape[-1]) * self.pixel_ratio

    def bpp(self, likelihoods: Iterable[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return bits_per_sample(likelihoods) / self.source_pixels(x)

    def distortion(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-sample D (B,), scaled so the ladder's lambdas apply directly."""
        if self.kind == "mse":
            return LADDER_PEAK * LADDER_PEAK * mse_per_sample(x_hat, x)
        from pytorch_msssim import ms_ssim

        a = _luma_full_resolution(x_hat.clamp(0.0, 1.0), self.representation)
        b = _luma_full_resolution(x, self.representation)
        if min(a.shape[-2:]) <= MSSSIM_MIN_SIDE:
            raise InputError(
                f"ms-ssim needs planes larger than {MSSSIM_MIN_SIDE} pixels a side, got "
                f"{tuple(a.shape[-2:])} (the luma plane of the crop): use a larger crop"
            )
        score = ms_ssim(
            a, b, data_range=1.0, size_average=False, win_size=MSSSIM_WINDOW,
            weights=self.msssim_weights,
        )
        return 1.0 - score

    def combine(
        self, distortion: torch.Tensor, bpp: torch.Tensor | None, quality: torch.Tensor
    ) -> torch.Tensor:
        """Batch mean of lambda_i * D_i + R_i."""
        lam = self.lambdas(quality).to(distortion.device)
        loss = lam * distortion
        if bpp is not None:
            loss = loss + bpp
        return loss.mean()
