"""A sandbox's own control groups: its agent, and all it starts, limited in memory, processes and CPU.

Where this process may make groups under its own (cgroup v1's `memory` and `pids` hierarchies, and
`cpu` where a CPU limit is asked, as root does), each agent runs in a group of its sandbox's, a child
of the supervisor's: past its memory the kernel ends one of the agent's processes, not the person's
editor or the store; past its processes a fork bomb stops; past its CPUs' time it waits its turn. A
child group keeps every limit of the groups above it. Where it
may not (cgroup v2 without a delegated tree, v1 as a user), nothing is limited this way and
`doctor` says so; the OOM preference (`procs.OOM_SCORE_ADJ_AGENT`), the disk guard and, for a user,
RLIMIT_NPROC in bubblewrap's user namespace still hold.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from loomtui.config import LimitsConfig
from loomtui.limit_values import cpu_count, memory_bytes

CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
_CONTROLLERS: Final = ("memory", "pids")
_CPU: Final = "cpu"
_GROUP_PREFIX: Final = "loomtui-"
CPU_PERIOD_US: Final = 100_000
"""The period the kernel shares a group's CPU quota over (its default)."""


@dataclass(frozen=True)
class Limits:
    """What one sandbox's agent may use at once: bytes of memory, processes and threads, CPUs' time
    (None: no limit)."""

    memory_bytes: int | None
    processes: int | None
    cpus: float | None = None

    @classmethod
    def of(cls, config: LimitsConfig) -> Limits:
        """The limits `limits:` in loom.yaml asks for, on this machine."""
        return cls(memory_bytes(config.memory), config.processes, cpu_count(config.cpu))

    def controllers(self) -> tuple[str, ...]:
        """The hierarchies these limits need a group in (`cpu` only where CPUs are limited)."""
        return _CONTROLLERS + ((_CPU,) if self.cpus is not None else ())

    def said(self) -> str:
        gib = (self.memory_bytes or 0) / (1 << 30)
        memory = ("memory unlimited" if not self.memory_bytes else f"{gib:.1f} GiB of memory" if gib >= 1
                  else f"{(self.memory_bytes or 0) >> 20} MiB of memory")
        processes = f"{self.processes:,} processes" if self.processes else "processes unlimited"
        cpus = "" if self.cpus is None else f", {self.cpus:g} CPU{'' if self.cpus == 1 else 's'}"
        return f"{memory}, {processes}{cpus}"


@dataclass(frozen=True)
class SandboxGroups:
    """The groups one sandbox's agent runs in, one per controller."""

    folders: tuple[Path, ...]
    limits: Limits

    def procs_files(self) -> tuple[str, ...]:
        """The files a process id is written to to move it in (`procs.agent_child_hook` does, in the child)."""
        return tuple(str(folder / "cgroup.procs") for folder in self.folders)

    def members(self) -> list[int]:
        """Every process in the groups (the agent and all it started, however it left its process group)."""
        return list(_members(self.folders[0])) if self.folders else []

    def admit(self, pid: int) -> None:
        """Move process `pid` (and so all it starts from now on) into the groups."""
        for procs in self.procs_files():
            Path(procs).write_text(str(pid))

    def joined_argv(self, argv: list[str]) -> list[str]:
        """`argv` run by a shell that first moves itself into the groups (exit 125 where it cannot): for a
        process started where a preexec hook is not safe (a thread beside it)."""
        script = ('n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n - 1)); '
                  'done; exec "$@"')
        files = self.procs_files()
        return ["sh", "-c", script, "loomtui-join", str(len(files)), *files, *argv]

    def out_of_memory(self) -> bool:
        """Whether the kernel ended a process of the group for passing its memory limit."""
        return any(_count(folder / "memory.oom_control", "oom_kill") > 0 for folder in self.folders)

    def out_of_processes(self) -> bool:
        """Whether a fork or thread of the group's was refused at its process limit."""
        return any(_count(folder / "pids.events", "max") > 0 for folder in self.folders)

    def cpu_held_back_s(self) -> float:
        """How long the kernel held the group's processes back at its CPU limit, in seconds (0: never)."""
        for controller, folder in zip(self.limits.controllers(), self.folders, strict=False):
            if controller == _CPU:
                return _count(folder / "cpu.stat", "throttled_time") / 1e9
        return 0.0

    def what_ended(self, code: int | None) -> str | None:
        """Why an agent that ended with `code` failed, where its limits did it (None: they did not)."""
        if self.out_of_memory():
            return f"out of memory: the kernel ended it at its sandbox's limit ({self.limits.said()}; limits.memory)"
        if code and self.out_of_processes():
            return (f"exited with code {code} after its sandbox refused it more processes ({self.limits.said()}; "
                    "limits.processes)")
        return None

    def remove(self) -> None:
        """Remove the groups, ending first whatever of the agent's is still in them (a process that
        left the agent's process group stays in its control group)."""
        for folder in self.folders:
            _remove(folder)


def own_folder(controller: str) -> Path | None:
    """This process's group in cgroup v1's `controller` hierarchy (from /proc/self/cgroup)."""
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            folder = CGROUP_ROOT / controller / path.lstrip("/")
            return folder if (folder / "cgroup.procs").is_file() else None
    return None


def unavailable(controllers: tuple[str, ...] = _CONTROLLERS) -> str | None:
    """Why a sandbox cannot have groups of its own in `controllers`' hierarchies here (None: it can)."""
    for controller in controllers:
        folder = own_folder(controller)
        if folder is None:
            return (f"no cgroup v1 `{controller}` hierarchy (cgroup v2 needs a delegated tree: run loomtui "
                    "under `systemd-run --user --scope -p Delegate=yes`)")
        if not os.access(folder, os.W_OK):
            return f"{folder} is not writable by this user (as root it is)"
    return None


def group_name(state_dir: Path, what: str) -> str:
    """The groups' name for `what` (a sandbox id, `gate-RUN`) of the repository whose state is in
    `state_dir`: ids repeat across repositories (gate run 1 of each), and making a group removes one of
    the same name first, with whatever runs in it."""
    return f"{hashlib.sha256(os.fsencode(state_dir)).hexdigest()[:8]}-{what}"


def make(name: str, limits: Limits) -> SandboxGroups | None:
    """A group named `name` (`group_name`) under this process's, in each controller, with `limits` set;
    None where no limit is asked or a controller has no hierarchy here (`unavailable` says why); OSError
    where one cannot be made."""
    controllers = limits.controllers()
    parents = [own_folder(controller) for controller in controllers]
    if limits == Limits(None, None) or None in parents:
        return None
    folders: list[Path] = []
    try:
        for controller, parent in zip(controllers, parents, strict=True):
            assert parent is not None  # checked above
            _sweep(parent)
            folder = parent / f"{_GROUP_PREFIX}{name}"
            if folder.is_dir():  # left by a supervisor that was killed: its processes are ended first
                _remove(folder)
            folder.mkdir()
            folders.append(folder)
            if controller == "memory" and limits.memory_bytes is not None:
                (folder / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            if controller == "pids" and limits.processes is not None:
                (folder / "pids.max").write_text(str(limits.processes))
            if controller == _CPU and limits.cpus is not None:
                (folder / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                (folder / "cpu.cfs_quota_us").write_text(str(max(1000, round(limits.cpus * CPU_PERIOD_US))))
    except OSError:
        for folder in folders:
            _remove(folder)
        raise
    return SandboxGroups(tuple(folders), limits)


def remove_left(name: str) -> None:
    """Remove the groups `name` if a supervisor left them (it was killed before the agent's end); what is
    still in them is ended. For a sandbox no agent runs in again (archived)."""
    for controller in (*_CONTROLLERS, _CPU):
        parent = own_folder(controller)
        if parent is not None and (parent / f"{_GROUP_PREFIX}{name}").is_dir():
            _remove(parent / f"{_GROUP_PREFIX}{name}")


LEFT_FOR_S: Final = 600.0
"""How old an empty group of another sandbox's must be to be taken for one a killed supervisor left (a new
one is empty for the moment between its making and its agent's start)."""


def _sweep(parent: Path) -> None:
    """Remove the empty groups killed supervisors left beside ours (an empty group is never removed
    while it has a process: rmdir refuses)."""
    now = time.time()
    for folder in parent.glob(f"{_GROUP_PREFIX}*"):
        with contextlib.suppress(OSError):
            if now - folder.stat().st_mtime > LEFT_FOR_S and not _members(folder):
                folder.rmdir()


def _count(counters: Path, key: str) -> int:
    """The kernel's counter `key` in the file `counters` ("name count" lines); 0 where there is none."""
    try:
        lines = counters.read_text().splitlines()
    except OSError:
        return 0
    return next((int(count) for name, _, count in (line.partition(" ") for line in lines)
                 if name == key and count.strip().isdigit()), 0)


def _members(folder: Path) -> Iterable[int]:
    try:
        return [int(line) for line in (folder / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _remove(folder: Path, patience: float = 5.0) -> None:
    deadline = time.monotonic() + patience
    while True:
        for pid in _members(folder):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return  # still busy: a later start of this sandbox removes it (make)
            time.sleep(0.05)


def sandbox_groups(name: str, config: LimitsConfig) -> tuple[SandboxGroups | None, str]:
    """The groups `name` (`group_name`) for the config's `limits:`, and in words what holds what runs in
    them: the limits, or why none do."""
    limits = Limits.of(config)
    why = unavailable(limits.controllers())
    if why is not None:
        return None, f"not limited: {why}"
    try:
        groups = make(name, limits)
    except OSError as exc:
        return None, f"not limited: its control groups could not be made ({exc.strerror or exc})"
    return groups, limits.said() if groups is not None else "not limited (limits: none in .loom/loom.yaml)"
