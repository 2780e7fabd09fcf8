"""Scratch trees: a commit's files, or a speculative merge of several branches, to run checks in.

A baseline runs the checks on a sandbox's base commit, and the merged gate on every
pending sandbox merged together. Neither needs a git worktree (no admin dir to clean
up, no branch checked out): the tree is exported with `git archive` and unpacked with
tarfile's `data` filter (no absolute paths, links out of the tree or device files,
whatever a hostile commit holds). The merge is computed by `git merge-tree
--write-tree`, which touches neither a working tree nor a ref.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loomtui.errors import LoomError
from loomtui.gitcmd import Git, first_line

MERGE_IDENTITY = ("-c", "user.name=loomtui merged gate", "-c", "user.email=loomtui@localhost")


def export_tree(repo: Path, treeish: str, dest: Path) -> list[str]:
    """Unpack the files of `treeish` (a commit or tree id) into a fresh `dest`; return what was left out.

    A link to an absolute path or out of the tree, a device file: tarfile's `data`
    filter refuses each, and it is skipped (named in the result), never followed.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    done = Git(repo).raw("archive", "--format=tar", treeish)
    if done.status != 0:
        raise LoomError(f"cannot export {treeish[:12]}: {first_line(done.err.decode('utf-8', 'replace'))}")
    skipped: list[str] = []

    def safe(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        try:
            return tarfile.data_filter(member, path)
        except tarfile.FilterError as exc:
            skipped.append(f"{member.name}: {exc}")
            return None

    with tarfile.open(fileobj=io.BytesIO(done.out)) as archive:
        archive.extractall(dest, filter=safe)
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
        raise LoomError(f"{onto!r} names no commit")
    merged: list[str] = []
    conflicting: list[tuple[str, str]] = []
    for branch in branches:
        tip = git.resolve_commit(branch)
        if tip is None:
            conflicting.append((branch, "the branch no longer exists"))
            continue
        result = git.run("merge-tree", "--write-tree", "--name-only", "--no-messages", current, tip)
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
