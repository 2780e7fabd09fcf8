"""The crash loop: concurrent claim writers killed with SIGKILL at random, then the store
and the audit log must agree exactly, round after round.

LOOM_AUDIT_CRASH_ROUNDS sets the rounds (default 8, a few seconds) and
LOOM_AUDIT_CRASH_CLI the real `loomtui claim` CLI writers per round (default 0: each
CLI call starts a Python process, which is slow); for a longer run by hand:

    LOOM_AUDIT_CRASH_ROUNDS=100 LOOM_AUDIT_CRASH_CLI=2 python -m pytest -s tests/test_audit_crash.py
    loomtui bench audit --rounds 30 --cli 1 --json
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from loomtui.governance.coordinator import governed_coordinator
from loomtui.coordination.audit_crash import crash_loop, disagreements
from loomtui.workspace import open_workspace


def test_store_and_log_agree_after_every_round_of_random_kills(tmp_path: Path) -> None:
    rounds = int(os.environ.get("LOOM_AUDIT_CRASH_ROUNDS", "8"))
    cli = int(os.environ.get("LOOM_AUDIT_CRASH_CLI", "0"))
    figures = crash_loop(rounds, writers=4, cli_writers=cli, seed=int(os.environ.get("LOOM_AUDIT_CRASH_SEED", "1")),
                         directory=tmp_path)
    print(f"\naudit crash loop: {figures['rounds']} rounds, {figures['rounds_in_agreement']} in agreement")
    print(json.dumps(figures, indent=1))
    assert figures["writers_failed"] == 0, figures  # every writer ran until it was killed
    assert figures["claims"] > 0 and figures["refusals_logged"] > 0, figures  # the writers did real work
    assert figures["rounds_in_agreement"] == rounds, figures["problems"]


def test_the_agreement_check_catches_a_phantom_and_a_double_release(tmp_path: Path) -> None:
    """The check itself can fail: a claim.added the store never had, a release logged twice."""
    from loomtui.coordination.audit_crash import make_repo

    workspace = open_workspace(make_repo(tmp_path / "repo"))
    coordinator = governed_coordinator(workspace)
    claim = coordinator.claim("s0", "pkg/mod0.py").claim
    coordinator.release(claim.id, "done")
    assert disagreements(workspace, list(workspace.audit.entries())) == []
    workspace.record("claim.added", "s1", {"claim": 99, "target": "pkg/mod1.py"})
    workspace.record("claim.released", "s0", {"claim": claim.id, "reason": "done"})
    found = disagreements(workspace, list(workspace.audit.entries()))
    assert found == [f"claim {claim.id} was released once in the store, 2 times in the log",
                     "the log has claim.added for claim 99, which the store never had"]
