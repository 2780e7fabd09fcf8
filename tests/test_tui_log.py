"""The app's logs may be written to up to the moment they are removed (a closed screen, quitting):
a worker's late lines reaching a log that left the screen once ended the app with a traceback."""

from __future__ import annotations

from textual._compositor import CompositorUpdate
from textual.app import App, ComposeResult

from loomtui.tui.widgets.bounded_log import BoundedLog


class OneLog(App[None]):
    def compose(self) -> ComposeResult:
        yield BoundedLog(max_lines=100)


async def test_lines_written_to_a_log_that_left_the_screen_do_not_end_the_app() -> None:
    app = OneLog()
    async with app.run_test() as pilot:
        log = app.query_one(BoundedLog)
        await log.remove()
        log.write_line("a late line from a worker")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.is_running
    assert app._exception is None  # run_test re-raises it too: a WorkerFailed for Textual's own Log


def test_every_log_in_the_app_is_bounded_and_survives_removal() -> None:
    """Textual's own Log is used only by BoundedLog; each BoundedLog keeps at most `max_lines`."""
    import ast
    from pathlib import Path

    import loomtui.tui

    tui = Path(loomtui.tui.__file__).parent
    for path in sorted(tui.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "textual.widgets" and path.name != "bounded_log.py":
                assert "Log" not in {alias.name for alias in node.names}, f"{path}: Textual's Log, not BoundedLog"
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "BoundedLog":
                assert "max_lines" in {k.arg for k in node.keywords}, f"{path}:{node.lineno}: a Log without max_lines"


LONG = "[claude] Bash: python -m pytest tests/test_refunds.py -q -k partial_refund_of_a_discounted_invoice"


async def test_long_lines_fold_at_the_pane_s_width_and_again_when_it_changes_or_w_switches_it() -> None:
    """Textual's Log does not wrap: an agent's line ran past an 80-column pane, read by scrolling sideways."""
    app = OneLog()
    async with app.run_test(size=(40, 10)) as pilot:
        log = app.query_one(BoundedLog)
        log.write_lines([LONG, "short", "\x1b[31m" + "é" * 50])
        await pilot.pause()
        width = 40 - log.styles.scrollbar_size_vertical
        assert all(len(line) <= width for line in log.lines) and len(log.lines) > 4, log.lines
        assert log.lines[:3] == ["[claude] Bash: python -m pytest", "tests/test_refunds.py -q -k",
                                 "partial_refund_of_a_discounted_invoice"]  # at spaces
        assert "short" in log.lines and "\x1b" not in "".join(log.lines)
        await pilot.resize_terminal(100, 10)
        await pilot.pause()
        assert log.lines == [LONG, "short", "é" * 50]  # folded again from the lines as written
        await pilot.resize_terminal(30, 10)
        await pilot.pause()
        assert not log.toggle_wrap()
        assert log.lines == [LONG, "short", "é" * 50]
        assert log.toggle_wrap() and max(len(line) for line in log.lines) <= 30 - log.styles.scrollbar_size_vertical
        log.clear()
        log.write_lines(["again"])
        await pilot.resize_terminal(60, 10)
        await pilot.pause()
        assert log.lines == ["again"]  # what was cleared stays cleared


class ShortLog(App[None]):
    def compose(self) -> ComposeResult:
        yield BoundedLog(max_lines=50)


async def test_a_full_log_keeps_drawing_the_newest_lines() -> None:
    """Textual's Log repaints from the line count before it drops the oldest: once full, what it drew
    stayed on screen (the Log tab showed line 4356 while the agent wrote line 5252), with nothing saying so."""
    app = ShortLog()
    async with app.run_test(size=(40, 10)) as pilot:
        log = app.query_one(BoundedLog)
        log.write_lines([f"line {n}" for n in range(50)])
        await pilot.pause()
        sent: list[str] = []  # what the screen's updates would send a terminal (headless sends nothing)

        def display(_screen: object, update: object) -> None:
            if isinstance(update, CompositorUpdate):
                sent.append(update.render_segments(app.console))

        app._display = display  # type: ignore[method-assign]
        for n in range(50, 60):
            log.write_line(f"line {n}")
            await pilot.pause()
        assert "line 59" in "".join(sent) and log.line_count == 50
