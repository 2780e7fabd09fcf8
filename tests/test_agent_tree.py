"""loomtui's own index of an agent's worktree (execution.gitops.AgentTree): what it reports changed."""

from __future__ import annotations

import os
import time
from pathlib import Path

from loomtui.execution.gitops import AgentTree
from tests.conftest import git


def test_a_same_size_change_in_the_second_of_the_last_snapshot_is_seen(repo: Path, tmp_path: Path) -> None:
    """git trusts an entry's stat data (seconds, size) only for a file changed before the index was
    written; a snapshot's copy of the index must keep the index's time for that check to hold. Copied
    with a new time, an edit of the same size, in the second of the last snapshot, was missed (a merge
    then said the reviewed tree had uncommitted changes)."""
    (repo / "lib.py").write_text("x = 1\n")
    git(repo, "add", "lib.py")
    git(repo, "commit", "-qm", "lib")
    base = git(repo, "rev-parse", "HEAD")
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "agent", str(worktree), base)
    tree = AgentTree(repo / ".git", worktree, tmp_path / "outside.index")
    second = (time.time_ns() // 10**9 - 10) * 10**9  # a whole second, some time ago

    (worktree / "lib.py").write_text("x = 2\n")
    os.utime(worktree / "lib.py", ns=(second + 100, second + 100))
    assert tree.snapshot(base)[1] == ["lib.py"]
    os.utime(tree.index, ns=(second + 500_000_000, second + 500_000_000))  # written in that second
    (worktree / "lib.py").write_text("x = 3\n")  # the same size, later in the same second
    os.utime(worktree / "lib.py", ns=(second + 700_000_000, second + 700_000_000))

    snapshot, changed = tree.snapshot(base)
    assert changed == ["lib.py"]
    assert git(repo, "cat-file", "-p", f"{snapshot}:lib.py") == "x = 3"
