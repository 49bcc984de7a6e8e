"""torchrun support: the same command trains on one process or N.

When torchrun sets WORLD_SIZE > 1, every process joins one process group
(nccl when it has a GPU, gloo on CPU), the model is wrapped in
DistributedDataParallel, each rank reads its own shard of the data, and only
rank 0 writes logs and checkpoints. Decisions that must be the same on every
rank (stop now? save now?) are agreed with one small all-reduce per step.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from dvc_edic.errors import InputError


@dataclass(frozen=True)
class Context:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False  # this run created the process group (and so destroys it)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise InputError(f"environment variable {name}={value!r} is not an integer") from exc


def pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError("device: cuda was requested but torch sees no CUDA device")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def setup(device: str, timeout_minutes: float) -> Context:
    """Join the process group torchrun describes, or run as a single process."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = pick_device(device, local_rank)
    owns = False
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(
            backend="nccl" if dev.type == "cuda" else "gloo",
            timeout=_dt.timedelta(minutes=timeout_minutes),
        )
        owns = True
    return Context(rank=rank, local_rank=local_rank, world_size=world, device=dev,
                   owns_group=owns)


def teardown(ctx: Context) -> None:
    """Leave the process group if this run joined it (a caller's own group is kept)."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def agree_any(ctx: Context, *flags: bool) -> list[bool]:
    """For each flag: is it set on any rank? (one all-reduce for all of them)."""
    if not ctx.distributed:
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def gather(ctx: Context, obj: Any) -> list[Any]:
    """Every rank's ``obj`` (e.g. RNG states), on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()
