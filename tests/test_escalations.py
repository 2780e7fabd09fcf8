"""Escalations and decisions under the sample repo's real policy."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from loomtui.errors import LoomError
from loomtui.governance.escalations import (
    DecisionRefused,
    allowed_decisions,
    approvals,
    decide,
    open_escalation,
    overridable,
    queue,
    status_lines,
)
from loomtui.governance.policy import ChangeFacts, Policy, evaluate, load_policy, parse_policy
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace, open_workspace

ALICE, BOB, LEAD, CAROL = "alice@example.com", "bob@example.com", "lead@example.com", "carol@example.com"


def as_user(repo: Path, user: str) -> Workspace:
    workspace = open_workspace(repo)
    workspace.actor = user
    return workspace


def payments_change(author: str = "agent@example.com") -> ChangeFacts:
    return ChangeFacts(stage="post-gate", paths=("payments/refunds.py",),
                       regions=("payments/refunds.py::RefundService.quote",), lines_changed=12,
                       gates={"tests": "passed"}, author=author)


def escalate(repo: Path, facts: ChangeFacts, commit: str = "c1") -> tuple[Policy, int]:
    policy = load_policy(repo)
    evaluation = evaluate(policy, facts)
    record = open_escalation(as_user(repo, "agent-runner@example.com"), "post-gate", evaluation, facts,
                             sandbox_id="sb1", commit=commit)
    return policy, record.id


def test_two_payments_approvals_needed_each_counted(billing: Path) -> None:
    policy, escalation_id = escalate(billing, payments_change())
    record = decide(as_user(billing, ALICE), policy, escalation_id, "approve")
    assert record.status == "open"
    assert any("1 of 2" in line for line in status_lines(record))
    with pytest.raises(DecisionRefused, match="already approved"):
        decide(as_user(billing, ALICE), policy, escalation_id, "approve")
    record = decide(as_user(billing, BOB), policy, escalation_id, "approve")
    assert record.status == "approved"
    actions = [e.action for e in open_workspace(billing).audit.entries()]
    assert actions == ["escalation.opened", "escalation.approve", "escalation.approve"]


def test_outsider_cannot_approve_and_is_told_why(billing: Path) -> None:
    policy, escalation_id = escalate(billing, payments_change())
    with pytest.raises(DecisionRefused, match="payments-team"):
        decide(as_user(billing, CAROL), policy, escalation_id, "approve")


def test_separation_of_duties_excludes_the_author(billing: Path) -> None:
    policy, escalation_id = escalate(billing, payments_change(author=ALICE))
    assert "approve" not in allowed_decisions(policy, open_workspace(billing).store.get_escalation(escalation_id),
                                              ALICE)
    with pytest.raises(DecisionRefused, match="separation of duties"):
        decide(as_user(billing, ALICE), policy, escalation_id, "approve")


def test_a_new_commit_means_no_decision_until_it_is_reviewed(billing: Path) -> None:
    """The commit a decision binds to is looked up by the engine, never given by the caller."""
    first = subprocess.run(["git", "rev-parse", "HEAD"], cwd=billing, capture_output=True, text=True,
                           check=True).stdout.strip()
    subprocess.run(["git", "branch", "loom/sb1", first], cwd=billing, check=True)
    now = time.time()
    open_workspace(billing).store.add_sandbox(SandboxRecord(
        id="sb1", task="t", runtime="script", status="awaiting_review", created=now, updated=now,
        branch="loom/sb1"))
    policy, escalation_id = escalate(billing, payments_change(), commit=first)
    decide(as_user(billing, ALICE), policy, escalation_id, "approve")
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "more"], cwd=billing, check=True)
    second = subprocess.run(["git", "rev-parse", "HEAD"], cwd=billing, capture_output=True, text=True,
                            check=True).stdout.strip()
    subprocess.run(["git", "branch", "-f", "loom/sb1", second], cwd=billing, check=True)
    with pytest.raises(DecisionRefused, match="must be reviewed again"):
        decide(as_user(billing, BOB), policy, escalation_id, "approve")
    record = open_workspace(billing).store.get_escalation(escalation_id)
    assert record.status == "open" and [a.user for a in approvals(record, first)] == [ALICE]


def test_an_override_lasts_at_most_the_policy_s_max_hours(billing: Path) -> None:
    policy, escalation_id = escalate(billing, payments_change())
    lead = next(iter(policy.groups.get("leads", ()))) if policy.groups.get("leads") else None
    if lead is None:
        pytest.skip("the sample policy names no leads")
    with pytest.raises(DecisionRefused, match="at most 72h"):
        decide(as_user(billing, lead), policy, escalation_id, "override", reason="hotfix", expires_hours=100)
    record = decide(as_user(billing, lead), policy, escalation_id, "override", reason="hotfix")
    assert record.status == "overridden"
    assert record.data["override_expires"] <= time.time() + 72 * 3600 + 5


def test_reject_needs_a_reason(billing: Path) -> None:
    policy, escalation_id = escalate(billing, payments_change())
    with pytest.raises(LoomError, match="^a reject needs a reason$"):
        decide(as_user(billing, ALICE), policy, escalation_id, "reject")
    with pytest.raises(LoomError, match="^an override needs a reason$"):  # it said "a override"
        decide(as_user(billing, ALICE), policy, escalation_id, "override")
    with pytest.raises(LoomError, match="^a reject needs a reason$"):  # zero-width characters: it says nothing
        decide(as_user(billing, ALICE), policy, escalation_id, "reject", reason="\u200b\u200d \t")
    record = decide(as_user(billing, ALICE), policy, escalation_id, "reject", reason="rounds twice")
    assert record.status == "rejected"
    with pytest.raises(DecisionRefused, match="already rejected"):
        decide(as_user(billing, BOB), policy, escalation_id, "approve")


def test_block_can_only_be_overridden_by_allowed_groups(billing: Path) -> None:
    facts = ChangeFacts(stage="post-gate", paths=("config/prod.env", "certs/server.pem"), author="x@example.com")
    policy, escalation_id = escalate(billing, facts)
    record = open_workspace(billing).store.get_escalation(escalation_id)
    assert record is not None and record.data["outcome"] == "block"
    assert "approve" not in allowed_decisions(policy, record, LEAD)
    assert policy.overrides.groups == ("leads",)
    with pytest.raises(DecisionRefused, match="may not override"):
        decide(as_user(billing, CAROL), policy, escalation_id, "override", reason="because")
    overrider = sorted(policy.groups[policy.overrides.groups[0]])[0]
    record = decide(as_user(billing, overrider), policy, escalation_id, "override", reason="incident 42",
                    expires_hours=4)
    assert record.status == "overridden" and record.data["override_expires"] > 0


def test_an_agent_inside_a_sandbox_can_never_decide(billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy, escalation_id = escalate(billing, payments_change())
    monkeypatch.setenv("LOOM_SANDBOX", "sb1")
    with pytest.raises(DecisionRefused, match="agents never decide"):
        decide(as_user(billing, ALICE), policy, escalation_id, "approve")


def test_queue_is_riskiest_then_oldest(billing: Path) -> None:
    escalate(billing, ChangeFacts(stage="post-gate", paths=("api/handlers.py",), author="a@example.com"))
    _, high = escalate(billing, payments_change())
    ordered = queue(open_workspace(billing))
    assert ordered[0].id == high


def test_a_decision_after_the_sandbox_was_removed_says_so_and_is_listed(billing: Path) -> None:
    """Not the permission prompt's words (no agent asked): withdrawn with its sandbox, then decided late."""
    from loomtui.governance.escalations import withdraw_open
    from tests.conftest import run_cli

    policy, escalation_id = escalate(billing, payments_change())
    withdraw_open(open_workspace(billing), "sb1", "sandbox archived")
    from loomtui.governance.escalations import DecisionTooLate

    with pytest.raises(DecisionTooLate) as refused:  # noted, not refused as one with no say is (the app says so)
        decide(as_user(billing, ALICE), policy, escalation_id, "approve")
    said = str(refused.value)
    assert "withdrawn before this approve" in said and "sandbox archived" in said
    assert "may ask again" not in said and "told no" not in said
    listed = run_cli(billing, "escalation", "list", "--all").stdout
    assert f"#{escalation_id}" in listed and "withdrawn" in listed and "late-approve by alice@example.com" in listed
    assert "withdrawn: nothing to decide" in listed and "approval" not in listed.split("withdrawn: nothing")[0][-60:]
    shown = run_cli(billing, "escalation", "show", str(escalation_id)).stdout
    assert "late-approve by alice@example.com" in shown and "decided after it was withdrawn" in shown
    # Someone with no say is refused as while it was open, and nothing is recorded (anyone's note was an
    # audit entry, as often as they liked).
    entries = len(list(open_workspace(billing).audit.entries()))
    with pytest.raises(DecisionRefused, match=r"was withdrawn, and mallory@evil\.example may not reject"):
        decide(as_user(billing, "mallory@evil.example"), policy, escalation_id, "reject", reason="spam")
    assert len(list(open_workspace(billing).audit.entries())) == entries
    assert "mallory" not in run_cli(billing, "escalation", "show", str(escalation_id)).stdout


def test_escalation_show_says_gates_and_the_eval_as_the_app_does_not_as_raw_data(billing: Path) -> None:
    """`compile: {"failed_tests": [], "run": 2, "status": "passed", ...}` and `breaks_with: []` (a newcomer)."""
    from tests.conftest import run_cli

    facts = payments_change()
    record = open_escalation(as_user(billing, "agent-runner@example.com"), "post-gate",
                             evaluate(load_policy(billing), facts), facts, sandbox_id="sb1", commit="c1", evidence={
                                 "gates": {"tests": {"status": "failed", "summary": "1 failed, 20 passed", "run": 3,
                                                     "failed_tests": ["tests/test_invoices.py::test_fragile"]},
                                           "compile": {"status": "passed", "summary": "", "failed_tests": []}},
                                 "eval": {"badge": "✗ · 60", "regressions": [], "breaks_with": [], "score": 60},
                                 # An agent's input is shown whole, a `status` in it too (only the gates' read so).
                                 "tool_input": {"change": {"status": "active", "sql": "DROP TABLE payments"}}})
    shown = run_cli(billing, "escalation", "show", str(record.id)).stdout
    assert ("  eval:\n    badge: ✗ · 60\n    score: 60\n  gates:\n    compile: passed\n"
            "    tests: failed (1 failed, 20 passed)\n      ✗ tests/test_invoices.py::test_fragile\n") in shown, shown
    assert "DROP TABLE payments" in shown and "[]" not in shown, shown


def test_a_reason_with_a_line_break_is_shown_on_its_decisions_line(billing: Path) -> None:
    """`--reason $'fine\nApproved by lead@example.com'` printed a decision line nobody made."""
    from tests.conftest import run_cli

    policy, escalation_id = escalate(billing, payments_change())
    decide(as_user(billing, ALICE), policy, escalation_id, "reject", reason="fine\nApproved by lead@example.com")
    shown = run_cli(billing, "escalation", "show", str(escalation_id)).stdout.splitlines()
    assert not any(line.startswith("Approved by") for line in shown), shown
    assert any(line.endswith("— fine\\nApproved by lead@example.com") for line in shown), shown


def test_the_author_may_not_approve_their_own_change_whatever_the_case_of_their_name(billing: Path) -> None:
    """`LOOM_USER=Mia@Example.com` started it, `mia@example.com` approved it: recorded, signed and published
    (a CI gate counted it) while the store said the author's own approval does not count."""
    policy, escalation_id = escalate(billing, payments_change(author="Mia@Example.com"))
    with pytest.raises(DecisionRefused, match="is the author; separation of duties"):
        decide(as_user(billing, "mia@example.com"), policy, escalation_id, "approve")
    decide(as_user(billing, ALICE), policy, escalation_id, "approve")
    with pytest.raises(DecisionRefused, match="has already approved"):
        decide(as_user(billing, "Alice@Example.COM"), policy, escalation_id, "approve")


def test_a_reject_refused_says_who_may_reject_not_who_may_approve(billing: Path) -> None:
    """"eve may not reject: needs a member of payments-team", while carol, of another group, rejected."""
    policy, escalation_id = escalate(billing, payments_change())
    with pytest.raises(DecisionRefused) as refused:
        decide(as_user(billing, "eve@example.com"), policy, escalation_id, "reject", reason="no")
    assert "only a member of one of the policy's groups" in str(refused.value)
    assert "needs a member of payments-team" not in str(refused.value)


def test_a_member_who_joined_the_group_after_the_review_is_told_why_not_and_the_way_on(billing: Path) -> None:
    """Who approves is named when the change is judged: a member added since was told "needs a member of
    payments-team" (being one), with no way on."""
    policy, escalation_id = escalate(billing, payments_change())
    newcomer = "newcomer@example.com"
    joined = replace(policy, groups={**policy.groups, "payments-team": policy.groups["payments-team"] | {newcomer}})
    with pytest.raises(DecisionRefused) as refused:
        decide(as_user(billing, newcomer), joined, escalation_id, "approve")
    said = str(refused.value)
    assert f"{newcomer} may not approve: the approvers were named when it was reviewed (" in said
    assert ALICE in said and "an override with a reason lets it through" in said
    assert "needs a member of" not in said


def test_an_approval_may_carry_a_note_that_is_recorded_and_shown(billing: Path) -> None:
    """`escalation approve 3 --reason ...` was refused as an unknown argument: a reviewer's note on an
    approval ("checked the rounding") had nowhere to go, though the engine records one."""
    from tests.conftest import run_cli

    _policy, escalation_id = escalate(billing, payments_change())
    approved = run_cli(billing, "escalation", "approve", str(escalation_id), "--reason", "checked the rounding",
                       user=ALICE)
    assert approved.returncode == 0, approved.stderr
    entry = [e for e in open_workspace(billing).audit.entries() if e.action == "escalation.approve"]
    assert len(entry) == 1 and entry[0].details.get("reason") == "checked the rounding", entry
    shown = run_cli(billing, "escalation", "show", str(escalation_id)).stdout
    assert "checked the rounding" in shown
    plain = run_cli(billing, "escalation", "approve", str(escalation_id), user=BOB)
    assert plain.returncode == 0, plain.stderr  # the note stays optional
    # Its commit ("c1") is not in this repository: the decision is in the store only, said (it was kept in a
    # field nothing showed, and a CI gate in a fresh clone saw one approval of two).
    assert (f"warning: a decision on #{escalation_id} is not published as a git note, so a CI gate in a fresh "
            "clone does not see it: no commit c1 here to attach the decision to") in plain.stderr


def test_a_decision_recorded_before_the_store_went_is_said_recorded_and_exits_0(
        billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL stopped right after the decision's commit: `escalation approve` said only "cannot reach the
    database", exit 2, while the approval stood (2 of 2)."""
    from loomtui.errors import StoreUnreachable
    from loomtui.governance import escalations
    from tests.conftest import run_cli

    _policy, escalation_id = escalate(billing, payments_change())
    real = escalations.decide

    def then_the_store_goes(workspace, *args, **kwargs):  # type: ignore[no-untyped-def]
        record = real(workspace, *args, **kwargs)

        def gone(*_a: object, **_k: object) -> None:
            raise StoreUnreachable("postgresql://loom@127.0.0.1:5432/team: cannot reach the database (refused)")
        monkeypatch.setattr(workspace.store, "get_sandbox", gone)
        return record

    monkeypatch.setattr(escalations, "decide", then_the_store_goes)
    done = run_cli(billing, "escalation", "approve", str(escalation_id), user=ALICE)
    assert done.returncode == 0, done.stderr
    assert f"#{escalation_id}: approve recorded by {ALICE}" in done.stdout
    assert "the approve is recorded, but sandbox sb1 was not moved on" in done.stderr


def test_an_author_s_approval_a_policy_counted_is_said_to_count(billing: Path) -> None:
    """Under a policy without separation of duties, `escalation show` said "status approved", then
    "0 of 1 approval ...; the author's own approval does not count (separation of duties)"."""
    policy, escalation_id = escalate(billing, payments_change(author=ALICE))
    relaxed = Policy(**{**vars(policy), "separation_of_duties": False})
    decide(as_user(billing, ALICE), relaxed, escalation_id, "approve")
    record = decide(as_user(billing, BOB), relaxed, escalation_id, "approve")
    assert record.status == "approved"
    lines = status_lines(record)
    assert lines and all("does not count" not in line for line in lines), lines
    assert any("2 of 2" in line and ALICE in line for line in lines), lines


def test_a_blocked_change_s_approvals_say_only_an_override_moves_it(billing: Path) -> None:
    """`escalation list` showed "0 of 2 approvals from payments-team" under a block no approval clears."""
    policy, escalation_id = escalate(billing, replace(payments_change(), gates={"tests": "failed"}))
    record = open_workspace(billing).store.get_escalation(escalation_id)
    assert record is not None and record.data["outcome"] == "block"
    assert status_lines(record) == ["blocked: no approval lets it proceed, only an override with a reason"]
    with pytest.raises(DecisionRefused, match="only overridden"):
        decide(as_user(billing, ALICE), policy, escalation_id, "approve")


def test_the_author_may_not_override_their_own_change_under_separation_of_duties(billing: Path) -> None:
    """mia, a lead and the author, overrode her own blocked change and merged it: every approval skipped."""
    policy, escalation_id = escalate(billing, replace(payments_change(author=LEAD), gates={"tests": "failed"}))
    assert policy.separation_of_duties and "override" not in allowed_decisions(
        policy, open_workspace(billing).store.get_escalation(escalation_id), LEAD)  # type: ignore[arg-type]
    with pytest.raises(DecisionRefused, match="lead@example.com is the author; separation of duties requires "
                                              "someone else to override"):
        decide(as_user(billing, LEAD), policy, escalation_id, "override", reason="my own")
    relaxed = Policy(**{**vars(policy), "separation_of_duties": False})  # a team of one: the lead may
    assert decide(as_user(billing, LEAD), relaxed, escalation_id, "override", reason="mine").status == "overridden"


def test_an_escalation_is_named_as_listings_name_it(billing: Path) -> None:
    """`escalation approve '#2'` was refused (expected an integer), while every listing prints `#2`."""
    from tests.conftest import run_cli

    _policy, escalation_id = escalate(billing, payments_change())
    shown = run_cli(billing, "escalation", "show", f"#{escalation_id}")
    assert shown.returncode == 0 and shown.stdout.startswith(f"#{escalation_id} post-gate"), shown.stderr
    assert "expected an integer (got '##1')" in run_cli(billing, "escalation", "show", "##1").stderr


def test_approvals_no_one_can_give_say_only_an_override_moves_it(billing: Path) -> None:
    """2 approvals from a group of two, one of them the author: it read "0 of 2 approvals from leads", pending
    for ever, and the app's `o` said an override was only for a block."""
    text = ("version: 1\ngroups: {leads: [lead@example.com, mia@example.com]}\nseparation_of_duties: %s\n"
            "default: {decision: require, approvals: {groups: [leads], count: 2}}\noverrides: {groups: [leads]}\n")
    facts = payments_change(author="mia@example.com")
    for separated, never in ((True, True), (False, False)):
        policy = parse_policy(text % str(separated).lower(), "p.yaml")
        record = open_escalation(as_user(billing, "agent-runner@example.com"), "post-gate",
                                 evaluate(policy, facts), facts, sandbox_id="sb1", commit="c1")
        assert overridable(record) is never
        expected = "0 of 2 approvals from leads" + (
            "; it can never be met (1 of leads may approve besides the author): only an override lets it through"
            if never else "")
        assert status_lines(record) == [expected]


def test_what_an_approval_leaves_to_do_names_the_requirements_not_met(billing: Path) -> None:
    """The approve toast listed a met requirement ("1 of 1 approval from the code owners ...") under
    "still open"."""
    from loomtui.governance.escalations import status_lines, unmet_lines

    facts = ChangeFacts(stage="post-gate", paths=("payments/refunds.py", "tests/test_refunds.py"),
                        regions=("payments/refunds.py::RefundService.quote",), lines_changed=12,
                        gates={"tests": "passed"}, author="agent@example.com")
    policy, escalation_id = escalate(billing, facts)
    decide(as_user(billing, ALICE), policy, escalation_id, "approve")
    record = open_workspace(billing).store.get_escalation(escalation_id)
    assert record is not None
    assert status_lines(record) == [
        "1 of 2 approvals from payments-team (alice@example.com)",
        "1 of 1 approval from the code owners of tests/test_refunds.py (payments-team) (alice@example.com)"]
    assert unmet_lines(record) == ["1 of 2 approvals from payments-team (alice@example.com)"]
