"""The review after an agent stops, for real work (not only the demo): gates, policy, people, merge.

The agent's supervisor reviews its change as soon as it ends (no app, no command):
these tests wait until the workflow waits for someone, then act as those people.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import demo_repo
from loomtui.errors import LoomError
from loomtui.store import SandboxRecord
from loomtui.workflow.engine import Workflow, wait_until_settled
from loomtui.workflow.steps import REVIEW_ESCALATION_KEY, Step
from loomtui.workflow.tasks import create_sandbox, start
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import git, quick_gates, run_cli

LOOMTUI = shutil.which("loomtui") or "loomtui"


def merge_mode(repo: Path, mode: str) -> Path:
    """Commit the policy's top-level `merge:` as `mode` (whatever the sample repo's default is)."""
    policy = repo / ".loom" / "policy.yaml"
    kept = [line for line in policy.read_text().splitlines() if not line.startswith("merge:")]
    policy.write_text("\n".join(kept) + f"\nmerge: {mode}\n")
    git(repo, "commit", "-q", "--allow-empty", "-am", f"merge: {mode}")
    return repo


@pytest.fixture
def billing(tmp_path: Path) -> Path:
    """The sample repo with instant gates, where a person merges: these tests are about policy, people
    and merges; the one auto-approve test below runs the sample's real gates (its pytest suite,
    compileall)."""
    return merge_mode(quick_gates(demo_repo(tmp_path)), "manual")


@pytest.fixture
def real_gates_billing(tmp_path: Path) -> Path:
    return merge_mode(demo_repo(tmp_path), "manual")


def run_agent(workspace: Workspace, script_text: str, task: str, claims: tuple[str, ...] = ()) -> str:
    """Run a script agent to its end; its supervisor has reviewed the change when this returns."""
    script = workspace.root.parent / f"{abs(hash(task))}.yaml"
    script.write_text(script_text)
    record = create_sandbox(workspace, task, "script", script=script, claims=claims)
    start(workspace, record.id)
    wait_until_settled(workspace, record.id, timeout=120)
    return record.id


def next_step(workspace: Workspace, sandbox_id: str) -> Step:
    return Workflow(workspace).view(workspace.store.get_sandbox(sandbox_id)).step


def evaluated(workspace: Workspace, sandbox_id: str) -> list[dict[str, object]]:
    """The policy evaluations after the gates the audit log recorded for this sandbox."""
    return [e.details for e in workspace.audit.entries()
            if e.action == "policy.evaluated" and e.subject == sandbox_id and e.details.get("stage") == "post-gate"]


def loomtui(repo: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real `loomtui` command, in its own process."""
    env = {**os.environ, **({"LOOM_USER": user} if user else {})}
    return subprocess.run([LOOMTUI, *args], cwd=repo, capture_output=True, text=True, env=env, timeout=180)


# The command's own handlers in this process (tests/conftest.py): the tests below keep a real
# `loomtui` process for the advance and merge of the first and the unknown-sandbox error.
cli = run_cli


TYPO_FIX = """\
- {replace: {path: notifications/templates/refund_issued.txt, old: recieve, new: receive}}
- {commit: "Fix a typo"}
"""
REFUNDS_EDIT = """\
- {append: payments/refunds.py, content: "\\n# partial refunds are quoted per charge\\n"}
- {commit: "Document partial refunds"}
"""


def test_an_auto_approved_change_is_approved_with_no_one_asking_and_merges_with_trailers(
        real_gates_billing: Path) -> None:
    billing = real_gates_billing
    workspace = open_workspace(billing)
    sandbox_id = run_agent(workspace, TYPO_FIX, "fix a typo")
    # Nobody ran `sandbox review`: the supervisor gated and judged the change when the agent ended.
    record = workspace.store.get_sandbox(sandbox_id)
    tip = git(billing, "rev-parse", f"loom/{sandbox_id}")
    assert record.status == "approved" and record.data["approved_commit"] == tip
    assert not record.data.get(REVIEW_ESCALATION_KEY)
    assert [(e["outcome"], e["commit"]) for e in evaluated(workspace, sandbox_id)] == [("auto_approve", tip)]
    assert {r.gate: r.status for r in workspace.store.gate_runs(sandbox_id)} == {"tests": "passed",
                                                                                 "compile": "passed"}
    # `merge: manual`: the approved change waits for a person; the real command finds nothing else due.
    waiting = loomtui(billing, "sandbox", "advance", sandbox_id, "--json")
    assert waiting.returncode == 0, waiting.stderr
    advanced = json.loads(waiting.stdout)["advanced"]
    assert [(a["status"], a["step"], a["done"]) for a in advanced] == [("approved", "wait-merge", [])]
    assert git(billing, "rev-parse", "main") == record.data["base_sha"]  # nothing merged by itself
    merged = loomtui(billing, "sandbox", "merge", sandbox_id)
    assert merged.returncode == 0, merged.stderr
    message = git(billing, "log", "-1", "--format=%B", "main")
    assert f"Loom-Sandbox: {sandbox_id}" in message and "Loom-Policy: auto_approve" in message
    assert workspace.store.get_sandbox(sandbox_id).status == "merged"


def test_where_the_policy_says_merge_auto_an_approved_change_merges_by_itself(billing: Path) -> None:
    merge_mode(billing, "auto")
    workspace = open_workspace(billing)
    claim = "notifications/templates/refund_issued.txt"
    sandbox_id = run_agent(workspace, TYPO_FIX, "fix a typo", claims=(claim,))
    record = workspace.store.get_sandbox(sandbox_id)
    assert record.status == "merged" and next_step(workspace, sandbox_id) == Step.DONE
    assert record.data["merged_commit"] == git(billing, "rev-parse", "main")
    message = git(billing, "log", "-1", "--format=%B", "main")
    assert f"Loom-Sandbox: {sandbox_id}" in message and "Loom-Policy: auto_approve" in message
    assert "receive" in (billing / claim).read_text()  # the checked-out main moved with it
    assert workspace.store.live_claims(sandbox_id) == []  # released with the merge


def test_an_approved_sandbox_with_work_left_uncommitted_says_how_out_and_a_refused_review_keeps_why(
        billing: Path) -> None:
    """A file written in an approved sandbox's worktree after its review: the merge is refused, and each hint
    led back (`advance` failed again, `sandbox review` found no commit); a refused review also erased the
    failed step, so the sandbox read as a merge to do."""
    workspace = open_workspace(billing)
    sandbox_id = run_agent(workspace, TYPO_FIX, "fix a typo")
    record = workspace.store.get_sandbox(sandbox_id)
    assert record.status == "approved"
    (Path(record.worktree) / "late.txt").write_text("written after the review\n")
    merged = cli(billing, "sandbox", "merge", sandbox_id)
    assert merged.returncode == 1
    assert (f"uncommitted changes (late.txt) that were not reviewed; nothing was merged: commit them on "
            f"loom/{sandbox_id} in {record.worktree} to have them reviewed, or set them aside (`git -C "
            f"{record.worktree} stash -u`)") in merged.stderr
    assert cli(billing, "sandbox", "advance", sandbox_id).returncode == 1
    failed = workspace.store.get_sandbox(sandbox_id).data["step_error"]
    assert failed and next_step(workspace, sandbox_id) == Step.FAILED_STEP
    refused = cli(billing, "sandbox", "review", sandbox_id)
    assert refused.returncode == 1 and "has no commits since" in refused.stderr
    assert workspace.store.get_sandbox(sandbox_id).data["step_error"] == failed
    assert next_step(workspace, sandbox_id) == Step.FAILED_STEP
    git(Path(record.worktree), "stash", "-u")  # set aside, as said: the failed merge, retried, merges
    assert cli(billing, "sandbox", "advance", sandbox_id).returncode == 0
    assert workspace.store.get_sandbox(sandbox_id).status == "merged"


def test_a_failed_agents_change_is_never_approved_by_the_policy_alone(billing: Path) -> None:
    """Its agent exited 1 after a change the policy would approve and merge by itself: a person looks first
    (the work may be half done), and is told the agent failed."""
    merge_mode(billing, "auto")
    workspace = open_workspace(billing)
    main_before = git(billing, "rev-parse", "main")
    sandbox_id = run_agent(workspace, TYPO_FIX + "- {exit: 1}\n", "fix a typo, then crash")
    record = workspace.store.get_sandbox(sandbox_id)
    assert record.status == "awaiting_review" and next_step(workspace, sandbox_id) == Step.WAIT_DECISION
    assert git(billing, "rev-parse", "main") == main_before  # not merged
    listed = run_cli(billing, "sandbox", "list").stdout  # said where the decision waits, not only in the escalation
    assert f"a decision on escalation #{record.data[REVIEW_ESCALATION_KEY]} (its agent exited with code 1)" in listed
    [evaluation] = evaluated(workspace, sandbox_id)
    assert evaluation["outcome"] == "require" and "agent-failed (built in)" in evaluation["rules"]
    escalation = workspace.store.get_escalation(int(record.data[REVIEW_ESCALATION_KEY]))
    assert escalation is not None and "agent-failed" in escalation.summary
    shown = loomtui(billing, "escalation", "show", str(escalation.id))
    assert "the agent did not finish (exited with code 1): its change may be unfinished" in shown.stdout, shown.stderr
    # A commit of anyone's after it (a fix beside the half-done work) is reviewed again: the failure still
    # counts (it was forgotten once the sandbox was awaiting review, and the half-done change auto-approved).
    worktree = Path(record.worktree)
    (worktree / "docs").mkdir(exist_ok=True)
    (worktree / "docs" / "typo.md").write_text("a typo fixed\n")
    git(worktree, "add", "docs/typo.md")
    git(worktree, "commit", "-qm", "one more fix")
    again = cli(billing, "sandbox", "review", sandbox_id, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "awaiting_review", again.stdout
    [_, judged] = evaluated(workspace, sandbox_id)
    assert judged["outcome"] == "require" and "agent-failed (built in)" in judged["rules"], judged


def test_a_change_with_files_loomtui_cannot_name_is_not_reviewed_and_says_which(billing: Path) -> None:
    """An agent's `x\\xff.py` (not UTF-8) or a name with a line break: the review ended on an unexpected
    UnicodeEncodeError, over and over, and the change could never be decided."""
    merge_mode(billing, "auto")
    workspace = open_workspace(billing)
    record = create_sandbox(workspace, "odd names", "command", isolate=False, command=[
        "sh", "-c", 'printf "y = 2\\n" > "$(printf "x\\377.py")"; printf "z\\n" > "$(printf "new\\nline.txt")"'])
    start(workspace, record.id)
    view = wait_until_settled(workspace, record.id)
    assert view.step == Step.FAILED_STEP and workspace.store.get_sandbox(record.id).status == "exited"
    assert f"its change has files whose names loomtui cannot read ('new\\nline.txt', 'x\\udcff.py'): rename them " \
           f"on loom/{record.id}" in view.waits_on
    assert "UnicodeEncodeError" not in view.waits_on and not workspace.store.list_escalations()


@pytest.mark.parametrize(("edit", "held"), [
    pytest.param("{replace: {path: customers/service.py, old: email.strip().lower(), new: email.strip().casefold()}}",
                 False, id="another-method"),
    pytest.param("{append: customers/service.py, content: \"\\n\\ndef greet():\\n    return 'hi'\\n\"}",
                 False, id="a-new-function-at-the-end"),
    pytest.param("{replace: {path: customers/service.py, old: 'Decimal(\"1000.00\")', new: 'Decimal(\"1500.00\")'}}",
                 True, id="lines-outside-every-function"),
])
def test_a_change_beside_what_another_holds_in_the_same_file_is_not_held_by_it(billing: Path, edit: str,
                                                                                 held: bool) -> None:
    """A change to one method was `held-by-another` (high risk, a lead's approval) over another sandbox's
    claim on a different method of the same file: every changed file counted whole. A file counts whole
    only where its change is outside every function and class (imports, constants), or no region."""
    from loomtui.governance.coordinator import governed_coordinator

    workspace = open_workspace(billing)
    governed_coordinator(workspace).claim("holder", "customers/service.py::CustomerService.get")
    sandbox_id = run_agent(workspace, f"- {edit}\n- {{commit: edit}}\n", "edit beside a held method")
    [evaluation] = evaluated(workspace, sandbox_id)
    assert ("held-by-another (built in)" in evaluation["rules"]) is held, evaluation
    # The commit hook judges as the review does: a function added at the end was the module's change, so its
    # commit was refused over the claim on `get`, and the claim of the change held the whole file.
    refused = [e for e in workspace.audit.entries() if e.action == "hook.commit_refused" and e.subject == sandbox_id]
    assert bool(refused) is held, refused
    if not held:
        taken = {region for claim in workspace.store.live_claims(sandbox_id) for region in claim.region_ids}
        assert "customers/service.py" not in taken, taken
    else:  # the holder's method is held as part of the file: said so, not as if this change had edited it
        [escalation] = [e for e in workspace.store.list_escalations() if e.sandbox_id == sandbox_id]
        why = " ".join(str(r.get("why")) for r in escalation.data["rules"])
        assert "customers/service.py::CustomerService.get (sandbox holder, claim #1, in customers/service.py, whose " \
               "own lines (imports, constants, module code) this change touches, so all of it counts)" in why, why


def test_a_held_file_its_change_could_not_parse_within_its_budget_counts_whole(
        billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Big files sorting first spent the parse budget a change's files share: the held file's change was one
    unparsed whole-file region, a parse of it alone found only a function body changed, and the change to the
    held method was not held-by-another (it merged)."""
    from loomtui.coordination import signatures
    from loomtui.governance.coordinator import governed_coordinator
    from loomtui.governance.review import review_sandbox

    monkeypatch.setattr(signatures, "LIBCST_NODES_PER_CHANGE", 1200)  # both sides of the file alone fit, not after the table
    workspace, record = _idle_sandbox(billing)
    governed_coordinator(workspace).claim("holder", "customers/service.py::CustomerService.get")
    worktree = Path(record.worktree)
    (worktree / "aaa_table.py").write_text("T = [" + ",".join(["0"] * 500) + "]\n")
    service = worktree / "customers" / "service.py"
    service.write_text(service.read_text().replace("return self._customers.get(customer_id)",
                                                   "return self._customers.get(customer_id.strip())"))
    git(worktree, "add", "-A")
    git(worktree, "commit", "-qn", "-m", "tables, and a held method")  # past its hook, as an agent can
    _agent_left(workspace, record, git(worktree, "rev-parse", "HEAD").strip())
    outcome = review_sandbox(workspace, record.id)
    assert "held-by-another (built in)" in outcome.evaluation.rule_names(), outcome.evaluation.rule_names()


def test_a_change_to_what_another_sandbox_holds_is_never_approved_by_the_policy_alone(billing: Path) -> None:
    """The pre-commit hook refused the agent's commit of a held file, loomtui saved its work at the end all the
    same, and the review (which read no claims) auto-approved it under `merge: auto`: it merged over the claim."""
    from loomtui.governance.coordinator import governed_coordinator

    merge_mode(billing, "auto")
    workspace = open_workspace(billing)
    held = governed_coordinator(workspace).claim("holder", "notifications/templates/refund_issued.txt").claim
    main_before = git(billing, "rev-parse", "main")
    # No editor hooks, no commit of its own (as Codex after its refused commit, exit 0): saved at its end.
    sandbox_id = run_agent(workspace, TYPO_FIX.splitlines()[0] + "\n", "fix a typo in a held template")
    record = workspace.store.get_sandbox(sandbox_id)
    assert record is not None and record.status == "awaiting_review"
    assert git(billing, "rev-parse", "main") == main_before  # not merged
    [evaluation] = evaluated(workspace, sandbox_id)
    assert evaluation["outcome"] == "require" and "held-by-another (built in)" in evaluation["rules"]
    escalation = workspace.store.get_escalation(int(record.data[REVIEW_ESCALATION_KEY]))
    assert escalation is not None and f"sandbox holder, claim #{held.id}" in loomtui(
        billing, "escalation", "show", str(escalation.id)).stdout
    assert escalation.risk == "high"  # first in a lead's queue, whatever the policy's rules said


def test_a_refused_commit_that_merged_all_the_same_is_not_counted_as_a_conflict_prevented(billing: Path) -> None:
    """The pre-commit hook refused the agent's commit of a held file; loomtui saved the work at its end and a
    lead approved its `held-by-another` review: it merged over the claim, yet `report` and the checklist
    still said "1 prevented before they landed"."""
    from loomtui.governance.coordinator import governed_coordinator
    from loomtui.observability.checklist import checklist
    from loomtui.observability.metrics import compute_metrics

    workspace = open_workspace(billing)
    since = time.time() - 60
    governed_coordinator(workspace).claim("holder", "notifications/templates/refund_issued.txt")
    sandbox_id = run_agent(workspace, TYPO_FIX, "fix a typo in a held template")
    assert [e.subject for e in workspace.audit.entries() if e.action == "hook.commit_refused"] == [sandbox_id]
    before = compute_metrics(workspace, since).conflicts
    assert (before.commits_refused, before.prevented, before.merged_over_claims) == (1, 1, 0)  # not landed yet
    record = workspace.store.get_sandbox(sandbox_id)
    escalation = str(record.data[REVIEW_ESCALATION_KEY])
    assert cli(billing, "escalation", "approve", escalation, user="lead@example.com").returncode == 0
    merged = cli(billing, "sandbox", "merge", sandbox_id)
    assert merged.returncode == 0, merged.stderr
    after = compute_metrics(workspace, since).conflicts
    assert (after.commits_refused, after.prevented, after.merged_over_claims) == (0, 0, 1)
    coordination = checklist(workspace).items[8]
    assert "agent commit refused" not in " ".join(coordination.evidence), coordination.evidence


def test_a_stopped_agents_change_is_never_approved_by_the_policy_alone(billing: Path) -> None:
    """Stopped halfway (`sandbox stop`, `s` in the app), its change is as unfinished as a crashed one's:
    under `merge: auto` it was approved and merged."""
    from loomtui.execution.agent_control import stop
    from tests.conftest import wait_until

    merge_mode(billing, "auto")
    workspace = open_workspace(billing)
    main_before = git(billing, "rev-parse", "main")
    script = billing.parent / "slow-typo.yaml"
    script.write_text(TYPO_FIX + "- {after: 60, log: still going}\n")
    record = create_sandbox(workspace, "fix a typo, then more", "script", script=script)
    start(workspace, record.id)
    edited = Path(workspace.store.get_sandbox(record.id).worktree) / "notifications/templates/refund_issued.txt"
    wait_until(lambda: "receive" in edited.read_text(), timeout=30)
    stop(workspace, record.id, grace=2)
    wait_until_settled(workspace, record.id, timeout=120)
    assert workspace.store.get_sandbox(record.id).status == "awaiting_review"
    assert git(billing, "rev-parse", "main") == main_before  # not merged
    [evaluation] = evaluated(workspace, record.id)
    assert evaluation["outcome"] == "require" and "agent-failed (built in)" in evaluation["rules"]
    escalation = workspace.store.get_escalation(int(workspace.store.get_sandbox(record.id).data[REVIEW_ESCALATION_KEY]))
    assert escalation is not None and "agent-failed" in escalation.summary
    assert "did not finish (stopped by " in json.dumps(escalation.data)  # who stopped it, for whoever decides


def test_a_failed_agent_is_noted_where_the_policy_already_asks_a_person() -> None:
    from loomtui.governance.policy import Evaluation, with_failed_agent

    asked = Evaluation("post-gate", "require", "high", (), ())
    noted = with_failed_agent(asked, "killed by SIGKILL")
    assert (noted.outcome, noted.requirements) == ("require", ())  # no second approval to collect
    assert noted.notes == ("the agent did not finish (killed by SIGKILL): its change may be unfinished",)


async def test_a_payments_change_waits_for_two_reviewers_then_merges(billing: Path) -> None:
    from loomtui.tui.app import LoomApp
    from loomtui.tui.screens.dashboard import SandboxTable
    from tests.test_tui import wait_for

    workspace = open_workspace(billing)
    sandbox_id = run_agent(workspace, REFUNDS_EDIT, "document refunds")
    record = workspace.store.get_sandbox(sandbox_id)
    assert record.status == "awaiting_review" and next_step(workspace, sandbox_id) == Step.WAIT_DECISION
    assert [e["outcome"] for e in evaluated(workspace, sandbox_id)] == ["require"]
    escalation = str(record.data[REVIEW_ESCALATION_KEY])
    app = LoomApp(workspace)
    async with app.run_test(size=(160, 45)) as pilot:  # `m` says why at once: no y/n only to be refused
        table = app.screen.query_one("#sandboxes", SandboxTable)
        await wait_for(pilot, lambda: "waits for a decision" in str(table.cell(sandbox_id, "next")))
        screen = app.screen
        await pilot.press("m")
        await pilot.pause()
        assert app.screen is screen
        assert any(f"is not approved yet: it waits for a decision on escalation #{escalation}" in str(n.message)
                   for n in app._notifications)
    refused = cli(billing, "sandbox", "merge", sandbox_id)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "not approved" in refused.stderr and f"escalation #{escalation}" in refused.stderr
    first = cli(billing, "escalation", "approve", escalation, user="alice@example.com")
    assert first.returncode == 0, first.stderr
    assert workspace.store.get_sandbox(sandbox_id).status == "awaiting_review"  # one of two
    second = cli(billing, "escalation", "approve", escalation, user="bob@example.com")
    assert second.returncode == 0, second.stderr
    # The decision moves the sandbox on at once: approved, then (merge: manual) waiting for a person.
    assert "decision followed: now approved" in second.stdout
    assert "  next: " in second.stdout and f"loomtui sandbox merge {sandbox_id}" in second.stdout  # what to run
    assert workspace.store.get_sandbox(sandbox_id).status == "approved"
    assert next_step(workspace, sandbox_id) == Step.WAIT_MERGE
    merged = cli(billing, "sandbox", "merge", sandbox_id)
    assert merged.returncode == 0, merged.stderr
    message = git(billing, "log", "-1", "--format=%B", "main")
    assert f"Loom-Escalation: #{escalation}" in message
    assert "Loom-Approved-by: alice@example.com, bob@example.com" in message


def test_new_commits_after_review_supersede_the_escalation(billing: Path) -> None:
    workspace = open_workspace(billing)
    sandbox_id = run_agent(workspace, REFUNDS_EDIT, "document refunds")
    first = int(workspace.store.get_sandbox(sandbox_id).data[REVIEW_ESCALATION_KEY])
    worktree = Path(workspace.store.get_sandbox(sandbox_id).worktree)
    (worktree / "payments/refunds.py").write_text((worktree / "payments/refunds.py").read_text() + "# more\n")
    git(worktree, "commit", "-qam", "one more change")
    stale = cli(billing, "escalation", "approve", str(first), user="alice@example.com")
    assert stale.returncode == 1 and "must be reviewed again" in stale.stderr
    second = json.loads(cli(billing, "sandbox", "review", sandbox_id, "--json").stdout)
    assert second["escalation"] != first and second["status"] == "awaiting_review"
    assert second["commit"] == git(worktree, "rev-parse", "HEAD")
    assert workspace.store.get_escalation(first).status == "superseded"
    assert workspace.store.get_sandbox(sandbox_id).data[REVIEW_ESCALATION_KEY] == second["escalation"]


def test_reviewing_a_running_or_unknown_sandbox_is_one_clear_error(billing: Path) -> None:
    done = loomtui(billing, "sandbox", "review", "nope00")
    assert done.returncode != 0 and "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_reviewing_an_agent_that_made_no_change_is_refused_and_opens_nothing(billing: Path) -> None:
    """It opened an escalation for an empty diff, and the approved change then could never merge."""
    workspace = open_workspace(billing)
    sandbox_id = run_agent(workspace, "- {log: nothing to do}\n", "look around")
    assert workspace.store.get_sandbox(sandbox_id).status == "exited"
    done = run_cli(billing, "sandbox", "review", sandbox_id)
    assert done.returncode == 1 and "ended without a change" in done.stderr and done.stdout == ""
    assert workspace.store.list_escalations() == [] and workspace.store.get_sandbox(sandbox_id).status == "exited"


async def test_the_supervisor_reviews_with_no_app_open_and_m_in_the_app_merges_through_the_workflow(
        billing: Path) -> None:
    from loomtui.tui.app import LoomApp
    from loomtui.tui.screens.dashboard import SandboxTable
    from loomtui.tui.screens.sandbox_forms import ConfirmScreen
    from tests.test_tui import wait_for

    workspace = open_workspace(billing)
    claim = "notifications/templates/refund_issued.txt"
    sandbox_id = run_agent(workspace, TYPO_FIX, "fix a typo", claims=(claim,))
    # No app was open: the agent's supervisor reviewed the change when it ended.
    assert workspace.store.get_sandbox(sandbox_id).status == "approved"
    assert next_step(workspace, sandbox_id) == Step.WAIT_MERGE
    assert workspace.store.live_claims(sandbox_id)  # held until the change merges
    app = LoomApp(workspace)
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.screen.query_one("#sandboxes", SandboxTable)
        await wait_for(pilot, lambda: table.row_count == 1 and
                       str(table.cell(sandbox_id, "status")) == "approved" and
                       "waits for a person" in str(table.cell(sandbox_id, "next")), timeout=60)
        await pilot.press("m")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert f"(loom/{sandbox_id}) into main?" in app.screen.question  # it said "into its target"
        await pilot.press("y")
        await wait_for(pilot, lambda: workspace.store.get_sandbox(sandbox_id).status == "merged", timeout=30)
    assert f"Loom-Sandbox: {sandbox_id}" in git(billing, "log", "-1", "--format=%B", "main")
    # Through the workflow (a person's merge request), and the claims went back with the merge.
    assert [e.actor for e in workspace.audit.entries()
            if e.action == "sandbox.merge_requested" and e.subject == sandbox_id] == [workspace.actor]
    assert workspace.store.live_claims(sandbox_id) == []


LEDGER_EDIT = """\
- {append: payments/ledger.py, content: "\\n# the ledger is append-only\\n"}
- {commit: "Document the ledger"}
"""


def test_a_claim_stage_requirement_holds_at_review_for_an_agent_that_wrote_without_asking(billing: Path) -> None:
    """`ledger-claims` (a lead must agree before the ledger is touched) is a claim-stage rule. An agent
    that never claimed and never asked (any permission mode) still meets it before anything merges."""
    workspace = open_workspace(billing)
    sandbox_id = run_agent(workspace, LEDGER_EDIT, "document the ledger")
    record = workspace.store.get_sandbox(sandbox_id)
    assert record.status == "awaiting_review"
    assert [e["outcome"] for e in evaluated(workspace, sandbox_id)] == ["require"]
    escalation = workspace.store.get_escalation(int(record.data[REVIEW_ESCALATION_KEY]))
    assert escalation is not None
    rules = [rule["name"] for rule in escalation.data["rules"]]
    assert "payments-high-risk" in rules and "ledger-claims (claim stage, not granted before)" in rules
    for reviewer in ("alice@example.com", "bob@example.com"):
        assert cli(billing, "escalation", "approve", str(escalation.id), user=reviewer).returncode == 0
    assert workspace.store.get_sandbox(sandbox_id).status == "awaiting_review"
    assert next_step(workspace, sandbox_id) == Step.WAIT_DECISION
    refused = cli(billing, "sandbox", "merge", sandbox_id)
    assert refused.returncode == 1, "two payments reviewers are not the lead the claim-stage rule asks for"
    assert cli(billing, "escalation", "approve", str(escalation.id), user="lead@example.com").returncode == 0
    assert workspace.store.get_sandbox(sandbox_id).status == "approved"
    merged = cli(billing, "sandbox", "merge", sandbox_id)
    assert merged.returncode == 0, merged.stderr


def test_a_start_approval_written_into_the_store_alone_starts_nothing(billing: Path) -> None:
    """A pre-start escalation set to approved by hand (`update escalations set status='approved'`) started
    the agent, and `audit verify` saw nothing wrong: the log holds no decision, so nothing starts."""
    workspace = open_workspace(billing)
    script = billing.parent / "ledger.yaml"
    script.write_text(LEDGER_EDIT)
    record = create_sandbox(workspace, "document the ledger", "script", script=script,
                            claims=["payments/ledger.py"])
    prestart = int(workspace.store.get_sandbox(record.id).data["awaiting_escalation"])
    workspace.store.update_escalation(prestart, status="approved")
    with pytest.raises(LoomError, match=f"escalation #{prestart} reads approved in the store, but the audit log "
                                        "holds no decision"):
        start(workspace, record.id)
    assert workspace.store.get_sandbox(record.id).status == "planned"


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
    wait_until_settled(workspace, record.id, timeout=120)
    reviewed = workspace.store.get_sandbox(record.id)
    assert reviewed.status == "awaiting_review"
    escalation = workspace.store.get_escalation(int(reviewed.data[REVIEW_ESCALATION_KEY]))
    assert escalation is not None and escalation.id != prestart.id and escalation.kind == "post-gate"
    assert [rule["name"] for rule in escalation.data["rules"]] == ["payments-high-risk"]
    assert workspace.store.live_claims(record.id)  # held while the change waits for people
    for reviewer in ("alice@example.com", "bob@example.com"):
        assert cli(billing, "escalation", "approve", str(escalation.id), user=reviewer).returncode == 0
    assert workspace.store.get_sandbox(record.id).status == "approved"  # no lead asked a second time
    merged = cli(billing, "sandbox", "merge", record.id)
    assert merged.returncode == 0, merged.stderr
    assert workspace.store.live_claims(record.id) == []  # released with the merge


def _idle_sandbox(billing: Path) -> tuple[Workspace, SandboxRecord]:
    """A sandbox made (its worktree and branch) and not started, where the policy merges what it approves."""
    merge_mode(billing, "auto")
    workspace = open_workspace(billing)
    script = billing.parent / "idle.yaml"
    script.write_text("- {log: idle}\n")
    return workspace, create_sandbox(workspace, "clarify the runbook", "script", script=script)


def _approved_docs_change(billing: Path) -> tuple[Workspace, SandboxRecord]:
    """A sandbox whose agent added a docs line and ended, reviewed and approved, waiting for a person to merge."""
    from loomtui.governance.review import review_sandbox

    workspace, record = _idle_sandbox(billing)
    worktree = Path(record.worktree)
    (worktree / "docs" / "runbook.md").write_text((worktree / "docs" / "runbook.md").read_text() + "\nmore\n")
    git(worktree, "commit", "-qam", "docs")
    merge_mode(billing, "manual")
    _agent_left(workspace, record, git(worktree, "rev-parse", "HEAD").strip())
    assert review_sandbox(workspace, record.id).evaluation.outcome == "auto_approve"
    return workspace, record


def _agent_left(workspace: Workspace, record: SandboxRecord, tip: str) -> None:
    """Its branch at `tip`, as an agent (which can write any commit) left it, and its agent ended."""
    from loomtui.execution.lifecycle import EXITED, PLANNED, RUNNING, transition

    git(Path(record.worktree), "update-ref", f"refs/heads/{record.branch}", tip)
    for status in (RUNNING, EXITED):
        transition(workspace, record.id, status, allowed_from=frozenset({PLANNED, RUNNING}))


def test_a_forged_merge_of_the_targets_tip_is_judged_by_what_the_merge_brings_in(billing: Path) -> None:
    """An agent's tip a merge commit of its base and main's tip, with its base's tree and one docs line: judged
    from its base, it was "docs only", auto-approved and merged, and main lost the fix that had landed since."""
    from loomtui.governance.review import review_sandbox

    workspace, record = _idle_sandbox(billing)
    base = record.base_sha
    ledger = billing / "payments" / "ledger.py"
    ledger.write_text(ledger.read_text() + "\nSECURITY_FIX = True\n")  # the lead's fix lands on main meanwhile
    git(billing, "commit", "-qam", "Security fix in the ledger")
    fix = git(billing, "rev-parse", "main").strip()
    worktree = Path(record.worktree)
    (worktree / "docs" / "runbook.md").write_text((worktree / "docs" / "runbook.md").read_text() + "\nClearer.\n")
    git(worktree, "add", "docs/runbook.md")
    tree = git(worktree, "write-tree").strip()
    forged = git(worktree, "commit-tree", tree, "-p", base, "-p", fix, "-m", "docs: clarify the runbook").strip()
    _agent_left(workspace, record, forged)
    judged = review_sandbox(workspace, record.id)
    assert judged.evaluation.outcome != "auto_approve" and judged.escalation is not None, judged.line()
    assert "payments/ledger.py" in judged.escalation.data["facts"]["paths"]  # the fix it would take out
    assert workspace.store.get_sandbox(record.id).status != "merged"
    assert "SECURITY_FIX" in git(billing, "show", "main:payments/ledger.py")


def test_a_gate_that_does_not_block_is_not_a_red_gate_to_the_policy(billing: Path) -> None:
    """`blocking: false` is "shown, never fails gate 1": the sample's `failing-gates` rule (`gates_failed: ["*"]`)
    blocked the change on it, in the review and in `loomtui gate`."""
    from loomtui.governance.review import review_sandbox

    config = billing / ".loom" / "loom.yaml"
    config.write_text(config.read_text().replace(
        "gates:\n", 'gates:\n  - name: lint\n    run: ["python", "-c", "import sys; sys.exit(\'Clearer\' in '
                    'open(\'docs/runbook.md\').read())"]\n    blocking: false\n', 1))
    git(billing, "commit", "-qam", "A lint that only advises")
    workspace, record = _idle_sandbox(billing)
    worktree = Path(record.worktree)
    (worktree / "docs" / "runbook.md").write_text((worktree / "docs" / "runbook.md").read_text() + "\nClearer.\n")
    git(worktree, "commit", "-qam", "docs: clarify the runbook")
    _agent_left(workspace, record, git(worktree, "rev-parse", "HEAD").strip())
    judged = review_sandbox(workspace, record.id)
    assert {g.gate: g.status for g in judged.gates}["lint"] == "failed"
    assert "failing-gates" not in judged.evaluation.rule_names() and judged.evaluation.outcome != "block", \
        judged.line()
    ci = run_cli(billing, "gate", "--base", "main", "--head", record.branch, "--json")
    assert json.loads(ci.stdout)["gates"]["lint"] == "failed" and "failing-gates" not in ci.stdout, ci.stdout
    explained = json.loads(run_cli(billing, "policy", "explain", record.id, "--json").stdout)
    assert "failing-gates" not in explained["post-gate"]["rules"], explained


def _docs_edit_of_a_file_main_moves_into_payments(billing: Path) -> tuple[Workspace, SandboxRecord, str]:
    """A docs example committed on main, a sandbox's edit of it (docs only), and the branch its tip."""
    example = billing / "docs" / "examples" / "late_fee.py"
    example.parent.mkdir(parents=True, exist_ok=True)
    example.write_text("rate = 5\n")
    git(billing, "add", "-A")
    git(billing, "commit", "-qm", "A docs example")
    workspace, record = _idle_sandbox(billing)
    worktree = Path(record.worktree)
    (worktree / "docs" / "examples" / "late_fee.py").write_text("rate = 0  # waived\n")
    git(worktree, "commit", "-qam", "Tidy the docs example")
    return workspace, record, git(worktree, "rev-parse", "HEAD").strip()


def _main_moves_the_example_into_payments(billing: Path) -> None:
    git(billing, "mv", "docs/examples/late_fee.py", "payments/late_fee.py")
    git(billing, "commit", "-qm", "The late fee is payments code")


def test_a_docs_edit_of_a_file_the_target_moved_into_payments_is_judged_where_the_merge_puts_it(
        billing: Path) -> None:
    """git's merge follows renames: an edit of docs/x.py, which main had since moved to payments/x.py, was
    judged "docs only" from the branch's own diff, auto-approved and merged into payments/ (the CI gate
    passed it too)."""
    from loomtui.governance.review import review_sandbox

    workspace, record, tip = _docs_edit_of_a_file_main_moves_into_payments(billing)
    _main_moves_the_example_into_payments(billing)
    _agent_left(workspace, record, tip)
    judged = review_sandbox(workspace, record.id)
    assert judged.evaluation.outcome != "auto_approve" and judged.escalation is not None, judged.line()
    assert "payments/late_fee.py" in judged.escalation.data["facts"]["paths"]
    assert "payments-high-risk" in judged.evaluation.rule_names()
    assert git(billing, "show", "main:payments/late_fee.py") == "rate = 5"
    gated = run_cli(billing, "gate", "--base", "main", "--head", record.branch)
    assert gated.returncode != 0 and "auto-approved" not in gated.stdout, gated.stdout


def test_a_merge_onto_a_target_that_moved_what_was_approved_is_reviewed_again_first(billing: Path) -> None:
    """Approved as docs only, then main moved the file into payments/ before the merge: the merge would have
    put the edit there unjudged; it is refused and the change reviewed again, now as a payments change."""
    from loomtui.execution.lifecycle import APPROVED
    from loomtui.governance.review import review_sandbox
    from loomtui.workflow.engine import advance

    workspace, record, tip = _docs_edit_of_a_file_main_moves_into_payments(billing)
    merge_mode(billing, "manual")  # approved, then merged by a person later
    _agent_left(workspace, record, tip)
    assert review_sandbox(workspace, record.id).evaluation.outcome == "auto_approve"
    assert workspace.store.get_sandbox(record.id).status == APPROVED
    _main_moves_the_example_into_payments(billing)
    refused = run_cli(billing, "sandbox", "merge", record.id)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "would change payments/late_fee.py, which its review did not judge" in refused.stderr
    assert "; it now waits for a decision on escalation #" in refused.stderr
    assert git(billing, "show", "main:payments/late_fee.py") == "rate = 5"  # nothing merged
    moved = advance(workspace, record.id)
    escalation = workspace.store.get_escalation(workspace.store.get_sandbox(record.id).data["review_escalation"])
    assert moved.status == "awaiting_review" and escalation is not None, moved
    assert "payments/late_fee.py" in escalation.data["facts"]["paths"]
    assert "sandbox.merge_unjudged" in [e.action for e in workspace.audit.tail(50)]


def test_a_merge_its_review_again_cannot_judge_fails_as_a_step_not_a_loop_of_reviews(
        billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Should a review again not judge what the merge would change (here: it is made not to), the merge was
    refused, the change reviewed again, the merge refused again... up to the engine's step limit, gates each
    time; now the second refusal fails the merge step and says why."""
    import loomtui.governance.gitfacts as gitfacts
    from loomtui.workflow.engine import advance

    workspace, record, tip = _docs_edit_of_a_file_main_moves_into_payments(billing)
    merge_mode(billing, "auto")
    _main_moves_the_example_into_payments(billing)
    monkeypatch.setattr(gitfacts, "merged_paths", lambda *_args: [])
    _agent_left(workspace, record, tip)
    done = advance(workspace, record.id)
    assert any("its review again did not judge them" in line for line in done.done), done.done
    actions = [e.action for e in workspace.audit.tail(400)]
    assert actions.count("policy.evaluated") == 2 and actions.count("sandbox.merge_unjudged") == 2
    assert git(billing, "show", "main:payments/late_fee.py") == "rate = 5"


def test_a_merge_into_another_branch_behind_the_target_is_not_sent_back_to_review(billing: Path) -> None:
    """`sandbox merge --into release`, a branch behind main: the merge brought in main's later commits,
    which no review of the change against main judges; it was refused, reviewed again, refused again
    (40 reviews a call, the gates each time), and never merged."""
    git(billing, "branch", "release")
    (billing / "NOTES.txt").write_text("main moved on\n")
    git(billing, "add", "NOTES.txt")
    git(billing, "commit", "-qm", "notes")
    workspace, record = _approved_docs_change(billing)
    merged = run_cli(billing, "sandbox", "merge", record.id, "--into", "release")
    assert merged.returncode == 0, merged.stderr
    assert "more" in git(billing, "show", "release:docs/runbook.md")
    actions = [e.action for e in workspace.audit.tail(400)]
    assert actions.count("policy.evaluated") == 1 and "sandbox.merge_unjudged" not in actions


def test_a_lead_on_another_machine_sees_the_change_from_its_fetched_branch(billing: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A team's store: a lead's `sandbox diff` (and `d` in the app) of a change made on alice's laptop said
    "branch loom/ID no longer exists", fetched from her push or not."""
    from loomtui.execution import review

    monkeypatch.setenv("LOOMTUI_HOST", "alice-laptop")
    workspace, record = _idle_sandbox(billing)
    worktree = Path(record.worktree)
    (worktree / "docs" / "runbook.md").write_text((worktree / "docs" / "runbook.md").read_text() + "\nmore\n")
    git(worktree, "commit", "-qam", "docs")
    tip = git(worktree, "rev-parse", "HEAD")
    _agent_left(workspace, record, tip)
    monkeypatch.setenv("LOOMTUI_HOST", "bob-laptop")  # the lead's machine: the branch is alice's, fetched
    git(billing, "update-ref", f"refs/remotes/origin/{record.branch}", tip)
    git(billing, "update-ref", "-d", f"refs/heads/{record.branch}")
    shown = review.diff(workspace, record.id)
    assert [f.path for f in shown.files] == ["docs/runbook.md"] and "+more" in shown.patch
    git(billing, "update-ref", "-d", f"refs/remotes/origin/{record.branch}")  # not fetched (yet)
    missing = run_cli(billing, "sandbox", "diff", record.id)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1, missing.stderr
    assert f"is on alice-laptop: its branch {record.branch} is there, not here" in missing.stderr
    assert "no longer exists" not in missing.stderr
    merge = run_cli(billing, "sandbox", "merge", record.id)  # awaiting a decision there: where, not "not approved"
    assert merge.returncode == 1 and f"sandbox {record.id} is on alice-laptop: merge it there" in merge.stderr, merge
    # Reviewed, evaluated and explained where it is (they said "no branch tip", and `none`, as for no change).
    for command, doing in ((("sandbox", "review"), "review"), (("eval",), "evaluate")):
        said = run_cli(billing, *command, record.id)
        assert said.returncode == 1 and said.stderr.count("\n") == 1, said.stderr
        assert f"its branch {record.branch} is there, not here, so {doing} it there" in said.stderr
    explained = run_cli(billing, "policy", "explain", record.id).stdout
    assert f"branch {record.branch} is on alice-laptop, not here" in explained, explained


def test_a_merge_into_a_running_agent_s_branch_is_refused_until_it_has_ended(billing: Path) -> None:
    """`sandbox merge B --into loom/A` while A's agent ran said "merged" and exited 0; A's next commit (or,
    isolated, its branch synced from its own copy a second later) put the branch back: B marked merged, its
    claims let go, the audit naming a merge commit no branch held."""
    from loomtui.execution.agent_control import stop
    from tests.conftest import wait_until

    workspace, record = _approved_docs_change(billing)
    busy = create_sandbox(workspace, "wait a while", "command", command=["sleep", "30"])
    start(workspace, busy.id)
    wait_until(lambda: workspace.store.get_sandbox(busy.id).status == "running", what="its agent running")
    before = git(billing, "rev-parse", busy.branch)
    refused = run_cli(billing, "sandbox", "merge", record.id, "--into", busy.branch)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused
    assert f"{busy.branch} is sandbox {busy.id}'s branch, and its agent is running" in refused.stderr, refused.stderr
    assert git(billing, "rev-parse", busy.branch) == before
    assert workspace.store.get_sandbox(record.id).status == "approved"
    stop(workspace, busy.id)
    wait_until(lambda: workspace.store.get_sandbox(busy.id).status not in ("running", "paused"), what="its end")
    merged = run_cli(billing, "sandbox", "merge", record.id, "--into", busy.branch)
    assert merged.returncode == 0, merged.stderr
    assert "more" in git(billing, "show", f"{busy.branch}:docs/runbook.md")


def test_committed_gitattributes_neither_hide_a_patch_nor_force_a_conflicting_merge(billing: Path) -> None:
    """An approved `.gitattributes` (`-diff merge=union`) showed later changes' reviewers "Binary files differ"
    for a payments edit, and let a merge that conflicts through, both sides' lines kept."""
    from loomtui.execution import review
    from loomtui.execution.lifecycle import APPROVED
    from loomtui.governance.review import review_sandbox
    from loomtui.workflow.engine import advance

    (billing / ".gitattributes").write_text("payments/*.py -diff merge=union\ndocs/*.md -diff merge=union\n")
    git(billing, "add", ".gitattributes")
    git(billing, "commit", "-qm", "Mark generated files")
    workspace, record = _idle_sandbox(billing)
    worktree = Path(record.worktree)
    runbook = worktree / "docs" / "runbook.md"
    lines = runbook.read_text().splitlines(keepends=True)
    runbook.write_text("".join(["The agent's first line\n", *lines[1:]]))
    ledger = worktree / "payments" / "ledger.py"
    ledger.write_text(ledger.read_text() + "\nWAIVED = True\n")
    shown = review.diff(workspace, record.id)
    assert "+WAIVED = True" in shown.patch and "Binary files" not in shown.patch, shown.patch[-300:]
    assert {f.path: f.added for f in shown.files}["payments/ledger.py"] == 2  # counted as text, not binary
    ledger.write_text(ledger.read_text().replace("\nWAIVED = True\n", ""))
    git(worktree, "commit", "-qam", "Clearer first line")
    _agent_left(workspace, record, git(worktree, "rev-parse", "HEAD").strip())
    merge_mode(billing, "manual")
    assert review_sandbox(workspace, record.id).evaluation.outcome == "auto_approve"
    (billing / "docs" / "runbook.md").write_text("".join(["The person's first line\n", *lines[1:]]))
    git(billing, "commit", "-qam", "The runbook's first line")  # the same line, otherwise: a conflict
    refused = run_cli(billing, "sandbox", "merge", record.id)
    assert refused.returncode == 1 and "conflict" in refused.stderr, refused.stderr
    assert "The agent's first line" not in git(billing, "show", "main:docs/runbook.md")
    assert workspace.store.get_sandbox(record.id).status == APPROVED and advance(workspace, record.id).status == APPROVED


def test_a_tip_that_meets_the_target_at_two_commits_is_not_judged(billing: Path) -> None:
    """Two parents on main unrelated to each other: git's one merge base was the agent's pick, the change
    measured from it read "docs only" and merged, and the merge (from both) reverted a payments change."""
    from loomtui.execution.lifecycle import EXITED
    from loomtui.governance.review import review_sandbox

    workspace, record = _idle_sandbox(billing)
    base = record.base_sha
    for name in ("left", "right"):  # two changes that landed apart (two sandboxes' merges, say)
        git(billing, "checkout", "-q", "-b", name, base)
        (billing / f"{name}.txt").write_text(name)
        git(billing, "add", "-A")
        git(billing, "commit", "-qm", name)
    git(billing, "checkout", "-q", "main")
    git(billing, "merge", "-q", "--no-edit", "left", "right")
    worktree = Path(record.worktree)
    left = git(billing, "rev-parse", "left").strip()
    git(worktree, "read-tree", left)
    tree = git(worktree, "write-tree").strip()
    forged = git(worktree, "commit-tree", tree, "-p", left, "-p", git(billing, "rev-parse", "right").strip(),
                 "-m", "docs").strip()
    _agent_left(workspace, record, forged)
    with pytest.raises(LoomError, match=r"meet at 2 commits .* so what its merge brings in cannot be measured"):
        review_sandbox(workspace, record.id)
    assert workspace.store.get_sandbox(record.id).status == EXITED  # nothing ran, nothing approved
    gated = run_cli(billing, "gate", "--base", "main", "--head", record.branch)
    assert gated.returncode == 2 and "meet at 2 commits" in gated.stderr  # CI fails closed alike


def test_an_approval_written_into_the_store_alone_merges_nothing(billing: Path) -> None:
    """A change awaiting two payments reviewers, set approved by hand in the store (its escalation unlinked, or
    another sandbox's approved escalation named on it), merged with `Loom-Policy: auto_approve` or that other
    sandbox's approvers in its trailers, and `audit verify` read OK: the log holds no approval of this commit."""
    workspace = open_workspace(billing)
    approved = run_agent(workspace, REFUNDS_EDIT, "document refunds")
    decided = int(workspace.store.get_sandbox(approved).data[REVIEW_ESCALATION_KEY])
    for reviewer in ("alice@example.com", "bob@example.com"):
        assert cli(billing, "escalation", "approve", str(decided), user=reviewer).returncode == 0
    waiting = run_agent(workspace, REFUNDS_EDIT.replace("refunds.py", "currency.py"), "note currency")
    assert workspace.store.get_sandbox(waiting).status == "awaiting_review"
    tip = git(billing, "rev-parse", f"loom/{waiting}")
    main = git(billing, "rev-parse", "main")
    for linked, said in ((None, "asked people and it names no escalation they decided"),
                         (decided, f"names escalation #{decided} as its approval, but that was about sandbox "
                                   f"{approved}")):
        workspace.store.update_sandbox(waiting, status="approved",
                                       data={REVIEW_ESCALATION_KEY: linked, "approved_commit": tip})
        refused = cli(billing, "sandbox", "merge", waiting)
        assert refused.returncode == 1 and said in refused.stderr, refused.stderr
        assert git(billing, "rev-parse", "main") == main
    assert cli(billing, "sandbox", "merge", approved).returncode == 0  # the sandbox it was for merges


def test_a_decision_not_followed_for_an_audit_file_cut_short_says_so(billing: Path) -> None:
    """The log's file cut in half: an approval was recorded and its sandbox not moved on, saying "was the store
    changed by hand?", a tamper alarm for a file to restore."""
    workspace = open_workspace(billing)
    waiting = run_agent(workspace, REFUNDS_EDIT, "document refunds")
    decided = int(workspace.store.get_sandbox(waiting).data[REVIEW_ESCALATION_KEY])
    log = billing / ".git" / "loom" / "audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:len(lines) // 2]))
    assert cli(billing, "escalation", "approve", str(decided), user="alice@example.com").returncode == 0
    second = cli(billing, "escalation", "approve", str(decided), user="bob@example.com")
    assert "the audit log's file ends at entry " in second.stdout and "`loomtui audit restore` puts it back" \
        in second.stdout and "changed by hand" not in second.stdout, second.stdout
    assert workspace.store.get_sandbox(waiting).status == "awaiting_review"
    assert cli(billing, "audit", "restore").returncode == 0
    assert cli(billing, "sandbox", "advance", waiting).returncode == 0
    assert workspace.store.get_sandbox(waiting).status == "approved"


def test_a_decision_asked_again_after_its_command_was_cut_short_moves_the_sandbox_on(billing: Path) -> None:
    """`escalation approve` killed after the decision was recorded, before its sandbox moved on: asked again it
    said "already approved", exit 1, and nothing moved the task unless the app was open."""
    from loomtui.governance.escalations import decide
    from loomtui.governance.policy import configured_policy

    workspace = open_workspace(billing)
    waiting = run_agent(workspace, REFUNDS_EDIT, "document refunds")
    decided = int(workspace.store.get_sandbox(waiting).data[REVIEW_ESCALATION_KEY])
    policy = configured_policy(billing, workspace.load_config())
    for reviewer in ("alice@example.com", "bob@example.com"):  # recorded, and cut short there
        workspace.actor = reviewer
        decide(workspace, policy, decided, "approve")
    assert workspace.store.get_sandbox(waiting).status == "awaiting_review"
    again = cli(billing, "escalation", "approve", str(decided), user="bob@example.com")
    assert again.returncode == 0 and again.stdout.startswith(
        f"#{decided}: escalation #{decided} is already approved; its sandbox had not moved on since: now it has"), \
        again.stdout + again.stderr
    assert workspace.store.get_sandbox(waiting).status == "approved"
    workspace.store.update_sandbox(waiting, status="awaiting_review")  # not followed again, as if cut short
    stranger = cli(billing, "escalation", "approve", str(decided), user="mallory@example.com")
    assert stranger.returncode == 1 and "is already approved" in stranger.stderr  # only one who took it
    assert workspace.store.get_sandbox(waiting).status == "awaiting_review"
    workspace.store.update_sandbox(waiting, status="approved")
    twice = cli(billing, "escalation", "approve", str(decided), user="bob@example.com")  # nothing left to follow
    assert twice.returncode == 1 and "is already approved" in twice.stderr
    other = cli(billing, "escalation", "reject", str(decided), "--reason", "no", user="bob@example.com")  # refused
    assert other.returncode == 1 and "is already approved" in other.stderr


def test_a_change_reviewed_again_and_auto_approved_merges(billing: Path) -> None:
    """Asked of people, then changed to what the policy approves by itself: its record still named the first
    review's escalation, and the merge was refused as if the store had been changed by hand."""
    workspace = open_workspace(billing)
    sandbox_id = run_agent(workspace, REFUNDS_EDIT, "document refunds")
    assert workspace.store.get_sandbox(sandbox_id).status == "awaiting_review"
    worktree = Path(workspace.store.get_sandbox(sandbox_id).worktree)
    (worktree / "payments/refunds.py").write_text((billing / "payments/refunds.py").read_text())
    template = worktree / "notifications/templates/refund_issued.txt"
    template.write_text(template.read_text().replace("recieve", "receive"))
    git(worktree, "commit", "-qam", "only the typo after all")
    again = json.loads(cli(billing, "sandbox", "review", sandbox_id, "--json").stdout)
    assert again["status"] == "approved", again
    assert not workspace.store.get_sandbox(sandbox_id).data.get(REVIEW_ESCALATION_KEY)
    merged = cli(billing, "sandbox", "merge", sandbox_id)
    assert merged.returncode == 0, merged.stderr
    assert "Loom-Policy: auto_approve" in git(billing, "log", "-1", "--format=%B", "main")


def test_work_saved_at_the_agents_end_holds_the_code_it_changed(billing: Path) -> None:
    """An agent that never commits (Codex, often): its work, saved by loomtui at its end, claimed nothing, so
    another agent's edit of the same function was allowed and the two met at the merge as a conflict."""
    from loomtui.coordination.claims import ClaimRefused
    from loomtui.governance.coordinator import governed_coordinator

    workspace = open_workspace(billing)
    line = "    unused_days = max(days_total - days_used, 0)\n"
    assert line in (billing / "payments/refunds.py").read_text()
    left = f"- {{replace: {{path: payments/refunds.py, old: {json.dumps(line)}, new: {json.dumps(line + '    # x' + chr(10))}}}}}\n"
    sandbox_id = run_agent(workspace, left, "note the unused days")
    assert workspace.store.get_sandbox(sandbox_id).data.get("saved_commit")
    held = workspace.store.live_claims(sandbox_id)
    assert [(c.target, c.reason) for c in held] == [
        ("payments/refunds.py::prorated_refund", "claimed by commit of payments/refunds.py")]
    with pytest.raises(ClaimRefused, match=f"held by sandbox {sandbox_id}"):
        governed_coordinator(workspace).claim("other", "payments/refunds.py::prorated_refund")


EDIT_GET_LAST = """\
- {replace: {path: customers/service.py, old: "        return self._customers.get(customer_id)\\n", new: "        return self._customers.get(customer_id.strip())\\n"}}
- {commit: edit get}
"""
MOVE_HELD_METHOD = """\
- {replace: {path: customers/service.py, old: "    def get(self, customer_id: str) -> Customer:\\n        \\"\\"\\"Return a customer by id, raising ``NotFoundError`` if unknown.\\"\\"\\"\\n        return self._customers.get(customer_id)\\n\\n", new: ""}}
- {append: customers/service.py, content: "\\n    def get(self, customer_id: str) -> Customer:\\n        \\"\\"\\"Return a customer by id, raising ``NotFoundError`` if unknown.\\"\\"\\"\\n        return self._customers.get(customer_id)\\n"}
- {commit: edit}
"""


def test_a_held_method_moved_in_its_class_is_refused_by_the_hook_and_flagged_by_the_review(billing: Path) -> None:
    """Moving a method another sandbox holds changed no region's own lines: the hook let the commit pass, and the
    review then held the change for `held-by-another` (the hook and the review disagreed, no claim was taken)."""
    from loomtui.governance.coordinator import governed_coordinator

    workspace = open_workspace(billing)
    governed_coordinator(workspace).claim("holder", "customers/service.py::CustomerService.get")
    sandbox_id = run_agent(workspace, MOVE_HELD_METHOD, "move get")
    [evaluation] = evaluated(workspace, sandbox_id)
    refused = [e for e in workspace.audit.entries() if e.action == "hook.commit_refused" and e.subject == sandbox_id]
    assert refused and "held-by-another (built in)" in evaluation["rules"], (refused, evaluation["rules"])


def test_a_change_committed_as_the_agent_ends_is_held_before_its_gates_run(billing: Path) -> None:
    """Codex and Aider commit as their last act: the change was claimed only once its gates had run (minutes, with
    a real suite), another sandbox claimed its function meanwhile, and this change was flagged held-by-another."""
    from loomtui.coordination.claims import COMMIT_CLAIM_REASON

    workspace = open_workspace(billing)
    sandbox_id = run_agent(workspace, EDIT_GET_LAST, "edit get")
    held = [c for c in workspace.store.all_claims()
            if c.sandbox_id == sandbox_id and c.reason.startswith(COMMIT_CLAIM_REASON)]
    gated = [run.started for run in workspace.store.gate_runs(sandbox_id)]
    assert held and gated and max(c.created for c in held) < min(gated), (held, gated)


def test_policy_explain_judges_with_the_eval_the_review_judged_with(tmp_path: Path) -> None:
    """The review held a change for its low behaviour score (init's own `low-behaviour-score` rule); `policy explain`
    and the policy view said "default: no rule applies", judging without gate 2's score."""
    repo = tmp_path / "mine"
    (repo / "app").mkdir(parents=True)
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    (repo / "app" / "items.py").write_text("class Item:\n    def __init__(self, price):\n        self.price = price\n\n"
                                           "    def total(self, qty):\n        return self.price * qty\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    assert run_cli(repo, "init").returncode == 0
    git(repo, "add", ".loom")
    git(repo, "commit", "-qm", "adopt")
    workspace = open_workspace(repo)
    record = create_sandbox(workspace, "Make Item.total return cents", "command", isolate=False,
                            claims=("app/items.py::Item.total",),
                            command=["sed", "-i", "s/self.price = price/self.price = price; self.cents = 1/",
                                     "app/items.py"])
    start(workspace, record.id)
    wait_until_settled(workspace, record.id, timeout=120)
    [reviewed] = evaluated(workspace, record.id)
    assert "low-behaviour-score" in reviewed["rules"], reviewed
    explained = json.loads(run_cli(repo, "policy", "explain", record.id, "--json").stdout)
    assert explained["post-gate"]["rules"] == reviewed["rules"], (explained, reviewed)
    # And the CI gate: it said "default: no rule applies" of the change (PASS once approved as it was).
    gated = json.loads(run_cli(repo, "gate", "--head", f"loom/{record.id}", "--json").stdout)
    assert "low-behaviour-score" in json.dumps(gated), gated
    # A gate 1 run again after the review is the newest eval, without a score: the score is still the review's.
    assert run_cli(repo, "eval", record.id, "--gate", "1", "--force").returncode == 0
    explained = json.loads(run_cli(repo, "policy", "explain", record.id, "--json").stdout)
    assert explained["post-gate"]["rules"] == reviewed["rules"], (explained, reviewed)


def test_a_merge_follows_only_signed_approvals_where_the_policy_requires_them(billing: Path, tmp_path: Path) -> None:
    """With signed decisions required, an unsigned approval written into the store and the log by hand (chain
    intact) was refused by the gate and `audit verify`, but `sandbox merge` followed it, its commit naming the
    forged entry as its audit head. Nor is an approval row without its approver an internal error."""
    from loomtui.workflow.tamper_bench import make_key

    keys = tmp_path / "keys"
    keys.mkdir()
    people = ("alice@example.com", "bob@example.com")
    made = {who: make_key(keys, who.split("@")[0]) for who in people}
    (billing / ".loom" / "allowed_signers").write_text(
        "".join(f"{who} {Path(str(made[who]) + '.pub').read_text().strip()}\n" for who in people))
    policy = billing / ".loom" / "policy.yaml"
    policy.write_text(policy.read_text() + "decisions: {require_signature: true}\n")
    git(billing, "add", ".loom")
    git(billing, "commit", "-q", "-m", "signed decisions")
    workspace = open_workspace(billing)
    waiting = run_agent(workspace, REFUNDS_EDIT, "document refunds")
    decided = int(workspace.store.get_sandbox(waiting).data[REVIEW_ESCALATION_KEY])
    tip = git(billing, "rev-parse", f"loom/{waiting}")
    escalation = workspace.store.get_escalation(decided)
    assert escalation is not None
    # A row naming no approver, as a hand-written one might: it counts for nothing, and nothing crashes.
    workspace.store.update_escalation(decided, data={"approvals": [{"by": "alice@example.com", "commit": tip}]})
    listed = cli(billing, "escalation", "list", "--all")
    assert listed.returncode == 0, listed.stderr
    # Alice signs hers; bob's is forged, unsigned, with the chain kept.
    signed = subprocess.run([LOOMTUI, "escalation", "approve", str(decided)], cwd=billing, capture_output=True,
                            text=True, env={**os.environ, "LOOM_USER": "alice@example.com",
                                            "LOOM_SIGNING_KEY": str(made["alice@example.com"])}, timeout=120)
    assert signed.returncode == 0 and "(verified)" in signed.stdout, signed.stdout + signed.stderr
    workspace.audit.append("bob@example.com", "escalation.approve", str(decided),
                           {"by": "bob@example.com", "reason": "", "commit": tip, "status": "approved",
                            "sandbox": waiting})
    now = workspace.store.get_escalation(decided)
    assert now is not None
    workspace.store.update_escalation(decided, status="approved", data={"approvals": [
        *now.data["approvals"], {"user": "bob@example.com", "commit": tip, "at": time.time()}]})
    workspace.store.update_sandbox(waiting, status="approved", data={"approved_commit": tip})
    main = git(billing, "rev-parse", "main")
    refused = cli(billing, "sandbox", "merge", waiting)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"escalation #{decided} reads approved, but the policy requires signed decisions" in refused.stderr
    assert "not signed: bob@example.com" in refused.stderr, refused.stderr
    assert git(billing, "rev-parse", "main") == main


def test_a_signed_approval_of_a_tasks_start_lets_it_start(billing: Path, tmp_path: Path) -> None:
    """With signed decisions required, a lead's verified approval of a task's start was not counted (its entry
    names the branch's commit, the start's escalation none): the task could never start."""
    from loomtui.workflow.tamper_bench import make_key

    keys = tmp_path / "keys"
    keys.mkdir()
    key = make_key(keys, "lead")
    (billing / ".loom" / "allowed_signers").write_text(
        f"lead@example.com {Path(str(key) + '.pub').read_text().strip()}\n")
    policy = billing / ".loom" / "policy.yaml"
    policy.write_text(policy.read_text() + "decisions: {require_signature: true}\n")
    git(billing, "add", ".loom")
    git(billing, "commit", "-q", "-m", "signed decisions")
    workspace = open_workspace(billing)
    script = billing.parent / "ledger.yaml"
    script.write_text(REFUNDS_EDIT.replace("refunds.py", "ledger.py"))
    record = create_sandbox(workspace, "document the ledger", "script", script=script, claims=["payments/ledger.py"])
    prestart = int(workspace.store.get_sandbox(record.id).data["awaiting_escalation"])
    signed = subprocess.run([LOOMTUI, "escalation", "approve", str(prestart)], cwd=billing, capture_output=True,
                            text=True, env={**os.environ, "LOOM_USER": "lead@example.com",
                                            "LOOM_SIGNING_KEY": str(key)}, timeout=120)
    assert signed.returncode == 0 and "(verified)" in signed.stdout, signed.stdout + signed.stderr
    assert "reads approved, but the policy requires signed decisions" not in signed.stdout + signed.stderr
    start(workspace, record.id)  # refused, before: "its signed ones fall short (0 of 1 approval from leads)"
    wait_until_settled(workspace, record.id, timeout=120)
    assert workspace.store.get_sandbox(record.id).status in ("approved", "awaiting_review"), \
        workspace.store.get_sandbox(record.id).data


LOOSENED_POLICY = """\
- {write: .loom/policy.yaml, content: "version: 1\\nrules:\\n  - {name: fine, when: {paths: ['**']}, decision: auto_approve}\\n"}
- {append: payments/refunds.py, content: "\\nBACKDOOR = True\\n"}
- {commit: "Loosen the policy"}
"""


def test_loomtui_in_a_sandbox_s_worktree_judges_by_the_repository_s_policy_not_the_agent_s(billing: Path) -> None:
    """A person ran `loomtui sandbox review` in an agent's worktree (where a refused merge has them commit the
    work left): the policy, gates and config read were the agent's files there, and its policy of approving
    everything approved its own payments change, then merged it (and that policy) into main."""
    workspace = open_workspace(billing)
    sandbox_id = run_agent(workspace, LOOSENED_POLICY, "loosen the policy")
    record = workspace.store.get_sandbox(sandbox_id)
    assert record.status == "awaiting_review"
    worktree = Path(record.worktree)
    assert open_workspace(worktree).root == billing.resolve()  # the repository's own checkout, not the agent's
    (worktree / "payments/refunds.py").write_text((worktree / "payments/refunds.py").read_text() + "# more\n")
    git(worktree, "commit", "-qam", "finish it")
    again = loomtui(worktree, "sandbox", "review", sandbox_id, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "awaiting_review", again.stdout
    [*_, judged] = evaluated(workspace, sandbox_id)
    assert judged["outcome"] == "require" and "payments-high-risk" in judged["rules"], judged


@pytest.mark.parametrize("way", ["detach", "own-branch", "path", "squash"])
def test_a_checkout_of_an_agent_s_branch_judges_no_change_by_its_policy(billing: Path, way: str) -> None:
    """A lead tried an agent's branch in the main checkout (`git checkout --detach loom/ID`, a branch of their
    own from it, its policy file checked out or squash-merged uncommitted): meanwhile every review and decision
    read that agent's loosened policy there, and another agent's payments change was approved by it, then
    merged with no approvals."""
    workspace = open_workspace(billing)
    loosened = run_agent(workspace, LOOSENED_POLICY, "loosen the policy")
    other = run_agent(workspace, REFUNDS_EDIT.replace("refunds.py", "currency.py"), "document rounding")
    branch = workspace.store.get_sandbox(loosened).branch
    tried = {"detach": ("checkout", "-q", "--detach", branch), "own-branch": ("switch", "-q", "-c", "try", branch),
             "path": ("checkout", branch, "--", ".loom/policy.yaml"), "squash": ("merge", "-q", "--squash", branch)}
    worktree = Path(workspace.store.get_sandbox(other).worktree)
    (worktree / "payments/currency.py").write_text((worktree / "payments/currency.py").read_text() + "# more\n")
    git(worktree, "commit", "-qam", "one more change")
    git(billing, *tried[way])
    refused = cli(billing, "sandbox", "review", other)
    said = f"holds {branch}'s change to loomtui's config or policy" if way in ("detach", "own-branch") else \
        f"holds {branch}'s version of .loom/policy.yaml, uncommitted"
    assert refused.returncode == 1 and said in refused.stderr, refused.stderr
    # Nor does the hook answer another agent's edit by it (ledger-claims asks a lead first).
    from loomtui.governance.hooks.gate import HookGate

    with pytest.raises(LoomError, match="no change is judged by an agent's own policy"):
        HookGate(open_workspace(billing), other, worktree).policy()
    git(billing, "reset", "-q", "--hard")
    git(billing, "checkout", "-q", "main")
    again = cli(billing, "sandbox", "review", other, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "awaiting_review", again.stderr
    [*_, judged] = evaluated(workspace, other)
    assert judged["outcome"] == "require" and "payments-high-risk" in judged["rules"], judged


def test_loomtui_in_a_sandbox_s_worktree_of_a_clone_with_its_git_dir_apart_acts_from_the_checkout(
        tmp_path: Path) -> None:
    """`git clone --separate-git-dir`: git cannot say where the checkout is, and loomtui run in a sandbox's
    worktree read the agent's policy there."""
    from tests.conftest import one_commit_repo

    source = one_commit_repo(tmp_path / "source")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", f"--separate-git-dir={tmp_path / 'store.git'}", str(source), str(work))
    made = cli(work, "sandbox", "new", "--runtime", "command", "--no-start", "--task", "t", "--json", "--",
               "/bin/true")
    assert made.returncode == 0, made.stderr
    worktree = Path(json.loads(made.stdout)["worktree"])
    assert worktree.is_dir() and open_workspace(worktree).root == work.resolve()
