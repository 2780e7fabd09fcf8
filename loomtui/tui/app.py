"""The Textual app: holds what the screens show (store snapshot, claims, config, policy), kept live
by polling the store's event stream, and runs the engines' work (index, workflow, demo) in workers."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual import events, work
from textual.app import App, ScreenStackError, SystemCommand
from textual.command import CommandPalette
from textual.css.query import NoMatches
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState, get_current_worker

from loomtui.config import LoomConfig
from loomtui.errors import LoomError
from loomtui.governance.checkout import policy_fingerprint
from loomtui.governance.policy import MERGE_MANUAL, Policy
from loomtui.repo import current_branch
from loomtui.tui.base import NARROW_COLUMNS
from loomtui.tui.escalation_toasts import EscalationToasts
from loomtui.tui.idle_gc import TICK_S as COLLECT_EVERY_S
from loomtui.tui.idle_gc import IdleCollector
from loomtui.tui.keymap import load_keymap
from loomtui.tui.keys import APP_BINDINGS, KeysFooter, use_keymap
from loomtui.tui.messages import (
    ConfigProblem,
    CoordinationChanged,
    IndexProgress,
    StoreChanged,
)
from loomtui.tui.one_at_a_time import OneAtATime
from loomtui.tui.palette import (
    BindingCommands,
    ClaimedRegions,
    SandboxesAndEscalations,
    context_sections,
    metrics_figures,
)
from loomtui.tui.screens.dashboard import DashboardScreen
from loomtui.tui.settings_watch import SettingsWatch
from loomtui.tui.snapshot import BadgeCache, DashboardSnapshot, StepCache, read_snapshot
from loomtui.tui.themes import ThemeLoadResult, load_themes, register_themes
from loomtui.tui.visible import visible_controls
from loomtui.tui.widgets.status_header import StatusHeader
from loomtui.workspace import Workspace

if TYPE_CHECKING:  # the other views (and the engines only workers use) load after the first frame

    from textual.driver import Driver

    from loomtui.coordination.claims import Coordinator
    from loomtui.coordination.view import CoordinationPicture
    from loomtui.governance.coordinator import KeptCoordinator
    from loomtui.observability.checklist import Checklist
    from loomtui.tui.screens.escalations import EscalationsScreen
    from loomtui.tui.screens.governance import AuditScreen, PolicyScreen
    from loomtui.tui.screens.graph import GraphScreen
    from loomtui.tui.screens.metrics import MetricsScreen
    from loomtui.tui.screens.plan import PlanScreen

SETTINGS_PROBLEMS_SHOWN = 3
"""Lines of a theme's or the keymap's problems one toast says, before how many more there are."""
LISTEN_SECONDS = 30.0
"""How long the listener waits for an event before it starts waiting again."""
POLICY_LOOK_SECONDS = 2.0
"""How often the listener looks at the policy's files while a sandbox is approved (a change writes nothing)."""
RETRY_SECONDS = 2.0
"""How often a store that failed is tried again."""
CONFIG_CHECK_SECONDS = 0.5
"""How often the config and policy files are looked at for edits."""
DEFAULT_THEME = "loom-dark"
CHECKLIST_FIRST_S = 3.0
"""The header's checklist score waits this long after start: the first frame comes first."""
CHECKLIST_EVERY_S = 30.0
"""At most this often the score is recomputed as the store changes (a miss reads git and the store)."""
BACKGROUND_AFTER_S = 2.0
"""The index, the reconcile and the other views' modules wait for the first snapshot's frame, or this long
when the store does not answer: they would compete with the first frame for the one interpreter."""
WARM_MODULES = ("loomtui.execution.review", "loomtui.workflow.engine", "loomtui.workflow.tasks",
                "loomtui.tui.screens.sandbox_forms",
                "loomtui.guardrails.evals", "loomtui.guardrails.merged", "loomtui.tui.screens.graph",
                "loomtui.tui.screens.escalations", "loomtui.tui.screens.governance", "loomtui.tui.screens.context",
                "loomtui.tui.screens.plan", "loomtui.tui.screens.metrics", "loomtui.tui.screens.help")
"""Imported by a worker after the first frame, so that the first key that needs one (a view, a sandbox's
Evals tab, a diff, a new sandbox, a merge) does not wait for its import."""


def _view(module: str, name: str) -> Callable[[], Screen[object]]:
    """A mode's screen, its module imported when the mode is first shown (not with the app)."""

    def make() -> Screen[object]:
        from importlib import import_module

        screen = getattr(import_module(f"loomtui.tui.screens.{module}"), name)()
        return cast("Screen[object]", screen)

    return make


class LoomApp(App[int]):
    """The loomtui dashboard over one repository."""

    TITLE = "loomtui"
    CSS_PATH = "app.tcss"
    # Every screen's width class (a screen's own would leave a dialog's toast styled apart from the
    # screen's below it: two toasts, one wide and one narrow, side by side).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_COLUMNS, "-normal")]
    MODES = {"dashboard": DashboardScreen, "graph": _view("graph", "GraphScreen"),
             "escalations": _view("escalations", "EscalationsScreen"),
             "policy": _view("governance", "PolicyScreen"), "audit": _view("governance", "AuditScreen"),
             "context": _view("context", "ContextScreen"), "plan": _view("plan", "PlanScreen"),
             "metrics": _view("metrics", "MetricsScreen")}
    COMMANDS = App.COMMANDS | {context_sections, metrics_figures, BindingCommands, SandboxesAndEscalations,
                               ClaimedRegions}
    DEFAULT_MODE = "dashboard"
    BINDINGS = APP_BINDINGS

    def __init__(
        self, workspace: Workspace, *, demo: bool = False,
        clock: Callable[[], float] = time.time, checklist: bool | None = None,
    ) -> None:
        super().__init__()
        self.clock = clock  # tests pass a fixed clock: no real time in snapshots
        # The checklist's week is real time: with a fixed clock (snapshots) the header leaves it out.
        self.show_checklist = clock is time.time if checklist is None else checklist
        self.escalation_toasts = EscalationToasts(self)
        self.checklist_score = ""
        self._checklist_due = 0.0
        self._checklist_waiting = False
        self.workspace = workspace
        self.demo = demo
        self.demo_chapter = ""
        """The demo's chapter now ("Agents at work"), shown in the header."""
        self._store_state = "ok"
        self.loom_themes: list[str] = []
        self.latest_snapshot: DashboardSnapshot | None = None
        self._override_due: float | None = None  # when the next override runs out, as the listener last read
        self._policy_read: str | None = None  # the policy's digest as the listener last read it (an approved sandbox)
        self.coordination: CoordinationPicture | None = None
        self.coordinator: Coordinator | None = None  # built by a worker; None until indexed
        self._kept: KeptCoordinator | None = None  # the coordination worker's (its module loads the index's)
        self._coordination_runs = OneAtATime(self._coordination_worker)
        self._step_cache: StepCache = {}  # the poll worker's: each sandbox's next step, kept while unchanged
        self._tips: dict[str, str] | None = None  # every branch's tip, as `_watch_branches` last read them
        self._badge_cache: BadgeCache = {}  # the poll worker's: each eval report's badge
        self.settings = SettingsWatch(workspace)  # loom.yaml and the policy, read again when they change
        self.theme_problems: list[str] = []
        self._last_event = 0
        self._branch = current_branch(workspace.root)
        self._background_started = False  # the index, reconcile and views' imports: after the first frame
        self.collector = IdleCollector()  # garbage collection's full passes while no key is pressed
        self._themes = self._choose_theme()
        self.keymap = load_keymap()  # its problems are said in on_mount
        self.set_keymap(self.keymap.keymap)
        use_keymap(self.keymap.keymap)  # the hints ("press 3") name the keys it chose

    def get_driver_class(self) -> type[Driver]:
        """Textual's driver for this platform; on Linux and macOS, one that ends well when the terminal closes."""
        driver = super().get_driver_class()
        if sys.platform == "win32":  # the Linux driver imports termios
            return driver
        from textual.drivers.linux_driver import LinuxDriver

        from loomtui.tui.terminal_driver import TerminalDriver

        return TerminalDriver if driver is LinuxDriver else driver  # TEXTUAL_DRIVER still picks another

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Textual's notify, but never parsing markup: our messages carry paths, task text
        and errors, any of which may contain `[`; nor sending a control character of them to the terminal."""
        super().notify(visible_controls(message), title=visible_controls(title), severity=severity, timeout=timeout,
                       markup=markup)

    def action_help_quit(self) -> None:
        """ctrl+c (which copies a selection in a field): say how to quit. Textual's own message is markup,
        which `notify` here shows as written ("Press [b]ctrl+q[/b]")."""
        keys = [key for key, active in self.active_bindings.items() if active.binding.action in ("quit", "app.quit")]
        if keys:
            self.notify(f"press {' or '.join(keys)} to quit", title="Do you want to quit?")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that failed unexpectedly is reported in one line; the app keeps running."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.notify(f"{type(error).__name__}: {error}", title=f"{event.worker.name or 'worker'} failed",
                        severity="error", timeout=10)

    # -- start-up -----------------------------------------------------------------

    def _choose_theme(self) -> ThemeLoadResult:
        """Register the themes and show the configured one, before the stylesheet is first applied: set in
        on_mount, the theme and then its ANSI palette each re-applied the whole stylesheet to the dashboard
        (a third of the time to its first frame). What is wrong with a theme is said in on_mount."""
        themes = load_themes()
        register_themes(self, ThemeLoadResult(themes.themes))
        try:
            wanted = self.workspace.load_config().theme
        except LoomError:
            wanted = DEFAULT_THEME  # on_mount loads the config again and says what is wrong with it
        self.theme = wanted if wanted in self.available_themes else DEFAULT_THEME
        return themes

    def on_load(self) -> None:
        """Before the first screen is composed: the config and policy, and from an embedded store the first
        snapshot, so that the dashboard's first frame shows its rows. Read by the listen worker instead,
        the rows came a frame or five later, each frame drawn in full (a third of the time to them). A
        database on the network is left to the worker, where waiting on it shows in the header."""
        self.collector.start()
        self._reload_if_changed()
        if not self.workspace.store.embedded:
            return
        try:
            self.latest_snapshot = self._snapshot_after(None, with_claims=False)  # the listener reads them
        except Exception:  # an early read only: the listener reads again and reports what fails
            return
        self._last_event = self.latest_snapshot.last_event_id
        self._heard(self.latest_snapshot)

    def on_mount(self) -> None:
        themes = self._themes
        self.loom_themes = [theme.name for theme in themes.themes]
        self.theme_problems = themes.problems
        # One toast a kind, however many lines: a toast each covered the whole 80x24 screen for seconds.
        for title, problems in (("theme skipped", themes.problems), ("theme contrast", themes.warnings),
                                ("keymap", self.keymap.problems)):
            if problems:
                shown = [*problems[:SETTINGS_PROBLEMS_SHOWN], *(
                    [f"and {len(problems) - SETTINGS_PROBLEMS_SHOWN} more"] if len(problems) > SETTINGS_PROBLEMS_SHOWN
                    else [])]
                self.notify("\n".join(shown), title=title, severity="warning", timeout=10, markup=False)
        wanted = self.config.theme if self.config else DEFAULT_THEME
        self.theme = wanted if wanted in self.available_themes else DEFAULT_THEME
        if wanted != self.theme:  # a typo in loom.yaml's theme: said, not silently replaced
            self.notify(f"theme {wanted!r} is not installed; showing {DEFAULT_THEME}", title="theme",
                        severity="warning", timeout=8, markup=False)
        self.escalation_toasts.listen()
        self.set_interval(CONFIG_CHECK_SECONDS, self._config_worker)
        self.set_interval(COLLECT_EVERY_S, self.collector.tick)
        first = self.latest_snapshot
        self._listen_worker(first.last_event_id if first else None,
                            read_now=first is not None and first.claims_by_sandbox is None)
        if self.latest_snapshot is not None:
            self.call_after_refresh(self._start_background)  # once the first frame, with its rows, is out
        if self.show_checklist:
            self._checklist_due = time.monotonic() + CHECKLIST_FIRST_S
            self.set_timer(CHECKLIST_FIRST_S, self._score_checklist)
        self.set_timer(BACKGROUND_AFTER_S, self._start_background)
        if self.demo:
            from loomtui.tui.demo_feed import DemoFeed

            DemoFeed(self).start()
        else:
            self.set_interval(2.0, self._advance_tasks)
            self.set_interval(2.0, self._watch_branches)

    def _start_background(self) -> None:
        """What the first frame does not show: the index and conflicts, matching the store with the
        agents running, and the other views' modules (so that their first visit is quick)."""
        if self._background_started:
            return
        self._background_started = True
        self.refresh_coordination()
        self._reconcile()
        self._warm_imports()

    @work(thread=True, group="warm-imports", exit_on_error=False)
    def _warm_imports(self) -> None:
        from importlib import import_module

        for module in WARM_MODULES:
            import_module(module)

    # -- the workflow: whatever step is due, done by the one engine ---------------------------

    def _advance_tasks(self) -> None:
        """Advance the tasks whose next step is work. Supervisors advance their own sandboxes when
        the agent ends; this catches the rest (decisions taken elsewhere, a supervisor that died).
        The steps come from the poll's snapshot (kept while nothing changes), so an idle app asks
        git nothing. Not while the store is away (a toast every 2 s over the header's one line), nor another
        machine's sandbox, whose steps are done there (its records were read every 2 s, for good)."""
        from loomtui.execution.sandboxes import on_this_host

        snapshot = self.latest_snapshot
        if snapshot is None or self._store_state == "error":
            return
        due = [s.id for s in snapshot.sandboxes
               if s.id in snapshot.steps and snapshot.steps[s.id].step.is_work and on_this_host(s)]
        if due:
            self._advance_worker(due)

    @work(thread=True, exclusive=True, group="branches", exit_on_error=False)
    def _watch_branches(self) -> None:
        """Advance the ended tasks whose branch or target moved with git alone: no record changes, so the
        poll's steps stood (a merge conflict resolved in the worktree, as the README says, read "resolve it"
        for good, and the review then due was never run). One git call a tick."""
        from loomtui.execution.lifecycle import LIVE
        from loomtui.execution.sandboxes import branch_tips
        from loomtui.workflow.steps import branches_read

        snapshot = self.latest_snapshot
        if snapshot is None:
            return
        tips = branch_tips(self.workspace)
        before, self._tips = self._tips, tips
        if before is None:
            return
        moved = [s.id for s in snapshot.sandboxes if s.status not in LIVE and any(
            tips.get(name) != before.get(name) for name in branches_read(s))]
        if moved:
            self.call_from_thread(self._advance_worker, moved)

    @work(thread=True, exclusive=True, group="workflow", exit_on_error=False)
    def _advance_worker(self, sandbox_ids: list[str]) -> None:
        from loomtui.workflow.engine import Workflow

        def said(line: str) -> None:
            self.call_from_thread(self.notify, line, title="workflow", timeout=8)

        flow = Workflow(self.workspace, policy=self.policy, say=said)
        for sandbox_id in sandbox_ids:
            try:
                flow.advance(sandbox_id)
            except LoomError as exc:
                self.call_from_thread(self.notify, str(exc), title="workflow", severity="error")

    # -- the demo: the scenario runs on the real engines (DemoFeed), the app only shows it --

    def set_demo_chapter(self, chapter: str) -> None:
        """The demo's chapter now, into every header."""
        self.demo_chapter = chapter
        for header in self._headers():
            header.chapter = chapter

    @work(thread=True, group="reconcile", exit_on_error=False)
    def _reconcile(self) -> None:
        """Match the store with the agents actually running: the TUI may have been killed."""
        from loomtui.execution.recovery import reconcile

        try:
            report = reconcile(self.workspace)
        except LoomError as exc:
            self.call_from_thread(self.notify, str(exc), title="reconcile", severity="error")
            return
        for line in report.lines():
            self.call_from_thread(self.notify, line, title="sandboxes", severity="warning", timeout=10)

    def update_header(self, header: StatusHeader) -> None:
        """Fill a screen's header with what the app knows."""
        header.repo = self.workspace.root.name
        header.branch = self._branch
        header.store_state = self._store_state
        header.mode_title = "demo" if self.demo else ""
        header.chapter = self.demo_chapter
        header.view = getattr(header.screen, "VIEW_NAME", "")
        header.checklist = self.checklist_score
        if self.coordination is not None:
            header.conflicts = len(self.coordination.conflicts)
        if self.latest_snapshot is not None:
            header.sandboxes = len(self.latest_snapshot.sandboxes)
            header.escalations = len(self.latest_snapshot.escalations_to_decide)

    # -- live refresh -----------------------------------------------------------------

    @work(thread=True, exclusive=True, group="listen", exit_on_error=False)
    def _listen_worker(self, seen: int | None, *, read_now: bool = False) -> None:
        """Read new events (and the state they change) as they arrive, off the UI thread.

        The store wakes this thread: SQLite is looked at every few tenths of a second;
        PostgreSQL sends NOTIFY, so nothing is read while nothing happens. A store that
        fails is shown in the header and tried again until it answers. `read_now`: read the
        whole state first, whatever happens (the first frame's snapshot had claim counts only).
        """
        worker = get_current_worker()
        failing = False
        store = self.workspace.store
        while not worker.is_cancelled:
            try:
                if failing:
                    newest = store.last_event_id()  # raises while the store is still away
                    failing = False
                    self.call_from_thread(self._store_back)
                    if seen is not None and newest > seen:
                        seen = self._read_store(seen)
                elif seen is None or read_now or store.wait_for_events(
                        seen, self._listen_seconds(), cancelled=lambda: worker.is_cancelled) or self._override_ended() \
                        or self._policy_moved():
                    seen = self._read_store(seen)
                    read_now = False
            except LoomError as exc:
                if not failing:
                    self.call_from_thread(self._store_failed, str(exc))
                failing = True
                worker.cancelled_event.wait(RETRY_SECONDS)

    def _listen_seconds(self) -> float:
        """How long to wait for the store's events: until the next override runs out, at most LISTEN_SECONDS."""
        due = self._override_due
        longest = LISTEN_SECONDS if self._policy_read is None else POLICY_LOOK_SECONDS
        return longest if due is None else min(longest, max(0.05, due - time.time()))

    def _heard(self, snapshot: DashboardSnapshot) -> None:
        """Keep what the listener looks at between reads: when the next override runs out, the policy's digest."""
        self._override_due = snapshot.next_override_end
        self._policy_read = snapshot.policy_read

    def _policy_moved(self) -> bool:
        """Whether the policy's files changed since the last read, while a sandbox is approved: its step is then
        the review again, and nothing is written to say so ("press m" stood while `sandbox list` said review)."""
        return self._policy_read is not None and policy_fingerprint(self.workspace) != self._policy_read

    def _override_ended(self) -> bool:
        """Whether an override ran out since the last read: the header's count and the palette change, and no
        event says so (it read 3 escalations for good while `status` said 4)."""
        return self._override_due is not None and time.time() >= self._override_due

    def _snapshot_after(self, seen: int | None, *, with_claims: bool = True) -> DashboardSnapshot:
        """The store's state and the events after event `seen` (None: the recent history only; a
        long-lived store has far more)."""
        if seen is None:
            seen = max(0, self.workspace.store.last_event_id() - 200)
        return read_snapshot(self.workspace, seen, step_cache=self._step_cache, badge_cache=self._badge_cache,
                             merge_mode=self.policy.merge if self.policy else MERGE_MANUAL, with_claims=with_claims)

    def _read_store(self, seen: int | None) -> int:
        """Post a snapshot of what changed after event `seen`; the newest event id read."""
        snapshot = self._snapshot_after(seen)
        self._heard(snapshot)
        if not get_current_worker().is_cancelled:
            self.post_message(StoreChanged(snapshot))
        return snapshot.last_event_id

    def _shown_screen(self) -> Screen[object] | None:
        """The screen on top, or None while there is none (starting up, switching modes): a
        message from a worker can arrive then, and must not take the app down."""
        try:
            return self.screen
        except ScreenStackError:
            return None

    def _mode_screen(self, mode: str) -> Screen[object] | None:
        """The shown screen if it is `mode`'s own view (not a dialog over it). By mode, not by class: a
        view's module is not imported until the view is first shown."""
        screen = self._shown_screen()
        if screen is None or self.current_mode != mode:
            return None
        stack = self.get_screen_stack(mode)
        return screen if stack and stack[0] is screen else None

    def _headers(self) -> list[StatusHeader]:
        """Every view's header, the hidden views' too: all show the same state, changed together
        (a hidden view's header used to wait for the view to be shown, and could show older counts)."""
        return StatusHeader.every_one_in(self)

    def _store_failed(self, message: str) -> None:
        self._store_state = "error"
        for header in self._headers():
            header.store_state = "error"
        self.notify(f"{message} (trying again every {RETRY_SECONDS:g}s)", title="store", severity="error",
                    timeout=10)

    def _store_back(self) -> None:
        self._store_state = "ok"
        for header in self._headers():
            header.store_state = self._store_state
        self.notify("the store answers again", title="store", timeout=5)
        # The view shown reads what it shows again, as on its return: the Escalations view's read had failed
        # with the store, and its queue stayed empty under a header counting 3 to decide.
        resume = getattr(self._shown_screen(), "on_screen_resume", None)
        if callable(resume):
            resume()

    def on_store_changed(self, message: StoreChanged) -> None:
        before = self.latest_snapshot
        first = before is None
        # Which are to decide changes with no event too (an override running out): the queue reads again then.
        to_decide_changed = before is None or [e.id for e in before.escalations_to_decide] != [
            e.id for e in message.snapshot.escalations_to_decide]
        if first:
            self.call_after_refresh(self._start_background)  # once the snapshot's frame is out
        self._last_event = message.snapshot.last_event_id
        self.latest_snapshot = message.snapshot
        screen = self._shown_screen()
        for header in self._headers():
            self.update_header(header)
        # Hidden screens skip the update; they catch up on resume.
        shows = screen if isinstance(screen, DashboardScreen) else cast("PlanScreen | None", self._mode_screen("plan"))
        if shows is not None:
            try:
                shows.show_snapshot(message.snapshot)
            except NoMatches:
                pass  # the app is closing and the screen's widgets are gone: nothing to show it on
        kinds = [e.kind for e in message.snapshot.events]
        if self._background_started and any(k.startswith(("claim.", "sandbox.")) for k in kinds):
            self.refresh_coordination()  # before it has started, its first run reads what is new
        if self.show_checklist and kinds:
            self._rescore_checklist()
        # The policy view's picker lists the sandboxes there are now (a new one waited for a resume).
        policy = self._mode_screen("policy")
        if policy is not None and policy is screen and any(k.startswith("sandbox.") for k in kinds):
            cast("PolicyScreen", policy).show_policy()
        if "audit.appended" in kinds and (audit := cast("AuditScreen | None", self._mode_screen("audit"))):
            audit.reload()
        metrics = self._mode_screen("metrics")
        if metrics is not None and metrics is screen and "audit.appended" in kinds:  # hidden: it recomputes on resume
            cast("MetricsScreen", metrics).store_changed()
        if any(k.startswith("escalation.") for k in kinds) or to_decide_changed:
            if queue := cast("EscalationsScreen | None", self._mode_screen("escalations")):
                queue.reload()
            opened = kinds.count("escalation.opened")
            if opened and not first:
                self.bell()
                self.escalation_toasts.opened(opened)

    # -- jumping to a record (the palette) --------------------------------------------

    def show_sandbox(self, sandbox_id: str) -> None:
        """Switch to the sandboxes view with this sandbox highlighted."""
        self.switch_mode("dashboard")
        self.call_after_refresh(self._highlight, "#sandboxes", sandbox_id)

    def show_claims_of(self, sandbox_id: str) -> None:
        """Switch to the claims view, drawn and filtered to this sandbox's regions."""
        from loomtui.tui.screens.graph import GraphScreen

        self.switch_mode("graph")

        def drawn() -> None:
            if isinstance(screen := self._mode_screen("graph"), GraphScreen):
                screen.show_sandbox_drawn(sandbox_id)

        self.call_after_refresh(drawn)

    def show_escalation(self, escalation_id: int) -> None:
        """Switch to the escalations view with this escalation highlighted."""
        self.switch_mode("escalations")
        self.set_timer(0.3, partial(self._highlight, "#queue", str(escalation_id)))  # after its reload

    def _highlight(self, table_id: str, key: str) -> None:
        from textual.widgets import DataTable

        screen = self._shown_screen()
        tables = list(screen.query(table_id)) if screen is not None else []
        table = tables[0] if tables and isinstance(tables[0], DataTable) else None
        if table is not None and key in table.rows:
            table.move_cursor(row=table.get_row_index(key))
            table.focus()

    # -- the checklist score in the header ------------------------------------------

    def _rescore_checklist(self) -> None:
        """The store changed: score now, or once the wait is over (a burst of events that then stops
        left the score of its first moments in the header)."""
        wait = self._checklist_due - time.monotonic()
        if wait <= 0:
            self._score_checklist()
        elif not self._checklist_waiting:
            self._checklist_waiting = True
            self.set_timer(wait, self._score_checklist)

    def _score_checklist(self) -> None:
        self._checklist_waiting = False
        self._checklist_due = time.monotonic() + CHECKLIST_EVERY_S
        self._checklist_worker()

    @work(thread=True, exclusive=True, group="checklist", exit_on_error=False)
    def _checklist_worker(self) -> None:
        from loomtui.observability.checklist import cached_checklist

        try:
            scored = cached_checklist(self.workspace)
        except LoomError:
            return  # the metrics view (8) says why; the header just shows no score
        self.call_from_thread(self.show_checklist_score, scored)

    def show_checklist_score(self, scored: Checklist) -> None:
        """Every header shows this score (the metrics view's `r` scores afresh too)."""
        score = scored.header.removeprefix("checklist ")
        self.checklist_score = score
        for header in self._headers():
            header.checklist = score

    # -- coordination: index in a worker, conflicts recomputed when claims change ------

    def refresh_coordination(self, *, reindex: bool = False) -> None:
        """Recompute claims and conflicts (and re-index first when asked) off the UI thread: once more
        after the run going, if one is."""
        self._coordination_runs.request(reindex)

    @work(thread=True, group="coordination", exit_on_error=False)
    def _coordination_worker(self) -> None:
        worker = get_current_worker()
        self._coordination_runs.run_due(self._coordinate, lambda: worker.is_cancelled)

    def _coordinate(self, reindex: bool) -> None:
        from loomtui.coordination.view import coordination_picture
        from loomtui.governance.coordinator import KeptCoordinator

        try:
            settings = (self.config or LoomConfig()).coordination
            if self._kept is None:
                self._kept = KeptCoordinator(self.workspace)
            current, summary = self._kept.current(settings, reindex=reindex, progress=self._index_progress)
            self.coordinator = current
            if summary is not None:
                self.call_from_thread(self.notify, f"Index {summary}", title="coordination")
            self.post_message(CoordinationChanged(coordination_picture(current)))
        except LoomError as exc:
            self.call_from_thread(self.notify, str(exc), title="coordination", severity="error")

    def _index_progress(self, done: int, total: int) -> None:
        """Called by the indexer, from a worker thread (post_message is thread-safe)."""
        self.post_message(IndexProgress(done, total))

    def on_command_palette_opened(self, _message: CommandPalette.Opened) -> None:
        # A footer of its own (esc closes it): the screen's under it showed that screen's keys, which type
        # into the search here.
        if isinstance(self.screen, CommandPalette) and not self.screen.query(KeysFooter):
            self.screen.mount(KeysFooter())

    def on_index_progress(self, message: IndexProgress) -> None:
        if graph := cast("GraphScreen | None", self._mode_screen("graph")):
            graph.show_progress(message.done, message.total)

    def on_coordination_changed(self, message: CoordinationChanged) -> None:
        self.coordination = message.picture
        for header in self._headers():
            header.conflicts = len(message.picture.conflicts)
        if graph := cast("GraphScreen | None", self._mode_screen("graph")):
            graph.show_picture(message.picture)

    def refresh_css(self, animate: bool = True) -> None:
        """Textual's, once a screen is shown. Choosing the theme and its ANSI palette in `__init__` each
        queue a refresh, which ran before any screen existed and parsed every stylesheet for nothing:
        showing the first screen refreshes the CSS anyway, with the theme chosen by then."""
        if self.screen_stack:
            super().refresh_css(animate)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.InputEvent):
            self.collector.input_seen()  # a full collection waits until input is quiet
        await super().on_event(event)

    def on_unmount(self) -> None:
        self.collector.stop()

    # -- config and policy: reloaded on change, last good kept ------------------------

    @property
    def config(self) -> LoomConfig | None:
        return self.settings.config

    @property
    def policy(self) -> Policy | None:
        return self.settings.policy

    @property
    def config_problem(self) -> str | None:
        """What is wrong with loom.yaml or the policy now (the last good ones are in use)."""
        return self.settings.problem

    @work(thread=True, exclusive=True, group="config", exit_on_error=False)
    def _config_worker(self) -> None:
        self._reload_if_changed()

    def _reload_if_changed(self) -> None:
        if self.settings.reload_if_changed():
            self.post_message(ConfigProblem(self.settings.problem))

    def on_config_problem(self, message: ConfigProblem) -> None:
        if policy := cast("PolicyScreen | None", self._mode_screen("policy")):
            policy.show_policy()
        # The dashboard's banner wherever it is: a fix made while another view was shown left it up for good.
        try:
            dashboard = self.get_screen_stack("dashboard")
        except KeyError:  # not shown yet: it reads the problem when it is
            dashboard = []
        for screen in dict.fromkeys([*self.screen_stack, *dashboard]):
            if isinstance(screen, DashboardScreen):
                screen.show_config_problem(message.message)
        if message.message:
            self.notify(message.message, title="config error", severity="error", timeout=10)

    # -- actions ------------------------------------------------------------------------

    def action_help(self) -> None:
        from loomtui.tui.screens.help import HelpScreen, key_rows

        self.push_screen(HelpScreen(key_rows(self)))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Textual's own palette commands but its Keys and Maximize: its keys panel squeezed the app to 50
        columns and no `esc` closed it (`?` lists every key here), and `z` is the views' zoom."""
        for command in super().get_system_commands(screen):
            if command.title not in ("Keys", "Maximize", "Minimize"):
                yield command
        yield SystemCommand("Keys", "Every key of this view and the app's, and what each does (as ?)", self.action_help)

    def action_next_theme(self) -> None:
        """`t`: the next of loomtui's themes, the shipped ones and the user's (T picks from all)."""
        names = [name for name in self.loom_themes if name in self.available_themes] or [DEFAULT_THEME]
        current = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(current + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=2)

    def action_pick_theme(self) -> None:
        """`T`: every theme, Textual's own too, in a searchable list."""
        self.search_themes()


def run_app(workspace: Workspace, *, demo: bool = False) -> int:
    """Run the app until the user quits, or a SIGTERM or SIGHUP ends it the same way; its exit code."""
    from loomtui.tui.ending import ends_on_signals

    app = LoomApp(workspace, demo=demo)
    with ends_on_signals(app):
        result = app.run()
    return int(result or app.return_code or 0)
