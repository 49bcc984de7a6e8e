"""Decode a dvc_edic bitstream to raw YUV or Y4M.

python -m dvc_edic.decode_sequence in.dvce -o out.yuv
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dvc_edic.bitstream import BitstreamReader, Limits, Packet
from dvc_edic.cli import (
    UNTRAINED_NOTE,
    add_common_flags,
    add_max_pixels_flag,
    check_threads,
    limits_from_flags,
    plural,
    progress_bar,
    run_cli,
    setup_threads,
    status,
)
from dvc_edic.errors import BitstreamError, InputError
from dvc_edic.image import split_crop
from dvc_edic.io.frames import Frame, crop_frame
from dvc_edic.io.opener import check_writer_path, open_writer

if TYPE_CHECKING:
    from dvc_edic.codec import SequenceDecoder

# The codec (and torch) is imported in _decode, once the stream's header
# and the output path have been checked: --help and those errors answer at once.


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dvc_edic.decode_sequence",
        description=(
            "Decode a dvc_edic stream. The output format follows the extension: .yuv writes raw "
            "planar 4:2:0 (16-bit little-endian words above 8 bits), .y4m writes YUV4MPEG2."
        ),
        epilog=UNTRAINED_NOTE,
    )
    p.add_argument("input", help="dvc_edic stream (.dvce)")
    p.add_argument("-o", "--output", required=True, help="decoded video (.yuv or .y4m)")
    add_max_pixels_flag(p, "decode")
    add_common_flags(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_threads(args.threads)
    limits = limits_from_flags(args.max_pixels)
    inp = Path(args.input)
    if inp.is_dir():
        raise InputError(f"{inp}: is a directory, expected a stream file")
    if not inp.is_file():
        raise InputError(f"{inp}: no such stream file")
    try:
        return _decode(inp, args, limits)
    except BitstreamError as exc:
        raise BitstreamError(f"{inp}: {exc}") from exc


def _decode(inp: Path, args: argparse.Namespace, limits: Limits) -> int:
    with inp.open("rb") as f:
        reader = BitstreamReader(f, limits)
        h = reader.header
        packets = iter(reader)
        first = next(packets, None)
        crop = None if first is None else split_crop(first, h.width, h.height)[1]
        height, width = (h.height, h.width) if crop is None else crop
        check_writer_path(args.output, overwrite=args.force, inputs=[inp])
        coded = "" if (width, height) == (h.width, h.height) else (
            f" (a still image, coded as {h.width}x{h.height})")
        status(f"decode {inp} -> {args.output}: {plural(h.frame_count, 'frame')} "
               f"{width}x{height}{coded} {h.bit_depth}-bit", args.quiet)
        from dvc_edic.codec import SequenceDecoder
        from dvc_edic.weights import load_model

        setup_threads(args.threads)
        model = load_model(args.weights)
        start = time.perf_counter()
        decoder = SequenceDecoder(model, h)
        info = dataclasses.replace(decoder.info, width=width, height=height)
        n = 0
        with (
            progress_bar(h.frame_count, "decode", args.quiet) as bar,
            open_writer(args.output, info, overwrite=args.force, inputs=[inp]) as out,
        ):
            for packet in itertools.chain([] if first is None else [first], packets):
                out.write(_decode_picture(decoder, packet, crop, n))
                n += 1
                bar.update(1)
                bar.set_postfix(fps=f"{n / (time.perf_counter() - start):.2f}")
    elapsed = time.perf_counter() - start
    print(f"{args.output}: {plural(n, 'frame')} {width}x{height} decoded, "
          f"{n / elapsed:.2f} fps")
    return 0


def _decode_picture(decoder: SequenceDecoder, packet: Packet, crop: tuple[int, int] | None,
                    index: int) -> Frame:
    """One decoded frame, at the stream's true size.

    A still image's stream (python -m dvc_edic.image) is coded at its size padded
    to even, which 4:2:0 needs, and carries its true size in a ``crop`` section:
    the frame is cropped to it, so the output never holds the padding.
    """
    header = decoder.header
    picture, size = split_crop(packet, header.width, header.height)
    if size != crop:
        raise BitstreamError(f"frame {index}: crop size {size}, the stream's first frame "
                             f"has {crop}")
    frame = decoder.decode(picture)
    return frame if crop is None else crop_frame(frame, crop[1], crop[0])


def cli(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        # The process's own command line (``python -m``, the console script): the process
        # is this tool, so it may change how malloc serves it. Called from Python with
        # arguments, it leaves the caller's process as it is.
        from dvc_edic.memory import keep_freed_memory

        keep_freed_memory()  # large tensors reuse freed memory instead of faulting in pages
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
