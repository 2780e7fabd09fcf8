"""The demo scenario: four agents on the billing service, through the same engines as real use.

`loomtui demo --headless` runs it start to finish (`run_headless`); the app shows it
live (`start_scenario` when it opens, then `advance_scenario` on a timer). Nothing
here fakes a result: the agents are the `script` runtime replaying the timed edits
in `.loom/demo/*.yaml` (real files, real commits, in real sandboxes under their
supervisors), the gates are real pytest and compileall runs in each worktree, and
claims, conflicts, policy, escalations, decisions and merges are the engines' own.

The scenario, as the engineer `DEMO_ENGINEER` starts it:

1. refunds: "Add partial refunds ..." claims `RefundService.quote` and
   `RefundService.issue_refund` (suggested by the coordination engine, confirmed).
2. rounding: "Refactor round_minor_units ..." claims `round_minor_units`, which
   `RefundService.quote` references: a dependency conflict, flagged before any
   code is written. Its agent then adds a keyword parameter (a signature change),
   and the conflict is raised to high.
3. invoices: "Speed up invoice totals" makes the careless speed-up (sum, then
   round once); the tests gate fails on the regression test that guards it, and
   the policy's `failing-gates` rule blocks the change.
4. templates: fixes three typos in `notifications/templates/*.txt`; the gates pass,
   the policy's `docs-and-templates` rule auto-approves, and it is merged with
   the `Loom-Sandbox:`/`Loom-Runtime:`/`Assisted-by:` trailers.

Every change of payments code needs two approvals from payments-team. Headless,
alice and bob approve the refunds change, which is then merged; the rounding and
invoices escalations stay open for a lead to triage in the app.

Progress lives in the store (sandbox statuses, `demo_*` keys in sandbox data, gate
runs, escalations), so `advance_scenario` can be called any number of times, from
any process, and does only what is due.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from loomtui.coordination.claims import (
    Conflict,
    open_coordinator,
    sandbox_signature_changes,
)
from loomtui.coordination.suggest import suggest_regions
from loomtui.errors import LoomError
from loomtui.execution.gitops import Git
from loomtui.execution.lifecycle import (
    ARCHIVED,
    AWAITING_REVIEW,
    EXITED,
    FAILED,
    GATING,
    LIVE,
    MERGED,
    PAUSED,
    PLANNED,
    REJECTED,
    RUNNING,
    transition,
)
from loomtui.execution.review import merge
from loomtui.execution.sandboxes import create_sandbox, isolation_label, start, stop
from loomtui.governance.escalations import decide, queue, status_lines
from loomtui.governance.policy import (
    ChangeFacts,
    Evaluation,
    Policy,
    evaluate,
    load_policy,
)
from loomtui.governance.review import ESCALATION_KEY as REVIEW_ESCALATION_KEY
from loomtui.governance.review import (
    decided_escalation,
    follow_decision,
    merge_trailers,
    review_sandbox,
)
from loomtui.guardrails.gates import (
    gate_argv,
    gate_environment,
)
from loomtui.store import EscalationRecord, SandboxRecord
from loomtui.workspace import Workspace

DEMO_ENGINEER: Final = "sam@example.com"
"""Who states the tasks and starts the agents (in no policy group, so never their own reviewer)."""
DEMO_REVIEWERS: Final = ("alice@example.com", "bob@example.com")
"""payments-team members who approve the refunds change in the headless run."""
DEMO_LEAD: Final = "lead@example.com"
"""A lead (policy group `leads`, who may override): a good identity for triage in the app."""
RUNTIME: Final = "script"
AGENT_TIMEOUT_S: Final = 90.0
POLL_S: Final = 0.2

# Sandbox data keys the scenario keeps its progress in.
AGENT_KEY: Final = "demo_agent"
CONFLICTS_KEY: Final = "demo_conflicts_at_claim"
RAISED_KEY: Final = "demo_conflicts_raised"
POLICY_KEY: Final = "demo_policy"
ESCALATION_KEY: Final = REVIEW_ESCALATION_KEY  # the review engine's own record of it
ERROR_KEY: Final = "demo_error"
PRESTART_KEY: Final = "awaiting_escalation"  # set by execution/governance when the policy holds a start

Say = Callable[[str], None]


@dataclass(frozen=True)
class DemoAgent:
    """One agent of the scenario: its task, the script it replays, the claims the engineer confirms."""

    name: str
    task: str
    script: str  # relative to the repository root
    claims: tuple[str, ...]


AGENTS: Final = (
    DemoAgent("refunds",
              "Add partial refunds to the refunds API: quote and issue a refund for part of a charge",
              ".loom/demo/refunds.yaml",
              ("payments/refunds.py::RefundService.quote", "payments/refunds.py::RefundService.issue_refund")),
    DemoAgent("rounding", "Refactor round_minor_units, the currency rounding helper",
              ".loom/demo/rounding.yaml", ("payments/currency.py::round_minor_units",)),
    DemoAgent("invoices", "Speed up invoice subtotal and totals",
              ".loom/demo/invoices.yaml", ("payments/invoices.py::InvoiceCalculator.subtotal",)),
    DemoAgent("templates", "Fix typos in notification templates",
              ".loom/demo/templates.yaml", ("notifications/templates/*.txt",)),
)
AGENT_NAMES: Final = tuple(agent.name for agent in AGENTS)

# The statuses after which nothing more happens to a sandbox without a person.
_SETTLED: Final = frozenset({AWAITING_REVIEW, MERGED, REJECTED, ARCHIVED})
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


def _settled(workspace: Workspace, record: SandboxRecord) -> bool:
    """Whether nothing more happens to this sandbox until a person decides something."""
    if record.status in _SETTLED or record.data.get(ERROR_KEY):
        return True
    waiting = record.data.get(PRESTART_KEY)
    escalation = workspace.store.get_escalation(int(waiting)) if waiting and record.status == PLANNED else None
    return escalation is not None and escalation.status == "open"


def scenario_pending(workspace: Workspace) -> bool:
    """Whether the scenario still has work that happens without a person (agents, gates, merges).

    False before `start_scenario` and once every sandbox awaits review or is done.
    A decision taken later (approve, reject, override) makes it pending again until
    `advance_scenario` has acted on it.
    """
    sandboxes = demo_sandboxes(workspace)
    if any(not _settled(workspace, record) for record in sandboxes.values()):
        return True
    return any(_decided(workspace, record) is not None for record in sandboxes.values()
               if record.status == AWAITING_REVIEW)


def _agent_of(workspace: Workspace, sandbox_id: str) -> str:
    record = workspace.store.get_sandbox(sandbox_id)
    return str(record.data.get(AGENT_KEY) or sandbox_id) if record else sandbox_id


def _policy(workspace: Workspace) -> Policy:
    return load_policy(workspace.root, workspace.load_config().policy)


def _as(workspace: Workspace, actor: str) -> Workspace:
    """The same workspace (store, audit log) acting as someone else; never close it."""
    return replace(workspace, actor=actor)


def _short(region_id: str) -> str:
    return region_id.split("::", 1)[1] if "::" in region_id else region_id


def _expand(root: Path, targets: Sequence[str]) -> list[str]:
    """Claim targets with a glob over files the index does not parse (templates) expanded to files."""
    expanded: list[str] = []
    for target in targets:
        if "::" not in target and set("*?[") & set(target):
            matches = sorted(p.relative_to(root).as_posix() for p in root.glob(target) if p.is_file())
            if not matches:
                raise LoomError(f"{target}: matches no file in {root}")
            expanded.extend(matches)
        else:
            expanded.append(target)
    return expanded


def _conflict_line(workspace: Workspace, conflict: Conflict, describe: Callable[[Sequence[str]], str]) -> str:
    other = _agent_of(workspace, conflict.sandbox_b)
    return (f"  {conflict.severity.upper()}: {conflict.kind} conflict with {other} (sandbox {conflict.sandbox_b}): "
            f"{describe(conflict.path)}")


def _outcome(evaluation: Evaluation) -> str:
    rules = ", ".join(evaluation.rule_names()) or "no rule"
    if evaluation.outcome == "require":
        needs = "; ".join(r.describe() for r in evaluation.requirements)
        return f"require {needs} (risk {evaluation.risk}; {rules})"
    return f"{evaluation.outcome} (risk {evaluation.risk}; {rules})"


# -- starting ----------------------------------------------------------------------------


def start_scenario(workspace: Workspace, on_step: Say | None = None, *, approve_start: bool = True) -> list[str]:
    """Plan the four agents (suggested and confirmed claims, conflicts, sandboxes) and start them.

    Creating a sandbox runs the policy on its claims: payments code needs two
    payments-team approvals before its agent may start (a pre-start escalation).
    With `approve_start` (the default) the demo's payments reviewers give them at
    once; without it those agents wait, and `advance_scenario` starts each one as
    soon as its escalation is approved (by whoever triages it in the app).

    Returns (and passes to `on_step`, one by one) the lines saying what happened;
    returns once the agents are launched under their detached supervisors. Does
    nothing (returns []) when the scenario has already been started here. Raises
    LoomError when the repository is not a demo repository.
    """
    with _ADVANCING:
        if demo_sandboxes(workspace):
            return []
        return _start(workspace, _Steps(on_step), approve_start)


def _start(workspace: Workspace, say: _Steps, approve_start: bool) -> list[str]:
    root = workspace.root
    missing = [agent.script for agent in AGENTS if not (root / agent.script).is_file()]
    if missing:
        raise LoomError(f"{root} has no demo scripts ({', '.join(missing)}); `loomtui demo` makes a "
                        "repository that has them")
    engineer = _as(workspace, DEMO_ENGINEER)
    coordinator = open_coordinator(workspace)
    policy = _policy(workspace)
    base = Git(root).current_branch() or "HEAD"
    workspace.record("demo.scenario_started", str(root), {"agents": list(AGENT_NAMES), "engineer": DEMO_ENGINEER})

    say.heading("Claims before code")
    say(f"{DEMO_ENGINEER} states four tasks; coordination suggests the regions each touches, the "
        "engineer confirms them, and every claim is checked against the others before an agent starts.")
    created: list[tuple[DemoAgent, SandboxRecord]] = []
    for agent in AGENTS:
        say(f"[{agent.name}] {agent.task}")
        suggestions = suggest_regions(coordinator.index, agent.task, limit=10)
        ranked = [s.region.id for s in suggestions]
        if suggestions:
            say("  suggested: " + ", ".join(f"{_short(s.region.id)} ({s.score:g})" for s in suggestions[:3]))
        targets = _expand(root, agent.claims)
        notes = []
        for claim in agent.claims:
            if claim in ranked:
                notes.append(f"{_short(claim)} (suggestion #{ranked.index(claim) + 1})")
            elif claim not in targets:
                count = len(_expand(root, [claim]))
                notes.append(f"{claim} ({count} files; added by the engineer: suggestions are code regions)")
            else:
                notes.append(f"{claim} (added by the engineer)")
        say("  confirmed: " + ", ".join(notes))
        record = create_sandbox(engineer, agent.task, RUNTIME, base=base, claims=targets,
                                script=root / agent.script)
        regions = [rid for claim in workspace.store.live_claims(record.id) for rid in claim.region_ids]
        conflicts = coordinator.check(record.id, regions)
        record = workspace.store.update_sandbox(record.id, data={
            AGENT_KEY: agent.name, CONFLICTS_KEY: [c.as_dict() for c in conflicts]})
        say(f"  sandbox {record.id} on {record.branch}, {isolation_label(record)}; claimed {len(regions)} "
            f"region{'s' if len(regions) != 1 else ''}")
        for conflict in conflicts:
            say(_conflict_line(workspace, conflict, coordinator.describe_path))
        claim_facts = ChangeFacts(
            stage="claim", paths=tuple(sorted({r for r in regions if "::" not in r})),
            regions=tuple(sorted(r for r in regions if "::" in r)), runtime=RUNTIME, author=DEMO_ENGINEER)
        waiting = record.data.get(PRESTART_KEY)
        after = (f" -> pre-start escalation #{waiting}: the agent waits for it" if waiting
                 else ": the agent may start")
        evaluation = evaluate(policy, claim_facts)
        verdict = _outcome(evaluation) if evaluation.applied else "no rule applies before generation"
        say(f"  policy on the claims: {verdict}{after}")
        created.append((agent, record))

    waiting_ones = [(agent, record) for agent, record in created if record.data.get(PRESTART_KEY)]
    if waiting_ones and approve_start:
        say.heading("Approval to start")
        for agent, record in waiting_ones:
            _approve(workspace, policy, int(record.data[PRESTART_KEY]), f"the start of {agent.name}", say)

    say.heading("Agents at work")
    for _agent, record in created:
        _start_if_cleared(workspace, workspace.store.get_sandbox(record.id) or record, say)
    return say.lines


def _approve(workspace: Workspace, policy: Policy, escalation_id: int, what: str, say: Say) -> list[dict[str, Any]]:
    """The demo's payments reviewers approve an escalation, one after the other, until it is approved."""
    decisions = []
    for reviewer in DEMO_REVIEWERS:
        escalation = decide(_as(workspace, reviewer), policy, escalation_id, "approve")
        say(f"{reviewer} approves {what} (escalation #{escalation_id}): {'; '.join(status_lines(escalation))}"
            f" -> {escalation.status}")
        decisions.append({"by": reviewer, "escalation": escalation_id, "decision": "approve",
                          "status": escalation.status})
        if escalation.status != "open":
            break
    return decisions


def _start_if_cleared(workspace: Workspace, record: SandboxRecord, say: Say) -> None:
    """Start a planned demo sandbox unless it still waits on (or was refused by) its pre-start escalation."""
    name = record.data.get(AGENT_KEY)
    waiting = record.data.get(PRESTART_KEY)
    escalation = workspace.store.get_escalation(int(waiting)) if waiting else None
    if escalation is not None and escalation.status == "open":
        return
    if escalation is not None and escalation.status == "rejected":
        try:
            transition(workspace, record.id, REJECTED, allowed_from=frozenset({PLANNED}),
                       reason=f"pre-start escalation #{escalation.id} rejected")
            say(f"[{name}] not started: pre-start escalation #{escalation.id} was rejected")
        except LoomError:
            pass
        return
    try:
        started = start(_as(workspace, DEMO_ENGINEER), record.id)
    except LoomError:
        return  # started meanwhile by another caller
    script = next((a.script for a in AGENTS if a.name == name), "?")
    say(f"[{name}] agent started: `loomtui script-agent {script}` in {started.worktree}")


def stop_scenario(workspace: Workspace, grace: float = 2.0) -> list[str]:
    """Stop the scenario's agents that are still running (before the demo repository is deleted)."""
    lines = []
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
    """Do whatever step of the scenario is now due, and return the lines saying what was done.

    Safe to call repeatedly and from several threads or processes (each step is
    claimed by a compare-and-set on the sandbox's status; a call while another is
    in progress in this process returns [] at once). Steps, per sandbox:

    - while agents run: once a sandbox changes the signature of a claimed region,
      the conflicts on it are re-checked and reported raised to high;
    - agent exited: gates run in its worktree, then the policy on its diff and gate
      results: auto-approve -> merged with trailers; otherwise an escalation is
      opened and the sandbox awaits review;
    - escalation approved or overridden -> approved and merged; rejected -> rejected.

    Returns [] when nothing was due (cheap: a few store reads).
    """
    if not _ADVANCING.acquire(blocking=False):
        return []
    try:
        say = _Steps(on_step)
        sandboxes = demo_sandboxes(workspace)
        if not sandboxes:
            return []
        _check_raised_conflicts(workspace, sandboxes, say)
        policy: Policy | None = None
        for name in AGENT_NAMES:
            record = workspace.store.get_sandbox(sandboxes[name].id) if name in sandboxes else None
            if record is None or record.data.get(ERROR_KEY):
                continue
            try:
                if record.status == PLANNED:
                    _start_if_cleared(workspace, record, say)
                elif record.status in (EXITED, FAILED):
                    policy = policy or _policy(workspace)
                    _review(workspace, policy, record, say)
                elif record.status == AWAITING_REVIEW:
                    _follow_decision(workspace, record, say)
            except LoomError as exc:
                workspace.store.update_sandbox(record.id, data={ERROR_KEY: str(exc)})
                say(f"[{name}] stopped here: {exc}")
        return say.lines
    finally:
        _ADVANCING.release()


def _check_raised_conflicts(workspace: Workspace, sandboxes: dict[str, SandboxRecord], say: Say) -> None:
    """Once, while a sandbox is live: conflicts made high by a signature some sandbox changed."""
    if any(record.data.get(RAISED_KEY) for record in sandboxes.values()):
        return
    current = [workspace.store.get_sandbox(record.id) for record in sandboxes.values()]
    if not any(record and record.status in (RUNNING, PAUSED, GATING) for record in current):
        return
    changed = sandbox_signature_changes(workspace)
    if not changed:
        return
    coordinator = open_coordinator(workspace)
    raised = [c for c in coordinator.conflicts(signature_changed=changed) if c.severity == "high"]
    if not raised:
        return
    changers: dict[str, list[str]] = {}
    for record in current:
        if record is None:
            continue
        held = {rid for claim in workspace.store.live_claims(record.id) for rid in claim.region_ids}
        mine = sorted(held & changed)
        if mine:
            changers[record.id] = mine
    for sandbox_id, regions in changers.items():
        say(f"[{_agent_of(workspace, sandbox_id)}] changed the signature of {', '.join(regions)}: "
            "its dependency conflicts are raised to high")
    for conflict in raised:
        say(f"  HIGH: {conflict.kind} conflict between {_agent_of(workspace, conflict.sandbox_a)} "
            f"({conflict.sandbox_a}) and {_agent_of(workspace, conflict.sandbox_b)} ({conflict.sandbox_b}): "
            f"{coordinator.describe_path(conflict.path)}")
    owner = next(iter(changers), raised[0].sandbox_a)
    workspace.store.update_sandbox(owner, data={
        RAISED_KEY: [c.as_dict() for c in raised], "demo_signature_changed": sorted(changed)})
    workspace.record("demo.conflicts_raised", owner, {
        "signature_changed": sorted(changed), "conflicts": [c.as_dict() for c in raised]})


def _ended_line(record: SandboxRecord, repo: Git) -> str:
    started, ended = record.data.get("started_at"), record.data.get("ended_at")
    took = f" after {ended - started:.1f}s" if isinstance(started, float) and isinstance(ended, float) else ""
    base = record.data.get("base_sha")
    count = repo.out("rev-list", "--count", f"{base}..{record.branch}").strip() if base else "?"
    how = f"exited {record.exit_code}" if record.status == EXITED else f"failed ({record.data.get('error')})"
    return f"agent {how}{took}, {count} commit{'s' if count != '1' else ''} on {record.branch}"


def _review(workspace: Workspace, policy: Policy, record: SandboxRecord, say: Say) -> None:
    """Gates, then policy on the diff (the same review as real work): merge what is approved."""
    name = str(record.data.get(AGENT_KEY))
    say(f"[{name}] {_ended_line(record, Git(workspace.root))}")
    _check_raised_conflicts(workspace, demo_sandboxes(workspace), say)  # a signature seen at the latest now
    try:
        outcome = review_sandbox(
            workspace, record.id, policy=policy, say=lambda line: say(f"  {line}"),
            summary=f"{name}: {record.task[:70]}")
    except LoomError:
        return  # another caller is on it
    workspace.store.update_sandbox(record.id, data={POLICY_KEY: {
        "outcome": outcome.evaluation.outcome, "risk": outcome.evaluation.risk,
        "rules": list(outcome.evaluation.rule_names()),
        "needs": [r.describe() for r in outcome.evaluation.requirements], "commit": outcome.commit}})
    say(f"  policy after the gates: {_outcome(outcome.evaluation)}")
    if outcome.escalation is None:
        rules = ", ".join(outcome.evaluation.rule_names())
        _merge(workspace, record.id, [("Loom-Policy", f"auto_approve ({rules})")], say)
        return
    wait = "a lead may override it" if outcome.evaluation.outcome == "block" else "waiting for approvals"
    say(f"  escalation #{outcome.escalation.id} opened ({outcome.evaluation.outcome}, "
        f"risk {outcome.escalation.risk}); {wait}")


def _decided(workspace: Workspace, record: SandboxRecord) -> EscalationRecord | None:
    """The sandbox's escalation, if people have decided it."""
    return decided_escalation(workspace, record.id)


def _follow_decision(workspace: Workspace, record: SandboxRecord, say: Say) -> None:
    escalation = _decided(workspace, record)
    try:
        moved = follow_decision(workspace, record.id)
    except LoomError:
        return
    if moved is None or escalation is None:
        return
    name = record.data.get(AGENT_KEY)
    if moved.status == "rejected":
        say(f"[{name}] escalation #{escalation.id} rejected: the change is not merged")
        return
    people = ", ".join(a["user"] for a in escalation.data.get("approvals", [])) or "?"
    how = "approved by " + people if escalation.status == "approved" else "overridden"
    say(f"[{name}] escalation #{escalation.id} {how}")
    _merge(workspace, record.id, merge_trailers(workspace, record.id), say)


def _merge(workspace: Workspace, sandbox_id: str, trailers: list[tuple[str, str]], say: Say) -> None:
    try:
        result = merge(workspace, sandbox_id, trailers=trailers)
    except LoomError as exc:
        workspace.store.update_sandbox(sandbox_id, data={ERROR_KEY: f"merge refused: {exc}"})
        say(f"  merge refused: {exc}")
        return
    say(f"  merged into {result.target} as {result.commit[:10]} (trailers: Loom-Sandbox, Loom-Runtime, "
        f"Assisted-by, {', '.join(key for key, _ in trailers)})")


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


def _headless_decisions(workspace: Workspace, say: Say) -> list[dict[str, Any]]:
    """alice and bob (payments-team) approve the refunds change; its author is the engineer."""
    refunds = demo_sandboxes(workspace).get("refunds")
    escalation_id = refunds.data.get(ESCALATION_KEY) if refunds else None
    if not escalation_id:
        say("the refunds change has no escalation to decide")
        return []
    return _approve(workspace, _policy(workspace), int(escalation_id), "the refunds change", say)


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


def _agent_summary(workspace: Workspace, record: SandboxRecord) -> dict[str, Any]:
    gates: dict[str, Any] = {}
    for run in workspace.store.gate_runs(record.id):
        gates[run.gate] = {"status": run.status, "summary": run.data.get("summary", ""),
                           "failed_tests": run.data.get("failed_tests", []), "commit": run.commit_sha}
    escalation_id = record.data.get(ESCALATION_KEY)
    escalation = workspace.store.get_escalation(int(escalation_id)) if escalation_id else None
    return {
        "sandbox": record.id, "task": record.task, "status": record.status, "branch": record.branch,
        "isolation": record.isolation, "exit_code": record.exit_code, "claims": list(record.data.get("claims", [])),
        "conflicts_at_claim": record.data.get(CONFLICTS_KEY, []), "gates": gates,
        "policy": record.data.get(POLICY_KEY), "merged_commit": record.data.get("merged_commit"),
        "escalation": None if escalation is None else {
            "id": escalation.id, "status": escalation.status, "risk": escalation.risk,
            "outcome": escalation.data.get("outcome"),
            "approvals": [a["user"] for a in escalation.data.get("approvals", [])]},
        "error": record.data.get(ERROR_KEY),
    }


def _checks(agents: dict[str, dict[str, Any]], raised: list[dict[str, Any]], merges: list[dict[str, Any]],
            open_escalations: list[EscalationRecord], audit_ok: bool) -> dict[str, bool]:
    """What the scenario is meant to show, each checked against what the engines recorded."""
    def agent(name: str) -> dict[str, Any]:
        return agents.get(name) or {}

    def pair(conflict: dict[str, Any]) -> set[str]:
        return {conflict["a"]["region"], conflict["b"]["region"]}

    rounding_pair = {"payments/currency.py::round_minor_units", "payments/refunds.py::RefundService.quote"}
    tests_gate = agent("invoices").get("gates", {}).get("tests", {})
    merged = {m["trailers"].get("Loom-Sandbox") for m in merges}
    refunds_escalation = agent("refunds").get("escalation") or {}
    return {
        "dependency conflict flagged before generation": any(
            c["kind"] == "dependency" and c["severity"] == "warning" and pair(c) == rounding_pair
            for c in agent("rounding").get("conflicts_at_claim", [])),
        "conflict raised to high by the signature change": any(
            c["severity"] == "high" and pair(c) == rounding_pair for c in raised),
        "invoices tests gate failed on the regression test": tests_gate.get("status") == "failed" and any(
            t.endswith("::test_invoice_total_rounds_each_line_half_even_before_summing")
            for t in tests_gate.get("failed_tests", [])),
        "invoices blocked by failing-gates": (agent("invoices").get("policy") or {}).get("outcome") == "block",
        "templates auto-approved and merged with trailers": agent("templates").get("status") == MERGED
        and agent("templates").get("sandbox") in merged,
        "refunds approved by two payments-team members and merged": refunds_escalation.get("status") == "approved"
        and len(refunds_escalation.get("approvals", [])) == 2 and agent("refunds").get("status") == MERGED
        and agent("refunds").get("sandbox") in merged,
        "an escalation left open for triage": bool(open_escalations),
        "audit chain verifies": audit_ok,
    }


def run_headless(workspace: Workspace, on_step: Say | None = None, *,
                 timeout: float = AGENT_TIMEOUT_S) -> dict[str, Any]:
    """Run the whole scenario against a prepared demo repository; return what happened.

    `on_step` gets each line as it happens (the CLI prints them); the returned dict
    has them all in `lines`, plus structured fields for scripts (`--json`) and
    `checks`: each outcome the scenario is meant to show, verified against the store,
    git and the audit log. `ok` is true when every check holds.
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
        f"{', '.join(g.name for g in config.gates)}; policy {config.policy}")
    workspace.record("demo.started", str(root), {"commit": head})
    baseline = _baseline(workspace, say)

    start_scenario(workspace, on_step=say)
    settled = _wait_until_settled(workspace, say, timeout)

    say.heading("People decide")
    decisions = _headless_decisions(workspace, say) if settled else []
    if decisions:
        _wait_until_settled(workspace, say, timeout)

    say.heading("Where things stand")
    sandboxes = demo_sandboxes(workspace)
    agents = {name: _agent_summary(workspace, record) for name, record in sandboxes.items()}
    for name, info in agents.items():
        escalation = info["escalation"]
        extra = f", escalation #{escalation['id']} {escalation['status']}" if escalation else ""
        merged = f", merged as {info['merged_commit'][:10]}" if info["merged_commit"] else ""
        say(f"[{name}] {info['status']}{extra}{merged}")
    raised: list[dict[str, Any]] = next(
        (r.data[RAISED_KEY] for r in sandboxes.values() if r.data.get(RAISED_KEY)), [])
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
    checks = _checks(agents, raised, merges, open_escalations, verify.ok)
    failed = [name for name, passed in checks.items() if not passed]
    elapsed = round(time.monotonic() - started, 1)
    say(f"checks: {len(checks) - len(failed)} of {len(checks)} as expected"
        + (f"; NOT as expected: {'; '.join(failed)}" if failed else "") + f" ({elapsed}s)")
    ok = settled and not failed and all(r["status"] == "passed" for r in baseline)
    return {
        "ok": ok, "repo": str(root), "branch": branch, "commit": head, "elapsed_s": elapsed,
        "baseline": baseline, "baseline_exit": 0 if all(r["status"] == "passed" for r in baseline) else 1,
        "agents": agents,
        "conflicts_at_claim": [c for info in agents.values() for c in info["conflicts_at_claim"]],
        "conflicts_raised": raised, "decisions": decisions, "merges": merges,
        "open_escalations": [{"id": e.id, "sandbox": e.sandbox_id, "agent": _agent_of(workspace, e.sandbox_id),
                              "risk": e.risk, "outcome": e.data.get("outcome"), "summary": e.summary}
                             for e in open_escalations],
        "audit_ok": verify.ok, "audit_entries": verify.entries, "checks": checks, "lines": say.lines,
    }
