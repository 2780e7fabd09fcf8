"""The app's logs may be written to up to the moment they are removed (a closed screen, quitting):
a worker's late lines reaching a log that left the screen once ended the app with a traceback."""

from __future__ import annotations

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
