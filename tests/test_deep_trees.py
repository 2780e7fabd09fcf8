"""An agent's folders as deep as it likes: what loomtui does with them outside the sandbox (export them for
the gates, look for nested repositories, remove them) walks any depth. Python 3.11's `os.walk`,
`shutil.rmtree` and `mkdir(parents=True)` recurse once a level, and a chain of 1,200 folders raised
RecursionError: the review failed for good and `sandbox rm --force` ended in an internal error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import git

from loomtui.errors import LoomError
from loomtui.execution import review
from loomtui.execution.sandboxes import get_sandbox
from loomtui.files import make_folders, remove_tree
from loomtui.guardrails.scratch import export_tree
from loomtui.workflow import tasks
from loomtui.workflow.engine import wait_until_settled
from loomtui.workspace import open_workspace

DEPTH = 1200


def _deep_commit(repo: Path, levels: int) -> str:
    """A commit of the repository's tree plus `f.txt` under `levels` folders named `d`, made with git's
    plumbing (no checkout: the path may be longer than the system allows)."""
    def given(text: str, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, input=text, capture_output=True, text=True,
                              check=True).stdout.strip()

    tree = given("", "mktree")  # empty, then one level at a time
    tree = given(f"100644 blob {given('deep' + chr(10), 'hash-object', '-w', '--stdin')}\tf.txt\n", "mktree")
    for _ in range(levels):
        tree = given(f"040000 tree {tree}\td\n", "mktree")
    root = given(git(repo, "ls-tree", "HEAD") + f"\n040000 tree {tree}\tdeep\n", "mktree")
    return git(repo, "commit-tree", root, "-p", "HEAD", "-m", "deep")


def test_a_commit_deep_past_recursion_is_exported_and_one_past_the_path_limit_is_refused(
        repo: Path, tmp_path: Path) -> None:
    dest = tmp_path / "export"
    export_tree(repo, _deep_commit(repo, DEPTH), dest)
    deep = Path(dest, "deep", *["d"] * DEPTH, "f.txt")
    assert deep.read_text() == "deep\n" and (dest / "README.md").is_file()
    # Exported again (a scratch tree made before is removed first, at any depth), and too deep for the
    # system's paths: said, not a traceback.
    with pytest.raises(LoomError, match=r"cannot check [0-9a-f]{12}: cannot write 'deep/d/d/[d/]*'\.\.\. "
                                        r"\(4210 characters\): File name too long"):
        export_tree(repo, _deep_commit(repo, 2100), dest)
    remove_tree(dest)  # pytest's own clean-up of tmp_path recurses


def test_a_tree_past_the_path_limit_is_removed_and_a_link_in_it_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep\n")
    top = tmp_path / "agent"
    make_folders(top / "a" / "b")
    (top / "a" / "b" / "out").symlink_to(outside)
    os.chdir(top)
    try:
        for _ in range(2500):  # 5,000 characters of path: past PATH_MAX
            os.mkdir("d")
            os.chdir("d")
    finally:
        os.chdir(tmp_path)
    remove_tree(top)
    assert not top.exists() and (outside / "keep.txt").read_text() == "keep\n"
    remove_tree(top)  # gone already: nothing to do


def test_an_agent_s_chain_of_folders_is_saved_reviewed_and_removed(repo: Path) -> None:
    workspace = open_workspace(repo)
    try:
        record = tasks.create_sandbox(workspace, "deep", "command", isolate=False, command=[
            "python3", "-c", f"import os\nfor _ in range({DEPTH}): os.mkdir('d'); os.chdir('d')\n"
                             "open('f.txt', 'w').write('bottom\\n')"])
        tasks.start(workspace, record.id)
        wait_until_settled(workspace, record.id, timeout=60)
        done = get_sandbox(workspace, record.id)
        assert "error" not in done.data and "step_error" not in str(done.data), done.data
        saved = git(repo, "ls-tree", "-r", "--name-only", done.branch)
        assert "/".join(["d"] * DEPTH) + "/f.txt" in saved.splitlines()
        assert review.remove(workspace, record.id, force=True)
        assert not Path(done.worktree).exists()
    finally:
        workspace.close()
