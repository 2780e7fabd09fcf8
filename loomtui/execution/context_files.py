"""The context an agent gets: the knowledge layer's slice, written where its runtime reads it.

Every sandbox gets `context.md` in its state dir (`{context_file}`; a command or script
finds its path in `$LOOM_CONTEXT`, and in `$LOOM_CONTEXT_FILE` as before; Aider reads it
with `--read`). Claude Code reads `CLAUDE.md` and Codex `AGENTS.md` from the worktree, so
the slice is written there too, in place of the repository's own file (whose relevant
sections the slice carries, with where they come from).
Those files are loomtui's, not the agent's work: they stay out of the sandbox's
commits (`install_hooks(managed=...)`) and out of loomtui's own snapshot of it.

When no slice can be made (a broken source config, a budget smaller than the pinned
sections) the agent gets its task alone: the sandbox keeps why (`context_error`, audited
as `context.unavailable` with its id) and `context_warning` gives the line to show.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from loomtui.errors import LoomError
from loomtui.files import read_regular, write_atomically
from loomtui.store import ENDED_STATUSES, SandboxRecord
from loomtui.workspace import Workspace

if TYPE_CHECKING:  # the knowledge engine loads when a sandbox is created, not with the supervisor
    from loomtui.knowledge.slicing import ClaimInput, Slice
    from loomtui.knowledge.sources import Context

WORKTREE_FILES: Final[dict[str, str]] = {"claude": "CLAUDE.md", "codex": "AGENTS.md"}
"""Per agent program: the file in the worktree it reads as its instructions."""


OVERRIDING_FILES: Final[dict[str, str]] = {"AGENTS.md": "AGENTS.override.md"}
"""A file a program reads in place of its instructions file when the repository has one."""


def worktree_context_files(argv: Sequence[str], worktree: Path | None = None) -> list[str]:
    """The worktree files a runtime's program reads its context from (none for most): with the worktree, an
    overriding file it holds too (Codex reads a repository's AGENTS.override.md, and then not AGENTS.md:
    the slice never reached the model)."""
    name = WORKTREE_FILES.get(Path(argv[0]).name) if argv else None
    if not name:
        return []
    override = OVERRIDING_FILES.get(name)
    return [name, override] if override and worktree is not None and (worktree / override).exists() else [name]


MAX_KEPT_BYTES: Final = 1 << 20
"""The largest edited context file kept aside (the agent's: a larger one is said, not copied)."""
CONTEXT_EDITED_KEY: Final = "context_edited"
"""In a sandbox's data: the context files its agent edited (kept aside, out of its branch)."""


def keep_edited(state_dir: Path, worktree: Path, context: Path, names: Sequence[str]) -> dict[str, str]:
    """Each of the worktree's context files `names` that no longer holds what loomtui wrote there (`context`),
    copied into `state_dir` as `edited-NAME` and written back as it was: name -> where the copy is ("" when
    removed or unreadable). Such an edit stays out of the sandbox's commits, and an agent that made one was
    told, if at all, by the hook only: its end says so, and keeps the text; the agent run again (or a
    refresh) reads loomtui's context there, not what the last run planted."""
    try:
        given = context.read_bytes()
    except OSError:
        return {}
    edited: dict[str, str] = {}
    for name in names:
        path = worktree / name
        found: os.stat_result | None = None
        text = None
        with contextlib.suppress(OSError):  # the agent's: no link followed, no FIFO opened, no huge file read
            found = path.lstat()
            # Read as checked, in one open: a link swapped in after the look had a hidden file copied aside, where
            # the agent reads it (`context refresh` runs while the agent does), and a FIFO hung the refresh.
            text = read_regular(path, MAX_KEPT_BYTES)
        if text == given:
            continue
        kept = state_dir / f"edited-{Path(name).name}"
        if found is not None and stat.S_ISDIR(found.st_mode):
            # A folder in its place, files planted in it: no file is written back over a folder, and every run
            # after read none of loomtui's context (`context drift` said "fresh"). Moved aside whole, as kept.
            edited[name] = _move_aside(path, kept)
        else:
            try:
                if text is not None:
                    _clear_kept(kept)
                    write_atomically(kept, text)
            except OSError:
                text = None
            edited[name] = str(kept) if text is not None else ""
        with contextlib.suppress(OSError):  # by rename: a link there is replaced, never written through
            write_atomically(path, given)
    return edited


def _clear_kept(kept: Path) -> None:
    """Remove an earlier edit kept at `kept` (loomtui's own state dir) that a new one replaces, a folder too."""
    if kept.is_dir() and not kept.is_symlink():
        shutil.rmtree(kept)
    else:
        kept.unlink(missing_ok=True)


def _move_aside(folder: Path, kept: Path) -> str:
    """Move the agent's `folder` to `kept` (where it is, "" when it could not be moved: it stays in place)."""
    try:
        _clear_kept(kept)
        os.rename(folder, kept)
    except OSError:
        return ""
    return str(kept)


def not_in_place(worktree: Path, context: Path, names: Sequence[str]) -> list[str]:
    """Of the worktree's context files `names`, those that do not hold the context loomtui wrote (`context`):
    an agent run with them would read something else, or nothing. None when `context` cannot be read."""
    try:
        given = context.read_bytes()
    except OSError:
        return []
    wrong = []
    for name in names:
        path = worktree / name
        try:
            right = read_regular(path, len(given)) == given
        except OSError:
            right = False
        if not right:
            wrong.append(name)
    return wrong


def task_only(task: str) -> str:
    return f"# Task\n\n{task}\n"


@dataclass(frozen=True)
class AgentContext:
    """What a sandbox's agent is given: the text, and the slice it came from (None: the task only,
    and `error` says why when a slice was wanted and could not be made)."""

    text: str
    piece: Slice | None = None
    context: Context | None = None
    error: str | None = None


def assemble(workspace: Workspace, task: str, claims: Sequence[str], base_sha: str | None,
             held: Sequence[ClaimInput] | None = None) -> AgentContext:
    """The slice for the task and its claims (or the regions `held`, resolved already) from the context at
    the base commit, rendered.

    Without a usable knowledge layer (a broken source config, a budget below the pinned
    sections) the agent gets the task alone and `error` says why (`record` keeps and audits
    it against the sandbox): a sandbox is never refused for its context.
    """
    from loomtui.knowledge.engine import slice_for_task

    try:
        piece, context = slice_for_task(workspace, task, list(claims), at=base_sha, claims=held)
    except LoomError as exc:
        return AgentContext(task_only(task), error=str(exc))
    return AgentContext(piece.render(), piece, context)


def record(workspace: Workspace, sandbox_id: str, given: AgentContext, written: Sequence[str]) -> None:
    """Keep the version and the sections a sandbox got, with an audit entry (the knowledge engine's);
    or, when there was no slice, why, audited as `context.unavailable` with the sandbox's id."""
    if given.error is not None:
        from loomtui.knowledge.engine import record_unavailable

        record_unavailable(workspace, sandbox_id, given.error)
        return
    if given.piece is None or given.context is None:
        return
    from loomtui.knowledge.engine import record_slice

    record_slice(workspace, sandbox_id, given.piece, given.context, written=list(written))


def context_warning(sandbox: SandboxRecord) -> str | None:
    """One line for the person who created the sandbox when its agent got the task only, or None."""
    from loomtui.knowledge.engine import CONTEXT_ERROR_KEY

    error = sandbox.data.get(CONTEXT_ERROR_KEY)
    if not error or isinstance(sandbox.data.get("context"), dict):
        return None
    return f"sandbox {sandbox.id}: its agent gets the task only, no context: {error}"


def refresh(workspace: Workspace, sandbox_id: str) -> AgentContext:
    """Slice a sandbox's task again from the context now at its target's tip, for the code it holds now (its
    claims as they are, else as it was created with), rewrite the files its agent reads, and record the new
    slice; a running agent reads it on its next look."""
    from loomtui.execution.sandboxes import get_sandbox, sandbox_paths
    from loomtui.knowledge.engine import context_commit
    from loomtui.knowledge.slicing import ClaimInput

    sandbox = get_sandbox(workspace, sandbox_id)
    if sandbox.status in ENDED_STATUSES:  # no agent will read it again: nothing to record
        raise LoomError(f"sandbox {sandbox.id} is {sandbox.status}: its agent has ended for good, and no one reads "
                        "its context any more", exit_code=1)
    # Not the claims the last slice recorded: one cut to the task by a context error recorded none, and a
    # claim added since was never read. Held regions as held (a file its commits made is in no index yet).
    held = [ClaimInput(c.target, tuple(c.region_ids)) for c in workspace.store.live_claims(sandbox.id)]
    given = assemble(workspace, sandbox.task, list(sandbox.claim_targets), context_commit(workspace, sandbox),
                     held or None)
    if given.piece is None:
        error = given.error or "no slice"
        workspace.record("context.unavailable", sandbox.id, {"error": error, "refresh": True})
        raise LoomError(f"sandbox {sandbox.id}: the context cannot be sliced now: {error}", exit_code=1)
    paths = sandbox_paths(workspace.paths, sandbox.id)
    names = [str(name) for name in sandbox.context_files]
    worktree = Path(sandbox.worktree)
    if not sandbox.worktree or not worktree.is_dir():
        # Nothing of its agent is left to read it; recorded, the audit named files never written.
        raise LoomError(f"sandbox {sandbox.id}: its worktree {sandbox.worktree or '(none)'} is missing, so no agent "
                        "reads its context; nothing was refreshed", exit_code=1)
    edited = keep_edited(paths.dir, worktree, paths.context, names)  # an agent's edit there: kept, not lost
    if edited:
        workspace.record("sandbox.context_edited", sandbox.id, {"files": edited, "refresh": True})
        workspace.store.update_sandbox(sandbox.id, data={CONTEXT_EDITED_KEY: edited})
    try:
        write_atomically(paths.context, given.text)
        for name in names:
            write_atomically(worktree / name, given.text)
    except OSError as exc:
        raise LoomError(f"sandbox {sandbox.id}: cannot write its context: {exc.strerror or exc}") from None
    record(workspace, sandbox.id, given, [str(paths.context), *names])
    from loomtui.knowledge.engine import CONTEXT_ERROR_KEY

    if sandbox.data.get(CONTEXT_ERROR_KEY):
        workspace.store.update_sandbox(sandbox.id, data={CONTEXT_ERROR_KEY: None})  # it has a slice now
    return given
