"""Following a growing log file from a worker thread: whole lines as they are written."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from loomtui.execution.log_lines import MAX_TAIL_BYTES, whole_lines

POLL_S: Final = 0.2


def follow_lines(path: Path, emit: Callable[[list[str]], object], cancelled: Callable[[], bool],
                 start: int | None = None) -> None:
    """Call `emit` with each batch of whole lines written to `path` from byte `start` on (default: its end
    now), until `cancelled()`; a file cut back (a full disk, a log moved aside) is followed from its new end,
    a missing one waited for."""
    offset = start if start is not None else (path.stat().st_size if path.exists() else 0)
    pending = b""
    while not cancelled():
        skipped = 0
        try:
            size = path.stat().st_size
            if size < offset:
                offset, pending = size, b""
            elif size > offset:
                # What is shown is the newest; more than a tail's worth since the last look is skipped
                # (`sandbox logs` has it all), not read whole into memory.
                skipped = max(0, size - offset - MAX_TAIL_BYTES)
                with open(path, "rb") as handle:
                    handle.seek(offset + skipped)
                    chunk = handle.read(size - offset - skipped)
                pending = b"" if skipped else pending
                offset = size
                pending += chunk
        except OSError:
            pass  # not written yet, or removed with its sandbox
        whole, pending = whole_lines(pending)
        if whole or skipped:
            said = [f"… {skipped:,} bytes of output skipped (`loomtui sandbox logs` has them)"] if skipped else []
            emit([*said, *(line.decode("utf-8", "replace") for line in whole)])
        time.sleep(POLL_S)
