"""Where decoding time goes: exclusive wall time per decoder stage, per frame.

Used by ``bench/bench_sequence.py --decode-split``. The stages are found by
name (module attributes and submodules) and timed from the outside, by
wrapping them for the duration of one run, so the decoder itself carries no
timing code and the same harness measures an older checkout of the decoder
(put it first on PYTHONPATH) for before/after comparisons. A name that is
missing is an error, not a silent zero: a refactor of the decode path must
update :data:`FUNCTION_STAGES` / :data:`MODULE_STAGES`.

Times are exclusive: while a stage runs inside another (the y tables inside
y entropy decoding, warping inside a P-frame), the outer one's clock stops,
so the stages of a frame add up to its decode time; what no stage claims is
``other`` (gain scaling, clamping, packet parsing, glue). A stage that runs in
another thread (the y tables, built ahead of the ANS decoder by
dvc_edic.entropy.ans) overlaps the main thread's stages instead: its time is
summed over threads and reported apart (``overlapped``), and the main thread's
wait for it shows in the stage that waits (``entropy_y``).
"""

from __future__ import annotations

import functools
import importlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

# (module, attribute path, stage): functions and methods wrapped by name.
FUNCTION_STAGES: tuple[tuple[str, str, str], ...] = (
    ("dvc_edic.models.edic", "decode_z", "entropy_z"),
    ("dvc_edic.models.edic", "quantize_gmm", "gmm_quantize"),
    ("dvc_edic.entropy.coder", "mixture_frequencies", "gmm_tables"),
    ("dvc_edic.entropy.coder", "GmmEntropyCoder.decode", "entropy_y"),
    ("dvc_edic.models.pframe", "backward_warp", "warp"),
    ("dvc_edic.models.pframe", "warp_planes", "warp"),
    ("dvc_edic.models.pframe", "warp_planes_blocks", "warp"),
    ("dvc_edic.codec", "_Pipeline.round_frame", "frame_convert"),
    ("dvc_edic.codec", "_Pipeline.to_tensor", "frame_convert"),
    ("dvc_edic.packets", "decode_block_motion", "block_motion"),
    ("dvc_edic.dctcontext", "read_layer", "dct_layer"),
    ("dvc_edic.dctlayer", "read_layer", "dct_layer"),
    ("dvc_edic.dctlayer", "apply_layer", "dct_layer"),
    ("dvc_edic.codec", "read_section", "loop_filter"),
    ("dvc_edic.codec", "apply_filters", "loop_filter"),
)
# Stages of newer decoders only: where an older checkout lacks the name, it is skipped
# (that decoder has no such work), so the same harness still measures it.
NEWER_FUNCTION_STAGES: tuple[tuple[str, str, str], ...] = (
    ("dvc_edic.entropy.coder", "window_rows", "gmm_tables"),  # format 12's y rows
)
# (class, submodule attribute, stage): every instance's submodule is timed by hooks.
MODULE_STAGES: tuple[tuple[str, str, str, str], ...] = (
    ("dvc_edic.models.edic", "EDIC", "h_s", "hyper_synthesis"),
    ("dvc_edic.models.edic", "EDIC", "g_s", "synthesis"),
    ("dvc_edic.models.edic", "EDIC", "enhance", "enhancement"),
    ("dvc_edic.models.pframe", "PFrameCodec", "mc", "mc"),
)
OTHER = "other"
IO_STAGES = ("io_read", "io_write", "frame_convert")
# Report order: entropy, tables, networks, then I/O.
STAGES = (
    "entropy_z", "entropy_y", "gmm_quantize", "gmm_tables", "hyper_synthesis", "synthesis",
    "enhancement", "block_motion", "warp", "mc", "dct_layer", "loop_filter", *IO_STAGES,
    OTHER,
)  # fmt: skip


class StageTimer:
    """Exclusive wall time per stage; a stage entered inside another pauses it."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.overlapped: dict[str, float] = {}  # stages run by other threads, summed
        self._stack: list[str] = []
        self._last = time.perf_counter()
        self._lock = threading.Lock()

    def _charge(self, now: float) -> None:
        if self._stack:
            top = self._stack[-1]
            self.totals[top] = self.totals.get(top, 0.0) + now - self._last
        self._last = now

    def enter(self, stage: str) -> None:
        self._charge(time.perf_counter())
        self._stack.append(stage)

    def exit(self) -> None:
        self._charge(time.perf_counter())
        self._stack.pop()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.enter(name)
        try:
            yield
        finally:
            self.exit()

    def add_overlapped(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.overlapped[stage] = self.overlapped.get(stage, 0.0) + seconds

    def take(self) -> tuple[dict[str, float], dict[str, float]]:
        """The main thread's totals and the other threads' so far, reset to zero (one
        frame's split)."""
        with self._lock:
            out, side = self.totals, self.overlapped
            self.totals, self.overlapped = {}, {}
        return out, side


def _resolve(module: str, path: str) -> tuple[Any, str, Any]:
    owner: Any = importlib.import_module(module)
    *parents, name = path.split(".")
    for p in parents:
        owner = getattr(owner, p)
    if not hasattr(owner, name):
        raise AttributeError(f"decode stage {module}.{path} not found: update FUNCTION_STAGES")
    return owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)


def _timed(fn: Callable[..., Any], timer: StageTimer, stage: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timer.add_overlapped(stage, time.perf_counter() - start)
        timer.enter(stage)
        try:
            return fn(*args, **kwargs)
        finally:
            timer.exit()

    return wrapper


@contextmanager
def instrument(model: nn.Module, timer: StageTimer) -> Iterator[StageTimer]:
    """Time ``model``'s decoder stages into ``timer`` until the block ends."""
    undo: list[Callable[[], None]] = []
    try:
        newer = [(m, p, s) for m, p, s in NEWER_FUNCTION_STAGES
                 if hasattr(importlib.import_module(m), p)]  # fmt: skip
        for module, path, stage in (*FUNCTION_STAGES, *newer):
            owner, name, original = _resolve(module, path)
            wrapped = (
                staticmethod(_timed(original.__func__, timer, stage))
                if isinstance(original, staticmethod)
                else _timed(original, timer, stage)
            )
            setattr(owner, name, wrapped)
            undo.append(functools.partial(setattr, owner, name, original))
        for module, cls_name, attr, stage in MODULE_STAGES:
            cls = getattr(importlib.import_module(module), cls_name)
            for m in model.modules():
                if not isinstance(m, cls):
                    continue
                sub = getattr(m, attr)
                if sub is None:  # e.g. a coder without enhancement
                    continue
                pre = sub.register_forward_pre_hook(lambda *_, s=stage: timer.enter(s))
                post = sub.register_forward_hook(lambda *_: timer.exit())
                undo += [pre.remove, post.remove]
        yield timer
    finally:
        for fn in reversed(undo):
            fn()


def split_ms(totals: dict[str, float], wall: float) -> dict[str, float]:
    """One frame's stages in milliseconds, in :data:`STAGES` order; ``other`` is the rest."""
    out = {s: round(1000 * totals.get(s, 0.0), 1) for s in STAGES if s != OTHER}
    unknown = set(totals) - set(STAGES)
    if unknown:
        raise KeyError(f"unreported stages {sorted(unknown)}")
    out[OTHER] = round(1000 * (wall - sum(totals.values())), 1)
    return out
