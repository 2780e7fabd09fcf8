"""Textual's Log, whose background width update survives the log leaving the screen.

`Log.write` starts a thread worker that measures the new lines and then reaches the app
through the widget. If the log was removed meanwhile (its screen closed, the app quitting),
the widget no longer finds an app and the worker's NoActiveAppError ended the whole app with
a traceback. A removed log has no width left to keep, so that case is dropped here.
"""

from __future__ import annotations

from rich.cells import cell_len
from textual import work
from textual._context import NoActiveAppError
from textual.widgets import Log

from loomtui.tui.visible import without_escape_sequences


class BoundedLog(Log):
    """A Log (give it `max_lines`) that may be written to up to the moment it is removed, and whose lines
    (an agent's output) never drive the terminal: Log blanks controls up to 0x14 only, and ESC passed."""

    @classmethod
    def _process_line(cls, line: str) -> str:
        return without_escape_sequences(line.expandtabs())

    @work(thread=True, exit_on_error=False)
    def _update_size(self, updates: int, lines: list[str]) -> None:
        if not lines:
            return
        width = max(cell_len(self._process_line(line)) for line in lines)
        try:
            self.app.call_from_thread(self._update_maximum_width, updates, width)
        except (NoActiveAppError, RuntimeError):
            return  # removed, or the app is closing: nothing is left to resize
