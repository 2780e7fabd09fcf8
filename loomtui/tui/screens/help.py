"""`?`: every key binding that works on the screen below, with its id and description."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static


def key_rows(app: App[Any]) -> list[tuple[str, str, str, str]]:
    """(key, description, where, id) of every described binding that works on the screen shown:
    loomtui's own keys (they carry ids) first, the focused widget's after."""
    rows: list[tuple[str, str, str, str]] = []
    for active in app.screen.active_bindings.values():
        binding = active.binding
        if not binding.description:
            continue
        where = "app" if active.node is app else type(active.node).__name__
        rows.append((app.get_key_display(binding), binding.description, where, binding.id or ""))
    rows.sort(key=lambda row: (row[3] == "", row[2] != "app"))
    return rows


class HelpScreen(ModalScreen[None]):
    """A modal table of bindings; `esc`, `q` or `?` closes it."""

    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss", "Close help", id="help.close"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 90; max-width: 95%; height: 80%; border: round $primary;
                            background: $surface; padding: 0 1; }
    HelpScreen DataTable { height: 1fr; }
    """

    def __init__(self, rows: list[tuple[str, str, str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Keys  (esc closes)", style="bold"))
            yield DataTable(cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)  # its own keys: the view below is not active under it

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("key", "what it does", "where", "id")
        for key, description, where, binding_id in self.rows:
            table.add_row(Text(key, style="bold"), description, where, binding_id)
        table.focus()

