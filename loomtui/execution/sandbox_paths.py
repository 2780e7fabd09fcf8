"""Where a sandbox's things are: its files under the state dir and its worktree's folder.

See `sandboxes` for the layout on disk. Ids are checked here: only a short safe slug
ever becomes part of a path, a branch or a tmux session name.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from loomtui.config import worktrees_problem
from loomtui.errors import LoomError, quoted
from loomtui.repo import RepoPaths
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace

TMUX_PREFIX: Final = "loom-"
WORKTREES_ENV: Final = "LOOMTUI_WORKTREES"
"""Overrides `worktrees:` of .loom/loom.yaml: where this user's sandboxes' worktrees go."""

_ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


@dataclass(frozen=True)
class SandboxPaths:
    """The files of one sandbox under the state dir, and (when known) its worktree."""

    dir: Path
    recorded_worktree: Path | None = None

    @property
    def worktree(self) -> Path:
        """The sandbox's worktree, as the store records it (see `record_paths`)."""
        if self.recorded_worktree is None:
            raise LoomError("internal error: a sandbox's worktree is read from its record (record_paths)")
        return self.recorded_worktree

    @property
    def log(self) -> Path:
        return self.dir / "agent.log"

    @property
    def supervisor_log(self) -> Path:
        return self.dir / "supervisor.log"

    @property
    def git_links(self) -> Path:
        """The worktree's git links as they were before its agent ran (`git_links`), until they are put back."""
        return self.dir / "git-links.json"

    @property
    def context(self) -> Path:
        return self.dir / "context.md"

    @property
    def script(self) -> Path:
        return self.dir / "script.yaml"

    @property
    def tmp(self) -> Path:
        """TMPDIR of an agent without isolation (under bwrap it gets a private /tmp)."""
        return self.dir / "tmp"

    @property
    def pane_exit(self) -> Path:
        """Where the tmux pane wrapper writes an interactive agent's exit status."""
        return self.dir / "exit"

    @property
    def pane_env(self) -> Path:
        return self.dir / "pane-env.json"

    @property
    def pane_go(self) -> Path:
        return self.dir / "pane-go"

    @property
    def runtime_state(self) -> Path:
        """The sandbox's own copies of its runtime's state folders and files (see runtime_state)."""
        return self.dir / "runtime"

    @property
    def outside_index(self) -> Path:
        """The index loomtui keeps of the worktree from outside (see gitops.AgentTree)."""
        return self.dir / "outside.index"

    @property
    def broker(self) -> Path:
        """The socket the supervisor answers the agent's hooks on ($LOOM_BROKER)."""
        return self.dir / "broker.sock"


def legacy_worktrees_dir(paths: RepoPaths) -> Path:
    """Where sandboxes made before worktrees moved out of the git dir have theirs."""
    return paths.state_dir / "worktrees"


def data_home(env: Mapping[str, str] | None = None) -> Path:
    """The user's data directory: $XDG_DATA_HOME, else ~/.local/share."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg)
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "share"


def repo_slug(paths: RepoPaths) -> str:
    """`<repo name>-<hash of its git common dir>`: one folder per repository (and per clone)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", paths.root.name).lstrip(".")[:40] or "repo"
    digest = hashlib.sha256(os.fsencode(paths.common_dir.resolve())).hexdigest()[:10]
    return f"{name}-{digest}"


def worktrees_root(paths: RepoPaths, setting: str | None = None,
                   env: Mapping[str, str] | None = None) -> Path:
    """Where this repository's new sandboxes' worktrees go (one folder per repository under it).

    $LOOMTUI_WORKTREES, else `setting` (`worktrees:` of .loom/loom.yaml; relative to the
    repository root, `~` expanded), else the user's data dir `loomtui/worktrees`. A
    location inside a `.git` directory or inside the main working tree is refused.
    """
    env = os.environ if env is None else env
    raw = env.get(WORKTREES_ENV) or setting
    if raw:
        where = f"${WORKTREES_ENV}" if env.get(WORKTREES_ENV) else "worktrees: in .loom/loom.yaml"
        problem = worktrees_problem(raw)
        if problem:
            raise LoomError(f"{where} {problem}")
        base = Path(os.path.expanduser(raw))
        if not base.is_absolute():
            base = paths.root / base
    else:
        where = "the worktrees location"
        base = data_home(env) / "loomtui" / "worktrees"
    root = Path(os.path.normpath(base / repo_slug(paths)))
    resolved = root.resolve()
    if ".git" in resolved.parts:
        raise LoomError(f"{where}: {root} is inside a .git directory; agents such as Claude Code refuse "
                        "to write there")
    if resolved.is_relative_to(paths.root.resolve()):
        raise LoomError(f"{where}: {root} is inside the repository's working tree; put worktrees outside it")
    return root


def _cannot_hold(root: Path, why: str) -> LoomError:
    return LoomError(f"the worktrees location {root} cannot hold worktrees: {why} (set `worktrees:` in "
                     f".loom/loom.yaml or ${WORKTREES_ENV})")


def checked_worktrees_root(root: Path) -> Path:
    """`root` if worktrees can be made there, looked at without making anything (`config check`): the
    nearest part of it that exists must be a directory this user may write (`worktrees: /dev/null`)."""
    there = root
    while not there.exists() and there != there.parent:
        there = there.parent
    if not there.is_dir():
        raise _cannot_hold(root, f"{there} is not a directory")
    if not os.access(there, os.W_OK | os.X_OK):
        raise _cannot_hold(root, f"{there} cannot be written")
    return root


def made_worktrees_root(root: Path) -> Path:
    """`root`, made if it is not there yet: a location that cannot hold a folder is said before a task
    is recorded, not as a failed sandbox after."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_hold(root, exc.strerror or str(exc)) from None
    return root


def configured_worktrees_root(workspace: Workspace) -> Path:
    """This repository's worktrees root as its config and environment say (errors are one line)."""
    return worktrees_root(workspace.paths, workspace.load_config().worktrees)


def worktree_roots(workspace: Workspace) -> list[Path]:
    """Every folder this repository's sandboxes' worktrees live in: the configured root, the
    folders the store records (a root may have moved since), and the old `.git/loom/worktrees`."""
    roots = [legacy_worktrees_dir(workspace.paths)]
    try:
        roots.append(configured_worktrees_root(workspace))
    except LoomError:
        pass  # a broken config: the recorded folders still say where the worktrees are
    roots += [Path(r.worktree).parent for r in workspace.store.list_sandboxes(include_archived=True)
              if r.worktree]
    unique: list[Path] = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


def sandbox_paths(paths: RepoPaths, sandbox_id: str, worktree: Path | str | None = None) -> SandboxPaths:
    """A sandbox's files; its worktree only when given (a record's: see `record_paths`)."""
    check_id(sandbox_id)
    return SandboxPaths(dir=paths.state_dir / "sandboxes" / sandbox_id,
                        recorded_worktree=Path(worktree) if worktree else None)


def record_paths(paths: RepoPaths, record: SandboxRecord) -> SandboxPaths:
    """A recorded sandbox's files, its worktree where the store says it is (never recomputed)."""
    return sandbox_paths(paths, record.id, record.worktree or None)


def check_id(text: str) -> str:
    """A sandbox id as typed by a user; anything that is not a safe slug is refused."""
    if not _ID_RE.fullmatch(text):
        raise LoomError(f"{quoted(text)} is not a sandbox id (lowercase letters, digits and '-')")
    return text


def tmux_session(sandbox_id: str) -> str:
    return TMUX_PREFIX + sandbox_id


TMUX: Final = ("tmux", "-L", "loomtui")
"""tmux on loomtui's own server: an interactive agent's session is found from any shell, whichever tmux server
its starter's `$TMUX` named (one started from the app inside tmux was "gone" to `loomtui attach` in a plain
shell), and a person's own sessions are never among its sessions."""
