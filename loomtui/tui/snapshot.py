"""What the dashboard shows, read from the store in one go (off the UI thread)."""

from __future__ import annotations

from dataclasses import dataclass, field

from loomtui.store import ClaimRecord, EscalationRecord, Event, SandboxRecord
from loomtui.workspace import Workspace


@dataclass(frozen=True)
class DashboardSnapshot:
    sandboxes: list[SandboxRecord]
    open_escalations: list[EscalationRecord]
    claims_by_sandbox: dict[str, list[ClaimRecord]]
    gates_by_sandbox: dict[str, dict[str, str]] = field(default_factory=dict)  # gate -> latest status
    risk_by_sandbox: dict[str, str] = field(default_factory=dict)  # from its newest escalation
    events: list[Event] = field(default_factory=list)
    last_event_id: int = 0


def read_snapshot(workspace: Workspace, after_event: int) -> DashboardSnapshot:
    """Everything the dashboard needs, plus the events newer than `after_event`."""
    store = workspace.store
    events = store.events_since(after_event)
    claims_by_sandbox: dict[str, list[ClaimRecord]] = {}
    for claim in store.live_claims():
        claims_by_sandbox.setdefault(claim.sandbox_id, []).append(claim)
    sandboxes = store.list_sandboxes()
    gates_by_sandbox = {s.id: {run.gate: run.status for run in store.gate_runs(s.id)} for s in sandboxes}
    risk_by_sandbox = {e.sandbox_id: e.risk for e in store.list_escalations() if e.sandbox_id}
    return DashboardSnapshot(
        sandboxes=sandboxes,
        gates_by_sandbox=gates_by_sandbox,
        risk_by_sandbox=risk_by_sandbox,
        open_escalations=store.list_escalations("open"),
        claims_by_sandbox=claims_by_sandbox,
        events=events,
        last_event_id=events[-1].id if events else after_event,
    )
