"""The supervisor: one small detached process per running sandbox.

Run as `python -m loomtui.execution.supervisor REPO SANDBOX_ID` by `start()`. It
forks itself into the background (so it is nobody's child and outlives the TUI or
shell that started it), then:

- starts the agent (under bubblewrap when the sandbox is isolated; in a tmux
  session for an interactive runtime) with the reduced environment;
- copies the agent's output, line by line, into the sandbox's log, turning
  structured output (Claude Code's stream JSON, the script agent's steps) into
  `sandbox.activity` events;
- writes a heartbeat to the store every few seconds;
- when the agent ends, commits what it left uncommitted to the sandbox branch (so
  the branch holds all its work) and records the exit code and final status.

If writing the log fails (disk full), the log is cut back to its last whole line,
the agent is stopped and the sandbox is marked failed with the reason: output that
cannot be recorded is not silently dropped.

The supervisor is the only writer of the store and the audit log for its sandbox
while the agent runs; the agent itself can read but not write them.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from loomtui.config import CoordinationConfig
from loomtui.errors import LoomError, StoreUnreachable
from loomtui.execution import confinement, disk_room, git_links, login_copy
from loomtui.execution.activity import AGENT_RESULT_KEYS, Activity, ActivityBudget, checker_for, parser_for, usage_of
from loomtui.execution.agent_control import SPARE_ON_TERM
from loomtui.execution.agent_log import LogWriteFailed, LogWriter
from loomtui.execution.cgroup_limits import SandboxGroups, group_name, sandbox_groups
from loomtui.execution.context_files import CONTEXT_EDITED_KEY, keep_edited
from loomtui.execution.faults import FaultWatch, RetryWatch, fault_watch
from loomtui.execution.isolation import ISOLATION_BWRAP, isolation_status
from loomtui.execution.leftovers import bring_in_commits, save_leftovers
from loomtui.execution.lifecycle import EXITED, FAILED, LIVE, PLANNED, REMOVING_KEY, RUNNING, transition
from loomtui.execution.pane_session import PaneFailed, PaneSession
from loomtui.execution.procs import (
    agent_child_hook,
    become_subreaper,
    exit_status,
    group_exists,
    group_members,
    identity,
    is_alive,
    signal_group,
    written_bytes,
)
from loomtui.execution.runtime_state import state_overflow
from loomtui.execution.runtimes import OUTPUT_CLAUDE_STREAM, LaunchSpec
from loomtui.execution.sandboxes import STARTED_BY_ENV, SandboxPaths, has_commits, record_paths, tmux_session
from loomtui.gitcmd import Git
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace, open_workspace

HEARTBEAT_S: Final = 2.0
ALLOCATED_CHECK_S: Final = 10.0
"""How often, while a disk is short, the files an agent changed are measured (a walk of its worktree)."""
STATE_CHECK_S: Final = 10.0
"""How often the size of an isolated agent's runtime state is looked at (a walk of its folders)."""
STOP_MARGIN_S: Final = 1.0
"""After a stop's grace, how long the supervisor leaves to the `stop` that asked before it kills."""
LOG_FAILURE_GRACE_S: Final = 5.0
READ_CHUNK: Final = 65536  # a line longer than this is logged in pieces, byte for byte
MAX_PARSED_LINE: Final = 16 * 1024 * 1024
"""The longest output line read as one event (Claude Code's result line repeats a denied Write's input)."""
CLAIMS_CHECK_S: Final = 60.0
"""How often, at most, a running agent's claims are looked at for renewal."""
STORE_RETRY_MAX_S: Final = 30.0
"""The longest wait between heartbeats while the store cannot be written, and between the lines saying so."""
_STOP: Final = object()


_T = TypeVar("_T")


class HookServer(Protocol):
    """What answers the agent's hooks on its socket while it runs (governance's broker)."""

    def listen(self) -> None: ...

    def start(self) -> None: ...

    def commits_landed(self, old: str, new: str) -> None: ...

    def close(self) -> None: ...


HookServerFactory = Callable[[Workspace, str, Path, Path], HookServer]
"""Makes the hook server of (workspace, sandbox id, worktree, socket path)."""
AfterEnd = Callable[[Workspace, str], None]
"""Called once the agent's end is recorded (the workflow advances the sandbox)."""


def _diagnose(message: str) -> None:
    """A line for supervisor.log; never fatal (that file may sit on the disk that just filled up)."""
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:
        pass


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Supervisor:
    """Runs one sandbox's agent to its end and records everything about it."""

    def __init__(self, workspace: Workspace, record: SandboxRecord, *, startup_cpu: float = 0.0,
                 hook_server: HookServerFactory | None = None) -> None:
        self.workspace = workspace
        self.record = record
        self.paths: SandboxPaths = record_paths(workspace.paths, record)
        self.spec = LaunchSpec.from_data(record.data["launch"])
        self.activities: queue.Queue[Any] = queue.Queue()  # bounded by what `budget` admits
        self.budget = ActivityBudget()
        self.log: LogWriter | None = None
        self.log_error: str | None = None
        self.agent_result: dict[str, Any] = {}
        self.unparsed_lines = 0  # lines of structured output that were not (skipped, counted)
        # CPU spent before the daemonizing fork (interpreter start, imports): the
        # child's own counters start from zero, but this is supervisor cost too.
        self.startup_cpu = startup_cpu
        self.cpu_at_start = 0.0
        self.hook_server = hook_server
        self.broker: HookServer | None = None
        self.branch_tip: str | None = None  # where the sandbox's branch was at the last beat
        self.faults: FaultWatch | None = (fault_watch(self.spec.faults, self.spec.offline_timeout)
                                          if self.spec.faults and self.spec.mode != "interactive" else None)
        self.retries: RetryWatch | None = (RetryWatch(self.spec.offline_timeout)
                                           if self.spec.output == OUTPUT_CLAUDE_STREAM else None)
        self.fault_error: str | None = None
        self.commits_left_out: str | None = None  # why the agent's commits were not brought in (too large)
        self.state_checked = 0.0  # when the runtime state's size was last looked at (`_check_state_size`)
        self.claims_kept = time.monotonic()  # when the agent's claims were last renewed (`_keep_claims`)
        self.lease_seconds: float | None = None  # coordination.lease_seconds, read at the first beat
        self.disk_spared = False  # left running on a short disk that another agent fills (said once)
        self.pane_lost = False  # an interactive agent's session ended without its exit status (killed)
        self.agent_started = 0.0  # the agent's start (wall clock): files changed since are its own (`_agent_written`)
        self.allocated: tuple[float, int] = (0.0, 0)  # when its files were last measured, and what they hold
        self.agent_pid = 0
        self.stop_enforced = False  # the supervisor killed an agent whose stop outlived its caller
        self.start_refused = False  # the sandbox was moved (rejected, being removed) before the agent ran
        self.git_links: git_links.GitLinks | None = None  # the worktree's git links before the agent ran
        self.groups: SandboxGroups | None = None  # the agent's own control groups (memory, processes)
        self.limits_said = ""  # what limits the agent, in words (its record and audit entry keep it)

    # -- the command ---------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        return confinement.sandbox_environment(self.workspace, self.record, self.spec)

    def sync_git(self) -> None:
        """Bring the isolated agent's commits into the shared repository (no-op without isolation), and
        tell the broker when the branch moved (it holds the code those commits changed)."""
        self.commits_left_out = bring_in_commits(self.workspace, self.record, _diagnose)
        if self.broker is not None and self.record.branch:
            tip = Git(self.workspace.root).resolve_commit(f"refs/heads/{self.record.branch}")
            if tip and self.branch_tip and tip != self.branch_tip:
                self.broker.commits_landed(self.branch_tip, tip)
            self.branch_tip = tip or self.branch_tip

    def sync_logins(self) -> None:
        """Keep the sandbox's copy of the user's login in step with the user's (`login_copy`); the audit log
        keeps each refresh that went back to the user (a token of another account is traced to its
        sandbox), and says once a change of the agent's that did not."""
        try:
            for note in login_copy.sync(self.paths.runtime_state):
                if note.taken_back:
                    self.workspace.record("sandbox.login_refreshed", self.record.id, {"login": note.said})
                else:
                    self.workspace.record("sandbox.login_kept", self.record.id, {"error": note.said})
        except (OSError, LoomError) as exc:  # a store down at the end must not cost the agent's leftovers
            _diagnose(f"the login copy could not be brought in step: {exc}")

    def command(self, env: dict[str, str]) -> list[str]:
        return confinement.confined_argv(self.workspace, self.record, self.spec.argv, env,
                                         network=self.spec.network, spec=self.spec)

    # -- running -------------------------------------------------------------------------

    def run(self) -> int:
        self.cpu_at_start = _cpu_seconds()
        if self.record.isolation == ISOLATION_BWRAP:
            # Probed (once, cached) before this process adopts orphans: the probe's own inner bwrap
            # outlives its parent, and adopted it stayed a `[bwrap] <defunct>` here for the whole run.
            isolation_status()
        become_subreaper()  # an agent's double-forked helpers stay ours (and the broker's to answer)
        env = self.environment()
        try:
            argv = self.command(env)
        except LoomError as exc:  # its sandbox could not be made (the objects it reads, say): it never ran
            return self._finish(None, None, error=f"the sandbox could not be prepared: {exc}")
        self.sync_logins()  # a login refreshed outside since the last run: the agent starts with it
        writer = threading.Thread(target=self._store_loop, name="store", daemon=True)
        try:
            self.log = LogWriter(self.paths.log)
        except OSError as exc:
            return self._finish(None, None, error=f"cannot open the log {self.paths.log}: {exc.strerror}")
        # Bound now, so the agent's first hook finds it; served from a thread once the agent
        # is spawned (no thread may exist while Popen forks, see _run_headless).
        try:
            if self.hook_server is not None:
                self.broker = self.hook_server(self.workspace, self.record.id, self.paths.worktree, self.paths.broker)
                self.broker.listen()
                self.branch_tip = Git(self.workspace.root).resolve_commit(f"refs/heads/{self.record.branch}")
        except OSError as exc:
            return self._finish(None, None, error=f"cannot serve the hook broker {self.paths.broker}: "
                                                  f"{exc.strerror or exc}")
        self.groups, self.limits_said = sandbox_groups(group_name(self.workspace.paths.state_dir, self.record.id),
                                                       self.workspace.load_config().limits)
        admin_dir = self.record.data.get("git_dir")
        if admin_dir:  # put back at its end: a person's own git in the worktree reads them (`git_links`)
            self.git_links = git_links.kept(self.paths.worktree, Path(admin_dir))
            git_links.save(self.git_links, self.paths.git_links)  # for `recovery`, should this process die
        if self.spec.mode == "interactive":
            code, signame = self._run_in_tmux(argv, env, writer)
        else:
            code, signame = self._run_headless(argv, env, writer)
        return self._finish(code, signame, writer=writer)

    def _started(self, agent_pid: int, **data: Any) -> bool:
        # The entry is the task's author's (this process acts for them); who pressed start is said beside it.
        self.agent_pid = agent_pid
        self.agent_started = time.time()
        by = os.environ.get(STARTED_BY_ENV, "")
        started_by = {"started_by": by} if by and by != self.workspace.actor else {}
        try:
            transition(self.workspace, self.record.id, RUNNING, allowed_from=frozenset({PLANNED}),
                       pid=os.getpid(), pid_start=identity(os.getpid()),
                       data={"agent_pid": agent_pid, "agent_pid_start": identity(agent_pid),
                             "started_at": time.time(), "limits": self.limits_said, **started_by, **data},
                       audit={"agent_pid": agent_pid, "isolation": self.record.isolation,
                              "limits": self.limits_said, **started_by})
        except LoomError as exc:  # someone moved it meanwhile (rejected, archived, being removed): do not run
            _diagnose(f"not starting: {exc}")
            self.start_refused = True
            return False
        if self.broker is not None:
            self.broker.start()
        return True

    def _run_headless(self, argv: list[str], env: dict[str, str],
                      writer: threading.Thread) -> tuple[int | None, str | None]:
        isolated = self.record.isolation == ISOLATION_BWRAP
        try:
            # Spawned from the main thread before any other thread exists, so the
            # preexec hook is safe; and the death signal follows the forking thread.
            process = subprocess.Popen(
                argv, cwd=self.paths.worktree, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0,
                preexec_fn=agent_child_hook(die_with_parent=not isolated,  # noqa: PLW1509
                                            groups=self.groups.procs_files() if self.groups else ()),
            )
        except OSError as exc:
            self.log_error = f"cannot start {argv[0]}: {exc.strerror or exc}"
            return None, None
        except subprocess.SubprocessError:  # its preexec hook failed: only joining its groups can
            self.log_error = f"cannot start {argv[0]}: it could not be put in its sandbox's control groups"
            return None, None
        if not self._started(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return process.returncode, None
        writer.start()
        assert process.stdout is not None
        parse, check = parser_for(self.spec.output), checker_for(self.spec.output)
        # Faults in plain output are its activities; in events (Codex's --json), the parser says them and
        # the watch only reads them.
        watch = self.faults.feed if self.faults is not None and parse is not None else None
        if parse is None and self.faults is not None:
            parse = self.faults.feed
        last = b"\n"
        # A path in the worktree as the repository names it, as the Log tab says it (the Activity tab's
        # `Read /var/tmp/worktrees/.../fa7088/notifications/formatting.py` wrapped over two lines).
        inside = f"{str(self.paths.worktree).rstrip('/')}/"
        pieces: list[bytes] = []  # a line longer than a chunk, read so far (parsed whole: a 128 KB Write)
        held = 0
        for chunk in iter(lambda: process.stdout.readline(READ_CHUNK), b""):  # type: ignore[union-attr]
            last = chunk
            self._log(chunk)
            if parse is not None:
                held += len(chunk)
                if held <= MAX_PARSED_LINE:
                    pieces.append(chunk)
                if not chunk.endswith(b"\n"):
                    continue
                whole, too_long = b"".join(pieces), held > MAX_PARSED_LINE
                pieces, held = [], 0
                if too_long:  # in the log, byte for byte, and counted
                    self.unparsed_lines += 1
                    continue
                line = whole.decode("utf-8", errors="replace").rstrip("\n")
                found = parse(line.replace(inside, ""))
                if watch is not None:
                    watch(line)
                if self.retries is not None:
                    self.retries.note(found)
                if self.faults is not None and (usage := self.faults.reported()) is not None:
                    self.agent_result = usage  # Aider's `Tokens: ...` (no closing report of its own)
                for activity in found:
                    if activity.get("kind") == "result":  # its tokens and cost, whether or not its row is kept
                        self.agent_result = {k: activity.get(k) for k in AGENT_RESULT_KEYS}
                    if self.budget.admit(activity):
                        self.activities.put(activity)
                    elif (note := self.budget.first_dropped()) is not None:
                        self.activities.put(note)
                if not found and check is not None and not check(line):
                    self.unparsed_lines += 1  # skipped (it is in the log), counted, never fatal
        if not last.endswith(b"\n"):
            self._log(b"\n")  # the log always ends with a whole line
        process.wait()
        code, signame = exit_status(process.returncode)
        return code, signame

    def _log(self, data: bytes) -> None:
        if self.log is None or self.log_error is not None:
            return
        try:
            full = self.log.full
            self.log.write(data)
            if self.log.full and not full:
                self.workspace.record("sandbox.log_full", self.record.id,
                                      {"bytes": self.log.size, "dropped": self.log.dropped})
        except LogWriteFailed as exc:
            self.log_error = f"log write failed: {exc}; the agent was stopped (log kept up to line {self.log.lines})"
            self.workspace.record("sandbox.log_failed", self.record.id, {"error": str(exc), "lines": self.log.lines})
            threading.Thread(target=self._stop_agent, daemon=True).start()

    def _stop_agent(self) -> None:
        record = self.workspace.store.get_sandbox(self.record.id)
        group = record.data.get("agent_pid") if record else None
        if not isinstance(group, int):
            return
        signal_group(group, signal.SIGTERM, spare=SPARE_ON_TERM)
        signal_group(group, signal.SIGCONT)
        deadline = time.monotonic() + LOG_FAILURE_GRACE_S
        while group_exists(group) and time.monotonic() < deadline:
            time.sleep(0.05)
        signal_group(group, signal.SIGKILL)

    # -- interactive: tmux ---------------------------------------------------------------

    def _run_in_tmux(self, argv: list[str], env: dict[str, str],
                     writer: threading.Thread) -> tuple[int | None, str | None]:
        pane = PaneSession(self.paths, tmux_session(self.record.id))
        try:
            pane_pid = pane.open(argv, env)
        except (PaneFailed, OSError) as exc:
            self.log_error = str(exc) if isinstance(exc, PaneFailed) else f"cannot start the pane: {exc}"
            return None, None
        try:
            if self.groups is not None:  # the wrapper waits for go: the agent starts inside them
                self.groups.admit(pane_pid)
        except OSError as exc:
            pane.close()
            self.log_error = f"cannot put the agent in its control groups: {exc.strerror or exc}"
            return None, None
        pane.go()
        if not self._started(pane_pid, tmux_session=pane.session):
            pane.close()
            return None, None
        writer.start()
        pane.wait()
        pane.close()
        status = pane.exit_status()
        if status is None:
            self.pane_lost = True  # killed: by a stop someone asked for (an exited agent), or by no one (a failure)
            return None, None
        return status

    # -- the store ---------------------------------------------------------------------

    def _store_loop(self) -> None:
        """Activities and heartbeats go to the store here, so a busy store never stalls the log."""
        next_beat = 0.0
        store = self.workspace.store
        failures = 0  # writes failed in a row: the beat backs off, and the diagnostics say it seldom
        said_at = 0.0
        while True:
            timeout = max(0.0, next_beat - time.monotonic())
            try:
                item = self.activities.get(timeout=timeout)
            except queue.Empty:
                item = None
            try:
                if item is _STOP:
                    return
                if item is not None:
                    self._emit(item)
                if time.monotonic() >= next_beat:
                    self._check_offline()
                    self._check_state_size()
                    self._check_disk_room()
                    self._keep_claims()
                    self._finish_stop()
                    self.sync_git()  # the app's diff and review see commits within a beat
                    self.sync_logins()
                    store.heartbeat_sandbox(self.record.id, time.time(), self._progress())
                    next_beat = time.monotonic() + HEARTBEAT_S
                    failures = 0
            except LoomError as exc:  # a locked or unreachable store: say so in the diagnostics and carry on
                # Not at once again: with the database down, the beat retried a thousand times a second
                # and wrote each failure (1.5 MB of supervisor.log in seconds).
                failures += 1
                next_beat = time.monotonic() + min(HEARTBEAT_S * failures, STORE_RETRY_MAX_S)
                if failures == 1 or time.monotonic() - said_at >= STORE_RETRY_MAX_S:
                    _diagnose(f"store write failed ({failures} in a row): {exc}")
                    said_at = time.monotonic()

    def _keep_claims(self) -> None:
        """Renew the agent's claims while it runs (looked at every quarter lease, at most every CLAIMS_CHECK_S)."""
        if self.lease_seconds is None:
            try:
                self.lease_seconds = float(self.workspace.load_config().coordination.lease_seconds)
            except LoomError:
                self.lease_seconds = float(CoordinationConfig().lease_seconds)
        if time.monotonic() < self.claims_kept + min(CLAIMS_CHECK_S, self.lease_seconds / 4):
            return
        self.claims_kept = time.monotonic()
        from loomtui.coordination.claims import keep_while_running  # the index's modules: only once it is time

        keep_while_running(self.workspace, self.record.id, self.lease_seconds)

    def _check_offline(self) -> None:
        """Stop an agent that has only waited for an unreachable model API for too long."""
        if self.fault_error is not None:
            return
        why = next((said for watch in (self.faults, self.retries) if watch is not None
                    and (said := watch.overdue()) is not None), None)
        if why is not None:
            self._stop_for_fault("sandbox.offline", why)

    def _check_state_size(self) -> None:
        """Stop an agent whose runtime state outgrew its cap (looked at every STATE_CHECK_S)."""
        if self.fault_error is not None or self.record.isolation != ISOLATION_BWRAP or \
                time.monotonic() < self.state_checked + STATE_CHECK_S:
            return
        self.state_checked = time.monotonic()
        why = state_overflow(self.paths.runtime_state)
        if why is not None:
            self._stop_for_fault("sandbox.state_full", why)

    def _check_disk_room(self) -> None:
        """Stop an agent while the disk of its worktree, or of the store and its log, is nearly full."""
        if self.fault_error is not None:
            return
        short = disk_room.shortage((("its worktree", self.paths.worktree), ("its log", self.paths.dir),
                                    ("the store", self.workspace.paths.store_path.parent)))
        if short is None:
            self.disk_spared = False
        elif disk_room.stops(short, self._agent_written):
            self._stop_for_fault("sandbox.disk_full", f"{short.said()}: the agent was stopped before the store "
                                                      "and other work ran out of room")
        elif not self.disk_spared:  # said once: another agent is what fills the disk
            self.disk_spared = True
            self.workspace.record("sandbox.disk_short", self.record.id, {
                "detail": short.said(), "agent_wrote": self._agent_written(), "left_running": True})

    def _agent_written(self) -> int:
        """What the agent's processes have written to disk (its groups', else its process group's), or what the
        files it changed in its worktree and its sandbox's folder hold, if more (asked only while a disk is short)."""
        if self.groups is not None:
            written = written_bytes(self.groups.members())
        else:
            written = written_bytes(pid for pid, _ in group_members(self.agent_pid)) if self.agent_pid > 1 else 0
        measured, held = self.allocated
        if self.agent_started and time.monotonic() >= measured + ALLOCATED_CHECK_S:
            # Every place it may write (its worktree's git admin dir too, bound writable: filled there, unblamed).
            git_dir = self.record.data.get("git_dir")
            places = (self.paths.worktree, self.paths.dir, *([Path(str(git_dir))] if git_dir else []))
            held = disk_room.allocated_since(places, self.agent_started)
            self.allocated = (time.monotonic(), held)
        return max(written, held)

    def _stop_for_fault(self, action: str, why: str) -> None:
        """Stop the agent for `why` (its end says so), with an audit entry `action`."""
        self.fault_error = why
        self.workspace.record(action, self.record.id, {"error": why})
        threading.Thread(target=self._stop_agent, daemon=True).start()

    def _finish_stop(self) -> None:
        """A stop whose caller went away during its grace (Ctrl-C on `sandbox stop`) is finished here:
        once the grace is over, an agent that ignored SIGTERM is killed, as `stop` would have."""
        if self.stop_enforced:
            return
        record = self.workspace.store.get_sandbox(self.record.id)
        asked = record.data.get("stop_requested") if record else None
        group = record.data.get("agent_pid") if record else None
        if not isinstance(asked, dict) or asked.get("killing") or not isinstance(group, int):
            return  # no stop asked, or its caller is killing the agent itself
        due = float(asked.get("at") or 0) + float(asked.get("grace") or 0) + STOP_MARGIN_S
        if time.time() < due or not group_exists(group):
            return
        self.workspace.record("sandbox.killed", self.record.id,
                              {"after_grace_s": asked.get("grace"), "signal": "SIGKILL", "by": "supervisor"})
        signal_group(group, signal.SIGKILL)
        self.stop_enforced = True  # after the kill: a store that refused the entry leaves it for the next beat

    def _emit(self, activity: Activity) -> None:
        self.workspace.store.append_event("sandbox.activity", self.record.id, activity)

    def _progress(self) -> dict[str, Any]:
        progress: dict[str, Any] = {"log_lines": self.log.lines if self.log else 0,
                                    "log_bytes": self.log.size if self.log else 0}
        if self.unparsed_lines:
            progress["unparsed_lines"] = self.unparsed_lines
        if self.budget.dropped:
            progress["activities_dropped"] = self.budget.dropped
        if self.agent_result:
            progress["agent_result"] = self.agent_result
        return progress

    # -- the end -------------------------------------------------------------------------

    def _finish(self, code: int | None, signame: str | None, *, error: str | None = None,
                writer: threading.Thread | None = None) -> int:
        if writer is not None and writer.is_alive():
            self.activities.put(_STOP)
            writer.join(timeout=30)
        if self.broker is not None:
            self.broker.close()
        if self.log is not None:
            self.log.close()
        held_back_s = 0.0
        if self.groups is not None:
            error = error or self.groups.what_ended(code)
            held_back_s = self.groups.cpu_held_back_s()
            self.groups.remove()  # whatever of the agent's is still running in them is ended
        if self.start_refused:  # the agent never ran: the record and the worktree are whoever moved it's
            return 1
        put_back, not_put_back = git_links.put_back(self.git_links) if self.git_links is not None else ([], [])
        if put_back:
            _diagnose(f"put back what the agent changed of the worktree's git links: {', '.join(put_back)}")
        if not_put_back:  # first among the reasons it failed: a person's git there runs what the agent planted
            error = git_links.not_put_back_said(not_put_back, self.paths.worktree)
        elif self.git_links is not None:
            self.paths.git_links.unlink(missing_ok=True)
        self.sync_git()  # before saving leftovers: those commit on top of the agent's last commit
        self.sync_logins()
        saved, save_error = save_leftovers(self.workspace, self.record, _diagnose)
        edited = keep_edited(self.paths.dir, self.paths.worktree, self.paths.context, self.record.context_files)
        if edited:
            _diagnose(f"the agent edited loomtui's context files, not kept in its branch: {', '.join(edited)}")
            self.workspace.record("sandbox.context_edited", self.record.id, {"files": edited})
        current = _patiently("read the sandbox", lambda: self.workspace.store.get_sandbox(self.record.id))
        stop_requested = bool(current and current.data.get("stop_requested"))
        if self.pane_lost:
            # An interactive agent still running past its stop's grace is killed with its session: a stop someone
            # asked for, `exited` and said as theirs (it read `failed`, "the agent did not finish ... (killed?)").
            if stop_requested:
                signame = signame or "SIGKILL"
            else:
                self.log_error = self.log_error or "the tmux session ended without an exit status (killed?)"
        error = error or self.log_error or self.fault_error
        if not error and save_error:  # its work is still in the worktree, but no review can see it
            error = f"the work it left uncommitted could not be saved to {self.record.branch}: {save_error}"
        if not error and self.commits_left_out:  # a file past limits.file_size in its commits: they stay out
            error = self.commits_left_out
        if not error and not stop_requested and self.faults is not None:
            error = self.faults.failed_quietly(code, saved is not None or has_commits(self.workspace, self.record))
        if error:
            status = FAILED
        elif stop_requested or code == 0:
            status = EXITED
        else:
            status = FAILED
            error = f"killed by {signame}" if signame else f"exited with code {code}"
            said = (self.agent_result or {}).get("error") or (self.faults.last_error if self.faults else None)
            if said:  # the model API's error, as the agent reported it: the reason, where a code is not
                error += f": {said}"
        data: dict[str, Any] = {
            "ended_at": time.time(), "exit_signal": signame, "saved_commit": saved,
            "supervisor_cpu_s": round(self.startup_cpu + _cpu_seconds(), 4),
            "supervisor_cpu_running_s": round(_cpu_seconds() - self.cpu_at_start, 4),
            **self._progress(),
        }
        if error:
            data["error"] = error
        if put_back:  # a person's plain git in the worktree would have run what it planted there
            data["git_links_put_back"] = put_back
        if held_back_s >= 0.1:  # why an agent under `limits.cpu` took longer than it would have
            data["cpu_held_back_s"] = round(held_back_s, 1)
        if save_error:
            data["save_error"] = save_error
        if edited:
            data[CONTEXT_EDITED_KEY] = edited
        reason = error or ("stopped by " + str(current.data["stop_requested"].get("by"))
                           if stop_requested and current else "")
        try:
            _patiently("record the end", lambda: transition(
                self.workspace, self.record.id, status, reason=reason, exit_code=code, data=data,
                allowed_from=LIVE | {PLANNED}, audit={"exit_code": code, "signal": signame, "saved_commit": saved,
                                                      # null where this run said none: never another run's
                                                      "usage": usage_of(self.agent_result)}))
        except LoomError as exc:
            _diagnose(f"cannot record the end: {exc}")
            return 1
        return 0


STORE_PATIENCE_S: Final = 600.0
"""How long the end of an agent waits for a store whose server cannot be reached (a restart, a network
blip) before it gives up: recorded late, the run is what it was; given up at once, a clean run became
`failed [orphaned]`, and its change needed a person."""


def _patiently(what: str, call: Callable[[], _T]) -> _T:
    """`call`, tried again while the store cannot be reached, for up to STORE_PATIENCE_S."""
    deadline = time.monotonic() + STORE_PATIENCE_S
    wait = 1.0
    while True:
        try:
            return call()
        except StoreUnreachable as exc:
            if time.monotonic() + wait > deadline:
                raise
            _diagnose(f"cannot {what} yet: {exc}; trying again in {wait:g}s")
            time.sleep(wait)
            wait = min(wait * 2, 30.0)


def _daemonize() -> None:
    """Fork away from whoever started us: the parent returns at once, the child carries on."""
    if os.fork() > 0:
        os._exit(0)


def main(argv: list[str], *, hook_server: HookServerFactory | None = None,
         after_end: AfterEnd | None = None, name: str = "loomtui.execution.supervisor") -> int:
    """Supervise one sandbox's agent (`python -m NAME REPO SANDBOX_ID`), then call `after_end`."""
    if len(argv) != 2:
        print(f"usage: python -m {name} REPO SANDBOX_ID", file=sys.stderr)
        return 2
    root, sandbox_id = argv
    startup_cpu = _cpu_seconds()
    _daemonize()
    try:
        workspace = open_workspace(root)
        record = workspace.store.get_sandbox(sandbox_id)
        if record is None:
            _diagnose(f"no sandbox {sandbox_id}")
            return 2
        # It acts for whoever stated the task, not for whoever's process happened to start it
        # (a reviewer's approval may start the next wave; the demo's people are not this machine's).
        workspace.actor = record.created_by or workspace.actor
        me = os.getpid()
        # One supervisor a sandbox: of several started at once (`sandbox start` twice), the first to
        # record itself runs it; a later one would bind the broker's socket over the first's, and exit.
        with workspace.store.transaction():
            record = workspace.store.get_sandbox(sandbox_id) or record
            removing = record.data.get(REMOVING_KEY)
            if record.status != PLANNED or removing or (record.pid and record.pid != me
                                                        and is_alive(record.pid, record.pid_start)):
                # Another's start won (and may have run it to its end by now): this one has nothing to run,
                # and tells start() why on the line that would have said it was recorded. One being removed
                # is not started: its worktree may be going as this records itself (`sandbox rm` waits only for
                # a supervisor it saw recorded).
                why = (f"sandbox {sandbox_id} is being removed" if removing and record.status == PLANNED
                       else f"sandbox {sandbox_id} is already being started (supervisor pid {record.pid})"
                       if record.status == PLANNED else f"sandbox {sandbox_id} is already {record.status}")
                _diagnose(why)
                try:
                    sys.stdout.write(json.dumps({"refused": why}) + "\n")
                    sys.stdout.flush()
                except OSError:  # start() is gone too: said in the log above, not as a traceback
                    pass
                return 1
            record = workspace.store.update_sandbox(record.id, pid=me, pid_start=identity(me))
    except LoomError as exc:
        _diagnose(f"supervisor: {exc}")
        return 2
    # Tell start() we are recorded, then stop talking to it: stdout joins the diagnostics.
    try:
        sys.stdout.write(json.dumps({"pid": me}) + "\n")
        sys.stdout.flush()
    except OSError:  # start() is gone (its caller was interrupted): the task is recorded; it runs all the same
        pass
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        code = Supervisor(workspace, record, startup_cpu=startup_cpu, hook_server=hook_server).run()
        if after_end is not None and code == 0:
            try:
                after_end(workspace, sandbox_id)
            except Exception:  # noqa: BLE001 - the agent's end is recorded; whoever advances next redoes it
                _diagnose("after the agent ended: " + traceback.format_exc())
        return code
    except Exception:  # noqa: BLE001 - a bug: keep the traceback in supervisor.log, say so in the store
        _diagnose(traceback.format_exc())
        try:
            transition(workspace, sandbox_id, FAILED, reason="the supervisor crashed; see supervisor.log",
                       allowed_from=LIVE | {PLANNED})
        except LoomError:
            pass
        return 1
    finally:
        workspace.close()

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
