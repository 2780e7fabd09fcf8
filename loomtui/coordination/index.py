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

This module holds the index itself (`RepoIndex`), the build that runs the
stages, and the parsing of stage 2. Its helpers each have a module:
`index_files` lists, selects and reads files; `index_cache` stores facts and
snapshots; `index_modules` names modules; `index_resolve` resolves uses into
edges. The names callers import are re-exported here.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import posixpath
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import pathspec

from loomtui.coordination.index_cache import (
    SNAPSHOTS_KEPT,
    _facts_dir,
    _load_facts,
    _load_snapshot,
    _newest_snapshot,
    _save_snapshot,
    _Snapshot,
    _snapshot_dir,
    _snapshot_key,
    _store_facts,
    index_cache_dir,
)
from loomtui.coordination.index_files import _checked_relative, _read_sources, _Source, blob_hash, list_files
from loomtui.coordination.index_modules import _ModuleMap
from loomtui.coordination.index_resolve import (
    EDGE_KIND_ORDER,
    EXTERNAL,
    FOUND,
    HELD,
    MISSING,
    EdgeRow,
    Result,
    _Resolver,
)
from loomtui.coordination.regions import FileFacts, Region, extract_facts, region_id, regions_of

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "DEPENDENCY_KINDS",
    "EDGE_KIND_ORDER",
    "EXTERNAL",
    "FOUND",
    "HELD",
    "INCREMENTAL_MAX_SHARE",
    "MISSING",
    "PARALLEL_THRESHOLD",
    "SNAPSHOTS_KEPT",
    "SNAPSHOT_DRIFT",
    "SNAPSHOT_RESOLVED",
    "EdgeRow",
    "ProgressFn",
    "RepoIndex",
    "Result",
    "blob_hash",
    "build_index",
    "index_cache_dir",
    "list_files",
]

DEPENDENCY_KINDS = frozenset({"imports", "references", "inherits"})

PARALLEL_THRESHOLD = 64
# Beyond this share of changed files, patching a snapshot costs more than
# resolving everything again.
INCREMENTAL_MAX_SHARE = 0.25
# A patched snapshot is saved only when it differs from its base in more files
# than this, or re-resolved more files than SNAPSHOT_RESOLVED; otherwise the next
# build redoes the (small) patch.
SNAPSHOT_DRIFT = 16
SNAPSHOT_RESOLVED = 64

ProgressFn: TypeAlias = Callable[[int, int], None]


@dataclass
class RepoIndex:
    """Regions of a repository, the dependency graph between them, and what could not be resolved."""

    root: Path
    regions: dict[str, Region]
    graph: nx.DiGraph[str]
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


# -- parsing -------------------------------------------------------------------------


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a block builds many long-lived containers (an index):
    it would rescan them again and again for nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse_batch(batch: list[tuple[str, bytes]], facts_dir: str | None) -> list[tuple[str, FileFacts]]:
    """Worker: facts of each (blob, bytes), stored in the cache as they are made."""
    results: list[tuple[str, FileFacts]] = []
    with gc_paused():
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
    With a `cache_dir` (see `index_cache_dir`), facts and resolved snapshots
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
    with gc_paused():
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
        import networkx as nx  # 0.2 s to import: only where a graph is built

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
