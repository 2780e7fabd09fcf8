"""Running git: the one way every layer does it (`Git`), over GitPython's command runner.

Every call is an argv (never a shell string), runs in a C locale so output can be
parsed, and turns a failure into one LoomError line naming the command. Text
answers come from `run`/`out`; bytes (blobs, `-z` listings read as bytes, stdin)
from `raw`/`feed`; a long-lived `cat-file --batch` from `pipe`.

GitPython is imported at the first command, not with this module: it costs ~55 ms,
and this module sits at the foundation, under commands that never run git.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loomtui.errors import LoomError

if TYPE_CHECKING:
    import git as gitpython

# `git merge-tree --write-tree` (a merge without touching any working tree) is 2.38+.
MERGE_TREE_MIN_VERSION = (2, 38)


class GitFailed(LoomError):
    """A git command failed; the message carries git's own first error line."""


@dataclass(frozen=True)
class GitResult:
    """A finished command's status and text output (one trailing newline stripped, as GitPython does)."""

    status: int
    out: str
    err: str


@dataclass(frozen=True)
class RawResult:
    """A finished command's status and output exactly as git wrote it."""

    status: int
    out: bytes
    err: bytes


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """The process environment in a C locale (as GitPython sets it), then `env` on top."""
    return {**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **(env or {})}


class Git:
    """git commands run in one directory."""

    def __init__(self, cwd: Path | str) -> None:
        self.cwd = Path(cwd)
        self._runner: gitpython.Git | None = None

    def _check_cwd(self) -> None:
        # GitPython quietly runs in the process's own directory when cwd cannot be entered.
        if not os.access(self.cwd, os.X_OK):
            raise LoomError(f"cannot run git in {self.cwd}: no such directory or no access")

    def run(self, *args: str, env: Mapping[str, str] | None = None, timeout: float | None = None) -> GitResult:
        """Run `git ARGS`; return status and output whatever the status.

        After `timeout` seconds git (and what it started) is killed: the status is then
        non-zero and `err` says it timed out.
        """
        import git as gitpython  # here, not at the top: see the module's docstring

        self._check_cwd()
        if self._runner is None:
            self._runner = gitpython.Git(str(self.cwd))
        try:
            status, out, err = self._runner.execute(
                ["git", *args], with_extended_output=True, with_exceptions=False, env=env,
                kill_after_timeout=timeout,
            )
        except gitpython.GitCommandNotFound:
            raise LoomError("git is not installed or not on PATH") from None
        except OSError as exc:
            raise LoomError(f"cannot run git in {self.cwd}: {exc.strerror or exc}") from None
        return GitResult(int(status or 0), str(out), str(err))

    def run_plain(self, *args: str, timeout: float | None = None) -> GitResult:
        """`run` without GitPython, for what every command does first (find the repository, name
        the user): there its import would cost more than git itself. Output decoded as file names
        are (surrogateescape), one trailing newline stripped as `run` does."""
        done = self.raw(*args, timeout=timeout)
        return GitResult(done.status, _text(done.out), _text(done.err))

    def out(self, *args: str, env: Mapping[str, str] | None = None, timeout: float | None = None) -> str:
        """Run `git ARGS` and return its stdout; raise GitFailed on a non-zero status."""
        result = self.run(*args, env=env, timeout=timeout)
        if result.status != 0:
            raise GitFailed(f"git {args[0]} failed: {first_line(result.err or result.out)}")
        return result.out

    def raw(self, *args: str, data: bytes | None = None, env: Mapping[str, str] | None = None,
            timeout: float | None = None) -> RawResult:
        """Run `git ARGS` (with `data` on stdin, if given); status and bytes output whatever the status.

        After `timeout` seconds git is killed: the status is then -9 and `err` says it timed out.
        """
        self._check_cwd()
        try:
            done = subprocess.run(["git", *args], cwd=self.cwd, input=data, capture_output=True, check=False,
                                  stdin=subprocess.DEVNULL if data is None else None, env=_environment(env),
                                  timeout=timeout)
        except FileNotFoundError as exc:
            if exc.filename == "git":
                raise LoomError("git is not installed or not on PATH") from None
            raise LoomError(f"cannot run git in {self.cwd}: {exc.strerror or exc}") from None
        except OSError as exc:
            raise LoomError(f"cannot run git in {self.cwd}: {exc.strerror or exc}") from None
        except subprocess.TimeoutExpired:
            return RawResult(-9, b"", f"git {' '.join(args)} did not complete in {timeout:g} s".encode())
        return RawResult(done.returncode, done.stdout, done.stderr)

    def feed(self, *args: str, data: bytes, env: Mapping[str, str] | None = None) -> bytes:
        """Run `git ARGS` with `data` on stdin; return stdout as bytes (for plumbing pipelines)."""
        done = self.raw(*args, data=data, env=env)
        if done.status != 0:
            raise GitFailed(f"git {args[0]} failed: {first_line(done.err.decode('utf-8', 'replace'))}")
        return done.out

    def pipe(self, *args: str) -> subprocess.Popen[bytes]:
        """Start `git ARGS` (such as `cat-file --batch`) to talk to over stdin and stdout; stderr is dropped."""
        self._check_cwd()
        try:
            return subprocess.Popen(["git", *args], cwd=self.cwd, env=_environment(None), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError as exc:
            raise LoomError(f"cannot run git in {self.cwd}: {exc.strerror or exc}") from None

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


def _text(data: bytes) -> str:
    text = data.decode("utf-8", "surrogateescape")
    return text[:-1] if text.endswith("\n") else text


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
