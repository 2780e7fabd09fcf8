"""Baselines: gate 1's checks run on a commit (a sandbox's base), once, shared by every sandbox on it.

A change is judged against what its base commit already did: a test that failed
there is not the agent's fault. The baseline of a check at a commit is one gate run
in the store (scope `baseline`, keyed by the check's fingerprint): the first process
to need it runs it, in a scratch tree of the commit confined as an agent is, and any
other waits for it; a run whose process died is taken over.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Final

from loomtui.config import GateConfig
from loomtui.errors import LoomError
from loomtui.execution import procs
from loomtui.execution.cgroup_limits import group_name, sandbox_groups
from loomtui.execution.confinement import confined_scratch_argv
from loomtui.execution.sandboxes import largest_file
from loomtui.files import remove_tree
from loomtui.guardrails.checks import CheckRun, Progress, run_check
from loomtui.guardrails.scratch import export_tree
from loomtui.repo import DISTRUSTING_GIT_CONFIG
from loomtui.store import GateRunRecord
from loomtui.workspace import Workspace

BASELINE: Final = "baseline"
MERGED: Final = "merged"
WAIT_POLL_S: Final = 0.2
# What code run in a scratch tree gets of the caller's environment: enough to run, no secrets.
_SCRATCH_ENV: Final = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "TERM")
_DROPPED_ENV_PREFIXES: Final = ("PYTEST_", "COV_CORE_")


def fingerprint(gate: GateConfig) -> str:
    """Names a check's settings: a stored result stands only for the same command and format."""
    text = json.dumps([gate.name, list(gate.run), sorted(gate.env), gate.format, gate.timeout, gate.blocking])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_distrust_environment() -> dict[str, str]:
    """Any git a check runs (a plugin asking `git describe`) skips fsmonitor and hooks an agent planted."""
    settings = DISTRUSTING_GIT_CONFIG[1::2]  # the values of its `-c` pairs
    env = {"GIT_CONFIG_COUNT": str(len(settings))}
    for number, setting in enumerate(settings):
        key, _, value = setting.partition("=")
        env[f"GIT_CONFIG_KEY_{number}"] = key
        env[f"GIT_CONFIG_VALUE_{number}"] = value
    return env


def gate_environment(source: Mapping[str, str], gate: GateConfig) -> dict[str, str]:
    """`source` without the variables of an enclosing pytest run, with the gate's own `env:`."""
    env = {k: v for k, v in source.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
    env.update(gate.env)
    env.update(git_distrust_environment())
    return env


def scratch_environment(gate: GateConfig, tmp: Path) -> dict[str, str]:
    """The environment of a check in a scratch tree: the basics of ours, the gate's own, a private TMPDIR."""
    env = {name: os.environ[name] for name in _SCRATCH_ENV if name in os.environ}
    env["TMPDIR"] = str(tmp)
    return gate_environment(env, gate)


def evals_dir(workspace: Workspace) -> Path:
    return workspace.paths.state_dir / "evals"


def run_dir(workspace: Workspace, run_id: int) -> Path:
    """Where a gate run's log and reports are kept."""
    return evals_dir(workspace) / "runs" / str(run_id)


def resolved_argv(gate: GateConfig) -> list[str]:
    """The gate's command; a bare `python`/`python3` is the interpreter loomtui runs on.

    That interpreter has pytest (a loomtui dependency, for exactly this), the way a
    runtime's `loomtui` means this very installation.
    """
    argv = list(gate.run)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


@contextmanager
def run_groups(workspace: Workspace, run_id: int) -> Iterator[Callable[[list[str]], list[str]]]:
    """Control groups of a gate run's own, limited as an agent is (`limits:`; a check runs code an agent
    wrote, a fork bomb in a test as much as in the agent): yields how to wrap a command to run in them
    (as it is where none can be made), and removes them, and what is left in them, after."""
    limits = workspace.load_config().limits
    groups, _said = sandbox_groups(group_name(workspace.paths.state_dir, f"gate-{run_id}"), limits)
    try:
        yield groups.joined_argv if groups is not None else list
    finally:
        if groups is not None:
            groups.remove()


def run_in_scratch(workspace: Workspace, gate: GateConfig, tree: Path, run_id: int, *,
                   progress: Progress | None = None, rerun_failed: bool = True) -> CheckRun:
    """Run one check in a scratch tree, confined, with the scratch environment, in its own groups."""
    directory = run_dir(workspace, run_id)
    tmp = directory / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = scratch_environment(gate, tmp)
    argv = resolved_argv(gate)
    with run_groups(workspace, run_id) as joined:
        def wrap(command: list[str], writable: Sequence[Path]) -> list[str]:
            return joined(confined_scratch_argv(workspace, tree, command, env, writable=[*writable, tmp]))

        try:
            return run_check(gate, argv, tree, env, directory, wrap=wrap, progress=progress,
                             rerun_failed=rerun_failed)
        finally:
            with suppress(OSError):
                remove_tree(tmp)  # what it left there (`run_check` empties its reports' folder)


def _holder() -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "identity": procs.identity(pid), "host": socket.gethostname()}


def _abandoned(run: GateRunRecord) -> bool:
    holder = run.data.get("holder") or {}
    if holder.get("host") != socket.gethostname():
        return False  # another machine's: it answers for itself
    return not procs.is_alive(holder.get("pid"), holder.get("identity"))


def stored_baseline(workspace: Workspace, commit: str, gate: GateConfig) -> GateRunRecord | None:
    """The finished baseline of a check at a commit, if one was run."""
    runs = [r for r in workspace.store.shared_gate_runs(BASELINE, commit)
            if r.gate == gate.name and r.fingerprint == fingerprint(gate) and r.status in ("passed", "failed")]
    return runs[-1] if runs else None


MEASURED_ALONE_KEY: Final = "measured_alone"
"""A baseline run again once the check beside whose run it wrote no report had stopped (`alone`)."""


def baseline(workspace: Workspace, commit: str, gate: GateConfig, *, rerun_failed: bool = True,
             progress: Progress | None = None, fresh: bool = False,
             alone: bool = False) -> tuple[CheckRun | None, GateRunRecord]:
    """The check's result at `commit`: stored, awaited from the process running it, or run here.

    Returns (None, run) when the baseline could not run (an error: there is then no
    baseline, and the change is judged on its own). `fresh`: run it again even if stored; `alone`: marked
    as run with no change's check beside it (MEASURED_ALONE_KEY).
    """
    mark = fingerprint(gate)
    deadline = time.monotonic() + 2 * gate.timeout + 60
    while True:
        run, mine = workspace.store.take_shared_run(BASELINE, commit, gate.name, mark, _holder(), _abandoned,
                                                    fresh=fresh)
        if mine:
            result = _run_baseline(workspace, commit, gate, run, rerun_failed=rerun_failed, progress=progress,
                                   alone=alone)
            return result, workspace.store.gate_run(run.id)
        if run.status != "running":
            return CheckRun.from_dict(run.data["result"]), run
        fresh = False  # another process is running it now: that one is fresh
        if time.monotonic() > deadline:
            raise LoomError(f"the baseline of {gate.name} at {commit[:12]} is still running in another process "
                            f"(gate run #{run.id}); try again later")
        time.sleep(WAIT_POLL_S)


@contextmanager
def scratch_tree(workspace: Workspace, commit: str, name: str, base: str | None = None) -> Iterator[Path]:
    """A tree of `commit`'s files for one run (`name`), under the evals dir; removed afterwards. What it
    brought since `base` is held to `limits.file_size` (`export_tree`); without a base, nothing is (the
    base commit's own tree, the team's)."""
    tree = evals_dir(workspace) / "trees" / name
    try:
        export_tree(workspace.root, commit, tree, largest_file(workspace) if base else None, base)
        yield tree
    finally:
        with suppress(OSError):
            remove_tree(tree)  # an agent's tree: any depth


def _run_baseline(workspace: Workspace, commit: str, gate: GateConfig, run: GateRunRecord, *,
                  rerun_failed: bool, progress: Progress | None, alone: bool = False) -> CheckRun | None:
    try:
        with scratch_tree(workspace, commit, f"base-{run.id}") as tree:
            result = run_in_scratch(workspace, gate, tree, run.id, progress=progress, rerun_failed=rerun_failed)
    except (LoomError, OSError) as exc:
        workspace.store.finish_gate_run(run.id, "error", {"summary": f"the baseline could not run: {exc}"})
        return None
    status = "error" if result.outcome == "error" else result.outcome
    workspace.store.finish_gate_run(run.id, status, {"result": result.as_dict(), "summary": result.summary,
                                                     "holder": run.data.get("holder"),
                                                     **({MEASURED_ALONE_KEY: True} if alone else {})})
    return None if status == "error" else result
