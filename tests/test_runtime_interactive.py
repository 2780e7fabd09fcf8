"""Codex and Aider in `mode: interactive` (issue #9): each CLI's own TUI in the tmux session `loom-ID`.

Once per runtime, the real CLI, under bubblewrap (network kept: the scripted model of
tests/fake_openai.py is on 127.0.0.1), from a `.loom/loom.yaml` override of the built-in
runtime with the CLI's interactive argv:

- Codex: `codex --sandbox danger-full-access --ask-for-approval never --no-daemon` (no `exec`,
  never asks for an approval; no shared background server it could hand its commands to);
- Aider: the built-in argv without `--message`, `--no-pretty` and `--no-fancy-input` (still
  `--yes-always`, so adding the file the prompt names to the chat does not wait for a person).

Both sandboxes start at once (the module's fixture: Aider's TUI takes seconds to import, so
it boots while Codex's test runs): Codex through the engine (`create_sandbox`, then `start`),
Aider through the real `loomtui sandbox new` command. Each test waits for the TUI's prompt,
types a task with `tmux send-keys`, and the model's scripted reply edits a docstring: the edit
is in the worktree; the test quits the CLI with its own command (`/quit`, `/exit`), the
agent ends with exit code 0, its tmux session gone, and the edit is on the sandbox branch
(Codex's left uncommitted and saved by loomtui; Aider's committed by Aider itself through the
git hooks loomtui installed); the supervisor then reviews it (the gates, swapped for quick
ones, then the policy, which asks the platform group: `awaiting_review`). The task reaches the
model through the context file each CLI reads (AGENTS.md; Aider's `--read`). A failing wait
shows the pane.

Not asserted, seen with Aider 0.86 under bubblewrap: right after its own commit Aider prints
"Unable to list files in git repo: BadObject ... Is your git repo corrupted?" and asks the model
for one more commit message. Aider reads objects with GitPython's GitDB, which ignores
GIT_OBJECT_DIRECTORY, so it cannot see a commit in the sandbox's private object directory until
the supervisor has copied it into the shared store.

The CLIs are skipped when they are not installed (.ci/run installs them); tmux is required.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loomtui.execution import agent_control
from loomtui.execution import sandboxes as sb
from loomtui.execution.isolation import isolation_available
from loomtui.execution.sandbox_paths import TMUX
from loomtui.workflow import tasks
from loomtui.workflow.engine import wait_until_settled
from loomtui.workspace import Workspace, open_workspace
from tests import test_runtime_codex_aider as headless
from tests.conftest import demo_repo, quick_gates
from tests.fake_openai import FakeOpenAI, Turn, custom_call, text

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

FILE = "notifications/formatting.py"
EDITED = "Edited by the agent."
TASK = {"codex": "interactive codex: edit the formatting docstring",
        "aider": "interactive aider: edit the formatting docstring"}
PROMPT = f"edit the docstring of {FILE}"
CODEX_ARGV = ["codex", "--sandbox", "danger-full-access", "--ask-for-approval", "never", "--no-daemon"]
AIDER_ARGV = ["aider", "--yes-always", "--no-check-update", "--no-analytics", "--no-show-release-notes",
              "--no-show-model-warnings", "--no-detect-urls", "--no-gitignore", "--git-commit-verify",
              "--input-history-file=/dev/null", "--chat-history-file=/dev/null", "--read={context_file}"]
GIT_ENV = {"GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.com",
           "GIT_COMMITTER_NAME": "Test Author", "GIT_COMMITTER_EMAIL": "author@example.com"}
WAIT_S = 60


class ScriptedModel(FakeOpenAI):
    """The fake API, with Codex's task-title request (its TUI sends one alongside the first turn, in
    either order) answered on the side: it must not take the turn scripted for the agent."""

    def __init__(self, turns: list[Turn]) -> None:
        super().__init__(turns)
        self.titles = 0

    def _next(self, body: dict[str, Any]) -> Turn:
        if "task title" in json.dumps(body.get("input") or [])[-2000:]:
            with self._lock:
                self.titles += 1
            return text("Edit the docstring")
        return super()._next(body)


@dataclass
class Session:
    """One runtime's interactive sandbox: its model, its record, its tmux session."""

    runtime: str
    api: ScriptedModel
    sandbox: str = ""
    worktree: Path = Path()
    started_s: float = 0.0

    @property
    def tmux(self) -> str:
        return sb.tmux_session(self.sandbox)

    def pane(self, history: int = 0) -> str:
        """What the pane shows (with `history` lines of its scrollback above)."""
        return subprocess.run([*TMUX, "capture-pane", "-p", "-S", str(-history), "-t", f"={self.tmux}:"],
                              capture_output=True, text=True, check=False).stdout

    def type(self, keys: str, submitted: Callable[[], bool]) -> None:
        """Type a line into the TUI as a person would: the text, wait to see it, then Enter; press
        Enter again if the line was not taken (under load a TUI can read a quick Enter as part of
        the paste of the text, and keep the line in its composer)."""
        subprocess.run([*TMUX, "send-keys", "-t", f"={self.tmux}:", "-l", keys], check=True)
        self.wait_for(f"{keys!r} to show", lambda: keys in self.pane())
        for _attempt in range(3):
            time.sleep(0.3)
            # Not checked: the session may have ended on the previous Enter a moment ago.
            subprocess.run([*TMUX, "send-keys", "-t", f"={self.tmux}:", "Enter"], capture_output=True, check=False)
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                if submitted():
                    return
                time.sleep(0.1)

    def alive(self) -> bool:
        return subprocess.run([*TMUX, "has-session", "-t", f"={self.tmux}"], capture_output=True,
                              check=False).returncode == 0

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.runtime}: timed out after {timeout:g}s waiting for {what}; "
                                     f"the pane of {self.tmux}:\n{self.pane(history=100)}")
            time.sleep(0.1)


@dataclass
class World:
    repo: Path
    workspace: Workspace
    sessions: dict[str, Session]


def _trust(config: Path, worktree: Path) -> None:
    """What a Codex user has answered once, so its TUI opens on the prompt: this folder trusted,
    and the newer model it offers at start declined (Codex 0.171's bundled catalog)."""
    with config.open("a") as handle:
        handle.write(f'[projects."{worktree}"]\ntrust_level = "trusted"\n'
                     '[notice.model_migrations]\n"gpt-5.5" = "gpt-6-sol"\n'
                     '[tui.model_availability_nux]\n"gpt-6.1-sol" = 1\n')


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    runtimes = [name for name, program in (("codex", headless.CODEX), ("aider", headless.AIDER)) if program]
    if not runtimes:
        pytest.skip("neither codex nor aider is installed")
    # HOME outside /tmp: bubblewrap gives the agent a private /tmp.
    scratch = Path(tempfile.mkdtemp(prefix="loomtui-tui-", dir="/var/tmp"))
    home = scratch / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = Agent User\n\temail = agent@example.com\n")
    sessions: dict[str, Session] = {}
    workspace: Workspace | None = None
    cli: subprocess.Popen[str] | None = None  # `loomtui sandbox new` for Aider
    with pytest.MonkeyPatch.context() as env:
        # This module's own isolation (conftest's autouse one is per test; the sandboxes start here).
        for name, value in GIT_ENV.items():
            env.setenv(name, value)
        env.setenv("LOOMTUI_CONFIG_DIR", str(tmp_path_factory.mktemp("userconfig")))
        env.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("userdata")))
        for name in ("LOOMTUI_WORKTREES", "LOOM_USER", "OPENAI_BASE_URL", "OPENAI_API_BASE", "CODEX_HOME",
                     "PYTHONPATH", "TMUX"):
            env.delenv(name, raising=False)
        env.setenv("HOME", str(home))
        env.setenv("OPENAI_API_KEY", "test")
        try:
            # Quick gates: the supervisor gates each change when its agent ends; this is about the runtimes.
            repo = quick_gates(demo_repo(tmp_path_factory.mktemp("interactive")))
            turns = {"codex": [custom_call("apply_patch", _patch(repo)), text("Edited.")],
                     "aider": headless.edit_turns("aider", repo, FILE, "Edit the docstring")}
            for runtime in runtimes:
                sessions[runtime] = Session(runtime, ScriptedModel(turns[runtime]).start())
            config = repo / ".loom" / "loom.yaml"
            config.write_text(config.read_text().replace("runtimes:\n", "runtimes:\n" + "".join(
                f"  {name}:\n    argv: {json.dumps(argv)}\n    mode: interactive\n    network: true\n"
                for name, argv in (("codex", CODEX_ARGV), ("aider", AIDER_ARGV))), 1))
            subprocess.run(["git", "commit", "-qam", "Interactive codex and aider"], cwd=repo, check=True,
                           capture_output=True)
            workspace = open_workspace(repo)
            isolate = isolation_available()
            if "aider" in sessions:
                headless.aider_home(home)
                env.setenv("OPENAI_API_BASE", sessions["aider"].api.url)
                env.setenv("AIDER_MODEL", "openai/fake-model")
                env.setenv("AIDER_EDIT_FORMAT", "whole")
                env.setenv("PATH", f"{Path(str(headless.AIDER)).parent}{os.pathsep}{os.environ.get('PATH', '')}")
                sessions["aider"].started_s = time.monotonic()
                cli = subprocess.Popen(
                    [sys.executable, "-m", "loomtui", "sandbox", "new", "--runtime", "aider", "--task",
                     TASK["aider"], "--json", *([] if isolate else ["--no-isolation"])],
                    cwd=repo, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if "codex" in sessions:
                session = sessions["codex"]
                home_dir = headless.codex_home(scratch, session.api.url)
                env.setenv("CODEX_HOME", str(home_dir))
                session.started_s = time.monotonic()
                record = tasks.create_sandbox(workspace, TASK["codex"], "codex", isolate=isolate)
                _trust(home_dir / "config.toml", Path(record.worktree))
                record = tasks.start(workspace, record.id)
                session.sandbox, session.worktree = record.id, Path(record.worktree)
            if cli is not None:
                out, err = cli.communicate(timeout=120)
                assert cli.returncode == 0, err
                started = json.loads(out)
                sessions["aider"].sandbox, sessions["aider"].worktree = started["id"], Path(started["worktree"])
            for session in sessions.values():
                record = sb.get_sandbox(workspace, session.sandbox)
                assert record.isolation == ("bwrap" if isolate else "none"), record.isolation
            yield World(repo, workspace, sessions)
        finally:
            if cli is not None and cli.returncode is None:  # codex's start failed meanwhile
                out, _ = cli.communicate(timeout=120)
                if cli.returncode == 0:
                    sessions["aider"].sandbox = json.loads(out)["id"]
            for session in sessions.values():
                if session.sandbox and workspace is not None \
                        and sb.get_sandbox(workspace, session.sandbox).status in sb.LIVE:
                    agent_control.stop(workspace, session.sandbox, grace=3)
                session.api.stop()
            if workspace is not None:
                workspace.close()
            shutil.rmtree(scratch, ignore_errors=True)


def _patch(repo: Path) -> str:
    first = (repo / FILE).read_text().splitlines()[0]
    changed = first.replace('"""', f'"""{EDITED} ', 1)
    return f"*** Begin Patch\n*** Update File: {FILE}\n@@\n-{first}\n+{changed}\n*** End Patch\n"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def _session(world: World, runtime: str) -> Session:
    if runtime not in world.sessions:
        pytest.skip(f"{runtime} is not installed")
    session = world.sessions[runtime]
    session.wait_for("the sandbox to run in its tmux session", lambda: sb.get_sandbox(
        world.workspace, session.sandbox).data.get("tmux_session") == session.tmux)
    return session


def _quit_and_end(world: World, session: Session, command: str) -> sb.SandboxRecord:
    pane = session.pane()
    session.type(command, lambda: not session.alive())
    try:
        # Ended, then advanced by the supervisor as far as it goes (the review of its change).
        wait_until_settled(world.workspace, session.sandbox, timeout=WAIT_S)
    except Exception as exc:
        raise AssertionError(f"{session.runtime}: not settled after {command} "
                             f"({sb.get_sandbox(world.workspace, session.sandbox).status}); the pane:\n"
                             f"{session.pane()}") from exc
    record = sb.get_sandbox(world.workspace, session.sandbox)
    log = sb.log_path(world.workspace, session.sandbox).read_text(errors="replace")
    actions = [e["action"] for e in headless.audit(world.workspace) if e["subject"] == record.id]
    assert record.exit_code == 0 and "sandbox.exited" in actions and "sandbox.failed" not in actions, (
        record.status, record.exit_code, record.data.get("error"), pane, log[-2000:])
    assert not session.alive(), "the tmux session ends with the agent"
    # The supervisor's review: the gates passed on the branch tip; notifications/*.py asks the platform group.
    headless.reviewed(world.workspace, record, "api-and-services")
    return record


def _assert_common(world: World, session: Session, record: sb.SandboxRecord) -> None:
    assert record.data["launch"]["mode"] == "interactive", record.data["launch"]
    assert EDITED in _git(world.repo, "show", f"{record.branch}:{FILE}")
    assert FILE in _git(world.repo, "diff", "--name-only", f"main...{record.branch}").split()
    # The git hooks loomtui installed in the worktree (the pre-commit: claims, the policy).
    hooks = _git(session.worktree, "config", "--worktree", "core.hooksPath").strip()
    assert hooks == str(world.workspace.paths.state_dir / "hooks"), hooks
    assert (Path(hooks) / "pre-commit").exists()
    # The task reached the model through the context file the CLI reads.
    assert TASK[session.runtime] in json.dumps(session.api.requests), "the context never reached the model"


def test_interactive_codex_in_tmux_takes_a_typed_prompt_and_its_edit_reaches_the_branch(world: World) -> None:
    session = _session(world, "codex")
    session.wait_for("Codex's prompt", lambda: "for shortcuts" in session.pane())
    ready_s = time.monotonic() - session.started_s
    asked = len(session.api.requests)
    session.type(PROMPT, lambda: len(session.api.requests) > asked)
    edited = session.worktree / FILE
    session.wait_for("the edit in the worktree", lambda: EDITED in edited.read_text())
    session.wait_for("Codex's last reply", lambda: "Edited." in session.pane() and not session.api.turns)
    record = _quit_and_end(world, session, "/quit")
    _assert_common(world, session, record)
    assert (session.worktree / "AGENTS.md").exists()
    assert "apply_patch" in session.api.tool_names()
    assert any("Success" in str(o.get("output")) for o in session.api.tool_outputs()), session.api.tool_outputs()
    # Codex left its edit uncommitted; loomtui saved it to the sandbox branch when the session ended.
    assert record.data.get("saved_commit"), record.data
    subjects = _git(world.repo, "log", "--format=%s", f"main..{record.branch}").splitlines()
    assert any(s.startswith("loomtui: work left uncommitted") for s in subjects), subjects
    # Its review held the code the saved work changed: the next agent's commit of that docstring is refused
    # until it goes (archived here, so the Aider session below edits it as if alone).
    held = world.workspace.store.live_claims(record.id)
    assert any(c.reason == f"claimed by commit of {FILE}" for c in held), held
    tasks.remove(world.workspace, record.id, force=True)
    print(f"codex: prompt after {ready_s:.1f}s, exited after {time.monotonic() - session.started_s:.1f}s")


def test_interactive_aider_in_tmux_takes_a_typed_prompt_and_commits_its_edit(world: World) -> None:
    session = _session(world, "aider")
    prompt = re.compile(r"^> ?$", re.MULTILINE)
    session.wait_for("Aider's prompt", lambda: "Aider v" in session.pane() and bool(prompt.search(session.pane())))
    ready_s = time.monotonic() - session.started_s
    asked = len(session.api.requests)
    session.type(PROMPT, lambda: len(session.api.requests) > asked)
    edited = session.worktree / FILE
    session.wait_for("the edit in the worktree", lambda: EDITED in edited.read_text())
    # Aider commits its edit itself (through loomtui's pre-commit), then prompts again.
    session.wait_for("Aider's commit and its next prompt", lambda: "Commit " in session.pane()
                     and bool(prompt.search(session.pane().split("Commit ", 1)[-1])))
    record = _quit_and_end(world, session, "/exit")
    _assert_common(world, session, record)
    subjects = _git(world.repo, "log", "--format=%s", f"main..{record.branch}").splitlines()
    assert "Edit the docstring" in subjects, subjects
    assert not record.data.get("saved_commit"), "Aider committed everything itself"
    print(f"aider: prompt after {ready_s:.1f}s, exited after {time.monotonic() - session.started_s:.1f}s")
