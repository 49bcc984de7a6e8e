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

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from dvc_edic.blockmotion import (
    MAX_VECTOR,
    BlockMotion,
    best_scale,
    field_bits,
    grid_of,
    predictors,
    residual_bits,
    scale_index,
)
from dvc_edic.encoder.motion import dis_flow
from dvc_edic.encoder.settings import BlockSearchSettings
from dvc_edic.representation import join_planes, split_planes, warp_planes_blocks

# The eight neighbours of a vector, for one step of the descent.
_NEIGHBOURS = ((-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1))


class _Plane:
    """One plane of the reference as the decoder's plain warp samples it, with the frame's
    plane to price predictions against. Block fields are spread over ``scale`` x ``scale``
    pixels per model-grid sample (2 for yuv420's luma). Everything per pixel that does not
    depend on the field (the base grid, the frame padded to whole blocks, the mask of the
    frame's own pixels) is made once, so a trial costs one add, one grid_sample and one
    pooling."""

    def __init__(self, reference: torch.Tensor, x: torch.Tensor, own: tuple[int, int],
                 scale: int, block_log2: int, grid: tuple[int, int]) -> None:
        self.reference, self.scale = reference, scale
        self.side = (1 << block_log2) * scale
        rows, cols = grid
        height, width = reference.shape[-2:]
        padded = (rows * self.side, cols * self.side)
        # grid_sample's coordinates (align_corners: -1 and 1 are the edge pixels' centres);
        # positions past the plane are clamped (border) and masked out
        self.unit = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)],
                                 dtype=x.dtype)
        ys, xs = torch.meshgrid(torch.arange(padded[0], dtype=x.dtype),
                                torch.arange(padded[1], dtype=x.dtype), indexing="ij")
        base = torch.stack([xs, ys], dim=-1) * self.unit - 1.0
        self.base = base.view(rows, self.side, cols, self.side, 2)
        pad = (0, padded[1] - width, 0, padded[0] - height)
        self.x = F.pad(x, pad)
        mask = torch.zeros(padded, dtype=x.dtype)
        mask[: own[0] * scale, : own[1] * scale] = 1.0
        self.mask = mask

    def predict(self, motion: BlockMotion) -> torch.Tensor:
        """The warped plane over whole blocks (past the plane's edge: clamped samples)."""
        step = self.unit * (self.scale / (1 << motion.precision_log2))
        offsets = torch.from_numpy(motion.vectors).to(self.x.dtype).permute(1, 2, 0) * step
        grid = (self.base + offsets[:, None, :, None]).flatten(0, 1).flatten(1, 2)
        return F.grid_sample(self.reference, grid[None], mode="bilinear",
                             padding_mode="border", align_corners=True)

    def sse(self, motion: BlockMotion) -> torch.Tensor:
        err = (self.predict(motion) - self.x).square().sum(dim=1)[0] * self.mask
        return F.avg_pool2d(err[None, None], self.side, divisor_override=1)[0, 0]


class _Field:
    """Per-block prediction errors of candidate fields against one frame."""

    def __init__(self, x: torch.Tensor, reference: torch.Tensor, size: tuple[int, int],
                 representation: str, block_log2: int, precision_log2: int) -> None:
        self.block_log2, self.precision_log2 = block_log2, precision_log2
        self.rows, self.cols = grid_of(tuple(x.shape[-2:]), block_log2)
        self.shape, self.representation = x.shape, representation
        # the planes as the decoder's plain warp samples them (representation.warp_planes);
        # only the frame's own samples count: padding the model needs is not what the
        # viewer sees
        grid = (self.rows, self.cols)
        self.planes = [
            _Plane(ref_plane, x_plane, size, scale, block_log2, grid)
            for (ref_plane, scale), (x_plane, _) in zip(
                split_planes(reference, representation), split_planes(x, representation),
                strict=True)
        ]

    def _motion(self, vectors: np.ndarray) -> BlockMotion:
        return BlockMotion(vectors, self.block_log2, self.precision_log2)

    def predict(self, vectors: np.ndarray) -> torch.Tensor:
        """The reference warped by a trial field, as the model tensor. The search prices
        hundreds of fields a frame, so it uses grid_sample, faster here than the decoder's
        exact warp (representation.warp_planes: the same bilinear sampling and border
        clamping, equal to about 1e-5); the coded candidate is then predicted exactly."""
        motion = self._motion(vectors)
        planes = [p.predict(motion)[..., : self.shape[-2] * p.scale, : self.shape[-1] * p.scale]
                  for p in self.planes]
        return join_planes(planes, self.representation)

    def sse(self, vectors: np.ndarray) -> np.ndarray:
        """(rows, cols) squared error of each block's prediction, over all samples."""
        motion = self._motion(vectors)
        return sum(p.sse(motion) for p in self.planes).double().numpy()


class _KernelField:
    """Per-block prediction errors (what ``_refine`` asks of a field, as ``_Field.sse``)
    priced with the decoder's own block warp and a given kernel
    (representation.warp_planes_blocks): for re-searching a field that takes the cubic
    kernel, whose best phases differ from bilinear's."""

    def __init__(self, x: torch.Tensor, reference: torch.Tensor, size: tuple[int, int],
                 representation: str, block_log2: int, precision_log2: int,
                 kernel: str) -> None:
        self.block_log2, self.precision_log2 = block_log2, precision_log2
        self.rows, self.cols = grid_of(tuple(x.shape[-2:]), block_log2)
        self.x, self.reference, self.representation = x, reference, representation
        self.kernel, self.side = kernel, 1 << block_log2
        padded = (self.rows * self.side, self.cols * self.side)
        self.own = torch.zeros(padded, dtype=x.dtype)
        self.own[: size[0], : size[1]] = 1.0
        self.pad = (0, padded[1] - x.shape[-1], 0, padded[0] - x.shape[-2])

    def sse(self, vectors: np.ndarray) -> np.ndarray:
        warped = warp_planes_blocks(self.reference, torch.from_numpy(vectors), self.side,
                                    self.precision_log2, self.representation, self.kernel)
        err = F.pad((warped - self.x).square().sum(dim=1)[0], self.pad) * self.own
        return F.avg_pool2d(err[None, None], self.side, divisor_override=1)[0, 0].double().numpy()


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


def _refine(field: _Field | _KernelField, start: np.ndarray, extra: list[np.ndarray],
            per_sse: float, settings: BlockSearchSettings) -> SearchedField:
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
    bits = field_bits(current)
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
    ``reference``, one per block size of ``settings``, coarsest first, and again at
    each of its extra precisions.

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
    for precision in (settings.precision_log2, *settings.extra_precisions):
        at = replace(settings, precision_log2=precision, extra_precisions=())
        fields: list[SearchedField] = []
        for log2 in sorted(settings.block_log2, reverse=True):
            field = _Field(x, reference, size, representation, log2, precision)
            means = block_means(flow, log2, precision)[0].numpy().astype(np.int32)
            if fields:
                coarse = fields[-1].motion
                start = _finer(coarse.vectors, coarse.block_log2 - log2, (field.rows, field.cols))
                fields.append(_refine(field, start, [means], per_sse, at))
            else:
                fields.append(_refine(field, means, [], per_sse, at))
        out += fields
    return out


def refine_for_kernel(x: torch.Tensor, reference: torch.Tensor, size: tuple[int, int],
                      representation: str, motion: BlockMotion, settings: BlockSearchSettings,
                      weight: float) -> BlockMotion:
    """``motion`` (a field that took the cubic kernel) descended again for
    ``settings.kernel_rounds`` rounds, priced with its own kernel: the search found its
    vectors for the bilinear warp, and a sharper kernel moves the best phases (on the dev
    set 2-3 % lower motion cost on carphone's and bikes' cubic fields)."""
    if settings.kernel_rounds < 1:
        return motion
    per_sse = settings.distortion_weight * weight / (x.shape[1] * size[0] * size[1])
    field = _KernelField(x, reference, size, representation, motion.block_log2,
                         motion.precision_log2, motion.kernel)
    at = replace(settings, precision_log2=motion.precision_log2, extra_precisions=(),
                 rounds=settings.kernel_rounds)
    again = _refine(field, motion.vectors, [], per_sse, at).motion
    return replace(again, cubic=motion.cubic)
