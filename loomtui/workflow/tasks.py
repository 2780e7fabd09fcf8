"""Stating a task and starting its agent: what `sandbox new`, the app's `n`, plans and the demo call.

A task is a sandbox record from the moment it is stated. One that waits on other
tasks (`after`) gets no claims and no worktree until they have merged: then the
engine prepares it from the target's new tip, so its agent starts from their work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from loomtui.coordination.claims import ClaimRefused, claim_targets
from loomtui.coordination.targets import is_line_range
from loomtui.errors import LoomError, abridged, listed, shown
from loomtui.execution import agent_control, review, sandboxes
from loomtui.execution.context_files import CONTEXT_EDITED_KEY, keep_edited, not_in_place
from loomtui.execution.lifecycle import ARCHIVED, DONE_WITH, EXITED, FAILED, PLANNED, REJECTED, transition
from loomtui.execution.procs import is_alive
from loomtui.execution.review import RemoveResult
from loomtui.governance.coordinator import governed_coordinator
from loomtui.store import SandboxRecord
from loomtui.workflow.engine import SUPERVISOR, Workflow, start_agent
from loomtui.workflow.steps import (
    AFTER_DROPPED_KEY,
    AFTER_KEY,
    AUTOSTART_KEY,
    CLAIMED_LINES_KEY,
    CREATOR_KEY,
    RUNS_KEY,
    STEP_ERROR_KEY,
    PersonAction,
    Step,
    caller_id,
    has_merged,
    holding_step,
    merged_elsewhere,
    nobody_on_it,
)
from loomtui.workspace import Workspace


def create_sandbox(
    workspace: Workspace, task: str, runtime: str, *, base: str = "HEAD", claims: Sequence[str] = (),
    script: Path | str | None = None, context: str | None = None, isolate: bool | None = None,
    command: Sequence[str] = (), after: Sequence[str] = (), autostart: bool = False,
    wait_for_claims: bool = False, data: dict[str, Any] | None = None,
) -> SandboxRecord:
    """State a task: check its inputs, record it, and (unless it waits on other tasks) claim its
    targets, run the pre-start policy and create its worktree and branch.

    Nothing is recorded when an input is wrong (unknown runtime, program not on PATH,
    missing base ref, bad script, a claim target that names nothing, an unknown task
    in `after`). A refused claim or a policy block leaves the sandbox `rejected` with
    the reason, and raises. `autostart`: the engine starts the agent once nothing
    holds it back (an approval, other tasks); otherwise `start` does. `wait_for_claims`
    (planned work): a claim another sandbox holds makes the task wait, not rejected.
    """
    flow = Workflow(workspace)
    flow.policy  # noqa: B018  (a broken loom.yaml or policy is bad input too: said before anything is recorded)
    resolved: dict[str, list[str]] = {}
    if claims:
        # A mistyped target is bad input: say so before anything is recorded. (A refused
        # claim, by contrast, is a decision, and leaves a rejected record behind.)
        coordinator = governed_coordinator(workspace)
        resolved = {target: coordinator.resolve(target) for target in claims}
    waits_on = [_dependency(workspace, ref) for ref in after]
    # After tasks merged already, archived since too (it waited on them for good: at `prepare`, no hint).
    prepare_now = all(has_merged(sandboxes.get_sandbox(workspace, w)) for w in waits_on)
    from_lines = {}
    if not prepare_now:
        # Lines name the code they hold now: the tasks it waits on move them (a merge adding 40 lines above had
        # `path:1908-1945` claim the method above the one meant, and left that one free to anyone).
        from_lines = {region: target for target in claims if is_line_range(target) for region in resolved[target]}
        claims = list(dict.fromkeys(region for target in claims
                                    for region in (resolved[target] if is_line_range(target) else [target])))
    # Prepared here, so its errors reach the caller; the engine leaves it alone meanwhile (CREATOR_KEY).
    creator = {CREATOR_KEY: caller_id()} if prepare_now else {}
    record = sandboxes.plan_sandbox(
        workspace, task, runtime, base=base, claims=claims, script=script, isolate=isolate, command=command,
        data={AUTOSTART_KEY: autostart, **creator, **({AFTER_KEY: waits_on} if waits_on else {}),
              **({CLAIMED_LINES_KEY: from_lines} if from_lines else {}), **(data or {})})
    if prepare_now and any(merged_elsewhere(sandboxes.get_sandbox(workspace, w), record) for w in waits_on):
        # One merged into another branch (`--into release`): held, as its step says, never started without it.
        prepare_now = False
        workspace.store.update_sandbox(record.id, data={CREATOR_KEY: None})
    # Ctrl-C anywhere from here cancels the task (removed unless its agent started): mid-way, a planned task
    # was left holding its claims, its worktree half made; in the write below, or before the start, planned
    # for no one to start, exit 130 with nothing said.
    try:
        if prepare_now:
            try:
                flow.prepare(record, wait_for_claims=wait_for_claims, from_target=bool(waits_on), context=context)
            except LoomError as exc:
                exc.recorded_sandbox = record.id  # kept, rejected: a script asking in JSON is told which
                raise
            finally:
                # Prepared, or waiting for claims: from here the engine moves it on (a creator still running,
                # the app, would otherwise read as preparing it for as long as it runs).
                workspace.store.update_sandbox(record.id, data={CREATOR_KEY: None})
        if autostart:
            flow.advance(record.id)
    except KeyboardInterrupt:
        raise _interrupted_starting(workspace, record.id) from None
    return sandboxes.get_sandbox(workspace, record.id)


class TaskInterrupted(LoomError):
    """The task's creation was interrupted (Ctrl-C); what was made of it is removed, its claims given back."""

    exit_code = 130


def _abandoned(workspace: Workspace, sandbox_id: str) -> TaskInterrupted:
    """Remove a task whose creation was interrupted, with whatever was made of it (there is no work yet)."""
    try:
        remove(workspace, sandbox_id, force=True, delete_branch=True)
    except (LoomError, KeyboardInterrupt) as exc:  # a second Ctrl-C, or a refusal: it is said, kept as it is
        why = str(exc) or "interrupted again"
        return TaskInterrupted(f"interrupted: sandbox {sandbox_id} was left planned ({why}); "
                               f"`loomtui sandbox rm {sandbox_id} --force` removes it")
    return TaskInterrupted(f"interrupted: sandbox {sandbox_id} was not created (what was made of it is removed, "
                           "its claims given back)")


def _interrupted_starting(workspace: Workspace, sandbox_id: str) -> TaskInterrupted:
    """Ctrl-C while the agent was being started: removed if it had not started, else said to run (the
    command ended without a word while the agent went on)."""
    record = sandboxes.get_sandbox(workspace, sandbox_id)
    if record.status == PLANNED and not is_alive(record.pid, record.pid_start):  # no supervisor starting it
        return _abandoned(workspace, sandbox_id)
    return TaskInterrupted(f"interrupted: sandbox {sandbox_id} was made and its agent started, and goes on; "
                           f"`loomtui sandbox stop {sandbox_id}` stops it, `loomtui sandbox rm {sandbox_id} --force` "
                           "removes it")


def _dependency(workspace: Workspace, ref: str) -> str:
    other = sandboxes.get_sandbox(workspace, ref)  # an unknown id is a one-line error
    if other.status in (REJECTED, ARCHIVED) and not other.merged_commit:
        raise LoomError(f"sandbox {other.id} is {other.status} and will never merge; nothing can wait on it")
    return other.id


def start(workspace: Workspace, sandbox_id: str) -> SandboxRecord:
    """Start a planned sandbox's agent now, or run again the agent of one that ended without a change;
    a one-line error (exit 1) says what holds it back."""
    flow = Workflow(workspace)
    record = sandboxes.get_sandbox(workspace, sandbox_id)
    sandboxes.refuse_elsewhere(record, "start it")
    view = flow.view(record)
    if view.action == PersonAction.RERUN:
        return _run_again(flow, record)
    if record.status != PLANNED:
        raise LoomError(f"sandbox {record.id} is {record.status}; only a planned sandbox, or one whose agent "
                        "ended without a change, starts", exit_code=1)
    if view.step not in (Step.START, Step.WAIT_START):
        raise LoomError(f"sandbox {record.id} cannot start yet: {view.line()}", exit_code=1)
    return start_agent(workspace, record)


LAST_RUN_SETTLE_S: Final = 30.0
"""How long a run again waits for the last run's supervisor to finish."""
RUN_KEYS: Final = ("agent_pid", "agent_pid_start", "exit_signal", "error", "started_at", "ended_at",
                   "stop_requested", "killed_after_grace", "orphan", "agent_result", STEP_ERROR_KEY,
                   CONTEXT_EDITED_KEY)
"""What a run of the agent leaves in its record, cleared when it runs again: a stop request kept would
have the new supervisor kill the new agent, an old pid would be signalled."""


def _run_again(flow: Workflow, record: SandboxRecord) -> SandboxRecord:
    """The agent of a sandbox that ended without a change, run again in its worktree, with its task and
    its claims (taken again if they went back): planned again, then started, audited as such."""
    workspace = flow.workspace
    # The last run's supervisor may still be finishing (advancing the task after its agent's end): a
    # task planned again under it would be started by it too, and the new start is refused while it lives.
    deadline = time.monotonic() + LAST_RUN_SETTLE_S
    while is_alive(record.pid, record.pid_start) and time.monotonic() < deadline:
        time.sleep(0.1)
        record = sandboxes.get_sandbox(workspace, record.id)
    if is_alive(record.pid, record.pid_start):
        raise LoomError(f"sandbox {record.id}: the supervisor of its last run (pid {record.pid}) is still "
                        "finishing; try again in a moment", exit_code=1)
    with holding_step(workspace, record.id, "rerun", busy="; try again when it is done"):
        record = sandboxes.get_sandbox(workspace, record.id)
        if flow.view(record).action != PersonAction.RERUN:  # moved on since it was read
            raise LoomError(f"sandbox {record.id} is {record.status}: {flow.view(record).line()}", exit_code=1)
        paths = sandboxes.record_paths(workspace.paths, record)
        worktree = paths.worktree
        if not worktree.is_dir():
            raise LoomError(f"sandbox {record.id}: its worktree {worktree} is gone; state the task again "
                            "(`sandbox new`)", exit_code=1)
        _context_in_place(workspace, record, paths.dir, worktree, paths.context)
        claim_ids = record.data.get("claim_ids")
        if record.claim_targets and not workspace.store.live_claims(record.id):
            try:
                taken = claim_targets(governed_coordinator(workspace), record.id, list(record.claim_targets),
                                      reason=abridged(record.task, 200))
            except ClaimRefused as exc:
                raise LoomError(f"sandbox {record.id} cannot run again yet: {exc}", exit_code=1) from None
            claim_ids = [c.id for c in taken]
        runs = int(record.data.get(RUNS_KEY) or 1) + 1
        transition(workspace, record.id, PLANNED, allowed_from=frozenset({EXITED, FAILED}),
                   reason=f"run again by {workspace.actor}", audit={"run": runs, "after": record.status},
                   data={**dict.fromkeys(RUN_KEYS), "claim_ids": claim_ids, RUNS_KEY: runs})
    sandboxes.mark_log(workspace, record.id, f"run {runs}, started again by {workspace.actor}")
    try:
        return sandboxes.start(workspace, record.id, supervisor=SUPERVISOR)
    except LoomError:  # planned again, the app's own advance may start it first: it runs, as asked
        if sandboxes.started_by_another(workspace, record.id):
            return sandboxes.get_sandbox(workspace, record.id)
        raise


def _context_in_place(workspace: Workspace, record: SandboxRecord, state_dir: Path, worktree: Path,
                      context: Path) -> None:
    """Put the slice back in the worktree's context files for the agent run again (an edit since its end kept
    aside, as at its end), or refuse the run (exit 1) naming those that cannot be: a run read none of it."""
    names = [str(name) for name in record.context_files]
    edited = keep_edited(state_dir, worktree, context, names)
    if edited:
        workspace.record("sandbox.context_edited", record.id, {"files": edited, "run_again": True})
    if wrong := not_in_place(worktree, context, names):
        raise LoomError(f"sandbox {record.id} cannot run again: loomtui's context cannot be written back to "
                        f"{listed([shown(name) for name in wrong])} in its worktree {worktree}; move "
                        f"{'it' if len(wrong) == 1 else 'them'} away, then run it again", exit_code=1)


def release_lost(workspace: Workspace, sandbox_ids: Sequence[str]) -> list[str]:
    """Of the sandboxes `reconcile` found without their worktree, give back the claims of each with
    nothing to review (its next step): nothing of it can run again. The ids released."""
    flow = Workflow(workspace)
    released = []
    for sandbox_id in sandbox_ids:
        record = workspace.store.get_sandbox(sandbox_id)
        if record is not None and record.worktree_missing and flow.view(record).step == Step.RELEASE:
            flow.advance(sandbox_id)
            released.append(sandbox_id)
    return released


def remove(workspace: Workspace, sandbox_id: str, *, force: bool = False, delete_branch: bool = False,
           grace: float = agent_control.DEFAULT_GRACE_S) -> RemoveResult:
    """Remove a sandbox's worktree and archive it (never losing work), then release its claims; the
    tasks that waited on it are held unless it had merged."""
    # Under the task's step lease, as every step is: a merge under way (main moved, `merged` not yet
    # recorded) is let finish first, or the merged change was archived as unmerged.
    record = sandboxes.get_sandbox(workspace, sandbox_id)
    # Another machine's first: its lease holder is never judged gone from here (a killed `rm` there read "being
    # advanced by process N ... (a review or a merge)" for good, where "remove it there" is the way on).
    sandboxes.refuse_elsewhere(record, "remove it")
    with holding_step(workspace, record.id, "remove", busy=" (a review or a merge); remove it when that is done"):
        result = review.remove(workspace, record.id, force=force, delete_branch=delete_branch, grace=grace,
                               no_review_runs=True)
    Workflow(workspace).advance(result.sandbox_id)
    return result


def remove_done(workspace: Workspace) -> list[tuple[str, RemoveResult | LoomError]]:
    """Archive every sandbox that is done with (`DONE_WITH`), oldest first, each as `remove` does without force:
    for each, its result, or why it was refused (one refusal does not stop the rest)."""
    outcomes: list[tuple[str, RemoveResult | LoomError]] = []
    # Another machine's are archived there, where their worktrees are.
    done = [record for record in workspace.store.list_sandboxes()
            if record.status in DONE_WITH and sandboxes.on_this_host(record)]
    for record in sorted(done, key=lambda r: r.created):
        try:
            outcomes.append((record.id, remove(workspace, record.id)))
        except LoomError as exc:
            outcomes.append((record.id, exc))
    return outcomes


def drop_after(workspace: Workspace, sandbox_id: str, dropped: Sequence[str] = ()) -> SandboxRecord:
    """A planned task stops waiting for tasks it comes after: those named, else every one not yet
    merged (one that failed or was rejected holds it for good). It is then prepared from its target
    as the target is, and started if it was to start. Audited as `sandbox.after_dropped`."""
    with workspace.store.transaction():
        record = sandboxes.get_sandbox(workspace, sandbox_id)
        after = [str(other) for other in record.data.get(AFTER_KEY) or []]
        if record.status != PLANNED:
            raise LoomError(f"sandbox {record.id} is {record.status}; only a planned task waits for others",
                            exit_code=1)
        if not after:
            raise LoomError(f"sandbox {record.id} waits for no other task", exit_code=1)
        named = [sandboxes.get_sandbox(workspace, ref).id for ref in dropped]
        strangers = [other for other in named if other not in after]
        if strangers:
            raise LoomError(f"sandbox {record.id} does not wait for {', '.join(strangers)} (it waits for "
                            f"{', '.join(after)})")
        unmerged = [other for other in after if not has_merged(found := sandboxes.get_sandbox(workspace, other))
                    or merged_elsewhere(found, record)]
        gone = named or unmerged
        if not gone:
            raise LoomError(f"sandbox {record.id}: the tasks it waits for have all merged", exit_code=1)
        keep = [other for other in after if other not in gone]
        dropped_before = [str(other) for other in record.data.get(AFTER_DROPPED_KEY) or []]
        workspace.store.update_sandbox(record.id, data={AFTER_KEY: keep, AFTER_DROPPED_KEY: [*dropped_before, *gone]})
        workspace.record("sandbox.after_dropped", record.id, {"dropped": gone, "after": keep})
    Workflow(workspace).advance(record.id)
    return sandboxes.get_sandbox(workspace, record.id)


def _after_flags(holders: list[str]) -> str:
    return f"run it again with {' '.join(f'--after {h}' for h in holders)}"


def refused_claims_hint(workspace: Workspace, refused: LoomError,
                        wait_for: Callable[[list[str]], str] = _after_flags) -> str:
    """For a claim other sandboxes hold: how to run the task once they have merged (`wait_for` says it as the
    front-end asks it: the CLI's `--after`), or what frees a holder that never will (one that failed keeps its
    claims; one nothing moves on), and that `rm` drops this record."""
    # What refused it only (a dependency beside it is a warning: waiting for that one frees nothing).
    named = sorted({c.sandbox_b for c in getattr(refused, "conflicts", ()) if c.blocking})
    holders = [record for record in (workspace.store.get_sandbox(h) for h in named) if record is not None]
    said, waitable = [], []
    found = {record.id for record in holders}
    for name in (h for h in named if h not in found):  # a person's, or an agent's outside loomtui: no merge comes
        said.append(f"{name} is no sandbox but a person's or an outside agent's name: `loomtui claim release "
                    f"--all --sandbox {name}` lets its claims go (theirs to run, or a lead's with --override REASON)")
    if not said and not holders:
        return ""
    flow = Workflow(workspace)
    for record in holders:
        if record.status in (FAILED, EXITED, REJECTED) and f"`loomtui sandbox rm {record.id}`" in str(refused):
            continue  # the refusal says it already (a holder whose agent failed without a change): not twice
        if record.status in (FAILED, EXITED, REJECTED):  # `--after` it: held at once, for good
            said.append(f"{record.id} ended without merging ({record.status}), its claims kept for a run again: "
                        f"`loomtui sandbox rm {record.id}` lets them go")
        elif nobody_on_it(workspace, record, view := flow.view(record)):  # `--after` it: waits on nothing moving
            said.append(f"nothing is moving {record.id} on (next: {view.line()}): "
                        f"`loomtui sandbox advance {record.id}` does")
        else:
            waitable.append(record.id)
    if waitable:
        said.append(f"to start it once {listed(waitable)} merged, {wait_for(waitable)}")
    drop = f"`loomtui sandbox rm {refused.recorded_sandbox}` drops this record"
    return f"; {'; '.join(said)} ({drop})" if said else f"; {drop}"
