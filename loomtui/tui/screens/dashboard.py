"""The dashboard: sandboxes on the left, the selected one's detail on the right."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Final

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.lazy import Lazy
from textual.timer import Timer
from textual.widgets import (
    DataTable,
    Input,
    Static,
    TabbedContent,
    TabPane,
    Tabs,
)

from loomtui.errors import LoomError, listed, plural
from loomtui.execution import agent_control, sandboxes
from loomtui.execution.lifecycle import DONE_WITH, LIVE, PAUSED, PLANNED
from loomtui.store import SandboxRecord
from loomtui.tui import sandbox_calls
from loomtui.tui.base import LoomScreen, inner_width
from loomtui.tui.keys import KeysFooter, shown_key
from loomtui.tui.sandbox_rows import SANDBOX_COLUMNS, matches_filter, sandbox_row
from loomtui.tui.sandbox_text import (
    ages_due,
    app_step_hints,
    claims_text,
    context_text,
    drift_line,
    format_age,
    sandbox_fields,
)
from loomtui.tui.screens import dashboard_keys
from loomtui.tui.screens.dashboard_keys import DASHBOARD_BINDINGS, FOLLOWS_SELECTION, key_applies, merge_refusal
from loomtui.tui.snapshot import DashboardSnapshot
from loomtui.tui.visible import visible_text
from loomtui.tui.widgets.activity_log import ActivityLog
from loomtui.tui.widgets.bounded_log import BoundedLog
from loomtui.tui.widgets.evals import EvalsPane
from loomtui.tui.widgets.fields import render_fields
from loomtui.tui.widgets.fitted_table import FittedTable
from loomtui.tui.widgets.status_header import StatusHeader

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Concatenate

    from loomtui.tui.screens.sandbox_forms import NewSandboxRequest
    from loomtui.workspace import Workspace

    # An engine call the dashboard runs in a worker: the workspace first, then its own arguments.
    EngineCall = Callable[Concatenate[Workspace, ...], object]

DETAIL_WIDTH: Final = 40
"""The detail pane's width before it is first laid out."""
SLOW_ACTION_S: Final = 5.0
"""An action on a sandbox still under way after this long is said to be (its end is said as ever)."""
DRIFT_RECHECK_S = 10.0
DIFF_REREAD_S: Final = 5.0
"""How often the selected sandbox's diff line is read again while its agent runs (a snapshot of its worktree)."""


def _in_the_form_s_after(holders: list[str]) -> str:
    """How the `n` form waits on other tasks (the CLI's `--after ID` named a flag the form does not have)."""
    return f"put {' '.join(holders)} in the form's \"after\" field"


class SandboxTable(FittedTable):
    """The sandboxes table: `enter` opens the highlighted sandbox (the table's own `enter` selects
    a row, which the screen answers), and the footer says so while the table has focus."""

    BINDINGS = [Binding("enter", "select_cursor", "Open", id="sandboxes.open",
                        tooltip="Attach to the agent's tmux session, else show its log")]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "select_cursor" and not self.row_count:  # nothing to open: not offered
            return False
        return super().check_action(action, parameters)


class DashboardScreen(LoomScreen[None]):
    """Sandboxes table, detail tabs and the live activity of the store."""

    VIEW_NAME = "Sandboxes"

    AUTO_FOCUS = "#sandboxes"
    BINDINGS = DASHBOARD_BINDINGS

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: DashboardSnapshot | None = None
        self.filter_text = ""
        self.tailing: str | None = None
        self.diff_stats: dict[str, str] = {}
        self._follow_timer: Timer | None = None
        self._detail_due = False  # a detail is to be shown after the next frame
        self._pane_lines: dict[str, int] = {}  # each detail pane's height as last shown
        self._detail_width = -1  # the width the detail's values were last wrapped for
        self._draft: NewSandboxRequest | None = None  # a new sandbox's request that failed, for `n` to reopen
        self._select_when_shown: str | None = None  # a sandbox made with `n`, selected once its row is in
        self._archived_here: set[str] = set()  # rows a person here chose to archive: their going is no surprise
        # sandbox -> (when checked, what was found, the version it was found of: a refresh since said STALE of the
        # version it had just given the agent, for the rest of the 10 s)
        self._drift: dict[str, tuple[float, str, str]] = {}
        self._ages_at = 0.0  # when the Age column was last brought up to date
        self._under_way: set[str] = set()  # the engine calls in flight, by label (`_run`)
        self._under_way_lock = threading.Lock()
        self.evals = EvalsPane(id="evals")

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        yield Static("", id="banner", classes="hidden")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield self.filter_box(f"filter sandboxes ({shown_key('dashboard.back', 'esc')} clears)", "filter")
                yield Static("", id="empty")
                yield SandboxTable(SANDBOX_COLUMNS, id="sandboxes")
            with TabbedContent(id="detail"):
                with TabPane("Details", id="tab-details"), VerticalScroll():
                    yield Static("", id="details")
                with TabPane("Log", id="tab-log"):
                    yield BoundedLog(max_lines=1000, id="agent-log")
                with TabPane("Claims", id="tab-claims"), VerticalScroll():
                    yield Static("", id="claims")
                with TabPane("Activity", id="tab-activity"):
                    yield ActivityLog(max_lines=500, id="activity")
                with TabPane("Context", id="tab-context"), VerticalScroll():
                    yield Static("", id="context")
                with TabPane("Evals", id="tab-evals"):
                    # Mounted after the first frame (a third of the screen's widgets, all hidden until
                    # the tab is chosen); the screen calls it by reference, mounted or not.
                    yield Lazy(self.evals)
        yield KeysFooter()

    def on_mount(self) -> None:
        self.loom.update_header(self.query_one(StatusHeader))
        snapshot = self.loom.latest_snapshot
        if snapshot is not None:
            self.show_snapshot(snapshot)
        else:
            self._show_empty_state()
        self.set_interval(1.0, self._tick_ages)
        self.set_interval(DRIFT_RECHECK_S, self._recheck_drift)
        self.set_interval(DIFF_REREAD_S, self._reread_diff)

    def _reread_diff(self) -> None:
        """The selected sandbox's diff line, read again while its agent runs: its edits and commits make no
        event (the line said "+2 -0" of a branch that had gone to +5, till the cursor moved away and back)."""
        if self.is_current and self.tailing and self.snapshot is not None and any(
                s.id == self.tailing and s.status in LIVE for s in self.snapshot.sandboxes):
            self._diff_stats(self.tailing)

    def _recheck_drift(self) -> None:
        """The Context tab's drift, checked again while it is shown: a commit to the team's files changes
        nothing the store says of the sandbox, and the tab said "fresh" for good (till the cursor moved)."""
        if not self.is_current or self.query_one("#detail", TabbedContent).active != "tab-context":
            return
        if (sandbox := self.selected_sandbox()) is not None:
            self._show_context(sandbox)

    def _tick_ages(self) -> None:
        if self.snapshot is None:
            return
        if ages_due((sandbox.created for sandbox in self.snapshot.sandboxes), self.loom.clock(), self._ages_at):
            self.refresh_ages()

    def refresh_ages(self) -> None:
        """Age moves on for a sandbox nothing happens to (the store says nothing of it); a hidden
        screen skips this, and an age that reads the same is not repainted."""
        if not self.is_current or self.snapshot is None:
            return
        table = self.query_one(SandboxTable)
        now = self._ages_at = self.loom.clock()
        for sandbox in self.snapshot.sandboxes:
            table.set_cell(sandbox.id, "age", format_age(now - sandbox.created))  # unchanged: not repainted

    def on_resize(self) -> None:
        self.call_after_refresh(self._show_detail)  # the detail's values wrap for its new width

    def on_screen_resume(self) -> None:
        # Updates are skipped while the screen is hidden; catch up when it returns.
        snapshot = self.loom.latest_snapshot
        if snapshot is not None and snapshot is not self.snapshot:
            # The snapshots it skipped held events of their own: the feed reads them from the store.
            self.query_one("#activity", ActivityLog).catch_up(self.loom.workspace.store, snapshot.last_event_id)
            self.show_snapshot(snapshot)
        self.evals.refresh_view()  # the events it missed while hidden
        self.call_after_refresh(self.refresh_ages)  # the ticks it skipped: not an age from before it was left

    # -- applying store state ---------------------------------------------------

    def show_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """Apply fresh store state: table rows by key, counts, and new events."""
        self.snapshot = snapshot
        self.query_one("#activity", ActivityLog).add(snapshot.events, snapshot.last_event_id)
        if self.tailing and any(e.subject == self.tailing and e.kind.startswith("sandbox.") for e in snapshot.events):
            self._diff_stats(self.tailing)  # its branch or worktree may have moved
        self._sync_table(snapshot)
        self._show_detail()
        self.evals.store_changed(snapshot.events)

    def _visible(self, sandbox: SandboxRecord) -> bool:
        return matches_filter(sandbox, self.filter_text)

    def _sync_table(self, snapshot: DashboardSnapshot) -> None:
        table = self.query_one(SandboxTable)
        table.show_rows({
            s.id: sandbox_row(s, snapshot, self.loom.clock()) for s in snapshot.sandboxes if self._visible(s)},
            hidden={s.id for s in snapshot.sandboxes})  # the filter hides a row: it is not gone
        self._select_new()
        self._show_empty_state()

    def _select_new(self, sandbox_id: str | None = None) -> None:
        """The cursor to the sandbox just made here (`sandbox_id`, when it is said), now if its row is
        in, else when the store's news brings it (which may come before or after the maker says it)."""
        if sandbox_id is not None:
            self._select_when_shown = sandbox_id
        table = self.query_one(SandboxTable)
        new = self._select_when_shown
        if new is not None and new in table.rows:
            table.move_cursor(row=table.get_row_index(new))
            self._select_when_shown = None

    def _show_empty_state(self) -> None:
        table = self.query_one("#sandboxes", DataTable)
        empty = self.query_one("#empty", Static)
        total = len(self.snapshot.sandboxes) if self.snapshot else 0
        table.display = total > 0
        if table.display and self.focused is None:
            table.focus()
        # The rows asked for, not the table's: a table not laid out yet (no width) holds none so far.
        shown = sum(1 for s in self.snapshot.sandboxes if self._visible(s)) if self.snapshot else 0
        empty.display = not shown
        if shown:
            empty.update("")
        elif total:
            empty.update(Text(f"No sandbox matches the filter ({total} hidden). "
                              f"{shown_key('dashboard.back', 'esc')} clears it."))
        else:
            empty.update(Text(f"No sandboxes here now: {shown_key('dashboard.new', 'n')} starts one, and each "
                              "appears here live as its agent starts (removed ones: `loomtui sandbox list --all`)."))

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
        self.evals.show(sandbox.id if sandbox else None)
        self.refresh_bindings()  # the footer offers what applies to this sandbox as it is now
        if sandbox is None:
            details.update(Text("Select a sandbox to see its details."))
            claims.update(Text("No sandbox selected."))
            # The Log and Context tabs were blank (or still the last sandbox's): said, as the others say it.
            self.query_one("#context", Static).update(Text("No sandbox selected."))
            if self.tailing is not None or not self.query_one("#agent-log", BoundedLog).lines:
                self.tailing = None
                self.workers.cancel_group(self, "log-tail")
                log = self.query_one("#agent-log", BoundedLog)
                log.clear()
                log.write_line("(no sandbox selected: its agent's output appears here)")
            return
        step = self.snapshot.steps.get(sandbox.id) if self.snapshot else None
        fields = sandbox_fields(sandbox, step, self.diff_stats.get(sandbox.id))
        width = inner_width(details)
        self._show_text(details, render_fields(fields, width or DETAIL_WIDTH))
        if width != self._detail_width:  # first shown, or the pane moved: wrapped again once laid out
            self._detail_width = width
            self.call_after_refresh(self._rewrap_detail)
        self._show_context(sandbox)
        if sandbox.id != self.tailing:
            # Follow the selection only once it settles: scrolling through twenty
            # sandboxes must not start twenty log readers and twenty git diffs.
            if self._follow_timer is not None:
                self._follow_timer.stop()
            self._follow_timer = self.set_timer(0.3, lambda: self._follow(sandbox.id))
        by_sandbox = self.snapshot.claims_by_sandbox if self.snapshot else {}
        if by_sandbox is None:  # the first snapshot has counts only; the store's listener reads them next
            self._show_text(claims, Text("reading claims…", style="dim"))
            return
        self._show_text(claims, claims_text(by_sandbox.get(sandbox.id, []), self.loom.clock()))

    def _rewrap_detail(self) -> None:
        """The values again for the width the detail has now: the first frame lays the dashboard out side
        by side and the next below, so the first wrap was for a pane that is gone (a path cut under its
        label). Once per width: a pane that keeps its width is not redrawn."""
        if inner_width(self.query_one("#details", Static)) != self._detail_width:
            self._show_detail()

    def _show_text(self, pane: Static, text: Text) -> None:
        """Show `text` in a detail tab's pane, laying the screen out again only when the pane is in
        the tab shown and its height changed: a relayout on every cursor key was most of its cost
        (a hidden tab is laid out when it is chosen)."""
        lines = text.plain.count("\n") + 1
        # Padded to the height it is shown in, the pane keeps its height from one sandbox to the next
        # unless one needs more: no relayout for a detail that is a line shorter or longer.
        room = pane.parent.size.height if isinstance(pane.parent, VerticalScroll) else 0
        if lines < room:
            text = text + Text("\n" * (room - lines))
            lines = room
        shown = pane.id is not None and self.query_one("#detail", TabbedContent).active == f"tab-{pane.id}"
        # Every tab's text holds what agents or the team's files wrote: a control drawn as its symbol (the
        # Context tab sent a section title's ESC [31m to the terminal).
        pane.update(visible_text(text), layout=shown and self._pane_lines.get(pane.id or "") != lines)
        self._pane_lines[pane.id or ""] = lines

    def _show_context(self, sandbox: SandboxRecord) -> None:
        """The context the agent got: version, each section and why; whether it has gone stale."""
        given = sandbox.data.get("context")
        version = str(given.get("version") or "") if isinstance(given, dict) else ""
        checked, drift, of = self._drift.get(sandbox.id, (0.0, "", version))
        if of != version:  # refreshed since: what was found is of the context it had before
            checked, drift = 0.0, ""
        self._show_text(self.query_one("#context", Static), context_text(given, drift))
        if not isinstance(given, dict):
            return
        if time.monotonic() - checked > DRIFT_RECHECK_S:  # the screen repaints often; drift is not cheap
            self._drift[sandbox.id] = (time.monotonic(), drift, version)
            self._check_drift(sandbox, version)

    @work(thread=True, exclusive=True, group="context-drift", exit_on_error=False)
    def _check_drift(self, sandbox: SandboxRecord, version: str) -> None:
        from loomtui.knowledge.engine import sandbox_drift_now

        workspace = self.loom.workspace
        try:
            line = drift_line(sandbox_drift_now(workspace, sandbox.id))  # what `loomtui context drift` says
        except (LoomError, KeyError) as exc:
            line = f"drift unknown: {exc}\n"
        self.app.call_from_thread(self._drift_known, sandbox.id, line, version)

    def _drift_known(self, sandbox_id: str, line: str, version: str) -> None:
        self._drift[sandbox_id] = (time.monotonic(), line, version)
        current = self.selected_sandbox()
        if current is not None and current.id == sandbox_id:
            self._show_context(current)

    @on(DataTable.RowHighlighted, "#sandboxes")
    def _row_highlighted(self) -> None:
        # The cursor's frame first, then the detail (once, however many keys came in between):
        # rebuilding and reflowing the pane before the cursor moved on screen made each key slow.
        if not self._detail_due:
            self._detail_due = True
            self.call_after_refresh(self._show_due_detail)

    def _show_due_detail(self) -> None:
        self._detail_due = False
        self._show_detail()

    @on(TabbedContent.TabActivated, "#detail")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        evals = event.pane.id == "tab-evals"
        self.set_class(evals, "-evals")  # the Evals tab takes the wider share of the screen
        self.evals.set_showing(evals)
        if event.pane.id == "tab-details":  # wrapped while hidden (no width): again for the width it has now
            self.call_after_refresh(self._rewrap_detail)

    # -- actions ----------------------------------------------------------------

    def show_config_problem(self, message: str | None) -> None:
        banner = self.query_one("#banner", Static)
        banner.set_class(message is None, "hidden")
        if message:
            # On a first start with a file already broken there is no last good one of it to keep.
            settings = self.loom.settings
            kept = ("keeping the last good config" if settings.config is not None and settings.policy is not None
                    else "none read well since the app started" if settings.config is None and settings.policy is None
                    else "no loom.yaml read well since the app started" if settings.config is None
                    else "no policy read well since the app started")
            banner.update(Text(f"config error ({kept}): {message}"))

    def action_filter(self) -> None:
        self.open_filter("#filter")

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        if self.snapshot is not None:
            self._sync_table(self.snapshot)
            self._show_detail()  # the row the filter leaves: its details, and its log once it settles

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.query_one("#sandboxes", DataTable).focus()

    def action_back(self, _twin: int = 1) -> None:
        """esc backs out: clear and close the filter, undo the zoom (z), return focus to the table."""
        box = self.query_one("#filter", Input)
        if not box.has_class("hidden"):
            box.value = ""
            box.add_class("hidden")
        self.remove_class("-zoom")
        self.query_one("#sandboxes", DataTable).focus()
        self.refresh_bindings()

    # -- sandboxes: workers do the I/O, the UI thread only shows results -----------------

    def _follow(self, sandbox_id: str) -> None:
        selected = self.selected_sandbox()
        if selected is None or selected.id != sandbox_id or sandbox_id == self.tailing:
            return
        self.tailing = sandbox_id
        log = self.query_one("#agent-log", BoundedLog)
        log.clear()
        self._tail_log(sandbox_id, log)
        self._diff_stats(sandbox_id)

    @work(thread=True, exclusive=True, group="log-tail", exit_on_error=False)
    def _tail_log(self, sandbox_id: str, log: BoundedLog) -> None:
        """Stream the selected sandbox's log into the Log tab until another is selected."""
        from textual.worker import get_current_worker

        from loomtui.tui.log_follow import follow_sandbox_log

        worker = get_current_worker()
        follow_sandbox_log(self.loom.workspace, sandbox_id, lambda lines: self.app.call_from_thread(
            log.write_lines, lines), lambda: self.app.call_from_thread(log.clear), lambda: worker.is_cancelled)

    @work(thread=True, exclusive=True, group="diff-stats", exit_on_error=False)
    def _diff_stats(self, sandbox_id: str) -> None:
        from loomtui.execution import review

        try:
            found = review.diff(self.loom.workspace, sandbox_id, patch=False)
        except LoomError:
            return
        stats = found.stats
        if found.includes_uncommitted:
            stats += " (uncommitted work included)"
        self.app.call_from_thread(self._set_diff_stats, sandbox_id, stats)

    def _set_diff_stats(self, sandbox_id: str, stats: str) -> None:
        self.diff_stats[sandbox_id] = stats
        self._show_detail()

    def _run_once_confirmed(self, question: str, label: str, call: EngineCall, *args: object,
                            archiving: Collection[str] = ()) -> None:
        """Ask `question` (y/n); on yes, run the engine call as `_run` does. `archiving`: the sandboxes a yes
        archives, whose rows' going is then no surprise (noted on the yes only: a no left the guard off)."""
        from loomtui.tui.screens.sandbox_forms import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self._archived_here.update(archiving)
                self._run(label, call, *args)

        self.app.push_screen(ConfirmScreen(question), answered)

    def _run(self, label: str, call: EngineCall, *args: object) -> None:
        """Run an engine call in a worker; report its error in one line. The same call asked again while it runs
        (`S` pressed twice) is said to be under way: it raced itself, and its loser's error read as a failure
        ("being advanced by process N", the app's own) while the run it asked for started."""
        with self._under_way_lock:
            again = label in self._under_way
            self._under_way.add(label)
        if again:
            self.app.notify(f"{label}: under way already", title=label, timeout=3)
            return
        self._engine_worker(label, call, args)

    @work(thread=True, group="sandbox-actions", exit_on_error=False)
    def _engine_worker(self, label: str, call: EngineCall, args: tuple[object, ...]) -> None:
        # A store that stops answering without closing (a stalled database) held an action for 75 s
        # with no word: said once it is slow, then done or its error as ever.
        slow = threading.Timer(SLOW_ACTION_S, self._say_slow, (label,))
        slow.daemon = True
        slow.start()
        try:
            call(self.loom.workspace, *args)
        except LoomError as exc:
            self.app.call_from_thread(self.app.notify, str(exc), title=label, severity="error")
            return
        finally:
            slow.cancel()
            with self._under_way_lock:
                self._under_way.discard(label)
        self.app.call_from_thread(self.app.notify, f"{label}: done", timeout=3)

    def _say_slow(self, label: str) -> None:
        with contextlib.suppress(RuntimeError):  # the app has gone meanwhile
            self.app.call_from_thread(self.app.notify, f"{label}: still under way after {SLOW_ACTION_S:g} s "
                                      "(waiting for the store, git or the agent)", title=label, timeout=8)

    def action_new_sandbox(self) -> None:
        from loomtui.execution.runtimes import credential_status, runtime_installed
        from loomtui.tui.screens.sandbox_forms import NewSandboxScreen

        config = self.loom.config
        runtimes = sorted(config.runtimes) if config else ["script"]
        marks: dict[str, str] = {}
        for name, runtime in (config.runtimes if config is not None else {}).items():
            if not runtime_installed(runtime, self.loom.workspace.root):
                marks[name] = "not installed"
            elif not credential_status(runtime.argv[0], os.environ).ok:  # it would start, then fail at once
                marks[name] = "no credentials"
        usable = [name for name in runtimes if name not in marks]
        # Claude Code when it can run here; else an agent that can (Codex logged in, Aider); else the script runtime
        # (`command` came first of those, its program field to find before anything ran).
        agents = [name for name in usable if name not in ("command", "script")]
        default = next((name for name in ("claude", *agents, "script", *usable) if name in usable), runtimes[0])
        self.app.push_screen(NewSandboxScreen(runtimes, default, marks, draft=self._draft), self._create)

    def _create(self, request: NewSandboxRequest | None) -> None:
        if request is None:  # cancelled: what a failed request left to mend is let go too
            self._draft = None
            return
        self._create_worker(request)

    @work(thread=True, group="sandbox-actions", exit_on_error=False)
    def _create_worker(self, request: NewSandboxRequest) -> None:
        from loomtui.workflow import tasks
        from loomtui.workflow.engine import Workflow

        app = self.loom
        try:
            record = tasks.create_sandbox(
                app.workspace, request.task, request.runtime, base=request.base,
                claims=request.claims, script=request.script, autostart=True,
                after=request.after, command=request.command,
            )
        except LoomError as exc:  # what was typed is kept: `n` opens the form with it, to mend
            app.call_from_thread(setattr, self, "_draft", request)
            # What frees the claims it was refused, as `sandbox new` says it (the app's toast said only the refusal).
            hint = tasks.refused_claims_hint(app.workspace, exc, _in_the_form_s_after) if exc.recorded_sandbox else ""
            app.call_from_thread(app.notify, f"{exc}{hint} (n reopens the form as you left it)", title="new sandbox",
                                 severity="error")
            return
        app.call_from_thread(setattr, self, "_draft", None)
        said = "started" if record.status != PLANNED else Workflow(app.workspace).view(record).line(app_step_hints())
        app.call_from_thread(self._select_new, record.id)
        app.call_from_thread(app.notify, f"sandbox {record.id} {said}", title="new sandbox")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "back" and not parameters:  # shown while there is a filter, a zoom or the detail to back out of
            return self.has_class("-zoom") or not self.query_one("#filter", Input).has_class("hidden") \
                or self._focus_in_detail()
        if action == "open" and self._focus_in_detail() and not isinstance(self.focused, Tabs):
            return False  # ⏎ in the Evals tab's checks (a scroll pane there) opened the Log tab, unasked; on the
            # tabs themselves it opens, as the README says
        if action in FOLLOWS_SELECTION and not parameters:  # the footer's key (its twin, `evals(0)`, answers else)
            sandbox = self.selected_sandbox()
            step = self.snapshot.steps.get(sandbox.id) if self.snapshot and sandbox else None
            return key_applies(action, sandbox, step)
        return True

    def _focus_in_detail(self) -> bool:
        """Whether the focus is in the detail's tabs (a pane, a table of the Evals tab), not the sandboxes."""
        focused = self.focused
        return focused is not None and any(node.id == "detail" for node in focused.ancestors_with_self)

    def action_stop(self, _twin: int = 1) -> None:
        """`s`: stop the selected agent, once confirmed (its session cannot be taken up again)."""
        sandbox = self._chosen("stop")
        if sandbox is None or self._elsewhere(sandbox, "stop it"):
            return
        if sandbox.status not in LIVE:  # the engine's one line says why: nothing to confirm
            self._run(f"stop {sandbox.id}", agent_control.stop, sandbox.id)
            return
        self._run_once_confirmed(dashboard_keys.stop_question(sandbox), f"stop {sandbox.id}", agent_control.stop,
                                 sandbox.id)

    def _elsewhere(self, sandbox: SandboxRecord, doing: str) -> bool:
        """Whether `sandbox` is another machine's (then said, before any question is asked)."""
        try:
            sandboxes.refuse_elsewhere(sandbox, doing)
        except LoomError as exc:
            self.app.notify(str(exc), title=doing.split()[0], severity="error")
            return True
        return False

    def _chosen(self, doing: str) -> SandboxRecord | None:
        """The selected sandbox for a key that acts on it, unless the row the cursor was on went since (archived,
        removed from the CLI) and left it on another: then said, and None (press again). None selected: said too
        (the key did nothing, with nothing said)."""
        sandbox = self.selected_sandbox()
        if sandbox is None:
            hidden = sum(not self._visible(s) for s in self.snapshot.sandboxes) if self.snapshot else 0
            # The filter hides every row: said so, not "n makes one" beside "(3 hidden)".
            why = (f"the filter hides {plural(hidden, 'sandbox')}: {shown_key('dashboard.back', 'esc')} clears it"
                   if hidden else f"{shown_key('dashboard.new', 'n')} makes one")
            self.app.notify(f"no sandbox selected ({why})", title=doing, severity="warning")
            return None
        gone = self.query_one("#sandboxes", SandboxTable).row_gone_under_cursor()
        if sandbox is not None and gone is not None and gone not in self._archived_here:
            self.app.notify(f"sandbox {gone}, the one selected, is gone; the cursor is on {sandbox.id} now: press "
                            "again to act on it", title=doing, severity="warning")
            return None
        return sandbox

    def action_pause_resume(self, _twin: int = 1) -> None:
        sandbox = self._chosen("pause or resume")
        if sandbox is not None and not self._elsewhere(sandbox, "pause or resume it"):
            call = agent_control.resume if sandbox.status == PAUSED else agent_control.pause
            self._run(f"{call.__name__} {sandbox.id}", call, sandbox.id)

    def action_start(self, _twin: int = 1) -> None:
        """A planned sandbox's agent, started now (the engine says what holds it back, if anything)."""
        if (sandbox := self._chosen("start")) is not None:
            self._run(f"start {sandbox.id}", sandbox_calls.start, sandbox.id)

    def action_retry(self, _twin: int = 1) -> None:
        """`R`: the selected sandbox's next step now, a failed one tried again (`sandbox advance`)."""
        sandbox = self._chosen("retry")
        if sandbox is not None and not self._elsewhere(sandbox, "retry it"):
            self._run(f"retry {sandbox.id}", sandbox_calls.retry, sandbox.id)

    def action_drop_after(self, _twin: int = 1) -> None:
        """`W`: a held task stops waiting for those it came after that will not merge (asks first)."""
        sandbox = self._chosen("stop waiting")
        if sandbox is None:
            return
        if sandbox.status != PLANNED or not sandbox.after:  # said at once: nothing to confirm
            why = f"it is {sandbox.status}" if sandbox.status != PLANNED else "it waits for no other task"
            # What W is for, beside why it does nothing here ("it is exited" alone said neither).
            self.app.notify(f"sandbox {sandbox.id}: {why}; W starts a planned task without the tasks it waits for",
                            title="stop waiting", severity="warning")
            return
        self._ask_drop_after(sandbox)

    @work(thread=True, group="sandbox-actions", exit_on_error=False)
    def _ask_drop_after(self, sandbox: SandboxRecord) -> None:
        try:
            statuses = sandbox_calls.after_statuses(self.loom.workspace, sandbox.id)
        except LoomError as exc:
            self.app.call_from_thread(self.app.notify, str(exc), title="stop waiting", severity="error")
            return
        self.app.call_from_thread(self._run_once_confirmed, dashboard_keys.drop_after_question(sandbox, statuses),
                                  f"drop-after {sandbox.id}", sandbox_calls.drop_after, sandbox.id)

    @on(DataTable.RowSelected, "#sandboxes")
    def _row_chosen(self) -> None:
        self.action_open()

    def action_open(self) -> None:
        """Enter: attach to an interactive agent's tmux session, else show its log."""
        sandbox = self._chosen("open")  # never another agent's session than the one chosen
        if sandbox is None:
            return
        if sandbox.data.get("launch", {}).get("mode") == "interactive" and sandbox.status in LIVE:
            import subprocess

            try:
                command = agent_control.attach_command(self.loom.workspace, sandbox.id)
            except LoomError as exc:
                self.app.notify(str(exc), title="attach", severity="error")
                return
            with self.app.suspend():
                done = subprocess.run(command, check=False)
            if done.returncode != 0:  # tmux said why on the screen now gone: said here too
                self.app.notify(f"tmux could not attach to sandbox {sandbox.id} (exit {done.returncode}); "
                                f"`loomtui attach {sandbox.id}` in a shell says why", title="attach",
                                severity="error")
            return
        self.query_one("#detail", TabbedContent).active = "tab-log"

    def action_diff(self, _twin: int = 1) -> None:
        if (sandbox := self._chosen("diff")) is not None:
            self._show_diff(sandbox.id)

    @work(thread=True, group="diff", exit_on_error=False)
    def _show_diff(self, sandbox_id: str) -> None:
        from loomtui.execution import review
        from loomtui.tui.screens.sandbox_forms import DiffScreen

        try:
            found = review.diff(self.loom.workspace, sandbox_id)
        except LoomError as exc:
            self.app.call_from_thread(self.app.notify, str(exc), title="diff", severity="error")
            return
        title = f"sandbox {sandbox_id}: {found.stats}"
        self.app.call_from_thread(DiffScreen.open_over, self.app, title, found.patch)

    def action_evals(self, merged: bool = False) -> None:
        """`e`: the selected sandbox's eval run again; `M`: the merged gate; either followed in the Evals tab."""
        pane, sandbox = self.evals, (None if merged else self._chosen("eval"))
        if merged or sandbox is not None:
            self.query_one("#detail", TabbedContent).active = "tab-evals"
        if merged:
            pane.run_merged()
        elif sandbox is not None:
            pane.run_eval(sandbox.id)

    def action_zoom(self) -> None:
        """`z`: the detail takes the whole width (the Evals tab's test ids are long); `z` again: the table too."""
        if not self.toggle_class("-zoom").has_class("-zoom"):
            self.query_one("#sandboxes", DataTable).focus()
        else:  # the table hides: focus to the detail's tabs (it went to the filter's box, and took every key)
            self.query_one("#detail", TabbedContent).query_one(Tabs).focus()
        self.refresh_bindings()
        self.call_after_refresh(self._show_detail)  # rewrapped for the detail's new width

    def action_detail_tab(self, step: int) -> None:
        """`[` and `]`: the detail's previous or next tab, wherever the focus is."""
        tabs = self.query_one("#detail", TabbedContent)
        panes = [pane.id for pane in tabs.query(TabPane) if pane.id]
        tabs.active = panes[(panes.index(tabs.active) + step) % len(panes)]

    def action_wrap(self) -> None:
        """`w`: the Log, Activity and Evals output fold long lines, or let them run on (scrolled sideways)."""
        wrap = False
        for log in self.query(BoundedLog):
            wrap = log.toggle_wrap()
        self.notify("Long lines fold at the pane's width" if wrap else "Long lines run on: scroll sideways",
                    timeout=2)

    def action_merge(self, _twin: int = 1) -> None:
        sandbox = self._chosen("merge")
        if sandbox is None or self._elsewhere(sandbox, "merge it"):
            return
        step = self.snapshot.steps.get(sandbox.id) if self.snapshot else None
        refusal = merge_refusal(sandbox, step)
        if refusal is not None:  # said at once: a question answered y would only fail
            self.app.notify(refusal, title="merge", severity="warning")
            return
        self._run_once_confirmed(dashboard_keys.merge_question(sandbox), f"merge {sandbox.id}", sandbox_calls.merge,
                                 sandbox.id)

    def action_archive(self) -> None:
        sandbox = self._chosen("archive")
        if sandbox is None or self._elsewhere(sandbox, "archive it"):
            return
        if sandbox.status in LIVE:  # refused, so not asked: it asked, and a `y` then met the refusal
            self._run(f"archive {sandbox.id}", sandbox_calls.archive, sandbox.id)
            return
        step = self.snapshot.steps.get(sandbox.id) if self.snapshot else None
        self._run_once_confirmed(dashboard_keys.archive_question(sandbox, step), f"archive {sandbox.id}",
                                 sandbox_calls.archive, sandbox.id, archiving=[sandbox.id])

    def action_archive_done(self) -> None:
        # This machine's: another's are archived there (asked here, they were skipped without a word).
        finished = [s for s in self.snapshot.sandboxes if s.status in DONE_WITH] if self.snapshot else []
        done = [s for s in finished if sandboxes.on_this_host(s)]
        if not done:
            elsewhere = sorted({s.host for s in finished})
            self.app.notify(f"no merged or rejected sandbox of this machine to archive; "
                            f"{plural(len(finished), 'sandbox')} of {listed(elsewhere)} "
                            f"{'is' if len(finished) == 1 else 'are'} archived there"
                            if finished else "no merged or rejected sandbox to archive", title="archive", timeout=5)
            return
        self._run_once_confirmed(dashboard_keys.archive_done_question(done), "archive merged and rejected",
                                 sandbox_calls.archive_done, archiving=[s.id for s in done])
