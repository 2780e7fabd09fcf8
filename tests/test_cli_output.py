"""What the CLI prints, read as a person reads it: each thing said once, columns that hold, no `None`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.conftest import git, run_cli

QUOTE = "payments/refunds.py::RefundService.quote"


def test_a_refused_claim_says_each_conflict_once_on_stderr(billing: Path) -> None:
    assert run_cli(billing, "claim", "add", "--sandbox", "s1", QUOTE).returncode == 0
    refused = run_cli(billing, "claim", "add", "--sandbox", "s2", QUOTE)
    assert refused.returncode == 1 and refused.stdout == ""
    lines = refused.stderr.splitlines()
    assert lines == ["refused: 1 conflict with other sandboxes' claims:",
                     f"error   overlap             {QUOTE} is held by sandbox s1 (claim #1, exclusive)"]
    scripted = run_cli(billing, "claim", "add", "--sandbox", "s2", QUOTE, "--json")
    said = json.loads(scripted.stdout)  # it had no `error` and said nothing on stderr
    assert scripted.returncode == 1 and said["ok"] is False and said["error"].startswith("refused: ")
    assert scripted.stderr.startswith("refused: ") and scripted.stderr.count("\n") == 1


def test_the_gate_passes_a_branch_that_changes_nothing_and_markdown_never_says_none(billing: Path) -> None:
    git(billing, "checkout", "-q", "-b", "nothing-yet")
    done = run_cli(billing, "gate", "--base", "main")
    assert done.returncode == 0 and done.stdout.startswith("loomtui gate: PASS")
    assert "adds no change to main: nothing to judge" in done.stdout
    assert "require at" not in done.stdout and "needs" not in done.stdout  # nothing judged: no rule shown
    judged = json.loads(run_cli(billing, "gate", "--base", "main", "--format", "json").stdout)
    assert (judged["verdict"], judged["outcome"], judged["rules"]) == ("PASS", "none", [])
    assert any(note.startswith("no state store here") for note in judged["notes"])
    store = billing / ".git" / "loom" / "state.db"
    store.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(store) as newer:  # a store a newer loomtui wrote: not "no store here"
        newer.execute("PRAGMA user_version = 999")
    unread = json.loads(run_cli(billing, "gate", "--base", "main", "--format", "json").stdout)
    assert any(note.startswith("the state store could not be read (") and "newer" in note
               for note in unread["notes"]), unread["notes"]
    (billing / "docs").mkdir(exist_ok=True)
    (billing / "docs" / "note.md").write_text("a note\n")
    git(billing, "add", "docs/note.md")
    git(billing, "commit", "-q", "-m", "docs: a note")
    markdown = run_cli(billing, "gate", "--base", "main", "--format", "markdown").stdout
    assert "| default |" in markdown or "| docs" in markdown
    assert "None" not in markdown


def test_audit_tail_is_readable_lines_not_json(billing: Path) -> None:
    run_cli(billing, "claim", "add", "--sandbox", "s1", QUOTE)
    run_cli(billing, "claim", "add", "--sandbox", "s2", QUOTE)
    lines = run_cli(billing, "audit", "tail", "-n", "2").stdout.splitlines()
    assert len(lines) == 4 and lines[0].split()[0] == "1" and "claim.added" in lines[0]
    assert lines[0].split()[3] == "UTC", lines[0]  # said, as the report and context versions say it
    assert lines[1].strip().startswith("claim=1  conflicts=[]  mode=exclusive")
    assert "conflicts=[1 item]" in lines[3] and "{" not in lines[3]
    assert all(len(line) <= 120 for line in lines[1::2])


def test_audit_tail_finds_entries_by_action_actor_subject_and_time_in_the_whole_log(billing: Path) -> None:
    """A lead asking "who overrode what this week" had the newest N entries to read through by eye."""
    run_cli(billing, "claim", "add", "--sandbox", "s1", QUOTE, user="ann@example.com")
    run_cli(billing, "claim", "add", "--sandbox", "s2", "payments/refunds.py::RefundService.issue_refund",
            user="bob@example.com")
    run_cli(billing, "claim", "release", "--sandbox", "s1", "--all", user="ann@example.com")
    for n in range(15):  # the matches are older than the newest 20 entries
        assert run_cli(billing, "claim", "add", "--sandbox", f"x{n}", "notifications", user="cy@example.com").returncode == 0
        run_cli(billing, "claim", "release", "--sandbox", f"x{n}", "--all", user="cy@example.com")

    def shown(*args: str) -> list[tuple[str, str, str]]:
        done = run_cli(billing, "audit", "tail", "--json", *args)
        assert done.returncode == 0, done.stderr
        return [(e["action"], e["subject"], e["actor"]) for e in json.loads(done.stdout)]

    assert shown("--subject", "s1") == [("claim.added", "s1", "ann@example.com"),
                                         ("claim.released", "s1", "ann@example.com")]
    assert shown("--actor", "BOB@example.com") == [("claim.added", "s2", "bob@example.com")]
    released = shown("--action", "claim.rel*", "--action", "nothing.*", "-n", "50")
    assert len(released) == 16 and released[0] == ("claim.released", "s1", "ann@example.com")
    assert shown("--action", "claim.*", "--actor", "ann@example.com", "-n", "1") == [
        ("claim.released", "s1", "ann@example.com")]  # the newest of those that match
    assert len(shown("--since", "1h", "-n", "50")) == 33 and shown("--since", "2999-01-01") == []
    assert run_cli(billing, "audit", "tail", "--subject", "nobody").stdout == "(no entry matches)\n"
    # A sandbox's escalations (their subject is the escalation's id) and `#4` as the queue names one.
    from loomtui.governance.escalations import open_escalation
    from loomtui.governance.policy import ChangeFacts, evaluate, load_policy
    from loomtui.workspace import open_workspace

    facts = ChangeFacts(stage="post-gate", paths=("payments/refunds.py",))
    opened = open_escalation(open_workspace(billing), "post-gate", evaluate(load_policy(billing), facts), facts,
                             sandbox_id="s1", commit="c1")
    assert shown("--subject", "s1")[-1][:2] == ("escalation.opened", str(opened.id))
    assert [a for a, _, _ in shown("--subject", f"#{opened.id}")] == ["escalation.opened"]
    bad = run_cli(billing, "audit", "tail", "--since", "soon")
    assert bad.returncode == 2 and bad.stderr.startswith("loomtui: error: --since: expected a time ago"), bad.stderr


def test_audit_tail_over_a_damaged_log_warns_and_shows_the_store_s_entries(billing: Path) -> None:
    run_cli(billing, "claim", "add", "--sandbox", "s1", QUOTE)
    log = billing / ".git" / "loom" / "audit.jsonl"
    with open(log, "ab") as handle:
        handle.write(b"\xff junk\n")
    added = run_cli(billing, "claim", "add", "--sandbox", "s2", "payments/refunds.py::RefundService.issue_refund")
    assert added.returncode == 0
    done = run_cli(billing, "audit", "tail", "-n", "1")
    assert "claim.added" in done.stdout and "s2" not in log.read_text(errors="replace")
    assert "warning:" in done.stderr and "was damaged or changed" in done.stderr and "audit verify" in done.stderr
    assert run_cli(billing, "audit", "tail", "-n", "0").stdout == ""  # not "(the audit log is empty)"


def test_an_override_that_is_not_taken_says_why_before_the_conflicts(billing: Path) -> None:
    run_cli(billing, "claim", "add", "--sandbox", "s1", QUOTE)
    denied = run_cli(billing, "claim", "add", "--sandbox", "s2", QUOTE, "--override", "hotfix")
    assert denied.returncode == 1
    first, *rest = denied.stderr.splitlines()
    assert first.startswith("refused: ") and "may not override" in first, denied.stderr
    assert any("s1" in line for line in rest)  # then the conflicts, as without --override


def test_sandbox_list_keeps_its_columns_with_a_long_runtime_name(billing: Path) -> None:
    (billing / ".loom" / "loom.yaml").write_text(
        "version: 1\nruntimes:\n  a-runtime-with-a-long-name:\n    argv: [\"true\"]\n  x:\n    argv: [\"true\"]\n")
    run_cli(billing, "sandbox", "new", "--runtime", "a-runtime-with-a-long-name", "--task", "tidy", "--no-start")
    run_cli(billing, "sandbox", "new", "--runtime", "x", "--task", "short", "--no-start")
    header, *lines = run_cli(billing, "sandbox", "list").stdout.splitlines()
    rows = [line for line in lines if not line.startswith(" ")]
    column = header.index("TASK")
    assert sorted(row[column:].split()[0] for row in rows) == ["short", "tidy"]
    # A person's turn is said under its row, with the command that takes it.
    nexts = [line.split("next: ", 1)[1] for line in lines if line.startswith(" ")]
    assert len(nexts) == 2 and all("(`loomtui sandbox start " in line for line in nexts), nexts
    assert "command" in run_cli(billing, "sandbox", "new", "--help").stdout


def test_sandbox_new_says_its_agent_is_starting_not_planned(billing: Path) -> None:
    script = billing.parent / "hello.yaml"
    script.write_text('- {log: "hello"}\n')
    started = run_cli(billing, "sandbox", "new", "--runtime", "script", "--script", str(script), "--task", "say hello")
    first = started.stdout.splitlines()[0]
    # Its supervisor may already have the agent running by the time the line is written, or ended: each is the
    # truth (a first start may say what it waits on: the history its git reads being packed); "planned" is not.
    state = first.rsplit(", ", 1)[1]
    assert started.returncode == 0 and (state.startswith("agent starting") or state in (
        "running", "exited", "gating", "awaiting_review", "approved", "merged")), first
    held = run_cli(billing, "sandbox", "new", "--runtime", "script", "--script", str(script), "--task", "later",
                   "--no-start")
    assert held.stdout.splitlines()[0].endswith(", planned")  # not started: a plan it is


def test_every_help_example_is_a_command_line_loomtui_takes() -> None:
    """A newcomer found a whole command line in two of 82 help pages: the examples each page ends with now are
    parsed here, so a renamed option fails this test before a reader copies it."""
    import argparse
    import contextlib
    import io
    import shlex

    from loomtui.cli import build_parser
    from loomtui.cli.examples import EXAMPLES

    parser = build_parser()
    shown = {sub.prog: sub for sub in _parsers(parser)}
    for prog, lines in EXAMPLES.items():
        assert prog in shown, f"no command {prog!r}"
        help_text = shown[prog].format_help()
        assert "\nexamples:\n" in help_text and all(f"\n  {line}\n" in help_text + "\n" for line in lines), help_text
        for line in lines:
            command = line.split("  #")[0].split(" && ")[0].split(" | ")[0]
            argv = shlex.split(command)
            assert argv[0] == "loomtui" and " ".join(argv[1:len(prog.split())]) == prog.removeprefix("loomtui "), line
            with contextlib.redirect_stderr(io.StringIO()) as said:
                try:
                    parsed = parser.parse_args(argv[1:])
                except SystemExit:
                    raise AssertionError(f"{line}: {said.getvalue()}") from None
            assert isinstance(parsed, argparse.Namespace)


def _parsers(parser):  # type: ignore[no-untyped-def]
    """Every parser below `parser`, its own included."""
    import argparse

    yield parser
    for action in parser._actions:  # noqa: SLF001 - argparse keeps subcommands only there
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)
