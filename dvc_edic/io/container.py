"""Any file FFmpeg can open (.mp4, .mkv, .avi, ...), decoded through PyAV.

Frames are decoded one at a time from the first video stream and converted to
planar 4:2:0: yuv420p for 8-bit sources, yuv420p10le for deeper ones. The
conversion keeps the source's sample range, so full-range sources stay full
range and say so in VideoInfo.
"""

from __future__ import annotations

import fractions
from pathlib import Path
from typing import Any

import av
import numpy as np

from dvc_edic.errors import InputError
from dvc_edic.io.frames import (
    MIN_BIT_DEPTH,
    Frame,
    VideoInfo,
    check_dimensions,
    chroma_size,
    to_fraction,
)
from dvc_edic.io.readers import VideoReader, check_input_file, check_max_frames

# The bit depths a container can be decoded to, and the FFmpeg pixel format for each.
DECODE_FORMATS = {8: "yuv420p", 10: "yuv420p10le"}
DEEP_DECODE_BIT_DEPTH = 10

# AVColorSpace values that mean the BT.601 matrix (BT470BG for PAL, SMPTE170M for NTSC).
_AVCOL_SPC_BT709 = 1
_AVCOL_SPC_BT601 = frozenset({5, 6})
# AVColorRange value of full ("JPEG") range.
_AVCOL_RANGE_JPEG = 2

# Errors PyAV raises for files FFmpeg cannot parse or decode.
_AV_ERRORS: tuple[type[BaseException], ...] = (av.FFmpegError, OSError, ValueError)


def _matrix_of(frame: av.VideoFrame) -> str:
    """The matrix the decoded 4:2:0 planes are in; untagged sources default to BT.709."""
    if frame.format.is_rgb:
        return "bt709"  # we ask swscale for BT.709 when it converts from RGB
    if frame.colorspace in _AVCOL_SPC_BT601:
        return "bt601"
    return "bt709"


def _is_full_range(frame: av.VideoFrame) -> bool:
    if frame.format.is_rgb:
        return False  # converted to limited-range YUV
    return frame.format.name.startswith("yuvj") or frame.color_range == _AVCOL_RANGE_JPEG


class ContainerReader(VideoReader):
    """Streams decoded frames; num_frames is whatever the container header claims."""

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
        try:
            container = av.open(str(path), mode="r")
        except _AV_ERRORS as exc:
            raise InputError(f"{path}: cannot be opened as a video file: {exc}") from None
        self._container = container
        try:
            info = self._probe(path, container, width, height, fps, bit_depth, max_frames)
        except BaseException:
            container.close()
            raise
        super().__init__(path, info, max_frames)

    def _probe(
        self,
        path: Path,
        container: Any,
        width: int | None,
        height: int | None,
        fps: Any,
        bit_depth: int | None,
        max_frames: int | None,
    ) -> VideoInfo:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise InputError(f"{path}: has no video stream (streams found: {', '.join(kinds)})")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        self._decoded = container.decode(stream)
        self._path_text = str(path)
        first = self._next_decoded()  # decode one frame: headers alone can lie about format
        if first is None:
            raise InputError(f"{path}: video stream has no decodable frames")
        self._pending: av.VideoFrame | None = first

        w, h = check_dimensions(first.width, first.height, str(path))
        for name, given, actual in (("width", width, w), ("height", height, h)):
            if given is not None and given != actual:
                raise InputError(
                    f"{path}: --{name} {given} contradicts the file, which says {actual}"
                )

        source_bits = max(c.bits for c in first.format.components)
        if bit_depth is None:
            bit_depth = MIN_BIT_DEPTH if source_bits <= MIN_BIT_DEPTH else DEEP_DECODE_BIT_DEPTH
        if bit_depth not in DECODE_FORMATS:
            raise InputError(
                f"{path}: containers decode to {sorted(DECODE_FORMATS)} bits, not {bit_depth}"
            )
        self._format = DECODE_FORMATS[bit_depth]

        if fps is not None:
            rate = to_fraction(fps, str(path))
        else:
            found = stream.average_rate or stream.guessed_rate
            if not found or found <= 0:
                raise InputError(f"{path}: the video stream states no frame rate; pass --fps")
            rate = to_fraction(found, str(path))

        full_range = _is_full_range(first)
        self._convert: dict[str, Any] = {"format": self._format}
        if first.format.is_rgb:
            self._convert["dst_colorspace"] = "ITU709"
        elif full_range:  # stop swscale squeezing full range into 16-235
            self._convert["src_color_range"] = "JPEG"
            self._convert["dst_color_range"] = "JPEG"

        count = stream.frames or None
        if count is not None and max_frames is not None:
            count = min(count, max_frames)
        return VideoInfo(
            w,
            h,
            rate,
            bit_depth,
            num_frames=count,
            matrix=_matrix_of(first),
            full_range=full_range,
        )

    def _next_decoded(self) -> av.VideoFrame | None:
        try:
            return next(self._decoded)
        except StopIteration:
            return None
        except _AV_ERRORS as exc:
            raise InputError(f"{self._path_text}: cannot decode video: {exc}") from None

    def _read_frame(self) -> Frame | None:
        if self._pending is not None:
            decoded, self._pending = self._pending, None
        else:
            decoded = self._next_decoded()
        if decoded is None:
            return None
        info = self.info
        if (decoded.width, decoded.height) != (info.width, info.height):
            raise InputError(
                f"{self.path}: frame {self.frames_read} is {decoded.width}x{decoded.height}, "
                f"the stream started at {info.width}x{info.height}; size changes are not supported"
            )
        try:
            packed = decoded.to_ndarray(**self._convert)
        except _AV_ERRORS as exc:
            raise InputError(
                f"{self.path}: frame {self.frames_read} cannot be converted to "
                f"{self._format}: {exc}"
            ) from None
        flat = np.ascontiguousarray(packed).reshape(-1)
        luma = info.width * info.height
        cw, ch = chroma_size(info.width, info.height)
        return Frame(
            y=flat[:luma].reshape(info.height, info.width),
            u=flat[luma : luma + cw * ch].reshape(ch, cw),
            v=flat[luma + cw * ch : luma + 2 * cw * ch].reshape(ch, cw),
            bit_depth=info.bit_depth,
        )

    def _close(self) -> None:
        self._container.close()
