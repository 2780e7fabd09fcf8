"""The dashboard: sandboxes on the left, the selected one's detail on the right."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Log, Static, TabbedContent, TabPane

from loomtui.store import Event, SandboxRecord
from loomtui.tui.snapshot import DashboardSnapshot
from loomtui.tui.widgets.status_header import StatusHeader

SANDBOX_COLUMNS = (
    ("id", "ID"), ("runtime", "Runtime"), ("task", "Task"), ("status", "Status"),
    ("age", "Age"), ("isolation", "Isolation"), ("claims", "Claims"),
    ("gates", "Gates"), ("risk", "Risk"),
)
STATUS_STYLES = {
    "running": "bold green", "failed": "bold red", "rejected": "red",
    "awaiting review": "bold yellow", "gating": "cyan", "approved": "green",
    "merged": "dim green", "exited": "dim", "planned": "blue",
}


def format_age(seconds: float) -> str:
    """Short human age: 45s, 12m, 3h, 2d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_event(event: Event) -> str:
    """One plain-text log line for an event (a Log never parses markup)."""
    stamp = datetime.fromtimestamp(event.ts).strftime("%H:%M:%S")
    details = " ".join(f"{k}={v}" for k, v in sorted(event.data.items()))
    return f"{stamp}  {event.kind:<20} {event.subject}  {details}".rstrip()


class DashboardScreen(Screen[None]):
    """Sandboxes table, detail tabs and the live activity of the store."""

    AUTO_FOCUS = "#sandboxes"
    BINDINGS = [
        Binding("slash", "filter", "Filter", key_display="/", id="dashboard.filter"),
        Binding("escape", "back", "Back", id="dashboard.back"),
        Binding("enter", "details", "Details", id="dashboard.details", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: DashboardSnapshot | None = None
        self.filter_text = ""

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        yield Static("", id="banner", classes="hidden")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield Input(placeholder="filter sandboxes (esc clears)", id="filter", classes="hidden")
                yield Static("", id="empty")
                yield DataTable(id="sandboxes", cursor_type="row", zebra_stripes=True)
            with TabbedContent(id="detail"):
                with TabPane("Details", id="tab-details"):
                    yield Static("", id="details")
                with TabPane("Claims", id="tab-claims"):
                    yield Static("", id="claims")
                with TabPane("Activity", id="tab-activity"):
                    yield Log(max_lines=500, id="activity")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#sandboxes", DataTable)
        for key, label in SANDBOX_COLUMNS:
            table.add_column(label, key=key)
        self.app.update_header(self.query_one(StatusHeader))  # type: ignore[attr-defined]
        snapshot = self.app.latest_snapshot  # type: ignore[attr-defined]
        if snapshot is not None:
            self.show_snapshot(snapshot)
        else:
            self._show_empty_state()

    def on_screen_resume(self) -> None:
        # Updates are skipped while the screen is hidden; catch up when it returns.
        snapshot = self.app.latest_snapshot  # type: ignore[attr-defined]
        if snapshot is not None and snapshot is not self.snapshot:
            self.show_snapshot(snapshot)

    # -- applying store state ---------------------------------------------------

    def show_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """Apply fresh store state: table rows by key, counts, and new events."""
        self.snapshot = snapshot
        header = self.query_one(StatusHeader)
        header.sandboxes = len(snapshot.sandboxes)
        header.escalations = len(snapshot.open_escalations)
        log = self.query_one("#activity", Log)
        log.write_lines(format_event(e) for e in snapshot.events)
        self._sync_table(snapshot)
        self._show_detail()

    def _visible(self, sandbox: SandboxRecord) -> bool:
        needle = self.filter_text.lower()
        return not needle or any(
            needle in value.lower() for value in (sandbox.id, sandbox.task, sandbox.runtime, sandbox.status)
        )

    def _row(self, sandbox: SandboxRecord, claims: int) -> dict[str, Text | str]:
        gates = str(sandbox.data.get("gates", "")) or "–"
        risk = str(sandbox.data.get("risk", "")) or "–"
        return {
            "id": sandbox.id,
            "runtime": Text(sandbox.runtime),
            "task": Text(sandbox.task.splitlines()[0] if sandbox.task else ""),
            "status": Text(sandbox.status, style=STATUS_STYLES.get(sandbox.status, "")),
            "age": format_age(self.app.clock() - sandbox.created),  # type: ignore[attr-defined]
            "isolation": Text(sandbox.isolation or "–"),
            "claims": str(claims),
            "gates": Text(gates),
            "risk": Text(risk),
        }

    def _sync_table(self, snapshot: DashboardSnapshot) -> None:
        table = self.query_one("#sandboxes", DataTable)
        wanted = {s.id: s for s in snapshot.sandboxes if self._visible(s)}
        for row_key in list(table.rows):
            if row_key.value not in wanted:
                table.remove_row(row_key)
        for sandbox in wanted.values():
            cells = self._row(sandbox, len(snapshot.claims_by_sandbox.get(sandbox.id, [])))
            if sandbox.id in table.rows:
                for column, value in cells.items():
                    table.update_cell(sandbox.id, column, value)
            else:
                table.add_row(*cells.values(), key=sandbox.id)
        self._show_empty_state()

    def _show_empty_state(self) -> None:
        table = self.query_one("#sandboxes", DataTable)
        empty = self.query_one("#empty", Static)
        total = len(self.snapshot.sandboxes) if self.snapshot else 0
        table.display = total > 0
        if table.display and self.focused is None:
            table.focus()
        if table.row_count:
            empty.update("")
        elif total:
            empty.update(Text(f"No sandbox matches the filter ({total} hidden). esc clears it."))
        else:
            empty.update(Text("No sandboxes in this repository yet; they appear here live "
                              "as agents start."))

    def selected_sandbox(self) -> SandboxRecord | None:
        table = self.query_one("#sandboxes", DataTable)
        if not table.row_count or self.snapshot is None:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return next((s for s in self.snapshot.sandboxes if s.id == row_key.value), None)

    def _show_detail(self) -> None:
        sandbox = self.selected_sandbox()
        details = self.query_one("#details", Static)
        claims = self.query_one("#claims", Static)
        if sandbox is None:
            details.update(Text("Select a sandbox to see its details."))
            claims.update(Text("No sandbox selected."))
            return
        lines = Text()
        for label, value in (
            ("id", sandbox.id), ("task", sandbox.task), ("runtime", sandbox.runtime),
            ("status", sandbox.status), ("branch", sandbox.branch or "–"),
            ("base", sandbox.base_ref or "–"), ("worktree", sandbox.worktree or "–"),
            ("isolation", sandbox.isolation or "–"),
            ("pid", str(sandbox.pid) if sandbox.pid else "–"),
            ("exit code", "–" if sandbox.exit_code is None else str(sandbox.exit_code)),
        ):
            lines.append(f"{label:>10}  ", style="dim")
            lines.append(f"{value}\n")  # plain append: untrusted text is never markup
        details.update(lines)
        held = self.snapshot.claims_by_sandbox.get(sandbox.id, []) if self.snapshot else []
        listing = Text(f"{len(held)} live claim(s)\n", style="bold")
        now = self.app.clock()  # type: ignore[attr-defined]
        for claim in held:
            left = int(claim.expires - now)
            listing.append(f"#{claim.id} {claim.mode:<9} ")
            listing.append(claim.target)
            listing.append(f"  lease {left}s\n" if left > 0 else "  lease expired\n", style="dim")
            for region in claim.region_ids:
                listing.append(f"    {region}\n", style="dim")
        claims.update(listing)

    @on(DataTable.RowHighlighted, "#sandboxes")
    def _row_highlighted(self) -> None:
        self._show_detail()

    # -- actions ----------------------------------------------------------------

    def show_config_problem(self, message: str | None) -> None:
        banner = self.query_one("#banner", Static)
        banner.set_class(message is None, "hidden")
        if message:
            banner.update(Text(f"config error (keeping the last good config): {message}"))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        if self.snapshot is not None:
            self._sync_table(self.snapshot)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.query_one("#sandboxes", DataTable).focus()

    def action_back(self) -> None:
        """esc backs out: clear and close the filter, else return focus to the table."""
        box = self.query_one("#filter", Input)
        if not box.has_class("hidden"):
            box.value = ""
            box.add_class("hidden")
        self.query_one("#sandboxes", DataTable).focus()

    def action_details(self) -> None:
        self.query_one("#detail", TabbedContent).active = "tab-details"
