"""The CI gate on real branches of the sample repo: pass, needs approval, blocked, fails closed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from loomtui.workspace import open_workspace
from tests.conftest import git, run_cli, wait_until

LOOMTUI = shutil.which("loomtui") or "loomtui"


def branch_with(repo: Path, name: str, edits: dict[str, str]) -> None:
    git(repo, "checkout", "-q", "-b", name)
    for path, text in edits.items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(repo, "add", "-A", "-f")
    git(repo, "commit", "-q", "-m", f"change on {name}")


def gate(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LOOMTUI, "gate", "--base", "main", *args], cwd=repo, capture_output=True,
                          text=True, timeout=60)


def test_docs_only_change_passes(billing: Path) -> None:
    template = (billing / "notifications/templates/refund_issued.txt").read_text()
    branch_with(billing, "typos", {"notifications/templates/refund_issued.txt": template.replace("recieve", "receive")})
    done = gate(billing)
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith("loomtui gate: PASS") and ", 1 file, " in done.stdout.splitlines()[0]
    assert not (billing / ".git" / "loom").exists()  # a CI run leaves no store behind


def test_a_policy_and_its_codeowners_kept_outside_dot_loom_judge_the_gate(billing: Path) -> None:
    """The gate read only `.loom/` and the usual CODEOWNERS from the base: a policy at `governance/policy.yaml`
    (as loom.yaml names it) or CODEOWNERS in `.gitlab/` failed it, exit 2, where `policy validate` passed."""
    (billing / "governance").mkdir()
    git(billing, "mv", ".loom/policy.yaml", "governance/policy.yaml")
    (billing / ".gitlab").mkdir()
    git(billing, "mv", "CODEOWNERS", ".gitlab/CODEOWNERS")
    policy = billing / "governance/policy.yaml"
    policy.write_text(policy.read_text().replace("codeowners: CODEOWNERS", "codeowners: .gitlab/CODEOWNERS"))
    config = billing / ".loom/loom.yaml"
    config.write_text(config.read_text().replace("policy: .loom/policy.yaml", "policy: governance/policy.yaml"))
    git(billing, "add", "-A")
    git(billing, "commit", "-qm", "the policy where governance keeps it")
    assert run_cli(billing, "policy", "validate").returncode == 0
    refunds = (billing / "payments/refunds.py").read_text()
    branch_with(billing, "refunds", {"payments/refunds.py": refunds + "\n# note\n"})
    done = gate(billing, "--json")
    assert done.returncode == 1, done.stderr  # judged, by that policy: not an error
    assert "payments-high-risk" in [r["name"] for r in json.loads(done.stdout)["rules"]]


def test_payments_change_needs_two_approvals(billing: Path) -> None:
    refunds = (billing / "payments/refunds.py").read_text()
    branch_with(billing, "refunds", {"payments/refunds.py": refunds + "\n# note\n"})
    done = gate(billing, "--format", "json")
    report = json.loads(done.stdout)
    assert done.returncode == 1 and report["verdict"] == "NEEDS APPROVAL"
    assert "payments-high-risk" in [r["name"] for r in report["rules"]]
    assert any("2 approvals from payments-team" in r for r in report["requirements"])
    # `--json`, as every other command takes it (it was refused as an unknown argument).
    assert json.loads(gate(billing, "--json").stdout) == report
    both = gate(billing, "--json", "--format", "markdown")
    assert both.returncode == 2 and "--json and --format markdown ask for two outputs" in both.stderr


def test_secrets_are_blocked_and_markdown_says_so(billing: Path) -> None:
    refunds = (billing / "payments/refunds.py").read_text()
    branch_with(billing, "oops", {"certs/server.pem": "-----BEGIN KEY-----\n",
                                  "payments/refunds.py": refunds + "\n# note\n"})
    done = gate(billing, "--format", "markdown")
    assert done.returncode == 1
    assert "BLOCKED" in done.stdout and "| no-secrets | block |" in done.stdout
    # The payments rule's approvals would not let it through: said as a block, not "Needs: 2 approvals".
    assert "**Blocked:** no approval lets it through, only an override with a reason" in done.stdout
    assert "**Needs:**" not in done.stdout and " · 2 files · 3 lines · " in done.stdout
    # A path's characters are shown, never read as markdown: `|` added a column, `<!--` hid the rest.
    git(billing, "checkout", "-q", "main")
    branch_with(billing, "odd", {"a|b<!--/conftest.py": "\n"})
    odd = gate(billing, "--head", "odd", "--format", "markdown").stdout
    assert "a\\|b&lt;!--/conftest.py" in odd and "<!--" not in odd, odd
    # A name with a line break fails closed, as the review refuses to judge it (it got past the conftest rules).
    git(billing, "checkout", "-q", "main")
    branch_with(billing, "broken", {"x\ny/conftest.py": "\n"})
    broken = gate(billing, "--head", "broken")
    assert broken.returncode == 2 and broken.stderr.count("\n") == 1, broken.stderr
    assert "changes files whose names loomtui cannot read ('x\\ny/conftest.py')" in broken.stderr, broken.stderr


def test_a_block_overridden_in_loomtui_is_named_by_the_gate_which_does_not_take_it(billing: Path) -> None:
    """The gate read BLOCKED with nothing said of the override the app had taken and merged by."""
    from loomtui.workflow.tasks import create_sandbox

    workspace = open_workspace(billing)
    record = create_sandbox(workspace, "a cert", "command", command=("true",))
    tree = Path(record.worktree or "")
    (tree / "certs").mkdir()
    (tree / "certs" / "server.pem").write_text("-----BEGIN KEY-----\n")
    git(tree, "add", "-A", "-f")  # the sample ignores *.pem
    git(tree, "commit", "-q", "--no-verify", "-m", "a cert")  # as an agent past its hook would
    head = git(tree, "rev-parse", "HEAD")
    escalation = workspace.store.add_escalation("post-gate", sandbox_id=record.id, data={
        "commit": head, "history": [{"event": "override", "by": "lead@example.com", "reason": "a test cert"}]})
    workspace.store.update_escalation(escalation.id, status="overridden")
    done = gate(billing, "--head", f"loom/{record.id}")
    assert done.returncode == 1 and done.stdout.startswith("loomtui gate: BLOCKED"), done.stdout
    assert (f"note: escalation #{escalation.id} was overridden in loomtui by lead@example.com (a test cert); this "
            "gate does not take overrides: the change merges through loomtui, which does") in done.stdout


def test_broken_policy_fails_closed(billing: Path) -> None:
    (billing / ".loom/policy.yaml").write_text("version: 1\nrules:\n  - name: x\n    decision: maybe\n")
    git(billing, "commit", "-qam", "break the policy on main")  # the gate judges by the base's policy
    branch_with(billing, "any", {"docs/note.md": "a note\n"})
    done = gate(billing)
    assert done.returncode == 2
    assert ".loom/policy.yaml:3" in done.stderr and "Traceback" not in done.stderr
    # Its line is the base's, not the file checked out (in CI, the branch's own): said so.
    assert "(the policy as main has it: `git show " in done.stderr, done.stderr


def test_unknown_refs_are_one_clear_error(billing: Path) -> None:
    done = subprocess.run([LOOMTUI, "gate", "--base", "nope"], cwd=billing, capture_output=True, text=True)
    assert done.returncode == 2 and "nope" in done.stderr and "Traceback" not in done.stderr


def test_a_main_line_named_otherwise_is_found_as_report_finds_it_never_the_branch_checked_out(billing: Path) -> None:
    """With only `trunk`, `gate` said "no base branch found" while `report` found it (init.defaultBranch)."""
    from loomtui.governance.gate import NoBaseBranch, default_base

    git(billing, "branch", "-m", "main", "trunk")
    template = (billing / "notifications/templates/refund_issued.txt").read_text()
    branch_with(billing, "typos", {"notifications/templates/refund_issued.txt": template.replace("recieve", "receive")})
    with pytest.raises(NoBaseBranch, match=r"name it with --base BRANCH"):
        default_base(billing)  # not `typos`, the change itself: judged against itself, it would pass anything
    done = subprocess.run([LOOMTUI, "gate"], cwd=billing, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("--base") == 1, done.stderr  # the hint said twice
    git(billing, "config", "init.defaultBranch", "trunk")
    assert default_base(billing) == "trunk"
    done = subprocess.run([LOOMTUI, "gate"], cwd=billing, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("loomtui gate: PASS"), (done.stdout, done.stderr)


def test_a_shallow_clone_without_the_branches_meeting_point_says_to_fetch_it(billing: Path, tmp_path: Path) -> None:
    """Cloned one commit deep, main moved on since the branch left it: the gate diffed against main's tip and
    read main's own later changes as the branch's, saying nothing."""
    branch_with(billing, "pr-docs", {"docs/runbook.md": "more\n"})
    git(billing, "checkout", "-q", "main")
    (billing / "payments" / "later.py").write_text("LATER = 1\n")
    git(billing, "add", "-A")
    git(billing, "commit", "-qm", "main moves on")
    clone = tmp_path / "ci"
    subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", "pr-docs", f"file://{billing}", str(clone)],
                   check=True, capture_output=True)
    subprocess.run(["git", "fetch", "-q", "--depth", "1", "origin", "main:refs/remotes/origin/main"], cwd=clone,
                   check=True, capture_output=True)
    done = subprocess.run([LOOMTUI, "gate", "--base", "origin/main", "--head", "HEAD"], cwd=clone,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "have no commit in common in this shallow clone" in done.stderr, done.stderr
    assert "git fetch --unshallow" in done.stderr and done.stderr.count("\n") == 1


def test_a_pull_requests_base_is_read_from_origin_and_one_that_names_no_branch_is_an_error(
        billing: Path, tmp_path: Path) -> None:
    # A release branch from before the payments code changed; in the CI clone it exists only as origin/release.
    git(billing, "branch", "release", git(billing, "rev-list", "--max-parents=0", "HEAD"))
    git(billing, "commit", "-q", "--allow-empty", "-m", "main moves on")
    clone = tmp_path / "ci"
    subprocess.run(["git", "clone", "-q", str(billing), str(clone)], check=True, capture_output=True)
    branch_with(clone, "pr-docs", {"docs/runbook.md": "more\n"})

    def gate_in_ci(base_ref: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LOOMTUI, "gate"], cwd=clone, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "GITHUB_BASE_REF": base_ref})

    judged = gate_in_ci("release")
    assert "origin/release.." in judged.stdout, judged.stdout + judged.stderr
    missing = gate_in_ci("no-such-branch")
    assert missing.returncode == 2 and missing.stdout == "", missing.stdout
    assert missing.stderr.count("\n") == 1 and "GITHUB_BASE_REF=no-such-branch names no branch here" in missing.stderr


def test_policy_explain_covers_both_stages(billing: Path) -> None:
    from loomtui.coordination.claims import ClaimRefused
    from loomtui.governance.coordinator import governed_coordinator
    from loomtui.governance.explain import explain_sandbox
    from loomtui.governance.policy import load_policy
    from loomtui.workflow.tasks import create_sandbox
    from loomtui.workspace import open_workspace

    workspace = open_workspace(billing)
    record = create_sandbox(workspace, "touch the ledger", "script",
                            script=_script(billing), claims=["payments/ledger.py::Ledger"])
    (Path(record.worktree) / "payments/refunds.py").write_text(
        (billing / "payments/refunds.py").read_text() + "\n# edited in the sandbox\n")
    explained = explain_sandbox(workspace, load_policy(billing), record.id)
    assert explained["claim"]["rules"] == ["ledger-claims"]
    assert explained["post-gate"]["paths"] == ["payments/refunds.py"]
    assert "payments-high-risk" in explained["post-gate"]["rules"]
    assert governed_coordinator(workspace).store.live_claims(record.id)
    # A task refused at its claims is recorded with no branch: its post-gate stage has nothing to
    # evaluate, and says so (it was git's "ambiguous argument" on stderr, exit 2).
    with pytest.raises(ClaimRefused):
        create_sandbox(workspace, "touch the ledger too", "script", script=_script(billing),
                       claims=["payments/ledger.py::Ledger"])
    [refused] = [s for s in workspace.store.list_sandboxes(include_archived=True) if s.status == "rejected"]
    nothing = explain_sandbox(workspace, load_policy(billing), refused.id)["post-gate"]
    assert nothing["outcome"] == "none" and nothing["paths"] == []
    assert nothing["explanation"] == [f"no change to evaluate: branch {refused.branch} does not exist"]


def test_claims_the_policy_requires_wait_for_approval_before_start(billing: Path) -> None:
    from loomtui.errors import LoomError
    from loomtui.governance.escalations import decide
    from loomtui.governance.policy import load_policy
    from loomtui.workflow.tasks import create_sandbox, start
    from loomtui.workspace import open_workspace

    workspace = open_workspace(billing)
    record = create_sandbox(workspace, "rework the ledger", "script", script=_script(billing),
                            claims=["payments/ledger.py::Ledger"])
    waiting = record.data["awaiting_escalation"]
    [escalation] = workspace.store.list_escalations("open")
    assert escalation.id == waiting and escalation.kind == "pre-start" and escalation.risk == "critical"
    with pytest.raises(LoomError, match="waits for approval"):
        start(workspace, record.id)
    lead = open_workspace(billing)
    lead.actor = "lead@example.com"
    assert decide(lead, load_policy(billing), waiting, "approve").status == "approved"
    # What it shows counts the approval given before there was any commit to give it on.
    shown = run_cli(billing, "escalation", "show", str(waiting)).stdout
    assert "1 of 1 approval" in shown and "0 of 1" not in shown, shown
    start(workspace, record.id)
    wait_until(lambda: any(e.action == "sandbox.running" and e.subject == record.id
                           for e in workspace.audit.entries()), what="the agent started")


def test_claims_the_policy_blocks_reject_the_sandbox(billing: Path) -> None:
    from loomtui.errors import LoomError
    from loomtui.execution.sandboxes import get_sandbox
    from loomtui.workflow.tasks import create_sandbox
    from loomtui.workspace import open_workspace

    (billing / "secrets.env").write_text("X=1\n")
    policy = billing / ".loom/policy.yaml"
    policy.write_text(policy.read_text().replace('"**/.env"]', '"**/.env", "secrets.env"]'))
    workspace = open_workspace(billing)
    with pytest.raises(LoomError, match="blocks its claims"):
        create_sandbox(workspace, "read secrets", "script", script=_script(billing), claims=["secrets.env"])
    [record] = workspace.store.list_sandboxes()
    assert get_sandbox(workspace, record.id).status == "rejected"


def _script(repo: Path) -> Path:
    path = repo.parent / "noop.yaml"
    path.write_text('- {log: "nothing"}\n')
    return path


def test_escalation_cli_lists_and_decides(billing: Path) -> None:
    from loomtui.workflow.tasks import create_sandbox
    from loomtui.workspace import open_workspace

    record = create_sandbox(open_workspace(billing), "rework the ledger", "script", script=_script(billing),
                            claims=["payments/ledger.py::Ledger"])
    waiting = record.data["awaiting_escalation"]
    listing = subprocess.run([LOOMTUI, "escalation", "list", "--json"], cwd=billing, capture_output=True, text=True)
    assert [e["id"] for e in json.loads(listing.stdout)] == [waiting]
    env = {**__import__("os").environ, "LOOM_USER": "carol@example.com"}
    refused = subprocess.run([LOOMTUI, "escalation", "approve", str(waiting)], cwd=billing,
                             capture_output=True, text=True, env=env)
    assert refused.returncode == 1 and "leads" in refused.stderr
    env["LOOM_USER"] = "lead@example.com"
    done = subprocess.run([LOOMTUI, "escalation", "approve", str(waiting)], cwd=billing,
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "now approved" in done.stdout
    rejected = subprocess.run([LOOMTUI, "escalation", "reject", str(waiting)], cwd=billing,
                              capture_output=True, text=True, env=env)
    assert rejected.returncode == 2 and "--reason" in rejected.stderr


def test_a_branch_cannot_loosen_the_policy_that_judges_it(billing: Path) -> None:
    policy = (billing / ".loom/policy.yaml").read_text()
    loosened = policy.replace("rules:\n", "rules:\n  - name: anything-goes\n    when: {paths: ['**']}\n"
                                          "    decision: auto_approve\n", 1)
    ledger = (billing / "payments/ledger.py").read_text()
    branch_with(billing, "sneaky", {".loom/policy.yaml": loosened, "payments/ledger.py": ledger + "\n# x\n"})
    done = gate(billing, "--format", "json")
    report = json.loads(done.stdout)
    assert done.returncode == 1 and report["verdict"] == "NEEDS APPROVAL"
    assert "anything-goes" not in [r["name"] for r in report["rules"]]
    assert any("judged by the base's policy" in note for note in report["notes"])
    # Without a store, whose change it is comes from the head commit, which can name anyone: said.
    assert any(note.startswith("separation of duties: the author is ") and "a commit can name anyone" in note
               for note in report["notes"]), report["notes"]


def test_a_branch_forked_before_the_policy_tightened_is_judged_by_the_policy_it_merges_into(billing: Path) -> None:
    """The gate read the policy at the merge base: a branch forked from an old commit of main picked the
    looser policy of its choosing, and the same change BLOCKED from the tip passed from there."""
    policy = (billing / ".loom/policy.yaml").read_text()
    loose = policy.replace("rules:\n", "rules:\n  - name: anything-goes\n    when: {paths: ['**']}\n"
                                       "    decision: auto_approve\n", 1)
    (billing / ".loom/policy.yaml").write_text(loose)
    git(billing, "commit", "-qam", "an old, loose policy")
    git(billing, "branch", "old-main")
    (billing / ".loom/policy.yaml").write_text(policy)
    git(billing, "commit", "-qam", "the policy tightened")
    ledger = (billing / "payments/ledger.py").read_text()
    git(billing, "checkout", "-q", "old-main")
    branch_with(billing, "forked-early", {"payments/ledger.py": ledger + "\n# x\n"})
    report = json.loads(gate(billing, "--format", "json").stdout)
    assert report["verdict"] == "NEEDS APPROVAL" and "anything-goes" not in [r["name"] for r in report["rules"]]


def test_the_gate_takes_a_sandboxs_author_from_its_record_as_its_review_does(billing: Path) -> None:
    """The commits' author is the agent's git identity: the task's author's own approval was counted
    here (PASS) while the review refused it (separation of duties)."""
    import time

    from loomtui.governance.gate import run_gate
    from loomtui.store import EscalationRecord, SandboxRecord
    from loomtui.workspace import open_workspace

    refunds = (billing / "payments/refunds.py").read_text()
    branch_with(billing, "loom/ab12cd", {"payments/refunds.py": refunds + "\n# note\n"})
    head = git(billing, "rev-parse", "HEAD")
    git(billing, "checkout", "-q", "main")
    workspace = open_workspace(billing)
    now = time.time()
    workspace.store.add_sandbox(SandboxRecord("ab12cd", "a change", "script", "awaiting_review", now, now,
                                              branch="loom/ab12cd", data={"created_by": "mia@example.com"}))
    approvers = ("mia@example.com", "alice@example.com", "bob@example.com")
    workspace.store.bulk_add_escalations([EscalationRecord(
        0, "ab12cd", "post-gate", "open", "high", "", now, now,
        {"approvals": [{"user": user, "commit": head, "at": now} for user in approvers]})])
    [escalation] = workspace.store.sandbox_escalations("ab12cd", ("post-gate",))
    # The store's row alone is no decision: written by hand (anyone with the team store's credentials), the
    # approvals passed the gate, though the merge refused them.
    forged = run_gate(billing, base="main", head="loom/ab12cd", store=workspace.store)
    assert forged.approvals == () and not forged.approved
    assert (f"the approval by bob@example.com of escalation #{escalation.id} in the store has no decision in the "
            "audit log: it does not count (`loomtui audit verify`)") in forged.notes
    for user in approvers[:2]:  # as `escalation approve` records them: mia's own, and alice's
        workspace.actor = user
        workspace.record("escalation.approve", str(escalation.id), {"by": user, "commit": head, "status": "open"})
    report = run_gate(billing, base="main", head="loom/ab12cd", store=workspace.store)
    assert report.approvals == approvers[:2]
    assert report.facts.author == "mia@example.com" and not report.approved  # her own does not count
    # CI checks out the commit (`--head HEAD`, a detached checkout, `origin/loom/...`): the same change, the same
    # report (by its id it read NEEDS APPROVAL with no approval and no author from the store).
    git(billing, "branch", "-q", "copy-of-it", head.strip())
    for named in (head.strip(), "copy-of-it", "origin/loom/ab12cd"):
        if named.startswith("origin/"):
            git(billing, "update-ref", "refs/remotes/origin/loom/ab12cd", head.strip())
        same = run_gate(billing, base="main", head=named, store=workspace.store)
        assert (same.approvals, same.facts.author) == (approvers[:2], "mia@example.com"), named
    git(billing, "remote", "add", "origin", str(billing))
    git(billing, "branch", "-q", "feature/loom/ab12cd", "main")  # another branch, named alike: not that sandbox
    other = run_gate(billing, base="main", head="feature/loom/ab12cd", store=workspace.store)
    assert other.approvals == () and other.facts.author != "mia@example.com"
    workspace.close()


def test_a_repository_with_no_commits_is_said_to_have_none(tmp_path: Path) -> None:
    """It said "no base branch found (none of ... master ...)" where master was there, with no commit yet."""
    from tests.conftest import run_cli

    repo = tmp_path / "empty"
    git(tmp_path, "init", "-q", str(repo))
    done = run_cli(repo, "gate")
    assert done.returncode == 2 and done.stderr == (
        "loomtui: error: the repository has no commits yet: the gate judges a branch's commits against its base's\n")
