"""An agent's log: its output appended as it comes, a failed write cut back to the last whole line, and
a limit past which nothing more is kept (the supervisor writes it; `sandbox logs` and the app read it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final


class LogWriteFailed(Exception):
    """Writing the agent log failed; the log was cut back to its last whole line."""


MAX_LOG_BYTES: Final = 256 << 20
"""An agent's log keeps this much of its output, then says so and keeps no more (3 GB in 15 s filled
the disk the store and the audit log live on). The agent runs on; only its output is dropped."""


class LogWriter:
    """Appends the agent's output to its log; a failed write cuts the log back to its last whole line."""

    def __init__(self, path: Path, limit: int = MAX_LOG_BYTES) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.size = os.fstat(self.fd).st_size
        self.whole = self.size  # where the last complete line ends
        self.lines = 0
        self.limit = limit
        self.full = False

    def write(self, data: bytes) -> None:
        """Append `data`; past the limit, one line saying so, then nothing (`full` turns True)."""
        if self.full:
            return
        if self.size + len(data) > self.limit:
            self.full = True
            data = (b"\n" if self.size > self.whole else b"") + (
                f"loomtui: the agent's output passed {self.limit >> 20} MiB; the rest of it is not kept\n".encode())
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except OSError as exc:
            try:
                os.ftruncate(self.fd, self.whole)
                self.size = self.whole
            except OSError:
                pass  # /dev/full and the like: nothing was kept to cut back
            raise LogWriteFailed(f"{exc.strerror or exc} writing {self.path}") from None
        self.size += len(data)
        self.lines += data.count(b"\n")
        if data.endswith(b"\n"):
            self.whole = self.size

    def close(self) -> None:
        os.close(self.fd)
