"""Writing loomtui's own files safely: whole or not at all, and never through a link someone planted; reading
an agent's files without following what it swaps in between a look and a read."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, content: str | bytes, mode: int = 0o644, *, durable: bool = False,
                     if_current: Callable[[], bool] | None = None) -> bool:
    """Replace `path` by rename: a reader sees the old file or the new one whole, and an agent that turned
    it into a symlink to a file outside its worktree gets the link replaced, never the file it points to
    written. `durable`: on disk before it replaces the old one (a crash leaves one or the other).
    `if_current`: asked last, just before the rename; when it answers False nothing is replaced
    (compare and swap, in the narrowest window a file allows). Whether `path` was replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        # A name no one can guess: one by pid alone, an agent sharing the folder planted a folder there
        # and every write failed. Made new (never through an existing name, O_EXCL) and its mode set on the
        # open file: by name, a chmod after the write followed a symlink an agent swapped in meanwhile.
        partial = path.with_name(f".{path.name}.loom-{os.getpid()}-{secrets.token_hex(6)}")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, mode)
            handle.write(content.encode() if isinstance(content, str) else content)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if if_current is not None and not if_current():
            partial.unlink()
            return False
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    return True


@contextlib.contextmanager
def open_regular(path: Path | str, inside: str | None = None, *, follow: bool = False) -> Iterator[BinaryIO]:
    """`path` opened for reading only when it is a regular file: never through a symlink at its end (unless
    `follow`), never a FIFO (which blocks), and, given `inside` (a real directory), never one reached through a
    linked folder out of it. Else OSError. What is read is what was checked: an agent swapping a link or a FIFO
    in between a `lstat` and an `open` had loomtui read a file hidden from it, or hang for good."""
    fd = os.open(path, os.O_RDONLY | (0 if follow else os.O_NOFOLLOW) | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if inside is not None and not os.readlink(f"/proc/self/fd/{fd}").startswith(os.path.join(inside, "")):
            raise OSError(errno.EXDEV, "a file outside the repository (through a linked folder)")
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def read_regular(path: Path | str, limit: int) -> bytes | None:
    """A regular file's bytes (see `open_regular`), or None when it is larger than `limit`; OSError as there."""
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    return data if len(data) <= limit else None


def file_size(path: Path) -> int:
    """`path`'s size in bytes; 0 when it is missing or cannot be looked at."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def remove_tree(path: Path) -> None:
    """Remove `path` and everything below it (a link itself, never what it points to), at any depth; raise
    OSError naming what stayed. For trees an agent made: Python's own `shutil.rmtree` (3.11) recurses once
    a folder, and a chain of 1,200 folders raised RecursionError, which `ignore_errors` lets through.
    coreutils' `rm` walks any depth and any path length."""
    if not os.path.lexists(path):
        return
    done = _run_quietly("rm", "-rf", "--", os.fspath(path))
    if os.path.lexists(path) and not os.path.islink(path):
        # A folder its maker left unreadable or unwritable (mode 000): rm cannot empty it, its owner may open
        # it. `chmod -R` changes no link's target (it does not follow links below the top), then rm again.
        _run_quietly("chmod", "-R", "u+rwx", "--", os.fspath(path))
        done = _run_quietly("rm", "-rf", "--", os.fspath(path))
    if os.path.lexists(path):
        said = next((line for line in done.stderr.splitlines() if line.strip()), f"rm exited {done.returncode}")
        raise OSError(errno.ENOTEMPTY, said, os.fspath(path))


def _run_quietly(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                          check=False)


def make_folders(folder: Path) -> None:
    """`folder` and its missing parents, one level at a time (`mkdir(parents=True)` recurses once a level:
    a path 1,200 folders deep raised RecursionError)."""
    missing = []
    for level in (folder, *folder.parents):
        if level.is_dir():
            break
        missing.append(level)
    for level in reversed(missing):
        with contextlib.suppress(FileExistsError):
            level.mkdir()
