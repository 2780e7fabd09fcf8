"""The demo scenario headless (`loomtui demo --headless`): run start to finish, the people's
decisions taken by the demo's reviewers, then what happened, checked against the store, git and
the audit log."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from loomtui.audit import AuditEntry
from loomtui.demo.common import (
    CONFLICTS_KEY,
    ESCALATION_KEY,
    RAISED_KEY,
    Say,
    Steps,
    acting_as,
    agent_names,
    demo_policy,
    demo_sandboxes,
)
from loomtui.demo.narration import audit_after
from loomtui.demo.scenario import (
    AGENT_TIMEOUT_S,
    DEMO_ENGINEER,
    DEMO_LEAD,
    HEADLESS_APPROVALS,
    POLL_S,
    advance_scenario,
    approve_escalation,
    approve_starts,
    scenario_pending,
    start_scenario,
    stop_scenario,
    waiting_to_start,
)
from loomtui.execution.gitops import Git
from loomtui.execution.lifecycle import MERGED
from loomtui.governance.escalations import EscalationStatus, approvals, queue
from loomtui.guardrails.evals import evaluate_baseline, latest_eval
from loomtui.observability.checklist import checklist
from loomtui.store import EscalationRecord, SandboxRecord
from loomtui.workflow.engine import Workflow, advance
from loomtui.workflow.plan import PLAN_PATH
from loomtui.workflow.planrun import PLAN_KEY
from loomtui.workflow.steps import AFTER_KEY, STEP_ERROR_KEY
from loomtui.workspace import Workspace


def _baseline(workspace: Workspace, say: Say) -> list[dict[str, Any]]:
    """Gate 1's checks on the base commit: the baseline every sandbox on it is judged against (stored once)."""
    results = []
    for name, run, record in evaluate_baseline(workspace, "HEAD"):
        failing = [c.id for c in run.cases or () if c.outcome.is_fail] if run is not None else []
        results.append({"gate": name, "status": record.status, "run": record.id,
                        "exit_code": run.exit_code if run is not None else None,
                        "summary": run.summary if run is not None else record.data.get("summary", ""),
                        "duration_s": run.duration_s if run is not None else 0.0, "failing_tests": failing})
    say("baseline gates on the base commit: " + "; ".join(
        f"{r['gate']} {r['status']}" + (f" ({r['summary']})" if r["summary"] else "") for r in results))
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
    decisions = approve_escalation(workspace, demo_policy(workspace), escalation.id, f"the {name} change", say)
    advance(acting_as(workspace, DEMO_ENGINEER), record.id)
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
    report = latest_eval(workspace, record.id)
    policy = _latest(entries, "policy.evaluated", record.id)
    running = _latest(entries, "sandbox.running", record.id)
    merged = _latest(entries, "sandbox.merged", record.id)
    flow = Workflow(workspace)
    return {
        "sandbox": record.id, "task": record.task, "status": record.status, "branch": record.branch,
        "isolation": record.isolation, "exit_code": record.exit_code, "claims": list(record.data.get("claims", [])),
        "live_claims": len(workspace.store.live_claims(record.id)),
        "after": agent_names(workspace, record.data.get(AFTER_KEY) or []),
        "waits_on": list((record.data.get(PLAN_KEY) or {}).get("waits_on") or []),
        "base_sha": record.data.get("base_sha"), "tip": tip,
        "conflicts_at_claim": record.data.get(CONFLICTS_KEY, []),
        "signature": record.data.get(RAISED_KEY), "gates": gates,
        "eval": None if report is None else report.as_dict(),
        "policy": None if policy is None else {k: policy.details.get(k) for k in ("outcome", "risk", "rules",
                                                                                   "needs", "commit")},
        "started_seq": running.seq if running else None, "merged_seq": merged.seq if merged else None,
        "merged_commit": record.data.get("merged_commit"),
        "escalation": None if escalation is None else {
            "id": escalation.id, "status": escalation.status, "risk": escalation.risk,
            "outcome": escalation.data.get("outcome"),
            "approvals": [a.user for a in approvals(escalation)]},
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
    invoice_tests = [t for check in (agent("invoices").get("eval") or {}).get("checks", [])
                     for t in ((check.get("tests") or {}).get("tests") or [])]
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
        "invoices' regression classed PASS_TO_FAIL against the baseline": any(
            t["id"].endswith("::test_invoice_total_rounds_each_line_half_even_before_summing")
            and t["cls"] == "PASS_TO_FAIL" for t in invoice_tests),
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
    `ok` is true when every check holds. The run acts as the demo's engineer (who runs it),
    the decisions as the reviewers: never as this machine's git user.
    """
    workspace = acting_as(workspace, DEMO_ENGINEER)
    started = time.monotonic()
    say = Steps(on_step)
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
        f"(merge: {demo_policy(workspace).merge}); plan {PLAN_PATH}")
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
        if settled and waiting_to_start(workspace):  # a start the policy holds (not in the bundled policy)
            say.heading("Approval to start")
            decisions += approve_starts(workspace, say)
            settled = _wait_until_settled(workspace, say, timeout)

    say.heading("Where things stand")
    sandboxes = demo_sandboxes(workspace)
    entries = audit_after(workspace, 0)
    agents = {name: _agent_summary(workspace, record, entries) for name, record in sandboxes.items()}
    plan = _plan_summary(workspace, sandboxes, entries)
    in_plan_order = [name for wave in plan["waves"] for name in wave if name in agents]
    for name in [*in_plan_order, *(name for name in agents if name not in in_plan_order)]:  # as they ran
        info = agents[name]
        escalation = info["escalation"]
        extra = f", escalation #{escalation['id']} {escalation['status']}" if escalation else ""
        merged = f", merged as {info['merged_commit'][:10]}" if info["merged_commit"] else ""
        after = f", started after {', '.join(info['after'])}" if info["after"] else ""
        say(f"[{name}] {info['status']}{extra}{merged}{after}; {info['next']}")
    merges = merges_on(workspace, branch)
    for item in merges:
        trailers = ", ".join(f"{k}: {v}" for k, v in item["trailers"].items())
        say(f"{branch}: {item['commit'][:10]} {item['subject']}")
        say(f"  {trailers}")
    open_escalations = queue(workspace)
    for escalation in open_escalations:
        say(f"open escalation #{escalation.id} ({escalation.risk}): {escalation.summary}")
    if open_escalations:
        # A block is overridden or rejected, never approved: the keys offered are the ones that can work.
        blocked = all(e.data.get("outcome") == "block" for e in open_escalations)
        keys = "o override, r reject" if blocked else "a approve, r reject, o override"
        say(f"left open for triage in the app ({keys}); the policy's groups decide who may: "
            + (f"leads (e.g. LOOM_USER={DEMO_LEAD}) may override" if blocked else
               f"payments-team approves, leads (e.g. LOOM_USER={DEMO_LEAD}) may override"))
    verify = workspace.audit.verify()
    say(f"audit: {verify.summary(workspace.audit.path)}")
    scored = checklist(workspace)
    say(f"the repository scores itself (loomtui checklist): {scored.score:g} of 10: {scored.verdict}"
        + (f"; short of yes: {', '.join(f'item {i.number} ({i.area}, {i.answer})' for i in scored.gaps())} "
           "(`loomtui checklist` says what each needs)" if scored.gaps() else ""))
    checks = _checks(agents, plan, merges, open_escalations, verify.ok)
    failed = [name for name, passed in checks.items() if not passed]
    elapsed = round(time.monotonic() - started, 1)
    say(f"checks: {len(checks) - len(failed)} of {len(checks)} outcomes the demo is meant to show, verified in "
        "the store, git and the audit log (--json names them)"
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
                              "agent": agent_names(workspace, [e.sandbox_id])[0] if e.sandbox_id else None,
                              "risk": e.risk, "outcome": e.data.get("outcome"), "summary": e.summary}
                             for e in open_escalations],
        "audit_ok": verify.ok, "audit_entries": verify.entries, "checks": checks, "lines": say.lines,
        "checklist": scored.as_dict(),
    }
