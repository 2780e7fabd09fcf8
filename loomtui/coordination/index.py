"""The repository index: every region of a repository and the dependency graph between them.

Building has three stages, each cheap to skip:

1. List and hash. Files come from `git ls-files` (or a directory walk), filtered
   by gitignore-style globs; each is read once and named by its git blob hash.
2. Facts. Each file's regions and name uses (`regions.extract_facts`) are cached
   per blob hash, so all worktrees of a repository share them; missing ones are
   parsed, in worker processes when there are many.
3. Resolution. Imports and attribute chains are resolved across files into
   edges. The whole resolved index is saved as a snapshot keyed by every
   (path, blob) pair: an unchanged tree loads it as is, and a tree that differs
   in a few files patches the newest snapshot, re-resolving only the changed
   files and the files whose resolution read a changed file's interface. A
   patch is saved as a new snapshot only once it has grown large.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import pickle
import posixpath
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias, TypeVar

import networkx as nx
import pathspec

from loomtui.coordination.regions import (
    DATA,
    FACTS_VERSION,
    MAX_FILE_BYTES,
    STAR,
    Binding,
    FileFacts,
    FileShape,
    FileUses,
    ImportFact,
    Ref,
    Region,
    extract_facts,
    file_facts,
    region_id,
    regions_of,
)
from loomtui.repo import DISTRUSTING_GIT_CONFIG

DEPENDENCY_KINDS = frozenset({"imports", "references", "inherits"})
# When one pair of regions is related in several ways, the edge's `kind` is the
# first of these that applies and its `kinds` holds them all.
EDGE_KIND_ORDER = ("contains", "inherits", "imports", "references")

PARALLEL_THRESHOLD = 64
SNAPSHOTS_KEPT = 4
# Beyond this share of changed files, patching a snapshot costs more than
# resolving everything again.
INCREMENTAL_MAX_SHARE = 0.25
# A patched snapshot is saved only when it differs from its base in more files
# than this, or re-resolved more files than SNAPSHOT_RESOLVED; otherwise the next
# build redoes the (small) patch.
SNAPSHOT_DRIFT = 16
SNAPSHOT_RESOLVED = 64

ProgressFn: TypeAlias = Callable[[int, int], None]


def blob_hash(data: bytes) -> str:
    """Git's blob id of `data`: sha1 of `blob <size>\\0` followed by the bytes."""
    digest = hashlib.sha1(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


@dataclass
class RepoIndex:
    """Regions of a repository, the dependency graph between them, and what could not be resolved."""

    root: Path
    regions: dict[str, Region]
    graph: nx.DiGraph
    unresolved: list[tuple[str, str]]
    warnings: list[str]
    files: dict[str, str]
    stats: dict[str, int] = field(default_factory=dict)
    _by_path: dict[str, list[Region]] | None = field(default=None, init=False, repr=False, compare=False)

    def _file_regions(self, path: str) -> list[Region]:
        if self._by_path is None:
            by_path: dict[str, list[Region]] = {}
            for region in self.regions.values():
                by_path.setdefault(region.path, []).append(region)
            for regions in by_path.values():
                regions.sort(key=lambda r: (r.start, -r.end))
            self._by_path = by_path
        return self._by_path.get(path, [])

    def regions_in(self, path: str, start: int | None = None, end: int | None = None) -> list[Region]:
        """Regions of `path` overlapping lines start..end (all if None).

        Ordered by (start, -end): every region comes before the regions nested in
        it, so among regions containing one line the innermost is last.
        """
        low = 1 if start is None else start
        high = sys.maxsize if end is None else end
        return [r for r in self._file_regions(path) if r.start <= high and r.end >= low]

    def innermost_at(self, path: str, line: int) -> Region | None:
        """The smallest region of `path` containing `line`, None if the file is not indexed."""
        found: Region | None = None
        for region in self._file_regions(path):
            if region.start > line:
                break
            if region.end >= line:
                found = region
        return found

    def refresh_file(self, path: str, include: Sequence[str] = ("**/*.py",), exclude: Sequence[str] = ()) -> bool:
        """Bring one file up to date in place; True when it had changed.

        For a long-lived process (a sandbox's broker) that keeps its index warm:
        the file is hashed, and only when its blob differs is it parsed again (with
        `build_index(files=[path])`). Its regions replace the old ones; the
        dependency edges of regions that still exist are kept and the file's own
        edges come from the new parse; references it newly makes into other files
        wait for the next full build.
        """
        try:
            data = (self.root / path).read_bytes() if (self.root / path).is_file() else None
        except OSError:
            data = None
        blob = blob_hash(data) if data is not None else None
        if self.files.get(path) == blob:
            return False
        if path not in self.files and not (pathspec.GitIgnoreSpec.from_lines(include).match_file(path)
                                           and not pathspec.GitIgnoreSpec.from_lines(exclude).match_file(path)):
            return False  # not a file the index covers
        try:
            fresh = build_index(self.root, files=[path]) if blob is not None else None
        except ValueError:
            fresh = None
        old_ids = [region.id for region in self._file_regions(path)]
        new_regions = {rid: r for rid, r in fresh.regions.items() if r.path == path} if fresh else {}
        for rid in old_ids:
            del self.regions[rid]
        self.graph.remove_nodes_from([rid for rid in old_ids if rid not in new_regions])
        if fresh is not None:
            self.graph.add_nodes_from(fresh.graph.nodes(data=True))
            self.graph.add_edges_from(fresh.graph.edges(data=True))
        self.regions.update(new_regions)
        if fresh is not None and path in fresh.files:
            self.files[path] = fresh.files[path]
        else:
            self.files.pop(path, None)
        if self._by_path is not None:
            self._by_path[path] = sorted(new_regions.values(), key=lambda r: (r.start, -r.end))
        return True

    def neighbours(self, region_id: str, hops: int = 1, kinds: frozenset[str] = DEPENDENCY_KINDS) -> set[str]:
        """Regions within `hops` dependency edges of `region_id`, either direction; empty if unknown."""
        if region_id not in self.graph:
            return set()
        seen = {region_id}
        frontier = [region_id]
        for _ in range(hops):
            following: list[str] = []
            for node in frontier:
                for adjacency in (self.graph.succ[node], self.graph.pred[node]):
                    for other, data in adjacency.items():
                        if other not in seen and data["kinds"] & kinds:
                            seen.add(other)
                            following.append(other)
            frontier = following
        seen.discard(region_id)
        return seen


def default_cache_dir(root: Path) -> Path | None:
    """The cache shared by all worktrees of the repository at `root` (under git's common dir)."""
    from loomtui.errors import LoomError
    from loomtui.repo import find_repo

    try:
        return find_repo(root).state_dir / "index-cache"
    except LoomError:
        return None


# -- listing -----------------------------------------------------------------------


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    # `root` may be an agent's worktree: nothing it could have set in its git config runs.
    try:
        return subprocess.run(["git", *DISTRUSTING_GIT_CONFIG, *args], cwd=root, capture_output=True,
                              check=False)
    except OSError:
        return None


def _git_listing(root: Path) -> list[str] | None:
    """Tracked and untracked-but-not-ignored files under `root`, or None if git does not own it."""
    # check-ignore answers 1 for a directory git does not ignore, 0 when an enclosing
    # repository ignores it (a virtualenv, site-packages), 128 outside any repository.
    ignored = _git(root, "check-ignore", "-q", "--", ".")
    if ignored is None or ignored.returncode != 1:
        return None
    listed = _git(root, "ls-files", "-z", "-co", "--exclude-standard")
    if listed is None or listed.returncode != 0:
        return None
    names = listed.stdout.decode("utf-8", "surrogateescape").split("\0")
    return list(dict.fromkeys(name for name in names if name))


def _walk_listing(root: Path) -> list[str]:
    found: list[str] = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        relative = os.path.relpath(directory, root)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        found.extend(prefix + name for name in filenames)
    return found


def list_files(root: Path, include: Sequence[str] = ("**/*.py",), exclude: Sequence[str] = ()) -> list[str]:
    """Repository-relative posix paths under `root` selected by gitignore-style globs, sorted."""
    names = _git_listing(root)
    if names is None:
        names = _walk_listing(root)
    wanted = pathspec.GitIgnoreSpec.from_lines(include)
    unwanted = pathspec.GitIgnoreSpec.from_lines(exclude)
    return sorted(name for name in names if wanted.match_file(name) and not unwanted.match_file(name))


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


@dataclass(slots=True)
class _Source:
    """One file as read for this build: its blob hash and its bytes (None when too large)."""

    blob: str
    data: bytes | None
    facts: FileFacts | None = None


def _read_large(full: str) -> _Source:
    # Hashed in chunks and never parsed: enormous files become file-level regions.
    size = os.path.getsize(full)
    blob = hashlib.sha1(b"blob %d\0" % size)
    digest = hashlib.sha256()
    lines = 0
    last = b""
    with open(full, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            blob.update(chunk)
            digest.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk
    lines += 0 if last.endswith(b"\n") else 1
    warning = f"file too large ({size} bytes > {MAX_FILE_BYTES})"
    return _Source(blob.hexdigest(), None, file_facts(lines, digest.hexdigest(), warning))


def _read_sources(
    root: Path, paths: Iterable[str], warnings: list[str], *, explicit: bool
) -> dict[str, _Source]:
    """Read every file, refusing those that resolve outside the repository."""
    real_root = os.path.realpath(root)
    sources: dict[str, _Source] = {}
    for path in paths:
        full = os.path.join(root, path)
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
            if info.st_size > MAX_FILE_BYTES:
                sources[path] = _read_large(full)
                continue
            with open(full, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            # Listed by git but deleted in the work tree.
            if explicit:
                raise ValueError(f"{path}: no such file") from None
            continue
        except OSError as exc:
            warnings.append(f"{path}: unreadable: {exc.strerror}")
            continue
        sources[path] = _Source(blob_hash(data), data)
    return sources


# -- cache ---------------------------------------------------------------------------


def _atomic_pickle(target: Path, value: object) -> None:
    # Several processes may index at once: write aside, then rename into place.
    # Pickled straight into the file, so a large snapshot is never held twice.
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise


def _load_pickle(path: Path) -> object | None:
    # A cache entry that cannot be read (missing, truncated, from another
    # version) is simply a miss.
    try:
        with open(path, "rb") as handle:
            loaded: object = pickle.load(handle)
            return loaded
    except Exception:  # any failure to read or unpickle means "not cached"
        return None


def _facts_dir(cache_dir: Path) -> Path:
    return cache_dir / f"facts-v{FACTS_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}"


def _facts_path(facts_dir: Path, blob: str) -> Path:
    return facts_dir / blob[:2] / f"{blob}.pickle"


def _store_facts(facts_dir: Path, blob: str, facts: FileFacts) -> None:
    with suppress(OSError):
        _atomic_pickle(_facts_path(facts_dir, blob), facts)


def _load_facts(facts_dir: Path, blob: str) -> FileFacts | None:
    facts = _load_pickle(_facts_path(facts_dir, blob))
    return facts if isinstance(facts, FileFacts) else None


@dataclass
class _Snapshot:
    """A whole resolved index, independent of where the work tree is."""

    key: str
    package: str
    pairs: dict[str, str]
    shapes: dict[str, FileShape]
    file_warnings: dict[str, str]
    graph: nx.DiGraph
    unresolved: dict[str, list[tuple[str, str]]]
    consulted: dict[str, frozenset[str]]


def _snapshot_dir(cache_dir: Path) -> Path:
    return cache_dir / f"snapshots-v{FACTS_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}"


def _snapshot_key(package: str, pairs: Mapping[str, str]) -> str:
    digest = hashlib.sha256(package.encode())
    for path in sorted(pairs):
        digest.update(f"\0{path}\0{pairs[path]}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _load_snapshot(path: Path) -> _Snapshot | None:
    snapshot = _load_pickle(path)
    return snapshot if isinstance(snapshot, _Snapshot) else None


def _snapshots_newest_first(directory: Path) -> list[os.DirEntry[str]]:
    def written(entry: os.DirEntry[str]) -> int:
        try:
            return entry.stat().st_mtime_ns
        except OSError:  # removed meanwhile by another process pruning
            return -1

    try:
        entries = [entry for entry in os.scandir(directory) if entry.name.endswith(".pickle")]
    except OSError:
        return []
    return sorted(entries, key=written, reverse=True)


def _newest_snapshot(directory: Path, excluding: str) -> _Snapshot | None:
    """The most recently written snapshot: the likeliest to differ from this tree in few files."""
    for entry in _snapshots_newest_first(directory):
        if entry.name != f"{excluding}.pickle":
            snapshot = _load_snapshot(Path(entry.path))
            if snapshot is not None:
                return snapshot
    return None


def _save_snapshot(directory: Path, snapshot: _Snapshot) -> None:
    with suppress(OSError):
        _atomic_pickle(directory / f"{snapshot.key}.pickle", snapshot)
        for stale in _snapshots_newest_first(directory)[SNAPSHOTS_KEPT:]:
            with suppress(OSError):
                os.unlink(stale.path)


@contextmanager
def _gc_paused() -> Iterator[None]:
    # Building allocates hundreds of thousands of long-lived tuples; the cyclic
    # collector would rescan them again and again for nothing.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- parsing -------------------------------------------------------------------------


def _parse_batch(batch: list[tuple[str, bytes]], facts_dir: str | None) -> list[tuple[str, FileFacts]]:
    """Worker: facts of each (blob, bytes), stored in the cache as they are made."""
    results: list[tuple[str, FileFacts]] = []
    with _gc_paused():
        for blob, data in batch:
            facts = extract_facts(data)
            if facts_dir is not None:
                _store_facts(Path(facts_dir), blob, facts)
            results.append((blob, facts))
    return results


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork is the cheapest start, but forking a process that runs other threads
    # (the TUI indexes from a worker thread) can deadlock the child.
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if sys.platform != "win32" else "spawn")


def _batches(items: list[tuple[str, bytes]], count: int) -> list[list[tuple[str, bytes]]]:
    # Largest files first, in batches of similar byte size, so no worker is left
    # with one big file at the end.
    ordered = sorted(items, key=lambda item: len(item[1]), reverse=True)
    target = max(1, sum(len(data) for _, data in ordered) // count)
    batches: list[list[tuple[str, bytes]]] = [[]]
    size = 0
    for item in ordered:
        if size >= target:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += len(item[1])
    return batches


def _parse(
    items: list[tuple[str, bytes]],
    facts_dir: Path | None,
    workers: int,
    done: Callable[[int], None],
) -> dict[str, FileFacts]:
    """Facts for each (blob, bytes), in worker processes when there are many."""
    parsed: dict[str, FileFacts] = {}
    if len(items) <= PARALLEL_THRESHOLD or workers <= 1:
        for blob, facts in _parse_batch(items, None):
            if facts_dir is not None:
                _store_facts(facts_dir, blob, facts)
            parsed[blob] = facts
        done(len(items))
        return parsed
    where = str(facts_dir) if facts_dir is not None else None
    batches = _batches(items, workers * 6)
    executor: Executor = ProcessPoolExecutor(max_workers=min(workers, len(batches)), mp_context=_pool_context())
    with executor:
        futures = [executor.submit(_parse_batch, batch, where) for batch in batches]
        for future in as_completed(futures):
            results = future.result()
            parsed.update(results)
            done(len(results))
    return parsed


# -- module names ------------------------------------------------------------------


class _ModuleMap:
    """Dotted module names of the indexed files, and which file a name means where.

    A file's import root is the first directory above it without `__init__.py`:
    the directory Python would have on sys.path to import it. Its name is the
    dotted path from there, so a src/ layout resolves as installed. Roots that
    hold packages (the top, src/) are seen from everywhere; a directory of plain
    modules (tests/, scripts/, test data) only from itself, so its `gc.py` does
    not shadow the standard library for the whole repository. The dotted path
    from the top is a last resort, which covers namespace packages. When the
    top itself is a package its directory name leads every name.
    """

    def __init__(self, paths: Iterable[str], package: str) -> None:
        paths = sorted(paths)
        package_dirs = {posixpath.dirname(p) for p in paths if posixpath.basename(p) == "__init__.py"}
        prefix = [package] if package and "" in package_dirs else []
        self.name_of: dict[str, str] = {}
        self.root_of: dict[str, str] = {}
        self.names_of: dict[str, tuple[str, ...]] = {}
        self.by_root: dict[str, dict[str, str]] = {"": {}}
        self.by_full_path: dict[str, str] = {}
        for path in paths:
            directory, filename = posixpath.split(path)
            stem = filename.rpartition(".")[0] or filename
            parts = [] if stem == "__init__" else [stem]
            # Climb while the directory is a package.
            while directory and directory in package_dirs:
                directory, name = posixpath.split(directory)
                parts.insert(0, name)
            if not directory and "" in package_dirs:
                parts[:0] = prefix
            primary = ".".join(parts)
            self.name_of[path] = primary
            self.root_of[path] = directory
            self.by_root.setdefault(directory, {}).setdefault(primary, path)
            folders = posixpath.dirname(path)
            own = [] if stem == "__init__" else [stem]
            full = ".".join([*prefix, *(folders.split("/") if folders else []), *own])
            self.by_full_path.setdefault(full, path)
            self.names_of[path] = (_root_key(directory, primary), _root_key("*", full))
        holding_packages = {self.root_of[p] for p in paths if posixpath.dirname(p) != self.root_of[p]}
        self.global_roots = ("", *sorted(holding_packages - {""}))

    def package_of(self, path: str) -> str:
        name = self.name_of[path]
        return name if posixpath.basename(path) == "__init__.py" else name.rpartition(".")[0]

    def absolute(self, path: str, dotted: str, level: int) -> str | None:
        """The absolute module name of `from <level dots><dotted> import` in `path`; None if it climbs too high."""
        if level == 0:
            return dotted
        package = self.package_of(path)
        parts = package.split(".") if package else []
        if level - 1 > len(parts) or (level - 1 == len(parts) and not dotted):
            return None
        base = parts[: len(parts) - (level - 1)]
        return ".".join([*base, dotted] if dotted else base)

    def find(self, name: str, root: str) -> tuple[str | None, tuple[str, ...]]:
        """The file module `name` means when imported under import root `root`, and the keys looked at."""
        keys: list[str] = []
        for candidate in (root, *(r for r in self.global_roots if r != root)):
            keys.append(_root_key(candidate, name))
            found = self.by_root.get(candidate, {}).get(name)
            if found is not None:
                return found, tuple(keys)
        keys.append(_root_key("*", name))
        return self.by_full_path.get(name), tuple(keys)


def _root_key(root: str, name: str) -> str:
    # What a resolution records when it looks a module name up under one root.
    return f"{root}\0{name}"


# -- resolution ----------------------------------------------------------------------

# A resolution result: (outcome, path, region index).
#   FOUND: the name is that region; an attribute tail continues from it.
#   HELD: a value held in that region (a constant, an instance attribute, the
#         return of a function); resolution stops and the edge goes to the holder.
#   EXTERNAL: outside the repository or not knowable statically: no edge.
#   MISSING: the repository should define it and does not: reported unresolved.
Result: TypeAlias = tuple[int, str, int]
FOUND, HELD, EXTERNAL, MISSING = 0, 1, 2, 3
_EXTERNAL: Result = (EXTERNAL, "", -1)
_MISSING: Result = (MISSING, "", -1)

# Attributes every class has through `object` and `type`, and every module has.
_OBJECT_ATTRS = frozenset(dir(object)) | frozenset(dir(type))
_MODULE_ATTRS = frozenset({
    "__file__", "__name__", "__doc__", "__spec__", "__loader__", "__package__", "__path__",
    "__dict__", "__all__", "__builtins__", "__cached__", "__annotations__",
})

_KIND_RANK = {kind: rank for rank, kind in enumerate(EDGE_KIND_ORDER)}
_KIND_SETS: dict[frozenset[str], frozenset[str]] = {}

EdgeRow: TypeAlias = tuple[str, str, dict[str, object]]
_Key = TypeVar("_Key", bound=tuple[object, ...])
_Value = TypeVar("_Value")


@dataclass(slots=True)
class _Resolved:
    """One file's outgoing edges, what it could not resolve, and whose interfaces it read."""

    edges: list[EdgeRow]
    unresolved: list[tuple[str, str]]
    consulted: frozenset[str]


class _Resolver:
    """Resolves files' name uses against every file's shape, memoising lookups across files.

    Every lookup records the modules it read (paths) and the module names it
    tried, so an incremental build knows which files an interface change affects.
    """

    def __init__(self, shapes: Mapping[str, FileShape], modules: _ModuleMap) -> None:
        self.shapes = shapes
        self.modules = modules
        self.consulted: set[str] = set()
        self.module_memo: dict[tuple[str, str], tuple[Result, frozenset[str]]] = {}
        self.class_memo: dict[tuple[str, int, str], tuple[Result, frozenset[str]]] = {}
        self.bases_memo: dict[tuple[str, int], tuple[tuple[Result, ...], frozenset[str]]] = {}
        self.active: set[tuple[object, ...]] = set()
        self.cycles = 0
        self.find_memo: dict[tuple[str, str], tuple[str | None, tuple[str, ...]]] = {}
        self.stars_memo: dict[str, tuple[tuple[str | None, ...], frozenset[str]]] = {}

    def _memoised(
        self,
        memo: dict[_Key, tuple[_Value, frozenset[str]]],
        key: _Key,
        compute: Callable[[], _Value],
        cycle_value: _Value,
    ) -> _Value:
        hit = memo.get(key)
        if hit is None:
            if key in self.active:
                # A cycle of star imports or bases: nothing more to find this way.
                self.cycles += 1
                return cycle_value
            outer, cycles = self.consulted, self.cycles
            self.consulted = set()
            self.active.add(key)
            try:
                value = compute()
            finally:
                self.active.discard(key)
                found, self.consulted = frozenset(self.consulted), outer
            hit = (value, found)
            # A result computed inside a cycle depends on where the cycle was
            # entered, so it is not reused.
            if self.cycles == cycles:
                memo[key] = hit
        self.consulted |= hit[1]
        return hit[0]

    def module_path(self, name: str, context: str) -> str | None:
        """The file module `name` is when imported from the file `context`."""
        key = (self.modules.root_of[context], name)
        hit = self.find_memo.get(key)
        if hit is None:
            hit = self.find_memo[key] = self.modules.find(name, key[0])
        self.consulted.update(hit[1])
        return hit[0]

    def resolve_module(self, name: str, context: str) -> Result:
        """Module `name` as imported from the file `context`.

        A name that is no file may still be an attribute of a module that is
        (`os.path`, bound in os.py); once a leading part is indexed, the rest
        must be found there or it is missing.
        """
        target = self.module_path(name, context)
        if target is not None:
            return (FOUND, target, 0)
        head, _, attr = name.rpartition(".")
        if not head:
            return _EXTERNAL
        base = self.resolve_module(head, context)
        return self.walk(base, (attr,)) if base[0] == FOUND else base

    def kind_of(self, path: str, idx: int) -> str:
        # Every read of another file's shape is recorded: a file named in an
        # import can turn from unparsable to a module and back.
        self.consulted.add(path)
        return self.shapes[path].regions[idx][0]

    def lookup_module(self, path: str, name: str) -> Result:
        hit = self.module_memo.get((path, name))
        if hit is not None:
            self.consulted |= hit[1]
            return hit[0]
        return self._memoised(self.module_memo, (path, name), lambda: self._lookup_module(path, name), _MISSING)

    def _star_sources(self, path: str) -> tuple[str | None, ...]:
        """Paths of the modules `path` star-imports, latest first (None: from outside the repository)."""
        hit = self.stars_memo.get(path)
        if hit is None:
            outer = self.consulted
            self.consulted = set()
            sources: list[str | None] = []
            for dotted, level in reversed(self.shapes[path].stars):
                module = self.modules.absolute(path, dotted, level)
                found = self.resolve_module(module, path) if module is not None else _MISSING
                sources.append(found[1] if found[0] == FOUND and found[2] == 0 else None)
            hit = self.stars_memo[path] = (tuple(sources), frozenset(self.consulted))
            self.consulted = outer
        self.consulted |= hit[1]
        return hit[0]

    def _lookup_module(self, path: str, name: str) -> Result:
        self.consulted.add(path)
        shape = self.shapes[path]
        if shape.regions[0][0] == "file":
            return (HELD, path, 0)
        binding = shape.module_scope.get(name)
        if binding is not None:
            found = self.binding_target(path, binding, 0)
            # Bound here by an import that cannot be followed: that import is
            # reported against this module; users of the name stop here.
            return (HELD, path, 0) if found[0] == MISSING else found
        reachable_outside = False
        # A later star import rebinds what an earlier one bound, so search backwards.
        for source in self._star_sources(path) if shape.stars else ():
            if source is None:
                reachable_outside = True  # outside the repository, or already reported missing
                continue
            self.consulted.add(source)  # its exports are part of its interface
            exports = self.shapes[source].exports
            if name not in exports if exports is not None else name.startswith("_"):
                continue
            found = self.lookup_module(source, name)
            if found[0] in (FOUND, HELD):
                return found
            reachable_outside = reachable_outside or found[0] == EXTERNAL
        submodule = self.module_path(f"{self.modules.name_of[path]}.{name}", path)
        if submodule is not None:
            return (FOUND, submodule, 0)
        if (shape.exports is not None and name in shape.exports) or name in _MODULE_ATTRS:
            return (HELD, path, 0)  # promised by __all__ (so made at run time), or __file__ and kin
        return _EXTERNAL if reachable_outside or shape.open_module else _MISSING

    def lookup_class(self, path: str, cls: int, name: str) -> Result:
        return self._memoised(self.class_memo, (path, cls, name), lambda: self._lookup_class(path, cls, name), _MISSING)

    def _lookup_class(self, path: str, cls: int, name: str) -> Result:
        self.consulted.add(path)
        shape = self.shapes[path]
        binding = shape.class_scopes.get(cls, {}).get(name)
        if binding is not None:
            found = (HELD, path, cls) if binding == DATA else self.binding_target(path, binding, cls)
            return (HELD, path, cls) if found[0] == MISSING else found
        if name in shape.instance_attrs.get(cls, ()):
            return (HELD, path, cls)
        inherited, open_ended = self._search_bases(path, cls, name)
        if inherited is not None:
            return inherited
        if open_ended or name in _OBJECT_ATTRS or cls in shape.open_classes:
            return _EXTERNAL
        return _MISSING

    def bases(self, path: str, cls: int) -> tuple[Result, ...]:
        return self._memoised(self.bases_memo, (path, cls), lambda: self._bases(path, cls), ())

    def _bases(self, path: str, cls: int) -> tuple[Result, ...]:
        self.consulted.add(path)
        return tuple(self.resolve_ref(path, base) for base in self.shapes[path].bases.get(cls, ()))

    def binding_target(self, path: str, binding: Binding, context: int) -> Result:
        """What a binding found in `path` refers to (`context`: the region it was found in)."""
        kind = binding[0]
        if kind in ("def", "self"):
            return (FOUND, path, int(binding[1]))
        if kind == "module":
            return self.resolve_module(str(binding[1]), path)
        if kind == "from":
            module = self.modules.absolute(path, str(binding[1]), int(binding[2]))
            if module is None:
                return _MISSING
            return self.from_import(path, module, str(binding[3]))
        if kind == "data":
            return (HELD, path, context)
        return _EXTERNAL  # builtins, unknown bases

    def from_import(self, path: str, module: str, name: str) -> Result:
        """`from module import name` in the file `path`: an attribute of the module, else its submodule."""
        base = self.resolve_module(module, path)
        if base[0] == HELD:
            return base
        if base[0] == FOUND:
            found = self.walk(base, (name,))
            if found[0] != MISSING:
                return found
        submodule = self.module_path(f"{module}.{name}", path)
        if submodule is not None:
            return (FOUND, submodule, 0)
        return _MISSING if base[0] in (FOUND, MISSING) else _EXTERNAL

    def _super(self, path: str, cls: int, name: str) -> Result:
        # Only the bases are searched: that is what super() reaches. A class
        # without bases calling super() is a mixin: its MRO is its users' business.
        found, open_ended = self._search_bases(path, cls, name)
        if found is not None:
            return found
        open_ended = open_ended or not self.bases(path, cls)
        return _EXTERNAL if open_ended or name in _OBJECT_ATTRS else _MISSING

    def _search_bases(self, path: str, cls: int, name: str) -> tuple[Result | None, bool]:
        """The first base class (in order) that has `name`, and whether a base lies outside.

        A base from outside may define the name; an unresolved one is reported
        already and must not make every lookup through it fail.
        """
        open_ended = False
        for base in self.bases(path, cls):
            if base[0] == FOUND and self.kind_of(base[1], base[2]) == "class":
                found = self.lookup_class(base[1], base[2], name)
                if found[0] != MISSING:
                    return found, open_ended
            else:
                open_ended = True
        return None, open_ended

    def walk(self, result: Result, rest: Sequence[str]) -> Result:
        """Follow an attribute tail from a resolved region as far as the repository knows it."""
        for attr in rest:
            if result[0] != FOUND:
                break
            _, path, idx = result
            kind = self.kind_of(path, idx)
            if kind == "module":
                result = self.lookup_module(path, attr)
            elif kind == "class":
                result = self.lookup_class(path, idx, attr)
            else:
                # An attribute of a function (or of an unparsable file) is its business.
                return (HELD, path, idx)
        return result

    def resolve_ref(self, path: str, ref: Ref) -> Result:
        """What `ref` (a use in file `path`) refers to, following its whole attribute tail."""
        head = ref.head
        if head == STAR:
            return self.walk(self.lookup_module(path, ref.name), ref.rest)
        if head[0] == "super":
            return self.walk(self._super(path, int(head[1]), ref.rest[0]), ref.rest[1:])
        return self.walk(self.binding_target(path, head, 0), ref.rest)

    def resolve_import(self, path: str, dotted: str, level: int, name: str | None) -> Result:
        module = self.modules.absolute(path, dotted, level)
        if module is None:
            return _MISSING
        if name is None or name == "*":
            return self.resolve_module(module, path)
        return self.from_import(path, module, name)

    def resolve_file(self, path: str, uses: FileUses) -> _Resolved:
        """Every outgoing edge of one file's regions."""
        self.consulted = set()
        shape = self.shapes[path]
        ids = [region_id(path, row[1]) for row in shape.regions]
        parents = shape.parents
        kinds: dict[tuple[str, str], set[str]] = {}
        unresolved: list[tuple[str, str]] = []

        def add(source: int, result: Result, kind: str) -> bool:
            """Record the edge `result` calls for; False if the name is missing from the repository."""
            outcome, target_path, target = result
            if outcome == MISSING:
                return False
            if outcome == EXTERNAL:
                return True
            if target_path == path:
                # Using oneself or an enclosing region adds nothing to containment.
                ancestor = source
                while ancestor != -1:
                    if ancestor == target:
                        return True
                    ancestor = parents[ancestor]
                target_id = ids[target]
            else:
                target_id = region_id(target_path, self.shapes[target_path].regions[target][1])
            kinds.setdefault((ids[source], target_id), set()).add(kind)
            return True

        for child, parent in enumerate(parents):
            if parent >= 0:
                kinds[(ids[parent], ids[child])] = {"contains"}
        for fact in uses.imports:
            if not add(fact.region, self.resolve_import(path, fact.dotted, fact.level, fact.name), "imports"):
                unresolved.append((ids[fact.region], _import_text(fact)))
        for cls, class_bases in shape.bases.items():
            for result, base in zip(self.bases(path, cls), class_bases, strict=True):
                if not add(cls, result, "inherits"):
                    unresolved.append((ids[cls], _dotted_text(base)))
        for ref in uses.refs:
            if not add(ref.region, self.resolve_ref(path, ref), "references"):
                unresolved.append((ids[ref.region], _dotted_text(ref)))
        unresolved.extend((ids[region], text) for region, text in uses.unresolved)
        return _Resolved(_edge_rows(kinds), unresolved, frozenset(self.consulted))


def _dotted_text(ref: Ref) -> str:
    return ".".join((ref.name, *ref.rest))


def _import_text(fact: ImportFact) -> str:
    """`.x.y` for `from .x import y`: the imported name as the import spells it."""
    name = fact.name if fact.name != "*" else None
    return "." * fact.level + ".".join(part for part in (fact.dotted, name) if part)


def _edge_rows(kinds: Mapping[tuple[str, str], set[str]]) -> list[EdgeRow]:
    rows: list[EdgeRow] = []
    for (source, target), found in kinds.items():
        key = frozenset(found)
        shared = _KIND_SETS.setdefault(key, key)
        primary = min(shared, key=_KIND_RANK.__getitem__)
        rows.append((source, target, {"kind": primary, "kinds": shared}))
    return rows


# -- building ------------------------------------------------------------------------


def build_index(
    root: Path,
    *,
    cache_dir: Path | None = None,
    include: Sequence[str] = ("**/*.py",),
    exclude: Sequence[str] = (),
    progress: ProgressFn | None = None,
    workers: int | None = None,
    files: Iterable[str] | None = None,
) -> RepoIndex:
    """Index the Python files of the work tree at `root`.

    `files` names exactly which files to index (repository-relative; a path that
    leaves the repository raises ValueError); otherwise git's listing (or a
    directory walk) filtered by the `include`/`exclude` gitignore-style globs.
    With a `cache_dir` (see `default_cache_dir`), facts and resolved snapshots
    are reused across builds and worktrees. `progress(done, total)` is called as
    files are loaded or parsed.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    warnings: list[str] = []
    if files is None:
        paths, explicit = list_files(root, include, exclude), False
    else:
        paths, explicit = sorted({_checked_relative(root, name) for name in files}), True
    with _gc_paused():
        sources = _read_sources(root, paths, warnings, explicit=explicit)
        build = _Build(root, sources, warnings, cache_dir, progress, workers or os.cpu_count() or 1)
        return build.run()


class _Build:
    """One run of build_index over files already read."""

    def __init__(
        self,
        root: Path,
        sources: dict[str, _Source],
        warnings: list[str],
        cache_dir: Path | None,
        progress: ProgressFn | None,
        workers: int,
    ) -> None:
        self.root = root
        self.sources = sources
        self.warnings = warnings
        self.progress = progress
        self.workers = workers
        self.pairs = {path: source.blob for path, source in sources.items()}
        self.package = root.name if "__init__.py" in self.pairs else ""
        self.key = _snapshot_key(self.package, self.pairs)
        self.facts_dir = _facts_dir(cache_dir) if cache_dir is not None else None
        self.snapshot_dir = _snapshot_dir(cache_dir) if cache_dir is not None else None
        self.done = 0
        self.parsed = 0
        self.resolved = 0
        self.drift = 0

    def _advance(self, count: int) -> None:
        self.done += count
        if self.progress is not None and count:
            self.progress(min(self.done, len(self.sources)), len(self.sources))

    def run(self) -> RepoIndex:
        if self.snapshot_dir is None:
            return self._index(self._full())
        exact = _load_snapshot(self.snapshot_dir / f"{self.key}.pickle")
        if exact is not None and exact.pairs == self.pairs:
            self._advance(len(self.sources))
            return self._index(exact)
        base = _newest_snapshot(self.snapshot_dir, self.key)
        snapshot = self._patch(base) if base is not None else None
        if snapshot is None:
            snapshot = self._full()
            _save_snapshot(self.snapshot_dir, snapshot)
        elif self.drift > SNAPSHOT_DRIFT or self.resolved > SNAPSHOT_RESOLVED:
            # A small patch is cheaper to redo next time than a whole snapshot
            # is to write (and pickling holds the GIL); a large one is kept.
            _save_snapshot(self.snapshot_dir, snapshot)
        return self._index(snapshot)

    def _facts_for(self, paths: Iterable[str]) -> dict[str, FileFacts]:
        """Facts of `paths`: computed already (huge files), cached per blob, or parsed now."""
        found: dict[str, FileFacts] = {}
        wanted: dict[str, bytes] = {}
        for path in paths:
            source = self.sources[path]
            facts = source.facts
            if facts is None and self.facts_dir is not None:
                facts = _load_facts(self.facts_dir, source.blob)
            if facts is not None:
                found[path] = facts
            elif source.data is not None:
                wanted[source.blob] = source.data
        self._advance(len(found))
        if wanted:
            parsed = _parse(list(wanted.items()), self.facts_dir, self.workers, self._advance)
            for path in paths:
                if path not in found:
                    found[path] = parsed[self.sources[path].blob]
                    self.parsed += 1
        return found

    def _full(self) -> _Snapshot:
        facts = self._facts_for(self.pairs)
        shapes = {path: facts[path].shape for path in self.pairs}
        resolver = _Resolver(shapes, _ModuleMap(shapes, self.package))
        graph: nx.DiGraph[str] = nx.DiGraph()
        for path in self.pairs:
            graph.add_nodes_from((r.id, {"region": r}) for r in regions_of(shapes[path], path, facts[path].warning))
        unresolved: dict[str, list[tuple[str, str]]] = {}
        consulted: dict[str, frozenset[str]] = {}
        for path in self.pairs:
            resolved = resolver.resolve_file(path, facts[path].uses)
            graph.add_edges_from(resolved.edges)
            unresolved[path] = resolved.unresolved
            consulted[path] = resolved.consulted
        self.resolved = len(self.pairs)
        file_warnings = {path: f.warning for path, f in facts.items() if f.warning}
        return _Snapshot(self.key, self.package, self.pairs, shapes, file_warnings, graph, unresolved, consulted)

    def _patch(self, base: _Snapshot) -> _Snapshot | None:
        """`base` updated to this tree by re-resolving only what changed; None when a full build is better."""
        old, new = base.pairs, self.pairs
        changed = [path for path, blob in new.items() if old.get(path) != blob]
        removed = [path for path in old if path not in new]
        added = [path for path in changed if path not in old]
        self.drift = len(changed) + len(removed)
        if base.package != self.package or self.drift > INCREMENTAL_MAX_SHARE * len(new):
            return None
        # A package appearing or vanishing renames the modules beneath it.
        if any(posixpath.basename(path) == "__init__.py" for path in (*added, *removed)):
            return None

        facts = self._facts_for(changed)
        shapes = {path: facts[path].shape if path in facts else base.shapes[path] for path in new}
        old_modules, modules = _ModuleMap(old, self.package), _ModuleMap(new, self.package)
        touched: set[str] = set(removed)
        for path in removed:
            touched.update(old_modules.names_of[path])
        for path in added:
            touched.update(modules.names_of[path])
        for path in changed:
            if path not in base.shapes or base.shapes[path].interface != shapes[path].interface:
                touched.add(path)
        dependents = [
            path for path, read in base.consulted.items()
            if path in new and path not in facts and not read.isdisjoint(touched)
        ]
        uses = {path: f.uses for path, f in facts.items()}
        uses.update((path, f.uses) for path, f in self._facts_for(dependents).items())

        graph = base.graph
        file_warnings = dict(base.file_warnings)
        for path in removed:
            graph.remove_nodes_from(region_id(path, row[1]) for row in base.shapes[path].regions)
            file_warnings.pop(path, None)
        for path, f in facts.items():
            regions = regions_of(f.shape, path, f.warning)
            if path in base.shapes:
                current = {r.id for r in regions}
                stale = (region_id(path, row[1]) for row in base.shapes[path].regions)
                graph.remove_nodes_from([node for node in stale if node not in current])
            graph.add_nodes_from((r.id, {"region": r}) for r in regions)
            file_warnings.pop(path, None)
            if f.warning:
                file_warnings[path] = f.warning

        unresolved = {path: base.unresolved[path] for path in new if path in base.unresolved}
        consulted = {path: base.consulted[path] for path in new if path in base.consulted}
        resolver = _Resolver(shapes, modules)
        for path in sorted(uses):
            for row in shapes[path].regions:
                graph.remove_edges_from(list(graph.out_edges(region_id(path, row[1]))))
            resolved = resolver.resolve_file(path, uses[path])
            graph.add_edges_from(resolved.edges)
            unresolved[path] = resolved.unresolved
            consulted[path] = resolved.consulted
        self.resolved = len(uses)
        return _Snapshot(self.key, self.package, new, shapes, file_warnings, graph, unresolved, consulted)

    def _index(self, snapshot: _Snapshot) -> RepoIndex:
        # Identical files are parsed once, so the count may fall short: say "done".
        if self.progress is not None and (self.done != len(self.sources) or not self.sources):
            self.done = len(self.sources)
            self.progress(self.done, self.done)
        graph = snapshot.graph
        regions: dict[str, Region] = {node: data["region"] for node, data in graph.nodes(data=True)}
        unresolved = [item for path in self.pairs for item in snapshot.unresolved.get(path, ())]
        file_warnings = snapshot.file_warnings
        warnings = self.warnings + [f"{path}: {file_warnings[path]}" for path in self.pairs if path in file_warnings]
        stats = {
            "files": len(self.pairs),
            "parsed": self.parsed,
            "cached": len(self.pairs) - self.parsed,
            "resolved": self.resolved,
        }
        return RepoIndex(self.root, regions, graph, unresolved, warnings, dict(self.pairs), stats)
