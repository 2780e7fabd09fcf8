"""Sandboxes from the dashboard, driven with the pilot over real script agents."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from textual.widgets import Input, Log, SelectionList, Static
from textual.widgets.selection_list import Selection

from loomtui.execution import sandboxes
from loomtui.store import SandboxRecord
from loomtui.tui.app import LoomApp
from loomtui.tui.screens.dashboard import SandboxTable
from loomtui.tui.screens.sandbox_forms import ConfirmScreen, DiffScreen
from loomtui.workflow import tasks
from loomtui.workflow.engine import wait_until_settled
from loomtui.workflow.steps import Step
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import demo_repo, new_script_sandbox_form
from tests.test_review import merge_mode
from tests.test_tui import wait_for

SIZE = (160, 45)
SCRIPT = """\
- {log: "agent says hello"}
- {replace: {path: notifications/templates/refund_issued.txt, old: recieve, new: receive}}
- {commit: "Fix a typo"}
- {log: "tick {n}", repeat: 600, every: 0.05}
"""


@pytest.fixture
def billing(tmp_path: Path) -> Path:
    """The sample repo where a person merges (`merge: manual`, whatever the sample's default)."""
    repo = merge_mode(demo_repo(tmp_path), "manual")
    (repo.parent / "typo.yaml").write_text(SCRIPT)
    return repo


@pytest.mark.usefixtures("real_time_agents")
async def test_new_sandbox_runs_streams_stops_diffs_and_archives(billing: Path) -> None:
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        form = await new_script_sandbox_form(pilot, app, billing.parent / "typo.yaml",
                                             "fix typos in notification templates")
        claims = form.query_one("#claims", SelectionList)
        await wait_for(pilot, lambda: claims.option_count > 0)
        claims.select(claims.get_option_at_index(0).value)
        check = form.query_one("#claim-check", Static)
        await wait_for(pilot, lambda: "No conflicts" in str(check.render()))
        await pilot.click("#start")
        table = app.screen.query_one("#sandboxes", SandboxTable)
        await wait_for(pilot, lambda: table.row_count == 1, timeout=15)
        sandbox_id = next(iter(table.rows)).value
        await wait_for(pilot, lambda: str(table.cell(sandbox_id, "status")) == "running", timeout=15)
        assert str(table.cell(sandbox_id, "claims")) == "1"
        log = app.screen.query_one("#agent-log", Log)
        await wait_for(pilot, lambda: any("agent says hello" in line for line in log.lines), timeout=10)

        await pilot.press("s")  # asks first: `n` leaves the agent running
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert f"Stop the agent of sandbox {sandbox_id}?" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert str(table.cell(sandbox_id, "status")) == "running"
        assert "stop_requested" not in app.workspace.store.get_sandbox(sandbox_id).data
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("y")
        # Once stopped, its supervisor reviews its commit: gates, then the policy, which would approve a
        # typo fix by itself, but the agent was cut off: one person looks first, its claim still held.
        await wait_for(pilot, lambda: str(table.cell(sandbox_id, "status")) == "awaiting_review", timeout=60)
        await wait_for(pilot, lambda: "press 3" in str(table.cell(sandbox_id, "next")))
        assert [r.status for r in app.workspace.store.gate_runs(sandbox_id)] == ["passed", "passed"]
        assert len(app.workspace.store.live_claims(sandbox_id)) == 1
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen))
        assert "receive" in app.screen.patch
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: table.row_count == 0, timeout=15)
        record = sandboxes.get_sandbox(app.workspace, sandbox_id)
        assert record.status == "archived"
        assert app.workspace.store.live_claims(sandbox_id) == []  # released with the archive


FAKE_CLAUDE = """\
#!{python}
import json, os
print(json.dumps({{"type": "system", "subtype": "init", "model": "stand-in"}}), flush=True)
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False, "num_turns": 3,
                  "total_cost_usd": 0.25, "usage": {{"input_tokens": 900, "output_tokens": 120,
                                                             "cache_read_input_tokens": 1100}},
                  "permission_denials": [{{"tool_name": "Write", "tool_use_id": "t1",
                                          "tool_input": {{"file_path": os.getcwd() + "/payments/[ledger].py"}}}}]}}),
      flush=True)
"""


async def test_the_detail_shows_what_the_agent_reported_tokens_cost_and_refused_calls(billing: Path) -> None:
    import sys

    import yaml

    program = billing.parent / "bin" / "claude"
    program.parent.mkdir()
    program.write_text(FAKE_CLAUDE.format(python=sys.executable))
    program.chmod(0o755)
    config_path = billing / ".loom" / "loom.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["runtimes"]["claude"] = {"argv": [str(program), "-p", "{task}", "--output-format", "stream-json"],
                                    "mode": "headless", "network": False}
    config_path.write_text(yaml.safe_dump(config))
    workspace = open_workspace(billing)
    record = tasks.start(workspace, tasks.create_sandbox(workspace, "try the ledger", "claude").id)
    # Its writes were refused, so it ended with no commit: nothing to review, nobody is asked.
    assert wait_until_settled(workspace, record.id, timeout=120).step == Step.NO_CHANGE
    assert workspace.store.get_sandbox(record.id).status == "exited"
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        details = app.screen.query_one("#details", Static)
        await wait_for(pilot, lambda: "refused" in str(details.render()) and "tool call" in str(details.render()))
        shown = " ".join(str(details.render()).split())  # each value wraps under its label
        assert "3 turns, 2,000 in / 120 out tokens, $0.2500" in shown  # its cache's read too (it said 900 in)
        # Agent text shown as it is, never read as markup; a path in its worktree as the repository names it (the
        # worktree's absolute path stood before it, as nowhere else).
        assert shown.endswith("1 tool call refused Write payments/[ledger].py"), shown
        assert "no-change: the agent ended without a change" in shown


async def test_a_planned_sandbox_says_press_s_and_s_starts_it(billing: Path) -> None:
    workspace = open_workspace(billing)
    record = tasks.create_sandbox(workspace, "fix typos later", "script", script=billing.parent / "typo.yaml")
    assert record.status == "planned"
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#sandboxes", SandboxTable)
        await wait_for(pilot, lambda: "press S · " in str(table.cell(record.id, "next")))
        table.focus()
        await pilot.press("S")
        await wait_for(pilot, lambda: str(table.cell(record.id, "status")) in ("running", "exited",
                                                                                "awaiting_review", "approved"))
        await pilot.press("s")
        await pilot.pause()
        if isinstance(app.screen, ConfirmScreen):  # asked only while it runs
            await pilot.press("y")
        await wait_for(pilot, lambda: str(table.cell(record.id, "status")) != "running", timeout=30)


async def test_shift_x_archives_every_merged_or_rejected_sandbox_after_asking(billing: Path) -> None:
    workspace = open_workspace(billing)
    made = [tasks.create_sandbox(workspace, f"task {n}", "script", script=billing.parent / "typo.yaml")
            for n in range(3)]
    workspace.store.update_sandbox(made[0].id, status="merged")
    workspace.store.update_sandbox(made[1].id, status="rejected")
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#sandboxes", SandboxTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        table.focus()
        await pilot.press("X")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question.startswith(
            f"Archive the 2 merged or rejected sandboxes ({made[1].id}, {made[0].id})?")  # as the table lists them
        await pilot.press("y")
        await wait_for(pilot, lambda: table.row_count == 1, timeout=15)
        assert [row.value for row in table.rows] == [made[2].id]  # a planned task is not done with
        assert {workspace.store.get_sandbox(m.id).status for m in made[:2]} == {"archived"}  # type: ignore[union-attr]
        await pilot.press("X")  # nothing left to archive: said, not asked
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)


async def test_an_agent_that_failed_without_a_change_says_s_runs_it_again_and_s_does(billing: Path) -> None:
    workspace = open_workspace(billing)
    failing = billing.parent / "fail.yaml"
    failing.write_text("- {exit: 3}\n")
    record = tasks.start(workspace, tasks.create_sandbox(workspace, "the model API is down", "script",
                                                         script=failing).id)
    assert wait_until_settled(workspace, record.id).step == Step.NO_CHANGE
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#sandboxes", SandboxTable)
        await wait_for(pilot, lambda: str(table.cell(record.id, "next")).startswith("S runs it again · "))
        table.focus()
        assert "S" in {b.binding.key_display or b.binding.key for b in app.active_bindings.values()
                       if b.binding.show}  # the footer offers it
        await pilot.press("S")
        await wait_for(pilot, lambda: (workspace.store.get_sandbox(record.id) or record).data.get("runs") == 2)


async def test_a_failed_step_says_r_retries_it_and_r_does(billing: Path) -> None:
    """A failed step had no key: the Next column said "failed-step: ...", S refused it ("only a planned sandbox
    ... starts"), the palette had no retry; only `loomtui sandbox advance` moved it."""
    workspace = open_workspace(billing)
    record = tasks.create_sandbox(workspace, "read the policy", "script", script=billing.parent / "typo.yaml")
    workspace.store.update_sandbox(record.id, data={"step_error": {  # as a policy that could not be read left it
        "step": "read the policy", "error": "rules: [[[: not YAML", "status": "planned", "at": 0}})
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#sandboxes", SandboxTable)
        await wait_for(pilot, lambda: str(table.cell(record.id, "next")).startswith("R retries it · read the policy failed: "))
        table.focus()
        await pilot.pause()
        assert "R" in {b.binding.key_display or b.binding.key for b in app.active_bindings.values()
                       if b.binding.show}  # the footer offers it
        await pilot.press("R")
        await wait_for(pilot, lambda: "press S · " in str(table.cell(record.id, "next")))
        await pilot.press("R")  # nothing to retry now: said (it said "done" of nothing)
        await wait_for(pilot, lambda: any(f"sandbox {record.id}: nothing to retry" in n.message
                                          for n in app._notifications))


async def test_a_key_pressed_after_archiving_the_selected_row_here_acts_on_the_row_now_selected(
        billing: Path) -> None:
    """Archived with `x` `y` in this app, on purpose: the next key was refused as if the row had gone unseen
    ("the one selected, is gone ... press again"), though the detail already showed the row now selected."""
    workspace = open_workspace(billing)
    kept, going = (planned_task(workspace, billing, f"task {n}") for n in range(2))
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        table = await table_on(app, pilot, going.id, rows=2)
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.pause()
        await pilot.press("S")
        await wait_for(pilot, lambda: (workspace.store.get_sandbox(kept.id) or kept).status != "planned")
        assert not any("the one selected, is gone" in n.message for n in app._notifications)
        # Asked and answered no, then removed from the command line: gone unseen, said (the guard stayed off).
        other, last = (planned_task(workspace, billing, f"task {n}") for n in (3, 4))
        await wait_for(pilot, lambda: table.row_count == 3)
        table.move_cursor(row=table.get_row_index(last.id))
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        tasks.remove(workspace, last.id, force=True)
        await wait_for(pilot, lambda: table.row_count == 2)
        await pilot.press("S")
        await wait_for(pilot, lambda: any(f"sandbox {last.id}, the one selected, is gone" in n.message
                                          for n in app._notifications))


async def test_a_key_pressed_after_the_selected_row_went_says_so_and_acts_on_no_other(billing: Path) -> None:
    """The selected sandbox archived from the CLI: the cursor fell on the row below, and `S` (no question asked)
    reran a sandbox nobody chose."""
    workspace = open_workspace(billing)
    kept, going = (planned_task(workspace, billing, f"task {n}") for n in range(2))
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        table = await table_on(app, pilot, going.id, rows=2)
        tasks.remove(workspace, going.id, force=True)
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("S")
        await pilot.pause()
        assert workspace.store.get_sandbox(kept.id).status == "planned"  # type: ignore[union-attr]
        assert any(f"sandbox {going.id}, the one selected, is gone" in n.message for n in app._notifications)
        await pilot.press("S")  # again, knowingly: it acts
        await wait_for(pilot, lambda: (workspace.store.get_sandbox(kept.id) or kept).status != "planned")
        # The last row going (the cursor moves up to the one above): the same; moved away and back, no warning.
        planned_task(workspace, billing, "task 3")
        await wait_for(pilot, lambda: table.row_count == 2)
        last = str(list(table.rows)[-1].value)
        table.move_cursor(row=table.get_row_index(last))
        await pilot.pause()
        tasks.remove(workspace, last, force=True)
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.pause()
        assert table.row_gone_under_cursor() == last


def planned_task(workspace: Workspace, billing: Path, task: str) -> SandboxRecord:
    """A planned script sandbox for `task` (its script fixes a typo)."""
    return tasks.create_sandbox(workspace, task, "script", script=billing.parent / "typo.yaml")


async def table_on(app: LoomApp, pilot, sandbox_id: str, rows: int) -> SandboxTable:  # type: ignore[no-untyped-def]
    """The Sandboxes table once it shows `rows` rows, focused, its cursor on `sandbox_id`."""
    table = app.screen.query_one("#sandboxes", SandboxTable)
    await wait_for(pilot, lambda: table.row_count == rows)
    table.focus()
    table.move_cursor(row=table.get_row_index(sandbox_id))
    await pilot.pause()
    return table


async def test_a_row_the_filter_hides_is_not_gone(billing: Path) -> None:
    """Filtered away, the cursor's row read as gone: Enter, x, m, d said "the one selected is gone"."""
    workspace = open_workspace(billing)
    alpha, beta = (planned_task(workspace, billing, task) for task in ("alpha thing", "beta thing"))
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        table = await table_on(app, pilot, alpha.id, rows=2)
        await pilot.press("slash", "b", "e", "t")
        await wait_for(pilot, lambda: [str(key.value) for key in table.rows] == [beta.id])
        assert table.row_gone_under_cursor() is None


async def test_with_no_sandbox_selected_a_key_says_so(billing: Path) -> None:
    """An empty table: R, S, s, m, x, d did nothing, with nothing said."""
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#sandboxes", SandboxTable)
        table.focus()
        await pilot.pause()
        for key in ("R", "S", "s", "m", "x", "d"):
            await pilot.press(key)
        await pilot.pause()
        said = [n.message for n in app._notifications if n.message.startswith("no sandbox selected (n makes one)")]
        assert len(said) == 6, [n.message for n in app._notifications]


async def test_a_new_sandbox_that_fails_keeps_what_was_typed_for_n_to_reopen(billing: Path) -> None:
    from textual.widgets import Input, Select

    from loomtui.tui.screens.sandbox_forms import NewSandboxScreen

    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        form = await new_script_sandbox_form(pilot, app, billing.parent / "typo.yaml", "fix typos, carefully")
        form.query_one("#after", Input).value = "zzzzzz"  # no such sandbox
        assert "{mcp_config}" in str(form.query_one("#command", Input).tooltip)  # every placeholder, from one list
        assert form.active_bindings["ctrl+s"].binding.show  # the footer offers it
        await pilot.press("ctrl+s")  # from the field being typed in: no Tab to the button
        await wait_for(pilot, lambda: any("no sandbox 'zzzzzz'" in str(n.message) for n in app._notifications))
        assert app.workspace.store.list_sandboxes() == []
        await pilot.press("n")
        await pilot.pause()
        again = app.screen
        assert isinstance(again, NewSandboxScreen)
        assert again.query_one("#task", Input).value == "fix typos, carefully"
        assert again.query_one("#after", Input).value == "zzzzzz"
        assert again.query_one("#script", Input).value == str(billing.parent / "typo.yaml")
        assert again.query_one("#runtime", Select).value == "script"
        await pilot.press("escape")  # cancelled: the draft goes, and `n` opens a fresh form
        await pilot.pause()
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewSandboxScreen))
        assert app.screen.query_one("#task", Input).value == ""


async def test_the_first_space_in_the_claims_list_ticks_the_first_suggestion(billing: Path) -> None:
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        form = await new_script_sandbox_form(pilot, app, billing.parent / "typo.yaml",
                                             "fix typos in notification templates")
        claims = form.query_one("#claims", SelectionList)
        await wait_for(pilot, lambda: claims.option_count > 0)
        claims.focus()
        await pilot.press("space")
        await pilot.pause()
        assert list(claims.selected) == [claims.get_option_at_index(0).value]
        # The task cut short (under 3 characters): the longer text's suggestions went on showing; the ticked stays.
        ticked = list(claims.selected)
        form.query_one("#task", Input).value = "fi"
        await wait_for(pilot, lambda: claims.option_count == 1)
        assert list(claims.selected) == ticked


@pytest.mark.parametrize(("then", "shown"), [("; echo first words", ["first words"]),
                                             ("", ["(the agent wrote no output)"])])
async def test_the_log_tabs_waiting_line_goes_once_the_agent_writes_or_ends(
        tmp_path: Path, then: str, shown: list[str]) -> None:
    """"(no output yet ...)" stayed above the agent's first lines, as if it were one of them; and a stopped
    agent's tab still said it, its output still to come."""
    repo = demo_repo(tmp_path)
    workspace = open_workspace(repo)
    flag = tmp_path / "go"
    record = tasks.start(workspace, tasks.create_sandbox(
        workspace, "speak later", "command", isolate=False,
        command=["sh", "-c", f'while [ ! -e "{flag}" ]; do sleep 0.05; done{then}']).id)
    app = LoomApp(workspace)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            log = app.screen.query_one("#agent-log", Log)
            await wait_for(pilot, lambda: any("no output yet" in line for line in log.lines), timeout=15)
            flag.touch()
            await wait_for(pilot, lambda: log.lines == shown, timeout=15)
    finally:
        flag.touch()
        wait_until_settled(workspace, record.id)


async def test_the_diff_line_follows_a_running_agents_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its edits and commits make no event: the Details tab said "+1 -0" of a branch that had gone to +3, until
    the cursor moved away and back."""
    from loomtui.tui.screens import dashboard

    monkeypatch.setattr(dashboard, "DIFF_REREAD_S", 0.2)
    repo = demo_repo(tmp_path)
    workspace = open_workspace(repo)
    flag = tmp_path / "more"
    record = tasks.start(workspace, tasks.create_sandbox(
        workspace, "write on", "command", isolate=False,
        command=["sh", "-c", f'echo one > NOTES.md; while [ ! -e "{flag}" ]; do sleep 0.05; done; '
                             f'printf "one\\ntwo\\nthree\\n" > NOTES.md; sleep 30']).id)
    app = LoomApp(workspace)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: "+1 -0" in screen.diff_stats.get(record.id, ""), timeout=15)
            flag.touch()
            await wait_for(pilot, lambda: "+3 -0" in screen.diff_stats.get(record.id, ""), timeout=15)
    finally:
        flag.touch()
        from loomtui.execution import agent_control

        agent_control.stop(workspace, record.id, grace=1)
        wait_until_settled(workspace, record.id)


async def test_a_commit_made_with_git_alone_is_reviewed_by_the_app(tmp_path: Path) -> None:
    """A merge conflict resolved in the worktree with git, as the README says: no record changed, the app read
    "resolve it" for good, and the review then due ran only when a person pressed `m`."""
    from tests.conftest import git, quick_gates

    from loomtui.execution.lifecycle import EXITED, RUNNING, transition
    from loomtui.governance.review import review_sandbox

    repo = merge_mode(quick_gates(demo_repo(tmp_path)), "manual")
    workspace = open_workspace(repo)
    script = tmp_path / "idle.yaml"
    script.write_text("- {log: idle}\n")
    record = tasks.create_sandbox(workspace, "a change", "script", script=script, isolate=False)
    tree = Path(record.worktree)
    (tree / "docs" / "runbook.md").write_text((tree / "docs" / "runbook.md").read_text() + "\nOne.\n")
    git(tree, "commit", "-qam", "one")
    for status in (RUNNING, EXITED):
        transition(workspace, record.id, status)
    assert review_sandbox(workspace, record.id).sandbox.status == "approved"  # docs: approved by the policy
    app = LoomApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: getattr(app, "_tips", None) is not None, timeout=15)  # its first look
        (tree / "docs" / "runbook.md").write_text((tree / "docs" / "runbook.md").read_text() + "Two.\n")
        git(tree, "commit", "-qam", "two")  # git alone: no record of it changes
        tip = git(tree, "rev-parse", "HEAD").strip()
        await wait_for(pilot, lambda: (lambda s: s.status != "approved" or s.approved_commit == tip)(
            sandboxes.get_sandbox(workspace, record.id)), timeout=20)


async def test_the_log_tab_of_an_agent_that_wrote_nothing_says_so(tmp_path: Path) -> None:
    """It was blank, which read as a log that failed to load."""
    repo = demo_repo(tmp_path)
    workspace = open_workspace(repo)
    record = tasks.start(workspace, tasks.create_sandbox(workspace, "say nothing", "command", isolate=False,
                                                         command=["true"]).id)
    wait_until_settled(workspace, record.id)
    app = LoomApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        log = app.screen.query_one("#agent-log", Log)
        await wait_for(pilot, lambda: "(the agent wrote no output)" in log.lines, timeout=15)


def test_a_sandbox_s_base_says_the_commit_it_started_from() -> None:
    """Every demo sandbox read "base HEAD", refunds and invoices too, which started from rounding's merge."""
    from loomtui.store import SandboxRecord
    from loomtui.tui.sandbox_text import sandbox_fields

    record = SandboxRecord(id="ab12cd", task="t", runtime="script", status="running", created=0.0, updated=0.0,
                           base_ref="HEAD", data={"base_sha": "3d6e9d1e6e" + "0" * 30})
    fields = {field.label: field.value for field in sandbox_fields(record, None, None)}
    assert fields["base"] == "HEAD at 3d6e9d1e6e"
    planned = SandboxRecord(id="ab12ce", task="t", runtime="script", status="planned", created=0.0, updated=0.0,
                            base_ref="HEAD", branch="loom/ab12ce", worktree="/nowhere/yet/ab12ce")
    waiting = {f.label: f.value for f in sandbox_fields(planned, None, None)}
    assert waiting["base"] == "HEAD"  # not made yet, nor are its branch and worktree (they were shown as made)
    assert waiting["branch"] == "loom/ab12ce (made when it starts)"
    assert waiting["worktree"] == "/nowhere/yet/ab12ce (made when it starts)"
    # A base commit recorded, the worktree not made yet: not a branch (`d` said there was none).
    based = dataclasses.replace(planned, data={"base_sha": "3d6e9d1e6e" + "0" * 30})
    assert {f.label: f.value for f in sandbox_fields(based, None, None)}["branch"] == "loom/ab12ce (made when it starts)"
    # One waiting on another task starts from its target's tip then, not the commit it was stated on.
    after = dataclasses.replace(based, data={**based.data, "target": "main", "after": ["ab12cd"]})
    assert {f.label: f.value for f in sandbox_fields(after, None, None)}["base"] == "main's tip when it starts"
    waited = dataclasses.replace(based, data={**based.data, "target": "main", "claims_waited": True})
    assert {f.label: f.value for f in sandbox_fields(waited, None, None)}["base"] == "main's tip when it starts"
    tagged = dataclasses.replace(waited, base_ref="v1")  # waited for claims on a base of its own: from there
    assert {f.label: f.value for f in sandbox_fields(tagged, None, None)}["base"] == "v1 at 3d6e9d1e6e"
    made = dataclasses.replace(planned, data={"base_sha": "3d6e9d1e6e" + "0" * 30, "worktree_made": True})
    assert {f.label: f.value for f in sandbox_fields(made, None, None)}["branch"] == "loom/ab12ce"


def test_a_sandbox_s_detail_says_what_its_agent_was_limited_to() -> None:
    """The record kept its limits (`limits:`), or why none held, and nothing showed them."""
    from loomtui.store import SandboxRecord
    from loomtui.tui.sandbox_text import sandbox_fields

    def shown(limits: str | None, **data: object) -> dict[str, tuple[str, str]]:
        record = SandboxRecord(id="ab12cd", task="t", runtime="script", status="running", created=0.0, updated=0.0,
                               data=data if limits is None else {"limits": limits, **data})
        return {field.label: (field.value, field.style) for field in sandbox_fields(record, None, None)}

    assert shown("1.0 GiB of memory, 32 processes, 1.5 CPUs")["limits"] == (
        "1.0 GiB of memory, 32 processes, 1.5 CPUs", "")
    assert shown("not limited: no cgroup v1 `memory` hierarchy")["limits"][1] == "bold yellow"
    assert "limits" not in shown(None)  # started before limits were kept
    assert shown("64 MiB of memory, 32 processes, 0.5 CPUs", cpu_held_back_s=4.2)["limits"][0] == (
        "64 MiB of memory, 32 processes, 0.5 CPUs (held back 4.2 s at its CPU limit)")


def test_the_archive_question_says_what_becomes_of_the_branch() -> None:
    """`x` said "the branch stays" of a merged sandbox, whose branch archiving deletes (its commits are in
    its target)."""
    from loomtui.store import SandboxRecord
    from loomtui.tui.screens.dashboard_keys import archive_question

    def asked(status: str, made: bool = True) -> str:
        return archive_question(SandboxRecord(id="ab12cd", task="t", runtime="script", status=status, created=0.0,
                                              updated=0.0, branch="loom/ab12cd",
                                              data={"target": "main", "worktree_made": made}))

    assert asked("merged").endswith("and its branch goes (its commits are in main).")
    assert asked("rejected").endswith("and the branch stays (unless its commits are all in main already).")
    # A held task that never started: no worktree, no branch, no work to commit (it said all three would be).
    assert asked("planned", made=False).startswith("Archive sandbox ab12cd? It never started: it has no worktree")
    # One waiting for people's decision: the escalation it withdraws is said.
    from loomtui.workflow.steps import Step, StepView

    waiting = archive_question(SandboxRecord(id="ab12cd", task="t", runtime="script", status="awaiting_review",
                                             created=0.0, updated=0.0, branch="loom/ab12cd", data={"target": "main"}),
                               StepView(Step.WAIT_DECISION, "a decision on escalation #4"))
    assert waiting.endswith(" It waits for a decision on escalation #4: that is withdrawn."), waiting


async def test_another_machines_sandbox_is_not_archived_or_paused_from_here(repo: Path) -> None:
    """On a team's store `x` asked "Archive sandbox ...?" for another machine's sandbox and `X` listed them:
    the one was then refused, the others skipped without a word."""
    from loomtui.store import SandboxRecord

    workspace = open_workspace(repo)
    workspace.store.add_sandbox(SandboxRecord(id="there1", task="t", runtime="script", status="rejected",
                                              created=1.0, updated=1.0, host="build-2"))
    app = LoomApp(workspace)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.latest_snapshot is not None and len(app.latest_snapshot.sandboxes) == 1)
        said = lambda: [n.message for n in app._notifications]  # noqa: E731
        for key, words in (("x", "sandbox there1 is on build-2: archive it there"),
                           ("m", "sandbox there1 is on build-2: merge it there"),
                           ("s", "sandbox there1 is on build-2: stop it there"),
                           ("p", "sandbox there1 is on build-2: pause or resume it there"),
                           ("X", "no merged or rejected sandbox of this machine to archive; 1 sandbox of build-2 is "
                                 "archived there")):
            await pilot.press(key)
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmScreen), key  # nothing asked
            await wait_for(pilot, lambda words=words: words in said())
        assert workspace.store.get_sandbox("there1").status == "rejected"  # type: ignore[union-attr]


async def test_an_action_still_under_way_after_a_few_seconds_says_so(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database that stopped answering (not gone: stalled) held `S` for 75 s with no word at all."""
    import threading

    from loomtui.tui.screens import dashboard

    monkeypatch.setattr(dashboard, "SLOW_ACTION_S", 0.2)
    release = threading.Event()
    app = LoomApp(open_workspace(repo))
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.latest_snapshot is not None)
        screen = app.screen
        assert isinstance(screen, dashboard.DashboardScreen)
        screen._run("start abc123", lambda _workspace: release.wait(10))
        said = lambda: [n.message for n in app._notifications]  # noqa: E731
        await wait_for(pilot, lambda: "start abc123: still under way after 0.2 s (waiting for the store, git or "
                                      "the agent)" in said())
        release.set()
        await wait_for(pilot, lambda: "start abc123: done" in said())


async def test_zoom_with_a_filter_set_keeps_the_keys_for_the_app(repo: Path) -> None:
    """`/ inv enter z`: focus went to the hidden filter's box, and `z` and `q` were typed into it."""
    from textual.widgets import Input

    from loomtui.store import SandboxRecord

    workspace = open_workspace(repo)
    for sandbox_id, task in (("inv001", "invoice totals"), ("ref002", "refunds")):
        workspace.store.add_sandbox(SandboxRecord(id=sandbox_id, task=task, runtime="script", status="exited",
                                                  created=1.0, updated=1.0))
    app = LoomApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.latest_snapshot is not None and len(app.latest_snapshot.sandboxes) == 2)
        await pilot.press("slash", *"inv", "enter")
        await pilot.pause()
        await pilot.press("z")
        await pilot.pause()
        assert app.screen.has_class("-zoom") and not isinstance(app.focused, Input), app.focused
        await pilot.press("z")
        await pilot.pause()
        assert not app.screen.has_class("-zoom")
        assert app.screen.query_one("#filter", Input).value == "inv"


async def test_x_on_a_running_sandbox_says_to_stop_it_first_without_asking(repo: Path) -> None:
    """`x` asked "Archive sandbox ...?" of a running sandbox, and a `y` then met "stop it first"."""
    from loomtui.identity import current_host
    from loomtui.store import SandboxRecord

    workspace = open_workspace(repo)
    workspace.store.add_sandbox(SandboxRecord(id="run001", task="t", runtime="script", status="running",
                                              created=1.0, updated=1.0, host=current_host()))
    from tests.test_tui_escalations import toasts_of

    app = LoomApp(workspace)
    said = toasts_of(app)  # every toast, however soon it goes (a loaded run's poll came after it had gone)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.latest_snapshot is not None and len(app.latest_snapshot.sandboxes) == 1)
        await pilot.press("x")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        await wait_for(pilot, lambda: any("sandbox run001 is running; stop it first" in line for line in said))


def test_w_asks_about_the_tasks_not_merged_by_name_and_state() -> None:
    """It said "stops waiting for 76b367 where not merged ... without their change" of one rejected task."""
    from loomtui.store import SandboxRecord
    from loomtui.tui.screens.dashboard_keys import drop_after_question

    held = SandboxRecord(id="5e32aa", task="t", runtime="script", status="planned", created=0.0, updated=0.0,
                         data={"after": ["76b367", "aa0001"], "target": "main"})
    assert drop_after_question(held, {"76b367": "rejected", "aa0001": "merged"}) == (
        "Sandbox 5e32aa stops waiting for 76b367 (rejected) and starts from main as it is, without its change. "
        "Go on?")
    assert "for 76b367 (rejected), aa0001 (failed) and starts" in drop_after_question(
        held, {"76b367": "rejected", "aa0001": "failed"}) and "without their changes" in drop_after_question(
        held, {"76b367": "rejected", "aa0001": "failed"})


async def test_the_log_tab_reads_claude_code_s_stream_json_as_what_happened(tmp_path: Path) -> None:
    """A Claude sandbox's Log tab was one JSON event a line, the model's words inside escapes."""
    import json

    repo = demo_repo(tmp_path)
    workspace = open_workspace(repo)
    program = tmp_path / "bin" / "claude"  # the program's name is what says its output is stream-json
    program.parent.mkdir()
    events = [{"type": "system", "subtype": "init", "model": "claude-test"},
              {"type": "assistant", "message": {"content": [{"type": "text", "text": "I will fix it.\nThen test."}]}},
              {"type": "assistant", "message": {"content": [
                  {"type": "tool_use", "name": "Edit", "input": {"file_path": "WORKTREE/payments/fx.py"}}]}},
              {"type": "user", "message": {"content": [{"type": "tool_result", "content": "ok"}]}}]
    lines = "".join(f"{json.dumps(e)}\n" for e in events).replace("WORKTREE", "$PWD")
    program.write_text(f"#!/bin/sh\ncat <<END\n{lines}END\necho 'a warning on stderr' >&2\n")
    program.chmod(0o755)
    record = tasks.start(workspace, tasks.create_sandbox(
        workspace, "stream", "command", isolate=False,
        command=[str(program), "-p", "--output-format", "stream-json"]).id)
    wait_until_settled(workspace, record.id)
    app = LoomApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        log = app.screen.query_one("#agent-log", Log)
        await wait_for(pilot, lambda: "▸ Edit payments/fx.py" in log.lines, timeout=15)
        shown = [line for line in log.lines if line]
        assert shown == ["· session started (claude-test)", "I will fix it.", "Then test.", "▸ Edit payments/fx.py",
                         "a warning on stderr"], shown


async def test_brackets_move_through_the_detail_tabs_from_the_table(tmp_path: Path) -> None:
    """It took tab to reach the tab strip, then the arrows, and neither the footer nor `?` said so."""
    from textual.widgets import TabbedContent

    from loomtui.tui.screens.help import key_rows

    app = LoomApp(open_workspace(demo_repo(tmp_path)))
    async with app.run_test(size=(120, 40)) as pilot:
        tabs = app.screen.query_one("#detail", TabbedContent)
        assert tabs.active == "tab-details" and isinstance(app.focused, SandboxTable)
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert tabs.active == "tab-log" and isinstance(app.focused, SandboxTable)  # the keys stay on the table
        await pilot.press("left_square_bracket", "left_square_bracket")
        await pilot.pause()
        assert tabs.active == "tab-evals"  # round from the first to the last
        assert {("[", "dashboard.tab_previous"), ("]", "dashboard.tab_next")} <= {(r[0], r[3]) for r in key_rows(app)}


async def test_with_no_sandbox_selected_every_detail_tab_says_so(repo: Path) -> None:
    """Details and Claims said it; the Log and Context tabs were blank, as if broken."""
    app = LoomApp(open_workspace(repo))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.latest_snapshot is not None)
        await pilot.pause()
        log = app.screen.query_one("#agent-log", Log)
        await wait_for(pilot, lambda: any("no sandbox selected" in line for line in log.lines))
        assert "No sandbox selected." in str(app.screen.query_one("#context", Static).render())


async def test_at_80x24_the_claim_check_is_brought_into_view_whole_and_a_refused_start_focuses_the_field(
        billing: Path) -> None:
    """It showed its first line ("... is held by") at the foot of the fields, and no key scrolled to the holder;
    ctrl+s refused for an empty command left the focus where it was, and what was typed next went elsewhere."""
    from textual.containers import VerticalScroll
    from textual.widgets import Input, Select

    from loomtui.governance.coordinator import governed_coordinator

    workspace = open_workspace(billing)
    governed_coordinator(workspace).claim("holder", "payments/ledger.py", reason="held")
    app = LoomApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await new_script_sandbox_form(pilot, app, billing.parent / "typo.yaml", "Change the ledger")
        claims = form.query_one("#claims", SelectionList)
        claims.clear_options()
        claims.add_options([Selection(f"payments/file{n}.py", f"payments/file{n}.py") for n in range(8)]
                           + [Selection("payments/ledger.py", "payments/ledger.py")])
        claims.focus()
        claims.select("payments/ledger.py")
        check = form.query_one("#claim-check", Static)
        fields = form.query_one("#new-fields", VerticalScroll)
        await wait_for(pilot, lambda: "holder" in str(check.render()) and check.region.height >= 2
                       and fields.region.contains_region(check.region))
        form.query_one("#runtime", Select).value = "command"
        form.query_one("#after", Input).focus()
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: form.query_one("#command", Input).has_focus)
        assert app.screen is form


async def test_a_slower_claim_check_of_an_earlier_choice_does_not_overwrite_the_newer_one(
        billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The form checks the ticked claims in a worker: a slow check of the first tick, ending after the check of
    the first two, said "No conflicts with live claims." beside a claim another sandbox holds."""
    import threading

    from loomtui.governance.coordinator import governed_coordinator

    workspace = open_workspace(billing)
    governed_coordinator(workspace).claim("holder", "payments/ledger.py", reason="held")
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        form = await new_script_sandbox_form(pilot, app, billing.parent / "typo.yaml", "docs")
        assert app.coordinator is not None
        real_check = type(app.coordinator).check
        release = threading.Event()

        def slow_alone(coordinator, sandbox, region_ids):  # type: ignore[no-untyped-def]
            if list(region_ids) == ["docs/runbook.md"]:
                release.wait(10)
            return real_check(coordinator, sandbox, region_ids)

        monkeypatch.setattr(type(app.coordinator), "check", slow_alone)
        claims = form.query_one("#claims", SelectionList)
        claims.clear_options()
        claims.add_options([Selection("docs/runbook.md", "docs/runbook.md"),
                            Selection("payments/ledger.py", "payments/ledger.py")])
        claims.select("docs/runbook.md")  # checked slowly
        await pilot.pause(0.2)
        claims.select("payments/ledger.py")  # both: held by another sandbox, said at once
        check = form.query_one("#claim-check", Static)
        await wait_for(pilot, lambda: "holder" in str(check.render()))
        release.set()
        await pilot.pause(0.5)
        assert "holder" in str(check.render()) and "No conflicts" not in str(check.render())


async def test_a_form_reopened_with_a_refused_claim_keeps_the_task_field_in_sight(billing: Path) -> None:
    """At 80x24, `n` after a refused claim opened the form scrolled down to the conflict, the task field (focused,
    its text selected) out of sight: the space meant for the claims list replaced the task."""
    from textual.containers import VerticalScroll
    from textual.widgets import Input, Static

    from loomtui.governance.coordinator import governed_coordinator
    from loomtui.tui.screens.sandbox_forms import NewSandboxRequest, NewSandboxScreen

    workspace = open_workspace(billing)
    governed_coordinator(workspace).claim("holder", "payments/fx.py")
    app = LoomApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.coordinator is not None)
        draft = NewSandboxRequest("change the fx rate table", "command", "HEAD", ("payments/fx.py",), None,
                                  command=("sh", "-c", "echo hi"))
        form = NewSandboxScreen(["command", "script"], "command", draft=draft)
        await app.push_screen(form)
        check = form.query_one("#claim-check", Static)
        await wait_for(pilot, lambda: "held by" in str(check.render()))
        await pilot.pause()
        assert app.focused is form.query_one("#task", Input)
        assert form.query_one("#new-fields", VerticalScroll).scroll_y == 0
        await pilot.press("s")  # typing goes on from the task, never over it
        assert form.query_one("#task", Input).value == "change the fx rate tables"


async def test_an_action_asked_again_while_it_runs_is_said_under_way_not_raced(billing: Path) -> None:
    """`S` pressed twice: the second raced the first and its error read as a failure ("being advanced by process
    N", the app's own; "is planned: start") though the run it asked for started."""
    import threading

    from loomtui.tui.screens.dashboard import DashboardScreen

    app = LoomApp(open_workspace(billing))
    release, calls = threading.Event(), []

    def slow(_workspace, sandbox_id):  # type: ignore[no-untyped-def]
        calls.append(sandbox_id)
        release.wait(10)

    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        screen._run("start abc123", slow, "abc123")
        await wait_for(pilot, lambda: calls == ["abc123"])
        screen._run("start abc123", slow, "abc123")
        await pilot.pause()
        assert any(str(n.message) == "start abc123: under way already" for n in app._notifications)
        release.set()
        await wait_for(pilot, lambda: any(str(n.message) == "start abc123: done" for n in app._notifications))
        assert calls == ["abc123"]
        screen._run("start abc123", slow, "abc123")  # once done, it runs again
        await wait_for(pilot, lambda: calls == ["abc123", "abc123"])


async def test_a_new_sandbox_refused_its_claims_says_what_frees_them_as_the_cli_does(billing: Path) -> None:
    """The app's toast said only the refusal; `sandbox new` says how to run it once the holder merged (the app
    in its own words: "run it again with --after ID" named a flag the form does not have)."""
    from loomtui.tui.screens.dashboard import DashboardScreen
    from loomtui.tui.screens.sandbox_forms import NewSandboxRequest

    workspace = open_workspace(billing)
    holder = tasks.create_sandbox(workspace, "hold fx", "command", command=["true"], claims=["payments/fx.py"])
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        screen._create(NewSandboxRequest("change fx", "command", "HEAD", ("payments/fx.py",), None, command=("true",)))
        await wait_for(pilot, lambda: any(f"put {holder.id} in the form's \"after\" field" in str(n.message)
                                          for n in app._notifications))
        assert not any("--after" in str(n.message) for n in app._notifications)
