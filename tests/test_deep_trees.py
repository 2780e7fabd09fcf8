"""An agent's folders as deep as it likes: what loomtui does with them outside the sandbox (export them for
the gates, look for nested repositories, remove them) walks any depth. Python 3.11's `os.walk`,
`shutil.rmtree` and `mkdir(parents=True)` recurse once a level, and a chain of 1,200 folders raised
RecursionError: the review failed for good and `sandbox rm --force` ended in an internal error."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import zlib
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
    """A commit of the repository's tree plus `f.txt` under `levels` folders named `d`, made without a
    checkout (the path may be longer than the system allows): each level's tree object is written into
    the object store here, as git writes it (a `git mktree` a level was 3,000 processes)."""
    objects = Path(git(repo, "rev-parse", "--git-common-dir"), "objects")
    if not objects.is_absolute():
        objects = repo / objects

    def stored(kind: str, body: bytes) -> bytes:
        data = f"{kind} {len(body)}".encode() + b"\0" + body
        name = hashlib.sha1(data).hexdigest()
        path = objects / name[:2] / name[2:]
        path.parent.mkdir(exist_ok=True)
        if not path.exists():
            path.write_bytes(zlib.compress(data))
        return bytes.fromhex(name)

    tree = stored("tree", b"100644 f.txt\0" + stored("blob", b"deep\n"))
    for _ in range(levels):
        tree = stored("tree", b"40000 d\0" + tree)
    listing = git(repo, "ls-tree", "HEAD") + f"\n040000 tree {tree.hex()}\tdeep\n"
    root = subprocess.run(["git", "mktree"], cwd=repo, input=listing, capture_output=True, text=True,
                          check=True).stdout.strip()
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


@pytest.mark.skipif(os.geteuid() != 0, reason="runs as another user (nobody): needs root")
def test_a_folder_its_maker_left_unreadable_is_removed_by_its_owner() -> None:
    """rm cannot empty a folder of mode 000, even its owner's (root can, so this runs as `nobody`): a planted
    `.git` left so stayed in the worktree and was saved to the branch as the agent's work."""
    place = Path(tempfile.mkdtemp(prefix="loomtui-nobody-"))
    try:
        os.chown(place, 65534, 65534)
        child = os.fork()
        if child == 0:  # as nobody, what an agent run by nobody leaves, and nobody's loomtui removing it
            code = 1
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                top = place / "agent"
                (top / "locked" / "inner").mkdir(parents=True)
                (top / "locked" / "inner" / "f").write_text("x")
                os.chmod(top / "locked" / "inner", 0)
                os.chmod(top / "locked", 0)
                remove_tree(top)
                code = 0 if not top.exists() else 2
            finally:
                os._exit(code)
        _pid, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        remove_tree(place)


def test_a_planted_git_folder_that_cannot_be_removed_is_said_not_saved_quietly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Moved aside and not removable, the agent's `.git` stayed in the worktree and was saved to its branch as
    its work, with nothing said: it is said, and the sandbox fails on it."""
    from loomtui.execution import git_links

    worktree = tmp_path / "wt"
    (worktree / ".git" / "hooks").mkdir(parents=True)
    links = git_links.GitLinks({worktree / ".git": "gitdir: /repo/.git/worktrees/wt\n"})

    def refuses(path: Path) -> None:
        raise OSError(13, "Permission denied", str(path))

    monkeypatch.setattr(git_links, "remove_tree", refuses)
    put_back, failed = git_links.put_back(links)
    assert put_back == [".git"] and (worktree / ".git").read_text() == "gitdir: /repo/.git/worktrees/wt\n"
    [said] = failed
    assert said.startswith("..git.agent-") and said.endswith(", the agent's .git moved aside: Permission denied")
