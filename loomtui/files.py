"""Writing loomtui's own files safely: whole or not at all, and never through a link someone planted."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace `path` by rename: a reader sees the old file or the new one whole, and an agent that turned
    it into a symlink to a file outside its worktree gets the link replaced, never the file it points to
    written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.loom-{os.getpid()}")
    partial.unlink(missing_ok=True)  # a leftover (or a planted link) goes, never written through
    with open(partial, "x", encoding="utf-8") as handle:  # "x": never through an existing name
        handle.write(text)
    os.chmod(partial, mode)
    os.replace(partial, path)


def file_size(path: Path) -> int:
    """`path`'s size in bytes; 0 when it is missing or cannot be looked at."""
    try:
        return path.stat().st_size
    except OSError:
        return 0
