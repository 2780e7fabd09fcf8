"""loomtui's own index of an agent's worktree (execution.gitops.AgentTree): what it reports changed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from loomtui.execution.gitops import AgentTree
from tests.conftest import git


def _agent_tree(repo: Path, tmp_path: Path, files: dict[str, str | bytes] | None = None,
                index: str = "outside.index", largest_file: int | None = None) -> tuple[str, Path, AgentTree]:
    """A commit of `files` (if any), a worktree of it on branch `agent`, and loomtui's view of that worktree."""
    for name, content in (files or {}).items():
        (repo / name).write_bytes(content if isinstance(content, bytes) else content.encode())
        git(repo, "add", name)
    if files:
        git(repo, "commit", "-qm", ", ".join(files))
    base = git(repo, "rev-parse", "HEAD")
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "agent", str(worktree), base)
    return base, worktree, AgentTree(repo / ".git", worktree, tmp_path / index, largest_file=largest_file)


def test_a_same_size_change_in_the_second_of_the_last_snapshot_is_seen(repo: Path, tmp_path: Path) -> None:
    """git trusts an entry's stat data (seconds, size) only for a file changed before the index was
    written; a snapshot's copy of the index must keep the index's time for that check to hold. Copied
    with a new time, an edit of the same size, in the second of the last snapshot, was missed (a merge
    then said the reviewed tree had uncommitted changes)."""
    base, worktree, tree = _agent_tree(repo, tmp_path, {"lib.py": "x = 1\n"})
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


def test_a_file_past_the_largest_file_is_left_out_of_a_snapshot_and_named(repo: Path, tmp_path: Path) -> None:
    """A sparse 3 GB file costs an agent nothing to make; `git add` of it read 3 GB outside the sandbox's
    limits (and the gates wrote it out whole). Past `limits.file_size` it is left out and said."""
    base, worktree, tree = _agent_tree(repo, tmp_path, {"data.bin": b"small\n"}, largest_file=1 << 20)
    with (worktree / "huge.bin").open("wb") as sparse:
        sparse.truncate(3 << 30)
    (worktree / "data.bin").write_bytes(b"\0" * ((1 << 20) + 1))  # a tracked file grown past it
    (worktree / "code.py").write_text("x = 1\n")

    snapshot, changed = tree.snapshot(base)
    assert changed == ["code.py"]
    assert "huge.bin" not in git(repo, "ls-tree", "--name-only", snapshot).split()
    assert git(repo, "cat-file", "-p", f"{snapshot}:data.bin") == "small"  # as it was: not the new one
    assert sorted(tree.too_large) == [("data.bin", (1 << 20) + 1), ("huge.bin", 3 << 30)]
    assert tree.unsaved_said() == ("'data.bin' (1.0 MiB), 'huge.bin' (3.0 GiB) are larger than "
                                     "limits.file_size allows (1.0 MiB)")

    (worktree / "huge.bin").unlink()  # moved out: then it is saved as it is
    (worktree / "data.bin").write_bytes(b"fits\n")
    snapshot, changed = tree.snapshot(base)
    assert changed == ["code.py", "data.bin"] and tree.too_large == [] and tree.unsaved_said() == ""
    unlimited = AgentTree(repo / ".git", worktree, tmp_path / "other.index")
    (worktree / "data.bin").write_bytes(b"\0" * ((1 << 20) + 1))
    assert unlimited.snapshot(base)[1] == ["code.py", "data.bin"] and unlimited.too_large == []


def test_a_large_file_the_agent_committed_stays_in_the_save_and_a_long_path_is_sized_too(
        repo: Path, tmp_path: Path) -> None:
    """Left out of loomtui's index, a large file the agent had committed itself was missing from the tree
    written, so the save committed its deletion (and the gate then passed). And a path longer than PATH_MAX
    from / (git reads it relative to the worktree) could not be sized, read as gone, and was saved whole."""
    base, worktree, tree = _agent_tree(repo, tmp_path, largest_file=1 << 20)
    (worktree / "big.bin").write_bytes(b"\\1" * (2 << 20))
    assert tree.snapshot(base)[1] == [] and [p for p, _ in tree.too_large] == ["big.bin"]
    git(worktree, "add", "big.bin")
    git(worktree, "commit", "-qm", "the agent's own commit of a large file")
    tip = git(repo, "rev-parse", "agent")
    (worktree / "small.txt").write_text("saved\\n")
    saved = tree.commit_all("agent", "save")
    assert saved and git(repo, "rev-parse", f"{saved}:big.bin") == git(repo, "rev-parse", f"{tip}:big.bin")

    folder = os.open(worktree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in ["d" * 250] * 16 + ["e" * 40]:  # 4,065 characters from the worktree, past 4,096 from /
            os.mkdir(name, dir_fd=folder)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=folder)
            os.close(folder)
            folder = inner
        with open(os.open("deep.bin", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=folder), "wb") as out:
            out.truncate(300 << 20)
    finally:
        os.close(folder)
    assert len(str(worktree)) + 16 * 251 + 41 + len("/deep.bin") > 4096
    assert [p.rsplit("/", 1)[-1] for p, _ in (tree.snapshot(base), tree.too_large)[1]] == ["deep.bin"]


def test_a_snapshot_whose_git_died_leaves_no_lock(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git killed (a file truncated as it read it) left `.index-*.lock` behind in the state dir, one a snapshot."""
    from loomtui.execution.gitops import GitFailed, RawResult

    base, _worktree, tree = _agent_tree(repo, tmp_path, index="state/outside.index")
    real = tree._tree.raw

    def dies_in_add(*args: str, env: dict[str, str], **kwargs: object) -> RawResult:
        if "add" in args:
            index = Path(env["GIT_INDEX_FILE"])
            index.with_name(index.name + ".lock").write_text("")
            return RawResult(-9, b"", b"")
        return real(*args, env=env, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tree._tree, "raw", dies_in_add)
    with pytest.raises(GitFailed, match="git add failed"):
        tree.snapshot(base)
    assert list((tmp_path / "state").iterdir()) == []


def _adds(tree: AgentTree, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """What each `git add` the snapshots make from here on is given: its arguments after `add`, or the
    paths it reads from stdin."""
    adds: list[list[str]] = []
    raw = tree._tree.raw  # every git run goes through it

    def listed(*args: str, data: bytes | None = None, **kwargs):  # type: ignore[no-untyped-def]
        if "add" in args:
            adds.append(data.decode().split("\0")[:-1] if data else list(args[args.index("add") + 1:]))
        return raw(*args, data=data, **kwargs)

    monkeypatch.setattr(tree._tree, "raw", listed)
    return adds


def test_a_snapshot_adds_only_what_its_listing_found(repo: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing (for the size check) walks the worktree; `git add --all` walked it a second time (a 20,000-file
    tree: twice the time). With loomtui's index cached, `add` takes only the paths listed: none when nothing is
    new, the deleted file after a deletion."""
    base, worktree, tree = _agent_tree(repo, tmp_path, {"lib.py": "x = 1\n", "keep.py": "k = 1\n"},
                                       largest_file=1 << 20)
    (worktree / "new.py").write_text("y = 2\n")
    first = tree.snapshot(base)
    adds = _adds(tree, monkeypatch)
    assert tree.snapshot(base) == first and adds == []
    (worktree / "lib.py").unlink()
    assert tree.snapshot(base)[1] == ["lib.py", "new.py"] and adds == [["lib.py"]]


def test_a_listed_file_gone_before_its_add_falls_back_to_adding_everything(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git refuses to add a path that names nothing: an agent's temporary file listed, then removed before the
    add, must not fail the snapshot (the whole tree is added instead)."""
    base, worktree, tree = _agent_tree(repo, tmp_path, {"lib.py": "x = 1\n"}, largest_file=1 << 20)
    tree.snapshot(base)
    (worktree / "lib.py").write_text("x = 2\n")
    listing = tree._changed
    monkeypatch.setattr(tree, "_changed", lambda index: [*listing(index), "tmp-gone.swp"])
    adds = _adds(tree, monkeypatch)
    snapshot, changed = tree.snapshot(base)
    assert changed == ["lib.py"] and git(repo, "cat-file", "-p", f"{snapshot}:lib.py") == "x = 2"
    assert adds[0] == ["lib.py", "tmp-gone.swp"] and [add[:3] for add in adds[1:]] == [["--all", "--", "."]]


def test_a_snapshot_from_its_listing_is_the_tree_a_whole_add_makes(repo: Path, tmp_path: Path) -> None:
    """What only a listing's paths make, against a fresh index that adds everything: a file become a folder, a
    nested repository, a link, a deletion, an ignored file, names git would read as patterns, and the contents
    of a folder loomtui keeps (aider's tags cache) left out."""
    base, worktree, _tree = _agent_tree(repo, tmp_path, {"a.py": "a\n", "b.py": "b\n", "c.py": "c\n",
                                                         ".gitignore": "*.log\n"})
    managed = (".aider.tags.cache.v4",)
    cached = AgentTree(repo / ".git", worktree, tmp_path / "cached.index", managed, largest_file=1 << 20)
    cached.snapshot(base)
    (worktree / "a.py").unlink()
    (worktree / "a.py").mkdir()
    (worktree / "a.py" / "inner.py").write_text("inner\n")
    (worktree / "b.py").unlink()
    (worktree / "link").symlink_to("c.py")
    (worktree / "debug.log").write_text("ignored\n")
    (worktree / "*.py").write_text("a star\n")
    (worktree / ":(glob)x").write_text("magic\n")
    (worktree / ".aider.tags.cache.v4").mkdir()
    (worktree / ".aider.tags.cache.v4" / "cache.db").write_text("tags\n")
    nested = worktree / "vendored"
    nested.mkdir()
    git(nested, "init", "-q")
    (nested / "n.py").write_text("n\n")
    git(nested, "add", "n.py")
    git(nested, "commit", "-qm", "nested")

    from_listing = cached.snapshot(base)
    whole = AgentTree(repo / ".git", worktree, tmp_path / "fresh.index", managed).snapshot(base)
    assert from_listing == whole
    names = git(repo, "ls-tree", "-r", "--name-only", from_listing[0]).splitlines()
    assert {"a.py/inner.py", "link", "*.py", ":(glob)x", "vendored"} <= set(names)
    assert not {"b.py", "debug.log", ".aider.tags.cache.v4/cache.db"} & set(names)


def test_a_file_grown_past_the_limit_after_its_size_check_is_put_back(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent runs while the app looks at its worktree: a file small when sized and large when git read it
    went into loomtui's index, and from there, unchanged since, into the save. What git took past the limit is
    put back as the base has it, and named."""
    base, worktree, tree = _agent_tree(repo, tmp_path, {"data.bin": b"small\n"}, largest_file=1 << 20)
    tree.snapshot(base)
    (worktree / "data.bin").write_bytes(b"\1" * ((1 << 20) + 1))
    (worktree / "code.py").write_text("x = 1\n")
    real, calls = tree._sizes, []

    def sized_before_it_grew(paths: list[str]) -> dict[str, tuple[int, int, int]]:
        calls.append(paths)
        return {path: (6, 0, 0) for path in paths} if len(calls) == 1 else real(paths)

    monkeypatch.setattr(tree, "_sizes", sized_before_it_grew)
    snapshot, changed = tree.snapshot(base)
    assert changed == ["code.py"] and tree.too_large == [("data.bin", (1 << 20) + 1)]
    assert git(repo, "cat-file", "-p", f"{snapshot}:data.bin") == "small"
    monkeypatch.undo()
    assert tree.snapshot(base)[1] == ["code.py"] and tree.too_large == [("data.bin", (1 << 20) + 1)]


def _private_commit(repo: Path, tmp_path: Path, files: dict[str, bytes],
                    message: bytes = b"the agent's commit") -> tuple[object, str, str]:
    """An isolated agent's commit of `files` on `loom/x` (at the repo's HEAD), in its private object store as
    the agent's git writes it; (its PrivateGit, the base, the commit)."""
    from loomtui.execution.isolation import PrivateGit

    base = git(repo, "rev-parse", "HEAD")
    git(repo, "branch", "loom/x", base)
    private = PrivateGit(tmp_path / "private")
    private.objects.mkdir(parents=True)
    private.refs.mkdir()
    env = {**os.environ, "GIT_OBJECT_DIRECTORY": str(private.objects), "GIT_INDEX_FILE": str(tmp_path / "agent.index"),
           "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(repo / ".git" / "objects")}

    def agent_git(*args: str, data: bytes | None = None) -> str:
        return subprocess.run(["git", *args], cwd=repo, env=env, input=data, capture_output=True,
                              check=True).stdout.decode().strip()

    agent_git("read-tree", base)
    for name, content in files.items():
        blob = agent_git("hash-object", "-w", "--stdin", data=content)
        agent_git("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}")
    commit = agent_git("commit-tree", agent_git("write-tree"), "-p", base, "-F", "-", data=message)
    (private.refs / "x").write_text(commit + "\n")
    return private, base, commit


def test_an_isolated_agents_commit_of_a_file_past_the_limit_is_not_brought_in(repo: Path, tmp_path: Path) -> None:
    """An agent's own commit of a sparse 3 GB file costs it 3 MB of object; bringing it in packed it whole in the
    supervisor's memory, outside every limit. Commits carrying a blob past `limits.file_size`, or blobs near it
    coming to more than ten times it, stay out (the branch where it was), said once a tip; others come in."""
    from loomtui.execution import privategit

    private, base, commit = _private_commit(repo, tmp_path, {"huge.bin": b"\0" * 5000, "code.py": b"x = 1\n"})
    with pytest.raises(privategit.TooLargeToBringIn, match=r"'huge.bin' \(.*\) is larger than limits") as refused:
        privategit.sync(private, repo, "loom/x", largest_file=4096)  # type: ignore[arg-type]
    assert not refused.value.again
    assert git(repo, "rev-parse", "loom/x") == base
    assert subprocess.run(["git", "cat-file", "-e", f"{commit}:huge.bin"], cwd=repo).returncode != 0
    with pytest.raises(privategit.TooLargeToBringIn) as again:
        privategit.sync(private, repo, "loom/x", largest_file=4096)  # type: ignore[arg-type]
    assert again.value.again

    git(repo, "branch", "-D", "loom/x")
    many, _base, _commit = _private_commit(repo, tmp_path / "many", {f"f{n}.bin": bytes([n]) * 4000 for n in range(11)})
    with pytest.raises(privategit.TooLargeToBringIn, match="more than 10 times limits.file_size"):
        privategit.sync(many, repo, "loom/x", largest_file=4096)  # type: ignore[arg-type]

    assert privategit.sync(private, repo, "loom/x", largest_file=None) == commit  # type: ignore[arg-type]
    assert git(repo, "cat-file", "-s", f"{commit}:huge.bin") == "5000"


def test_a_sync_while_another_worktree_is_being_added_brings_the_commits_in(repo: Path, tmp_path: Path) -> None:
    """`git worktree add` of another sandbox under way (its admin dir made, its `commondir` not yet written):
    `rev-list --all` read every worktree's HEAD and died on it ("failed to read .../commondir: Success"), and
    the agent's commits stayed out of its branch, said nowhere."""
    from loomtui.execution import privategit

    private, base, commit = _private_commit(repo, tmp_path, {"code.py": b"x = 2\n"})
    half_made = repo / ".git" / "worktrees" / "being-added"
    half_made.mkdir(parents=True)
    (half_made / "gitdir").write_text(f"{tmp_path / 'being-added' / '.git'}\n")
    (half_made / "commondir").write_text("")
    assert privategit.sync(private, repo, "loom/x", base=base) == commit  # type: ignore[arg-type]
    assert git(repo, "rev-parse", "loom/x") == commit


def test_a_sync_after_the_branch_was_deleted_makes_no_branch_again(repo: Path, tmp_path: Path) -> None:
    """`sandbox new` interrupted: its removal deleted the branch (audited `branch_deleted`), then the supervisor's
    last sync made it again from the agent's private ref (an empty old value to update-ref means "create")."""
    from loomtui.execution import privategit

    private, _base, _commit = _private_commit(repo, tmp_path, {"code.py": b"x = 1\n"})
    git(repo, "branch", "-D", "loom/x")
    assert privategit.sync(private, repo, "loom/x") is None  # type: ignore[arg-type]
    assert subprocess.run(["git", "rev-parse", "--verify", "-q", "loom/x"], cwd=repo).returncode != 0


def test_an_isolated_agents_tree_naming_millions_of_paths_with_a_few_objects_is_not_brought_in(
        repo: Path, tmp_path: Path) -> None:
    """Sixteen entries naming one tree, six levels deep: 8 objects of 32 KB, 16.7 million paths. Brought in, the
    branch moved to it and every git reading that tree outside the sandbox (a snapshot's `read-tree` and `add`,
    the gates' export, `sandbox diff`, a person's `git log --stat`) ran for hours and took gigabytes. Counted
    as git lists it, stopped past the limit, for every commit brought in (one in the middle stays in the
    history), from the sandbox's base (from the branch's last tip, a bomb grew by the limit each sync): it stays
    out, said; a commit adding files as agents do comes in."""
    from loomtui.execution import privategit

    private, base, _commit = _private_commit(repo, tmp_path, {"code.py": b"x = 1\n"})
    env = {**os.environ, "GIT_OBJECT_DIRECTORY": str(private.objects),  # type: ignore[attr-defined]
           "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(repo / ".git" / "objects")}

    def agent_git(*args: str, data: str = "") -> str:
        return subprocess.run(["git", *args], cwd=repo, env=env, input=data, capture_output=True, text=True,
                              check=True).stdout.strip()

    def bomb(levels: int, copies: int = 16) -> str:
        """A tree of 16 ** `levels` paths, `copies` of them at the top."""
        tree = agent_git("mktree", data="".join(f"100644 blob {empty}\t{n}\n" for n in names))
        for level in range(levels - 1):
            wide = names[:copies] if level == levels - 2 else names
            tree = agent_git("mktree", data="".join(f"040000 tree {tree}\t{n}\n" for n in wide))
        return tree

    def commit(parent: str, *extra: tuple[str, str]) -> str:
        listing = git(repo, "ls-tree", base) + "".join(f"\n040000 tree {tree}\t{name}" for name, tree in extra)
        made = agent_git("commit-tree", agent_git("mktree", data=listing + "\n"), "-p", parent, "-m", "paths")
        (private.refs / "x").write_text(made + "\n")  # type: ignore[attr-defined]
        return made

    def refused(match: str) -> None:
        for largest_file in (None, 1 << 20):
            privategit._refused.clear()
            with pytest.raises(privategit.TooLargeToBringIn, match=match):
                privategit.sync(private, repo, "loom/x", largest_file=largest_file, base=base)  # type: ignore[arg-type]

    names = "0123456789abcdef"
    empty = agent_git("hash-object", "-w", "--stdin")
    huge = commit(base, ("bomb", bomb(6)))
    refused(rf"^its commits were not brought in: commit {huge[:12]} holds more than 200,000 paths more than its base")
    assert git(repo, "rev-parse", "loom/x") == base
    # The bomb under a small commit: the tip is small, the history is not.
    small = commit(huge)
    refused(rf"^its commits were not brought in: commit {huge[:12]} holds more ")
    # Grown by 139,810 paths a sync, folders counted (each under the limit from the last tip): the second is past
    # it from the base.
    first = commit(base, ("a", bomb(5, copies=2)))
    assert privategit.sync(private, repo, "loom/x", base=base) == first  # type: ignore[arg-type]
    second = commit(first, ("a", bomb(5, copies=2)), ("b", bomb(5, copies=2)))
    refused(rf"^its commits were not brought in: commit {second[:12]} holds more ")
    assert git(repo, "rev-parse", "loom/x") == first and small
    # Empty folders, 16 to a folder: no file for `ls-tree -r` to list, counted as none (a review of a one-line
    # docs change walked 16 ** 7 folders for minutes, past 11 GB).
    folders = agent_git("mktree", data="")
    for _level in range(7):
        folders = agent_git("mktree", data="".join(f"040000 tree {folders}\t{n}\n" for n in names))
    hollow = commit(first, ("zz", folders))
    refused(rf"^its commits were not brought in: commit {hollow[:12]} holds more ")
    assert git(repo, "rev-parse", "loom/x") == first
    # A count git could not finish in time is no count (what it had listed, none, was taken as the whole).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(privategit, "IMPORT_TIMEOUT_S", 0.05)
        with pytest.raises(privategit.TooLargeToBringIn, match=rf"the tree of {huge[:12]} could not be listed"):
            privategit._paths_in(privategit.Git(repo), huge, env, privategit.PATHS_COUNTED_MAX * 10)
    git(repo, "branch", "-D", "loom/x")
    many, _base, made = _private_commit(repo, tmp_path / "many", {f"f{n}.py": b"x\n" for n in range(300)})
    assert privategit.sync(many, repo, "loom/x", largest_file=1 << 20, base=base) == made  # type: ignore[arg-type]


def test_many_changed_paths_are_added_with_the_whole_tree(repo: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """git matches every path given to `add` against every entry: an agent deleting a 60,000-file folder made a
    snapshot take 37 s. Past LISTED_ADD_MAX changed paths the whole tree is added, one walk."""
    from loomtui.execution.gitops import LISTED_ADD_MAX

    base, worktree, tree = _agent_tree(repo, tmp_path, {"lib.py": "x = 1\n"}, largest_file=1 << 20)
    tree.snapshot(base)
    adds = _adds(tree, monkeypatch)
    for number in range(LISTED_ADD_MAX + 1):
        (worktree / f"gen{number}.py").write_text(f"n = {number}\n")
    assert len(tree.snapshot(base)[1]) == LISTED_ADD_MAX + 1
    assert [add[:3] for add in adds] == [["--all", "--", "."]]


def test_a_file_git_stores_larger_than_it_is_is_not_left_out(repo: Path, tmp_path: Path) -> None:
    """An encoding (`working-tree-encoding`) or a clean filter stores a file larger than it is on disk: the check
    of what git took read 720,000 bytes of UTF-16 stored as 1,080,000 of UTF-8 as past a 1 MiB limit, and left a
    file under it out of the save."""
    base, worktree, _tree = _agent_tree(repo, tmp_path, {".gitattributes": "*.txt working-tree-encoding=UTF-16LE text\n"},
                                        largest_file=1 << 20)
    (worktree / "notes.txt").write_bytes(("\u6f22" * 360_000).encode("utf-16le"))
    for name in ("fresh", "cached"):
        tree = AgentTree(repo / ".git", worktree, tmp_path / f"{name}.index", largest_file=1 << 20)
        if name == "cached":
            (worktree / "notes.txt").rename(tmp_path / "aside")
            tree.snapshot(base)
            (tmp_path / "aside").rename(worktree / "notes.txt")
        snapshot, changed = tree.snapshot(base)
        assert changed == ["notes.txt"] and tree.too_large == [], name
        assert git(repo, "cat-file", "-s", f"{snapshot}:notes.txt") == "1080000"


@pytest.mark.parametrize("changed", ["listed", "whole"])
def test_a_file_grown_as_git_reads_it_and_put_back_after_is_not_kept(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changed: str) -> None:
    """An agent watching its worktree (inotify) grows a file the moment loomtui has sized it and shrinks it back
    to that size once git has read it: judged by its size alone, the large blob stayed in the snapshot and in
    loomtui's index. Its change time moved, which no one can set back: it is put back."""
    from loomtui.execution.gitops import LISTED_ADD_MAX

    base, worktree, tree = _agent_tree(repo, tmp_path, {"a.txt": "a\n"}, largest_file=1 << 20)
    tree.snapshot(base)
    small, large = b"s" * 1000, b"\1" * (3 << 20)
    (worktree / "data.bin").write_bytes(small)
    for number in range(LISTED_ADD_MAX + 1 if changed == "whole" else 0):
        (worktree / f"gen{number}.py").write_text(f"n = {number}\n")

    def racing(add):  # type: ignore[no-untyped-def]
        def during(*args, **kwargs):  # type: ignore[no-untyped-def]
            (worktree / "data.bin").write_bytes(large)
            try:
                return add(*args, **kwargs)
            finally:
                (worktree / "data.bin").write_bytes(small)
        return during

    monkeypatch.setattr(tree, "_add_listed", racing(tree._add_listed))
    monkeypatch.setattr(tree, "_add_all", racing(tree._add_all))
    snapshot, _changed = tree.snapshot(base)
    assert [path for path, _size in tree.too_large] == ["data.bin"]
    assert "data.bin" not in git(repo, "ls-tree", "--name-only", snapshot).split()
    monkeypatch.undo()
    snapshot, _changed = tree.snapshot(base)  # the index kept nothing of it: the small file is seen again
    assert git(repo, "cat-file", "-s", f"{snapshot}:data.bin") == "1000" and tree.too_large == []


def test_an_isolated_agent_cannot_slip_a_large_object_or_a_trap_past_the_bring_in(repo: Path, tmp_path: Path) -> None:
    """What else an agent's private store and ref hold: a commit with a 300 MB message (not a blob, and not sized),
    a file name of bytes that are not UTF-8 (an exception out of the sync killed the supervisor's store loop), a
    ref file that is a FIFO or a sparse gigabyte (read whole, every beat)."""
    from loomtui.execution import privategit

    private, base, _commit = _private_commit(repo, tmp_path, {"code.py": b"x = 1\n"}, message=b"m" * 10_000)
    with pytest.raises(privategit.TooLargeToBringIn, match=r"commit .* is larger than limits.file_size"):
        privategit.sync(private, repo, "loom/x", largest_file=4096)  # type: ignore[arg-type]
    git(repo, "branch", "-D", "loom/x")
    odd, base, commit = _private_commit(repo, tmp_path / "odd", {"a\r\udcff.bin".encode("utf-8", "surrogateescape")
                                                                  .decode("utf-8", "surrogateescape"): b"\0" * 5000})
    with pytest.raises(privategit.TooLargeToBringIn, match="is larger than limits.file_size"):
        privategit.sync(odd, repo, "loom/x", largest_file=4096)  # type: ignore[arg-type]
    ref = odd.refs / "x"  # type: ignore[attr-defined]
    ref.unlink()
    os.mkfifo(ref)
    assert privategit.sync(odd, repo, "loom/x", largest_file=None) == base  # type: ignore[arg-type]
    ref.unlink()
    with ref.open("wb") as sparse:
        sparse.write(commit.encode() + b"\n")
        sparse.truncate(1 << 30)
    assert privategit.sync(odd, repo, "loom/x", largest_file=None) == base  # type: ignore[arg-type]


def test_a_file_a_change_ignores_after_a_snapshot_took_it_is_left_out_as_a_fresh_index_would(
        repo: Path, tmp_path: Path) -> None:
    """An agent builds into `out/`, the app's snapshot takes it, then the agent ignores `out/` in `.gitignore`:
    loomtui's index kept it (git ignores no file it tracks), so the save held what the change itself ignores, and
    a fresh index would not. A file the base has stays, ignored or not."""
    base, worktree, tree = _agent_tree(repo, tmp_path, {"kept.log": "in the base\n"}, largest_file=1 << 20)
    (worktree / "out").mkdir()
    (worktree / "out" / "bundle.js").write_text("built\n")
    (worktree / "code.py").write_text("x = 1\n")
    assert tree.snapshot(base)[1] == ["code.py", "out/bundle.js"]
    (worktree / ".gitignore").write_text("out/\n*.log\n")
    snapshot, changed = tree.snapshot(base)
    assert changed == [".gitignore", "code.py"]
    assert (snapshot, changed) == AgentTree(repo / ".git", worktree, tmp_path / "fresh.index").snapshot(base)
    assert git(repo, "cat-file", "-p", f"{snapshot}:kept.log") == "in the base"


BOM_UTF16LE = b"\xff\xfeh\x00i\x00\n\x00"


@pytest.mark.parametrize("cached", [False, True], ids=["fresh-index", "cached-index"])
def test_a_file_git_cannot_convert_is_left_out_named_and_the_rest_saved(repo: Path, tmp_path: Path,
                                                                         cached: bool) -> None:
    """One file whose content does not convert as the change's `.gitattributes` say (`working-tree-encoding`)
    failed the whole `git add`: no snapshot, so none of the agent's work was saved or reviewed (an agent
    writing a Windows script with a BOM into a repository that asks for UTF-16LE does it unawares). It is
    left out, as the base has it, and named with git's reason."""
    base, worktree, tree = _agent_tree(repo, tmp_path, {"run.ps1": "echo base\n"}, largest_file=1 << 20)
    if cached:
        tree.snapshot(base)
    (worktree / ".gitattributes").write_text("*.ps1 working-tree-encoding=UTF-16LE\n"
                                             "needs-bom.txt working-tree-encoding=UTF-16\n")
    (worktree / "run.ps1").write_bytes(BOM_UTF16LE)  # tracked: put back as the base has it
    (worktree / "new.ps1").write_bytes(BOM_UTF16LE)  # new: left out
    (worktree / "needs-bom.txt").write_bytes(b"h\x00i\x00")
    (worktree / "good.ps1").write_bytes("hi\n".encode("utf-16-le"))  # converts: saved, as UTF-8
    (worktree / "code.py").write_text("x = 1\n")

    snapshot, changed = tree.snapshot(base)
    assert changed == [".gitattributes", "code.py", "good.ps1"]
    assert git(repo, "cat-file", "-p", f"{snapshot}:good.ps1") == "hi"
    assert git(repo, "cat-file", "-p", f"{snapshot}:run.ps1") == "echo base"
    assert "new.ps1" not in git(repo, "ls-tree", "--name-only", snapshot)
    assert tree.unsaved == ["needs-bom.txt", "new.ps1", "run.ps1"]
    said = tree.unsaved_said()
    assert said.startswith("git cannot store ") and said.endswith(" as the .gitattributes of the change ask")
    assert "'run.ps1' (BOM is prohibited in 'run.ps1' if encoded as UTF-16LE)" in said
    assert "'needs-bom.txt' (BOM is required in 'needs-bom.txt' if encoded as UTF-16)" in said
    # Fixed in the worktree: the next snapshot takes it.
    (worktree / "new.ps1").write_bytes("ok\n".encode("utf-16-le"))
    snapshot, changed = tree.snapshot(base)
    assert "new.ps1" in changed and git(repo, "cat-file", "-p", f"{snapshot}:new.ps1") == "ok"
    assert tree.unsaved == ["needs-bom.txt", "run.ps1"]


def test_past_the_number_of_files_git_may_refuse_the_snapshot_fails_saying_why(repo: Path, tmp_path: Path) -> None:
    """Each refusal costs a walk of the tree: an agent making thousands of them does not make a snapshot walk
    it thousands of times; it fails, as before, with git's reason."""
    from loomtui.execution.gitops import REFUSED_MAX
    from loomtui.gitcmd import GitFailed

    base, worktree, tree = _agent_tree(repo, tmp_path)
    (worktree / ".gitattributes").write_text("*.txt working-tree-encoding=UTF-16LE\n")
    for n in range(REFUSED_MAX + 1):
        (worktree / f"f{n:02}.txt").write_bytes(BOM_UTF16LE)
    with pytest.raises(GitFailed, match=r"^git add failed: BOM is prohibited in 'f\d\d.txt' if encoded as UTF-16LE "
                                        rf"\(and {REFUSED_MAX} other files git would not read\)$"):
        tree.snapshot(base)


def test_a_managed_file_an_earlier_snapshot_took_is_put_back_as_the_base_has_it(repo: Path, tmp_path: Path) -> None:
    """The context slice written as AGENTS.md, snapshotted (the app, woken by a store write) before the sandbox
    named it managed: kept in loomtui's index, every later snapshot carried it and the agent's saved work
    committed it (the team's AGENTS.md replaced on the branch, to be merged into main)."""
    base, worktree, early = _agent_tree(repo, tmp_path, {"AGENTS.md": "# Team\n\nUse Decimal.\n"})
    (worktree / "AGENTS.md").write_text("# Context for this task\n\nthe slice\n")
    assert early.snapshot(base)[1] == ["AGENTS.md"]  # not managed yet: taken into the kept index
    (worktree / "work.py").write_text("x = 1\n")
    later = AgentTree(repo / ".git", worktree, tmp_path / "outside.index", ("AGENTS.md",))
    tree, changed = later.snapshot(base)
    assert changed == ["work.py"]
    assert git(repo, "show", f"{tree}:AGENTS.md") == "# Team\n\nUse Decimal."


@pytest.mark.parametrize("largest_file", [None, 1 << 20])
def test_a_file_the_agent_committed_that_a_gitignore_ignores_stays_in_a_later_snapshot(
        repo: Path, tmp_path: Path, largest_file: int | None) -> None:
    """The index, begun from the sandbox's base, never took the agent's force-added `tests/access.log` (under
    `*.log`): the save at the agent's end committed its deletion, "work left uncommitted"."""
    base, worktree, tree = _agent_tree(repo, tmp_path, {".gitignore": "*.log\n", "lib.py": "x = 1\n"},
                                       largest_file=largest_file)
    assert tree.snapshot(base)[1] == []  # the index, from the base
    (worktree / "tests").mkdir()
    (worktree / "tests" / "access.log").write_text("GET /refunds 200\n")
    (worktree / "scratch.log").write_text("not committed: stays out\n")
    git(worktree, "add", "-f", "tests/access.log")
    git(worktree, "commit", "-qm", "fixture")
    tip = git(worktree, "rev-parse", "HEAD")
    snapshot, changed = tree.snapshot(tip)
    assert changed == [] and snapshot == git(repo, "rev-parse", f"{tip}^{{tree}}")
    (worktree / "tests" / "access.log").write_text("GET /refunds 500\n")  # changed after: saved as changed
    assert tree.snapshot(tip)[1] == ["tests/access.log"]
    (worktree / "tests" / "access.log").unlink()  # and deleted: saved as deleted
    assert tree.snapshot(tip)[1] == ["tests/access.log"]
    # A folder where the file was: its ignored files are not taken (a `config/db.secret` was saved).
    (worktree / "tests" / "access.log").mkdir()
    (worktree / "tests" / "access.log" / "db.log").write_text("password\n")
    snapshot, changed = tree.snapshot(tip)
    assert changed == ["tests/access.log"] and "db.log" not in git(repo, "ls-tree", "-r", "--name-only", snapshot)
