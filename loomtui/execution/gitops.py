"""The git operations sandboxes need, run through GitPython's command runner.

Every call is an argv (never a shell string), runs in a C locale so output can be
parsed, and turns a failure into one LoomError line naming the command.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import git as gitpython

from loomtui.errors import LoomError
from loomtui.repo import DISTRUSTING_GIT_CONFIG

# `git merge-tree --write-tree` (a merge without touching any working tree) is 2.38+.
MERGE_TREE_MIN_VERSION = (2, 38)


class GitFailed(LoomError):
    """A git command failed; the message carries git's own first error line."""


@dataclass(frozen=True)
class GitResult:
    status: int
    out: str
    err: str


class Git:
    """git commands run in one directory."""

    def __init__(self, cwd: Path | str) -> None:
        self.cwd = Path(cwd)
        self._runner = gitpython.Git(str(self.cwd))

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> GitResult:
        """Run `git ARGS`; return status and output whatever the status."""
        try:
            status, out, err = self._runner.execute(
                ["git", *args], with_extended_output=True, with_exceptions=False, env=env,
            )
        except gitpython.GitCommandNotFound:
            raise LoomError("git is not installed or not on PATH") from None
        except OSError as exc:
            raise LoomError(f"cannot run git in {self.cwd}: {exc.strerror or exc}") from None
        return GitResult(int(status or 0), str(out), str(err))

    def feed(self, *args: str, data: bytes, env: Mapping[str, str] | None = None) -> bytes:
        """Run `git ARGS` with `data` on stdin; return stdout as bytes (for plumbing pipelines)."""
        try:
            done = subprocess.run(["git", *args], cwd=self.cwd, input=data, capture_output=True, check=False,
                                  env={**os.environ, "LC_ALL": "C", **(env or {})})
        except OSError as exc:
            raise LoomError(f"cannot run git in {self.cwd}: {exc.strerror or exc}") from None
        if done.returncode != 0:
            raise GitFailed(f"git {args[0]} failed: {first_line(done.stderr.decode('utf-8', 'replace'))}")
        return done.stdout

    def out(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Run `git ARGS` and return its stdout; raise GitFailed on a non-zero status."""
        result = self.run(*args, env=env)
        if result.status != 0:
            raise GitFailed(f"git {args[0]} failed: {first_line(result.err or result.out)}")
        return result.out

    def fallback_identity(self, name: str, email: str) -> tuple[str, ...]:
        """`-c user.name=… -c user.email=…` where git has no identity configured, else nothing.

        A fresh machine or a CI runner often has none, and a commit must not fail for it.
        """
        if self.run("var", "GIT_COMMITTER_IDENT").status == 0:
            return ()
        return ("-c", f"user.name={name}", "-c", f"user.email={email}")

    def ok(self, *args: str) -> bool:
        """Whether `git ARGS` succeeds (for questions such as `merge-base --is-ancestor`)."""
        return self.run(*args).status == 0

    # -- questions ----------------------------------------------------------------

    def resolve_commit(self, ref: str) -> str | None:
        """The full commit id `ref` names, or None when it names no commit."""
        if not ref or ref.startswith("-"):
            return None
        result = self.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
        return result.out.strip() if result.status == 0 else None

    def local_branch_exists(self, name: str) -> bool:
        return self.ok("show-ref", "--verify", "--quiet", f"refs/heads/{name}")

    def current_branch(self) -> str | None:
        """The checked-out branch, None when HEAD is detached."""
        result = self.run("symbolic-ref", "--quiet", "--short", "HEAD")
        return result.out.strip() if result.status == 0 else None

    def worktrees_with_branch(self, branch: str) -> list[Path]:
        """Working trees (the main one included) that have `branch` checked out."""
        found: list[Path] = []
        current: Path | None = None
        for line in self.out("worktree", "list", "--porcelain").splitlines():
            if line.startswith("worktree "):
                current = Path(line[len("worktree "):])
            elif line == f"branch refs/heads/{branch}" and current is not None:
                found.append(current)
        return found


class AgentTree:
    """loomtui's own view of an agent's worktree, from outside the sandbox.

    An agent can write its worktree's git admin dir (HEAD, index, `config.worktree`,
    a `.git` file pointing anywhere), so git run *in* the worktree would read the
    agent's config and run its fsmonitor or hooks outside the sandbox. Here git is
    told exactly where the repository is (`GIT_DIR` = the common dir, which the
    agent cannot write under isolation), where the files are (`GIT_WORK_TREE`), and
    to use an index only loomtui writes; HEAD is never read, only the sandbox's
    branch ref. Hooks, fsmonitor and the untracked cache are forced off.
    """

    def __init__(self, common_dir: Path, worktree: Path, index: Path, managed: tuple[str, ...] = ()) -> None:
        self.common_dir = Path(common_dir)
        self.worktree = Path(worktree)
        self.index = Path(index)  # loomtui's own, outside anything the agent can write
        self.managed = managed  # files loomtui itself keeps in the worktree: never part of the work
        self.repo = Git(self.common_dir)
        self._tree = Git(self.worktree)

    def _env(self, index: Path) -> dict[str, str]:
        return {"GIT_DIR": str(self.common_dir), "GIT_WORK_TREE": str(self.worktree),
                "GIT_INDEX_FILE": str(index), "GIT_OPTIONAL_LOCKS": "0"}

    def _git(self, index: Path, *args: str) -> str:
        return self._tree.out(*DISTRUSTING_GIT_CONFIG, *args, env=self._env(index))

    def snapshot(self, base: str) -> tuple[str, list[str]]:
        """The worktree as a tree (untracked files included), and the paths that differ from `base`.

        `base` is a commit id. loomtui's index keeps its stat cache between calls, so
        unchanged files are not read again; it is replaced atomically, so two callers
        at once each get a whole answer.
        """
        self.index.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".index-", dir=self.index.parent)
        os.close(fd)
        scratch = Path(name)
        try:
            if self.index.is_file():
                scratch.write_bytes(self.index.read_bytes())
            else:
                scratch.unlink()
                self._git(scratch, "read-tree", base)
            self._git(scratch, "add", "--all", "--", ".", *(f":(exclude,literal){m}" for m in self.managed))
            tree = self._git(scratch, "write-tree").strip()
            changed = self._git(scratch, "diff-index", "--cached", "--name-only", "--no-renames", "-z",
                                base, "--")
            os.replace(scratch, self.index)
        finally:
            scratch.unlink(missing_ok=True)
        return tree, [p for p in changed.split("\0") if p]

    def dirty_paths(self, branch: str) -> list[str]:
        """Paths whose content in the worktree differs from the tip of `branch`."""
        tip = self.repo.resolve_commit(f"refs/heads/{branch}")
        if tip is None:
            raise GitFailed(f"branch {branch} does not exist")
        return self.snapshot(tip)[1]

    def commit_all(self, branch: str, message: str, identity: tuple[str, ...] = ()) -> str | None:
        """Commit the worktree as it is onto `branch` (compare-and-swap); None when nothing changed.

        Plumbing only (`commit-tree`, `update-ref`), so no hook of any kind runs.
        """
        ref = f"refs/heads/{branch}"
        tip = self.repo.resolve_commit(ref)
        if tip is None:
            raise GitFailed(f"branch {branch} does not exist")
        tree, changed = self.snapshot(tip)
        if not changed:
            return None
        commit = self.repo.out(*DISTRUSTING_GIT_CONFIG, *identity, "commit-tree", tree, "-p", tip,
                               "-m", message).strip()
        self.repo.out("update-ref", "-m", "loomtui: save the work an agent left", ref, commit, tip)
        return commit

    def reset_index(self, worktree_index: Path, commit: str) -> None:
        """Point the worktree's own index at `commit` (after a commit made from outside), so
        `git status` there agrees; git replaces the file by rename, never writing through a link."""
        self._git(worktree_index, "read-tree", commit)


def first_line(text: str) -> str:
    """The first non-empty line of git's output, without its `fatal: ` or `error: ` prefix."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return re.sub(r"^(fatal|error): ", "", line)
    return "(no output)"


def git_version() -> tuple[int, ...] | None:
    """The installed git's version as numbers, None when git is missing."""
    try:
        text = Git(Path.cwd()).out("--version")
    except LoomError:
        return None
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(part) for part in match.groups() if part) if match else None
