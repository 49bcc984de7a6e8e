"""Pick the reader or writer for a path."""

from __future__ import annotations

import fractions
import os
from collections.abc import Sequence
from pathlib import Path

from dvc_edic.errors import InputError
from dvc_edic.io.atomic import check_output_path
from dvc_edic.io.frames import VideoInfo
from dvc_edic.io.rawyuv import RawYuvReader, RawYuvWriter
from dvc_edic.io.readers import VideoReader, check_input_file
from dvc_edic.io.writers import VideoWriter
from dvc_edic.io.y4m import Y4M_MAGIC, Y4MReader, Y4MWriter

PathLike = str | os.PathLike[str]

RAW_EXTENSIONS = (".yuv",)
Y4M_EXTENSIONS = (".y4m",)


def _starts_with_y4m_magic(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(len(Y4M_MAGIC)) == Y4M_MAGIC


def open_video(
    path: PathLike,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: fractions.Fraction | int | str | None = None,
    bit_depth: int | None = None,
    max_frames: int | None = None,
) -> VideoReader:
    """Open .yuv (raw), .y4m, or anything else through PyAV.

    Raw YUV takes its format from the flags, then the file name, then defaults
    (8-bit, DEFAULT_FPS). Self-describing files win over flags: a width, height
    or bit depth that contradicts a Y4M header is an error, while fps replaces
    the stated rate. For containers, bit_depth picks the decode format (8 or 10).

    A .yuv file that is really Y4M (it starts with the Y4M magic) is read as Y4M:
    reading its header as pixels would silently garble every frame.
    """
    p = check_input_file(path)
    suffix = p.suffix.lower()
    kwargs = {
        "width": width,
        "height": height,
        "fps": fps,
        "bit_depth": bit_depth,
        "max_frames": max_frames,
    }
    try:
        is_y4m = suffix in Y4M_EXTENSIONS or _starts_with_y4m_magic(p)
    except OSError as exc:
        raise InputError(f"{p}: cannot be opened for reading: {exc.strerror}") from None
    if is_y4m:
        return Y4MReader(p, **kwargs)
    if suffix in RAW_EXTENSIONS:
        return RawYuvReader(p, **kwargs)
    from dvc_edic.io.container import ContainerReader  # PyAV loads only when needed

    return ContainerReader(p, **kwargs)


def _writable_suffix(path: PathLike) -> str:
    """The output's lower-case extension, if it is one a writer exists for."""
    suffix = Path(path).suffix.lower()
    if suffix not in RAW_EXTENSIONS + Y4M_EXTENSIONS:
        raise InputError(
            f"{path}: cannot write {suffix or 'files without an extension'}; "
            f"use one of {RAW_EXTENSIONS + Y4M_EXTENSIONS}"
        )
    return suffix


def check_writer_path(
    path: PathLike, *, overwrite: bool = False, inputs: Sequence[PathLike] = ()
) -> None:
    """What open_writer would refuse about ``path``, checked before any slow work.

    open_writer checks again: the file system may change in between.
    """
    _writable_suffix(path)
    check_output_path(path, overwrite=overwrite, inputs=inputs)


def open_writer(
    path: PathLike,
    info: VideoInfo,
    *,
    overwrite: bool = False,
    inputs: Sequence[PathLike] = (),
) -> VideoWriter:
    """A raw .yuv or .y4m writer chosen by the extension; other extensions are refused."""
    if _writable_suffix(path) in RAW_EXTENSIONS:
        return RawYuvWriter(path, info, overwrite=overwrite, inputs=inputs)
    return Y4MWriter(path, info, overwrite=overwrite, inputs=inputs)
