"""The header line: repository, branch, store status and the live counts."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static


class StatusHeader(Static):
    """One line that says where you are and what needs attention."""

    DEFAULT_CSS = """
    StatusHeader { height: 1; background: $panel; color: $foreground; padding: 0 1; }
    """

    repo: reactive[str] = reactive("")
    branch: reactive[str] = reactive("")
    store_state: reactive[str] = reactive("opening")
    sandboxes: reactive[int] = reactive(0)
    escalations: reactive[int] = reactive(0)
    conflicts: reactive[int] = reactive(0)
    mode_title: reactive[str] = reactive("")
    checklist: reactive[str] = reactive("")
    """The infrastructure checklist's score ("9.5/10"); empty until computed."""

    def render(self) -> Text:
        # Repository and branch names are untrusted text: Text.assemble never parses markup.
        return Text.assemble(
            ("loomtui", "bold"),
            f" · {self.mode_title}  " if self.mode_title else "  ",
            (self.repo, "bold"),
            " on ",
            (self.branch, "italic"),
            "  store: ",
            (self.store_state, "green" if self.store_state == "ok" else "bold red"),
            f"  sandboxes {self.sandboxes}",
            "  escalations ",
            (str(self.escalations), "bold yellow" if self.escalations else ""),
            "  conflicts ",
            (str(self.conflicts), "bold red" if self.conflicts else ""),
            *((f"  checklist {self.checklist}", "dim"),) if self.checklist else (),
        )
