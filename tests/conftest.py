"""Shared fixtures: real git repositories in temporary directories."""

from __future__ import annotations

import atexit
import functools
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from loomtui.execution.script_agent import TIME_SCALE_ENV as SCRIPT_TIME_SCALE_ENV

# PYTHONDONTWRITEBYTECODE (set on CI machines) also stops pytest caching the test modules it
# rewrites for assertions: every worker would rewrite all of them again, about 6 s each.
sys.dont_write_bytecode = False

FAST_SCRIPTS = "0.1"
"""LOOMTUI_SCRIPT_TIME_SCALE in tests: a script's `after: 1.0` waits 0.1 s."""

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
}


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep tests away from the developer's own config and identity."""
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOOMTUI_CONFIG_DIR", str(tmp_path_factory.mktemp("userconfig")))
    # Sandboxes' worktrees go under the user's data dir: a throwaway one, never the real ~/.local/share.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("userdata")))
    monkeypatch.delenv("LOOMTUI_WORKTREES", raising=False)
    monkeypatch.delenv("LOOM_USER", raising=False)
    # Script agents replay their timed steps ten times faster (a test that needs an agent
    # running for a while sets it back to 1: `real_time_agents`).
    monkeypatch.setenv(SCRIPT_TIME_SCALE_ENV, FAST_SCRIPTS)


@pytest.fixture
def real_time_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    """Script agents wait as their scripts say (for a test that needs one still running later)."""
    monkeypatch.setenv(SCRIPT_TIME_SCALE_ENV, "1")


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` with a fixed identity and return its stdout."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty-ish git repository with one commit."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "Dev")
    (root / "README.md").write_text("# test repo\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


QUICK_GATES = ('gates:\n  - name: tests\n    run: ["python", "-c", "pass"]\n'
               '  - name: compile\n    run: ["python", "-c", "pass"]\n')


def quick_gates(repo: Path) -> Path:
    """The sample repo's gates (its pytest suite, compileall) swapped for two instant ones of the same
    names, committed: for tests about what happens around a review, not about the gates' verdicts
    (those run the real gates: test_demo_scenario, test_gate, test_demo)."""
    config = repo / ".loom" / "loom.yaml"
    text = config.read_text()
    start, end = text.index("gates:"), text.index("context:")
    config.write_text(text[:start] + QUICK_GATES + text[end:])
    git(repo, "commit", "-qam", "Quick gates")
    return repo


@functools.cache
def _golden_demo_repo() -> Path:
    """The sample repo as `prepare_demo_repo` makes it, once in this process (removed at exit)."""
    from loomtui.demo import prepare_demo_repo

    base = Path(tempfile.mkdtemp(prefix="loomtui-golden-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    return prepare_demo_repo(base)


def demo_repo(parent: Path) -> Path:
    """What `prepare_demo_repo(parent)` makes (the sample repo committed on `main`, in a new
    `loomtui-demo-*` directory), copied from the one made once in this process: 180 tests a run
    start from it, and the copy is a fifth of the CPU of building it again with git. Its
    commit is the same in every copy; nothing else is shared. test_demo.py runs the real one."""
    golden = _golden_demo_repo()
    repo = Path(tempfile.mkdtemp(prefix="loomtui-demo-", dir=parent)) / golden.name
    shutil.copytree(golden, repo, symlinks=True)
    return repo


def one_commit_repo(path: Path) -> Path:
    """A new repository at `path` on `main` with one commit of one file (`a.py`)."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "a.py").write_text("x = 1\n")
    git(path, "add", "a.py")
    git(path, "commit", "-qm", "first")
    return path


@pytest.fixture
def billing(tmp_path: Path) -> Path:
    """A fresh committed copy of the bundled sample repo (the billing service)."""
    return demo_repo(tmp_path)


def run_cli(repo: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """`loomtui ARGS` run in `repo` inside this process: the command's own parser, handlers, output
    and exit code, without starting Python and importing the engines again (~0.5 s of CPU each).
    A test keeps a real `loomtui` process where the command line itself is what it proves."""
    from loomtui.cli import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as env:
        env.chdir(repo)
        if user is not None:
            env.setenv("LOOM_USER", user)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse: --help, a usage error
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(["loomtui", *args], code, out.getvalue(), err.getvalue())


# The files that take longest (real agent CLIs, snapshots, the headless demo, many sandboxes) run first,
# longest first, so that under `-n auto --dist loadfile` no worker starts a long file when the others
# are done (pyproject's --no-loadscope-reorder keeps this order: xdist would otherwise send the files
# with the most tests first). The order is each file's time in a whole run, as measured.
SLOW_FILES_FIRST = (
    "test_runtime_codex_aider.py", "test_snapshots_matrix.py", "test_runtime_claude.py", "test_demo_scenario.py",
    "test_execution.py", "test_store_postgres.py", "test_eval_gates.py", "test_mcp.py", "test_workflow.py",
    "test_hostile_agent.py", "test_tui_escalations.py", "test_tui_graph.py", "test_knowledge_agents.py",
    "test_review.py", "test_hooks.py", "test_e2e_demo.py", "test_knowledge_sandbox.py", "test_tui_bench.py",
    "test_tui.py", "test_runtime_interactive.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Compile loomtui once, before the workers start. With PYTHONDONTWRITEBYTECODE set (as on CI
    machines) no process ever caches its bytecode, so each of the thousands of loomtui processes a
    run starts (supervisors, hooks, brokers, CLI calls) would compile every module again: 0.3 s each."""
    if not hasattr(config, "workerinput"):
        import compileall

        import loomtui

        compileall.compile_dir(Path(loomtui.__file__).parent, quiet=2, )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """One full collection at the end, then the survivors frozen. pytest's own end-of-run check for
    exceptions raised in finalizers walks the heap five times over; a worker's heap holds ~400k-900k
    objects by then (Textual's strip caches, mostly), 0.3-0.7 s a walk: 2-3 s of CPU per worker. Its
    passes still see everything that this one's finalizers leave (it is new, so not frozen)."""
    import gc

    gc.collect()
    gc.freeze()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: two workers more than there are cores. The tests spend part of their time waiting on
    the real processes they start (supervisors, agents, gates), which the extra workers fill: on 2
    cores the suite ran 216 s with two workers, 191 s with three, 181 s with four and 188 s with five."""
    return len(os.sched_getaffinity(0)) + 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's order is kept


async def wait_for(pilot, condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Let a Textual app run until `condition()` holds (the live refresh is what is under test); the
    timeout is generous, so a loaded machine makes a test slower, never red."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


async def new_script_sandbox_form(pilot, app, script: Path, task: str):  # type: ignore[no-untyped-def]
    """Press `n` once the app has its index, and fill the form for a script agent (to be started
    with a click on #start)."""
    from textual.widgets import Input, Select

    from loomtui.tui.screens.sandbox_forms import NewSandboxScreen

    await wait_for(pilot, lambda: app.coordinator is not None)
    await pilot.press("n")
    await pilot.pause()
    form = app.screen
    assert isinstance(form, NewSandboxScreen)
    form.query_one("#runtime", Select).value = "script"
    await pilot.pause()
    form.query_one("#script", Input).value = str(script)
    form.query_one("#task", Input).value = task
    return form


def wait_until(condition, timeout: float = 30.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    """Poll `condition()` until it holds; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def agent_ended(workspace, sandbox_id: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    """The sandbox once its agent has ended and the workflow has done every step it can (a change
    is reviewed at once, so `exited` may last a moment only: this waits for the settled state)."""
    from loomtui.execution.sandboxes import get_sandbox
    from loomtui.workflow.engine import wait_until_settled

    wait_until_settled(workspace, sandbox_id, timeout=timeout)
    return get_sandbox(workspace, sandbox_id)


from tests.postgres_cluster import postgres_cluster, postgres_url  # noqa: E402,F401  (fixtures for every test file)
