"""The in-loop adaptive filter (format version 8): a small symmetric filter per plane,
fitted by the encoder to each frame and sent in the packet's ``lf`` section.

Why: the frames the decoder makes are blurred in ways a fixed decoder cannot know. Block
motion interpolates every sub-pel vector bilinearly, and a P-frame that skips its residual
passes that blur on to the next one; the learned coders smooth texture; the DCT layer
leaves 8x8 steps. Least squares on the frame's own error finds the filter that undoes
most of it for a few bytes a frame (on the dev set at most 0.5 % of walk's bytes and
3.8 % of carphone's), and because it runs in the loop the next frame predicts
from the sharper reference (the same reason H.264 filters in the loop and VVC fits its
adaptive loop filter per picture). Measured before it was built, out of the loop on the
medium preset's frames: PSNR-YUV +0.16 to +0.48 dB at quality 4 (docs/encoder.md).

The filter, for each sample x of a plane with taps d_k and integer coefficients c_k::

    y = clip(x + ((sum_k c_k * (x[p + d_k] + x[p - d_k] - 2 * x[p]) + 2**(S-1)) >> S))

S = COEF_BITS, outside the plane the nearest sample repeats. Written this way the filter
keeps flat areas exactly (each term is a second difference) and needs half the taps of a
full kernel. Luma has the 12 taps of a radius-3 diamond and one filter per activity class
of its 8x8 block (dvc_edic.dctlayer.activity_classes, on the frame before filtering);
each chroma plane has the 6 taps of a radius-2 diamond and one filter. All of it is
integer arithmetic, so encoder and decoder agree to the sample.

Section layout (``lf``, version 8), bits read most significant first:

    3 x u2 mode       per plane y, u, v: 0 off, 1 the plane's last filter again, 2 a new one
    coefficients      for each plane with mode 2, class by class, tap by tap: c - c_last as
                      a signed Exp-Golomb code (c_last: the plane's last filter, 0 if none)
    padding           zero bits to the byte's end; nothing may follow

The "last filter" of a plane is the one its most recent mode-2 section sent; an I packet
forgets them all before its own section is read, so decoding can start at any I-frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dvc_edic.bitstream import FrameType
from dvc_edic.dctlayer import BLOCK, CLASSES, activity_classes
from dvc_edic.entropy import parallel
from dvc_edic.errors import BitstreamError
from dvc_edic.io import Frame, max_sample_value

SECTION = "lf"
COEF_BITS = 6  # coefficients in units of 1/64
COEF_LIMIT = 127  # |c| bound: 12 taps x 127 x (2 x 1023) stays well inside int32
MODE_BITS = 2
MODE_OFF, MODE_KEEP, MODE_NEW = 0, 1, 2
PLANE_NAMES = "yuv"
# Planes of fewer samples are filtered in one band: below about 416x240 luma, threads
# cost more than they save (6 ms on one thread, 10 ms on two, on 2 cores). Speed only.
_PARALLEL_SAMPLES = 1 << 18
_MAX_PREFIX = 10  # zeros before an Exp-Golomb code's 1: enough for |delta| <= 2 * COEF_LIMIT


Taps = tuple[tuple[int, int], ...]


def diamond_taps(radius: int) -> Taps:
    """Half of a diamond's offsets, (dy, dx) > (0, 0): each pairs with (-dy, -dx)."""
    return tuple(
        (dy, dx)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if abs(dy) + abs(dx) <= radius and (dy, dx) > (0, 0)
    )


LUMA_TAPS = diamond_taps(3)
CHROMA_TAPS = diamond_taps(2)
PLANE_TAPS = (LUMA_TAPS, CHROMA_TAPS, CHROMA_TAPS)
PLANE_CLASSES = (CLASSES, 1, 1)


def coefficient_shape(plane: int) -> tuple[int, int]:
    """(classes, taps) of a plane's filter."""
    return PLANE_CLASSES[plane], len(PLANE_TAPS[plane])


# The filters a decoder holds: per plane the last one sent (None: none since the last I).
Filters = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]
NO_FILTERS: Filters = (None, None, None)


def held_filters(frame_type: FrameType, last: Filters) -> Filters:
    """The last filters a packet of ``frame_type`` is read against: an I packet forgets
    them all, so every GOP decodes on its own. Encoder and decoder both ask here."""
    return NO_FILTERS if frame_type == FrameType.I else last


@dataclass(frozen=True)
class LoopFilter:
    """What one packet's section says: each plane's mode and, for mode 2, its coefficients
    ((classes, taps) int32)."""

    modes: tuple[int, int, int]
    coefficients: Filters

    def filters(self, last: Filters) -> Filters:
        """The filter each plane applies (None: unfiltered) given the decoder's last ones."""
        return tuple(  # type: ignore[return-value]
            None if m == MODE_OFF else (c if m == MODE_NEW else prev)
            for m, c, prev in zip(self.modes, self.coefficients, last, strict=True)
        )

    def remembered(self, last: Filters) -> Filters:
        """The decoder's last filters after this section."""
        return tuple(  # type: ignore[return-value]
            c if m == MODE_NEW else prev
            for m, c, prev in zip(self.modes, self.coefficients, last, strict=True)
        )


def _radius(taps: Taps) -> int:
    return max(max(abs(dy), abs(dx)) for dy, dx in taps)


def second_differences(plane: np.ndarray, taps: Taps) -> Iterator[np.ndarray]:
    """x[p + d] + x[p - d] - 2 x[p] (int32, the plane's shape) for each tap in turn, edges
    repeated: what the encoder fits the coefficients on (filter_plane computes the same
    terms in place)."""
    r = _radius(taps)
    x = plane.astype(np.int32)
    padded = np.pad(x, r, mode="edge")
    h, w = x.shape
    for dy, dx in taps:
        a = padded[r + dy: r + dy + h, r + dx: r + dx + w]
        b = padded[r - dy: r - dy + h, r - dx: r - dx + w]
        yield a + b - 2 * x


def filter_plane(plane: np.ndarray, coefficients: np.ndarray, plane_index: int,
                 block_classes: np.ndarray | None, bit_depth: int) -> np.ndarray:
    """One plane through its filter; ``block_classes`` (luma): each 8x8 block's class.

    The plane is first extended to whole blocks by repeating its edge, which leaves every
    sample's neighbours as they were (repeating a repeated edge repeats the edge), so each
    block's coefficients apply by broadcasting instead of a per-sample look-up. Bands of
    block rows run on the entropy stage's threads (dvc_edic.entropy.parallel): every
    sample is computed by the same integer operations whichever thread runs it.
    """
    taps = PLANE_TAPS[plane_index]
    r = _radius(taps)
    h, w = plane.shape
    nby, nbx = -(-h // BLOCK), -(-w // BLOCK)
    ww = nbx * BLOCK
    x = np.pad(plane.astype(np.int32), ((r, r + nby * BLOCK - h), (r, r + ww - w)), mode="edge")
    coef = coefficients.astype(np.int32)
    # per block row and column, (classes of the row, nbx, taps): the coefficients that apply
    per_block = coef[block_classes] if coef.shape[0] > 1 else None
    out = np.empty((nby * BLOCK, ww), dtype=np.int32)

    def band(b0: int, b1: int) -> None:
        rows = (b1 - b0) * BLOCK
        top = b0 * BLOCK
        centre = x[r + top: r + top + rows, r: r + ww]
        acc = np.zeros((rows, ww), dtype=np.int32)
        term = np.empty((rows, ww), dtype=np.int32)
        blocks = term.reshape(b1 - b0, BLOCK, nbx, BLOCK)
        mine = None if per_block is None else per_block[b0:b1]
        # sum_k c_k (a_k + b_k - 2 x) = sum_k c_k (a_k + b_k) - 2 (sum_k c_k) x
        for k, (dy, dx) in enumerate(taps):
            np.add(x[r + top + dy: r + top + dy + rows, r + dx: r + dx + ww],
                   x[r + top - dy: r + top - dy + rows, r - dx: r - dx + ww], out=term)
            if mine is None:
                term *= coef[0, k]
            else:
                blocks *= mine[:, :, k][:, None, :, None]
            acc += term
        if mine is None:
            np.multiply(centre, -2 * int(coef[0].sum()), out=term)
        else:
            np.multiply(centre.reshape(b1 - b0, BLOCK, nbx, BLOCK),
                        -2 * mine.sum(axis=2)[:, None, :, None], out=blocks)
        acc += term
        acc += 1 << (COEF_BITS - 1)
        acc >>= COEF_BITS
        np.add(acc, centre, out=out[top: top + rows])

    # two bands a thread (parallel.run's pool has one thread fewer than it has bands), on
    # planes large enough to pay for the threads
    bands = 2 * parallel.threads() if plane.size >= _PARALLEL_SAMPLES else 1
    parallel.run(band, nby, -(-nby // bands))
    return np.clip(out[:h, :w], 0, max_sample_value(bit_depth)).astype(plane.dtype)


def apply_filters(frame: Frame, filters: Filters) -> Frame:
    """``frame`` with each plane through its filter (None: as it is)."""
    classes = activity_classes(frame, planes=1)[0] if filters[0] is not None else None
    planes = [
        p if f is None else filter_plane(p, f, i, classes if i == 0 else None, frame.bit_depth)
        for i, (p, f) in enumerate(zip(frame.planes, filters, strict=True))
    ]
    return Frame(y=planes[0], u=planes[1], v=planes[2], bit_depth=frame.bit_depth)


def _signed_to_code(v: int) -> int:
    return 2 * v - 1 if v > 0 else -2 * v


def exp_golomb_bits(v: int) -> int:
    """Length of the signed Exp-Golomb code of ``v``: the encoder's price of a delta."""
    return 2 * (_signed_to_code(v) + 1).bit_length() - 1


class _BitWriter:
    def __init__(self) -> None:
        self.value = 0
        self.length = 0

    def put(self, value: int, bits: int) -> None:
        self.value = (self.value << bits) | value
        self.length += bits

    def signed_exp_golomb(self, v: int) -> None:
        u = _signed_to_code(v) + 1
        n = u.bit_length()
        self.put(0, n - 1)
        self.put(u, n)

    def to_bytes(self) -> bytes:
        pad = -self.length % 8
        return (self.value << pad).to_bytes((self.length + pad) // 8, "big")


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.length = 8 * len(data)
        self.pos = 0

    def get(self, bits: int, what: str) -> int:
        if self.pos + bits > self.length:
            raise BitstreamError(
                f"section {SECTION!r}: {what} needs {bits} bits at bit {self.pos}, the section "
                f"has {self.length}; it is truncated"
            )
        self.pos += bits
        return (self.value >> (self.length - self.pos)) & ((1 << bits) - 1)

    def signed_exp_golomb(self, what: str) -> int:
        zeros = 0
        while self.get(1, what) == 0:
            zeros += 1
            if zeros > _MAX_PREFIX:
                raise BitstreamError(
                    f"section {SECTION!r}: {what} has more than {_MAX_PREFIX} leading zeros "
                    f"(bit {self.pos}); no delta needs them"
                )
        u = (1 << zeros | self.get(zeros, what)) - 1
        return (u + 1) // 2 if u % 2 else -(u // 2)

    def check_end(self) -> None:
        rest = self.length - self.pos
        if rest >= 8 or self.value & ((1 << rest) - 1):
            raise BitstreamError(
                f"section {SECTION!r}: {rest} bits after the last coefficient, expected fewer "
                f"than 8 and all zero"
            )


def section_bytes(section: LoopFilter, last: Filters) -> bytes:
    """The ``lf`` section of ``section`` for a decoder that holds ``last``."""
    writer = _BitWriter()
    for mode in section.modes:
        writer.put(mode, MODE_BITS)
    for plane, (mode, coef) in enumerate(zip(section.modes, section.coefficients, strict=True)):
        if mode != MODE_NEW:
            continue
        assert coef is not None and coef.shape == coefficient_shape(plane)
        prev = last[plane]
        deltas = coef if prev is None else coef - prev
        for v in deltas.ravel():
            writer.signed_exp_golomb(int(v))
    return writer.to_bytes()


def read_section(data: bytes, last: Filters) -> LoopFilter:
    """Parse an ``lf`` section against the decoder's ``last`` filters; every malformed
    section raises BitstreamError naming what is wrong."""
    reader = _BitReader(data)
    modes = tuple(reader.get(MODE_BITS, f"plane {n}'s mode") for n in PLANE_NAMES)
    coefficients: list[np.ndarray | None] = []
    for plane, mode in enumerate(modes):
        name = PLANE_NAMES[plane]
        if mode > MODE_NEW:
            raise BitstreamError(
                f"section {SECTION!r}: plane {name} has mode {mode}, expected 0 (off), "
                f"1 (keep) or 2 (new)"
            )
        if mode == MODE_KEEP and last[plane] is None:
            raise BitstreamError(
                f"section {SECTION!r}: plane {name} keeps its last filter, but none was sent "
                f"since the last I-frame"
            )
        coefficients.append(None)
    if not any(modes):
        raise BitstreamError(f"section {SECTION!r}: every plane is off; the encoder "
                             f"leaves such a section out")
    for plane, mode in enumerate(modes):
        if mode != MODE_NEW:
            continue
        shape = coefficient_shape(plane)
        prev = last[plane]
        flat = np.zeros(shape[0] * shape[1], dtype=np.int32) if prev is None else prev.ravel()
        coef = np.empty_like(flat)
        for k in range(flat.size):
            what = f"plane {PLANE_NAMES[plane]}'s coefficient {k}"
            c = int(flat[k]) + reader.signed_exp_golomb(what)
            if abs(c) > COEF_LIMIT:
                raise BitstreamError(
                    f"section {SECTION!r}: {what} is {c}, expected -{COEF_LIMIT}..{COEF_LIMIT}"
                )
            coef[k] = c
        coefficients[plane] = coef.reshape(shape)
    reader.check_end()
    return LoopFilter(modes, tuple(coefficients))  # type: ignore[arg-type]
