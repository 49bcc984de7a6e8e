"""Where a P-frame's motion comes from: the learned flow net, OpenCV's DIS, or none.

The MV coder codes whatever flow it is given, so the encoder may take it from
any estimator; the decoder only ever sees the decoded flow. DIS is classical
dense flow (Kroeger et al. 2016): a few tens of milliseconds a frame on a CPU,
independent of how far the learned flow net has been trained.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dvc_edic.errors import InputError
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.representation import luma_of

_U8_PEAK = 255.0


def _dis(preset: str):  # -> cv2.DISOpticalFlow, typed loosely: cv2 is an optional import
    try:
        import cv2
    except ImportError as exc:
        raise InputError(
            "motion source 'dis' needs OpenCV: pip install opencv-python-headless"
        ) from exc
    code = getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}")
    return cv2.DISOpticalFlow_create(code)


def _to_u8(luma: torch.Tensor) -> np.ndarray:
    return (luma[0, 0] * _U8_PEAK).round().clamp(0, _U8_PEAK).to(torch.uint8).cpu().numpy()


def dis_flow(
    x: torch.Tensor, reference: torch.Tensor, representation: str, preset: str
) -> torch.Tensor:
    """Backward flow on the model grid: reference(p + flow(p)) predicts x(p).

    A batch is estimated picture by picture (training codes DIS flows too).
    """
    cur, fold = luma_of(x.detach(), representation)
    ref, _ = luma_of(reference.detach(), representation)
    dis = _dis(preset)
    flows = [dis.calc(_to_u8(cur[i : i + 1]), _to_u8(ref[i : i + 1]), None)  # (H, W, 2)
             for i in range(x.shape[0])]
    t = torch.from_numpy(np.ascontiguousarray(np.stack(flows).transpose(0, 3, 1, 2)))
    t = t.to(device=x.device, dtype=x.dtype)
    if fold > 1:  # one model-grid step spans `fold` luma pixels
        t = F.avg_pool2d(t, fold) / fold
    return t


def estimate_flow(
    source: str,
    model: VideoCodecModel,
    x: torch.Tensor,
    reference: torch.Tensor,
    dis_preset: str,
) -> torch.Tensor | None:
    """The flow to code for ``source``; None means code no motion at all."""
    if source == "learned":
        return model.pframe.flow(x, reference)
    if source == "dis":
        return dis_flow(x, reference, model.representation, dis_preset)
    if source == "zero":
        return None
    raise InputError(f"unknown motion source {source!r}")
