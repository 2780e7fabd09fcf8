"""Reading an agent's (or a check's) log as lines, in bounded memory whatever it wrote.

The writer keeps what it writes (its output goes to the file as it comes); a reader must
not take the file's whole size into memory to show its end: an agent can print 400 MB
with no newline, and the app showing its tail grew to 1.26 GB. A reader takes at most
MAX_TAIL_BYTES of a file's end, and a line longer than MAX_LINE_BYTES arrives in pieces.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

MAX_TAIL_BYTES: Final = 1 << 20
"""Of a file's end, at most this much is read for its last lines."""
MAX_LINE_BYTES: Final = 64 << 10
"""A line longer than this is handed on in pieces of this size, as if it had newlines."""
_BLOCK: Final = 8192


def tail_lines(path: Path, count: int, end: int | None = None) -> list[str]:
    """The last `count` lines of `path` before byte `end` (default: its end), read backwards, from at
    most MAX_TAIL_BYTES of it; [] when it is missing."""
    if count <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            stop = handle.seek(0, os.SEEK_END) if end is None else end
            start = stop
            data = b""
            while start > 0 and data.count(b"\n") <= count and stop - start < MAX_TAIL_BYTES:
                start = max(0, start - max(_BLOCK, stop - start), stop - MAX_TAIL_BYTES)
                handle.seek(start)
                data = handle.read(stop - start)
    except FileNotFoundError:
        return []
    lines, rest = whole_lines(data)
    return [line.decode("utf-8", "replace") for line in [*lines, *([rest] if rest else [])]][-count:]


def earlier_log(path: Path) -> Path:
    """Where a log's earlier output is moved once the log is full (`agent.log.1`, see agent_log)."""
    return path.with_name(f"{path.name}.1")


def log_tail(path: Path, count: int, end: int | None = None) -> list[str]:
    """As `tail_lines`, continued into the log moved aside (`earlier_log`) where the log holds fewer lines:
    just after a move, the log's tail was its one line saying where the rest was."""
    lines = tail_lines(path, count, end)
    if len(lines) < count:
        lines = tail_lines(earlier_log(path), count - len(lines)) + lines
    return lines


def whole_lines(pending: bytes) -> tuple[list[bytes], bytes]:
    """`pending` split into its whole lines and what follows the last newline; a line (or the rest)
    longer than MAX_LINE_BYTES is cut into pieces of that size, so the rest stays under it. A line's
    ending `\r\n` (a terminal's: an interactive agent's pane) is its newline; a `\r` inside it stays."""
    *lines, rest = pending.split(b"\n")
    lines = [line.removesuffix(b"\r") for line in lines]
    pieces = [line[i:i + MAX_LINE_BYTES] for line in lines for i in range(0, max(len(line), 1), MAX_LINE_BYTES)]
    while len(rest) >= MAX_LINE_BYTES:
        pieces.append(rest[:MAX_LINE_BYTES])
        rest = rest[MAX_LINE_BYTES:]
    return pieces, rest


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


class LogCursor:
    """A reader's place in a log that its writer may move aside as it grows (`agent.log` to `agent.log.1`,
    see agent_log): what `read` returns is what was written since, the rest of the moved file first and
    then the new one from its start (a reader kept its offset into the new file and went silent for good,
    or skipped to its end and lost what came between)."""

    def __init__(self, path: Path, offset: int | None = None) -> None:
        self.path = path
        self.inode = _inode(path)
        self.offset = offset if offset is not None else (_size(path) or 0)

    def _reading(self) -> Path | None:
        """The file this cursor is in: the log, or the log moved aside; None when it is neither any more."""
        if self.inode is None or _inode(self.path) == self.inode:
            return self.path
        aside = earlier_log(self.path)
        return aside if _inode(aside) == self.inode else None

    def unread(self) -> int:
        """Bytes written past the cursor in the file it is in (a moved file's remaining, not the new one's)."""
        where = self._reading()
        size = _size(where) if where is not None else None
        return max(0, size - self.offset) if size is not None else 0

    def skip(self, count: int) -> None:
        """Move `count` bytes on without reading them (a reader that shows only the newest)."""
        self.offset += count

    def read(self, limit: int) -> bytes:
        """Up to `limit` bytes written since the last read (b"" when none)."""
        where = self._reading()
        if where is not None:
            try:
                with open(where, "rb") as handle:
                    if self.inode is not None and os.fstat(handle.fileno()).st_ino != self.inode:
                        return self.read(limit)  # moved aside between the look and the open: look again
                    size = handle.seek(0, os.SEEK_END)
                    if size < self.offset:  # cut back (a full disk): from its new end
                        self.offset = size
                    handle.seek(self.offset)
                    chunk = handle.read(limit)
            except FileNotFoundError:
                chunk = b""
            if self.inode is None:
                self.inode = _inode(where)
            self.offset += len(chunk)
            if chunk or where == self.path:
                return chunk
        # The file it was in was moved aside and is read to its end (or gone): on to the new log, from 0.
        self.inode, self.offset = _inode(self.path), 0
        return self.read(limit) if self.inode is not None else b""


def _size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None
