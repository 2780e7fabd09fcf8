"""Text an agent controls (its output, the files it writes, its requests, a task or a claim's reason) is
drawn, never sent to the terminal as a control: an escape sequence in it moved the cursor and overwrote
the table's header and the diff a lead reads before approving."""

from __future__ import annotations

from pathlib import Path

from loomtui.store import SandboxRecord
from loomtui.tui.app import LoomApp
from loomtui.tui.screens.sandbox_forms import DiffScreen
from loomtui.tui.visible import visible_controls, without_escape_sequences
from loomtui.tui.widgets.bounded_log import BoundedLog
from loomtui.workspace import open_workspace
from tests.conftest import wait_for

HOSTILE = "hello \x1b[2;1HPWN \x1b[41mRED\x1b[0m \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \x07 \x9b2J end"


def test_escape_sequences_are_dropped_from_logs_and_drawn_elsewhere() -> None:
    assert without_escape_sequences(HOSTILE) == "hello PWN RED link ␇ �2J end"
    drawn = visible_controls(HOSTILE)
    assert len(drawn) == len(HOSTILE) and "\x1b" not in drawn and drawn.startswith("hello ␛[2;1HPWN")
    assert visible_controls("a\tb\nc") == "a\tb\nc"  # layout is kept
    assert BoundedLog._process_line("\t" + HOSTILE) == " " * 8 + "hello PWN RED link ␇ �2J end"


async def test_no_control_from_a_task_a_diff_or_a_request_reaches_the_screen(repo: Path) -> None:
    workspace = open_workspace(repo)
    workspace.store.add_sandbox(SandboxRecord(id="evil01", task=f"task {HOSTILE}", runtime="script",
                                              status="awaiting_review", created=1.0, updated=1.0))
    workspace.store.add_escalation("post-gate", sandbox_id="evil01", risk="high", summary="a request",
                                   data={"evidence": {"command": f"rm -rf {HOSTILE}", "paths": [HOSTILE]}})
    app = LoomApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.latest_snapshot is not None)
        for view in ("1", "3"):  # the sandboxes' table, then the escalation with its evidence
            await pilot.press(view)
            await pilot.pause()
            screen = app.export_screenshot()
            assert "\x1b" not in screen and "\x9b" not in screen, view
        assert "␛[2;1HPWN" in app.export_screenshot()  # the evidence, every character of it shown
        await pilot.press(":")
        await pilot.pause()
        await pilot.press(*"evil01")
        await pilot.pause(0.3)
        assert "\x1b" not in app.export_screenshot()  # the palette's row for the sandbox
        await pilot.press("escape")
        await app.push_screen(DiffScreen("evil01", f"+{HOSTILE}\n"))
        await pilot.pause()
        screen = app.export_screenshot()
        assert "\x1b" not in screen and "␛[2;1HPWN" in screen


async def test_a_diff_line_wider_than_the_screen_is_reached_with_the_arrow_keys(repo: Path) -> None:
    """A long line is not cut where the screen ends (what an agent hid past column 80 must be readable)."""
    from textual.containers import ScrollableContainer
    from textual.widgets import Static

    app = LoomApp(open_workspace(repo))
    line = "+" + "".join(f"{i:03d}." for i in range(100)) + "HIDDEN-AT-THE-END"
    async with app.run_test(size=(80, 24)) as pilot:
        await app.push_screen(DiffScreen("wide01", line + "\n"))
        await pilot.pause()
        scroll = app.screen.query_one("#diff-scroll", ScrollableContainer)
        assert "HIDDEN-AT-THE-END" not in app.export_screenshot()
        title = str(scroll.query(Static).first().render())
        assert title.endswith("← → scroll to the rest of long lines")  # said where it is cut
        assert scroll.max_scroll_x >= len(line) - 80
        await pilot.press("right", "right", "right", "right")
        await pilot.pause()
        assert scroll.scroll_x == 4
        scroll.scroll_to(x=scroll.max_scroll_x, animate=False)
        await pilot.pause()
        assert "HIDDEN-AT-THE-END" in app.export_screenshot()
        await pilot.press("question_mark")  # the keys, which the app's help (for the views) does not list
        await pilot.pause()
        assert any("scroll sideways" in str(n.message) for n in app._notifications)
        await pilot.press("escape")
        await app.push_screen(DiffScreen("short01", "+short\n"))
        await pilot.pause()
        title = str(app.screen.query_one("#diff-scroll", ScrollableContainer).query(Static).first().render())
        assert title == "short01"  # nothing to scroll to: nothing said
