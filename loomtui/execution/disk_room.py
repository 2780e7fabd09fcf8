"""Room left on the disks an agent writes to: its worktree's, and the one holding the store and logs.

An agent's worktree is on the person's own disk, uncapped (a build, a dependency folder: a few GiB is
normal work). One that writes without end filled the disk, and with it the store, the audit log and
the person's other work. So its supervisor looks at the room left on each beat and stops the agent once
less than `floor` is free: at most 1 GiB, and 5% of a small disk; and so for files (inodes), which a
million empty ones use up on a disk with room left.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from loomtui.limit_values import said_size

FLOOR_BYTES: Final = 1 << 30
FLOOR_FILES: Final = 100_000
FLOOR_SHARE: Final = 0.05


def floor(size: int, most: int = FLOOR_BYTES) -> int:
    """The least a disk of `size` (bytes, or files) keeps free while an agent runs."""
    return min(most, int(size * FLOOR_SHARE))


@dataclass(frozen=True)
class Shortage:
    """A disk with less than its `floor` free."""

    what: str
    path: Path
    free: int
    floor: int
    files: bool = False
    """Counted in files (inodes), not bytes."""

    def said(self) -> str:
        """Where, and how much is left of how much it keeps."""
        amount = (lambda n: f"{n:,} files") if self.files else said_size
        return f"the disk holding {self.what} ({self.path}) has {amount(self.free)} free, under {amount(self.floor)}"


def free_bytes(path: Path) -> int | None:
    """The bytes free to unprivileged writers on the disk holding `path`, None where it cannot be looked at."""
    try:
        room = os.statvfs(path)
    except OSError:
        return None
    return room.f_bavail * room.f_frsize


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
        if room.f_files and room.f_favail < floor(room.f_files, FLOOR_FILES):  # 0 files: not counted (btrfs)
            return Shortage(what, path, room.f_favail, floor(room.f_files, FLOOR_FILES), files=True)
    return None



ALLOCATED_WALK_MOST: Final = 200_000
"""Entries looked at to measure what an agent's files hold (`allocated_since`): a tree past it counts partly."""


def allocated_since(roots: Iterable[Path], since: float, most: int = ALLOCATED_WALK_MOST) -> int:
    """The disk space held by files under `roots` changed since `since` (their ctime, which no one can set back),
    on each root's own disk. What `fallocate` or writes through `mmap` take, which no count of writes sees (an
    agent filled its disk that way, unblamed). A whole file counts, however little of it changed (one renamed
    counts too: its ctime moves), each once however many names it has."""
    total = 0
    seen = 0
    counted: set[tuple[int, int]] = set()  # a file of many names (hard links) holds its blocks once
    for root in roots:
        try:
            device = os.stat(root, follow_symlinks=False).st_dev
        except OSError:
            continue
        folders = [root]
        while folders and seen < most:
            try:
                entries = os.scandir(folders.pop())
            except OSError:
                continue
            with entries:
                for entry in entries:
                    seen += 1
                    if seen > most:  # within a folder too: a million files in one were read at once (1 GB)
                        break
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if info.st_dev != device:  # another mount: not this disk's room
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False) and info.st_ctime >= since and \
                            (info.st_dev, info.st_ino) not in counted:
                        counted.add((info.st_dev, info.st_ino))
                        total += info.st_blocks * 512
    return total


def stops(short: Shortage, written: Callable[[], int]) -> bool:
    """Whether an agent is stopped for `short`: when it is out of files (no count says whose), when less
    than half the floor is left (every agent on the disk then), or when the agent has written at least the
    floor itself (`written`: its bytes, asked only here). One agent filling the disk stopped every other
    on it, the idle ones first, each blamed."""
    return short.files or short.free < short.floor // 2 or written() >= short.floor
