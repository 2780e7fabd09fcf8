"""The dashboard's Evals tab: a sandbox's gate 1 checks (live while they run), its tests classed against the
baseline, gate 2's score and items, a check's output, and the merged gate across the pending sandboxes.

Workers read (the store through `read_evals`, the end of a log file through `tail_lines`; both are in
`tui/evals_text.py`, with the text of each part) and post messages; the handlers here change the
widgets. A running check's progress has no event of its own, so while the tab is visible and something
runs (a check, an eval `e` started, the merged gate) the pane reads the store about once a second;
otherwise it reads when the store's events say an eval or a gate moved. Everything a check or an agent
wrote (test ids, messages, output) is shown as plain text, never parsed as markup, and on one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from loomtui.errors import LoomError
from loomtui.store import Event
from loomtui.tui.base import loom_app, wrap_width
from loomtui.tui.evals_text import (
    EvalsView,
    banner_text,
    check_cells,
    log_path,
    merged_lines,
    merged_text,
    one_line,
    read_evals,
    score_text,
    short_test_id,
    summary_text,
    tail_lines,
    test_rows,
    tests_title,
)
from loomtui.tui.widgets.bounded_log import BoundedLog
from loomtui.tui.widgets.fitted_table import FitColumn, FittedTable
from loomtui.tui.widgets.rewrapped import RewrappedStatic

if TYPE_CHECKING:  # the eval engines load when an eval is read (a worker), not with the dashboard
    from loomtui.guardrails.evals import EvalReport

# The long columns last: what does not fit scrolls off to the right, not the short ones.
CHECK_COLUMNS: Final = (("check", "Check"), ("status", "Status"), ("time", "Time"), ("blocking", "Blocking"),
                        ("outcome", "Outcome"))
TEST_COLUMNS: Final = (FitColumn("cls", "Class", 0), FitColumn("flaky", "Flaky", 1),
                        FitColumn("test", "Test", 2, flex=True, min_width=16, want=72, shorten=short_test_id),
                        FitColumn("message", "Message", 3, flex=True, min_width=8, want=30))
"""Fitted to the pane (a message ran on past it at 80 columns, cut mid-word): the whole test and message
are under the table when a row is highlighted."""
POLL_S: Final = 1.0
OUTPUT_LINES: Final = 200
MAX_TEST_ROWS: Final = 1000
EVAL_RESULT_TIMEOUT_S: Final = 15.0
"""How long the toast with an eval's result stays up."""




# -- messages: workers post them to the pane ----------------------------------------------------


class EvalsRead(Message):
    bubble = False

    def __init__(self, view: EvalsView) -> None:
        super().__init__()
        self.view = view


class OutputRead(Message):
    bubble = False

    def __init__(self, run_id: int, lines: list[str]) -> None:
        super().__init__()
        self.run_id = run_id
        self.lines = lines


class ChecksMoved(Message):
    """A check of the eval `e` runs has finished: read again."""

    bubble = False


class EvalEnded(Message):
    bubble = False

    def __init__(self, sandbox_id: str, report: EvalReport | None, error: str) -> None:
        super().__init__()
        self.sandbox_id = sandbox_id
        self.report = report
        self.error = error


class MergedEnded(Message):
    bubble = False

    def __init__(self, lines: list[str], error: str) -> None:
        super().__init__()
        self.lines = lines
        self.error = error


class EvalsPane(VerticalScroll):
    """The Evals tab. The dashboard tells it the selection (`show`), the store's new events
    (`store_changed`), whether the tab is visible (`set_showing`), and runs `run_eval` (`e`) and
    `run_merged` (`M`)."""

    DEFAULT_CSS = """
    EvalsPane { height: 1fr; }
    EvalsPane > * { width: 1fr; }
    EvalsPane > Static { height: auto; padding: 0 1; }
    EvalsPane > .evals-title { background: $boost; margin-top: 1; }
    EvalsPane > #evals-banner { background: $error 30%; }
    EvalsPane > #evals-score { margin-top: 1; }
    EvalsPane > DataTable { height: auto; }
    EvalsPane > #evals-checks { max-height: 8; }
    EvalsPane > #evals-tests { max-height: 14; }
    EvalsPane > #evals-output { height: 12; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sandbox_id: str | None = None
        self.view: EvalsView | None = None
        self.evaluating: set[str] = set()  # sandboxes whose eval `e` started and has not ended
        self.merging = False
        self.showing = False
        self._stale = True  # the store moved (or the selection) while the tab was hidden
        self._tests_of: tuple[str, int] | None = None  # (sandbox, eval report) the tests table holds
        self._check: str | None = None  # the check whose output is shown
        self._output_run: int | None = None
        self._output_seen: tuple[int, str] | None = None  # (run, its status) when its log was last read
        self._output_lines: list[str] | None = None
        self._test_wholes: dict[str, Text] = {}  # row key -> the test's id and message, uncut
        self._score_width = 0  # the width gate 2's evidence was last wrapped for (0: not yet sized)

    def compose(self) -> ComposeResult:
        yield Static("", id="evals-merged")
        yield Static("", id="evals-banner", classes="hidden")
        yield Static("", id="evals-summary")
        yield DataTable(id="evals-checks", cursor_type="row")
        yield Static("", id="evals-tests-title", classes="evals-title")
        yield FittedTable(TEST_COLUMNS, id="evals-tests")
        yield Static("", id="evals-test")  # the highlighted test whole: its id and message wrap here
        yield RewrappedStatic("", id="evals-score", rewrap=self.rewrap_score)
        yield Static("", id="evals-output-title", classes="evals-title")
        yield BoundedLog(max_lines=OUTPUT_LINES, id="evals-output")

    def on_mount(self) -> None:
        checks = self.query_one("#evals-checks", DataTable)
        for key, label in CHECK_COLUMNS:
            checks.add_column(label, key=key)
        self.set_interval(POLL_S, self._tick)
        self._render_view()
        if self.showing and self._stale:  # shown before it was mounted (it is mounted after the first frame)
            self.refresh_view()

    # -- what the dashboard calls ---------------------------------------------------------------

    def show(self, sandbox_id: str | None) -> None:
        """The selected sandbox (None: none); read at once if the tab is visible, else when it is."""
        if sandbox_id == self.sandbox_id:
            return
        self.sandbox_id = sandbox_id
        self._check = None
        if self.showing:  # hidden, it is drawn when its tab is chosen: not on every cursor key
            self._render_view()
        self.refresh_view()

    def store_changed(self, events: Sequence[Event]) -> None:
        merged = self.view.merged if self.view is not None else None
        spoken_of = merged.sandboxes if merged is not None else ()  # the merged gate's line names them
        if any(event.kind.startswith(("gate.", "eval.")) or (event.kind.startswith("sandbox.")
                                                           and event.subject in spoken_of) for event in events):
            self.refresh_view()

    def set_showing(self, showing: bool) -> None:
        self.showing = showing
        if showing and self.is_mounted:  # not yet mounted: on_mount draws it
            self._render_view()  # what `show` skipped while the tab was hidden
            if self._stale:
                self.refresh_view()

    def refresh_view(self) -> None:
        """Read the store again now if the tab is visible; else once it is."""
        self._stale = True
        if self.showing and self.is_mounted and self.screen.is_current:
            self._stale = False
            self._read(self.sandbox_id)

    def run_eval(self, sandbox_id: str) -> None:
        """`e`: gate 1 and gate 2 again (forced) in a worker; the tab follows it live."""
        if sandbox_id in self.evaluating:
            self.app.notify(f"the eval of {sandbox_id} is still running", title="eval", severity="warning")
            return
        self.evaluating.add(sandbox_id)
        self._render_view()
        self._eval_worker(sandbox_id)

    def run_merged(self) -> None:
        """`M`: the merged gate over every pending sandbox, in a worker."""
        if self.merging:
            self.app.notify("the merged gate is still running", title="merged gate", severity="warning")
            return
        self.merging = True
        self._render_view()
        self._merged_worker()

    # -- workers ---------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="evals-read", exit_on_error=False)
    def _read(self, sandbox_id: str | None) -> None:
        worker = get_current_worker()
        try:
            view = read_evals(loom_app(self.app).workspace, sandbox_id)
        except LoomError:
            return  # the app's poll reports a store that fails
        if not worker.is_cancelled:
            self.post_message(EvalsRead(view))

    @work(thread=True, exclusive=True, group="evals-output", exit_on_error=False)
    def _read_output(self, run_id: int, path: Path) -> None:
        worker = get_current_worker()
        lines = tail_lines(path, OUTPUT_LINES)
        if not worker.is_cancelled:
            self.post_message(OutputRead(run_id, lines))

    @work(thread=True, group="evals-run", exit_on_error=False)
    def _eval_worker(self, sandbox_id: str) -> None:
        from loomtui.guardrails.evals import evaluate

        def moved(_result: object) -> None:
            self.post_message(ChecksMoved())

        report: EvalReport | None = None
        error = ""
        try:
            report = evaluate(loom_app(self.app).workspace, sandbox_id, force=True, on_gate=moved)
        except LoomError as exc:
            error = str(exc)
        finally:
            self.post_message(EvalEnded(sandbox_id, report, error))

    @work(thread=True, exclusive=True, group="evals-merged", exit_on_error=False)
    def _merged_worker(self) -> None:
        from loomtui.guardrails.merged import merged_gate

        lines: list[str] = []
        error = ""
        try:
            lines = merged_lines(merged_gate(loom_app(self.app).workspace, force=True))
        except LoomError as exc:
            error = str(exc)
        finally:
            self.post_message(MergedEnded(lines, error))

    def _tick(self) -> None:
        """About once a second: while something runs, read the store again (progress has no event)."""
        view = self._current()
        if self.merging or self.sandbox_id in self.evaluating or (view is not None and view.running):
            self.refresh_view()

    # -- handlers --------------------------------------------------------------------------------

    @on(EvalsRead)
    def _evals_read(self, message: EvalsRead) -> None:
        if message.view.sandbox_id == self.sandbox_id:
            self.view = message.view
            self._render_view()

    @on(ChecksMoved)
    def _checks_moved(self) -> None:
        self.refresh_view()

    @on(EvalEnded)
    def _eval_ended(self, message: EvalEnded) -> None:
        self.evaluating.discard(message.sandbox_id)
        title = f"eval {message.sandbox_id}"
        report = message.report
        if message.error:
            self.app.notify(message.error, title=title, severity="warning")
        elif report is not None:
            failed = bool(report.checks) and report.gate1 != "passed"
            score = f", score {report.score.total}" if report.score is not None else ""
            # The result a person pressed `e` for: it stays up longer than a passing notice.
            self.app.notify(f"{report.badge()}: gate 1 {report.gate1}{score}", title=title,
                            severity="error" if failed else "information", timeout=EVAL_RESULT_TIMEOUT_S)
        self._render_view()
        self.refresh_view()

    @on(MergedEnded)
    def _merged_ended(self, message: MergedEnded) -> None:
        self.merging = False
        breaking = any("break" in line and "nothing breaks" not in line for line in message.lines)
        self.app.notify(message.error or "\n".join(message.lines), title="merged gate",
                        severity="warning" if message.error or breaking else "information", timeout=10)
        self._render_view()
        self.refresh_view()

    @on(DataTable.RowHighlighted, "#evals-checks")
    def _check_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value != self._check:
            self._check = str(event.row_key.value)
            self._follow_output()

    @on(DataTable.RowHighlighted, "#evals-tests")
    def _test_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.query_one("#evals-test", Static).update(self._test_wholes.get(str(event.row_key.value), ""))

    @on(OutputRead)
    def _output_read(self, message: OutputRead) -> None:
        if message.run_id != self._output_run or message.lines == self._output_lines:
            return
        self._output_lines = message.lines
        log = self.query_one("#evals-output", BoundedLog)
        log.clear()
        log.write_lines(message.lines or ["(no output yet)"])

    # -- rendering -------------------------------------------------------------------------------

    def _current(self) -> EvalsView | None:
        return self.view if self.view is not None and self.view.sandbox_id == self.sandbox_id else None

    def _render_view(self) -> None:
        if not self.is_mounted:
            return  # drawn by on_mount
        view = self._current()
        merged = self.view.merged if self.view is not None else None
        since = self.view.merged_since if self.view is not None else ()
        self.query_one("#evals-merged", Static).update(merged_text(merged, self.merging, since))
        banner = self.query_one("#evals-banner", Static)
        warning = banner_text(merged, self.sandbox_id, since)
        banner.set_class(warning is None, "hidden")
        banner.update(warning or "")
        self.query_one("#evals-summary", Static).update(
            summary_text(view, self.sandbox_id, self.sandbox_id in self.evaluating))
        self._sync_checks(view)
        self._sync_tests(view)
        self._render_score(view)
        self._follow_output()

    def _render_score(self, view: EvalsView | None) -> None:
        score = self.query_one("#evals-score", Static)
        self._score_width = wrap_width(score, self, 0)
        score.update(score_text(view.report if view else None, self._score_width or None))

    def on_resize(self) -> None:
        """Gate 2's evidence is wrapped for the pane's width: again when it changes."""
        self.rewrap_score()

    def rewrap_score(self) -> None:
        """Wrap gate 2's evidence again if the width it has changed since it was last wrapped."""
        if self.is_mounted and wrap_width(self.query_one("#evals-score", Static), self, 0) != self._score_width:
            self._render_score(self._current())

    def _sync_checks(self, view: EvalsView | None) -> None:
        """The checks' rows, updated by key (a running one's time and progress change each second)."""
        table = self.query_one("#evals-checks", DataTable)
        runs = {run.gate: run for run in (view.runs if view is not None else ())}
        for row_key in list(table.rows):
            if row_key.value not in runs:
                table.remove_row(row_key)
        app = loom_app(self.app)
        blocking = {gate.name: gate.blocking for gate in (app.config.gates if app.config else ())}
        now = app.clock()
        for gate, run in runs.items():
            cells = check_cells(run, now, blocking.get(gate, True))
            if gate in table.rows:
                for column, value in cells.items():
                    table.update_cell(gate, column, value, update_width=True)
            else:
                table.add_row(*cells.values(), key=gate)
        table.display = bool(runs)
        if runs and self._check not in runs:
            # The first check that failed (its output is what one wants), else the first.
            chosen = next((g for g, r in runs.items() if r.status in ("failed", "error")), next(iter(runs)))
            self._check = chosen
            table.move_cursor(row=table.get_row_index(chosen))

    def _sync_tests(self, view: EvalsView | None) -> None:
        """The per-test table, filled again only when the eval it shows changes."""
        report = view.report if view is not None else None
        shown = (report.subject, report.report_id) if report is not None else None
        if shown == self._tests_of:
            return
        self._tests_of = shown
        table = self.query_one("#evals-tests", FittedTable)
        rows = test_rows(report) if report is not None else []
        self._test_wholes = {str(number): row.whole for number, row in enumerate(rows[:MAX_TEST_ROWS])}
        table.show_rows({str(number): row.cells for number, row in enumerate(rows[:MAX_TEST_ROWS])})
        table.display = bool(rows)
        self.query_one("#evals-test", Static).update("")
        self.query_one("#evals-tests-title", Static).update(
            tests_title(report, min(len(rows), MAX_TEST_ROWS), len(rows)))

    def _follow_output(self) -> None:
        """Read the selected check's log: each time while it runs, and once more when it has finished."""
        view = self._current()
        run = view.run_of(self._check) if view is not None else None
        title = self.query_one("#evals-output-title", Static)
        if run is None:
            self._output_run, self._output_seen, self._output_lines = None, None, None
            self.query_one("#evals-output", BoundedLog).clear()
            title.update(Text("output ", style="bold").append("select a check to see its output", style="dim"))
            return
        live = run.status == "running"
        title.update(Text("output ", style="bold").append(
            f"of {one_line(run.gate)} (run #{run.id}{', live' if live else ''}): the last {OUTPUT_LINES} lines",
            style="dim"))
        if self._output_seen == (run.id, run.status) and not live:
            return
        if run.id != self._output_run:
            self._output_run, self._output_lines = run.id, None
        self._output_seen = (run.id, run.status)
        self._read_output(run.id, log_path(loom_app(self.app).workspace, run))
