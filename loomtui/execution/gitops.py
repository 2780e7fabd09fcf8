"""The git operations sandboxes need, run through GitPython's command runner.

Every call is an argv (never a shell string), runs in a C locale so output can be
parsed, and turns a failure into one LoomError line naming the command.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import git as gitpython

from loomtui.errors import LoomError

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

    def dirty_paths(self) -> list[str]:
        """Paths with uncommitted changes, untracked files included."""
        out = self.out("status", "--porcelain=v1", "-z", "--untracked-files=all")
        entries = [e for e in out.split("\0") if e]
        paths: list[str] = []
        skip = False
        for entry in entries:
            if skip:  # the source path of a rename, which follows its entry
                skip = False
                continue
            code, path = entry[:2], entry[3:]
            paths.append(path)
            skip = code[0] in "RC"
        return paths

    def commit_all(self, message: str, env: Mapping[str, str] | None = None) -> str | None:
        """Stage everything and commit (hooks skipped: this saves work, it does not publish it).

        Returns the new commit id, or None when there was nothing to commit.
        """
        if not self.dirty_paths():
            return None
        self.out("add", "-A", env=env)
        self.out("commit", "--no-verify", "--quiet", "-m", message, env=env)
        return self.out("rev-parse", "HEAD").strip()

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
