"""Running git: the one way every layer does it (`Git`).

Every call is an argv (never a shell string), runs in a C locale so output can be
parsed, and turns a failure into one LoomError line naming the command. Text
answers come from `run`/`out`; bytes (blobs, `-z` listings read as bytes, stdin)
from `raw`/`feed`; a long-lived `cat-file --batch` from `pipe`.

Standard library only. loomtui's processes are mostly short (a hook per tool call
or commit, a CLI command, a supervisor): GitPython's command runner cost each of
them ~45 ms of import and two `git version` runs before its first command, more
than the interpreter's own start.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from loomtui.errors import LoomError

GIT = ("git", "-c", "core.quotePath=false")
"""How git is run: a path in its output as it is (`café.py`), never in quotes with octal escapes
(a file list parsed line by line, a merge's conflicted paths, a diff's --json names)."""

# `git merge-tree --write-tree` (a merge without touching any working tree) is 2.38+.
MERGE_TREE_MIN_VERSION = (2, 38)
DIFF_READ_MAX = 16 << 20
"""A file larger than this is binary to a diff: counted, never read (git read a 300 MB blob whole, twice)."""
LARGE_FILES_BINARY = ("-c", f"core.bigFileThreshold={DIFF_READ_MAX}")
"""Before `diff --numstat`: past `DIFF_READ_MAX` a file is counted as binary without being read."""
BINARY_BYTES_PER_LINE = 40
"""A file git counts no lines in (binary to it: a NUL in its first 8 KB, or past DIFF_READ_MAX) counts one
changed line per 40 bytes of it, old and new: it counted none, and 6,000 lines behind one NUL byte were a
change of 0 lines, merged with no one asked."""
THE_CHECKOUT_ITSELF: Final = dict.fromkeys(("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR",
                                             "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_PREFIX"))
"""An `env` for git run on a checkout itself, never the repository a git hook's environment names (a commit in a
sandbox's worktree runs its pre-commit hook with that worktree's GIT_DIR and index: its HEAD read as the
checkout's)."""
_NO_OBJECT = "0" * 40
BLOB_BATCH = 500
"""Blobs read by one `cat-file --batch` (`Git.blob_texts`): few processes, a bounded piece in memory."""


_OBJECT_ID = re.compile(rb"[0-9a-f]{40}(?:[0-9a-f]{24})?")


def _object_header(line: bytes) -> tuple[bytes, int] | None:
    """An object's type and size from `cat-file --batch`'s header (`<id> <type> <size>`); None for anything else
    (`<name> missing`, where the name may itself hold spaces and a `blob`)."""
    parts = line.split(b" ")
    if len(parts) != 3 or not _OBJECT_ID.fullmatch(parts[0]) or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def _by_batch_line(names: Sequence[str]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """`names`, each with its place, split into those a batch's lines can carry and those holding a newline,
    which must be asked alone."""
    batched: list[tuple[int, str]] = []
    alone: list[tuple[int, str]] = []
    for i, name in enumerate(names):
        (alone if "\n" in name else batched).append((i, name))
    return batched, alone


class GitFailed(LoomError):
    """A git command failed; the message carries git's own first error line."""


@dataclass(frozen=True)
class GitResult:
    """A finished command's status and text output (one trailing newline stripped)."""

    status: int
    out: str
    err: str


@dataclass(frozen=True)
class RawResult:
    """A finished command's status and output exactly as git wrote it."""

    status: int
    out: bytes
    err: bytes


@dataclass(frozen=True)
class TreeEntry:
    """One entry of `git ls-tree -r -l`: its size is -1 where it has none (a submodule)."""

    mode: str
    kind: str
    sha: str
    size: int
    path: str


def _write_and_close(stream: IO[bytes], data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError):  # the reader went (failed, killed): its status says why
        with stream:
            stream.write(data)


def _environment(env: Mapping[str, str | None] | None) -> dict[str, str]:
    """The process environment in a C locale, then `env` on top (a name given None: left out)."""
    merged = {**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **(env or {})}
    return {name: value for name, value in merged.items() if value is not None}


class Git:
    """git commands run in one directory."""

    def __init__(self, cwd: Path | str) -> None:
        self.cwd = Path(cwd)

    def _check_cwd(self) -> None:
        # Said here, as one line: Popen's own error would name neither git nor the directory's problem.
        if not os.access(self.cwd, os.X_OK):
            raise LoomError(f"cannot run git in {self.cwd}: no such directory or no access")

    def run(self, *args: str, env: Mapping[str, str | None] | None = None, timeout: float | None = None) -> GitResult:
        """Run `git ARGS`; return status and output whatever the status.

        Output is decoded as file names are (UTF-8, surrogateescape), one trailing newline
        stripped. After `timeout` seconds git and what it started are killed: the status
        is then -9 and `err` says it timed out.
        """
        done = self.raw(*args, env=env, timeout=timeout)
        return GitResult(done.status, _text(done.out), _text(done.err))

    def out(self, *args: str, env: Mapping[str, str | None] | None = None, timeout: float | None = None) -> str:
        """Run `git ARGS` and return its stdout; raise GitFailed on a non-zero status."""
        result = self.run(*args, env=env, timeout=timeout)
        if result.status != 0:
            raise GitFailed(f"git {command_name(args)} failed: {first_line(result.err or result.out)}")
        return result.out

    def raw(self, *args: str, data: bytes | None = None, env: Mapping[str, str | None] | None = None,
            timeout: float | None = None) -> RawResult:
        """Run `git ARGS` (with `data` on stdin, if given); status and bytes output whatever the status.

        After `timeout` seconds git and what it started (a hook, a credential helper) are
        killed: the status is then -9 and `err` says it timed out.
        """
        self._check_cwd()
        try:
            # With a timeout, git leads its own process group, so the kill reaches what it started.
            process = subprocess.Popen([*GIT, *args], cwd=self.cwd, env=_environment(env),
                                       stdin=subprocess.DEVNULL if data is None else subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       process_group=None if timeout is None else 0)
        except FileNotFoundError as exc:
            if exc.filename == "git":
                raise LoomError("git is not installed or not on PATH") from None
            raise LoomError(f"cannot run git in {self.cwd}: {exc.strerror or exc}") from None
        except OSError as exc:
            raise LoomError(f"cannot run git in {self.cwd}: {exc.strerror or exc}") from None
        with process:
            try:
                out, err = process.communicate(data, timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                return RawResult(-9, b"", f"git {' '.join(args)} did not complete in {timeout:g} s".encode())
            except BaseException:
                process.kill()
                raise
        return RawResult(process.returncode, out, err)

    def feed(self, *args: str, data: bytes, env: Mapping[str, str | None] | None = None,
             timeout: float | None = None) -> bytes:
        """Run `git ARGS` with `data` on stdin; return stdout as bytes (for plumbing pipelines)."""
        done = self.raw(*args, data=data, env=env, timeout=timeout)
        if done.status != 0:
            raise GitFailed(f"git {command_name(args)} failed: {first_line(done.err.decode('utf-8', 'replace'))}")
        return done.out

    def feed_through(self, first: tuple[str, ...], then: tuple[str, ...], *, data: bytes,
                     env_first: Mapping[str, str] | None = None, timeout: float | None = None) -> bytes:
        """`git FIRST` (`data` on its stdin) piped into `git THEN`; THEN's stdout. What passes between them (a
        pack) streams through a pipe, never whole in this process's memory. GitFailed when either fails;
        after `timeout` seconds both are killed."""
        self._check_cwd()
        with tempfile.TemporaryFile() as first_err:
            try:
                producer = subprocess.Popen([*GIT, *first], cwd=self.cwd, env=_environment(env_first),
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=first_err,
                                            process_group=0)
            except OSError as exc:
                raise LoomError(f"cannot run git in {self.cwd}: {exc.strerror or exc}") from None
            assert producer.stdin is not None and producer.stdout is not None
            try:
                consumer = subprocess.Popen([*GIT, *then], cwd=self.cwd, env=_environment(None),
                                            stdin=producer.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            process_group=0)
            except OSError as exc:
                producer.kill()
                producer.wait()
                raise LoomError(f"cannot run git in {self.cwd}: {exc.strerror or exc}") from None
            producer.stdout.close()  # the consumer's now: the producer sees a broken pipe if it goes
            writer = threading.Thread(target=_write_and_close, args=(producer.stdin, data), daemon=True)
            writer.start()
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                out, err = consumer.communicate(timeout=timeout)
                producer.wait(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for process in (producer, consumer):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                raise GitFailed(f"git {command_name(first)} | git {command_name(then)} did not complete in "
                                f"{timeout:g} s") from None
            finally:
                writer.join()
            # The first one killed by a broken pipe failed because the second went: the second's error says why.
            if producer.returncode > 0 or (producer.returncode < 0 and consumer.returncode == 0):
                first_err.seek(0)
                said = first_err.read().decode("utf-8", "replace")
                raise GitFailed(f"git {command_name(first)} failed: {first_line(said)}")
        if consumer.returncode != 0:
            raise GitFailed(f"git {command_name(then)} failed: {first_line(err.decode('utf-8', 'replace'))}")
        return out

    def lines_changed_by_file(self, base: str, head: str | None, config: Sequence[str] = ()) -> dict[str, int]:
        """Lines added plus removed in each file between `base` and `head` (the working tree when None), a
        file git finds binary by its size (`BINARY_BYTES_PER_LINE`); GitFailed when git cannot tell.
        `config`: `-c` options first."""
        spec = [base] if head is None else [base, head]
        done = self.raw(*config, *LARGE_FILES_BINARY, "diff", "--numstat", "--no-renames", "-z", *spec)
        if done.status != 0:
            raise GitFailed(f"git diff failed: {first_line(done.err.decode('utf-8', 'replace'))}")
        lines: dict[str, int] = {}
        binary: list[str] = []
        for entry in done.out.decode("utf-8", "surrogateescape").split("\0"):
            added, _, rest = entry.partition("\t")
            removed, _, path = rest.partition("\t")
            if not path:
                continue
            if added.isdigit() and removed.isdigit():
                lines[path] = int(added) + int(removed)
            else:  # "-": binary to git
                binary.append(path)
        for path, size in self._changed_bytes(spec, binary, config).items():
            lines[path] = -(-size // BINARY_BYTES_PER_LINE)
        return lines

    def _changed_bytes(self, spec: Sequence[str], paths: Sequence[str], config: Sequence[str]) -> dict[str, int]:
        """The old and new sizes of each of `paths` between `spec`'s sides, added (a side the file is not on
        counts 0; the working tree's side is the file as it is)."""
        if not paths:
            return {}
        # Every change, filtered here: 30,000 paths on the command line were past what a process is given.
        done = self.raw(*config, "diff", "--raw", "--no-renames", "--no-abbrev", "-z", *spec)
        if done.status != 0:
            raise GitFailed(f"git diff failed: {first_line(done.err.decode('utf-8', 'replace'))}")
        fields = done.out.decode("utf-8", "surrogateescape").split("\0")
        wanted = set(paths)
        sides: dict[str, tuple[str, str]] = {}
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            parts = meta.split()
            if len(parts) >= 4 and path in wanted:
                sides[path] = (parts[2], parts[3])
        ids = [i for old, new in sides.values() for i in (old, new) if i != _NO_OBJECT]
        sizes = {name: size for name, (_kind, size) in self.object_sizes(ids).items()}
        changed: dict[str, int] = {}
        for path, (old, new) in sides.items():
            if old == new:  # its mode alone changed (chmod +x): no line of it did
                changed[path] = 0
                continue
            on_disk = 0
            if new == _NO_OBJECT and len(spec) == 1:  # the working tree's file, not yet an object
                with contextlib.suppress(OSError):
                    target = Path(self.cwd) / path
                    found = os.lstat(target)
                    # A link as git stores one: its target's text (the committed side counted it so).
                    on_disk = found.st_size if stat.S_ISREG(found.st_mode) else \
                        len(os.fsencode(os.readlink(target))) if stat.S_ISLNK(found.st_mode) else 0
            changed[path] = sizes.get(old, 0) + sizes.get(new, on_disk)
        return changed

    def object_sizes(self, ids: Sequence[str], *, env: Mapping[str, str | None] | None = None,
                     timeout: float | None = None) -> dict[str, tuple[str, int]]:
        """Each of `ids` (full object names) with its type and size, read from its header
        (`cat-file --batch-check`); one git does not have is left out."""
        if not ids:
            return {}
        said = self.feed("cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)", env=env,
                         data="".join(f"{object_id}\n" for object_id in ids).encode(), timeout=timeout)
        found: dict[str, tuple[str, int]] = {}
        for line in said.decode("ascii", "replace").split("\n"):
            name, _, rest = line.partition(" ")
            kind, _, size = rest.partition(" ")
            if size.isdigit():  # not "<id> missing"
                found[name] = (kind, int(size))
        return found

    def blob_texts(self, names: Sequence[str], *, chunk: int = BLOB_BATCH) -> list[str]:
        """The text of each `REV:PATH` (UTF-8, errors replaced; "" where there is no such blob), read
        `chunk` at a time through `cat-file --batch`: a file at a time cost two processes each (a worktree's
        3,000 new files, 28 s). A name with a newline, which the batch's lines cannot carry, is read alone."""
        texts: dict[int, str] = {}
        batched, alone = _by_batch_line(names)
        for i, name in alone:
            done = self.raw("cat-file", "blob", name)
            texts[i] = done.out.decode("utf-8", "replace") if done.status == 0 else ""
        for start in range(0, len(batched), chunk):
            part = batched[start : start + chunk]
            # A path git gave that is no UTF-8 (`bad\xff.py` on a sandbox's branch) goes back as its bytes: it made
            # `conflicts`, `eval` and `policy explain` an internal error while that sandbox lived.
            out = self.feed("cat-file", "--batch",
                            data="".join(f"{name}\n" for _, name in part).encode("utf-8", "surrogateescape"))
            at = 0
            for i, _name in part:
                end = out.index(b"\n", at)
                found = _object_header(out[at:end])
                at = end + 1
                texts[i] = ""  # missing (a new file, or no such revision), or no blob (a tree, a submodule's commit)
                if found is not None:  # its content follows whatever its type: skipped past, or a later text shifts
                    kind, size = found
                    if kind == b"blob":
                        texts[i] = out[at : at + size].decode("utf-8", "replace")
                    at += size + 1
        return [texts[i] for i in range(len(names))]

    def blobs_present(self, names: Sequence[str]) -> list[bool]:
        """Whether each `REV:PATH` is a blob (its header only: `cat-file --batch-check`, no content read)."""
        present: dict[int, bool] = {}
        batched, alone = _by_batch_line(names)
        for i, name in alone:
            present[i] = self.run("cat-file", "-t", name).out == "blob"
        if batched:
            out = self.feed("cat-file", "--batch-check", data="".join(f"{name}\n" for _, name in batched).encode())
            for (i, _name), header in zip(batched, out.split(b"\n"), strict=False):
                found = _object_header(header)
                present[i] = found is not None and found[0] == b"blob"
        return [present.get(i, False) for i in range(len(names))]

    def tree_entries(self, treeish: str, paths: Sequence[str] = (), *,
                     config: Sequence[str] = ()) -> list[TreeEntry]:
        """Every entry of `treeish`, recursively (only those at `paths`, taken literally, when given), with
        blob sizes (`ls-tree -r -l`); GitFailed when git cannot read it. `config`: `-c` options first."""
        done = self.raw(*config, "ls-tree", "-r", "-l", "-z", "--full-tree", treeish, "--",
                        *(f":(literal){path}" for path in paths))
        if done.status != 0:
            raise GitFailed(f"git ls-tree failed: {first_line(done.err.decode('utf-8', 'replace'))}")
        entries = []
        for record in done.out.decode("utf-8", "surrogateescape").split("\0"):
            meta, _, path = record.partition("\t")
            fields = meta.split()
            if len(fields) == 4:
                mode, kind, sha, size = fields
                entries.append(TreeEntry(mode, kind, sha, int(size) if size.isdigit() else -1, path))
        return entries

    def pipe(self, *args: str, env: Mapping[str, str | None] | None = None) -> subprocess.Popen[bytes]:
        """Start `git ARGS` (such as `cat-file --batch`) to talk to over stdin and stdout; stderr is dropped."""
        self._check_cwd()
        try:
            return subprocess.Popen([*GIT, *args], cwd=self.cwd, env=_environment(env), stdin=subprocess.PIPE,
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

    def branch_tips(self) -> dict[str, str]:
        """Every local branch's name and tip commit, in one git call ({} where git cannot list them)."""
        result = self.run("for-each-ref", "--format=%(objectname) %(refname:lstrip=2)", "refs/heads/")
        if result.status != 0:
            return {}
        return {name: tip for tip, _, name in (line.partition(" ") for line in result.out.splitlines()) if name}

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


def command_name(args: tuple[str, ...]) -> str:
    """The git command in ARGS (`add`), past the options before it (`-c name=value`, `-C dir`)."""
    rest = iter(args)
    for arg in rest:
        if arg in ("-c", "-C"):
            next(rest, None)
        elif not arg.startswith("-"):
            return arg
    return args[0] if args else "(no command)"


def excludes_files(cwd: Path) -> list[tuple[str, str]]:
    """Every `core.excludesFile` git sees from `cwd`, with its scope (`system`, `global`, `local`,
    `worktree`), in one call and in order: the last is the one in force."""
    listed = Git(cwd).run("config", "--path", "--show-scope", "--get-all", "core.excludesFile")
    return [(scope, value) for scope, tab, value in (line.partition("\t") for line in listed.out.splitlines())
            if tab]


def default_excludes_file(env: Mapping[str, str] | None = None) -> str:
    """The ignore file git reads when no `core.excludesFile` is set: `$XDG_CONFIG_HOME/git/ignore`."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return os.path.join(xdg, "git", "ignore")


def first_line(text: str) -> str:
    """git's first `fatal: ` or `error: ` line, without that prefix; else its first line that is no `hint: `
    (git hints before it says what failed), else its first non-empty line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal: ", "error: ")):
            return re.sub(r"^(fatal|error): ", "", line)
    said = [line for line in lines if not line.startswith("hint:")] or lines
    return said[0] if said else "(no output)"


def git_version() -> tuple[int, ...] | None:
    """The installed git's version as numbers, None when git is missing."""
    try:
        text = Git(Path.cwd()).out("--version")
    except LoomError:
        return None
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(part) for part in match.groups() if part) if match else None


class UnattributedGit(Git):
    """git on a repository's objects and refs from an empty folder of its own, outside any working tree: no
    `.gitattributes` a change committed applies to what it computes. An approved `payments/*.py -diff
    merge=union` hid later changes' patches from their reviewers ("Binary files differ") and let conflicting
    merges through, both sides kept. The git dir's `info/attributes` and the person's own
    `core.attributesFile` still apply. Made by `unattributed`."""

    def __init__(self, git_dir: Path, scratch: Path) -> None:
        super().__init__(scratch)
        self.git_dir = git_dir
        self.scratch = scratch

    def raw(self, *args: str, data: bytes | None = None, env: Mapping[str, str | None] | None = None,
            timeout: float | None = None) -> RawResult:
        # An index that does not exist is an empty one: no attributes read from it either.
        env = {**(env or {}), "GIT_INDEX_FILE": str(self.scratch / "index")}
        return super().raw(f"--git-dir={self.git_dir}", f"--work-tree={self.scratch}", *args, data=data, env=env,
                           timeout=timeout)


@contextlib.contextmanager
def unattributed(root: Path, git_dir: Path | None = None) -> Iterator[UnattributedGit]:
    """An UnattributedGit on the repository at `root` (a checkout or a sandbox's worktree), whose common git
    dir is `git_dir` when the caller knows it (asked of git otherwise)."""
    if git_dir is None:
        git_dir = Path(Git(root).out("rev-parse", "--path-format=absolute", "--git-common-dir").strip())
    with tempfile.TemporaryDirectory(prefix="loomtui-unattributed-") as scratch:
        yield UnattributedGit(git_dir, Path(scratch))
