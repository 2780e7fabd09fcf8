"""The demo scenario: four agents on the billing service, run from a plan by the workflow engine.

`loomtui demo --headless` runs it start to finish (`run_headless`); the app shows it
live (`start_scenario` when it opens, then `advance_scenario` on a timer). This
module does no step of a task itself and fakes no result. The four tasks are the
repository's plan (`.loom/plan.yaml`), stated by `loomtui.workflow.planrun.run_plan`
in the order the code asks for. The agents are the `script` runtime replaying the
timed edits in `.loom/demo/*.yaml` (real files, real commits, in real sandboxes)
under the workflow's supervisor, which advances a task when its agent ends: the
gates (real pytest and compileall runs in its worktree), the policy on its diff, an
escalation, and, as the policy's `merge: auto` says, the merge of an approved
change, its claims released and the tasks waiting on it started from the new main.
Here the scenario narrates what the engines did (from the audit log) and, headless,
takes the people's decisions.

The plan, as the engineer `DEMO_ENGINEER` states it (claims suggested by the
coordination engine, then confirmed):

1. refunds: "Add partial refunds ..." claims `RefundService.quote` and
   `RefundService.issue_refund`.
2. rounding: "Refactor round_minor_units ..." claims `round_minor_units`, which
   `RefundService.quote` and `InvoiceCalculator.subtotal` reference. The schedule
   puts rounding first (callee first): refunds and invoices wait for its merge and
   start from it. A claim check beside rounding shows the dependency conflict that
   order avoids; its agent adds a keyword parameter (a signature change), which
   would raise that conflict to high, and meets no caller's agent at work.
3. invoices: "Speed up invoice totals" makes the careless speed-up (sum, then
   round once); the tests gate fails on the regression test that guards it, and
   the policy's `failing-gates` rule blocks the change.
4. templates: fixes three typos in `notifications/templates/*.txt`; the gates pass,
   the policy's `docs-and-templates` rule auto-approves, and the engine merges it
   (with the `Loom-Sandbox:`/`Loom-Runtime:`/`Assisted-by:` trailers) with nobody
   pressing merge.

Every change of payments code needs two approvals from payments-team. Headless,
alice and bob approve the rounding change, which merges (refunds and invoices then
start from it), then the refunds change, which merges; the invoices escalation
stays open for a lead to triage in the app.

Progress lives in the store: the engine's statuses, claims and escalations, and on
each sandbox the last audit entry narrated (`demo_told`). So `advance_scenario` can
be called any number of times, from any process: it advances what is due (the
engine does each step once, whoever calls) and says only what is new.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Final

from loomtui.audit import AuditEntry
from loomtui.coordination.claims import Conflict, Coordinator
from loomtui.coordination.diff import diff_regions
from loomtui.coordination.suggest import suggest_regions
from loomtui.errors import LoomError
from loomtui.execution.gitops import Git
from loomtui.execution.lifecycle import EXITED, FAILED, LIVE, MERGED, PLANNED
from loomtui.execution.procs import is_alive
from loomtui.execution.sandboxes import isolation_label, stop, wait_for_status
from loomtui.governance.coordinator import governed_coordinator
from loomtui.governance.escalations import DecisionRefused, EscalationStatus, decide, queue, status_lines
from loomtui.governance.policy import ChangeFacts, Evaluation, Policy, evaluate, load_policy
from loomtui.guardrails.gates import gate_argv, gate_environment
from loomtui.store import EscalationRecord, SandboxRecord
from loomtui.workflow.engine import Workflow, advance, advance_all, settled_view
from loomtui.workflow.plan import PLAN_PATH, Plan, PlanTask, load_plan
from loomtui.workflow.planrun import PLAN_KEY, PlanRun, cancel_plan, run_plan
from loomtui.workflow.steps import AFTER_KEY, PRESTART_KEY, REVIEW_ESCALATION_KEY, STEP_ERROR_KEY
from loomtui.workspace import Workspace

DEMO_ENGINEER: Final = "sam@example.com"
"""Who states the tasks (in no policy group, so never their own reviewer)."""
DEMO_REVIEWERS: Final = ("alice@example.com", "bob@example.com")
"""payments-team members who approve the rounding and refunds changes in the headless run."""
DEMO_LEAD: Final = "lead@example.com"
"""A lead (policy group `leads`, who may override): a good identity for triage in the app."""
RUNTIME: Final = "script"
AGENT_TIMEOUT_S: Final = 90.0
"""How long one wait may take: a wave of agents (a few seconds of script), their gates and merges."""
POLL_S: Final = 0.2
START_WAIT_S: Final = 10.0
"""How long a start approved in `start_scenario` is waited for (its supervisor records the agent running)."""

AGENT_NAMES: Final = ("refunds", "rounding", "invoices", "templates")
"""The plan's tasks, as the demo names its agents (`.loom/plan.yaml`)."""
HEADLESS_APPROVALS: Final = ("rounding", "refunds")
"""The changes DEMO_REVIEWERS approve headless, in this order (each once the scenario has settled)."""

# Sandbox data keys the scenario keeps (the engine's own keys are in loomtui.workflow.steps).
AGENT_KEY: Final = "demo_agent"
CONFLICTS_KEY: Final = "demo_conflicts_at_claim"
"""What the claim check showed for a task that waits on others: its claims beside the live ones."""
RAISED_KEY: Final = "demo_conflicts_raised"
"""A signature change: the regions, and the conflicts the claim check of the waiting tasks raised to high."""
TOLD_KEY: Final = "demo_told"
"""The seq of the last audit entry about this sandbox that the scenario has narrated."""
ESCALATION_KEY: Final = REVIEW_ESCALATION_KEY

Say = Callable[[str], None]

_ADVANCING = threading.Lock()


class _Steps:
    """Collects the lines of a step and passes each on as it happens."""

    def __init__(self, on_step: Say | None = None) -> None:
        self.lines: list[str] = []
        self.on_step = on_step

    def __call__(self, text: str) -> None:
        self.lines.append(text)
        if self.on_step is not None:
            self.on_step(text)

    def heading(self, text: str) -> None:
        self("")
        self(f"== {text} ==")


# -- finding the scenario in the store -------------------------------------------------


def demo_sandboxes(workspace: Workspace) -> dict[str, SandboxRecord]:
    """The scenario's sandboxes by agent name (the newest one of each), archived included."""
    found: dict[str, SandboxRecord] = {}
    for record in sorted(workspace.store.list_sandboxes(include_archived=True), key=lambda r: r.created):
        name = record.data.get(AGENT_KEY)
        if name in AGENT_NAMES:
            found[name] = record
    return {name: found[name] for name in AGENT_NAMES if name in found}


def _audit_after(workspace: Workspace, seq: int) -> list[AuditEntry]:
    entries = []
    for _seq, _hash, line in workspace.store.audit_entries_after(seq):
        try:
            entries.append(AuditEntry(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a damaged entry: `loomtui audit verify` reports it
    return entries


def _about(entry: AuditEntry, ids: set[str]) -> str | None:
    """The demo sandbox an audit entry is about (None for others, and for the scenario's own entries)."""
    if entry.action.startswith("demo."):
        return None
    if entry.subject in ids:
        return entry.subject
    sandbox = entry.details.get("sandbox") if entry.action.startswith("escalation.") else None
    return str(sandbox) if sandbox in ids else None


def _untold(workspace: Workspace, sandboxes: dict[str, SandboxRecord]) -> list[tuple[AuditEntry, SandboxRecord]]:
    """The audit entries about the scenario's sandboxes not yet narrated, oldest first."""
    if not sandboxes:
        return []
    told = {r.id: int(r.data.get(TOLD_KEY) or 0) for r in sandboxes.values()}
    by_id = {r.id: r for r in sandboxes.values()}
    found = []
    for entry in _audit_after(workspace, min(told.values())):
        sandbox_id = _about(entry, set(by_id))
        if sandbox_id is not None and entry.seq > told[sandbox_id]:
            found.append((entry, by_id[sandbox_id]))
    return found


def scenario_pending(workspace: Workspace) -> bool:
    """Whether the scenario still has work that happens without a person (agents, gates, merges),
    or things done that `advance_scenario` has not yet said.

    False before `start_scenario` and once every task waits for a person or is done.
    A decision taken later (approve, reject, override) makes it pending again until
    `advance_scenario` has acted on it and said so.
    """
    sandboxes = demo_sandboxes(workspace)
    if not sandboxes:
        return False
    flow = Workflow(workspace)
    if any(settled_view(workspace, record.id, policy=flow.policy) is None for record in sandboxes.values()):
        return True
    return bool(_untold(workspace, sandboxes))


def _policy(workspace: Workspace) -> Policy:
    return load_policy(workspace.root, workspace.load_config().policy)


def _as(workspace: Workspace, actor: str) -> Workspace:
    """The same workspace (store, audit log) acting as someone else; never close it."""
    return replace(workspace, actor=actor)


def _short(region_id: str) -> str:
    return region_id.split("::", 1)[1] if "::" in region_id else region_id


def _outcome(evaluation: Evaluation) -> str:
    rules = ", ".join(evaluation.rule_names()) or "no rule"
    if evaluation.outcome == "require":
        needs = "; ".join(r.describe() for r in evaluation.requirements)
        return f"require {needs} (risk {evaluation.risk}; {rules})"
    return f"{evaluation.outcome} (risk {evaluation.risk}; {rules})"


def _names(workspace: Workspace, ids: Sequence[object]) -> list[str]:
    names = []
    for sandbox_id in ids:
        record = workspace.store.get_sandbox(str(sandbox_id))
        names.append(str(record.data.get(AGENT_KEY) or sandbox_id) if record else str(sandbox_id))
    return names


def _conflict_line(workspace: Workspace, conflict: dict[str, Any], coordinator: Coordinator) -> str:
    """A conflict (`Conflict.as_dict()`, as claims record it) from the side of the claim checked."""
    other = str(conflict["b"]["sandbox"])
    path = [str(p) for p in conflict["path"]]
    return (f"  {str(conflict['severity']).upper()}: {conflict['kind']} conflict with "
            f"{_names(workspace, [other])[0]} (sandbox {other}): {coordinator.describe_path(path)}")


# -- starting ----------------------------------------------------------------------------


def _demo_plan(workspace: Workspace) -> Plan:
    """The repository's plan, checked to be the demo's four tasks with their scripts."""
    root = workspace.root
    if not (root / PLAN_PATH).is_file():
        raise LoomError(f"{root} has no {PLAN_PATH}; `loomtui demo` makes a repository that has the demo's plan")
    plan = load_plan(root, PLAN_PATH)
    names = [task.name for task in plan.tasks]
    if sorted(names) != sorted(AGENT_NAMES):
        raise LoomError(f"{root / PLAN_PATH} is not the demo's plan (tasks {', '.join(names)}; the demo runs "
                        f"{', '.join(AGENT_NAMES)}); `loomtui demo` makes a repository that has it")
    missing = [task.script or task.name for task in plan.tasks if not task.script or not (root / task.script).is_file()]
    if missing:
        raise LoomError(f"{root} has no demo scripts ({', '.join(missing)}); `loomtui demo` makes a "
                        "repository that has them")
    return plan


def start_scenario(workspace: Workspace, on_step: Say | None = None, *, approve_start: bool = True) -> list[str]:
    """Say the claims of the plan's four tasks, then run the plan: the engine starts the first wave.

    The claims of each task (suggested by coordination, confirmed by the engineer)
    and the policy on them are said first; then `run_plan` states the tasks in the
    order the code asks for, and the claim check of each task that waits is said
    (the conflict its order avoids). A task whose claims the policy holds before
    generation waits for a pre-start escalation: with `approve_start` (the default)
    the demo's payments reviewers give it at once; without it the task waits for
    whoever triages it in the app (`advance_scenario` then lets the engine start it).

    Returns (and passes to `on_step`, one by one) the lines saying what happened;
    returns once the first agents are launched under their detached supervisors.
    Does nothing (returns []) when the scenario has already been started here.
    Raises LoomError when the repository is not a demo repository.
    """
    with _ADVANCING:
        if demo_sandboxes(workspace):
            return []
        return _start(workspace, _Steps(on_step), approve_start)


def _start(workspace: Workspace, say: _Steps, approve_start: bool) -> list[str]:
    plan = _demo_plan(workspace)
    coordinator = governed_coordinator(workspace)
    policy = _policy(workspace)
    workspace.record("demo.scenario_started", str(workspace.root),
                     {"agents": list(AGENT_NAMES), "engineer": DEMO_ENGINEER, "plan": PLAN_PATH})

    say.heading("Claims before code")
    say(f"{DEMO_ENGINEER} states four tasks in {PLAN_PATH}; coordination suggests the regions each touches, "
        "the engineer confirms them, and the claims are checked against each other before an agent starts.")
    for task in plan.tasks:
        _say_claims(coordinator, policy, task, say)

    say.heading("The order the code asks for")
    engineer = _as(workspace, DEMO_ENGINEER)
    run = run_plan(engineer, PLAN_PATH, say=say, data_for=lambda name: {AGENT_KEY: name})
    _say_order(workspace, coordinator, run, say)

    say.heading("Agents at work")
    _narrate(workspace, say)
    if approve_start and _waiting_to_start(workspace):
        say.heading("Approval to start")
        _approve_starts(workspace, say)
        _narrate(workspace, say)
    return say.lines


def _say_claims(coordinator: Coordinator, policy: Policy, task: PlanTask, say: Say) -> None:
    say(f"[{task.name}] {task.task}")
    suggestions = suggest_regions(coordinator.index, task.task, limit=10)
    ranked = [s.region.id for s in suggestions]
    if suggestions:
        say("  suggested: " + ", ".join(f"{_short(s.region.id)} ({s.score:g})" for s in suggestions[:3]))
    notes, regions = [], []
    for claim in task.claims:
        resolved = coordinator.resolve(claim)
        regions.extend(resolved)
        if claim in ranked:
            notes.append(f"{_short(claim)} (suggestion #{ranked.index(claim) + 1})")
        elif resolved != [claim]:
            notes.append(f"{claim} ({len(resolved)} files; added by the engineer: suggestions are code regions)")
        else:
            notes.append(f"{claim} (added by the engineer)")
    say("  confirmed: " + ", ".join(notes))
    facts = ChangeFacts(stage="claim", paths=tuple(sorted({r.split("::", 1)[0] for r in regions})),
                        regions=tuple(sorted(r for r in regions if "::" in r)), runtime=task.runtime,
                        author=DEMO_ENGINEER)
    evaluation = evaluate(policy, facts)
    verdict = _outcome(evaluation) if evaluation.applied else "no rule applies before generation"
    say(f"  policy on the claims: {verdict}")


def _say_order(workspace: Workspace, coordinator: Coordinator, run: PlanRun, say: Say) -> None:
    """The waves, and for each task that waits, the conflicts its claims would have beside the live ones."""
    target = Git(workspace.root).current_branch() or "the target branch"
    for number, wave in enumerate(run.schedule.waves, 1):
        before = sorted({e.before for e in run.schedule.edges if e.after in wave})
        when = "now" if number == 1 else f"from {target}, after the merge of {', '.join(before)}"
        say(f"wave {number} ({when}): {', '.join(wave)}")
    for name, sandbox_id in run.sandboxes.items():
        record = workspace.store.get_sandbox(sandbox_id)
        if record is None or not record.data.get(AFTER_KEY) or workspace.store.live_claims(sandbox_id):
            continue
        regions = [r for claim in record.data.get("claims") or [] for r in coordinator.resolve(claim)]
        conflicts = coordinator.check(sandbox_id, regions)
        workspace.store.update_sandbox(sandbox_id, data={CONFLICTS_KEY: [c.as_dict() for c in conflicts]})
        workspace.record("demo.claims_checked", sandbox_id,
                         {"regions": regions, "conflicts": [c.as_dict() for c in conflicts]})
        waits_on = ", ".join(_names(workspace, record.data.get(AFTER_KEY) or []))
        if not conflicts:
            say(f"[{name}] its claims beside the live ones: no conflict; it waits for {waits_on} all the same")
            continue
        say(f"[{name}] a claim check of its regions beside the live claims shows:")
        for conflict in conflicts:
            say(_conflict_line(workspace, conflict.as_dict(), coordinator))
        say(f"  so {name} does not run beside {waits_on}: it starts from {target} after {waits_on}'s merge "
            "(the order is the resolution)")


def _waiting_to_start(workspace: Workspace) -> list[tuple[str, SandboxRecord, int]]:
    """The scenario's tasks that wait for an open pre-start escalation."""
    found = []
    for name, record in demo_sandboxes(workspace).items():
        escalation_id = record.data.get(PRESTART_KEY)
        escalation = workspace.store.get_escalation(int(escalation_id)) if escalation_id else None
        if record.status == PLANNED and escalation is not None and escalation.status == EscalationStatus.OPEN:
            found.append((name, record, escalation.id))
    return found


def _approve_starts(workspace: Workspace, say: Say) -> list[dict[str, Any]]:
    """The demo's payments reviewers approve the starts the policy holds; the engine then starts them."""
    decisions: list[dict[str, Any]] = []
    policy = _policy(workspace)
    for name, record, escalation_id in _waiting_to_start(workspace):
        decisions += _approve(workspace, policy, escalation_id, f"the start of {name}", say)
        advance(workspace, record.id)
        now = workspace.store.get_sandbox(record.id)
        if now is not None and now.status == PLANNED and is_alive(now.pid, now.pid_start):
            try:  # the engine started its supervisor: the agent runs in a moment (the narration says so)
                wait_for_status(workspace, record.id, LIVE | {EXITED, FAILED}, timeout=START_WAIT_S)
            except LoomError:
                pass
    return decisions


def _approve(workspace: Workspace, policy: Policy, escalation_id: int, what: str, say: Say) -> list[dict[str, Any]]:
    """The demo's payments reviewers approve an escalation, one after the other, until it is approved.

    Each decision is said by the narration (from the audit log); a refusal is said here.
    """
    decisions = []
    for reviewer in DEMO_REVIEWERS:
        try:
            escalation = decide(_as(workspace, reviewer), policy, escalation_id, "approve")
        except DecisionRefused as exc:
            say(f"{reviewer} may not approve {what}: {exc}")
            break
        decisions.append({"by": reviewer, "escalation": escalation_id, "decision": "approve",
                          "status": escalation.status, "what": what})
        if escalation.status != EscalationStatus.OPEN:
            break
    return decisions


def stop_scenario(workspace: Workspace, grace: float = 2.0) -> list[str]:
    """Stop the scenario (before the demo repository is deleted): the tasks not yet started are
    cancelled (so no merge starts them), then the agents still running are stopped."""
    lines = []
    if demo_sandboxes(workspace):
        try:
            lines += [line for line in cancel_plan(workspace) if "cancelled" in line]
        except LoomError as exc:
            lines.append(f"cancelling the plan: {exc}")
    for name, record in demo_sandboxes(workspace).items():
        if record.status in LIVE:
            try:
                stop(workspace, record.id, grace=grace)
                lines.append(f"[{name}] stopped")
            except LoomError as exc:
                lines.append(f"[{name}] {exc}")
    return lines


# -- advancing -----------------------------------------------------------------------------


def advance_scenario(workspace: Workspace, on_step: Say | None = None) -> list[str]:
    """Let the engine do whatever step is now due, then say what the engines did since last said.

    The engine does every step (`advance_all`): the supervisors already advance a
    task when its agent ends, so this mostly finds a decision taken meanwhile (it
    follows it: approved -> merged, the tasks waiting on it started; rejected ->
    rejected). What is said comes from the audit log: agents started and ended,
    gate results, the policy's outcome, escalations opened and decided, merges with
    their trailers, claims released. Safe to call repeatedly and from several
    threads or processes (a call while another runs in this process returns [] at
    once). Returns [] when nothing happened (cheap: a few store reads, no writes).
    """
    if not _ADVANCING.acquire(blocking=False):
        return []
    try:
        say = _Steps(on_step)
        if not demo_sandboxes(workspace):
            return []
        advance_all(workspace)
        _narrate(workspace, say)
        return say.lines
    finally:
        _ADVANCING.release()


class _Narrator:
    """Says one audit entry about a demo sandbox as a `[name] ...` line (or nothing)."""

    def __init__(self, workspace: Workspace, say: Say) -> None:
        self.workspace = workspace
        self.say = say
        self.repo = Git(workspace.root)
        self._coordinator: Coordinator | None = None
        self._group: tuple[str, str] | None = None  # (name, action) of the entries gathered into one line
        self._gathered: list[dict[str, Any]] = []

    @property
    def coordinator(self) -> Coordinator:
        if self._coordinator is None:
            self._coordinator = governed_coordinator(self.workspace)
        return self._coordinator

    def tell(self, entry: AuditEntry, record: SandboxRecord) -> None:
        name = str(record.data.get(AGENT_KEY) or record.id)
        action, details = entry.action, entry.details
        if self._group != (name, action):
            self.flush()
        if action in ("claim.added", "claim.released"):  # one line for a task's claims taken or given back
            self._group = (name, action)
            self._gathered.append(details)
        elif action == "sandbox.running":
            self._started(name, record, details)
        elif action == "sandbox.paused":
            self.say(f"[{name}] paused")
        elif action in ("sandbox.exited", "sandbox.failed") and details.get("from") in LIVE:
            self.say(f"[{name}] {_ended_line(self.repo, record, details)}")
            self._signature_check(name, record)
        elif action == "sandbox.failed":
            self.say(f"[{name}] failed: {details.get('reason')}")
        elif action.startswith("gate."):
            summary = f" ({details['summary']})" if details.get("summary") else ""
            self.say(f"[{name}]   gate {details.get('gate')} {action.removeprefix('gate.')}{summary}")
            for test in details.get("failed_tests") or []:
                self.say(f"[{name}]     failed: {test}")
        elif action == "policy.evaluated":
            self._policy(name, details)
        elif action == "escalation.opened":
            self._escalation_opened(name, entry)
        elif action in ("escalation.approve", "escalation.reject", "escalation.override"):
            verb = {"approve": "approves", "reject": "rejects", "override": "overrides"}[action.split(".")[1]]
            why = f" ({details['reason']})" if details.get("reason") else ""
            status = details.get("status")
            now = "still open" if status == EscalationStatus.OPEN else status
            self.say(f"[{name}] {details.get('by')} {verb} escalation #{entry.subject}{why} -> {now}")
        elif action == "escalation.superseded":
            self.say(f"[{name}] escalation #{entry.subject} superseded: new commits are reviewed again")
        elif action == "sandbox.approved":
            self.say(f"[{name}] approved: {details.get('reason')}")
        elif action == "sandbox.merged":
            self._merged(name, record, details)
        elif action == "sandbox.rejected":
            self.say(f"[{name}] rejected, not merged: {details.get('reason')}")
        elif action == "sandbox.archived":
            self.say(f"[{name}] archived")
        elif action == "workflow.step_failed":
            self.say(f"[{name}] step {details.get('step')} failed: {details.get('error')}")

    def flush(self) -> None:
        """Say the gathered claim entries (one line per task), if any."""
        if self._group is None:
            return
        (name, action), gathered = self._group, self._gathered
        self._group, self._gathered = None, []
        if action == "claim.released":
            reasons = sorted({str(d.get("reason")) for d in gathered} - {"sandbox merged"})
            why = f" ({'; '.join(reasons)})" if reasons else ""
            self.say(f"[{name}] claim{'s' if len(gathered) != 1 else ''} released: "
                     f"{', '.join(str(d.get('target')) for d in gathered)}{why}")
            return
        regions = [str(r) for d in gathered for r in d.get("regions") or []]
        shown = ", ".join(_short(r) for r in regions[:3]) + (f" (+{len(regions) - 3})" if len(regions) > 3 else "")
        conflicts = [c for d in gathered for c in d.get("conflicts") or []]
        self.say(f"[{name}] claimed {shown}" + ("" if conflicts else ": no conflict with a live claim"))
        for conflict in conflicts:
            self.say(f"[{name}] " + _conflict_line(self.workspace, conflict, self.coordinator).strip())

    def _started(self, name: str, record: SandboxRecord, details: dict[str, Any]) -> None:
        if details.get("from") == "paused":
            self.say(f"[{name}] resumed")
            return
        base = str(record.data.get("base_sha") or "")
        target = str(record.data.get("target") or record.base_ref)
        merged_from = [other for other in _dependencies(self.workspace, record)
                       if other.data.get("merged_commit") == base]
        whose = f", {' and '.join(_names(self.workspace, [o.id for o in merged_from]))}'s merge" if merged_from else ""
        self.say(f"[{name}] agent started ({record.runtime} runtime, {isolation_label(record)}) on {record.branch}, "
                 f"from {target} at {base[:10]}{whose}")

    def _signature_check(self, name: str, record: SandboxRecord) -> None:
        """A signature the agent changed: who uses it, and why none of them meets it (the plan's order)."""
        base = str(record.data.get("base_sha") or "")
        if not base or not record.branch or record.data.get(RAISED_KEY):
            return
        try:
            changed = sorted(c.region_id for c in diff_regions(self.workspace.root, base, record.branch)
                             if c.signature_changed)
        except LoomError:
            return
        if not changed:
            return
        workspace = self.workspace
        self.say(f"[{name}] changed the signature of {', '.join(changed)}")
        waiting = [other for other in demo_sandboxes(workspace).values()
                   if other.status == PLANNED and record.id in (other.data.get(AFTER_KEY) or [])]
        raised: list[Conflict] = []
        for other in waiting:
            try:
                regions = [r for claim in other.data.get("claims") or [] for r in self.coordinator.resolve(claim)]
            except LoomError:
                continue  # its claim names nothing now; the engine says so when it prepares the task
            found = [c for c in self.coordinator.check(other.id, regions, signature_changed=changed)
                     if c.severity == "high" and c.sandbox_b == record.id]
            for conflict in found:
                other_name = str(other.data.get(AGENT_KEY))
                self.say(f"[{name}]   HIGH, were {other_name} beside it: dependency conflict with {other_name} "
                         f"(sandbox {other.id}): {self.coordinator.describe_path(conflict.path)}")
            raised += found
        if waiting:
            names = " and ".join(_names(workspace, [o.id for o in waiting]))
            self.say(f"[{name}]   {names} {'have' if len(waiting) > 1 else 'has'} not started: "
                     f"{'they start' if len(waiting) > 1 else 'it starts'} from this change once it is in "
                     f"{record.data.get('target') or 'the target branch'}, "
                     "so no agent writes against the old signature (the plan's order is the resolution)")
        else:
            raised = [c for c in self.coordinator.conflicts(signature_changed=changed) if c.severity == "high"]
            for conflict in raised:
                first, second = _names(workspace, [conflict.sandbox_a, conflict.sandbox_b])
                self.say(f"[{name}]   HIGH: {conflict.kind} conflict between {first} and {second}: "
                         f"{self.coordinator.describe_path(conflict.path)}")
        data = {"signature_changed": changed, "waiting": [o.id for o in waiting],
                "conflicts": [c.as_dict() for c in raised]}
        workspace.store.update_sandbox(record.id, data={RAISED_KEY: data})
        workspace.record("demo.signature_changed", record.id, data)

    def _policy(self, name: str, details: dict[str, Any]) -> None:
        rules = ", ".join(details.get("rules") or []) or "no rule"
        needs = "; ".join(details.get("needs") or []) if details.get("outcome") == "require" else ""
        outcome = f"{details.get('outcome')} {needs}" if needs else str(details.get("outcome"))
        self.say(f"[{name}]   policy after the gates: {outcome} (risk {details.get('risk')}; {rules})")

    def _escalation_opened(self, name: str, entry: AuditEntry) -> None:
        details = entry.details
        escalation = self.workspace.store.get_escalation(int(entry.subject))
        needs = "; ".join(status_lines(escalation)) if escalation is not None else ""
        head = f"(risk {details.get('risk')}; {', '.join(details.get('rules') or [])})"
        if details.get("kind") == "pre-start":
            self.say(f"[{name}] -> pre-start escalation #{entry.subject} {head}: the agent waits for approval "
                     f"to start ({needs})")
        elif details.get("outcome") == "block":
            self.say(f"[{name}]   -> escalation #{entry.subject} opened {head}: blocked; a lead may override it")
        elif details.get("kind") == "post-gate":
            self.say(f"[{name}]   -> escalation #{entry.subject} opened {head}: waits for approvals ({needs})")
        else:
            self.say(f"[{name}] -> escalation #{entry.subject} opened ({details.get('kind')}) {head}")

    def _merged(self, name: str, record: SandboxRecord, details: dict[str, Any]) -> None:
        commit = str(details.get("commit") or "")
        trailers = self.repo.out("log", "-1", "--format=%(trailers:only,unfold)", commit).strip() if commit else ""
        shown = []
        for line in trailers.splitlines():
            key, _, value = line.partition(": ")
            shown.append(line if key in ("Loom-Policy", "Loom-Approved-by", "Loom-Overridden-by") else key)
        self.say(f"[{name}] merged into {details.get('target')} as {commit[:10]}"
                 + (f" (trailers: {', '.join(shown)})" if shown else ""))
        waiting = [other for other in demo_sandboxes(self.workspace).values()
                   if other.status == PLANNED and record.id in (other.data.get(AFTER_KEY) or [])]
        if waiting:
            self.say(f"[{name}]   {' and '.join(_names(self.workspace, [o.id for o in waiting]))} waited for this "
                     "merge: the engine starts them from it")


def _dependencies(workspace: Workspace, record: SandboxRecord) -> list[SandboxRecord]:
    found = []
    for sandbox_id in record.data.get(AFTER_KEY) or []:
        other = workspace.store.get_sandbox(str(sandbox_id))
        if other is not None:
            found.append(other)
    return found


def _ended_line(repo: Git, record: SandboxRecord, details: dict[str, Any]) -> str:
    started, ended = record.data.get("started_at"), record.data.get("ended_at")
    took = f" after {ended - started:.1f}s" if isinstance(started, float) and isinstance(ended, float) else ""
    base = record.data.get("base_sha")
    count = repo.out("rev-list", "--count", f"{base}..{record.branch}").strip() if base else "?"
    how = (f"exited {details.get('exit_code')}" if details.get("to") == EXITED
           else f"failed ({details.get('reason') or record.data.get('error')})")
    return f"agent {how}{took}, {count} commit{'s' if count != '1' else ''} on {record.branch}"


def _narrate(workspace: Workspace, say: Say) -> None:
    """Say every audit entry about the scenario's sandboxes not yet said, and remember how far."""
    sandboxes = demo_sandboxes(workspace)
    untold = _untold(workspace, sandboxes)
    if not untold:
        return
    narrator = _Narrator(workspace, say)
    told: dict[str, int] = {}
    for entry, record in untold:
        try:
            narrator.tell(entry, workspace.store.get_sandbox(record.id) or record)
        except LoomError as exc:  # say so and go on: one entry never holds up the rest
            say(f"[{record.data.get(AGENT_KEY) or record.id}] ({entry.action}: {exc})")
        told[record.id] = entry.seq
    narrator.flush()
    for sandbox_id, seq in told.items():
        workspace.store.update_sandbox(sandbox_id, data={TOLD_KEY: seq})


# -- headless ------------------------------------------------------------------------------


def _baseline(workspace: Workspace, say: Say) -> list[dict[str, Any]]:
    """The configured gates on the base commit, in the repository itself (nothing is recorded as a gate run)."""
    results = []
    for gate in workspace.load_config().gates:
        if gate.kind != "deterministic":
            continue
        started = time.monotonic()
        try:
            done = subprocess.run(gate_argv(gate), cwd=workspace.root, env=gate_environment(),
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=gate.timeout, check=False)
            code: int | None = done.returncode
            last = ((done.stdout.strip() or done.stderr.strip()).splitlines() or [""])[-1].strip("= ")
        except (OSError, subprocess.TimeoutExpired) as exc:
            code, last = None, str(exc)
        status = "passed" if code == 0 else "failed" if code is not None else "error"
        results.append({"gate": gate.name, "status": status, "exit_code": code, "summary": last,
                        "duration_s": round(time.monotonic() - started, 2)})
    say("baseline gates on the base commit: " + "; ".join(
        f"{r['gate']} {r['status']}" + (f" ({r['summary']})" if r["summary"] else "") for r in results))
    workspace.record("demo.baseline", str(workspace.root), {"gates": results})
    return results


def _wait_until_settled(workspace: Workspace, say: Say, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        advance_scenario(workspace, on_step=say)
        if not scenario_pending(workspace):
            return True
        if time.monotonic() >= deadline:
            for line in stop_scenario(workspace):
                say(line)
            say(f"the scenario did not settle within {timeout:g}s")
            return False
        time.sleep(POLL_S)


def _approve_change(workspace: Workspace, name: str, say: Say) -> list[dict[str, Any]]:
    """alice and bob (payments-team) approve a task's change; the engine then follows it (merge: auto)."""
    record = demo_sandboxes(workspace).get(name)
    escalation_id = record.data.get(ESCALATION_KEY) if record else None
    escalation = workspace.store.get_escalation(int(escalation_id)) if escalation_id else None
    if record is None or escalation is None or escalation.status != EscalationStatus.OPEN:
        state = "no sandbox" if record is None else (
            f"{record.status}, " + (f"escalation #{escalation.id} {escalation.status}" if escalation
                                    else "no escalation"))
        say(f"the {name} change has no open escalation to decide ({state})")
        return []
    decisions = _approve(workspace, _policy(workspace), escalation.id, f"the {name} change", say)
    advance(workspace, record.id)
    return decisions


_TRAILER = re.compile(r"^([A-Za-z][A-Za-z-]*): (.*)$")


def merges_on(workspace: Workspace, branch: str) -> list[dict[str, Any]]:
    """The merge commits on `branch` that carry a Loom-Sandbox trailer, newest first, with their trailers."""
    out = Git(workspace.root).out("log", branch, "--merges", "--format=%H%x1f%s%x1f%(trailers:only,unfold)%x1e")
    found = []
    for entry in out.split("\x1e"):
        if not entry.strip():
            continue
        commit, subject, trailers = entry.strip("\n").split("\x1f", 2)
        pairs: dict[str, str] = {}
        for line in trailers.splitlines():
            if match := _TRAILER.match(line.strip()):
                pairs[match[1]] = match[2]
        if "Loom-Sandbox" in pairs:
            found.append({"commit": commit, "subject": subject, "trailers": pairs})
    return found


def _latest(entries: Sequence[AuditEntry], action: str, subject: str) -> AuditEntry | None:
    return next((e for e in reversed(entries) if e.action == action and e.subject == subject), None)


def _agent_summary(workspace: Workspace, record: SandboxRecord, entries: Sequence[AuditEntry]) -> dict[str, Any]:
    tip = Git(workspace.root).resolve_commit(record.branch) if record.branch else None
    gates: dict[str, Any] = {}
    for run in workspace.store.gate_runs(record.id):
        gates[run.gate] = {"status": run.status, "summary": run.data.get("summary", ""),
                           "failed_tests": run.data.get("failed_tests", []), "commit": run.commit_sha}
    escalation_id = record.data.get(ESCALATION_KEY)
    escalation = workspace.store.get_escalation(int(escalation_id)) if escalation_id else None
    policy = _latest(entries, "policy.evaluated", record.id)
    running = _latest(entries, "sandbox.running", record.id)
    merged = _latest(entries, "sandbox.merged", record.id)
    flow = Workflow(workspace)
    return {
        "sandbox": record.id, "task": record.task, "status": record.status, "branch": record.branch,
        "isolation": record.isolation, "exit_code": record.exit_code, "claims": list(record.data.get("claims", [])),
        "live_claims": len(workspace.store.live_claims(record.id)),
        "after": _names(workspace, record.data.get(AFTER_KEY) or []),
        "waits_on": list((record.data.get(PLAN_KEY) or {}).get("waits_on") or []),
        "base_sha": record.data.get("base_sha"), "tip": tip,
        "conflicts_at_claim": record.data.get(CONFLICTS_KEY, []),
        "signature": record.data.get(RAISED_KEY), "gates": gates,
        "policy": None if policy is None else {k: policy.details.get(k) for k in ("outcome", "risk", "rules",
                                                                                   "needs", "commit")},
        "started_seq": running.seq if running else None, "merged_seq": merged.seq if merged else None,
        "merged_commit": record.data.get("merged_commit"),
        "escalation": None if escalation is None else {
            "id": escalation.id, "status": escalation.status, "risk": escalation.risk,
            "outcome": escalation.data.get("outcome"),
            "approvals": [a["user"] for a in escalation.data.get("approvals", [])]},
        "next": flow.view(record).line(),
        "error": (record.data.get(STEP_ERROR_KEY) or {}).get("error") or record.data.get("error"),
    }


def _plan_summary(workspace: Workspace, sandboxes: dict[str, SandboxRecord],
                  entries: Sequence[AuditEntry]) -> dict[str, Any]:
    """The schedule the plan run used, as the audit log recorded it (`plan.scheduled`)."""
    runs = {str((r.data.get(PLAN_KEY) or {}).get("run")) for r in sandboxes.values()}
    scheduled = next((e for e in reversed(entries) if e.action == "plan.scheduled" and e.subject in runs), None)
    if scheduled is None:
        return {"run": None, "edges": [], "waves": []}
    return {"run": scheduled.subject, "file": scheduled.details.get("file"),
            "edges": scheduled.details.get("edges", []), "waves": scheduled.details.get("waves", [])}


def _checks(agents: dict[str, dict[str, Any]], plan: dict[str, Any], merges: list[dict[str, Any]],
            open_escalations: list[EscalationRecord], audit_ok: bool) -> dict[str, bool]:
    """What the scenario is meant to show, each checked against what the engines recorded."""
    def agent(name: str) -> dict[str, Any]:
        return agents.get(name) or {}

    def pair(conflict: dict[str, Any]) -> set[str]:
        return {conflict["a"]["region"], conflict["b"]["region"]}

    def approved_by_two(name: str) -> bool:
        escalation = agent(name).get("escalation") or {}
        return (escalation.get("status") == "approved" and len(escalation.get("approvals", [])) == 2
                and agent(name).get("status") == MERGED and agent(name).get("sandbox") in merged)

    round_region = "payments/currency.py::round_minor_units"
    rounding_pair = {round_region, "payments/refunds.py::RefundService.quote"}
    edges = {(e["before"], e["after"]): e for e in plan.get("edges", [])}
    tests_gate = agent("invoices").get("gates", {}).get("tests", {})
    merged = {m["trailers"].get("Loom-Sandbox") for m in merges}
    rounding_merge = agent("rounding").get("merged_commit")
    signature = agent("rounding").get("signature") or {}
    return {
        "rounding scheduled before refunds and invoices (callee first)": all(
            edges.get(("rounding", other), {}).get("kind") == "dependency"
            and "round_minor_units" in edges.get(("rounding", other), {}).get("reason", "")
            for other in ("refunds", "invoices")),
        "dependency conflict shown by the claim check before refunds started": any(
            c["kind"] == "dependency" and c["severity"] == "warning" and pair(c) == rounding_pair
            for c in agent("refunds").get("conflicts_at_claim", [])),
        "rounding approved by two payments-team members and merged": approved_by_two("rounding"),
        "refunds and invoices started from rounding's merge": bool(rounding_merge) and all(
            agent(other).get("base_sha") == rounding_merge and agent(other).get("after") == ["rounding"]
            for other in ("refunds", "invoices")),
        "the signature change met no running caller (the order is the resolution)":
            signature.get("signature_changed") == [round_region] and all(
                (agent(other).get("started_seq") or 0) > (agent("rounding").get("merged_seq") or 1 << 62)
                for other in ("refunds", "invoices")),
        "invoices tests gate failed on the regression test": tests_gate.get("status") == "failed" and any(
            t.endswith("::test_invoice_total_rounds_each_line_half_even_before_summing")
            for t in tests_gate.get("failed_tests", [])),
        "invoices blocked by failing-gates": (agent("invoices").get("policy") or {}).get("outcome") == "block",
        "templates auto-approved and merged with trailers, no person involved":
            agent("templates").get("status") == MERGED and agent("templates").get("escalation") is None
            and (agent("templates").get("policy") or {}).get("outcome") == "auto_approve"
            and agent("templates").get("sandbox") in merged,
        "refunds approved by two payments-team members and merged": approved_by_two("refunds"),
        "claims of merged tasks released": all(
            info.get("live_claims") == 0 for info in agents.values() if info.get("status") == MERGED),
        "an escalation left open for triage": bool(open_escalations),
        "audit chain verifies": audit_ok,
    }


def run_headless(workspace: Workspace, on_step: Say | None = None, *,
                 timeout: float = AGENT_TIMEOUT_S) -> dict[str, Any]:
    """Run the whole scenario against a prepared demo repository; return what happened.

    The plan's first wave runs; alice and bob approve the rounding change, which the
    engine merges and then starts refunds and invoices from; they approve the refunds
    change once it is reviewed, which merges; invoices stays blocked for a lead.
    `timeout` bounds each wait for the scenario to settle. `on_step` gets each line
    as it happens (the CLI prints them); the returned dict has them all in `lines`,
    plus structured fields for scripts (`--json`) and `checks`: each outcome the
    scenario is meant to show, verified against the store, git and the audit log.
    `ok` is true when every check holds.
    """
    started = time.monotonic()
    say = _Steps(on_step)
    root = workspace.root
    repo = Git(root)
    head = repo.out("rev-parse", "--short", "HEAD").strip()
    branch = repo.current_branch() or "HEAD"
    files = repo.out("ls-files").split()
    config = workspace.load_config()
    say.heading("The demo repository")
    say(f"{root} ({branch} at {head}, {len(files)} files)")
    say(f"config {config.source}: runtimes {', '.join(sorted(config.runtimes))}; gates "
        f"{', '.join(g.name for g in config.gates)}; policy {config.policy} "
        f"(merge: {_policy(workspace).merge}); plan {PLAN_PATH}")
    workspace.record("demo.started", str(root), {"commit": head})
    baseline = _baseline(workspace, say)

    start_scenario(workspace, on_step=say)
    settled = _wait_until_settled(workspace, say, timeout)
    decisions: list[dict[str, Any]] = []
    for name in HEADLESS_APPROVALS:
        if not settled:
            break
        say.heading(f"People decide: the {name} change")
        decisions += _approve_change(workspace, name, say)
        settled = _wait_until_settled(workspace, say, timeout)
        if settled and _waiting_to_start(workspace):  # a start the policy holds (not in the bundled policy)
            say.heading("Approval to start")
            decisions += _approve_starts(workspace, say)
            settled = _wait_until_settled(workspace, say, timeout)

    say.heading("Where things stand")
    sandboxes = demo_sandboxes(workspace)
    entries = _audit_after(workspace, 0)
    agents = {name: _agent_summary(workspace, record, entries) for name, record in sandboxes.items()}
    for name, info in agents.items():
        escalation = info["escalation"]
        extra = f", escalation #{escalation['id']} {escalation['status']}" if escalation else ""
        merged = f", merged as {info['merged_commit'][:10]}" if info["merged_commit"] else ""
        after = f", started after {', '.join(info['after'])}" if info["after"] else ""
        say(f"[{name}] {info['status']}{extra}{merged}{after}; {info['next']}")
    plan = _plan_summary(workspace, sandboxes, entries)
    merges = merges_on(workspace, branch)
    for item in merges:
        trailers = ", ".join(f"{k}: {v}" for k, v in item["trailers"].items())
        say(f"{branch}: {item['commit'][:10]} {item['subject']}")
        say(f"  {trailers}")
    open_escalations = queue(workspace)
    for escalation in open_escalations:
        say(f"open escalation #{escalation.id} ({escalation.risk}): {escalation.summary}")
    if open_escalations:
        say(f"left open for triage in the app (a approve, r reject, o override); the policy's groups decide "
            f"who may: payments-team approves, leads (e.g. LOOM_USER={DEMO_LEAD}) may override")
    verify = workspace.audit.verify()
    say(f"audit: {verify.summary(workspace.audit.path)}")
    checks = _checks(agents, plan, merges, open_escalations, verify.ok)
    failed = [name for name, passed in checks.items() if not passed]
    elapsed = round(time.monotonic() - started, 1)
    say(f"checks: {len(checks) - len(failed)} of {len(checks)} as expected"
        + (f"; NOT as expected: {'; '.join(failed)}" if failed else "") + f" ({elapsed}s)")
    ok = settled and not failed and all(r["status"] == "passed" for r in baseline)
    return {
        "ok": ok, "repo": str(root), "branch": branch, "commit": head, "elapsed_s": elapsed,
        "baseline": baseline, "baseline_exit": 0 if all(r["status"] == "passed" for r in baseline) else 1,
        "plan": plan, "agents": agents,
        "conflicts_at_claim": [c for info in agents.values() for c in info["conflicts_at_claim"]],
        "conflicts_raised": [c for info in agents.values() for c in (info["signature"] or {}).get("conflicts", [])],
        "decisions": decisions, "merges": merges,
        "open_escalations": [{"id": e.id, "sandbox": e.sandbox_id,
                              "agent": _names(workspace, [e.sandbox_id])[0] if e.sandbox_id else None,
                              "risk": e.risk, "outcome": e.data.get("outcome"), "summary": e.summary}
                             for e in open_escalations],
        "audit_ok": verify.ok, "audit_entries": verify.entries, "checks": checks, "lines": say.lines,
    }
