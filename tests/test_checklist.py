"""`loomtui checklist`: the article's ten items answered from evidence, on small crafted repositories.

Each item is shown passing and failing: a repository is given (or denied) the files and
records that item reads, through the same store and audit APIs the engines use.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loomtui.execution import isolation
from loomtui.execution.isolation import IsolationStatus
from loomtui.observability.checklist import (
    BANDS,
    Checklist,
    Item,
    band_for,
    cached_checklist,
    checklist,
    verdict,
)
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import git, run_cli

GATES = ('gates:\n  - name: tests\n    run: ["python", "-c", "pass", "--junitxml={report}"]\n    format: junit\n'
         '  - name: compile\n    run: ["python", "-c", "pass"]\n')
POLICY = """\
version: 1
groups:
  payments-team: [alice@example.com, bob@example.com]
  leads: [lead@example.com]
rules:
  - name: payments
    when: {paths: ["payments/**"]}
    risk: high
    decision: require
    approvals: {groups: [payments-team], count: 1}
  - name: docs
    when: {paths: ["docs/**"]}
    decision: auto_approve
"""
ADR = "# 1. Keep a README\n\n## Status\n\nAccepted\n\n## Decision\n\nEvery service has a `README.md`.\n"
CI = "on: pull_request\njobs:\n  gate:\n    steps:\n      - run: python -m loomtui gate --base main --format markdown\n"
SCORE = {"total": 90, "passed": True, "items": [{"name": "tests", "status": "pass", "points": 20, "weight": 20,
                                                 "headline": "", "evidence": []}]}


def write(root: Path, files: dict[str, str], message: str = "files") -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


@pytest.fixture
def bwrap(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """bubblewrap works (whatever this machine has): item 1 then depends on the sandboxes alone."""
    monkeypatch.setattr(isolation, "isolation_status",
                        lambda: IsolationStatus(True, "/usr/bin/bwrap", "bubblewrap at /usr/bin/bwrap"))
    yield


@pytest.fixture
def ws(repo: Path) -> Iterator[Workspace]:
    workspace = open_workspace(repo)
    yield workspace
    workspace.close()


def add_sandbox(ws: Workspace, sid: str, status: str = "merged", isolated: str = "bwrap", ran: bool = True,
                **data: object) -> None:
    """A sandbox record; `ran`: its agent started (the `sandbox.running` entry the engine writes then)."""
    now = time.time()
    ws.store.add_sandbox(SandboxRecord(sid, f"task {sid}", "script", status, now, now, base_ref="main",
                                       branch=f"loom/{sid}", isolation=isolated, data=dict(data)))
    if ran:
        ws.record("sandbox.running", sid, {"from": "planned", "to": "running"})


def item(ws: Workspace, number: int) -> Item:
    return checklist(ws).items[number - 1]


def merge_with_trailers(repo: Path, sid: str, trailers: str) -> None:
    """A merge commit on main like loomtui's, carrying `trailers`."""
    git(repo, "checkout", "-q", "-b", f"loom/{sid}")
    write(repo, {f"work/{sid}.txt": sid}, f"agent work {sid}")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", f"loom/{sid}", "-m", f"Merge loom/{sid} into main\n\n{trailers}")


def well_run(repo: Path, ws: Workspace) -> None:
    """Everything the ten items look for: files, records, audit entries and a merge with trailers."""
    write(repo, {"AGENTS.md": "# Conventions\n\n## Money\n\nUse Decimal.\n", "docs/adr/0001-keep-a-readme.md": ADR,
                 ".loom/loom.yaml": GATES, ".loom/policy.yaml": POLICY, ".github/workflows/loomtui.yml": CI})
    add_sandbox(ws, "s1", context={"version": "v1", "sections": [{"id": "repo:AGENTS.md#Money"}]})
    ws.record("context.sliced", "s1", {"version": "v1", "sections": ["repo:AGENTS.md#Money"]})
    ws.store.add_claim("s1", "work/s1.txt", "exclusive", "work", time.time() + 3600, ["work/s1.txt"])
    run = ws.store.add_gate_run("s1", "tests", "abc")
    ws.store.finish_gate_run(run.id, "passed", {"duration_s": 12.5})
    ws.store.add_eval_report("s1", "sandbox", "abc", "fp", {"score": SCORE})
    for action in ("gate.passed", "eval.run", "policy.evaluated"):
        ws.record(action, "s1", {})
    ws.record("sandbox.approved", "s1", {"from": "awaiting_review", "to": "approved"})
    ws.record("sandbox.merged", "s1", {"from": "approved", "to": "merged"})
    merge_with_trailers(repo, "s1", "Loom-Sandbox: s1\nLoom-Runtime: script\nLoom-Approved-by: alice@example.com\n"
                                    "Loom-Audit: 3 abc log=x")


# -- the score, the verdict and the whole -----------------------------------------------------


def test_verdict_bands_follow_the_article() -> None:
    assert "better shape than most orgs" in verdict(7) and "focus on the gaps" in verdict(9.5)
    assert "unchecked items, not the build-vs-buy question" in verdict(3.5)
    assert "unchecked items" in verdict(0)
    for between in (4, 5.5, 6.5):
        assert "partway" in verdict(between) and "better shape" not in verdict(between)


def test_a_bare_repository_scores_under_4(ws: Workspace) -> None:
    result = checklist(ws)
    assert [i.number for i in result.items] == list(range(1, 11))
    assert result.score == sum(i.points for i in result.items) < 4
    assert result.verdict == verdict(result.score)
    for each in result.items:
        assert each.evidence, each.number
        assert each.next_step if each.answer != "yes" else not each.next_step


def test_a_well_run_repository_answers_yes_to_all_ten(repo: Path, ws: Workspace, bwrap: None) -> None:
    well_run(repo, ws)
    result = checklist(ws)
    assert {i.number: i.answer for i in result.items} == dict.fromkeys(range(1, 11), "yes"), \
        [(i.number, i.evidence) for i in result.items if i.answer != "yes"]
    assert result.score == 10 and "better shape than most orgs" in result.verdict
    assert result.elapsed_s < 5  # a generous bound; `bench`-style figures are printed by the CLI


def test_between_4_and_7_the_verdict_is_ours(repo: Path, ws: Workspace, bwrap: None) -> None:
    well_run(repo, ws)
    git(repo, "rm", "-q", "-r", "AGENTS.md", "docs", ".loom/policy.yaml")
    git(repo, "commit", "-q", "-m", "no conventions, no decisions, no policy")
    result = checklist(ws)
    assert [i.number for i in result.items if i.answer == "no"] == [2, 3, 6, 7]
    assert result.score == 6 and "partway" in result.verdict


# -- each item, passing and failing --------------------------------------------------------------


def test_1_isolation(ws: Workspace, bwrap: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert item(ws, 1).answer == "partly"  # bwrap works, but no agent has run in a sandbox
    add_sandbox(ws, "iso", status="running")
    assert item(ws, 1).answer == "yes"
    add_sandbox(ws, "bare", status="running", isolated="none")
    one = item(ws, 1)
    assert one.answer == "partly" and "not isolated: bare" in " ".join(one.evidence)
    monkeypatch.setattr(isolation, "isolation_status",
                        lambda: IsolationStatus(False, None, "bubblewrap (bwrap) is not installed: agents run NOT"))
    assert "bubblewrap" in item(ws, 1).next_step


def test_1_isolation_without_bwrap_or_sandboxes_is_no(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "isolation_status",
                        lambda: IsolationStatus(False, None, "bubblewrap (bwrap) is not installed: agents run NOT"))
    assert item(ws, 1).answer == "no"


def test_2_conventions(repo: Path, ws: Workspace) -> None:
    first = item(ws, 2)
    assert first.answer == "no" and "AGENTS.md" in first.next_step
    write(repo, {"AGENTS.md": "# Conventions\n\n## Errors\n\nRaise, never return None.\n"})
    assert item(ws, 2).answer == "partly"  # written, but no agent session has got it yet
    add_sandbox(ws, "got", context={"version": "v", "sections": [{"id": "repo:AGENTS.md#Money"}]})
    assert item(ws, 2).answer == "yes"
    add_sandbox(ws, "empty", context={"version": "v", "sections": []})  # none of the conventions reached it
    ws.record("context.sliced", "empty", {"version": "v", "sections": []})
    emptied = item(ws, 2)
    assert emptied.answer == "partly" and "no slice, or an empty one: empty" in emptied.evidence
    assert "1 of 2 started sandboxes got a slice with a section of them" in " ".join(emptied.evidence)
    add_sandbox(ws, "missed")
    missed = item(ws, 2)
    assert missed.answer == "partly" and "no slice, or an empty one: empty, missed" in missed.evidence
    assert "refresh" not in missed.next_step  # merged: `context refresh` refuses it
    add_sandbox(ws, "waiting", status="exited")
    add_sandbox(ws, "lost", status="failed", worktree_missing=True)  # `context refresh` refuses it too
    assert "`loomtui context refresh SANDBOX` for waiting;" in item(ws, 2).next_step


def test_3_adrs(repo: Path, ws: Workspace) -> None:
    assert item(ws, 3).answer == "no"
    write(repo, {"docs/decisions/0001-keep-a-readme.md": ADR})
    unsourced = item(ws, 3)  # an ADR the default sources do not read is not consumable
    assert unsourced.answer == "no" and "context.sources" in unsourced.next_step
    write(repo, {"docs/adr/0001-keep-a-readme.md": ADR})
    assert item(ws, 3).answer == "partly"  # the one under docs/decisions is still left out
    git(repo, "rm", "-q", "-r", "docs/decisions")
    git(repo, "commit", "-q", "-m", "one place for decisions")
    assert item(ws, 3).answer == "yes"
    write(repo, {"docs/adr/0002-ledger.md": ADR.replace("README.md", "payments/ledger.py").replace("1.", "2.")})
    stale = item(ws, 3)
    assert stale.answer == "partly" and "missing" in " ".join(stale.evidence)


def test_4_test_suite(repo: Path, ws: Workspace) -> None:
    assert item(ws, 4).answer == "no"  # no gates
    write(repo, {".loom/loom.yaml": 'gates:\n  - name: lint\n    run: ["ruff", "check", "."]\n'})
    assert item(ws, 4).answer == "no"  # a check, but no test runner
    write(repo, {".loom/loom.yaml": GATES})
    assert item(ws, 4).answer == "partly"  # never run: its time is unknown
    add_sandbox(ws, "fast")
    for gate, seconds in (("tests", 40.0), ("compile", 2.0)):
        run = ws.store.add_gate_run("fast", gate, "c1")
        ws.store.finish_gate_run(run.id, "passed", {"duration_s": seconds})
    fast = item(ws, 4)
    assert fast.answer == "yes" and fast.facts["slowest_s"] == 42.0
    for sid in ("slow", "slower"):
        add_sandbox(ws, sid)
        run = ws.store.add_gate_run(sid, "tests", "c2")
        ws.store.finish_gate_run(run.id, "passed", {"duration_s": 400.0})
    slow = item(ws, 4)
    assert slow.answer == "no" and slow.facts["median_s"] == 400.0
    assert "5 minutes" in slow.next_step


def test_4_counts_the_baseline_runs_too(repo: Path, ws: Workspace) -> None:
    write(repo, {".loom/loom.yaml": GATES})
    add_sandbox(ws, "based", base_sha="b" * 40)
    for gate in ("tests", "compile", "tests"):  # the second `tests` is a re-run: it replaces the first
        run = ws.store.add_gate_run("", gate, "b" * 40, scope="baseline")
        ws.store.finish_gate_run(run.id, "passed", {"result": {"duration_s": 200.0}})
    based = item(ws, 4)
    assert based.facts["runs"] == 1 and based.facts["slowest_s"] == 400.0 and based.answer == "no"


def test_5_behavioural_verification(repo: Path, ws: Workspace) -> None:
    assert item(ws, 5).answer == "no"
    write(repo, {".loom/loom.yaml": GATES})
    assert item(ws, 5).answer == "partly"  # gates, but gate 2 has scored nothing
    add_sandbox(ws, "scored")
    ws.store.add_eval_report("scored", "sandbox", "c", "fp", {"score": SCORE})
    assert item(ws, 5).answer == "yes"


def test_6_policy_enforced(repo: Path, ws: Workspace) -> None:
    none = item(ws, 6)
    assert none.answer == "no" and "policy.yaml" in none.next_step
    write(repo, {".loom/policy.yaml": "version: 1\nrules:\n  - name: x\n    decision: maybe\n"})
    broken = item(ws, 6)
    assert broken.answer == "no" and ".loom/policy.yaml:" in broken.evidence[0]
    write(repo, {".loom/policy.yaml": POLICY})
    written = item(ws, 6)
    assert written.answer == "partly" and "enforced by convention only" in written.evidence
    ws.record("policy.evaluated", "s1", {})
    assert item(ws, 6).answer == "partly"  # reviews apply it, but CI does not: a merge can skip it
    write(repo, {".github/workflows/ci.yml": CI.replace("loomtui gate", "pytest")})
    assert item(ws, 6).answer == "partly"
    # Commented out, it is no CI job (it scored the item yes, and the checklist 10 of 10).
    write(repo, {".github/workflows/ci.yml": CI.replace("      - run: python -m loomtui", "      # - run: python -m loomtui")})
    assert item(ws, 6).answer == "partly"
    # Nor is a word of another command's, or a step's name (`echo "loomtui gate is disabled"` scored it yes).
    for line in ('      - run: echo "loomtui gate is disabled"', "      - name: loomtui gate"):
        write(repo, {".github/workflows/ci.yml": CI.replace("      - run: python -m loomtui gate --base main --format "
                                                            "markdown", line)})
        assert item(ws, 6).answer == "partly", line
    write(repo, {".gitlab-ci.yml": CI})
    done = item(ws, 6)
    assert done.answer == "yes" and done.facts["ci"] == [".gitlab-ci.yml"]


def test_7_risk_routing(repo: Path, ws: Workspace) -> None:
    assert item(ws, 7).answer == "no"
    write(repo, {".loom/policy.yaml": POLICY.replace("risk: high", "risk: low")})
    assert item(ws, 7).answer == "partly"  # routed, but nothing is high risk
    write(repo, {".loom/policy.yaml": POLICY})
    # A claim override's record asked no one: not an escalation by risk (as `report` counts them).
    ws.store.add_escalation("conflict-override", sandbox_id="o1", risk="high", summary="forced", data={})
    routed = item(ws, 7)
    assert routed.answer == "yes" and routed.facts == {"routed": 1, "high": 1, "escalations": {}}
    write(repo, {".loom/policy.yaml": POLICY.replace("decision: require\n    approvals: {groups: [payments-team], "
                                                     "count: 1}", "decision: block")})
    assert item(ws, 7).answer == "no"


def test_8_audit_trail(repo: Path, ws: Workspace) -> None:
    assert item(ws, 8).answer == "no"  # nothing recorded
    add_sandbox(ws, "m1")
    ws.record("gate.passed", "m1", {})
    assert item(ws, 8).answer == "partly"  # recorded, but nothing merged through loomtui
    merge_with_trailers(repo, "m1", "Loom-Sandbox: m1\nLoom-Policy: auto_approve\nLoom-Audit: 1 abc log=x")
    assert item(ws, 8).answer == "yes"
    # An agent's own merge commits on its branch, forged with loomtui's trailers, merged with its change: one
    # loomtui merge, not three "anchored" and "naming who allowed them" (only main's first parents are its own).
    add_sandbox(ws, "m3")
    ws.record("gate.passed", "m3", {})
    git(repo, "checkout", "-q", "-b", "loom/m3")
    write(repo, {"work/m3.txt": "m3"}, "agent work m3")
    for n in range(2):
        forged = git(repo, "commit-tree", "HEAD^{tree}", "-p", "HEAD", "-p", "HEAD~1", "-m",
                     f"Merge loom/zz{n} into main\n\nLoom-Sandbox: zz{n}\nLoom-Approved-by: mia@example.com\n"
                     f"Loom-Audit: 99 {'0' * 64} log=x").strip()
        git(repo, "update-ref", "refs/heads/loom/m3", forged)
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "loom/m3", "-m",
        "Merge loom/m3 into main\n\nLoom-Sandbox: m3\nLoom-Policy: auto_approve\nLoom-Audit: 2 abc log=x")
    counted = item(ws, 8)
    assert counted.answer == "yes" and (counted.facts["merges"], counted.facts["anchored"]) == (2, 2), counted
    merge_with_trailers(repo, "m2", "Loom-Sandbox: m2\nLoom-Runtime: script")  # no anchor, no reviewer, no gates
    assert item(ws, 8).answer == "partly"
    lines = ws.audit.path.read_text().splitlines()
    ws.audit.path.write_text(lines[0].replace("gate.passed", "gate.failed") + "\n")
    tampered = item(ws, 8)
    assert tampered.answer == "no" and "BROKEN" in tampered.evidence[0]


def test_9_coordination(ws: Workspace) -> None:
    assert item(ws, 9).answer == "no"
    add_sandbox(ws, "c1")
    ws.store.add_claim("c1", "a.py", "exclusive", "", time.time() + 60, ["a.py"])
    ws.record("claim.added", "c1", {"conflicts": [{"kind": "dependency"}]})
    ws.record("claim.refused", "c2", {})
    claimed = item(ws, 9)
    assert claimed.answer == "yes" and claimed.facts["flagged"] == 2
    ws.record("sandbox.merge_conflict", "c1", {"paths": ["a.py"]})
    conflicted = item(ws, 9)
    assert conflicted.answer == "partly"
    # Every task had its claims: the advice is where claims did not reach, not "give every task its claims".
    assert "give every task its claims" not in conflicted.next_step and "claim the code tasks share" in \
        conflicted.next_step
    # The same merge tried again (the app retries a waiting merge each time the branch moves): one conflict.
    ws.record("sandbox.merge_conflict", "c1", {"paths": ["a.py"]})
    ws.record("hook.commit_refused", "c1", {"paths": ["b.py"]})
    again = item(ws, 9)
    assert again.facts["merge_conflicts"] == 1
    # Refused commits said as commits: one refused claim and one refused commit read "2 refused claims".
    assert "flagged before generation: 1 claim or agent edit refused, 1 agent commit refused" in " ".join(
        again.evidence)
    # Plans ordered because their tasks' code collides, not those ordered only by a person's `after:`.
    ws.record("plan.scheduled", "r1", {"edges": [{"before": "a", "after": "b", "kind": "after"}]})
    ws.record("plan.scheduled", "r2", {"edges": [{"before": "a", "after": "b", "kind": "dependency"}]})
    assert "2 plans ordered (1 by the code their tasks share)" in " ".join(item(ws, 9).evidence)
    # A claim refused that a lead then overrode kept nothing off (both hold the code), as `report` says it.
    ws.record("claim.refused", "c3", {"target": "d.py"})
    ws.record("claim.override", "c3", {"target": "d.py", "claim": 7, "reason": "hotfix"})
    assert "1 claim or agent edit refused" in " ".join(item(ws, 9).evidence)
    # A refused commit whose change a lead let merge over the claim: left out, and said so (it was unsaid).
    ws.record("hook.commit_refused", "c4", {"paths": ["e.py"]})
    ws.record("escalation.opened", "9", {"kind": "post-gate", "sandbox": "c4", "rules": ["held-by-another (built in)"]})
    ws.record("sandbox.merged", "c4", {})
    said = " ".join(item(ws, 9).evidence)
    assert "1 agent commit refused (not counting those of 1 sandbox merged over another's claim" in said, said
    # One that met its holder's change at merge anyway (the holder merged first and let go): not kept off.
    ws.record("hook.commit_refused", "c5", {"paths": ["f.py"]})
    ws.record("sandbox.merge_conflict", "c5", {"target": "main", "paths": ["f.py"]})
    assert "1 agent commit refused" in " ".join(item(ws, 9).evidence)


def test_9_a_sandbox_started_without_claims_is_partly(ws: Workspace) -> None:
    add_sandbox(ws, "c1")
    add_sandbox(ws, "loose")
    ws.store.add_claim("c1", "a.py", "exclusive", "", time.time() + 60, ["a.py"])
    loose = item(ws, 9)
    assert loose.answer == "partly" and "started without claims: loose" in loose.evidence


def test_9_claims_held_under_names_that_are_no_sandbox_are_not_counted_as_sandboxes(ws: Workspace) -> None:
    add_sandbox(ws, "c1")
    for holder, target in (("c1", "a.py"), ("alice", "b.py"), ("ci-bot", "c.py")):
        ws.store.add_claim(holder, target, "exclusive", "", time.time() + 60, [target])
    counted = item(ws, 9)
    assert counted.evidence[0] == "1 of 1 started sandbox held claims (3 claims in all)"  # was "3 claims by 3 of 1"
    assert (counted.facts["claimed"], counted.facts["started"], counted.facts["claims"]) == (1, 1, 3)


@pytest.mark.parametrize("branch", ["main", "master"])
def test_10_in_a_repository_without_commits_says_so(tmp_path: Path, branch: str) -> None:
    git(tmp_path, "init", "-q", "-b", branch)
    workspace = open_workspace(tmp_path)
    try:
        answered = item(workspace, 10)  # "no main branch"; then "main" where HEAD names master
        assert answered.evidence == (f"{branch} has no commits yet",)
        assert answered.next_step == f"commit to a `{branch}` branch, then `loomtui report`"
    finally:
        workspace.close()


def test_10_acceptance_this_week(ws: Workspace) -> None:
    nothing = item(ws, 10)
    assert nothing.answer == "no" and "report" in nothing.next_step
    for sid, outcome in (("ok", "merged"), ("nope", "rejected")):
        add_sandbox(ws, sid, status=outcome)
        ws.record(f"sandbox.{outcome}", sid, {"from": "awaiting_review", "to": outcome})
    known = item(ws, 10)
    assert known.answer == "yes" and known.facts["acceptance_rate"] == 0.5
    assert "acceptance 50%" in known.evidence[0]
    with ws.store.transaction():  # 300 of 301: not "100%", as `report` and the app say it
        for number in range(299):
            add_sandbox(ws, f"m{number}", status="merged")
            ws.record("sandbox.merged", f"m{number}", {"from": "approved", "to": "merged"})
    assert "acceptance >99%" in item(ws, 10).evidence[0]


# -- the org-size bands ---------------------------------------------------------------------------


def test_band_edges() -> None:
    assert [band_for(n).name for n in (1, 4, 5, 29, 30, 199, 200, 999, 1000, 10**6)] == [
        "5-30", "5-30", "5-30", "5-30", "30-200", "30-200", "200-1000", "200-1000", "1000+", "1000+"]
    assert [b.name for b in BANDS] == ["5-30", "30-200", "200-1000", "1000+"]
    with pytest.raises(ValueError):
        band_for(0)


def test_org_size_lists_what_the_band_lacks(repo: Path, ws: Workspace, bwrap: None) -> None:
    small = checklist(ws, 10).band
    assert small is not None and small.band.name == "5-30" and len(small.requirements) == 3
    assert {r.text for r in small.lacking} == {r.text for r in small.requirements}  # a bare repository
    well_run(repo, ws)
    for size, band, lacking in ((10, "5-30", set()), (50, "30-200", set()), (500, "200-1000", set()),
                                (5000, "1000+", {"multiple context layers (org-wide, business-unit, team)",
                                                 "governance for many regimes and teams: signed decisions, an "
                                                 "anchored audit log"})):
        report = checklist(ws, size).band
        assert report is not None and report.band.name == band
        assert {r.text for r in report.lacking} == lacking, size
    unknown = [r.text for r in report.requirements if r.met is None]
    assert unknown == ["an engineer who owns the AI coordination layer", "a dedicated AI platform team"]
    # The file there, but an agent started without it: not "in every agent's context" (item 2 said otherwise).
    from dataclasses import replace

    from loomtui.observability.checklist import band_report

    items = [replace(i, answer="partly", next_step="give every agent its slice") if i.number == 2 else i
             for i in checklist(ws).items]
    [shared] = [r for r in band_report(10, items).requirements if r.text.startswith("one shared conventions")]
    assert shared.met is False and "item 2 partly: not every agent got it" in shared.evidence, shared


def test_cli_prints_items_score_verdict_and_band(repo: Path, bwrap: None) -> None:
    done = run_cli(repo, "checklist", "--org-size", "40")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert " 1  partly   [Execution]" in out and "10  no       [Observability]" in out
    assert "next: " in out and "score " in out and "unchecked items" in out
    assert "org size 40: the 30-200 band: Context layer + governance policy + eval harness" in out
    assert "LACKS a governance policy codified in CI config" in out
    assert "\n  lacks 6 of 7 for 30-200: " in out


def test_cli_json_has_everything(repo: Path, ws: Workspace, bwrap: None) -> None:
    well_run(repo, ws)
    done = run_cli(repo, "checklist", "--json", "--org-size", "3")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["score"] == 10 and data["max"] == 10 and "better shape" in data["verdict"]
    assert [i["answer"] for i in data["items"]] == ["yes"] * 10
    assert data["items"][3]["facts"]["slowest_s"] == 12.5
    assert data["org_size"]["band"] == "5-30" and data["org_size"]["lacking"] == []
    plain = json.loads(run_cli(repo, "checklist", "--json").stdout)
    assert plain["org_size"] is None


@pytest.mark.parametrize("size", ["0", "-5", "abc", "1.5", ""])
def test_bad_org_size_is_one_line_and_exit_2(repo: Path, size: str) -> None:
    done = run_cli(repo, "checklist", "--org-size", size)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "--org-size" in done.stderr


def test_outside_a_repository_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "checklist")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "not inside a git repository" in done.stderr


def test_a_broken_config_leaves_its_items_unknown_and_keeps_the_rest(repo: Path, ws: Workspace,
                                                                     bwrap: None) -> None:
    write(repo, {".loom/loom.yaml": "gates: 7\n"})
    result = checklist(ws, 40)
    assert isinstance(result, Checklist) and len(result.items) == 10
    assert result.items[3].answer == "unknown" and "could not check: .loom/loom.yaml:1" in result.items[3].evidence[0]
    assert result.items[7].evidence[0].startswith("`audit verify`")  # the audit item does not need the config
    unknown = [item.number for item in result.unknown]
    # Item 10 reads the history, partly (a config's agent trailers unread), as `report` does.
    assert unknown == [2, 3, 4, 5, 6, 7] and result.header.endswith("/10?")  # each was scored "no"
    assert result.verdict.startswith("no verdict: 6 items could not be checked")
    assert result.band is not None and not any(4 in r.items or 5 in r.items for r in result.band.lacking)
    done = run_cli(repo, "checklist", "--org-size", "40")
    assert done.returncode == 1 and "  unknown  [Eval]" in done.stdout and "no verdict" in done.stdout
    data = json.loads(run_cli(repo, "checklist", "--json").stdout)
    assert data["unknown"] == unknown and data["items"][3]["points"] == 0


def test_sandboxes_that_never_ran_are_not_started(ws: Workspace, bwrap: None) -> None:
    add_sandbox(ws, "ran", context={"version": "v1", "sections": [{"id": "repo:AGENTS.md#Money"}]})
    add_sandbox(ws, "never", status="rejected", isolated="none", ran=False)  # its claim refused before start
    add_sandbox(ws, "again", status="planned")  # ran, then planned to run again
    ws.record("context.sliced", "again", {})
    one = item(ws, 1)
    assert one.answer == "yes" and one.evidence[1] == "2 of 2 started sandboxes ran under bubblewrap"  # was 2 of 3
    assert "never" not in " ".join(item(ws, 2).evidence) and item(ws, 9).facts["started"] == 2


def test_a_damaged_audit_file_does_not_hide_sandboxes_that_ran(ws: Workspace, bwrap: None) -> None:
    """The entries were read from the file (a mirror): cut, it made a bare sandbox vanish and item 1 "yes"."""
    add_sandbox(ws, "aaa")
    add_sandbox(ws, "bbb", isolated="none")
    log = ws.paths.audit_path
    log.write_bytes(log.read_bytes().splitlines(keepends=True)[0])
    isolation_item = item(ws, 1)
    assert isolation_item.answer == "partly" and isolation_item.evidence[1].startswith("1 of 2 started sandboxes")


def test_checklist_and_report_count_the_same_branch(repo: Path, ws: Workspace) -> None:
    from loomtui.observability.metrics import compute_metrics

    git(repo, "branch", "-m", "main", "trunk")
    git(repo, "config", "init.defaultBranch", "trunk")
    git(repo, "checkout", "-q", "-b", "feature")
    write(repo, {"f.txt": "x"}, "feature work\n\nCo-Authored-By: Claude <noreply@anthropic.com>")
    acceptance = item(ws, 10)
    assert acceptance.evidence[0].startswith("last 7 days on trunk: 0 agent-made commits of 1;")  # was feature's
    assert compute_metrics(ws, time.time() - 7 * 86400).branch == "trunk"


def test_10_on_a_shallow_clone_with_no_decision_names_no_waiting_change(repo: Path, tmp_path: Path) -> None:
    for n in range(3):
        write(repo, {f"a{n}.txt": str(n)}, f"agent {n}\n\nCo-Authored-By: Claude <noreply@anthropic.com>")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(clone))
    workspace = open_workspace(clone)
    try:
        acceptance = item(workspace, 10)
    finally:
        workspace.close()
    assert acceptance.answer == "partly" and "waiting" not in acceptance.next_step
    assert "decided there" in acceptance.next_step


# -- the header's cached variant --------------------------------------------------------------------


def test_cached_checklist_answers_again_only_when_something_changed(ws: Workspace) -> None:
    first = cached_checklist(ws)
    assert cached_checklist(ws) is first
    assert first.header == f"checklist {first.score:g}/10"
    ws.record("claim.refused", "x", {})  # any store write moves the key
    assert cached_checklist(ws) is not first
