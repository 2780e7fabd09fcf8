"""Where the context's files are read from: a directory on disk, or one commit's tree."""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import subprocess
from pathlib import Path
from typing import IO, Protocol

from loomtui.coordination.index import blob_hash
from loomtui.errors import LoomError
from loomtui.gitcmd import Git
from loomtui.repo import DISTRUSTING_GIT_CONFIG


def git_text(cwd: Path, *args: str, check: bool = True) -> str:
    """git's output as text, with no repository config trusted; a one-line LoomError when it fails."""
    done = Git(cwd).raw(*DISTRUSTING_GIT_CONFIG, *args)
    if done.status != 0:
        if not check:
            return ""
        message = done.err.decode("utf-8", "replace").strip().splitlines()
        raise LoomError(f"git {args[0]} failed in {cwd}: {message[-1] if message else done.status}")
    return done.out.decode("utf-8", "surrogateescape")


def head_commit(root: Path, ref: str = "HEAD") -> str | None:
    """The commit `ref` names in the repository at `root`, or None (no such ref, no history)."""
    out = git_text(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False)
    return out.strip() or None


class SourceTree(Protocol):
    """Where a layer's files are read from."""

    where: str

    def listing(self) -> dict[str, str | None]:
        """Every file: path -> git blob id (None when only reading reveals it)."""
        ...

    def read(self, path: str, limit: int) -> tuple[bytes, str, int]:
        """(at most `limit` bytes, the blob id, the full size); OSError if unreadable."""
        ...


class LinkInTree(OSError):
    """A source that is a link to another file of the tree (`CLAUDE.md -> AGENTS.md`): not read through."""

    def __init__(self, errno: int, strerror: str, target: str) -> None:
        super().__init__(errno, strerror)
        self.target = target


class FileTree:
    """A directory on disk: a working tree (listed by git) or an outside directory (walked)."""

    def __init__(self, root: Path, *, git_listing: bool) -> None:
        self.root = root
        self.where = str(root)
        self._git_listing = git_listing
        self._real = os.path.realpath(root)

    def listing(self) -> dict[str, str | None]:
        names: list[str] | None = None
        if self._git_listing:
            out = git_text(self.root, "ls-files", "-z", "-co", "--exclude-standard", check=False)
            names = [n for n in out.split("\0") if n] or None
        if names is None:
            names = []
            for directory, dirnames, filenames in os.walk(self.root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                relative = os.path.relpath(directory, self.root)
                prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
                names.extend(prefix + name for name in filenames)
        return dict.fromkeys(names)

    def read(self, path: str, limit: int) -> tuple[bytes, str, int]:
        full = os.path.join(self.root, path)
        real = os.path.realpath(full)
        if not real.startswith(self._real + os.sep):
            raise OSError(0, "a symlink leading out of the tree")
        if os.path.islink(full):
            # As a commit's tree is read (a link's blob is its target): `CLAUDE.md -> AGENTS.md` was every section
            # twice in the working tree, once at HEAD, and a clean tree read as changed.
            # The link's own target, as a commit's blob says it (not the end of a chain: `C2.md -> CLAUDE.md ->
            # README.md` read README.md through C2.md here, and C2.md as CLAUDE.md at a commit).
            target = posixpath.normpath(posixpath.join(posixpath.dirname(path), os.readlink(full)))
            if target.startswith(("/", "../")) or target == "..":
                target = os.path.relpath(real, self._real).replace(os.sep, "/")
            raise LinkInTree(0, f"a link to {target}, which is read once, by its own name", target)
        # O_NONBLOCK: a FIFO planted as a source must not hang the read.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise OSError(0, "not a regular file")
            head = handle.read(limit)
            if info.st_size <= limit and len(head) < limit:
                return head, blob_hash(head), len(head)
            # Hashed in chunks, kept only up to `limit`: a huge file is never held whole.
            size = info.st_size
            digest = hashlib.sha1(b"blob %d\0" % size)
            digest.update(head)
            read = len(head)
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                read += len(chunk)
            if read != size:  # it changed while read: hash what was read
                digest = hashlib.sha1(b"blob %d\0" % read)
                handle.seek(0)
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            return head, digest.hexdigest(), read


class GitTree:
    """The tree of one commit, read through `git ls-tree` and `git cat-file --batch`."""

    def __init__(self, repo: Path, commit: str, where: str) -> None:
        self.repo = repo
        self.commit = commit
        self.where = where
        self._batch: subprocess.Popen[bytes] | None = None
        self.links: dict[str, str] = {}
        """Each symlink the last `listing` met: path -> its blob (its target's path)."""

    def listing(self) -> dict[str, str | None]:
        out = git_text(self.repo, "ls-tree", "-r", "-z", "--full-tree", self.commit)
        files: dict[str, str | None] = {}
        self.links = {}
        for record in out.split("\0"):
            if not record:
                continue
            meta, _, path = record.partition("\t")
            mode, kind, sha = meta.split()
            if kind == "blob" and mode == "120000":  # a symlink's blob is its target, not text
                self.links[path] = sha
            elif kind == "blob":
                files[path] = sha
        return files

    def link_problem(self, path: str) -> LinkInTree | OSError:
        """What reading the symlink at `path` meets, as `FileTree.read` says it: a link to a file of the tree
        (read by its own name), or one leading out of it."""
        try:
            target, _size = self.read_blob(self.links[path], 4096)
        except OSError as exc:
            return exc
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target.decode("utf-8", "replace")))
        if joined.startswith(("/", "../")) or joined == "..":
            return OSError(0, "a symlink leading out of the tree")
        return LinkInTree(0, f"a link to {joined}, which is read once, by its own name", joined)

    def read(self, path: str, limit: int) -> tuple[bytes, str, int]:
        raise NotImplementedError  # read_blob is used: the blob id comes from the listing

    def read_blob(self, sha: str, limit: int) -> tuple[bytes, int]:
        out, size = self._request(sha)
        kept = out.read(min(size, limit))
        self._pass(out, size - len(kept), None)
        return kept, size

    def copy_blob(self, sha: str, dest: IO[bytes]) -> int:
        """Write the blob `sha` into `dest` a chunk at a time (never all of it in memory); its size."""
        out, size = self._request(sha)
        self._pass(out, size, dest)
        return size

    def _request(self, sha: str) -> tuple[IO[bytes], int]:
        """Ask `git cat-file --batch` for `sha`: its output, at the blob's first byte, and the blob's size."""
        if self._batch is None:
            try:
                self._batch = Git(self.repo).pipe(*DISTRUSTING_GIT_CONFIG, "cat-file", "--batch")
            except LoomError as exc:
                raise OSError(0, str(exc)) from None  # reported against the file, as a failed read is
        batch = self._batch
        assert batch.stdin is not None and batch.stdout is not None
        batch.stdin.write(sha.encode() + b"\n")
        batch.stdin.flush()
        header = batch.stdout.readline().split()
        if len(header) < 3:
            raise OSError(0, f"git cannot read blob {sha[:12]}")
        return batch.stdout, int(header[2])

    @staticmethod
    def _pass(out: IO[bytes], left: int, dest: IO[bytes] | None) -> None:
        """Read `left` more bytes of a blob (into `dest`, or dropped), then the newline after it."""
        while left > 0:
            chunk = out.read(min(left, 1 << 20))
            if not chunk:
                raise OSError(0, "git ended in the middle of a blob")
            if dest is not None:
                dest.write(chunk)
            left -= len(chunk)
        out.read(1)

    def close(self) -> None:
        if self._batch is not None:
            assert self._batch.stdin is not None
            self._batch.stdin.close()
            # Ended, not waited for: one left writing a blob no one reads (a full disk broke the export mid-file)
            # never ends, and the review waited on it in `gating` for good.
            self._batch.kill()
            self._batch.wait()
            self._batch = None
