"""Benchmark of the agent loop: `loomtui bench hook [--json]`.

Every edit an agent makes waits for `loomtui hook claude` (Claude Code's
PreToolUse), and every commit for `loomtui hook git-pre-commit`. This measures
both as whole processes, the way the agent runs them: a JSON event on stdin,
`$LOOM_BROKER` naming a real broker that serves one sandbox, in a repository of
the networkx package's size (a copy of the installed package, committed) where
200 other sandboxes hold 5,000 claims. Beside them, in the same run, a bare
`python -c pass`: the figures are read against it (target: p50 at most 5x, p95 at
most 8x).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loomtui.coordination.bench import _copy_listed, _default_tree
from loomtui.errors import LoomError, shown
from loomtui.gitcmd import Git
from loomtui.store import SandboxRecord

OTHER_SANDBOXES = 200
HELD_CLAIMS = 5_000
AGENT = "bench-agent"


def _percentiles(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p95_ms": round(p95 * 1000, 1),
            "runs": len(ordered)}


def _git(repo: Path, *args: str) -> None:
    Git(repo).out("-c", "user.name=bench", "-c", "user.email=bench@example.com", *args)


def _run(argv: list[str], *, stdin: str = "", cwd: Path, env: dict[str, str]) -> tuple[float, str, int]:
    started = time.perf_counter()
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=cwd, env=env, check=False)
    return time.perf_counter() - started, done.stdout, done.returncode


def _edits(repo: Path, path: str, count: int) -> list[str]:
    """`count` PreToolUse Edit events, each changing one line of `path` (rotating over its lines)."""
    text = (repo / path).read_text()
    lines = [line for line in text.splitlines(keepends=True)
             if line.strip().startswith("return ") and text.count(line) == 1]
    if not lines:
        raise LoomError(f"{path}: no line to edit for the benchmark")
    events = []
    for n in range(count):
        line = lines[n % len(lines)]
        events.append(json.dumps({
            "session_id": "bench", "transcript_path": "/dev/null", "cwd": str(repo), "permission_mode": "default",
            "hook_event_name": "PreToolUse", "tool_name": "Edit", "tool_use_id": f"toolu_bench_{n}",
            "tool_input": {"file_path": str(repo / path), "old_string": line,
                           "new_string": line.replace("return ", "return  ", 1), "replace_all": False}}))
    return events


def run_hook_bench(calls: int = 40, path: Path | None = None,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure both hooks as whole processes through a real broker; the figures as a dict."""
    from loomtui.governance.broker import Broker
    from loomtui.governance.coordinator import governed_coordinator
    from loomtui.workspace import open_workspace

    say = progress or (lambda _text: None)
    source = (path or _default_tree()).resolve()
    with tempfile.TemporaryDirectory(prefix="loomtui-hook-bench-") as scratch:
        repo = Path(scratch) / "repo"
        say(f"copying {source} and committing it")
        if sum(path.endswith(".py") for path in _copy_listed(source, repo / source.name)) < 2:
            raise LoomError(f"{shown(str(source))}: the hook benchmark edits a tree of Python files (two at least, "
                            "with functions); this one has fewer")
        _git(repo, "init", "-q", "-b", "main")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "bench")
        workspace = open_workspace(repo)
        try:
            say("indexing; opening 200 sandboxes holding 5,000 claims")
            coordinator = governed_coordinator(workspace)
            files = sorted(coordinator.index.files)
            target = f"{source.name}/algorithms/shortest_paths/weighted.py"
            if target not in coordinator.index.files:
                target = max(files, key=lambda f: len(coordinator.index.regions_in(f)))
            committed = next((f for f in files if f != target and f.endswith(".py") and "test" not in f
                              and any(r.qualname for r in coordinator.index.regions_in(f))), None)
            if committed is None:
                raise LoomError(f"{shown(str(source))}: the hook benchmark needs two Python files with functions "
                                "outside tests; this tree has fewer")
            spare = [r.id for r in coordinator.index.regions.values()
                     if r.qualname and r.path not in (target, committed)][:HELD_CLAIMS]
            now = time.time()
            store = workspace.store
            with store.transaction():
                for number in range(OTHER_SANDBOXES + 1):
                    sandbox = AGENT if number == OTHER_SANDBOXES else f"bench-{number:03d}"
                    store.add_sandbox(SandboxRecord(sandbox, "bench", "script", "running", now, now,
                                                    worktree=str(repo)))
                for number, region in enumerate(spare):
                    store.add_claim(f"bench-{number % OTHER_SANDBOXES:03d}", region, "exclusive", "bench",
                                    now + 3600, [region])
            held = len(store.live_claims())
            socket_path = Path(scratch) / "broker.sock"
            broker = Broker(workspace, AGENT, repo, socket_path)
            broker.start()
            try:
                return _measure(repo, target, committed, calls, socket_path, held, source, say)
            finally:
                broker.close()
        finally:
            workspace.close()


def _measure(repo: Path, target: str, committed: str, calls: int, socket_path: Path, held: int,
             source: Path, say: Callable[[str], None]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOOM_SANDBOX", "LOOM_REPO")}
    env["LOOM_BROKER"] = str(socket_path)
    hook = [sys.executable, "-m", "loomtui", "hook", "claude"]
    commit_hook = [sys.executable, "-m", "loomtui", "hook", "git-pre-commit"]
    bare = [sys.executable, "-c", "pass"]
    # One warm-up of each: byte-code compiled and cached as any installed copy has it, the
    # broker's index built (once per sandbox, on its first edit).
    warm = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    events = _edits(repo, target, calls + 1)
    say("warming up (byte code, the broker's index)")
    _run(hook, stdin=events[0], cwd=repo, env=warm)
    edited = (repo / committed).read_text().replace("\n", "\n# bench\n", 1)
    (repo / committed).write_text(edited)
    _git(repo, "add", committed)
    _run(commit_hook, cwd=repo, env=warm)
    _run(bare, cwd=repo, env=env)

    say(f"{calls} PreToolUse Edit calls, {calls} pre-commit calls, {calls * 2} bare interpreters")
    timings: dict[str, list[float]] = {"bare": [], "edit": [], "commit": []}
    answers: dict[str, int] = {}
    for n in range(calls):
        seconds, _out, _code = _run(bare, cwd=repo, env=env)
        timings["bare"].append(seconds)
        seconds, out, code = _run(hook, stdin=events[n + 1], cwd=repo, env=env)
        timings["edit"].append(seconds)
        decision = json.loads(out)["hookSpecificOutput"]["permissionDecision"] if out.strip() else f"exit {code}"
        answers[decision] = answers.get(decision, 0) + 1
        seconds, _out, code = _run(bare, cwd=repo, env=env)
        timings["bare"].append(seconds)
        seconds, _out, code = _run(commit_hook, cwd=repo, env=env)
        timings["commit"].append(seconds)
        answers[f"commit exit {code}"] = answers.get(f"commit exit {code}", 0) + 1
    say(f"{calls} permission_prompt calls to one `loomtui mcp` server (no person needed)")
    timings["mcp"] = asyncio.run(_mcp_answers(repo, env, events[1:calls + 1]))
    bare_figures = _percentiles(timings["bare"])
    result: dict[str, Any] = {
        "repository": {"source": str(source), "files": len(list((repo / source.name).rglob("*.py"))),
                       "sandboxes": OTHER_SANDBOXES + 1, "claims_held": held},
        "bare_python": bare_figures,
        "answers": answers,
    }
    for name, key in (("hook_claude_pretooluse_edit", "edit"), ("hook_git_pre_commit", "commit"),
                      ("mcp_permission_prompt", "mcp")):
        figures = _percentiles(timings[key])
        figures["p50_x_bare"] = round(figures["p50_ms"] / bare_figures["p50_ms"], 2)
        figures["p95_x_bare"] = round(figures["p95_ms"] / bare_figures["p95_ms"], 2)
        figures["meets_target"] = figures["p50_x_bare"] <= 5 and figures["p95_x_bare"] <= 8
        result[name] = figures
    return result


async def _mcp_answers(repo: Path, env: dict[str, str], events: list[str]) -> list[float]:
    """Round trips of Claude Code's permission prompt to a running `loomtui mcp`, one per edit.

    The server is long-lived (it starts with the agent), so each answer is a tool call
    through the broker, not a process start.
    """
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "loomtui", "-C", str(repo), "mcp"],
                                   env=env, cwd=str(repo))
    samples: list[float] = []
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        for number, event in enumerate(events):
            data = json.loads(event)
            arguments = {"tool_name": data["tool_name"], "input": data["tool_input"],
                         "tool_use_id": f"toolu_bench{number:04d}"}
            started = time.perf_counter()
            await client.call_tool("permission_prompt", arguments)
            samples.append(time.perf_counter() - started)
    return samples


def report_lines(result: dict[str, Any]) -> list[str]:
    repo = result["repository"]
    bare = result["bare_python"]
    lines = [(f"repository: {repo['files']} Python files ({repo['source']}), {repo['sandboxes']} sandboxes, "
              f"{repo['claims_held']} claims held"),
             f"python -c pass            p50 {bare['p50_ms']:7.1f} ms   p95 {bare['p95_ms']:7.1f} ms"]
    for name, label in (("hook_claude_pretooluse_edit", "hook claude (PreToolUse)"),
                        ("hook_git_pre_commit", "hook git-pre-commit"),
                        ("mcp_permission_prompt", "mcp permission_prompt")):
        f = result[name]
        verdict = "within target" if f["meets_target"] else "OVER target (p50 <= 5x, p95 <= 8x)"
        lines.append(f"{label:<25} p50 {f['p50_ms']:7.1f} ms ({f['p50_x_bare']}x)   "
                     f"p95 {f['p95_ms']:7.1f} ms ({f['p95_x_bare']}x)   {verdict}")
    lines.append("answers: " + ", ".join(f"{k} {v}" for k, v in sorted(result["answers"].items())))
    return lines


