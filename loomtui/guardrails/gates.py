"""Gate 1, deterministic checks: run the configured gates in a sandbox's worktree.

The policy after the gates needs real gate results. This runs each deterministic
gate of `.loom/loom.yaml` (`gates: [{name, run, timeout}]`) in the sandbox's
worktree, confined as its agent was (the tests it runs are the agent's code), at its
branch tip, and records what really happened
with `store.add_gate_run` / `store.finish_gate_run` and one audit entry per gate.

Not here yet (the guardrails issue): gate 2's behavioural scoring, comparison
with the base commit's baseline, and live streaming of results; behavioural
gates are skipped, saying so. Callers use `run_configured_gates` and `GateResult`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from loomtui.config import GateConfig
from loomtui.errors import LoomError
from loomtui.execution.confinement import confined_argv, sandbox_environment
from loomtui.execution.gitops import Git
from loomtui.execution.runtimes import LaunchSpec
from loomtui.execution.sandboxes import get_sandbox
from loomtui.repo import DISTRUSTING_GIT_CONFIG
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace

OUTPUT_TAIL_LINES: Final = 40
# pytest's short summary (`-ra`): `FAILED tests/x.py::test_y - AssertionError...`.
_PYTEST_PROBLEM: Final = re.compile(r"^(?:FAILED|ERROR) (\S+?)(?: - .*)?$")
# Variables of a pytest that runs loomtui's own tests must not leak into the gate's pytest.
_DROPPED_ENV_PREFIXES: Final = ("PYTEST_", "COV_CORE_")


@dataclass(frozen=True)
class GateResult:
    """One gate's run: `status` is passed, failed (non-zero exit) or error (could not run)."""

    gate: str
    status: str
    run_id: int
    commit: str
    argv: tuple[str, ...]
    exit_code: int | None
    duration_s: float
    summary: str
    failed_tests: tuple[str, ...] = ()
    output_tail: tuple[str, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """E.g. `tests failed (1 failed, 20 passed in 0.55s)`."""
        return f"{self.gate} {self.status}" + (f" ({self.summary})" if self.summary else "")


def gate_argv(gate: GateConfig) -> list[str]:
    """The gate's command; a bare `python`/`python3` is the interpreter loomtui runs on.

    That interpreter has pytest (a loomtui dependency, for exactly this), the way a
    runtime's `loomtui` means this very installation.
    """
    argv = list(gate.run)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def gate_environment(source: Mapping[str, str] | None = None, gate: GateConfig | None = None) -> dict[str, str]:
    """The caller's environment without the variables of an enclosing pytest run, and the gate's own
    (its `env:`).

    Any git a check runs in the worktree (a plugin asking `git describe`, say) is told
    to skip fsmonitor and hooks, which the agent may have planted in the worktree's config.
    """
    env = dict(os.environ if source is None else source)
    env = {k: v for k, v in env.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
    env.update(gate.env if gate is not None else ())
    settings = DISTRUSTING_GIT_CONFIG[1::2]  # the values of its `-c` pairs
    env["GIT_CONFIG_COUNT"] = str(len(settings))
    for number, setting in enumerate(settings):
        key, _, value = setting.partition("=")
        env[f"GIT_CONFIG_KEY_{number}"] = key
        env[f"GIT_CONFIG_VALUE_{number}"] = value
    return env


def failed_tests(output: str) -> tuple[str, ...]:
    """Test ids pytest's short summary names as failed or errored."""
    found = []
    for line in output.splitlines():
        match = _PYTEST_PROBLEM.match(line.strip())
        if match and match[1] not in found:
            found.append(match[1])
    return tuple(found)


def _summary(output: str, exit_code: int | None) -> str:
    """The last non-decorative line of the output (pytest's `1 failed, 20 passed in 0.5s`)."""
    for line in reversed(output.splitlines()):
        text = line.strip().strip("=").strip()
        if text and not set(text) <= set("!-=. "):
            return text[:200]
    return "" if exit_code == 0 else f"exit {exit_code}"


def _run_one(workspace: Workspace, record: SandboxRecord,
             gate: GateConfig) -> tuple[str, int | None, str, list[str]]:
    """Run one gate with the agent's own confinement: it runs the agent's code (its tests)."""
    argv = gate_argv(gate)
    worktree = Path(record.worktree)
    if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
        return "error", None, f"{argv[0]!r} is not on PATH", argv
    spec = LaunchSpec.from_data(record.data["launch"])
    env = gate_environment(sandbox_environment(workspace, record, spec), gate)
    command = confined_argv(workspace, record, argv, env)  # no network, nothing writable but the worktree
    try:
        process = subprocess.Popen(command, cwd=worktree, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                                   start_new_session=True)
    except OSError as exc:
        return "error", None, f"cannot run {argv[0]}: {exc.strerror or exc}", argv
    try:
        stdout, stderr = process.communicate(timeout=gate.timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the whole group: a test's children too
        stdout, _ = process.communicate()
        return "error", None, f"timed out after {gate.timeout:g}s\n{stdout}", argv
    output = stdout + (("\n" + stderr) if stderr.strip() else "")
    return ("passed" if process.returncode == 0 else "failed"), process.returncode, output, argv


def run_configured_gates(workspace: Workspace, sandbox_id: str, *,
                         on_gate: Callable[[GateResult], None] | None = None) -> list[GateResult]:
    """Run each deterministic gate of `.loom/loom.yaml` in the sandbox's worktree; record real results.

    Every gate runs (a failed one does not stop the next), in the order configured,
    at the sandbox's branch tip. Returns the results in that order; raises
    LoomError when the sandbox has no worktree or branch to run in.
    """
    record = get_sandbox(workspace, sandbox_id)
    worktree = Path(record.worktree)
    if not worktree.is_dir():
        raise LoomError(f"sandbox {record.id}: its worktree {worktree} is missing; no gate can run", exit_code=1)
    commit = Git(workspace.root).resolve_commit(record.branch)
    if commit is None:
        raise LoomError(f"sandbox {record.id}: branch {record.branch} does not exist", exit_code=1)
    results: list[GateResult] = []
    for gate in workspace.load_config().gates:
        if gate.kind != "deterministic":
            workspace.record("gate.skipped", record.id, {"gate": gate.name, "kind": gate.kind,
                                                        "reason": "behavioural gates need the guardrails layer"})
            continue
        run = workspace.store.add_gate_run(record.id, gate.name, commit)
        started = time.monotonic()
        status, exit_code, output, argv = _run_one(workspace, record, gate)
        duration = round(time.monotonic() - started, 2)
        tail = tuple(output.splitlines()[-OUTPUT_TAIL_LINES:])
        result = GateResult(gate=gate.name, status=status, run_id=run.id, commit=commit, argv=tuple(argv),
                            exit_code=exit_code, duration_s=duration, summary=_summary(output, exit_code),
                            failed_tests=failed_tests(output), output_tail=tail)
        workspace.store.finish_gate_run(run.id, status, {
            "argv": list(argv), "exit_code": exit_code, "duration_s": duration, "summary": result.summary,
            "failed_tests": list(result.failed_tests), "output_tail": list(tail),
            "runner": "loomtui.guardrails.gates (gate 1: deterministic)",
        })
        workspace.record(f"gate.{status}", record.id, {
            "gate": gate.name, "run": run.id, "commit": commit, "exit_code": exit_code,
            "summary": result.summary, "failed_tests": list(result.failed_tests),
        })
        results.append(result)
        if on_gate is not None:
            on_gate(result)
    return results
