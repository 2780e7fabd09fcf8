"""Processes by identity: a pid plus its start time, so a reused pid is never mistaken.

A sandbox's supervisor and agent outlive the program that started them, so the
store keeps their pids. A pid alone is not enough: after a crash or a reboot the
number may belong to an unrelated process. `identity()` pairs the pid with the
boot id and the kernel's start time of the process, which no later process with
the same pid can share.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

_PROC = Path("/proc")


def _boot_id() -> str:
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "noboot"


_BOOT_ID = _boot_id()


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def identity(pid: int) -> str | None:
    """A string naming this very process (pid, boot, start time); None when it is gone."""
    if pid <= 0:
        return None
    if _PROC.is_dir():
        fields = _stat_fields(pid)
        # fields[0] is the state; a zombie has exited and only waits to be reaped.
        if fields is None or fields[0] in ("Z", "X"):
            return None
        return f"{pid}:{_BOOT_ID}:{fields[19]}"
    # No /proc (macOS): ps prints the start time to the second, good enough there.
    done = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True,
                          check=False)
    started = done.stdout.strip()
    return f"{pid}:{started}" if done.returncode == 0 and started else None


def is_alive(pid: int | None, expected: str | None) -> bool:
    """Whether the process recorded as (pid, identity) is still the one running."""
    if not pid or not expected:
        return False
    return identity(pid) == expected


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every live process in a process group (Linux only)."""
    members = []
    try:
        entries = list(_PROC.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append((int(entry.name), name))
    return members


def written_bytes(pids: Iterable[int]) -> int:
    """Bytes these processes (and the children they reaped) have written (`wchar` of /proc/PID/io: every
    write, to a tmpfs too, which `write_bytes` never counts, and to pipes: its output is logged to disk as
    well); 0 for one that cannot be read."""
    total = 0
    for pid in pids:
        try:
            lines = (_PROC / str(pid) / "io").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in lines if line.startswith("wchar:")), 0)
    return total


def signal_group(pgid: int, sig: signal.Signals, *, spare: frozenset[str] = frozenset()) -> bool:
    """Send `sig` to a process group; False when the group no longer exists.

    `spare` names commands left out (Linux only). Stopping a sandbox spares
    bubblewrap's own processes from SIGTERM: bwrap dies of it at once and takes
    the agent down with SIGKILL, which would skip the agent's grace period.
    """
    if pgid <= 1:  # 0 would be our own group, 1 init's: never a sandbox's
        raise ValueError(f"refusing to signal process group {pgid}")
    if spare and _PROC.is_dir():
        targets = [pid for pid, name in group_members(pgid) if name not in spare]
        for pid in targets:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return bool(group_members(pgid))
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def group_exists(pgid: int) -> bool:
    """Whether any process of the group is left (zombies excluded where /proc shows them)."""
    if pgid <= 1:
        return False
    if _PROC.is_dir():
        return bool(group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_status(returncode: int) -> tuple[int, str | None]:
    """A shell-style exit code (128+N for signal N) and the signal's name, if any."""
    if returncode >= 0:
        return returncode, None
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return 128 - returncode, name


OOM_SCORE_ADJ_AGENT: Final = 1000
"""An agent's processes are the first the kernel's OOM killer ends (the most a score goes): an agent
that eats the memory is stopped, not the person's editor, the store or its own supervisor. Raising
one's own score needs no privilege. Lowering it below where the user's processes start (0) needs
CAP_SYS_RESOURCE: a hostile agent can make itself as likely a choice as any process, never less."""


def agent_child_hook(*, die_with_parent: bool, groups: tuple[str, ...] = ()) -> Callable[[], None]:
    """A `preexec_fn` for an agent's process: the OOM killer's first choice (`OOM_SCORE_ADJ_AGENT`),
    inherited by all it starts, in its sandbox's control `groups` (their `cgroup.procs` files: see
    `cgroup_limits`) before it starts anything, and, with `die_with_parent`, ended when its parent (the
    supervisor) dies (Linux). For a fork with no other thread running: it runs Python in the child."""
    pdeathsig = die_with_parent_hook() if die_with_parent else None
    score = str(OOM_SCORE_ADJ_AGENT).encode()

    def hook() -> None:
        for procs in groups:  # a failure ends the start (Popen raises): never an agent outside its limits
            fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        try:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:  # no /proc (not Linux): nothing to prefer
            pass
        else:
            try:
                os.write(fd, score)
            except OSError:
                pass
            finally:
                os.close(fd)
        if pdeathsig is not None:
            pdeathsig()

    return hook


def die_with_parent_hook() -> Callable[[], None] | None:
    """A `preexec_fn` making the child die when its parent (the supervisor) dies (Linux).

    libc is loaded here, before the fork: importing in the child is unsafe.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def hook() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)

    return hook


def parent_of(pid: int) -> int | None:
    """The parent pid of a live process, None when it is gone (Linux only)."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None and len(fields) > 1 else None


def descends_from(pid: int, ancestors: set[int]) -> bool:
    """Whether `pid` is one of `ancestors` or a process below one of them (walks /proc)."""
    seen: set[int] = set()
    current: int | None = pid
    while current is not None and current > 1 and current not in seen:
        if current in ancestors:
            return True
        seen.add(current)
        current = parent_of(current)
    return False


def become_subreaper() -> bool:
    """Adopt orphaned descendants (PR_SET_CHILD_SUBREAPER), so a process an agent double-forks
    still counts as the agent's; False where the kernel or libc cannot."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(36, 1, 0, 0, 0)) == 0  # 36: PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False
