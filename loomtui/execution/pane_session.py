"""The tmux session an interactive agent runs in, as its supervisor drives it.

The pane's first process is `loomtui.execution.pane`, which waits for the go-ahead
(`pane-go`), runs the agent, and writes its exit status (`exit`); its output is piped
into the sandbox's log. The supervisor opens the session, puts the pane's process in
the sandbox's control groups, says go, waits, and reads how the agent ended.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from typing import Final

from loomtui.errors import LoomError
from loomtui.execution.sandbox_paths import TMUX, SandboxPaths

PANE_POLL_S: Final = 0.2


class PaneFailed(LoomError):
    """The session could not be opened (tmux refused it, or its process cannot be found)."""


class PaneSession:
    """One sandbox's tmux session (`session`), its files under `paths`."""

    def __init__(self, paths: SandboxPaths, session: str) -> None:
        self.paths = paths
        self.session = session

    def _tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*TMUX, *args], capture_output=True, text=True, check=False)

    def open(self, argv: list[str], env: dict[str, str]) -> int:
        """Start the session running `argv` behind the wrapper (which waits for `go`); the pane's pid."""
        paths = self.paths
        for stale in (paths.pane_exit, paths.pane_go):
            stale.unlink(missing_ok=True)
        # The pane's process is a child of the tmux server, which has its own environment; the wrapper
        # picks the agent's reduced one up from this file (not the command line, where secrets show in `ps`).
        fd = os.open(paths.pane_env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(env, handle)
        wrapper = [sys.executable, "-m", "loomtui.execution.pane", str(paths.dir), "--", *argv]
        created = self._tmux("new-session", "-d", "-s", self.session, "-x", "200", "-y", "50",
                             "-c", str(paths.worktree), *wrapper)
        if created.returncode != 0:
            paths.pane_env.unlink(missing_ok=True)
            raise PaneFailed(f"cannot start tmux session {self.session}: {created.stderr.strip()}")
        # tmux runs this through sh; the log path is ours and quoted, never task text.
        pane = f"={self.session}:"  # a pane target: the session's current pane
        self._tmux("pipe-pane", "-t", pane, "-o", f"cat >> {shlex.quote(str(paths.log))}")
        shown = self._tmux("display-message", "-p", "-t", pane, "#{pane_pid}").stdout.strip()
        if not shown.isdigit() or int(shown) <= 1:
            self.close()
            raise PaneFailed(f"cannot find the process of tmux session {self.session}")
        return int(shown)

    def go(self) -> None:
        """Let the wrapper start the agent (its output is piped into the log by now)."""
        self.paths.pane_go.touch()

    def wait(self) -> None:
        """Until the agent has ended (its exit status written) or the session is gone."""
        while not self.paths.pane_exit.exists():
            if self._tmux("has-session", "-t", f"={self.session}").returncode != 0:
                return
            time.sleep(PANE_POLL_S)

    def close(self) -> None:
        self._tmux("kill-session", "-t", f"={self.session}")

    def exit_status(self) -> tuple[int, str | None] | None:
        """The agent's exit code and signal name, as the wrapper wrote them; None when it wrote none."""
        try:
            code_text, _, signame = self.paths.pane_exit.read_text().partition(" ")
            return int(code_text), signame.strip() or None
        except (OSError, ValueError):
            return None
