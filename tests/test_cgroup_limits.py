"""Each agent in control groups of its sandbox's: memory and processes limited (`limits:` in loom.yaml).

As root on cgroup v1 (this machine, CI) the groups are made; elsewhere the limit tests are skipped and
`doctor` says agents are not limited."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from loomtui.config import parse_config
from loomtui.errors import ConfigError
from loomtui.execution import cgroup_limits
from loomtui.execution import sandboxes as sb
from loomtui.limit_values import (
    cpu_count,
    cpu_problem,
    file_size_bytes,
    file_size_problem,
    memory_bytes,
    memory_problem,
    total_memory,
)
from loomtui.workflow import tasks
from loomtui.workspace import Workspace
from tests.test_execution import bin_dir, ended, stand_in, ws  # noqa: F401  (fixtures)

needs_groups = pytest.mark.skipif(cgroup_limits.unavailable() is not None,
                                  reason=f"no control groups here: {cgroup_limits.unavailable()}")


def test_a_memory_limit_is_a_size_a_share_or_none_and_a_typo_is_said_at_its_line() -> None:
    assert memory_bytes("8G") == 8 << 30 and memory_bytes("512 MiB") == 512 << 20 and memory_bytes("none") is None
    assert memory_bytes("50%") == total_memory() // 2
    assert memory_problem("8") is not None and "at least 32M" in str(memory_problem("8"))  # 8 bytes: meant 8G
    assert memory_problem("150%") is not None and memory_problem("lots") is not None
    config = parse_config("version: 1\n", ".loom/loom.yaml")
    assert (config.limits.memory, config.limits.processes) == ("50%", 4096)  # the defaults
    with pytest.raises(ConfigError, match=r"loom\.yaml:3: limits\.memory: at least 32M"):
        parse_config("version: 1\nlimits:\n  memory: 8\n", ".loom/loom.yaml")
    with pytest.raises(ConfigError, match=r"loom\.yaml:3: limits\.processes: must be between 16 and 4194304"):
        parse_config("version: 1\nlimits:\n  processes: 3\n", ".loom/loom.yaml")
    assert parse_config("version: 1\nlimits: {memory: none, processes: none}\n", "x").limits.processes is None


def test_a_cpu_limit_is_a_number_of_cpus_a_share_or_none() -> None:
    assert cpu_count("2") == 2 and cpu_count("0.5") == 0.5 and cpu_count("none") is None
    assert cpu_count("50%") == (os.cpu_count() or 1) / 2
    assert parse_config("version: 1\n", "x").limits.cpu == "none"  # the default: CPUs' time is shared
    assert cpu_problem("0") is not None and cpu_problem("150%") is not None and cpu_problem("two") is not None
    with pytest.raises(ConfigError, match=r"loom\.yaml:3: limits\.cpu: expected a number of CPUs such as 2"):
        parse_config("version: 1\nlimits:\n  cpu: 2 cores\n", ".loom/loom.yaml")
    assert cgroup_limits.Limits(1 << 30, 32, 1.5).said() == "1.0 GiB of memory, 32 processes, 1.5 CPUs"


def _limited(repo: Path, runtimes: str, limits: str) -> None:
    (repo / ".loom").mkdir(exist_ok=True)
    (repo / ".loom" / "loom.yaml").write_text(
        "version: 1\nruntimes:\n" + textwrap.indent(textwrap.dedent(runtimes), "  ") + limits)


@needs_groups
def test_an_agent_past_its_memory_is_ended_by_the_kernel_and_the_sandbox_says_why(
        ws: Workspace, repo: Path, bin_dir: Path) -> None:  # noqa: F811
    """Without it an agent eating the memory took the machine's (the OOM score only chose whom to end)."""
    stand_in(bin_dir, "hog", """\
        held = [bytearray(1 << 20) for _ in range(400)]
        print("survived", flush=True)
    """)
    _limited(repo, 'hog:\n  argv: ["hog"]\n', "limits: {memory: 64M, processes: 64}\n")
    record = tasks.start(ws, tasks.create_sandbox(ws, "eat memory", "hog").id)
    done = ended(ws, record.id)
    assert done.status == "failed", done.data
    assert "out of memory: the kernel ended it at its sandbox's limit (64 MiB of memory, 64 processes" in \
        done.data["error"]
    assert done.data["limits"] == "64 MiB of memory, 64 processes"
    shown = sb.log_path(ws, record.id).read_text()
    assert "survived" not in shown
    for controller in ("memory", "pids"):  # removed at its end
        assert not (Path(str(cgroup_limits.own_folder(controller))) / f"loomtui-{record.id}").exists()


@needs_groups
def test_a_fork_bomb_stops_at_its_sandbox_s_process_limit_interactive_agents_too(
        ws: Workspace, repo: Path, bin_dir: Path) -> None:  # noqa: F811
    """As root no RLIMIT_NPROC holds: a hostile agent's fork bomb reached the machine's limit."""
    stand_in(bin_dir, "forker", """\
        children = []
        try:
            for _ in range(200):
                children.append(subprocess.Popen(["sleep", "30"]))
        except OSError as exc:
            print("refused after", len(children), exc.strerror, flush=True)
            sys.exit(3)
        print("all forked", flush=True)
    """)
    _limited(repo, 'forker:\n  argv: ["forker"]\nforker-pane:\n  argv: ["forker"]\n  mode: interactive\n',
             "limits: {memory: 1G, processes: 32, cpu: 1.5}\n")
    for runtime in ("forker", "forker-pane"):
        record = tasks.start(ws, tasks.create_sandbox(ws, f"fork ({runtime})", runtime).id)
        done = ended(ws, record.id)
        assert done.status == "failed" and done.exit_code == 3, (runtime, done.data)
        assert ("exited with code 3 after its sandbox refused it more processes "
                "(1.0 GiB of memory, 32 processes, 1.5 CPUs") in done.data["error"], (runtime, done.data)
        assert ("tmux_session" in done.data) == (runtime == "forker-pane")  # its pane's wrapper was put in them
        assert "refused after" in sb.log_path(ws, record.id).read_text()  # its own namespace shows no path


@needs_groups
def test_the_largest_file_is_a_size_or_none() -> None:
    assert file_size_bytes("100M") == 100 << 20 and file_size_bytes("2G") == 2 << 30
    assert file_size_bytes("none") is None
    assert parse_config("version: 1\n", "x").limits.file_size == "100M"  # the default: what GitHub takes
    assert file_size_problem("100") is not None and file_size_problem("50%") is not None
    with pytest.raises(ConfigError, match=r"loom\.yaml:3: limits\.file_size: at least 1M \(an ordinary source "
                                          r"file would not be saved\) \(got '512K'\)"):
        parse_config("version: 1\nlimits:\n  file_size: 512K\n", ".loom/loom.yaml")


def test_a_busy_loop_waits_its_turn_at_its_cpu_limit() -> None:
    """Without it one agent's busy tests took every CPU the person's own work had."""
    groups = cgroup_limits.make("zz9cpu", cgroup_limits.Limits(None, None, 0.05))
    assert groups is not None
    cpu = next(folder for folder in groups.folders if folder.parent == cgroup_limits.own_folder("cpu"))
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "5000"
    spinner = subprocess.Popen(groups.joined_argv(["python3", "-c", "while True: pass"]))
    try:
        deadline = time.monotonic() + 10
        while groups.cpu_held_back_s() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert groups.cpu_held_back_s() > 0  # the kernel held it back
    finally:
        groups.remove()
        spinner.wait(timeout=10)
    assert not cpu.exists()


@needs_groups
def test_an_agent_held_back_at_its_cpu_limit_says_for_how_long(
        ws: Workspace, repo: Path, bin_dir: Path) -> None:  # noqa: F811
    """An agent under `limits.cpu` took longer than it would have, and nothing said why."""
    stand_in(bin_dir, "spinner", """\
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            pass
    """)
    _limited(repo, 'spinner:\n  argv: ["spinner"]\n', "limits: {cpu: 0.1}\n")
    done = ended(ws, tasks.start(ws, tasks.create_sandbox(ws, "spin", "spinner").id).id)
    assert done.status == "exited", done.data
    assert done.data["limits"].endswith(", 0.1 CPUs") and done.data["cpu_held_back_s"] > 0


@needs_groups
def test_groups_a_killed_supervisor_left_are_removed_when_the_sandbox_is_archived() -> None:
    """No agent runs in an archived sandbox again, so nothing makes its groups afresh (which removes a
    leftover first): whatever is still in them is ended and they go."""
    groups = cgroup_limits.make("zz9left", cgroup_limits.Limits(64 << 20, 32))
    assert groups is not None
    left = subprocess.Popen(["sleep", "60"])
    try:
        groups.admit(left.pid)
        cgroup_limits.remove_left("zz9left")
        assert left.wait(timeout=10) == -9
        assert not any(folder.exists() for folder in groups.folders)
    finally:
        left.kill()


def test_an_agent_that_cannot_join_its_groups_is_never_started() -> None:
    """The hook raises in the child (Popen then raises, and the supervisor fails the start, saying why):
    an agent outside its limits would run unbounded while its sandbox said it was limited."""

    from loomtui.execution.procs import agent_child_hook

    with pytest.raises(subprocess.SubprocessError):
        subprocess.Popen(["true"], preexec_fn=agent_child_hook(  # noqa: PLW1509
            die_with_parent=False, groups=("/nonexistent/loomtui-x/cgroup.procs",)))


@needs_groups
def test_empty_groups_killed_supervisors_left_are_swept_by_the_next_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """A supervisor killed before its agent's end (a test's, a crash) left its groups: one per sandbox, never
    removed. The next sandbox's groups remove the empty ones old enough; one with a process stays."""

    left = cgroup_limits.make("zz9old", cgroup_limits.Limits(64 << 20, 32))
    busy = cgroup_limits.make("zz9busy", cgroup_limits.Limits(64 << 20, 32))
    assert left is not None and busy is not None
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        busy.admit(sleeper.pid)
        time.sleep(1.0)
        # Older than a second: ours, never another test's being made beside it (empty for milliseconds).
        monkeypatch.setattr(cgroup_limits, "LEFT_FOR_S", 0.9)
        made = cgroup_limits.make("zz9new", cgroup_limits.Limits(64 << 20, 32))
        assert made is not None
        assert not any(folder.exists() for folder in left.folders)
        assert all(folder.exists() for folder in busy.folders)  # in use: kept
        made.remove()
    finally:
        sleeper.kill()
        busy.remove()


def test_two_repositories_groups_of_the_same_id_are_apart(tmp_path: Path) -> None:
    """Gate run 1 of one repository made its groups, and another's gate run 1 removed them first (making a
    group removes one of the same name, and what runs in it): each repository's names are its own."""
    assert cgroup_limits.group_name(tmp_path / "a", "gate-1") != cgroup_limits.group_name(tmp_path / "b", "gate-1")


@needs_groups
def test_a_fork_bomb_in_the_agents_tests_stops_at_the_limit_too(ws: Workspace, repo: Path, tmp_path: Path) -> None:  # noqa: F811
    """Gate 1 runs the agent's tests, the agent's code: as root nothing limited them."""
    script = tmp_path / "agent.yaml"
    script.write_text('- {write: hello.txt, content: "hi\\n"}\n- {commit: "Say hello"}\n')
    (repo / ".loom").mkdir(exist_ok=True)
    (repo / ".loom" / "loom.yaml").write_text(
        'version: 1\nlimits: {processes: 32}\ngates:\n  - name: forks\n'
        '    run: ["sh", "-c", "for i in $(seq 100); do sleep 1 & done; wait"]\n')
    record = tasks.start(ws, tasks.create_sandbox(ws, "say hello", "script", script=script).id)
    ended(ws, record.id)
    [run] = [r for r in ws.store.gate_runs(record.id) if r.gate == "forks"]
    assert run.data["exit_code"] not in (0, None), run.data  # its forks refused: the check failed
    # The base commit's run of the same check (scratch runs: the baseline, the merged gate) is limited too
    # (and so the sandbox's is judged already failing, not its own regression).
    base = [r for r in ws.store.shared_gate_runs("baseline", str(record.data["base_sha"])) if r.gate == "forks"]
    assert base and all(r.status == "failed" and "Cannot fork" in r.data["summary"] for r in base), base
