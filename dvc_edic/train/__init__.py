"""Training of the whole codec from scratch, in stages (configs/train/*.yaml).

``python -m dvc_edic.train configs/train/<stage>.yaml [--resume [CKPT]]``; the same
command runs under ``torchrun --nproc_per_node N`` with DistributedDataParallel.
``python -m dvc_edic.train.campaign --hours H`` runs the stages as a time-budgeted
campaign over many sessions. See docs/training.md for the schedule and the time each
stage takes.
"""

from __future__ import annotations

from dvc_edic.train.checkpoint import CHECKPOINT_NAME, checkpoint_path, load_checkpoint
from dvc_edic.train.config import TASKS, load_train_config, normalise_config, total_steps
from dvc_edic.train.loop import TrainingDiverged, TrainResult, train
from dvc_edic.train.losses import RateDistortion, interpolate_ladder

__all__ = [
    "CHECKPOINT_NAME",
    "TASKS",
    "RateDistortion",
    "TrainResult",
    "TrainingDiverged",
    "checkpoint_path",
    "interpolate_ladder",
    "load_checkpoint",
    "load_train_config",
    "normalise_config",
    "total_steps",
    "train",
]
