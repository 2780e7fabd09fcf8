"""Running a plan: its tasks stated as sandboxes that wait on each other in the order `schedule` chose.

`run_plan` checks the whole plan first (file:line errors, a cycle, claims that name
nothing) and states nothing when it is wrong. Then every task becomes a sandbox
whose `after` is the tasks the schedule puts before it; the engine starts each one
as soon as those have merged, from the target's new tip. The chosen order and its
reasons are audited (`plan.scheduled`) and kept on each task.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from loomtui.errors import LoomError
from loomtui.execution.lifecycle import ARCHIVED, LIVE, PLANNED
from loomtui.execution.procs import is_alive
from loomtui.execution.sandboxes import checked_runtime
from loomtui.governance.coordinator import governed_coordinator
from loomtui.store import SandboxRecord
from loomtui.workflow.engine import Workflow
from loomtui.workflow.plan import PLAN_PATH, Plan, Schedule, coordinator_relations, load_plan, schedule
from loomtui.workflow.steps import StepView
from loomtui.workflow.tasks import create_sandbox, remove
from loomtui.workspace import Workspace

PLAN_KEY: Final = "plan"
"""On a planned task's sandbox: {"run", "file", "task", "waits_on", "reasons"}."""

Say = Callable[[str], None]


@dataclass(frozen=True)
class PlanRun:
    """A plan as it was run: its id, the schedule, and the sandbox of each task."""

    run_id: str
    schedule: Schedule
    sandboxes: dict[str, str]


def scheduled(workspace: Workspace, relative: str = PLAN_PATH) -> Schedule:
    """The plan file, checked and scheduled against the repository's region graph."""
    plan = load_plan(workspace.root, relative)
    _check_runtimes(workspace, plan)  # `plan show` says what `plan run` would refuse
    return schedule(plan, *coordinator_relations(governed_coordinator(workspace)))


def run_plan(workspace: Workspace, relative: str = PLAN_PATH, *, say: Say | None = None,
             isolate: bool | None = None, data_for: Callable[[str], dict[str, Any]] | None = None) -> PlanRun:
    """State every task of the plan as a sandbox, each waiting on the tasks scheduled before it.

    `data_for(task name)` adds fields to a task's sandbox (the demo names its agents).
    """
    say = say or (lambda _line: None)
    plan_schedule = scheduled(workspace, relative)
    plan = plan_schedule.plan
    run_id = secrets.token_hex(3)
    workspace.record("plan.scheduled", run_id, {"file": relative, **plan_schedule.as_dict()})
    for edge in plan_schedule.edges:
        say(f"{edge.before} before {edge.after} ({edge.kind}): {edge.reason}")
    ids: dict[str, str] = {}
    flow = Workflow(workspace)
    by_name = {task.name: task for task in plan.tasks}
    for wave in plan_schedule.waves:
        for name in wave:
            task = by_name[name]
            before = [edge.before for edge in plan_schedule.edges if edge.after == name]
            reasons = [edge.reason for edge in plan_schedule.edges if edge.after == name]
            record = create_sandbox(
                workspace, task.task, task.runtime, claims=task.claims, isolate=isolate,
                script=workspace.root / task.script if task.script else None,
                after=[ids[b] for b in before], autostart=True, wait_for_claims=True,
                data={PLAN_KEY: {"run": run_id, "file": relative, "task": name, "waits_on": before,
                                 "reasons": reasons}, **(data_for(name) if data_for else {})})
            ids[name] = record.id
            waits = f", after {', '.join(before)}" if before else ""
            say(f"[{name}] sandbox {record.id}{waits}: {flow.view(record).line()}")
    return PlanRun(run_id, plan_schedule, ids)


def _check_runtimes(workspace: Workspace, plan: Plan) -> None:
    """Each task's runtime and its script, checked before any task is stated: a bad one found
    half way through `plan run` left the tasks before it started, and a second run started them again."""
    runtimes = workspace.load_config().runtimes
    for task in plan.tasks:
        if task.runtime not in runtimes:
            raise LoomError(f"{plan.path}:{task.line}: task {task.name}: unknown runtime {task.runtime!r} "
                            f"(configured: {', '.join(sorted(runtimes))})")
        try:
            checked_runtime(workspace, task.runtime, workspace.root / task.script if task.script else None)
        except LoomError as exc:
            raise LoomError(f"{plan.path}:{task.line}: task {task.name}: {exc}") from None


def plan_tasks(workspace: Workspace, run_id: str | None = None) -> dict[str, SandboxRecord]:
    """The sandboxes of a plan run (the newest run when `run_id` is None), by task name."""
    records = [r for r in workspace.store.list_sandboxes(include_archived=True) if r.data.get(PLAN_KEY)]
    if not records:
        return {}
    if run_id is None:
        run_id = max(records, key=lambda r: r.created).data[PLAN_KEY]["run"]
    return {str(r.data[PLAN_KEY]["task"]): r for r in sorted(records, key=lambda r: r.created)
            if r.data[PLAN_KEY]["run"] == run_id}


def task_states(workspace: Workspace, run_id: str | None = None) -> list[tuple[str, SandboxRecord, StepView]]:
    """Each task of a plan run with its sandbox and its next step."""
    flow = Workflow(workspace)
    return [(name, record, flow.view(record)) for name, record in plan_tasks(workspace, run_id).items()]


def cancel_plan(workspace: Workspace, run_id: str | None = None) -> list[str]:
    """Archive the plan's tasks that have not started (their claims go back); running ones are left."""
    lines = []
    for name, record in plan_tasks(workspace, run_id).items():
        starting = record.status == PLANNED and is_alive(record.pid, record.pid_start)  # its supervisor is up
        if record.status == PLANNED and not starting:
            try:
                remove(workspace, record.id, force=True)
            except LoomError as exc:  # it started meanwhile
                lines.append(f"[{name}] sandbox {record.id} not cancelled: {exc}")
                continue
            lines.append(f"[{name}] sandbox {record.id} cancelled")
        elif record.status in LIVE or starting:
            lines.append(f"[{name}] sandbox {record.id} is {'starting' if starting else record.status}: left running "
                         "(stop it first)")
        elif record.status != ARCHIVED:
            lines.append(f"[{name}] sandbox {record.id} is {record.status}: left as it is")
    return lines
