"""Decode a dvc_edic bitstream to raw YUV or Y4M.

python -m dvc_edic.decode_sequence in.dvce -o out.yuv
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from dvc_edic.bitstream import BitstreamReader, Limits
from dvc_edic.cli import (
    UNTRAINED_NOTE,
    add_common_flags,
    add_max_pixels_flag,
    limits_from_flags,
    run_cli,
    setup_threads,
)
from dvc_edic.codec import SequenceDecoder
from dvc_edic.errors import BitstreamError, InputError
from dvc_edic.io import open_writer
from dvc_edic.weights import load_model


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
    setup_threads(args.threads)
    limits = limits_from_flags(args.max_pixels)
    inp = Path(args.input)
    if inp.is_dir():
        raise InputError(f"{inp}: is a directory, expected a stream file")
    if not inp.is_file():
        raise InputError(f"{inp}: no such stream file")
    model = load_model(args.weights)
    try:
        return _decode(inp, model, args, limits)
    except BitstreamError as exc:
        raise BitstreamError(f"{inp}: {exc}") from exc


def _decode(inp: Path, model, args: argparse.Namespace, limits: Limits) -> int:
    start = time.perf_counter()
    with inp.open("rb") as f:
        reader = BitstreamReader(f, limits)
        decoder = SequenceDecoder(model, reader.header)
        n = 0
        bar = tqdm(
            total=reader.header.frame_count,
            unit="f",
            disable=args.quiet,
            file=sys.stderr,
            desc="decode",
        )
        with open_writer(args.output, decoder.info, overwrite=args.force, inputs=[inp]) as out:
            for packet in reader:
                out.write(decoder.decode(packet))
                n += 1
                bar.update(1)
                bar.set_postfix(fps=f"{n / (time.perf_counter() - start):.2f}")
        bar.close()
    elapsed = time.perf_counter() - start
    h = reader.header
    print(f"{args.output}: {n} frames {h.width}x{h.height} decoded, {n / elapsed:.2f} fps")
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
