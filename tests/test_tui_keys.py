"""Every key of every view, pressed as a person exploring the app would: each does its work (or
says why not) without an error, a form or a question it opens closes with esc, and the view is
still there after. (What each key does is tested in the view's own tests.)"""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Select

from loomtui.execution.lifecycle import APPROVED, AWAITING_REVIEW, EXITED, FAILED, MERGED, PAUSED, PLANNED, RUNNING
from loomtui.store import SandboxRecord
from loomtui.tui.app import LoomApp
from loomtui.tui.screens.dashboard_keys import key_applies
from loomtui.tui.screens.help import key_rows
from loomtui.workflow.steps import PersonAction, Step, StepView
from loomtui.workspace import open_workspace
from tests.conftest import wait_for
from tests.test_snapshots_matrix import FIXED_NOW, world  # noqa: F401  (the fixture)

VIEWS = "12345678"
APP_KEYS = frozenset({"q", "question_mark", "colon", "t", "T", "escape", *VIEWS})
"""The app's own keys, pressed elsewhere (`q` quits; the views are walked here one by one), and esc,
which each test of a view presses (here it closes what a key opened)."""
HEAVY_KEYS = frozenset({"e", "M"})
"""Keys that run a sandbox's gates (pytest in its worktree): tested in test_tui_evals, not swept."""


def captured_notes(app: LoomApp) -> list[tuple[str, str]]:
    """The (title, message) of every toast the app shows from now on, as it shows them."""
    notes: list[tuple[str, str]] = []
    notify = app.notify

    def noted(message: str, **kwargs: object) -> None:
        notes.append((str(kwargs.get("title", "")), message))
        notify(message, **kwargs)  # type: ignore[arg-type]

    app.notify = noted  # type: ignore[method-assign]
    return notes


async def test_every_key_of_every_view_works_or_says_why_and_esc_backs_out(world: Path) -> None:  # noqa: F811
    workspace = open_workspace(world)
    workspace.actor = "mia@example.com"
    app = LoomApp(workspace, clock=lambda: FIXED_NOW)
    notes = captured_notes(app)
    pressed: dict[str, list[str]] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.policy is not None and app.latest_snapshot is not None
                       and app.coordination is not None)
        for view in VIEWS:
            await pilot.press(view)
            await pilot.pause()
            screen = app.screen
            # loomtui's own keys (each has an id; Textual's table and focus keys have none).
            keys = sorted({key for key, active in screen.active_bindings.items()
                           if active.binding.id and active.node is not app and key not in APP_KEYS | HEAVY_KEYS})
            pressed[view] = keys
            for key in keys:
                await pilot.press(key)
                await pilot.pause()
                for _ in range(3):  # a form, a question, a diff or a search box it opened: esc closes it
                    if app.screen.is_modal or isinstance(app.focused, Input) or any(
                            picker.expanded for picker in app.screen.query(Select)):
                        await pilot.press("escape")
                        await pilot.pause()
                if app.screen is not screen:  # the key took us to another view (esc goes back): return
                    await pilot.press(view)
                    await pilot.pause()
                assert app.screen is screen, (view, key, app.screen)
                assert app.is_running, (view, key)
        await pilot.pause(0.5)  # the workers the keys started end
    # A worker's unexpected error (on_worker_state_changed) is a toast titled "... failed".
    failures = [f"{title}: {message}" for title, message in notes if title.endswith(" failed")]
    assert not failures, failures
    assert all(pressed[view] for view in "1234568"), pressed  # the views with keys of their own were swept


def _footer_keys(app: LoomApp) -> set[str]:
    return {key for key, active in app.screen.active_bindings.items() if active.binding.show and active.enabled}


async def test_the_footer_offers_what_applies_to_the_selected_sandbox_and_other_keys_still_say_why(
        world: Path) -> None:  # noqa: F811
    workspace = open_workspace(world)
    workspace.actor = "mia@example.com"
    app = LoomApp(workspace, clock=lambda: FIXED_NOW)
    notes = captured_notes(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.latest_snapshot is not None and app.latest_snapshot.steps)
        table = app.screen.query_one("#sandboxes")
        await wait_for(pilot, lambda: table.row_count == 4)
        # sb1 waits for a decision on its escalation: nothing to stop, start or merge yet.
        await wait_for(pilot, lambda: "d" in _footer_keys(app))
        assert {"n", "d", "e", "slash"} <= _footer_keys(app)
        assert not {"s", "S", "m"} & _footer_keys(app)
        await pilot.press("m")  # not offered, yet it answers, saying why
        await wait_for(pilot, lambda: any("not approved yet" in note for _, note in notes))
        assert not app.screen.is_modal  # no question whose yes could only fail
        await pilot.press("W")  # not held either: said at once, no question about an empty list
        await wait_for(pilot, lambda: any("it is awaiting_review; W starts a planned task without the tasks it "
                                          "waits for" in note for _, note in notes))
        assert not app.screen.is_modal
        help_keys = {row[0] for row in key_rows(app)}
        assert {"m", "s", "S"} <= help_keys  # `?` still lists every key of the view


def test_start_stop_and_merge_apply_only_where_they_can_work() -> None:
    def applies(action: str, status: str, step: StepView | None) -> bool:
        return key_applies(action, SandboxRecord(id="sb1", task="t", runtime="script", status=status,
                                                   created=FIXED_NOW, updated=FIXED_NOW), step)

    startable = StepView(Step.WAIT_START, "a person", PersonAction.START, "sb1")
    waiting = StepView(Step.WAIT_TASKS, "sb2's merge")
    assert applies("start", PLANNED, startable) and not applies("start", PLANNED, waiting)
    assert applies("stop", RUNNING, StepView(Step.AGENT)) and not applies("stop", MERGED, None)
    # A paused agent's way on was in `?` only; a running one's pause stays out of a full footer.
    assert applies("pause_resume", PAUSED, StepView(Step.AGENT)) and not applies("pause_resume", RUNNING, None)
    assert applies("merge", APPROVED, StepView(Step.WAIT_MERGE, "", PersonAction.MERGE, "sb1"))
    assert not applies("merge", AWAITING_REVIEW, StepView(Step.WAIT_DECISION, "#3", PersonAction.DECIDE, "3"))
    assert not applies("merge", MERGED, None) and not applies("merge", RUNNING, StepView(Step.AGENT))
    # Onto the tip it conflicted with, a merge again would conflict again: the footer offered `m` all the same.
    conflict = StepView(Step.MERGE_CONFLICT, "lib.py would conflict", PersonAction.RESOLVE, "sb1")
    assert not applies("merge", APPROVED, conflict)
    held = StepView(Step.HELD, "sb0 ended without merging (rejected)", PersonAction.CANCEL, "sb1")
    assert applies("drop_after", PLANNED, held) and not applies("drop_after", PLANNED, waiting)
    assert not key_applies("diff", None, None)  # no sandbox selected: none of them
    # A planned sandbox has no change to evaluate (its eval read "✓ · 100" through its run, of its target's code).
    assert not applies("evals", PLANNED, startable) and applies("evals", AWAITING_REVIEW, None)
    # Nor one whose agent ended without a change (`e` and `d` said "no change" when pressed).
    assert not applies("evals", EXITED, None) and not applies("diff", EXITED, None)
    # ...or failed without one (no login): `d` opened "0 files", `e` said "no change to evaluate".
    nothing = StepView(Step.NO_CHANGE, "the agent failed without a change", PersonAction.RERUN, "sb1")
    assert not applies("evals", FAILED, nothing) and not applies("diff", FAILED, nothing)
    assert applies("diff", FAILED, StepView(Step.REVIEW))  # a half-done change is there to read


def test_help_names_where_a_key_works_in_textuals_words_not_loomtuis_class_names() -> None:
    from loomtui.tui.screens.help import _where
    from loomtui.tui.widgets.fitted_table import FitColumn, FittedTable
    from loomtui.tui.widgets.fitted_tree import FittedTree

    app = object()
    assert _where(app, app) == "everywhere"  # type: ignore[arg-type]
    assert _where(app, FittedTable((FitColumn("id", "ID"),))) == "data table"  # type: ignore[arg-type]
    assert _where(app, FittedTree("claims")) == "tree"  # type: ignore[arg-type]


def test_every_described_key_of_loomtui_has_an_id_and_says_what_it_does() -> None:
    from loomtui.tui.keymap import described_bindings

    seen = [binding for _cls, binding in described_bindings()]
    assert len(seen) > 50
    for binding in seen:
        where = f"{binding.key} {binding.action}"
        assert binding.id and binding.tooltip, where  # `?`, the palette and the footer's hover say it
        assert len(binding.tooltip) <= 54 and not binding.tooltip.endswith("."), where  # one line of the palette


async def test_the_palette_s_keys_command_is_loomtuis_help_and_it_offers_no_panel_esc_cannot_close(
        world: Path) -> None:  # noqa: F811
    """`: keys` opened Textual's keys panel: the app squeezed to 50 columns, and `esc` left it open."""
    from loomtui.tui.screens.help import HelpScreen

    app = LoomApp(open_workspace(world), clock=lambda: FIXED_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        commands = {command.title: command for command in app.get_system_commands(app.screen)}
        assert "Maximize" not in commands and {"Keys", "Theme", "Quit"} <= commands.keys(), commands.keys()
        commands["Keys"].callback()
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen) and not app.screen.query("HelpPanel")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
