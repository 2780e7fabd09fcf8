"""Room left on the disks an agent writes to: its worktree's, and the one holding the store and logs.

An agent's worktree is on the person's own disk, uncapped (a build, a dependency folder: a few GiB is
normal work). One that writes without end filled the disk, and with it the store, the audit log and
the person's other work. So its supervisor looks at the room left on each beat and stops the agent once
less than `floor` is free: at most 1 GiB, and 5% of a small disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

FLOOR_BYTES: Final = 1 << 30
FLOOR_SHARE: Final = 0.05


def floor(size: int) -> int:
    """The least free space a disk of `size` bytes keeps while an agent runs."""
    return min(FLOOR_BYTES, int(size * FLOOR_SHARE))


@dataclass(frozen=True)
class Shortage:
    """A disk with less than its `floor` free."""

    what: str
    path: Path
    free: int
    floor: int

    def said(self) -> str:
        """Where, and how much is left of how much it keeps."""
        return f"the disk holding {self.what} ({self.path}) has {_amount(self.free)} free, under {_amount(self.floor)}"


def shortage(places: Iterable[tuple[str, Path]]) -> Shortage | None:
    """The first disk holding one of `places` (named as said) with less than its `floor` free to
    unprivileged writers, or None. A place that cannot be looked at is not counted as full."""
    seen: set[int] = set()
    for what, path in places:
        try:
            device = os.stat(path).st_dev
            room = os.statvfs(path)
        except OSError:
            continue
        if device in seen:
            continue
        seen.add(device)
        free, size = room.f_bavail * room.f_frsize, room.f_blocks * room.f_frsize
        if free < floor(size):
            return Shortage(what, path, free, floor(size))
    return None


def _amount(size: int) -> str:
    return f"{size / (1 << 30):.1f} GiB" if size >= 1 << 30 else f"{size / (1 << 20):.1f} MiB"
