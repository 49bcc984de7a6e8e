"""Headerless planar YUV 4:2:0 files (.yuv): the format of the HEVC and UVG test sets.

Samples are bytes at 8 bits and 16-bit little-endian words above (how ffmpeg's
yuv420p10le and the reference software store 10-bit video). With no header, the
format comes from flags or the file name, and the frame count from the file size.
"""

from __future__ import annotations

import fractions
import warnings
from pathlib import Path

from dvc_edic.errors import DvcEdicWarning, InputError
from dvc_edic.io.frames import (
    MIN_BIT_DEPTH,
    Frame,
    VideoInfo,
    check_bit_depth,
    check_dimensions,
    to_fraction,
)
from dvc_edic.io.naming import parse_name
from dvc_edic.io.readers import (
    VideoReader,
    check_input_file,
    check_max_frames,
    open_binary,
    planar_frame_from_file,
)
from dvc_edic.io.writers import VideoWriter

# Frame rate assumed for a raw file whose name and flags do not give one. Raw
# YUV has no header, so something must be assumed; 30 is the commonest rate in
# test sets. Self-describing formats never fall back to it.
DEFAULT_FPS = fractions.Fraction(30)


class AssumedFrameRateWarning(DvcEdicWarning):
    """A raw file's frame rate was assumed (DEFAULT_FPS): it sets the stream's rate and kbps."""


class RawYuvReader(VideoReader):
    """Streams frames from a .yuv file, one file.read per frame."""

    def __init__(
        self,
        path: Path,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: fractions.Fraction | int | str | None = None,
        bit_depth: int | None = None,
        max_frames: int | None = None,
    ) -> None:
        path = check_input_file(path)
        max_frames = check_max_frames(max_frames)
        named = parse_name(path)
        width = width if width is not None else named.get("width")
        height = height if height is not None else named.get("height")
        if width is None or height is None:
            raise InputError(
                f"{path}: raw YUV has no header, so its size is unknown; pass --width and "
                "--height or name the file like Name_1920x1080_50.yuv"
            )
        width, height = check_dimensions(width, height, str(path))
        if fps is None and "fps" not in named:
            warnings.warn(
                AssumedFrameRateWarning(
                    f"{path}: raw YUV has no header and its name gives no frame rate; assuming "
                    f"{DEFAULT_FPS} fps, which the stream records and the kbps figures use "
                    "(pass --fps to set it)"
                ),
                stacklevel=2,
            )
        fps_value = to_fraction(
            fps if fps is not None else named.get("fps", DEFAULT_FPS), str(path)
        )
        depth = check_bit_depth(
            bit_depth if bit_depth is not None else named.get("bit_depth", MIN_BIT_DEPTH),
            str(path),
        )
        frame_bytes = VideoInfo(width, height, fps_value, depth).frame_nbytes
        size = path.stat().st_size
        total, left_over = divmod(size, frame_bytes)
        if left_over:
            raise InputError(
                f"{path}: {size} bytes is {total} frames of {frame_bytes} bytes plus "
                f"{left_over} bytes left over (read as {width}x{height} {depth}-bit 4:2:0); "
                "check --width/--height/--bit-depth"
            )
        count = total if max_frames is None else min(total, max_frames)
        info = VideoInfo(width, height, fps_value, depth, num_frames=count)
        super().__init__(path, info, max_frames)
        self.total_frames = total
        self._file = open_binary(path)

    def _read_frame(self) -> Frame | None:
        frame, got = planar_frame_from_file(self._file, self.info, str(self.path), self.frames_read)
        if frame is None:
            if got == 0:
                return None
            raise InputError(
                f"{self.path}: frame {self.frames_read} is truncated: expected "
                f"{self.info.frame_nbytes} bytes, got {got} (did the file shrink while reading?)"
            )
        return frame

    def _close(self) -> None:
        self._file.close()


class RawYuvWriter(VideoWriter):
    """Planar frames back to back, nothing else: byte-compatible with ffmpeg -f rawvideo."""
