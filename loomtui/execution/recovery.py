"""Recovery: reconciling the store with the processes and worktrees actually present."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loomtui.execution.agent_control import live_agent_group
from loomtui.execution.gitops import Git
from loomtui.execution.leftovers import save_without_supervisor
from loomtui.execution.lifecycle import (
    ARCHIVED,
    DELETING,
    FAILED,
    LIVE,
    PLANNED,
    REJECTED,
    REMOVING_KEY,
    transition,
)
from loomtui.execution.procs import is_alive
from loomtui.execution.sandboxes import (
    get_sandbox,
    has_worktree,
    mark_failed,
    worktree_roots,
)
from loomtui.identity import current_host
from loomtui.store import WORKTREE_MISSING_KEY, SandboxRecord
from loomtui.workspace import Workspace


@dataclass
class ReconcileReport:
    """What `reconcile` found: who is alive, what it marked, what it could not place."""

    alive: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)  # marked in this run
    missing_worktrees: list[str] = field(default_factory=list)
    removals_cut_short: list[str] = field(default_factory=list)  # `rm` stopped while deleting the worktree
    unknown_worktrees: list[str] = field(default_factory=list)  # their paths
    elsewhere: list[str] = field(default_factory=list)  # run on another host: not judged here

    def lines(self) -> list[str]:
        found = []
        if self.orphaned:
            found.append(f"orphaned (supervisor gone): {', '.join(self.orphaned)}")
        if self.missing_worktrees:
            found.append(f"worktree deleted by hand: {', '.join(self.missing_worktrees)}")
        for sandbox_id in self.removals_cut_short:  # it said "deleted by hand" of loomtui's own removal
            found.append(f"the removal of {sandbox_id} was cut short: `loomtui sandbox rm {sandbox_id}` finishes it")
        if self.unknown_worktrees:
            found.append(f"worktrees no sandbox owns: {', '.join(self.unknown_worktrees)}")
        if self.elsewhere:
            found.append(f"run on other hosts (left to them): {', '.join(self.elsewhere)}")
        return found


def reconcile(workspace: Workspace) -> ReconcileReport:
    """Match the store against the processes and worktrees actually present; mark, never drop.

    A running sandbox whose supervisor is gone (checked by pid *and* start time) is
    marked orphaned: still `running` when its agent survives (stop it as usual),
    else `failed`. A worktree deleted by hand is marked on the sandbox (its branch,
    holding the committed work, is untouched) for good: git forgets the worktree then (`worktree
    prune`), so a directory that comes back later is no worktree an agent could run in again.
    Worktree directories that no sandbox owns are reported, not deleted. A sandbox another host
    runs (a team's shared store) is left to that host: its pid and worktree mean nothing here.
    """
    report = ReconcileReport()
    records = workspace.store.list_sandboxes(include_archived=True)
    pruned = False
    here = current_host()
    for record in records:
        if record.status == ARCHIVED:
            continue
        if record.host and record.host != here:
            report.elsewhere.append(record.id)
            continue
        if record.status in LIVE or (record.status == PLANNED and record.pid):
            _reconcile_process(workspace, record, report)
        made = has_worktree(record)  # a task waiting on others has none yet, on purpose
        if record.status not in (REJECTED,) and made and record.worktree and not Path(record.worktree).is_dir():
            if record.data.get(REMOVING_KEY) == DELETING:
                report.removals_cut_short.append(record.id)
            else:
                report.missing_worktrees.append(record.id)
            if not record.worktree_missing:
                if not pruned:
                    # Lets git forget the admin entry of a deleted worktree; the branch stays.
                    with workspace.paths.worktrees_locked():
                        Git(workspace.root).run("worktree", "prune")
                    pruned = True
                workspace.store.update_sandbox(record.id, data={WORKTREE_MISSING_KEY: True})
                workspace.record("sandbox.worktree_missing", record.id, {"worktree": record.worktree})
                current = get_sandbox(workspace, record.id)
                if current.status == PLANNED:
                    mark_failed(workspace, record.id, "its worktree was deleted before it started")
    report.unknown_worktrees = _stray_worktrees(workspace, records)
    return report


def _stray_worktrees(workspace: Workspace, records: list[SandboxRecord]) -> list[str]:
    """Directories in the folders worktrees live in (wherever they are) that no sandbox records."""
    known = {Path(record.worktree).resolve() for record in records if record.worktree}
    stray: set[str] = set()
    for folder in worktree_roots(workspace):
        try:
            entries = list(folder.iterdir()) if folder.is_dir() else []
        except OSError:
            continue
        stray.update(str(p) for p in entries if p.is_dir() and p.resolve() not in known)
    return sorted(stray)


def _reconcile_process(workspace: Workspace, record: SandboxRecord, report: ReconcileReport) -> None:
    if is_alive(record.pid, record.pid_start):
        report.alive.append(record.id)
        return
    agent = live_agent_group(record)
    store = workspace.store
    saved: str | None = None
    left: dict[str, object] = {}
    if agent is None:
        # Nothing of it runs: what it did goes onto its branch first, as its supervisor would have done
        # (else the review saw an empty change, its work stranded in the worktree).
        saved, left = save_without_supervisor(workspace, record)
    with store.transaction():
        # Re-read under the lock: the supervisor may have recorded the exit meanwhile.
        current = store.get_sandbox(record.id)
        if current is None or current.status != record.status or current.pid != record.pid:
            return
        earlier = current.data.get("orphan")
        if agent is not None:
            if earlier:
                return  # marked before, and its agent still runs: nothing new
            why = f"supervisor (pid {record.pid}) is gone; agent pid {agent} still runs - stop it to end it"
            store.update_sandbox(record.id, data={"orphan": why})
        else:
            why = (f"{earlier}; the agent has ended since" if earlier else
                   f"supervisor (pid {record.pid}) and agent ended without recording an exit "
                   "(killed, or the machine restarted)")
            transition(workspace, record.id, FAILED, reason=why, data={"orphan": why, "error": why, **left},
                       allowed_from=frozenset({current.status}), audit={"orphan": True, "saved_commit": saved})
    if agent is not None:
        workspace.record("sandbox.orphaned", record.id, {"reason": why, "agent_pid": agent})
    report.orphaned.append(record.id)
