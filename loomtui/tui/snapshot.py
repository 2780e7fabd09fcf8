"""What the dashboard shows, read from the store in one go (off the UI thread)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, NamedTuple

from loomtui.execution.sandboxes import branch_tips
from loomtui.governance.escalations import next_override_end, to_decide
from loomtui.governance.policy import MERGE_MANUAL
from loomtui.store import ClaimRecord, EscalationRecord, Event, SandboxRecord
from loomtui.workflow.steps import KnownHolders, StepView, branches_read, next_step, policy_read_for
from loomtui.workspace import Workspace

SANDBOX_EVAL: Final = "sandbox"
"""guardrails.evals.SANDBOX_EVAL, not imported: the eval engine (~0.15 s of imports) loads only once a
sandbox has a report to read, not before the first frame (tests/test_tui_bench.py keeps the two equal)."""

StepCache = dict[str, tuple[tuple[float, float, bool, tuple[tuple[str, str], ...], tuple[str | None, ...],
                                  str | None], StepView]]
"""sandbox id -> ((its `updated`, the newest change of any sandbox or escalation, whether it holds a claim, its
gate runs' statuses, the tips of the branches it reads, the policy's fingerprint), its step)."""


class EvalBadge(NamedTuple):
    """A sandbox's newest eval in the table's Gates column: `EvalReport.badge()`, and whether gate 1 failed."""

    text: str
    failed: bool


BadgeCache = dict[int, EvalBadge]
"""eval report id -> its badge (a stored report never changes)."""


@dataclass(frozen=True)
class DashboardSnapshot:
    sandboxes: list[SandboxRecord]
    escalations_to_decide: list[EscalationRecord]
    """The open ones and each override that ran out while its sandbox waits on it (`to_decide`)."""
    claims_by_sandbox: dict[str, list[ClaimRecord]] | None
    """None in a snapshot read without them (`read_snapshot(with_claims=False)`): counts only."""
    claim_counts: dict[str, int] = field(default_factory=dict)
    gates_by_sandbox: dict[str, dict[str, str]] = field(default_factory=dict)  # gate -> latest status
    risk_by_sandbox: dict[str, str] = field(default_factory=dict)  # from its newest escalation
    events: list[Event] = field(default_factory=list)
    last_event_id: int = 0
    policy_read: str | None = None
    """`policy_fingerprint` as read for the approved sandboxes' steps (None: none is approved)."""
    next_override_end: float | None = None
    """When the next running override runs out (`escalations.next_override_end`): nothing is written then."""
    steps: dict[str, StepView] = field(default_factory=dict)  # what each sandbox does or waits for next
    eval_badges: dict[str, EvalBadge] = field(default_factory=dict)  # from each sandbox's newest eval


def read_snapshot(workspace: Workspace, after_event: int, *, merge_mode: str = MERGE_MANUAL,
                  step_cache: StepCache | None = None, badge_cache: BadgeCache | None = None,
                  with_claims: bool = True) -> DashboardSnapshot:
    """Everything the dashboard needs, plus the events newer than `after_event`.

    A sandbox's step is worked out again only when it or any other sandbox or
    escalation changed since (`step_cache`): some steps ask git. Each sandbox's
    newest eval is one query for all of them; a report is read into its badge once
    (`badge_cache`). Without `with_claims` only each sandbox's count of claims is read (a count is
    all the table shows; reading 5,000 claims whole was half the time to the app's first frame).
    """
    store = workspace.store
    events = store.events_since(after_event)
    claims_by_sandbox: dict[str, list[ClaimRecord]] | None = None
    if with_claims:
        claims_by_sandbox = {}
        for claim in store.live_claims():
            claims_by_sandbox.setdefault(claim.sandbox_id, []).append(claim)
        claim_counts = {sandbox_id: len(claims) for sandbox_id, claims in claims_by_sandbox.items()}
    else:
        claim_counts = store.live_claim_counts()
    sandboxes = store.list_sandboxes()
    runs = store.live_gate_runs()
    gates_by_sandbox = {s.id: {run.gate: run.status for run in runs.get(s.id, [])} for s in sandboxes}
    escalations = store.live_escalations()
    risk_by_sandbox = {e.sandbox_id: e.risk for e in escalations if e.sandbox_id}
    badges: BadgeCache = {} if badge_cache is None else badge_cache
    eval_badges = {}
    # Only ids on each poll; a report (every test of it) is read once, when it is new.
    for subject, report_id in store.latest_eval_report_ids(SANDBOX_EVAL).items():
        if report_id not in badges:
            row = store.eval_report(report_id)
            if row is None:
                continue
            from loomtui.guardrails.evals import EvalReport

            report = EvalReport.from_dict(row.data)
            badges[report_id] = EvalBadge(report.badge(), bool(report.checks) and report.gate1 != "passed")
        eval_badges[subject] = badges[report_id]
    newest = max([s.updated for s in sandboxes] + [e.updated for e in escalations] + [0.0])
    cache: StepCache = {} if step_cache is None else step_cache
    # Read before what is to decide and the steps, which are judged later: an override running out between the
    # two reads was counted running with no end to wake for (the app's header stood at 0 for its 30 s wait).
    override_due = next_override_end(escalations)
    escalations_to_decide = to_decide(escalations, sandboxes)
    policy_read = policy_read_for(workspace, sandboxes)
    known = KnownHolders.of(claim_counts, escalations, sandboxes, policy_read)
    tips = branch_tips(workspace) if sandboxes else {}
    steps = {}
    for sandbox in sandboxes:
        # A claim released or a gate run ending changes neither record, and the step may turn on either (a
        # stopped agent's step was "release" in the app for good once the command line had released it); nor
        # does a commit made with git alone (a merge conflict resolved in the worktree: "resolve it" for good,
        # its review never run), nor the target moving on.
        key = (sandbox.updated, newest, sandbox.id in claim_counts, tuple(gates_by_sandbox[sandbox.id].items()),
               tuple(tips.get(name) for name in branches_read(sandbox)), policy_read)
        cached = cache.get(sandbox.id)
        if cached is None or cached[0] != key:
            cached = (key, next_step(workspace, sandbox, merge_mode=merge_mode, known=known))
            cache[sandbox.id] = cached
        steps[sandbox.id] = cached[1]
    return DashboardSnapshot(
        sandboxes=sandboxes,
        gates_by_sandbox=gates_by_sandbox,
        risk_by_sandbox=risk_by_sandbox,
        escalations_to_decide=escalations_to_decide,
        next_override_end=override_due,
        policy_read=policy_read,
        claims_by_sandbox=claims_by_sandbox,
        claim_counts=claim_counts,
        events=events,
        last_event_id=events[-1].id if events else after_event,
        steps=steps,
        eval_badges=eval_badges,
    )
