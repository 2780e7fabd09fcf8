"""The coordination view: claims coloured by sandbox, their dependency neighbourhood,
and the conflicts between them, each with both claims and the path that joins them."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, ProgressBar, Static, Tree

from loomtui.coordination.claims import Conflict
from loomtui.coordination.view import CoordinationPicture
from loomtui.store import ClaimRecord
from loomtui.tui.base import LoomScreen
from loomtui.tui.widgets.status_header import StatusHeader

# Distinct, theme-independent hues for sandboxes; assigned in order of first claim.
SANDBOX_COLOURS = ("#5fafff", "#ffaf5f", "#af87ff", "#5fd7af", "#ff87af", "#d7d75f", "#87d7ff", "#d787d7")
SEVERITY_STYLES = {"error": "bold red", "high": "bold yellow", "warning": "yellow"}


def _short_region(region_id: str) -> str:
    """`Class.method` for a region inside a file, the path for a whole file."""
    path, _, qualname = region_id.partition("::")
    return qualname or path


def sandbox_colours(claims: list[ClaimRecord]) -> dict[str, str]:
    """A stable colour per sandbox, in the order sandboxes first claimed something."""
    colours: dict[str, str] = {}
    for claim in sorted(claims, key=lambda c: c.id):
        if claim.sandbox_id not in colours:
            colours[claim.sandbox_id] = SANDBOX_COLOURS[len(colours) % len(SANDBOX_COLOURS)]
    return colours


class GraphScreen(LoomScreen[None]):
    """Claims, neighbourhoods and conflicts, navigable with the keyboard."""

    AUTO_FOCUS = "#conflicts"
    BINDINGS = [
        Binding("r", "reindex", "Re-index", id="graph.reindex"),
        Binding("escape", "back", "Back", id="graph.back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.picture: CoordinationPicture | None = None

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        yield ProgressBar(id="index-progress", show_eta=False)
        with Horizontal(id="graph-body"):
            with Vertical(id="graph-left"):
                yield Static(Text("Conflicts", style="bold"), classes="section-title")
                yield DataTable(id="conflicts", cursor_type="row", zebra_stripes=True)
                yield Static(id="conflict-detail")
            with Vertical(id="graph-right"):
                yield Static(Text("Claims and their neighbourhood", style="bold"), classes="section-title")
                yield Tree("claims", id="claims-tree")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#conflicts", DataTable)
        table.add_column("Severity", key="severity")
        table.add_column("Kind", key="kind")
        table.add_column("Between", key="between")
        self.query_one("#claims-tree", Tree).show_root = False
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
        colours = sandbox_colours(picture.claims)
        self._fill_conflicts(picture.conflicts, colours)
        self._fill_tree(picture, colours)
        self._show_conflict()

    def _fill_conflicts(self, conflicts: list[Conflict], colours: dict[str, str]) -> None:
        table = self.query_one("#conflicts", DataTable)
        keys = [f"{c.kind}|{c.claim_a}|{c.claim_b}|{c.region_a}|{c.region_b}" for c in conflicts]
        for row_key in list(table.rows):
            if row_key.value not in keys:
                table.remove_row(row_key)
        for key, conflict in zip(keys, conflicts, strict=False):
            # Short names here; the detail pane below has the full ids and the path.
            between = Text.assemble(
                (conflict.sandbox_a, colours.get(conflict.sandbox_a, "")), " ", _short_region(conflict.region_a),
                "  ×  ", (conflict.sandbox_b, colours.get(conflict.sandbox_b, "")), " ",
                _short_region(conflict.region_b),
            )
            cells = [Text(conflict.severity, style=SEVERITY_STYLES[conflict.severity]), conflict.kind, between]
            if key in table.rows:
                for column, value in zip(("severity", "kind", "between"), cells, strict=False):
                    table.update_cell(key, column, value)
            else:
                table.add_row(*cells, key=key)

    def _fill_tree(self, picture: CoordinationPicture, colours: dict[str, str]) -> None:
        tree = self.query_one("#claims-tree", Tree)
        conflicting = {(c.region_a, c.region_b) for c in picture.conflicts}
        conflicting |= {(b, a) for a, b in conflicting}
        tree.clear()
        by_sandbox: dict[str, list[ClaimRecord]] = {}
        for claim in picture.claims:
            by_sandbox.setdefault(claim.sandbox_id, []).append(claim)
        for sandbox, claims in by_sandbox.items():
            node = tree.root.add(Text(f"● {sandbox}", style=f"bold {colours[sandbox]}"), expand=True)
            for claim in claims:
                label = Text.assemble(f"#{claim.id} ", (claim.target, colours[sandbox]), f"  {claim.mode}")
                claim_node = node.add(label, expand=True)
                for region_id in claim.region_ids:
                    region_node = claim_node.add(Text(region_id), expand=len(claim.region_ids) == 1)
                    for edge in picture.neighbourhoods.get(region_id, []):
                        arrow = f" ─{edge.kind}─▶ " if edge.outgoing else f" ◀─{edge.kind}─ "
                        owner = edge.owners[0] if edge.owners else ""
                        marker = "⚠ " if (region_id, edge.neighbour) in conflicting else "  "
                        leaf = Text.assemble(
                            (marker, "bold red"), arrow, (edge.neighbour, colours.get(owner, "dim")),
                            (f"  [{', '.join(edge.owners)}]" if edge.owners else "", colours.get(owner, "")),
                        )
                        region_node.add_leaf(leaf)
        if not picture.claims:
            tree.root.add_leaf(Text("No live claims. `loomtui claim add` or an agent's edit hook adds them."))

    # -- selection ----------------------------------------------------------------------

    def selected_conflict(self) -> Conflict | None:
        table = self.query_one("#conflicts", DataTable)
        if self.picture is None or not table.row_count:
            return None
        return self.picture.conflicts[table.cursor_row] if table.cursor_row < len(self.picture.conflicts) else None

    @on(DataTable.RowHighlighted, "#conflicts")
    def _show_conflict(self) -> None:
        detail = self.query_one("#conflict-detail", Static)
        conflict = self.selected_conflict()
        if self.picture is None:
            return
        if conflict is None:
            detail.update(Text(f"No conflicts among {len(self.picture.claims)} live claims. "
                               f"{self.picture.index_line()}"))
            return
        claims = {c.id: c for c in self.picture.claims}
        text = Text()
        text.append(f"{conflict.severity} {conflict.kind}\n", style=SEVERITY_STYLES[conflict.severity])
        text.append(conflict.explanation + "\n\n")
        for label, claim_id, sandbox in (("A", conflict.claim_a, conflict.sandbox_a),
                                         ("B", conflict.claim_b, conflict.sandbox_b)):
            claim = claims.get(claim_id) if claim_id is not None else None
            text.append(f"{label}: sandbox {sandbox}", style="bold")
            if claim is not None:
                text.append(f"  claim #{claim.id} {claim.mode} {claim.target}")
                if claim.reason:
                    text.append(f"  ({claim.reason})")
            text.append("\n")
        text.append("\npath: ", style="bold")
        text.append(" → ".join(conflict.path))
        detail.update(text)

    def action_reindex(self) -> None:
        self.loom.refresh_coordination(reindex=True)

    def action_back(self) -> None:
        self.app.switch_mode("dashboard")
