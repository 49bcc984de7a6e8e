"""Chunks of numpy work on the cores torch may use, for the entropy stage of decoding.

The decoder's networks use every core torch is allowed, but the entropy stage
between them (quantising the mixture parameters, building frequency tables)
is numpy, which runs on one core. Its work splits into chunks of elements
that depend on nothing but their own inputs, and numpy releases the GIL in
its loops, so Python threads run the chunks side by side. Results are
integers computed by the same operations whatever thread runs them, so the
thread count changes no bit.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")


def chunks(count: int, step: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive chunks of ``step`` elements covering ``count``."""
    return [(start, min(start + step, count)) for start in range(0, count, step)]


def threads() -> int:
    """How many threads the entropy stage may use: as many as torch's networks, and no
    more than the cores this process may run on (on one core, threads only add
    switching)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(torch.get_num_threads(), cores or 1))


def in_order(work: Callable[[int, int], T], spans: Sequence[tuple[int, int]]) -> Iterator[T]:
    """``work(start, stop)`` of each span, yielded in order, computed ahead by a pool.

    The caller consumes the results (the ANS coder, say) while the pool works;
    at most one span per pool thread is in flight beyond the one being
    consumed, so memory stays bounded. With one thread allowed (``--threads
    1``), everything runs in the caller's thread.
    """
    workers = min(threads(), len(spans) - 1) if threads() > 1 else 0
    if workers < 1:
        for start, stop in spans:
            yield work(start, stop)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="entropy") as pool:
        pending: deque[Future[T]] = deque()
        try:
            for start, stop in spans:
                pending.append(pool.submit(work, start, stop))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def run(work: Callable[[int, int], None], count: int, step: int) -> None:
    """``work(start, stop)`` over ``count`` elements in spans of ``step``, in parallel."""
    for _ in in_order(work, chunks(count, step)):
        pass
