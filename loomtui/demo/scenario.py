"""The demo scenario: four agents on the billing service, run from a plan by the workflow engine.

`loomtui demo --headless` runs it start to finish (`loomtui.demo.headless`); the app shows it
live (`start_scenario` when it opens, then `advance_scenario` on a timer). This
module does no step of a task itself and fakes no result. The four tasks are the
repository's plan (`.loom/plan.yaml`), stated by `loomtui.workflow.planrun.run_plan`
in the order the code asks for. The agents are the `script` runtime replaying the
timed edits in `.loom/demo/*.yaml` (real files, real commits, in real sandboxes)
under the workflow's supervisor, which advances a task when its agent ends: the
gates (real pytest and compileall runs in its worktree), the policy on its diff, an
escalation, and, as the policy's `merge: auto` says, the merge of an approved
change, its claims released and the tasks waiting on it started from the new main.
Here the scenario narrates what the engines did (from the audit log: `loomtui.demo.narration`)
and, headless, takes the people's decisions.

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

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from loomtui.coordination.claims import Coordinator
from loomtui.coordination.suggest import suggest_regions
from loomtui.demo.common import (
    AGENT_KEY,
    AGENT_NAMES,
    CONFLICTS_KEY,
    Say,
    Steps,
    acting_as,
    agent_names,
    conflict_line,
    demo_policy,
    demo_sandboxes,
    short_region,
)
from loomtui.demo.narration import narrate, untold_entries
from loomtui.errors import LoomError, plural
from loomtui.execution.agent_control import stop
from loomtui.execution.gitops import Git
from loomtui.execution.lifecycle import EXITED, FAILED, LIVE, PLANNED
from loomtui.execution.procs import is_alive
from loomtui.execution.sandboxes import wait_for_status
from loomtui.governance.coordinator import governed_coordinator
from loomtui.governance.escalations import DecisionRefused, EscalationStatus, decide, queue
from loomtui.governance.policy import ChangeFacts, Evaluation, Policy, evaluate
from loomtui.store import SandboxRecord
from loomtui.workflow.engine import Workflow, advance, advance_all, settled_view
from loomtui.workflow.plan import PLAN_PATH, Plan, PlanTask, load_plan
from loomtui.workflow.planrun import PlanRun, cancel_plan, run_plan
from loomtui.workflow.steps import AFTER_KEY, PRESTART_KEY, Step
from loomtui.workspace import Workspace

__all__ = [
    "AGENT_NAMES", "AGENT_TIMEOUT_S", "DEMO_APP_USER", "DEMO_ENGINEER", "DEMO_LEAD", "DEMO_REVIEWERS",
    "HEADLESS_APPROVALS", "POLL_S", "RUNTIME", "START_WAIT_S", "advance_scenario", "approve_escalation",
    "approve_starts", "colleague_approvals",
    "demo_sandboxes", "scenario_chapter", "scenario_pending", "start_scenario", "stop_scenario", "waiting_to_start",
]

DEMO_ENGINEER: Final = "sam@example.com"
"""Who states the tasks (in no policy group, so never their own reviewer)."""
DEMO_REVIEWERS: Final = ("alice@example.com", "bob@example.com")
"""payments-team members who approve the rounding and refunds changes in the headless run."""
DEMO_LEAD: Final = "lead@example.com"
"""A lead (policy group `leads`, who may override): a good identity for triage in the app."""
DEMO_APP_USER: Final = "mia@example.com"
"""Who the person in the app is: the payments lead (payments-team and leads), so every key of the
queue works in the demo: approve a payments change, reject, override the block."""
RUNTIME: Final = "script"
AGENT_TIMEOUT_S: Final = 90.0
"""How long one wait may take: a wave of agents (a few seconds of script), their gates and merges."""
POLL_S: Final = 0.2
START_WAIT_S: Final = 10.0
"""How long a start approved in `start_scenario` is waited for (its supervisor records the agent running)."""

HEADLESS_APPROVALS: Final = ("rounding", "refunds")
"""The changes DEMO_REVIEWERS approve headless, in this order (each once the scenario has settled)."""

SETTLE_S: Final = 30.0
"""How long a stopped scenario waits for supervisors still at work (a review, a merge) to end."""

WORK_CHAPTER: Final = "Agents at work"
END_CHAPTER: Final = "The end"

_ADVANCING = threading.Lock()
_STOPPED: set[Path] = set()
"""Demo repositories whose scenario this process stopped: never started or advanced again (guarded
by _ADVANCING), so nothing writes into a repository that is being deleted."""


# -- finding the scenario in the store (`demo_sandboxes` is in loomtui.demo.common) -------------


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
    if any(settled_view(flow, record.id) is None for record in sandboxes.values()):
        return True
    return bool(untold_entries(workspace, sandboxes))


def scenario_chapter(workspace: Workspace) -> str:
    """Where the story is, for the app's header: "Agents at work" while the engines have work, "Your
    turn: 1 escalation" while only a person's decision moves it, "The end (3 merged, 1 rejected)"
    once nothing is left to do (a few store reads and the policy: call it when something happened)."""
    sandboxes = demo_sandboxes(workspace)
    if not sandboxes or scenario_pending(workspace):
        return WORK_CHAPTER
    ids = {record.id for record in sandboxes.values()}
    waiting = [escalation for escalation in queue(workspace) if escalation.sandbox_id in ids]
    if waiting:
        # Short: at 80 columns "Waiting for a person (1 escalation open)" did not fit beside the counts.
        return f"Your turn: {plural(len(waiting), 'escalation')}"
    flow = Workflow(workspace)
    held = [record for record in sandboxes.values()
            if (view := settled_view(flow, record.id)) is not None and view.step == Step.HELD]
    if held:  # a task it waited for rejected: `W` starts it without (it said "The end" with tasks still to do)
        return f"Your turn: {plural(len(held), 'held task')}"
    statuses = Counter(str(record.status) for record in sandboxes.values())
    return f"{END_CHAPTER} ({', '.join(f'{count} {status}' for status, count in sorted(statuses.items()))})"


def _outcome(evaluation: Evaluation) -> str:
    rules = ", ".join(evaluation.rule_names()) or "no rule"
    if evaluation.outcome == "require":
        needs = "; ".join(r.describe() for r in evaluation.requirements)
        return f"require {needs} (risk {evaluation.risk}; {rules})"
    return f"{evaluation.outcome} (risk {evaluation.risk}; {rules})"


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
        if workspace.root in _STOPPED or demo_sandboxes(workspace):
            return []
        # The engineer states the tasks and the engine works for them; whoever watches (the
        # app's user, a reviewer) only decides.
        return _start(acting_as(workspace, DEMO_ENGINEER), Steps(on_step), approve_start)


def _start(workspace: Workspace, say: Steps, approve_start: bool) -> list[str]:
    plan = _demo_plan(workspace)
    coordinator = governed_coordinator(workspace)
    policy = demo_policy(workspace)
    workspace.record("demo.scenario_started", str(workspace.root),
                     {"agents": list(AGENT_NAMES), "engineer": DEMO_ENGINEER, "plan": PLAN_PATH})

    say.heading("Claims before code")
    say(f"{DEMO_ENGINEER} states four tasks in {PLAN_PATH}; coordination suggests the regions each touches, "
        "the engineer confirms them, and the claims are checked against each other before an agent starts.")
    for task in plan.tasks:
        _say_claims(coordinator, policy, task, say)

    say.heading("The order the code asks for")
    run = run_plan(workspace, PLAN_PATH, say=say, data_for=lambda name: {AGENT_KEY: name})
    _say_order(workspace, coordinator, run, say)

    say.heading(WORK_CHAPTER)
    narrate(workspace, say)
    if approve_start and waiting_to_start(workspace):
        say.heading("Approval to start")
        approve_starts(workspace, say)
        narrate(workspace, say)
    return say.lines


def _say_claims(coordinator: Coordinator, policy: Policy, task: PlanTask, say: Say) -> None:
    say(f"[{task.name}] {task.task}")
    suggestions = suggest_regions(coordinator.index, task.task, limit=10)
    ranked = [s.region.id for s in suggestions]
    if suggestions:
        say("  suggested (how well each matches the task's words, of 100): "
            + ", ".join(f"{short_region(s.region.id)} ({s.score:g})" for s in suggestions[:3]))
    notes, regions = [], []
    for claim in task.claims:
        resolved = coordinator.resolve(claim)
        regions.extend(resolved)
        if claim in ranked:
            notes.append(f"{short_region(claim)} (suggestion #{ranked.index(claim) + 1})")
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
        regions = [r for claim in record.claim_targets for r in coordinator.resolve(claim)]
        conflicts = coordinator.check(sandbox_id, regions)
        workspace.store.update_sandbox(sandbox_id, data={CONFLICTS_KEY: [c.as_dict() for c in conflicts]})
        workspace.record("demo.claims_checked", sandbox_id,
                         {"regions": regions, "conflicts": [c.as_dict() for c in conflicts]})
        waits_on = ", ".join(agent_names(workspace, record.data.get(AFTER_KEY) or []))
        if not conflicts:
            say(f"[{name}] its claims beside the live ones: no conflict; it waits for {waits_on} all the same")
            continue
        say(f"[{name}] a claim check of its regions beside the live claims shows:")
        for conflict in conflicts:
            # Each line stands alone (the app shows it as a toast): the conflict is one that the
            # order avoids, so the claims view, which shows live claims' conflicts, has none.
            say(f"  [{name}] not started: were it to start now, "
                + conflict_line(workspace, conflict.as_dict(), coordinator).strip())
        say(f"  so {name} does not run beside {waits_on}: it starts from {target} after {waits_on}'s merge "
            "(the order is the resolution)")


def waiting_to_start(workspace: Workspace) -> list[tuple[str, SandboxRecord, int]]:
    """The scenario's tasks that wait for an open pre-start escalation."""
    found = []
    for name, record in demo_sandboxes(workspace).items():
        escalation_id = record.data.get(PRESTART_KEY)
        escalation = workspace.store.get_escalation(int(escalation_id)) if escalation_id else None
        if record.status == PLANNED and escalation is not None and escalation.status == EscalationStatus.OPEN:
            found.append((name, record, escalation.id))
    return found


def approve_starts(workspace: Workspace, say: Say) -> list[dict[str, Any]]:
    """The demo's payments reviewers approve the starts the policy holds; the engine then starts them."""
    decisions: list[dict[str, Any]] = []
    policy = demo_policy(workspace)
    for name, record, escalation_id in waiting_to_start(workspace):
        decisions += approve_escalation(workspace, policy, escalation_id, f"the start of {name}", say)
        advance(acting_as(workspace, DEMO_ENGINEER), record.id)
        now = workspace.store.get_sandbox(record.id)
        if now is not None and now.status == PLANNED and is_alive(now.pid, now.pid_start):
            try:  # the engine started its supervisor: the agent runs in a moment (the narration says so)
                wait_for_status(workspace, record.id, LIVE | {EXITED, FAILED}, timeout=START_WAIT_S)
            except LoomError as exc:  # a supervisor that never starts its agent: said, not waited out
                say(f"[{name}] {exc}")
    return decisions


def approve_escalation(workspace: Workspace, policy: Policy, escalation_id: int, what: str,
                       say: Say) -> list[dict[str, Any]]:
    """The demo's payments reviewers approve an escalation, one after the other, until it is approved.

    Each decision is said by the narration (from the audit log); a refusal is said here.
    """
    decisions = []
    current = workspace.store.get_escalation(escalation_id)
    already = {a.get("user") for a in current.data.get("approvals", [])} if current is not None else set()
    for reviewer in DEMO_REVIEWERS:
        if reviewer in already:  # approved in the app by the person playing this reviewer
            continue
        try:
            escalation = decide(acting_as(workspace, reviewer), policy, escalation_id, "approve")
        except DecisionRefused as exc:
            say(f"{reviewer} may not approve {what}: {exc}")
            break
        decisions.append({"by": reviewer, "escalation": escalation_id, "decision": "approve",
                          "status": escalation.status, "what": what})
        if escalation.status != EscalationStatus.OPEN:
            break
    return decisions


def colleague_approvals(workspace: Workspace, say: Say) -> list[dict[str, Any]]:
    """In the app a person approves as the payments lead (or a reviewer), and payments changes
    need two: once one of them has approved, a reviewer follows, as a colleague would (a real
    decision through the policy, signed and audited like any), so the scenario goes on. The
    invoices block takes no approval and stays the person's to override or reject."""
    decisions: list[dict[str, Any]] = []
    policy = demo_policy(workspace)
    for escalation in workspace.store.list_escalations(EscalationStatus.OPEN):
        approvers = {a.get("user") for a in escalation.data.get("approvals", [])}
        if approvers & {DEMO_APP_USER, *DEMO_REVIEWERS} and escalation.data.get("outcome") != "block":
            decisions += approve_escalation(workspace, policy, escalation.id, f"escalation #{escalation.id}", say)
    return decisions


def stop_scenario(workspace: Workspace, grace: float = 2.0, settle: float = SETTLE_S) -> list[str]:
    """Stop the scenario (before the demo repository is deleted): the tasks not yet started are
    cancelled (so no merge starts them), the agents still running are stopped, and the
    supervisors still at work (reviewing, merging) are waited for, up to `settle` seconds.

    A start or advance running meanwhile in this process (an app's worker) is finished first,
    and none runs after it.
    """
    with _ADVANCING:
        _STOPPED.add(workspace.root)
        lines = []
        if demo_sandboxes(workspace):
            try:
                lines += [result.line() for result in cancel_plan(workspace) if result.cancelled]
            except LoomError as exc:
                lines.append(f"cancelling the plan: {exc}")
        live = {name: record for name, record in _every_sandbox(workspace).items() if record.status in LIVE}
        # Together, not one after another: each stop may take its grace and its supervisor's settling.
        with ThreadPoolExecutor(max_workers=max(1, len(live)), thread_name_prefix="demo-stop") as pool:
            stops = {name: pool.submit(stop, workspace, record.id, grace=grace) for name, record in live.items()}
        for name, stopping in stops.items():
            try:
                stopping.result()
                lines.append(f"[{name}] stopped")
            except LoomError as exc:
                lines.append(f"[{name}] {exc}")
        return lines + _await_supervisors(workspace, settle)


def _every_sandbox(workspace: Workspace) -> dict[str, SandboxRecord]:
    """The scenario's sandboxes by agent name, and any other made in the demo's repository by its id: one a
    person started there (`n`, `sandbox new`) ran on after the repository was deleted, and wrote into it."""
    named = demo_sandboxes(workspace)
    ids = {record.id for record in named.values()}
    return {**named, **{record.id: record for record in workspace.store.list_sandboxes() if record.id not in ids}}


def _await_supervisors(workspace: Workspace, settle: float) -> list[str]:
    """Wait for the scenario's supervisors to end; say which are still at work after `settle` seconds."""
    deadline = time.monotonic() + settle
    while True:
        busy = {name: record.pid for name, record in _every_sandbox(workspace).items()
                if is_alive(record.pid, record.pid_start)}
        if not busy or time.monotonic() >= deadline:
            return [f"[{name}] its supervisor (pid {pid}) is still at work" for name, pid in busy.items()]
        time.sleep(POLL_S)


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
        say = Steps(on_step)
        if workspace.root in _STOPPED or not demo_sandboxes(workspace):
            return []
        # The engine's steps for the engineer's tasks, and what the scenario records of them,
        # are the engineer's, not the app user's (a reviewer who only decides).
        engineer = acting_as(workspace, DEMO_ENGINEER)
        if colleague_approvals(workspace, say):
            # Said now, not after the merge it lets through (seconds of git and gates): the queue showed the
            # escalation gone while the person's toast still said "still open: 1 of 2 approvals".
            narrate(engineer, say)
        advance_all(engineer)
        narrate(engineer, say)
        return say.lines
    finally:
        _ADVANCING.release()
