"""Following a growing log file from a worker thread: whole lines as they are written."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from loomtui.execution.log_lines import MAX_TAIL_BYTES, LogCursor, whole_lines

POLL_S: Final = 0.2


def follow_lines(path: Path, emit: Callable[[list[str]], object], cancelled: Callable[[], bool],
                 start: int | None = None) -> None:
    """Call `emit` with each batch of whole lines written to `path` from byte `start` on (default: its end
    now), until `cancelled()`, across the log's moves aside as it grows (agent.log.1); a file cut back (a
    full disk) is followed from its new end, a missing one waited for."""
    cursor = LogCursor(path, start)
    pending = b""
    while not cancelled():
        # What is shown is the newest; more than a tail's worth since the last look is skipped
        # (`sandbox logs` has it all), not read whole into memory.
        skipped = max(0, cursor.unread() - MAX_TAIL_BYTES)
        if skipped:
            cursor.skip(skipped)
            pending = b""
        chunk = cursor.read(MAX_TAIL_BYTES)
        while chunk:
            pending += chunk
            chunk = cursor.read(MAX_TAIL_BYTES) if len(pending) < MAX_TAIL_BYTES else b""
        whole, pending = whole_lines(pending)
        if whole or skipped:
            said = [f"… {skipped:,} bytes of output skipped (`loomtui sandbox logs` has them)"] if skipped else []
            emit([*said, *(line.decode("utf-8", "replace") for line in whole)])
        time.sleep(POLL_S)
