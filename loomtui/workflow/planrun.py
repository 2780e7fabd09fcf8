"""Running a plan: its tasks stated as sandboxes that wait on each other in the order `schedule` chose.

`run_plan` checks the whole plan first (file:line errors, a cycle, claims that name
nothing) and states nothing when it is wrong. Then every task becomes a sandbox
whose `after` is the tasks the schedule puts before it; the engine starts each one
as soon as those have merged, from the target's new tip. The chosen order and its
reasons are audited (`plan.scheduled`) and kept on each task.
"""

from __future__ import annotations

import posixpath
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from loomtui.errors import ConfigError, LoomError, listed, plural, shown
from loomtui.execution.lifecycle import ARCHIVED, EXITED, FAILED, LIVE, PLANNED
from loomtui.execution.procs import is_alive
from loomtui.execution.sandboxes import MissingRuntimeInput, checked_runtime
from loomtui.governance.coordinator import governed_coordinator
from loomtui.store import ENDED_STATUSES, SandboxRecord
from loomtui.workflow.engine import Workflow
from loomtui.workflow.plan import (
    PLAN_PATH,
    Plan,
    Schedule,
    claim_problems,
    coordinator_relations,
    load_plan_checked,
    raise_problems,
    schedule,
)
from loomtui.workflow.steps import StepView, caller_id, holder_gone, holder_text
from loomtui.workflow.tasks import create_sandbox, remove
from loomtui.workspace import Workspace

PLAN_KEY: Final = "plan"
"""On a planned task's sandbox: {"run", "file", "task", "waits_on", "reasons", "tasks"} ("tasks": every task
its run states, in order: a run cut short is told by the tasks it did not state), and "cancelled" once
`plan cancel` ended its run (then over, not cut short)."""

Say = Callable[[str], None]


@dataclass(frozen=True)
class PlanRun:
    """A plan as it was run: its id, the schedule, and the sandbox of each task."""

    run_id: str
    schedule: Schedule
    sandboxes: dict[str, str]


def scheduled(workspace: Workspace, relative: str = PLAN_PATH) -> Schedule:
    """The plan file, checked and scheduled against the repository's region graph."""
    # Every problem at once: the tasks', their runtimes' and their claims' (each stage stopped the next).
    plan, problems = load_plan_checked(workspace.root, relative)
    problems += _runtime_problems(workspace, plan)  # `plan show` says what `plan run` would refuse
    regions_of, depends = coordinator_relations(governed_coordinator(workspace))
    problems += claim_problems(plan, regions_of)
    raise_problems(sorted(problems, key=lambda problem: problem.line or 0))
    return schedule(plan, regions_of, depends)


def run_plan(workspace: Workspace, relative: str = PLAN_PATH, *, say: Say | None = None,
             isolate: bool | None = None, data_for: Callable[[str], dict[str, Any]] | None = None,
             again: bool = False, resume: bool = False) -> PlanRun:
    """State every task of the plan as a sandbox, each waiting on the tasks scheduled before it.

    `data_for(task name)` adds fields to a task's sandbox (the demo names its agents). Refused while an
    earlier run of the same file has tasks not ended, unless `again`: a second `plan run` stated every
    task twice, each to be done twice, the copies refused on their own claims. Refused too when the newest
    run was cut short (killed part way), unless `resume` (the tasks it did not state, in that run) or `again`:
    a run again stated the ones done already once more, merged twice.
    """
    say = say or (lambda _line: None)
    relative = plan_path(workspace, relative)  # one spelling: `./x` and `$PWD/x` ran the same plan a second time
    plan_schedule = scheduled(workspace, relative)
    with _running(workspace, relative):
        return _state_tasks(workspace, relative, plan_schedule, say, isolate, data_for, again, resume)


PLAN_LEASE_S: Final = 300.0
"""How long a plan file's run lease holds: stating its tasks takes seconds, so an older one is a run that died
(on another machine too, which no pid here can say: it kept every later run and resume refused)."""


def _lease_gone(held: str) -> bool:
    """Whether a plan lease's holder (`caller_id#taken`) has ended, or took it longer ago than a run takes."""
    holder, _, taken = held.rpartition("#")
    return not taken.isdigit() or holder_gone(holder) or time.time() - int(taken) > PLAN_LEASE_S


@contextmanager
def _running(workspace: Workspace, relative: str, doing: str = "plan-run") -> Iterator[None]:
    """The plan file's run lease while its tasks are stated (or cancelled): two `plan run`s at one moment each
    found no run going, and both stated every task; a cancel beside a run left the tasks stated after it."""
    holder = f"{caller_id()}#{int(time.time())}"
    held_by = workspace.store.take_step_lease(f"plan:{relative}", holder, doing, is_gone=_lease_gone)
    if held_by is not None:
        raise LoomError(f"{relative} is being run by {holder_text(held_by.rpartition('#')[0])} now; "
                        "`loomtui plan show` follows its tasks", exit_code=1)
    try:
        yield
    finally:
        workspace.store.drop_step_lease(f"plan:{relative}", holder)


def _state_tasks(workspace: Workspace, relative: str, plan_schedule: Schedule, say: Say, isolate: bool | None,
                 data_for: Callable[[str], dict[str, Any]] | None, again: bool, resume: bool) -> PlanRun:
    short = _cut_short(workspace, relative)
    if resume and short is None:
        raise LoomError(f"no run of {relative} was cut short: nothing to resume", exit_code=1)
    if short is not None and not (resume or again):
        raise LoomError(f"plan run {short.run_id} of {relative} was cut short: {short.said()}; `loomtui plan run "
                        f"{relative} --resume` states the rest, --again every task once more", exit_code=1)
    if not (again or resume):
        _refuse_a_second_run(workspace, relative)
    plan = plan_schedule.plan
    resumed = short if resume else None
    run_id = resumed.run_id if resumed else secrets.token_hex(3)
    workspace.record("plan.scheduled", run_id, {"file": relative, **plan_schedule.as_dict(),
                                                **({"resumed": sorted(resumed.stated)} if resumed else {})})
    for edge in plan_schedule.edges:
        say(f"{edge.before} before {edge.after} ({edge.kind}): {edge.reason}")
    ids: dict[str, str] = dict(resumed.stated) if resumed else {}
    flow = Workflow(workspace)
    by_name = {task.name: task for task in plan.tasks}
    names = [name for wave in plan_schedule.waves for name in wave]
    for wave in plan_schedule.waves:
        for name in wave:
            if name in ids:
                say(f"[{name}] sandbox {ids[name]}: stated by this run before it was cut short")
                continue
            task = by_name[name]
            before = [edge.before for edge in plan_schedule.edges if edge.after == name]
            reasons = [edge.reason for edge in plan_schedule.edges if edge.after == name]
            record = create_sandbox(
                workspace, task.task, task.runtime, claims=task.claims, isolate=isolate,
                script=workspace.root / task.script if task.script else None,
                after=[ids[b] for b in before], autostart=True, wait_for_claims=True,
                data={PLAN_KEY: {"run": run_id, "file": relative, "task": name, "waits_on": before,
                                 "reasons": reasons, "tasks": names}, **(data_for(name) if data_for else {})})
            ids[name] = record.id
            waits = f", after {', '.join(before)}" if before else ""
            say(f"[{name}] sandbox {record.id}{waits}: {flow.view(record).line()}")
    return PlanRun(run_id, plan_schedule, ids)


def plan_path(workspace: Workspace, given: str) -> str:
    """A plan file's path from the repository's root as one spelling (`./.loom/p.yaml`, the absolute path
    and `.loom/p.yaml` are one file); one outside the repository is left as given, to be refused as such."""
    path = Path(given)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(workspace.root.resolve())
        except (OSError, ValueError):
            return given
    return posixpath.normpath(path.as_posix())


@dataclass(frozen=True)
class CutShort:
    """The newest run of a plan file, which stated only some of its tasks: its `plan run` was killed part way."""

    run_id: str
    stated: dict[str, str]  # task name -> sandbox id
    missing: tuple[str, ...]

    def said(self) -> str:
        total = len(self.stated) + len(self.missing)
        return (f"{len(self.stated)} of {plural(total, 'task')} stated ({listed(sorted(self.stated))}), "
                f"not {listed(list(self.missing))}")


def _cut_short(workspace: Workspace, relative: str) -> CutShort | None:
    """The newest run of the plan file at `relative` when it did not state every task it meant to, else None."""
    runs: dict[str, list[SandboxRecord]] = {}
    for record in workspace.store.list_sandboxes(include_archived=True):  # a cancelled task was stated too
        plan = record.data.get(PLAN_KEY)
        if isinstance(plan, dict) and plan.get("file") == relative:
            runs.setdefault(str(plan.get("run")), []).append(record)
    if not runs:
        return None
    run_id, records = max(runs.items(), key=lambda run: max(r.created for r in run[1]))
    meant = records[0].data[PLAN_KEY].get("tasks")
    if not isinstance(meant, list) or any(r.data[PLAN_KEY].get("cancelled") for r in records):
        return None  # stated before a run said its tasks, or cancelled: over, nothing to resume
    stated = {str(r.data[PLAN_KEY].get("task")): r.id for r in records}
    missing = tuple(str(name) for name in meant if name not in stated)
    return CutShort(run_id, stated, missing) if missing else None


def _refuse_a_second_run(workspace: Workspace, relative: str) -> None:
    # A task that failed or ended without a change does not run again unless a person starts it: `plan cancel`
    # leaves it as it is, and counted here it kept the file refused for good.
    going = [r for r in workspace.store.list_sandboxes() if isinstance(r.data.get(PLAN_KEY), dict)
             and r.data[PLAN_KEY].get("file") == relative and r.status not in (*ENDED_STATUSES, FAILED, EXITED)]
    if going and all(r.data[PLAN_KEY].get("cancelled") for r in going):
        # Cancelled already: the tasks it left are begun, and a run now would do each of them a second time.
        left = listed([f"{r.data[PLAN_KEY].get('task')} ({r.id}, {r.status})" for r in going])
        raise LoomError(f"{relative}'s cancelled run left {plural(len(going), 'task')} not ended: {left}; see "
                        f"each through (merged or removed) first, or --again to state every task once more",
                        exit_code=1)
    if going:
        runs = list(dict.fromkeys(str(r.data[PLAN_KEY]["run"]) for r in going))
        raise LoomError(f"{relative} is running already (plan run {listed(runs)}: {plural(len(going), 'task')} not "
                        f"ended); cancel that run first (`loomtui plan cancel {runs[-1]}`: with no run named, "
                        f"the newest of any file goes), or --again to state every task once more",
                        exit_code=1)


def _runtime_problems(workspace: Workspace, plan: Plan) -> list[ConfigError]:
    """Each task's runtime and its script, checked before any task is stated: a bad one found
    half way through `plan run` left the tasks before it started, and a second run started them again."""
    runtimes = workspace.load_config().runtimes
    problems: list[ConfigError] = []  # every task's, not the first alone
    for task in plan.tasks:
        if task.runtime not in runtimes:
            problems.append(ConfigError(plan.path, task.runtime_line or task.line,
                                        f"task {task.name}: unknown runtime {task.runtime!r} "
                                        f"(configured: {', '.join(sorted(runtimes))})"))
            continue
        try:
            checked_runtime(workspace, task.runtime, workspace.root / task.script if task.script else None)
        except MissingRuntimeInput as exc:
            # A plan's task names no program or script of its own: `command` can never run from a plan.
            fix = ("name a runtime in .loom/loom.yaml whose argv runs the program (runtimes: {mytool: {argv: "
                   "[mytool, --prompt, '{task}']}}) and give that" if exc.what == "command" else
                   "give it a `script:` (a path in the repository)")
            problems.append(ConfigError(plan.path, task.line, f"task {task.name}: {exc}; {fix}"))
        except LoomError as exc:  # one about its script (none such, or one its runtime takes none of) at `script:`
            line = task.script_line if task.script_line and "script" in str(exc) else task.runtime_line
            problems.append(ConfigError(plan.path, line or task.line, f"task {task.name}: {exc}"))
    return problems


def plan_tasks(workspace: Workspace, run_id: str | None = None, *, file: str | None = None) -> dict[str, SandboxRecord]:
    """The sandboxes of a plan run (the newest run when `run_id` is None; of `file`'s runs when given, else of
    any plan's), by task name.

    Raises LoomError (exit 2) for a `run_id` no plan run has."""
    spelled = None if file is None else plan_path(workspace, file)
    records = [r for r in workspace.store.list_sandboxes(include_archived=True) if r.data.get(PLAN_KEY)
               and (spelled is None or r.data[PLAN_KEY].get("file") == spelled)]
    if run_id is not None and not any(r.data[PLAN_KEY]["run"] == run_id for r in records):
        runs = list(dict.fromkeys(r.data[PLAN_KEY]["run"] for r in sorted(records, key=lambda r: -r.created)))
        known = f" (runs, newest first: {listed(runs)})" if runs else " (no plan has run here)"
        raise LoomError(f"no plan run {shown(run_id)}{known}", exit_code=2)
    if not records:
        return {}
    if run_id is None:
        run_id = max(records, key=lambda r: r.created).data[PLAN_KEY]["run"]
    return {str(r.data[PLAN_KEY]["task"]): r for r in sorted(records, key=lambda r: r.created)
            if r.data[PLAN_KEY]["run"] == run_id}


def task_states(workspace: Workspace, run_id: str | None = None, *,
                file: str | None = None) -> list[tuple[str, SandboxRecord, StepView]]:
    """Each task of a plan run (`file`'s newest when given) with its sandbox and its next step."""
    tasks = plan_tasks(workspace, run_id, file=file)
    steps = Workflow(workspace).views(list(tasks.values()))
    return [(name, record, steps[record.id]) for name, record in tasks.items()]


@dataclass(frozen=True)
class TaskCancel:
    """What `cancel_plan` did with one task: cancelled (archived), or left, and why."""

    task: str
    sandbox: str
    status: str
    """Its status now."""
    cancelled: bool
    why: str = ""
    """Why it was left: started already, or ended."""

    def line(self) -> str:
        return f"[{self.task}] sandbox {self.sandbox} " + ("cancelled" if self.cancelled else self.why)


def cancel_plan(workspace: Workspace, run_id: str | None = None) -> list[TaskCancel]:
    """Archive the plan's tasks that have not started (their claims go back); running ones are left.
    Tasks archived already are not listed. The run is marked cancelled: one cut short is then over, its
    unstated tasks no longer offered to `--resume`. Raises LoomError (exit 2) for an unknown `run_id`."""
    tasks = plan_tasks(workspace, run_id)
    files = {str(record.data[PLAN_KEY].get("file")) for record in tasks.values()}
    if not files:
        return []
    with _running(workspace, files.pop(), "plan-cancel"):
        return _cancel_tasks(workspace, tasks)


def _cancel_tasks(workspace: Workspace, tasks: dict[str, SandboxRecord]) -> list[TaskCancel]:
    done = []
    for record in tasks.values():
        workspace.store.update_sandbox(record.id, data={PLAN_KEY: {**record.data[PLAN_KEY], "cancelled": True}})
    for name, record in tasks.items():
        starting = record.status == PLANNED and is_alive(record.pid, record.pid_start)  # its supervisor is up
        if record.status == PLANNED and not starting:
            try:
                remove(workspace, record.id, force=True)
            except LoomError as exc:  # it started meanwhile
                now = workspace.store.get_sandbox(record.id) or record
                done.append(TaskCancel(name, record.id, now.status, False, f"not cancelled: {exc}"))
                continue
            done.append(TaskCancel(name, record.id, ARCHIVED, True))
        elif record.status in LIVE or starting:
            state = "starting" if starting else record.status
            done.append(TaskCancel(name, record.id, record.status, False, f"is {state}: left running (stop it first)"))
        elif record.status != ARCHIVED:
            done.append(TaskCancel(name, record.id, record.status, False, f"is {record.status}: left as it is"))
    return done
