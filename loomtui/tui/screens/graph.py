"""The coordination view: claims coloured by sandbox, their dependency neighbourhood,
and the conflicts between them, each with both claims and the path that joins them.

The claims are shown in two forms on the right: a tree (the list form) and, behind `g`, the
drawn graph (`widgets/claims_canvas.py`), which `f` filters to one sandbox and `z` zooms to the
conflict selected in the table; `esc` backs out of the zoom, then the filter, then the screen."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable, ProgressBar, Static, Tree
from textual.widgets.tree import TreeNode

from loomtui.coordination.canvas import claims_graph
from loomtui.coordination.claims import Conflict
from loomtui.coordination.view import CoordinationPicture, Edge
from loomtui.errors import escape_controls, plural
from loomtui.store import ClaimRecord
from loomtui.tui.base import LoomScreen, wrap_width
from loomtui.tui.keys import KeysFooter, shown_key
from loomtui.tui.tree_state import NodePath, label_key, restore_tree_state, tree_state
from loomtui.tui.visible import VisibleText
from loomtui.tui.widgets.claims_canvas import ClaimsCanvas, assign_colours, theme_palette
from loomtui.tui.widgets.fields import wrap_value
from loomtui.tui.widgets.fitted_tree import FittedTree
from loomtui.tui.widgets.status_header import StatusHeader

SEVERITY_STYLES = {"error": "bold red", "high": "bold yellow", "warning": "yellow"}
KIND_NAMES = {"shared-vs-exclusive": "shared/excl"}  # the table's Kind column, kept narrow
PASSIVE = {"imports": "imported by", "references": "referenced by", "inherits": "inherited by",
           "contains": "contained in"}  # an edge seen from its other end (it read "imports by")
TREE_TITLE = "Claims and their neighbourhood"
TREE_OPEN_CLAIMS = 60
"""Claims up to which every sandbox's node starts open in the tree; past it each opens on `enter`."""
DRAWN_TITLE = "Claims graph"


MAX_OPENED_REGIONS: Final = 20


def _natural(text: str) -> list[tuple[int, str]]:
    """Sort key reading runs of digits as numbers: `f2` before `f10`."""
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", text)]


def _short_region(region_id: str) -> str:
    """`Class.method` for a region inside a file, the path for a whole file."""
    path, _, qualname = region_id.partition("::")
    return escape_controls(qualname or path)


def _shorter_region(region_id: str) -> str:
    """`method` of `Class.method`; a whole file's name without its folders (`tax.py`, not `py`)."""
    path, _, qualname = region_id.partition("::")
    if qualname:
        return escape_controls(qualname.rpartition(".")[2])
    folder = path.endswith("/")
    return escape_controls(path.rstrip("/").rpartition("/")[2] + ("/" if folder else ""))


def _cut_left(text: str, room: int) -> str:
    return text if len(text) <= room else "…" + text[len(text) - max(1, room) + 1:]


def sandbox_colours(claims: list[ClaimRecord], palette: tuple[str, ...]) -> dict[str, str]:
    """A stable colour per sandbox, in the order sandboxes first claimed something."""
    return assign_colours((c.sandbox_id for c in sorted(claims, key=lambda c: c.id)), palette)


def _claims_key(node: TreeNode[str]) -> str:
    """A node of the claims tree by what it stands for (a sandbox's label counts its claims, which change)."""
    return node.data if isinstance(node.data, str) else label_key(node)


def _conflict_key(conflict: Conflict) -> str:
    return f"{conflict.kind}|{conflict.claim_a}|{conflict.claim_b}|{conflict.region_a}|{conflict.region_b}"


def between(conflict: Conflict, colours: dict[str, str], room: int) -> Text:
    """`sandbox region × sandbox region` in `room` cells: region names lose their start first (the
    method names it best), then only the sandboxes remain; the detail under the table has it whole."""
    a, b = escape_controls(conflict.sandbox_a), escape_controls(conflict.sandbox_b)
    region_a, region_b = _short_region(conflict.region_a), _short_region(conflict.region_b)
    fixed = len(a) + len(b) + 5  # two spaces and " × "
    if fixed + len(region_a) + len(region_b) > room:  # `Class.method` to `method`, then cut, then none
        region_a, region_b = _shorter_region(conflict.region_a), _shorter_region(conflict.region_b)
    if fixed + len(region_a) + len(region_b) > room:
        each = (room - fixed) // 2
        region_a, region_b = (_cut_left(region_a, each), _cut_left(region_b, each)) if each >= 8 else ("", "")
    text = Text.assemble((a, colours.get(conflict.sandbox_a, "")), f" {region_a}" if region_a else "", " × ",
                         (b, colours.get(conflict.sandbox_b, "")), f" {region_b}" if region_b else "")
    text.truncate(max(1, room), overflow="ellipsis")
    return text


class ConflictsTable(DataTable[Text | str]):
    """The conflicts; its Between column is cut to the table's width, so it says when that changes."""

    class Resized(Message):
        pass

    def on_resize(self, event: events.Resize) -> None:
        self.post_message(self.Resized())


CURSOR_TRIES = 50
"""Refreshes waited for the rebuilt claims tree to lay out the node its cursor goes back to; then looked at again
every CURSOR_RETRY_S as long (refreshes with nothing to draw come in a burst, before a loaded machine laid the
tree out: a CI run found the cursor off its claim)."""
CURSOR_RETRY_S = 0.05


class GraphScreen(LoomScreen[None]):
    """Claims, neighbourhoods and conflicts, navigable with the keyboard."""

    VIEW_NAME = "Claims"

    AUTO_FOCUS = "#conflicts"
    BINDINGS = [
        Binding("g", "toggle_drawn", "Graph/list", id="graph.drawn",
                tooltip="Switch the claims between the drawn graph and the tree"),
        Binding("f", "filter_sandbox", "Filter", id="graph.filter",
                tooltip="Draw one sandbox's regions; again for the next one"),
        Binding("z", "zoom_conflict", "Zoom", id="graph.zoom",
                tooltip="Draw only the selected conflict's path"),
        Binding("r", "reindex", "Re-index", id="graph.reindex",
                tooltip="Parse changed files again and redraw the claims"),
        Binding("escape", "back", "Back", id="graph.back",
                tooltip="Out of the zoom, the filter, then to the sandboxes"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.picture: CoordinationPicture | None = None
        self.drawn = False
        self.colours: dict[str, str] = {}
        self._room = 0  # the Between column's width the table was filled for
        self._claims_by_sandbox: dict[str, list[ClaimRecord]] = {}  # the tree's, by the picture it shows
        self._conflicting: set[tuple[str, str]] = set()  # region pairs in conflict, both ways round
        self._cursor_due: tuple[int, NodePath | None] = (0, None)  # the tree's build, and where its cursor goes

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        yield ProgressBar(id="index-progress", show_eta=False)
        with Horizontal(id="graph-body"):
            with Vertical(id="graph-left"):
                yield Static(Text("Conflicts", style="bold"), classes="section-title")
                yield ConflictsTable(id="conflicts", cursor_type="row", zebra_stripes=True)
                # In a pane of its own that scrolls: a long explanation was cut at half the column, unreachable.
                with VerticalScroll(id="conflict-detail-pane"):
                    yield Static(id="conflict-detail")
            with Vertical(id="graph-right"):
                yield Static(Text(TREE_TITLE, style="bold"), id="claims-title", classes="section-title")
                yield FittedTree("claims", id="claims-tree")
                yield ClaimsCanvas(id="claims-canvas")
        yield KeysFooter()

    def on_mount(self) -> None:
        table = self.query_one("#conflicts", DataTable)
        table.add_column("Severity", key="severity")
        table.add_column("Kind", key="kind")
        table.add_column("Between", key="between")
        self.query_one("#claims-tree", Tree).show_root = False
        self.query_one("#claims-canvas", ClaimsCanvas).display = False
        self.watch(self.app, "theme", self._recolour, init=False)
        self.loom.update_header(self.query_one(StatusHeader))
        picture = self.loom.coordination
        if picture is not None:
            self.show_picture(picture)
        else:
            self.query_one("#conflict-detail", Static).update(Text("Indexing the repository…"))

    def on_screen_resume(self) -> None:
        picture = self.loom.coordination
        if picture is not None and picture is not self.picture:
            self.show_picture(picture)

    def show_progress(self, done: int, total: int) -> None:
        bar = self.query_one("#index-progress", ProgressBar)
        bar.display = done < total
        bar.update(total=total, progress=done)

    # -- applying a picture ---------------------------------------------------------

    def show_picture(self, picture: CoordinationPicture) -> None:
        self.picture = picture
        self.query_one("#index-progress", ProgressBar).display = False
        graph = claims_graph(picture)
        colours = self.colours = assign_colours(graph.sandboxes, theme_palette(self.app))
        self._fill_conflicts(picture.conflicts, colours)
        self.set_class(not picture.conflicts, "-calm")  # no conflict: the claims take the room (app.tcss)
        self._fill_tree(picture, colours)
        self.query_one("#claims-canvas", ClaimsCanvas).show(graph, colours)
        self._show_conflict()
        self._title()

    def _recolour(self) -> None:
        if self.picture is not None:
            self.show_picture(self.picture)

    @on(ConflictsTable.Resized)
    def _table_resized(self) -> None:
        if self.picture is not None:  # the Between column is cut to the table's new width
            self._fill_conflicts(self.picture.conflicts, self.colours)

    def _between_room(self) -> int:
        table = self.query_one("#conflicts", DataTable)
        width = table.scrollable_content_region.width or table.size.width
        # Severity (8, its header) and Kind (11) columns, a cell padding of 1 either side of each of the
        # three, and a spare column against a rounding of the layout.
        return max(16, width - 8 - 11 - 6 - 1)

    def _fill_conflicts(self, conflicts: list[Conflict], colours: dict[str, str]) -> None:
        table = self.query_one("#conflicts", DataTable)
        room = self._between_room()
        if room != self._room and table.row_count:
            # A column never narrows by itself: refill it, the cursor staying on its conflict.
            selected = self.selected_conflict()
            table.clear()
            self._room = room
            self._fill_conflicts(conflicts, colours)
            keys = [_conflict_key(c) for c in conflicts]
            if selected is not None and _conflict_key(selected) in keys:
                table.move_cursor(row=keys.index(_conflict_key(selected)))
            return
        self._room = room
        keys = [_conflict_key(c) for c in conflicts]
        for row_key in list(table.rows):
            if row_key.value not in keys:
                table.remove_row(row_key)
        for key, conflict in zip(keys, conflicts, strict=False):
            # Short names, cut to the width; the detail pane below has the full ids and the path.
            cells = [Text(conflict.severity, style=SEVERITY_STYLES[conflict.severity]),
                     KIND_NAMES.get(conflict.kind, conflict.kind), between(conflict, colours, room)]
            if key in table.rows:
                for column, value in zip(("severity", "kind", "between"), cells, strict=False):
                    table.update_cell(key, column, value, update_width=True)
            else:
                table.add_row(*cells, key=key)

    def _fill_tree(self, picture: CoordinationPicture, colours: dict[str, str]) -> None:
        """A node per sandbox. Each holds its claims, their regions and their neighbours, added when it is
        first opened if there are many claims: 5,000 claims are some 10,000 nodes, which took the view's
        first visit seconds to build and lay out."""
        tree: Tree[str] = self.query_one("#claims-tree", Tree)
        state = tree_state(tree, _claims_key)
        build, due = self._cursor_due
        if due is not None:  # built again before the last build's cursor was put back: it goes where that one's did
            state = replace(state, cursor=due)
        tree.clear()
        self._claims_by_sandbox = {}
        self._conflicting = {(c.region_a, c.region_b) for c in picture.conflicts}
        self._conflicting |= {(b, a) for a, b in self._conflicting}
        for claim in picture.claims:
            self._claims_by_sandbox.setdefault(claim.sandbox_id, []).append(claim)
        opened = len(picture.claims) <= TREE_OPEN_CLAIMS
        for sandbox, claims in self._claims_by_sandbox.items():
            label = Text(f"● {sandbox}", style=f"bold {colours[sandbox]}")
            if not opened:
                label.append(f"  {len(claims)} claim{'s' if len(claims) != 1 else ''}", style="dim")
            node = tree.root.add(label, data=sandbox, expand=opened, allow_expand=True)
            if opened:
                self._fill_sandbox(node)
        if not picture.claims:
            tree.root.add_leaf(Text("No live claims. `loomtui claim add` or an agent's edit hook adds them."))
        # What a person closed stays closed, and the cursor on its node (by line it landed on another claim).
        # A sandbox opened before is filled now, not when its expansion's message comes: what is under it
        # is put back as it was too.
        for node in tree.root.children:
            if not node.children and (_claims_key(node),) in state.opened:
                self._fill_sandbox(node)
        self._cursor_due = (build + 1, None)
        if (at := restore_tree_state(tree, state, _claims_key)) is not None:
            self._cursor_due = (build + 1, state.cursor)
            self.call_after_refresh(self._put_cursor, tree, at, build + 1)

    def _put_cursor(self, tree: Tree[str], node: TreeNode[str], build: int, tries: int = 0) -> None:
        """The cursor back on its node once the tree has laid it out (`move_cursor` goes to its line, -1 before:
        on a loaded machine the refresh after a build had not always laid the rebuilt tree out, and the cursor
        was left off the claim), unless the tree was built again since (that build reads where it goes)."""
        if self._cursor_due[0] != build:
            return
        if node.line < 0 and tries < CURSOR_TRIES:
            self.call_after_refresh(self._put_cursor, tree, node, build, tries + 1)
            return
        if node.line < 0 and tries < 2 * CURSOR_TRIES:
            self.set_timer(CURSOR_RETRY_S, lambda: self._put_cursor(tree, node, build, tries + 1))
            return
        self._cursor_due = (build, None)
        tree.move_cursor(node)

    @on(Tree.NodeExpanded, "#claims-tree")
    def _sandbox_opened(self, event: Tree.NodeExpanded[str]) -> None:
        if event.node.parent is event.node.tree.root and not event.node.children:
            self._fill_sandbox(event.node)

    def _fill_sandbox(self, node: TreeNode[str]) -> None:
        """A sandbox's claims under its node, each with its regions and their neighbours."""
        picture, sandbox = self.picture, node.data
        if picture is None or sandbox is None:
            return
        colours, conflicting = self.colours, self._conflicting
        for claim in self._claims_by_sandbox.get(sandbox, []):
            target = escape_controls(claim.target)
            short, file = (_short_region(claim.target), target.partition("::")[0]) if "::" in target \
                else (target, "")
            label = Text.assemble(f"#{claim.id} {claim.mode} ", (short, colours[sandbox]),
                                  (f"  {file}" if file else "", "dim"))
            # A claim of many regions (a generated file's commit) opened whole pushed the others' claims, and their
            # conflicts, 200 rows down: opened on ⏎, its regions in their numbers' order (f2 before f10).
            claim_node = node.add(label, expand=len(claim.region_ids) <= MAX_OPENED_REGIONS)
            gone = set(picture.gone.get(claim.id, ()))
            for region_id in sorted(claim.region_ids, key=_natural):
                path = escape_controls(region_id.partition("::")[0])
                region_label = Text.assemble(_short_region(region_id), (f"  {path}" if "::" in region_id else "",
                                                                        "dim"))
                if region_id in gone:  # renamed, moved or deleted since: the claim protects nothing there
                    region_label.append("  gone from the code: claim again", style="bold red")
                region_node = claim_node.add(region_label, expand=len(claim.region_ids) == 1)
                for edge in picture.neighbourhoods.get(region_id, []):
                    region_node.add_leaf(self._edge_label(region_id, edge, colours, conflicting))

    @staticmethod
    def _edge_label(region_id: str, edge: Edge, colours: dict[str, str], conflicting: set[tuple[str, str]]) -> Text:
        """The neighbour first (what a narrow pane must not cut), then its owners, the edge kind and its file."""
        owner = edge.owners[0] if edge.owners else ""
        path = escape_controls(edge.neighbour.partition("::")[0])
        same_file = path == region_id.partition("::")[0]
        return Text.assemble(
            ("⚠ " if (region_id, edge.neighbour) in conflicting else "  ", "bold red"),
            "→ " if edge.outgoing else "← ",
            (_short_region(edge.neighbour), colours.get(owner, "dim")),
            (f" [{', '.join(escape_controls(o) for o in edge.owners)}]" if edge.owners else "",
             colours.get(owner, "")),
            (f"  {edge.kind}" if edge.outgoing else f"  {PASSIVE.get(edge.kind, edge.kind + ' by')}", "dim"),
            ("" if same_file or "::" not in edge.neighbour else f" · {path}", "dim"),
        )

    # -- selection ----------------------------------------------------------------------

    def selected_conflict(self) -> Conflict | None:
        """The conflict of the table's highlighted row (rows keep their place as the picture changes)."""
        table = self.query_one("#conflicts", DataTable)
        if self.picture is None or not table.row_count:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        return next((c for c in self.picture.conflicts if _conflict_key(c) == key), None)

    @on(DataTable.RowHighlighted, "#conflicts")
    def _show_conflict(self) -> None:
        detail = self.query_one("#conflict-detail", Static)
        conflict = self.selected_conflict()
        if self.picture is None:
            return
        if conflict is None:
            count = len(self.picture.claims)
            # The index's line is the claims pane's title already: said once.
            detail.update(Text(f"No conflicts among {plural(count, 'live claim')}."))
            return
        claims = {c.id: c for c in self.picture.claims}
        width = wrap_width(detail, self.query_one("#conflict-detail-pane", VerticalScroll), 40)

        def wrapped(value: str) -> str:  # region ids break after a `/`, not mid-name
            return "\n".join(wrap_value(value, width)) + "\n"

        text = VisibleText()
        text.append(f"{conflict.severity} {conflict.kind}\n", style=SEVERITY_STYLES[conflict.severity])
        text.append(wrapped(conflict.explanation) + "\n")
        for label, claim_id, sandbox in (("A", conflict.claim_a, conflict.sandbox_a),
                                         ("B", conflict.claim_b, conflict.sandbox_b)):
            claim = claims.get(claim_id) if claim_id is not None else None
            text.append(f"{label}: sandbox {sandbox}\n", style="bold")
            if claim is not None:
                reason = f"  ({escape_controls(claim.reason)})" if claim.reason else ""
                text.append(wrapped(f"claim #{claim.id} {claim.mode} {claim.target}{reason}"))
        text.append("\npath:\n", style="bold")
        text.append(wrapped(" → ".join(conflict.path)))
        detail.update(text)

    def on_resize(self) -> None:
        self.call_after_refresh(self._show_conflict)  # its lines wrap for the new width

    # -- the drawn graph: toggle, filter, zoom -------------------------------------------------

    def _title(self) -> None:
        canvas = self.query_one("#claims-canvas", ClaimsCanvas)
        text = Text(DRAWN_TITLE if self.drawn else TREE_TITLE, style="bold")
        if self.drawn and canvas.conflict is not None:
            text.append(f" · zoom: conflict {canvas.conflict + 1}")
        elif self.drawn and canvas.sandbox is not None:
            text.append(" · filter: ")
            text.append(escape_controls(canvas.sandbox), style=self.colours.get(canvas.sandbox, ""))
        if self.picture is not None:
            text.append(f"  {self.picture.index_line()}", style="dim")
        self.query_one("#claims-title", Static).update(text)

    def _show_drawn(self, drawn: bool) -> None:
        self.drawn = drawn
        self.set_class(drawn, "-drawn")
        self.query_one("#claims-tree", Tree).display = not drawn
        canvas = self.query_one("#claims-canvas", ClaimsCanvas)
        canvas.display = drawn
        if drawn:
            canvas.call_after_refresh(canvas.relayout)  # its width is known once it is shown
        self._title()

    def action_toggle_drawn(self) -> None:
        self._show_drawn(not self.drawn)  # the title says which; the footer has f, z and esc

    def action_filter_sandbox(self) -> None:
        """The next sandbox in the legend's order, then all of them again."""
        canvas = self.query_one("#claims-canvas", ClaimsCanvas)
        sandboxes = list(canvas.graph.sandboxes) if canvas.graph is not None else []
        if not sandboxes:
            self.notify("No live claims to filter by sandbox", title="claims", severity="warning")
            return
        position = sandboxes.index(canvas.sandbox) + 1 if canvas.sandbox in sandboxes else 0
        chosen = sandboxes[position] if position < len(sandboxes) else None
        canvas.set_view(sandbox=chosen, conflict=None)
        if not self.drawn:
            self._show_drawn(True)
        self._title()

    def show_sandbox_drawn(self, sandbox_id: str) -> None:
        """The drawn graph filtered to one sandbox's claimed regions and their neighbours (the palette's
        regions lead here)."""
        self.query_one("#claims-canvas", ClaimsCanvas).set_view(sandbox=sandbox_id, conflict=None)
        if not self.drawn:
            self._show_drawn(True)
        self._title()

    def action_zoom_conflict(self) -> None:
        canvas = self.query_one("#claims-canvas", ClaimsCanvas)
        conflict = self.selected_conflict()
        if conflict is None or self.picture is None:
            self.notify("No conflict selected: choose one in the Conflicts table, then z", title="claims",
                        severity="warning")
            return
        canvas.set_view(sandbox=canvas.sandbox, conflict=self.picture.conflicts.index(conflict))
        if not self.drawn:
            self._show_drawn(True)
        self._title()

    def no_filter_hint(self) -> str:
        return f"{shown_key('graph.filter', 'f')} shows one sandbox's claims at a time"

    def action_reindex(self) -> None:
        # Said at once over the claims; the app's toast says what the re-index found (files parsed, or
        # up to date), and the title shows the new index line when the picture comes back.
        self.query_one("#claims-title", Static).update(
            Text("Re-indexing the repository: changed files are parsed again…", style="bold"))
        self.loom.refresh_coordination(reindex=True)

    def action_back(self) -> None:
        canvas = self.query_one("#claims-canvas", ClaimsCanvas)
        if self.drawn and canvas.conflict is not None:
            canvas.set_view(sandbox=canvas.sandbox, conflict=None)
        elif self.drawn and canvas.sandbox is not None:
            canvas.set_view(sandbox=None, conflict=None)
        else:
            self.back_out()
            return
        self._title()
