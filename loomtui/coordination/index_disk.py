"""Where a tree's index database lives, how a new one is published, and who may write it.

Each indexed tree (a work tree with its include/exclude globs) has its own
database under the cache's `trees/` directory. A database is never rebuilt in
place: a full build writes a new generation file and then swaps a one-line
pointer (`<key>.current`) to it with a rename, so a reader sees the old
version or the new one, never half of either. Incremental updates change the
current generation in SQLite transactions. Writers of one tree take its lock
file first: a second process waits, then finds the work done.

A tree indexed for the first time starts from a copy of the most recently
updated other tree with the same settings (a sandbox's worktree from the main
checkout), so only the files that differ are parsed and resolved.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from loomtui.coordination.index_cache import write_aside
from loomtui.coordination.regions import FACTS_VERSION
from loomtui.store.index_db import IndexDB, IndexDBError

GENERATIONS_KEPT = 2
_THREAD_LOCKS: dict[str, threading.Lock] = {}
# Settings a copied database must share with the tree it seeds.
SETTINGS_KEYS = ("facts_version", "include", "exclude")


def trees_dir(cache_dir: Path) -> Path:
    return cache_dir / f"trees-v{FACTS_VERSION}"


def tree_key(root: Path, include: Sequence[str], exclude: Sequence[str]) -> str:
    digest = hashlib.sha256(os.fsencode(os.path.realpath(root)))
    for pattern in ("\0include", *include, "\0exclude", *exclude):
        digest.update(b"\0" + pattern.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


def settings_of(include: Sequence[str], exclude: Sequence[str]) -> dict[str, str]:
    return {"facts_version": str(FACTS_VERSION), "include": "\n".join(include), "exclude": "\n".join(exclude)}


def remove_database(path: Path) -> None:
    """Delete a database file with its WAL and shared-memory files (what is already gone is fine)."""
    for suffix in ("", "-wal", "-shm"):
        with suppress(OSError):
            os.unlink(f"{path}{suffix}")


class TreeDatabase:
    """The published database of one tree: open it, replace it, lock it."""

    def __init__(self, cache_dir: Path, key: str, root: Path | None = None) -> None:
        self.cache_dir = cache_dir
        self.root = root
        self.directory = trees_dir(cache_dir)
        self.key = key
        self.pointer = self.directory / f"{key}.current"

    def current_path(self) -> Path | None:
        name = self._pointed()[0]
        return self.directory / name if name and "/" not in name else None

    def _pointed(self) -> tuple[str, str]:
        """(database file name, the tree's root) as the pointer says; empty strings if unreadable."""
        try:
            lines = self.pointer.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return "", ""
        return (lines[0].strip() if lines else ""), (lines[1] if len(lines) > 1 else "")

    def open(self) -> IndexDB | None:
        """The current generation, None if there is none (or it cannot be read)."""
        for _ in range(3):  # the pointer may move between reading it and opening the file
            path = self.current_path()
            if path is None:
                return None
            if not path.is_file():
                continue
            try:
                return IndexDB(path)
            except IndexDBError:
                return None
        return None

    def new_generation(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory / f"{self.key}.{secrets.token_hex(6)}.sqlite"

    def publish(self, path: Path) -> None:
        """Point the tree at `path`; generations older than the previous one are removed."""
        text = path.name + "\n" + (os.fspath(self.root) if self.root is not None else "") + "\n"
        write_aside(self.pointer, lambda out: out.write(text.encode("utf-8", "surrogateescape")))
        self._prune(keep=path.name)

    def _prune(self, keep: str) -> None:
        def written(entry: Path) -> int:
            try:
                return entry.stat().st_mtime_ns
            except OSError:
                return -1

        mine = sorted(self.directory.glob(f"{self.key}.*.sqlite"), key=written, reverse=True)
        for old in [entry for entry in mine if entry.name != keep][GENERATIONS_KEPT - 1:]:
            remove_database(old)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """This tree's writer lock: held while its database is built or updated.

        A POSIX record lock (`lockf`), which a forked parse worker does not inherit, so
        a writer killed mid-build frees it at once; a thread lock beside it, since a
        record lock does not keep out another thread of the same process.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        with _THREAD_LOCKS.setdefault(self.key, threading.Lock()), \
                open(self.directory / f"{self.key}.lock", "a+b") as handle:
            fcntl.lockf(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(handle, fcntl.LOCK_UN)

    def prune_gone_trees(self) -> int:
        """Remove the databases of trees whose directory is gone (a removed sandbox worktree); how many."""
        removed = 0
        for pointer in self.directory.glob("*.current"):
            other = TreeDatabase(self.cache_dir, pointer.name.removesuffix(".current"))
            root = other._pointed()[1]
            if other.key == self.key or not root or os.path.isdir(root):
                continue
            for generation in self.directory.glob(f"{other.key}.*.sqlite"):
                remove_database(generation)
            for leftover in (pointer, self.directory / f"{other.key}.lock"):
                with suppress(OSError):
                    os.unlink(leftover)
            removed += 1
        return removed

    def seed_from_sibling(self, settings: dict[str, str]) -> bool:
        """Start this tree from a copy of the newest other tree with the same settings; False if none."""
        pointers = sorted((p for p in self.directory.glob("*.current") if p != self.pointer),
                          key=lambda p: p.stat().st_mtime_ns if p.exists() else 0, reverse=True)
        for pointer in pointers[:4]:
            db = TreeDatabase(self.cache_dir, pointer.name.removesuffix(".current")).open()
            if db is None:
                continue
            try:
                meta = db.meta()
                if any(meta.get(key) != value for key, value in settings.items()) or meta.get("state") != "ok":
                    continue
                target = self.new_generation()
                db.copy_to(target)
            except (IndexDBError, OSError):
                continue
            finally:
                db.close()
            self.publish(target)
            return True
        return False
