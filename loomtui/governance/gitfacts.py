"""The facts the policy is evaluated on, read from git: paths, regions, signatures, size."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from loomtui.coordination.diff import changed_files, diff_regions, merged_paths
from loomtui.gitcmd import Git, GitFailed
from loomtui.globs import name_problem
from loomtui.governance.policy import ChangeFacts
from loomtui.governance.unusual import unusual_entries


def git_output(root: Path, *args: str) -> str | None:
    result = Git(root).run(*args)
    return result.out.strip() if result.status == 0 else None


def branch_head(root: Path, ref: str) -> str | None:
    """The commit a ref points at, or None when it does not exist."""
    return git_output(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")


def commit_author(root: Path, rev: str) -> str | None:
    """The author e-mail of a commit."""
    return git_output(root, "log", "-1", "--format=%ae", rev) or None


def lines_changed(root: Path, base: str, head: str | None = None) -> int:
    """Lines added plus removed between base and head (the working tree when head is None), a binary file
    by its size (`gitcmd.BINARY_BYTES_PER_LINE`); 0 when git cannot tell (as before: a failure is said by
    the facts' other readers)."""
    try:
        return sum(Git(root).lines_changed_by_file(base, head).values())
    except GitFailed:
        return 0


def change_facts(root: Path, base: str, head: str | None = None, *, gates: Mapping[str, str] | None = None,
                 runtime: str | None = None, author: str | None = None,
                 labels: Sequence[str] = (), onto: str | None = None,
                 advisory_gates: Collection[str] = ()) -> ChangeFacts:
    """Facts for the post-gate policy run on the diff from base to head; with `onto` (the target's tip),
    its paths are also those the merge into it changes there (`merged_paths`). `advisory_gates`: those of
    `gates` configured `blocking: false`."""
    changes = diff_regions(root, base, head)
    paths = set(changed_files(root, base, head))
    if onto is not None and head is not None:
        # A docs edit of a file the target has since moved into payments/ merged into payments/, judged
        # "docs only" and auto-approved.
        paths.update(merged_paths(root, onto, head))
    return ChangeFacts(
        stage="post-gate",
        paths=tuple(sorted(paths)),
        regions=tuple(sorted({c.region_id for c in changes})),
        signature_changed=tuple(sorted({c.region_id for c in changes if c.signature_changed})),
        lines_changed=lines_changed(root, base, head),
        gates=dict(gates or {}),
        advisory_gates=frozenset(advisory_gates),
        runtime=runtime,
        labels=tuple(labels),
        author=author if author is not None else (commit_author(root, head) if head else None),
        unusual=unusual_entries(root, base, head) if head is not None else (),
    )


def unnamed_files(root: Path, base: str, head: str) -> list[str]:
    """The files the change from `base` to `head` touches whose names loomtui cannot read (`globs.name_problem`:
    not UTF-8, a line break, `::`): no rule can be matched to them, so the review and the gate refuse to judge it."""
    return [path for path in changed_files(root, base, head) if name_problem(path)]
