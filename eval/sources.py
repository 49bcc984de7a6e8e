"""Raw YUV inputs: every codec is fed the identical planar 4:2:0 file.

Containers (.mkv/.mp4), .y4m files and cropped sequences are converted once into
the work dir, so x264, x265 and dvc_edic read the same bytes and no codec gains or
loses from a decoder or scaler of its own.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from dvc_edic.errors import InputError
from dvc_edic.io import Frame, VideoInfo, frame_nbytes, open_video, open_writer
from eval.sets import Sequence

# Extensions fed to the codecs as they are (no conversion) when nothing is cropped.
RAW_EXTENSIONS = (".yuv",)


@dataclass(frozen=True)
class RawSource:
    """A planar 4:2:0 file with the numbers every codec and metric needs."""

    name: str
    cls: str
    path: Path
    width: int
    height: int
    fps: Fraction
    bit_depth: int
    frames: int
    intra_period: int
    origin: str  # the user's file this was made from

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["fps"] = str(self.fps)
        return data

    @property
    def frame_bytes(self) -> int:
        return frame_nbytes(self.width, self.height, self.bit_depth)

    @property
    def info(self) -> VideoInfo:
        return VideoInfo(self.width, self.height, self.fps, self.bit_depth, num_frames=self.frames)


def open_raw(path: Path, src: RawSource, max_frames: int | None = None):
    """A frame reader on a raw file with the geometry of `src` (decoded outputs too)."""
    return open_video(
        path,
        width=src.width,
        height=src.height,
        fps=src.fps,
        bit_depth=src.bit_depth,
        max_frames=src.frames if max_frames is None else max_frames,
    )


def _crop(frame: Frame, width: int, height: int) -> Frame:
    if (frame.width, frame.height) == (width, height):
        return frame
    return Frame(
        y=frame.y[:height, :width].copy(),
        u=frame.u[: height // 2, : width // 2].copy(),
        v=frame.v[: height // 2, : width // 2].copy(),
        bit_depth=frame.bit_depth,
    )


def _conversion_key(seq: Sequence, origin: Path) -> dict[str, Any]:
    stat = origin.stat()
    return {
        "origin": str(origin),
        "origin_size": stat.st_size,
        "origin_mtime_ns": stat.st_mtime_ns,
        "frames": seq.frames,
        "crop": list(seq.crop) if seq.crop else None,
        "width": seq.width,
        "height": seq.height,
        "fps": str(seq.fps) if seq.fps else None,
        "bit_depth": seq.bit_depth,
    }


def prepare_source(seq: Sequence, work_dir: Path) -> RawSource:
    """The raw file codecs read for `seq`; converts (once) when the original is not raw YUV.

    The conversion is skipped on a rerun when its marker says it was made from the same
    file with the same frame count and crop.
    """
    needs_copy = seq.path.suffix.lower() not in RAW_EXTENSIONS or seq.crop is not None
    reader = open_video(
        seq.path,
        width=seq.width,
        height=seq.height,
        fps=seq.fps,
        bit_depth=seq.bit_depth,
        max_frames=seq.frames,
    )
    with reader:
        info = reader.info
        width, height = seq.crop if seq.crop else (info.width, info.height)
        if width > info.width or height > info.height:
            raise InputError(
                f"{seq.path}: crop {width}x{height} is larger than the frame "
                f"{info.width}x{info.height}"
            )
        if info.num_frames is not None and info.num_frames < seq.frames:
            raise InputError(
                f"{seq.path}: {seq.frames} frames to code, but the file has {info.num_frames}"
            )
        made = RawSource(
            name=seq.name,
            cls=seq.cls,
            path=seq.path,
            width=width,
            height=height,
            fps=Fraction(info.fps),
            bit_depth=int(info.bit_depth),
            frames=seq.frames,
            intra_period=seq.intra_period,
            origin=str(seq.path),
        )
        if not needs_copy:
            return made
        out_dir = work_dir / "sources"
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"{seq.name}_{width}x{height}_{seq.frames}f_{made.bit_depth}bit.yuv"
        marker = target.with_suffix(".json")
        key = _conversion_key(seq, seq.path)
        made = RawSource(**{**made.__dict__, "path": target})
        if target.is_file() and marker.is_file():
            with marker.open("r", encoding="utf-8") as fh:
                if json.load(fh) == key and target.stat().st_size == made.frame_bytes * seq.frames:
                    return made
        marker.unlink(missing_ok=True)
        with open_writer(target, made.info, overwrite=True, inputs=[seq.path]) as writer:
            for frame in reader:
                writer.write(_crop(frame, width, height))
                if writer.frames_written == seq.frames:
                    break
            if writer.frames_written < seq.frames:
                raise InputError(
                    f"{seq.path}: {seq.frames} frames to code, but only "
                    f"{writer.frames_written} could be read"
                )
    with marker.open("w", encoding="utf-8") as fh:
        json.dump(key, fh)
    return made
