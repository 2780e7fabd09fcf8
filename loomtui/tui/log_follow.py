"""Following a growing log file from a worker thread: whole lines as they are written."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

POLL_S: Final = 0.2


def follow_lines(path: Path, emit: Callable[[list[str]], object], cancelled: Callable[[], bool]) -> None:
    """Call `emit` with each batch of whole lines written to `path` from its end now on, until
    `cancelled()`; a file cut back (a full disk) is followed from its new end, a missing one waited for."""
    offset = path.stat().st_size if path.exists() else 0
    pending = b""
    while not cancelled():
        try:
            size = path.stat().st_size
            if size < offset:
                offset, pending = size, b""
            elif size > offset:
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    pending += handle.read(size - offset)
                offset = size
        except OSError:
            pass  # not written yet, or removed with its sandbox
        *whole, pending = pending.split(b"\n")
        if whole:
            emit([line.decode("utf-8", "replace") for line in whole])
        time.sleep(POLL_S)
