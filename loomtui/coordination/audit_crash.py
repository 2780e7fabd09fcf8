"""The crash loop: writers killed at random, then the store and the audit log must agree.

`loomtui bench audit [--rounds N] [--json]` and tests/test_audit_crash.py run it.
Each round starts some writer processes on one scratch repository: Python
processes calling the claims API (claims of one to three targets, all or nothing,
with leases short enough to expire; releases; stale sweeps) and, optionally, real
`loomtui claim add/release` CLI calls. Every writer is killed with SIGKILL at its
own random moment. Then the repository is opened as a new process would, `verify`
brings the log up to the store, and the round is in agreement when the chain
verifies and the log says exactly what the store holds: every claim has one
`claim.added` entry and no entry names a claim the store never had; every released
claim has one `claim.released`/`claim.expired` entry (with the store's reason) and
no live claim has any.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loomtui.audit import AuditEntry
from loomtui.coordination.claims import ClaimRefused, nobody_overrides, open_coordinator
from loomtui.errors import LoomError
from loomtui.gitcmd import Git
from loomtui.workspace import Workspace, open_workspace

FILES = 8
FUNCTIONS = 3
SANDBOXES = ("s0", "s1", "s2", "s3", "s4")
LEASES = (0.05, 0.3, 3600.0)  # some expire within a round, some outlive it
RELEASE_ACTIONS = ("claim.released", "claim.expired")


def make_repo(root: Path) -> Path:
    """A small git repository with modules and functions to claim."""
    root.mkdir(parents=True, exist_ok=True)
    for number in range(FILES):
        body = "".join(f"def f{j}(x):\n    return x + {j}\n\n\n" for j in range(FUNCTIONS))
        (root / "pkg").mkdir(exist_ok=True)
        (root / "pkg" / f"mod{number}.py").write_text(body)
    env = {"GIT_AUTHOR_NAME": "crash", "GIT_AUTHOR_EMAIL": "crash@example.com",
           "GIT_COMMITTER_NAME": "crash", "GIT_COMMITTER_EMAIL": "crash@example.com"}
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "modules to claim"]):
        Git(root).out(*args, env=env)
    return root


def targets() -> list[str]:
    """Files and the functions in them, so claims nest and overlap."""
    found = []
    for number in range(FILES):
        found.append(f"pkg/mod{number}.py")
        found.extend(f"pkg/mod{number}.py::f{j}" for j in range(FUNCTIONS))
    return found


def _api_writer(repo: str, seed: int) -> None:
    """Claim, release and sweep until killed (runs in a forked process).

    The index is opened here, not inherited: a SQLite connection must not cross a fork.
    The parent built it, so this is a warm start.
    """
    rng = random.Random(seed)
    workspace = open_workspace(repo)
    coordinator = open_coordinator(workspace, may_override=nobody_overrides)
    choices = targets()
    while True:
        sandbox = rng.choice(SANDBOXES)
        roll = rng.random()
        try:
            if roll < 0.55:
                ttl = rng.choice(LEASES)
                with workspace.store.transaction():  # several targets: all or nothing, as the CLI does
                    for target in rng.sample(choices, rng.randint(1, 3)):
                        coordinator.claim(sandbox, target, ttl=ttl, reason="crash loop")
            elif roll < 0.8:
                live = workspace.store.live_claims(sandbox)
                if live:
                    coordinator.release(rng.choice(live).id, "done")
            elif roll < 0.9:
                coordinator.release_sandbox(sandbox, "sandbox done")
            else:
                coordinator.release_stale()
        except ClaimRefused:
            pass


def _cli_writer_script(seed: int) -> str:
    """A shell loop of real CLI calls: claim some targets with a short lease, release them all."""
    rng = random.Random(seed)
    loomtui = f"{sys.executable} -m loomtui"
    steps = []
    for _ in range(20):
        sandbox = rng.choice(SANDBOXES)
        picked = " ".join(rng.sample(targets(), rng.randint(1, 2)))
        steps.append(f"{loomtui} claim add --sandbox {sandbox} --ttl {rng.choice(LEASES)} {picked}")
        if rng.random() < 0.5:
            steps.append(f"{loomtui} claim release --sandbox {sandbox} --all")
    return "while true; do\n" + "\n".join(f"  {step} >/dev/null 2>&1" for step in steps) + "\ndone\n"


def disagreements(workspace: Workspace, entries: Sequence[AuditEntry]) -> list[str]:
    """Where the audit log and the store's claims disagree (empty when they agree exactly)."""
    claims = {claim.id: claim for claim in workspace.store.all_claims()}
    added: dict[int, list[AuditEntry]] = defaultdict(list)
    released: dict[int, list[AuditEntry]] = defaultdict(list)
    for entry in entries:
        if entry.action == "claim.added":
            added[int(entry.details["claim"])].append(entry)
        elif entry.action in RELEASE_ACTIONS:
            released[int(entry.details["claim"])].append(entry)
    problems = []
    for claim_id, claim in claims.items():
        logged = added.get(claim_id, [])
        if len(logged) != 1:
            problems.append(f"claim {claim_id} ({claim.sandbox_id}) has {len(logged)} claim.added entries")
        elif (logged[0].subject, logged[0].details.get("target")) != (claim.sandbox_id, claim.target):
            problems.append(f"claim {claim_id}: the log says {logged[0].subject} {logged[0].details.get('target')}, "
                            f"the store {claim.sandbox_id} {claim.target}")
        ends = released.get(claim_id, [])
        if claim.released is None and ends:
            problems.append(f"claim {claim_id} is live in the store, but the log says it was released")
        elif claim.released is not None and len(ends) != 1:
            problems.append(f"claim {claim_id} was released once in the store, {len(ends)} times in the log")
        elif ends and ends[0].details.get("reason") != claim.release_reason:
            problems.append(f"claim {claim_id}: released for {claim.release_reason!r} in the store, "
                            f"{ends[0].details.get('reason')!r} in the log")
    for claim_id in sorted(set(added) - set(claims)):
        problems.append(f"the log has claim.added for claim {claim_id}, which the store never had")
    for claim_id in sorted(set(released) - set(claims)):
        problems.append(f"the log releases claim {claim_id}, which the store never had")
    return problems


def _fresh_state(workspace: Workspace) -> None:
    """Each round starts from an empty store and log (the index cache is kept)."""
    for path in workspace.paths.state_dir.iterdir():
        if path.name.startswith(("state.db", "audit.jsonl")):
            path.unlink()


def _whole_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _count(totals: dict[str, int], workspace: Workspace, entries: Sequence[AuditEntry]) -> None:
    partial = workspace.audit.path.with_name(workspace.audit.path.name + ".partial")
    totals["audit_entries"] += len(entries)
    claims = workspace.store.all_claims()
    totals["claims"] += len(claims)
    totals["claims_by_cli"] += sum(c.reason == "" for c in claims)  # the API writers give a reason
    totals["refusals_logged"] += sum(e.action == "claim.refused" for e in entries)
    totals["expiries_logged"] += sum(e.action == "claim.expired" for e in entries)
    totals["interrupted_appends_set_aside"] += len(partial.read_bytes().splitlines()) if partial.exists() else 0


def crash_loop(rounds: int = 10, *, writers: int = 4, cli_writers: int = 0, seed: int = 1,
               min_ms: float = 30, max_ms: float = 300, directory: Path | None = None) -> dict[str, Any]:
    """Run `rounds` rounds of writers killed at random; the figures, and the first problems."""
    rng = random.Random(seed)
    scratch = Path(tempfile.mkdtemp(prefix="loomtui-audit-crash-", dir=directory))
    started = time.perf_counter()
    try:
        repo = make_repo(scratch / "repo")
        workspace = open_workspace(repo)
        open_coordinator(workspace, may_override=nobody_overrides).index.close()  # built once, on disk
        workspace.close()
        context = multiprocessing.get_context("fork")
        agreed, killed, failed = 0, 0, 0
        totals = dict.fromkeys(("audit_entries", "claims", "refusals_logged", "expiries_logged",
                                "interrupted_appends_set_aside",
                                "entries_recovered_into_the_log", "claims_by_cli"), 0)
        problems: list[str] = []
        for number in range(rounds):
            _fresh_state(workspace)
            procs: list[Any] = [
                context.Process(target=_api_writer, args=(str(repo), seed * 1000 + number * 50 + w),
                                daemon=True)
                for w in range(writers)
            ]
            for proc in procs:
                proc.start()
            shells = [
                subprocess.Popen(["bash", "-c", _cli_writer_script(seed * 1000 + number * 50 + 40 + c)],
                                 cwd=repo, start_new_session=True)
                for c in range(cli_writers)
            ]
            # CLI calls take a while to start: give them a longer life, so kills land mid-call.
            deadlines = sorted(
                [(rng.uniform(min_ms, max_ms) / 1000, "api", i) for i in range(writers)]
                + [(rng.uniform(max(min_ms, 500), max(max_ms, 500) * 4) / 1000, "cli", i)
                   for i in range(cli_writers)]
            )
            begun = time.perf_counter()
            for deadline, kind, i in deadlines:
                time.sleep(max(0.0, deadline - (time.perf_counter() - begun)))
                if kind == "api":
                    os.kill(procs[i].pid, signal.SIGKILL)
                else:
                    os.killpg(shells[i].pid, signal.SIGKILL)
            for proc in procs:
                proc.join()
                killed += proc.exitcode == -signal.SIGKILL
                failed += proc.exitcode != -signal.SIGKILL
            for shell in shells:
                killed += shell.wait() == -signal.SIGKILL
            # What a new process sees: verify brings the log up to the store first.
            workspace = open_workspace(repo)
            try:
                behind = len(workspace.store.audit_hashes()) - _whole_lines(workspace.audit.path)
                totals["entries_recovered_into_the_log"] += max(0, behind)
                result = workspace.audit.verify()
                found = [] if result.ok else [f"audit verify: {result.summary(workspace.audit.path)}"]
                entries = list(workspace.audit.entries())
                found += disagreements(workspace, entries)
                _count(totals, workspace, entries)
            except LoomError as exc:
                found = [f"round {number + 1}: {exc}"]
            finally:
                workspace.close()
            if found:
                problems.extend(f"round {number + 1}: {p}" for p in found[:5])
            else:
                agreed += 1
        return {
            "rounds": rounds,
            "rounds_in_agreement": agreed,
            "api_writers_per_round": writers,
            "cli_writers_per_round": cli_writers,
            "writers_killed": killed,
            "writers_failed": failed,
            **totals,
            "seconds": round(time.perf_counter() - started, 2),
            "problems": problems[:20],
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
