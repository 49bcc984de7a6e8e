"""Random access to the frames of one video file, on top of dvc_edic.io's readers.

The readers stream frames in order. Training wants frame k of file f in any
order, so this module adds positioning: raw .yuv and plain .y4m files have
fixed-size frame records and are read at a computed offset (the planes are
still parsed by dvc_edic.io); containers are decoded forward from wherever the
open decoder is, reopening only to go back. Nothing here holds more than one
frame; caching is the dataset's business.
"""

from __future__ import annotations

import fractions
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from dvc_edic.errors import InputError
from dvc_edic.io import VideoInfo, VideoReader, open_video
from dvc_edic.io.frames import Frame
from dvc_edic.io.readers import open_binary, planar_frame_from_file
from dvc_edic.io.y4m import FRAME_MAGIC, MAX_STREAM_HEADER_BYTES, Y4M_MAGIC

# Receives (frame index, frame) for frames decoded while seeking forward.
FrameCallback = Callable[[int, Frame], None]

# The frame record header of a Y4M file whose FRAME lines carry no parameters.
_PLAIN_FRAME_HEADER = FRAME_MAGIC + b"\n"


def _count_packets(path: Path) -> int:
    """Frame count of a container that does not state one: demux, don't decode.

    One video packet is one frame for every intra or low-delay stream this project
    reads; a stream where that fails is caught at read time (see StreamCursor).
    """
    import av  # PyAV loads only when a container is read, as in dvc_edic.io

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return sum(1 for packet in container.demux(stream) if packet.size)
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise InputError(f"{path}: cannot count the frames of the video stream: {exc}") from None


class ShortSourceError(InputError):
    """A container decoded fewer frames than its packets promised."""

    def __init__(self, path: Path, decoded: int, wanted: int) -> None:
        super().__init__(f"{path}: decoded {decoded} frames, frame {wanted} was expected to exist")
        self.source_path = path
        self.decoded = decoded


class FrameSource:
    """One video file: its VideoInfo, frame count, and how to position in it.

    Probing opens the file once (through dvc_edic.io.open_video) and closes it, so a
    FrameSource holds no open file and pickles freely to DataLoader workers.
    """

    def __init__(
        self,
        path: Path,
        *,
        width: int | None = None,
        height: int | None = None,
        bit_depth: int | None = None,
        max_frames: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.open_args = {
            "width": width,
            "height": height,
            "bit_depth": bit_depth,
            "max_frames": max_frames,
        }
        with open_video(self.path, **self.open_args) as reader:
            self.info: VideoInfo = reader.info
            kind = type(reader).__name__
        count = self.info.num_frames
        if count is None:
            count = _count_packets(self.path)
            if max_frames is not None:
                count = min(count, max_frames)
        self.num_frames = count
        self.record_offset = 0  # where frame 0 starts, for the seekable kinds
        self.record_bytes = 0  # bytes from one frame's start to the next's
        self.header_bytes = 0  # FRAME header length inside each record
        if kind == "RawYuvReader":
            self.record_bytes = self.info.frame_nbytes
        elif kind == "Y4MReader":
            self._plan_y4m()

    def _plan_y4m(self) -> None:
        """Fixed-size records when every FRAME line is bare (ffmpeg's output); else stream."""
        with open_binary(self.path) as file:
            header = file.readline(MAX_STREAM_HEADER_BYTES)
        if not header.startswith(Y4M_MAGIC):
            return
        record = len(_PLAIN_FRAME_HEADER) + self.info.frame_nbytes
        total = (os.path.getsize(self.path) - len(header)) / record
        cap = self.open_args["max_frames"]
        if total == int(total) and (cap is not None or int(total) == self.num_frames):
            self.record_offset = len(header)
            self.record_bytes = record
            self.header_bytes = len(_PLAIN_FRAME_HEADER)

    @property
    def seekable(self) -> bool:
        return self.record_bytes > 0

    @property
    def fps(self) -> fractions.Fraction:
        return self.info.fps

    def open_cursor(self) -> SeekCursor | StreamCursor:
        return SeekCursor(self) if self.seekable else StreamCursor(self)


class SeekCursor:
    """Reads frame k of a fixed-record file at its offset."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self._file: BinaryIO = open_binary(source.path)

    def read(self, index: int, on_passed: FrameCallback | None = None) -> Frame:
        """Frame `index`; on_passed is never called (nothing is decoded on the way)."""
        src = self.source
        self._file.seek(src.record_offset + index * src.record_bytes)
        if src.header_bytes:
            head = self._file.read(src.header_bytes)
            if head != _PLAIN_FRAME_HEADER:
                raise InputError(
                    f"{src.path}: frame {index} does not start with a bare FRAME header "
                    f"(found {head!r}); was the file changed while training?"
                )
        frame, got = planar_frame_from_file(self._file, src.info, str(src.path), index)
        if frame is None:
            raise InputError(
                f"{src.path}: frame {index} is truncated: expected {src.info.frame_nbytes} "
                f"bytes, got {got}"
            )
        return frame

    def close(self) -> None:
        self._file.close()


class StreamCursor:
    """Decodes forward, reopening the file only to go back."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self._reader: VideoReader | None = None

    def _open(self) -> VideoReader:
        self.close()
        self._reader = open_video(self.source.path, **self.source.open_args)
        return self._reader

    def read(self, index: int, on_passed: FrameCallback | None = None) -> Frame:
        """Frame `index`; frames decoded on the way there go to on_passed(position, frame)."""
        reader = self._reader
        if reader is None or reader.frames_read > index:
            reader = self._open()
        while True:
            position = reader.frames_read
            frame = reader.read()
            if frame is None:
                raise ShortSourceError(self.source.path, reader.frames_read, index)
            if position == index:
                return frame
            if on_passed is not None:
                on_passed(position, frame)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
