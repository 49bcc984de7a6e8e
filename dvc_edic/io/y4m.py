"""YUV4MPEG2 (.y4m): raw 4:2:0 frames behind a one-line text header.

Only progressive 4:2:0 is accepted. The rest of the codec works on frames, not
fields, and on 4:2:0 planes, so anything else would be coded wrongly rather than
just slowly; it is better refused with advice on how to convert it.
"""

from __future__ import annotations

import fractions
import re
from pathlib import Path
from typing import BinaryIO

from dvc_edic.errors import InputError
from dvc_edic.io.frames import (
    MAX_BIT_DEPTH,
    MIN_BIT_DEPTH,
    Frame,
    VideoInfo,
    check_dimensions,
    to_fraction,
)
from dvc_edic.io.readers import (
    VideoReader,
    check_input_file,
    check_max_frames,
    merge_override,
    open_binary,
    planar_frame_from_file,
)
from dvc_edic.io.writers import VideoWriter

Y4M_MAGIC = b"YUV4MPEG2"
FRAME_MAGIC = b"FRAME"

# Upper bounds on header lines; real ones are under 100 bytes. Bounding them
# keeps a non-Y4M file from being scanned to its end for a newline.
MAX_STREAM_HEADER_BYTES = 4096
MAX_FRAME_HEADER_BYTES = 1024

# 8-bit 4:2:0 colour space tags; they differ only in chroma siting, which the
# planes do not store, so all read the same.
_CHROMA_8BIT = frozenset({"420", "420jpeg", "420paldv", "420mpeg2"})
_CHROMA_DEEP = re.compile(r"^420p([0-9]{1,2})$")

# Tag written for 8-bit output (the Y4M default, MPEG-1/JPEG centred chroma siting).
CHROMA_TAG_8BIT = "420jpeg"

# Interlace tags: p progressive, ? unknown (treated as progressive).
_PROGRESSIVE = frozenset({"p", "?"})
_INTERLACE_NAMES = {"t": "top field first", "b": "bottom field first", "m": "mixed modes"}

# ffmpeg's extension for the sample range.
_RANGE_KEY = "COLORRANGE="


def _parse_ratio(text: str, where: str, tag: str) -> fractions.Fraction:
    num, sep, den = text.partition(":")
    try:
        if not sep:
            raise ValueError
        value = fractions.Fraction(int(num), int(den))
    except (ValueError, ZeroDivisionError):
        raise InputError(f"{where}: Y4M tag {tag}{text} is not a ratio n:d") from None
    return value


def _bit_depth_of(colour: str, where: str) -> int:
    if colour in _CHROMA_8BIT:
        return MIN_BIT_DEPTH
    deep = _CHROMA_DEEP.match(colour)
    if deep is not None and MIN_BIT_DEPTH < int(deep.group(1)) <= MAX_BIT_DEPTH:
        return int(deep.group(1))
    raise InputError(
        f"{where}: Y4M colour space C{colour} is not supported; only 4:2:0 is "
        "(C420, C420jpeg, C420paldv, C420mpeg2, C420p10, C420p12). Convert it, e.g. "
        "ffmpeg -i in.y4m -pix_fmt yuv420p out.y4m"
    )


def parse_stream_header(line: bytes, where: str) -> dict:
    """Read W, H, F, I, C and the COLORRANGE extension from the header line."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise InputError(f"{where}: Y4M header is not ASCII text") from None
    tokens = text.split()
    if not tokens or tokens[0] != Y4M_MAGIC.decode():
        raise InputError(f"{where}: not a Y4M file (expected it to start with 'YUV4MPEG2 ')")
    fields: dict = {"colour": "420jpeg", "full_range": False}
    for token in tokens[1:]:
        tag, value = token[0], token[1:]
        if tag in "WH":
            try:
                fields[tag] = int(value)
            except ValueError:
                raise InputError(f"{where}: Y4M tag {token} is not an integer") from None
        elif tag == "F":
            fields["fps"] = _parse_ratio(value, where, tag)
        elif tag == "I":
            if value not in _PROGRESSIVE:
                kind = _INTERLACE_NAMES.get(value, f"unknown mode {value!r}")
                raise InputError(
                    f"{where}: interlaced Y4M (I{value}: {kind}) is not supported; the codec "
                    "needs progressive frames. Deinterlace first, e.g. "
                    "ffmpeg -i in.y4m -vf bwdif out.y4m"
                )
        elif tag == "C":
            fields["colour"] = value
        elif tag == "X" and value.upper().startswith(_RANGE_KEY):
            fields["full_range"] = value[len(_RANGE_KEY) :].upper() == "FULL"
        # A (aspect) and other X extensions do not change the samples: ignored.
    for tag, name in (("W", "width"), ("H", "height")):
        if tag not in fields:
            raise InputError(f"{where}: Y4M header has no {tag} ({name}) tag")
    fields["bit_depth"] = _bit_depth_of(fields["colour"], where)
    return fields


def _read_line(file: BinaryIO, limit: int) -> bytes | None:
    """One newline-terminated line of at most `limit` bytes, or None if there is none."""
    line = file.readline(limit)
    return line if line.endswith(b"\n") else None


class Y4MReader(VideoReader):
    """Streams FRAME records; the frame count comes from a seek-only scan at open."""

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
        file = open_binary(path)
        try:
            line = _read_line(file, MAX_STREAM_HEADER_BYTES)
            if line is None:
                raise InputError(
                    f"{path}: not a Y4M file (no header line in the first "
                    f"{MAX_STREAM_HEADER_BYTES} bytes)"
                )
            fields = parse_stream_header(line, str(path))
            w, h = check_dimensions(fields["W"], fields["H"], str(path))
            w = merge_override(path, "width", w, width)
            h = merge_override(path, "height", h, height)
            depth = merge_override(path, "bit_depth", fields["bit_depth"], bit_depth)
            if fps is not None:
                rate = to_fraction(fps, str(path))  # an explicit --fps wins over the header
            elif "fps" in fields:
                rate = to_fraction(fields["fps"], str(path))
            else:
                raise InputError(f"{path}: Y4M header has no F (frame rate) tag; pass --fps")
            probe = VideoInfo(w, h, rate, depth, full_range=fields["full_range"])
            total = self._count_frames(file, path, len(line), probe.frame_nbytes)
            count = total if max_frames is None else min(total, max_frames)
            info = VideoInfo(w, h, rate, depth, num_frames=count, full_range=fields["full_range"])
            file.seek(len(line))
        except BaseException:
            file.close()
            raise
        super().__init__(path, info, max_frames)
        self.total_frames = total
        self._file = file

    @staticmethod
    def _count_frames(file: BinaryIO, path: Path, start: int, frame_bytes: int) -> int:
        """Walk FRAME headers by seeking over the pixel data; fail on a truncated tail.

        Doing this at open time means a damaged file is refused before any frame is
        coded, and num_frames is exact even when FRAME lines carry parameters.
        """
        size = path.stat().st_size
        position, count = start, 0
        while position < size:
            file.seek(position)
            header = _read_line(file, MAX_FRAME_HEADER_BYTES)
            if header is None or not header.startswith(FRAME_MAGIC):
                raise InputError(
                    f"{path}: expected a FRAME header at byte {position} (frame {count}), "
                    "found something else; the file is damaged or the header is wrong"
                )
            position += len(header) + frame_bytes
            if position > size:
                have = size - (position - frame_bytes)
                raise InputError(
                    f"{path}: last frame (frame {count}) is truncated: expected "
                    f"{frame_bytes} bytes, file has {have}"
                )
            count += 1
        if count == 0:
            raise InputError(f"{path}: Y4M file has a header but no frames")
        return count

    def _read_frame(self) -> Frame | None:
        index = self.frames_read
        header = self._file.readline(MAX_FRAME_HEADER_BYTES)
        if header == b"":
            return None
        if not (header.startswith(FRAME_MAGIC) and header.endswith(b"\n")):
            raise InputError(f"{self.path}: frame {index} does not start with a FRAME header")
        frame, got = planar_frame_from_file(self._file, self.info, str(self.path), index)
        if frame is None:
            raise InputError(
                f"{self.path}: frame {index} is truncated: expected "
                f"{self.info.frame_nbytes} bytes, got {got}"
            )
        return frame

    def _close(self) -> None:
        self._file.close()


def chroma_tag(bit_depth: int) -> str:
    return CHROMA_TAG_8BIT if bit_depth == MIN_BIT_DEPTH else f"420p{bit_depth}"


class Y4MWriter(VideoWriter):
    """Writes C420jpeg (8-bit) or C420pNN, progressive, square pixels, rational F."""

    def _stream_header(self) -> bytes:
        info = self.info
        fps = info.fps
        parts = [
            Y4M_MAGIC.decode(),
            f"W{info.width}",
            f"H{info.height}",
            f"F{fps.numerator}:{fps.denominator}",
            "Ip",
            "A1:1",
            f"C{chroma_tag(info.bit_depth)}",
        ]
        if info.full_range:
            parts.append(f"X{_RANGE_KEY}FULL")
        return (" ".join(parts) + "\n").encode("ascii")

    def _frame_header(self) -> bytes:
        return FRAME_MAGIC + b"\n"
