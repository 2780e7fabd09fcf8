"""Real agents' needs (issue #9): worktrees outside any `.git` directory, symlinked and `#!`
programs under bubblewrap, each vendor's credential variables, and a runtime that cannot run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loomtui.config import parse_config
from loomtui.errors import ConfigError, LoomError
from loomtui.execution import confinement, recovery, review
from loomtui.execution import sandboxes as sb
from loomtui.execution.doctor import run_doctor
from loomtui.execution.isolation import isolation_available
from loomtui.execution.lifecycle import ARCHIVED, AWAITING_REVIEW, PLANNED
from loomtui.execution.runtime_state import runtime_state
from loomtui.execution.runtimes import (
    STATE_PATHS,
    VENDOR_ENV,
    LaunchSpec,
    agent_environment,
    credential_status,
    prepare_launch,
    program_files,
)
from loomtui.repo import RepoPaths
from loomtui.store import SandboxRecord
from loomtui.workflow import tasks
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import git
from tests.test_execution import (
    audit_actions,
    ended,
    kill_leftovers,
    stand_in,
    write_script,
)

needs_bwrap = pytest.mark.skipif(not isolation_available(), reason="bubblewrap (bwrap) not usable here")
PATH = ".loom/loom.yaml"


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


def _nothing_made(workspace: Workspace) -> None:
    assert workspace.store.list_sandboxes(include_archived=True) == []
    assert git(workspace.root, "branch", "--list", "loom/*") == ""
    root = sb.configured_worktrees_root(workspace)
    assert not root.exists() or not any(root.iterdir())
    assert not (workspace.paths.state_dir / "sandboxes").exists() or not any(
        (workspace.paths.state_dir / "sandboxes").iterdir())


def _reviewed(workspace: Workspace, sandbox_id: str) -> SandboxRecord:
    """The sandbox once its agent ended with exit 0 having left a commit, and the supervisor reviewed
    it: no policy file here, so the default policy asks a person (an open post-gate escalation on the
    branch tip)."""
    done = ended(workspace, sandbox_id)
    assert done.status == AWAITING_REVIEW and done.exit_code == 0, sb.read_log_tail(workspace, sandbox_id)
    escalation = workspace.store.get_escalation(int(done.data["review_escalation"]))
    assert escalation is not None and escalation.kind == "post-gate" and escalation.status == "open"
    assert escalation.sandbox_id == sandbox_id
    assert escalation.data["commit"] == git(workspace.root, "rev-parse", done.branch)
    assert audit_actions(workspace, sandbox_id)[-5:] == ["sandbox.exited", "sandbox.gating", "eval.run",
                                                          "policy.evaluated", "sandbox.awaiting_review"]
    return done


# -- where worktrees live ------------------------------------------------------------------


def test_the_default_worktrees_root_is_in_the_data_dir_one_folder_per_repository(tmp_path: Path) -> None:
    paths = RepoPaths(root=tmp_path / "shop", common_dir=tmp_path / "shop" / ".git")
    other = RepoPaths(root=tmp_path / "elsewhere" / "shop", common_dir=tmp_path / "elsewhere" / "shop" / ".git")
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "HOME": str(tmp_path / "home")}
    root = sb.worktrees_root(paths, None, env)
    assert root.parent == tmp_path / "data" / "loomtui" / "worktrees" and root.name.startswith("shop-")
    assert sb.worktrees_root(paths, None, env) == root  # stable
    assert sb.worktrees_root(other, None, env) != root  # two clones of one name never share a folder
    assert sb.worktrees_root(paths, None, {"HOME": str(tmp_path / "home")}).parent == (
        tmp_path / "home" / ".local" / "share" / "loomtui" / "worktrees")
    # `worktrees:` of the config, relative to the repository root; the environment overrides it.
    assert sb.worktrees_root(paths, "../wt", env) == tmp_path / "wt" / root.name
    assert sb.worktrees_root(paths, "../wt", {**env, sb.WORKTREES_ENV: str(tmp_path / "mine")}) == (
        tmp_path / "mine" / root.name)
    with pytest.raises(LoomError, match="inside the repository's working tree"):
        sb.worktrees_root(paths, "build/wt", env)
    with pytest.raises(LoomError, match=r"\$LOOMTUI_WORKTREES must be outside any \.git directory"):
        sb.worktrees_root(paths, None, {**env, sb.WORKTREES_ENV: str(tmp_path / "x" / ".git" / "wt")})


def test_the_worktrees_key_is_validated_with_file_and_line() -> None:
    assert parse_config("worktrees: ~/wt\n", PATH).worktrees == "~/wt"
    assert parse_config("version: 1\n", PATH).worktrees is None
    for text, problem in (("version: 1\nworktrees: .git/loom/wt\n", "must be outside any .git directory"),
                          ("version: 1\nworktrees: 3\n", "expected a string"),
                          ("version: 1\nworktrees: ''\n", "must not be empty")):
        with pytest.raises(ConfigError) as raised:
            parse_config(text, PATH)
        assert str(raised.value).startswith(f"{PATH}:2: worktrees: ") and problem in str(raised.value)


def test_a_worktree_outside_the_git_dir_is_a_sandbox_worktree_and_the_checkout_is_not(
        ws: Workspace, repo: Path, tmp_path: Path) -> None:
    script = write_script(tmp_path / "s.yaml", '- {write: made.txt, content: "x\\n"}\n')
    record = tasks.create_sandbox(ws, "make a file", "script", script=script)
    worktree = Path(record.worktree)
    assert ".git" not in worktree.parts and not worktree.is_relative_to(repo)
    assert sb.is_sandbox_worktree(ws, worktree) and sb.is_sandbox_worktree(ws, worktree / "sub")
    assert not sb.is_sandbox_worktree(ws, repo)
    # Git in the worktree finds its repository; the agent runs there.
    assert git(worktree, "rev-parse", "--abbrev-ref", "HEAD") == record.branch
    tasks.start(ws, record.id)
    _reviewed(ws, record.id)
    assert git(repo, "show", f"{record.branch}:made.txt") == "x"
    # Every folder worktrees live in is hidden from agents (their own is bound back on top).
    hidden = confinement._hidden(ws)
    assert worktree.parent in hidden and ws.paths.state_dir / "sandboxes" in hidden


def test_the_configured_location_is_used_and_a_bad_one_creates_nothing(ws: Workspace, repo: Path,
                                                                      tmp_path: Path) -> None:
    (repo / ".loom").mkdir()
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nworktrees: ../trees\n")
    record = tasks.create_sandbox(ws, "task", "command", command=["true"])
    assert Path(record.worktree).parent.parent == tmp_path / "trees"
    review.remove(ws, record.id)
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nworktrees: inside\n")
    with pytest.raises(LoomError, match="inside the repository's working tree"):
        tasks.create_sandbox(ws, "task", "command", command=["true"])
    assert len(ws.store.list_sandboxes(include_archived=True)) == 1  # only the removed one


def test_an_old_sandbox_under_git_loom_worktrees_is_still_listed_diffed_and_removed(
        ws: Workspace, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    legacy = sb.legacy_worktrees_dir(ws.paths)
    with monkeypatch.context() as patch:  # made the way loomtui made sandboxes before
        patch.setattr(sb, "configured_worktrees_root", lambda workspace: legacy)
        script = write_script(tmp_path / "old.yaml", '- {write: old.txt, content: "old\\n"}\n')
        old = tasks.create_sandbox(ws, "an old sandbox", "script", script=script)
    assert Path(old.worktree) == legacy / old.id
    new = tasks.create_sandbox(ws, "a new sandbox", "command", command=["true"])
    assert Path(new.worktree).parent != legacy
    # It runs (isolated where bubblewrap works: its worktree is bound back over the hidden folder).
    tasks.start(ws, old.id)
    _reviewed(ws, old.id)
    assert {r.id for r in sb.list_sandboxes(ws)} == {old.id, new.id}
    assert sb.is_sandbox_worktree(ws, Path(old.worktree)) and sb.is_sandbox_worktree(ws, Path(new.worktree))
    assert [f.path for f in review.diff(ws, old.id).files] == ["old.txt"]
    (Path(old.worktree) / "later.txt").write_text("uncommitted\n")
    assert review.diff(ws, old.id).includes_uncommitted
    assert recovery.reconcile(ws).unknown_worktrees == []
    review.remove(ws, old.id, force=True)
    assert sb.get_sandbox(ws, old.id).status == ARCHIVED and not Path(old.worktree).exists()
    assert git(repo, "show", f"{old.branch}:later.txt") == "uncommitted"
    assert sb.get_sandbox(ws, new.id).status == PLANNED and Path(new.worktree).is_dir()


@needs_bwrap
def test_an_isolated_agent_cannot_see_another_sandboxs_worktree(ws: Workspace, repo: Path) -> None:
    victim = tasks.create_sandbox(ws, "holds a secret", "command", isolate=True, command=["true"])
    (Path(victim.worktree) / "secret.txt").write_text("s3cret\n")
    probe = tasks.create_sandbox(ws, "looks around", "command", isolate=True, command=[
        "sh", "-c", (f'ls -A "{victim.worktree}" > seen.txt 2>&1; cat "{victim.worktree}/secret.txt" >> seen.txt 2>&1;'
                     f' ls -A "{Path(victim.worktree).parent}" >> seen.txt 2>&1; echo mine > own.txt')])
    tasks.start(ws, probe.id)
    _reviewed(ws, probe.id)
    seen = git(repo, "show", f"{probe.branch}:seen.txt").splitlines()
    # The victim's worktree is not there; its folder holds only the probe's own worktree.
    assert seen[0].endswith("No such file or directory") and seen[1].endswith("No such file or directory")
    assert seen[2:] == [probe.id], seen
    assert git(repo, "show", f"{probe.branch}:own.txt") == "mine"


# -- programs under bubblewrap: symlinks and interpreters ------------------------------------------


def _linked_tool(tmp_path: Path) -> tuple[Path, Path]:
    """An npm-style install under tmp: `links/tool` -> `pkg/lib/node_modules/tool/cli.py`, whose `#!`
    interpreter is a virtualenv-style link `venv/bin/python` (also under tmp), and which imports a
    module beside it. Returns (the link, the script)."""
    package = tmp_path / "pkg" / "lib" / "node_modules" / "tool"
    package.mkdir(parents=True)
    (package / "helper.py").write_text("WORD = 'linked'\n")
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)
    script = package / "cli.py"
    script.write_text(f"#!{venv / 'python'}\nimport os, sys\nsys.path.insert(0, os.path.dirname(os.path.realpath("
                      "__file__)))\nimport helper\nopen('ran.txt', 'w').write(helper.WORD + '\\n')\n")
    script.chmod(0o755)
    links = tmp_path / "links"
    links.mkdir()
    link = links / "tool"
    link.symlink_to(os.path.relpath(script, links))
    return link, script


def test_program_files_follow_links_packages_and_interpreters(tmp_path: Path) -> None:
    link, script = _linked_tool(tmp_path)
    files = program_files(str(link), os.environ.get("PATH"))
    assert link.parent in files and script.parent in files
    assert tmp_path / "pkg" / "lib" / "node_modules" in files  # the whole package tree
    assert tmp_path / "venv" / "bin" in files and tmp_path / "venv" in files  # the interpreter's prefix
    assert program_files(str(tmp_path / "nothing"), "") == []


@pytest.mark.parametrize("isolate", [pytest.param(True, marks=needs_bwrap), False])
def test_a_symlinked_script_agent_runs(ws: Workspace, repo: Path, tmp_path: Path, isolate: bool) -> None:
    link, _script = _linked_tool(tmp_path)
    record = tasks.create_sandbox(ws, "run the linked tool", "command", isolate=isolate, command=[str(link)])
    tasks.start(ws, record.id)
    _reviewed(ws, record.id)
    assert git(repo, "show", f"{record.branch}:ran.txt") == "linked"


# -- bad input: a program that cannot run -------------------------------------------------------------


def test_a_missing_or_unrunnable_program_is_one_line_and_makes_nothing(ws: Workspace, bin_dir: Path,
                                                                      tmp_path: Path) -> None:
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\necho hi\n")  # not executable
    orphan = tmp_path / "orphan.sh"
    orphan.write_text("#!/no/such/interpreter\necho hi\n")
    orphan.chmod(0o755)
    needs_env = tmp_path / "needs-env.sh"
    needs_env.write_text("#!/usr/bin/env no-such-interpreter-xyz\n")
    needs_env.chmod(0o755)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    (bin_dir / "notexec").write_text("#!/bin/sh\n")
    cases = {
        str(tmp_path / "nope"): "does not exist",
        str(plain): "is not executable",
        str(tmp_path): "is a directory",
        str(dangling): "which does not exist",
        "no-such-program-xyz": "is not on PATH",
        "notexec": "is on PATH at",
        str(orphan): "runs under '/no/such/interpreter', which is not installed",
        str(needs_env): "runs under 'no-such-interpreter-xyz', which is not installed",
    }
    for program, needle in cases.items():
        with pytest.raises(LoomError) as raised:
            tasks.create_sandbox(ws, "task", "command", command=[program])
        message = str(raised.value)
        assert needle in message and "\n" not in message and raised.value.exit_code == 2, message
    _nothing_made(ws)


def test_the_command_line_says_so_in_one_line_with_exit_2(repo: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\n")
    for program, needle in ((str(tmp_path / "nope"), "does not exist"), (str(plain), "is not executable")):
        done = subprocess.run([sys.executable, "-m", "loomtui", "sandbox", "new", "--runtime", "command",
                               "--task", "t", "--", program], cwd=repo, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and needle in done.stderr, done.stderr
    workspace = open_workspace(repo)
    try:
        _nothing_made(workspace)
    finally:
        workspace.close()


def test_a_program_loom_yaml_names_by_a_relative_path_is_the_repository_s_from_any_folder(repo: Path) -> None:
    """`runtimes: {toy: {argv: [./scripts/agent.sh, '{task}']}}` ran from the repository's top folder only: from
    `app/`, `sandbox new` and `plan run` said "does not exist ... install it", doctor "not on PATH", and the app's
    form listed the runtime as not installed (the program was looked for from where loomtui ran)."""
    from loomtui.config import load_config
    from loomtui.execution.runtimes import runtime_installed
    from tests.conftest import run_cli

    agent = repo / "scripts" / "agent.sh"
    agent.parent.mkdir()
    agent.write_text("#!/bin/sh\necho \"$1\" > notes.txt\n")
    agent.chmod(0o755)
    (repo / "app").mkdir()
    (repo / "app" / "items.py").write_text("x = 1\n")
    (repo / ".loom").mkdir()
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nruntimes:\n  toy: {argv: [./scripts/agent.sh, '{task}']}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a runtime of our own")
    made = run_cli(repo / "app", "sandbox", "new", "--runtime", "toy", "--task", "t", "--no-start", "--json")
    assert made.returncode == 0, made.stderr
    record = open_workspace(repo).store.get_sandbox(json.loads(made.stdout)["id"])
    assert record is not None and record.data["launch"]["argv"][0] == str(Path(record.worktree) / "scripts" / "agent.sh")
    doctor = run_cli(repo / "app", "doctor")
    assert "runtime toy" in doctor.stdout and "./scripts/agent.sh -> " in doctor.stdout, doctor.stdout
    runtime = load_config(repo).runtimes["toy"]
    assert runtime_installed(runtime, repo) and not runtime_installed(runtime, repo / "app")


# -- credentials per runtime ----------------------------------------------------------------------------


def _spec(ws: Workspace, runtime: str) -> LaunchSpec:
    config = ws.load_config().runtimes[runtime]
    return prepare_launch(config, {"task": "t", "context_file": "c.md", "sandbox": "x", "worktree": "w",
                                   "script": "s", "mcp_config": "m.json"}, search_path=os.environ["PATH"])


@pytest.mark.parametrize("runtime", ["claude", "codex", "aider"])
def test_each_vendor_gets_its_documented_variables_and_nothing_else(ws: Workspace, bin_dir: Path,
                                                                    runtime: str) -> None:
    stand_in(bin_dir, runtime, "pass\n")
    source = {
        "PATH": "/usr/bin", "HOME": "/home/u", "LOOM_TEST_SECRET": "no", "GITHUB_TOKEN": "no",
        "ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "ANTHROPIC_AUTH_TOKEN": "t",
        "CLAUDE_CODE_OAUTH_TOKEN": "o", "CLAUDE_CODE_USE_VERTEX": "1", "ANTHROPIC_VERTEX_PROJECT_ID": "p",
        "CLOUD_ML_REGION": "us-east5", "GOOGLE_APPLICATION_CREDENTIALS": "/k.json", "AWS_SECRET_ACCESS_KEY": "a",
        "OPENAI_API_KEY": "o", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_BASE": "http://x/v1",
        "CODEX_HOME": "/home/u/.codex-x", "AIDER_MODEL": "openai/m", "HTTPS_PROXY": "http://proxy:3128",
        "LOOMTUI_STORE": "postgresql://loom:pw@db/loom", "PGPASSWORD": "pw", "PGHOST": "db",
    }
    env = agent_environment(_spec(ws, runtime), source, {})
    assert "LOOM_TEST_SECRET" not in env and "GITHUB_TOKEN" not in env
    assert not {"LOOMTUI_STORE", "PGPASSWORD", "PGHOST"} & set(env)  # a team store's credentials stay outside
    assert env["HTTPS_PROXY"] == "http://proxy:3128"  # they all talk to a model API
    wanted = {
        "claude": {"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN",
                   "CLAUDE_CODE_USE_VERTEX", "ANTHROPIC_VERTEX_PROJECT_ID", "CLOUD_ML_REGION",
                   "GOOGLE_APPLICATION_CREDENTIALS"},
        "codex": {"OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME"},
        "aider": {"OPENAI_API_KEY", "OPENAI_API_BASE", "ANTHROPIC_API_KEY", "AIDER_MODEL"},
    }[runtime]
    assert wanted <= set(env), wanted - set(env)
    # A cloud's credentials only reach the agent when it is told to use that cloud.
    assert "AWS_SECRET_ACCESS_KEY" not in env
    if runtime == "claude":
        bedrock = agent_environment(_spec(ws, runtime), {**source, "CLAUDE_CODE_USE_BEDROCK": "1"}, {})
        assert bedrock["AWS_SECRET_ACCESS_KEY"] == "a"
        assert "GOOGLE_APPLICATION_CREDENTIALS" not in agent_environment(
            _spec(ws, runtime), {k: v for k, v in source.items() if k != "CLAUDE_CODE_USE_VERTEX"}, {})
    else:
        assert "ANTHROPIC_AUTH_TOKEN" not in env and "CLAUDE_CODE_OAUTH_TOKEN" not in env


def test_an_old_launch_record_without_the_new_fields_still_loads() -> None:
    spec = LaunchSpec.from_data({"runtime": "claude", "argv": ["claude"], "mode": "headless", "network": True,
                                 "env_names": ["ANTHROPIC_API_KEY"], "state_paths": [], "output": "plain",
                                 "assisted_by": "Claude Code"})
    assert spec.env_prefixes == () and spec.env_switched == ()
    assert LaunchSpec.from_data(json.loads(json.dumps(spec.to_data()))) == spec


def test_credential_status_says_what_is_needed_and_what_is_missing(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}
    missing = credential_status("claude", home)
    assert not missing.ok and "ANTHROPIC_API_KEY | ANTHROPIC_AUTH_TOKEN | CLAUDE_CODE_OAUTH_TOKEN" in (
        missing.summary())
    assert credential_status("claude", {**home, "ANTHROPIC_AUTH_TOKEN": "t"}).present == ("ANTHROPIC_AUTH_TOKEN",)
    assert not credential_status("claude", {**home, "ANTHROPIC_API_KEY": ""}).ok  # empty is not set
    partial = credential_status("claude", {**home, "CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "r"})
    assert not partial.ok
    assert "CLAUDE_CODE_USE_VERTEX is set but ANTHROPIC_VERTEX_PROJECT_ID is missing" in partial.summary()
    (tmp_path / ".codex").mkdir()
    (tmp_path / ".codex" / "auth.json").write_text("{}")
    codex = credential_status("/usr/bin/codex", home)
    assert codex.ok and codex.login == str(tmp_path / ".codex" / "auth.json")
    assert credential_status("aider", {**home, "GEMINI_API_KEY": "g"}).ok
    assert credential_status("mytool", home).ok and credential_status("mytool", home).needs == ()


def test_any_provider_key_aider_is_passed_is_enough_for_it(tmp_path: Path) -> None:
    """The README: Aider runs on any of the keys it is passed (COHERE_API_KEY was passed, yet doctor said
    that with it alone Aider had no credentials)."""
    keys = [name for name in VENDOR_ENV["aider"].names if name.endswith("_API_KEY")]
    assert "COHERE_API_KEY" in keys
    assert [k for k in keys if not credential_status("aider", {"HOME": str(tmp_path), k: "key"}).ok] == []


def test_doctor_reports_each_runtimes_credentials(repo: Path, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "CODEX_API_KEY", "CODEX_HOME", "CLAUDE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "t")
    checks = {c.name: c for c in run_doctor(repo).checks}
    assert checks["runtime claude credentials"].level == "ok"
    assert "ANTHROPIC_AUTH_TOKEN" in checks["runtime claude credentials"].detail
    codex = checks["runtime codex credentials"]
    assert codex.level == "warning" and "OPENAI_API_KEY | CODEX_API_KEY" in codex.detail
    assert "runtime command credentials" not in checks
    assert checks["worktrees"].level == "ok" and str(sb.configured_worktrees_root(open_workspace(repo))) in (
        checks["worktrees"].detail)
    assert "runtime claude permissions" not in checks  # the built-in asks through loomtui's MCP server


def test_doctor_warns_when_a_claude_argv_would_refuse_permissions_unasked(repo: Path) -> None:
    """An argv replaces the built-in one whole: one copied without the prompt tool never asks a lead."""
    (repo / ".loom").mkdir(exist_ok=True)
    (repo / ".loom" / "loom.yaml").write_text(
        'version: 1\nruntimes:\n  claude:\n    argv: ["claude", "-p", "{task}", "--output-format", "stream-json"]\n'
        '  claude-tty:\n    argv: ["/usr/local/bin/claude", "{task}"]\n    mode: interactive\n')
    checks = {c.name: c for c in run_doctor(repo).checks}
    warned = checks["runtime claude permissions"]
    assert warned.level == "warning" and "no --permission-prompt-tool" in warned.detail
    assert "runtime claude-tty permissions" not in checks  # a person at the terminal answers its prompts


def test_doctor_says_when_no_one_is_named_and_git_would_refuse_your_commits(repo: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`init` warned once; `doctor` said nothing, and the next step it gave (`git commit`) failed with git's
    "Author identity unknown" (a helper's first hour, on a machine with no git identity)."""
    assert "identity" not in {c.name for c in run_doctor(repo).checks}
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)
    git(repo, "config", "--unset", "user.email")
    [said] = [c for c in run_doctor(repo).checks if c.name == "identity"]
    assert said.level == "warning" and "git cannot name you as a commit's author: loomtui records you as " in \
        said.detail
    monkeypatch.setenv("LOOM_USER", "dev@example.com")  # named for loomtui; git still has no one for a commit
    [said] = [c for c in run_doctor(repo).checks if c.name == "identity"]
    assert said.detail.startswith("git cannot name you as a commit's author: `git commit` stops at"), said.detail
    monkeypatch.setenv("EMAIL", "dev@example.com")  # as git finds an author without user.email: no warning
    assert "identity" not in {c.name for c in run_doctor(repo).checks}


def test_each_state_path_is_the_sandboxs_own_with_the_users_login_and_settings_on_top(tmp_path: Path) -> None:
    """One own copy per state path that exists (one a variable names too); a path holding the home or
    the repository is none (the agent would have written all of it); what the agent left where a
    mount point goes (a symlink carrying the user's settings elsewhere) is replaced."""
    home, custom, repo = tmp_path / "home", tmp_path / "codex-home", tmp_path / "repo"
    for folder in (home / ".codex" / "prompts", custom, repo):
        folder.mkdir(parents=True)
    (home / ".codex" / "auth.json").write_text("{}")
    (home / ".codex" / "config.toml").write_text("model = 'x'\n")
    spec = LaunchSpec(runtime="codex", argv=("codex",), mode="headless", network=True, env_names=(),
                      state_paths=("~/.codex", "$CODEX_HOME"), output="plain", assisted_by="Codex CLI")
    root = tmp_path / "sandbox" / "runtime"
    state = runtime_state(root, spec, {"HOME": str(home), "CODEX_HOME": str(custom)}, keep_out=[home, repo])
    assert state.paths == (home / ".codex", custom)
    assert state.logins == (home / ".codex" / "auth.json",)
    own = dict((user, mine) for mine, user in state.own)[home / ".codex"]
    sources = {path: source for source, path in state.obeyed}
    # What the user has is theirs, read-only; what they lack is an empty one of the sandbox's, read-only too
    # (an agent wrote `disableAllHooks` into a settings file the user had none of).
    assert sources[home / ".codex" / "config.toml"] == home / ".codex" / "config.toml"
    assert sources[home / ".codex" / "prompts"] == home / ".codex" / "prompts"
    assert sources[home / ".codex" / "hooks.json"] == own / "hooks.json"
    assert (own / "hooks.json").read_text() == "{}\n" and (own / "AGENTS.md").read_text() == ""
    assert (own / "skills").is_dir() and not any((own / "skills").iterdir())
    assert own.parent == root and {"auth.json", "config.toml", "prompts"} <= {p.name for p in own.iterdir()}
    (own / "config.toml").unlink()
    (own / "config.toml").symlink_to(repo / "planted")
    (own / "prompts").rmdir()
    (own / "prompts").write_text("a file where a folder is mounted")
    again = runtime_state(root, spec, {"HOME": str(home)}, keep_out=[home, repo])
    assert again.paths == (home / ".codex",)
    assert (own / "config.toml").is_file() and not (own / "config.toml").is_symlink() and (own / "prompts").is_dir()
    assert not (repo / "planted").exists()
    for held in (home, repo):  # $CODEX_HOME set to the home or the repository
        assert runtime_state(root, spec, {"HOME": str(home), "CODEX_HOME": str(held)}, keep_out=[home, repo]).paths \
            == (home / ".codex",)


def test_a_state_file_is_copied_once_then_the_sandboxs_own(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".claude.json").write_text('{"theme": "dark"}')
    config_dir = tmp_path / "claude-config"
    config_dir.mkdir()
    (config_dir / ".claude.json").write_text('{"theme": "light"}')
    spec = LaunchSpec(runtime="claude", argv=("claude",), mode="headless", network=True, env_names=(),
                      state_paths=STATE_PATHS["claude"], output="stream-json", assisted_by="Claude Code")
    env = {"HOME": str(home), "CLAUDE_CONFIG_DIR": str(config_dir)}
    state = runtime_state(tmp_path / "runtime", spec, env, keep_out=[home])
    assert state.paths == (home / ".claude.json", config_dir)
    file_copy, folder = (mine for mine, _user in state.own)
    assert file_copy.read_text() == '{"theme": "dark"}'
    assert (folder / ".claude.json").read_text() == '{"theme": "light"}'
    assert oct(file_copy.stat().st_mode & 0o777) == "0o600"
    file_copy.write_text('{"mcpServers": {}}')
    (home / ".claude.json").write_text('{"theme": "solarized"}')
    runtime_state(tmp_path / "runtime", spec, env, keep_out=[home])
    assert file_copy.read_text() == '{"mcpServers": {}}'  # the sandbox's now: not copied over again
    # A FIFO the agent left where the copy goes is not written into (that would block): a copy replaces it.
    (folder / ".claude.json").unlink()
    os.mkfifo(folder / ".claude.json")
    assert runtime_state(tmp_path / "runtime", spec, env, keep_out=[home]).paths == (home / ".claude.json", config_dir)
    assert (folder / ".claude.json").read_text() == '{"theme": "light"}'


@pytest.mark.parametrize(("task", "given"), [
    ("/api/refunds returns a 500", " /api/refunds returns a 500"),  # an "Invalid command", the model never asked
    ("!make test is flaky", " !make test is flaky"),  # a shell command aider would have run
    ("fix /api/refunds", "fix /api/refunds"),
])
def test_aider_gets_a_task_as_a_message_never_as_one_of_its_commands(ws: Workspace, bin_dir: Path, task: str,
                                                                      given: str) -> None:
    runtimes = ws.load_config().runtimes
    for program in ("aider", "codex"):
        stand_in(bin_dir, program, "pass\n")
    spec = prepare_launch(runtimes["aider"], {"task": task, "context_file": "c.md"}, search_path=os.environ["PATH"])
    assert spec.argv[-1] == f"--message={given}"
    other = prepare_launch(runtimes["codex"], {"task": task}, search_path=os.environ["PATH"])
    assert other.argv[-1] == task  # another runtime gets it as written


def test_a_claude_argv_spelling_options_with_equals_is_read_as_the_cli_reads_it(ws: Workspace, bin_dir: Path) -> None:
    """`--output-format=stream-json` was taken for plain output (no activity parsed), and
    `--permission-prompt-tool=…` for no prompt tool (doctor warned of refusals that never happen)."""
    from loomtui.config import RuntimeConfig
    from loomtui.execution.runtimes import OUTPUT_CLAUDE_STREAM, unasked_permissions

    stand_in(bin_dir, "claude", "pass\n")
    runtime = RuntimeConfig(name="mine", argv=("claude", "-p", "--output-format=stream-json", "--verbose",
                                              "--permission-prompt-tool=mcp__loomtui__permission_prompt", "--",
                                              "{task}"))
    assert prepare_launch(runtime, {"task": "t"}, search_path=os.environ["PATH"]).output == OUTPUT_CLAUDE_STREAM
    assert unasked_permissions(runtime) == ""


def test_doctor_warns_of_your_own_claude_settings_that_take_the_gate_out_of_every_sandbox(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    assert "claude settings" not in {c.name for c in run_doctor(repo).checks}  # none: nothing to say
    settings = home / ".claude" / "settings.json"
    for written, said in (({"disableAllHooks": True}, "has disableAllHooks"),
                          ({"permissions": {"defaultMode": "bypassPermissions"}}, "bypassPermissions")):
        settings.write_text(json.dumps(written))
        check = {c.name: c for c in run_doctor(repo).checks}["claude settings"]
        assert check.level == "warning" and said in check.detail and str(settings) in check.detail


def test_codex_is_read_by_its_events_only_where_its_options_ask_for_them(ws: Workspace, bin_dir: Path) -> None:
    """`--json` among Codex's options makes its output events (its tokens, its errors); a task reading `--json`,
    after `--`, is no option, and a runtime of one's own without it is read as plain output."""
    from loomtui.config import RuntimeConfig
    from loomtui.execution.runtimes import OUTPUT_CODEX_JSON, OUTPUT_PLAIN

    stand_in(bin_dir, "codex", "pass\n")
    spec = _spec(ws, "codex")
    assert (spec.output, spec.faults) == (OUTPUT_CODEX_JSON, "codex-json")
    plain = RuntimeConfig(name="mine", argv=("codex", "exec", "--", "{task}"))
    for task in ("--json", "--output-format=stream-json"):
        spec = prepare_launch(plain, {"task": task}, search_path=os.environ["PATH"])
        assert (spec.output, spec.faults) == (OUTPUT_PLAIN, "codex"), task
