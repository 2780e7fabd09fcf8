"""Plain records the store returns. Engines and UIs read these; none of them see SQL."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the store's event stream; `id` increases monotonically."""

    id: int
    ts: float
    kind: str
    subject: str
    data: dict[str, Any]


SANDBOX_COLUMNS = (
    "id", "task", "runtime", "status", "created", "updated", "base_ref", "branch",
    "worktree", "isolation", "pid", "pid_start", "exit_code", "heartbeat", "data", "host",
)
"""The sandboxes table's columns, as SandboxRecord's fields."""


_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def data_json(data: Mapping[str, Any] | None) -> str:
    """A record's `data` as stored: canonical JSON. A NUL in it (an agent's output can carry one)
    is stored as U+FFFD on both backends: PostgreSQL's JSON functions refuse `\\u0000`."""
    text = json.dumps(dict(data or {}), sort_keys=True, default=str)
    return _NUL_ESCAPE.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


ENDED_STATUSES: Final = ("merged", "rejected", "archived")
"""Statuses whose agent never runs again: their claims are released, their context read by no one."""
WORKTREE_MISSING_KEY: Final = "worktree_missing"
"""The data key `reconcile` sets on a sandbox whose worktree was deleted."""


@dataclass(frozen=True, slots=True)
class SandboxRecord:
    id: str
    task: str
    runtime: str
    status: str
    created: float
    updated: float
    base_ref: str = ""
    branch: str = ""
    worktree: str = ""
    isolation: str = ""
    pid: int | None = None
    pid_start: str | None = None
    exit_code: int | None = None
    heartbeat: float | None = None
    data: dict[str, Any] = field(default_factory=dict)
    host: str = ""
    """The machine its agent runs on ('' for a sandbox made before hosts were recorded)."""

    # Typed views of the `data` fields read across layers: one name per field, one place.

    @property
    def base_sha(self) -> str:
        """The commit its worktree started from ('' before the worktree is made)."""
        return str(self.data.get("base_sha") or "")

    @property
    def target(self) -> str:
        """The branch its change merges into."""
        return str(self.data.get("target") or "")

    @property
    def created_by(self) -> str:
        """Who stated the task (its author, for separation of duties)."""
        return str(self.data.get("created_by") or "")

    @property
    def claim_targets(self) -> tuple[str, ...]:
        """The claim targets stated with the task (claimed when it is prepared)."""
        return tuple(str(c) for c in self.data.get("claims") or ())

    @property
    def after(self) -> tuple[str, ...]:
        """The sandboxes whose change merges before this task starts."""
        return tuple(str(a) for a in self.data.get("after") or ())

    @property
    def worktree_missing(self) -> bool:
        """Its worktree was found deleted (by hand; `reconcile` marks it, and git forgets the worktree)."""
        return bool(self.data.get(WORKTREE_MISSING_KEY))

    @property
    def ended_for_good(self) -> bool:
        """No agent of it runs again or reads its context: merged, rejected, archived, or its worktree gone."""
        return self.status in ENDED_STATUSES or self.worktree_missing

    @property
    def merged_commit(self) -> str:
        """The merge commit of its change ('' until merged)."""
        return str(self.data.get("merged_commit") or "")

    @property
    def merged_into(self) -> str:
        return str(self.data.get("merged_into") or "")

    @property
    def approved_commit(self) -> str:
        """The commit an approval was for ('' when none)."""
        return str(self.data.get("approved_commit") or "")

    @property
    def context_files(self) -> tuple[str, ...]:
        """Files loomtui wrote into its worktree for the agent (never committed as its work)."""
        return tuple(str(f) for f in self.data.get("context_files") or ())


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    id: int
    sandbox_id: str
    target: str
    mode: str
    reason: str
    created: float
    expires: float
    region_ids: tuple[str, ...]
    released: float | None = None
    release_reason: str | None = None


@dataclass(frozen=True, slots=True)
class EscalationRecord:
    id: int
    sandbox_id: str
    kind: str
    status: str
    risk: str
    summary: str
    created: float
    updated: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GateRunRecord:
    id: int
    sandbox_id: str
    gate: str
    status: str
    commit_sha: str
    started: float
    finished: float | None
    data: dict[str, Any] = field(default_factory=dict)
    scope: str = "sandbox"
    """sandbox (its `sandbox_id`), baseline (a commit's, shared) or merged (a speculative merge)."""
    fingerprint: str = ""
    """The check's settings: a stored result answers only for the same check."""

    @property
    def advisory(self) -> bool:
        """Whether its check was configured `blocking: false` (shown, never failing gate 1 or a policy's glob)."""
        return self.data.get("blocking") is False


@dataclass(frozen=True, slots=True)
class EvalReportRecord:
    """One whole eval of a subject (a sandbox id, or `merged`) at a commit."""

    id: int
    subject: str
    kind: str
    commit_sha: str
    fingerprint: str
    created: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoreStatus:
    path: str
    schema_version: int
    journal_mode: str
    last_event_id: int
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class RepositoryRecord:
    """A repository whose state is in a store, with what a lead's queue across repositories needs."""

    namespace: str
    name: str
    open_escalations: int
    sandboxes: int

    def as_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, "open_escalations": self.open_escalations,
                "sandboxes": self.sandboxes}
