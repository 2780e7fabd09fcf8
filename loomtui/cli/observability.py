"""`loomtui report` (the window's metrics as text, JSON, markdown or Prometheus) and `loomtui bench report`."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loomtui.cli import add_command, nonempty_arg, positive_int_arg, print_json, workspace_for
from loomtui.errors import LoomError

if TYPE_CHECKING:
    from loomtui.workspace import Workspace

RUNTIMES = ("claude", "codex", "aider", "script")
ENTRIES_PER_SANDBOX = 10
BENCH_TARGET_S = 1.0
DEFAULT_WINDOW_S = 7 * 24 * 3600.0
ROUNDS = 3


def _cpu_s() -> float:
    """CPU seconds used by this process and the git commands it waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _window(args: argparse.Namespace) -> tuple[float, float]:
    from loomtui.observability.window import parse_when

    now = time.time()
    until = parse_when(args.until, now, "--until") if args.until is not None else None
    end = now if until is None else until
    # The default window is the 7 days before its end: `--until 2026-11-01` alone is the week up to it, and a
    # time ago is counted back from it too (`--since 7d --until 2026-12-01` was 21 hours, 7 days before now).
    since = parse_when(args.since, end, "--since") if args.since is not None else max(0.0, end - DEFAULT_WINDOW_S)
    if since >= end:
        raise LoomError(f"--since {args.since or '(7 days before --until)'} is not before --until "
                        f"{args.until or 'now'}", exit_code=2)
    return since, end  # the end the default start was counted from: a window of 7 days exactly, not a clock read later


def _trailer_arg(text: str) -> str:
    """A trailer name (`Generated-by`, a trailing colon allowed): a mistake matched nothing, silently."""
    from loomtui.config import trailer_name_problem

    name = text.strip().removesuffix(":")
    if problem := trailer_name_problem(name):
        raise argparse.ArgumentTypeError(problem)
    return name


def _local_branches(workspace: Workspace) -> str:
    """This repository's branches, a few of them, as a hint says them (`loom/` sandboxes' left out)."""
    from loomtui.gitcmd import Git

    names = [name for name in Git(workspace.root).branch_tips() if not name.startswith("loom/")]
    return (", ".join(sorted(names)[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")) or "none"


def cmd_report(args: argparse.Namespace) -> int:
    from loomtui.observability.history import NoSuchBranch
    from loomtui.observability.metrics import compute_metrics
    from loomtui.observability.report import render

    if args.json and args.format not in ("text", "json"):  # two formats asked: neither is guessed
        raise LoomError(f"--json and --format {args.format} ask for two formats; give one (--json is --format json)")
    since, until = _window(args)  # bad input is said before the repository is opened
    workspace = workspace_for(args)
    try:
        metrics = compute_metrics(workspace, since, until, args.branch, agent_trailers=args.agent_trailer or ())
    except NoSuchBranch as exc:
        # Named by --branch itself: the branches there are, not "use --branch".
        hint = f"local branches: {_local_branches(workspace)}" if args.branch else "name the main branch with --branch"
        raise LoomError(f"{exc}; {hint}") from None
    finally:
        workspace.close()
    print(render(metrics, "json" if args.json else args.format))
    return 0


def register(commands: Any) -> None:
    """`loomtui report`."""
    from loomtui.observability.history import AGENT_TRAILERS_ENV

    report = add_command(
        commands, "report", cmd_report,
        "what the agents did in a window, per day and per runtime: sandboxes, merges and rejections, the "
        "acceptance rate, the agent-made share of the branch's commits, time to decision, gates, conflicts, "
        "escalations, overrides, tokens and cost", json_flag=True, reads_only=True)
    report.add_argument("--since", default=None, metavar="WHEN",
                        help="start of the window: a time before --until (7d, 12h, 2w) or an ISO date "
                             "(default: 7 days before --until)")
    report.add_argument("--until", default=None, metavar="WHEN",
                        help="end of the window, not in it: a date is its midnight UTC, so --until 2026-11-02 "
                             "ends with 1 November (default now)")
    report.add_argument("--branch", type=nonempty_arg, default=None, metavar="BRANCH",
                        help="the branch whose commits are counted (default main, then master, then the branch "
                             "origin/HEAD names, then init.defaultBranch, then the one checked out)")
    report.add_argument("--format", choices=("text", "json", "markdown", "prometheus"), default="text",
                        help="text (default), json, markdown (a weekly note) or prometheus (a textfile collector)")
    report.add_argument("--agent-trailer", action="append", type=_trailer_arg, metavar="NAME",
                        help="a commit trailer that marks agent-made work, besides the built-in ones (repeatable; "
                             f"also {AGENT_TRAILERS_ENV}=A,B)")


# -- the bench --------------------------------------------------------------------------------


def _fast_import(root: Path, start: float, span: float, merged: list[tuple[str, str, float]], people: int) -> int:
    """Write a history with git fast-import: each merged sandbox an agent commit and a loomtui merge,
    and `people` commits by people (some with an agent's co-author trailer); returns how many."""
    from loomtui.gitcmd import Git

    chunks: list[bytes] = []

    def commit(ref: str, mark: int, when: float, who: str, message: str, parents: list[int], body: str = "") -> None:
        text = message.encode()
        head = f"commit {ref}\nmark :{mark}\ncommitter {who} {int(when)} +0000\ndata {len(text)}\n"
        links = "".join(f"{'from' if i == 0 else 'merge'} :{p}\n" for i, p in enumerate(parents))
        chunks.append(head.encode() + text + b"\n" + links.encode() + body.encode())

    commit("refs/heads/main", 1, start, "Seed <seed@example.com>", "Initial commit", [],
           "M 100644 inline README.md\ndata 6\nhello\n")
    events = sorted([(at, "merge", sandbox, runtime) for sandbox, runtime, at in merged]
                    + [(start + (i + 0.5) * span / people, "person", str(i), "") for i in range(people)])
    mark, main = 1, 1
    for at, kind, name, runtime in events:
        if kind == "person":
            trailer = {0: "\n\nCo-Authored-By: Claude <noreply@anthropic.com>\n", 1: ""}.get(int(name) % 5, "")
            who = "Pat (aider) <pat@example.com>" if int(name) % 7 == 0 else "Pat <pat@example.com>"
            mark += 1
            commit("refs/heads/main", mark, at, who, f"Change {name}{trailer}", [main])
            main = mark
            continue
        mark += 1
        commit("refs/heads/loom/bench", mark, at - 60, "Agent <agent@example.com>", f"Work of {name}", [main])
        mark += 1
        message = (f"Merge loom/{name} into main: task {name}\n\nLoom-Sandbox: {name}\nLoom-Runtime: {runtime}\n"
                   f"Assisted-by: {runtime} (via loomtui)\n")
        commit("refs/heads/main", mark, at, "Lead <lead@example.com>", message, [main, mark - 1])
        main = mark
    Git(root).feed("fast-import", "--quiet", data=b"".join(chunks) + b"done\n")
    Git(root).out("symbolic-ref", "HEAD", "refs/heads/main")
    return mark


def _bench_rows(count: int, start: float, span: float) -> tuple[list[Any], list[tuple[float, str, str, dict[str, Any]]],
                                                             list[tuple[str, str, float]]]:
    """Sandboxes, their audit events (at, action, subject, details) and the merged ones, spread over the span."""
    from loomtui.store import SandboxRecord

    sandboxes: list[Any] = []
    events: list[tuple[float, str, str, dict[str, Any]]] = []
    merged: list[tuple[str, str, float]] = []
    for i in range(count):
        sid, runtime = f"b{i:05d}", RUNTIMES[i % len(RUNTIMES)]
        created = start + (i + 0.5) * span / count
        started, ended, decided = created + 60, created + 1800, created + 1800 + 600 + (i % 13) * 300
        outcome = "rejected" if i % 6 == 0 else "merged"
        result = {"input_tokens": 12000 + i % 500, "output_tokens": 3000, "cost_usd": 0.42} \
            if runtime == "claude" else {}
        sandboxes.append(SandboxRecord(
            id=sid, task=f"task {i}", runtime=runtime, status=outcome, created=created, updated=decided + 5,
            branch=f"loom/{sid}", data={"started_at": started, "ended_at": ended, "target": "main",
                                        **({"agent_result": result} if result else {})}))
        steps: list[tuple[float, str, dict[str, Any]]] = [
            (created, "sandbox.planned", {"runtime": runtime}),
            (created + 1, "claim.refused" if i % 40 == 0 else "claim.added", {"target": f"src/m{i % 97}.py"}),
            (started, "sandbox.running", {"from": "planned", "to": "running"}),
            (ended, "sandbox.exited", {"from": "running", "to": "exited", "exit_code": 0}),
            (ended + 5, "sandbox.gating", {"from": "exited", "to": "gating"}),
            (ended + 60, "gate.passed" if i % 9 else "gate.failed", {"gate": "tests"}),
            (ended + 90, "escalation.override" if i % 50 == 0 else "policy.evaluated",
             {"by": "lead@example.com", "reason": "hotfix", "sandbox": sid}),
            (decided, "sandbox.approved" if outcome == "merged" else "sandbox.rejected",
             {"from": "awaiting_review", "to": "approved" if outcome == "merged" else "rejected"}),
            (decided + 5, "sandbox.merged" if outcome == "merged" else "claim.released", {"from": "approved"}),
            (decided + 6, "sandbox.merge_conflict" if i % 70 == 0 else "claim.released", {"target": "main"}),
        ]
        events += [(at, action, sid, details) for at, action, details in steps]
        if outcome == "merged":
            merged.append((sid, runtime, decided + 5))
    return sandboxes, events, merged


def _bench_store(workspace: Any, sandboxes: list[Any], events: list[tuple[float, str, str, dict[str, Any]]],
                 audit_entries: int) -> None:
    from datetime import UTC, datetime

    from loomtui.audit import GENESIS, entry_hash
    from loomtui.store import EscalationRecord, EvalReportRecord, GateRunRecord

    store = workspace.store
    events = sorted(events, key=lambda e: e[0])[:audit_entries]
    rows, prev = [], GENESIS
    for seq, (at, action, subject, details) in enumerate(events, start=1):
        fields = {"seq": seq, "ts": datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds"),
                  "actor": "bench@example.com", "action": action, "subject": subject, "details": details,
                  "prev": prev}
        digest = entry_hash(fields)  # the line as AuditEntry.line() writes it, without its slower asdict
        rows.append((seq, digest, json.dumps({**fields, "hash": digest}, sort_keys=True, separators=(",", ":"))))
        prev = digest
    escalations = [EscalationRecord(0, s.id, "post-gate", "approved", ("high", "normal", "low")[n % 3], "bench",
                                    s.created + 1900, s.updated, {"rules": [{"name": f"rule-{n % 5}"}]})
                   for n, s in enumerate(sandboxes) if n % 3 == 0]
    runs = [GateRunRecord(0, s.id, gate, "failed" if n % 9 == 0 and gate == "tests" else "passed", f"c{n}",
                          s.data["ended_at"] + 10, s.data["ended_at"] + 60, {"blocking": True})
            for n, s in enumerate(sandboxes) for gate in ("tests", "compile")]
    reports = [EvalReportRecord(0, s.id, "sandbox", f"c{n}", "f", s.data["ended_at"] + 70,
                                {"regressions": ["tests/test_x.py::test_y"] if n % 9 == 0 else []})
               for n, s in enumerate(sandboxes)]
    with store.transaction():
        store.add_audit_entries(rows)
        store.bulk_add_sandboxes(sandboxes)
        store.bulk_add_escalations(escalations)
        store.bulk_add_gate_runs(runs)
        store.bulk_add_eval_reports(reports)


def cmd_bench_report(args: argparse.Namespace) -> int:
    from loomtui.gitcmd import Git
    from loomtui.observability.metrics import compute_metrics
    from loomtui.observability.report import render
    from loomtui.workspace import open_workspace

    if min(args.sandboxes, args.audit, args.commits, args.days) < 1:
        raise LoomError("--sandboxes, --audit, --commits and --days must be 1 or more", exit_code=2)
    now = time.time()
    span = args.days * 86400.0
    start = now - span
    with tempfile.TemporaryDirectory(prefix="loomtui-bench-report-") as scratch:
        root = Path(scratch) / "repo"
        root.mkdir()
        Git(root).out("init", "-q")
        built = time.monotonic()
        sandboxes, events, merged = _bench_rows(args.sandboxes, start, span)
        merged = merged[:max(0, (args.commits - 1) // 2)]
        commits = _fast_import(root, start, span, merged, max(0, args.commits - 1 - 2 * len(merged)))
        workspace = open_workspace(root)
        _bench_store(workspace, sandboxes, events, args.audit)
        build_s = time.monotonic() - built
        timings, cpu = [], []
        for _ in range(ROUNDS):
            began, used = time.monotonic(), _cpu_s()
            metrics = compute_metrics(workspace, now - 7 * 86400)
            render(metrics, "text")
            render(metrics, "prometheus")
            timings.append(time.monotonic() - began)
            cpu.append(_cpu_s() - used)
        workspace.close()
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "loomtui", "-C", str(root), "report", "--since", "7d",
                               "--format", "prometheus"], capture_output=True, check=False,
                              env={**os.environ, "LOOMTUI_AGENT_TRAILERS": ""})
        cli_s = time.monotonic() - began
    report_s, report_cpu_s = statistics.median(timings), statistics.median(cpu)
    figures = {
        "audit_entries": min(args.audit, len(events)), "sandboxes": args.sandboxes, "commits": commits,
        "days": args.days, "build_s": round(build_s, 2), "report_7d_s": round(report_s, 3),
        "report_7d_cpu_s": round(report_cpu_s, 3), "load_average": round(os.getloadavg()[0], 2),
        "report_cli_s": round(cli_s, 3), "target_s": BENCH_TARGET_S, "cli_exit_code": done.returncode,
        "window": {"audit_entries": metrics.audit_entries, "commits": metrics.commits,
                   "agent_commits": metrics.agent_commits, "decided": metrics.decided,
                   "acceptance_rate": metrics.acceptance_rate},
    }
    if args.json:
        print_json(figures)
    else:
        print(f"built {figures['audit_entries']:,} audit entries, {args.sandboxes:,} sandboxes and {commits:,} "
              f"commits over {args.days} days in {build_s:.1f} s")
        print(f"report over the last 7 days ({metrics.audit_entries:,} entries, {metrics.commits:,} commits, "
              f"{metrics.decided:,} decisions): {report_s * 1000:.0f} ms in process, {report_cpu_s * 1000:.0f} ms "
              f"of CPU with git's (median of {ROUNDS}; target {BENCH_TARGET_S:g} s: "
              f"{'met' if report_s <= BENCH_TARGET_S else 'missed'}; load average {figures['load_average']})")
        print(f"`loomtui report --format prometheus` as a command (Python's start included): {cli_s * 1000:.0f} ms")
        print(json.dumps(figures["window"]))
    if done.returncode != 0:
        raise LoomError(f"`loomtui report` failed on the bench repository: {done.stderr.decode().strip()[-300:]}",
                        exit_code=1)
    return 0


def register_bench(bench: Any) -> None:
    """`loomtui bench report`."""
    report = add_command(bench, "report", cmd_bench_report,
                         "build a store and repository (100,000 audit entries, 10,000 sandboxes, 20,000 commits by "
                         "default) and time `report` over the last 7 days (target 1 s)",
                         json_flag=True)
    report.add_argument("--audit", type=positive_int_arg, default=100_000,
                        metavar="N", help="audit entries (default 100000)")
    report.add_argument("--sandboxes", type=positive_int_arg, default=10_000,
                        metavar="N", help="sandboxes (default 10000)")
    report.add_argument("--commits", type=positive_int_arg, default=20_000, metavar="N", help="commits (default 20000)")
    report.add_argument("--days", type=positive_int_arg, default=60, metavar="N",
                        help="the days the history is spread over, ending now (default 60)")
