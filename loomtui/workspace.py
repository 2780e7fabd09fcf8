"""A repository opened for loomtui: its paths, store, audit log and acting user.

The CLI and the TUI both start here, so they see the same engines and state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loomtui.audit import AuditEntry, AuditLog
from loomtui.config import LoomConfig, load_config
from loomtui.gitcmd import Git
from loomtui.identity import current_user
from loomtui.repo import RepoPaths, find_repo
from loomtui.store import SandboxRecord, Store, open_store


class Workspace:
    """The opened repository's paths, store and audit log, and who is acting."""

    def __init__(self, paths: RepoPaths, store: Store, audit: AuditLog, actor: str | None = None, *,
                 agent: str | None = None) -> None:
        self.paths = paths
        self.store = store
        self.audit = audit
        self._actor = actor
        self.agent = agent
        """The sandbox whose agent acts through this workspace (its hooks, its broker), named in each entry."""

    @property
    def actor(self) -> str:
        """Who is acting (`identity.current_user`), asked of git only when first needed: a
        read-only command or a hook that allows a tool call records nothing."""
        if self._actor is None:
            self._actor = current_user(self.paths.root)
        return self._actor

    @actor.setter
    def actor(self, name: str) -> None:
        self._actor = name

    def acting_as(self, actor: str) -> Workspace:
        """The same workspace (store, audit log) acting as `actor`; closing either closes both."""
        return Workspace(self.paths, self.store, self.audit, actor, agent=self.agent)

    def for_agent(self, sandbox_id: str) -> Workspace:
        """The same workspace for what `sandbox_id`'s agent asks through its hooks: its entries stay under the
        person who started it, each saying `agent: ID` (an agent's claim, with its own reason text, read as the
        person's)."""
        return Workspace(self.paths, self.store, self.audit, self._actor, agent=sandbox_id)

    @property
    def root(self) -> Path:
        return self.paths.root

    def load_config(self) -> LoomConfig:
        """Load and validate `.loom/loom.yaml` (raises ConfigError with file:line)."""
        return load_config(self.paths.root)

    def record(self, action: str, subject: str = "", details: dict[str, Any] | None = None) -> AuditEntry:
        """Append an audit entry as the current user, in the current transaction if any
        (committed with the change it records, or rolled back with it)."""
        return self.audit.append(self.actor, action, subject, self._marked(details))

    def record_attempt(self, action: str, subject: str = "", details: dict[str, Any] | None = None) -> None:
        """Record something that changed nothing (a refusal) once the current transaction
        ends, whether it commits or rolls back (at once outside a transaction)."""
        self.audit.append_after_transaction(self.actor, action, subject, self._marked(details))

    def _marked(self, details: dict[str, Any] | None) -> dict[str, Any] | None:
        return details if self.agent is None else {**(details or {}), "agent": self.agent}

    def close(self) -> None:
        self.store.close()


def _first_worktree(paths: RepoPaths) -> Path:
    """The repository's own checkout as git lists it (the first of its worktrees), for a sandbox stated before
    its record named it."""
    listed = Git(paths.root).run("worktree", "list", "--porcelain").out.splitlines()
    first = listed[0].removeprefix("worktree ") if listed and listed[0].startswith("worktree ") else ""
    return Path(first).resolve() if first else paths.main_checkout()


def _sandbox_of_worktree(store: Store, root: Path) -> SandboxRecord | None:
    return next((record for record in store.list_sandboxes(include_archived=True)
                 if record.worktree and Path(record.worktree).resolve() == root), None)


def open_workspace(start: Path | str | None = None, *, reads_only: bool = False) -> Workspace:
    """Open the repository containing `start` (default: cwd), creating its state if new.

    `reads_only`: the caller only reads; state that cannot be written here is read, not refused."""
    paths = find_repo(start)
    store = open_store(paths, reads_only=reads_only)
    # Perhaps a linked worktree: the checkout git's dir is not in (or git's dir is kept apart, `--separate-git-dir`).
    linked = paths.main_checkout() != paths.root or paths.common_dir.name != ".git"
    sandbox = _sandbox_of_worktree(store, paths.root) if linked else None
    if sandbox is not None:
        # A person in an agent's worktree (committing the work it left, as a refused merge says): the policy,
        # gates, config and git identity are the repository's, never the agent's files there (its policy of
        # approving everything approved, then merged, its own change).
        stated_from = str(sandbox.data.get("repo_root") or "")  # execution.sandboxes.REPO_ROOT_KEY
        main = Path(stated_from) if stated_from and Path(stated_from).is_dir() else _first_worktree(paths)
        paths = RepoPaths(root=main, common_dir=paths.common_dir)
    return Workspace(
        paths=paths,
        store=store,
        audit=AuditLog(paths.audit_path, store=store),
    )
