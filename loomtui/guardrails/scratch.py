"""Scratch trees: a commit's files, or a speculative merge of several branches, to run checks in.

A baseline runs the checks on a sandbox's base commit, gate 1 on its tip, and the merged
gate on every pending sandbox merged together. None needs a git worktree (no admin dir
to clean up, no branch checked out): the tree's files are written out of git's objects.
The merge is computed by `git merge-tree --write-tree`, which touches neither a working
tree nor a ref.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from loomtui.errors import LoomError, quoted
from loomtui.files import make_folders, remove_tree
from loomtui.gitcmd import Git, GitFailed, first_line, unattributed
from loomtui.knowledge.trees import GitTree
from loomtui.limit_values import too_large_said, too_large_together
from loomtui.repo import DISTRUSTING_GIT_CONFIG

MERGE_IDENTITY = ("-c", "user.name=loomtui merged gate", "-c", "user.email=loomtui@localhost")


def export_tree(repo: Path, treeish: str, dest: Path, largest_file: int | None = None,
                base: str | None = None) -> list[str]:
    """Write the files of `treeish` (a commit) into a fresh `dest`; return what was left out.

    Read blob by blob (`git ls-tree`, `git cat-file --batch`), not with `git archive`:
    that one obeys the tree's own `.gitattributes`, where an agent's `export-ignore`
    would quietly drop its test files from what is checked. A symlink, a submodule, or
    a path that is absolute, climbs out with `..` or names `.git` is left out (named in
    the result), never followed or written. A blob the change brought (not as `base` has it at its
    path) larger than `largest_file` (`limits.file_size`), or such blobs past `EXPORT_TOTAL_FILES`
    times it together, is refused before anything is written: a 3 GB file of zeros is a few KB in git
    and 3 GB on disk for every check. The base's own files (an asset the team committed) are written
    as they are. Each blob is copied a chunk at a time.
    """
    try:
        remove_tree(dest)  # an earlier export of an agent's tree: any depth
    except OSError as exc:
        raise LoomError(f"cannot export {treeish[:12]}: {exc.strerror or exc}") from None
    dest.mkdir(parents=True)
    try:
        entries = Git(repo).tree_entries(treeish, config=DISTRUSTING_GIT_CONFIG)
    except GitFailed as exc:
        raise LoomError(f"cannot export {treeish[:12]}: {exc}") from None
    theirs = GitTree(repo, base, base[:12]).listing() if base and largest_file is not None else {}
    skipped: list[str] = []
    files: list[tuple[PurePosixPath, str, str]] = []
    too_large: list[tuple[str, int]] = []
    brought = 0
    for entry in entries:
        path, mode = entry.path, entry.mode
        pure = PurePosixPath(path)
        if entry.kind != "blob" or mode == "120000" or pure.is_absolute() or ".." in pure.parts \
                or ".git" in pure.parts:
            skipped.append(f"{path}: {'a symlink' if mode == '120000' else 'not a plain file path'}")
            continue
        if largest_file is not None and theirs.get(path) != entry.sha:
            brought += entry.size
            if entry.size > largest_file:
                too_large.append((path, entry.size))
        files.append((pure, mode, entry.sha))
    if too_large:
        raise LoomError(f"cannot check {treeish[:12]}: {too_large_said(too_large, largest_file or 0)}")
    together = too_large_together(brought, largest_file, "its files not in its base") if largest_file else None
    if together:
        raise LoomError(f"cannot check {treeish[:12]}: {together}")
    tree = GitTree(repo, treeish, treeish[:12])
    try:
        for pure, mode, sha in files:
            target = dest.joinpath(*pure.parts)
            try:
                make_folders(target.parent)
                with target.open("wb") as out:
                    tree.copy_blob(sha, out)
            except OSError as exc:  # a path deeper than the system allows (an agent's chain of folders)
                raise LoomError(f"cannot check {treeish[:12]}: cannot write {quoted(str(pure))}: "
                                f"{exc.strerror or exc}") from None
            if mode == "100755":
                target.chmod(0o755)
    finally:
        tree.close()
    return skipped


@dataclass(frozen=True)
class MergeResult:
    """A speculative merge: the synthetic commit holding what merged, and the branches that did not."""

    commit: str
    merged: tuple[str, ...]
    conflicting: tuple[tuple[str, str], ...]  # (branch, the files in conflict)


def merge_branches(repo: Path, onto: str, branches: Sequence[str]) -> MergeResult:
    """Merge `branches` one after another onto the commit `onto`, skipping any that conflicts.

    Each merge is a commit no ref points at (git's gc takes it in time), so the next
    merge has a real merge base.
    """
    git = Git(repo)
    current = git.resolve_commit(onto)
    if current is None:
        raise LoomError(f"{quoted(onto)} names no commit")
    # No committed .gitattributes merges (merge=union kept both sides of a conflict).
    with unattributed(repo) as plain:
        merged: list[str] = []
        conflicting: list[tuple[str, str]] = []
        for branch in branches:
            tip = git.resolve_commit(branch)
            if tip is None:
                conflicting.append((branch, "the branch no longer exists"))
                continue
            result = plain.run("merge-tree", "--write-tree", "--name-only", "--no-messages", current, tip)
            lines = result.out.splitlines()
            if result.status == 1:
                conflicting.append((branch, ", ".join(lines[1:]) or "conflicting changes"))
                continue
            if result.status != 0 or not lines:
                raise LoomError(f"git merge-tree failed for {branch}: {first_line(result.err or result.out)}")
            current = git.out(*MERGE_IDENTITY, "commit-tree", lines[0], "-p", current, "-p", tip,
                              "-m", f"loomtui merged gate: {branch}").strip()
            merged.append(branch)
    return MergeResult(current, tuple(merged), tuple(conflicting))
