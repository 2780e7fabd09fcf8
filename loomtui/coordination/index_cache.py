"""The index's facts cache, shared by all worktrees: each file's facts by its blob hash."""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from loomtui.coordination.regions import FACTS_VERSION, FileFacts

if TYPE_CHECKING:

    from loomtui.repo import RepoPaths



def index_cache_dir(paths: RepoPaths) -> Path:
    """The `cache_dir` of `build_index` for a repository: in its state dir, under git's common
    dir, so every worktree (every sandbox) shares it."""
    return paths.state_dir / "index-cache"


def write_aside(target: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write` into a file beside `target`, then renamed onto it: a reader sees the old file or the new."""
    # Several processes may index at once.
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.replace(temporary, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise


def _atomic_pickle(target: Path, value: object) -> None:
    # Pickled straight into the file, so a large value is never held twice.
    write_aside(target, lambda out: pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL))


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
