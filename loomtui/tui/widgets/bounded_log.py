"""Textual's Log, whose background width update survives the log leaving the screen.

`Log.write` starts a thread worker that measures the new lines and then reaches the app
through the widget. If the log was removed meanwhile (its screen closed, the app quitting),
the widget no longer finds an app and the worker's NoActiveAppError ended the whole app with
a traceback. A removed log has no width left to keep, so that case is dropped here.

Log does not wrap: an agent's output (a stream-json event, a test's failure) ran past the pane at
80 columns, to be read by scrolling sideways line by line. Here a long line is folded at the pane's
width (at spaces) as it is written, and folded again from the lines as written when the width changes
or wrapping is switched (`w` on the dashboard, as in k9s).
"""

from __future__ import annotations

import textwrap
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Self

from rich.cells import cell_len, chop_cells
from textual import events, work
from textual._context import NoActiveAppError
from textual.widgets import Log

from loomtui.tui.visible import without_escape_sequences


class BoundedLog(Log):
    """A Log (give it `max_lines`) that may be written to up to the moment it is removed, and whose lines
    (an agent's output) never drive the terminal: Log blanks controls up to 0x14 only, and ESC passed."""

    def __init__(self, *, max_lines: int, wrap: bool = True, id: str | None = None) -> None:  # noqa: A002
        super().__init__(max_lines=max_lines, id=id)
        self.wrap = wrap
        self._written: deque[str] = deque(maxlen=max_lines)  # the lines as written, before folding
        self._folded_at = 0  # the width the shown lines were folded at (0: not folded)
        # Whether the reader follows the newest line: where they last scrolled to, not where the hidden
        # or resized log's offset happens to be (Log follows only when at its end as it writes, and a log
        # written while its tab was hidden, or folded again at a new width, was not: it stopped following).
        self._following = True

    @classmethod
    def _process_line(cls, line: str) -> str:
        return without_escape_sequences(line.expandtabs())

    def write_lines(self, lines: Iterable[str], scroll_end: bool | None = None) -> Self:
        # Lines end at a newline only: `splitlines` also broke at \r and U+2028, so one line of an agent's
        # output drew as several (a fake line among them); those are drawn as symbols instead. A \r that ends a
        # line (CRLF, a progress line's last return) moves nothing past it and showed as a stray ␍.
        written = [part.removesuffix("\r") for line in lines for part in line.removesuffix("\n").split("\n")]
        self._written.extend(written)
        folded = self._folded(written)
        full = self.max_lines is not None and self.line_count + len(folded) > self.max_lines
        following = self.auto_scroll and self._following if scroll_end is None else scroll_end
        super().write_lines(folded, scroll_end)
        if full:  # Log repaints from the line count before it dropped the oldest: rows below the pane, and the
            self.refresh()  # pane kept what it showed (the Log tab stood at line 4356 while the agent wrote 5252)
        if following:
            self._to_the_end()
        return self

    def _to_the_end(self) -> None:
        self._following = True
        self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self.is_on_screen and self.scrollable_content_region.height:  # moved by the reader, on screen
            self._following = new_value >= self.max_scroll_y

    def on_show(self) -> None:
        if self._following:  # its tab chosen again: the newest lines, written while it was hidden
            self._to_the_end()

    def clear(self) -> Self:
        self._written.clear()
        return super().clear()

    @property
    def written(self) -> Sequence[str]:
        """The lines as written (the last `max_lines`), before folding: `lines` are what is shown."""
        return self._written

    def toggle_wrap(self) -> bool:
        """Switch folding long lines on or off; whether it is now on."""
        self.wrap = not self.wrap
        self._refold()
        return self.wrap

    def on_resize(self, _event: events.Resize) -> None:
        if self.wrap and self._fold_width() != self._folded_at:
            self._refold()

    def _fold_width(self) -> int:
        """The width lines fold at: inside the gutter, and beside the vertical scrollbar whether or not it
        is shown yet (folded beside none, the bar's coming would push every full line under it)."""
        if not self.wrap:
            return 0
        return max(0, self.region.shrink(self.styles.gutter).width - self.styles.scrollbar_size_vertical)

    def _folded(self, lines: list[str]) -> list[str]:
        width = self._folded_at = self._fold_width()
        folded: list[str] = []
        for line in lines:
            text = self._process_line(line)
            if width <= 0 or cell_len(text) <= width:  # not laid out yet (folded at the first resize), not wrapping
                folded.append(text)
            elif cell_len(text) == len(text):  # one cell a character: at spaces where there are some
                folded += textwrap.wrap(text, width) or [text]
            else:
                folded += chop_cells(text, width)
        return folded

    def _refold(self) -> None:
        following = self._following
        written = list(self._written)
        super().clear()
        super().write_lines(self._folded(written), scroll_end=False)
        if following:
            self._to_the_end()

    @work(thread=True, exit_on_error=False)
    def _update_size(self, updates: int, lines: list[str]) -> None:
        if not lines:
            return
        width = max(cell_len(self._process_line(line)) for line in lines)
        try:
            self.app.call_from_thread(self._update_maximum_width, updates, width)
        except (NoActiveAppError, RuntimeError):
            return  # removed, or the app is closing: nothing is left to resize
