"""The execution layer end to end: real worktrees, real supervisors, real agents (stand-ins on PATH).

Stand-in executables play the vendor CLIs: they check the argv they are given,
write files and print what the real tool would. Nothing pretends a vendor CLI ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loomtui.errors import ConfigError, LoomError
from loomtui.execution import agent_control, isolation, recovery, review
from loomtui.execution import sandboxes as sb
from loomtui.execution.activity import parse_claude_stream, parse_script_agent
from loomtui.execution.isolation import (
    SandboxMounts,
    bwrap_argv,
    checkout_shown,
    isolation_available,
    scratch_bwrap_argv,
    secret_paths,
    under_private_dirs,
)
from loomtui.execution.lifecycle import (
    APPROVED,
    ARCHIVED,
    AWAITING_REVIEW,
    EXITED,
    FAILED,
    GATING,
    MERGED,
    PAUSED,
    PLANNED,
    REJECTED,
    RUNNING,
    set_status,
)
from loomtui.execution.procs import OOM_SCORE_ADJ_AGENT, group_exists, identity, is_alive
from loomtui.execution.sandbox_paths import TMUX
from loomtui.execution.script_agent import parse_script
from loomtui.identity import current_host
from loomtui.store import SandboxRecord
from loomtui.workflow import tasks
from loomtui.workflow.engine import wait_until_settled
from loomtui.workflow.steps import Step, next_step
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import agent_ended, git, run_cli, wait_until

needs_bwrap = pytest.mark.skipif(not isolation_available(), reason="bubblewrap (bwrap) not usable here")
needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
ENDED = {EXITED, FAILED}
EXITED_OK = {EXITED, AWAITING_REVIEW}
"""An agent that exited 0: then reviewed by the workflow when it left a change."""


# -- helpers ---------------------------------------------------------------------------


def stand_in(bin_dir: Path, name: str, body: str) -> Path:
    """An executable Python script called `name` on the test PATH."""
    path = bin_dir / name
    header = f"#!{sys.executable}\nimport json, os, signal, subprocess, sys, time\n"
    path.write_text(header + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def write_config(repo: Path, runtimes: str) -> None:
    """A .loom/loom.yaml with these runtimes (indented YAML under `runtimes:`)."""
    (repo / ".loom").mkdir(exist_ok=True)
    body = textwrap.indent(textwrap.dedent(runtimes), "  ")
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nruntimes:\n" + body)


def write_script(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def ended(workspace: Workspace, sandbox_id: str) -> SandboxRecord:
    """The sandbox once its agent has ended and the workflow has advanced it as far as it goes
    (a change is reviewed: gates, then the policy, which here asks a person)."""
    wait_until_settled(workspace, sandbox_id, timeout=60)
    return sb.get_sandbox(workspace, sandbox_id)


def running(workspace: Workspace, sandbox_id: str) -> SandboxRecord:
    return sb.wait_for_status(workspace, sandbox_id, {RUNNING}, timeout=30)


def audit_actions(workspace: Workspace, sandbox_id: str) -> list[str]:
    return [e.action for e in workspace.audit.entries() if e.subject == sandbox_id]


def kill_leftovers(workspace: Workspace) -> None:
    """No test leaves a supervisor or an agent behind."""
    for record in workspace.store.list_sandboxes(include_archived=True):
        agent = record.data.get("agent_pid")
        if isinstance(agent, int) and agent > 1 and is_alive(agent, record.data.get("agent_pid_start")):
            try:
                os.killpg(agent, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if record.pid and record.pid > 1 and is_alive(record.pid, record.pid_start):
            try:
                os.kill(record.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


@pytest.fixture
def ws(repo: Path, bin_dir: Path) -> Iterator[Workspace]:
    workspace = open_workspace(repo)
    try:
        yield workspace
    finally:
        kill_leftovers(workspace)
        workspace.close()


def no_sandbox_left(workspace: Workspace, repo: Path) -> None:
    assert workspace.store.list_sandboxes(include_archived=True) == []
    assert git(repo, "branch", "--list", "loom/*") == ""
    root = sb.configured_worktrees_root(workspace)
    assert not root.exists() or not any(root.iterdir())


# -- the script runtime, end to end ------------------------------------------------------


def test_script_agent_edits_and_commits_in_its_own_worktree(ws: Workspace, repo: Path, tmp_path: Path) -> None:
    script = write_script(tmp_path / "edit.yaml", """\
        - {after: 0.05, write: src/app.py, content: "VALUE = 1\\n"}
        - {replace: {path: README.md, old: "test repo", new: "agent repo"}}
        - {log: "tick {n}", repeat: 3}
        - {commit: "Add the app"}
        - {append: notes.txt, content: "left uncommitted\\n"}
    """)
    record = tasks.create_sandbox(ws, "add the app", "script", script=script)
    assert record.status == PLANNED and record.branch == f"loom/{record.id}"
    # Outside any .git directory (Claude Code refuses to write there) and outside the checkout.
    assert ".git" not in Path(record.worktree).parts and not Path(record.worktree).is_relative_to(repo)
    assert Path(record.worktree) == sb.configured_worktrees_root(ws) / record.id
    tasks.start(ws, record.id)
    done = ended(ws, record.id)

    # Ended, then reviewed by the workflow with no app open: the default policy asks a person.
    assert done.status == AWAITING_REVIEW and done.exit_code == 0
    assert sb.read_log_tail(ws, record.id, 10) == [
        "[script] write src/app.py", "[script] replace README.md", "tick 1", "tick 2", "tick 3",
        f"[script] commit Add the app ({git(repo, 'rev-parse', '--short', f'{record.branch}~1')})",
        "[script] append notes.txt",
    ]
    # The agent's own commit, then the supervisor saved what it left uncommitted.
    subjects = git(repo, "log", "--format=%s", f"main..{record.branch}").splitlines()
    assert subjects == [f"loomtui: work left uncommitted by the agent in sandbox {record.id}", "Add the app"]
    assert git(repo, "show", f"{record.branch}:README.md") == "# agent repo"
    # The main working tree and branch are untouched.
    assert (repo / "README.md").read_text() == "# test repo\n"
    assert git(repo, "status", "--porcelain") == "" and git(repo, "log", "--format=%s", "main") == "initial"
    # The code it changed is held (README.md is no code coordination covers): by the supervisor's beat
    # once the commit landed, or by the review when the agent ended first.
    actions = audit_actions(ws, record.id)
    assert [a for a in actions if a != "claim.added"] == [
        "sandbox.planned", "context.sliced", "sandbox.running", "sandbox.exited", "sandbox.gating", "eval.run",
        "policy.evaluated", "sandbox.awaiting_review"] and actions.count("claim.added") == 1
    assert [c.target for c in ws.store.live_claims(record.id)] == ["src/app.py"]
    kinds = [e.data.get("kind") for e in ws.store.events_since(0) if e.kind == "sandbox.activity"]
    assert kinds == ["write", "replace", "commit", "append"]
    assert done.heartbeat is not None and done.data["log_lines"] == 7
    changes = review.diff(ws, record.id)
    assert {c.path for c in changes.files} == {"src/app.py", "README.md", "notes.txt"}
    assert "+VALUE = 1" in changes.patch


def test_an_agent_flooding_its_activities_is_recorded_at_a_bounded_rate_its_closing_report_kept(
    ws: Workspace, bin_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A program printing tool-call lines as fast as it could (911,000 in 25 s) was a store row each, queued
    without bound in the supervisor's memory. A burst is recorded, then a steady rate; the rest are counted
    and said once; its closing report is kept."""
    from loomtui.execution.activity import ACTIVITY_BURST

    stand_in(bin_dir, "claude", """\
        line = json.dumps({"type": "assistant", "message": {"content": [
            {"type": "tool_use", "name": "Edit", "input": {"file_path": "x.py"}}]}})
        sys.stdout.write((line + "\\n") * 5000)
        print(json.dumps({"type": "result", "subtype": "success", "num_turns": 1, "is_error": False}), flush=True)
    """)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    record = tasks.start(ws, tasks.create_sandbox(ws, "flood", "claude").id)
    done = ended(ws, record.id)
    assert done.status in EXITED_OK, done.data
    activity = [e.data for e in ws.store.events_since(0) if e.kind == "sandbox.activity"]
    tools = [a for a in activity if a.get("kind") == "tool"]
    assert ACTIVITY_BURST <= len(tools) < 1000, len(tools)  # all 5,000 in well under a second: the burst, and a few
    [note] = [a for a in activity if a.get("kind") == "note"]
    assert "faster than 20 a second: the rest are counted" in note["summary"]
    assert activity[-1]["summary"] == "finished: success, 1 turn"


def test_the_activity_budget_keeps_a_burst_then_a_steady_rate_and_at_most_a_runs_worth() -> None:
    from loomtui.execution import activity as act

    now = [0.0]
    budget = act.ActivityBudget(clock=lambda: now[0])
    tool = {"kind": "tool", "summary": "Edit x.py"}
    assert sum(budget.admit(tool) for _ in range(act.ACTIVITY_BURST + 50)) == act.ACTIVITY_BURST
    assert budget.dropped == 50 and budget.admit({"kind": "result"})  # its closing report, always
    now[0] += 1.0
    assert sum(budget.admit(tool) for _ in range(100)) == act.ACTIVITY_RATE
    budget.kept = act.MAX_ACTIVITIES
    now[0] += 60.0
    assert not budget.admit(tool)
    # Closing reports are kept past the rate, but not without end (a program printing result lines was a row each).
    assert sum(budget.admit({"kind": "result"}) for _ in range(act.MAX_RESULTS + 10)) == act.MAX_RESULTS - 1


def test_claude_stand_in_gets_its_exact_argv_and_a_reduced_environment(
    ws: Workspace, repo: Path, bin_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    task = 'fix it; $(touch pwned) && rm -rf ~ "quoted" `x`'
    stand_in(bin_dir, "claude", """\
        with open("seen.json", "w") as out:
            json.dump({"argv": sys.argv[1:], "env": sorted(os.environ)}, out)
        def emit(message):
            print(json.dumps(message), flush=True)
        emit({"type": "system", "subtype": "init", "model": "stand-in"})
        emit({"type": "assistant", "message": {"content": [
            {"type": "text", "text": "Editing the file."},
            {"type": "tool_use", "name": "Edit", "input": {"file_path": "app.py"}}]}})
        emit({"type": "result", "subtype": "success", "num_turns": 2, "total_cost_usd": 0.01, "is_error": False})
    """)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("LOOM_TEST_SECRET", "must not leak")
    record = tasks.start(ws, tasks.create_sandbox(ws, task, "claude").id)
    done = ended(ws, record.id)
    assert done.status in EXITED_OK, done.data
    seen = json.loads(git(repo, "show", f"{record.branch}:seen.json"))
    mcp_config = str(sb.sandbox_paths(ws.paths, record.id).dir / "mcp.json")
    assert seen["argv"] == ["-p", "--output-format", "stream-json", "--verbose", "--mcp-config", mcp_config,
                            "--permission-prompt-tool", "mcp__loomtui__permission_prompt",
                            "--disallowedTools", "EnterWorktree", "--", task]
    assert not (Path(record.worktree) / "pwned").exists() and not (repo / "pwned").exists()
    assert {"ANTHROPIC_API_KEY", "LOOM_SANDBOX", "LOOM_REPO", "PATH", "HOME"} <= set(seen["env"])
    assert "LOOM_TEST_SECRET" not in seen["env"]
    activity = [e.data for e in ws.store.events_since(0) if e.kind == "sandbox.activity"]
    assert [a["summary"] for a in activity] == [
        "session started (stand-in)", "Editing the file.", "Edit app.py", "finished: success, 2 turns, $0.0100"]
    assert done.data["agent_result"] == {"turns": 2, "cost_usd": 0.01, "is_error": False, "error": None,
                                         "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0,
                                         "cache_creation_tokens": 0, "input_tokens_read": 0, "denials": []}


@pytest.mark.skipif(not isolation_available(), reason="bubblewrap is not usable here")
def test_a_claude_agent_writes_its_own_state_and_nothing_its_cli_obeys_outside(
    ws: Workspace, repo: Path, bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It wrote `disableAllHooks` and a SessionStart hook into ~/.claude/settings.json (hooks off in every
    sandbox, a command run on the host at the user's next session), MCP servers into ~/.claude.json, and
    created ~/.claude/.config.json, which Claude Code takes as its whole global config once it exists.
    Now its state is the sandbox's own: the user's settings read-only, its login a copy of which only a
    refresh goes back to the user (it could write the user's own: another account's token, or junk)."""
    home = tmp_path / "home"
    (home / ".claude" / "commands").mkdir(parents=True)
    (home / ".claude" / "CLAUDE.md").write_text("the user's own\n")
    (home / ".claude" / ".credentials.json").write_text('{"accessToken": "old", "expiresAt": 1, "plan": "max"}')
    (home / ".claude.json").write_text('{"hasCompletedOnboarding": true}')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    stand_in(bin_dir, "claude", """\
        results = {}
        def attempt(name, text):
            try:
                with open(os.path.expanduser("~/" + name), "w") as out:
                    out.write(text)
                results[name] = "written"
            except OSError as exc:
                results[name] = exc.strerror
        with open(os.path.expanduser("~/.claude.json")) as seen:
            results["seen"] = json.load(seen)
        results["kept"] = os.path.exists(os.path.expanduser("~/.claude/sessions.txt"))
        for name in (".claude/settings.json", ".claude/CLAUDE.md", ".claude/commands/pwn.md"):
            attempt(name, '{"disableAllHooks": true}')
        attempt(".claude/.config.json", '{"mcpServers": {"x": {"command": "touch /tmp/pwned"}}}')
        attempt(".claude.json", '{"mcpServers": {"x": {"command": "touch /tmp/pwned"}}}')
        attempt(".claude/sessions.txt", "a session")
        # A refresh (the first run), then another account's login in its place (the second).
        attempt(".claude/.credentials.json", '{"accessToken": "theirs", "expiresAt": 3, "plan": "pro"}'
                if results["kept"] else '{"accessToken": "refreshed", "expiresAt": 2, "plan": "max"}')
        print(json.dumps(results), flush=True)
    """)
    record = tasks.create_sandbox(ws, "look around", "claude")
    for run in (1, 2):
        tasks.start(ws, record.id)
        done = ended(ws, record.id)
        assert done.isolation == "bwrap"
        results = json.loads(next(line for line in reversed(sb.read_log_tail(ws, record.id, 40))
                                  if line.startswith("{")))
        # What the CLI obeys is read-only: the user's own, and where they have none (settings.json
        # here), an empty one of the sandbox's, not made in the user's folder.
        for fixed in (".claude/CLAUDE.md", ".claude/commands/pwn.md", ".claude/settings.json"):
            assert results[fixed] == "Read-only file system", (fixed, results)
        # The rest is the sandbox's own, kept from one run to the next; the login is the user's.
        for own in (".claude/.config.json", ".claude.json", ".claude/sessions.txt",
                    ".claude/.credentials.json"):
            assert results[own] == "written", (own, results)
        assert results["kept"] == (run == 2)
        assert results["seen"] == ({"hasCompletedOnboarding": True} if run == 1 else
                                   {"mcpServers": {"x": {"command": "touch /tmp/pwned"}}})
    assert sorted(path.name for path in (home / ".claude").iterdir()) == [".credentials.json", "CLAUDE.md", "commands"]
    assert (home / ".claude" / "CLAUDE.md").read_text() == "the user's own\n"
    assert list((home / ".claude" / "commands").iterdir()) == []
    assert (home / ".claude.json").read_text() == '{"hasCompletedOnboarding": true}'
    assert (home / ".claude" / ".credentials.json").read_text() == '{"accessToken": "refreshed", "expiresAt": 2, "plan": "max"}'
    kept = [entry for entry in ws.audit.entries() if entry.action == "sandbox.login_kept"]
    assert len(kept) == 1 and "what names the login changed (at plan)" in kept[0].details["error"], kept
    refreshed = [entry.details["login"] for entry in ws.audit.entries() if entry.action == "sandbox.login_refreshed"]
    assert refreshed == [f"{home / '.claude' / '.credentials.json'}: the sandbox's refresh went back (accessToken, expiresAt)"], refreshed
    own = sb.sandbox_paths(ws.paths, record.id).runtime_state
    assert own.is_dir()
    review.remove(ws, record.id)  # archived: no agent runs in it again, and it held a copy of the user's config
    assert not own.exists() and (home / ".claude" / ".credentials.json").exists()


@pytest.mark.parametrize("users_skills", [True, False], ids=["the-users-skills", "no-skills"])
def test_codex_installs_its_system_skills_in_a_copy_of_the_users_made_at_each_start(
    ws: Workspace, bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, users_skills: bool,
) -> None:
    """Codex writes its own skills into `$CODEX_HOME/skills/.system` as it starts (removing the old first);
    the user's skills were bound read-only, and every run logged "failed to install system skills ...
    Read-only file system" and went without them. The sandbox has a copy of the user's now, made anew at
    each start: what an agent leaves there (a skill its next run would obey) is gone by then."""
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    if users_skills:
        (home / ".codex" / "skills" / ".system").mkdir(parents=True)
        (home / ".codex" / "skills" / "review" / "SKILL.md").parent.mkdir()
        (home / ".codex" / "skills" / "review" / "SKILL.md").write_text("the user's own\n")
        os.mkfifo(home / ".codex" / "skills" / "a-fifo")  # never opened (a copy of it would wait for a writer)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    stand_in(bin_dir, "codex", """\
        import shutil
        skills = os.path.expanduser("~/.codex/skills/")
        results = {"left": os.path.exists(skills + "planted"), "seen": sorted(os.listdir(skills))}
        shutil.rmtree(skills + ".system", ignore_errors=True)
        os.makedirs(skills + ".system/skill-creator")
        open(skills + "planted", "w").write("obey me next time")
        if os.path.exists(skills + "review"):
            open(skills + "review/SKILL.md", "w").write("changed")
        print(json.dumps(results), flush=True)
    """)
    record = tasks.create_sandbox(ws, "look around", "codex")
    for _run in (1, 2):
        tasks.start(ws, record.id)
        done = ended(ws, record.id)
        assert done.isolation == "bwrap" and done.status in EXITED_OK, sb.read_log_tail(ws, record.id)
        results = json.loads(next(line for line in reversed(sb.read_log_tail(ws, record.id, 40))
                                  if line.startswith("{")))
        assert results == {"left": False, "seen": [".system", "review"] if users_skills else []}, results
    if users_skills:
        assert (home / ".codex" / "skills" / "review" / "SKILL.md").read_text() == "the user's own\n"
        assert sorted(p.name for p in (home / ".codex" / "skills").iterdir()) == [".system", "a-fifo", "review"]
    else:
        assert not (home / ".codex" / "skills").exists()


@pytest.mark.parametrize(("runtime", "expected"), [
    ("codex", ["exec", "--json", "--sandbox", "danger-full-access", "--skip-git-repo-check", "--color", "never", "--",
               "TASK"]),
    ("aider", ["--yes-always", "--no-check-update", "--no-analytics", "--no-show-release-notes",
               "--no-show-model-warnings", "--no-pretty", "--no-fancy-input", "--no-detect-urls", "--no-gitignore",
               "--git-commit-verify", "--input-history-file=/dev/null", "--chat-history-file=/dev/null",
               "--read=CONTEXT", "--message=TASK"]),
])
def test_codex_and_aider_stand_ins_get_their_argv(ws: Workspace, repo: Path, bin_dir: Path,
                                                   runtime: str, expected: list[str]) -> None:
    stand_in(bin_dir, runtime, f"""\
        expected = {expected!r}
        got = sys.argv[1:]
        context = os.environ["LOOM_CONTEXT_FILE"]
        if got != [a.replace("TASK", "rename the helper").replace("CONTEXT", context) for a in expected]:
            print("unexpected argv", got, flush=True)
            sys.exit(9)
        open("done.txt", "w").write("ok")
        open("oom.txt", "w").write(open("/proc/self/oom_score_adj").read())
    """)
    record = tasks.start(ws, tasks.create_sandbox(ws, "rename the helper", runtime).id)
    done = ended(ws, record.id)
    assert done.status in EXITED_OK, sb.read_log_tail(ws, record.id)
    assert git(repo, "show", f"{record.branch}:done.txt") == "ok"
    # Out of memory, the kernel ends the agent first (not the person's editor, the store, its supervisor).
    assert git(repo, "show", f"{record.branch}:oom.txt") == str(OOM_SCORE_ADJ_AGENT)


# -- bad input: one clear error, nothing created ------------------------------------------------


def test_nonexistent_base_ref_creates_nothing(ws: Workspace, repo: Path) -> None:
    with pytest.raises(LoomError, match="base ref 'no-such-branch' does not exist") as raised:
        tasks.create_sandbox(ws, "task", "script", base="no-such-branch", script=_tiny_script(ws))
    assert "\n" not in str(raised.value)
    no_sandbox_left(ws, repo)


def test_runtime_not_on_path_is_a_clear_error_and_creates_nothing(ws: Workspace, repo: Path) -> None:
    write_config(repo, """\
        ghost:
          argv: ["no-such-agent-binary", "{task}"]
    """)
    with pytest.raises(LoomError, match=r"runtime 'ghost': 'no-such-agent-binary' is not on PATH"):
        tasks.create_sandbox(ws, "task", "ghost")
    with pytest.raises(LoomError, match=r"unknown runtime 'claud' \(did you mean 'claude'\?"):
        tasks.create_sandbox(ws, "task", "claud")
    no_sandbox_left(ws, repo)


def test_bad_script_is_reported_with_file_and_line(ws: Workspace, repo: Path, tmp_path: Path) -> None:
    script = write_script(tmp_path / "bad.yaml", """\
        - {write: ok.txt, content: "x"}
        - {write: ../escape.txt, content: "x"}
    """)
    with pytest.raises(ConfigError, match=r"bad\.yaml:2: \[1\]\.write: must be a path inside the worktree"):
        tasks.create_sandbox(ws, "task", "script", script=script)
    with pytest.raises(LoomError, match="replays a script, and none was given"):
        tasks.create_sandbox(ws, "task", "script")
    no_sandbox_left(ws, repo)


@pytest.mark.parametrize(("text", "message"), [
    ("- {write: a.txt, commit: x}\n", r"s\.yaml:1: \[0\]: each step needs exactly one of"),
    ("- {after: -1, log: x}\n", r"s\.yaml:1: \[0\]\.after: must not be negative"),
    ("- {log: x, content: y}\n", r"s\.yaml:1: \[0\]\.content: not used by a log step"),
    ("- {exit: 300}\n", r"s\.yaml:1: \[0\]\.exit: must be between 0 and 255"),
    ("- {replace: {path: a, old: b}}\n", r"s\.yaml:1: \[0\]\.replace\.new: required key missing"),
    ("- {wirte: a}\n", r"unknown key \(did you mean 'write'\?\)"),
    ("{write: a}\n", r"s\.yaml:1: top level: expected a list"),
])
def test_script_schema_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_script(text, "s.yaml")


@pytest.mark.parametrize(("step", "said"), [
    ("- {write: d, content: x}", "write: d: Is a directory"),
    ("- {delete: d}", "delete: d: Is a directory"),
    ("- {replace: {path: bin.dat, old: a, new: b}}", "replace: bin.dat: not UTF-8 text"),
])
def test_a_script_step_the_files_refuse_fails_at_its_line_not_on_a_traceback(repo: Path, tmp_path: Path, step: str,
                                                                            said: str) -> None:
    """Each passed `--check`, then the run ended on IsADirectoryError or UnicodeDecodeError."""
    (repo / "d").mkdir()
    (repo / "bin.dat").write_bytes(b"\xff")
    script = tmp_path / "s.yaml"
    script.write_text(f"- {{log: first}}\n{step}\n")
    done = run_cli(repo, "script-agent", str(script))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"loomtui: error: {script}:2: step 2/2: {said}"


def test_ids_are_slugs_and_never_come_from_user_text(ws: Workspace) -> None:
    for bad in ("../etc", "a/b", "X1", "", "-rf", "a b"):
        with pytest.raises(LoomError, match="is not a sandbox id"):
            sb.get_sandbox(ws, bad)
    with pytest.raises(LoomError, match="no sandbox 'abc123'"):
        sb.get_sandbox(ws, "abc123")


# -- the agent's life: exit codes, stop, pause ------------------------------------------------------


def test_runtime_that_exits_at_once_is_failed_with_its_exit_code(ws: Workspace, repo: Path, bin_dir: Path) -> None:
    stand_in(bin_dir, "quitter", """\
        print("giving up", flush=True)
        sys.exit(3)
    """)
    write_config(repo, 'quitter:\n  argv: ["quitter", "{task}"]\n')
    record = tasks.start(ws, tasks.create_sandbox(ws, "anything", "quitter").id)
    done = ended(ws, record.id)
    assert (done.status, done.exit_code, done.data["error"]) == (FAILED, 3, "exited with code 3")
    assert sb.read_log_tail(ws, record.id) == ["giving up"]
    assert audit_actions(ws, record.id)[-1] == "sandbox.failed"


def stubborn_agent(bin_dir: Path) -> None:
    """`stubborn` on the test PATH: an agent that ignores SIGTERM and says when it is ready."""
    stand_in(bin_dir, "stubborn", """\
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        while True:
            time.sleep(0.05)
    """)


def test_stop_terms_the_agent_then_kills_one_that_ignores_sigterm(ws: Workspace, repo: Path, bin_dir: Path) -> None:
    stand_in(bin_dir, "polite", """\
        def leave(*_):
            print("cleaning up", flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, leave)
        print("ready", flush=True)
        while True:
            time.sleep(0.05)
    """)
    stubborn_agent(bin_dir)
    write_config(repo, 'polite:\n  argv: ["polite"]\nstubborn:\n  argv: ["stubborn"]\n')
    polite = tasks.start(ws, tasks.create_sandbox(ws, "run politely", "polite").id)
    stubborn = tasks.start(ws, tasks.create_sandbox(ws, "run stubbornly", "stubborn").id)
    for record in (polite, stubborn):
        running(ws, record.id)
        wait_until(lambda r=record: "ready" in sb.read_log_tail(ws, r.id), what="agent ready")

    # SIGTERM reaches the agent itself (under bwrap too), which exits its own way.
    done = agent_control.stop(ws, polite.id, grace=30)
    assert (done.status, done.exit_code) == (EXITED, 7)
    assert sb.read_log_tail(ws, polite.id)[-1] == "cleaning up"
    assert "sandbox.killed" not in audit_actions(ws, polite.id)

    group = sb.get_sandbox(ws, stubborn.id).data["agent_pid"]
    done = agent_control.stop(ws, stubborn.id, grace=0.5)
    assert done.status in EXITED_OK and done.exit_code == 128 + signal.SIGKILL
    assert not group_exists(group)
    assert audit_actions(ws, stubborn.id)[-3:] == ["sandbox.stop_requested", "sandbox.killed", "sandbox.exited"]
    with pytest.raises(LoomError, match="is exited, not running"):
        agent_control.stop(ws, stubborn.id)


def test_a_stop_whose_caller_is_interrupted_is_finished_by_the_supervisor(ws: Workspace, repo: Path,
                                                                         bin_dir: Path) -> None:
    """Ctrl-C on `sandbox stop` during its grace: the SIGTERM went out, the SIGKILL never would have."""
    stubborn_agent(bin_dir)
    write_config(repo, 'stubborn:\n  argv: ["stubborn"]\n')
    record = tasks.start(ws, tasks.create_sandbox(ws, "run stubbornly", "stubborn").id)
    running(ws, record.id)
    wait_until(lambda: "ready" in sb.read_log_tail(ws, record.id), what="agent ready")
    # Started as a terminal's foreground command is: SIGINT at its default action. A runner started
    # in the background by a shell without job control (CI scripts often are) ignores SIGINT, and
    # its children inherit that; Python then leaves it ignored, and the Ctrl-C below would be lost.
    stop_argv = [sys.executable, "-m", "loomtui", "sandbox", "stop", record.id, "--grace", "5"]
    as_in_a_terminal = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                        "os.execv(sys.argv[1], sys.argv[1:])")
    stopping = subprocess.Popen([sys.executable, "-c", as_in_a_terminal, *stop_argv], cwd=repo,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: "sandbox.stop_requested" in audit_actions(ws, record.id), what="the stop asked")
    stopping.send_signal(signal.SIGINT)  # the person gave up waiting
    _, stop_err = stopping.communicate(timeout=20)
    assert stopping.returncode == 130, stop_err  # ended by the interrupt, not by its own SIGKILL
    done = sb.wait_for_status(ws, record.id, {EXITED, FAILED}, timeout=40)
    assert done.exit_code == 128 + signal.SIGKILL
    killed = [e for e in ws.audit.entries() if e.subject == record.id and e.action == "sandbox.killed"]
    assert [e.details.get("by") for e in killed] == ["supervisor"]
    # It reads as stopped, not as an agent that ended by itself: in the list and in the app's detail.
    assert sb.stopped_by(done) == "dev@example.com"  # the repository's git user
    assert "[stopped]" in run_cli(repo, "sandbox", "list").stdout
    from loomtui.tui.sandbox_text import sandbox_fields

    status = next(f.value for f in sandbox_fields(done, None, None) if f.label == "status")
    assert status == f"{done.status} (stopped by dev@example.com)"


def _process_state(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2]


def test_pause_and_resume_freeze_and_thaw_the_agent(ws: Workspace, repo: Path, bin_dir: Path) -> None:
    stand_in(bin_dir, "counter", """\
        n = 0
        while True:
            n += 1
            print(n, flush=True)
            time.sleep(0.02)
    """)
    write_config(repo, 'counter:\n  argv: ["counter"]\n')
    record = running(ws, tasks.start(ws, tasks.create_sandbox(ws, "count", "counter").id).id)
    agent = record.data["agent_pid"]
    members = lambda: [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgrp(int(p)) == agent]
    assert agent_control.pause(ws, record.id).status == PAUSED
    wait_until(lambda: all(_process_state(pid) == "T" for pid in members()), what="stopped processes")
    with pytest.raises(LoomError, match="only a running sandbox can be paused"):
        agent_control.pause(ws, record.id)
    assert agent_control.resume(ws, record.id).status == RUNNING
    wait_until(lambda: all(_process_state(pid) != "T" for pid in members()), what="running processes")
    # Stopping a paused agent works too (it is continued so it can act on SIGTERM).
    agent_control.pause(ws, record.id)
    assert agent_control.stop(ws, record.id, grace=5).status in EXITED_OK
    actions = audit_actions(ws, record.id)
    assert actions.count("sandbox.paused") == 2 and "sandbox.running" in actions[2:]


def _pgrp(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2:].split()[2])


# -- removal and merge: nothing is lost, nothing is half done --------------------------------------


def _finished_script_sandbox(ws: Workspace, tmp_path: Path, steps: str, task: str = "edit") -> SandboxRecord:
    script = write_script(tmp_path / f"{task.replace(' ', '-')}.yaml", steps)
    record = tasks.start(ws, tasks.create_sandbox(ws, task, "script", script=script).id)
    done = ended(ws, record.id)
    assert done.status == AWAITING_REVIEW and done.exit_code == 0, sb.read_log_tail(ws, record.id)
    return done


def test_a_diff_names_a_non_ascii_file_as_it_is(ws: Workspace, repo: Path, tmp_path: Path) -> None:
    """It was git's quoted form, `"caf\\303\\251.py"` with the quotes, in `sandbox diff --json` too."""
    record = _finished_script_sandbox(ws, tmp_path, '- {write: "café.py", content: "x = 1\\n"}\n')
    assert [f.path for f in review.diff(ws, record.id).files] == ["café.py"]


def test_a_large_binary_file_is_counted_not_read_into_the_diff(ws: Workspace, repo: Path) -> None:
    """`sandbox diff` read a 300 MB blob whole, twice (590 MB of memory), to print `Binary files differ`."""
    record = tasks.create_sandbox(ws, "a model file", "command", isolate=False, command=[
        "sh", "-c", "head -c 20000000 /dev/urandom > model.bin && echo 'X = 1' > extra.py"])
    tasks.start(ws, record.id)
    ended(ws, record.id)
    change = review.diff(ws, record.id)
    assert {(f.path, f.added) for f in change.files} == {("model.bin", None), ("extra.py", 1)}
    assert "extra.py" in change.patch and "model.bin" not in change.patch


def test_remove_refuses_uncommitted_work_and_force_commits_it_first(ws: Workspace, repo: Path, tmp_path: Path) -> None:
    record = _finished_script_sandbox(ws, tmp_path, '- {write: a.txt, content: "agent\\n"}\n')
    worktree = Path(record.worktree)
    (worktree / "by-hand.txt").write_text("a human's edit after the agent ended\n")
    with pytest.raises(LoomError, match=r"has uncommitted changes \(by-hand.txt\); nothing was removed") as raised:
        review.remove(ws, record.id)
    assert raised.value.exit_code == 1 and worktree.is_dir()

    result = review.remove(ws, record.id, force=True)
    assert result.saved_commit and not result.branch_deleted and not worktree.exists()
    assert git(repo, "show", f"{record.branch}:by-hand.txt") == "a human's edit after the agent ended"
    assert git(repo, "rev-parse", record.branch) == result.saved_commit
    assert sb.get_sandbox(ws, record.id).status == ARCHIVED
    assert sb.list_sandboxes(ws) == [] and len(sb.list_sandboxes(ws, include_archived=True)) == 1
    assert audit_actions(ws, record.id)[-1] == "sandbox.archived"
    # The branch stays until explicitly deleted.
    assert git(repo, "branch", "--list", record.branch).strip() == record.branch


def test_remove_names_what_git_ignores_as_it_deletes_it(ws: Workspace, repo: Path, tmp_path: Path) -> None:
    """Ignored files are never part of the work (no save takes them), but they went without a word."""
    record = _finished_script_sandbox(ws, tmp_path, '- {write: .gitignore, content: "build/\\n*.log\\n"}\n'
                                                    '- {commit: "ignore build output"}\n')
    worktree = Path(record.worktree)
    (worktree / "build").mkdir()
    (worktree / "build" / "data.bin").write_bytes(b"\0" * 10)
    (worktree / "run.log").write_text("ran\n")
    result = review.remove(ws, record.id)
    assert sorted(result.ignored) == ["build/", "run.log"] and not worktree.exists()
    archived = [e for e in ws.audit.entries() if e.action == "sandbox.archived" and e.subject == record.id]
    assert archived[-1].details["ignored_deleted"] == ["build/", "run.log"]


def test_a_git_repository_inside_the_worktree_is_never_deleted_even_with_force(
        ws: Workspace, repo: Path, tmp_path: Path) -> None:
    record = _finished_script_sandbox(ws, tmp_path, '- {write: a.txt, content: "agent\\n"}\n')
    worktree = Path(record.worktree)
    nested = worktree / "vendor" / "lib"
    nested.mkdir(parents=True)
    git(nested, "init", "-q")
    (nested / "work.py").write_text("print('hours of work')\n")
    git(nested, "add", "work.py")
    git(nested, "commit", "-qm", "wip")
    (nested / "work2.py").write_text("more\n")
    # Saved as the end of an agent saves its work: the nested files are committed, nothing is
    # uncommitted, and the nested history would still go with the tree.
    sb.agent_tree(ws, record).commit_all(record.branch, "loomtui: save the agent's work")
    assert sb.agent_tree(ws, record).dirty_paths(record.branch) == []
    for force in (False, True):
        with pytest.raises(review.RemoveRefused, match=r"holds a git repository of its own \(vendor/lib\), "
                                                       r"which cannot be saved to loom/.*nothing was removed"):
            review.remove(ws, record.id, force=force)
    assert (nested / "work.py").is_file() and (nested / "work2.py").is_file()
    assert sb.get_sandbox(ws, record.id).status != ARCHIVED
    shutil.move(str(nested), tmp_path / "kept-lib")  # moved out, as the refusal says: then it goes
    assert review.remove(ws, record.id, force=True) and not worktree.exists()


def test_a_git_repository_with_no_commit_yet_in_the_worktree_is_named_too(
        ws: Workspace, repo: Path, tmp_path: Path) -> None:
    """`git add` failed on it first: "git add failed: 'sub/' does not have a commit checked out", exit 2."""
    record = _finished_script_sandbox(ws, tmp_path, '- {write: a.txt, content: "agent\\n"}\n')
    nested = Path(record.worktree) / "sub"
    nested.mkdir()
    git(nested, "init", "-q")
    (nested / "w.txt").write_text("precious\n")
    with pytest.raises(review.RemoveRefused, match=r"holds a git repository of its own \(sub\)"):
        review.remove(ws, record.id)
    assert (nested / "w.txt").read_text() == "precious\n"


def test_a_sparse_file_past_the_largest_file_stays_unsaved_and_is_never_deleted(
        ws: Workspace, repo: Path, tmp_path: Path) -> None:
    """`truncate -s 3G` costs an agent nothing; saving it read 3 GB outside every limit (6 GB of memory
    against a 256 MiB limit). Past `limits.file_size` (100M by default) the rest is saved, the sandbox fails
    naming the file, and no removal deletes it with the worktree, not even with --force."""
    record = tasks.create_sandbox(ws, "make a fixture", "command", isolate=False, command=[
        "sh", "-c", "truncate -s 3G huge.bin && echo 'X = 1' > extra.py"])
    tasks.start(ws, record.id)
    done = ended(ws, record.id)
    worktree = Path(done.worktree)
    assert done.data["error"] == (f"the work it left uncommitted could not be saved to {done.branch}: 'huge.bin' "
                                  f"(3.0 GiB) is larger than limits.file_size allows (100.0 MiB); it stays in the "
                                  f"worktree {worktree}, unsaved")
    assert git(repo, "show", f"{done.branch}:extra.py") == "X = 1"
    assert "huge.bin" not in git(repo, "ls-tree", "--name-only", done.branch)
    # What was saved is reviewed, as any failed agent's work is; whoever decides reads why it failed.
    [escalation] = ws.store.list_escalations()
    assert done.status == AWAITING_REVIEW and "'huge.bin' (3.0 GiB)" in json.dumps(escalation.data)
    assert "(its agent failed (the work it left uncommitted could not be saved" in next_step(ws, done).waits_on
    for force in (False, True):
        with pytest.raises(review.RemoveRefused, match=r"holds what cannot be saved to loom/.*: 'huge.bin' \(3.0 GiB\)"
                                                       r".*move it out of the worktree .*; nothing was removed"):
            review.remove(ws, record.id, force=force)
    assert (worktree / "huge.bin").stat().st_size == 3 << 30
    (worktree / "huge.bin").unlink()  # moved out, as the refusal says: then it goes
    assert review.remove(ws, record.id) and not worktree.exists()


def test_a_file_git_cannot_convert_stays_unsaved_the_rest_is_saved_and_it_is_never_deleted(
        ws: Workspace, repo: Path) -> None:
    """A file the change's `.gitattributes` ask git to convert (`working-tree-encoding`) and that does not
    convert failed the whole save: none of the agent's work reached its branch. The rest is saved, the sandbox
    fails naming the file with git's reason, and no removal deletes it with the worktree."""
    record = tasks.create_sandbox(ws, "a script for windows", "command", isolate=False, command=[
        "sh", "-c", "echo '*.ps1 working-tree-encoding=UTF-16LE' > .gitattributes && "
                    r"printf '\377\376h\000i\000' > run.ps1 && echo 'X = 1' > extra.py"])
    tasks.start(ws, record.id)
    done = ended(ws, record.id)
    worktree = Path(done.worktree)
    assert done.data["error"] == (f"the work it left uncommitted could not be saved to {done.branch}: git cannot "
                                  "store 'run.ps1' (BOM is prohibited in 'run.ps1' if encoded as UTF-16LE) as the "
                                  f".gitattributes of the change ask; it stays in the worktree {worktree}, unsaved")
    assert git(repo, "show", f"{done.branch}:extra.py") == "X = 1"
    assert "run.ps1" not in git(repo, "ls-tree", "--name-only", done.branch)
    with pytest.raises(review.RemoveRefused, match=r"holds what cannot be saved to loom/.*: git cannot store "
                                                   r"'run.ps1' .*; nothing was removed"):
        review.remove(ws, record.id, force=True)
    assert (worktree / "run.ps1").read_bytes() == b"\xff\xfeh\x00i\x00"


def test_a_planted_git_repository_too_deep_to_remove_recursively_is_still_replaced_by_the_link(
        ws: Workspace, repo: Path, tmp_path: Path) -> None:
    """An agent put a repository of its own, with a `core.fsmonitor`, in place of the worktree's `.git`, and
    inside it a chain of 1,200 folders: removing it raised RecursionError out of the supervisor's end, before
    the link and the rest were put back or the work saved, and the fsmonitor ran as the person at their first
    `git status` there. The branch a person's own commit lands on (the admin dir's HEAD) is put back too."""
    marker = tmp_path / "planted-ran"
    record = tasks.create_sandbox(ws, "plant", "command", isolate=False, command=["sh", "-c", (
        "unset GIT_DIR GIT_INDEX_FILE GIT_WORK_TREE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES; "
        "admin=$(sed 's/^gitdir: //' .git) && echo 'ref: refs/heads/main' > \"$admin/HEAD\" && "
        f"rm .git && git init -q . && git config core.fsmonitor 'touch {marker}; false' && "
        "python3 -c \"import os; os.chdir('.git'); [(os.mkdir('d'), os.chdir('d')) for _ in range(1200)]\" && "
        "echo work > work.txt")])
    tasks.start(ws, record.id)
    done = ended(ws, record.id)
    worktree = Path(done.worktree)
    assert "error" not in done.data, done.data["error"]
    assert sorted(done.data["git_links_put_back"]) == [".git", "HEAD"]
    assert (worktree / ".git").is_file() and not [p for p in worktree.iterdir() if ".git.agent-" in p.name]
    subprocess.run(["git", "status", "--short"], cwd=worktree, capture_output=True, check=False)
    assert not marker.exists()
    assert git(worktree, "symbolic-ref", "HEAD") == f"refs/heads/{done.branch}"
    assert git(repo, "show", f"{done.branch}:work.txt") == "work"


def test_what_an_agent_leaves_in_its_worktree_s_admin_dir_for_a_person_s_git_is_cleared_at_its_end(
        ws: Workspace, repo: Path, tmp_path: Path) -> None:
    """Only the link files were put back: a planted `rebase-merge/` made a person's `git rebase --abort` in the
    worktree move main to the agent's commit (and `--continue` ran its `exec`), and a `logs/HEAD` linked to a
    file of the person's had their next checkout append to it (a hostile agent's findings)."""
    victim = tmp_path / "victim.cfg"
    victim.write_text("[user]\n\tname = kept\n")
    marker = tmp_path / "continued"
    record = tasks.create_sandbox(ws, "plant", "command", isolate=False, command=["sh", "-c", (
        "admin=$(sed 's/^gitdir: //' .git) && mkdir \"$admin/rebase-merge\" && "
        "echo refs/heads/main > \"$admin/rebase-merge/head-name\" && "
        f"echo 'exec touch {marker}' > \"$admin/rebase-merge/git-rebase-todo\" && "
        f"rm -f \"$admin/logs/HEAD\" && mkdir -p \"$admin/logs\" && ln -s {victim} \"$admin/logs/HEAD\" && "
        f"ln -sf {victim} \"$admin/COMMIT_EDITMSG\" && mkdir \"$admin/sub\" && rm -f \"$admin/ORIG_HEAD\" && mkfifo \"$admin/ORIG_HEAD\" && "
        "mkfifo \"$admin/loom-exclude.new\" && echo x > \"$admin/sharedindex.0123\" && mkdir -p \"$admin/info\" && "
        f"echo /d1/ > \"$admin/info/sparse-checkout\" && ln -f {victim} \"$admin/MERGE_RR\" && "
        "echo work > work.txt")])
    tasks.start(ws, record.id)
    done = ended(ws, record.id)
    assert "error" not in done.data, done.data["error"]
    admin = Path(done.data["git_dir"])
    # A FIFO (a person's `git commit` waited on it for good) or a second link to a file goes; what git leaves
    # there in ordinary use stays (a split index, a sparse checkout's patterns).
    assert sorted(done.data["git_links_put_back"]) == [
        "COMMIT_EDITMSG", "MERGE_RR", "ORIG_HEAD", "logs/HEAD", "loom-exclude.new", "rebase-merge", "sub"]
    assert (admin / "sharedindex.0123").is_file() and (admin / "info" / "sparse-checkout").read_text() == "/d1/\n"
    assert not [p for p in admin.iterdir() if p.name.startswith(".") or p.is_symlink()]
    worktree = Path(done.worktree)
    status = subprocess.run(["git", "status"], cwd=worktree, capture_output=True, text=True, check=False)
    assert "rebase" not in status.stdout, status.stdout
    git(worktree, "switch", "-q", "-c", "person-try")
    git(worktree, "commit", "-q", "--allow-empty", "-m", "a person's own")
    assert victim.read_text() == "[user]\n\tname = kept\n" and not marker.exists()
    assert git(repo, "show", f"{done.branch}:work.txt") == "work"


def test_rm_force_of_a_running_agent_that_writes_a_large_file_as_it_stops_keeps_it(
        ws: Workspace, repo: Path) -> None:
    """Checked before the stop: the agent, stopped by `rm --force`, wrote a file past `limits.file_size` on
    its way out; the save left it out, and the worktree went with it."""
    (repo / ".loom").mkdir(exist_ok=True)
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nlimits: {file_size: 1M}\n")
    record = running(ws, tasks.start(ws, tasks.create_sandbox(ws, "trap", "command", isolate=False, command=[
        "sh", "-c", 'echo work > w.txt; trap "head -c 2000000 /dev/zero > precious.bin; exit 0" TERM; '
                    "while :; do sleep 0.1; done"]).id).id)
    worktree = Path(record.worktree)
    wait_until(lambda: (worktree / "w.txt").is_file(), what="the agent at work")
    with pytest.raises(review.RemoveRefused, match=r"'precious.bin' \(1.9 MiB\) is larger than limits.file_size"):
        review.remove(ws, record.id, force=True)
    assert (worktree / "precious.bin").stat().st_size == 2000000
    assert git(repo, "show", f"{record.branch}:w.txt") == "work"


def test_an_isolated_agent_s_commit_of_a_file_past_the_limit_stays_out_and_fails_it(ws: Workspace, repo: Path) -> None:
    """An isolated agent commits into its own object store; bringing its commits in packed them whole in the
    supervisor's memory, a committed sparse 3 GB file included (its object cost the agent 3 MB). Commits
    carrying a file past `limits.file_size` stay out, once said and recorded; the rest of its work is saved and
    the sandbox fails naming the file."""
    (repo / ".loom").mkdir(exist_ok=True)
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nlimits: {file_size: 1M}\n")
    record = tasks.create_sandbox(ws, "a fixture", "command", isolate=True, command=[
        "sh", "-c", "head -c 2000000 /dev/urandom > big.bin && git add big.bin && git commit -qm big && "
                    "rm big.bin && echo 'X = 1' > extra.py"])
    tasks.start(ws, record.id)
    done = ended(ws, record.id)
    said = "its commits were not brought in: 'big.bin' (1.9 MiB) is larger than limits.file_size allows (1.0 MiB)"
    assert done.data["error"] == said
    assert git(repo, "show", f"{done.branch}:extra.py") == "X = 1"
    assert "big.bin" not in git(repo, "ls-tree", "-r", "--name-only", done.branch)
    assert [e.details["error"] for e in ws.audit.entries() if e.action == "sandbox.commits_too_large"] == [said]


def test_the_agent_s_commits_and_the_save_name_the_task_s_author(ws: Workspace, repo: Path) -> None:
    """With `$LOOM_USER` set, the review judged separation of duties against the task's author and a CI gate
    in a fresh clone against the head commit's (git's own user.email): an approval counted in one and
    not the other. Both commits name the task's author now."""
    ws.actor = "task-author@example.com"
    record = tasks.create_sandbox(ws, "two commits", "command", isolate=False, command=[
        "sh", "-c", "echo 1 > one.txt && git add one.txt && git commit -qm one && echo 2 > two.txt"])
    tasks.start(ws, record.id)
    done = ended(ws, record.id)
    assert done.data["saved_commit"]
    authors = git(repo, "log", "--format=%ae", f"{done.base_sha}..{done.branch}").split()
    assert authors == ["task-author@example.com"] * 2


def test_who_started_an_agent_is_recorded_beside_its_author(ws: Workspace, repo: Path) -> None:
    """Bob starting Alice's task was recorded as Alice starting it (the supervisor acts for the task's
    author): the audit log could not say who set an agent running."""
    ws.actor = "alice@example.com"
    record = tasks.create_sandbox(ws, "a note", "command", isolate=False, command=["true"])
    ws.actor = "bob@example.com"
    tasks.start(ws, record.id)
    ended(ws, record.id)
    [running] = [e for e in ws.audit.entries() if e.action == "sandbox.running" and e.subject == record.id]
    assert (running.actor, running.details["started_by"]) == ("alice@example.com", "bob@example.com")


def test_force_removing_a_running_agent_saves_its_work_and_no_review_starts_on_the_way(
        ws: Workspace, repo: Path, tmp_path: Path) -> None:
    """The agent's supervisor reviews an agent that ends; one stopped by `rm --force` must not be, or
    its gates run in a worktree being deleted and the sandbox is left in review with none."""
    script = write_script(tmp_path / "busy.yaml", """\
        - {write: a.txt, content: "committed\\n"}
        - {commit: "first part"}
        - {write: b.txt, content: "not yet committed\\n"}
        - {log: "still working", after: 60}
    """)
    record = running(ws, tasks.start(ws, tasks.create_sandbox(ws, "busy", "script", script=script).id).id)
    wait_until(lambda: (Path(record.worktree) / "b.txt").exists(), what="the uncommitted write")
    result = tasks.remove(ws, record.id, force=True)  # as `sandbox rm --force`: its commit's claim released too
    assert not result.branch_deleted  # saved on the branch, by its supervisor as the agent ended or by rm
    assert git(repo, "show", f"{record.branch}:b.txt") == "not yet committed"
    agent_ended(ws, record.id)  # the supervisor has done all it will
    assert sb.get_sandbox(ws, record.id).status == ARCHIVED
    assert "sandbox.gating" not in audit_actions(ws, record.id)


def test_rm_beside_a_supervisor_still_starting_waits_for_it_and_its_end_brings_no_worktree_back(
        ws: Workspace, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`plan run` then `sandbox rm --force` at once (CI, once): the supervisor, refused its start, put the
    worktree's git links back on its way out, after rm -rf: `<worktree>/.git` made again, the prune kept the
    worktree (`branch -D`: "checked out at"), and its leftovers' save committed every file's deletion."""
    from loomtui.execution import git_links

    record = tasks.create_sandbox(ws, "wait", "command", isolate=False, command=["true"])
    worktree = Path(record.worktree)
    links = git_links.kept(worktree, Path(record.data["git_dir"]))
    # The supervisor starting: a process of its own, alive a moment after the removal is marked.
    starting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    ws.store.update_sandbox(record.id, pid=starting.pid, pid_start=identity(starting.pid))
    try:
        result = tasks.remove(ws, record.id, force=True)
    finally:
        starting.wait()
    assert result.branch_deleted and not worktree.exists()
    # Its end after the removal puts nothing back: the worktree stays gone, and nothing is saved.
    assert git_links.put_back(links) == ([], [])
    assert not worktree.exists() and not (Path(record.data["git_dir"])).exists()

    # One that does not end within the wait: nothing removed, said.
    record = tasks.create_sandbox(ws, "wait", "command", isolate=False, command=["true"])
    stuck = subprocess.Popen(["sleep", "30"])
    ws.store.update_sandbox(record.id, pid=stuck.pid, pid_start=identity(stuck.pid))
    monkeypatch.setattr(review, "SUPERVISOR_SETTLE_S", 0.2)
    try:
        with pytest.raises(LoomError, match="its supervisor .* is still starting its agent; nothing was removed"):
            tasks.remove(ws, record.id, force=True)
    finally:
        stuck.kill()
        stuck.wait()
    kept = sb.get_sandbox(ws, record.id)
    assert Path(kept.worktree).is_dir() and not kept.data.get("removing")


def test_a_sandbox_under_review_is_not_removed_and_keeps_its_worktree(ws: Workspace, tmp_path: Path) -> None:
    record = _finished_script_sandbox(ws, tmp_path, '- {write: a.txt, content: "agent\\n"}\n- {commit: "a"}\n')
    set_status(ws, record.id, GATING)  # as while its gates run
    with pytest.raises(LoomError, match="is being reviewed .*nothing was removed") as raised:
        review.remove(ws, record.id, force=True)
    assert raised.value.exit_code == 1 and Path(record.worktree).is_dir()
    assert sb.get_sandbox(ws, record.id).status == GATING


def test_an_agent_started_while_rm_checked_is_not_deleted_under_it(
        ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """rm read a planned sandbox; its agent started before rm marked it: rm refuses, deleting nothing."""
    from loomtui.execution import lifecycle

    script = write_script(tmp_path / "idle.yaml", '- {log: "hello"}\n')
    record = tasks.create_sandbox(ws, "not yet", "script", script=script)
    started = lifecycle.mark_removing

    def start_first(workspace: Workspace, sandbox_id: str, removing: bool = True, *,
                    no_review_runs: bool = False) -> SandboxRecord:
        if removing:  # what a start in another process does between rm's read and its mark
            lifecycle.transition(workspace, sandbox_id, RUNNING, allowed_from=frozenset({PLANNED}))
        return started(workspace, sandbox_id, removing, no_review_runs=no_review_runs)

    monkeypatch.setattr(review, "mark_removing", start_first)
    with pytest.raises(review.RemoveRefused, match="is running; stop it first"):
        review.remove(ws, record.id)
    after = sb.get_sandbox(ws, record.id)
    assert Path(record.worktree).is_dir() and after.status == RUNNING
    assert not after.data.get(lifecycle.REMOVING_KEY)


def test_a_removal_that_fails_half_way_is_finished_by_the_next_without_committing_the_deletions(
        ws: Workspace, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = _finished_script_sandbox(ws, tmp_path, '- {write: a.txt, content: "agent\\n"}\n- {commit: "a"}\n')
    worktree = Path(record.worktree)
    (worktree / "left.txt").write_text("left by the agent\n")
    real = review.remove_tree

    def half(path: Path) -> None:
        (path / "a.txt").unlink()  # some files gone, then a failure
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(review, "remove_tree", half)
    with pytest.raises(LoomError, match="sandbox rm` again finishes"):
        review.remove(ws, record.id, force=True)
    saved = git(repo, "rev-parse", record.branch)
    assert git(repo, "show", f"{record.branch}:left.txt") == "left by the agent"
    assert next_step(ws, sb.get_sandbox(ws, record.id)).step == Step.DONE  # no review of a half-deleted tree
    monkeypatch.setattr(review, "remove_tree", real)
    result = review.remove(ws, record.id)  # no --force needed, nothing committed: the deletions are not work
    assert result.saved_commit is None and git(repo, "rev-parse", record.branch) == saved
    assert git(repo, "show", f"{record.branch}:a.txt") == "agent" and not worktree.exists()
    assert sb.get_sandbox(ws, record.id).status == ARCHIVED


def _approve(ws: Workspace, sandbox_id: str) -> None:
    set_status(ws, sandbox_id, APPROVED, reason="looks good")


def test_clean_merge_carries_trailers_and_updates_the_checked_out_target(
    ws: Workspace, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = _finished_script_sandbox(ws, tmp_path, """\
        - {write: feature.py, content: "def feature():\\n    return 42\\n"}
        - {commit: "Add feature"}
    """, task="add the feature")
    with pytest.raises(LoomError, match="is awaiting_review, not approved") as raised:
        review.merge(ws, record.id)
    assert raised.value.exit_code == 1
    _approve(ws, record.id)
    result = review.merge(ws, record.id)

    assert result.target == "main" and result.updated_worktree == str(repo)
    assert git(repo, "rev-parse", "main") == result.commit
    assert git(repo, "rev-list", "--parents", "-n", "1", "main").split()[1:] == [
        git(repo, "rev-parse", "HEAD~1"), git(repo, "rev-parse", record.branch)]
    trailers = git(repo, "log", "-1", "--format=%(trailers:only,unfold)", "main").splitlines()
    assert trailers[:3] == [f"Loom-Sandbox: {record.id}", "Loom-Runtime: script",
                            "Assisted-by: loomtui script agent (via loomtui)"]
    # The audit head at merge time (see tests/test_audit_anchors.py): a real entry of this log.
    assert len(trailers) == 4 and trailers[3].startswith("Loom-Audit: ")
    seq, anchored = trailers[3].split()[1:3]
    assert any(e.seq == int(seq) and e.hash == anchored for e in ws.audit.entries())
    assert (repo / "feature.py").read_text().endswith("return 42\n")
    assert git(repo, "status", "--porcelain") == ""
    assert sb.get_sandbox(ws, record.id).status == MERGED
    # What was merged stays readable: main holds it now, so it is measured from main as it was.
    (repo / "later.py").write_text("LATER = 1\n")
    git(repo, "add", "later.py")
    git(repo, "commit", "-q", "-m", "later work on main")
    merged = review.diff(ws, record.id)
    assert [(f.path, f.added, f.deleted) for f in merged.files] == [("feature.py", 2, 0)]
    assert "return 42" in merged.patch and "LATER" not in merged.patch
    # `branch -D` reads every worktree: run while another sandbox's was half added, it failed ("failed to read
    # .git/worktrees/<id>/commondir: Success"). Under the lock every `worktree add` holds.
    from loomtui import repo as repo_paths
    from loomtui.gitcmd import Git

    deleting_unlocked: list[tuple[str, ...]] = []
    git_out = Git.out

    def watched(self: Git, *args: str, **kwargs: object) -> str:
        if args[:1] == ("branch",) and not repo_paths._WORKTREES_THREAD_LOCK._is_owned():  # type: ignore[attr-defined]
            deleting_unlocked.append(args)
        return git_out(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Git, "out", watched)
    assert review.remove(ws, record.id).branch_deleted  # merged: its commits are safe in main
    assert deleting_unlocked == []
    assert not Path(record.worktree).parent.exists()  # the repository's folder of worktrees, empty: gone too
    monkeypatch.undo()
    assert [f.path for f in review.diff(ws, record.id).files] == ["feature.py"]  # from the merge commit


def test_conflicting_merge_is_reported_and_changes_nothing(ws: Workspace, repo: Path, tmp_path: Path) -> None:
    record = _finished_script_sandbox(ws, tmp_path, """\
        - {write: README.md, content: "# the agent's title\\n"}
        - {commit: "Retitle"}
    """)
    (repo / "README.md").write_text("# a human's title\n")
    git(repo, "commit", "-qam", "Human retitle")
    (repo / "wip.txt").write_text("uncommitted work in the main tree\n")
    before = {"main": git(repo, "rev-parse", "main"), "branch": git(repo, "rev-parse", record.branch),
              "status": git(repo, "status", "--porcelain"), "readme": (repo / "README.md").read_text(),
              "worktree": (Path(record.worktree) / "README.md").read_text()}
    _approve(ws, record.id)
    with pytest.raises(review.MergeConflict, match=r"would conflict in README\.md; nothing was changed") as raised:
        review.merge(ws, record.id)
    assert raised.value.exit_code == 1 and raised.value.paths == ["README.md"]
    after = {"main": git(repo, "rev-parse", "main"), "branch": git(repo, "rev-parse", record.branch),
             "status": git(repo, "status", "--porcelain"), "readme": (repo / "README.md").read_text(),
             "worktree": (Path(record.worktree) / "README.md").read_text()}
    assert after == before
    assert sb.get_sandbox(ws, record.id).status == APPROVED
    assert audit_actions(ws, record.id)[-1] == "sandbox.merge_conflict"


# -- recovery: survive the launcher, find orphans, notice deleted worktrees ------------------------


def test_a_supervisor_whose_launcher_is_gone_before_it_answers_runs_its_agent_all_the_same(
        ws: Workspace, repo: Path, bin_dir: Path) -> None:
    """Ctrl-C in `sandbox new` at the wrong moment: the launcher no longer reads the supervisor's "ready"."""
    stand_in(bin_dir, "quick", 'print("done", flush=True)\n')
    write_config(repo, 'quick:\n  argv: ["quick"]\n')
    record = tasks.create_sandbox(ws, "an interrupted start", "quick")
    paths = sb.sandbox_paths(ws.paths, record.id)
    paths.dir.mkdir(parents=True, exist_ok=True)
    with open(paths.supervisor_log, "ab") as diagnostics:
        supervisor = subprocess.Popen([sys.executable, "-m", "loomtui.workflow.supervise", str(repo), record.id],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=diagnostics,
                                      cwd=paths.dir, start_new_session=True)
    assert supervisor.stdout is not None
    supervisor.stdout.close()  # its answer will meet a broken pipe
    supervisor.wait()
    wait_until(lambda: sb.get_sandbox(ws, record.id).status != "planned", what="the agent to start")
    done = ended(ws, record.id)
    assert done.status in EXITED_OK and sb.read_log_tail(ws, record.id) == ["done"]
    assert "BrokenPipeError" not in paths.supervisor_log.read_text()


def test_supervisor_outlives_its_launcher_killed_with_sigkill(ws: Workspace, repo: Path, bin_dir: Path) -> None:
    stand_in(bin_dir, "waiter", """\
        print("waiting", flush=True)
        while not os.path.exists("release.flag"):  # in its worktree: the one place both sides see
            time.sleep(0.05)
        print("released", flush=True)
    """)
    write_config(repo, 'waiter:\n  argv: ["waiter"]\n')
    # The launcher plays the TUI: it starts a sandbox, then is killed with -9.
    launcher = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import sys, time
        from loomtui.workspace import open_workspace
        from loomtui.workflow import tasks
        ws = open_workspace({str(repo)!r})
        record = tasks.start(ws, tasks.create_sandbox(ws, "wait for the flag", "waiter").id)
        print(record.id, flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    assert launcher.stdout is not None
    sandbox_id = launcher.stdout.readline().strip()
    running(ws, sandbox_id)
    launcher.kill()
    launcher.wait()

    report = recovery.reconcile(ws)
    assert report.alive == [sandbox_id] and report.orphaned == []
    (Path(sb.get_sandbox(ws, sandbox_id).worktree) / "release.flag").touch()  # only after the launcher died
    done = ended(ws, sandbox_id)
    assert done.status in EXITED_OK and sb.read_log_tail(ws, sandbox_id) == ["waiting", "released"]


def test_of_starts_at_once_one_supervisor_runs_the_sandbox_and_the_others_say_so(
        ws: Workspace, repo: Path, bin_dir: Path) -> None:
    """Four `sandbox start` at once each started a supervisor; each recorded its pid over the last and
    bound the broker's socket over the last one's, and all four said "started"."""
    from concurrent.futures import ThreadPoolExecutor

    stand_in(bin_dir, "sleeper", "print('up', flush=True)\ntime.sleep(600)\n")
    write_config(repo, 'sleeper:\n  argv: ["sleeper"]\n')
    record = tasks.create_sandbox(ws, "sleep", "sleeper")

    def start() -> str:
        try:
            sb.start(ws, record.id)
            return "started"
        except LoomError as exc:
            assert exc.exit_code == 1, exc
            return str(exc)

    with ThreadPoolExecutor(4) as pool:
        said = list(pool.map(lambda _n: start(), range(4)))
    assert said.count("started") == 1, said
    assert all("already" in line for line in said if line != "started"), said
    winner = running(ws, record.id)
    assert is_alive(winner.pid, winner.pid_start)  # the store names the supervisor that runs it
    assert group_exists(winner.data["agent_pid"])
    agent_control.stop(ws, record.id, grace=2)


def test_reconcile_marks_a_sandbox_whose_supervisor_was_killed(ws: Workspace, repo: Path, bin_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # It also points the branch a person's own commit there lands on elsewhere (its admin dir's HEAD).
    stand_in(bin_dir, "sleeper", "admin = open('.git').read().split('gitdir: ')[1].strip()\n"
                                 "open(admin + '/HEAD', 'w').write('ref: refs/heads/main\\n')\n"
                                 "open('left.txt', 'w').write('work in progress\\n')\n"
                                 "print('up', flush=True)\ntime.sleep(600)\n")
    write_config(repo, 'sleeper:\n  argv: ["sleeper"]\n')
    record = running(ws, tasks.start(ws, tasks.create_sandbox(ws, "sleep", "sleeper").id).id)
    left = Path(record.worktree) / "left.txt"
    wait_until(lambda: left.is_file() and left.read_text() == "work in progress\n", what="the agent's uncommitted work")
    os.kill(record.pid, signal.SIGKILL)  # the supervisor dies; its agent dies with it
    wait_until(lambda: not group_exists(record.data["agent_pid"]), what="the agent to die with its supervisor")

    # Another machine sharing the store cannot judge this host's processes: it leaves them be.
    here = os.environ.get("LOOMTUI_HOST")
    monkeypatch.setenv("LOOMTUI_HOST", "another-machine")
    elsewhere = recovery.reconcile(ws)
    assert elsewhere.elsewhere == [record.id] and elsewhere.orphaned == []
    assert sb.get_sandbox(ws, record.id).status == RUNNING
    if here is None:
        monkeypatch.delenv("LOOMTUI_HOST")
    else:
        monkeypatch.setenv("LOOMTUI_HOST", here)
    assert record.host == current_host()

    report = recovery.reconcile(ws)
    assert report.orphaned == [record.id]
    marked = sb.get_sandbox(ws, record.id)
    assert marked.status == FAILED and "ended without recording an exit" in marked.data["orphan"]
    # What it left uncommitted is on its branch, as its supervisor would have put it: a review sees it.
    assert marked.data["saved_commit"] and git(repo, "show", f"{record.branch}:left.txt") == "work in progress"
    # And what it changed of the worktree's git links is put back, as its supervisor keeps them (it was not).
    assert marked.data["git_links_put_back"] == ["HEAD"]
    assert git(Path(record.worktree), "symbolic-ref", "HEAD") == f"refs/heads/{record.branch}"
    assert recovery.reconcile(ws).orphaned == []  # marked once, not again
    assert audit_actions(ws, record.id)[-1] == "sandbox.failed"


def test_reconcile_is_not_fooled_by_a_reused_pid_and_stop_ends_a_surviving_agent(ws: Workspace) -> None:
    def fake_running(pid: int, pid_start: str | None, agent: int, agent_start: str | None) -> str:
        record = tasks.create_sandbox(ws, "recorded long ago", "script", script=_tiny_script(ws))
        ws.store.update_sandbox(record.id, status=RUNNING, pid=pid, pid_start=pid_start,
                                data={"agent_pid": agent, "agent_pid_start": agent_start})
        return record.id

    # A live pid (this very test process) recorded with another start time is not the supervisor.
    me = os.getpid()
    reused = fake_running(me, f"{me}:other-boot:1", me, f"{me}:other-boot:1")
    # A dead supervisor whose agent survived in its own process group.
    gone = subprocess.Popen(["true"])
    gone.wait()
    agent = subprocess.Popen(["sleep", "600"], process_group=0)
    survivor = fake_running(gone.pid, f"{gone.pid}:x:1", agent.pid, identity(agent.pid))

    report = recovery.reconcile(ws)
    assert sorted(report.orphaned) == sorted([reused, survivor])
    assert sb.get_sandbox(ws, reused).status == FAILED
    left = sb.get_sandbox(ws, survivor)
    assert left.status == RUNNING and "still runs" in left.data["orphan"]
    assert audit_actions(ws, survivor)[-1] == "sandbox.orphaned"

    done = agent_control.stop(ws, survivor, grace=5)
    agent.wait(timeout=10)
    assert done.status in EXITED_OK and "no supervisor recorded the exit" in done.data["reason"]

    # An orphaned agent that ends by itself is noticed by the next reconcile.
    agent = subprocess.Popen(["sleep", "600"], process_group=0)
    lone = fake_running(gone.pid, f"{gone.pid}:x:1", agent.pid, identity(agent.pid))
    assert recovery.reconcile(ws).orphaned == [lone]
    assert recovery.reconcile(ws).orphaned == []  # still running: nothing new
    agent.kill()
    agent.wait()
    assert recovery.reconcile(ws).orphaned == [lone]
    assert "the agent has ended since" in sb.get_sandbox(ws, lone).data["error"]
    assert sb.get_sandbox(ws, lone).status == FAILED


def test_a_stop_after_the_supervisor_died_saves_the_work_and_what_the_agent_waited_on_is_withdrawn(
        ws: Workspace) -> None:
    """An agent that outlived its supervisor (an interactive one runs in tmux): `stop` recorded it as ended
    "without a change", its work left in the worktree (or the branch as it stood at the supervisor's death
    under review); its open permission request stayed open for good, its provisional claim held, and a
    lead's approval was refused (the sandbox had moved on)."""
    from loomtui.governance.hooks import HookGate
    from loomtui.workflow.engine import advance

    record = tasks.create_sandbox(ws, "outlives its supervisor", "script", script=_tiny_script(ws), isolate=False)
    gone = subprocess.Popen(["true"])
    gone.wait()
    agent = subprocess.Popen(["sleep", "600"], process_group=0)
    ws.store.update_sandbox(record.id, status=RUNNING, pid=gone.pid, pid_start=f"{gone.pid}:x:1",
                            data={"agent_pid": agent.pid, "agent_pid_start": identity(agent.pid),
                                  "started_at": time.time() - 1})
    tree = Path(record.worktree)
    (tree / "left.txt").write_text("work in progress\n")
    gate = HookGate(ws, record.id, tree)
    assert gate.check_tool("Write", [{"path": "asked.txt"}], tool_use_id="toolu_9").decision == "allow"
    asked = gate.open_permission_request("Bash", {"command": "echo x > asked.txt"}, extra={"tool_use_id": "toolu_9"})
    assert ws.store.get_escalation(asked["id"]).status == "open"  # type: ignore[union-attr]

    done = agent_control.stop(ws, record.id, grace=5)
    agent.wait(timeout=10)
    assert done.status == EXITED and done.data["saved_commit"], done.data
    assert git(ws.root, "show", f"{record.branch}:left.txt") == "work in progress"
    assert any(e.action == "sandbox.exited" and e.details.get("saved_commit") == done.data["saved_commit"]
               for e in ws.audit.entries() if e.subject == record.id)

    moved = advance(ws, record.id)
    assert f"escalation #{asked['id']} withdrawn" in moved.done[0], moved.done
    assert ws.store.get_escalation(asked["id"]).status == "withdrawn"  # type: ignore[union-attr]
    assert not [c for c in ws.store.live_claims(record.id) if "asked.txt" in c.region_ids]
    assert moved.status != EXITED  # reviewed: its change is there to judge
    assert advance(ws, record.id).done == ()  # withdrawn once


@needs_bwrap
def test_an_agent_of_your_own_in_the_repository_runs_isolated_as_committed(ws: Workspace, repo: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's `-- ./my-agent.sh`: it was looked for in the person's checkout, an empty folder inside
    bubblewrap, and failed with exit 127 ("No such file or directory")."""
    agent = repo / "my-agent.sh"
    agent.write_text("#!/bin/sh\necho '# edited' >> notes.txt\n")
    agent.chmod(0o755)
    git(repo, "add", "my-agent.sh")
    git(repo, "commit", "-qm", "An agent of our own")
    monkeypatch.chdir(repo)
    record = tasks.create_sandbox(ws, "edit", "command", command=["./my-agent.sh"], isolate=True)
    assert record.data["launch"]["argv"][0] == str(Path(record.worktree) / "my-agent.sh")
    done = ended(ws, tasks.start(ws, record.id).id)
    assert done.exit_code == 0 and git(repo, "show", f"{record.branch}:notes.txt") == "# edited", done.data
    (repo / "later.sh").write_text("#!/bin/sh\ntrue\n")
    (repo / "later.sh").chmod(0o755)
    with pytest.raises(LoomError, match=r"^later\.sh is not committed at HEAD: the agent runs in its own worktree"):
        tasks.create_sandbox(ws, "edit", "command", command=["./later.sh"], isolate=True)


def _tiny_script(ws: Workspace) -> Path:
    path = ws.paths.state_dir / "tiny.yaml"
    path.write_text("- {log: hi}\n")
    return path


def test_a_removal_cut_short_is_said_so_not_a_worktree_deleted_by_hand(ws: Workspace, tmp_path: Path) -> None:
    """`sandbox rm` killed while it deleted the worktree: the list said "worktree deleted by hand" of loomtui's own
    removal, and not that `sandbox rm` again finishes it."""
    from loomtui.execution.lifecycle import DELETING, REMOVING_KEY

    record = _finished_script_sandbox(ws, tmp_path, '- {write: kept.txt, content: "work\n"}\n')
    ws.store.update_sandbox(record.id, data={REMOVING_KEY: DELETING})  # as rm does before it deletes
    shutil.rmtree(record.worktree)
    report = recovery.reconcile(ws)
    assert report.missing_worktrees == [] and report.removals_cut_short == [record.id]
    assert report.lines() == [f"the removal of {record.id} was cut short: `loomtui sandbox rm {record.id}` finishes it"]
    tasks.remove(ws, record.id)
    assert sb.get_sandbox(ws, record.id).status == "archived"


def test_worktree_deleted_by_hand_is_marked_and_its_branch_kept(ws: Workspace, repo: Path, tmp_path: Path) -> None:
    unstarted = tasks.create_sandbox(ws, "never started", "script", script=_tiny_script(ws))
    finished = _finished_script_sandbox(ws, tmp_path, '- {write: kept.txt, content: "work\\n"}\n')
    for record in (unstarted, finished):
        shutil.rmtree(record.worktree)

    report = recovery.reconcile(ws)
    assert sorted(report.missing_worktrees) == sorted([unstarted.id, finished.id])
    assert sb.get_sandbox(ws, unstarted.id).status == FAILED
    marked = sb.get_sandbox(ws, finished.id)
    assert marked.status in EXITED_OK and marked.data["worktree_missing"] is True
    assert git(repo, "show", f"{finished.branch}:kept.txt") == "work"
    assert audit_actions(ws, finished.id)[-1] == "sandbox.worktree_missing"
    # Removal still works, and keeps the unmerged branch unless told (with --force) to delete it.
    with pytest.raises(LoomError, match="is not merged; nothing was removed"):
        review.remove(ws, finished.id, delete_branch=True)
    assert not review.remove(ws, finished.id).branch_deleted
    assert git(repo, "branch", "--list", finished.branch).strip() == finished.branch
    # A worktree directory no sandbox owns is reported, never deleted.
    stray = sb.configured_worktrees_root(ws) / "stray"
    stray.mkdir(parents=True)  # its folder went with the last sandbox in it
    assert recovery.reconcile(ws).unknown_worktrees == [str(stray)] and stray.is_dir()


def test_a_sandbox_whose_worktree_is_gone_gives_back_its_claims_and_offers_removal_not_a_run(
        ws: Workspace, repo: Path) -> None:
    """Its next step said `sandbox start ID` runs it again (refused: the worktree is gone), it held its
    claims for the lease, and `context drift` listed it as a live sandbox."""
    from loomtui.knowledge.engine import drift_report
    from loomtui.workflow.steps import PersonAction

    record = tasks.create_sandbox(ws, "never started", "script", script=_tiny_script(ws), claims=["README.md"])
    assert ws.store.live_claims(record.id)
    shutil.rmtree(record.worktree)
    recovery.reconcile(ws)
    assert next_step(ws, sb.get_sandbox(ws, record.id)).step == Step.RELEASE  # the app's advancing does it
    listed = run_cli(repo, "sandbox", "list")  # and so does the listing's reconcile, with no app open
    assert not ws.store.live_claims(record.id)
    assert f"`loomtui sandbox rm {record.id}` archives it" in listed.stdout
    view = next_step(ws, sb.get_sandbox(ws, record.id))
    assert view.action == PersonAction.REMOVE and "its worktree is gone" in view.line()
    with pytest.raises(LoomError, match="only a planned sandbox"):
        tasks.start(ws, record.id)
    assert record.id not in [s.sandbox_id for s in drift_report(ws).sandboxes]


def test_an_agents_log_keeps_its_newest_output_on_a_bounded_disk(tmp_path: Path) -> None:
    """A hostile agent wrote 3 GB of output in 15 s onto the disk the store and the audit log live on; and
    where the first 256 MiB were kept, an agent's last line (why it failed) was lost, and a run after a full
    one kept nothing."""
    from loomtui.execution.agent_log import LogWriter
    from loomtui.execution.log_lines import earlier_log, log_tail

    path = tmp_path / "agent.log"
    log = LogWriter(path, limit=1000)
    for n in range(50):
        log.write(f"line {n:02} ".encode() + b"a" * 20 + b"\n" + b"b" * 15)
    log.write(b"\nthe last line: why it failed\n")
    log.close()
    kept, aside = path.read_bytes(), earlier_log(path).read_bytes()
    assert len(kept) <= 1000 and len(aside) <= 1000  # bounded on disk: two files at most
    assert kept.endswith(b"the last line: why it failed\n")  # the newest output kept
    assert kept.startswith("── loomtui: the agent's output before this is in agent.log.1; older output is not "
                           "kept ──\n".encode())
    assert log.full and log.dropped > 0
    shown = (aside + kept).decode()
    numbers = [int(n) for n in re.findall(r"line (\d\d)", shown)]
    assert numbers == list(range(numbers[0], 50)) and numbers[0] > 0  # the newest, in order, none lost between
    assert aside.endswith(b"\n")  # the line cut by the move ends whole; it goes on in the new log
    # Moved aside again, a log no longer says the output before it is in the earlier log: itself, by then.
    assert aside.startswith("── loomtui: the agent's output before this is not kept ──".encode()), aside[:80]
    # A tail just after a move reads on into the moved log (it was the one line saying where the rest was).
    assert len(log_tail(path, 20)) == 20 and log_tail(path, 20)[-1] == "the last line: why it failed"
    # A second run, appending to the full log of the first: its output is kept (it kept none of it).
    again = LogWriter(path, limit=1000)
    again.write(b"second run: hello\n" * 60)
    again.close()
    assert path.read_bytes().endswith(b"second run: hello\n")


@pytest.mark.parametrize("full_disk", ["tmpfs", "dev-full"])
def test_disk_full_while_logging_fails_the_sandbox_and_keeps_whole_lines(
    ws: Workspace, repo: Path, bin_dir: Path, full_disk: str,
) -> None:
    stand_in(bin_dir, "chatty", """\
        n = 0
        while True:
            n += 1
            print(f"line {n} " + "x" * 90, flush=True)
    """)
    write_config(repo, 'chatty:\n  argv: ["chatty"]\n')
    record = tasks.create_sandbox(ws, "talk a lot", "chatty")
    folder = sb.sandbox_paths(ws.paths, record.id).dir
    mounted = False
    if full_disk == "tmpfs":
        # A real full filesystem: a 64 KiB tmpfs over the sandbox's log directory.
        kept = {p.name: p.read_bytes() for p in folder.iterdir()}
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                          capture_output=True, check=False).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted = True
        for name, data in kept.items():
            (folder / name).write_bytes(data)
    else:
        # Everywhere: the log is /dev/full, where every write fails with ENOSPC.
        (folder / "agent.log").symlink_to("/dev/full")
    try:
        tasks.start(ws, record.id)
        done = ended(ws, record.id)
        assert done.status == FAILED, {k: v for k, v in done.data.items() if "save" in k or "error" in k}
        assert "log write failed: No space left on device" in done.data["error"]
        assert "sandbox.log_failed" in audit_actions(ws, record.id)
        if mounted:
            log = (folder / "agent.log").read_bytes()
            assert log and log.endswith(b"\n")
            assert all(re.fullmatch(rb"line \d+ x{90}", line) for line in log.splitlines())
            assert done.data["log_lines"] == len(log.splitlines())
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


# -- isolation ------------------------------------------------------------------------------


@needs_bwrap
def test_isolated_agent_cannot_write_outside_its_worktree(ws: Workspace, repo: Path, bin_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          request: pytest.FixtureRequest) -> None:
    stand_in(bin_dir, "prober", """\
        repo = os.environ["LOOM_REPO"]
        state = os.path.join(repo, ".git", "loom")
        results = {}
        def attempt(name, path, mode="a"):
            try:
                with open(path, mode) as handle:
                    handle.write("x")
                results[name] = "written"
            except OSError as exc:
                results[name] = exc.strerror
        attempt("main_tree", os.path.join(repo, "ESCAPE.txt"))
        attempt("store", os.path.join(state, "state.db"))
        attempt("audit", os.path.join(state, "audit.jsonl"))
        attempt("git_config", os.path.join(repo, ".git", "config"))
        attempt("home", os.path.expanduser("~/loomtui-escape.txt"))
        attempt("private_tmp", "/tmp/scratch.txt")
        attempt("worktree", "inside.txt", "w")
        def read(name, path):
            try:
                with open(os.path.expanduser(path), errors="replace") as handle:
                    results[name] = handle.read()
            except OSError as exc:
                results[name] = exc.strerror
        read("ssh_key", "~/.ssh/id_ed25519")
        read("pgpass", "~/.pgpass")
        read("history", "~/.bash_history")
        read("claude_login", "~/.claude/.credentials.json")
        read("user_git_config", "~/.gitconfig")
        read("dotenv", os.path.join(repo, ".env"))
        read("ignored_note", os.path.join(repo, "notes.local"))
        read("uncommitted", os.path.join(repo, "draft.txt"))
        read("linked_worktree", os.path.join(os.path.dirname(repo), "mine-too", "wip.txt"))
        read("stored_credentials", "~/.my-git-creds")
        read("codex_login", "~/.codex/auth.json")
        read("aider_keys", "~/.env")
        read("repo_config", os.path.join(repo, ".git", "config"))
        read("store_read", os.path.join(state, "state.db"))
        read("audit_read", os.path.join(state, "audit.jsonl"))
        for name in ("COMMIT_EDITMSG", "rr-cache/0123/preimage", "rebase-apply/0001", "lfs/objects/aa/bb/aabbcc",
                     "index", "logs/HEAD", "modules/sub/config", "hooks/pre-push"):
            read("git_dir:" + name, os.path.join(repo, ".git", name))
        key = subprocess.run(["git", "config", "loom.signingkey"], capture_output=True, text=True).stdout.strip()
        read("signing_key", key.removesuffix(".pub"))  # the private half beside the public key named
        results["run"] = sorted(os.listdir("/run"))
        import socket
        try:
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(os.environ["PROBER_SOCKET"])
            results["machine_socket"] = "connected"
        except OSError as exc:
            results["machine_socket"] = exc.strerror
        for name in ("PROBER_TMUX", "PROBER_OWN_TMUX"):
            try:
                sock = socket.socket(socket.AF_UNIX)
                sock.connect(os.environ[name])
                results[name] = "connected"
            except OSError as exc:
                results[name] = exc.strerror
        main_ref = subprocess.run(["git", "update-ref", "refs/heads/main", "HEAD"], capture_output=True, check=False)
        results["move_main_branch"] = main_ref.returncode
        subprocess.run(["git", "add", "inside.txt"], check=True)
        results["own_commit"] = subprocess.run(["git", "commit", "-qm", "inside"], check=False).returncode
        git_says = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, check=False)  # noqa: E731
        results["log_all"] = git_says("log", "--all", "--oneline").returncode  # the person's stash: not there
        results["included_alias"] = git_says("included-alias").stdout.strip()  # .git/extra.cfg, included
        with open("/proc/net/dev") as dev:
            results["interfaces"] = sorted(line.split(":")[0].strip() for line in dev.readlines()[2:])
        results["env"] = sorted(os.environ)
        print(json.dumps(results), flush=True)
    """)
    write_config(repo, 'prober:\n  argv: ["prober"]\n  env: [PROBER_TOKEN, PROBER_SOCKET, PROBER_TMUX, PROBER_OWN_TMUX]\n')
    home = repo.parent / "home"  # the user's credentials, which an agent could send away with the network
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("SECRET ssh key")
    (home / ".pgpass").write_text("SECRET db password")
    (home / ".bash_history").write_text("curl -H 'Authorization: SECRET token' ...\n")
    # The user's own git config: a token in a `url` section, a password store of its own naming.
    (home / ".gitconfig").write_text('[user]\n\tname = Bob\n[url "https://x-access-token:SECRET-gh@github.com/"]\n'
                                     '\tinsteadOf = https://github.com/\n[credential]\n'
                                     '\thelper = store --file ~/.my-git-creds\n')
    (home / ".my-git-creds").write_text("https://bob:SECRET-pw@example.com\n")
    (home / ".env").write_text("OPENAI_API_KEY=SECRET-aider\n")  # Aider's keys: not another runtime's to read
    # The person's checkout: a git-ignored .env beside their own ignored notes.
    (repo / ".gitignore").write_text(".env\nnotes.local\n")
    (repo / ".env").write_text("PROD_DB_PASSWORD=SECRET\n")
    (repo / "notes.local").write_text("mine\n")
    (repo / "draft.txt").write_text("not committed yet\n")
    git(repo, "worktree", "add", "-q", str(repo.parent / "mine-too"))  # a linked worktree of the person's own
    (repo.parent / "mine-too" / "wip.txt").write_text("SECRET work in progress\n")
    for login in (".claude/.credentials.json", ".codex/auth.json"):  # another runtime's: never this agent's
        (home / login).parent.mkdir()
        (home / login).write_text('{"token": "SECRET login"}')
    (repo.parent / "lead.key").write_text("SECRET signing key")
    # The person's git set up as many have it: rerere on, a config file included from the git dir, a stash.
    git(repo, "config", "rerere.enabled", "true")
    (repo / ".git" / "extra.cfg").write_text("[alias]\n\tincluded-alias = !echo from-the-include\n")
    git(repo, "config", "include.path", "extra.cfg")
    (repo / "README.md").write_text("work in progress\n")
    git(repo, "stash", "-q")
    git(repo, "notes", "--ref", "loom", "add", "-m", "a decision", "HEAD")  # loomtui's own notes: not public
    # What the person's git keeps beside the objects: a message being written, a conflict's preimage, a patch
    # being applied, a large file's content, a submodule's repository, a hook.
    for name in ("COMMIT_EDITMSG", "rr-cache/0123/preimage", "rebase-apply/0001", "lfs/objects/aa/bb/aabbcc",
                 "modules/sub/config", "hooks/pre-push"):
        (repo / ".git" / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / ".git" / name).write_text("SECRET unpublished\n")
    (repo.parent / "lead.key.pub").write_text("ssh-ed25519 AAAA lead")
    git(repo, "config", "loom.signingkey", str(repo.parent / "lead.key.pub"))  # git's usual: the public half
    # Credentials in the repository's own config: a token in a remote's URL, a CI checkout's header.
    git(repo, "config", "remote.origin.url", "https://bob:SECRET-token@example.com/billing.git")
    git(repo, "config", "http.https://example.com/.extraheader", "AUTHORIZATION: basic SECRET-header")
    monkeypatch.setenv("HOME", str(home))
    # A machine's socket (docker's, PostgreSQL's, an ssh-agent's): one of our own, where those live.
    run = Path("/run") if os.access("/run", os.W_OK) else None
    listener = socket.socket(socket.AF_UNIX)
    socket_path = (run or tmp_path) / f"loomtui-test-{os.getpid()}-{id(listener)}.sock"
    listener.bind(str(socket_path))
    listener.listen(1)
    request.addfinalizer(lambda: (listener.close(), socket_path.unlink(missing_ok=True)))
    monkeypatch.setenv("PROBER_SOCKET", str(socket_path))
    # loomtui's own tmux server (`tmux -L loomtui`) where `TMUX_TMPDIR` puts it, outside /tmp: its `new-window`
    # ran an agent's command as the person, outside the sandbox.
    tmux_tmpdir = Path(tempfile.mkdtemp(prefix="loomtui-test-tmux-", dir="/var/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(tmux_tmpdir, ignore_errors=True))
    (tmux_tmpdir / f"tmux-{os.getuid()}").mkdir(mode=0o700)
    tmux_server = socket.socket(socket.AF_UNIX)
    tmux_server.bind(str(tmux_tmpdir / f"tmux-{os.getuid()}" / "loomtui"))
    tmux_server.listen(1)
    request.addfinalizer(tmux_server.close)
    monkeypatch.setenv("TMUX_TMPDIR", str(tmux_tmpdir))
    monkeypatch.setenv("PROBER_TMUX", str(tmux_tmpdir / f"tmux-{os.getuid()}" / "loomtui"))
    # And the person's own, started with `tmux -S` in a folder of theirs: the socket alone is hidden.
    own_server = socket.socket(socket.AF_UNIX)
    own_server.bind(str(tmux_tmpdir / "work.sock"))
    own_server.listen(1)
    request.addfinalizer(own_server.close)
    monkeypatch.setenv("TMUX", f"{tmux_tmpdir / 'work.sock'},4242,0")
    monkeypatch.setenv("PROBER_OWN_TMUX", str(tmux_tmpdir / "work.sock"))
    monkeypatch.setenv("PROBER_TOKEN", "allowed")
    monkeypatch.setenv("LOOM_TEST_SECRET", "not allowed")
    main_before = git(repo, "rev-parse", "main")
    record = tasks.create_sandbox(ws, "probe the walls", "prober")
    audit_before = ws.paths.audit_path.read_bytes()
    assert record.isolation == "bwrap" and sb.isolation_label(record) == "isolated (bwrap)"
    tasks.start(ws, record.id)
    done = ended(ws, record.id)
    assert done.status in EXITED_OK, sb.read_log_tail(ws, record.id)
    results = json.loads(sb.read_log_tail(ws, record.id, 1)[0])

    for outside in ("main_tree", "store", "audit", "git_config", "home"):
        assert results[outside] == "Read-only file system", (outside, results[outside])
    assert results["private_tmp"] == "written" and results["worktree"] == "written"
    for secret in ("ssh_key", "pgpass", "signing_key", "history", "repo_config", "claude_login", "codex_login",
                   "user_git_config", "stored_credentials", "dotenv", "aider_keys"):
        assert "SECRET" not in results[secret], (secret, results[secret])
    assert results["ssh_key"] == "No such file or directory"  # the folder is there, empty
    # Nor are the store and the audit log: every sandbox's escalations, evidence and deciders.
    assert results["store_read"] == results["audit_read"] == "No such file or directory"
    # Of the repository's git dir, only what git needs to work in a worktree (its index, reflogs, ... are not).
    git_dir = {name: said for name, said in results.items() if name.startswith("git_dir:")}
    assert set(git_dir.values()) == {"No such file or directory"}, git_dir
    # A file is /dev/null there: empty, or refused where the mount holds no devices.
    assert results["pgpass"] in ("", "Permission denied") and results["signing_key"] in ("", "Permission denied")
    # The repository's config is there, only without its credentials (the agent's git reads it).
    assert "url = https://example.com/billing.git" in results["repo_config"] and "extraheader" not in results["repo_config"]
    assert "name = Bob" in results["user_git_config"]  # the rest of the user's git config is there
    # The person's checkout is an empty folder: their ignored notes and uncommitted work are not there.
    assert results["ignored_note"] == results["uncommitted"] == "No such file or directory"
    assert results["linked_worktree"] == "No such file or directory"  # nor the person's other checkouts
    # /run is the sandbox's own: none of the machine's sockets there (a socket on a read-only mount connects).
    assert not set(results["run"]) & set(os.listdir("/run")), results["run"]
    if run is not None:
        assert results["machine_socket"] == "No such file or directory"
    assert results["PROBER_TMUX"] == "No such file or directory"
    assert results["PROBER_OWN_TMUX"] == "Connection refused"  # /dev/null there
    assert results["move_main_branch"] != 0 and git(repo, "rev-parse", "main") == main_before
    assert results["own_commit"] == 0 and git(repo, "log", "-1", "--format=%s", record.branch) == "inside"
    # rerere's folder made (a commit exited 128 without it), the include read, the stash's ref not there.
    assert (results["log_all"], results["included_alias"]) == (0, "from-the-include"), results
    assert results["interfaces"] == ["lo"]  # network: false
    assert "PROBER_TOKEN" in results["env"] and "LOOM_TEST_SECRET" not in results["env"]
    assert not (repo / "ESCAPE.txt").exists() and not Path("/tmp/scratch.txt").exists()
    # Only the supervisor wrote the store and the audit log, and both are intact.
    assert ws.paths.audit_path.read_bytes().startswith(audit_before)
    assert ws.audit.verify().ok and ws.store.integrity_problems() == []


def test_credentials_that_exist_are_emptied_for_agents_and_gates_alike(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".aws").mkdir()
    (home / ".pgpass").write_text("x")
    key = tmp_path / "keys" / "lead"
    key.parent.mkdir()
    key.write_text("x")
    found = secret_paths([home, home, Path("relative")], [key, tmp_path / "missing.key"])
    assert found == (home / ".ssh", home / ".aws", home / ".pgpass", key)  # what exists, once each
    # Claude Code on Bedrock reads its AWS login: a runtime told to use a cloud keeps that cloud's folder.
    for switch in ({"CLAUDE_CODE_USE_BEDROCK": "1"}, {"AWS_PROFILE": "dev"}):
        assert secret_paths([home], env=switch) == (home / ".ssh", home / ".pgpass")
    assert secret_paths([home], env={"CLAUDE_CODE_USE_BEDROCK": ""}) == (home / ".ssh", home / ".aws", home / ".pgpass")
    # An API key in a variable needs no login folder: the folder's tokens stay hidden.
    assert secret_paths([home], env={"AWS_ACCESS_KEY_ID": "k"}) == (home / ".ssh", home / ".aws", home / ".pgpass")
    argv = scratch_bwrap_argv(tmp_path / "tree", tmp_path / "git", tmp_path / "git" / "loom", secrets=found)
    pairs = [(argv[i], argv[i + 1]) for i in range(len(argv) - 1) if argv[i].startswith("--")]
    assert ("--tmpfs", str(home / ".ssh")) in pairs and ("--tmpfs", str(home / ".aws")) in pairs
    assert argv[argv.index(str(home / ".pgpass")) - 2:][:2] == ["--ro-bind", "/dev/null"]
    assert argv[argv.index(str(key)) - 2:][:2] == ["--ro-bind", "/dev/null"]


@pytest.mark.skipif(not isolation_available(), reason="bubblewrap is not usable here")
def test_the_folders_a_sandbox_gets_empty_hold_so_much(tmp_path: Path) -> None:
    """Unsized, /tmp was half the machine's memory: one agent wrote 3 GB into it (shared memory)."""
    (tmp_path / "tree").mkdir()
    (tmp_path / "git" / "loom").mkdir(parents=True)
    argv = scratch_bwrap_argv(tmp_path / "tree", tmp_path / "git", tmp_path / "git" / "loom")
    sizes = subprocess.run([*argv, "df", "-B1", "--output=size", "/tmp", "/run", "/dev/shm"], capture_output=True,
                           text=True, check=True).stdout.split()[1:]
    assert [int(size) for size in sizes] == [2 << 30, 16 << 20, 512 << 20]
    # /dev is bwrap's own tmpfs, unsized (an agent wrote 3 GB there): read-only, its devices still work.
    written = subprocess.run([*argv, "sh", "-c", "echo x > /dev/null && touch /dev/planted"], capture_output=True,
                             text=True)
    assert written.returncode != 0 and "Read-only file system" in written.stderr
    # The gates running an agent's tests: the OOM killer's first choice, as the agent is, for good.
    scores = subprocess.run([*argv, "sh", "-c", "cat /proc/self/oom_score_adj; echo -1000 > /proc/self/oom_score_adj"],
                            capture_output=True, text=True)
    assert scores.stdout.split() == [str(OOM_SCORE_ADJ_AGENT)] and scores.returncode != 0, scores


def _unprivileged_bwrap() -> bool:
    """Whether bwrap runs here as an unprivileged user (nobody), who gets a user namespace of its own."""
    if not isolation_available() or shutil.which("setpriv") is None or not Path("/usr/bin/python3").exists():
        return False
    done = subprocess.run([*AS_NOBODY, "bwrap", "--ro-bind", "/", "/", "--", "true"], capture_output=True, check=False)
    return done.returncode == 0


AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


@pytest.mark.skipif(not _unprivileged_bwrap(), reason="bwrap cannot run as an unprivileged user here")
def test_a_sandboxs_processes_are_limited_on_their_own_not_the_users(tmp_path: Path) -> None:
    """A fork bomb stops at the sandbox's limit (the kernel exempts root, so run as nobody); the same
    user's processes outside it are not counted against it."""
    base = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        base.chmod(0o755)
        tree, state = base / "tree", base / "git" / "loom"
        tree.mkdir()
        state.mkdir(parents=True)
        argv = scratch_bwrap_argv(tree, state.parent, state, max_processes=20)
        forks = ("import os, time\nstarted = 0\nfor _ in range(60):\n    try:\n        pid = os.fork()\n"
                 "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(2)\n        os._exit(0)\n"
                 "    started += 1\nprint(started)")
        outside = [subprocess.Popen([*AS_NOBODY, "sleep", "5"]) for _ in range(30)]
        try:
            done = subprocess.run([*AS_NOBODY, *argv, "/usr/bin/python3", "-c", forks], capture_output=True,
                                  text=True, timeout=60, check=False)
        finally:
            for process in outside:
                process.kill()
                process.wait()
        assert done.returncode == 0, done.stderr
        assert 10 <= int(done.stdout) < 20, done.stdout  # its own few count; the 30 outside do not
        assert isolation.process_limit(None) == [] and isolation.process_limit(7)[1:] == ["--nproc=7:7", "--"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_root_is_told_its_sandboxes_processes_are_not_limited() -> None:
    status = isolation.isolation_status()
    if status.available and os.geteuid() == 0:
        assert not status.counts_processes and "no RLIMIT_NPROC per sandbox" in status.detail
        assert isolation.sandbox_process_limit() is None


def test_bwrap_command_line_shows_the_state_dir_empty_and_read_only(tmp_path: Path) -> None:
    common = tmp_path / "repo" / ".git"
    mounts = SandboxMounts(
        worktree=common / "loom" / "worktrees" / "ab12cd", worktree_git_dir=common / "worktrees" / "ab12cd",
        common_dir=common, state_dir=common / "loom", branch="loom/ab12cd",
        readable=under_private_dirs([tmp_path, common, tmp_path / "repo" / "sub", Path("/usr/bin")]),
        checkouts=(checkout_shown(tmp_path / "repo", [tmp_path, common, tmp_path / "repo" / ".venv", common / "x"]),),
        own_dir=common / "loom" / "sandboxes" / "ab12cd",
        hidden=(common / "loom" / "sandboxes", common / "loom" / "worktrees", common / "worktrees"),
    )
    argv = bwrap_argv(mounts)
    pairs = [(argv[i], argv[i + 1]) for i in range(len(argv) - 1) if argv[i].startswith("--")]
    ro_state = pairs.index(("--tmpfs", str(common / "loom")))
    # The store and the audit log are not there: the state dir is an empty tmpfs, the git hooks bound
    # back, and other sandboxes' dirs vanish under empty tmpfs mounts stacked on it; the sandbox's own
    # dir (its broker) and its own worktree and admin dir come back on top. All of it read-only at last.
    assert pairs.index(("--ro-bind-try", str(common / "loom" / "hooks"))) > ro_state
    # The person's checkout too, after what is bound under /tmp (a folder holding it), then what it shows.
    checkout = pairs.index(("--tmpfs", str(tmp_path / "repo")))
    assert pairs.index(("--ro-bind-try", str(tmp_path))) < checkout < ro_state
    assert checkout < pairs.index(("--ro-bind-try", str(common))) < ro_state
    assert checkout < pairs.index(("--ro-bind-try", str(tmp_path / "repo" / ".venv")))
    assert ("--ro-bind-try", str(common / "x")) not in pairs
    assert pairs.index(("--remount-ro", str(tmp_path / "repo"))) > pairs.index(("--remount-ro", str(common / "loom")))
    hidden = [pairs.index(("--tmpfs", str(path))) for path in mounts.hidden]
    own = pairs.index(("--ro-bind", str(mounts.own_dir)))
    assert ro_state < min(hidden) and max(hidden) < own
    assert all(("--remount-ro", str(path)) in pairs for path in mounts.hidden)  # nothing to write in them either
    assert pairs.index(("--remount-ro", str(common / "loom"))) > max(i for i, (option, _path) in enumerate(pairs)
                                                                     if "bind" in option)
    assert pairs.index(("--bind", str(mounts.worktree))) > own  # the worktree is writable again on top
    assert pairs.index(("--bind", str(mounts.worktree_git_dir))) > max(hidden)
    assert pairs.index(("--bind", str(common / "objects"))) > ro_state
    assert ("--ro-bind-try", str(tmp_path / "repo")) not in pairs and ("--ro-bind-try", "/usr/bin") not in pairs
    assert ("--bind", str(common)) not in pairs and ("--bind", str(common / "refs")) not in pairs
    assert "--unshare-net" in argv and "--die-with-parent" in argv and argv[-1] == "--"
    assert "--unshare-net" not in bwrap_argv(SandboxMounts(**{**mounts.__dict__, "network": True}))


def test_without_isolation_the_sandbox_says_so(ws: Workspace, tmp_path: Path) -> None:
    record = tasks.create_sandbox(ws, "plain", "script", script=_tiny_script(ws), isolate=False)
    assert record.isolation == "none" and sb.isolation_label(record) == "NOT isolated"
    tasks.start(ws, record.id)
    assert ended(ws, record.id).status in EXITED_OK


# -- interactive runtimes: tmux ----------------------------------------------------------------


@needs_tmux
def test_an_interactive_agent_killed_past_its_stop_s_grace_is_stopped_not_failed(
        ws: Workspace, repo: Path, bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One that ignores SIGTERM (`bash -i`, a busy TUI) was killed with its session at the grace's end and recorded
    `failed`, "the tmux session ended without an exit status (killed?)", counted among the agents that failed."""
    sockets = tmp_path / "tmux"
    sockets.mkdir()
    monkeypatch.setenv("TMUX_TMPDIR", str(sockets))
    monkeypatch.delenv("TMUX", raising=False)
    stand_in(bin_dir, "stubborn", 'import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n'
                                  'print("busy", flush=True)\ntime.sleep(120)\n')
    write_config(repo, 'stubborn:\n  argv: ["stubborn"]\n  mode: interactive\n')
    record = running(ws, tasks.start(ws, tasks.create_sandbox(ws, "ignore the stop", "stubborn").id).id)
    agent_control.stop(ws, record.id, grace=1)
    done = ended(ws, record.id)
    assert done.status == "exited" and not done.data.get("error"), (done.status, done.data.get("error"))


@needs_tmux
def test_interactive_runtime_runs_in_a_tmux_session(ws: Workspace, repo: Path, bin_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    sockets = tmp_path / "tmux"
    sockets.mkdir()
    monkeypatch.setenv("TMUX_TMPDIR", str(sockets))  # a private tmux server for this test
    monkeypatch.delenv("TMUX", raising=False)
    stand_in(bin_dir, "chat", """\
        answer = input("ready> ")
        with open("answer.txt", "w") as out:
            out.write(answer + "\\n")
        with open("oom.txt", "w") as out:
            out.write(open("/proc/self/oom_score_adj").read())
        print("bye", flush=True)
    """)
    write_config(repo, 'chat:\n  argv: ["chat"]\n  mode: interactive\n')
    try:
        made = tasks.create_sandbox(ws, "talk to me", "chat")
        started = run_cli(repo, "sandbox", "start", made.id)  # how to follow it: attach, as `sandbox new` says
        assert started.returncode == 0 and f"`loomtui attach {made.id}` follows the agent" in started.stdout, started
        record = running(ws, made.id)
        session = f"={sb.tmux_session(record.id)}"
        assert agent_control.attach_command(ws, record.id) == [*TMUX, "attach-session", "-t", session]
        # From inside a person's tmux (another server): found all the same (loomtui's own server), and opened in
        # a popup over their pane (the client switched to it was detached whole by C-b d or the agent's end).
        monkeypatch.setenv("TMUX", f"{tmp_path}/another-server,1,0")
        assert agent_control.attach_command(ws, record.id) == [
            "tmux", "display-popup", "-E", "-w", "95%", "-h", "95%",
            f"env -u TMUX tmux -L loomtui attach-session -t {session}"]
        monkeypatch.setattr(agent_control, "_tmux_version", lambda: (3, 1))  # no popups before tmux 3.2
        assert agent_control.attach_command(ws, record.id) == ["env", "-u", "TMUX", *TMUX, "attach-session", "-t",
                                                               session]
        monkeypatch.undo()
        monkeypatch.setenv("TMUX_TMPDIR", str(sockets))
        monkeypatch.setenv("TMUX", f"{tmp_path}/another-server,1,0")
        assert agent_control._tmux_version() != (0, 0)  # this machine's, read
        monkeypatch.delenv("TMUX")
        pane = session + ":"
        screen = lambda: subprocess.run([*TMUX, "capture-pane", "-p", "-t", pane],
                                        capture_output=True, text=True, check=False).stdout
        wait_until(lambda: "ready>" in screen(), what="the prompt")
        subprocess.run([*TMUX, "send-keys", "-t", pane, "hello there", "Enter"], check=True)
        done = ended(ws, record.id)
        assert (done.status in EXITED_OK, done.exit_code) == (True, 0)
        assert git(repo, "show", f"{record.branch}:answer.txt") == "hello there"
        assert git(repo, "show", f"{record.branch}:oom.txt") == str(OOM_SCORE_ADJ_AGENT)
        wait_until(lambda: "bye" in sb.log_path(ws, record.id).read_text(), what="the log")
        with pytest.raises(LoomError, match="its tmux session is gone"):
            agent_control.attach_command(ws, record.id)
    finally:
        subprocess.run([*TMUX, "kill-server"], capture_output=True, check=False)


def test_attach_to_a_headless_sandbox_points_at_the_logs(ws: Workspace) -> None:
    record = tasks.create_sandbox(ws, "headless", "script", script=_tiny_script(ws))
    with pytest.raises(LoomError, match=f"runs headless; follow its output with `loomtui sandbox logs {record.id} -f`"):
        agent_control.attach_command(ws, record.id)


# -- claims go through coordination before anything is created ---------------------------------------


@pytest.fixture
def claimable(repo: Path) -> Path:
    pytest.importorskip("loomtui.coordination.claims")
    (repo / "pkg").mkdir()
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "billing.py").write_text("def charge(amount):\n    return amount\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "billing")
    return repo


def test_a_refused_claim_leaves_a_rejected_record_and_no_worktree(ws: Workspace, claimable: Path) -> None:
    first = tasks.create_sandbox(ws, "change charge", "script", script=_tiny_script(ws), claims=["pkg/billing.py"])
    assert first.status == PLANNED and Path(first.worktree).is_dir()
    with pytest.raises(LoomError) as raised:
        tasks.create_sandbox(ws, "also change charge", "script", script=_tiny_script(ws), claims=["pkg/billing.py"])
    assert raised.value.exit_code == 1
    rejected = [r for r in sb.list_sandboxes(ws) if r.status == REJECTED]
    assert len(rejected) == 1 and "refused" in rejected[0].data["reason"]
    assert not Path(rejected[0].worktree).exists()
    assert git(claimable, "branch", "--list", rejected[0].branch) == ""


def test_two_racing_sandbox_news_for_one_claim_never_both_win(ws: Workspace, claimable: Path) -> None:
    script = _tiny_script(ws)
    command = [sys.executable, "-m", "loomtui", "sandbox", "new", "--runtime", "script", "--script", str(script),
               "--no-start", "--task", "race", "--claim", "pkg/billing.py::charge"]
    racers = [subprocess.Popen(command, cwd=claimable, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    outcomes = sorted(p.wait(timeout=60) for p in racers)
    assert outcomes == [0, 1]
    statuses = sorted(r.status for r in sb.list_sandboxes(ws))
    assert statuses == [PLANNED, REJECTED]


# -- the parsers ---------------------------------------------------------------------------------


def test_activity_parsers_ignore_what_they_do_not_understand() -> None:
    assert parse_claude_stream("not json") == []
    assert parse_claude_stream('{"type": "user", "message": "odd"}') == []
    assert parse_claude_stream("[1, 2]") == []
    tool = json.dumps({"type": "assistant", "message": {"content": [
        {"type": "tool_use", "name": "Bash", "input": {"command": "pytest -q"}}]}})
    assert parse_claude_stream(tool) == [{"kind": "tool", "tool": "Bash", "summary": "Bash pytest -q"}]
    assert parse_script_agent("[script] write a.py") == [{"kind": "write", "summary": "write a.py"}]


def test_a_claude_result_with_denials_tokens_and_cost_is_not_plain_success() -> None:
    result = json.dumps({
        "type": "result", "subtype": "success", "is_error": False, "num_turns": 4, "total_cost_usd": 0.0421,
        "usage": {"input_tokens": 1200, "output_tokens": 340, "cache_read_input_tokens": 800,
                  "cache_creation_input_tokens": 64},
        "permission_denials": [{"tool_name": "Write", "tool_use_id": "t1",
                                "tool_input": {"file_path": "payments/ledger.py", "content": "x"}},
                               {"tool_name": "Bash", "tool_use_id": "t2", "tool_input": {"command": "rm -rf /"}}]})
    denied_write, denied_bash, finished = parse_claude_stream(result)
    assert denied_write["summary"] == "denied: Write payments/ledger.py" and denied_bash["tool"] == "Bash"
    assert finished["summary"] == ("finished: success, 4 turns, $0.0421, 1200 in / 340 out tokens, "
                                   "2 permission denials")
    assert (finished["input_tokens"], finished["output_tokens"], finished["cache_read_tokens"]) == (1200, 340, 800)
    assert [d["target"] for d in finished["denials"]] == ["payments/ledger.py", "rm -rf /"]
    odd = json.dumps({"type": "result", "usage": "junk", "permission_denials": "junk", "total_cost_usd": "x"})
    assert parse_claude_stream(odd)[-1]["cost_usd"] is None  # malformed fields: skipped, never a crash
    assert parse_script_agent("tick 3") == []


@pytest.mark.skipif(not isolation.isolation_available(), reason="bubblewrap is not usable here")
def test_an_isolated_agent_commits_on_its_branch_but_cannot_touch_another_sandboxes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    from loomtui.workflow.tasks import create_sandbox, start
    from loomtui.workspace import open_workspace
    from tests.conftest import demo_repo

    # The user's data folder where a user's is, outside /tmp (which the agent sees empty): there the
    # worktrees of every repository are.
    user_data = Path(tempfile.mkdtemp(prefix="loomtui-test-data-", dir="/var/tmp"))
    monkeypatch.setenv("XDG_DATA_HOME", str(user_data))
    request.addfinalizer(lambda: shutil.rmtree(user_data, ignore_errors=True))
    repo = demo_repo(tmp_path)
    workspace = open_workspace(repo)

    def run(*argv: str) -> tuple[str, int | None]:
        record = create_sandbox(workspace, " ".join(argv), "command", command=argv)
        start(workspace, record.id)
        return record.id, agent_ended(workspace, record.id).exit_code

    victim, _ = run("true")
    victim_tip = git(repo, "rev-parse", f"loom/{victim}")
    writer, code = run("git", "commit", "--allow-empty", "-q", "-m", "the agent's own commit")
    assert code == 0
    assert git(repo, "log", "-1", "--format=%s", f"loom/{writer}") == "the agent's own commit"
    assert git(repo, "cat-file", "-t", f"loom/{writer}") == "commit"  # its object reached the shared store
    run("git", "update-ref", f"refs/heads/loom/{victim}", f"loom/{writer}")
    assert git(repo, "rev-parse", f"loom/{victim}") == victim_tip
    run("git", "branch", "-D", f"loom/{victim}")
    assert git(repo, "rev-parse", f"loom/{victim}") == victim_tip
    shared = repo / ".git" / "objects"
    before = sorted(p.name for p in shared.iterdir())
    run("touch", str(shared / "planted"))  # lands in the agent's own store (mounted there), not the shared one
    assert sorted(p.name for p in shared.iterdir()) == before
    # Where the agent sees the shared store (its own store's alternate) is read-only, and so is
    # the alternates file that names it.
    sandboxes = repo / ".git" / "loom" / "sandboxes"
    _, code = run("sh", "-c", f'touch {sandboxes}/*/git/shared-objects/planted')
    assert code != 0 and sorted(p.name for p in shared.iterdir()) == before
    _, code = run("sh", "-c", f'echo /elsewhere > {shared}/info/alternates')
    assert code != 0
    # Another repository's sandboxes, in the folder every repository's worktrees share by default: not
    # there at all (an agent read another project's work in progress and task files).
    from loomtui.execution.sandboxes import data_home

    # What a person's own git reads in the worktree, put back at the agent's end: a planted fsmonitor ran as
    # the person, outside the sandbox, at their first `git status` there.
    marker = tmp_path / "planted-ran"
    planter, code = run("sh", "-c", f"git config --worktree core.fsmonitor 'touch {marker}; false' && "
                                    "git config --worktree core.hooksPath /nowhere")
    assert code == 0
    tree = Path(sb.get_sandbox(workspace, planter).worktree or "")
    subprocess.run(["git", "status", "--short"], cwd=tree, capture_output=True, check=False)
    assert not marker.exists()
    assert git(tree, "config", "--worktree", "core.hooksPath") == str(repo / ".git" / "loom" / "hooks")
    assert sb.get_sandbox(workspace, planter).data["git_links_put_back"] == ["config.worktree"]
    theirs = data_home() / "loomtui" / "worktrees" / "other-0123456789" / "ab12cd"
    theirs.mkdir(parents=True)
    (theirs / "secret.txt").write_text("their work in progress\n")
    _, code = run("cat", str(theirs / "secret.txt"))
    assert code != 0


def test_the_end_of_an_agent_waits_for_a_store_that_cannot_be_reached_yet(monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """PostgreSQL restarting as the agent ended: the supervisor died on the first refused connection, and a
    clean run became `failed [orphaned]`, its change needing a person. It tries again; other errors are not."""
    from loomtui.errors import StoreError, StoreUnreachable
    from loomtui.execution import supervisor

    slept: list[float] = []
    monkeypatch.setattr(supervisor.time, "sleep", slept.append)
    answers = iter([StoreUnreachable("db: cannot reach the database"), StoreUnreachable("db: again"), "recorded"])

    def record_the_end() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert supervisor._patiently("record the end", record_the_end) == "recorded"
    assert slept == [1.0, 2.0] and "cannot record the end yet: db: cannot reach the database" in capsys.readouterr().err

    def corrupt() -> str:
        raise StoreError("db: state store error: no such table")

    with pytest.raises(StoreError, match="no such table"):
        supervisor._patiently("record the end", corrupt)
    assert slept == [1.0, 2.0]  # not waited for: trying again would not help


def test_a_prepare_killed_after_making_the_worktree_is_made_again(ws: Workspace) -> None:
    """Killed between `git worktree add` and recording it: the redo said "a branch named loom/ID already
    exists", the task failed for good and kept its claim for the lease's hour."""
    record = sb.plan_sandbox(ws, "half made", "script", script=_tiny_script(ws))
    made = sb.make_worktree(ws, record.id)
    ws.store.update_sandbox(record.id, data={"worktree_made": None, "git_dir": None})  # as if never recorded
    again = sb.make_worktree(ws, record.id)
    assert again.status == "planned" and again.data["worktree_made"] and Path(again.worktree).is_dir()
    assert git(ws.root, "rev-parse", made.branch) == made.base_sha
    # A branch of that name with commits of its own is someone's work: said, not deleted.
    other = sb.plan_sandbox(ws, "taken", "script", script=_tiny_script(ws))
    git(ws.root, "branch", other.branch, made.base_sha)
    tip = git(ws.root, "commit-tree", "-m", "someone's", "-p", made.base_sha, f"{made.base_sha}^{{tree}}").strip()
    git(ws.root, "update-ref", f"refs/heads/{other.branch}", tip)
    with pytest.raises(LoomError, match="with commits of its own"):
        sb.make_worktree(ws, other.id)
    assert git(ws.root, "rev-parse", other.branch) == tip


def test_the_supervisor_never_follows_what_the_agent_planted_at_its_stores_alternates(tmp_path: Path) -> None:
    """An agent moved `objects/info` aside and made it a symlink to another repository's: the write
    rewrote that repository's alternates (`fatal: bad object HEAD` there). A FIFO at `alternates`
    hung the supervisor, then every `sandbox list` reconciling it."""
    import stat as stat_module

    from loomtui.execution import privategit
    from loomtui.execution.isolation import PrivateGit

    private = PrivateGit(tmp_path / "git")
    private.objects.mkdir(parents=True)
    victim = tmp_path / "victim" / "objects" / "info"
    victim.mkdir(parents=True)
    (victim / "alternates").write_text("/the/victims/own/store\n")
    (private.objects / "info").symlink_to(victim)
    privategit._write_alternates(private)
    assert (victim / "alternates").read_text() == "/the/victims/own/store\n"
    assert not (private.objects / "info").is_symlink()
    assert private.alternates.read_text() == f"{private.shared}\n"
    # A FIFO where the file goes: read at once (no writer will ever come), replaced by the file.
    private.alternates.unlink()
    os.mkfifo(private.alternates)
    privategit._write_alternates(private)
    assert stat_module.S_ISREG(private.alternates.stat().st_mode)
    assert private.alternates.read_text() == f"{private.shared}\n"
    # A symlink at the file itself, to a file of the user's: the link goes, the file stays as it was.
    mine = tmp_path / "users-file"
    mine.write_text("keep\n")
    private.alternates.unlink()
    private.alternates.symlink_to(mine)
    privategit._write_alternates(private)
    assert mine.read_text() == "keep\n" and not private.alternates.is_symlink()


@contextlib.contextmanager
def _tmpfs(options: str) -> Iterator[Path]:
    """A disk of its own (a tmpfs mounted here: root only)."""
    place = Path(tempfile.mkdtemp(dir="/var/tmp"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(place)], capture_output=True,
                      check=False).returncode != 0:
        place.rmdir()
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield place
    finally:
        subprocess.run(["umount", "-l", str(place)], check=False)
        place.rmdir()


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 48 MiB disk of its own."""
    with _tmpfs("size=48m") as place:
        yield place


def test_a_disk_out_of_files_is_short_of_room_too() -> None:
    """A million empty files fill a disk with room left: no file can be made, the store's journal neither."""
    from loomtui.execution import disk_room

    with _tmpfs("size=48m,nr_inodes=400") as place:
        assert disk_room.shortage([("its worktree", place)]) is None
        for number in range(385):
            (place / str(number)).touch()
        short = disk_room.shortage([("its worktree", place)])
        assert short is not None and short.files and "files free, under 20 files" in short.said(), short


def test_an_agent_that_fills_its_disk_with_fallocate_is_blamed_as_one_that_writes(
        ws: Workspace, repo: Path, bin_dir: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`fallocate` (as writes through `mmap`) moves no count of bytes written: the agent that took the disk to
    just above half its floor was left running, told once, every other sandbox on the disk refused at start."""
    monkeypatch.setenv("LOOMTUI_WORKTREES", str(small_disk))
    stand_in(bin_dir, "hog", """\
        room = os.statvfs(".")
        fd = os.open("hog.bin", os.O_WRONLY | os.O_CREAT)
        os.posix_fallocate(fd, 0, room.f_bavail * room.f_frsize - (2 << 20))  # 2 MiB left, over half the floor
        print("allocated", flush=True)
        time.sleep(60)
    """)
    write_config(repo, 'hog:\n  argv: ["hog"]\n')
    record = tasks.start(ws, tasks.create_sandbox(ws, "fill the disk", "hog").id)
    done = ended(ws, record.id)
    assert "sandbox.disk_full" in audit_actions(ws, record.id), audit_actions(ws, record.id)
    assert "the disk holding its worktree" in str(done.data.get("error")), done.data


def test_what_an_agent_s_files_hold_counts_a_file_of_many_names_once(tmp_path: Path) -> None:
    """Four hard links to a 10 MiB file made since the agent started were charged as 50 MiB written."""
    import os

    from loomtui.execution.disk_room import allocated_since

    (tmp_path / "big").write_bytes(b"x" * (10 << 20))
    since = (tmp_path / "big").stat().st_ctime
    for number in range(4):
        os.link(tmp_path / "big", tmp_path / f"name{number}")
    assert allocated_since([tmp_path], since) == (tmp_path / "big").stat().st_blocks * 512
    assert allocated_since([tmp_path], since + 3600) == 0  # nothing changed since then
    # Bounded within one folder too (a million files in one were read at once: 1 GB of the supervisor's memory).
    many = tmp_path / "many"
    many.mkdir()
    for number in range(50):
        (many / str(number)).write_bytes(b"x" * 4096)
    assert allocated_since([many], since, most=10) <= 10 * 4096 * 2


def test_an_agent_that_fills_its_worktree_s_disk_is_stopped_before_it_is_full(
        ws: Workspace, repo: Path, bin_dir: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worktree is on the person's disk, uncapped: an agent writing without end filled it, the store's
    and the audit log's with it."""
    from loomtui.execution import disk_room

    assert disk_room.floor(48 << 20) == int((48 << 20) * 0.05) and disk_room.floor(1 << 40) == 1 << 30
    assert disk_room.shortage([("its worktree", repo)]) is None
    monkeypatch.setenv("LOOMTUI_WORKTREES", str(small_disk))
    stand_in(bin_dir, "hog", """\
        chunk = b"x" * (1 << 20)
        with open("hog.bin", "wb") as out:
            while os.statvfs(".").f_bavail * os.statvfs(".").f_frsize > 2 << 20:  # to 2 MiB free, then waits
                out.write(chunk)
                out.flush()
        print("written", flush=True)
        time.sleep(60)
    """)
    stand_in(bin_dir, "idler", 'print("idle", flush=True)\ntime.sleep(60)\n')
    write_config(repo, 'hog:\n  argv: ["hog"]\nidler:\n  argv: ["idler"]\n')
    # Another agent on the same disk, writing nothing: it was stopped too (first, as it happened), and blamed.
    idle = running(ws, tasks.start(ws, tasks.create_sandbox(ws, "wait", "idler").id).id)
    record = tasks.start(ws, tasks.create_sandbox(ws, "fill the disk", "hog").id)
    assert str(sb.get_sandbox(ws, record.id).worktree).startswith(str(small_disk))
    done = ended(ws, record.id)
    wait_until(lambda: "sandbox.disk_short" in audit_actions(ws, idle.id), what="the idle agent told of the disk")
    assert sb.get_sandbox(ws, idle.id).status == RUNNING and "sandbox.disk_full" not in audit_actions(ws, idle.id)
    agent_control.stop(ws, idle.id, grace=1)
    # Stopped, saying why; what it wrote is kept (and reviewed, as any failed agent's change).
    assert audit_actions(ws, record.id)[3:5] == ["sandbox.disk_full", "sandbox.failed"], audit_actions(ws, record.id)
    assert "the disk holding its worktree" in str(done.data.get("error")) and "MiB free, under" in str(
        done.data.get("error")), done.data
    assert done.exit_code == 128 + signal.SIGTERM and "hog.bin" in git(repo, "ls-tree", "--name-only", done.branch)
    # Full still (its work kept): `doctor` says the next agent would be stopped at once.
    from loomtui.execution.doctor import run_doctor

    checks = {check.name: check for check in run_doctor(repo).checks}
    assert checks["disk room"].level == "warning" and "the disk holding the worktrees" in checks["disk room"].detail
    # And it is not started (its supervisor's first steps, before any beat, filled the disk: it died with nothing
    # written, said "killed, or the machine restarted"); it waits, planned, to be started once there is room.
    later = tasks.create_sandbox(ws, "wait again", "idler")
    with pytest.raises(LoomError, match=f"sandbox {later.id} not started: the disk holding its worktree"):
        tasks.start(ws, later.id)
    assert sb.get_sandbox(ws, later.id).status == PLANNED


def test_an_agents_runtime_state_is_counted_on_disk_and_past_its_cap_the_agent_stops(
        ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It lives on the store's disk: an agent wrote 400 MB into ~/.claude, the disk filled, and the
    store with it (`database or disk is full`) for every sandbox."""
    from loomtui.execution import runtime_state, supervisor

    root = tmp_path / "state"
    (root / "projects").mkdir(parents=True)
    (root / "projects" / "session.jsonl").write_bytes(b"x" * 200_000)
    with open(root / "sparse", "wb") as sparse:  # what it holds on disk counts, not what it claims
        sparse.truncate(5 << 30)
    outside = tmp_path / "big"
    outside.write_bytes(b"y" * 300_000)
    (root / "link").symlink_to(outside)  # a link is not followed
    used = runtime_state.state_bytes(root, 1 << 30)
    assert 200_000 <= used < 300_000
    assert runtime_state.state_overflow(root, 1 << 20) is None
    assert "passed 0 MiB" in (runtime_state.state_overflow(root, 100_000) or "")
    # The supervisor looks every few seconds, and past the cap stops the agent, saying why.
    record = tasks.create_sandbox(ws, "fill the disk", "script", script=_tiny_script(ws), isolate=True)
    watcher = supervisor.Supervisor(ws, record)
    if record.isolation != "bwrap":
        pytest.skip("bubblewrap is not usable here")
    monkeypatch.setattr(supervisor, "state_overflow", lambda path: runtime_state.state_overflow(root, 100_000))
    watcher._check_state_size()
    assert watcher.fault_error is not None and "runtime's own state" in watcher.fault_error
    assert [e.action for e in ws.audit.entries() if e.subject == record.id][-1] == "sandbox.state_full"


def test_a_store_that_cannot_be_written_is_retried_with_backoff_not_at_once(
        ws: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """PostgreSQL stopped under a running agent: the heartbeat retried a thousand times a second, and
    supervisor.log took 8,295 copies of the same line in seconds."""
    import threading
    import time

    from loomtui.errors import StoreUnreachable
    from loomtui.execution import supervisor

    record = tasks.create_sandbox(ws, "beat", "script", script=_tiny_script(ws))
    watcher = supervisor.Supervisor(ws, record)
    tries: list[float] = []

    def unreachable(*_args: object) -> None:
        tries.append(time.monotonic())
        raise StoreUnreachable("cannot reach the database (Connection refused)")

    monkeypatch.setattr(ws.store, "heartbeat_sandbox", unreachable)
    beating = threading.Thread(target=watcher._store_loop)
    beating.start()
    time.sleep(1.0)
    watcher.activities.put(supervisor._STOP)
    beating.join(timeout=10)
    assert 1 <= len(tries) <= 2, len(tries)  # the first try, then one after HEARTBEAT_S at most
    said = capsys.readouterr().err
    assert said.count("store write failed") == 1 and "(1 in a row)" in said


def test_script_agent_help_shows_a_script_that_parses() -> None:
    """`loomtui script-agent --help` named only SCRIPT: the step format was in a docstring."""
    from loomtui.cli import SCRIPT_FORMAT
    from loomtui.execution.script_agent import ACTIONS

    example = "\n".join(line.removeprefix("  ") for line in SCRIPT_FORMAT.splitlines() if line.startswith("  - "))
    assert [step.action for step in parse_script(example, "help")] == list(ACTIONS)  # every action, as parsed
    done = subprocess.run([sys.executable, "-m", "loomtui", "script-agent", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "- {commit: " in done.stdout
    assert max(map(len, SCRIPT_FORMAT.splitlines())) <= 79  # lines of 96 wrapped at 80 columns


def test_a_supervisor_started_twice_says_why_in_its_log_when_no_one_reads_its_answer(
        ws: Workspace, tmp_path: Path) -> None:
    """A second supervisor of a sandbox already run, whose starter has gone (its stdout a closed pipe), died
    writing its refusal: a BrokenPipeError traceback in the supervisor log, 18 of them after a day of use."""
    record = _finished_script_sandbox(ws, tmp_path, '- {write: a.txt, content: "agent\\n"}\n- {commit: "a"}\n')
    read, write = os.pipe()
    os.close(read)  # the starter is gone
    log = tmp_path / "supervisor.log"
    with log.open("w") as errors:
        subprocess.run([sys.executable, "-m", "loomtui.execution.supervisor", str(ws.root), record.id],
                       stdout=write, stderr=errors, env=os.environ.copy(), timeout=60)
    os.close(write)
    wait_until(lambda: "is already" in log.read_text(), what="the forked supervisor's refusal")
    time.sleep(0.5)  # as long again as it took to say it: no traceback after it
    assert "Traceback" not in log.read_text(), log.read_text()


def test_a_running_agents_commit_holds_the_code_it_changed_within_a_beat(ws: Workspace, tmp_path: Path) -> None:
    """Codex and Aider commit without asking first: the supervisor sees its branch move and has the broker hold
    what the commit changed (read from git), while the agent still runs, so another agent's edit is refused."""
    script = write_script(tmp_path / "commits.yaml", """\
        - {write: src/app.py, content: "VALUE = 1\\n"}
        - {commit: "Add the app"}
        - {log: "still working", after: 300}
    """)
    record = running(ws, tasks.start(ws, tasks.create_sandbox(ws, "add the app", "script", script=script).id).id)
    wait_until(lambda: [c.target for c in ws.store.live_claims(record.id)] == ["src/app.py"], timeout=30,
               what="the commit's code held")
    assert sb.get_sandbox(ws, record.id).status == RUNNING
    [held] = ws.store.live_claims(record.id)
    assert held.reason == "claimed by commit of src/app.py"
    tasks.remove(ws, record.id, force=True)
    assert ws.store.live_claims(record.id) == []


@needs_bwrap
def test_an_isolated_agent_s_supervisor_keeps_no_exited_bwrap_unreaped(ws: Workspace) -> None:
    """The isolation probe's inner bwrap outlives the probe; a supervisor that already adopted
    orphans kept it as `[bwrap] <defunct>` for the agent's whole run."""
    record = tasks.create_sandbox(ws, "wait a while", "command", isolate=True, command=["sleep", "30"])
    tasks.start(ws, record.id)
    wait_until(lambda: (got := ws.store.get_sandbox(record.id)) is not None and got.status == "running",
               what="the agent running")
    running = ws.store.get_sandbox(record.id)
    assert running is not None
    supervisor = running.pid
    assert isinstance(supervisor, int)
    time.sleep(0.5)  # the agent's bwrap is up: a probe's leftover would be there by now

    def zombie_children() -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except (OSError, ValueError):
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            if entry.isdigit() and fields[0] == "Z" and int(fields[1]) == supervisor:
                found.append(int(entry))
        return found

    try:
        assert zombie_children() == []
    finally:
        agent_control.stop(ws, record.id)


def test_a_running_agents_claims_are_renewed_before_their_lease_runs_out(ws: Workspace, repo: Path) -> None:
    """Nothing renewed a sandbox's claims: an agent at work past the lease (an hour by default) lost its regions to
    the next sandbox without a word, and its next commit there was refused naming the newcomer."""
    (repo / ".loom").mkdir(exist_ok=True)
    # Renewed in the lease's second half: 6 s wide here, as a loaded machine may keep a supervisor from its
    # beat for seconds (with 6 s of lease, a window of 3 s was missed under a whole test run).
    (repo / ".loom" / "loom.yaml").write_text("version: 1\ncoordination:\n  lease_seconds: 12\n")
    record = tasks.create_sandbox(ws, "work a while", "command", isolate=False, command=["sleep", "30"],
                                  claims=["README.md"])
    tasks.start(ws, record.id)
    try:
        [claim] = ws.store.live_claims(record.id)
        time.sleep(max(0.0, claim.expires - time.time()) + 1)  # past the first lease: renewed while the agent runs
        [held] = ws.store.live_claims(record.id)
        assert held.id == claim.id and held.expires > time.time()
        renewed = [e.details for e in ws.audit.entries() if e.action == "claim.renewed" and e.subject == record.id]
        assert renewed and renewed[-1]["by"] == "its agent runs", renewed
    finally:
        agent_control.stop(ws, record.id)


def test_loomtuis_note_in_a_log_is_a_line_of_its_own_after_an_unfinished_one(ws: Workspace) -> None:
    """An interactive agent's pane ends mid-line: the note between two runs was read as part of that line (and an
    unended title before it hid it)."""
    record = sb.plan_sandbox(ws, "t", "command", command=["true"])
    log = sb.log_path(ws, record.id)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"bye\x1b]0;")
    sb.mark_log(ws, record.id, "run 2")
    sb.mark_log(ws, record.id, "run 3")
    assert log.read_bytes() == "bye\x1b]0;\n── loomtui: run 2 ──\n── loomtui: run 3 ──\n".encode()
