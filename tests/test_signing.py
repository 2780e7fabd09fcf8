"""Signed decisions: real ssh keys, a real allowed_signers file, the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from loomtui.audit import GENESIS, AuditEntry, entry_hash
from loomtui.errors import ConfigError
from loomtui.governance.auditproof import signatures_required_since, verify_audit
from loomtui.governance.escalations import DecisionRefused, decide, open_escalation
from loomtui.governance.policy import ChangeFacts, Policy, evaluate, load_policy, parse_policy
from loomtui.governance.signing import (
    BAD,
    UNSIGNED,
    VERIFIED,
    Decision,
    check_decisions,
    sign,
    signing_key,
    verify,
)
from loomtui.workflow.tamper_bench import make_key
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import demo_repo, git

LOOMTUI = shutil.which("loomtui") or "loomtui"
ALICE, BOB, LEAD, MALLORY = "alice@example.com", "bob@example.com", "lead@example.com", "mallory@example.com"


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    directory = tmp_path / "keys"
    directory.mkdir()
    return {who: make_key(directory, who.split("@")[0]) for who in (ALICE, BOB, LEAD, MALLORY)}


def write_allowed(repo: Path, keys: dict[str, Path], people: tuple[str, ...]) -> None:
    lines = [f"{who} {Path(str(keys[who]) + '.pub').read_text().strip()}" for who in people]
    (repo / ".loom" / "allowed_signers").write_text("\n".join(lines) + "\n")


def setup_repo(tmp_path: Path, keys: dict[str, Path], *, required: bool) -> Path:
    repo = demo_repo(tmp_path)
    write_allowed(repo, keys, (ALICE, BOB, LEAD))
    if required:
        policy = repo / ".loom" / "policy.yaml"
        policy.write_text(policy.read_text() + "decisions: {require_signature: true}\n")
    git(repo, "add", ".loom")
    git(repo, "commit", "-q", "-m", "signed decisions")
    return repo


def escalate(repo: Path) -> tuple[Policy, int]:
    policy = load_policy(repo)
    facts = ChangeFacts(stage="post-gate", paths=("payments/refunds.py",),
                        regions=("payments/refunds.py::RefundService.quote",), lines_changed=12,
                        gates={"tests": "passed"}, author="agent@example.com")
    workspace = open_workspace(repo)
    workspace.actor = "agent-runner@example.com"
    record = open_escalation(workspace, "post-gate", evaluate(policy, facts), facts, sandbox_id="sb1",
                             commit="c1")
    workspace.close()
    return policy, record.id


def as_user(repo: Path, user: str) -> Workspace:
    workspace = open_workspace(repo)
    workspace.actor = user
    return workspace


def run(repo: Path, *args: str, user: str | None = None, key: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOOM_SIGNING_KEY", "LOOM_USER")}
    env.update({"LOOM_USER": user} if user else {})
    env.update({"LOOM_SIGNING_KEY": str(key)} if key else {})
    return subprocess.run([LOOMTUI, *args], cwd=repo, capture_output=True, text=True, env=env, timeout=120)


def decision_entries(repo: Path) -> list[AuditEntry]:
    return [e for e in open_workspace(repo).audit.entries() if e.action.startswith("escalation.approve")]


def test_a_signed_approval_verifies(tmp_path: Path, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    repo = setup_repo(tmp_path, keys, required=True)
    _policy, escalation = escalate(repo)
    done = run(repo, "escalation", "approve", str(escalation), user=ALICE, key=keys[ALICE])
    assert done.returncode == 0, done.stderr
    assert "(verified)" in done.stdout
    [entry] = decision_entries(repo)
    assert "BEGIN SSH SIGNATURE" in entry.details["signature"] and entry.details["signature_status"] == VERIFIED
    # ssh-keygen itself agrees, over the canonical text, with the allowed_signers in the repository.
    assert verify(Decision.from_entry(entry), entry.details["signature"],
                  repo / ".loom" / "allowed_signers").status == VERIFIED
    verified = run(repo, "audit", "verify", "--json")
    data = json.loads(verified.stdout)
    assert verified.returncode == 0 and data["ok"] is True
    assert data["signatures"]["required"] is True
    assert data["signatures"]["decisions"] == [
        {"seq": entry.seq, "escalation": int(escalation), "decision": "approve", "actor": ALICE,
         "status": "verified", "detail": f"signed by {ALICE}"}]
    shown = run(repo, "escalation", "show", str(escalation))
    assert shown.returncode == 0 and f"approve by {ALICE} on c1: verified" in shown.stdout
    # `show --json` says what `list --json` says of it, and more (it had no `created`)
    listed = json.loads(run(repo, "escalation", "list", "--all", "--json").stdout)[0]
    whole = json.loads(run(repo, "escalation", "show", str(escalation), "--json").stdout)
    assert {key: whole[key] for key in listed} == listed and "evidence" in whole


def test_a_signature_by_a_key_not_in_allowed_signers_fails(tmp_path: Path, keys: dict[str, Path]) -> None:
    repo = setup_repo(tmp_path, keys, required=True)
    _policy, escalation = escalate(repo)
    # At decision time: Alice signing with Mallory's key is refused, and nothing is recorded.
    refused = run(repo, "escalation", "approve", str(escalation), user=ALICE, key=keys[MALLORY])
    assert refused.returncode == 1 and "not validly signed" in refused.stderr, refused.stderr
    assert decision_entries(repo) == []
    # In the log: a decision signed with a key allowed_signers does not list for its actor fails verify.
    workspace = open_workspace(repo)
    made = Decision(str(escalation), "approve", LEAD, "c1", "", "2026-01-01T00:00:00+00:00")
    workspace.audit.append(LEAD, "escalation.approve", str(escalation),
                           {"by": LEAD, "reason": "", "commit": "c1", "decided_at": made.at,
                            "signature": sign(made, str(keys[MALLORY]))})
    bad = run(repo, "audit", "verify")
    assert bad.returncode == 1, bad.stdout
    seq = list(workspace.audit.entries())[-1].seq
    assert f"seq {seq}: escalation.approve #{escalation} by {LEAD} has a bad signature" in bad.stdout
    # Nor does naming, as the version it was checked against, a file of the writer's own keys put into the
    # object store (`git hash-object -w`) but never committed: only the file's versions on the branch count.
    forged = tmp_path / "forged_signers"
    forged.write_text(f"{LEAD} {Path(str(keys[MALLORY]) + '.pub').read_text().strip()}\n")
    blob = git(repo, "hash-object", "-w", str(forged))
    workspace.audit.append(LEAD, "escalation.approve", str(escalation),
                           {"by": LEAD, "reason": "", "commit": "c1", "decided_at": made.at,
                            "signature": sign(made, str(keys[MALLORY])), "allowed_signers_blob": blob})
    bad = run(repo, "audit", "verify")
    assert bad.returncode == 1, bad.stdout
    assert f"({blob[:12]}) was never on this branch" in bad.stdout, bad.stdout
    # Bob's key is listed, but for Bob: the report says whose key it is.
    impostor = Decision(str(escalation), "approve", LEAD, "c1", "", made.at)
    verdict = verify(impostor, sign(impostor, str(keys[BOB])), repo / ".loom" / "allowed_signers")
    assert verdict.status == BAD and f"key of {BOB}, not of {LEAD}" in verdict.detail


def test_require_signature_refuses_an_unsigned_approval(tmp_path: Path, keys: dict[str, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    repo = setup_repo(tmp_path, keys, required=True)
    policy, escalation = escalate(repo)
    monkeypatch.delenv("LOOM_SIGNING_KEY", raising=False)
    with pytest.raises(DecisionRefused, match="requires signed decisions.*no signing key"):
        decide(as_user(repo, ALICE), policy, escalation, "approve")
    record = open_workspace(repo).store.get_escalation(escalation)
    assert record is not None and record.data["approvals"] == [] and decision_entries(repo) == []
    done = run(repo, "escalation", "approve", str(escalation), user=ALICE)
    assert done.returncode == 1 and "requires signed decisions" in done.stderr


def test_without_the_requirement_an_unsigned_decision_is_recorded_and_shown_unsigned(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    repo = setup_repo(tmp_path, keys, required=False)
    _policy, escalation = escalate(repo)
    done = run(repo, "escalation", "approve", str(escalation), user=ALICE)
    assert done.returncode == 0 and "(unsigned)" in done.stdout
    listing = run(repo, "escalation", "list", "--all")
    assert f"approve by {ALICE}: unsigned" in listing.stdout
    verified = run(repo, "audit", "verify")
    assert verified.returncode == 0 and "1 unsigned (seq" in verified.stdout, verified.stdout


def test_a_configured_key_that_cannot_sign_refuses_the_decision_rather_than_record_it_unsigned(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    repo = setup_repo(tmp_path, keys, required=False)
    _policy, escalation = escalate(repo)
    garbage = tmp_path / "not-a-key"
    garbage.write_text("garbage\n")
    locked = tmp_path / "locked"  # in the app, ssh-keygen asked for its passphrase on the app's own terminal
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-C", ALICE, "-f", str(locked)], check=True)
    empty = tmp_path / "empty"
    empty.write_text("")
    for key, problem in ((tmp_path / "gone", "does not exist"), (garbage, ""),
                         (tmp_path, f"the signing key {tmp_path} is a folder, not a key file"),  # "No such file"
                         (empty, f"the signing key {empty} is an empty file, not a key"),
                         (locked, f"the signing key {locked} is locked with a passphrase: load it into ssh-agent "
                                  f"(ssh-add {locked}) and decide again (fix the key, or unset it")):
        done = run(repo, "escalation", "approve", str(escalation), user=ALICE, key=key)
        assert done.returncode != 0 and done.stdout == "", done.stdout
        assert "the configured signing key could not sign this decision" in done.stderr and problem in done.stderr
        assert done.stderr.count("\n") == 1
    # A key that signs, but not as this person (Bob's, listed for Bob): refused too, not recorded unsigned.
    done = run(repo, "escalation", "approve", str(escalation), user=ALICE, key=keys[BOB])
    assert done.returncode == 1 and f"the configured signing key does not sign as {ALICE}" in done.stderr, done.stderr
    assert f"key of {BOB}" in done.stderr and done.stderr.count("\n") == 1
    record = open_workspace(repo).store.get_escalation(escalation)
    assert record is not None and record.data["approvals"] == [] and decision_entries(repo) == []


def test_a_forged_unsigned_approval_with_a_valid_chain_fails_verify(tmp_path: Path, keys: dict[str, Path]) -> None:
    """(d) Appended by someone who can write the log, as lead@example.com, chain and checkpoint valid."""
    repo = setup_repo(tmp_path, keys, required=True)
    _policy, escalation = escalate(repo)
    assert run(repo, "escalation", "approve", str(escalation), user=ALICE, key=keys[ALICE]).returncode == 0
    workspace = open_workspace(repo)
    forged = workspace.audit.append(LEAD, "escalation.approve", str(escalation),
                                    {"by": LEAD, "reason": "", "commit": "c1", "status": "approved"})
    assert workspace.audit.verify().ok  # the chain alone is fine
    done = run(repo, "audit", "verify")
    assert done.returncode == 1
    assert (f"{forged.seq}: seq {forged.seq}: escalation.approve #{escalation} by {LEAD} is unsigned, "
            "and the policy requires signed decisions") in done.stdout, done.stdout


def test_turning_the_requirement_on_leaves_earlier_unsigned_decisions_verifiable(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    """A team that required signatures after deciding unsigned had `audit verify` fail for good on every earlier
    decision (it cannot be signed after the fact); one unsigned after the requirement, or backdated, still fails."""
    repo = setup_repo(tmp_path, keys, required=False)
    _policy, escalation = escalate(repo)
    assert run(repo, "escalation", "approve", str(escalation), user=ALICE).returncode == 0
    policy_file = repo / ".loom" / "policy.yaml"
    policy_file.write_text(policy_file.read_text() + "decisions: {require_signature: true}\n")
    verified = run(repo, "audit", "verify")  # required in the working tree alone: every decision is held to it
    assert verified.returncode == 1 and "is unsigned, and the policy requires signed decisions" in verified.stdout
    time.sleep(1.1)  # a commit's time is in whole seconds: the decision lies a second before it
    git(repo, "commit", "-q", "-am", "require signed decisions")
    enabled = git(repo, "rev-parse", "HEAD")
    verified = run(repo, "audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout
    statuses = json.loads(verified.stdout)["signatures"]["decisions"]
    assert [(d["status"], d["detail"]) for d in statuses] == [
        (UNSIGNED, f"unsigned, taken before the policy required signed decisions (from {enabled[:12]})")]
    # Unrelated policy commits since do not move the date on.
    policy_file.write_text(policy_file.read_text() + "# reviewed\n")
    git(repo, "commit", "-q", "-am", "a comment")
    assert run(repo, "audit", "verify").returncode == 0

    escalate(repo)  # the log goes on after the requirement
    workspace = open_workspace(repo)
    forged = workspace.audit.append(LEAD, "escalation.approve", str(escalation),
                                    {"by": LEAD, "reason": "", "commit": "c1", "status": "approved"})
    done = run(repo, "audit", "verify")
    assert done.returncode == 1 and f"seq {forged.seq}: escalation.approve #{escalation} by {LEAD} is unsigned, " \
                                    "and the policy requires signed decisions" in done.stdout, done.stdout
    # Dated before the requirement but written after an entry that was not: not in the log's part before it.
    entries = list(workspace.audit.entries())
    backdated = [replace(e, ts=entries[0].ts) if e.seq == forged.seq else e for e in entries]
    policy = load_policy(repo)
    report = check_decisions(backdated, repo, policy, signatures_required_since(repo, policy))
    assert [seq for seq, _ in report.problems] == [forged.seq]


def test_a_signed_decision_edited_afterwards_fails_verify(tmp_path: Path, keys: dict[str, Path]) -> None:
    repo = setup_repo(tmp_path, keys, required=False)
    _policy, escalation = escalate(repo)
    assert run(repo, "escalation", "reject", str(escalation), "--reason", "too risky", user=LEAD,
               key=keys[LEAD]).returncode == 0
    path = open_workspace(repo).audit.path
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    target = next(r for r in rows if r["action"] == "escalation.reject")
    target["details"]["reason"] = "looks fine"  # the signature no longer covers what the entry says
    prev = GENESIS
    for row in rows:
        row["prev"] = prev
        row["hash"] = prev = entry_hash(row)
    path.write_text("".join(AuditEntry(**r).line() + "\n" for r in rows))
    workspace = open_workspace(repo)
    report = check_decisions(workspace.audit.entries(), repo, load_policy(repo))
    assert [d["status"] for d in report.decisions] == [BAD]
    assert "edited after" in report.decisions[0]["detail"]
    assert not verify_audit(workspace).ok


def test_git_ssh_signing_config_is_used(tmp_path: Path, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    repo = setup_repo(tmp_path, keys, required=True)
    monkeypatch.delenv("LOOM_SIGNING_KEY", raising=False)
    assert signing_key(repo) is None
    git(repo, "config", "user.signingkey", str(keys[BOB]))
    assert signing_key(repo) is None  # gpg.format is not ssh
    git(repo, "config", "gpg.format", "ssh")
    assert signing_key(repo) == str(keys[BOB])
    policy, escalation = escalate(repo)
    decide(as_user(repo, BOB), policy, escalation, "approve")
    [entry] = decision_entries(repo)
    assert entry.details["signature_status"] == VERIFIED


def test_unsigned_verdict_and_policy_parsing() -> None:
    made = Decision("1", "approve", ALICE, "c1", "", "t")
    assert verify(made, None, Path("/nonexistent")).status == UNSIGNED
    policy = parse_policy("decisions: {require_signature: true, allowed_signers: keys/allowed}\n", "p.yaml")
    assert policy.decisions.require_signature and policy.decisions.allowed_signers == "keys/allowed"
    assert not parse_policy("version: 1\n", "p.yaml").decisions.require_signature
    with pytest.raises(ConfigError, match="unknown key"):
        parse_policy("decisions: {require_signatures: true}\n", "p.yaml")


async def test_the_app_shows_whether_each_decision_was_signed(tmp_path: Path, keys: dict[str, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from textual.widgets import DataTable, Static

    from loomtui.tui.app import LoomApp
    from tests.test_tui import wait_for

    repo = setup_repo(tmp_path, keys, required=False)
    policy, escalation = escalate(repo)
    monkeypatch.setenv("LOOM_SIGNING_KEY", str(keys[ALICE]))
    decide(as_user(repo, ALICE), policy, escalation, "approve")
    monkeypatch.delenv("LOOM_SIGNING_KEY")
    decide(as_user(repo, BOB), policy, escalation, "approve")  # unsigned: the policy allows it here
    app = LoomApp(as_user(repo, LEAD))
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: app.policy is not None)
        await pilot.press("3")
        await pilot.pause()
        await pilot.press("h")  # decided ones too
        table = app.screen.query_one("#queue", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.pause()
        shown = " ".join(str(app.screen.query_one("#esc-detail", Static).render()).split())  # lines wrap in the pane
    assert f"approve by {ALICE} [verified]" in shown and f"approve by {BOB} [unsigned]" in shown, shown


def test_decisions_are_checked_against_the_committed_signers_as_they_were_when_taken(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    """A key appended to the working tree's allowed_signers, never committed, made a decision "verified"
    (its change merged), and `audit verify` read the same log OK or BROKEN with local edits; rotating a
    key broke `audit verify` of every decision the old key had signed."""
    repo = setup_repo(tmp_path, keys, required=True)
    _policy, escalation = escalate(repo)
    signers = repo / ".loom" / "allowed_signers"
    committed = signers.read_text()
    mallory_as_alice = f"{ALICE} {Path(str(keys[MALLORY]) + '.pub').read_text().strip()}\n"
    signers.write_text(committed + mallory_as_alice)  # not committed: no team machine, no CI gate sees it
    forged = run(repo, "escalation", "approve", str(escalation), user=ALICE, key=keys[MALLORY])
    assert forged.returncode == 1 and "not validly signed" in forged.stderr, forged.stderr
    assert decision_entries(repo) == []

    signers.write_text(committed)
    done = run(repo, "escalation", "approve", str(escalation), user=ALICE, key=keys[ALICE])
    assert done.returncode == 0 and "(verified)" in done.stdout, done.stderr
    [entry] = decision_entries(repo)
    assert entry.details["allowed_signers_blob"] == git(repo, "rev-parse", "HEAD:.loom/allowed_signers")

    # Alice's key rotated (committed): her past decision still verifies, against the file it was taken under;
    # an uncommitted edit of the file changes nothing `audit verify` says.
    signers.write_text("".join(line + "\n" for line in committed.splitlines() if not line.startswith(ALICE))
                       + mallory_as_alice)
    git(repo, "commit", "-qam", "rotate alice's key")
    signers.write_text("")
    verified = run(repo, "audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout
    assert [d["status"] for d in json.loads(verified.stdout)["signatures"]["decisions"]] == [VERIFIED]
    git(repo, "checkout", "-q", ".loom/allowed_signers")
    # Her new key decides from now on; her old one, taken out, signs nothing after, even naming the file it
    # was in (any entry after the newest anchor could).
    _policy, rotated = escalate(repo)
    assert run(repo, "escalation", "approve", str(rotated), user=ALICE, key=keys[MALLORY]).returncode == 0
    made = Decision(str(rotated), "approve", ALICE, "c1", "", "2026-01-01T00:00:00+00:00")
    open_workspace(repo).audit.append(ALICE, "escalation.approve", str(rotated), {
        "by": ALICE, "reason": "", "commit": "c1", "decided_at": made.at, "signature": sign(made, str(keys[ALICE])),
        "allowed_signers_blob": entry.details["allowed_signers_blob"]})
    stale = run(repo, "audit", "verify")
    assert stale.returncode == 1 and "a key taken out of it signs nothing after" in stale.stdout, stale.stdout
    # Read from the main branch, not whatever is checked out: a lead trying an agent's branch, which commits
    # its own key for Alice, read that file as the team's.
    git(repo, "checkout", "-q", "-b", "loom/agent")
    signers.write_text(f"{ALICE} {Path(str(keys[BOB]) + '.pub').read_text().strip()}\n")
    git(repo, "commit", "-qam", "the agent's keys")
    _policy, second = escalate(repo)
    forged = run(repo, "escalation", "approve", str(second), user=ALICE, key=keys[BOB])
    # Refused before the signature is read: the checkout holds the agent's change to the policy's files.
    assert forged.returncode == 1 and "holds loom/agent's change to loomtui's config or policy" in forged.stderr, \
        forged.stderr


def test_a_decision_from_a_machine_behind_a_rotation_stands_if_its_key_is_still_allowed(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    """A lead on a machine whose main branch had not taken in a rotation of allowed_signers (another lead had
    decided under the new file, the store shared) decided against the older file: `audit verify` read it as bad,
    though the rotation was someone else's key. It stands when the newer file still has its key; a key the
    newer file took out signs nothing after. A version made by a merge (a conflict resolved) counts as the
    branch's."""
    repo = setup_repo(tmp_path, keys, required=True)
    before = git(repo, "rev-parse", "HEAD")
    rotated_alice = f"{ALICE} {Path(str(keys[MALLORY]) + '.pub').read_text().strip()}\n"
    signers = repo / ".loom" / "allowed_signers"
    signers.write_text("".join(line + "\n" for line in signers.read_text().splitlines()
                               if not line.startswith(ALICE)) + rotated_alice)
    git(repo, "commit", "-qam", "rotate alice's key")
    rotated = git(repo, "rev-parse", "HEAD")
    _policy, first = escalate(repo)
    assert run(repo, "escalation", "approve", str(first), user=ALICE, key=keys[MALLORY]).returncode == 0

    git(repo, "reset", "-q", "--hard", before)  # this machine's main, as it was before the rotation
    _policy, second = escalate(repo)
    assert run(repo, "escalation", "approve", str(second), user=BOB, key=keys[BOB]).returncode == 0
    _policy, third = escalate(repo)
    assert run(repo, "escalation", "approve", str(third), user=ALICE, key=keys[ALICE]).returncode == 0  # her old key

    git(repo, "reset", "-q", "--hard", rotated)  # fetched
    verified = run(repo, "audit", "verify", "--json")
    statuses = [d["status"] for d in json.loads(verified.stdout)["signatures"]["decisions"]]
    assert statuses == [VERIFIED, VERIFIED, BAD], verified.stdout
    assert verified.returncode == 1 and "a key taken out of it signs nothing after" in verified.stdout


def test_the_allowed_signers_a_merge_resolved_is_one_the_branch_had(tmp_path: Path, keys: dict[str, Path]) -> None:
    """`git log --raw` shows no change for a merge: a version of allowed_signers made by resolving a conflict was
    "never on this branch", and a decision checked against it fell back to today's file."""
    repo = setup_repo(tmp_path, keys, required=True)
    signers = repo / ".loom" / "allowed_signers"
    git(repo, "checkout", "-q", "-b", "side")
    write_allowed(repo, keys, (ALICE, BOB))
    git(repo, "commit", "-qam", "side: lead leaves")
    git(repo, "checkout", "-q", "main")
    write_allowed(repo, keys, (ALICE, LEAD))
    git(repo, "commit", "-qam", "main: bob leaves")
    assert subprocess.run(["git", "merge", "-q", "side"], cwd=repo, capture_output=True).returncode != 0
    write_allowed(repo, keys, (ALICE, MALLORY))
    git(repo, "commit", "-qam", "merge: both leave, mallory joins")
    _policy, first = escalate(repo)
    assert run(repo, "escalation", "approve", str(first), user=ALICE, key=keys[ALICE]).returncode == 0
    signers.write_text(f"{ALICE} {Path(str(keys[BOB]) + '.pub').read_text().strip()}\n")
    git(repo, "commit", "-qam", "alice's key rotated")
    verified = run(repo, "audit", "verify", "--json")
    assert [d["status"] for d in json.loads(verified.stdout)["signatures"]["decisions"]] == [VERIFIED], verified.stdout


def _approve(repo: Path, who: str, keys: dict[str, Path]) -> None:
    _policy, escalation = escalate(repo)
    done = run(repo, "escalation", "approve", str(escalation), user=who, key=keys[who])
    assert done.returncode == 0, done.stderr


def _statuses(repo: Path) -> list[str]:
    return [d["status"] for d in json.loads(run(repo, "audit", "verify", "--json").stdout)["signatures"]["decisions"]]


def test_a_member_listed_again_then_removed_keeps_the_decisions_taken_while_listed(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    """allowed_signers returned to earlier bytes (bob away, back, away again): that version ranked as the newest,
    and bob's decision, taken while he was listed, read as bad for good."""
    repo = setup_repo(tmp_path, keys, required=True)
    write_allowed(repo, keys, (ALICE, LEAD))
    git(repo, "commit", "-qam", "bob away")
    _approve(repo, ALICE, keys)
    write_allowed(repo, keys, (ALICE, BOB, LEAD))
    git(repo, "commit", "-qam", "bob back")
    _approve(repo, BOB, keys)
    write_allowed(repo, keys, (ALICE, LEAD))
    git(repo, "commit", "-qam", "bob away again")
    assert _statuses(repo) == [VERIFIED, VERIFIED]


def test_a_decision_under_a_version_never_published_sets_no_bar_for_later_ones(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    """A decision naming a version never on the branch is checked against today's file; its rank was today's, and
    every later decision naming an older version was then checked against today's file too: one by a member
    removed long after deciding read as bad."""
    repo = setup_repo(tmp_path, keys, required=True)
    before = git(repo, "rev-parse", "HEAD")
    signers = repo / ".loom" / "allowed_signers"
    signers.write_text(signers.read_text() + "# a local note\n")
    git(repo, "commit", "-qam", "local, never pushed")
    _approve(repo, ALICE, keys)
    git(repo, "reset", "-q", "--hard", before)
    _approve(repo, BOB, keys)
    write_allowed(repo, keys, (ALICE, LEAD))
    git(repo, "commit", "-qam", "bob leaves, later")
    assert _statuses(repo) == [VERIFIED, VERIFIED]
