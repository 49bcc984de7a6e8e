"""Exception types that callers catch.

One type per kind of failure, so a user (or a fuzzer) can tell a broken stream
from a bad input file from a wrong weights file without parsing messages.
"""

from __future__ import annotations


class DvcEdicError(Exception):
    """Base class of every error this package raises on purpose."""


class BitstreamError(DvcEdicError):
    """A stream is truncated, corrupted, or of a format/model this decoder cannot read."""


class InputError(DvcEdicError, ValueError):
    """An input file or argument is unusable (wrong size, odd dimensions, unknown format...)."""


class WeightsError(DvcEdicError):
    """A weights file is missing, unreadable, or does not match the stream or config."""


class DvcEdicWarning(UserWarning):
    """Base class of the warnings this package issues to a user.

    The command-line tools print these as one ``warning: ...`` line on stderr
    (dvc_edic.cli.run_cli) rather than with Python's file-and-line prefix,
    which means nothing to someone running the tool.
    """
