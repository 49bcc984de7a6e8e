"""The two value types every other module passes around: VideoInfo and Frame.

Both validate themselves on construction so that a wrong shape or bit depth is
caught where it is made, not three modules later as a garbled picture.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from typing import Any

import numpy as np

from dvc_edic.errors import InputError

# Only 4:2:0 is supported end to end; the name is what headers and VideoInfo carry.
CHROMA_420 = "420"
SUPPORTED_CHROMA = (CHROMA_420,)

# Colour matrices understood by dvc_edic.colour (Kr/Kb pairs live there).
SUPPORTED_MATRICES = ("bt709", "bt601")

# Sample precision: 8-bit is stored in bytes, anything up to 16 bits in 16-bit words.
MIN_BIT_DEPTH = 8
MAX_BIT_DEPTH = 16

# Largest width or height accepted. 16384 covers 16K video; anything larger is
# almost certainly a misparsed header or a wrong --width, and checking it before
# allocating keeps a bad argument from asking for terabytes.
MAX_DIMENSION = 16384

# 4:2:0 chroma planes are half the luma size in each direction.
CHROMA_SUBSAMPLING = 2

# Denominator bound when turning a float frame rate into a ratio; 1001 (NTSC) is
# the largest denominator real video uses, 10x that leaves room for odd rates.
FPS_MAX_DENOMINATOR = 10010


def sample_dtype(bit_depth: int) -> np.dtype:
    """uint8 for 8-bit video, uint16 (native order) for everything deeper."""
    return np.dtype(np.uint8) if bit_depth == MIN_BIT_DEPTH else np.dtype(np.uint16)


def bytes_per_sample(bit_depth: int) -> int:
    return sample_dtype(bit_depth).itemsize


def max_sample_value(bit_depth: int) -> int:
    return (1 << bit_depth) - 1


def check_bit_depth(bit_depth: Any, where: str = "bit depth") -> int:
    if isinstance(bit_depth, bool) or not isinstance(bit_depth, (int, np.integer)):
        raise InputError(f"{where}: expected an integer bit depth, got {bit_depth!r}")
    if not MIN_BIT_DEPTH <= int(bit_depth) <= MAX_BIT_DEPTH:
        raise InputError(
            f"{where}: bit depth must be {MIN_BIT_DEPTH}..{MAX_BIT_DEPTH}, got {bit_depth}"
        )
    return int(bit_depth)


def chroma_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of a 4:2:0 chroma plane: half the luma's, rounded up.

    Rounded up as Y4M and FFmpeg lay out odd sizes, so that a picture with an
    odd side (a still image's true size, cropped from its even coded size) keeps
    every chroma sample of its coded picture; for even sizes it is exactly half.
    """
    return -(-width // CHROMA_SUBSAMPLING), -(-height // CHROMA_SUBSAMPLING)


def check_dimensions(
    width: Any, height: Any, where: str = "video", *, even: bool = True
) -> tuple[int, int]:
    """Reject sizes that are not positive integers or that are implausibly large, and
    (``even``, the default) odd sizes.

    Called before any frame buffer is allocated, so a typo cannot exhaust memory.
    Everything the codec reads or codes has even sides (4:2:0 chroma is half the
    luma in each direction), so readers use the default. Only the value types
    themselves allow odd sides (``even=False``): a still image decoded by
    decode_sequence is written at its true, possibly odd, size.
    """
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"{where}: {name} must be an integer, got {value!r}")
        if value <= 0:
            raise InputError(f"{where}: {name} must be positive, got {value}")
        if value > MAX_DIMENSION:
            raise InputError(f"{where}: {name} {value} exceeds the maximum of {MAX_DIMENSION}")
        if even and value % CHROMA_SUBSAMPLING:
            raise InputError(
                f"{where}: {name} {value} is odd; 4:2:0 video needs an even width and height"
            )
    return int(width), int(height)


def to_fraction(fps: Any, where: str = "fps") -> fractions.Fraction:
    """Accept 25, '30000/1001', 29.97 or a Fraction; reject zero, negative and junk.

    Floats are snapped to the nearest ratio with a small denominator so that 29.97
    becomes 30000/1001 rather than a 50-digit binary fraction.
    """
    try:
        if isinstance(fps, float):
            value = fractions.Fraction(fps).limit_denominator(FPS_MAX_DENOMINATOR)
        else:
            value = fractions.Fraction(fps)
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise InputError(f"{where}: cannot read frame rate {fps!r}: {exc}") from None
    if value <= 0:
        raise InputError(f"{where}: frame rate must be positive, got {fps!r}")
    return value


@dataclass(frozen=True)
class VideoInfo:
    """What a reader found, or what a writer must produce.

    num_frames is None when the container does not say (some MP4/MKV files).
    A side may be odd only for output (see check_dimensions); readers refuse it.
    """

    width: int
    height: int
    fps: fractions.Fraction
    bit_depth: int
    chroma: str = CHROMA_420
    num_frames: int | None = None
    matrix: str = "bt709"
    full_range: bool = False

    def __post_init__(self) -> None:
        check_dimensions(self.width, self.height, "VideoInfo", even=False)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "fps", to_fraction(self.fps, "VideoInfo"))
        object.__setattr__(self, "bit_depth", check_bit_depth(self.bit_depth, "VideoInfo"))
        if self.chroma not in SUPPORTED_CHROMA:
            raise InputError(
                f"VideoInfo: chroma {self.chroma!r} is not supported, expected one of "
                f"{SUPPORTED_CHROMA}"
            )
        if self.matrix not in SUPPORTED_MATRICES:
            raise InputError(
                f"VideoInfo: matrix {self.matrix!r} is not supported, expected one of "
                f"{SUPPORTED_MATRICES}"
            )
        if self.num_frames is not None and self.num_frames < 0:
            raise InputError(f"VideoInfo: num_frames must be >= 0, got {self.num_frames}")
        object.__setattr__(self, "full_range", bool(self.full_range))

    @property
    def frame_nbytes(self) -> int:
        """Bytes of one planar 4:2:0 frame as stored in .yuv/.y4m files."""
        return frame_nbytes(self.width, self.height, self.bit_depth)


def frame_nbytes(width: int, height: int, bit_depth: int) -> int:
    luma = width * height
    chroma_width, chroma_height = chroma_size(width, height)
    chroma = chroma_width * chroma_height
    return (luma + 2 * chroma) * bytes_per_sample(bit_depth)


@dataclass(eq=False)
class Frame:
    """One planar 4:2:0 picture. Planes are uint8 at 8 bits and uint16 above; chroma
    planes are half the luma size, rounded up (chroma_size).

    Equality compares every sample, so round-trip tests can say `a == b`.
    """

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    bit_depth: int

    def __post_init__(self) -> None:
        self.bit_depth = check_bit_depth(self.bit_depth, "Frame")
        dtype = sample_dtype(self.bit_depth)
        if self.y.ndim != 2:
            raise InputError(f"Frame: luma plane must be 2-D, got shape {self.y.shape}")
        height, width = self.y.shape
        check_dimensions(width, height, "Frame", even=False)
        chroma_width, chroma_height = chroma_size(width, height)
        chroma_shape = (chroma_height, chroma_width)
        for name, plane in (("y", self.y), ("u", self.u), ("v", self.v)):
            if plane.dtype != dtype:
                raise InputError(
                    f"Frame: plane {name} has dtype {plane.dtype}, expected {dtype} for "
                    f"{self.bit_depth}-bit video"
                )
            if name != "y" and plane.shape != chroma_shape:
                raise InputError(
                    f"Frame: plane {name} has shape {plane.shape}, expected {chroma_shape} "
                    f"for {width}x{height} 4:2:0"
                )

    @property
    def width(self) -> int:
        return int(self.y.shape[1])

    @property
    def height(self) -> int:
        return int(self.y.shape[0])

    @property
    def planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (self.y, self.u, self.v)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return self.bit_depth == other.bit_depth and all(
            a.shape == b.shape and np.array_equal(a, b)
            for a, b in zip(self.planes, other.planes, strict=True)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable arrays: not hashable


def crop_frame(frame: Frame, width: int, height: int) -> Frame:
    """The top-left ``width`` x ``height`` of a frame, chroma cropped to chroma_size.

    Cropping an even coded picture to an odd true size keeps every chroma
    sample (the chroma of a padded side is rounded up), so nothing the decoder
    produced is lost but the padding.
    """
    chroma_width, chroma_height = chroma_size(width, height)
    return Frame(
        y=frame.y[:height, :width],
        u=frame.u[:chroma_height, :chroma_width],
        v=frame.v[:chroma_height, :chroma_width],
        bit_depth=frame.bit_depth,
    )
