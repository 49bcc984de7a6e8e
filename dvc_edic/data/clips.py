"""Random crops of n consecutive frames from any folder of video files.

Items are (frames, C, h, w) float32 tensors in the model representation.
Decoded frames live in a bounded LRU cache (cache_frames entries per process),
and at most max_open_files files are open per process, so a folder of any size
is read piece by piece, never held in memory. Raw .yuv and plain .y4m files
are read at the frame's offset; containers (.mkv, .mp4 ...) are decoded
forward, so with many long containers and a small cache it pays to convert
them to .y4m/.yuv first (data/prepare_raw.py).
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvc_edic.data.access import FrameSource, SeekCursor, ShortSourceError, StreamCursor
from dvc_edic.data.base import RandomCropDataset, describe_clip_settings, describe_names
from dvc_edic.data.cache import LruCache
from dvc_edic.data.convert import crop_frame, flip_frame, frame_to_model
from dvc_edic.data.sampling import (
    check_count,
    crop_origin,
    draw_flips,
    draw_stride,
    parse_crop,
)
from dvc_edic.data.sources import PathLike, drop_evaluation_sequences, resolve_sources
from dvc_edic.errors import InputError
from dvc_edic.io.frames import Frame
from dvc_edic.representation import representation_channels

# Decoded frames kept per process: 64 frames is ~200 MB at 1080p 8-bit, ~50 MB at 960x540.
DEFAULT_CACHE_FRAMES = 64
# Files held open per process (each holds a descriptor and, for containers, a decoder).
DEFAULT_MAX_OPEN_FILES = 8


class VideoClipDataset(RandomCropDataset):
    """Clips of `frames` frames, cropped to `crop` = (height, width) source pixels.

    Item `index` maps to one clip start (all starts of all files, in order) when
    samples_per_epoch is None; otherwise every item draws a start uniformly over
    all starts. Each item then draws a temporal stride in [1, max_temporal_stride]
    (capped so the clip fits), an even-aligned crop origin, and flips; all draws
    come from (seed, epoch, index). Sources smaller than the crop or shorter than
    `frames` are skipped with a warning; evaluation sequences (see sources.py)
    are skipped unless allow_eval_sequences is True.
    """

    def __init__(
        self,
        sources: Sequence[PathLike] | PathLike,
        *,
        frames: int,
        crop: tuple[int, int] | int | None,
        representation: str = "yuv420",
        max_temporal_stride: int = 1,
        flips: bool = True,
        seed: int = 0,
        cache_frames: int = DEFAULT_CACHE_FRAMES,
        width: int | None = None,
        height: int | None = None,
        bit_depth: int | None = None,
        max_frames: int | None = None,
        samples_per_epoch: int | None = None,
        exclude: Sequence[str] = (),
        allow_eval_sequences: bool = False,
        max_open_files: int = DEFAULT_MAX_OPEN_FILES,
    ) -> None:
        where = type(self).__name__
        super().__init__(seed=seed, samples_per_epoch=samples_per_epoch, where=where)
        self.frames = check_count(frames, "frames", where)
        self.crop = parse_crop(crop, where)
        representation_channels(representation)  # validates the name
        self.representation = representation
        self.max_temporal_stride = check_count(max_temporal_stride, "max_temporal_stride", where)
        self.flips = bool(flips)
        self.max_open_files = check_count(max_open_files, "max_open_files", where)

        files = resolve_sources(sources, kind="video", exclude=exclude)
        if not allow_eval_sequences:
            files = drop_evaluation_sequences(files, where)
        if not files:
            raise InputError(f"{where}: no video files found in {sources!r}")
        opened = [
            FrameSource(p, width=width, height=height, bit_depth=bit_depth, max_frames=max_frames)
            for p in files
        ]
        self.sources = self._usable(opened, where)
        self._count_starts()
        self._cache: LruCache[Frame] = LruCache(cache_frames)
        self._cursors: OrderedDict[int, SeekCursor | StreamCursor] = OrderedDict()
        self._pid = os.getpid()

    def _usable(self, opened: list[FrameSource], where: str) -> list[FrameSource]:
        kept, skipped = [], []
        for source in opened:
            info = source.info
            too_small = self.crop is not None and (
                self.crop[0] > info.height or self.crop[1] > info.width
            )
            if too_small or source.num_frames < self.frames:
                skipped.append(
                    f"{source.path.name} ({info.width}x{info.height}, {source.num_frames} frames)"
                )
            else:
                kept.append(source)
        if skipped:
            crop = "whole frames" if self.crop is None else f"{self.crop[1]}x{self.crop[0]} crops"
            warnings.warn(
                f"{where}: skipped {skipped}: too small for {crop} of {self.frames} frames",
                stacklevel=3,
            )
        if not kept:
            raise InputError(f"{where}: no source is large and long enough; skipped {skipped}")
        return kept

    def _count_starts(self) -> None:
        per_source = [s.num_frames - self.frames + 1 for s in self.sources]
        self._start_ends = np.cumsum(per_source)

    @property
    def files(self) -> list[Path]:
        return [s.path for s in self.sources]

    @property
    def num_starts(self) -> int:
        """Clip starts at stride 1 over all files: the default epoch length."""
        return int(self._start_ends[-1])

    def natural_length(self) -> int:
        return self.num_starts

    @property
    def description(self) -> str:
        total = sum(s.num_frames for s in self.sources)
        settings = describe_clip_settings(
            self.frames, self.crop, self.max_temporal_stride, self.flips, self.representation
        )
        return (
            f"video clips (real): {len(self.sources)} files [{describe_names(self.files)}], "
            f"{total} frames; {settings}"
        )

    # --- per-process state: open files and cache never travel to workers -------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cursors"] = OrderedDict()
        state["_cache"] = LruCache(self._cache.capacity)
        return state

    def _check_process(self) -> None:
        # A forked worker shares file offsets with its parent: it must open its own files.
        if os.getpid() != self._pid:
            self._cursors = OrderedDict()
            self._pid = os.getpid()

    def _cursor(self, source_index: int) -> SeekCursor | StreamCursor:
        cursor = self._cursors.get(source_index)
        if cursor is None:
            cursor = self.sources[source_index].open_cursor()
            self._cursors[source_index] = cursor
            while len(self._cursors) > self.max_open_files:
                _, oldest = self._cursors.popitem(last=False)
                oldest.close()
        self._cursors.move_to_end(source_index)
        return cursor

    def frame(self, source_index: int, frame_index: int) -> Frame:
        """Decoded frame `frame_index` of source `source_index`, through the cache."""
        self._check_process()
        key = (source_index, frame_index)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        cursor = self._cursor(source_index)

        def keep(position: int, passed: Frame) -> None:
            self._cache.put((source_index, position), passed)

        decoded = cursor.read(frame_index, keep)
        self._cache.put(key, decoded)
        return decoded

    @property
    def cache(self) -> LruCache[Frame]:
        return self._cache

    def close(self) -> None:
        """Close every open file (they reopen on demand)."""
        while self._cursors:
            _, cursor = self._cursors.popitem()
            cursor.close()

    # --- items ------------------------------------------------------------------------

    def locate(self, start: int) -> tuple[int, int]:
        """(source index, frame index) of global clip start `start`."""
        source_index = int(np.searchsorted(self._start_ends, start, side="right"))
        before = int(self._start_ends[source_index - 1]) if source_index else 0
        return source_index, start - before

    def __getitem__(self, index: int) -> torch.Tensor:
        try:
            return self._item(index)
        except ShortSourceError as short:
            # A container held fewer frames than packets: fix its count, draw again.
            self._shrink(short)
            return self._item(index)

    def _shrink(self, short: ShortSourceError) -> None:
        # The start table (and so len()) stays as it was, since samplers already drew
        # indices from it; _item clamps clip starts to the frames that really exist.
        for source in self.sources:
            if source.path == short.source_path:
                if short.decoded < self.frames:
                    raise short
                source.num_frames = short.decoded

    def _item(self, index: int) -> torch.Tensor:
        rng = self.rng(index)
        start = index if self.samples_per_epoch is None else int(rng.integers(self.num_starts))
        source_index, first = self.locate(start)
        source = self.sources[source_index]
        info = source.info
        stride = draw_stride(rng, source.num_frames, self.frames, self.max_temporal_stride)
        first = min(first, source.num_frames - 1 - (self.frames - 1) * stride)
        size = (info.height, info.width)
        crop = self.crop or size
        top, left = crop_origin(rng, size, crop)
        horizontal, vertical = draw_flips(rng, self.flips)
        clip = []
        for k in range(self.frames):
            frame = self.frame(source_index, first + k * stride)
            frame = flip_frame(crop_frame(frame, top, left, *crop), horizontal, vertical)
            clip.append(
                frame_to_model(
                    frame,
                    self.representation,
                    matrix=info.matrix,
                    full_range=info.full_range,
                )
            )
        return torch.stack(clip)
