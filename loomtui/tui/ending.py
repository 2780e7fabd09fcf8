"""How the app ends when the system asks: SIGTERM (a `kill`, a service stop) and SIGHUP (the terminal
or the tmux session closed) end it as `q` does, so the terminal is left as it was found (no alternate
screen, no mouse reporting, a cursor) and whatever runs after it (the demo's cleanup) runs."""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from typing import Any

from loomtui.interrupts import on_ending_signals


def ends_on_signals(app: Any) -> AbstractContextManager[None]:
    """While the block runs `app`, SIGTERM and SIGHUP make it exit with 128 + the signal's number."""

    def ask_to_end(signum: int) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # before the app's loop runs, or after it ended: end as the signal would
            raise SystemExit(128 + signum) from None
        loop.call_soon_threadsafe(lambda: app.exit(return_code=128 + signum))

    return on_ending_signals(ask_to_end)
