"""Plain records the store returns. Engines and UIs read these; none of them see SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the store's event stream; `id` increases monotonically."""

    id: int
    ts: float
    kind: str
    subject: str
    data: dict[str, Any]


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


@dataclass(frozen=True, slots=True)
class StoreStatus:
    path: str
    schema_version: int
    journal_mode: str
    last_event_id: int
    counts: dict[str, int]
