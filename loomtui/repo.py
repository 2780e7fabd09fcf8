"""Locating the git repository and loomtui's private state directory within it."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from loomtui.errors import LoomError, NotARepository
from loomtui.gitcmd import Git

STATE_DIR_NAME = "loom"

DISTRUSTING_GIT_CONFIG: tuple[str, ...] = (
    "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "core.untrackedCache=false",
    "-c", "core.splitIndex=false", "-c", "gc.auto=0", "-c", "maintenance.auto=false",
)
"""What loomtui forces whenever it runs git on a tree an agent may have written: nothing the
agent could have configured there runs (fsmonitor, hooks, background maintenance)."""


_WORKTREES_THREAD_LOCK = threading.RLock()
_WORKTREES_DEPTH = [0]  # how deep the thread holding _WORKTREES_THREAD_LOCK is in `worktrees_locked`
WORKTREES_LOCK_HELD_ENV = "LOOMTUI_WORKTREES_LOCK_HELD"
"""Set to 1 for the processes run while the worktrees lock is held: they hold it with their parent."""


@dataclass(frozen=True)
class RepoPaths:
    """Where a repository's files and loomtui's state live.

    `state_dir` sits under git's *common* dir, so every worktree of the repository
    (every sandbox) sees the same store and audit log, and git never tracks it.
    """

    root: Path
    common_dir: Path

    @property
    def state_dir(self) -> Path:
        return self.common_dir / STATE_DIR_NAME

    @property
    def store_path(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def audit_path(self) -> Path:
        return self.state_dir / "audit.jsonl"

    @property
    def config_path(self) -> Path:
        return self.root / ".loom" / "loom.yaml"

    def ensure_state_dir(self) -> Path:
        """Create the state directory, reporting an unwritable repository in one line."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LoomError(f"cannot create {self.state_dir}: {exc.strerror}") from None
        return self.state_dir

    def main_checkout(self) -> Path:
        """The repository's main working tree (a sandbox's worktree shares its git dir)."""
        return self.common_dir.parent if self.common_dir.name == ".git" else self.root

    @contextmanager
    def worktrees_locked(self) -> Iterator[None]:
        """Held while git's worktree list is changed or read (`worktree add`, `prune`, `branch -D`, `config
        --worktree`).

        Two at once race in git itself: one reads the other's half-written
        `.git/worktrees/<name>/commondir`, or prunes an entry still being made.
        A process its holder runs under it (a person's git hook at a merge, given WORKTREES_LOCK_HELD_ENV)
        holds it already: waiting for it there waited for ever.
        """
        if os.environ.get(WORKTREES_LOCK_HELD_ENV) == "1":
            yield
            return
        self.ensure_state_dir()
        # A record lock keeps out other processes; the thread lock, other threads of this one. Nested in one
        # thread, only the outermost takes and lets go of the record lock (an inner one's close let it go).
        with _WORKTREES_THREAD_LOCK:
            if _WORKTREES_DEPTH[0]:
                _WORKTREES_DEPTH[0] += 1
                try:
                    yield
                finally:
                    _WORKTREES_DEPTH[0] -= 1
                return
            try:
                handle = open(self.state_dir / "worktrees.lock", "a+b")  # noqa: SIM115 - held across the yield
            except OSError as exc:
                raise LoomError(f"cannot open {self.state_dir / 'worktrees.lock'}: {exc.strerror or exc}") from None
            with handle:
                fcntl.lockf(handle, fcntl.LOCK_EX)
                _WORKTREES_DEPTH[0] = 1
                try:
                    yield
                finally:
                    _WORKTREES_DEPTH[0] = 0
                    fcntl.lockf(handle, fcntl.LOCK_UN)


def _git(cwd: Path, *args: str) -> str:
    result = Git(cwd).run(*args)
    if result.status != 0:
        if "work tree" in result.err:  # a bare repository, or inside a .git directory
            raise NotARepository(f"{cwd} is a git repository without a working tree (bare, or a .git "
                                 "directory); loomtui works in a checkout: clone it, or cd into one")
        raise NotARepository(f"{cwd} is not inside a git repository (run `git init` or cd into one)")
    return result.out.strip()


def find_repo(start: Path | str | None = None) -> RepoPaths:
    """Return the paths of the git repository containing `start` (default: cwd)."""
    cwd = Path(start or Path.cwd()).resolve()
    if not cwd.is_dir():
        raise LoomError(f"{cwd}: not a directory (a repository is a folder)" if cwd.exists()
                        else f"{cwd}: no such directory")
    out = _git(cwd, "rev-parse", "--show-toplevel", "--git-common-dir")
    lines = out.splitlines()
    if len(lines) < 2:
        raise NotARepository(f"{cwd} is not inside a git work tree")
    root = Path(lines[0]).resolve()
    common = Path(lines[1])
    if not common.is_absolute():
        common = (cwd / common).resolve()
    return RepoPaths(root=root, common_dir=common)


def current_branch(root: Path) -> str:
    """The checked-out branch name, or a short commit id when detached, or '(no commits)'."""
    git = Git(root)
    try:
        result = git.run("rev-parse", "--abbrev-ref", "HEAD")
    except LoomError:
        return "(no commits)"
    if result.status != 0:
        return "(no commits)"
    out = result.out.strip()
    if out == "HEAD":
        return f"(detached {git.run('rev-parse', '--short', 'HEAD').out.strip()})"
    return out
