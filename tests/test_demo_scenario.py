"""The demo scenario end to end: real sandboxes, real supervisors, real script agents, real gates.

One headless run (about 15 s) is shared by the tests below; each checks an outcome
against what the engines recorded (store, git, audit log), not against the
summary's own claims alone. Sandboxes run under bubblewrap where it works and as
plain processes otherwise; both paths run the same scenario.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from loomtui.coordination.diff import diff_regions
from loomtui.demo import prepare_demo_repo
from loomtui.governance.review import ESCALATION_KEY
from loomtui.demo.scenario import (
    AGENT_NAMES,
    DEMO_LEAD,
    DEMO_REVIEWERS,
    advance_scenario,
    demo_sandboxes,
    run_headless,
    scenario_pending,
    start_scenario,
    stop_scenario,
)
from loomtui.execution.lifecycle import EXITED, FAILED, LIVE, MERGED, PLANNED, REJECTED
from loomtui.execution.sandboxes import wait_for_status
from loomtui.governance.escalations import decide, queue
from loomtui.governance.policy import load_policy
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import GIT_ENV, git

FRAGILE_TEST = "tests/test_invoices.py::test_invoice_total_rounds_each_line_half_even_before_summing"
QUOTE = "payments/refunds.py::RefundService.quote"
ROUND = "payments/currency.py::round_minor_units"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, dict[str, Any], list[str]]]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in GIT_ENV.items():
            env.setenv(name, value)
        env.delenv("LOOM_USER", raising=False)
        repo = prepare_demo_repo(tmp_path_factory.mktemp("demo"))
        workspace = open_workspace(repo)
        streamed: list[str] = []
        summary = run_headless(workspace, on_step=streamed.append)
        try:
            yield workspace, summary, streamed
        finally:
            stop_scenario(workspace)
            workspace.close()


def _sandbox(workspace: Workspace, name: str) -> Any:
    return demo_sandboxes(workspace)[name]


def test_headless_run_meets_every_expected_outcome(run: tuple[Workspace, dict[str, Any], list[str]]) -> None:
    _workspace, summary, streamed = run
    assert summary["checks"] and all(summary["checks"].values()), summary["checks"]
    assert summary["ok"] is True
    assert streamed == summary["lines"]  # printed step by step, as it happened
    assert any(line.startswith("== Claims before code") for line in streamed)
    assert set(summary["agents"]) == set(AGENT_NAMES)


def test_dependency_conflict_is_flagged_before_the_agent_starts(
        run: tuple[Workspace, dict[str, Any], list[str]]) -> None:
    workspace, summary, streamed = run
    rounding = _sandbox(workspace, "rounding")
    at_claim = summary["agents"]["rounding"]["conflicts_at_claim"]
    assert any(c["kind"] == "dependency" and c["severity"] == "warning"
               and {c["a"]["region"], c["b"]["region"]} == {QUOTE, ROUND} for c in at_claim)
    # The audit log proves the order: the claim carried the conflict before the agent ran.
    entries = [e for e in workspace.audit.tail(10_000) if e.subject == rounding.id]
    claimed = next(e for e in entries if e.action == "claim.added")
    running = next(e for e in entries if e.action == "sandbox.running")
    assert claimed.seq < running.seq
    assert any(c["severity"] == "warning" and c["b"]["region"] == QUOTE for c in claimed.details["conflicts"])
    warning = next(line for line in streamed if "WARNING: dependency conflict with refunds" in line)
    assert f"{ROUND} <-references- {QUOTE}" in warning


def test_the_signature_change_raises_the_conflict_to_high(run: tuple[Workspace, dict[str, Any], list[str]]) -> None:
    workspace, summary, _streamed = run
    assert any(c["severity"] == "high" and {c["a"]["region"], c["b"]["region"]} == {QUOTE, ROUND}
               for c in summary["conflicts_raised"])
    rounding = _sandbox(workspace, "rounding")
    changes = diff_regions(workspace.root, rounding.data["base_sha"], rounding.branch)
    assert [c.region_id for c in changes if c.signature_changed] == [ROUND]
    source = git(workspace.root, "show", f"{rounding.branch}:payments/currency.py")
    assert "def round_minor_units(amount: AmountLike, currency: str, *, rounding: str = ROUNDING)" in source


def test_the_careless_speed_up_fails_the_fragile_test_and_is_blocked(
        run: tuple[Workspace, dict[str, Any], list[str]]) -> None:
    workspace, _summary, _streamed = run
    invoices = _sandbox(workspace, "invoices")
    runs = {r.gate: r for r in workspace.store.gate_runs(invoices.id)}
    assert runs["tests"].status == "failed" and runs["compile"].status == "passed"
    assert FRAGILE_TEST in runs["tests"].data["failed_tests"]
    assert runs["tests"].commit_sha == git(workspace.root, "rev-parse", invoices.branch)
    escalation = workspace.store.get_escalation(invoices.data[ESCALATION_KEY])
    assert escalation is not None and escalation.data["outcome"] == "block"
    assert "failing-gates" in [rule["name"] for rule in escalation.data["rules"]]


def test_templates_are_auto_approved_and_merged_with_trailers(
        run: tuple[Workspace, dict[str, Any], list[str]]) -> None:
    workspace, _summary, _streamed = run
    templates = _sandbox(workspace, "templates")
    assert templates.status == MERGED
    assert templates.data["demo_policy"]["outcome"] == "auto_approve"
    merged = git(workspace.root, "log", "main", "--merges", "--format=%H %(trailers:key=Loom-Sandbox,valueonly)")
    assert f"{templates.data['merged_commit']} {templates.id}" in merged
    trailers = git(workspace.root, "log", "-1", "--format=%(trailers:only,unfold)", templates.data["merged_commit"])
    assert "Loom-Runtime: script" in trailers and "Assisted-by: loomtui script agent" in trailers
    texts = "".join(git(workspace.root, "show", f"main:notifications/templates/{name}")
                    for name in ("invoice_issued.txt", "refund_issued.txt", "payment_failed.txt"))
    assert "separate" in texts and "receive" in texts and "occurred" in texts
    assert not {"seperate", "recieve", "occured"} & set(texts.split())


def test_refunds_need_and_get_two_payments_approvals_then_merge(
        run: tuple[Workspace, dict[str, Any], list[str]]) -> None:
    workspace, _summary, _streamed = run
    refunds = _sandbox(workspace, "refunds")
    escalation = workspace.store.get_escalation(refunds.data[ESCALATION_KEY])
    assert escalation is not None and escalation.status == "approved"
    assert [a["user"] for a in escalation.data["approvals"]] == list(DEMO_REVIEWERS)
    assert all(a["commit"] == refunds.data["approved_commit"] for a in escalation.data["approvals"])
    assert refunds.status == MERGED
    assert '"25%"' in git(workspace.root, "show", "main:payments/refunds.py")
    trailers = git(workspace.root, "log", "-1", "--format=%(trailers:only,unfold)", refunds.data["merged_commit"])
    assert f"Loom-Sandbox: {refunds.id}" in trailers and "Loom-Approved-by: alice@example.com, bob@example.com" in trailers


def test_escalations_are_left_open_and_the_audit_chain_verifies(
        run: tuple[Workspace, dict[str, Any], list[str]]) -> None:
    workspace, summary, _streamed = run
    open_ids = {e.sandbox_id for e in queue(workspace)}
    assert _sandbox(workspace, "invoices").id in open_ids
    assert {e["agent"] for e in summary["open_escalations"]} >= {"invoices", "rounding"}
    verify = workspace.audit.verify()
    assert verify.ok and verify.entries >= summary["audit_entries"]


def test_advancing_again_is_idempotent_and_follows_a_leads_decision(
        run: tuple[Workspace, dict[str, Any], list[str]]) -> None:
    """What the app does on its timer: nothing until a person decides, then exactly the next step."""
    workspace, _summary, _streamed = run
    before = workspace.store.last_event_id()
    assert advance_scenario(workspace) == [] and advance_scenario(workspace) == []
    assert workspace.store.last_event_id() == before
    assert not scenario_pending(workspace)
    rounding = _sandbox(workspace, "rounding")
    lead = open_workspace(workspace.root)
    lead.actor = DEMO_LEAD
    try:
        policy = load_policy(workspace.root, workspace.load_config().policy)
        decide(lead, policy, rounding.data[ESCALATION_KEY], "reject", reason="changes a shared signature")
        assert scenario_pending(workspace)
        lines = advance_scenario(lead)
    finally:
        lead.close()
    assert any("rejected" in line for line in lines)
    assert _sandbox(workspace, "rounding").status == REJECTED
    assert advance_scenario(workspace) == []


def test_an_agent_held_before_start_starts_once_its_escalation_is_approved(tmp_path: Path) -> None:
    """When the policy holds a start (pre-start escalation), the app's triage lets it go."""
    repo = prepare_demo_repo(tmp_path)
    policy_file = repo / ".loom" / "policy.yaml"
    policy = yaml.safe_load(policy_file.read_text())
    policy["rules"].append({"name": "rounding-claims", "stage": "claim", "when": {"paths": ["payments/currency.py"]},
                            "risk": "high", "decision": "require",
                            "approvals": {"groups": ["payments-team"], "count": 1}})
    policy_file.write_text(yaml.safe_dump(policy, sort_keys=False))
    workspace = open_workspace(repo)
    try:
        lines = start_scenario(workspace, approve_start=False)
        assert start_scenario(workspace) == []  # already started: nothing again
        rounding = _sandbox(workspace, "rounding")
        assert rounding.status == PLANNED and rounding.data.get("awaiting_escalation")
        assert any("pre-start escalation" in line for line in lines)
        for name in AGENT_NAMES:
            if name != "rounding":  # the others were started (their supervisors record it)
                wait_for_status(workspace, _sandbox(workspace, name).id, LIVE | {EXITED, FAILED}, timeout=20)
        advance_scenario(workspace)
        assert _sandbox(workspace, "rounding").status == PLANNED  # still waiting for a person
        reviewer = open_workspace(repo)
        reviewer.actor = DEMO_REVIEWERS[0]
        try:
            decide(reviewer, load_policy(repo, ".loom/policy.yaml"), int(rounding.data["awaiting_escalation"]),
                   "approve")
        finally:
            reviewer.close()
        started = advance_scenario(workspace)
        assert any(line.startswith("[rounding] agent started") for line in started)
        wait_for_status(workspace, rounding.id, LIVE | {EXITED, FAILED}, timeout=20)
    finally:
        stop_scenario(workspace, grace=1.0)
        workspace.close()
    assert os.path.isdir(repo)
