"""The installed `loomtui` command: exit codes and one-line errors, never a traceback."""

from __future__ import annotations

import json
import sqlite3
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git, run_cli

LOOMTUI = shutil.which("loomtui") or "loomtui"


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LOOMTUI, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert needle in done.stderr


def test_outside_a_git_repository_is_one_error_and_exit_2(tmp_path: Path) -> None:
    assert_one_line_error(run(tmp_path), 2, "not inside a git repository")
    assert_one_line_error(run(tmp_path, "audit", "verify"), 2, "not inside a git repository")
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))  # `git init` would be the wrong advice here
    assert_one_line_error(run(bare, "status"), 2, "is a git repository without a working tree (bare, or a .git")


def test_help_names_the_commands(repo: Path) -> None:
    done = run(repo, "--help")
    assert done.returncode == 0
    for command in ("demo", "audit", "config", "status"):
        assert command in done.stdout


def test_every_argument_of_every_command_says_what_it_is_in_help() -> None:
    """`claim release --help` listed `CLAIM_ID` with nothing after it (a claim's number? a region?)."""
    import argparse

    from loomtui.cli import build_parser

    bare = []
    pending = [("loomtui", build_parser())]
    while pending:
        path, parser = pending.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending += [(f"{path} {name}", sub) for name, sub in action.choices.items()]
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) and not action.help:
                bare.append(f"{path} {action.option_strings or action.metavar}")
    assert bare == []


def test_audit_verify_ok_then_broken(repo: Path) -> None:
    from loomtui.workspace import open_workspace

    workspace = open_workspace(repo)
    for number in range(3):
        workspace.record("test.action", f"s{number}")
    done = run(repo, "audit", "verify")
    assert done.returncode == 0 and done.stdout.startswith("OK: 3 entries")
    data = json.loads(run(repo, "audit", "verify", "--json").stdout)
    assert data["ok"] is True and data["entries"] == 3
    tail = json.loads(run(repo, "audit", "tail", "-n", "2", "--json").stdout)
    assert [e["subject"] for e in tail] == ["s1", "s2"]
    path = workspace.audit.path
    path.write_text(path.read_text().replace('"s1"', '"sX"'))
    done = run(repo, "audit", "verify")
    assert done.returncode == 1 and "BROKEN" in done.stdout and "audit.jsonl:2" in done.stdout


def test_audit_verify_gives_its_verdict_beside_an_uncommitted_typo_in_the_config(repo: Path) -> None:
    """A typo in loom.yaml or the policy, not committed yet: `audit verify` said only the typo (exit 2), no
    verdict on the chain at all; the committed policy now serves for the signatures, and it says so."""
    assert run_cli(repo, "claim", "add", "--sandbox", "a", "README.md").returncode == 0
    (repo / ".loom").mkdir()
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nversion: 2\n")
    done = run_cli(repo, "audit", "verify")
    assert done.returncode == 0 and done.stdout.startswith("OK: "), (done.stdout, done.stderr)
    assert "signatures checked against the committed policy (HEAD)" in done.stdout
    assert ".loom/loom.yaml:2" in done.stdout
    git(repo, "add", ".loom")
    git(repo, "commit", "-qm", "a typo committed")  # nothing sound to check decisions against: said, as before
    assert_one_line_error(run_cli(repo, "audit", "verify"), 2, ".loom/loom.yaml:2")


def test_config_check_reports_file_line_and_key(repo: Path) -> None:
    (repo / ".loom").mkdir()
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nruntimes:\n  claude:\n    argz: [x]\n")
    assert_one_line_error(run(repo, "config", "check"), 2, ".loom/loom.yaml:4: runtimes.claude.argz")
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nruntimes: [\n")
    assert_one_line_error(run(repo, "config", "check"), 2, ".loom/loom.yaml:")
    # A script that asked for JSON gets JSON for the file's own error too, as for what it names.
    for command in (("config", "check", "--json"), ("policy", "validate", "--json")):
        done = run_cli(repo, *command)
        said = json.loads(done.stdout)
        assert done.returncode == 2 and said["ok"] is False, command
        assert len(said["problems"]) == 1 and said["problems"][0].startswith(".loom/loom.yaml:2: invalid YAML"), command
        assert said["error"] == said["problems"][0], command  # what every failed command's JSON says
        # and stderr says it too, as every error does (a CI log keeping stderr alone read nothing)
        assert done.stderr == f"loomtui: error: {said['problems'][0]}\n", command
    # So is a problem of the files loom.yaml names (its policy): it was said without --json only.
    (repo / ".loom" / "loom.yaml").write_text("version: 1\n")
    (repo / ".loom" / "policy.yaml").write_text("version: 1\nextra_key: 1\n")
    named = run_cli(repo, "config", "check", "--json")
    assert named.returncode == 2 and json.loads(named.stdout)["problems"] == [".loom/policy.yaml:2: extra_key: unknown key"]
    assert named.stderr.startswith("loomtui: error: .loom/policy.yaml:2: extra_key: unknown key\n"), named.stderr


def test_config_check_tries_what_loom_yaml_names_its_policy_file_and_worktrees_place(repo: Path) -> None:
    (repo / ".loom").mkdir()
    (repo / ".loom" / "loom.yaml").write_text("version: 1\npolicy: .loom/nope.yaml\nworktrees: .\n")
    done = run_cli(repo, "config", "check")
    assert done.returncode == 2 and done.stdout == ""
    policy, worktrees = [line for line in done.stderr.splitlines() if line.startswith("loomtui: error:")]
    assert policy == ("loomtui: error: .loom/nope.yaml: the policy file named by `policy:` in .loom/loom.yaml "
                      "does not exist")
    assert worktrees.startswith("loomtui: error: worktrees: in .loom/loom.yaml: ")
    assert worktrees.endswith("is inside the repository's working tree; put worktrees outside it")
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nworktrees: /dev/null\n")  # passed the check
    unusable = run_cli(repo, "config", "check")
    assert unusable.returncode == 2 and "cannot hold worktrees: /dev/null is not a directory" in unusable.stderr
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nworktrees: ../elsewhere\n")
    assert run_cli(repo, "config", "check").stdout.startswith("OK: .loom/loom.yaml")
    assert not (repo / ".git" / "loom").exists()  # a check of files: no store made (a fresh or read-only clone)
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nworktrees: /dev/null\n")
    made = run_cli(repo, "sandbox", "new", "--runtime", "command", "--task", "x", "--", "true")
    assert made.returncode == 2 and "cannot hold worktrees" in made.stderr
    assert run_cli(repo, "sandbox", "list").stdout.startswith("no sandboxes")  # none recorded (was: failed)


def test_a_policy_file_loom_yaml_names_at_the_usual_path_must_exist_and_the_gate_fails_closed(billing: Path) -> None:
    assert "policy: .loom/policy.yaml" in (billing / ".loom/loom.yaml").read_text()
    git(billing, "rm", "-q", ".loom/policy.yaml")
    git(billing, "commit", "-qm", "the policy file deleted, loom.yaml still naming it")
    missing = ("loomtui: error: .loom/policy.yaml: the policy file named by `policy:` in .loom/loom.yaml "
               "does not exist")
    for command in (("policy", "validate"), ("gate", "--base", "main")):
        done = run_cli(billing, *command)
        # The gate's is the base's policy, and says so: `... (the policy as main has it: `git show ...`)`.
        said = done.stderr.strip()[:len(missing)] if command[0] == "gate" else done.stderr.strip()
        assert (done.returncode, done.stdout, said) == (2, "", missing), command
        assert command[0] != "gate" or "(the policy as main has it: `git show " in done.stderr
    # Not named at all: the built-in default, said as such.
    (billing / ".loom/loom.yaml").write_text("version: 1\n")
    assert "the built-in default applies" in run_cli(billing, "policy", "validate").stdout


def test_corrupt_store_is_one_error(repo: Path) -> None:
    state = repo / ".git" / "loom"
    state.mkdir()
    (state / "state.db").write_bytes(b"garbage" * 1000)
    assert_one_line_error(run(repo, "status"), 2, "corrupt")


def test_unwritable_state_location_is_one_error(repo: Path) -> None:
    # Root ignores permission bits, so block the state directory with a file instead.
    (repo / ".git" / "loom").write_text("in the way")
    assert_one_line_error(run(repo, "status"), 2, "cannot create")


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root can write anywhere")
def test_unwritable_repository_is_one_error(repo: Path) -> None:
    (repo / ".git").chmod(0o500)
    try:
        assert_one_line_error(run(repo, "status"), 2, "cannot")
    finally:
        (repo / ".git").chmod(0o700)


def test_status_json(repo: Path) -> None:
    data = json.loads(run(repo, "status", "--json").stdout)
    assert data["schema_version"] >= 1 and data["journal_mode"] == "wal" and data["audit_file_problem"] is None


def test_status_says_what_is_live_now_beside_every_row_ever_written(repo: Path) -> None:
    """After the demo it said "5 claims, 3 escalations" while one claim was live and one escalation open."""
    (repo / "a.py").write_text("x = 1\n")
    for target in ("README.md", "a.py"):
        assert run_cli(repo, "claim", "add", "--sandbox", "a", target).returncode == 0
    assert run_cli(repo, "claim", "release", "--sandbox", "a", "2").returncode == 0
    data = json.loads(run_cli(repo, "status", "--json").stdout)
    assert data["now"] == {"sandboxes": 0, "claims": 1, "escalations": 0} and data["counts"]["claims"] == 2
    lines = run_cli(repo, "status").stdout.splitlines()
    assert lines[1] == "  now: 0 sandboxes not archived, 1 live claim, 0 escalations to decide"
    assert lines[2] == "  ever: 0 sandboxes, 2 claims, 0 escalations, 0 gate runs, 6 events"
    # Only the file's end is compared: "(whole)" was said of a log `audit verify` calls broken.
    assert lines[3].endswith("(in step with the store; `loomtui audit verify` checks the whole chain)")


def test_status_says_when_the_audit_file_stopped_taking_entries(repo: Path) -> None:
    """Writes go on (the store holds every entry): only `tail` said the file had stopped, if anyone looked."""
    assert run_cli(repo, "claim", "add", "--sandbox", "a", "README.md").returncode == 0
    log = repo / ".git" / "loom" / "audit.jsonl"
    log.write_bytes(log.read_bytes()[:-20])  # its last line cut
    said = run_cli(repo, "status")
    assert "audit: " in said.stdout and "does not end with entry 1, the store's newest" in said.stdout
    assert "does not end with entry 1" in json.loads(run_cli(repo, "status", "--json").stdout)["audit_file_problem"]
    log.unlink()
    log.mkdir()  # a bad restore: not a damaged file, and not said to be one
    assert "audit.jsonl is not a file, so no entry is added to it" in run_cli(repo, "status").stdout


def test_a_command_that_records_while_the_audit_file_has_stopped_says_so(repo: Path) -> None:
    """Its entry is in the store, not in the file: said at once, not at the next `status`."""
    assert run_cli(repo, "claim", "add", "--sandbox", "a", "README.md").returncode == 0
    log = repo / ".git" / "loom" / "audit.jsonl"
    log.write_bytes(log.read_bytes()[:-20])  # its last line cut
    wrote = run_cli(repo, "claim", "release", "1", "--sandbox", "a")
    assert wrote.returncode == 0
    assert "warning: recorded in the store only" in wrote.stderr and "does not end with entry 2" in wrote.stderr
    assert [e["action"] for e in json.loads(run_cli(repo, "audit", "tail", "--json").stdout)][-1] == "claim.released"
    assert "warning" not in run_cli(repo, "claim", "list").stderr  # it recorded nothing


def test_an_error_under_json_is_json_on_stdout_too(repo: Path) -> None:
    """A script reading stdout gets why, not an empty string it cannot parse; people still read stderr."""
    done = run(repo, "sandbox", "merge", "nosuch", "--json")
    assert_one_line_error(done, 2, "no sandbox")
    assert json.loads(done.stdout) == {"error": done.stderr.strip().removeprefix("loomtui: error: ")}
    assert run(repo, "sandbox", "merge", "nosuch").stdout == ""  # without --json: stderr only
    gate = run_cli(repo, "gate", "--base", "nosuch", "--format", "json")  # its JSON is asked as a format
    assert gate.returncode == 2 and json.loads(gate.stdout) == {"error": "base 'nosuch' is not a commit"}
    usage = run_cli(repo, "context", "slice", "--json")  # a usage error, found by the command line's parser
    assert usage.returncode == 2 and json.loads(usage.stdout)["error"].startswith(
        "the following arguments are required: --task")


def test_a_path_typed_in_a_subdirectory_is_named_as_the_commands_take_it(repo: Path) -> None:
    """Targets are from the repository's root (as `claim list` shows them); typed from a subdirectory,
    the error says what the path is from the root instead of only that it does not exist."""
    (repo / "pkg").mkdir()
    (repo / "pkg" / "mod.py").write_text("def f():\n    return 1\n\n\ndef deco(fn):\n    def wrapper():\n"
                                         "        return fn()\n    return wrapper\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "pkg")
    here = repo / "pkg"
    hint = "(paths are from the repository's root: from here that is pkg/mod.py)"
    assert hint in run_cli(here, "regions", "mod.py").stderr
    assert hint in run_cli(here, "claim", "add", "--sandbox", "a", "mod.py").stderr
    # `..` in what was typed is resolved: the hint is a path the command takes (it was pkg/../pkg/mod.py).
    assert "from here that is pkg/mod.py)" in run_cli(here, "claim", "add", "--sandbox", "a", "../pkg/mod.py").stderr
    assert "did you mean pkg/mod.py::f?" in run_cli(here, "claim", "add", "--sandbox", "a", "mod.py::f").stderr
    # Its guess a region nested in the one meant: the way on said instead (it read `... deco.wrapper?`).
    nested = run_cli(here, "claim", "add", "--sandbox", "a", "mod.py::deco").stderr
    assert nested.strip().endswith("unknown region mod.py::deco (paths are from the repository's root: from here "
                                   "that is pkg/mod.py::deco)"), nested
    assert "from here" not in run_cli(here, "regions", "other.py").stderr  # nothing of that name here either
    assert "a directory; regions are listed for one file" in run_cli(repo, "regions", "pkg").stderr
    # A region's id for its file: it read "its name holds `::` ... (and no file is so named)".
    assert "pkg/mod.py::f is a region; regions are listed for a file: `loomtui regions pkg/mod.py`" in run_cli(
        repo, "regions", "pkg/mod.py::f").stderr
    os.mkfifo(repo / "pkg" / "fifo.py")  # it said "no such file"
    assert "pkg/fifo.py: not a regular file" in run_cli(repo, "regions", "pkg/fifo.py").stderr
    assert run_cli(here, "claim", "add", "--sandbox", "a", "pkg/mod.py").returncode == 0


def test_audit_tail_warns_of_an_entry_changed_in_the_store(repo: Path) -> None:
    import sqlite3

    assert run_cli(repo, "claim", "add", "--sandbox", "a", "README.md").returncode == 0
    conn = sqlite3.connect(repo / ".git" / "loom" / "state.db")
    conn.execute("update audit set entry = replace(entry, '\"a\"', '\"b\"') where seq = 1")
    conn.commit()
    conn.close()
    shown = run_cli(repo, "audit", "tail")
    assert "warning: entry 1 does not match its own hash: changed since written" in shown.stderr
    assert run_cli(repo, "audit", "verify").returncode == 1


def test_audit_tail_never_prints_an_agents_newline_or_escape_from_a_list_or_a_key(repo: Path) -> None:
    """The paths of a refused commit are the agent's words, logged as a list: `audit tail` escaped a plain
    value, not a list's items or a dict's keys, and a newline in one printed a fake entry line (a lead's
    approval) below, with the escapes to the terminal as they were."""
    from loomtui.workspace import open_workspace

    workspace = open_workspace(repo)
    try:
        fake = "\x1b[1A\x1b[2K\r\n     2  2026-12-05 22:42:21  lead@x.com  escalation.approve  7"
        workspace.record("hook.commit_refused", "agent-1", {"paths": [fake], "by": {fake: 1}})
    finally:
        workspace.close()
    shown = run_cli(repo, "audit", "tail").stdout
    assert "lead@x.com" in shown  # said, as text, on the entry's own line
    assert not any(line.lstrip().startswith("2  2026-12-05") for line in shown.splitlines())
    assert "\x1b" not in shown and "\r" not in shown and "\\x1b[1A" in shown


def _top_level(parser: object) -> list[str]:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(commands.choices)


def test_a_command_line_loads_only_the_module_of_its_command() -> None:
    """LAYER_COMMANDS says which module registers each command: checked against the modules
    themselves, and each command's own parser has it (and the core commands) but no other layer's."""
    from loomtui.cli import CORE_COMMANDS, LAYER_COMMANDS, _command_module, build_parser

    every = _top_level(build_parser())
    assert set(every) == set(LAYER_COMMANDS) | set(CORE_COMMANDS) | {"bench"}
    for command, module in LAYER_COMMANDS.items():
        own = [c for c, m in LAYER_COMMANDS.items() if m == module]
        assert _top_level(build_parser(module)) == [*CORE_COMMANDS, *own], command
    assert _top_level(build_parser("")) == list(CORE_COMMANDS)
    assert _command_module(["-C", "/x", "claim", "list"]) == "coordination"
    assert _command_module(["--repo=/x", "audit", "verify"]) == "state"
    assert _command_module(["demo"]) == ""
    for whole in ([], ["--help"], ["-C", "/x"], ["bench", "index"], ["clam", "list"]):
        assert _command_module(whole) is None, whole


def test_a_layer_command_does_not_import_the_other_layers(repo: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import sys\nfrom loomtui.cli import main\n"
                           "code = main(['audit', 'verify'])\n"
                           "print(sorted(m for m in sys.modules if m.startswith('loomtui.cli.')\n"
                           "             and m not in ('loomtui.cli.terminal', 'loomtui.cli.examples')))"],
                          # every command's output goes through the first, and its --help ends with the second's
                          cwd=repo, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['loomtui.cli.state']"  # its own module alone


def test_the_app_without_a_terminal_is_one_line_and_exit_2_not_escape_codes_forever(repo: Path) -> None:
    for args in ((), ("demo",)):
        done = subprocess.run([LOOMTUI, *args], cwd=repo, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60)
        assert_one_line_error(done, 2, "the app needs a terminal")
        assert done.stdout == ""
    assert not (repo / ".git" / "loom").exists()  # nothing was opened, nothing prepared
    # A terminal on stdin and stdout, stderr to a file: the app draws on stderr, so it would draw nothing.
    import pty

    leader, follower = pty.openpty()
    try:
        done = subprocess.run([LOOMTUI], cwd=repo, stdin=follower, stdout=follower, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "the app needs a terminal (stderr is not one; it draws on stderr)" in done.stderr


def test_a_deleted_working_directory_and_an_output_encoding_without_a_character_are_no_traceback(
        repo: Path, tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    # The shell sits in the directory, which is removed under it, then runs loomtui there.
    script = f'cd "{gone}" && rmdir "{gone}" && for c in status doctor; do "{LOOMTUI}" $c; echo "exit $?"; done'
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout == "exit 2\nexit 2\n" and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("loomtui: error: the current directory no longer exists") == 2
    latin = subprocess.run([LOOMTUI, "claim", "add", "--sandbox", "a", "x—y.py"], cwd=repo, capture_output=True,
                           timeout=60, env={**os.environ, "PYTHONIOENCODING": "latin-1"})
    assert latin.returncode == 2 and b"Traceback" not in latin.stderr, latin.stderr
    assert latin.stderr.startswith(b"loomtui: error: x?y.py: no such file")


def test_regions_of_a_file_the_index_does_not_parse_says_why_not_to_run_index(billing: Path) -> None:
    done = run_cli(billing, "regions", "README.md")
    assert done.returncode == 2 and "not an indexed file (regions are parsed from Python files" in done.stderr
    assert "loomtui index" not in done.stderr  # it would not help
    missing = run_cli(billing, "regions", "nope.py")
    assert missing.returncode == 2 and "nope.py: no such file in" in missing.stderr


def test_config_check_warns_of_a_theme_that_is_not_installed(repo: Path) -> None:
    (repo / ".loom").mkdir()
    (repo / ".loom" / "loom.yaml").write_text("version: 1\ntheme: loom-drak\n")
    done = run_cli(repo, "config", "check")
    assert done.returncode == 0 and done.stdout.startswith("OK: .loom/loom.yaml")
    assert done.stderr.startswith("loomtui: warning: theme 'loom-drak' is not installed (did you mean 'loom-dark'?)")
    said = json.loads(run_cli(repo, "config", "check", "--json").stdout)
    themed = [warning for warning in said["warnings"] if "theme" in warning]
    assert said["ok"] is True and len(themed) == 1 and "'loom-drak'" in themed[0]
    (repo / ".loom" / "loom.yaml").write_text("version: 1\ntheme: loom-light\n")
    assert [w for w in json.loads(run_cli(repo, "config", "check", "--json").stdout)["warnings"] if "theme" in w] == []
    # A theme file of yours the app would skip is said at its line, whether loom.yaml names it or not.
    themes = Path(os.environ["LOOMTUI_CONFIG_DIR"]) / "themes"
    themes.mkdir(parents=True)
    (themes / "mine.yaml").write_text("name: mine\n")
    (repo / ".loom" / "loom.yaml").write_text("version: 1\ntheme: mine\n")
    said = json.loads(run_cli(repo, "config", "check", "--json").stdout)
    assert said["ok"] is True and said["warnings"][0] == (f"{themes / 'mine.yaml'}:1: primary: required key missing "
                                                          "(the theme file is skipped)")
    assert said["warnings"][1].startswith("theme 'mine' is not installed")


def test_flags_that_ask_for_two_things_are_refused_not_one_ignored(repo: Path) -> None:
    both = run_cli(repo, "sandbox", "advance", "abc123", "--all")
    assert (both.returncode, both.stderr) == (2, "loomtui: error: give a sandbox ID or --all, not both "
                                                 "(got 'abc123' and --all)\n")
    formats = run_cli(repo, "context", "slice", "--task", "x", "--json", "--markdown")
    assert (formats.returncode, formats.stderr) == (2, "loomtui: error: --json and --markdown ask for two formats; "
                                                       "give one\n")


def test_a_case_no_check_foresaw_is_one_line_naming_it_as_a_bug_and_debug_shows_the_traceback(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import loomtui.cli.state as state

    def broken(_args: object) -> int:
        raise KeyError("a key nobody expected")

    monkeypatch.setattr(state, "cmd_status", broken)
    monkeypatch.setenv("XDG_CACHE_HOME", str(repo.parent / "cache"))
    for asked in ((), ("--json",)):
        done = run_cli(repo, "status", *asked)
        assert done.returncode == 70 and "Traceback" not in done.stderr  # not 1: a check's verdict
        said, _, kept = done.stderr.partition("; its traceback is kept in ")
        assert said == ("loomtui: internal error: KeyError: 'a key nobody expected' (a bug in loomtui: "
                        "LOOMTUI_DEBUG=1 shows where")
        # Kept for the next look (a crash of the app met once was never found again): where it says, the whole.
        assert kept.startswith(str(repo.parent / "cache" / "loomtui" / "crashes")) and kept.endswith(".txt)\n")
        assert "in broken" in Path(kept.removesuffix(")\n")).read_text()
        assert (json.loads(done.stdout) if asked else done.stdout) == (
            {"error": "internal error: KeyError: 'a key nobody expected'"} if asked else "")
    monkeypatch.setenv("LOOMTUI_DEBUG", "1")
    with pytest.raises(KeyError):
        run_cli(repo, "status")


def test_an_option_is_named_whole_so_a_script_means_one_thing_and_its_error_is_json_when_asked(repo: Path) -> None:
    """`--js` was taken for `--json`: JSON when it worked, none on an error (the check reads the whole word)."""
    done = run_cli(repo, "claim", "list", "--js")
    assert done.returncode == 2 and "unrecognized arguments: --js" in done.stderr and done.stdout == ""


def test_a_commands_option_typed_before_the_command_says_where_it_goes(repo: Path) -> None:
    """`loomtui --json status` said "unrecognized arguments: --json (see loomtui status --help)", and that help
    lists --json."""
    done = run_cli(repo, "--json", "status")
    assert done.returncode == 2
    assert done.stderr == ("loomtui status: error: --json goes after the command: loomtui status --json "
                           "(see loomtui status --help)\n")
    assert "loomtui -C . sandbox list --json" in run_cli(repo, "-C", ".", "--json", "sandbox", "list").stderr
    assert "unrecognized arguments: --bogus" in run_cli(repo, "status", "--bogus").stderr


def test_broken_agent_settings_are_named_with_what_was_being_done(repo: Path) -> None:
    settings = repo / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text("{not json\n")
    for verb, doing in (("install", "installing"), ("uninstall", "uninstalling")):  # it said "installing" for both
        done = run_cli(repo, "hook", verb)
        assert done.returncode == 2 and "not valid JSON" in done.stderr and f"fix it before {doing} hooks" in done.stderr


@pytest.mark.parametrize("args", [
    ("gate", "--base", ""), ("gate", "--head", " "), ("report", "--branch", ""), ("context", "show", "--at", ""),
    ("context", "slice", "--task", "x", "--at", ""), ("plan", "show", ""), ("policy", "test", ""),
    ("policy", "validate", ""), ("regions", ""), ("sandbox", "merge", "abc", "--into", ""),
    ("sandbox", "new", "--runtime", "script", "--task", "x", "--script", ""), ("hook", "install", ""),
    ("claim", "list", "--sandbox", ""), ("claim", "release", "--all", "--sandbox", ""), ("-C", "", "status"),
])
def test_an_empty_name_is_a_usage_error_not_the_default(repo: Path, args: tuple[str, ...]) -> None:
    """`gate --base "$UNSET"` gated against main, `hook install ""` installed into the current directory,
    and an empty file said `cannot read file: it is a directory`."""
    done = run_cli(repo, *args)
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert done.stderr.count("\n") == 1 and "must not be empty" in done.stderr, done.stderr


@pytest.mark.parametrize("args", [("gate", "--base", "a" * 100_000), ("gate", "--head", "b" * 100_000),
                                  ("audit", "verify", "--ref", "c" * 100_000), ("sandbox", "review", "x" * 100_000)])
def test_a_huge_name_is_said_cut_short(repo: Path, args: tuple[str, ...]) -> None:
    """The gate echoed a 100,000-character --base whole: one line of 100,040 bytes."""
    done = run_cli(repo, *args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and len(done.stderr) < 400, len(done.stderr)
    assert "(100000 characters)" in done.stderr


def test_config_check_names_every_problem_and_warns_of_no_gates(repo: Path) -> None:
    """A fresh user fixed loom.yaml one error per run; an empty one was OK, its changes untested."""
    (repo / ".loom").mkdir()
    (repo / ".loom" / "loom.yaml").write_text('version: 1\ngates: 3\nruntimes: {x: 1}\nbogus: 2\ntheme: ""\n')
    done = run_cli(repo, "config", "check")
    assert done.returncode == 2 and [line for line in done.stderr.splitlines() if "error" in line] == [
        "loomtui: error: .loom/loom.yaml:2: gates: expected a list (got 3)",
        "loomtui: error: .loom/loom.yaml:3: runtimes.x: expected a mapping (got 1)",
        "loomtui: error: .loom/loom.yaml:4: bogus: unknown key",
        "loomtui: error: .loom/loom.yaml:5: theme: must not be empty"]
    said = json.loads(run_cli(repo, "config", "check", "--json").stdout)
    assert said["ok"] is False and len(said["problems"]) == 4
    other = run_cli(repo, "sandbox", "new", "--runtime", "command", "--task", "x", "--", "true")
    # every other command names the first, and how many more
    assert "loom.yaml:2: gates: expected a list (got 3) (3 more problems: line 3, 4, 5)" in other.stderr
    # Within a gate too: its `run` and its `timeout` both said (one was, after the other was fixed).
    (repo / ".loom" / "loom.yaml").write_text("version: 1\ngates:\n  - name: t\n    run: python -m pytest\n"
                                              "    timeout: soon\n")
    both = [line for line in run_cli(repo, "config", "check").stderr.splitlines() if "error" in line]
    assert [line.split(": ")[3] for line in both] == ["gates[0].run", "gates[0].timeout"], both
    (repo / ".loom" / "loom.yaml").write_text("")
    empty = run_cli(repo, "config", "check")
    assert empty.returncode == 0 and "no gates: agents' changes reach review untested" in empty.stderr
    # A gate of `kind: behavioural` was accepted, listed, and never run, unsaid.
    (repo / ".loom" / "loom.yaml").write_text("version: 1\ngates:\n  - {name: b, run: ['true'], kind: behavioural}\n")
    kinded = run_cli(repo, "config", "check")
    assert kinded.returncode == 0 and "gate 'b' is `kind: behavioural`, which no gate runs" in kinded.stderr


def test_ctrl_c_before_a_command_begins_is_exit_130_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted while the parser was made (a slow start), a full traceback through argparse was printed."""
    import loomtui.cli as cli

    def interrupted(*_args: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["status"]) == 130


def test_ctrl_c_while_the_command_imports_is_exit_130_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in a command's first 0.3 s (its modules importing, before `cli.main` could catch anything)
    printed a KeyboardInterrupt traceback: the entry point the installed `loomtui` runs catches it."""
    import builtins
    import importlib.metadata

    import loomtui.__main__ as entry

    given = importlib.metadata.entry_points(group="console_scripts", name="loomtui")
    assert [e.value for e in given] == ["loomtui.__main__:main"]
    real_import = builtins.__import__

    def slow_start(name: str, *args: object, **kwargs: object) -> object:
        if name == "loomtui.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "loomtui.cli")
    monkeypatch.setattr(builtins, "__import__", slow_start)
    monkeypatch.setattr(sys, "argv", ["loomtui", "status"])
    assert entry.main() == 130


def test_a_log_file_moved_away_is_restored_from_the_command_line(repo: Path, tmp_path: Path) -> None:
    """With .git/loom/audit.jsonl gone, every write warned "recorded in the store only" for good, and neither
    `audit verify` nor the warning said how to put it right."""
    assert run_cli(repo, "claim", "add", "--sandbox", "a", "README.md").returncode == 0
    log = repo / ".git" / "loom" / "audit.jsonl"
    log.rename(tmp_path / "moved.jsonl")
    broken = run_cli(repo, "audit", "verify")
    assert broken.returncode == 1 and "next: `loomtui audit restore` writes the file again" in broken.stdout
    warned = run_cli(repo, "claim", "release", "--all", "--sandbox", "a")
    assert "`loomtui audit restore` writes it again from the store" in warned.stderr
    restored = run_cli(repo, "audit", "restore", "--json")
    assert restored.returncode == 0, restored.stderr
    said = json.loads(restored.stdout)
    assert said["entries"] >= 2 and "truncated" in said["problem"]
    assert run_cli(repo, "audit", "verify").returncode == 0
    again = run_cli(repo, "claim", "add", "--sandbox", "a", "README.md")
    assert again.returncode == 0 and "warning" not in again.stderr
    assert run_cli(repo, "audit", "restore").returncode == 1  # nothing to restore now: said, exit 1


def test_a_store_whose_own_copy_was_edited_is_not_sent_to_audit_restore(repo: Path) -> None:
    """An entry edited in the store: verify said `audit restore` puts it right, and restore refused, sending the
    lead back to verify."""
    assert run_cli(repo, "claim", "add", "--sandbox", "a", "README.md").returncode == 0
    with sqlite3.connect(repo / ".git" / "loom" / "state.db") as db:
        db.execute("UPDATE audit SET entry = replace(entry, 'README.md', 'OTHER.md') WHERE seq = "
                   "(SELECT max(seq) FROM audit)")
    broken = run_cli(repo, "audit", "verify")
    assert broken.returncode == 1 and "audit restore` writes the file again" not in broken.stdout, broken.stdout
    assert "next: the store's own copy of the log is broken too, so `loomtui audit restore` cannot mend it" \
        in broken.stdout
    assert run_cli(repo, "audit", "restore").returncode == 1


def test_a_reader_that_stops_reading_is_no_success(repo: Path) -> None:
    """`loomtui audit verify | head -0` under pipefail exited 0 whatever the chain said: a broken pipe read as
    success. Now as a program SIGPIPE ends (141), as `git log | head` does."""
    assert run_cli(repo, "claim", "add", "--sandbox", "a", "README.md").returncode == 0
    process = subprocess.Popen([sys.executable, "-m", "loomtui", "audit", "tail", "-n", "50"], cwd=repo,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    process.stdout.close()  # before the interpreter has started: its first write finds no reader
    assert process.wait(timeout=60) == 141


def test_commands_that_only_read_read_a_store_they_cannot_write() -> None:
    """On a read-only `.git/loom` (a mounted clone, another user's checkout) `checklist`, `regions`, `claim
    suggest`, `context versions|slice`, `store repos` and `index` (its cache built in memory) were refused:
    "cannot write the state store here ...; reading it needs no write access"."""
    from loomtui.cli import build_parser

    parser = build_parser()
    for line in (["checklist"], ["index"], ["regions", "a.py"], ["claim", "suggest", "x"], ["context", "versions"],
                 ["context", "slice", "--task", "x"], ["store", "repos"], ["status"], ["claim", "list"]):
        assert parser.parse_args(line).reads_only, line
    for line in (["claim", "add", "a.py"], ["sandbox", "new", "--runtime", "script", "--task", "x"]):
        assert not parser.parse_args(line).reads_only, line


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_output_that_cannot_be_written_is_one_line_and_no_verdict(repo: Path) -> None:
    """`loomtui gate --json > /dev/full` exited 1, a check's "needs approval", on two tracebacks (its error's JSON
    met the full disk too)."""
    full_disk = (74, "loomtui: error: cannot write the output: No space left on device\n")
    for command, expected in ((("status", "--json"), full_disk), (("status",), full_disk),
                              (("sandbox", "diff", "nosuch", "--json"), (2, "loomtui: error: no sandbox 'nosuch'\n")),
                              # a usage error's JSON met it too, in the parser; help and a version exited 0
                              (("gate", "--json", "--bogus"), (2, "loomtui gate: error: unrecognized arguments: "
                                                                  "--bogus (see loomtui gate --help)\n")),
                              (("--help",), full_disk), (("--version",), full_disk), (("status", "--help"), full_disk)):
        with open("/dev/full", "w") as full:
            done = subprocess.run([sys.executable, "-m", "loomtui", *command], cwd=repo, stdout=full,
                                  stderr=subprocess.PIPE, text=True, timeout=60)
        assert (done.returncode, done.stderr) == expected, (command, done.stderr)
    loomtui = f"{shlex.quote(sys.executable)} -m loomtui"
    for shell, code in ((f"{loomtui} status --json > /dev/full 2>&1", 74),  # stderr full too: still no verdict
                        (f"{loomtui} status --json >&-", 0),  # no stdout at all: nothing written, as before
                        # a reader gone: 141, as for every command (`| head`), not "cannot write the output"
                        (f"{loomtui} --help | true; exit ${{PIPESTATUS[0]}}", 141)):
        done = subprocess.run(["bash", "-c", shell], cwd=repo, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stderr) == (code, ""), (shell, done.stderr)
