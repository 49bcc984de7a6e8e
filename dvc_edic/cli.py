"""Pieces shared by the command-line tools: common flags, threads, progress, errors.

Nothing here imports torch at module level: the tools build their argument
parsers from this module, and ``--help`` (or a usage error) must answer without
paying the seconds that importing torch costs.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from dvc_edic import ignore_known_warnings
from dvc_edic.bitstream.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_PIXELS_FRAME, Limits
from dvc_edic.errors import DvcEdicError, DvcEdicWarning, InputError

if TYPE_CHECKING:
    from tqdm import tqdm

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
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress output (the first line, and the bar shown when stderr is a terminal)",
    )


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


def check_threads(n: int) -> None:
    """Refuse a bad --threads before anything slow (importing torch) happens."""
    if n < 1:
        raise DvcEdicError(f"--threads must be at least 1, got {n}")


def setup_threads(n: int) -> None:
    """Set torch's thread count; imports torch, so call it once the run is under way."""
    check_threads(n)
    import torch

    torch.set_num_threads(n)


def plural(count: int, noun: str) -> str:
    """``1 frame``, ``2 frames``: the summaries count things a user reads."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def status(message: str, quiet: bool) -> None:
    """One progress line on stderr (not with -q), flushed so it shows before slow work.

    The tools print one as soon as the input is known to be usable, before
    importing torch and loading the model: otherwise nothing at all appears for
    the several seconds those take.
    """
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def progress_bar(total: int | None, desc: str, quiet: bool) -> tqdm:
    """A frames progress bar on stderr, drawn only when stderr is a terminal.

    Use it as a context manager (``with progress_bar(...) as bar:``) so that an
    error closes the bar, ending its line, before run_cli prints ``error: ...``:
    the error then never lands on the end of the bar's line, and the bar is not
    drawn a second time when the object is garbage-collected. Where stderr is a
    file or a pipe, tqdm's carriage-return redraws would only pile up into one
    long line, so the bar is left out there (tqdm's ``disable=None``).
    """
    from tqdm import tqdm

    return tqdm(total=total, unit="f", desc=desc, file=sys.stderr,
                disable=True if quiet else None)


def _warning_printer(other: Callable[..., None]) -> Callable[..., None]:
    """A warnings.showwarning that prints the package's own warnings as ``warning: ...``
    lines and hands anything else to ``other`` (what was installed before)."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, DvcEdicWarning):
            print(f"warning: {message}", file=sys.stderr if file is None else file)
        else:
            other(message, category, filename, lineno, file, line)

    return show


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Turn the package's errors and Ctrl-C into one-line messages and exit codes."""
    warnings.simplefilter("default")
    ignore_known_warnings()  # what a caller imports after this point stays quiet
    previous = warnings.showwarning
    warnings.showwarning = _warning_printer(previous)
    try:
        return main(argv)
    except DvcEdicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: no output was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        warnings.showwarning = previous  # in-process callers (tests) get theirs back
