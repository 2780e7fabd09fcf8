"""The repository index: every region of a repository and the dependency graph between them.

The index lives in a database per tree (`index_disk`, `store.index_db`), so
what a caller asks costs what the question costs: which regions a line range
hits, what is within k hops of some regions, who depends on a region. Only a
caller that walks the whole graph (`RepoIndex.graph`) loads all of it.

Building (`index_build`) lists and stats the tree; files whose stat or blob is
unchanged cost nothing more. Changed files are parsed (facts cached per blob,
shared by every worktree), and they and the files that read a changed
interface are resolved again, in one transaction. A tree seen for the first
time starts from a copy of another tree's database (a sandbox from the main
checkout).

Helpers each have a module: `index_files` lists, selects and reads files;
`index_cache` stores facts; `index_modules` names modules; `index_resolve`
resolves uses into edges; `index_parse` runs the parsers. The names callers
import are re-exported here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from loomtui.coordination.index_build import INCREMENTAL_MAX_SHARE, FactsStore, ProgressFn, Sync, kinds_of, mask_of
from loomtui.coordination.index_cache import index_cache_dir
from loomtui.coordination.index_disk import TreeDatabase, settings_of, tree_key
from loomtui.coordination.index_files import _checked_relative, blob_hash, list_files, list_files_matching
from loomtui.coordination.index_parse import PARALLEL_THRESHOLD, gc_paused
from loomtui.coordination.index_resolve import (
    EDGE_KIND_ORDER,
    EXTERNAL,
    FOUND,
    HELD,
    MISSING,
    EdgeRow,
    Result,
)
from loomtui.coordination.regions import Region
from loomtui.store.index_db import INDEX_FAILURES, FileRow, IndexDB, RegionTuple

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
    "EdgeRow",
    "ProgressFn",
    "RepoIndex",
    "Result",
    "blob_hash",
    "build_index",
    "gc_paused",
    "index_cache_dir",
    "list_files",
]

DEPENDENCY_KINDS = frozenset({"imports", "references", "inherits"})
# Remembered answers per open index (edges, neighbourhoods); beyond this many, they are forgotten.
QUERY_MEMO = 50_000


def _region(row: RegionTuple) -> Region:
    return Region(row[0], row[2], row[1], row[3], row[4], row[5], row[6], row[7], row[8])


class RegionMap(Mapping[str, Region]):
    """The index's regions by id: one is read when asked for; iterating reads them all (once)."""

    def __init__(self, db: IndexDB) -> None:
        self._db = db
        self._found: dict[str, Region | None] = {}
        self._all: dict[str, Region] | None = None

    def __getitem__(self, region_id: str) -> Region:
        if self._all is not None:
            return self._all[region_id]
        if region_id not in self._found:
            row = self._db.region(region_id)
            self._found[region_id] = _region(row) if row is not None else None
        found = self._found[region_id]
        if found is None:
            raise KeyError(region_id)
        return found

    def remember(self, regions: Iterable[Region]) -> None:
        for region in regions:
            self._found.setdefault(region.id, region)

    def everything(self) -> dict[str, Region]:
        if self._all is None:
            with gc_paused():
                self._all = {row[0]: self._found.get(row[0]) or _region(row) for row in self._db.all_regions()}
        return self._all

    def __iter__(self) -> Iterator[str]:
        return iter(self.everything())

    def __len__(self) -> int:
        return len(self._all) if self._all is not None else self._db.region_count()


class RepoIndex:
    """Regions of a repository, the dependency edges between them, and what could not be resolved.

    Backed by the tree's index database: lookups by file, line, region and
    neighbourhood read only what they need. `graph` (a networkx DiGraph with a
    `region` on each node and `kind`/`kinds` on each edge) loads everything, for
    the few callers that walk the whole graph.
    """

    def __init__(self, root: Path, db: IndexDB, files: dict[str, str], warnings: list[str],
                 stats: dict[str, int], rebuild: Callable[[Sequence[str] | None], RepoIndex] | None = None,
                 stale: Sequence[str] = ()) -> None:
        self.root = root
        self.files = files
        self.warnings = warnings
        self.stats = stats
        self.stale = list(stale)
        """Files that no longer parse, whose regions are those of their last version that did."""
        self._db = db
        self._rebuild = rebuild
        self.regions = RegionMap(db)
        self._by_path: dict[str, list[Region]] = {}
        self._graph: nx.DiGraph[str] | None = None
        # Answers already read, for a process that keeps the index open (a broker, the app).
        self._edges: dict[tuple[str, str], frozenset[str] | None] = {}
        self._neighbours: dict[tuple[str, int, frozenset[str]], frozenset[str]] = {}

    @property
    def database(self) -> str:
        """Where the index is kept (`:memory:` for one built without a cache)."""
        return self._db.path

    def close(self) -> None:
        self._db.close()

    def forget_loaded(self) -> None:
        """Forget every region and graph read so far (they are read again from the database when asked)."""
        self.regions = RegionMap(self._db)
        self._by_path = {}
        self._graph = None
        self._edges = {}
        self._neighbours = {}

    @property
    def graph(self) -> nx.DiGraph[str]:
        """The whole dependency graph, loaded on first use."""
        if self._graph is None:
            import networkx as nx  # 0.2 s to import: only where a whole graph is walked

            graph: nx.DiGraph[str] = nx.DiGraph()
            with gc_paused():
                graph.add_nodes_from((rid, {"region": region}) for rid, region in self.regions.everything().items())
                graph.add_edges_from((src, dst, _edge_data(mask)) for src, dst, mask in self._db.all_edges())
            self._graph = graph
        return self._graph

    @property
    def unresolved(self) -> list[tuple[str, str]]:
        """(region, name) for each name the repository should define and does not, by file."""
        return [item for path, items in self._db.all_unresolved() if path in self.files for item in items]

    def region_count(self) -> int:
        return len(self.regions)

    def edge_count(self) -> int:
        return self._db.edge_count()

    def _file_regions(self, path: str) -> list[Region]:
        found = self._by_path.get(path)
        if found is None:
            found = sorted((_region(row) for row in self._db.regions_of(path)), key=lambda r: (r.start, -r.end))
            self.regions.remember(found)
            self._by_path[path] = found
        return found

    def _span_regions(self, path: str, low: int, high: int) -> list[Region]:
        # A file already read whole answers from memory; otherwise only the regions on
        # those lines are read (one function of a file of thousands).
        if path in self._by_path:
            return [r for r in self._by_path[path] if r.start <= high and r.end >= low]
        found = sorted((_region(row) for row in self._db.regions_between(path, low, high)),
                       key=lambda r: (r.start, -r.end))
        self.regions.remember(found)
        return found

    def regions_in(self, path: str, start: int | None = None, end: int | None = None) -> list[Region]:
        """Regions of `path` overlapping lines start..end (all if None).

        Ordered by (start, -end): every region comes before the regions nested in
        it, so among regions containing one line the innermost is last.
        """
        if start is None and end is None:
            return list(self._file_regions(path))
        return self._span_regions(path, 1 if start is None else start, sys.maxsize if end is None else end)

    def innermost_at(self, path: str, line: int) -> Region | None:
        """The smallest region of `path` containing `line`, None if the file is not indexed."""
        found = self._span_regions(path, line, line)
        return found[-1] if found else None

    def edge_kinds(self, source: str, target: str) -> frozenset[str] | None:
        """The kinds of the edge source -> target, None if there is none."""
        key = (source, target)
        if key not in self._edges:
            if len(self._edges) >= QUERY_MEMO:
                self._edges.clear()
            # Both directions at once: who asks one (a conflict's path and its description) asks the other.
            forward, backward = self._db.edges_between(source, target)
            self._edges[key] = None if forward is None else kinds_of(forward)
            self._edges[(target, source)] = None if backward is None else kinds_of(backward)
        return self._edges[key]

    def out_edges(self, region_ids: Sequence[str]) -> list[tuple[str, str, frozenset[str]]]:
        """(source, target, kinds) of every edge leaving these regions."""
        return [(src, dst, kinds_of(mask)) for src, dst, mask in self._db.edges_from(region_ids)]

    def in_edges(self, region_ids: Sequence[str]) -> list[tuple[str, str, frozenset[str]]]:
        """(source, target, kinds) of every edge into these regions."""
        return [(src, dst, kinds_of(mask)) for src, dst, mask in self._db.edges_into(region_ids)]

    def hub_files(self) -> list[tuple[str, int]]:
        """(file, how many other files depend on it), the most depended-on first."""
        return self._db.files_by_users(mask_of(DEPENDENCY_KINDS))

    def neighbours(self, region_id: str, hops: int = 1, kinds: frozenset[str] = DEPENDENCY_KINDS) -> set[str]:
        """Regions within `hops` dependency edges of `region_id`, either direction; empty if unknown."""
        key = (region_id, hops, kinds)
        if key not in self._neighbours:
            if len(self._neighbours) >= QUERY_MEMO:
                self._neighbours.clear()
            self._neighbours[key] = frozenset(self._neighbours_now(region_id, hops, kinds))
        return set(self._neighbours[key])

    def neighbours_of_each(self, region_ids: Sequence[str], hops: int = 1,
                           kinds: frozenset[str] = DEPENDENCY_KINDS) -> dict[str, set[str]]:
        """`neighbours` of each region, one hop read for all of them in one query."""
        if hops != 1:
            return {rid: self.neighbours(rid, hops, kinds) for rid in region_ids}
        wanted = mask_of(kinds)
        asked = set(region_ids)
        found: dict[str, set[str]] = {rid: set() for rid in asked if rid in self.regions}
        for src, dst, mask in self._db.edges_touching(sorted(found)):
            if mask & wanted and src != dst:
                if src in found:
                    found[src].add(dst)
                if dst in found:
                    found[dst].add(src)
        return found

    def _neighbours_now(self, region_id: str, hops: int, kinds: frozenset[str]) -> set[str]:
        if region_id not in self.regions:
            return set()
        wanted = mask_of(kinds)
        seen = {region_id}
        frontier = [region_id]
        for _ in range(hops):
            if not frontier:
                break
            following: list[str] = []
            for src, dst, mask in self._db.edges_touching(frontier):
                if mask & wanted:
                    for other in (src, dst):
                        if other not in seen:
                            seen.add(other)
                            following.append(other)
            frontier = following
        seen.discard(region_id)
        return seen

    def refresh(self, paths: Sequence[str] | None = None) -> bool:
        """Bring the index up to date with the tree (only `paths`, when given); True if anything changed.

        For a long-lived process (a sandbox's broker, the app) that keeps an index open.
        """
        if self._rebuild is None:
            return False
        fresh = self._rebuild(paths)
        if fresh.files == self.files and fresh.stats.get("parsed", 0) == 0 and fresh.stats.get("resolved", 0) == 0:
            fresh.close()
            return False
        self._db.close()
        self.files, self.warnings, self.stats, self._db = fresh.files, fresh.warnings, fresh.stats, fresh._db
        self.stale = fresh.stale
        self.forget_loaded()
        return True


def _edge_data(mask: int) -> dict[str, object]:
    kinds = kinds_of(mask)
    return {"kind": next(kind for kind in EDGE_KIND_ORDER if kind in kinds), "kinds": kinds}


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
    With a `cache_dir` (see `index_cache_dir`), the index is kept on disk and
    brought up to date incrementally; without one it is built in memory.
    `progress(done, total)` is called as files are loaded or parsed.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    include, exclude = tuple(include), tuple(exclude)
    explicit = None if files is None else sorted({_checked_relative(root, name) for name in files})
    count = workers or os.cpu_count() or 1
    if cache_dir is None or explicit is not None:
        facts = FactsStore(cache_dir)
        return _build_in_memory(root, include, exclude, explicit, facts, progress, count)
    tree = TreeDatabase(cache_dir, tree_key(root, include, exclude), root)
    try:
        return _Updater(root, tree, FactsStore(cache_dir), include, exclude, progress, count).run(None)
    except INDEX_FAILURES as exc:
        # A cache that cannot be written (a read-only mount, a full disk): this build is made in
        # memory, reading what facts the cache has, and says so.
        index = _build_in_memory(root, include, exclude, None, FactsStore(cache_dir), progress, count)
        index.warnings.append(f"index cache not usable ({exc}); indexed in memory this time")
        return index


def _index_of(root: Path, db: IndexDB, sync: Sync,
              rebuild: Callable[[Sequence[str] | None], RepoIndex] | None,
              rows: Mapping[str, FileRow] | None = None) -> RepoIndex:
    """The index over `db` as `sync` left it (`rows`: its file rows, when nothing was written)."""
    sync.finish_progress()
    rows = db.file_rows() if rows is None else rows
    files = {path: source.blob for path, source in sync.sources.items()}
    warnings = sync.warnings + [f"{path}: {rows[path].warning}" for path in files
                                if path in rows and rows[path].warning]
    stats = dict(sync.stats)
    stats["cached"] = stats["files"] - stats["parsed"]
    stale = [path for path in files if path in rows and rows[path].stale]
    return RepoIndex(root, db, files, warnings, stats, rebuild, stale)


def _build_in_memory(root: Path, include: tuple[str, ...], exclude: tuple[str, ...], explicit: list[str] | None,
                     facts: FactsStore, progress: ProgressFn | None, workers: int) -> RepoIndex:
    warnings: list[str] = []
    paths = explicit if explicit is not None else list_files(root, include, exclude)
    sync = Sync(root, paths, warnings, facts=facts, include=include, exclude=exclude,
                explicit=explicit is not None, progress=progress, workers=workers)
    sync.scan({})
    db = sync.full_build(None, {}, 1)

    def rebuild(only: Sequence[str] | None) -> RepoIndex:
        return _build_in_memory(root, include, exclude, explicit, facts, None, workers)

    return _index_of(root, db, sync, rebuild)


class _Updater:
    """One build of a tree kept on disk: read it, and when it changed, update or replace its database."""

    def __init__(self, root: Path, tree: TreeDatabase, facts: FactsStore, include: tuple[str, ...],
                 exclude: tuple[str, ...], progress: ProgressFn | None, workers: int) -> None:
        self.root = root
        self.tree = tree
        self.facts = facts
        self.include = include
        self.exclude = exclude
        self.progress = progress
        self.workers = workers

    def _rebuild(self, only: Sequence[str] | None) -> RepoIndex:
        return _Updater(self.root, self.tree, self.facts, self.include, self.exclude, None, self.workers).run(only)

    def _sync(self, rows: Mapping[str, FileRow], only: Sequence[str] | None) -> Sync:
        warnings: list[str] = []
        if only is None:
            paths = list_files(self.root, self.include, self.exclude)
            assumed: dict[str, FileRow] = {}
        else:
            # Only these paths are looked at; every other file is as the database has it.
            looked = {_checked_relative(self.root, name) for name in only}
            wanted = set(list_files_matching(self.root, looked, self.include, self.exclude))
            paths = sorted((set(rows) - looked) | wanted)
            assumed = {path: row for path, row in rows.items() if path not in looked}
        sync = Sync(self.root, paths, warnings, facts=self.facts, include=self.include, exclude=self.exclude,
                    explicit=False, progress=self.progress, workers=self.workers)
        sync.scan(rows, assumed=assumed)
        return sync

    def _open(self) -> IndexDB | None:
        db = self.tree.open()
        if db is None:
            with self.tree.locked():
                db = self.tree.open()
                if db is None:
                    # A tree seen for the first time: a good moment to drop those that are gone.
                    self.tree.prune_gone_trees()
                    if self.tree.seed_from_sibling(settings_of(self.include, self.exclude)):
                        db = self.tree.open()
        return db

    def run(self, only: Sequence[str] | None) -> RepoIndex:
        db = self._open()
        rows = db.file_rows() if db is not None else {}
        meta = db.meta() if db is not None else {}
        sync = self._sync(rows, only)
        changed, removed, restat = sync.changes(rows)
        if db is not None and not changed and not removed and meta.get("state") == "ok" \
                and meta.get("package") == sync.package:
            if restat:
                with self.tree.locked(), db.writing():
                    db.put_stats(restat)
            return _index_of(self.root, db, sync, self._rebuild, rows)
        written: dict[str, FileRow] | None = None
        with self.tree.locked():
            # Another process may have done the work while this one waited.
            current = self.tree.open()
            if current is not None and (db is None or current.path != db.path or current.meta() != meta):
                if db is not None:
                    db.close()
                db, rows, meta = current, current.file_rows(), current.meta()
                sync = self._sync(rows, only)
                changed, removed, restat = sync.changes(rows)
            elif current is not None:
                current.close()
            serial = int(meta.get("serial", "0")) + 1
            if db is None or sync.needs_full(rows, meta, changed, removed):
                if db is not None:
                    db.close()
                db = sync.full_build(self.tree, rows, serial)
            elif changed or removed or restat:
                written = sync.update(db, rows, changed, removed, restat, serial)
        # After an update, the rows as written rather than read back (a scan of every file row again).
        return _index_of(self.root, db, sync, self._rebuild, written)
