"""`?`: every key binding that works on the screen below, with its id and description."""

from __future__ import annotations

import re
from typing import Any, Final

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from loomtui.tui.keys import shown_key
from loomtui.tui.widgets.fitted_table import TABLE_KEYS, FitColumn, FittedTable

SIDEWAYS: Final = frozenset({"scroll_left", "scroll_right", "page_left", "page_right"})
"""Textual's sideways scrolling keys: listed only where there is something to the side (a tree or table
as wide as its pane takes them, and nothing moves)."""


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
        rows.append((app.get_key_display(binding), binding.tooltip or binding.description, where, binding.id or ""))
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
        yield Footer(compact=True)  # its own keys: the view below is not active under it

    def on_mount(self) -> None:
        table = self.query_one(FittedTable)
        # It fits its width: nothing scrolls sideways and hides the key column (end and right did).
        table.show_rows({f"{number}": {"key": Text(key, style="bold"), "what": description, "where": where,
                                       "id": binding_id}
                         for number, (key, description, where, binding_id) in enumerate(self.rows)})
        table.focus()

