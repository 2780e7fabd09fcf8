"""`loomtui plan run|show|cancel`: a plan of agent tasks, run in the order the code asks for."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loomtui.cli import STEP_HINTS, add_command, add_group, nonempty_arg, print_json, say_problems, workspace_for
from loomtui.errors import ConfigError, plural
from loomtui.workflow.plan import PLAN_PATH, Schedule

if TYPE_CHECKING:
    from loomtui.workspace import Workspace


def _file_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", type=nonempty_arg, default=PLAN_PATH, metavar="FILE",
                        help=f"the plan file, from the current directory or the repository root (default "
                             f"{PLAN_PATH})")


def _plan_file(args: argparse.Namespace, workspace: Workspace) -> str:
    from loomtui.workflow.planrun import plan_path

    """FILE as the shell named it, from the current directory, when it is there (`plan show p.yaml` in a
    subdirectory said `p.yaml: file not found`); else from the repository's root, as the default is."""
    given = str(args.file)
    here = Path.cwd() / given
    if not Path(given).is_absolute() and here.resolve() != (workspace.root / given).resolve() and here.is_file():
        return plan_path(workspace, str(here.absolute()))  # named from the root, as the run is kept
    return given


def _every_problem(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`command`, with a plan's problems said all at once, each as file:line (others name the first): a plan
    of five mistakes took five runs to find them."""
    def said(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ConfigError as exc:  # one problem or several (ConfigErrors): the same shape either way
            return say_problems(exc, args.json)
    return said


def _print_schedule(plan_schedule: Schedule, states: dict[str, str]) -> None:
    """The DAG as waves: each task with what it waits on and why, and its state when it has run."""
    reasons = {(e.before, e.after): f"{e.kind}: {e.reason}" for e in plan_schedule.edges}
    for number, wave in enumerate(plan_schedule.waves, 1):
        print(f"wave {number}")
        for name in wave:
            state = f"  [{states[name]}]" if name in states else ""
            print(f"  {name}{state}")
            for before in [e.before for e in plan_schedule.edges if e.after == name]:
                print(f"    after {before} ({reasons[(before, name)]})")


def cmd_plan_show(args: argparse.Namespace) -> int:
    from loomtui.workflow.planrun import scheduled, task_states
    from loomtui.workflow.steps import Step

    workspace = workspace_for(args)
    file = _plan_file(args, workspace)
    plan_schedule = scheduled(workspace, file)
    names = {t.name for t in plan_schedule.plan.tasks}
    tasks = [(name, record, view) for name, record, view in task_states(workspace, file=file) if name in names]
    if args.json:
        print_json({**plan_schedule.as_dict(), "states": {
            name: {"sandbox": record.id, "status": record.status, "step": str(view.step),
                   "next": view.line(STEP_HINTS)} for name, record, view in tasks}})
        return 0
    # An ended task's step (done) says nothing its status does not.
    _print_schedule(plan_schedule, {name: f"{record.id} {record.status}" + (
        f"; {view.line(STEP_HINTS)}" if view.step != Step.DONE else "") for name, record, view in tasks})
    return 0


def cmd_plan_run(args: argparse.Namespace) -> int:
    from loomtui.workflow.planrun import run_plan

    workspace = workspace_for(args)
    run = run_plan(workspace, _plan_file(args, workspace), say=None if args.json else print,
                   isolate=False if args.no_isolation else None, again=args.again,
                   resume=args.resume)
    if args.json:
        print_json({"run": run.run_id, "sandboxes": run.sandboxes, **run.schedule.as_dict()})
    else:
        print(f"plan run {run.run_id}: {plural(len(run.sandboxes), 'task')} (`loomtui plan show` follows them)")
    return 0


def cmd_plan_cancel(args: argparse.Namespace) -> int:
    from loomtui.workflow.planrun import cancel_plan

    results = cancel_plan(workspace_for(args), args.run)
    if args.json:
        print_json({"cancelled": [{"task": r.task, "sandbox": r.sandbox} for r in results if r.cancelled],
                    "left": [{"task": r.task, "sandbox": r.sandbox, "status": r.status, "why": r.why}
                             for r in results if not r.cancelled]})
        return 0
    print("\n".join(r.line() for r in results) or "no plan tasks to cancel")
    return 0


def register(commands: Any) -> None:
    """Add `plan` to the loomtui command."""
    plan = add_group(commands, "plan", "a plan of agent tasks: dependencies and conflict-aware order")
    show = add_command(plan, "show", _every_problem(cmd_plan_show),
                       "the plan's tasks as a DAG in waves, why each waits, and the state of the latest run",
                       json_flag=True, reads_only=True)
    _file_arg(show)
    run = add_command(plan, "run", _every_problem(cmd_plan_run),
                      "state every task as a sandbox; each starts once the tasks before it have merged",
                      json_flag=True)
    _file_arg(run)
    run.add_argument("--no-isolation", action="store_true",
                     help="run the agents as plain processes even where bubblewrap works")
    run.add_argument("--again", action="store_true",
                     help="state every task once more while an earlier run of the file has tasks not ended "
                          "(refused otherwise: each would be done twice)")
    run.add_argument("--resume", action="store_true",
                     help="state the tasks a run cut short (killed part way) did not, in that run (a run again is "
                          "refused then: the tasks done would be done twice)")
    cancel = add_command(plan, "cancel", cmd_plan_cancel,
                         "archive the plan's tasks that have not started (running ones are left)", json_flag=True)
    cancel.add_argument("run", nargs="?", metavar="RUN", help="the plan run id (default: the latest)")
