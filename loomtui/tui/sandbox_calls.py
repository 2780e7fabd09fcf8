"""Engine calls the Sandboxes view runs in its workers, one per key: what each does, without Textual."""

from __future__ import annotations

from loomtui.errors import LoomError
from loomtui.execution import sandboxes
from loomtui.execution.lifecycle import LIVE
from loomtui.workspace import Workspace


def start(workspace: Workspace, sandbox_id: str) -> None:
    """Start a planned sandbox's agent now (the engine says what holds it back, if anything)."""
    from loomtui.workflow.tasks import start as start_task

    start_task(workspace, sandbox_id)


def drop_after(workspace: Workspace, sandbox_id: str) -> None:
    """A held task stops waiting for the tasks it came after that will not merge; it starts without them."""
    from loomtui.workflow.tasks import drop_after as drop

    drop(workspace, sandbox_id)


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
