"""What the dashboard shows, read from the store in one go (off the UI thread)."""

from __future__ import annotations

from dataclasses import dataclass, field

from loomtui.governance.policy import MERGE_MANUAL
from loomtui.store import ClaimRecord, EscalationRecord, Event, SandboxRecord
from loomtui.workflow.steps import StepView, next_step
from loomtui.workspace import Workspace

StepCache = dict[str, tuple[tuple[float, float], StepView]]
"""sandbox id -> ((its `updated`, the newest change of any sandbox or escalation), its step)."""


@dataclass(frozen=True)
class DashboardSnapshot:
    sandboxes: list[SandboxRecord]
    open_escalations: list[EscalationRecord]
    claims_by_sandbox: dict[str, list[ClaimRecord]]
    gates_by_sandbox: dict[str, dict[str, str]] = field(default_factory=dict)  # gate -> latest status
    risk_by_sandbox: dict[str, str] = field(default_factory=dict)  # from its newest escalation
    events: list[Event] = field(default_factory=list)
    last_event_id: int = 0
    steps: dict[str, StepView] = field(default_factory=dict)  # what each sandbox does or waits for next


def read_snapshot(workspace: Workspace, after_event: int, *, merge_mode: str = MERGE_MANUAL,
                  step_cache: StepCache | None = None) -> DashboardSnapshot:
    """Everything the dashboard needs, plus the events newer than `after_event`.

    A sandbox's step is worked out again only when it or any other sandbox or
    escalation changed since (`step_cache`): some steps ask git.
    """
    store = workspace.store
    events = store.events_since(after_event)
    claims_by_sandbox: dict[str, list[ClaimRecord]] = {}
    for claim in store.live_claims():
        claims_by_sandbox.setdefault(claim.sandbox_id, []).append(claim)
    sandboxes = store.list_sandboxes()
    gates_by_sandbox = {s.id: {run.gate: run.status for run in store.gate_runs(s.id)} for s in sandboxes}
    escalations = store.list_escalations()
    risk_by_sandbox = {e.sandbox_id: e.risk for e in escalations if e.sandbox_id}
    newest = max([s.updated for s in sandboxes] + [e.updated for e in escalations] + [0.0])
    cache: StepCache = {} if step_cache is None else step_cache
    steps = {}
    for sandbox in sandboxes:
        key = (sandbox.updated, newest)
        cached = cache.get(sandbox.id)
        if cached is None or cached[0] != key:
            cached = (key, next_step(workspace, sandbox, merge_mode=merge_mode))
            cache[sandbox.id] = cached
        steps[sandbox.id] = cached[1]
    return DashboardSnapshot(
        sandboxes=sandboxes,
        gates_by_sandbox=gates_by_sandbox,
        risk_by_sandbox=risk_by_sandbox,
        open_escalations=store.list_escalations("open"),
        claims_by_sandbox=claims_by_sandbox,
        events=events,
        last_event_id=events[-1].id if events else after_event,
        steps=steps,
    )
