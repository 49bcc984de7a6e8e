"""SIGINT / SIGTERM end a training run at the next step boundary, with a checkpoint.

The first signal only raises a flag: the step in progress finishes, a
checkpoint is written, and the process exits with 128 + the signal number
(130 for Ctrl-C, 143 for SIGTERM), so a script that chains stages does not
go on to the next one. A second Ctrl-C stops at once, without a checkpoint.

Requests nest: a run inside a driver (the campaign, which sets up each stage
while its own request listens) starts with any signal the driver already
caught, and passes the signals it catches up to the driver.
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
        self._outer: StopRequest | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._outer is not None and self._outer.signal is None:
            self._outer.signal = signum
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __enter__(self) -> StopRequest:
        # Handlers can only be installed from the main thread; elsewhere (e.g. a
        # notebook's worker thread) the run simply keeps Python's defaults.
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                self._previous[sig] = signal.signal(sig, self._handle)
                outer = getattr(self._previous[sig], "__self__", None)
                if isinstance(outer, StopRequest):
                    self._outer = outer
        if self._outer is not None:
            self.signal = self._outer.signal
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        self._outer = None


def exit_code(signum: int | None) -> int:
    return 0 if signum is None else SIGNAL_EXIT_BASE + signum
