"""Pieces shared by the command-line tools: common flags, threads, progress, errors."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

import torch

from dvc_edic.bitstream.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_PIXELS_FRAME, Limits
from dvc_edic.errors import DvcEdicError, InputError

EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # the shell convention for SIGINT
DEFAULT_THREADS = 2

UNTRAINED_NOTE = (
    "Weights: with no --weights, the model shipped inside the package is used. If this copy "
    "ships none, a seeded UNTRAINED model is used and a warning says so: its streams are real "
    "and decode exactly, but its quality is meaningless. Nothing is ever downloaded."
)


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        metavar="PATH",
        default=None,
        help="safetensors weights file (default: the model shipped in the package)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        metavar="N",
        help=f"CPU threads for torch (default: {DEFAULT_THREADS})",
    )
    parser.add_argument(
        "-f", "--force", action="store_true", help="overwrite an existing output file"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


# What --max-pixels means to each tool; the default and the flag are shared so
# that an encoder never writes a stream the decoder with the same flag refuses.
MAX_PIXELS_HELP = {
    "encode": (
        "refuse input frames larger than N pixels (width x height) before coding anything "
        "(default: {default} = {w}x{h}, what a default decoder accepts). A stream encoded "
        "with a larger N needs the same --max-pixels to decode"
    ),
    "decode": (
        "refuse streams whose frames are larger than N pixels (width x height) before "
        "allocating anything (default: {default} = {w}x{h}). Decoder memory grows with the "
        "frame area, so raise this only for streams you trust"
    ),
}


def add_max_pixels_flag(parser: argparse.ArgumentParser, tool: str) -> None:
    """Add --max-pixels; `tool` ("encode" or "decode") picks the help text."""
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=MAX_PIXELS_HELP[tool].format(
            default=DEFAULT_MAX_PIXELS, w=DEFAULT_MAX_PIXELS_FRAME[0], h=DEFAULT_MAX_PIXELS_FRAME[1]
        ),
    )


def limits_from_flags(max_pixels: int) -> Limits:
    """The stream limits a CLI run uses: the defaults, with --max-pixels applied."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise InputError(f"--max-pixels must be at least 1, got {max_pixels!r}")
    try:
        return Limits(max_pixels=max_pixels)
    except InputError as exc:
        raise InputError(f"--max-pixels: {exc}") from exc


def setup_threads(n: int) -> None:
    if n < 1:
        raise DvcEdicError(f"--threads must be at least 1, got {n}")
    torch.set_num_threads(n)


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Turn the package's errors and Ctrl-C into one-line messages and exit codes."""
    warnings.simplefilter("default")
    try:
        return main(argv)
    except DvcEdicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: no output was written", file=sys.stderr)
        return EXIT_INTERRUPTED
