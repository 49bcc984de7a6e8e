"""The loss of each training task, i.e. what one step of each stage optimises.

The staged schedule (DVC / OpenDVC practice) trains the parts of the P-frame
codec in the order in which each one's input becomes meaningful:

=================  ==========================================================
task               loss
=================  ==========================================================
image              lambda*D(I-frame decode, x) + R(intra y, z)
flow_supervised    end-point error against ground-truth flow (synthetic motion)
warp               MSE(warp(ref, flow), x) on real pairs
mv                 lambda*D(warp(ref, decoded flow), x) + R(mv y, z)
mc                 lambda*D(MC prediction, x) + R(mv y, z)
pframe             lambda*D(P-frame decode, x) + R(mv y, z, residual y, z); with
                   block motion (loss.block_share): R(residual y, z) only
multiframe         the pframe loss averaged over a GOP whose references are
                   the previous decoded frames
=================  ==========================================================

Every batch is a dict with ``frames`` (B, n, C, h, w) and, for synthetic
motion, ``flow`` (B, n-1, 2, h, w): the backward flow that predicts frame t+1
from frame t.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dvc_edic.encoder.blocksearch import block_flow
from dvc_edic.encoder.motion import dis_flow
from dvc_edic.encoder.settings import load_encoder_settings
from dvc_edic.models.pframe import PFrameCodec
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.train.losses import RateDistortion, epe, mse_per_sample
from flows import backward_warp

Batch = dict[str, torch.Tensor]
Metrics = dict[str, torch.Tensor]


def _pair(batch: Batch, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    frames = batch["frames"]
    if frames.shape[1] < 2:
        raise ValueError(f"the {what} task needs clips of at least 2 frames, got {frames.shape[1]}")
    return frames[:, 0], frames[:, 1]


def _valid(batch: Batch) -> torch.Tensor | None:
    return batch["valid"][:, 0] if "valid" in batch else None


def reference_frame(
    model: VideoCodecModel, x0: torch.Tensor, quality: torch.Tensor, how: str
) -> torch.Tensor:
    """What the P-frame codec predicts from: the original, or the I-frame codec's decode.

    The decode is detached: the I-frame codec is trained in stage 1 and only
    supplies realistic (compressed) references afterwards.
    """
    if how == "original":
        return x0
    with torch.no_grad():
        return model.intra(x0, quality)["x_hat"].clamp(0.0, 1.0).detach()


def coded_flow(model: VideoCodecModel, x: torch.Tensor, reference: torch.Tensor,
               cfg: dict[str, Any]) -> torch.Tensor:
    """The flow the MV coder codes in training: the flow net's, or DIS's as the encoder's
    ``--motion dis`` sends it (then the flow net gets no gradient from this step)."""
    if cfg["flow_source"] == "dis":
        return dis_flow(x, reference, model.representation,
                        load_encoder_settings().dis_preset)
    return model.pframe.flow(x, reference)


def _mse_metric(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return mse_per_sample(x_hat.detach().clamp(0.0, 1.0), x).mean()


def image_task(model: VideoCodecModel, batch: Batch, q: torch.Tensor, rd: RateDistortion,
               cfg: dict[str, Any]) -> Metrics:
    x = batch["frames"][:, 0]
    out = model.intra(x, q)
    bpp = rd.bpp(out["likelihoods"].values(), x)
    loss = rd.combine(rd.distortion(out["x_hat"], x), bpp, q)
    return {"loss": loss, "bpp": bpp.detach().mean(), "mse": _mse_metric(out["x_hat"], x)}


def flow_supervised_task(model: VideoCodecModel, batch: Batch, q: torch.Tensor,
                         rd: RateDistortion, cfg: dict[str, Any]) -> Metrics:
    if "flow" not in batch:
        raise ValueError("the flow_supervised task needs a dataset with ground-truth flow "
                         "(e.g. synthetic motion)")
    x0, x1 = _pair(batch, "flow_supervised")
    flow = model.pframe.flow(x1, x0)
    err = epe(flow, batch["flow"][:, 0], _valid(batch)).mean()
    warped = backward_warp(x0, flow.detach())
    return {"loss": err, "epe": err.detach(), "mse": _mse_metric(warped, x1)}


def warp_task(model: VideoCodecModel, batch: Batch, q: torch.Tensor, rd: RateDistortion,
              cfg: dict[str, Any]) -> Metrics:
    x0, x1 = _pair(batch, "warp")
    flow = model.pframe.flow(x1, x0)
    warped = backward_warp(x0, flow)
    mse = mse_per_sample(warped, x1).mean()
    out: Metrics = {"loss": cfg["warp_weight"] * mse, "mse": mse.detach()}
    if "flow" in batch:
        out["epe"] = epe(flow.detach(), batch["flow"][:, 0], _valid(batch)).mean()
    return out


def mv_task(model: VideoCodecModel, batch: Batch, q: torch.Tensor, rd: RateDistortion,
            cfg: dict[str, Any]) -> Metrics:
    x0, x1 = _pair(batch, "mv")
    ref = reference_frame(model, x0, q, cfg["reference"])
    mv = model.pframe.mv_coder(coded_flow(model, x1, ref, cfg), q)
    warped = backward_warp(ref, mv["x_hat"])
    bpp = rd.bpp(mv["likelihoods"].values(), x1)
    loss = rd.combine(rd.distortion(warped, x1), bpp, q)
    return {"loss": loss, "bpp": bpp.detach().mean(), "mse": _mse_metric(warped, x1)}


def mc_task(model: VideoCodecModel, batch: Batch, q: torch.Tensor, rd: RateDistortion,
            cfg: dict[str, Any]) -> Metrics:
    x0, x1 = _pair(batch, "mc")
    ref = reference_frame(model, x0, q, cfg["reference"])
    mv = model.pframe.mv_coder(coded_flow(model, x1, ref, cfg), q)
    prediction = model.pframe.predict(ref, mv["x_hat"])
    bpp = rd.bpp(mv["likelihoods"].values(), x1)
    loss = rd.combine(rd.distortion(prediction, x1), bpp, q)
    return {"loss": loss, "bpp": bpp.detach().mean(), "mse": _mse_metric(prediction, x1)}


def _block_terms(model: VideoCodecModel, x: torch.Tensor, ref: torch.Tensor,
                 q: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(x̂, likelihoods) of a P-frame coded as the encoder's block mode codes it: the plain
    warp by block vectors (exact, outside the loss: no gradient reaches them), plus the
    coded residual. Only the residual coder learns from it."""
    with torch.no_grad():
        flow = block_flow(x, ref, model.representation, load_encoder_settings().block)
        prediction = model.pframe.plain_warp(ref, flow)
    res = model.pframe.residual_coder(x - prediction, q)
    x_hat = PFrameCodec.finish(prediction, res["x_hat"])
    return x_hat, [res["likelihoods"]["y"], res["likelihoods"]["z"]]


def _pframe_terms(model: VideoCodecModel, x: torch.Tensor, ref: torch.Tensor, q: torch.Tensor,
                  rd: RateDistortion, cfg: dict[str, Any],
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One P-frame's loss. A share ``block_share`` of the steps (drawn from the seeded RNG)
    code block motion, as the encoder mostly does; the rest code ``flow_source``'s flow
    through the MV coder and the MC net."""
    share = cfg["block_share"]
    if cfg["flow_source"] == "block" or (share > 0 and float(torch.rand(())) < share):
        x_hat, likelihoods = _block_terms(model, x, ref, q)
    else:
        out = model.pframe(x, ref, q, flow=coded_flow(model, x, ref, cfg))
        x_hat, likelihoods = out["x_hat"], list(out["likelihoods"].values())
    bpp = rd.bpp(likelihoods, x)
    return rd.combine(rd.distortion(x_hat, x), bpp, q), bpp, x_hat


def pframe_task(model: VideoCodecModel, batch: Batch, q: torch.Tensor, rd: RateDistortion,
                cfg: dict[str, Any]) -> Metrics:
    x0, x1 = _pair(batch, "pframe")
    ref = reference_frame(model, x0, q, cfg["reference"])
    loss, bpp, x_hat = _pframe_terms(model, x1, ref, q, rd, cfg)
    return {"loss": loss, "bpp": bpp.detach().mean(), "mse": _mse_metric(x_hat, x1)}


def multiframe_task(model: VideoCodecModel, batch: Batch, q: torch.Tensor, rd: RateDistortion,
                    cfg: dict[str, Any]) -> Metrics:
    """P-frames 1..n-1, each predicted from the previous *decoded* frame.

    Feeding decoded frames back is what teaches the codec to stop errors
    from piling up over a GOP; detaching between frames (the default) keeps
    memory flat in the GOP length, at the price of not optimising a frame for
    its effect on later ones.
    """
    frames = batch["frames"]
    if frames.shape[1] < 2:
        raise ValueError(f"the multiframe task needs clips of at least 2 frames, "
                         f"got {frames.shape[1]}")
    ref = reference_frame(model, frames[:, 0], q, cfg["reference"])
    losses, bpps, mses = [], [], []
    for t in range(1, frames.shape[1]):
        loss, bpp, x_hat = _pframe_terms(model, frames[:, t], ref, q, rd, cfg)
        losses.append(loss)
        bpps.append(bpp.detach().mean())
        mses.append(_mse_metric(x_hat, frames[:, t]))
        ref = x_hat.detach() if cfg["detach_reference"] else x_hat
    return {
        "loss": torch.stack(losses).mean(),
        "bpp": torch.stack(bpps).mean(),
        "mse": torch.stack(mses).mean(),
    }


TaskFn = Callable[[VideoCodecModel, Batch, torch.Tensor, RateDistortion, dict[str, Any]], Metrics]

TASK_FUNCTIONS: dict[str, TaskFn] = {
    "image": image_task,
    "flow_supervised": flow_supervised_task,
    "warp": warp_task,
    "mv": mv_task,
    "mc": mc_task,
    "pframe": pframe_task,
    "multiframe": multiframe_task,
}

class TaskModule(nn.Module):
    """One training step's forward as a module, so DistributedDataParallel can wrap it."""

    def __init__(self, model: VideoCodecModel) -> None:
        super().__init__()
        self.model = model
        self.task = "image"
        self.rd: RateDistortion | None = None
        self.loss_cfg: dict[str, Any] = {}

    def configure(self, task: str, rd: RateDistortion, loss_cfg: dict[str, Any]) -> None:
        self.task, self.rd, self.loss_cfg = task, rd, loss_cfg

    def forward(self, batch: Batch, quality: torch.Tensor) -> Metrics:
        assert self.rd is not None, "configure() the task before the first step"
        return TASK_FUNCTIONS[self.task](self.model, batch, quality, self.rd, self.loss_cfg)
