"""The encoder's block motion search: DIS flow averaged per block, then refined by a
rate-constrained descent, as x264's motion search refines its predicted vectors;
block sizes coarse to fine, each starting from the coarser field, each priced.

Each block's cost is ``bits(vector - predictor) + w * SSE(prediction)`` with ``w``
the mode decision's weight of distortion (scaled by ``distortion_weight``): the
prediction's error is what the residual then has to pay for. Backward warping
reads the reference at ``p + flow(p)`` using the flow at ``p`` alone, so one warp
of a field tells every block's error for that field: trying one offset for all
blocks costs one warp, however many blocks there are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dvc_edic.blockmotion import (
    MAX_VECTOR,
    BlockMotion,
    best_scale,
    grid_of,
    predictors,
    residual_bits,
    scale_index,
)
from dvc_edic.encoder.motion import dis_flow
from dvc_edic.encoder.settings import BlockSearchSettings
from dvc_edic.representation import luma_fold

# The eight neighbours of a vector, for one step of the descent.
_NEIGHBOURS = ((-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1))


class _Sampler:
    """grid_sample over one plane, with positions in that plane's pixels."""

    def __init__(self, plane: torch.Tensor) -> None:
        self.plane = plane
        height, width = plane.shape[-2:]
        # grid_sample's coordinates (align_corners: -1 and 1 are the edge samples' centres)
        self.unit = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)],
                                 dtype=plane.dtype)
        ys, xs = torch.meshgrid(torch.arange(height, dtype=plane.dtype),
                                torch.arange(width, dtype=plane.dtype), indexing="ij")
        self.base = torch.stack([xs, ys], dim=-1)[None] * self.unit - 1.0

    def __call__(self, flow: torch.Tensor) -> torch.Tensor:
        grid = self.base + flow.permute(0, 2, 3, 1) * self.unit
        return F.grid_sample(self.plane, grid, mode="bilinear", padding_mode="border",
                             align_corners=True)


class _Field:
    """Per-block prediction errors of candidate fields against one frame."""

    def __init__(self, x: torch.Tensor, reference: torch.Tensor, size: tuple[int, int],
                 representation: str, block_log2: int, precision_log2: int) -> None:
        self.x = x
        self.block_log2, self.precision_log2 = block_log2, precision_log2
        self.rows, self.cols = grid_of(tuple(x.shape[-2:]), block_log2)
        # the frame's own samples: padding the model needs is not what the viewer sees
        mask = torch.zeros(x.shape[-2:], dtype=x.dtype)
        mask[: size[0], : size[1]] = 1.0
        self.mask = mask
        # the planes as the decoder's plain warp samples them (representation.warp_planes)
        self.fold = luma_fold(representation)
        if self.fold > 1:
            luma_channels = self.fold * self.fold
            self.samplers = (_Sampler(F.pixel_shuffle(reference[:, :luma_channels], self.fold)),
                             _Sampler(reference[:, luma_channels:]))
        else:
            self.samplers = (_Sampler(reference),)

    def predict(self, vectors: np.ndarray) -> torch.Tensor:
        """The reference warped by a trial field. The search prices hundreds of fields a
        frame, so it uses grid_sample, 5x faster here than the decoder's exact warp
        (representation.warp_planes: the same bilinear sampling and border clamping,
        equal to about 1e-5); the coded candidate is then predicted by the exact warp."""
        flow = BlockMotion(vectors, self.block_log2, self.precision_log2).to_flow(self.x)
        if self.fold == 1:
            return self.samplers[0](flow)
        luma_sampler, chroma_sampler = self.samplers
        fine = flow.repeat_interleave(self.fold, dim=2).repeat_interleave(self.fold, dim=3)
        luma = F.pixel_unshuffle(luma_sampler(fine * self.fold), self.fold)
        return torch.cat((luma, chroma_sampler(flow)), dim=1)

    def sse(self, vectors: np.ndarray) -> np.ndarray:
        """(rows, cols) squared error of each block's prediction, over all channels."""
        err = (self.predict(vectors) - self.x).square().sum(dim=1)[0] * self.mask
        side = 1 << self.block_log2
        height, width = err.shape
        err = F.pad(err, (0, self.cols * side - width, 0, self.rows * side - height))
        pooled = F.avg_pool2d(err[None, None], side, divisor_override=1)[0, 0]
        return pooled.double().numpy()


def _clamp(vectors: np.ndarray) -> np.ndarray:
    return np.clip(vectors, -MAX_VECTOR, MAX_VECTOR).astype(np.int32)


def block_means(flow: torch.Tensor, block_log2: int, precision_log2: int) -> torch.Tensor:
    """(B, 2, rows, cols): each block's mean vector of a dense flow, rounded to the precision
    (in its units). The search starts from it; training predicts with it."""
    side = 1 << block_log2
    rows, cols = grid_of(tuple(flow.shape[-2:]), block_log2)
    height, width = flow.shape[-2:]
    flow = F.pad(flow, (0, cols * side - width, 0, rows * side - height), mode="replicate")
    mean = F.avg_pool2d(flow, side) * (1 << precision_log2)
    return mean.round().clamp(-MAX_VECTOR, MAX_VECTOR)


def block_flow(x: torch.Tensor, reference: torch.Tensor, representation: str,
               settings: BlockSearchSettings) -> torch.Tensor:
    """A batch's block motion as the search starts it (DIS averaged per block, the finest
    block size), dense: what training codes residuals against (loss.flow_source: block)."""
    log2, precision = min(settings.block_log2), settings.precision_log2
    vectors = block_means(dis_flow(x, reference, representation, settings.dis_preset), log2,
                          precision)
    side = 1 << log2
    dense = vectors.repeat_interleave(side, 2).repeat_interleave(side, 3) / (1 << precision)
    return dense[..., : x.shape[-2], : x.shape[-1]]


@dataclass(frozen=True)
class SearchedField:
    """One block size's field and its cost: bits of the vectors + weighted SSE of the plain
    warp, the J the frame would have if it skipped its residual (x264's motion cost)."""

    motion: BlockMotion
    cost: float


def _neighbours(v: np.ndarray) -> list[np.ndarray]:
    """Each block's left, top, right and bottom neighbour's vector (edges repeat): merge
    trials, which let a region take one vector from any side, not only the median's."""
    return [
        np.concatenate([v[:, :, :1], v[:, :, :-1]], axis=2),
        np.concatenate([v[:, :1], v[:, :-1]], axis=1),
        np.concatenate([v[:, :, 1:], v[:, :, -1:]], axis=2),
        np.concatenate([v[:, 1:], v[:, -1:]], axis=1),
    ]


def _refine(field: _Field, start: np.ndarray, extra: list[np.ndarray], per_sse: float,
            settings: BlockSearchSettings) -> SearchedField:
    """A rate-constrained descent from ``start`` (``extra``: whole fields also tried per block
    in the first step).

    All rounds but the last price residuals with a fixed, narrow Laplace
    (``search_scale``): with the field's own scale, a noisy start field makes every
    residual cost about the same, and the descent never smooths it. The last round
    prices them with the table the coder will pick.
    """
    current = start
    error = field.sse(current)
    zero = np.zeros_like(current)
    steps = [1 << k for k in range(settings.precision_log2, -1, -1)]  # one sample ... finest
    search_scale = scale_index(settings.search_scale) if settings.search_scale > 0 else None
    for round_ in range(settings.rounds):
        last = round_ == settings.rounds - 1
        for step in steps:
            pred = predictors(current)
            if search_scale is None or last:
                scales = [best_scale(current[c] - pred[c])[0] for c in range(2)]
            else:
                scales = [search_scale, search_scale]

            def cost(v: np.ndarray, sse: np.ndarray, pred=pred, scales=scales) -> np.ndarray:
                bits = sum(residual_bits(v[c] - pred[c], scales[c]) for c in range(2))
                return per_sse * sse + bits

            best, best_cost = current, cost(current, error)
            trials = [_clamp(current + np.array([dx * step, dy * step], dtype=np.int64)
                             [:, None, None]) for dx, dy in _NEIGHBOURS]
            trials += [pred, zero, *_neighbours(current), *extra]
            extra = []
            for trial in trials:
                trial_error = field.sse(trial)
                trial_cost = cost(trial, trial_error)
                better = trial_cost < best_cost
                best = np.where(better[None], trial, best)
                error = np.where(better, trial_error, error)
                best_cost = np.minimum(trial_cost, best_cost)
            current = best.astype(np.int32)
    d = current.astype(np.int64) - predictors(current)
    bits = sum(best_scale(d[c])[1] for c in range(2))
    motion = BlockMotion(current, field.block_log2, field.precision_log2)
    return SearchedField(motion, float(per_sse * error.sum() + bits))


def _finer(vectors: np.ndarray, factor_log2: int, grid: tuple[int, int]) -> np.ndarray:
    """A coarse field on a finer block grid: each coarse vector on the blocks it covers."""
    f = 1 << factor_log2
    fine = vectors.repeat(f, axis=1).repeat(f, axis=2)
    return np.ascontiguousarray(fine[:, : grid[0], : grid[1]])


def search_block_motion(
    x: torch.Tensor,
    reference: torch.Tensor,
    size: tuple[int, int],
    representation: str,
    settings: BlockSearchSettings,
    weight: float,
) -> list[SearchedField]:
    """The block fields for ``x`` (padded model tensor, own samples ``size``) from
    ``reference``, one per block size of ``settings``, coarsest first.

    Coarse to fine: each size starts from the next coarser size's field, with the
    DIS flow's block means as a first trial. Large blocks cost few bits and average
    the flow over more samples, so they are robust where DIS is noisy; small ones
    follow motion boundaries. Which wins depends on the content and the rate (on the
    dev set: 64x64 luma on bikes at low rates, 16x16 on walk), so each is priced.

    ``weight``: the mode decision's bits per unit of mean squared error over the frame.
    """
    per_sse = settings.distortion_weight * weight / (x.shape[1] * size[0] * size[1])
    flow = dis_flow(x, reference, representation, settings.dis_preset)
    out: list[SearchedField] = []
    for log2 in sorted(settings.block_log2, reverse=True):
        field = _Field(x, reference, size, representation, log2, settings.precision_log2)
        means = block_means(flow, log2, settings.precision_log2)[0].numpy().astype(np.int32)
        if out:
            coarse = out[-1].motion
            start = _finer(coarse.vectors, coarse.block_log2 - log2, (field.rows, field.cols))
            out.append(_refine(field, start, [means], per_sse, settings))
        else:
            out.append(_refine(field, means, [], per_sse, settings))
    return out
