"""The index's on-disk cache, shared by all worktrees: facts per blob hash and whole resolved snapshots."""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loomtui.coordination.regions import FACTS_VERSION, FileFacts, FileShape

if TYPE_CHECKING:
    import networkx as nx

    from loomtui.repo import RepoPaths

SNAPSHOTS_KEPT = 4


def index_cache_dir(paths: RepoPaths) -> Path:
    """The `cache_dir` of `build_index` for a repository: in its state dir, under git's common
    dir, so every worktree (every sandbox) shares it."""
    return paths.state_dir / "index-cache"


def _atomic_pickle(target: Path, value: object) -> None:
    # Several processes may index at once: write aside, then rename into place.
    # Pickled straight into the file, so a large snapshot is never held twice.
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise


def _load_pickle(path: Path) -> object | None:
    # A cache entry that cannot be read (missing, truncated, from another
    # version) is simply a miss.
    try:
        with open(path, "rb") as handle:
            loaded: object = pickle.load(handle)
            return loaded
    except Exception:  # any failure to read or unpickle means "not cached"
        return None


def _facts_dir(cache_dir: Path) -> Path:
    return cache_dir / f"facts-v{FACTS_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}"


def _facts_path(facts_dir: Path, blob: str) -> Path:
    return facts_dir / blob[:2] / f"{blob}.pickle"


def _store_facts(facts_dir: Path, blob: str, facts: FileFacts) -> None:
    with suppress(OSError):
        _atomic_pickle(_facts_path(facts_dir, blob), facts)


def _load_facts(facts_dir: Path, blob: str) -> FileFacts | None:
    facts = _load_pickle(_facts_path(facts_dir, blob))
    return facts if isinstance(facts, FileFacts) else None


@dataclass
class _Snapshot:
    """A whole resolved index, independent of where the work tree is."""

    key: str
    package: str
    pairs: dict[str, str]
    shapes: dict[str, FileShape]
    file_warnings: dict[str, str]
    graph: nx.DiGraph[str]
    unresolved: dict[str, list[tuple[str, str]]]
    consulted: dict[str, frozenset[str]]


def _snapshot_dir(cache_dir: Path) -> Path:
    return cache_dir / f"snapshots-v{FACTS_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}"


def _snapshot_key(package: str, pairs: Mapping[str, str]) -> str:
    digest = hashlib.sha256(package.encode())
    for path in sorted(pairs):
        digest.update(f"\0{path}\0{pairs[path]}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _load_snapshot(path: Path) -> _Snapshot | None:
    snapshot = _load_pickle(path)
    return snapshot if isinstance(snapshot, _Snapshot) else None


def _snapshots_newest_first(directory: Path) -> list[os.DirEntry[str]]:
    def written(entry: os.DirEntry[str]) -> int:
        try:
            return entry.stat().st_mtime_ns
        except OSError:  # removed meanwhile by another process pruning
            return -1

    try:
        entries = [entry for entry in os.scandir(directory) if entry.name.endswith(".pickle")]
    except OSError:
        return []
    return sorted(entries, key=written, reverse=True)


def _newest_snapshot(directory: Path, excluding: str) -> _Snapshot | None:
    """The most recently written snapshot: the likeliest to differ from this tree in few files."""
    for entry in _snapshots_newest_first(directory):
        if entry.name != f"{excluding}.pickle":
            snapshot = _load_snapshot(Path(entry.path))
            if snapshot is not None:
                return snapshot
    return None


def _save_snapshot(directory: Path, snapshot: _Snapshot) -> None:
    with suppress(OSError):
        _atomic_pickle(directory / f"{snapshot.key}.pickle", snapshot)
        for stale in _snapshots_newest_first(directory)[SNAPSHOTS_KEPT:]:
            with suppress(OSError):
                os.unlink(stale.path)
