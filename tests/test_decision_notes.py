"""Approvals CI can see: decisions published as git notes, read by `loomtui gate` in a fresh clone.

Real ssh keys, a real clone, the real CLI; and the attacks a fresh clone invites: a forged
note, a note signed with the wrong key, a branch that adds its author's key, and a commit
pushed after the approval.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from loomtui.governance.decision_notes import NOTES_REF
from loomtui.governance.escalations import decide, open_escalation
from loomtui.governance.policy import ChangeFacts, evaluate, load_policy
from loomtui.governance.signing import Decision, sign
from loomtui.workspace import open_workspace
from tests.conftest import git
from tests.test_gate import gate
from tests.test_signing import ALICE, BOB, MALLORY, as_user, keys, setup_repo  # noqa: F401  (keys: a fixture)

BRANCH = "loom/sb1"


def _decided_branch(tmp_path: Path, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                    decisions: tuple[tuple[str, str], ...], target: str = "") -> tuple[Path, str]:
    """A payments change on loom/sb1 under review, each (person, decision) taken in turn with their key; the
    head's id. `target`: the branch sandbox sb1 is to merge into (none recorded without it)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    repo = setup_repo(tmp_path, keys, required=False)
    if target:
        from loomtui.store import SandboxRecord

        as_user(repo, ALICE).store.add_sandbox(SandboxRecord(id="sb1", task="t", runtime="script",
                                                             status="awaiting_review", created=0.0, updated=0.0,
                                                             branch=BRANCH, data={"target": target}))
    refunds = repo / "payments" / "refunds.py"
    git(repo, "checkout", "-q", "-b", BRANCH)
    refunds.write_text(refunds.read_text() + "\n# reviewed\n")
    git(repo, "commit", "-q", "-am", "refunds: a reviewed change")
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    policy = load_policy(repo)
    facts = ChangeFacts(stage="post-gate", paths=("payments/refunds.py",),
                        regions=("payments/refunds.py::RefundService",), lines_changed=1,
                        gates={"tests": "passed"}, author="agent@example.com")
    workspace = as_user(repo, "agent-runner@example.com")
    escalation = open_escalation(workspace, "post-gate", evaluate(policy, facts), facts, sandbox_id="sb1",
                                 commit=head)
    for user, decision in decisions:
        monkeypatch.setenv("LOOM_SIGNING_KEY", str(keys[user]))
        decide(as_user(repo, user), policy, escalation.id, decision,
               reason="the refund rounding is wrong" if decision == "reject" else "")
    monkeypatch.delenv("LOOM_SIGNING_KEY")
    return repo, head


def _approved_branch(tmp_path: Path, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:  # noqa: F811
    """A payments change on loom/sb1, approved by Alice and Bob with their keys; the head's id."""
    return _decided_branch(tmp_path, keys, monkeypatch, ((ALICE, "approve"), (BOB, "approve")))


def _clone(repo: Path, where: Path, *, notes: bool) -> Path:
    git(where.parent, "clone", "-q", str(repo), str(where))
    git(where, "branch", "-q", BRANCH, f"origin/{BRANCH}")
    if notes:
        git(where, "fetch", "-q", "origin", f"{NOTES_REF}:{NOTES_REF}")
    return where


def _verdict(repo: Path, head: str = BRANCH) -> tuple[int, dict[str, object]]:
    done = gate(repo, "--head", head, "--format", "json")
    return done.returncode, json.loads(done.stdout)


def test_approvals_travel_as_signed_notes_and_a_fresh_clone_passes_the_gate(
        tmp_path: Path, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    repo, head = _approved_branch(tmp_path, keys, monkeypatch)
    lines = git(repo, "notes", "--ref", NOTES_REF, "show", head).splitlines()
    published = [json.loads(line) for line in lines if line.strip()]
    assert [(d["actor"], d["decision"], d["commit"]) for d in published] == [(ALICE, "approve", head),
                                                                            (BOB, "approve", head)]
    assert all("BEGIN SSH SIGNATURE" in d["signature"] for d in published)
    assert git(repo, "log", "-1", "--format=%ae", NOTES_REF) == BOB  # the note commit is in the approver's name

    bare = _clone(repo, tmp_path / "ci-without-notes", notes=False)
    code, report = _verdict(bare)
    assert code == 1 and report["verdict"] == "NEEDS APPROVAL"
    assert any(f"git fetch origin {NOTES_REF}" in note for note in report["notes"])  # type: ignore[union-attr]

    clone = _clone(repo, tmp_path / "ci", notes=True)
    code, report = _verdict(clone)
    assert code == 0 and report["verdict"] == "PASS", report
    assert report["approvals"] == [ALICE, BOB]
    assert not (clone / ".git" / "loom").exists()  # the CI clone grows no store


def test_a_pull_requests_test_merge_is_judged_by_its_branchs_head(
        tmp_path: Path, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """GitHub's pull-request checkout is `refs/pull/N/merge`, a merge of the branch into the base: `--head HEAD`
    read NEEDS APPROVAL for good, the approvals on the branch's head called "an earlier commit". One with a
    change of its own added to the merge is no test merge, and is judged as it is."""
    repo, head = _approved_branch(tmp_path, keys, monkeypatch)
    clone = _clone(repo, tmp_path / "ci", notes=True)
    git(clone, "checkout", "-q", "--detach", "origin/main")
    git(clone, "merge", "-q", "--no-ff", "--no-edit", BRANCH)
    code, report = _verdict(clone, "HEAD")
    assert code == 0 and report["verdict"] == "PASS", report
    assert any(f"is a test merge of {head[:12]} into main" in note for note in report["notes"])  # type: ignore[union-attr]
    (clone / "payments" / "refunds.py").write_text((clone / "payments" / "refunds.py").read_text() + "# more\n")
    git(clone, "commit", "-q", "-a", "--amend", "--no-edit")  # the merge with a change of its own
    code, report = _verdict(clone, "HEAD")
    assert code == 1 and report["verdict"] == "NEEDS APPROVAL", report


def test_an_approval_for_a_merge_into_another_branch_does_not_count_for_this_one(
        tmp_path: Path, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """An approval of a commit reviewed against its diff into `feat` counted for `gate --base main`, where the
    diff from the merge base could be another and other rules apply: the target is signed with the rest."""
    repo, head = _decided_branch(tmp_path, keys, monkeypatch, ((ALICE, "approve"), (BOB, "approve")), target="feat")
    lines = git(repo, "notes", "--ref", NOTES_REF, "show", head).splitlines()
    published = [json.loads(line) for line in lines if line.strip()]
    assert {d["target"] for d in published} == {"feat"}
    clone = _clone(repo, tmp_path / "ci", notes=True)
    code, report = _verdict(clone)  # --base main
    assert code == 1 and report["approvals"] == [], report
    assert any(f"the approval by {ALICE} was for a merge into feat, not into main" in n
               for n in report["notes"])  # type: ignore[union-attr]
    # The base as CI often passes it, by its sha, or a tag at main's tip: the target was not compared, and
    # the approval for feat passed the gate into main.
    git(clone, "tag", "v1", "origin/main")
    for base in (git(clone, "rev-parse", "origin/main"), "v1"):
        done = gate(clone, "--base", base, "--head", BRANCH, "--format", "json")
        report = json.loads(done.stdout)
        assert done.returncode == 1 and report["approvals"] == [], report
        assert any(f"was for a merge into feat, and the base {base} is not the tip of feat" in n
                   for n in report["notes"])  # type: ignore[union-attr]
    assert open_workspace(repo).audit.verify().ok  # the signed target verifies in the audit log too
    other = _decided_branch(tmp_path / "main", keys, monkeypatch, ((ALICE, "approve"), (BOB, "approve")),
                            target="main")[0]
    ci_main = _clone(other, tmp_path / "ci-main", notes=True)
    code, report = _verdict(ci_main)
    assert code == 0 and report["approvals"] == [ALICE, BOB], report  # origin/main is main
    # ...and so is main's tip by its sha.
    done = gate(ci_main, "--base", git(ci_main, "rev-parse", "origin/main"), "--head", BRANCH, "--format", "json")
    assert done.returncode == 0 and json.loads(done.stdout)["approvals"] == [ALICE, BOB], done.stdout


def test_a_commit_after_the_approval_needs_approving_again_and_says_why(
        tmp_path: Path, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    repo, head = _approved_branch(tmp_path, keys, monkeypatch)
    clone = _clone(repo, tmp_path / "ci", notes=True)
    git(clone, "checkout", "-q", BRANCH)
    (clone / "payments" / "refunds.py").write_text((clone / "payments" / "refunds.py").read_text() + "# more\n")
    git(clone, "commit", "-q", "-am", "slipped in after the review")
    code, report = _verdict(clone)
    assert code == 1 and report["approvals"] == []
    assert any(f"is for {head[:12]}, an earlier commit" in n for n in report["notes"])  # type: ignore[union-attr]


def test_forged_notes_do_not_count(tmp_path: Path, keys: dict[str, Path],  # noqa: F811
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    repo, _head = _approved_branch(tmp_path, keys, monkeypatch)
    clone = _clone(repo, tmp_path / "ci", notes=True)
    git(clone, "checkout", "-q", BRANCH)
    # Mallory's branch adds her key as Bob's and Alice's, then forges both approvals of her own commit.
    signers = clone / ".loom" / "allowed_signers"
    mallory_key = Path(str(keys[MALLORY]) + ".pub").read_text().strip()
    signers.write_text(signers.read_text() + f"{ALICE},{BOB} {mallory_key}\n")
    (clone / "payments" / "refunds.py").write_text("def refund():\n    return 'everything'\n")
    git(clone, "commit", "-q", "-am", "refunds: pay out")
    evil = git(clone, "rev-parse", "HEAD")
    at = "2026-12-01T00:00:00+00:00"
    forged = Decision("1", "approve", ALICE, evil, "", at, "post-gate")
    # A real approval by Bob, but of a permission request about this commit, relabelled as a review.
    asked = Decision("2", "approve", BOB, evil, "", at, "permission-request")
    entries = [{"escalation": "1", "kind": "post-gate", "decision": "approve", "actor": ALICE, "commit": evil,
                "reason": "", "at": at, "signature": sign(forged, str(keys[MALLORY]))},
               {"escalation": "1", "kind": "post-gate", "decision": "approve", "actor": BOB, "commit": evil,
                "reason": "", "at": at, "signature": ""},
               {"escalation": "2", "kind": "post-gate", "decision": "approve", "actor": BOB, "commit": evil,
                "reason": "", "at": at, "signature": sign(asked, str(keys[BOB]))},
               {"escalation": "2", "kind": "permission-request", "decision": "approve", "actor": BOB,
                "commit": evil, "reason": "", "at": at, "signature": sign(asked, str(keys[BOB]))}]
    for entry in entries:
        git(clone, "notes", "--ref", NOTES_REF, "append", "-m", json.dumps(entry), evil)
    # And a real approval copied from the approved commit onto hers.
    copied = git(clone, "notes", "--ref", NOTES_REF, "show", f"origin/{BRANCH}").splitlines()[0]
    git(clone, "notes", "--ref", NOTES_REF, "append", "-m", copied, evil)
    code, report = _verdict(clone)
    assert code == 1 and report["approvals"] == [], report
    notes = "\n".join(report["notes"])  # type: ignore[arg-type]
    assert f"the approval by {ALICE}" in notes and "at the base" in notes  # her key is not the base's Alice
    assert f"the approval by {BOB} in {NOTES_REF} does not count: unsigned" in notes
    relabelled = f"the approval by {BOB} in {NOTES_REF} does not count: the signature does not match the decision"
    assert relabelled in notes  # signed over its kind: a permission request's approval cannot pass as a review
    assert "of a permission-request (not of the change's review)" in notes
    assert "approves" in notes and "instead: ignored" in notes  # the copied note names another commit


def test_a_decision_about_no_real_commit_is_not_published_and_stands(
        tmp_path: Path, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from tests.test_signing import escalate

    repo = setup_repo(tmp_path, keys, required=False)
    policy, escalation = escalate(repo)  # bound to the made-up commit "c1"
    monkeypatch.setenv("LOOM_SIGNING_KEY", str(keys[ALICE]))
    record = decide(as_user(repo, ALICE), policy, escalation, "approve")
    assert [a["user"] for a in record.data["approvals"]] == [ALICE]
    assert subprocess.run(["git", "rev-parse", "--verify", "--quiet", NOTES_REF], cwd=repo).returncode != 0


def test_the_gate_never_takes_its_store_from_the_branch_under_review(
        tmp_path: Path, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """In CI the checkout is the branch under review: a `store:` it adds must not make the gate
    connect there (with the team's PGPASSWORD) nor take its approvals from there."""
    import socket

    repo, _head = _approved_branch(tmp_path, keys, monkeypatch)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    clone = _clone(repo, tmp_path / "ci", notes=True)
    git(clone, "checkout", "-q", BRANCH)
    with (clone / ".loom" / "loom.yaml").open("a") as config:
        config.write(f"store: postgresql://loom@127.0.0.1:{port}/steal\n")
    git(clone, "commit", "-q", "-am", "point the store elsewhere")
    monkeypatch.setenv("PGPASSWORD", "the-team-secret")
    done = gate(clone, "--head", "HEAD", "--format", "json")
    assert done.returncode in (0, 1) and "postgresql" not in done.stderr, done.stderr
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody connected
    listener.close()


def test_a_published_rejection_fails_the_gate_and_an_approval_not_enough_says_why(
        tmp_path: Path, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Alice approves, Bob rejects, both signed and published: the CI gate in a fresh clone counted Alice's
    approval, ignored Bob's rejection, and listed the approval as if it were enough, saying nothing."""
    repo, _head = _decided_branch(tmp_path / "once", keys, monkeypatch, ((ALICE, "approve"),))
    clone = _clone(repo, tmp_path / "ci-approved-once", notes=True)
    code, report = _verdict(clone)
    assert code == 1 and report["verdict"] == "NEEDS APPROVAL" and report["approvals"] == [ALICE]
    assert any(n.startswith("approvals do not meet ") for n in report["notes"]), report  # type: ignore[union-attr]

    repo, head = _decided_branch(tmp_path / "twice", keys, monkeypatch, ((ALICE, "approve"), (BOB, "reject")))
    clone = _clone(repo, tmp_path / "ci", notes=True)
    code, report = _verdict(clone)
    assert code == 1 and report["verdict"] == "REJECTED" and report["rejected_by"] == [BOB], report
    assert report["notes"][0] == (  # type: ignore[index]
        f"{BOB} rejected {head[:12]}: no approval lets this commit through")
    done = gate(clone, "--head", BRANCH, "--format", "markdown")
    assert "loomtui policy gate: REJECTED" in done.stdout and f"**Rejected by:** {BOB}" in done.stdout
