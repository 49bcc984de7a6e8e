"""What every dataset here shares: epochs, seeds, length, and a description for logs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from dvc_edic.data.sampling import check_count, check_seed, item_rng

# How many file names a description lists before summarising the rest.
DESCRIBED_NAMES = 4


def describe_names(paths: Sequence[Path]) -> str:
    """ "a.mkv, b.mkv, ... (3 more)": enough for a log line to say what the data was."""
    names = [p.name for p in paths]
    text = ", ".join(names[:DESCRIBED_NAMES])
    if len(names) > DESCRIBED_NAMES:
        text += f", ... ({len(names) - DESCRIBED_NAMES} more)"
    return text


def describe_clip_settings(
    frames: int, crop: tuple[int, int] | None, stride: int, flips: bool, representation: str
) -> str:
    """The sampling settings every clip dataset reports in its description."""
    size = "whole frames" if crop is None else f"crop {crop[1]}x{crop[0]}"
    return (
        f"{frames} frames/item, {size}, temporal stride <= {stride}, "
        f"flips {'on' if flips else 'off'}, {representation}"
    )


class RandomCropDataset(Dataset):
    """Base of the datasets: deterministic items given (seed, epoch, index).

    With DataLoader workers, call set_epoch() before the loader's iterator is
    created (workers copy the dataset when they start); persistent workers keep
    the epoch they started with.
    """

    #: True for data the codec never meets in the wild; logs and exported weights say so.
    synthetic = False

    def __init__(self, *, seed: int, samples_per_epoch: int | None, where: str) -> None:
        self.seed = check_seed(seed, where)
        self.samples_per_epoch = (
            None
            if samples_per_epoch is None
            else check_count(samples_per_epoch, "samples_per_epoch", where)
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops, strides and flips items get."""
        self.epoch = check_count(epoch, "epoch", type(self).__name__, minimum=0)

    def natural_length(self) -> int:
        """Items per epoch when samples_per_epoch is not given."""
        raise NotImplementedError

    def __len__(self) -> int:
        if self.samples_per_epoch is not None:
            return self.samples_per_epoch
        return self.natural_length()

    def rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < len(self):
            name = type(self).__name__
            raise IndexError(f"{name}: index {index} out of range 0..{len(self) - 1}")
        return item_rng(self.seed, self.epoch, index)

    @property
    def description(self) -> str:
        """One line for training logs and weights metadata: what the data is."""
        raise NotImplementedError
