"""Reviewing a sandbox's work: its diff, merging it, removing it without losing anything."""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from loomtui.auditanchor import head_trailer
from loomtui.errors import LoomError, listed, plural
from loomtui.execution import cgroup_limits
from loomtui.execution.agent_control import DEFAULT_GRACE_S, SUPERVISOR_SETTLE_S, stop, wait_until
from loomtui.execution.gitops import (
    MERGE_TREE_MIN_VERSION,
    Git,
    GitFailed,
    first_line,
    git_version,
)
from loomtui.execution.lifecycle import (
    APPROVED,
    ARCHIVED,
    DELETING,
    GATING,
    LIVE,
    MERGED,
    PLANNED,
    REMOVING_KEY,
    mark_removing,
    transition,
)
from loomtui.execution.procs import is_alive
from loomtui.execution.sandbox_paths import data_home
from loomtui.execution.sandboxes import (
    BRANCH_PREFIX,
    agent_tree,
    get_sandbox,
    is_person_checkout,
    is_sandbox_worktree,
    on_this_host,
    refuse_elsewhere,
    sandbox_paths,
)
from loomtui.files import remove_tree
from loomtui.gitcmd import DIFF_READ_MAX, LARGE_FILES_BINARY, unattributed
from loomtui.repo import WORKTREES_LOCK_HELD_ENV
from loomtui.store import ENDED_STATUSES, SandboxRecord
from loomtui.workspace import Workspace

RemoveRefusal = Literal["live", "uncommitted", "unmerged", "nested", "too_large"]


class RemoveRefused(LoomError):
    """`remove` refused and removed nothing; with `force` it would have gone ahead.

    `reason` is what stood in the way: "live" (an agent is running: force stops it),
    "uncommitted" (force commits the changes to `branch` first) or "unmerged" (the
    branch was to be deleted: force deletes it anyway); "nested" and "too_large" (what
    cannot be saved is in the worktree) even force does not pass. A front-end turns it into
    its own hint.
    """

    exit_code = 1

    def __init__(self, message: str, *, reason: RemoveRefusal, branch: str) -> None:
        super().__init__(message)
        self.reason: RemoveRefusal = reason
        self.branch = branch


@dataclass(frozen=True)
class FileChange:
    path: str
    added: int | None  # None for a binary file
    deleted: int | None


@dataclass(frozen=True)
class SandboxDiff:
    """What a sandbox changed relative to where its branch left the target."""

    sandbox_id: str
    base: str
    head: str  # the branch tip, or a snapshot tree when uncommitted work is included
    files: tuple[FileChange, ...]
    patch: str
    includes_uncommitted: bool

    @property
    def added(self) -> int:
        return sum(f.added or 0 for f in self.files)

    @property
    def deleted(self) -> int:
        return sum(f.deleted or 0 for f in self.files)

    @property
    def stats(self) -> str:
        """`3 files, +12 -4` (`1 file`, not `1 files`)."""
        return f"{plural(len(self.files), 'file')}, +{self.added} -{self.deleted}"


def _nested_repositories(worktree: Path) -> list[str]:
    """Directories below `worktree` that are git repositories of their own (hold a `.git`), sorted.

    One folder at a time from a list, not `os.walk` (which recurses once a level in Python 3.11: an agent's
    chain of 1,200 folders raised RecursionError, and the sandbox could never be removed); links are not
    followed, and a folder that cannot be read (a path past PATH_MAX) is passed over, as git passes it."""
    found = []
    waiting = [worktree]
    while waiting:
        directory = waiting.pop()
        try:
            with os.scandir(directory) as entries:
                folders = [Path(entry.path) for entry in entries
                           if entry.name != ".git" and entry.is_dir(follow_symlinks=False)]
            holds_git = directory != worktree and os.path.lexists(directory / ".git")
        except OSError:
            continue
        if holds_git:
            found.append(directory.relative_to(worktree).as_posix())  # its own files are its own
        else:
            waiting.extend(folders)
    return sorted(found)


def sandbox_tip(repo: Git, record: SandboxRecord) -> str | None:
    """The sandbox's branch tip; once it is merged and its branch gone, its merge commit's second parent; for a
    sandbox on another machine (a team's store), its branch as fetched from a remote, if one has it."""
    tip = repo.resolve_commit(record.branch)
    if tip is None and record.merged_commit:
        tip = repo.resolve_commit(f"{record.merged_commit}^2")
    if tip is None and not on_this_host(record) and record.branch:
        fetched = repo.run("for-each-ref", "--format=%(objectname)", f"refs/remotes/*/{record.branch}")
        tip = next(iter(fetched.out.split()), None) if fetched.status == 0 else None
    return tip


def tip_to_judge(repo: Git, record: SandboxRecord, doing: str) -> str:
    """The sandbox's branch tip here, to `doing` (review, evaluate) it; one line saying why there is none
    (another machine's sandbox: its branch is there, where it is judged)."""
    tip = repo.resolve_commit(record.branch)
    if tip is None and not on_this_host(record):
        raise LoomError(f"sandbox {record.id} is on {record.host}: its branch {record.branch} is there, not here, "
                        f"so {doing} it there", exit_code=1)
    if tip is None or not record.base_sha:
        raise LoomError(f"sandbox {record.id} has no branch tip or base commit to {doing}", exit_code=1)
    return tip


def _branch_tip(repo: Git, record: SandboxRecord) -> str:
    tip = repo.resolve_commit(record.branch)
    if tip is None:
        raise LoomError(f"sandbox {record.id}: branch {record.branch} no longer exists", exit_code=1)
    return tip


def measured_from(repo: Git, record: SandboxRecord, tip: str) -> str:
    """The commit a sandbox's change is measured from: where its tip and its target last met (what a merge
    brings in is what `tip` has beyond it), the target as it was at the merge for a merged one; its base
    without a target. Not its base alone: a branch that merged other commits in (the documented way out of
    a conflict, or an agent's forged merge of the target's tip with the tree of its base) is judged by
    what the merge would do: a forged one reverted the target's own fixes while "docs only" was judged."""
    merged = repo.resolve_commit(record.merged_commit) if record.merged_commit else None
    target_sha = (repo.resolve_commit(f"{merged}^1") if merged
                  else repo.resolve_commit(record.target) if record.target else None)
    met = repo.run("merge-base", "--all", target_sha, tip) if target_sha else None
    meeting = met.out.split() if met is not None and met.status == 0 else []
    if len(meeting) > 1:
        # Two parents on the target unrelated to each other: git's one merge base was the agent's pick, and
        # the change measured from it read "docs only" while the merge (from all of them) reverted code.
        raise LoomError(f"sandbox {record.id}: {record.branch} and {record.target or 'its target'} meet at "
                        f"{len(meeting)} commits ({', '.join(m[:12] for m in meeting[:4])}), so what its merge "
                        "brings in cannot be measured from one and it is not judged: merge the target into it "
                        "once to make one meeting point, or archive it", exit_code=1)
    return meeting[0] if meeting else str(record.base_sha or tip)


def diff(workspace: Workspace, sandbox_id: str, *, patch: bool = True) -> SandboxDiff:
    """The sandbox's changes since it branched off its target, uncommitted work included. A merged
    sandbox's are what its merge brought in (its target holds them now, so they are measured from
    the target as it was at the merge); its branch may be gone by then (the merge commit has it)."""
    record = get_sandbox(workspace, sandbox_id)
    repo = Git(workspace.root)
    tip = sandbox_tip(repo, record)
    if tip is None and record.status == PLANNED:  # its branch is made when it starts (after what it waits for)
        raise LoomError(f"sandbox {record.id} has not started: no branch yet, so no change to show", exit_code=1)
    if tip is None and not on_this_host(record):  # its branch is on its machine, not gone
        raise LoomError(f"sandbox {record.id} is on {record.host}: its branch {record.branch} is there, not here "
                        "(pushed from there and fetched here, its change shows here)", exit_code=1)
    tip = tip or _branch_tip(repo, record)  # says the branch is gone
    base = measured_from(repo, record, tip)
    worktree = Path(record.worktree)
    snapshot, changed = agent_tree(workspace, record).snapshot(tip) if worktree.is_dir() else (tip, [])
    uncommitted = bool(changed)
    head = snapshot if uncommitted else tip
    files = []
    # -z: a path as it is, not git's quoted form (`"caf\303\251.py"` for café.py, in --json too). Past the
    # threshold a file is binary to git, counted without being read (a 300 MB blob took 590 MB to count).
    # Read with no committed .gitattributes: `-diff` on payments/*.py showed its reviewers "Binary files differ".
    with unattributed(workspace.root, workspace.paths.common_dir) as plain:
        for entry in plain.out(*LARGE_FILES_BINARY, "diff", "--numstat", "-z", "--no-renames", base, head).split("\0"):
            if not entry:
                continue
            added, deleted, path = entry.split("\t", 2)
            files.append(FileChange(path, None if added == "-" else int(added),
                                    None if deleted == "-" else int(deleted)))
        # As git prints it: `out` strips the last newline, and `git apply` calls a patch without it corrupt. A
        # binary file past the threshold is left out of it: git read it whole to say "Binary files differ".
        large = _larger_than(repo, DIFF_READ_MAX, [f.path for f in files if f.added is None], base, head)
        text = plain.out("diff", "--no-renames", base, head, "--", ".",
                         *(f":(exclude,literal){path}" for path in large)) if patch else ""
    text += "\n" if text else ""
    return SandboxDiff(record.id, base, head, tuple(files), text, uncommitted)


def _larger_than(repo: Git, limit: int, paths: Sequence[str], *commits: str) -> list[str]:
    """Those of `paths` whose blob in any of `commits` is larger than `limit` bytes."""
    if not paths:
        return []
    return sorted({entry.path for commit in commits for entry in repo.tree_entries(commit, paths)
                   if entry.size > limit})


@dataclass(frozen=True)
class MergeResult:
    sandbox_id: str
    target: str
    commit: str
    updated_worktree: str | None  # the working tree that had the target checked out, if any


def _trailer_value(text: str) -> str:
    return " ".join(str(text).split())


def merge_message(record: SandboxRecord, target: str, trailers: Sequence[tuple[str, str]] = ()) -> str:
    """The merge commit's message, ending in the trailers that mark agent-made work."""
    launch = record.data.get("launch") or {}
    summary = _trailer_value(record.task)
    if len(summary) > 60:
        summary = summary[:59] + "…"
    lines = [
        f"Merge {record.branch} into {target}: {summary}",
        "",
        "Task:",
        record.task[:2000],
        "",
        f"Loom-Sandbox: {record.id}",
        f"Loom-Runtime: {record.runtime}",
        f"Assisted-by: {_trailer_value(launch.get('assisted_by') or record.runtime)} (via loomtui)",
    ]
    lines += [f"{_trailer_value(key)}: {_trailer_value(value)}" for key, value in trailers]
    return "\n".join(lines) + "\n"


class MergeConflict(LoomError):
    """The merge would conflict; nothing was changed (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str, paths: Sequence[str]) -> None:
        super().__init__(message)
        self.paths = list(paths)


REVIEWED_PATHS_KEY = "reviewed_paths"
"""The paths its review judged (its own change and what merging it into its target changed there then)."""
UNJUDGED_KEY = "merge_unjudged"
"""Paths a merge would have changed that its review did not judge: it is reviewed again before it merges."""


class MergeNeedsReview(LoomError):
    """The merge would change paths its review did not judge; nothing was changed (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str, paths: Sequence[str]) -> None:
        super().__init__(message)
        self.paths = list(paths)


def merge(workspace: Workspace, sandbox_id: str, *, into: str | None = None,
          trailers: Sequence[tuple[str, str]] = ()) -> MergeResult:
    """Merge an approved sandbox's branch into its target, only if the merge is clean.

    The merge is computed first with `git merge-tree` (no working tree touched). A
    conflict raises MergeConflict and changes nothing. A clean merge becomes a
    merge commit with `Loom-Sandbox:`, `Loom-Runtime:` and `Assisted-by:` trailers;
    the target branch moves to it (fast-forwarding the working tree that has it
    checked out, if one does, which git refuses rather than overwrite local edits).
    """
    record = get_sandbox(workspace, sandbox_id)
    refuse_elsewhere(record, "merge it")
    if record.status != APPROVED:
        raise LoomError(f"sandbox {record.id} is {record.status}, not approved; only an approved sandbox merges",
                        exit_code=1)
    version = git_version() or (0,)
    if version < MERGE_TREE_MIN_VERSION:
        raise LoomError(f"merging needs git {'.'.join(map(str, MERGE_TREE_MIN_VERSION))} or newer "
                        f"(found {'.'.join(map(str, version))})")
    worktree = Path(record.worktree)
    if worktree.is_dir() and (dirty := agent_tree(workspace, record).dirty_paths(record.branch)):
        # How out, said: a retry fails the same way, and a review finds no commit to review.
        raise LoomError(f"sandbox {record.id} has uncommitted changes ({', '.join(dirty[:5])}) that were not "
                        f"reviewed; nothing was merged: commit them on {record.branch} in {worktree} to have them "
                        f"reviewed, or set them aside (`git -C {shlex.quote(str(worktree))} stash -u`)", exit_code=1)
    repo = Git(workspace.root)
    target = into or record.target
    if not target:
        raise LoomError(f"sandbox {record.id} has no target branch to merge into")
    if not repo.local_branch_exists(target):
        raise LoomError(f"target branch {target!r} does not exist")
    _refuse_a_running_agents_branch(workspace, target)
    tip = _branch_tip(repo, record)
    approved = record.approved_commit
    if approved and approved != tip:
        raise LoomError(f"{record.branch} moved since it was approved ({approved[:12]} -> {tip[:12]}); "
                        "nothing was merged", exit_code=1)
    # One merge into a target at a time (two approved within a second: the second computed its merge on
    # the tip the first had just moved, and its fast-forward of the checkout was refused).
    with workspace.paths.worktrees_locked():
        commit, updated = _merge_onto_target(workspace, repo, record, target, tip, trailers)
    transition(workspace, record.id, MERGED, allowed_from=frozenset({APPROVED}),
               data={"merged_commit": commit, "merged_into": target},
               audit={"commit": commit, "target": target, "branch_tip": tip})
    return MergeResult(record.id, target, commit, updated)


def _refuse_a_running_agents_branch(workspace: Workspace, target: str) -> None:
    """A sandbox's branch is a target (a task based on it merges there), but not while its agent runs: its
    next commit, or its branch synced from its own copy under bubblewrap, put the branch back, the merge
    reported done and lost."""
    holder = workspace.store.get_sandbox(target.removeprefix(BRANCH_PREFIX)) if target.startswith(BRANCH_PREFIX) \
        else None
    if holder is not None and holder.branch == target and holder.status in LIVE:
        raise LoomError(f"{target} is sandbox {holder.id}'s branch, and its agent is {holder.status}: a merge there "
                        f"now would be undone by its next commit; nothing was merged: merge once it has ended",
                        exit_code=1)


def _merge_onto_target(workspace: Workspace, repo: Git, record: SandboxRecord, target: str, tip: str,
                       trailers: Sequence[tuple[str, str]]) -> tuple[str, str | None]:
    """Make the merge commit of `tip` onto `target`'s tip and move the target (and the person's checkout
    that has it) there: (the commit, that checkout or None). Held under the repository's worktrees lock."""
    target_sha = repo.out("rev-parse", f"refs/heads/{target}").strip()
    if repo.ok("merge-base", "--is-ancestor", tip, target_sha):
        raise LoomError(f"{record.branch} has nothing that {target} lacks; nothing to merge", exit_code=1)
    # No committed .gitattributes merges: an approved `merge=union` let a conflicting merge through, both kept.
    with unattributed(workspace.root, workspace.paths.common_dir) as plain:
        check = plain.run("merge-tree", "--write-tree", "--name-only", "--no-messages", target_sha, tip)
    if check.status == 1:
        conflicted = [line for line in check.out.splitlines()[1:] if line]
        workspace.record("sandbox.merge_conflict", record.id, {"target": target, "paths": conflicted})
        raise MergeConflict(f"merging {record.branch} into {target} would conflict in "
                            f"{', '.join(conflicted) or 'some files'}; nothing was changed", conflicted)
    if check.status != 0:
        raise GitFailed(f"git merge-tree failed: {first_line(check.err or check.out)}")
    tree = check.out.splitlines()[0].strip()
    if target == record.target:  # what its review judged it against (`--into` another branch: as asked)
        _refuse_unjudged(workspace, repo, record, target, target_sha, tip, tree)
    # The audit head goes into the merge commit (`Loom-Audit:`), so a later rewrite of the
    # log contradicts a commit other clones hold (`loomtui audit verify` checks it).
    anchor = head_trailer(workspace.audit, workspace.root)
    message = merge_message(record, target, (*trailers, *([anchor] if anchor else [])))
    email = workspace.actor if "@" in workspace.actor else "loomtui@localhost.invalid"
    identity = repo.fallback_identity("loomtui", email)
    commit = repo.out(*identity, "commit-tree", tree, "-p", target_sha, "-p", tip, "-m", message).strip()
    # Never a sandbox's worktree (an agent can point its HEAD at the target) nor a repository an agent
    # made and named as one: git run there would read the agent's config and hooks. Only a person's
    # checkout is updated.
    # And asked of the checkout itself: a sandbox's admin dir can name a person's checkout as its own worktree
    # with the target checked out, while that checkout's HEAD is a branch of the person's (fast-forwarded).
    places = repo.worktrees_with_branch(target)
    checked_out = [place for place in places
                   if is_person_checkout(workspace, place) and _has_checked_out(place, target)]
    if not checked_out and not is_sandbox_worktree(workspace, workspace.root) and \
            _has_checked_out(workspace.root, target):
        # Where loomtui runs, as git names it (`--separate-git-dir`, a `.git` linked elsewhere): left behind, the
        # person's next commit there undid the merge.
        checked_out = [workspace.root]
    common = workspace.paths.common_dir.resolve()
    if not checked_out and any(Path(place).resolve() == common for place in places):
        # git names the git dir itself as the main checkout (`--separate-git-dir`, a `.git` linked elsewhere): the
        # checkout with the target is somewhere git cannot say, and moving the branch under it stages the undoing.
        raise LoomError(f"{target} is checked out in this repository's main checkout, which git cannot locate from "
                        f"here (its git dir is kept apart from it): run the merge there; nothing was changed",
                        exit_code=1)
    updated: str | None = None
    if checked_out:
        place = checked_out[0]
        # Its git hooks run under the worktrees lock this holds: with it said, a `loomtui` they run does not wait.
        done = Git(place).run("merge", "--ff-only", "--quiet", commit, env={WORKTREES_LOCK_HELD_ENV: "1"})
        if done.status != 0:
            said = done.err or done.out
            # git lists the files in its way one a line, tab-indented, under its first line.
            files = [line.strip() for line in said.splitlines() if line.startswith("\t")]
            why = first_line(said)
            if files:
                why = f"{why.rstrip(':')}: {listed(files)}; commit or stash them there, then merge again"
            raise LoomError(f"cannot bring {place} up to the merge ({why}); nothing was changed", exit_code=1)
        updated = str(place)
    else:
        repo.out("update-ref", "-m", f"loomtui: merge sandbox {record.id}", f"refs/heads/{target}", commit,
                 target_sha)
    return commit, updated


def _has_checked_out(place: Path, target: str) -> bool:
    """Whether the checkout at `place` (a person's) has `target` checked out, as its own HEAD says."""
    return Git(place).run("symbolic-ref", "-q", "HEAD").out.strip() == f"refs/heads/{target}"


def _refuse_unjudged(workspace: Workspace, repo: Git, record: SandboxRecord, target: str, target_sha: str, tip: str,
                     tree: str) -> None:
    """Refuse a merge that changes on `target` a path its review did not judge: git's merge follows renames,
    so an edit of docs/x.py, which the target has since moved to payments/x.py, lands in payments/ (judged
    "docs only", it was auto-approved and merged there)."""
    from loomtui.coordination.diff import changed_files

    changed = {name for name in repo.out("diff", "--name-only", "--no-renames", "-z", target_sha, tree).split("\0")
               if name}
    judged = record.data.get(REVIEWED_PATHS_KEY)
    allowed = set(judged) if isinstance(judged, list) else set(
        changed_files(workspace.root, measured_from(repo, record, tip), tip))  # reviewed before this was kept
    unjudged = sorted(changed - allowed)
    if unjudged:
        workspace.record("sandbox.merge_unjudged", record.id, {"target": target, "target_sha": target_sha,
                                                                "paths": unjudged})
        raise MergeNeedsReview(
            f"merging {record.branch} into {target} would change {listed(unjudged)}, which its review did not judge "
            f"({target} has moved or renamed what it changed since): it is reviewed again first; nothing was "
            "changed", unjudged)


# -- removal -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoveResult:
    sandbox_id: str
    branch: str
    branch_tip: str | None
    saved_commit: str | None  # the commit that saved uncommitted work, if any
    branch_deleted: bool
    ignored: tuple[str, ...] = ()
    """What git ignores in the worktree (never part of the work), deleted with it, as `git worktree remove` does."""


def remove(workspace: Workspace, sandbox_id: str, *, force: bool = False, delete_branch: bool = False,
           grace: float = DEFAULT_GRACE_S, no_review_runs: bool = False) -> RemoveResult:
    """Remove a sandbox's worktree and archive it, never losing work.

    Uncommitted changes refuse the removal, or with `force` are first committed to
    the sandbox branch. A running agent refuses it, or with `force` is stopped. The
    branch stays, unless it is merged into the target (its commits are safe there)
    or `delete_branch` is given (an unmerged branch also needs `force`). A refusal
    is a `RemoveRefused` saying which. `no_review_runs`: see `mark_removing` (a stopped review is no refusal).
    """
    record = get_sandbox(workspace, sandbox_id)
    if record.status == ARCHIVED:
        raise LoomError(f"sandbox {record.id} is already removed", exit_code=1)
    refuse_elsewhere(record, "remove it")
    if record.status in LIVE and not force:
        raise RemoveRefused(f"sandbox {record.id} is {record.status}; stop it first", reason="live",
                            branch=record.branch)
    repo = Git(workspace.root)
    worktree = Path(record.worktree)
    tree = agent_tree(workspace, record)
    # An earlier `rm` saved the work and began deleting the tree: what is left is not work (its
    # missing files would be committed as deletions), only what the deletion did not reach.
    deleting = record.data.get(REMOVING_KEY) == DELETING
    # A git repository inside the worktree goes into a commit as a pointer to its own commit only:
    # its files, and its history, would be deleted with the tree. Not even `force` does that.
    # Looked for in the whole tree, not only among uncommitted paths: the save at an agent's end commits
    # a nested repository's files, and its history would still go with the tree.
    nested = _nested_repositories(worktree) if worktree.is_dir() and not deleting else []
    if nested:
        raise RemoveRefused(f"sandbox {record.id} holds a git repository of its own ({listed(nested)}), which "
                            f"cannot be saved to {record.branch}; move it out of the worktree {worktree}; "
                            "nothing was removed",
                            reason="nested", branch=record.branch)
    # After the nested check: git cannot list a tree holding a repository with no commit yet (`git add`
    # failed with its own error), and that repository is the reason said above.
    dirty = tree.dirty_paths(record.branch) if worktree.is_dir() and not deleting else []
    if dirty and not force:
        raise RemoveRefused(f"sandbox {record.id} has uncommitted changes ({listed(dirty)}); nothing was removed",
                            reason="uncommitted", branch=record.branch)
    if tree.unsaved:  # not even with --force: the save would leave them out, and they would go with the worktree
        raise RemoveRefused(f"sandbox {record.id} holds what cannot be saved to {record.branch}: "
                            f"{tree.unsaved_said()}; move it out of the worktree {worktree}; nothing was removed",
                            reason="too_large", branch=record.branch)
    if delete_branch and not force and not _branch_merged(repo, record):
        raise RemoveRefused(f"{record.branch} is not merged; nothing was removed", reason="unmerged",
                            branch=record.branch)
    if delete_branch and (built_on := [other.id for other in workspace.store.list_sandboxes()
                                       if other.id != record.id and other.data.get("target") == record.branch
                                       and other.status not in ENDED_STATUSES]):
        # Their work goes back into this branch: deleting it left them nowhere to merge.
        raise LoomError(f"{record.branch} is the target of sandbox {', '.join(built_on)}, built on its work; "
                        "nothing was removed: remove without --delete-branch, or finish those first", exit_code=1)
    # From here the sandbox is not reviewed or started by anyone else (its supervisor reviews an agent
    # that ends, the app advances tasks): its worktree is about to go. Refused while a review runs.
    # Its agent may have started since it was read.
    record = mark_removing(workspace, record.id, no_review_runs=no_review_runs)
    try:
        # A supervisor still starting its agent (planned, its pid recorded) is refused the start now, but it
        # puts back the worktree's git links and saves leftovers on its way out: run beside the rm -rf below,
        # that made `<worktree>/.git` again (a prune kept the worktree, `branch -D` "checked out at") and
        # committed every file's deletion to the branch. It ends at once: waited for, as `stop` waits.
        supervisor = (record.pid, record.pid_start)
        if record.status == PLANNED and is_alive(*supervisor):
            if not wait_until(lambda: not is_alive(*supervisor), SUPERVISOR_SETTLE_S):
                raise LoomError(f"sandbox {record.id}: its supervisor (pid {record.pid}) is still starting its "
                                f"agent; nothing was removed: once it runs, `loomtui sandbox rm {record.id} --force` "
                                "stops and removes it", exit_code=1)
            record = get_sandbox(workspace, record.id)  # failed, if its start failed: still removed
        if record.status in LIVE and not force:
            raise RemoveRefused(f"sandbox {record.id} is {record.status}; stop it first", reason="live",
                                branch=record.branch)
        if record.status in LIVE:
            record = stop(workspace, record.id, grace=grace)
        saved = tree.commit_all(
            record.branch,
            f"loomtui: save uncommitted work of sandbox {record.id} before removal\n\n"
            f"Loom-Sandbox: {record.id}\n", repo.fallback_identity("loomtui", "loomtui@localhost.invalid"),
            record.created_by) if worktree.is_dir() and not deleting else None
        if tree.unsaved and worktree.is_dir() and not deleting:  # its agent, stopped, wrote one on its way out
            raise RemoveRefused(f"sandbox {record.id} holds what cannot be saved to {record.branch}: "
                                f"{tree.unsaved_said()}; move it out of the worktree {worktree}; the rest is "
                                "saved, nothing was removed", reason="too_large", branch=record.branch)
    except BaseException:
        if not deleting:
            mark_removing(workspace, record.id, removing=False)  # nothing deleted yet: it is as it was
        raise
    ignored = tuple(tree.ignored_paths()) if worktree.is_dir() and not deleting else ()
    if worktree.is_dir():
        workspace.store.update_sandbox(record.id, data={REMOVING_KEY: DELETING})
        # Not `git worktree remove`: that runs git in the worktree (its config, its fsmonitor). The
        # work is on the branch now; rm never follows a symlink. Failing half way, the sandbox
        # stays marked (no review of a half-deleted tree); `sandbox rm` again finishes.
        try:
            remove_tree(worktree)
        except OSError as exc:
            raise LoomError(f"cannot remove the worktree of {record.id}: {exc.strerror or exc}"
                            + (f" (the work was saved as {saved[:12]})" if saved else "")
                            + "; `loomtui sandbox rm` again finishes the removal", exit_code=1) from None
    tip = repo.resolve_commit(record.branch)
    merged = _branch_merged(repo, record)
    deleted = False
    # `branch -D` reads every worktree (is the branch checked out?): one being added meanwhile failed it.
    with workspace.paths.worktrees_locked():
        repo.run("worktree", "prune")
        if worktree.parent.parent == data_home() / "loomtui" / "worktrees":
            # The repository's folder in the shared one, left empty by the last: never a folder of a
            # `worktrees:` setting, which a sandbox starting meanwhile hides (bwrap needs it to exist).
            with contextlib.suppress(OSError):
                worktree.parent.rmdir()
        if tip and (merged or delete_branch):
            repo.out("branch", "-D", record.branch)
            deleted = True
    paths = sandbox_paths(workspace.paths, record.id)
    paths.outside_index.unlink(missing_ok=True)
    # Its runtime's own state (sessions, caches, its copy of the user's ~/.claude.json): no agent runs in
    # it again, and what it holds of the user's config is not kept in every archived sandbox.
    with contextlib.suppress(OSError):
        remove_tree(paths.runtime_state)
    # A killed supervisor's (its agent stopped by now): none is made again.
    cgroup_limits.remove_left(cgroup_limits.group_name(workspace.paths.state_dir, record.id))
    if record.status == GATING:  # a stopped review's checks: never finished now
        workspace.store.close_abandoned_gate_runs(record.id, "the sandbox was removed before its review ended")
    # What it was (merged, rejected, failed, ...) kept: `sandbox list --all --json` told them apart no more.
    transition(workspace, record.id, ARCHIVED, data={"archived_at": time.time(), "saved_commit": saved,
                                                     "archived_from": str(record.status)},
               audit={"branch": record.branch, "branch_tip": tip, "branch_deleted": deleted,
                      "saved_commit": saved, "merged": merged,
                      **({"ignored_deleted": list(ignored[:100])} if ignored else {})})
    return RemoveResult(record.id, record.branch, tip, saved, deleted, ignored)


def _branch_merged(repo: Git, record: SandboxRecord) -> bool:
    """Whether every commit of the sandbox branch is in its target (so deleting it loses nothing)."""
    tip = repo.resolve_commit(record.branch)
    target = record.merged_into or record.target
    target_sha = repo.resolve_commit(target) if target else None
    return bool(tip and target_sha and repo.ok("merge-base", "--is-ancestor", tip, target_sha))
