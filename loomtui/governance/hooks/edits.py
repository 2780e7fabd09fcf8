"""From a tool call's old and new text to the line ranges of the current file it changes.

Stdlib only: it runs in the hook process, before every edit an agent makes.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MAX_DIFF_LINES: Final = 20_000  # beyond this a rewrite claims the whole file rather than diffing it
MAX_RANGES: Final = 20
MAX_TARGETS: Final = 50
MAX_PATH_CHARS: Final = 4096
"""Linux's PATH_MAX: a longer path names no file (resolving a million parts of one took minutes)."""
MAX_READ_BYTES: Final = 8 * 1024 * 1024
"""The largest file whose changed lines are worked out (a larger one is claimed whole)."""

class CommandNotRead(ValueError):
    """A command whose written files cannot be told (unbalanced quotes, a here-document that never ends,
    more files than are checked, a patch or archive not readable before it runs): judged as such, never as
    one that writes nothing."""


@dataclass(frozen=True)
class EditTarget:
    """A file a tool call will write, and the line ranges of its current text it changes.

    `lines` None: the whole file (new, unreadable or rewritten beyond diffing);
    an empty list: the call changes no line.
    """

    path: str
    lines: list[tuple[int, int]] | None



def absolute_path(raw: str, cwd: Path) -> str:
    """`raw` (relative to `cwd`, `~` expanded) as a normalised absolute path."""
    return os.path.normpath(cwd / os.path.expanduser(raw))


def read_text(path: Path) -> str | None:
    """A regular file's text (undecodable bytes replaced); None when empty, unreadable, not a regular
    file or over MAX_READ_BYTES. The path is an agent's: `/dev/zero` grew a supervisor by 70 MB a second,
    and a FIFO held its broker's only worker for good (opened without waiting, read only when regular)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_READ_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_READ_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_READ_BYTES:  # grew since fstat
        return None
    return data.decode("utf-8", "replace") or None


def changed_ranges(current: str, new: str) -> list[tuple[int, int]] | None:
    """The line ranges of `current` (1-based, inclusive) that turning it into `new` touches.

    An insertion touches the lines either side of it: two agents adding code at
    one spot collide there, as their merge would.
    """
    old_lines = current.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    if max(len(old_lines), len(new_lines)) > MAX_DIFF_LINES:
        return None
    ranges = []
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines)
    for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if i1 == i2:
            ranges.append((max(1, i1), max(1, min(len(old_lines), i1 + 1))))
        else:
            ranges.append((i1 + 1, i2))
    return merge_ranges(ranges)


def merge_ranges(ranges: Iterable[tuple[int, int]], gap: int = 2) -> list[tuple[int, int]]:
    """Sorted, with ranges closer than `gap` lines joined; at most MAX_RANGES (then one span)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    if len(merged) > MAX_RANGES:
        return [(merged[0][0], max(end for _s, end in merged))]
    return merged

