"""How much of the repository one agent's claims may hold.

An agent's own claims (those taken since it started: a person's given at its creation are not its
own) are bounded: a `claim` request past MAX_AGENT_HELD_FILES files is refused, and an edit's claim
past it is taken only while the files it holds unchanged stay under it. Files it has changed are its
to finish; without the second bound an agent talking to its hook could claim every file of the
repository, one edit it never made after another, and keep every other sandbox out.
"""

from __future__ import annotations

from typing import Final

from loomtui.coordination.regions import split_id
from loomtui.errors import LoomError
from loomtui.execution.sandboxes import agent_tree
from loomtui.store import ClaimRecord
from loomtui.workspace import Workspace

MAX_AGENT_HELD_FILES: Final = 200
"""Files the claims an agent took since it started may hold at once for its `claim` to be taken, and
files held without a change for an edit's claim to be taken: twenty at a time, one agent claimed every
file of the repository."""


def _own_claims(workspace: Workspace, sandbox_id: str) -> list[ClaimRecord]:
    """The live claims this sandbox's agent took since it started."""
    record = workspace.store.get_sandbox(sandbox_id)
    started = record.data.get("started_at") if record is not None else None
    since = float(started) if isinstance(started, int | float) else 0.0
    return [claim for claim in workspace.store.live_claims(sandbox_id) if claim.created >= since]


def _files_of(claim: ClaimRecord) -> set[str]:
    return {split_id(region)[0] for region in claim.region_ids}


def own_held_files(workspace: Workspace, sandbox_id: str) -> set[str]:
    """The files the claims this sandbox's agent took since it started hold."""
    return {path for claim in _own_claims(workspace, sandbox_id) for path in _files_of(claim)}


def changed_files(workspace: Workspace, sandbox_id: str) -> set[str]:
    """The files the sandbox's worktree has changed since its base commit, read from outside it."""
    record = workspace.store.get_sandbox(sandbox_id)
    if record is None or not record.base_sha or not record.worktree:
        raise LoomError(f"sandbox {sandbox_id} has no worktree to read its changes from")
    return set(agent_tree(workspace, record).snapshot(record.base_sha)[1])


def unchanged_own_claims(workspace: Workspace, sandbox_id: str) -> list[ClaimRecord]:
    """The claims this sandbox's agent took since it started whose files its change does not touch (its
    worktree against its base): for its end, when they hold nothing it did (changed and put back, committed and
    reset, claimed and never edited, they kept every other sandbox out through its review). [] when the change
    cannot be read (kept, as before)."""
    try:
        changed = changed_files(workspace, sandbox_id)
    except (LoomError, OSError):
        return []
    return [claim for claim in _own_claims(workspace, sandbox_id) if not _files_of(claim) & changed]


def held_unchanged_refusal(workspace: Workspace, sandbox_id: str, path: str,
                           changed: set[str] | None = None) -> tuple[str, set[str] | None]:
    """Why an edit's claim on `path` is refused ('' when it is not), and the changed files read (kept
    by the caller for the rest of one tool call: the worktree does not change before it runs).

    Read only past MAX_AGENT_HELD_FILES files held, where the worktree's changes are read (a snapshot).
    """
    held = own_held_files(workspace, sandbox_id)
    if path in held or len(held) < MAX_AGENT_HELD_FILES:
        return "", changed
    if changed is None:
        changed = changed_files(workspace, sandbox_id)
    unchanged = held - changed
    if len(unchanged) < MAX_AGENT_HELD_FILES:
        return "", changed
    return (f"this sandbox's claims hold {len(unchanged)} files it has not changed: an agent's claims hold at most "
            f"{MAX_AGENT_HELD_FILES} such files (release what it will not edit)"), changed
