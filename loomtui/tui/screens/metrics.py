"""The metrics view: the week at a glance, charts over days, per runtime, and the infrastructure checklist.

Every figure is computed by the observability engine (`compute_metrics`, `checklist`),
the same as `loomtui report` and `loomtui checklist` print: nothing is stored twice.
The charts are Textual's own `Sparkline`: one bar per day reads well in a terminal
at any width, needs no plotting dependency, and a row per figure lines the days up.
Computing reads the store, the audit log and git, so it runs in a worker; the view
recomputes when it is shown and when `r` is pressed, never while hidden.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Final

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import DataTable, Sparkline, Static

from loomtui.errors import LoomError, plural
from loomtui.observability.report import dollars, window_title
from loomtui.observability.report import percent as report_percent
from loomtui.tui.base import LoomScreen, loom_app, wrap_width
from loomtui.tui.keys import KeysFooter
from loomtui.tui.palette import PaletteEntry, RankedProvider
from loomtui.tui.widgets.fields import wrap_value
from loomtui.tui.widgets.rewrapped import RewrappedStatic
from loomtui.tui.widgets.status_header import StatusHeader

if TYPE_CHECKING:
    from loomtui.observability.checklist import Checklist, Item
    from loomtui.observability.metrics import Metrics
    from loomtui.workspace import Workspace

WEEK_S: Final = 7 * 86400
CHARTS: Final = (
    ("sandboxes_ended", "agents ended"), ("merged", "merged"), ("rejected", "rejected"),
    ("agent_commits", "agent-made commits"), ("regressions_caught", "regressions caught"),
)
RUNTIME_COLUMNS: Final = (("runtime", "Runtime"), ("ended", "Ended"), ("merged", "Merged"), ("rejected", "Rejected"),
                          ("acceptance", "Accepted"), ("decision", "To decision"), ("first_try", "Gate 1st try"),
                          ("tokens", "Tokens in+out"), ("cost", "Cost"))
ANSWER_STYLES: Final = {"yes": "green", "partly": "yellow", "no": "bold red", "unknown": "bold cyan"}


def percent(value: float | None) -> str:
    """As `report` says it (never 100% or 0% unless it is exactly so), or a dash for none."""
    return "–" if value is None else report_percent(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def compact(count: int) -> str:
    """A count in three figures or fewer (25.4k, 3.1M): "25,4" of "25,412" was what 80 columns showed."""
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if count >= size:
            value = count / size
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return str(count)


def week_figures(metrics: Metrics) -> tuple[tuple[str, str], ...]:
    """The four figures of the week at a glance, as (label, value)."""
    return (("acceptance rate", percent(metrics.acceptance_rate)),
            ("agent-made share", percent(metrics.agent_share)),
            ("time to decision", duration(metrics.median_decision_s)),
            ("gate 1 first try", percent(metrics.first_try_pass_rate)))


def glance(metrics: Metrics) -> Group:
    """The four figures of the week (two a row, each beside its label however narrow the view: as
    prose, "67%" ended a line whose next began "agent-made share"), and what the window was."""
    grid = Table.grid(padding=(0, 1))
    for _ in range(2):
        grid.add_column(justify="right", style="bold", no_wrap=True)
        grid.add_column(style="dim")
    figures = week_figures(metrics)
    for row in (figures[:2], figures[2:]):
        grid.add_row(*(cell for label, value in row for cell in (value, label + "  ")))
    # The window said: "this week" read as the calendar week, while it is the last seven days up to the moment
    # the figures were computed (recomputed as the store moves, and on `r`).
    text = Text(f"{metrics.merged} merged of {metrics.decided} decided; {metrics.agent_commits} of "
                f"{plural(metrics.commits, 'commit')} on {metrics.branch} agent-made; "
                f"{plural(len(metrics.overrides), 'override')}; "
                f"{plural(metrics.conflicts.at_merge, 'conflict')} met at merge"
                + (f"; {plural(failed, 'agent')} failed" if (failed := metrics.total.agents_failed) else ""))
    for line in (*metrics.partial, *metrics.notes):
        text.append(f"\n! {line}", style="yellow")
    return Group(Text(f"last 7 days: {window_title(metrics)}", style="dim"), grid, text)


def checklist_item_text(item: Item, width: int = 0) -> Text:
    """One item: its number, answer and question, the question wrapped under itself for `width` cells (0:
    not wrapped; at the pane's edge a line went back to column 0, under the answers)."""
    text = Text(f"{item.number:>2} ")
    text.append(f"{item.answer:<8}", style=ANSWER_STYLES.get(item.answer, ""))
    indent = " " * text.cell_len
    lines = wrap_value(item.question, width - len(indent)) if width > len(indent) + 12 else [item.question]
    text.append("\n".join([lines[0], *(indent + line for line in lines[1:])]) + "\n")
    return text


def checklist_text(checklist: Checklist, width: int = 0) -> Text:
    text = Text(f"{checklist.header}: {checklist.verdict}\n", style="bold")
    for item in checklist.items:
        text.append_text(checklist_item_text(item, width))
    return text


def this_week(workspace: Workspace) -> Metrics:
    """The metrics of the last seven days (reads the store, the audit log and git: off the UI thread)."""
    from loomtui.observability.metrics import compute_metrics

    return compute_metrics(workspace, time.time() - WEEK_S)


class MetricsScreen(LoomScreen[None]):
    """What agents did this week and how much was accepted; the article's ten items."""

    VIEW_NAME = "Metrics"

    # The figures' column, which the keys scroll: with the runtime table focused below the fold, the arrows and
    # PgDn moved a cursor no one could see and the charts under the glance were out of reach (Tab reaches it).
    AUTO_FOCUS = "#metrics-left"
    BINDINGS = [
        Binding("r", "recompute_now", "Recompute", id="metrics.recompute",
                tooltip="Compute this week's figures and the checklist again"),
        Binding("escape", "back", "Back", id="metrics.back", tooltip="Back to the sandboxes"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.metrics: Metrics | None = None
        self.checklist: Checklist | None = None
        self._checklist_width = 0  # the width the checklist was last wrapped for
        self._recompute_due: Timer | None = None

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        with Horizontal(id="metrics-body"):
            with VerticalScroll(id="metrics-left"):
                yield Static(Text("Computing this week's figures…"), id="metrics-glance")
                with Vertical(id="metrics-charts"):
                    for key, label in CHARTS:
                        yield Static(Text(label, style="dim"), classes="chart-label")
                        yield Sparkline([], id=f"chart-{key}", classes="chart")
                # The runtime's name stays as the figures scroll sideways (at 80 columns it scrolled away).
                yield DataTable(id="metrics-runtimes", cursor_type="row", zebra_stripes=True, fixed_columns=1)
            checklist = RewrappedStatic(Text("Checking the ten items…"), id="metrics-checklist", rewrap=self._rewrap)
            yield VerticalScroll(checklist, id="metrics-right")
        yield KeysFooter()

    def on_mount(self) -> None:
        table = self.query_one("#metrics-runtimes", DataTable)
        for key, label in RUNTIME_COLUMNS:
            table.add_column(label, key=key)
        self.loom.update_header(self.query_one(StatusHeader))
        self.action_recompute()

    def on_screen_resume(self) -> None:
        self.action_recompute()

    def action_recompute(self) -> None:
        self._compute()

    def store_changed(self) -> None:
        """The store moved while the view is shown: its figures computed again, a burst of events once, a second
        on (a merge from the command line left "7 merged of 9" on screen until `r`)."""
        if self._recompute_due is None:
            self._recompute_due = self.set_timer(1.0, self._recompute_when_due)

    def _recompute_when_due(self) -> None:
        self._recompute_due = None
        self._compute()

    def action_recompute_now(self) -> None:
        """`r`: the same, said (figures that did not move look the same before and after), and the checklist
        answered afresh (a cached answer misses a new ADR or CI file for a minute)."""
        self.notify("recomputing this week's figures and the checklist", title="metrics", timeout=3)
        self._compute(fresh=True)

    def action_back(self) -> None:
        self.back_out()

    @work(thread=True, exclusive=True, group="metrics")
    def _compute(self, fresh: bool = False) -> None:
        from loomtui.observability.checklist import cached_checklist

        workspace = self.loom.workspace
        try:
            metrics = this_week(workspace)
        except LoomError as exc:
            self.app.call_from_thread(self._show_problem, "#metrics-glance", str(exc))
        else:
            self.app.call_from_thread(self._show_metrics, metrics)
        # Whatever became of the week's figures: a broken config leaves most items unknown, not the
        # pane "checking" for ever (it did).
        try:
            checklist = cached_checklist(workspace, fresh=fresh)
        except LoomError as exc:
            self.app.call_from_thread(self._show_problem, "#metrics-checklist", f"checklist: {exc}")
            return
        self.app.call_from_thread(self._show_checklist, checklist)

    def _show_problem(self, where: str, problem: str) -> None:
        self.query_one(where, Static).update(Text(problem, style="bold red"))

    def _show_metrics(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.query_one("#metrics-glance", Static).update(glance(metrics))
        for key, _label in CHARTS:
            self.query_one(f"#chart-{key}", Sparkline).data = [float(getattr(day, key)) for day in metrics.by_day]
        table = self.query_one("#metrics-runtimes", DataTable)
        rows = {str(row.key.value) for row in table.ordered_rows}
        added = False
        for runtime in sorted(metrics.by_runtime, key=lambda row: row.key):  # as `report` lists them
            cells = {
                "runtime": Text(runtime.key), "ended": str(runtime.sandboxes_ended), "merged": str(runtime.merged),
                "rejected": str(runtime.rejected), "acceptance": percent(runtime.acceptance_rate),
                "decision": duration(runtime.median_decision_s), "first_try": percent(runtime.first_try_pass_rate),
                "tokens": compact(runtime.input_tokens + runtime.output_tokens) if runtime.agents_reporting else "–",
                "cost": dollars(runtime.cost_usd) if runtime.agents_costing else "–",  # $0.0005: "<$0.01", not $0.00
            }
            if runtime.key in rows:
                for column, value in cells.items():
                    table.update_cell(runtime.key, column, value)
            else:
                table.add_row(*cells.values(), key=runtime.key)
                added = True
        for gone in rows - {r.key for r in metrics.by_runtime}:
            table.remove_row(gone)
        if added and rows:  # a runtime new since: in its place, not last
            table.sort("runtime", key=str)
        # Focusing the table scrolled the column down to it: the week at a glance comes first.
        self.query_one("#metrics-left", VerticalScroll).scroll_home(animate=False)

    def _show_checklist(self, checklist: Checklist) -> None:
        self.checklist = checklist
        self.loom.show_checklist_score(checklist)
        shown = self.query_one("#metrics-checklist", Static)
        self._checklist_width = wrap_width(shown, self.query_one("#metrics-right", VerticalScroll), 0)
        shown.update(checklist_text(checklist, self._checklist_width))

        if not self._checklist_width:  # not sized yet (the view not shown): wrapped once it is
            self.call_after_refresh(self._rewrap)

    def _rewrap(self) -> None:
        """The checklist wrapped again for its width, if that changed since (`RewrappedStatic` asks)."""
        shown = self.query_one("#metrics-checklist", Static)
        if self.checklist is not None and wrap_width(
                shown, self.query_one("#metrics-right", VerticalScroll), 0) != self._checklist_width:
            self._show_checklist(self.checklist)

    def show_runtime(self, runtime: str) -> None:
        """Put the runtime table's cursor on `runtime` (the palette's pick), once its figures are in."""
        table = self.query_one("#metrics-runtimes", DataTable)
        if runtime in table.rows:
            table.move_cursor(row=table.get_row_index(runtime))
            table.focus()
        elif self.metrics is None:  # still computing: try again when it is done
            self.set_timer(0.2, partial(self.show_runtime, runtime))

    def show_checklist_item(self, number: int) -> None:
        """Scroll the checklist to item `number`, once it is in: below the title, past the items before it
        as they wrap at the pane's width."""
        if self.checklist is None:
            self.set_timer(0.2, partial(self.show_checklist_item, number))
            return
        self._rewrap()
        title = Text(f"{self.checklist.header}: {self.checklist.verdict}")  # wraps too, at a narrow pane
        y = len(title.wrap(self.app.console, self._checklist_width or 10_000)) + sum(
            checklist_item_text(item, self._checklist_width).plain.count("\n")
            for item in self.checklist.items if item.number < number)
        self.query_one("#metrics-right", VerticalScroll).scroll_to(y=y, animate=False)


def _as_shown(_screen: MetricsScreen) -> None:
    """The view as it opens: for the week's figures, which it shows first."""


def palette_entries(metrics: Metrics, checklist: Checklist | None,
                    opened: Callable[[Callable[[MetricsScreen], None]], None]) -> list[PaletteEntry]:
    """The palette's lines for this week's figures, each runtime's and each checklist item; choosing one
    calls `opened` with what to do on the metrics view once it shows."""
    entries: list[PaletteEntry] = [
        (f"metrics: {label} {value} this week", partial(opened, _as_shown), "open the metrics view")
        for label, value in week_figures(metrics)]
    entries.append((f"metrics: {metrics.merged} merged of {metrics.decided} decided this week",
                    partial(opened, _as_shown), "open the metrics view"))
    for runtime in metrics.by_runtime:
        entries.append((f"metrics: runtime {runtime.key}: {runtime.merged} merged of {runtime.decided}, "
                        f"accepted {percent(runtime.acceptance_rate)}",
                        partial(opened, partial(MetricsScreen.show_runtime, runtime=runtime.key)),
                        "open the metrics view on this runtime's row"))
    for item in checklist.items if checklist else ():
        entries.append((f"checklist {item.number}: {item.question} ({item.answer})",
                        partial(opened, partial(MetricsScreen.show_checklist_item, number=item.number)),
                        item.next_step or "open the metrics view at this item"))
    return entries


class MetricsFigures(RankedProvider):
    """Palette: this week's figures, each runtime's and the checklist's items; choosing one opens the
    metrics view there."""

    async def startup(self) -> None:
        from loomtui.observability.checklist import cached_checklist

        workspace = loom_app(self.app).workspace

        def read() -> tuple[Metrics, Checklist | None] | None:
            """Nothing when the figures cannot be read (the metrics view says why): the palette's other
            providers still answer."""
            try:
                metrics = this_week(workspace)
            except LoomError:
                return None
            try:
                return metrics, cached_checklist(workspace)
            except LoomError:
                return metrics, None

        worker = self.app.run_worker(read, thread=True, exit_on_error=False)
        await worker.wait()
        self._figures = [] if worker.result is None else palette_entries(*worker.result, opened=self._open)

    def entries(self) -> list[PaletteEntry]:
        return getattr(self, "_figures", [])

    def _open(self, then: Callable[[MetricsScreen], None]) -> None:
        self.app.switch_mode("metrics")
        screen = self.app.screen
        if isinstance(screen, MetricsScreen):
            screen.call_after_refresh(then, screen)
