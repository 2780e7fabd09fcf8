"""A person's hands on a running agent: stop (SIGTERM, then SIGKILL after a grace), pause and
resume (SIGSTOP, SIGCONT to its process group), and attach to an interactive one's tmux session."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from typing import Any, Final

from loomtui.errors import LoomError
from loomtui.execution.leftovers import save_without_supervisor
from loomtui.execution.lifecycle import EXITED, LIVE, PAUSED, RUNNING, transition
from loomtui.execution.procs import group_exists, is_alive, signal_group
from loomtui.execution.sandbox_paths import TMUX, tmux_session
from loomtui.execution.sandboxes import get_sandbox, refuse_elsewhere
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace

DEFAULT_GRACE_S: Final = 10.0
"""How long a stopped agent gets between SIGTERM and SIGKILL."""
SUPERVISOR_SETTLE_S: Final = 10.0
"""How long `stop` waits for the supervisor to record the exit before recording it itself."""
SPARE_ON_TERM: Final = frozenset({"bwrap"})
"""Left out of a SIGTERM to an agent's group: bwrap dies of it at once and SIGKILLs the agent,
which would skip the agent's grace period."""


def live_agent_group(record: SandboxRecord) -> int | None:
    """The agent's process group id, if the recorded agent is still that very process.

    Agents lead their own process group, so the agent's pid is also the group's id.
    """
    pid = record.data.get("agent_pid")
    if isinstance(pid, int) and is_alive(pid, record.data.get("agent_pid_start")):
        return pid
    return None


def wait_until(condition: Any, timeout: float, interval: float = 0.05) -> bool:
    """Whether `condition()` came to hold within `timeout` seconds, looked at every `interval`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def stop(workspace: Workspace, sandbox_id: str, *, grace: float = DEFAULT_GRACE_S) -> SandboxRecord:
    """SIGTERM the agent's process group, SIGKILL it after `grace` seconds; wait for the exit record."""
    record = get_sandbox(workspace, sandbox_id)
    refuse_elsewhere(record, "stop it")
    if record.status not in LIVE:
        raise LoomError(f"sandbox {record.id} is {record.status}, not running", exit_code=1)
    asked = {"by": workspace.actor, "at": time.time(), "grace": grace}
    workspace.store.update_sandbox(record.id, data={"stop_requested": asked})
    workspace.record("sandbox.stop_requested", record.id, {"grace": grace})
    group = live_agent_group(record)
    killed = False
    if group is not None:
        signal_group(group, signal.SIGTERM, spare=SPARE_ON_TERM)
        signal_group(group, signal.SIGCONT)  # a paused agent must run to act on SIGTERM
        if not wait_until(lambda: not group_exists(group), grace):
            # Said in the store first, so the supervisor (which kills for a stop whose caller went away)
            # does not kill and record it too; recorded before the signal, so the entry precedes the exit.
            workspace.store.update_sandbox(record.id, data={"stop_requested": {**asked, "killing": True}})
            workspace.record("sandbox.killed", record.id, {"after_grace_s": grace, "signal": "SIGKILL"})
            killed = signal_group(group, signal.SIGKILL)
    # The supervisor records the exit; give it time, unless it is gone.
    wait_until(lambda: get_sandbox(workspace, record.id).status not in LIVE
          or not _supervisor_alive(workspace, record.id), SUPERVISOR_SETTLE_S)
    current = get_sandbox(workspace, record.id)
    if current.status not in LIVE:
        return current
    saved: str | None = None
    left: dict[str, object] = {}
    if not _supervisor_alive(workspace, record.id) and (
            group is None or wait_until(lambda: not group_exists(group), 5)):
        # Nothing of it runs, and no supervisor will bring in what it did: done here, as a reconcile does
        # (the review saw an empty change, or the branch as it stood when its supervisor died).
        saved, left = save_without_supervisor(workspace, current)
    return transition(workspace, record.id, EXITED, reason="stopped; no supervisor recorded the exit",
                      data={"ended_at": time.time(), "killed_after_grace": killed, **left},
                      allowed_from=LIVE, audit={"saved_commit": saved} if left else None)


def _supervisor_alive(workspace: Workspace, sandbox_id: str) -> bool:
    record = workspace.store.get_sandbox(sandbox_id)
    return record is not None and is_alive(record.pid, record.pid_start)


def _signal_agent(workspace: Workspace, sandbox_id: str, sig: signal.Signals, *, expect: str,
                  to: str, verb: str) -> SandboxRecord:
    record = get_sandbox(workspace, sandbox_id)
    refuse_elsewhere(record, f"{verb.removesuffix('d')} it")
    if record.status != expect:
        raise LoomError(f"sandbox {record.id} is {record.status}; only a {expect} sandbox can be {verb}",
                        exit_code=1)
    group = live_agent_group(record)
    if group is None:
        raise LoomError(f"sandbox {record.id}: its agent process is gone (its end is recorded when the "
                        "sandboxes are next reconciled)", exit_code=1)
    signal_group(group, sig)
    return transition(workspace, record.id, to, allowed_from=frozenset({expect}))


def pause(workspace: Workspace, sandbox_id: str) -> SandboxRecord:
    """Freeze a running agent (SIGSTOP to its process group)."""
    return _signal_agent(workspace, sandbox_id, signal.SIGSTOP, expect=RUNNING, to=PAUSED, verb="paused")


def resume(workspace: Workspace, sandbox_id: str) -> SandboxRecord:
    """Let a paused agent continue (SIGCONT)."""
    return _signal_agent(workspace, sandbox_id, signal.SIGCONT, expect=PAUSED, to=RUNNING, verb="resumed")


def _tmux_version() -> tuple[int, int]:
    """tmux's version as (major, minor) from `tmux -V` ("tmux 3.3a", "tmux next-3.4"); (0, 0) unread."""
    said = subprocess.run(["tmux", "-V"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"(\d+)\.(\d+)", said)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def attach_command(workspace: Workspace, sandbox_id: str) -> list[str]:
    """The tmux command that attaches the terminal to an interactive sandbox (detach: C-b d)."""
    record = get_sandbox(workspace, sandbox_id)
    refuse_elsewhere(record, "attach to it")
    launch = record.data.get("launch") or {}
    if launch.get("mode") != "interactive":
        raise LoomError(f"sandbox {record.id} runs headless; follow its output with "
                        f"`loomtui sandbox logs {record.id} -f`", exit_code=1)
    session = tmux_session(record.id)
    if record.status not in LIVE or subprocess.run([*TMUX, "has-session", "-t", f"={session}"],
                                                   capture_output=True, check=False).returncode != 0:
        raise LoomError(f"sandbox {record.id} is {record.status}; its tmux session is gone", exit_code=1)
    attach = [*TMUX, "attach-session", "-t", f"={session}"]
    if not os.environ.get("TMUX"):
        return attach
    if _tmux_version() < (3, 2):  # no popups before 3.2: a client of its own inside the pane (C-b C-b d detaches)
        return ["env", "-u", "TMUX", *attach]
    # Inside a person's tmux: in a popup over the pane, where C-b d (or the agent's end) closes it and the
    # pane is as it was. Switching the client to the session detached the whole client on either, and the app
    # that ran it was left in a session out of sight.
    return ["tmux", "display-popup", "-E", "-w", "95%", "-h", "95%", shlex.join(["env", "-u", "TMUX", *attach])]
