"""What an ended agent leaves, brought onto its branch from outside the sandbox: the commits an isolated
agent made in its private store, then what it left uncommitted. Its supervisor does this when the agent
ends; the reconcile and `stop` do it for an agent whose supervisor was killed (`save_without_supervisor`),
so no review sees an empty change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from loomtui.errors import LoomError
from loomtui.execution import confinement, git_links, privategit
from loomtui.execution.gitops import Git
from loomtui.execution.sandbox_paths import sandbox_paths
from loomtui.execution.sandboxes import agent_tree, largest_file
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace

Say = Callable[[str], None]


def bring_in_commits(workspace: Workspace, record: SandboxRecord, say: Say) -> str | None:
    """Bring an isolated agent's commits into the shared repository (no-op without isolation); why they were
    left out when they carry a file past `limits.file_size` (said and recorded once a tip), else None."""
    private = confinement.private_git(workspace, record)
    if private is not None:
        try:
            privategit.sync(private, workspace.root, record.branch, largest_file(workspace), record.base_sha)
        except privategit.TooLargeToBringIn as exc:
            if not exc.again:
                say(str(exc))
                with contextlib.suppress(LoomError):  # a store down: said above, and the sandbox fails saying it
                    workspace.record("sandbox.commits_too_large", record.id, {"error": str(exc)})
            return str(exc)
        except (OSError, LoomError) as exc:
            say(f"git sync failed: {exc}")
    return None


def save_leftovers(workspace: Workspace, record: SandboxRecord, say: Say) -> tuple[str | None, str | None]:
    """Commit what the agent left uncommitted, so its branch holds all of its work: (the commit or None
    when there was nothing, the error when it, or a file of it too large to save, could not be saved).

    From outside the sandbox, with git told where the repository is: nothing the
    agent wrote into its worktree or its git admin dir is read as config or run.
    """
    if not record.worktree or not Path(record.worktree).is_dir():
        return None, None
    tree = agent_tree(workspace, record)
    try:
        saved = tree.commit_all(
            record.branch,
            f"loomtui: work left uncommitted by the agent in sandbox {record.id}\n\n"
            f"Loom-Sandbox: {record.id}\nLoom-Runtime: {record.runtime}\n",
            Git(workspace.root).fallback_identity("loomtui", "loomtui@localhost.invalid"), record.created_by)
    except LoomError as exc:
        return None, str(exc)
    # The rest is saved; what is too large or git would not read stays in the worktree, and the sandbox
    # fails saying so.
    unsaved = (f"{tree.unsaved_said()}; {'it stays' if len(tree.unsaved) == 1 else 'they stay'} in the worktree "
               f"{record.worktree}, unsaved" if tree.unsaved else None)
    if saved is not None:
        private = confinement.private_git(workspace, record)
        if private is not None:  # so a later sync cannot move the branch back
            try:
                privategit.set_private_tip(private, record.branch, saved)
            except LoomError as exc:
                say(str(exc))
                with contextlib.suppress(OSError):  # no copy: a sync leaves the branch where it is
                    (private.refs / Path(record.branch).name).unlink()
        git_dir = record.data.get("git_dir")
        if git_dir:
            try:
                tree.reset_index(Path(git_dir) / "index", saved)
            except LoomError as exc:  # cosmetic: `git status` in the worktree looks stale
                say(f"cannot refresh the worktree's index: {exc}")
    return saved, unsaved


def save_without_supervisor(workspace: Workspace, record: SandboxRecord) -> tuple[str | None, dict[str, object]]:
    """What an agent whose supervisor is gone did, brought onto its branch as the supervisor would have (its
    git links put back, its commits brought in, what it left uncommitted saved): the commit saved, and what to
    keep on the sandbox (`saved_commit`, and what went wrong on the way). Run once nothing of it runs."""
    notes: list[str] = []  # what went wrong on the way (a sync, the worktree's index), kept with it
    put_back = _put_back_git_links(workspace, record, notes)
    bring_in_commits(workspace, record, notes.append)
    saved, save_error = save_leftovers(workspace, record, notes.append)
    return saved, {"saved_commit": saved, **({"save_error": save_error} if save_error else {}),
                   **({"save_notes": notes} if notes else {}), **({"git_links_put_back": put_back} if put_back else {})}


def _put_back_git_links(workspace: Workspace, record: SandboxRecord, notes: list[str]) -> list[str]:
    """What the agent changed of its worktree's git links, put back as its supervisor keeps them (it died
    first: a planted fsmonitor would run as the person at their first `git status` there)."""
    paths = sandbox_paths(workspace.paths, record.id)
    links = git_links.load(paths.git_links)
    if links is None:
        return []
    put_back, failed = git_links.put_back(links)
    if failed:
        notes.append(git_links.not_put_back_said(failed, record.worktree))
    else:
        paths.git_links.unlink(missing_ok=True)
    return put_back
