"""`loomtui bench sandboxes`: sandbox figures under load, on a fresh copy of the sample repo.

Creates `count` sandboxes, runs one script agent in each writing `lines_per_second`
numbered log lines for `seconds`, and reports create and start times, the
supervisors' CPU cost per agent-minute and how many log lines were lost (every
numbered line is looked for). The TUI's key-to-repaint latency under that load is
measured by a callable the TUI layer passes in, while the agents run.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loomtui.execution.isolation import isolation_status
from loomtui.execution.lifecycle import EXITED, FAILED
from loomtui.execution.sandboxes import log_path, wait_for_status
from loomtui.workflow.tasks import create_sandbox, start
from loomtui.workspace import Workspace, open_workspace

TuiMeasure = Callable[[Workspace], Mapping[str, Any]]
"""Given the loaded workspace, drive the TUI with the pilot and return at least {"p95_ms": float}."""


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (fraction in 0..1)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _ms(values: Sequence[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values) * 1000, 1), "p95": round(percentile(values, 0.95) * 1000, 1)}


def _lines_found(path: Path, total: int) -> int:
    wanted = {f"bench line {n}" for n in range(1, total + 1)}
    found = set()
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            text = line.rstrip("\n")
            if text in wanted:
                found.add(text)
    return len(found)


def run_sandbox_bench(
    *, count: int = 20, seconds: float = 10.0, lines_per_second: int = 100,
    measure_tui: TuiMeasure | None = None, isolate: bool | None = None, keep: bool = False,
) -> dict[str, Any]:
    """Run the benchmark and return its figures as a JSON-ready dict."""
    from loomtui.sample import prepare_demo_repo

    repo = prepare_demo_repo()
    workspace = open_workspace(repo)
    lines = int(seconds * lines_per_second)
    script = repo.parent / "bench-agent.yaml"
    script.write_text(f'- {{log: "bench line {{n}}", repeat: {lines}, every: {1 / lines_per_second!r}}}\n')
    try:
        created, started = [], []
        ids = []
        for number in range(count):
            begin = time.perf_counter()
            record = create_sandbox(workspace, f"bench agent {number}: log {lines} lines", "script",
                                    script=script, isolate=isolate)
            created.append(time.perf_counter() - begin)
            ids.append(record.id)
        for sandbox_id in ids:
            begin = time.perf_counter()
            start(workspace, sandbox_id)
            started.append(time.perf_counter() - begin)
        tui = dict(measure_tui(workspace)) if measure_tui is not None else None
        finished = [wait_for_status(workspace, sandbox_id, {EXITED, FAILED}, timeout=seconds * 5 + 120)
                    for sandbox_id in ids]
        cpu = sum(float(r.data.get("supervisor_cpu_s") or 0) for r in finished)
        cpu_running = sum(float(r.data.get("supervisor_cpu_running_s") or 0) for r in finished)
        minutes = sum((float(r.data["ended_at"]) - float(r.data["started_at"])) / 60 for r in finished)
        found = sum(_lines_found(log_path(workspace, sandbox_id), lines) for sandbox_id in ids)
        result: dict[str, Any] = {
            "sandboxes": count,
            "agent_seconds": seconds,
            "lines_per_second_per_agent": lines_per_second,
            "isolation": finished[0].isolation if finished else None,
            "isolation_detail": isolation_status().detail,
            "cpus": os.cpu_count(),
            "create_ms": _ms(created),
            "start_ms": _ms(started),
            "agents_failed": sum(1 for r in finished if r.status == FAILED),
            "supervisor_cpu_s_per_agent_minute": round(cpu / minutes, 3) if minutes else None,
            "supervisor_cpu_s_per_agent_minute_excluding_startup": round(cpu_running / minutes, 3) if minutes else None,
            "log_lines_expected": lines * count,
            "log_lines_written": found,
            "log_lines_lost": lines * count - found,
        }
        if tui is None:
            result["tui_key_to_repaint_p95_ms"] = None
            result["tui_note"] = "not measured: pass measure_tui (the TUI layer's pilot measurement)"
        else:
            result["tui_key_to_repaint_p95_ms"] = tui.get("p95_ms")
            result["tui"] = tui
        return result
    finally:
        workspace.close()
        if keep:
            print(f"bench repository kept at {repo}", file=sys.stderr)
        else:
            shutil.rmtree(repo.parent, ignore_errors=True)


def format_report(result: Mapping[str, Any]) -> str:
    """The figures as lines for a terminal."""
    tui = result.get("tui_key_to_repaint_p95_ms")
    return "\n".join([
        (f"{result['sandboxes']} sandboxes, {result['lines_per_second_per_agent']} lines/s each for "
         f"{result['agent_seconds']:g}s, isolation {result['isolation']}, {result['cpus']} CPUs"),
        f"create      median {result['create_ms']['median']} ms, p95 {result['create_ms']['p95']} ms",
        f"start       median {result['start_ms']['median']} ms, p95 {result['start_ms']['p95']} ms",
        (f"supervisor  {result['supervisor_cpu_s_per_agent_minute']} CPU s per agent-minute "
         f"({result['supervisor_cpu_s_per_agent_minute_excluding_startup']} excluding start-up)"),
        (f"log lines   {result['log_lines_written']}/{result['log_lines_expected']} written, "
         f"{result['log_lines_lost']} lost"),
        f"TUI         key-to-repaint p95 {tui} ms" if tui is not None else f"TUI         {result.get('tui_note')}",
    ])
