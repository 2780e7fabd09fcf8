"""`?`: every key binding that works on the screen below, with its id and description.

Narrower than its four columns (80 columns), the table drops where a key works and its id: then the
line below it says both for the highlighted key (an id is what a user's own keymap names)."""

from __future__ import annotations

import re
from typing import Any, Final

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from loomtui.tui.keys import KeysFooter, shown_key
from loomtui.tui.widgets.fitted_table import TABLE_KEYS, FitColumn, FittedTable

SIDEWAYS: Final = frozenset({"scroll_left", "scroll_right", "page_left", "page_right"})
"""Textual's sideways scrolling keys: listed only where there is something to the side (a tree or table
as wide as its pane takes them, and nothing moves)."""


TEXTUAL_WORDS: Final = {"focus_next": "Move to the next pane or field", "focus_previous": "Move to the previous pane "
                        "or field", "app.focus_next": "Move to the next pane or field",
                        "app.focus_previous": "Move to the previous pane or field"}
"""Textual's own keys in loomtui's words ("Focus Next" read as a title among sentences)."""


def key_rows(app: App[Any]) -> list[tuple[str, str, str, str]]:
    """(key, what it does, where, id) of every described binding that works on the screen shown:
    loomtui's own keys first, then the keys every table has (`table.` ids), then Textual's widgets'."""
    rows: list[tuple[str, str, str, str]] = []
    for active in app.screen.active_bindings.values():
        binding = active.binding
        if not binding.description or (binding.action in SIDEWAYS
                                       and not getattr(active.node, "allow_horizontal_scroll", True)):
            continue
        where = _where(app, active.node)
        said = TEXTUAL_WORDS.get(binding.action) or (binding.tooltip or binding.description).rstrip(".")
        rows.append((app.get_key_display(binding), said, where, binding.id or ""))
    rows.sort(key=lambda row: (row[3] == "", row[3].startswith(TABLE_KEYS)))
    return rows


def _where(app: App[Any], node: object) -> str:
    """Where a key works, as a person reads it: everywhere, a view by its name, or the kind of widget
    in Textual's words (loomtui's `FittedTable` is a "data table", not its own class's name)."""
    if node is app:
        return "everywhere"
    view = getattr(node, "VIEW_NAME", "")
    if view:
        return f"{view} view"
    kind = next((cls for cls in type(node).__mro__ if cls.__module__.startswith("textual.")), type(node))
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", kind.__name__).lower()


class HelpScreen(ModalScreen[None]):
    """A modal table of bindings; `esc`, `q` or `?` closes it."""

    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss", "Close help", id="help.close", tooltip="Close this list"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 116; max-width: 95%; height: 80%; border: round $primary;
                            background: $surface; padding: 0 1; }
    HelpScreen DataTable { height: 1fr; }
    HelpScreen #help-row { height: 1; color: $text-muted; }
    /* Toasts (the demo's narration) covered the table's lower half and its help line at 80x24: they wait,
       on the screen under it, until the help closes. */
    HelpScreen ToastHolder { display: none; }
    """

    def __init__(self, rows: list[tuple[str, str, str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(f"Keys  ({shown_key('help.close', 'esc')} closes)", style="bold"))
            yield FittedTable([FitColumn("key", "key", priority=0, max_width=14),
                               FitColumn("what", "what it does", priority=0, flex=True, min_width=20, want=54),
                               FitColumn("where", "where", priority=1, max_width=24),
                               FitColumn("id", "id", priority=2, max_width=32)])
            yield Static("", id="help-row")
        yield KeysFooter()  # its own keys: the view below is not active under it

    def on_mount(self) -> None:
        table = self.query_one(FittedTable)
        # It fits its width: nothing scrolls sideways and hides the key column (end and right did).
        table.show_rows({f"{number}": {"key": Text(key, style="bold"), "what": description, "where": where,
                                       "id": binding_id}
                         for number, (key, description, where, binding_id) in enumerate(self.rows)})
        table.focus()

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self) -> None:
        self._say_row()

    def on_resize(self) -> None:
        self.call_after_refresh(self._say_row)  # once the table is laid out for the new width

    def _say_row(self) -> None:
        """The highlighted key's where and id, below the table, when its columns are not shown."""
        table = self.query_one(FittedTable)
        line = self.query_one("#help-row", Static)
        key = table.highlighted_key()
        shown = set(table.layout_shown.keys())
        line.display = key is not None and not {"where", "id"} <= shown
        if line.display and key is not None:
            _key, _what, where, binding_id = self.rows[int(key)]
            line.update(Text(f"{where} · id {binding_id or '(none)'}"))

