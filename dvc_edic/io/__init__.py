"""Frame I/O: raw YUV, Y4M and container readers, atomic YUV/Y4M writers.

Everything here moves planar 4:2:0 frames (uint8 at 8 bits, uint16 above) one
at a time, so a 1080p sequence never has to fit in memory.
"""

from __future__ import annotations

from dvc_edic.io.atomic import AtomicFile, check_not_input
from dvc_edic.io.frames import (
    MAX_BIT_DEPTH,
    MAX_DIMENSION,
    MIN_BIT_DEPTH,
    Frame,
    VideoInfo,
    frame_nbytes,
    max_sample_value,
    sample_dtype,
)
from dvc_edic.io.naming import parse_name
from dvc_edic.io.opener import open_video, open_writer
from dvc_edic.io.rawyuv import DEFAULT_FPS, RawYuvReader, RawYuvWriter
from dvc_edic.io.readers import InputNotFoundError, VideoReader
from dvc_edic.io.writers import VideoWriter
from dvc_edic.io.y4m import Y4MReader, Y4MWriter

__all__ = [
    "DEFAULT_FPS",
    "MAX_BIT_DEPTH",
    "MAX_DIMENSION",
    "MIN_BIT_DEPTH",
    "AtomicFile",
    "Frame",
    "InputNotFoundError",
    "RawYuvReader",
    "RawYuvWriter",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "Y4MReader",
    "Y4MWriter",
    "check_not_input",
    "frame_nbytes",
    "max_sample_value",
    "open_video",
    "open_writer",
    "parse_name",
    "sample_dtype",
]
