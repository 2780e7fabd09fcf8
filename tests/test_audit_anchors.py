"""Anchors: the audit head published in merge commits catches rewrites the chain alone passes.

One real history is built per module (the sample repo, an agent's payments change,
two approvals signed with real ssh keys, a real `loomtui` merge, entries after it);
each test tampers with its own copy the way a local attacker who can write both
the log and the store would, then runs the real `loomtui audit verify`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loomtui.audit import GENESIS, AuditEntry, AuditLog, entry_hash
from loomtui.auditanchor import parse_anchor
from loomtui.governance.anchors import Anchor, check_anchors
from loomtui.store import open_store
from loomtui.workflow.tamper_bench import History, build_history, run_tamper_bench
from loomtui.workspace import open_workspace
from tests.conftest import GIT_ENV, git

LOOMTUI = shutil.which("loomtui") or "loomtui"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in GIT_ENV.items():
            patch.setenv(name, value)
        patch.setenv("LOOMTUI_CONFIG_DIR", str(tmp_path_factory.mktemp("userconfig")))
        patch.delenv("LOOM_USER", raising=False)
        patch.delenv("LOOM_SIGNING_KEY", raising=False)
        yield build_history(tmp_path_factory.mktemp("history"))


@pytest.fixture
def repo(history: History, tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(history.repo, copy, symlinks=True)
    return copy


def verify(repo: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LOOM_SIGNING_KEY"}
    return subprocess.run([LOOMTUI, "audit", "verify", *extra], cwd=repo, capture_output=True, text=True,
                          env=env, timeout=120)


def log_rows(repo: Path) -> list[dict[str, Any]]:
    path = repo / ".git" / "loom" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_rows(repo: Path, rows: list[dict[str, Any]]) -> None:
    (repo / ".git" / "loom" / "audit.jsonl").write_text("".join(AuditEntry(**r).line() + "\n" for r in rows))


def fresh_store(repo: Path, checkpoint: tuple[int, str] | None) -> None:
    """What an attacker gets by deleting the store: no checkpoint, or one they set."""
    workspace = open_workspace(repo)
    paths = workspace.paths
    workspace.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(paths.store_path) + suffix).unlink(missing_ok=True)
    store = open_store(paths)
    if checkpoint is not None:
        store.set_audit_checkpoint(*checkpoint)
    store.close()


def chain_only_ok(repo: Path) -> bool:
    workspace = open_workspace(repo)
    try:
        return workspace.audit.verify().ok
    finally:
        workspace.close()


def test_the_merge_commit_anchors_the_audit_head_and_verify_reports_coverage(history: History, repo: Path) -> None:
    value = git(repo, "log", "-1", "--format=%(trailers:key=Loom-Audit,valueonly)", history.merge_commit)
    parsed = parse_anchor(value)
    assert parsed is not None
    seq, anchored_hash, log = parsed
    rows = log_rows(repo)
    assert rows[seq - 1]["hash"] == anchored_hash and seq == history.anchored_seq
    assert log == rows[0]["hash"][:16] == git(repo, "config", "loom.auditlog")
    done = verify(repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"OK: {len(rows)} entries, chain intact")
    assert f"entries after seq {seq} are not anchored in any commit yet" in done.stdout
    data = json.loads(verify(repo, "--json").stdout)
    assert data["ok"] is True and data["anchors"]["anchored_through"] == seq
    assert data["anchors"]["checked"][0]["commit"] == history.merge_commit
    assert data["anchors"]["checked"][0]["status"] == "ok"
    assert data["anchors"]["unanchored_entries"] == len(rows) - seq
    assert [d["status"] for d in data["signatures"]["decisions"]] == ["verified", "verified"]


def test_the_anchor_covers_the_workflows_review_and_the_signed_decisions(history: History, repo: Path) -> None:
    """The agent's supervisor reviewed the change when it ended and the workflow followed the two signed
    approvals, all before the merge: the anchor covers that whole story; the merge's own entry is next."""
    rows = log_rows(repo)
    message = git(repo, "log", "-1", "--format=%B", history.merge_commit)
    sandbox_id = git(repo, "log", "-1", "--format=%(trailers:key=Loom-Sandbox,valueonly)", history.merge_commit)
    assert "Loom-Escalation: #" in message and "Loom-Approved-by: alice@example.com, bob@example.com" in message
    story = ["sandbox.exited", "sandbox.gating", "policy.evaluated", "escalation.opened", "sandbox.awaiting_review",
             "escalation.approve", "escalation.approve", "sandbox.approved"]
    anchored = [r["action"] for r in rows[: history.anchored_seq] if r["action"] in story]
    assert anchored == story
    assert [r["actor"] for r in rows if r["action"] == "escalation.approve"] == ["alice@example.com",
                                                                                 "bob@example.com"]
    merged = next(r for r in rows if r["action"] == "sandbox.merged")
    assert merged["subject"] == sandbox_id and merged["details"]["commit"] == history.merge_commit
    assert merged["seq"] == history.anchored_seq + 1


def test_a_log_cut_back_with_the_checkpoint_rolled_back_is_caught(history: History, repo: Path) -> None:
    """(a) The checkpoint moved back to an earlier entry with its real hash, the log cut to match."""
    kept = log_rows(repo)[:6]
    write_rows(repo, kept)
    fresh_store(repo, (6, kept[-1]["hash"]))
    assert chain_only_ok(repo)  # what passed before anchors
    done = verify(repo)
    assert done.returncode == 1
    assert (f"the log was cut: commit {history.merge_commit[:12]} anchors seq {history.anchored_seq}"
            in done.stdout), done.stdout
    assert "the log ends at seq 6" in done.stdout


def test_an_anchored_entry_rewritten_with_the_chain_recomputed_is_caught(history: History, repo: Path) -> None:
    """(b) The checkpoint gone and every hash recomputed after an edit."""
    rows = log_rows(repo)
    rows[2]["details"] = {**rows[2]["details"], "edited": True}
    prev = GENESIS
    for row in rows:
        row["prev"] = prev
        row["hash"] = prev = entry_hash(row)
    write_rows(repo, rows)
    fresh_store(repo, None)
    assert chain_only_ok(repo)
    done = verify(repo)
    assert done.returncode == 1
    assert f"the log was rewritten: commit {history.merge_commit[:12]} anchors seq {history.anchored_seq}" \
        in done.stdout, done.stdout


def test_the_store_and_the_log_both_deleted_is_caught(history: History, repo: Path) -> None:
    """(c) Nothing left locally: the anchor and git config still name this clone's log."""
    (repo / ".git" / "loom" / "audit.jsonl").unlink()
    fresh_store(repo, None)
    assert chain_only_ok(repo)
    done = verify(repo)
    assert done.returncode == 1
    assert "the log was cut" in done.stdout and "the log ends at seq 0" in done.stdout


def test_a_log_replaced_by_a_new_one_is_caught(repo: Path) -> None:
    (repo / ".git" / "loom" / "audit.jsonl").unlink()
    fresh_store(repo, None)
    workspace = open_workspace(repo)
    for number in range(30):
        workspace.record("forged.step", str(number))
    workspace.close()
    done = verify(repo)
    assert done.returncode == 1 and "the log was replaced" in done.stdout, done.stdout


def test_cutting_only_unanchored_entries_is_reported_as_not_provable(history: History, repo: Path) -> None:
    kept = log_rows(repo)[: history.anchored_seq + 1]
    write_rows(repo, kept)
    fresh_store(repo, (kept[-1]["seq"], kept[-1]["hash"]))
    done = verify(repo)
    assert done.returncode == 0
    assert f"entries after seq {history.anchored_seq} are not anchored in any commit yet" in done.stdout


def test_with_nothing_merged_verify_says_nothing_is_anchored(repo: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q", "-b", "main")
    git(fresh, "commit", "-q", "--allow-empty", "-m", "initial")
    workspace = open_workspace(fresh)
    workspace.record("test.step", "one")
    workspace.close()
    done = verify(fresh)
    assert done.returncode == 0 and "no entry is anchored in any commit yet" in done.stdout, done.stdout


def test_an_anchor_an_agent_wrote_into_its_own_commit_is_not_trusted(repo: Path) -> None:
    """Only first-parent commits of the main branch anchor; a side branch's trailer is ignored."""
    rows = log_rows(repo)
    git(repo, "checkout", "-q", "-b", "side")
    bogus = f"Loom-Audit: 3 {'f' * 64} log={rows[0]['hash'][:16]}"
    git(repo, "commit", "-q", "--allow-empty", "-m", f"agent work\n\n{bogus}")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    assert bogus in git(repo, "log", "--format=%B", "main")
    done = verify(repo)
    assert done.returncode == 0, done.stdout
    # On main's own first-parent history as a commit of its own (a rebase or squash merge outside loomtui put
    # the agent's commit there): no anchor either (one bogus trailer failed `audit verify` for good).
    git(repo, "commit", "-q", "--allow-empty", "-m", f"direct\n\n{bogus}")
    git(repo, "commit", "-q", "--allow-empty", "-m", f"direct\n\nLoom-Sandbox: s9\n{bogus.split(' log=')[0]}")
    done = verify(repo)
    assert done.returncode == 0, done.stdout
    # A merge as loomtui makes them (two parents, its trailers, the log's id) anchors, and contradicts the log.
    git(repo, "checkout", "-q", "-b", "side2")
    git(repo, "commit", "-q", "--allow-empty", "-m", "more agent work")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", f"Merge loom/s9 into main\n\nLoom-Sandbox: s9\n{bogus}", "side2")
    done = verify(repo)
    assert done.returncode == 1 and "the log was rewritten" in done.stdout


def test_anchors_on_a_fetched_ref_are_read_with_ref(history: History, repo: Path, tmp_path: Path) -> None:
    """A clone's main moved back locally still meets the anchor in origin/main, or any --ref."""
    git(repo, "branch", "-f", "kept", "main")
    git(repo, "update-ref", "refs/heads/main", f"{history.merge_commit}^1")
    kept = log_rows(repo)[:4]
    write_rows(repo, kept)
    fresh_store(repo, (4, kept[-1]["hash"]))
    assert verify(repo).returncode == 0  # nothing on the rewound main anchors it
    done = verify(repo, "--ref", "kept")
    assert done.returncode == 1 and "the log was cut" in done.stdout
    mistyped = verify(repo, "--ref", "kpet")
    assert (mistyped.returncode, mistyped.stdout) == (2, "")  # a usage error: the log is not BROKEN
    assert mistyped.stderr == "loomtui: error: --ref 'kpet' is not a commit here\n"
    # A branch read already (main, found by itself) named again is one ref: it read "(main, main)".
    from loomtui.governance.anchors import anchor_refs
    assert anchor_refs(repo, ("main", "refs/heads/main", "kept")) == ["refs/heads/main", "refs/heads/kept"]


def test_another_clones_anchors_are_listed_not_checked(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    entries = [log.append("me@example.com", "test.step", str(n)) for n in range(3)]
    foreign = Anchor("c" * 40, 9, "a" * 64, "0123456789abcdef", "refs/heads/main")
    report = check_anchors(entries, [foreign], ["refs/heads/main"], None)
    assert report.problems == [] and report.foreign == [foreign]
    assert any("another audit log (0123456789abcdef) not checked" in note for note in report.notes)
    own = Anchor("d" * 40, 2, entries[1].hash, entries[0].hash[:16], "refs/heads/main")
    assert check_anchors(entries, [own], [], None).anchored_through == 2
    wrong = Anchor("e" * 40, 2, "b" * 64, entries[0].hash[:16], "refs/heads/main")
    assert "the log was rewritten: commit eeeeeeeeeeee anchors seq 2" in check_anchors(
        entries, [wrong], [], None).problems[0][1]


def test_tamper_bench_catches_every_case() -> None:
    figures = run_tamper_bench()
    print(figures["summary"])
    assert figures["caught"] == figures["total"] == 5
    assert figures["limits"]["after-anchor"]["full_verify"] == "passed"
    assert "not anchored" in figures["limits"]["after-anchor"]["verify"]
