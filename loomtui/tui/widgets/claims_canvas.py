"""The drawn claims graph (`loomtui.coordination.canvas`) in a scrolling pane, coloured from the theme.

The engine gives plain lines and (line, start, end, role) spans; this widget turns each role into
a style: a sandbox's colour for `sandbox:<id>`, the theme's error colour for conflict paths, muted
text for boxes and notes. Names come from the repository and from agents, so they are shown as
plain text (Rich segments), never parsed as markup. A large graph is laid out in a thread worker;
the drawing is redone when the pane's width, the graph, the filter or the zoom changes. Arrow and
page keys scroll it when it does not fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual import events, work
from textual.app import App
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from loomtui.coordination.canvas import (
    ROLE_BOX,
    ROLE_CONFLICT,
    ROLE_EDGE,
    ROLE_FREE,
    ROLE_HEADER,
    ROLE_MUTED,
    ROLE_TITLE,
    SANDBOX_ROLE,
    Canvas,
    ClaimsGraph,
    draw_claims,
)

# Used when a theme offers too few distinct colours to tell sandboxes apart.
FALLBACK_COLOURS = ("#5fafff", "#ffaf5f", "#af87ff", "#5fd7af", "#ff87af", "#d7d75f", "#87d7ff", "#d787d7")
# Theme variables sandboxes are coloured with, in order; `error` is kept for conflicts.
THEME_SLOTS = ("primary", "secondary", "accent", "success", "warning", "primary-lighten-2",
               "secondary-lighten-2", "accent-lighten-2", "success-lighten-2", "warning-lighten-2")
THREAD_ABOVE = 400  # regions: a graph larger than this is laid out off the UI thread


def theme_palette(app: App[Any]) -> tuple[str, ...]:
    """Distinct colours of the current theme for sandboxes (a fixed set when the theme has too few)."""
    variables = app.get_css_variables()
    palette: list[str] = []
    for slot in THEME_SLOTS:
        colour = variables.get(slot, "")
        if colour.startswith("#") and colour.lower() not in palette:
            palette.append(colour.lower())
    return tuple(palette) if len(palette) >= 4 else FALLBACK_COLOURS


def assign_colours(sandboxes: Iterable[str], palette: Sequence[str]) -> dict[str, str]:
    """A colour per sandbox, in the order given (the order they first claimed something)."""
    return {sandbox: palette[n % len(palette)] for n, sandbox in enumerate(dict.fromkeys(sandboxes))}


class ClaimsCanvas(ScrollView, can_focus=True):
    """The claims graph drawn with boxes and lines, filtered to a sandbox or zoomed to a conflict."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.graph: ClaimsGraph | None = None
        self.sandbox: str | None = None
        self.conflict: int | None = None
        self.canvas: Canvas | None = None
        self.colours: dict[str, str] = {}
        self._strips: list[Strip] = []
        self._wanted: tuple[object, ...] = ()

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._recolour, init=False)

    # -- what to draw ----------------------------------------------------------------------

    def show(self, graph: ClaimsGraph, colours: dict[str, str]) -> None:
        """Draw this graph (a new picture of the claims), keeping the filter and zoom if still valid."""
        self.graph, self.colours = graph, colours
        if self.sandbox is not None and self.sandbox not in graph.sandboxes:
            self.sandbox = None
        if self.conflict is not None and self.conflict >= len(graph.conflicts):
            self.conflict = None
        self.relayout()

    def set_view(self, *, sandbox: str | None, conflict: int | None) -> None:
        """Filter to one sandbox's regions and neighbours, or zoom to one conflict's path (None: all)."""
        self.sandbox, self.conflict = sandbox, conflict
        self.scroll_to(0, 0, animate=False)
        self.relayout()

    def relayout(self) -> None:
        width = self.scrollable_content_region.width or self.size.width
        if self.graph is None or width <= 0:
            return
        wanted = (id(self.graph), width, self.sandbox, self.conflict)
        if wanted == self._wanted and self.canvas is not None:
            return
        self._wanted = wanted
        if len(self.graph.owners) > THREAD_ABOVE:
            self._layout_worker(self.graph, width, self.sandbox, self.conflict, wanted)
        else:
            self._apply(draw_claims(self.graph, width, sandbox=self.sandbox, conflict=self.conflict), wanted)

    @work(thread=True, exclusive=True, group="claims-canvas", exit_on_error=False)
    def _layout_worker(self, graph: ClaimsGraph, width: int, sandbox: str | None, conflict: int | None,
                       wanted: tuple[object, ...]) -> None:
        canvas = draw_claims(graph, width, sandbox=sandbox, conflict=conflict)
        self.app.call_from_thread(self._apply, canvas, wanted)

    def _apply(self, canvas: Canvas, wanted: tuple[object, ...]) -> None:
        if wanted != self._wanted:
            return  # drawn for a width or a view that has changed since
        self.canvas = canvas
        self._paint()

    # -- painting ---------------------------------------------------------------------------

    def _styles(self) -> dict[str, Style]:
        variables = self.app.get_css_variables()
        error = variables.get("error", "red")
        foreground = variables.get("foreground", "white")
        return {
            ROLE_HEADER: Style(bold=True), ROLE_TITLE: Style(bold=True),
            ROLE_BOX: Style(color=foreground, dim=True), ROLE_EDGE: Style(color=foreground),
            ROLE_CONFLICT: Style(color=error, bold=True), ROLE_FREE: Style(dim=True, italic=True),
            ROLE_MUTED: Style(dim=True),
        }

    def _paint(self) -> None:
        canvas = self.canvas
        if canvas is None:
            return
        styles = self._styles()
        by_line: dict[int, list[tuple[int, int, str]]] = {}
        for span in canvas.spans:
            by_line.setdefault(span.line, []).append((span.start, span.end, span.role))
        strips: list[Strip] = []
        for number, line in enumerate(canvas.lines):
            segments: list[Segment] = []
            cursor = 0
            for start, end, role in sorted(by_line.get(number, [])):
                if start > cursor:
                    segments.append(Segment(line[cursor:start]))
                if role.startswith(SANDBOX_ROLE):
                    style = Style(color=self.colours.get(role[len(SANDBOX_ROLE):]) or None)
                else:
                    style = styles.get(role, Style())
                segments.append(Segment(line[max(start, cursor):end], style))
                cursor = max(cursor, end)
            if cursor < len(line):
                segments.append(Segment(line[cursor:]))
            strips.append(Strip(segments, len(line)))
        self._strips = strips
        self.virtual_size = Size(canvas.width, len(strips))
        self.refresh()

    def _recolour(self) -> None:
        self._paint()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = y + scroll_y
        width = self.scrollable_content_region.width
        if y == 0 and self.graph is not None and (not self._wanted or self._wanted[1] != width):
            # Shown again, or resized without a Resize reaching it: draw for the width it has now.
            self.call_later(self.relayout)
        base = self.rich_style
        if not 0 <= index < len(self._strips):
            return Strip.blank(width, base)
        strip = self._strips[index].apply_style(base)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def on_resize(self, event: events.Resize) -> None:
        self.relayout()

    def on_show(self, event: events.Show) -> None:
        self.relayout()

    def text(self) -> str:
        """The drawing as plain text (what a test or a copy reads)."""
        return "\n".join(self.canvas.lines) if self.canvas is not None else ""
