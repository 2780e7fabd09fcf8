"""What makes a person's own `git` in a sandbox's worktree the repository's, kept from before the agent ran
and put back at its end.

loomtui's git never reads them (it names the git dir, index and config itself), but a person's plain
`git status` in the worktree does: the worktree's `.git` file, and in its admin dir `commondir`, `gitdir`,
`config.worktree` (which holds loomtui's own hooks path and excludes) and `HEAD` (the branch a person's own
commit there lands on). The agent can write them all: a planted `core.fsmonitor`, or a `.git` naming a
repository of its own, ran as the person, outside the sandbox, the first time they looked with git.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from loomtui.files import remove_tree, write_atomically
from loomtui.json_text import parse_json

_ADMIN_FILES = ("commondir", "gitdir", "config.worktree", "HEAD", "loom-exclude")
_KEPT_FILES = frozenset({"index", "COMMIT_EDITMSG", "ORIG_HEAD", "MERGE_RR", "AUTO_MERGE"})
_KEPT_FOLDERS: dict[str, frozenset[str]] = {"logs": frozenset({"HEAD"}), "info": frozenset({"sparse-checkout"})}
"""What else of the admin dir stays at the agent's end, each a regular file of one link as git leaves it (a
symlink, a FIFO or a hard link in its place is removed: git writes through the first and the last, and waits on
the second for good): the index (and a split index's `sharedindex.*`; loomtui's save reads it), the reflog
(`logs/HEAD`), a sparse checkout's patterns (`info/sparse-checkout`) and what a commit, reset or merge leaves.
Anything else the agent left there is read by a person's git: a `rebase-merge/` whose `--abort` moved main to a
blocked commit and whose `--continue` ran the agent's command, a `logs/HEAD` linked to a file of the person's
that their next checkout appended to."""


@dataclass(frozen=True)
class GitLinks:
    """The files as they were: path to text (None: the file was not there)."""

    files: dict[Path, str | None]


def kept(worktree: Path, admin_dir: Path) -> GitLinks:
    """The worktree's `.git` file and its admin dir's link and config files, as they are now."""
    return GitLinks({path: _text(path) for path in (worktree / ".git", *(admin_dir / name for name in _ADMIN_FILES))})


def save(links: GitLinks, path: Path) -> None:
    """Keep `links` in `path` (the sandbox's state dir, which its agent cannot write under isolation): a
    supervisor that dies before the agent's end leaves them for `recovery` to put back."""
    write_atomically(path, json.dumps({str(link): text for link, text in links.files.items()}))


def load(path: Path) -> GitLinks | None:
    """The links `save` kept, or None (none kept, or the file unreadable)."""
    try:
        kept_links = parse_json(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(kept_links, dict):
        return None
    return GitLinks({Path(link): text if isinstance(text, str) else None for link, text in kept_links.items()})


def put_back(links: GitLinks) -> tuple[list[str], list[str]]:
    """Write back each file that changed (a `.git` made a folder or a link is removed first), and clear the
    admin dir of all else the agent left in it (`_clear_admin_dir`): the names of those put back or removed,
    and what could not be (each tried whatever became of the others: one left as the agent made it is a
    planted fsmonitor that runs as the person)."""
    changed: list[str] = []
    failed: list[str] = []
    admin = next((path.parent for path in links.files if path.name == "commondir"), None)
    if admin is not None and admin.is_dir() and not admin.is_symlink():
        _clear_admin_dir(admin, changed, failed)
    for path, text in links.files.items():
        if not path.parent.is_dir():
            # Its folder is gone (the worktree, or its admin dir, removed by a `sandbox rm` beside a supervisor that
            # never started its agent): written again, made with its folder, the link and the admin files made it
            # git's worktree again, which a prune kept (`branch -D`: "checked out at"), and its leftovers' save
            # committed every file's deletion. A worktree moved away keeps its admin files put back.
            continue
        try:
            if _text(path) == text and (_plain_file(path) or not _mode(path)):  # a FIFO read as no file
                continue
            _remove(path, failed)  # a repository of the agent's making in place of the link: not its work
            if text is not None:
                write_atomically(path, text)
            changed.append(path.name)
        except OSError as exc:
            failed.append(f"{path.name}: {exc.strerror or exc}")
    return changed, failed


def _clear_admin_dir(admin: Path, changed: list[str], failed: list[str]) -> None:
    """Remove from the worktree's admin dir what is neither a link file `put_back` writes nor kept as git
    leaves it (`_KEPT_FILES`, `_KEPT_FOLDERS`)."""
    try:
        entries = [entry for entry in admin.iterdir() if entry.name not in _ADMIN_FILES]  # those put back
        for folder, names in _KEPT_FOLDERS.items():
            if stat.S_ISDIR(_mode(admin / folder)):
                entries += [entry for entry in (admin / folder).iterdir()
                            if entry.name not in names or not _plain_file(entry)]
    except OSError as exc:
        failed.append(f"{admin.name}: {exc.strerror or exc}")
        return
    for entry in entries:
        if entry.parent == admin and (stat.S_ISDIR(_mode(entry)) if entry.name in _KEPT_FOLDERS else _plain_file(
                entry) and (entry.name in _KEPT_FILES or entry.name.startswith("sharedindex."))):
            continue
        try:
            _remove(entry, failed)
        except OSError as exc:
            failed.append(f"{entry.relative_to(admin)}: {exc.strerror or exc}")
        else:
            changed.append(str(entry.relative_to(admin)))


def _mode(path: Path) -> int:
    """The file's own mode (a link's, not what it leads to); 0 when it is not there."""
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


def _plain_file(path: Path) -> bool:
    """A regular file of one link: nothing git reads or writes there reaches another file."""
    try:
        found = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(found.st_mode) and found.st_nlink == 1


def _remove(path: Path, failed: list[str]) -> None:
    """Remove a folder (moved aside first, so its name is free whatever its removal meets: a tree of any depth)
    or anything else (a file, a link, a FIFO); a folder that cannot be removed is said in `failed`."""
    if stat.S_ISDIR(_mode(path)):
        aside = path.with_name(f".{path.name}.agent-{secrets.token_hex(4)}")
        os.rename(path, aside)
        try:
            remove_tree(aside)
        except OSError as exc:  # left in the worktree, it would be saved to the branch as the agent's work
            failed.append(f"{aside.name}, the agent's {path.name} moved aside: {exc.strerror or exc}")
    elif _mode(path):
        path.unlink()


def not_put_back_said(failed: list[str], worktree: Path | str) -> str:
    """Why a sandbox's worktree is not safe for a person's git, from what `put_back` could not put back."""
    return f"could not put back the worktree's git links ({'; '.join(failed)}): do not run git in {worktree}"


def _text(path: Path) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.is_file() and not path.is_symlink():
            return path.read_text()
    return None
