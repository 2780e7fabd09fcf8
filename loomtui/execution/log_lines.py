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
