"""Validation with real bytes: every reported bpp is the length of a coded stream.

I-frames go through ``intra.compress``; P-frames through ``pframe.compress``
with the I-frame codec's own decode as reference (and, for a GOP, the
previous decoded P-frame), exactly as the encoder does. Motion stages that
do not code a residual yet report the MV bytes and the quality of the
prediction they enable; the flow warm-up, which codes nothing, reports
warping PSNR and, on synthetic data, end-point error.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from dvc_edic.metrics import UNIT_PEAK, mse_to_psnr
from dvc_edic.models.edic import CodedLatents
from dvc_edic.models.ladder import QualityRange
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.representation import crop_to, pad_to_multiple
from dvc_edic.train.losses import epe, mse_per_sample, source_pixels_per_model_pixel
from flows import backward_warp

BITS_PER_BYTE = 8
FLOW_TASKS = ("flow_supervised", "warp")


def _bits(*latents: CodedLatents) -> int:
    return BITS_PER_BYTE * sum(len(lat.y) + len(lat.z) for lat in latents)


def _psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    return mse_to_psnr(float(mse_per_sample(x_hat.clamp(0.0, 1.0), x).mean()), UNIT_PEAK)


class _Frames:
    """One validation clip, padded to the model stride, with its source-pixel count."""

    def __init__(self, item: dict[str, torch.Tensor], model: VideoCodecModel) -> None:
        frames = item["frames"]
        self.size = (int(frames.shape[-2]), int(frames.shape[-1]))
        self.padded = [pad_to_multiple(f[None], model.stride)[0] for f in frames]
        self.originals = [f[None] for f in frames]
        self.pixels = self.size[0] * self.size[1] * source_pixels_per_model_pixel(
            model.representation)
        self.flow = item.get("flow")
        self.valid = item.get("valid")

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        return crop_to(x, self.size)


def _intra(model: VideoCodecModel, clip: _Frames, q: float) -> tuple[int, torch.Tensor]:
    latents, x_hat = model.intra.compress(clip.padded[0], q)
    return _bits(latents), x_hat.clamp(0.0, 1.0)


def _item_metrics(model: VideoCodecModel, task: str, clip: _Frames, q: float) -> dict[str, float]:
    if task == "image":
        bits, x_hat = _intra(model, clip, q)
        return {"bpp": bits / clip.pixels, "psnr": _psnr(clip.crop(x_hat), clip.originals[0])}
    if task in FLOW_TASKS:
        x0, x1 = clip.padded[0], clip.padded[1]
        flow = model.pframe.flow(x1, x0)
        out = {"warp_psnr": _psnr(clip.crop(backward_warp(x0, flow)), clip.originals[1])}
        if clip.flow is not None:
            valid = None if clip.valid is None else clip.valid[0][None]
            out["epe"] = float(epe(clip.crop(flow), clip.flow[0][None], valid).mean())
        return out
    _, ref = _intra(model, clip, q)
    if task in ("mv", "mc"):
        x1 = clip.padded[1]
        latents, flow_hat = model.pframe.mv_coder.compress(model.pframe.flow(x1, ref), q)
        pred = (backward_warp(ref, flow_hat) if task == "mv"
                else model.pframe.predict(ref, flow_hat))
        return {"bpp": _bits(latents) / clip.pixels,
                "psnr": _psnr(clip.crop(pred), clip.originals[1])}
    # pframe, multiframe: a GOP of P-frames, each referencing the previous decode
    bits, psnrs = 0, []
    last = 2 if task == "pframe" else len(clip.padded)
    for t in range(1, last):
        latents, x_hat = model.pframe.compress(clip.padded[t], ref, q)
        bits += _bits(latents.mv, latents.residual)
        psnrs.append(_psnr(clip.crop(x_hat), clip.originals[t]))
        ref = x_hat
    return {"bpp": bits / (clip.pixels * (last - 1)), "psnr": sum(psnrs) / len(psnrs)}


def default_qualities(qualities: QualityRange) -> list[float]:
    """Lowest, middle and highest level: enough to see the RD curve move."""
    low, high = qualities.low, qualities.high
    return [low, (low + high) / 2.0, high]


@torch.no_grad()
def validate(
    model: VideoCodecModel,
    task: str,
    items: list[dict[str, torch.Tensor]],
    qualities: list[float],
) -> list[dict[str, Any]]:
    """One row per quality (one row in all for the flow tasks), averaged over items.

    Runs on a CPU copy when the model lives on a GPU: the entropy coders
    work on CPU tensors.
    """
    was_training = model.training
    work = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()
    work.eval()
    work.update_entropy_tables()
    clips = [_Frames(item, work) for item in items]
    rows = []
    for q in ([None] if task in FLOW_TASKS else qualities):
        per_item = [_item_metrics(work, task, clip, 1.0 if q is None else float(q))
                    for clip in clips]
        row: dict[str, Any] = {"quality": "-" if q is None else float(q), "items": len(clips)}
        for key in per_item[0]:
            row[key] = sum(m[key] for m in per_item) / len(per_item)
        rows.append(row)
    if work is model:
        model.train(was_training)
    return rows
