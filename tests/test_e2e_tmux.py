"""End to end: the installed `loomtui` command in a real terminal (tmux), driven by keys."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
LOOMTUI = shutil.which("loomtui") or "loomtui"


class Terminal:
    """A detached tmux session on a private socket."""

    def __init__(self, cwd: Path, command: str) -> None:
        self.socket = f"loomtui-test-{uuid.uuid4().hex[:8]}"
        self.cwd = cwd
        # The pane's own size, 120x30, as a person's terminal has it: COLUMNS and LINES, which a test
        # runner may export (Textual takes them over the terminal's), are dropped.
        self._tmux("new-session", "-d", "-s", "t", "-x", "120", "-y", "30", "-c", str(cwd),
                   f"unset COLUMNS LINES; {command}; echo EXIT=$?; sleep 30")

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, check=True).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; screen was:\n{screen}")
            time.sleep(0.1)

    def wait_until_gone(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text not in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never went; screen was:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        # Its socket's path asked first: `kill-server` leaves the file (140 of them in /tmp/tmux-0 after a day).
        where = subprocess.run(["tmux", "-L", self.socket, "display-message", "-p", "#{socket_path}"],
                               capture_output=True, text=True).stdout.strip()
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        if where:
            Path(where).unlink(missing_ok=True)


@pytest.fixture
def terminal(repo: Path) -> Iterator[Terminal]:
    term = Terminal(repo, LOOMTUI)
    yield term
    term.close()


def test_dashboard_help_and_quit_in_a_real_terminal(terminal: Terminal, repo: Path) -> None:
    screen = terminal.wait_for("store: ok")
    assert "repo on main" in screen and "? Help" in screen
    terminal.keys("?")
    terminal.wait_for("dashboard.new")  # the rows render a frame after the title, and under load row by row
    screen = terminal.wait_for("app.help")
    assert "Keys" in screen
    terminal.keys("Escape")
    # Sent before the app has taken the escape, "q" would arrive with it as alt+q (under load).
    terminal.wait_until_gone("esc closes")
    terminal.keys("q")
    terminal.wait_for("EXIT=0")


def test_a_sigterm_ends_the_app_as_q_does_leaving_the_terminal_as_it_was(terminal: Terminal) -> None:
    """`kill`, a service stop or a closed session (SIGHUP) left the alternate screen, mouse reporting
    on and the cursor hidden; now the app ends as on `q`."""
    terminal.wait_for("store: ok")
    shell = terminal._tmux("display-message", "-p", "-t", "t", "#{pane_pid}").strip()
    (app,) = subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True).stdout.split()
    subprocess.run(["kill", "-TERM", app], check=True)
    terminal.wait_for("EXIT=143")
    state = terminal._tmux("display-message", "-p", "-t", "t", "#{alternate_on} #{mouse_any_flag} #{cursor_flag}")
    assert state.split() == ["0", "0", "1"], state


def test_closing_the_demos_terminal_still_stops_its_agents_and_removes_its_copy(tmp_path: Path) -> None:
    """SIGHUP (the terminal or the tmux session closed) skipped the demo's cleanup: its copy of the
    sample repository stayed in /tmp, worktrees and all."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    term = Terminal(tmp_path, f"TMPDIR={scratch} {LOOMTUI} demo")
    try:
        term.wait_for("loomtui · demo", timeout=60)
        (copy,) = scratch.glob("loomtui-demo-*")
        assert (copy / "billing-service" / ".git").exists() or any(copy.iterdir())
        shell = term._tmux("display-message", "-p", "-t", "t", "#{pane_pid}").strip()
        (demo,) = subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True).stdout.split()
    finally:
        term.close()  # the session and its terminal go: the app gets SIGHUP (and often SIGCONT)
    deadline = time.monotonic() + 60
    while any(scratch.glob("loomtui-demo-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    # On failure, say whether the demo is still at work (or stuck: it once hung in Textual's shutdown,
    # writing to the closed terminal) or gave up, and what is left.
    alive = Path(f"/proc/{demo}").exists()
    left = sorted(scratch.rglob("*"))[:5]
    assert not any(scratch.glob("loomtui-demo-*")), (f"the demo (pid {demo}) is still running" if alive
                                                     else "the demo ended", left)


def test_a_cli_write_appears_in_the_running_dashboard(terminal: Terminal, repo: Path) -> None:
    terminal.wait_for("store: ok")
    script = (
        "import time\nfrom loomtui.store import SandboxRecord\nfrom loomtui.workspace import open_workspace\n"
        f"ws = open_workspace({str(repo)!r}); now = time.time()\n"
        "ws.store.add_sandbox(SandboxRecord(id='e2e1', task='visible from afar', runtime='script',"
        " status='running', created=now, updated=now))\n"
    )
    subprocess.run(["python", "-c", script], check=True)
    terminal.wait_for("visible from afar", timeout=5)
    terminal.keys("q")
    terminal.wait_for("EXIT=0")


def test_outside_a_repository_the_command_says_so_and_exits_2(tmp_path: Path) -> None:
    term = Terminal(tmp_path, LOOMTUI)
    try:
        screen = term.wait_for("EXIT=")
        assert "EXIT=2" in screen and "not inside a git repository" in screen
        assert "Traceback" not in screen
    finally:
        term.close()


@pytest.mark.usefixtures("real_time_agents")
def test_tui_killed_with_9_leaves_agents_running_and_the_next_start_shows_them(tmp_path: Path) -> None:
    import os
    import signal

    from tests.conftest import demo_repo
    from loomtui.execution.agent_control import stop
    from loomtui.execution.sandboxes import get_sandbox, wait_for_status
    from loomtui.workflow.tasks import create_sandbox, start
    from loomtui.workspace import open_workspace

    repo = demo_repo(tmp_path)
    script = tmp_path / "long.yaml"
    script.write_text('- {log: "still here {n}", repeat: 400, every: 0.05}\n')
    workspace = open_workspace(repo)
    record = create_sandbox(workspace, "outlive the TUI", "script", script=script)
    start(workspace, record.id)
    wait_for_status(workspace, record.id, {"running"}, timeout=30)
    first = Terminal(repo, LOOMTUI)
    try:
        first.wait_for("outlive the TUI")
        pid = int(first._tmux("display-message", "-p", "-t", "t", "#{pane_pid}").strip())
        # The pane runs a shell; its child is loomtui. Kill that child the hard way.
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        for child in children:
            os.kill(int(child), signal.SIGKILL)
        first.wait_for("EXIT=137")
    finally:
        first.close()
    assert get_sandbox(workspace, record.id).status == "running"
    second = Terminal(repo, LOOMTUI)
    try:
        screen = second.wait_for("outlive the TUI")
        assert "running" in screen
    finally:
        second.close()
        stop(workspace, record.id, grace=2)
