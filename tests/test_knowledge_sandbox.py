"""The knowledge layer's slice reaches each sandbox's agent where its runtime reads it, and stays out of
the agent's commits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import demo_repo
from loomtui.execution import review
from loomtui.execution import sandboxes as sb
from loomtui.workflow import tasks
from loomtui.workflow.engine import wait_until_settled
from loomtui.workspace import open_workspace
from tests.conftest import agent_ended, git

AGENT = """\
#!{python}
import os, subprocess, sys
open("notes.txt", "w").write("the agent's own work\\n")
instructions = "CLAUDE.md" if os.path.basename(sys.argv[0]) == "claude" else "AGENTS.md"
open(instructions, "a").write("Run make lint before committing.\\n")  # as a task asked
subprocess.run(["git", "add", "-A"], check=True)
subprocess.run(["git", "commit", "-qm", "agent work"], check=True)
"""


@pytest.fixture
def billing(tmp_path: Path) -> Path:
    return demo_repo(tmp_path)


def stand_in(repo: Path, name: str, agent: str = AGENT) -> None:
    """A program called `name` (so loomtui treats it as that agent) that commits everything it sees."""
    program = repo.parent / "bin" / name
    program.parent.mkdir(exist_ok=True)
    program.write_text(agent.format(python=sys.executable))
    program.chmod(0o755)
    config_path = repo / ".loom" / "loom.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["runtimes"][name] = {"argv": [str(program)], "mode": "headless", "network": False}
    config_path.write_text(yaml.safe_dump(config))


def test_a_sandbox_gets_the_slice_for_its_task_recorded_and_audited(billing: Path) -> None:
    workspace = open_workspace(billing)
    record = tasks.create_sandbox(workspace, "make invoice totals round each line", "command",
                               command=["true"], claims=["payments/invoices.py"])
    text = sb.sandbox_paths(workspace.paths, record.id).context.read_text()
    assert "banker" in text.lower() and "docs/adr/0002" in text  # ADR 0002, with where it comes from
    stored = workspace.store.get_sandbox(record.id).data["context"]  # type: ignore[union-attr]
    assert stored["version"] and any("0002" in s["id"] for s in stored["sections"])
    sliced = [e for e in workspace.audit.entries() if e.action == "context.sliced" and e.subject == record.id]
    assert len(sliced) == 1 and sliced[0].details["version"] == stored["version"]
    other = tasks.create_sandbox(workspace, "fix a typo in the refund notification template", "command",
                              command=["true"])
    assert "0002" not in sb.sandbox_paths(workspace.paths, other.id).context.read_text()


@pytest.mark.parametrize(("program", "file", "tracked"), [("codex", "AGENTS.md", True),
                                                          ("claude", "CLAUDE.md", False)])
def test_the_slice_is_where_the_agent_reads_it_and_never_part_of_its_work(
        billing: Path, program: str, file: str, tracked: bool) -> None:
    stand_in(billing, program)
    workspace = open_workspace(billing)
    assert bool(git(billing, "ls-files", "--", file)) == tracked  # the sample repo has an AGENTS.md
    record = tasks.create_sandbox(workspace, "make invoice totals round each line", program, isolate=False)
    worktree = Path(record.worktree)
    assert (worktree / file).read_text().startswith("# Context for this task")
    tasks.start(workspace, record.id)
    done = agent_ended(workspace, record.id)
    assert done.exit_code == 0, sb.read_log_tail(workspace, record.id)
    committed = git(billing, "show", "--name-only", "--format=", record.branch).split()
    assert committed == ["notes.txt"], committed  # `git add -A` by the agent: still not loomtui's file
    assert [f.path for f in review.diff(workspace, record.id).files] == ["notes.txt"]
    status = subprocess.run(["git", "status", "--porcelain"], cwd=worktree, capture_output=True, text=True)
    assert status.stdout == ""
    # Its edit of the context file is in no branch, so its end says so and keeps the text: it was lost
    # without a word (the hook refuses it too, where there is one: see test_hooks).
    kept = sb.sandbox_paths(workspace.paths, record.id).dir / f"edited-{file}"
    assert done.data["context_edited"] == {file: str(kept)}
    assert kept.read_text().endswith("Run make lint before committing.\n")
    entries = [e.details for e in workspace.audit.entries() if e.action == "sandbox.context_edited"]
    assert entries == [{"files": {file: str(kept)}}]
    # And the slice is back where the agent read it: run again, it read what the last run planted there.
    context = sb.sandbox_paths(workspace.paths, record.id).context
    assert (worktree / file).read_bytes() == context.read_bytes()
    # A refresh keeps an edit made since, as the end does (it wrote over it).
    from loomtui.execution.context_files import refresh

    (worktree / file).write_text("planted again\n")
    refresh(workspace, record.id)
    assert kept.read_text() == "planted again\n" and (worktree / file).read_bytes() == context.read_bytes()


FOLDER_AGENT = """\
#!{python}
import os
os.remove("CLAUDE.md")
os.mkdir("CLAUDE.md")
open("CLAUDE.md/notes.md", "w").write("planted\\n")
"""


def test_a_context_file_made_a_folder_is_moved_aside_and_the_slice_written_back(
        billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent that made CLAUDE.md a folder had every later run read none of loomtui's context (no file is
    written over a folder, and the write-back's error was dropped), while `context drift` said "fresh"."""
    from loomtui.errors import LoomError
    from loomtui.execution import context_files

    stand_in(billing, "claude", FOLDER_AGENT)
    workspace = open_workspace(billing)
    record = tasks.create_sandbox(workspace, "make invoice totals round each line", "claude", isolate=False)
    worktree, paths = Path(record.worktree), sb.sandbox_paths(workspace.paths, record.id)
    tasks.start(workspace, record.id)
    done = agent_ended(workspace, record.id)
    kept = paths.dir / "edited-CLAUDE.md"
    assert done.data["context_edited"] == {"CLAUDE.md": str(kept)}
    assert (kept / "notes.md").read_text() == "planted\n"  # the agent's, kept
    assert (worktree / "CLAUDE.md").read_bytes() == paths.context.read_bytes()
    # Made a folder again since its end, one that cannot be moved: the run again is refused, saying so.
    (worktree / "CLAUDE.md").unlink()
    (worktree / "CLAUDE.md").mkdir()

    monkeypatch.setattr(context_files, "_move_aside", lambda *_args: "")  # as a rename that failed (EBUSY)
    with pytest.raises(LoomError, match=f"sandbox {record.id} cannot run again: loomtui's context cannot be written "
                                        "back to CLAUDE.md in its worktree"):
        tasks.start(workspace, record.id)
    monkeypatch.undo()
    tasks.start(workspace, record.id)  # moved aside now, and the slice back for the run
    agent_ended(workspace, record.id)
    assert (worktree / "CLAUDE.md").read_bytes() == paths.context.read_bytes()


async def test_the_context_tab_shows_what_the_agent_got_and_flags_it_stale(billing: Path) -> None:
    from textual.widgets import Static, TabbedContent

    from loomtui.tui.app import LoomApp
    from tests.test_tui import wait_for

    adr = billing / "docs" / "adr" / "0002-bankers-rounding-per-line-item.md"
    # The team's files are anyone's to edit: a heading's colour code reached the terminal.
    adr.write_text(adr.read_text().replace("# 2. Banker's rounding", "# 2. Banker's \x1b[31mrounding", 1))
    git(billing, "commit", "-qam", "A heading in colour")
    workspace = open_workspace(billing)
    record = tasks.create_sandbox(workspace, "make invoice totals round each line", "command",
                               command=["true"], claims=["payments/invoices.py"])
    adr.write_text(adr.read_text().replace("line item", "line item (amended)"))  # the team's decision moved
    git(billing, "commit", "-qam", "Amend ADR 0002")  # committed: what `context drift` and the tab compare with
    app = LoomApp(workspace)
    async with app.run_test(size=(160, 45)) as pilot:
        view = app.screen.query_one("#context", Static)
        await wait_for(pilot, lambda: "STALE" in str(view.render()), timeout=30)
        app.screen.query_one("#detail", TabbedContent).active = "tab-context"
        await pilot.pause()
        shown = str(view.render())
        stored = workspace.store.get_sandbox(record.id).data["context"]  # type: ignore[union-attr]
        assert f"version {stored['version'][:12]}" in shown
        assert "docs/adr/0002-bankers-rounding-per-line-item.md" in shown and "score" in shown
        assert "changed:" in shown
        assert "\x1b" not in shown and "Banker's ␛[31mrounding" in shown


async def test_the_context_tab_shown_flags_a_commit_made_meanwhile(billing: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit to the team's files while the tab was shown: it said "fresh" for good (drift was checked only
    when the pane repainted, and nothing of the sandbox changed)."""
    from textual.widgets import Static, TabbedContent

    from loomtui.tui.app import LoomApp
    from loomtui.tui.screens import dashboard
    from tests.test_tui import wait_for

    monkeypatch.setattr(dashboard, "DRIFT_RECHECK_S", 0.3)
    workspace = open_workspace(billing)
    record = tasks.create_sandbox(workspace, "make invoice totals round each line", "command", command=["true"],
                                  claims=["payments/invoices.py"])
    wait_until_settled(workspace, record.id)  # nothing more happens to it: no store event repaints the tab
    app = LoomApp(workspace)
    async with app.run_test(size=(160, 45)) as pilot:
        view = app.screen.query_one("#context", Static)
        app.screen.query_one("#detail", TabbedContent).active = "tab-context"
        await wait_for(pilot, lambda: "fresh" in str(view.render()), timeout=30)
        await pilot.pause(1.0)
        adr = billing / "docs" / "adr" / "0002-bankers-rounding-per-line-item.md"
        adr.write_text(adr.read_text().replace("line item", "line item (amended)"))
        git(billing, "commit", "-qam", "Amend ADR 0002")
        await wait_for(pilot, lambda: "STALE" in str(view.render()), timeout=30)
        # Refreshed: the tab said STALE of the version it had just given the agent for the rest of its recheck
        # interval (the drift found was cached by sandbox, not by the version it was found of).
        from loomtui.execution.context_files import refresh

        monkeypatch.setattr(dashboard, "DRIFT_RECHECK_S", 600.0)
        refresh(workspace, record.id)
        await wait_for(pilot, lambda: "STALE" not in str(view.render()) and "fresh" in str(view.render()), timeout=10)


async def test_the_context_view_of_a_repository_with_no_team_context_says_how_to_give_it_some(repo: Path) -> None:
    """A fresh repository read "No section matches." with no filter set, as if a filter had emptied it."""
    from textual.widgets import Static

    from loomtui.tui.app import LoomApp
    from tests.test_tui import wait_for

    app = LoomApp(open_workspace(repo))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await wait_for(pilot, lambda: "No team context yet" in str(app.screen.query_one("#section", Static).render()))
        shown = str(app.screen.query_one("#section", Static).render())
        assert "AGENTS.md, CLAUDE.md, docs/adr/*.md" in shown and "No section matches" not in shown


async def test_the_context_view_lists_searches_and_opens_sections_from_the_palette(billing: Path) -> None:
    from textual.command import CommandList
    from textual.widgets import DataTable, Input, Static

    from loomtui.tui.app import LoomApp
    from loomtui.tui.screens.context import ContextScreen
    from tests.test_tui import wait_for

    config = billing / ".loom" / "loom.yaml"  # a pin that matches no section: said in the summary
    config.write_text(config.read_text().replace("budget_tokens: 6000", "budget_tokens: 6000\n  pinned: [AGENTS.md#Cash]"))
    # An ADR naming code that is not there: flagged as `context drift` flags it (the view matched no mention
    # against the code, so never flagged one).
    (billing / "docs" / "adr" / "0009-ghost.md").write_text(
        "# 9. Ghost\n\n## Status\n\nAccepted\n\n## Decision\n\nUse `payments.currency.ghost_total`.\n")
    adr = billing / "docs" / "adr" / "0002-bankers-rounding-per-line-item.md"
    adr.write_text(adr.read_text() + "\nSee \x1b[31mred\x1b]0;retitled\x07 too.\n")  # drawn, never obeyed
    app = LoomApp(open_workspace(billing))
    said: list[str] = []
    notify = app.notify
    app.notify = lambda message, **kw: (said.append(f"{kw.get('title')}: {message}"),  # type: ignore[method-assign]
                                        notify(message, **kw))[1]
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("6")
        await pilot.pause()
        assert isinstance(app.screen, ContextScreen)
        table = app.screen.query_one("#sections", DataTable)
        await wait_for(pilot, lambda: table.row_count > 5, timeout=30)
        assert not any("read again" in line for line in said)  # opened: its summary says it, no toast
        await pilot.press("r")  # read again: said (the summary alone looked the same)
        await wait_for(pilot, lambda: any(line.startswith("context read again: version ") for line in said))
        summary = str(app.screen.query_one("#context-summary", Static).render())
        assert "1 problem: context.pinned: 'AGENTS.md#Cash' matches no section" in summary
        assert "1 ADR flagged" in summary
        assert "names what no longer exists: `payments.currency.ghost_total`" in " ".join(app.screen.flags.values())
        await pilot.press("slash")
        await pilot.pause()
        app.screen.query_one("#context-filter", Input).value = "bankers rounding"
        await wait_for(pilot, lambda: table.row_count > 0 and "0002" in str(table.coordinate_to_cell_key(
            table.cursor_coordinate).row_key.value))
        shown = str(app.screen.query_one("#section", Static).render())
        assert "round" in shown.lower()
        # Every control drawn, BEL too (Rich drops it, and BS, CR, unseen, before it could be drawn).
        assert "\x1b" not in shown and "␛[31mred␛]0;retitled␇ too" in shown
        # Its size as `context show` and the slices count it (the view said one token less).
        adr = next(section for section in app.screen.context.sections if "0002" in section.id)
        assert f"~{adr.tokens} tokens" in shown and adr.tokens * 4 > len(adr.text)
        await pilot.press("escape")  # clears the filter
        await pilot.press("escape")  # back to the dashboard
        await pilot.pause()
        assert app.current_mode == "dashboard"
        await pilot.press("colon")
        await pilot.pause()
        await pilot.press(*"money")
        results = app.screen.query_one(CommandList)

        def offered() -> bool:
            return results.option_count > 0 and "context: " in str(results.get_option_at_index(0).prompt)

        await wait_for(pilot, offered, timeout=15)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ContextScreen))
        screen = app.screen
        assert isinstance(screen, ContextScreen)
        table = screen.query_one("#sections", DataTable)

        def opened() -> bool:
            if not table.row_count:
                return False
            key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
            return "money" in key.lower() and table.cursor_row > 0  # the palette's pick, not the first row

        await wait_for(pilot, opened, timeout=15)


def test_refresh_gives_a_stale_agent_the_context_now_and_never_writes_through_its_links(billing: Path) -> None:
    stand_in(billing, "claude")
    workspace = open_workspace(billing)
    record = tasks.create_sandbox(workspace, "make invoice totals round each line", "claude", isolate=False,
                               claims=["payments/invoices.py"])
    adr = billing / "docs" / "adr" / "0002-bankers-rounding-per-line-item.md"
    adr.write_text(adr.read_text() + "\nAmended: round half even, per line, always.\n")
    git(billing, "commit", "-qam", "Amend ADR 0002")
    outside = billing.parent / "precious.txt"
    outside.write_text("not the agent's\n")
    claude_md = Path(record.worktree) / "CLAUDE.md"
    claude_md.unlink()
    claude_md.symlink_to(outside)  # what a hostile agent would leave for loomtui to write through
    done = subprocess.run([sys.executable, "-m", "loomtui", "context", "refresh", record.id[:-2], "--json"],
                          cwd=billing, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sandbox"] == record.id  # named by a prefix: said by its id
    assert outside.read_text() == "not the agent's\n"
    assert not claude_md.is_symlink() and "Amended: round half even" in claude_md.read_text()
    assert "Amended" in sb.sandbox_paths(workspace.paths, record.id).context.read_text()
    sliced = [e for e in open_workspace(billing).audit.entries() if e.action == "context.sliced"]
    assert [e.subject for e in sliced].count(record.id) == 2


def test_a_refresh_slices_for_the_code_held_now_from_its_target_which_drift_compares_with(billing: Path) -> None:
    """A refresh read the claims the last slice recorded (a claim added since was never read), and both it and
    drift read HEAD's context: a sandbox for `release` read stale at once, and a refresh gave it main's ADRs."""
    from loomtui.execution.context_files import refresh
    from loomtui.governance.coordinator import governed_coordinator
    from loomtui.knowledge.engine import drift_report

    workspace = open_workspace(billing)
    record = tasks.create_sandbox(workspace, "tidy the notification templates", "command", command=["true"])
    assert "0002" not in sb.sandbox_paths(workspace.paths, record.id).context.read_text()
    governed_coordinator(workspace).claim(record.id, "payments/invoices.py", reason="it touches totals after all")
    refresh(workspace, record.id)
    assert "docs/adr/0002" in sb.sandbox_paths(workspace.paths, record.id).context.read_text()  # banker's rounding

    git(billing, "branch", "release")
    released = tasks.create_sandbox(workspace, "make invoice totals round each line", "command", command=["true"],
                                    base="release")
    adr = billing / "docs" / "adr" / "0009-totals-in-minor-units.md"
    adr.write_text("# 9. Totals in minor units\n\n## Status\n\nAccepted\n\n## Decision\n\n"
                   "Invoice totals are summed in minor units (`payments/invoices.py`).\n")
    git(billing, "add", "-A")
    git(billing, "commit", "-qm", "ADR 9, on main only")
    drift = {d.sandbox: d for d in drift_report(workspace).sandboxes}
    assert drift[released.id].status == "fresh", drift[released.id]  # release has no ADR 9
    assert drift[record.id].status != "fresh"  # main's sandbox: ADR 9 is new to it
    refresh(workspace, released.id)
    assert "0009" not in sb.sandbox_paths(workspace.paths, released.id).context.read_text()


def test_a_refresh_that_cannot_slice_says_why_in_one_line_and_audits_it(billing: Path) -> None:
    workspace = open_workspace(billing)
    record = tasks.create_sandbox(workspace, "make invoice totals round each line", "command", command=["true"])
    config = billing / ".loom" / "loom.yaml"
    config.write_text(config.read_text().replace("budget_tokens: 6000", "budget_tokens: 10\n  pinned: [AGENTS.md]"))
    git(billing, "commit", "-qam", "a tiny budget")
    before = sb.sandbox_paths(workspace.paths, record.id).context.read_text()
    done = subprocess.run([sys.executable, "-m", "loomtui", "context", "refresh", record.id], cwd=billing,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert f"sandbox {record.id}: the context cannot be sliced now: the context budget of 10" in done.stderr
    assert sb.sandbox_paths(workspace.paths, record.id).context.read_text() == before  # what it had, kept
    entries = [e for e in open_workspace(billing).audit.entries() if e.action == "context.unavailable"]
    assert [e.subject for e in entries] == [record.id]


def test_a_refresh_of_a_sandbox_that_has_ended_for_good_is_refused(billing: Path) -> None:
    """Merged, rejected or archived: no agent reads its context again, and the refresh wrote files and
    audit entries for it all the same."""
    from loomtui.errors import LoomError
    from loomtui.execution.context_files import refresh

    workspace = open_workspace(billing)
    record = tasks.create_sandbox(workspace, "make invoice totals round each line", "command", command=["true"])
    tasks.remove(workspace, record.id, force=True)
    with pytest.raises(LoomError, match=f"sandbox {record.id} is archived: its agent has ended for good") as refused:
        refresh(workspace, record.id)
    assert refused.value.exit_code == 1
    sliced = [e for e in workspace.audit.entries() if e.action == "context.sliced" and e.subject == record.id]
    assert len(sliced) == 1  # only the slice it got when it was made


def test_a_refresh_of_a_sandbox_whose_worktree_is_gone_is_refused_and_audits_nothing(billing: Path) -> None:
    """The worktree deleted: `context refresh` said "refreshed", exit 0, and its audit entry listed
    CLAUDE.md as written where nothing could be."""
    import shutil

    from loomtui.errors import LoomError
    from loomtui.execution.context_files import refresh

    workspace = open_workspace(billing)
    record = tasks.create_sandbox(workspace, "make invoice totals round each line", "claude")
    shutil.rmtree(record.worktree)
    with pytest.raises(LoomError, match=f"sandbox {record.id}: its worktree .* is missing") as refused:
        refresh(workspace, record.id)
    assert refused.value.exit_code == 1
    sliced = [e for e in workspace.audit.entries() if e.action == "context.sliced" and e.subject == record.id]
    assert len(sliced) == 1  # only the slice it got when it was made


def test_after_loomtui_saves_what_an_agent_left_the_context_file_is_still_out_of_its_commits(billing: Path) -> None:
    """The save after an agent that never committed (Codex, often) reset the worktree's index and dropped the
    skip-worktree mark of the tracked AGENTS.md loomtui wrote: `git status` showed it modified, and the next
    `git add -A` (a person resolving a merge conflict, as the list says to) committed the slice."""
    stand_in(billing, "codex", "#!{python}\nopen('notes.txt', 'w').write('work\\n')\n")  # and no commit
    workspace = open_workspace(billing)
    record = tasks.create_sandbox(workspace, "note the totals", "codex", isolate=False)
    worktree = Path(record.worktree)
    assert git(worktree, "ls-files", "-v", "AGENTS.md").startswith("S ")
    tasks.start(workspace, record.id)
    done = agent_ended(workspace, record.id)
    assert done.data.get("saved_commit"), done.data
    assert git(worktree, "ls-files", "-v", "AGENTS.md").startswith("S ")
    status = subprocess.run(["git", "status", "--porcelain"], cwd=worktree, capture_output=True, text=True)
    assert status.stdout == ""


def test_the_slice_stays_out_of_saved_work_when_the_worktree_was_read_while_it_was_written(
        billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app, woken by the audit entry of the slice, read the new worktree before the sandbox named AGENTS.md as
    loomtui's: the slice stayed in loomtui's index, and the agent's work saved at its end committed it (the team's
    AGENTS.md replaced on the branch, for review and merge into main)."""
    stand_in(billing, "codex", "#!{python}\nopen('notes.txt', 'w').write('left uncommitted\\n')\n")
    workspace = open_workspace(billing)
    recorded = sb.record_context

    def read_meanwhile(ws, sandbox_id, given, written):  # type: ignore[no-untyped-def]
        sb.worktree_tree(ws, sb.get_sandbox(ws, sandbox_id))  # as the app's conflicts check does
        return recorded(ws, sandbox_id, given, written)

    monkeypatch.setattr(sb, "record_context", read_meanwhile)
    record = tasks.create_sandbox(workspace, "make invoice totals round each line", "codex", isolate=False)
    tasks.start(workspace, record.id)
    done = agent_ended(workspace, record.id)
    assert done.data.get("saved_commit"), done.data
    committed = git(billing, "show", "--name-only", "--format=", record.branch).split()
    assert committed == ["notes.txt"], committed


def test_a_context_file_swapped_for_a_link_or_a_fifo_after_its_look_is_never_read_through(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`context refresh` runs while the agent does: a link swapped in between loomtui's `lstat` and its read had a
    file hidden from the agent (a lead's `.env.local`) copied aside as `edited-CLAUDE.md`, where the agent reads
    it, and a FIFO hung the refresh for good. The look is made to say "a regular file" here, as in the race."""
    import os
    import stat as stat_module

    from loomtui.execution import context_files
    from loomtui.files import open_regular, read_regular

    secret, worktree, state = tmp_path / "secret.env", tmp_path / "wt", tmp_path / "state"
    worktree.mkdir()
    state.mkdir()
    secret.write_text("API_TOKEN=tok_live_SECRET\n")
    context = state / "context.md"
    context.write_text("# Context\n")
    (worktree / "CLAUDE.md").symlink_to(secret)
    os.mkfifo(worktree / "AGENTS.md")
    regular = secret.lstat()
    monkeypatch.setattr(Path, "lstat", lambda self: regular)  # the look, made before the swap
    edited = context_files.keep_edited(state, worktree, context, ["CLAUDE.md", "AGENTS.md"])
    assert edited == {"CLAUDE.md": "", "AGENTS.md": ""}  # unreadable, so nothing kept: the secret is nowhere
    assert not any("tok_live" in p.read_text() for p in state.iterdir() if p.is_file())
    assert context_files.not_in_place(worktree, context, ["CLAUDE.md", "AGENTS.md"]) == []  # written back
    monkeypatch.undo()
    assert stat_module.S_ISREG((worktree / "CLAUDE.md").lstat().st_mode)
    # And through a linked folder out of the directory given: refused, as the index reads an agent's files.
    (worktree / "out").symlink_to(tmp_path)
    with pytest.raises(OSError, match="outside the repository"), \
            open_regular(worktree / "out" / "secret.env", os.path.realpath(worktree)):
        pass
    assert read_regular(secret, 5) is None  # larger than the limit
