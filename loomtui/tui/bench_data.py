"""A repository at size for `loomtui bench tui`: sandboxes, claims and audit entries written through the
store's API (as the engines write them), real enough for every view to show them.

No agent runs. Each sandbox's next step is a wait or an end, never work the app's workflow would do
(so the app leaves the records as they are while it is measured): exited without a worktree (no
change) and nothing held, planned after another task (waits for its merge), awaiting review with an
open escalation (waits for a decision), merged with nothing held (done).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from loomtui.execution.lifecycle import AWAITING_REVIEW, EXITED, MERGED, PLANNED
from loomtui.store import SandboxRecord
from loomtui.workflow.steps import AFTER_KEY, AUTOSTART_KEY, REVIEW_ESCALATION_KEY
from loomtui.workspace import Workspace

AUDIT_BATCH = 500
"""Audit entries appended per transaction: the file mirror is synced once per commit."""
CLAIM_HOURS = 24.0
"""Claims' leases: long enough that none expires while the app is measured."""


@dataclass(frozen=True)
class BenchSize:
    """How much the repository holds."""

    sandboxes: int = 200
    claims: int = 5000
    audit: int = 10000


def _status(number: int) -> str:
    return (EXITED, PLANNED, AWAITING_REVIEW, MERGED)[number % 4]


def seed_repository(workspace: Workspace, size: BenchSize) -> dict[str, int]:
    """Write `size`'s records into the workspace's store; return what was written, by kind.

    Claims go to the sandboxes that are not merged (a merged sandbox's claims are released by the
    workflow), round-robin, each on regions of its own.
    """
    store = workspace.store
    now = time.time()
    ids = [f"b{number:05d}" for number in range(size.sandboxes)]
    # Not a merged or an exited one: the engine gives back what they held.
    holders = [sid for number, sid in enumerate(ids) if _status(number) not in (MERGED, EXITED)] or ids[:1]
    escalations = 0
    with store.transaction():
        for number, sandbox_id in enumerate(ids):
            status = _status(number)
            data: dict[str, object] = {AUTOSTART_KEY: False}
            if status == PLANNED and number:
                data[AFTER_KEY] = [ids[number - 1]]  # an exited task: not merged, so this one waits
            store.add_sandbox(SandboxRecord(
                id=sandbox_id, task=f"bench task {number}: tidy module m{number % 100} and its callers",
                runtime="script", status=status, created=now - 60 * (size.sandboxes - number),
                updated=now, branch=f"loom/{sandbox_id}", base_ref="main", isolation="none", data=data))
            if status == AWAITING_REVIEW:
                escalation = store.add_escalation("review", sandbox_id=sandbox_id, risk=("low", "high")[number % 2],
                                                  summary=f"review of {sandbox_id}: signature changed in m{number}")
                store.update_sandbox(sandbox_id, data={REVIEW_ESCALATION_KEY: escalation.id})
                escalations += 1
        expires = now + CLAIM_HOURS * 3600
        for number in range(size.claims):
            holder = holders[number % len(holders)]
            region = f"pkg/m{number % 100}.py::f{number}"
            store.add_claim(holder, region, "exclusive", "bench", expires, [region])
    for start in range(0, size.audit, AUDIT_BATCH):
        with store.transaction():
            for number in range(start, min(size.audit, start + AUDIT_BATCH)):
                workspace.record("bench.entry", ids[number % len(ids)] if ids else "",
                                 {"n": number, "note": "seeded for the TUI bench"})
    return {"sandboxes": size.sandboxes, "claims": size.claims, "audit_entries": size.audit,
            "open_escalations": escalations}


def bench_repository(parent: Path | None, size: BenchSize) -> Path:
    """A fresh copy of the sample repository holding `size`'s records; the caller removes its parent."""
    from loomtui.sample import prepare_demo_repo
    from loomtui.workspace import open_workspace

    repo = prepare_demo_repo(parent)
    workspace = open_workspace(repo)
    try:
        seed_repository(workspace, size)
    finally:
        workspace.close()
    return repo
