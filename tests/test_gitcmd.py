"""gitcmd.Git, the one way loomtui runs git: output as git wrote it, one clear line when git cannot
run, and a timeout that stops git and whatever it started."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from loomtui.errors import LoomError
from loomtui.gitcmd import Git, GitFailed
from tests.conftest import git, wait_until


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its parent to reap it has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_timeout_kills_git_and_the_hook_it_started(repo: Path) -> None:
    pid_file = repo.parent / "hook.pid"
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    hook.chmod(0o755)
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "a.txt")

    begun = time.monotonic()
    result = Git(repo).run("commit", "-qm", "slow hook", timeout=1)

    assert result.status == -9 and "did not complete in 1 s" in result.err, result
    assert time.monotonic() - begun < 30  # not the hook's 60 s
    hook_pid = int(pid_file.read_text())
    wait_until(lambda: not _alive(hook_pid), timeout=10, what="the hook to be killed with git")
    assert git(repo, "rev-list", "--count", "HEAD") == "1"  # nothing was committed


def test_output_is_decoded_as_file_names_are_with_one_trailing_newline_stripped(repo: Path) -> None:
    name = os.fsdecode(b"caf\xe9.txt")  # Latin-1, not UTF-8: git prints the bytes as they are
    (repo / name).write_text("x\n")
    out = Git(repo).out("-c", "core.quotePath=false", "ls-files", "--others")
    assert out == name and os.fsencode(out) == b"caf\xe9.txt"
    assert Git(repo).run("log", "--format=%s%n").out == "initial\n"  # only git's last newline goes


def test_a_failure_is_one_line_naming_the_command(repo: Path) -> None:
    with pytest.raises(GitFailed, match=r"^git checkout failed: .*'no-such-branch' did not match"):
        Git(repo).out("checkout", "no-such-branch")
    with pytest.raises(LoomError, match=r"^cannot run git in .*gone: no such directory or no access$"):
        Git(repo / "gone").run("status")


def test_git_missing_from_path_is_said_plainly(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LoomError, match=r"^git is not installed or not on PATH$"):
        Git(repo).run("status")


def test_a_failure_names_the_git_command_past_its_options(tmp_path: Path) -> None:
    with pytest.raises(GitFailed, match=r"^git frobnicate failed: git: 'frobnicate' is not a git command"):
        Git(tmp_path).out("-c", "core.hooksPath=/dev/null", "-C", str(tmp_path), "frobnicate")


def test_a_pipeline_streams_one_git_into_another_and_names_the_one_that_failed(repo: Path, tmp_path: Path) -> None:
    """`feed_through`: a pack from `pack-objects` into `index-pack` (an isolated agent's commits brought in) passes
    through a pipe, never whole in loomtui's memory; either side failing is one line naming it."""
    other = tmp_path / "other"
    git(tmp_path, "init", "-q", str(other))
    wanted = git(repo, "rev-list", "--objects", "HEAD").encode() + b"\n"
    env = {"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(repo / ".git" / "objects")}
    Git(other).feed_through(("pack-objects", "--stdout", "-q"), ("index-pack", "--stdin", "--strict"), data=wanted,
                            env_first=env)
    head = git(repo, "rev-parse", "HEAD")
    assert git(other, "cat-file", "-t", head) == "commit"
    with pytest.raises(GitFailed, match="^git pack-objects failed: "):
        Git(other).feed_through(("pack-objects", "--stdout", "-q"), ("index-pack", "--stdin"), data=b"f" * 40 + b"\n")
    with pytest.raises(GitFailed, match="^git index-pack failed: "):
        Git(other).feed_through(("pack-objects", "--stdout", "-q"), ("index-pack", "--stdin", "--no-such-option"),
                                data=wanted, env_first=env)


def test_an_error_is_said_by_git_s_error_line_not_the_hint_before_it() -> None:
    """git hints before it fails (`hint: The file 'x' contains a byte order mark`): the error said was that
    hint, not what failed."""
    from loomtui.gitcmd import first_line

    assert first_line("hint: The file 'x' contains a BOM.\nfatal: BOM is prohibited in 'x'\n") == \
        "BOM is prohibited in 'x'"
    assert first_line("warning: ignored\nerror: pathspec 'y' did not match\n") == "pathspec 'y' did not match"
    assert first_line("\nAlready up to date.\n") == "Already up to date."
    assert first_line("hint: only a hint\n") == "hint: only a hint"
    assert first_line("") == "(no output)"


def test_a_file_git_finds_binary_counts_its_lines_by_its_size(repo: Path) -> None:
    """One NUL byte at the top of 6,000 lines made them a change of 0 lines: under the policy's
    `lines_changed` limit, and gate 2's size, a docs change merged with no one asked."""
    from loomtui.governance.gitfacts import lines_changed

    base = git(repo, "rev-parse", "HEAD").strip()
    text = "".join(f"line {n} of the runbook\n" for n in range(6000))
    (repo / "runbook.md").write_text("\0\n" + text)
    (repo / "notes.md").write_text("one\ntwo\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a runbook")
    by_file = Git(repo).lines_changed_by_file(base, "HEAD")
    assert by_file["notes.md"] == 2 and by_file["runbook.md"] == -(-(len(text) + 2) // 40)
    assert lines_changed(repo, base, "HEAD") == by_file["runbook.md"] + 2 > 400
    (repo / "runbook.md").write_text("\0\n" + text + "more\n")  # the working tree: the file as it is
    size = len(text) + 2
    assert Git(repo).lines_changed_by_file("HEAD", None) == {"runbook.md": -(-(size + size + 5) // 40)}
    git(repo, "checkout", "-q", "runbook.md")
    git(repo, "rm", "-q", "runbook.md")
    git(repo, "commit", "-qm", "gone")
    assert Git(repo).lines_changed_by_file("HEAD~1", "HEAD") == {"runbook.md": by_file["runbook.md"]}


def test_a_binary_files_mode_change_is_no_lines_and_a_link_counts_as_git_stores_it(repo: Path) -> None:
    """A chmod +x of a binary counted its size twice (the same object on both sides); a binary file turned
    into a symlink counted the link as 0 in the working tree (committed, git stores its target's text)."""
    (repo / "tool.bin").write_bytes(b"\0" * 4000)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a tool")
    (repo / "tool.bin").chmod(0o755)
    git(repo, "commit", "-qam", "executable")
    assert Git(repo).lines_changed_by_file("HEAD~1", "HEAD") == {"tool.bin": 0}
    (repo / "tool.bin").unlink()
    target = "b/" + "x" * 78  # 80 bytes as git stores the link
    (repo / "tool.bin").symlink_to(target)
    in_the_tree = Git(repo).lines_changed_by_file("HEAD", None)
    git(repo, "commit", "-qam", "a link now")
    assert in_the_tree == Git(repo).lines_changed_by_file("HEAD~1", "HEAD") == {"tool.bin": -(-(4000 + 80) // 40)}


def test_blobs_are_read_in_batches_each_as_its_name_asks(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many `REV:PATH` texts in a few processes (a worktree's 3,000 new files were two `git show` each, 28 s),
    each answer in its place: a missing one, a tree, a name with a newline (which a batch line cannot carry)."""
    names = [f"f{n}.txt" for n in range(7)]
    for n, name in enumerate(names):
        (repo / name).write_text(f"text {n}\n" + "é" * n)
    (repo / "odd\nname.txt").write_text("newline\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "inner.txt").write_text("inside\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "files")
    runs: list[tuple[str, ...]] = []
    raw = Git.raw

    def counted(self: Git, *args: str, **kwargs):  # type: ignore[no-untyped-def]
        runs.append(args)
        return raw(self, *args, **kwargs)

    monkeypatch.setattr(Git, "raw", counted)
    # A tree or a commit mid-batch (its content follows its header too: skipped, or every later text shifted),
    # and a missing name holding " blob " (read as a header, it crashed the review).
    asked = ["HEAD:sub", "HEAD", *(f"HEAD:{name}" for name in names), "HEAD:missing blob", "HEAD:odd\nname.txt",
             ":f1.txt", "HEAD:sub/inner.txt"]
    texts = Git(repo).blob_texts(asked, chunk=3)
    assert texts == ["", "", *(f"text {n}\n" + "é" * n for n in range(7)), "", "newline\n", "text 1\né", "inside\n"]
    assert len(runs) == 4 + 1  # eleven names in batches of three, the newline's alone
    assert Git(repo).blobs_present(["HEAD:sub", "HEAD:f0.txt", "HEAD:missing blob", "HEAD:odd\nname.txt"]) == [
        False, True, False, True]


def test_blob_texts_reads_a_path_that_is_no_utf8(tmp_path: Path) -> None:
    """`bad\\xff.py` on a sandbox's branch made `conflicts`, `eval` and `policy explain` an internal error (its name,
    as git gave it, was encoded as strict UTF-8 to ask for it back)."""
    import os

    git_cmd = Git(tmp_path)
    git_cmd.run("init", "-q", "-b", "main")
    (tmp_path / os.fsdecode(b"bad\xff.py")).write_text("x = 1\n")
    git_cmd.run("add", "-A")
    git_cmd.run("-c", "user.name=a", "-c", "user.email=a@b.c", "commit", "-q", "-m", "odd")
    assert git_cmd.blob_texts([f"HEAD:{os.fsdecode(b'bad' + bytes([255]) + b'.py')}"]) == ["x = 1\n"]
