"""`loomtui bench tamper`: rewrite the audit history the ways a local attacker would, count what verify catches.

On the sample repo, with real ssh keys and a policy that requires signed decisions:
an agent changes payments code, two reviewers approve it with signatures, loomtui
merges it (the merge commit anchors the audit head), and more entries follow. Then
each tamper case starts from a copy of that state and rewrites `.git/loom` so the
chain and the store's checkpoint agree with each other, and both checks run: the
chain check alone (`AuditLog.verify`) and the full `audit verify`.

  a  the log cut back before the anchored head, the checkpoint rolled back to match
  b  an anchored entry edited, the chain recomputed, the checkpoint gone
  c  the store and the log both deleted
  d  a forged `escalation.approve` by lead@example.com appended with a valid chain
  d2 the same, signed with the attacker's own key

and one limit, counted apart: entries cut after the newest anchor (nothing anchors
them yet; verify says so).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loomtui.audit import AuditEntry, AuditLog, entry_hash
from loomtui.errors import LoomError
from loomtui.execution.sandboxes import get_sandbox
from loomtui.gitcmd import Git
from loomtui.governance.auditproof import verify_audit
from loomtui.governance.escalations import decide
from loomtui.governance.policy import configured_policy
from loomtui.governance.signing import Decision, sign
from loomtui.store import open_store
from loomtui.workflow.engine import request_merge, wait_until_settled
from loomtui.workflow.steps import REVIEW_ESCALATION_KEY
from loomtui.workflow.tasks import create_sandbox, start
from loomtui.workspace import Workspace, open_workspace

REVIEWERS = ("alice@example.com", "bob@example.com", "lead@example.com")
ATTACKER = "mallory@example.com"
PAYMENTS_EDIT = """\
- {append: payments/refunds.py, content: "\\n# partial refunds are quoted per charge\\n"}
- {commit: "Document partial refunds"}
"""
TYPO_FIX = """\
- {replace: {path: notifications/templates/refund_issued.txt, old: recieve, new: receive}}
- {commit: "Fix a typo"}
"""


def make_key(directory: Path, name: str) -> Path:
    """A new passphrase-less ed25519 key; returns the private key's path."""
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True, capture_output=True, timeout=30)
    return key


def _git(repo: Path, *args: str) -> str:
    return Git(repo).out(*args).strip()


@contextmanager
def signing_as(key: Path | None) -> Iterator[None]:
    """Sign decisions with `key` (LOOM_SIGNING_KEY) for the duration."""
    saved = os.environ.get("LOOM_SIGNING_KEY")
    if key is None:
        os.environ.pop("LOOM_SIGNING_KEY", None)
    else:
        os.environ["LOOM_SIGNING_KEY"] = str(key)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("LOOM_SIGNING_KEY", None)
        else:
            os.environ["LOOM_SIGNING_KEY"] = saved


def require_signatures(repo: Path, keys: dict[str, Path]) -> None:
    """Commit an allowed_signers file for `keys` and a policy that requires signed decisions."""
    lines = [f"{who} {Path(str(key) + '.pub').read_text().strip()}" for who, key in keys.items()]
    (repo / ".loom" / "allowed_signers").write_text("\n".join(lines) + "\n")
    policy = repo / ".loom" / "policy.yaml"
    policy.write_text(policy.read_text() + "decisions: {require_signature: true}\n")
    _git(repo, "add", ".loom/allowed_signers", ".loom/policy.yaml")
    _git(repo, "commit", "-q", "-m", "Require signed decisions")


def run_agent(workspace: Workspace, script_text: str, task: str) -> str:
    """Run a script agent to its end; the workflow has reviewed its change when this returns."""
    script = workspace.root.parent / f"agent-{abs(hash(task))}.yaml"
    script.write_text(script_text)
    record = create_sandbox(workspace, task, "script", script=script)
    start(workspace, record.id)
    wait_until_settled(workspace, record.id, timeout=120)
    return record.id


def approve_and_merge(workspace: Workspace, script_text: str, task: str, keys: dict[str, Path],
                      approvers: tuple[str, ...]) -> str:
    """An agent's change, reviewed, approved by `approvers` (each signing with their key), merged."""
    sandbox_id = run_agent(workspace, script_text, task)
    escalation = get_sandbox(workspace, sandbox_id).data.get(REVIEW_ESCALATION_KEY)
    if escalation:
        policy = configured_policy(workspace.root, workspace.load_config())
        for user in approvers:
            with signing_as(keys.get(user)):
                decide(workspace.acting_as(user), policy, int(escalation), "approve")
    request_merge(workspace, sandbox_id)
    return str(get_sandbox(workspace, sandbox_id).data["merged_commit"])


@dataclass
class History:
    repo: Path
    keys: dict[str, Path]
    anchored_seq: int
    entries: int
    merge_commit: str


def build_history(parent: Path) -> History:
    """The sample repo with signed approvals, one anchoring merge, and entries after it."""
    from loomtui.sample import prepare_demo_repo

    repo = prepare_demo_repo(parent)
    keydir = parent / "keys"
    keydir.mkdir()
    keys = {who: make_key(keydir, who.split("@")[0]) for who in (*REVIEWERS, ATTACKER)}
    require_signatures(repo, {who: keys[who] for who in REVIEWERS})
    workspace = open_workspace(repo)
    try:
        commit = approve_and_merge(workspace, PAYMENTS_EDIT, "document partial refunds", keys,
                                   ("alice@example.com", "bob@example.com"))
        anchor = _git(repo, "log", "-1", "--format=%(trailers:key=Loom-Audit,valueonly)", commit)
        anchored = int(anchor.split()[0])
        for number in range(3):  # work after the merge: not anchored yet
            workspace.record("bench.step", f"after-{number}")
        entries = len(list(workspace.audit.entries()))
    finally:
        workspace.close()
    return History(repo, keys, anchored, entries, commit)


# -- the attacker's rewrites of .git/loom ---------------------------------------------------


def _lines(log: AuditLog) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.path.read_text().splitlines() if line.strip()]


def _write_chain(path: Path, entries: list[dict[str, Any]]) -> None:
    """Write entries with their chain recomputed from the first."""
    prev = "0" * 64
    out = []
    for number, fields in enumerate(entries, start=1):
        fields = {**fields, "seq": number, "prev": prev}
        fields.pop("hash", None)
        fields["hash"] = entry_hash(fields)
        prev = fields["hash"]
        out.append(AuditEntry(**fields).line() + "\n")
    path.write_text("".join(out))


def _fresh_store(workspace: Workspace, checkpoint: tuple[int, str] | None) -> None:
    """Throw the store away (and with it the checkpoint) and start a new one, checkpointed as told."""
    workspace.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(workspace.paths.store_path) + suffix).unlink(missing_ok=True)
    store = open_store(workspace.paths)
    try:
        if checkpoint is not None:
            store.set_audit_checkpoint(*checkpoint)
    finally:
        store.close()


def cut_before_anchor(workspace: Workspace, history: History) -> None:
    """(a) The log cut to well before the anchored head, the checkpoint rolled back to its real hash."""
    kept = _lines(workspace.audit)[: max(1, history.anchored_seq - 5)]
    workspace.audit.path.write_text("".join(AuditEntry(**f).line() + "\n" for f in kept))
    _fresh_store(workspace, (kept[-1]["seq"], kept[-1]["hash"]))


def rewrite_anchored_entry(workspace: Workspace, history: History) -> None:
    """(b) An entry before the anchor edited, the chain recomputed, no checkpoint left."""
    entries = _lines(workspace.audit)
    target = next(e for e in entries if e["seq"] > 1 and not e["action"].startswith("escalation."))
    target["details"] = {**target["details"], "note": "rewritten by the attacker"}
    _write_chain(workspace.audit.path, entries)
    _fresh_store(workspace, None)


def delete_everything(workspace: Workspace, history: History) -> None:
    """(c) The store and the log both deleted."""
    workspace.audit.path.unlink()
    _fresh_store(workspace, None)


def _forge_approval(workspace: Workspace, key: Path | None) -> None:
    lead = "lead@example.com"
    escalation = max((e for e in workspace.store.list_escalations()), key=lambda e: e.id)
    decided_at = datetime.now(UTC).isoformat(timespec="seconds")
    commit = str(escalation.data.get("commit", ""))
    details: dict[str, Any] = {"by": lead, "reason": "", "commit": commit, "status": "approved",
                               "sandbox": escalation.sandbox_id, "decided_at": decided_at}
    if key is not None:
        details["signature"] = sign(Decision(str(escalation.id), "approve", lead, commit, "", decided_at), str(key))
    AuditLog(workspace.audit.path, checkpoint=workspace.store).append(lead, "escalation.approve",
                                                                      str(escalation.id), details)


def forge_unsigned_approval(workspace: Workspace, history: History) -> None:
    """(d) A forged `escalation.approve` by lead@example.com, appended with a valid chain."""
    _forge_approval(workspace, None)


def forge_approval_with_own_key(workspace: Workspace, history: History) -> None:
    """(d2) The forged approval, signed with the attacker's own key."""
    _forge_approval(workspace, history.keys[ATTACKER])


def cut_after_anchor(workspace: Workspace, history: History) -> None:
    """The limit: the unanchored entries after the newest anchor cut off, checkpoint to match."""
    kept = _lines(workspace.audit)[: history.anchored_seq + 1]
    workspace.audit.path.write_text("".join(AuditEntry(**f).line() + "\n" for f in kept))
    _fresh_store(workspace, (kept[-1]["seq"], kept[-1]["hash"]))


Tamper = Callable[[Workspace, History], None]
CASES: tuple[tuple[str, str, Tamper], ...] = (
    ("a", "checkpoint rolled back, log cut to match", cut_before_anchor),
    ("b", "anchored entry edited, chain recomputed, checkpoint gone", rewrite_anchored_entry),
    ("c", "store and log both deleted", delete_everything),
    ("d", "forged escalation.approve by lead@example.com, valid chain", forge_unsigned_approval),
    ("d2", "the forged approval signed with the attacker's own key", forge_approval_with_own_key),
)
LIMITS: tuple[tuple[str, str, Tamper], ...] = (
    ("after-anchor", "entries after the newest anchor cut off", cut_after_anchor),
)


def _run_case(history: History, tamper: Tamper, scratch: Path) -> dict[str, Any]:
    """Copy the repository, tamper with the copy, and verify it both ways."""
    copy = scratch / "repo"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(history.repo, copy, symlinks=True)
    tampered = open_workspace(copy)
    try:
        tamper(tampered, history)
    finally:
        tampered.close()
    workspace = open_workspace(copy)
    try:
        chain = workspace.audit.verify()
        started = time.perf_counter()
        report = verify_audit(workspace)
        elapsed = time.perf_counter() - started
        summary = report.lines(workspace.audit.path)[0]
    finally:
        workspace.close()
    return {"chain_only": "caught" if not chain.ok else "passed", "chain_summary": chain.summary(Path("audit.jsonl")),
            "full_verify": "caught" if not report.ok else "passed",
            "verify": summary.replace(str(copy), "<repo>"), "verify_ms": round(elapsed * 1000, 1)}


def run_tamper_bench(parent: Path | None = None) -> dict[str, Any]:
    """Build the history once, then run every tamper case on its own copy."""
    base = Path(tempfile.mkdtemp(prefix="loomtui-tamper-", dir=parent))
    try:
        history = build_history(base)
        workspace = open_workspace(history.repo)
        try:
            clean = verify_audit(workspace)
        finally:
            workspace.close()
        if not clean.ok:
            raise LoomError("the untampered history does not verify: "
                            + clean.lines(workspace.audit.path)[0], exit_code=1)
        cases = {name: {"what": what, **_run_case(history, tamper, base / f"case-{name}")}
                 for name, what, tamper in CASES}
        limits = {name: {"what": what, **_run_case(history, tamper, base / f"limit-{name}")}
                  for name, what, tamper in LIMITS}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    caught = sum(1 for c in cases.values() if c["full_verify"] == "caught")
    by_chain = sum(1 for c in cases.values() if c["chain_only"] == "caught")
    return {
        "entries": history.entries, "anchored_seq": history.anchored_seq,
        "clean_verify": clean.result().summary(Path("audit.jsonl")),
        "cases": cases, "limits": limits,
        "caught": caught, "total": len(cases), "caught_by_chain_alone": by_chain,
        "summary": f"tamper cases caught: {caught} of {len(cases)} (the chain check alone: {by_chain} of "
                   f"{len(cases)})",
    }
