"""The plan view: each plan run's tasks as a DAG, wave by wave, with each task's state and next step.

A task's wave is one more than the deepest task it waits on, so the tasks of a wave
may run side by side. Under each task: what it waits on and why (the schedule's
reason: written `after:`, overlapping claims, or one task's code using the other's).
Drawn from the dashboard's snapshot (no I/O of its own); hidden, it skips updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from loomtui.store import SandboxRecord
from loomtui.tui.base import LoomScreen, inner_width
from loomtui.tui.keys import KeysFooter, is_twin, shown_where_it_applies
from loomtui.tui.sandbox_text import STATUS_STYLES, STEP_STYLES, app_step_hints, task_text
from loomtui.tui.snapshot import DashboardSnapshot
from loomtui.tui.tree_state import label_key, restore_tree_state, tree_state
from loomtui.tui.visible import VisibleText
from loomtui.tui.widgets.fields import Field, render_fields
from loomtui.tui.widgets.fitted_tree import FittedTree
from loomtui.tui.widgets.status_header import StatusHeader
from loomtui.workflow.steps import StepView

NO_PLAN = "(no plan)"


@dataclass(frozen=True)
class PlannedTask:
    """One task as the plan view shows it."""

    name: str
    sandbox: SandboxRecord
    step: StepView | None
    waits_on: tuple[str, ...]  # task names within its plan run (sandbox ids outside a plan)
    reasons: tuple[str, ...]


def plan_runs(snapshot: DashboardSnapshot) -> dict[str, list[list[PlannedTask]]]:
    """Plan run id -> waves of tasks (sandboxes with `after` but no plan go under NO_PLAN)."""
    runs: dict[str, dict[str, PlannedTask]] = {}
    waited_on = {str(a) for record in snapshot.sandboxes for a in record.after}
    for record in sorted(snapshot.sandboxes, key=lambda r: r.created):
        plan = record.data.get("plan")
        if isinstance(plan, dict):
            run, name = str(plan.get("run")), str(plan.get("task"))
            waits = tuple(str(w) for w in plan.get("waits_on") or ())
            reasons = tuple(str(r) for r in plan.get("reasons") or ())
        elif record.after or record.id in waited_on:
            run, name = NO_PLAN, record.id
            waits, reasons = tuple(str(a) for a in record.after), ()
        else:
            continue
        runs.setdefault(run, {})[name] = PlannedTask(name, record, snapshot.steps.get(record.id), waits, reasons)
    return {run: _waves(tasks) for run, tasks in runs.items()}


def _waves(tasks: dict[str, PlannedTask]) -> list[list[PlannedTask]]:
    depth: dict[str, int] = {}

    def level(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name not in depth:
            # A task it waits on that is not here (archived since) still ran before it: wave 1 at least, so
            # archiving the first wave does not move the tasks after it up into its place.
            task = tasks.get(name)
            befores = [w for w in (task.waits_on if task else ()) if w not in seen]
            depth[name] = 1 + max((level(w, seen | {name}) for w in befores), default=-1)
        return depth[name]

    waves: list[list[PlannedTask]] = []
    for name, task in tasks.items():
        number = level(name)
        while len(waves) <= number:
            waves.append([])
        waves[number].append(task)
    return waves


NO_TASKS: Final = ("No planned tasks. `loomtui plan run` states the tasks of .loom/plan.yaml; "
                   "`loomtui sandbox new --after ID` makes one task wait on another.")


class PlanTree(FittedTree[PlannedTask | None]):
    """The plan's tree, its ⏎ said in the footer: a task's keys work in the sandboxes view, one ⏎ away (the
    tree's own ⏎ is unnamed there, and the hints' "⏎ then press S" named a key the footer did not)."""

    # Offered while the cursor is on a line (the empty view's footer offered it); pressed anyway, its twin answers.
    BINDINGS = [*shown_where_it_applies(Binding("enter", "select_cursor", "Its sandbox", key_display="⏎",
                                                id="plan.open", tooltip="The task's sandbox, where its next "
                                                                        "step's keys work"))]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "select_cursor" and not is_twin(parameters):
            return self.cursor_node is not None
        return super().check_action(action, parameters)

    def action_select_cursor(self, *_twin: int) -> None:
        """⏎ on no task (a repository without a plan) did nothing and said nothing: a key still answers."""
        if self.cursor_node is None:
            self.notify(NO_TASKS, title="No task to open", severity="warning")
            return
        super().action_select_cursor()

    def watch_cursor_line(self, previous_line: int, line: int) -> None:
        super().watch_cursor_line(previous_line, line)
        self.refresh_bindings()  # the footer's ⏎ follows whether the cursor is on a line


class PlanScreen(LoomScreen[None]):
    """Plan runs as DAGs in waves; the selected task's sandbox, step and reasons on the right."""

    VIEW_NAME = "Plan"

    AUTO_FOCUS = "#plan-tree"
    BINDINGS = [Binding("escape", "back", "Back", id="plan.back", tooltip="Back to the sandboxes")]

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: DashboardSnapshot | None = None
        self._shown: PlannedTask | None = None  # the task in the detail, wrapped again on a resize
        self._no_tasks = False  # the snapshot shown has no planned task
        self._cursor_placed = False  # the cursor is where the last build put it, or a person since

    def on_resize(self) -> None:
        self.call_after_refresh(lambda: self._show_detail(self._shown))

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        with Horizontal(id="plan-body"):
            yield PlanTree("plans", id="plan-tree")
            yield Static(id="plan-detail")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#plan-tree", Tree).show_root = False
        self.loom.update_header(self.query_one(StatusHeader))
        self._refresh_from_app()

    def on_screen_resume(self) -> None:
        self._refresh_from_app()

    def _refresh_from_app(self) -> None:
        snapshot = self.loom.latest_snapshot
        if snapshot is not None and snapshot is not self.snapshot:
            self.show_snapshot(snapshot)
        elif snapshot is None:
            self.query_one("#plan-detail", Static).update(Text("Reading the store…"))

    def show_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """Redraw the DAGs (a handful of nodes: cheaper than diffing them)."""
        self.snapshot = snapshot
        tree: Tree[PlannedTask | None] = self.query_one("#plan-tree", Tree)
        selected = tree.cursor_node.data.sandbox.id if tree.cursor_node and tree.cursor_node.data else None
        state = tree_state(tree, _plan_key)
        tree.clear()
        runs = plan_runs(snapshot)
        detail = self.query_one("#plan-detail", Static)
        self._no_tasks = not runs
        if not runs:
            detail.update(Text(NO_TASKS))
            return
        target: TreeNode[PlannedTask | None] | None = None
        for run, waves in runs.items():
            run_node = tree.root.add(Text(f"plan run {run}" if run != NO_PLAN else "tasks with dependencies",
                                          style="bold"), expand=True)
            for number, wave in enumerate(waves, 1):
                wave_node = run_node.add(Text(f"wave {number}", style="dim"), expand=True)
                for task in wave:
                    node = wave_node.add_leaf(_task_label(task), data=task)
                    if target is None or task.sandbox.id == selected:
                        target = node  # the task selected before, else the first: why it waits shows at once
        # A run or wave closed stays closed, and the cursor a person put on one stays there (not one still at
        # the first line while the last build's move waits for its layout).
        restored = restore_tree_state(tree, state, _plan_key)
        if restored is not None and self._cursor_placed:
            target = restored
        if target is not None:
            self._cursor_placed = False
            self.call_after_refresh(self._select, target)  # a node has its line once the tree is laid out

    def _select(self, node: TreeNode[PlannedTask | None]) -> None:
        self.query_one("#plan-tree", Tree).move_cursor(node)
        self._cursor_placed = True
        self._show_detail(node.data)

    @on(Tree.NodeHighlighted, "#plan-tree")
    def _highlighted(self, event: Tree.NodeHighlighted[PlannedTask | None]) -> None:
        self._show_detail(event.node.data)

    @on(Tree.NodeSelected, "#plan-tree")
    def _chosen(self, event: Tree.NodeSelected[PlannedTask | None]) -> None:
        """⏎ on a task: its sandbox in the sandboxes view, where the keys its next step names work."""
        if event.node.data is not None:
            self.loom.show_sandbox(event.node.data.sandbox.id)

    def _show_detail(self, task: PlannedTask | None) -> None:
        self._shown = task
        detail = self.query_one("#plan-detail", Static)
        if task is None:  # a resize redraws it too: the empty view's line was replaced by this one
            detail.update(Text(NO_TASKS if self._no_tasks else "Select a task to see why it waits."))
            return
        fields = [Field("task", task.name), Field("sandbox", task.sandbox.id),
                  Field("status", task.sandbox.status), Field("does", task_text(task.sandbox.task))]
        if task.step is not None:
            fields.append(Field("next", task.step.line(_plan_hints()), STEP_STYLES.get(str(task.step.step), "")))
        if task.waits_on:
            fields.append(Field("after", ", ".join(task.waits_on)))
        fields += [Field("why", reason) for reason in task.reasons]
        # Each value wrapped under itself, not back at the pane's edge (untrusted text: never markup).
        detail.update(render_fields(fields, inner_width(detail) or 40))

    def action_back(self) -> None:
        self.back_out()


def _plan_hints() -> dict[str, str]:
    """The app's hints, said from here: the sandboxes view's keys (S, W, x, m) work there, one ⏎ away (pressed
    here, "S runs it again" did nothing); the escalations view's key works everywhere."""
    return {action: hint if action in ("decide", "override") else f"⏎ then {hint}"
            for action, hint in app_step_hints().items()}


def _plan_key(node: TreeNode[PlannedTask | None]) -> str:
    """A task by its sandbox (its label shows its status, which moves on), a run or wave by its label."""
    return node.data.sandbox.id if node.data is not None else label_key(node)


def _task_label(task: PlannedTask) -> Text:
    label = VisibleText(f"{task.name} ")
    label.append(task.sandbox.status, style=STATUS_STYLES.get(task.sandbox.status, ""))
    if task.step is not None and str(task.step.step) != "done":
        # Its keys work in the sandboxes view, one ⏎ away: "(press m)" here did nothing. The key first, as the
        # sandboxes' Next column says it: at 80 columns the label's end, the key to press, was cut.
        label.append(f"  {task.step.line(_plan_hints(), hint_first=True)}",
                     style=STEP_STYLES.get(str(task.step.step), "dim"))
    return label
