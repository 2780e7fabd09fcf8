"""Text an agent controls (its output, the files it writes, its requests, a task or a claim's reason) is
drawn, never sent to the terminal as a control: an escape sequence in it moved the cursor and overwrote
the table's header and the diff a lead reads before approving."""

from __future__ import annotations

from pathlib import Path

from loomtui.store import SandboxRecord
from loomtui.tui.app import LoomApp
from loomtui.tui.screens.sandbox_forms import DiffScreen
from loomtui.tui.visible import VisibleText, one_line, visible_controls, without_escape_sequences
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
    # Zero-width, bidirectional and tag characters are drawn too (`bidi_\u202eyp.exe` showed as `bidi_exe.py`),
    # a line separator as a symbol, not a row of its own.
    assert visible_controls("bidi_\u202eyp.exe 'admin\u200b' \U000e0041\u2028") == "bidi_�yp.exe 'admin�' �␤"
    # An OSC with no end is no escape sequence: the text after it stays (it was all taken).
    assert without_escape_sequences("a \x1b]52;c;QUFB and more") == "a 52;c;QUFB and more"
    # One field of an agent's one line, however many newlines it holds.
    assert one_line("payments/currency.py\n    docs/README.md") == "payments/currency.py␊    docs/README.md"
    # Built piece by piece, each control shows: Rich's own append dropped BEL and BS unseen, beside a ␛.
    built = VisibleText()
    built.append("ctl:\x1b[7mREV\x07 bs\x08 end", style="bold")
    assert built.plain == "ctl:␛[7mREV␇ bs␈ end" and built.spans[0].end == len(built.plain)
    # And given whole (a table's cell): `a\rb.py` read as `ab.py`.
    assert VisibleText("a\rb.py \x0b\x0c", "bold").plain == "a␍b.py ␋␌"


async def test_a_log_line_is_one_row_whatever_breaks_it_but_a_newline(repo: Path) -> None:
    """`splitlines` broke a line at `\r` and U+2028 too: one line of an agent's output drew as several."""
    app = LoomApp(open_workspace(repo))
    async with app.run_test(size=(80, 20)):
        log = BoundedLog(max_lines=10)
        await app.screen.mount(log)
        log.write_lines(["ok\rFAKE: approved", "one\u2028two", "three\r\nfour\r", "10%\r100%\r"])
        assert list(log.written) == ["ok\rFAKE: approved", "one\u2028two", "three", "four", "10%\r100%"]
        # A \r ending a line (CRLF, a progress line's last) hides nothing and is not drawn; one inside is.
        assert log.lines == ["ok␍FAKE: approved", "one␤two", "three", "four", "10%␍100%"]


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


async def test_the_approval_screen_lists_what_is_asked_each_field_one_line(repo: Path) -> None:
    """A path holding a newline drew two paths; an evidence key `Approvals\n  1 of 1 ...` a fake heading;
    the paths were cut at 12 with no word of the rest (the 15th was approved unseen)."""
    from textual.widgets import Static

    workspace = open_workspace(repo)
    paths = ["a.py\n    docs/README.md", *(f"docs/guide{n:02d}.md" for n in range(44)), "payments/refunds.py"]
    workspace.store.add_escalation("question", sandbox_id="evil01", risk="low", summary="evil01 asks: a question",
                                   data={"facts": {"stage": "claim", "paths": paths},
                                         "evidence": {"Approvals\n  1 of 1 approval from leads": "yes",
                                                      "question": "ok?" + "\n" * 50 + "REAL: rm -rf payments"}})
    app = LoomApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        detail = app.screen.query_one("#esc-detail", Static)
        await wait_for(pilot, lambda: "46 paths" in str(detail.render()))
        shown = str(detail.render()).splitlines()
        assert "    a.py␊    docs/README.md" in shown and "    docs/README.md" not in shown, shown
        assert "    and 6 more (`loomtui escalation show 1` lists every one)" in shown, shown
        assert not any(line.startswith("  1 of 1 approval") for line in shown), shown
        assert any(line.startswith("  question: ok?␊␊") and "REAL: rm -rf payments" in line for line in shown)


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
