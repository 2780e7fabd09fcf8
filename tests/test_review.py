"""The review after an agent stops, for real work (not only the demo): gates, policy, people, merge."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from loomtui.demo import prepare_demo_repo
from loomtui.execution.sandboxes import wait_for_status
from loomtui.workflow.tasks import create_sandbox, start
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import git, quick_gates, run_cli

LOOMTUI = shutil.which("loomtui") or "loomtui"


@pytest.fixture
def billing(tmp_path: Path) -> Path:
    """The sample repo with instant gates: these tests are about policy, people and merges; the one
    auto-approve test below runs the sample's real gates (its pytest suite, compileall)."""
    return quick_gates(prepare_demo_repo(tmp_path))


@pytest.fixture
def real_gates_billing(tmp_path: Path) -> Path:
    return prepare_demo_repo(tmp_path)


def run_agent(workspace: Workspace, script_text: str, task: str) -> str:
    script = workspace.root.parent / f"{abs(hash(task))}.yaml"
    script.write_text(script_text)
    record = create_sandbox(workspace, task, "script", script=script)
    start(workspace, record.id)
    wait_for_status(workspace, record.id, {"exited", "failed"}, timeout=60)
    return record.id


def loomtui(repo: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real `loomtui` command, in its own process."""
    env = {**os.environ, **({"LOOM_USER": user} if user else {})}
    return subprocess.run([LOOMTUI, *args], cwd=repo, capture_output=True, text=True, env=env, timeout=180)


# The command's own handlers in this process (tests/conftest.py): the tests below keep a real
# `loomtui` process for the review, merge and error of the first and the unknown-sandbox ones.
cli = run_cli


TYPO_FIX = """\
- {replace: {path: notifications/templates/refund_issued.txt, old: recieve, new: receive}}
- {commit: "Fix a typo"}
"""
REFUNDS_EDIT = """\
- {append: payments/refunds.py, content: "\\n# partial refunds are quoted per charge\\n"}
- {commit: "Document partial refunds"}
"""


def test_an_auto_approved_change_is_approved_and_merges_with_trailers(real_gates_billing: Path) -> None:
    billing = real_gates_billing
    workspace = open_workspace(billing)
    sandbox_id = run_agent(workspace, TYPO_FIX, "fix a typo")
    reviewed = loomtui(billing, "sandbox", "review", sandbox_id, "--json")
    assert reviewed.returncode == 0, reviewed.stderr
    outcome = json.loads(reviewed.stdout)
    assert outcome["outcome"] == "auto_approve" and outcome["status"] == "approved"
    assert outcome["gates"] == {"tests": "passed", "compile": "passed"}
    merged = loomtui(billing, "sandbox", "merge", sandbox_id)
    assert merged.returncode == 0, merged.stderr
    message = git(billing, "log", "-1", "--format=%B", "main")
    assert f"Loom-Sandbox: {sandbox_id}" in message and "Loom-Policy: auto_approve" in message


def test_a_payments_change_waits_for_two_reviewers_then_merges(billing: Path) -> None:
    workspace = open_workspace(billing)
    sandbox_id = run_agent(workspace, REFUNDS_EDIT, "document refunds")
    outcome = json.loads(cli(billing, "sandbox", "review", sandbox_id, "--json").stdout)
    assert outcome["outcome"] == "require" and outcome["status"] == "awaiting_review"
    escalation = str(outcome["escalation"])
    refused = cli(billing, "sandbox", "merge", sandbox_id)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    for reviewer in ("alice@example.com", "bob@example.com"):
        done = cli(billing, "escalation", "approve", escalation, user=reviewer)
        assert done.returncode == 0, done.stderr
    merged = cli(billing, "sandbox", "merge", sandbox_id)
    assert merged.returncode == 0, merged.stderr
    message = git(billing, "log", "-1", "--format=%B", "main")
    assert f"Loom-Escalation: #{escalation}" in message
    assert "Loom-Approved-by: alice@example.com, bob@example.com" in message


def test_new_commits_after_review_supersede_the_escalation(billing: Path) -> None:
    workspace = open_workspace(billing)
    sandbox_id = run_agent(workspace, REFUNDS_EDIT, "document refunds")
    first = json.loads(cli(billing, "sandbox", "review", sandbox_id, "--json").stdout)
    worktree = Path(workspace.store.get_sandbox(sandbox_id).worktree)
    (worktree / "payments/refunds.py").write_text((worktree / "payments/refunds.py").read_text() + "# more\n")
    git(worktree, "commit", "-qam", "one more change")
    stale = cli(billing, "escalation", "approve", str(first["escalation"]), user="alice@example.com")
    assert stale.returncode == 1 and "review it again" in stale.stderr
    second = json.loads(cli(billing, "sandbox", "review", sandbox_id, "--json").stdout)
    assert second["escalation"] != first["escalation"]
    assert workspace.store.get_escalation(first["escalation"]).status == "superseded"


def test_reviewing_a_running_or_unknown_sandbox_is_one_clear_error(billing: Path) -> None:
    done = loomtui(billing, "sandbox", "review", "nope00")
    assert done.returncode != 0 and "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


async def test_the_app_reviews_an_ended_agent_and_m_merges_the_approved_change(billing: Path) -> None:
    from textual.widgets import DataTable

    from loomtui.tui.app import LoomApp
    from loomtui.tui.screens.sandbox_forms import ConfirmScreen
    from tests.test_tui import wait_for

    workspace = open_workspace(billing)
    sandbox_id = run_agent(workspace, TYPO_FIX, "fix a typo")
    app = LoomApp(workspace)
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.screen.query_one("#sandboxes", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1 and
                       str(table.get_cell(sandbox_id, "status")) == "approved", timeout=60)
        await pilot.press("m")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: workspace.store.get_sandbox(sandbox_id).status == "merged", timeout=30)
    assert f"Loom-Sandbox: {sandbox_id}" in git(billing, "log", "-1", "--format=%B", "main")


LEDGER_EDIT = """\
- {append: payments/ledger.py, content: "\\n# the ledger is append-only\\n"}
- {commit: "Document the ledger"}
"""


def test_a_claim_stage_requirement_holds_at_review_for_an_agent_that_wrote_without_asking(billing: Path) -> None:
    """`ledger-claims` (a lead must agree before the ledger is touched) is a claim-stage rule. An agent
    that never claimed and never asked (any permission mode) still meets it before anything merges."""
    workspace = open_workspace(billing)
    sandbox_id = run_agent(workspace, LEDGER_EDIT, "document the ledger")
    outcome = json.loads(cli(billing, "sandbox", "review", sandbox_id, "--json").stdout)
    assert outcome["outcome"] == "require" and outcome["status"] == "awaiting_review"
    escalation = workspace.store.get_escalation(outcome["escalation"])
    assert escalation is not None
    rules = [rule["name"] for rule in escalation.data["rules"]]
    assert "payments-high-risk" in rules and "ledger-claims (claim stage, not granted before)" in rules
    for reviewer in ("alice@example.com", "bob@example.com"):
        assert cli(billing, "escalation", "approve", str(escalation.id), user=reviewer).returncode == 0
    refused = cli(billing, "sandbox", "merge", sandbox_id)
    assert refused.returncode == 1, "two payments reviewers are not the lead the claim-stage rule asks for"
    assert cli(billing, "escalation", "approve", str(escalation.id), user="lead@example.com").returncode == 0
    merged = cli(billing, "sandbox", "merge", sandbox_id)
    assert merged.returncode == 0, merged.stderr


def test_a_claim_stage_requirement_granted_before_start_is_not_asked_again(billing: Path) -> None:
    workspace = open_workspace(billing)
    script = billing.parent / "ledger.yaml"
    script.write_text(LEDGER_EDIT)
    record = create_sandbox(workspace, "document the ledger", "script", script=script,
                            claims=["payments/ledger.py"])
    prestart = workspace.store.get_escalation(int(workspace.store.get_sandbox(record.id).data["awaiting_escalation"]))
    assert prestart is not None and prestart.kind == "pre-start"
    assert cli(billing, "escalation", "approve", str(prestart.id), user="lead@example.com").returncode == 0
    start(workspace, record.id)
    wait_for_status(workspace, record.id, {"exited", "failed"}, timeout=60)
    outcome = json.loads(cli(billing, "sandbox", "review", record.id, "--json").stdout)
    escalation = workspace.store.get_escalation(outcome["escalation"])
    assert escalation is not None
    assert [rule["name"] for rule in escalation.data["rules"]] == ["payments-high-risk"]
