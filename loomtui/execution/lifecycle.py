"""A sandbox's lifecycle: its statuses, the moves between them, and how a move is recorded.

Every move goes through `transition()`: a compare-and-set on the store (so two
processes racing to move one sandbox cannot both win) followed by an audit entry.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

from loomtui.errors import LoomError
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace


class SandboxStatus(StrEnum):
    """Where a sandbox is in its life. A member is its own string, as stored."""

    PLANNED = "planned"
    RUNNING = "running"
    PAUSED = "paused"
    EXITED = "exited"
    GATING = "gating"
    AWAITING_REVIEW = "awaiting_review"
    APPROVED = "approved"
    MERGED = "merged"
    REJECTED = "rejected"
    FAILED = "failed"
    ARCHIVED = "archived"


PLANNED: Final = SandboxStatus.PLANNED
RUNNING: Final = SandboxStatus.RUNNING
PAUSED: Final = SandboxStatus.PAUSED
EXITED: Final = SandboxStatus.EXITED
GATING: Final = SandboxStatus.GATING
AWAITING_REVIEW: Final = SandboxStatus.AWAITING_REVIEW
APPROVED: Final = SandboxStatus.APPROVED
MERGED: Final = SandboxStatus.MERGED
REJECTED: Final = SandboxStatus.REJECTED
FAILED: Final = SandboxStatus.FAILED
ARCHIVED: Final = SandboxStatus.ARCHIVED

STATUSES: Final = tuple(SandboxStatus)
LIVE: Final = frozenset({RUNNING, PAUSED})
"""Statuses in which an agent process should exist."""
DONE_WITH: Final = frozenset({MERGED, REJECTED})
"""A task that is done with: its change merged, or it was rejected (its work, if any, stays on its branch)."""

TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    PLANNED: frozenset({RUNNING, FAILED, REJECTED, ARCHIVED}),
    RUNNING: frozenset({PAUSED, EXITED, FAILED}),
    PAUSED: frozenset({RUNNING, EXITED, FAILED}),
    # A failed agent may still have left work worth gating and reviewing. PLANNED again: an agent that
    # ended without a change (a model API that did not answer) is run again in its sandbox.
    EXITED: frozenset({GATING, AWAITING_REVIEW, APPROVED, REJECTED, FAILED, ARCHIVED, PLANNED}),
    FAILED: frozenset({GATING, AWAITING_REVIEW, REJECTED, ARCHIVED, PLANNED}),
    # GATING again: the workflow redoes a review whose process died mid-step.
    # ARCHIVED: removed when its review stopped for good (under the step lease, so no review runs).
    GATING: frozenset({GATING, AWAITING_REVIEW, APPROVED, REJECTED, FAILED, ARCHIVED}),
    AWAITING_REVIEW: frozenset({APPROVED, REJECTED, GATING, ARCHIVED}),
    APPROVED: frozenset({MERGED, REJECTED, AWAITING_REVIEW, GATING, ARCHIVED}),
    MERGED: frozenset({ARCHIVED}),
    # An override (governance) may approve a rejected change.
    REJECTED: frozenset({APPROVED, AWAITING_REVIEW, ARCHIVED}),
    ARCHIVED: frozenset(),
}


REMOVING_KEY: Final = "removing"
"""Sandbox data set while `remove` archives it: from then on it is never reviewed nor started."""
DELETING: Final = "deleting"
"""`REMOVING_KEY` once the work is saved and the worktree's deletion has begun."""
_NOT_WHILE_REMOVING: Final = frozenset({GATING, RUNNING})


def mark_removing(workspace: Workspace, sandbox_id: str, removing: bool = True, *,
                  no_review_runs: bool = False) -> SandboxRecord:
    """Mark a sandbox as being removed (or no longer), unless its review is running: removing its
    worktree then would fail the gates and leave it in review with no worktree. `no_review_runs`: the
    caller holds the task's step lease, under which every review runs, so one left `gating` has stopped
    (its reviewer killed, or a review that fails each time: the sandbox could never be removed). Returns
    the record as marked: its status then is the one to act on (its agent may have started since)."""
    store = workspace.store
    with store.transaction():
        current = store.get_sandbox(sandbox_id)
        if current is None:
            raise LoomError(f"no sandbox {sandbox_id}")
        if removing and current.status == GATING and not no_review_runs:
            raise LoomError(f"sandbox {sandbox_id} is being reviewed (its gates are running); nothing was "
                            "removed: remove it once the review has ended (if its reviewer died, "
                            f"`loomtui sandbox advance {sandbox_id}` reviews it again)", exit_code=1)
        if removing and current.data.get(REMOVING_KEY) == DELETING:
            return current  # an earlier removal got as far as deleting: this one finishes it
        return store.update_sandbox(sandbox_id, data={REMOVING_KEY: removing})


def sources_of(status: str) -> frozenset[str]:
    """The statuses from which a sandbox may move to `status`."""
    return frozenset(src for src, targets in TRANSITIONS.items() if status in targets)


def transition(
    workspace: Workspace, sandbox_id: str, to: str, *, reason: str = "",
    allowed_from: frozenset[str] | None = None, audit: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None, exit_code: int | None = None, pid: int | None = None,
    pid_start: str | None = None,
) -> SandboxRecord:
    """Move a sandbox to `to` (merging `data`, setting the others given) and record the move in the
    audit log.

    Raises LoomError (exit 1) when the sandbox is not in a status that may move to
    `to`; the check and the write are one store transaction.
    """
    if to not in TRANSITIONS:
        raise LoomError(f"unknown sandbox status {to!r} (one of {', '.join(STATUSES)})")
    sources = sources_of(to) if allowed_from is None else allowed_from
    store = workspace.store
    with store.transaction():
        current = store.get_sandbox(sandbox_id)
        if current is None:
            raise LoomError(f"no sandbox {sandbox_id}")
        if current.status not in sources:
            raise LoomError(
                f"sandbox {sandbox_id} is {current.status}; it cannot become {to}", exit_code=1
            )
        if to in _NOT_WHILE_REMOVING and current.data.get(REMOVING_KEY):
            raise LoomError(f"sandbox {sandbox_id} is being removed; it cannot become {to}", exit_code=1)
        if reason:
            data = {**(data or {}), "reason": reason}
        updated = store.update_sandbox(sandbox_id, status=to, data=data, exit_code=exit_code, pid=pid,
                                       pid_start=pid_start)
        details: dict[str, Any] = {"from": current.status, "to": to, **(audit or {})}
        if reason:
            details["reason"] = reason
        workspace.record(f"sandbox.{to}", sandbox_id, details)  # commits with the move, or not at all
    return updated


ENGINE_OWNED: Final = frozenset({RUNNING, PAUSED, MERGED, ARCHIVED})
"""Statuses only the execution engine sets, because a process or git change goes with them."""


def set_status(workspace: Workspace, sandbox_id: str, status: str, reason: str = "") -> SandboxRecord:
    """Move a sandbox along its review lifecycle (what guardrails and governance call)."""
    if status in ENGINE_OWNED:
        raise LoomError(f"a sandbox becomes {status} through its command (start, resume, merge, rm), "
                        "not by setting its status")
    return transition(workspace, sandbox_id, status, reason=reason)
