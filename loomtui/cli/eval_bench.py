"""`loomtui bench evals`: the eval harness's cost on a copy of the sample repo, measured.

- harness over bare: gate 1 on a sandbox (its checks confined, JUnit read, judged
  against the stored baseline) over the same pytest command run bare in the repo;
  target 1.3x;
- a stored re-run: the same eval asked again with nothing changed; target 0.2 s;
- N sandboxes gated at once, each by its own `loomtui eval` process: wall time and
  the CPU time of all of them.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loomtui.cli import print_json

ROUNDS = 3
CHANGES = ("docs/runbook.md", "payments/invoices.py", "notifications/formatting.py", "customers/validation.py",
           "README.md", "docs/architecture.md", "storage/ids.py")
"""A sandbox of the bench appends one line to one of these (a comment to the Python ones)."""


def _bare_pytest(root: Path, argv: list[str], env: dict[str, str]) -> float:
    plain = [a for a in argv if "{report}" not in a]
    started = time.monotonic()
    subprocess.run(plain, cwd=root, env=env, capture_output=True, check=False)
    return time.monotonic() - started


def _sandbox(workspace: Any, number: int) -> str:
    from loomtui.gitcmd import Git
    from loomtui.workflow.tasks import create_sandbox

    path = CHANGES[number % len(CHANGES)]
    script = workspace.root.parent / "bench-noop.yaml"
    script.write_text("- {log: nothing}\n")
    record = create_sandbox(workspace, f"bench change {number}: {path}", "script", script=script)
    tree = Path(record.worktree)
    target = tree / path
    line = "# checked by the eval bench\n" if path.endswith(".py") else "\nChecked by the eval bench.\n"
    target.write_text(target.read_text() + line)
    git = Git(tree)
    git.out("add", "-A")
    git.out("-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", f"bench {number}")
    return str(record.id)


def cmd_bench_evals(args: argparse.Namespace) -> int:
    from loomtui.demo import prepare_demo_repo
    from loomtui.guardrails.baseline import gate_environment, resolved_argv
    from loomtui.guardrails.evals import evaluate, evaluate_baseline
    from loomtui.workspace import open_workspace

    with tempfile.TemporaryDirectory(prefix="loomtui-bench-evals-") as scratch:
        root = prepare_demo_repo(Path(scratch))
        workspace = open_workspace(root)
        tests_gate = next(g for g in workspace.load_config().gates if g.format == "junit")
        env = gate_environment(os.environ, tests_gate)
        bare = [_bare_pytest(root, resolved_argv(tests_gate), env) for _ in range(ROUNDS)]
        started = time.monotonic()
        evaluate_baseline(workspace)
        baseline_s = time.monotonic() - started
        first = _sandbox(workspace, 0)
        harness = []
        for _ in range(ROUNDS):
            started = time.monotonic()
            evaluate(workspace, first, which="1", force=True)
            harness.append(time.monotonic() - started)
        started = time.monotonic()
        report = evaluate(workspace, first)  # gate 2 too, stored after this
        full_s = time.monotonic() - started
        stored = []
        for _ in range(ROUNDS):
            started = time.monotonic()
            again = evaluate(workspace, first)
            stored.append(time.monotonic() - started)
            assert again.stored
        ids = [_sandbox(workspace, n) for n in range(1, args.sandboxes + 1)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        processes = [subprocess.Popen([sys.executable, "-m", "loomtui", "-C", str(root), "eval", sandbox, "--json"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for sandbox in ids]
        codes = [p.wait() for p in processes]
        together_s = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    bare_s = statistics.median(bare)
    harness_s = statistics.median(harness)
    figures = {
        "cores": os.cpu_count(), "bare_pytest_s": round(bare_s, 3), "baseline_first_run_s": round(baseline_s, 3),
        "gate1_s": round(harness_s, 3), "harness_over_bare": round(harness_s / bare_s, 2), "target_over_bare": 1.3,
        "gate1_and_gate2_s": round(full_s, 3), "stored_rerun_s": round(statistics.median(stored), 4),
        "target_stored_rerun_s": 0.2, "score": report.score.total if report.score is not None else None,
        "sandboxes_at_once": len(ids), "at_once_wall_s": round(together_s, 2), "at_once_cpu_s": round(cpu_s, 2),
        "at_once_exit_codes": codes,
    }
    if args.json:
        print_json(figures)
        return 0
    print(f"bare pytest (the sample's tests gate, no harness): {bare_s:.2f} s (median of {ROUNDS})")
    print(f"gate 1 on a sandbox (checks confined and in parallel, JUnit read, judged against the stored baseline): "
          f"{harness_s:.2f} s = {harness_s / bare_s:.2f}x bare (target 1.3x)")
    print(f"the baseline's first run (once per base commit): {baseline_s:.2f} s")
    print(f"gate 1 and gate 2 together: {full_s:.2f} s; a stored re-run: {statistics.median(stored) * 1000:.1f} ms "
          f"(target 200 ms)")
    print(f"{len(ids)} sandboxes gated at once, one `loomtui eval` process each, on {os.cpu_count()} cores: "
          f"{together_s:.2f} s wall, {cpu_s:.2f} s CPU")
    return 0
