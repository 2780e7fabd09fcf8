"""Diff to regions: which regions a branch or working tree changed, and whether signatures did."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loomtui.coordination.claims import Coordinator
from loomtui.coordination.regions import ancestors, split_id
from loomtui.errors import LoomError
from loomtui.gitcmd import BLOB_BATCH, Git, unattributed
from loomtui.store import ENDED_STATUSES, ClaimRecord


@dataclass(frozen=True)
class ChangedRegion:
    region_id: str
    change: str  # added | removed | modified
    signature_changed: bool
    claimed: bool = True


def _git(root: Path, *args: str) -> str:
    done = Git(root).run(*args)
    if done.status != 0:
        raise LoomError(f"git {' '.join(args)}: {done.err.strip() or 'failed'}")
    return done.out


def changed_files(root: Path, base: str, head: str | None = None) -> list[str]:
    """Paths changed between `base` and `head` (default: the working tree, untracked included)."""
    _git(root, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
    spec = [base] if head is None else [base, head]
    names = _git(root, "diff", "--name-only", "--no-renames", "-z", *spec).split("\0")
    if head is None:
        names += _git(root, "ls-files", "--others", "--exclude-standard", "-z").split("\0")
    return sorted({n for n in names if n})


def merged_paths(root: Path, onto: str, head: str) -> list[str]:
    """Paths merging `head` into `onto` changes there, as the merge computes them: git follows renames, so
    a file the branch changed that `onto` has since renamed (docs/x.py, now payments/x.py) is changed at its
    new path, which the branch's own diff never names. [] when the merge would conflict (nothing merges)."""
    with unattributed(root) as plain:  # as loomtui merges: no committed .gitattributes (merge=union) applies
        merged = plain.run("merge-tree", "--write-tree", "--no-messages", onto, head)
    if merged.status != 0:
        return []
    tree = merged.out.split("\n", 1)[0].strip()
    return sorted(n for n in _git(root, "diff", "--name-only", "--no-renames", "-z", onto, tree).split("\0") if n)


def diff_regions(root: Path, base: str, head: str | None = None,
                 claims: Sequence[ClaimRecord] | None = None) -> list[ChangedRegion]:
    """Regions changed since `base`; with `claims`, each says whether those claims cover it."""
    held = {rid for claim in claims or () if claim.mode == "exclusive" for rid in claim.region_ids}
    pinned = head is not None and _COMMIT_ID.fullmatch(base) and _COMMIT_ID.fullmatch(head)
    changes = _commit_changes(root, base, head) if pinned and head is not None else _changes(root, base, head)
    return [ChangedRegion(region_id, change, signature,
                          claims is None or region_id in held or bool(set(ancestors(region_id)) & held))
            for region_id, change, signature in changes]


_COMMIT_ID = re.compile(r"[0-9a-f]{40}")


@functools.lru_cache(maxsize=64)
def _commit_changes(root: Path, base: str, head: str) -> tuple[tuple[str, str, bool], ...]:
    """Between two commit ids the answer never changes: the review's policy facts and gate 2 share it.
    (A ref may move, so only full commit ids are kept.)"""
    return _changes(root, base, head)


def _changes(root: Path, base: str, head: str | None) -> tuple[tuple[str, str, bool], ...]:
    # libcst: 0.4 s to import, only for diffs
    from loomtui.coordination.signatures import ParseBudget, changed_regions

    found: list[tuple[str, str, bool]] = []
    budget = ParseBudget()
    git = Git(root)
    paths = changed_files(root, base, head)
    # Read in batches (two `git show` a file took 28 s for a worktree's 3,000 new files), a batch's texts dropped
    # once parsed; of any other file only whether each side has it (its text is never read).
    python = [p for p in paths if p.endswith(".py")]
    for start in range(0, len(python), BLOB_BATCH):
        part = python[start : start + BLOB_BATCH]
        olds = git.blob_texts([f"{base}:{p}" for p in part])
        news = git.blob_texts([f"{head}:{p}" for p in part]) if head else [_on_disk(root / p) for p in part]
        for path, old, new in zip(part, olds, news, strict=True):
            found += [(c.region_id, c.change, c.signature_changed) for c in changed_regions(old, new, path, budget)]
    others = [p for p in paths if not p.endswith(".py")]
    had = git.blobs_present([f"{base}:{p}" for p in others])
    has = git.blobs_present([f"{head}:{p}" for p in others]) if head else [(root / p).is_file() for p in others]
    for path, before, after in zip(others, had, has, strict=True):
        found.append((path, "added" if not before else "removed" if not after else "modified", False))
    order = {path: position for position, path in enumerate(paths)}  # as listed: file by file
    return tuple(sorted(found, key=lambda change: order.get(split_id(change[0])[0], len(order))))


def _on_disk(path: Path) -> str:
    return path.read_text("utf-8", "replace") if path.is_file() else ""


def sandbox_signature_changes(coordinator: Coordinator) -> set[str]:
    """Regions whose signature a live sandbox changed (its worktree, or without `worktree_tree` its
    branch, against its base). git runs in the repository, on commit and tree ids only."""
    workspace = coordinator.workspace
    changed: set[str] = set()
    for sandbox in workspace.store.list_sandboxes():
        # The commit the sandbox started from: `base_ref` may be HEAD, which inside
        # the worktree is the sandbox's own tip.
        base = sandbox.base_sha
        if sandbox.status in ENDED_STATUSES or not sandbox.worktree or not base:
            continue
        if not Path(sandbox.worktree).is_dir():
            continue
        try:
            now = (coordinator.worktree_tree(sandbox) if coordinator.worktree_tree is not None
                   else Git(workspace.root).resolve_commit(f"refs/heads/{sandbox.branch}"))
            if not now:
                continue
            changes = diff_regions(workspace.root, base, now)
        except LoomError:
            continue  # a sandbox whose base vanished is reported by execution's reconcile
        changed.update(c.region_id for c in changes if c.signature_changed)
    return changed
