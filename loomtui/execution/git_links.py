"""What makes a person's own `git` in a sandbox's worktree the repository's, kept from before the agent ran
and put back at its end.

loomtui's git never reads them (it names the git dir, index and config itself), but a person's plain
`git status` in the worktree does: the worktree's `.git` file, and in its admin dir `commondir`, `gitdir`
and `config.worktree` (which holds loomtui's own hooks path and excludes). The agent can write all four:
a planted `core.fsmonitor`, or a `.git` naming a repository of its own, ran as the person, outside the
sandbox, the first time they looked with git.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from loomtui.files import write_atomically

_ADMIN_FILES = ("commondir", "gitdir", "config.worktree")


@dataclass(frozen=True)
class GitLinks:
    """The files as they were: path to text (None: the file was not there)."""

    files: dict[Path, str | None]


def kept(worktree: Path, admin_dir: Path) -> GitLinks:
    """The worktree's `.git` file and its admin dir's link and config files, as they are now."""
    return GitLinks({path: _text(path) for path in (worktree / ".git", *(admin_dir / name for name in _ADMIN_FILES))})


def put_back(links: GitLinks) -> list[str]:
    """Write back each file that changed (a `.git` made a folder or a link is removed first); returns the
    names of those put back."""
    changed = []
    for path, text in links.files.items():
        if _text(path) == text and not path.is_symlink():
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():  # a repository of the agent's making in place of the link: not its work
            shutil.rmtree(path, ignore_errors=True)
        if text is not None:
            write_atomically(path, text)
        changed.append(path.name)
    return changed


def _text(path: Path) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.is_file() and not path.is_symlink():
            return path.read_text()
    return None
