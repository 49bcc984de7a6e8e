"""SIGINT / SIGTERM end a training run at the next step boundary, with a checkpoint.

The first signal only raises a flag: the step in progress finishes, a
checkpoint is written, and the process exits with 128 + the signal number
(130 for Ctrl-C, 143 for SIGTERM), so a script that chains stages does not
go on to the next one. A second Ctrl-C stops at once, without a checkpoint.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)
SIGNAL_EXIT_BASE = 128  # shell convention: exit status of a process ended by signal N


class StopRequest:
    """Context manager: installs the handlers, and restores the previous ones on exit."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __enter__(self) -> StopRequest:
        # Handlers can only be installed from the main thread; elsewhere (e.g. a
        # notebook's worker thread) the run simply keeps Python's defaults.
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def exit_code(signum: int | None) -> int:
    return 0 if signum is None else SIGNAL_EXIT_BASE + signum
