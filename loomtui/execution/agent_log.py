"""An agent's log: its output appended as it comes, a failed write cut back to the last whole line, and
a bound on disk that keeps the newest output (the supervisor writes it; `sandbox logs` and the app read it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from loomtui.execution.log_lines import earlier_log


class LogWriteFailed(Exception):
    """Writing the agent log failed; the log was cut back to its last whole line."""


MAX_LOG_BYTES: Final = 128 << 20
"""An agent's log file holds at most this much; past it the file is moved aside (`earlier_log`, replacing
one moved there before) and a new one begun, so the newest 128 to 256 MiB of its output are kept, where an
agent says why it failed (the first 256 MiB were kept: an agent that printed 300 MB lost its last line,
and a run after it kept nothing). 3 GB in 15 s had filled the disk the store and the audit log live on.
The agent runs on; only its oldest output is dropped."""


class LogWriter:
    """Appends the agent's output to its log; a failed write cuts the log back to its last whole line."""

    def __init__(self, path: Path, limit: int = MAX_LOG_BYTES) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.size = os.fstat(self.fd).st_size
        self.whole = self.size  # where the last complete line ends
        self.lines = 0
        self.limit = limit
        self.dropped = 0
        """Bytes of output no longer kept (an earlier log replaced by a newer one)."""
        self.stuck = False  # the log could not be moved aside: nothing more is kept
        self.header = 0  # bytes of the line this log begins with saying where the earlier output is

    @property
    def full(self) -> bool:
        """Whether some of the agent's output is no longer kept."""
        return self.dropped > 0 or self.stuck

    def write(self, data: bytes) -> None:
        """Append `data`; past the limit, the log is moved aside first and a new one begun with a line
        saying where the earlier output is (if it cannot be, one line saying so, then nothing)."""
        if self.stuck:
            return
        if self.size + len(data) > self.limit:
            try:
                self._move_aside()
            except OSError:
                self.stuck = True
                data = (b"\n" if self.size > self.whole else b"") + (
                    f"loomtui: the agent's output passed {self.limit >> 20} MiB; the rest of it is not kept\n"
                    .encode())
        self._append(data)

    def _move_aside(self) -> None:
        aside = earlier_log(self.path)
        if self.size > self.whole:  # the line it was in goes on in the new log: this one ends whole
            self._append(b"\n")
        try:
            replaced = aside.stat().st_size
        except FileNotFoundError:
            replaced = 0
        if self.header:
            self._header_now_older()
        os.replace(self.path, aside)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        os.close(self.fd)
        self.fd, self.size, self.whole = fd, 0, 0
        self.dropped += replaced
        older = "; older output is not kept" if self.dropped else ""
        header = f"── loomtui: the agent's output before this is in {aside.name}{older} ──\n".encode()
        self._append(header)
        self.header = len(header)

    def _header_now_older(self) -> None:
        """This log, about to be the earlier one, said the output before it is in the earlier one: itself then,
        and what was there is dropped. Said again in place, padded to the same length (every offset after it
        a reader holds stays true)."""
        said = "── loomtui: the agent's output before this is not kept ──".encode()
        if len(said) >= self.header:
            return  # no room (a log named so short): it says what it said
        fd = os.open(self.path, os.O_WRONLY)  # not O_APPEND, where Linux writes at the end whatever the offset
        try:
            os.pwrite(fd, said.ljust(self.header - 1) + b"\n", 0)
        finally:
            os.close(fd)

    def _append(self, data: bytes) -> None:
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
