"""The app as its screens see it: `LoomScreen.loom` (or `loom_app`) is the running LoomApp, typed.

Textual types `self.app` as a generic `App`, so the workspace, config and snapshot the
app holds are invisible to the type checker there; here they are visible, without a cycle
(app.py imports the screens, so LoomApp is imported for type checking only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar, cast

from textual import events, on
from textual.app import App
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input

if TYPE_CHECKING:
    from loomtui.tui.app import LoomApp

ResultT = TypeVar("ResultT")

NARROW_COLUMNS: Final = 140
"""Under this many columns a screen is `-narrow` (the app's breakpoints, which every screen, a dialog too,
takes): its detail pane goes below its table or tree, which keep the full width. Beside them the detail
needs 50 columns, and at 120 the sandboxes' table kept 70 (its tasks cut to a dozen characters) and
the escalations' detail broke test ids mid-name. A toast spans the width then (app.tcss)."""


def loom_app(app: App[Any]) -> LoomApp:
    """`app` as the LoomApp it is: every screen, form and palette provider here runs inside one."""
    return cast("LoomApp", app)


def inner_width(widget: Widget) -> int:
    """The width `widget` has for its content, from its own size: `content_size` reads the
    compositor's last map, which can lag a resize. 0 before it is first sized."""
    return widget.size.width  # Textual's `size` is the content area's already


def wrap_width(widget: Widget, pane: Widget, default: int) -> int:
    """The width to wrap `widget`'s text for inside the scrolling `pane`, as if its scrollbar were
    there: the text brings it, and lines wrapped for the width before it ran two columns over and broke
    mid-word at column 0. `default` before the widget is first sized."""
    width = inner_width(widget)
    if not width:
        return default
    return max(20, width - (0 if pane.show_vertical_scrollbar else pane.styles.scrollbar_size_vertical))


class LoomScreen(Screen[ResultT]):
    """A screen of the loomtui app; `self.loom` reads the app's workspace, config and latest state."""

    VIEW_NAME: ClassVar[str] = ""
    """The view's name in the header (one of the app's modes; "" for a form or a dialog)."""

    def __init__(self, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name, id, classes)
        # The width's class (-narrow or -normal) from the start: added on the first Resize instead, it
        # styled the whole screen a second time before its first frame.
        try:
            width = self.app.size.width
        except RuntimeError:  # Textual's NoActiveAppError: made outside a running app
            return
        breakpoints = self.HORIZONTAL_BREAKPOINTS or self.app.HORIZONTAL_BREAKPOINTS or []
        classes_now = self._get_breakpoint_classes(width, breakpoints)
        self.update_classes({name: name in classes_now for _, name in breakpoints}, update=False)

    @property
    def loom(self) -> LoomApp:
        return loom_app(self.app)

    def back_out(self) -> None:
        """esc backs out one level: from a detail pane to the view's own list (its AUTO_FOCUS), from there to
        the sandboxes (from a pane of the Audit view it went to the sandboxes, the row read lost)."""
        home = self.query(self.AUTO_FOCUS).first() if self.AUTO_FOCUS else None
        focused = self.focused
        if home is not None and focused is not None and focused is not home and home not in focused.ancestors:
            home.focus()
            return
        self.app.switch_mode("dashboard")

    @staticmethod
    def filter_box(placeholder: str, box_id: str) -> Input:
        """A view's `/` filter, hidden until `/`. Not selecting its text on focus: keys typed on after `/` in one
        go reach it before its focus event, which selected the first and the next replaced it (`/ap` read "p")."""
        return Input(placeholder=placeholder, id=box_id, classes="hidden", select_on_focus=False)

    def open_filter(self, box_id: str) -> None:
        """`/` in a view with a filter: its box shown and focused at once. `focus()` waits its turn behind the keys
        already queued: `/ap` typed in one go (a paste, a busy app) ran `a`, approving the selected change."""
        box = self.query_one(box_id, Input)
        box.remove_class("hidden")
        self.set_focus(box)
        self.refresh_bindings()

    def close_filter(self, box_id: str) -> bool:
        """esc while the view's filter is shown: cleared, hidden and the view's list focused (True); False when
        there is none to close (esc then backs out)."""
        box = self.query_one(box_id, Input)
        if box.has_class("hidden"):
            return False
        box.value = ""
        box.add_class("hidden")
        if self.AUTO_FOCUS:
            self.query_one(self.AUTO_FOCUS).focus()
        return True

    def no_filter_hint(self) -> str:
        """What to use instead of `/` in a view without a filter (said when `/` is pressed), or ""."""
        return ""

    def action_filter(self) -> None:
        """`/` in a view that has no filter (the app's `/`; the views that have one bind their own)."""
        if self.VIEW_NAME:
            hint = f": {self.no_filter_hint()}" if self.no_filter_hint() else ""
            self.notify(f"the {self.VIEW_NAME} view has no / filter{hint}", title="filter", timeout=4)

    @on(events.ScreenResume)
    def _header_catches_up(self) -> None:
        # Shown again: its header catches up with what changed while it was hidden (counts, score).
        # A decorated handler runs besides a screen's own `on_screen_resume`.
        from loomtui.tui.widgets.status_header import StatusHeader

        for header in self.query(StatusHeader):
            self.loom.update_header(header)

