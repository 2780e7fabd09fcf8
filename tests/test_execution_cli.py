"""`loomtui sandbox ...`, `doctor`, `script-agent`: the installed command, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loomtui.errors import LoomError
from loomtui.execution import agent_control, isolation, review
from loomtui.execution import sandboxes as sb
from loomtui.execution.doctor import run_doctor
from loomtui.execution.sandbox_paths import TMUX
from loomtui.workflow import tasks
from loomtui.workflow.engine import wait_until_settled
from loomtui.workspace import open_workspace
from tests.conftest import agent_ended, git, run_cli, wait_until
from tests.test_execution import stand_in, write_config

LOOMTUI = shutil.which("loomtui") or "loomtui"


def installed(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed `loomtui` command, in its own process."""
    return subprocess.run([LOOMTUI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The same command's parser and handlers in this process (no Python start for each call); each
    test below runs its first command through the installed one."""
    return run_cli(cwd, *args)


def one_line_error(done: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert needle in done.stderr, done.stderr


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text('- {write: hello.txt, content: "hi\\n"}\n- {log: "line {n}", repeat: 3, every: 0.05}\n'
                    '- {commit: "Say hello"}\n')
    return path


def test_a_sandbox_from_the_command_line(repo: Path, script: Path) -> None:
    done = installed(repo, "sandbox", "new", "--runtime", "script", "--task", "say hello", "--script", str(script),
                     "--json")
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    sandbox_id = created["id"]
    assert created["branch"] == f"loom/{sandbox_id}" and created["isolation_label"] in ("isolated (bwrap)",
                                                                                        "NOT isolated")
    assert created["step"] == "agent"  # started at once, under the workflow's supervisor
    follow = run(repo, "sandbox", "logs", sandbox_id, "-f")
    assert follow.returncode == 0
    commit = git(repo, "rev-parse", "--short", f"loom/{sandbox_id}")
    assert follow.stdout.splitlines()[-4:] == ["line 1", "line 2", "line 3", f"[script] commit Say hello ({commit})"]
    # The agent left a commit: its supervisor reviews it (no gates here; the built-in policy asks for
    # one approval from anyone), with no command run.
    workspace = open_workspace(repo)
    try:
        settled = wait_until_settled(workspace, sandbox_id, timeout=60)
        escalation = workspace.store.get_sandbox(sandbox_id).data["review_escalation"]
    finally:
        workspace.close()
    assert settled.step == "wait-decision" and f"escalation #{escalation}" in settled.waits_on
    listing = json.loads(run(repo, "sandbox", "list", "--json").stdout)
    assert [(s["id"], s["status"], s["step"]) for s in listing["sandboxes"]] == [
        (sandbox_id, "awaiting_review", "wait-decision")]
    assert listing["sandboxes"][0]["waits_on"] == settled.waits_on  # what `sandbox new --json` says, for scripts
    assert listing["sandboxes"][0]["next"].endswith(f"(`loomtui escalation approve|reject {escalation}`)")
    assert listing["reconcile"]["orphaned"] == []
    table = run(repo, "sandbox", "list").stdout
    assert sandbox_id in table and "say hello" in table and "awaiting_review" in table
    assert f"next: waits for {settled.waits_on}" in table
    advanced = json.loads(run(repo, "sandbox", "advance", sandbox_id, "--json").stdout)["advanced"]
    assert [(a["status"], a["step"], a["done"]) for a in advanced] == [("awaiting_review", "wait-decision", [])]
    stat = run(repo, "sandbox", "diff", sandbox_id, "--stat")
    assert stat.stdout.splitlines()[-1] == "1 file, +1 -0" and "hello.txt" in stat.stdout
    patch = run(repo, "sandbox", "diff", sandbox_id[:4]).stdout  # a unique prefix is enough
    assert "+hi" in patch and patch.endswith("\n")
    # The patch is whole: it applies where the sandbox started (the README pipes it to `git apply`).
    assert subprocess.run(["git", "apply", "--check", "-"], cwd=repo, input=patch, text=True).returncode == 0
    assert json.loads(run(repo, "sandbox", "diff", sandbox_id, "--json").stdout)["patch"] == patch
    removed = run(repo, "sandbox", "rm", sandbox_id)
    assert removed.returncode == 0 and f"branch loom/{sandbox_id} kept" in removed.stdout
    assert "no sandboxes" in run(repo, "sandbox", "list").stdout
    assert sandbox_id in run(repo, "sandbox", "list", "--all").stdout
    actions = [e["action"] for e in json.loads(run(repo, "audit", "tail", "--json").stdout)]
    assert actions == ["sandbox.planned", "context.sliced", "sandbox.running", "sandbox.exited",
                       "sandbox.gating", "eval.run", "policy.evaluated",
                       "escalation.opened", "sandbox.awaiting_review",
                       "sandbox.archived", "escalation.withdrawn"]  # nothing is left to decide
    # Made, then started: what it says once its supervisor has answered, before the agent runs.
    later = json.loads(run(repo, "sandbox", "new", "--runtime", "script", "--task", "say hello again",
                           "--script", str(script), "--no-start", "--json").stdout)["id"]
    started = run(repo, "sandbox", "start", later)
    assert started.returncode == 0 and "(planned)" not in started.stdout, started.stdout
    assert started.stdout.startswith(f"sandbox {later} ") and f"sandbox logs {later} -f" in started.stdout
    workspace = open_workspace(repo)
    try:
        assert wait_until_settled(workspace, later, timeout=60).step == "wait-decision"
    finally:
        workspace.close()
    planned = json.loads(run(repo, "sandbox", "new", "--runtime", "command", "--task", "later", "--no-start",
                             "--json", "--", "true").stdout)["id"]
    none = run(repo, "sandbox", "logs", planned)  # nothing printed: said, not a silent exit 0
    assert none.returncode == 0 and none.stdout == "" and "the agent wrote no output (yet)" in none.stderr
    # Lines, then one of 1.5 MB: `-n 2000` printed only what the last MiB holds, the rest left out unsaid.
    log = open_workspace(repo).paths.state_dir / "sandboxes" / planned / "agent.log"
    log.write_text("".join(f"line {n}\n" for n in range(10)) + "x" * 1_500_000 + "\nlast\n")
    tail = run(repo, "sandbox", "logs", planned, "-n", "2000")
    assert "line 0" not in tail.stdout and tail.stdout.endswith("last\n")
    assert f"sandbox {planned}: only the last 1 MiB of its log is read here" in tail.stderr, tail.stderr
    assert str(log) in tail.stderr


def test_bad_input_is_one_line_and_the_right_exit_code(repo: Path, script: Path, tmp_path: Path) -> None:
    one_line_error(installed(repo, "sandbox", "new", "--runtime", "script", "--task", "x", "--script", str(script),
                             "--base", "no-such-ref"), 2, "base ref 'no-such-ref' does not exist")
    write_config(repo, 'ghost:\n  argv: ["no-such-agent-binary", "{task}"]\n')
    one_line_error(run(repo, "sandbox", "new", "--runtime", "ghost", "--task", "x"), 2, "is not on PATH")
    one_line_error(run(repo, "sandbox", "new", "--runtime", "script", "--task", "   ", "--script", str(script)),
                   2, "the task is empty")
    # A byte no UTF-8 text holds (the shell's $'\x9b'): the store refused it, an "internal error" (exit 70).
    one_line_error(run(repo, "sandbox", "new", "--runtime", "script", "--task", "bad \udc9b byte", "--script",
                       str(script)), 2, "--task is not UTF-8 text (byte 0x9b at character 5)")
    one_line_error(run(repo, "claim", "add", "--sandbox", "s1", "--reason", "r\udc9b", "a.py"), 2,
                   "--reason is not UTF-8 text (byte 0x9b at character 2)")
    with pytest.raises(LoomError, match=r"the task is not UTF-8 text \(U\+D800 at character 3\)"):
        tasks.create_sandbox(open_workspace(repo), "a \ud800", "script", script=script)  # JSON's lone \ud800 (MCP)
    one_line_error(run(repo, "sandbox", "logs", "../../etc"), 2, "is not a sandbox id")
    one_line_error(run(repo, "sandbox", "stop", "abcdef"), 2, "no sandbox 'abcdef'")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {log: fine}\n- {write: /etc/passwd, content: x}\n")
    one_line_error(run(repo, "script-agent", str(bad)), 2, "bad.yaml:2: [1].write: must be a path inside")
    one_line_error(run(repo, "sandbox", "new", "--runtime", "script", "--task", "x", "--script", str(bad)),
                   2, "bad.yaml:2:")
    policy = repo / ".loom" / "policy.yaml"
    policy.write_text("version: 1\nrules: x\n")
    one_line_error(run(repo, "sandbox", "new", "--runtime", "script", "--task", "x", "--script", str(script)),
                   2, ".loom/policy.yaml:2: rules")
    policy.unlink()
    # A --claim naming no file: how a file not written yet is claimed, as `claim add` says (it said nothing).
    one_line_error(run(repo, "sandbox", "new", "--runtime", "script", "--task", "x", "--script", str(script),
                       "--claim", "nope.py"), 2, "(a file not written yet: the agent claims it as it writes it")
    assert run(repo, "sandbox", "list", "--json").stdout.count('"id"') == 0  # none of that created anything
    assert git(repo, "branch", "--list", "loom/*") == ""

    unstarted = run(repo, "sandbox", "new", "--runtime", "script", "--task", "x", "--script", str(script), "--no-start")
    assert "  next     waits for a person to start it" in unstarted.stdout and "follow" not in unstarted.stdout  # no agent
    assert "detached" not in unstarted.stderr
    run(repo, "sandbox", "rm", unstarted.stdout.split()[1].rstrip(":"), "--force", "--delete-branch")
    # From a detached HEAD: no branch to merge into, said now (it was found at the merge, after the approval).
    git(repo, "checkout", "-q", "--detach", "HEAD")
    detached = run(repo, "sandbox", "new", "--runtime", "script", "--task", "x", "--script", str(script), "--no-start")
    assert detached.returncode == 0 and "warning: HEAD is detached here, so its change has no branch" in detached.stderr
    assert "--into BRANCH" in detached.stderr
    run(repo, "sandbox", "rm", detached.stdout.split()[1].rstrip(":"), "--force", "--delete-branch")
    git(repo, "checkout", "-q", "main")
    created = json.loads(run(repo, "sandbox", "new", "--runtime", "script", "--task", "x", "--script", str(script),
                             "--no-start", "--json").stdout)
    sandbox_id = created["id"]
    assert created["status"] == "planned"
    one_line_error(run(repo, "sandbox", "stop", sandbox_id), 1, "is planned, not running")
    one_line_error(run(repo, "sandbox", "merge", sandbox_id), 1, "not approved")
    one_line_error(run(repo, "attach", sandbox_id), 1, "runs headless")
    # An interactive one, live in its tmux session, attached from no terminal: loomtui says so, not tmux.
    from loomtui.execution.sandbox_paths import tmux_session

    workspace = open_workspace(repo)
    workspace.store.update_sandbox(sandbox_id, status="running", data={"launch": {"mode": "interactive"}})
    subprocess.run([*TMUX, "new-session", "-d", "-s", tmux_session(sandbox_id), "sleep", "60"], check=True)
    try:
        with pytest.MonkeyPatch.context() as env:
            env.delenv("TMUX", raising=False)
            one_line_error(run(repo, "attach", sandbox_id), 2,
                           f"attaching needs a terminal (stdin and stdout are not one; tmux draws there); "
                           f"`loomtui sandbox logs {sandbox_id}`")
    finally:
        subprocess.run([*TMUX, "kill-session", "-t", f"={tmux_session(sandbox_id)}"], check=False)
        workspace.store.update_sandbox(sandbox_id, status="planned")
        workspace.close()
    (Path(created["worktree"]) / "scratch.txt").write_text("uncommitted\n")
    one_line_error(run(repo, "sandbox", "rm", sandbox_id), 1, "has uncommitted changes (scratch.txt)")
    # The engine says what is wrong and why; the flag that goes ahead anyway is the CLI's to name.
    with pytest.raises(review.RemoveRefused) as refused:
        review.remove(open_workspace(repo), sandbox_id)
    assert (refused.value.reason, refused.value.branch) == ("uncommitted", f"loom/{sandbox_id}")
    assert "--" not in str(refused.value)
    one_line_error(run(repo, "sandbox", "rm", sandbox_id, "--delete-branch"), 1,
                   f"has uncommitted changes (scratch.txt); nothing was removed. --force commits them to "
                   f"loom/{sandbox_id} first")
    assert run(repo, "sandbox", "rm", sandbox_id, "--force").returncode == 0
    assert git(repo, "show", f"loom/{sandbox_id}:scratch.txt") == "uncommitted"


def test_rm_done_archives_every_merged_or_rejected_sandbox_and_names_those_it_refused(
        repo: Path, script: Path) -> None:
    """Merged and rejected rows piled up in the list, each removed by hand, one id at a time."""
    def planned() -> dict[str, str]:
        return dict(json.loads(run(repo, "sandbox", "new", "--runtime", "script", "--task", "x", "--script",
                                   str(script), "--no-start", "--json").stdout))

    merged, dirty, rejected, waiting = planned(), planned(), planned(), planned()
    workspace = open_workspace(repo)
    for made, status in ((merged, "merged"), (dirty, "merged"), (rejected, "rejected")):
        workspace.store.update_sandbox(made["id"], status=status)
    workspace.close()
    (Path(dirty["worktree"]) / "scratch.txt").write_text("uncommitted\n")
    done = run(repo, "sandbox", "rm", "--done")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"removed sandbox {merged['id']}; branch loom/{merged['id']} deleted" in done.stdout
    assert f"removed sandbox {rejected['id']}" in done.stdout
    assert (f"refused: sandbox {dirty['id']} has uncommitted changes (scratch.txt); nothing was removed. --force "
            f"commits them to loom/{dirty['id']} first") in done.stdout
    assert done.stdout.rstrip().endswith("1 of 3 refused")
    listed = json.loads(run(repo, "sandbox", "list", "--json", "--all").stdout)["sandboxes"]
    statuses = {r["id"]: r["status"] for r in listed}
    assert statuses == {merged["id"]: "archived", rejected["id"]: "archived", dirty["id"]: "merged",
                        waiting["id"]: "planned"}  # a planned task is not done with
    # What each was is kept: a script counting outcomes told merged from rejected no more once archived.
    was = {r["id"]: r["data"].get("archived_from") for r in listed if r["status"] == "archived"}
    assert was == {merged["id"]: "merged", rejected["id"]: "rejected"}
    text = run(repo, "sandbox", "list", "--all").stdout  # so does the table a person reads
    row = {line.split()[0]: line for line in text.splitlines() if line.split()[:1] in ([merged["id"]], [rejected["id"]])}
    assert row[merged["id"]].endswith("[was merged]") and row[rejected["id"]].endswith("[was rejected]"), text
    assert (Path(dirty["worktree"]) / "scratch.txt").read_text() == "uncommitted\n"
    again = json.loads(run(repo, "sandbox", "rm", "--done", "--json").stdout)
    assert again["removed"] == [] and [r["sandbox_id"] for r in again["refused"]] == [dirty["id"]]
    one_line_error(run(repo, "sandbox", "rm", "--done", "--force"), 2, "--force and --delete-branch go with one ID")
    one_line_error(run(repo, "sandbox", "rm", merged["id"], "--done"), 2, "not allowed with argument")


def test_diff_stat_shows_a_file_name_with_a_newline_on_one_row(repo: Path, script: Path) -> None:
    """A file named `nl\nfake: line.py` printed as two rows of `sandbox diff --stat`."""
    created = json.loads(run(repo, "sandbox", "new", "--runtime", "script", "--task", "x", "--script", str(script),
                             "--no-start", "--json").stdout)
    tree = Path(created["worktree"])
    (tree / "nl\nfake: line.py").write_text("x\n")
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "--no-verify", "-m", "an odd name")
    stat = run(repo, "sandbox", "diff", created["id"], "--stat").stdout.splitlines()
    assert stat == ["     1      0  'nl\\nfake: line.py'", "1 file, +1 -0"], stat


def test_help_lists_the_execution_commands(repo: Path) -> None:
    top = installed(repo, "--help").stdout
    for command in ("sandbox", "attach", "doctor", "script-agent"):
        assert command in top
    sandbox_help = run(repo, "sandbox", "--help").stdout
    for command in ("new", "list", "logs", "stop", "pause", "resume", "attach", "diff", "merge", "rm"):
        assert f"    {command}" in sandbox_help


def test_doctor_reports_tools_runtimes_store_and_sandboxes(repo: Path, tmp_path: Path) -> None:
    done = installed(repo, "doctor", "--json")
    assert done.returncode == 0, done.stdout
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert {"git", "isolation", "tmux", "repository", "store", "audit", "sandboxes", "runtime claude",
            "runtime script"} <= set(checks)
    assert checks["store"]["level"] == "ok" and checks["runtime script"]["level"] == "ok"
    # Whether each agent's memory and processes are limited, and to what (`limits:`), or why not.
    assert checks["limits"]["detail"].startswith("each agent and all it starts: at most " if checks["limits"]["level"]
                                                 == "ok" else "agents' memory and processes are not limited")
    assert checks["limits"]["detail"].endswith("a file over 100M is neither saved from a worktree nor checked "
                                               "(limits.file_size)")
    # The generic runtime's argv is a placeholder: it has no program to miss.
    assert (checks["runtime command"]["level"], checks["runtime command"]["detail"]) == (
        "ok", "runs the program given after `--`")
    assert checks["policy"]["level"] == "ok" and "built-in default" in checks["policy"]["detail"]
    # No gates: a change that breaks the tests reached review as if it passed, and doctor said all was well.
    assert checks["gates"]["level"] == "warning" and "agents' changes reach review untested" in checks["gates"]["detail"]
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    fresh = {c["name"]: c for c in json.loads(run(empty, "doctor", "--json").stdout)["checks"]}
    assert fresh["repository"]["level"] == "warning" and "has no commit yet" in fresh["repository"]["detail"]
    table = run(repo, "doctor").stdout.splitlines()  # one column for the details, however long a name
    assert len({line.index(check["detail"][:20]) for line, check in zip(table, checks.values(), strict=True)}) == 1
    outside = run(tmp_path, "doctor")
    # The machine is checked (exit 0), and it says that is all that was (a reviewer read it as a pass).
    assert outside.returncode == 0 and "not inside a git repository" in outside.stdout
    assert "only this machine's tools and the built-in runtimes were checked" in outside.stdout
    # whether the agents are installed, asked before adopting it (the runtimes were left out)
    assert "runtime claude " in outside.stdout and "runtime codex " in outside.stdout, outside.stdout
    assert "policy" not in outside.stdout  # said once: there is no repository
    (repo / ".loom").mkdir(exist_ok=True)
    (repo / ".loom" / "policy.yaml").write_text("version: 1\nrules: x\n")
    broken = run(repo, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(broken.stdout)["checks"]}
    assert broken.returncode == 1 and checks["policy"]["level"] == "error" and \
        ".loom/policy.yaml:2: rules" in checks["policy"]["detail"]
    # `loomtui init` leaves .loom/ to be committed: the CI gate and the team read the committed one.
    assert "committed" not in fresh and checks["committed"]["level"] == "warning" and \
        checks["committed"]["detail"].startswith(".loom/policy.yaml not as committed")


def test_doctor_with_the_team_s_store_away_names_the_store_and_checks_the_rest(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It said the outage as a "repository" error and left out the runtimes, gates and limits, which need no
    store."""
    monkeypatch.setenv("LOOMTUI_STORE", "postgresql://loom@127.0.0.1:1/loom")  # nothing listens on port 1
    away = run(repo, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(away.stdout)["checks"]}
    assert away.returncode == 1 and checks["store"]["level"] == "error", checks
    assert "cannot reach the database" in checks["store"]["detail"] and "repository" not in checks
    assert {"runtime script", "gates", "limits", "policy"} <= checks.keys(), checks.keys()
    monkeypatch.delenv("LOOMTUI_STORE")
    (repo / ".loom").mkdir(exist_ok=True)
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nstore: [\n")  # loom.yaml's own error: said once
    broken = {c["name"]: c for c in json.loads(run(repo, "doctor", "--json").stdout)["checks"]}
    assert broken["repository"]["level"] == "error" and "config" not in broken and "store" not in broken, broken


def test_without_bubblewrap_doctor_and_the_sandbox_say_not_isolated(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(isolation.shutil, "which",
                        lambda name, *a, **k: None if name == "bwrap" else real_which(name, *a, **k))
    isolation.isolation_status.cache_clear()
    try:
        report = run_doctor(repo)
        check = next(c for c in report.checks if c.name == "isolation")
        assert check.level == "warning" and "NOT isolated" in check.detail
        workspace = open_workspace(repo)
        (tmp_path / "s.yaml").write_text("- {log: hi}\n")
        record = tasks.create_sandbox(workspace, "task", "script", script=tmp_path / "s.yaml")
        assert record.isolation == "none" and sb.isolation_label(record) == "NOT isolated"
        with pytest.raises(LoomError, match="isolation was requested"):
            tasks.create_sandbox(workspace, "task", "script", script=tmp_path / "s.yaml", isolate=True)
        workspace.close()
    finally:
        isolation.isolation_status.cache_clear()


def test_stop_pause_resume_from_the_command_line(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    stand_in(bin_dir, "looper", "print('up', flush=True)\nwhile True:\n    time.sleep(0.05)\n")
    write_config(repo, 'looper:\n  argv: ["looper"]\n')
    sandbox_id = json.loads(installed(repo, "sandbox", "new", "--runtime", "looper", "--task", "loop",
                                      "--json").stdout)["id"]
    workspace = open_workspace(repo)
    try:
        sb.wait_for_status(workspace, sandbox_id, {"running"}, timeout=30)
        assert run(repo, "sandbox", "pause", sandbox_id).stdout.strip() == f"sandbox {sandbox_id} paused (paused)"
        # Where it goes on from is said with it (only the help said so).
        listed = json.loads(run(repo, "sandbox", "list", "--json").stdout)["sandboxes"]
        assert [s["next"] for s in listed if s["id"] == sandbox_id] == [
            f"agent paused (`loomtui sandbox resume {sandbox_id}`)"], listed
        from loomtui.tui.sandbox_text import app_step_hints
        from loomtui.workflow.steps import next_step
        assert next_step(workspace, sb.get_sandbox(workspace, sandbox_id)).line(
            app_step_hints(), hint_first=True) == "p resumes it · agent paused"
        assert run(repo, "sandbox", "resume", sandbox_id).stdout.strip() == f"sandbox {sandbox_id} resumed (running)"
        one_line_error(run(repo, "sandbox", "rm", sandbox_id), 1,
                       f"sandbox {sandbox_id} is running; stop it first (or --force to stop it and remove)")
        stopped = run(repo, "sandbox", "stop", sandbox_id, "--grace", "5")
        assert stopped.returncode == 0 and f"sandbox {sandbox_id} stopped (exited" in stopped.stdout
    finally:
        record = workspace.store.get_sandbox(sandbox_id)
        if record is not None and record.status in ("running", "paused"):
            agent_control.stop(workspace, sandbox_id, grace=0.1)
        workspace.close()


def test_script_agent_check_mode(tmp_path: Path, script: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "loomtui", "script-agent", "--check", str(script)],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0 and done.stdout.strip() == f"OK: {script}: 3 steps"
    assert not (tmp_path / "hello.txt").exists()


def test_generic_command_runtime_runs_the_given_argv_without_a_shell(tmp_path: Path) -> None:
    from loomtui.execution.sandboxes import log_path
    from loomtui.workspace import open_workspace
    from tests.conftest import demo_repo

    repo = demo_repo(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "loomtui", "sandbox", "new", "--runtime", "command", "--task", "a; rm -rf /",
         "--json", "--", "printf", "%s|", "{task}", "second arg"],
        cwd=repo, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    sandbox_id = json.loads(done.stdout)["id"]
    workspace = open_workspace(repo)
    assert agent_ended(workspace, sandbox_id).exit_code == 0
    # Each placeholder is one whole argument: the task's `;` is text, never a shell's.
    assert log_path(workspace, sandbox_id).read_text().startswith("a; rm -rf /|second arg|")
    missing = subprocess.run([sys.executable, "-m", "loomtui", "sandbox", "new", "--runtime", "command",
                              "--task", "x"], cwd=repo, capture_output=True, text=True)
    assert missing.returncode == 2 and "after `--`" in missing.stderr


def test_following_an_agent_that_fails_ends_non_zero_saying_so(repo: Path) -> None:
    """`logs -f` followed a failed agent to its end and exited 0, as for one that did its task: a script
    waiting on it went on as though it had."""
    created = run(repo, "sandbox", "new", "--runtime", "command", "--task", "fails", "--json", "--",
                  "sh", "-c", "echo trying; exit 3")
    sandbox_id = json.loads(created.stdout)["id"]
    follow = run(repo, "sandbox", "logs", sandbox_id, "-f")
    assert follow.returncode == 1 and "trying" in follow.stdout
    assert follow.stderr.startswith(f"sandbox {sandbox_id}: the agent failed (exit code 3)"), follow.stderr
    ok = run(repo, "sandbox", "new", "--runtime", "command", "--task", "works", "--json", "--", "echo", "done")
    ok_id = json.loads(ok.stdout)["id"]
    assert run(repo, "sandbox", "logs", ok_id, "-f").returncode == 0


def test_a_program_given_by_a_relative_path_is_the_one_found_from_where_loomtui_ran(repo: Path,
                                                                                     tmp_path: Path) -> None:
    """`-- ../scripts/agent.sh` passed the check from the caller's folder, then was looked for in the
    worktree, where the agent runs: "No such file or directory", and a sandbox with no change."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "agent.sh").write_text("#!/bin/sh\necho ran from its own place\n")
    (scripts / "agent.sh").chmod(0o755)
    inside = repo / "sub"
    inside.mkdir()
    relative = os.path.relpath(scripts / "agent.sh", inside)
    created = run(inside, "sandbox", "new", "--runtime", "command", "--task", "relative", "--", relative)
    assert created.returncode == 0, created.stderr
    sandbox_id = created.stdout.split()[1].rstrip(":")
    # No claim: said, since two agents on the same code then meet only at merge.
    assert created.stderr.startswith("note: no --claim: no code is held for this agent")
    workspace = open_workspace(repo)
    try:
        done = agent_ended(workspace, sandbox_id)
        assert done.exit_code == 0 and done.data["launch"]["argv"] == [str(scripts / "agent.sh")]
        assert sb.read_log_tail(workspace, sandbox_id, 5)[-1] == "ran from its own place"
    finally:
        workspace.close()


def test_a_vendor_cli_without_its_credentials_is_said_when_its_sandbox_is_made(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sandbox new --runtime claude` with no key and no stored login said nothing; the agent then failed with
    "Not logged in" (doctor and the app's form say so)."""
    from tests.conftest import run_cli

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "claude").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in [n for n in os.environ if n.startswith(("ANTHROPIC_", "CLAUDE_"))]:
        monkeypatch.delenv(name)
    made = run_cli(repo, "sandbox", "new", "--runtime", "claude", "--task", "t", "--no-start")
    assert made.returncode == 0, made.stderr
    assert "warning: runtime claude: no credentials: needs one of ANTHROPIC_API_KEY | " in made.stderr
    assert "so its agent will fail at once" in made.stderr
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    assert "credentials" not in run_cli(repo, "sandbox", "new", "--runtime", "claude", "--task", "t",
                                        "--no-start").stderr


def test_a_mistake_in_loom_yaml_leaves_stop_and_the_store_commands_working(repo: Path, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    created = json.loads(run(repo, "sandbox", "new", "--runtime", "command", "--task", "runaway", "--no-isolation",
                             "--json", "--", "sh", "-c", f'while [ ! -e "{flag}" ]; do sleep 0.05; done').stdout)
    sandbox_id = created["id"]
    wait_until(lambda: run(repo, "sandbox", "list", "--json").stdout.count('"running"') == 1,
               what="the agent running")
    (repo / ".loom").mkdir(exist_ok=True)
    (repo / ".loom" / "loom.yaml").write_text('version: 1\ngates: "oops"\n')
    for command in (("status",), ("sandbox", "list"), ("escalation", "list"), ("claim", "list"), ("audit", "tail")):
        done = run(repo, *command)
        said = "note: no next steps: .loom/loom.yaml:2: gates" if command == ("sandbox", "list") else ""
        assert done.returncode == 0 and done.stderr.startswith(said) and (said or not done.stderr), (command,
                                                                                                     done.stderr)
    (repo / ".loom" / "loom.yaml").write_text('version: 1\ngates: ["oops\n')  # not YAML at all: the same
    assert run(repo, "status").returncode == 0
    (repo / ".loom" / "loom.yaml").write_text('version: 1\ngates: "oops"\n')
    # What needs the config says so, with the file and line.
    one_line_error(run(repo, "sandbox", "new", "--runtime", "script", "--task", "x"), 2, ".loom/loom.yaml:2: gates")
    stopped = run(repo, "sandbox", "stop", sandbox_id)  # the emergency stop is never taken away by a typo
    assert stopped.returncode == 0, stopped.stderr
    # Its supervisor could not review the ended agent: a failed step, said where people look, retried once fixed.
    workspace = open_workspace(repo)
    wait_until(lambda: workspace.store.get_sandbox(sandbox_id).data.get("step_error"), what="the failed step")
    error = workspace.store.get_sandbox(sandbox_id).data.get("step_error") or {}
    assert error.get("step") == "read the policy" and ".loom/loom.yaml:2: gates" in error.get("error", "")
    assert "workflow.step_failed" in [e.action for e in workspace.audit.entries() if e.subject == sandbox_id]
    (repo / ".loom" / "loom.yaml").write_text("version: 1\n")
    retried = run(repo, "sandbox", "advance", sandbox_id)
    assert retried.returncode == 0 and "failed" not in retried.stdout, retried.stdout + retried.stderr
    assert "step_error" not in workspace.store.get_sandbox(sandbox_id).data or \
        not workspace.store.get_sandbox(sandbox_id).data["step_error"]
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nstore: [x]\n")  # the store key itself: its error stands
    one_line_error(run(repo, "status"), 2, ".loom/loom.yaml:2: store")
    (repo / ".loom" / "loom.yaml").unlink()
    os.mkfifo(repo / ".loom" / "loom.yaml")  # read for `store:` as guardedly as the config: refused, not waited on
    one_line_error(installed(repo, "status", timeout=30), 2, ".loom/loom.yaml")


def test_an_agent_run_as_root_without_isolation_is_said_to_be_able_to_lift_its_limits(repo: Path) -> None:
    """Outside bubblewrap, root's agent may write its own control groups: `limits:` bind it no more, and
    the warning said only "NOT isolated"."""
    done = run(repo, "sandbox", "new", "--runtime", "command", "--task", "quick", "--no-isolation", "--", "true")
    assert done.returncode == 0, done.stderr
    assert "--no-isolation was given, so this agent is NOT isolated" in done.stderr
    assert ("and, run as root, may lift its own limits" in done.stderr) == (os.geteuid() == 0), done.stderr


def test_sandbox_list_asks_the_store_as_often_for_sixty_sandboxes_as_for_six(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sandbox list` asked the store for each sandbox's claims, review escalation and dependencies one at a time
    (a round trip each on a team's PostgreSQL); it reads them once, and each step is the one asked alone."""
    from loomtui.cli import STEP_HINTS
    from loomtui.store.sqlite import SqliteStore
    from loomtui.tui.bench_data import BenchSize, seed_repository
    from loomtui.workflow.engine import Workflow

    def listed(sandboxes: int, root: Path) -> tuple[int, dict[str, object]]:
        workspace = open_workspace(root)
        try:
            seed_repository(workspace, BenchSize(sandboxes=sandboxes, claims=sandboxes, audit=1))
            alone = {r.id: Workflow(workspace).view(r).line(STEP_HINTS) for r in workspace.store.list_sandboxes()}
        finally:
            workspace.close()
        asked: list[str] = []
        real = SqliteStore._query
        with monkeypatch.context() as patch:
            patch.setattr(SqliteStore, "_query", lambda self, *args: (asked.append(args[0]), real(self, *args))[1])
            done = run_cli(root, "sandbox", "list", "--json")
        assert done.returncode == 0, done.stderr
        steps = {s["id"]: s["next"] for s in json.loads(done.stdout)["sandboxes"]}
        assert steps == alone
        return len(asked), steps

    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    git(other, "commit", "-q", "--allow-empty", "-m", "initial")
    few, _ = listed(6, repo)
    many, steps = listed(60, other)
    assert few == many and len(steps) == 60


def test_a_sandbox_recorded_whose_agent_could_not_start_is_not_a_success(repo: Path, script: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The store gone mid-`sandbox new`: left planned with a failed start, and the command exited 0."""
    from loomtui.workflow import engine

    def cannot(*_args: object) -> None:
        raise LoomError("cannot start its supervisor: the database system is shutting down")

    monkeypatch.setattr(engine, "start_agent", cannot)
    done = run_cli(repo, "sandbox", "new", "--runtime", "script", "--task", "x", "--script", str(script))
    assert done.returncode == 1
    assert "was recorded, but start failed: cannot start its supervisor" in done.stderr, done.stderr
    listed = run_cli(repo, "sandbox", "new", "--runtime", "script", "--task", "y", "--script", str(script), "--json")
    assert listed.returncode == 1 and json.loads(listed.stdout)["step"] == "failed-step"


def test_a_store_that_refuses_writes_now_still_lists_and_doctor_says_so(repo: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk with one dead supervisor to mark: `sandbox list` and `doctor` failed whole (exit 2, the store's
    error), at the moment a person needed them; the list now shows what is recorded and says what was not marked."""
    from loomtui.errors import StoreError
    from loomtui.execution import recovery

    record = tasks.create_sandbox(open_workspace(repo), "waits", "command", command=["true"])

    def full(_workspace: object) -> object:
        raise StoreError(".git/loom/state.db: cannot write the state store (database or disk is full)")

    monkeypatch.setattr(recovery, "reconcile", full)
    listed = run_cli(repo, "sandbox", "list")
    assert listed.returncode == 0 and record.id in listed.stdout, listed.stderr
    assert "note: what changed since is not marked (.git/loom/state.db: cannot write the state store" in listed.stderr
    as_json = json.loads(run_cli(repo, "sandbox", "list", "--json").stdout)
    assert "disk is full" in as_json["reconcile"]["error"]
    doctor = run_cli(repo, "doctor")
    assert "cannot mark what changed since" in doctor.stdout and "disk is full" in doctor.stdout, doctor.stdout


def test_a_list_whose_policy_cannot_be_read_says_why_no_sandbox_has_a_next_step(repo: Path) -> None:
    """Every `next:` line went (and `--json` said null) with nothing to say why."""
    record = tasks.create_sandbox(open_workspace(repo), "waits", "command", command=["true"])
    policy = repo / ".loom" / "policy.yaml"
    policy.parent.mkdir(exist_ok=True)
    policy.write_text("rules: [oops\n")
    listed = run_cli(repo, "sandbox", "list")
    assert listed.returncode == 0 and record.id in listed.stdout and "next:" not in listed.stdout
    assert "note: no next steps: .loom/policy.yaml" in listed.stderr, listed.stderr
