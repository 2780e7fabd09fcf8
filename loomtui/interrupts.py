"""SIGTERM and SIGHUP, the signals that ask a process to end (a `kill`, a service stop, a terminal or
tmux session closing), turned into an ending the process carries out itself: its cleanup runs."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def on_ending_signals(act: Callable[[int], None]) -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP call `act(signum)` in the main thread (which may raise
    to unwind the block) instead of ending the process; the handlers before are put back after."""

    def handler(signum: int, _frame: object) -> None:
        act(signum)

    previous = {signum: signal.signal(signum, handler) for signum in ENDING_SIGNALS}
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


class EndingSignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised as Ctrl-C is (`as_interrupt`); the process ends with 128 + `signum`, as one the
    signal ended."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_ending(signum: int) -> None:
    raise EndingSignal(signum)


def as_interrupt() -> contextlib.AbstractContextManager[None]:
    """While the block runs, SIGTERM and SIGHUP end it as Ctrl-C does (an `EndingSignal`, a KeyboardInterrupt):
    what it undoes on the way out is undone (a `sandbox rm` whose terminal closed left its sandbox marked
    removed, for good)."""
    return on_ending_signals(_raise_ending)
