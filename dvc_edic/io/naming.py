"""Recover width, height, frame rate and bit depth from a raw YUV file's name.

Raw .yuv files carry no header, so test sequences encode their format in the
name: HEVC CTC uses ``Kimono1_1920x1080_24.yuv``, UVG uses
``Beauty_1920x1080_120fps_420_8bit_YUV.yuv``, others write ``bar_1920x1080p50.yuv``.
"""

from __future__ import annotations

import fractions
import os
import re
from typing import Any

from dvc_edic.io.frames import FPS_MAX_DENOMINATOR

# WxH, not glued to other digits on either side ("1920x1080", "352X288").
_DIMS = re.compile(r"(?<![0-9])([0-9]{1,5})[xX]([0-9]{1,5})(?![0-9])")

# The frame rate right after the dimensions: "p50", "_24", "_120fps", "-29.97Hz".
_FPS_AFTER_DIMS = re.compile(
    r"^(?:p|[_\-. ])([0-9]+(?:\.[0-9]+)?)(fps|hz|p)?(?=$|[_\-. ])", re.IGNORECASE
)

# A frame rate anywhere else, only when it says so ("_60fps", "_50Hz").
_FPS_TAGGED = re.compile(
    r"(?:^|[_\-. ])([0-9]+(?:\.[0-9]+)?)(?:fps|hz)(?=$|[_\-. ])", re.IGNORECASE
)

# Bit depth tags: "_10bit", "_8b", or a pixel format such as "yuv420p10le".
_BITS_TAGGED = re.compile(r"(?:^|[_\-. ])([0-9]{1,2})(?:bit|bits|b)(?=$|[_\-. ])", re.IGNORECASE)
_BITS_PIXFMT = re.compile(r"4[024]{2}p([0-9]{1,2})(?:le)?(?=$|[_\-. ])", re.IGNORECASE)

# Bare numbers after WxH that are chroma formats, not frame rates ("_1920x1080_420").
_CHROMA_TOKENS = frozenset({"420", "422", "444", "400"})

# NTSC-family rates written as decimals in file names, and their exact ratios.
_NTSC_RATES = {
    "23.976": fractions.Fraction(24000, 1001),
    "29.97": fractions.Fraction(30000, 1001),
    "59.94": fractions.Fraction(60000, 1001),
    "119.88": fractions.Fraction(120000, 1001),
}


def _fps_from_text(text: str) -> fractions.Fraction | None:
    if text in _NTSC_RATES:
        return _NTSC_RATES[text]
    value = fractions.Fraction(text).limit_denominator(FPS_MAX_DENOMINATOR)
    return value if value > 0 else None


def parse_name(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return whichever of width, height, fps (Fraction) and bit_depth the name states.

    Keys are left out when the name does not say, so callers can layer flags over
    the result. Only the file name is read, never the directories above it.
    """
    name = os.path.basename(os.fspath(path))
    stem, ext = os.path.splitext(name)
    if ext[1:].isdigit():  # "clip_1280x720_59.94" has no extension, only a decimal rate
        stem = name
    found: dict[str, Any] = {}

    fps_text: str | None = None
    dims = None
    for match in _DIMS.finditer(stem):
        dims = match  # the last WxH wins: "clip_v2_1920x1080_50" style names put it last
    if dims is not None:
        found["width"], found["height"] = int(dims.group(1)), int(dims.group(2))
        after = _FPS_AFTER_DIMS.match(stem[dims.end() :])
        if after is not None:
            tagged = after.group(2) is not None or stem[dims.end()] in "pP"
            if tagged or after.group(1) not in _CHROMA_TOKENS:
                fps_text = after.group(1)
    if fps_text is None:
        tagged_match = _FPS_TAGGED.search(stem)
        if tagged_match is not None:
            fps_text = tagged_match.group(1)
    if fps_text is not None:
        fps = _fps_from_text(fps_text)
        if fps is not None:
            found["fps"] = fps

    bits = _BITS_TAGGED.search(stem) or _BITS_PIXFMT.search(stem)
    if bits is not None:
        found["bit_depth"] = int(bits.group(1))
    return found
