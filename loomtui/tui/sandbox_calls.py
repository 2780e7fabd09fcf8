"""Engine calls the Sandboxes view runs in its workers, one per key: what each does, without Textual."""

from __future__ import annotations

from loomtui.errors import LoomError
from loomtui.execution import sandboxes
from loomtui.execution.lifecycle import LIVE, MERGED
from loomtui.workspace import Workspace


def start(workspace: Workspace, sandbox_id: str) -> None:
    """Start a planned sandbox's agent now (the engine says what holds it back, if anything)."""
    from loomtui.workflow.tasks import start as start_task

    start_task(workspace, sandbox_id)


def retry(workspace: Workspace, sandbox_id: str) -> None:
    """Do the sandbox's next step now, a failed one tried again (`sandbox advance`); one that fails again is
    raised, to be said in one line."""
    from loomtui.workflow.engine import Workflow, advance
    from loomtui.workflow.steps import PersonAction, Step

    now = Workflow(workspace).view(sandboxes.get_sandbox(workspace, sandbox_id))
    if now.action not in (PersonAction.RETRY, PersonAction.ADVANCE):  # said why not (it said "done" of nothing)
        raise LoomError(f"sandbox {sandbox_id}: nothing to retry: {now.line()}")
    moved = advance(workspace, sandbox_id, retry=True)
    if moved.now.step == Step.FAILED_STEP:
        raise LoomError(moved.now.line())


def drop_after(workspace: Workspace, sandbox_id: str) -> None:
    """A held task stops waiting for the tasks it came after that will not merge; it starts without them."""
    from loomtui.workflow.tasks import drop_after as drop

    drop(workspace, sandbox_id)


def after_statuses(workspace: Workspace, sandbox_id: str) -> dict[str, str]:
    """The status of each task a sandbox waits for, by id; `merged` for one merged and archived since (the
    app's table has no archived sandboxes: W asked to start without a change that was in the target)."""
    from loomtui.workflow.steps import has_merged

    record = sandboxes.get_sandbox(workspace, sandbox_id)
    found = [workspace.store.get_sandbox(other) for other in record.after]  # one removed since: no status
    return {other.id: MERGED if has_merged(other) else str(other.status) for other in found if other is not None}


def merge(workspace: Workspace, sandbox_id: str) -> None:
    """A person's merge, through the workflow: people's decision followed first, then a clean merge."""
    from loomtui.workflow.engine import request_merge

    request_merge(workspace, sandbox_id)


def archive(workspace: Workspace, sandbox_id: str) -> None:
    """Archive without losing work (uncommitted changes go to the branch first); claims go back."""
    from loomtui.workflow import tasks

    record = sandboxes.get_sandbox(workspace, sandbox_id)
    if record.status in LIVE:
        raise LoomError(f"sandbox {sandbox_id} is {record.status}; stop it first (s)")
    tasks.remove(workspace, sandbox_id, force=True)


def archive_done(workspace: Workspace) -> None:
    """Archive every merged or rejected sandbox (`tasks.remove_done`), saying which were refused and why."""
    from loomtui.workflow.tasks import remove_done

    refused = [f"{why}" for _, why in remove_done(workspace) if isinstance(why, LoomError)]
    if refused:
        raise LoomError(f"{len(refused)} not archived: {'; '.join(refused)}")
