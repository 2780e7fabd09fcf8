"""Which files the index covers and how each is read: git listing, gitignore-style globs, path checks, blob hashes."""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from loomtui.coordination.regions import MAX_FILE_BYTES, FileFacts, file_facts
from loomtui.errors import LoomError
from loomtui.files import open_regular
from loomtui.gitcmd import Git, RawResult
from loomtui.globs import glob_spec, matchable
from loomtui.repo import DISTRUSTING_GIT_CONFIG


def blob_hash(data: bytes) -> str:
    """Git's blob id of `data`: sha1 of `blob <size>\\0` followed by the bytes."""
    digest = hashlib.sha1(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


# -- listing -----------------------------------------------------------------------


def _git(root: Path, *args: str) -> RawResult | None:
    # `root` may be an agent's worktree: nothing it could have set in its git config runs.
    try:
        return Git(root).raw(*DISTRUSTING_GIT_CONFIG, *args)
    except LoomError:
        return None


def _git_listing(root: Path) -> list[str] | None:
    """Tracked and untracked-but-not-ignored files under `root`, or None if git does not own it."""
    # check-ignore answers 1 for a directory git does not ignore, 0 when an enclosing
    # repository ignores it (a virtualenv, site-packages), 128 outside any repository.
    # A repository's own top (the usual root) is never ignored: no git run needed to say so.
    if not (root / ".git").exists():
        ignored = _git(root, "check-ignore", "-q", "--", ".")
        if ignored is None or ignored.status != 1:
            return None
    listed = _git(root, "ls-files", "-z", "-co", "--exclude-standard")
    if listed is None or listed.status != 0:
        return None
    names = listed.out.decode("utf-8", "surrogateescape").split("\0")
    return list(dict.fromkeys(name for name in names if name))


def _walk_listing(root: Path) -> list[str]:
    """Every file under `root` outside hidden and `__pycache__` directories, as os.walk would list them
    (a symlinked directory neither listed nor entered). By hand with scandir: os.walk's path joins and
    relpaths were half of a warm start's listing on a million lines."""
    found: list[str] = []
    pending = [("", os.fspath(root))]
    while pending:
        prefix, directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue  # as os.walk: a directory that cannot be read is passed over
        for entry in entries:
            try:
                is_directory = entry.is_dir()
            except OSError:
                continue
            if not is_directory:
                found.append(prefix + entry.name)
            elif not entry.is_symlink() and not entry.name.startswith(".") and entry.name != "__pycache__":
                pending.append((f"{prefix}{entry.name}/", f"{directory}{os.sep}{entry.name}"))
    return found


def list_files(root: Path, include: Sequence[str] = ("**/*.py",), exclude: Sequence[str] = ()) -> list[str]:
    """Repository-relative posix paths under `root` selected by gitignore-style globs, sorted."""
    names = _git_listing(root)
    if names is None:
        names = _walk_listing(root)
    return sorted(filter(selector(include, exclude), names))


_SUFFIX_ONLY = re.compile(r"\*\*/\*(\.[A-Za-z0-9_]+)")


def selector(include: Sequence[str], exclude: Sequence[str]) -> Callable[[str], bool]:
    """Whether a repository path is selected by the include globs and not the exclude ones.

    The common case, `**/*.py` and nothing excluded, is a suffix test: it decides every
    listing of a warm start, where pathspec's matcher would be a third of the cost. A name
    with `.py/` inside (a directory named like a module) is still left to pathspec.
    """
    return _selector(tuple(include), tuple(exclude))


@functools.lru_cache(maxsize=16)
def _selector(include: tuple[str, ...], exclude: tuple[str, ...]) -> Callable[[str], bool]:
    # Compiled once per process and settings: pathspec's compilation cost a warm start 5 to 10 ms.
    wanted = glob_spec(include)
    unwanted = glob_spec(exclude)
    suffixes = [m.group(1) for m in map(_SUFFIX_ONLY.fullmatch, include) if m]
    if not exclude and len(suffixes) == len(include):
        ends = tuple(suffixes)
        inner = tuple(suffix + "/" for suffix in suffixes)
        return lambda name: name.endswith(ends) or (any(s in name for s in inner)
                                                    and wanted.match_file(matchable(name)))
    return lambda name: wanted.match_file(matchable(name)) and not unwanted.match_file(matchable(name))


def list_files_matching(root: Path, paths: Iterable[str], include: Sequence[str] = ("**/*.py",),
                        exclude: Sequence[str] = ()) -> list[str]:
    """Those of `paths` (repository-relative) that exist and the globs select, sorted."""
    selected = selector(include, exclude)
    return sorted(path for path in paths if os.path.lexists(root / path) and selected(path))


def _checked_relative(root: Path, name: str | os.PathLike[str]) -> str:
    """`name` as a normalised repository-relative posix path; ValueError if it leaves the repository."""
    raw = os.fspath(name)
    if os.path.isabs(raw):
        # The directory is resolved (root is), the file itself not: a symlink
        # keeps its own path and is checked where it points when read.
        directory, filename = os.path.split(raw)
        try:
            raw = os.path.join(os.path.relpath(os.path.realpath(directory), root), filename)
        except ValueError:
            raise ValueError(f"{name}: outside the repository") from None
    relative = posixpath.normpath(raw.replace(os.sep, "/"))
    if relative == ".." or relative.startswith("../") or relative == ".":
        raise ValueError(f"{name}: path escapes the repository")
    return relative


def _inside(real_root: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


# -- reading -------------------------------------------------------------------------


# (size, mtime_ns, inode, ctime_ns): a file whose stat matches the index's record is not read again.
FileStat: TypeAlias = tuple[int, int, int, int]


@dataclass(slots=True)
class _Source:
    """One file as seen by this build: its blob hash, its bytes (None when too large or not read),
    and its stat. `known` says the blob came from the index's record because the stat matched."""

    blob: str
    data: bytes | None
    facts: FileFacts | None = None
    stat: FileStat = (0, 0, 0, 0)
    known: bool = False


def _stat_of(info: os.stat_result) -> FileStat:
    return (info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns)


def _read_large(full: str, real_root: str) -> _Source:
    # Hashed in chunks and never parsed: enormous files become file-level regions.
    with open_regular(full, real_root) as handle:
        size = os.fstat(handle.fileno()).st_size
        blob = hashlib.sha1(b"blob %d\0" % size)
        digest = hashlib.sha256()
        lines = 0
        last = b""
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            blob.update(chunk)
            digest.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk
    lines += 0 if last.endswith(b"\n") else 1
    warning = f"file too large ({size} bytes > {MAX_FILE_BYTES})"
    return _Source(blob.hexdigest(), None, file_facts(lines, digest.hexdigest(), warning))


def _read_sources(
    root: Path, paths: Iterable[str], warnings: list[str], *, explicit: bool,
    known: Mapping[str, tuple[str, FileStat]] | None = None,
) -> dict[str, _Source]:
    """Read every file, refusing those that resolve outside the repository.

    A file whose stat equals its `known` (blob, stat) record is taken as that blob unread.
    """
    known = known or {}
    real_root = os.path.realpath(root)
    sources: dict[str, _Source] = {}
    under = os.path.join(root, "")  # joined by hand below: this loop runs for every file of every start
    for path in paths:
        full = under + path
        try:
            info = os.lstat(full)
            # Listings never pass through a symlinked directory; explicit paths may.
            if (explicit or stat.S_ISLNK(info.st_mode)) and not _inside(real_root, full):
                if explicit:
                    raise ValueError(f"{path}: symlink points outside the repository")
                warnings.append(f"{path}: refused: symlink points outside the repository")
                continue
            if stat.S_ISLNK(info.st_mode):
                # An alias inside the repository is not code of its own: its target is indexed
                # under its real name, and regions named through the alias would let two
                # sandboxes claim one file.
                continue
            if not stat.S_ISREG(info.st_mode):
                if explicit:
                    raise ValueError(f"{path}: not a regular file")
                continue
            stat_now = _stat_of(info)
            record = known.get(path)
            if record is not None and record[1] == stat_now:
                sources[path] = _Source(record[0], None, stat=stat_now, known=True)
                continue
            if info.st_size > MAX_FILE_BYTES:
                sources[path] = _read_large(full, real_root)
                sources[path].stat = stat_now
                continue
            # Opened as looked at (no link, no FIFO, not out through a linked folder): an agent swapping a FIFO in
            # after the look hung the broker's reader, and its supervisor's end, for good.
            with open_regular(full, real_root) as handle:
                data = handle.read()
        except FileNotFoundError:
            # Listed by git but deleted in the work tree.
            if explicit:
                raise ValueError(f"{path}: no such file") from None
            continue
        except OSError as exc:
            warnings.append(f"{path}: unreadable: {exc.strerror}")
            continue
        sources[path] = _Source(blob_hash(data), data, stat=stat_now)
    return sources
