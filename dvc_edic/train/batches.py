"""An endless, resumable stream of training batches, sharded across DDP ranks.

The project's datasets make each item a pure function of (seed, epoch, index)
(see dvc_edic.data.sampling), so a position in the stream is just
(epoch, batches consumed in that epoch). Resuming rebuilds the epoch's order
with DistributedSampler and skips the consumed indices without loading them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, Subset
from torch.utils.data.distributed import DistributedSampler

from dvc_edic.errors import InputError


def set_epoch(dataset: Dataset, epoch: int) -> None:
    """Propagate the epoch through the wrappers torch puts around datasets."""
    if isinstance(dataset, ConcatDataset):
        for part in dataset.datasets:
            set_epoch(part, epoch)
    elif isinstance(dataset, (Subset, ClipItems)):
        set_epoch(dataset.dataset, epoch)
    elif hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


def describe(dataset: Dataset) -> list[str]:
    """The `.description` of every dataset inside the wrappers (for logs and weights)."""
    if isinstance(dataset, ConcatDataset):
        return [d for part in dataset.datasets for d in describe(part)]
    if isinstance(dataset, (Subset, ClipItems)):
        return describe(dataset.dataset)
    return [str(getattr(dataset, "description", type(dataset).__name__))]


def canonical_item(item: Any) -> dict[str, torch.Tensor]:
    """Every item as {"frames": (n,C,h,w)[, "flow": (n-1,2,h,w), "valid": (n-1,1,h,w)]}.

    Image items (C, h, w) become one-frame clips, so image folders and video
    frames can be concatenated into one stage-1 dataset and batched together.
    """
    if isinstance(item, dict):
        out = {"frames": torch.as_tensor(item["frames"])}
        for key in ("flow", "valid"):  # ground-truth motion and where it holds
            if item.get(key) is not None:
                out[key] = torch.as_tensor(item[key], dtype=torch.float32)
    else:
        out = {"frames": torch.as_tensor(item)}
    frames = out["frames"]
    if frames.dim() == 3:
        out["frames"] = frames.unsqueeze(0)
    elif frames.dim() != 4:
        raise InputError(f"dataset items must be (C,h,w) or (n,C,h,w), got {tuple(frames.shape)}")
    return out


class ClipItems(Dataset):
    """A dataset view with canonical items."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return canonical_item(self.dataset[index])


class _SkipSampler(Sampler[int]):
    """This rank's share of one epoch, minus the first ``skip`` indices."""

    def __init__(self, shard: DistributedSampler, skip: int) -> None:
        self.shard = shard
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        indices = list(iter(self.shard))
        return iter(indices[self.skip:])

    def __len__(self) -> int:
        return max(0, len(self.shard) - self.skip)


class BatchStream:
    """next() forever; state() / the constructor's epoch and offset resume it exactly."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        num_workers: int,
        seed: int,
        rank: int,
        world_size: int,
        shuffle: bool = True,
        epoch: int = 0,
        offset: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.pin_memory = pin_memory
        self.epoch = epoch
        self.offset = offset  # batches already taken from this epoch
        per_rank = -(-len(dataset) // world_size)  # type: ignore[arg-type]
        self.batches_per_epoch = per_rank // batch_size
        if self.batches_per_epoch < 1:
            raise InputError(
                f"the dataset has {len(dataset)} items: fewer than one batch of {batch_size} "  # type: ignore[arg-type]
                f"per process ({world_size} process(es)); lower batch_size or add data"
            )
        self._iter: Iterator[Any] | None = None

    def _start_epoch(self) -> None:
        if self.offset >= self.batches_per_epoch:
            self.epoch += 1
            self.offset = 0
        set_epoch(self.dataset, self.epoch)
        shard = DistributedSampler(
            range(len(self.dataset)),  # type: ignore[arg-type]
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=self.shuffle,
            seed=self.seed,
            drop_last=False,
        )
        shard.set_epoch(self.epoch)
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=_SkipSampler(shard, self.offset * self.batch_size),
            num_workers=self.num_workers,
            drop_last=True,
            pin_memory=self.pin_memory,
            # The loader draws worker seeds from this, not from the global RNG
            # that the model's quantization noise uses.
            generator=torch.Generator().manual_seed(self.seed + self.epoch),
        )
        self._iter = iter(loader)

    def next(self) -> dict[str, torch.Tensor]:
        if self._iter is None or self.offset >= self.batches_per_epoch:
            self._start_epoch()
        assert self._iter is not None
        batch = next(self._iter)
        self.offset += 1
        return batch

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}


def take(dataset: Dataset, count: int) -> list[dict[str, torch.Tensor]]:
    """The first ``count`` items (epoch 0), for validation."""
    set_epoch(dataset, 0)
    n = min(count, len(dataset))  # type: ignore[arg-type]
    return [dataset[i] for i in range(n)]


def split_holdout(dataset: Dataset, holdout: int) -> tuple[Dataset, Dataset | None]:
    """The last ``holdout`` items set aside for validation, the rest for training."""
    n = len(dataset)  # type: ignore[arg-type]
    if holdout <= 0:
        return dataset, None
    if holdout >= n:
        raise InputError(f"data.holdout {holdout} leaves nothing to train on ({n} items)")
    return Subset(dataset, range(n - holdout)), Subset(dataset, range(n - holdout, n))
