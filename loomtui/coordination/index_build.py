"""Building and updating a tree's index database: what changed, what to parse, what to resolve again.

A build lists the tree's files and stats them. A file whose stat matches the
database's record is not read; the others are hashed. When no blob differs the
database already answers for this tree and nothing is written: that is the
warm start, and it costs a listing and a stat per file.

When some differ, the tree's writer lock is taken and the database updated in
one transaction: changed files are parsed (facts are cached per blob in
`index_cache`), their regions replaced, and re-resolved together with the
files whose resolution read an interface that changed (the `consults` table
says who read what). Beyond `INCREMENTAL_MAX_SHARE` of the files, or when a
package appears or vanishes (which renames modules beneath it), a full build
writes a new database and publishes it.

A file that stops parsing keeps the regions of its last version that parsed,
marked stale, until it parses again.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypeAlias

from loomtui.coordination.index_cache import _facts_dir, _load_facts
from loomtui.coordination.index_disk import TreeDatabase, remove_database, settings_of
from loomtui.coordination.index_files import FileStat, _read_sources, _Source
from loomtui.coordination.index_modules import _ModuleMap
from loomtui.coordination.index_parse import gc_paused, parse_many
from loomtui.coordination.index_resolve import EDGE_KIND_ORDER, EdgeRow, _Resolver, interface_changes
from loomtui.coordination.regions import FileFacts, FileShape, region_id
from loomtui.errors import shown
from loomtui.files import open_regular
from loomtui.globs import name_problem
from loomtui.store.index_db import EdgeTuple, FileRow, IndexDB, RegionTuple

ProgressFn: TypeAlias = Callable[[int, int], None]

# Beyond this share of changed files, updating costs more than building anew.
INCREMENTAL_MAX_SHARE = 0.25
# A file changed this recently may change again within the clock's resolution
# unseen by its stat: it is hashed again next time, as git does with "racy" entries.
RACY_NS = 1_000_000_000

KIND_BITS = {kind: 1 << rank for rank, kind in enumerate(EDGE_KIND_ORDER)}
_KINDS_OF_MASK: dict[int, frozenset[str]] = {
    mask: frozenset(kind for kind, bit in KIND_BITS.items() if mask & bit) for mask in range(1 << len(KIND_BITS))
}


def kinds_of(mask: int) -> frozenset[str]:
    """The edge kinds a stored bitmask holds."""
    return _KINDS_OF_MASK[mask]


def mask_of(kinds: Iterable[str]) -> int:
    return sum(KIND_BITS[kind] for kind in set(kinds))


def _edge_tuples(rows: list[EdgeRow]) -> list[EdgeTuple]:
    return [(source, target, mask_of(kinds)) for source, target, kinds in rows]


def _region_tuples(path: str, facts: FileFacts, stale: str = "") -> Iterator[RegionTuple]:
    # A stale file's regions all carry why they are stale; otherwise only a file region has a warning.
    for kind, name, start, end, digest, doc in facts.shape.regions:
        warning = stale or (facts.warning if kind == "file" else "")
        yield (region_id(path, name), path, kind, name, start, end, digest, doc, warning)


def _parses(facts: FileFacts) -> bool:
    return not facts.shape.regions or facts.shape.regions[0][0] != "file"


class FactsStore:
    """Facts per blob: the shared on-disk cache when there is one, else this process's memory."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.directory = _facts_dir(cache_dir) if cache_dir is not None else None
        self.memory: dict[str, FileFacts] = {}

    def get(self, blob: str) -> FileFacts | None:
        found = self.memory.get(blob)
        if found is None and self.directory is not None:
            found = _load_facts(self.directory, blob)
        return found

    def keep(self, blob: str, facts: FileFacts) -> None:
        if self.directory is None:
            self.memory[blob] = facts


def _unnameable(path: str, warnings: list[str]) -> bool:
    """Whether a file is left out of the index for its name (said in `warnings`): an agent's file named
    so stopped every claim, hook answer and index of the repository with a UnicodeEncodeError."""
    problem = name_problem(path)
    if problem:
        warnings.append(f"{shown(path)}: {problem}; not indexed (and cannot be claimed)")
    return problem is not None


class Sync:
    """One build of one tree's index: read what changed, write what follows from it."""

    def __init__(self, root: Path, paths: list[str], warnings: list[str], *, facts: FactsStore,
                 include: tuple[str, ...], exclude: tuple[str, ...], explicit: bool,
                 progress: ProgressFn | None, workers: int) -> None:
        self.root = root
        self.paths = [path for path in paths if not _unnameable(path, warnings)]
        self.warnings = warnings
        self.facts = facts
        self.settings = settings_of(include, exclude)
        self.explicit = explicit
        self.progress = progress
        self.workers = workers
        self.started_ns = time.time_ns()
        self.package = root.name if "__init__.py" in paths else ""
        self.stats = {"files": 0, "parsed": 0, "cached": 0, "resolved": 0}
        self.done = 0
        self.sources: dict[str, _Source] = {}

    # -- reading ------------------------------------------------------------------------

    def scan(self, rows: Mapping[str, FileRow], assumed: Mapping[str, FileRow] | None = None) -> None:
        """Stat (and where needed read) the files; `assumed` ones are taken as their rows say, unlooked."""
        assumed = assumed or {}
        known: dict[str, tuple[str, FileStat]] = {
            path: (row.blob, (row.size, row.mtime_ns, row.ino, row.ctime_ns)) for path, row in rows.items()}
        with gc_paused():
            read = _read_sources(self.root, [path for path in self.paths if path not in assumed], self.warnings,
                                 explicit=self.explicit, known=known)
            for path, row in assumed.items():
                read[path] = _Source(row.blob, None, stat=(row.size, row.mtime_ns, row.ino, row.ctime_ns),
                                     known=True)
            self.sources = {path: read[path] for path in self.paths if path in read}
        self.stats["files"] = len(self.sources)

    def changes(self, rows: Mapping[str, FileRow]) -> tuple[list[str], list[str], list[tuple[str, int, int, int, int]]]:
        """(changed or added paths, removed paths, stat records of files hashed again but unchanged)."""
        changed: list[str] = []
        restat: list[tuple[str, int, int, int, int]] = []
        for path, source in self.sources.items():
            row = rows.get(path)
            if row is None or row.blob != source.blob:
                changed.append(path)
            elif not source.known:
                restat.append((path, *self._recorded_stat(source)))
        removed = [path for path in rows if path not in self.sources]
        return changed, removed, restat

    def _recorded_stat(self, source: _Source) -> FileStat:
        size, mtime, ino, ctime = source.stat
        racy = max(mtime, ctime) >= self.started_ns - RACY_NS
        return (size, -1 if racy else mtime, ino, ctime)

    def _advance(self, count: int) -> None:
        self.done += count
        if self.progress is not None and count:
            self.progress(min(self.done, len(self.sources)), len(self.sources))

    def finish_progress(self) -> None:
        if self.progress is not None and (self.done != len(self.sources) or not self.sources):
            self.done = len(self.sources)
            self.progress(self.done, self.done)

    # -- facts --------------------------------------------------------------------------

    def facts_for(self, paths: Iterable[str]) -> dict[str, FileFacts]:
        """Facts of each path's current content: cached per blob, or parsed now."""
        found: dict[str, FileFacts] = {}
        wanted: dict[str, bytes] = {}
        waiting: list[str] = []
        for path in paths:
            source = self.sources[path]
            facts = source.facts or self.facts.get(source.blob)
            if facts is not None:
                found[path] = facts
                continue
            data = source.data
            if data is None:  # known by stat, its facts gone from the cache: read it now
                try:  # as looked at: an agent's FIFO in its place hung the reader (`open_regular`)
                    with open_regular(self.root / path, os.path.realpath(self.root)) as handle:
                        data = handle.read()
                except OSError:
                    data = b""
            wanted[source.blob] = data
            waiting.append(path)
        self._advance(len(found))
        if wanted:
            parsed = parse_many(list(wanted.items()), self.facts.directory, self.workers, self._advance)
            for blob, facts in parsed.items():
                self.facts.keep(blob, facts)
            for path in waiting:
                found[path] = parsed[self.sources[path].blob]
                self.sources[path].data = None  # parsed: the bytes are not needed again
            self.stats["parsed"] += len(waiting)
        self.stats["cached"] = self.stats["files"] - self.stats["parsed"]
        return found

    def effective(self, path: str, facts: FileFacts, old: FileRow | None) -> tuple[str, FileFacts, str, bool]:
        """(facts blob, facts, warning, stale) for a file: a file that no longer parses keeps its
        last version that did, marked stale."""
        blob = self.sources[path].blob
        if _parses(facts) or old is None:
            return blob, facts, facts.warning, False
        previous = self.facts.get(old.facts_blob) if old.facts_blob != blob else None
        if previous is None or not _parses(previous):
            return blob, facts, facts.warning, False
        return old.facts_blob, previous, f"stale: {facts.warning} (regions as of the last version that parsed)", True

    def file_row(self, path: str, facts_blob: str, warning: str, stale: bool, consulted: frozenset[str],
                 unresolved: tuple[tuple[str, str], ...]) -> FileRow:
        source = self.sources[path]
        size, mtime, ino, ctime = self._recorded_stat(source)
        return FileRow(path, source.blob, size, mtime, ino, ctime, facts_blob, warning, stale, consulted, unresolved)

    # -- full build ---------------------------------------------------------------------

    def build_new(self, db: IndexDB, old: Mapping[str, FileRow], serial: int) -> None:
        """Fill an empty database with the whole tree."""
        db.set_meta({**self.settings, "package": self.package, "state": "building"})
        facts = self.facts_for(self.sources)
        chosen = {path: self.effective(path, facts[path], old.get(path)) for path in self.sources}
        del facts
        shapes = {path: entry[1].shape for path, entry in chosen.items()}
        count = len(chosen)
        resolver = _Resolver(shapes, _ModuleMap(shapes, self.package))
        rows: list[FileRow] = []
        regions: list[RegionTuple] = []
        edges: list[EdgeTuple] = []
        # One transaction, rows in key order: a new database is written page after page.
        with gc_paused(), db.writing():
            while chosen:
                # Popped: each file's uses are dropped once it is resolved, so memory holds shapes only.
                path, (facts_blob, effective, warning, stale) = chosen.popitem()
                regions.extend(_region_tuples(path, effective, warning if stale else ""))
                resolved = resolver.resolve_file(path, effective.uses)
                edges.extend(_edge_tuples(resolved.edges))
                rows.append(self.file_row(path, facts_blob, warning, stale, resolved.consulted,
                                          tuple(resolved.unresolved)))
                if len(edges) > 20000:
                    db.add_edges(sorted(edges))
                    edges.clear()
            db.add_edges(sorted(edges))
            db.add_regions(sorted(regions))
            db.put_files(rows, new=True)
        self.stats["resolved"] = count
        db.set_meta({"state": "ok", "serial": str(serial)})

    def full_build(self, tree: TreeDatabase | None, old: Mapping[str, FileRow], serial: int) -> IndexDB:
        """A new database for the tree: published when the tree has one, else in memory."""
        if tree is None:
            db = IndexDB(":memory:", new=True)
            self.build_new(db, old, serial)
            return db
        target = tree.new_generation()
        db = IndexDB(target, new=True)
        try:
            self.build_new(db, old, serial)
            db.finish_new()
        except BaseException:
            db.close()
            remove_database(target)
            raise
        db.close()
        tree.publish(target)
        reopened = tree.open()
        assert reopened is not None, "a database just published can be opened"
        return reopened

    # -- update ------------------------------------------------------------------------

    def needs_full(self, rows: Mapping[str, FileRow], meta: Mapping[str, str], changed: list[str],
                   removed: list[str]) -> bool:
        if not rows or meta.get("package") != self.package or meta.get("state") != "ok":
            return True
        if len(changed) + len(removed) > INCREMENTAL_MAX_SHARE * max(1, len(self.sources)):
            return True
        added = [path for path in changed if path not in rows]
        # A package appearing or vanishing renames the modules beneath it.
        return any(posixpath.basename(path) == "__init__.py" for path in (*added, *removed))

    def update(self, db: IndexDB, rows: Mapping[str, FileRow], changed: list[str], removed: list[str],
               restat: list[tuple[str, int, int, int, int]], serial: int) -> dict[str, FileRow]:
        """Bring `db` to this tree in one transaction, re-resolving only what the changes reach; the file
        rows it now holds (the rows given, with those written and without those removed)."""
        facts = self.facts_for(changed)
        chosen = {path: self.effective(path, facts[path], rows.get(path)) for path in changed}
        shapes = _LazyShapes(self, rows)
        for path, entry in chosen.items():
            shapes.loaded[path] = entry[1].shape
        modules: _ModuleMap | None = None
        touched: set[str] = set(removed)
        if removed:
            old_modules = _ModuleMap(rows, self.package)
            for path in removed:
                touched.update(old_modules.names_of[path])
        alike: set[str] = set()  # changed files whose edges cannot have changed: only their regions' lines
        for path, (_blob, effective, _warning, stale) in chosen.items():
            if path not in rows:
                modules = modules or _ModuleMap(self.sources, self.package)
                touched.update(modules.names_of[path])
                touched.add(path)
                continue
            before = self.facts.get(rows[path].facts_blob)
            touched |= {path} if before is None else interface_changes(path, before.shape, shapes.loaded[path])
            if before is not None and not stale and resolves_alike(before, effective):
                alike.add(path)
        dependents = sorted(db.readers_of(touched) - set(chosen) - set(removed))
        uses = {path: entry[1].uses for path, entry in chosen.items() if path not in alike}
        for path in dependents:
            known = self.facts.get(rows[path].facts_blob)
            if known is None:  # its facts left the cache: parse the file again
                known = self.facts_for([path])[path]
            uses[path] = known.uses
            shapes.loaded.setdefault(path, known.shape)
        # Resolved before the transaction (it reads the facts, not the database): the write lock is held for
        # the writes alone. A file that resolves alike needs no module map: an edit of one has none built.
        resolved_files = {}
        if uses:
            resolver = _Resolver(shapes, modules or _ModuleMap(self.sources, self.package))
            resolved_files = {path: resolver.resolve_file(path, uses[path]) for path in sorted(uses)}
        with db.writing():
            vanished: list[str] = []
            for path in removed:
                vanished.extend(region[0] for region in db.regions_of(path))
            db.drop_files(removed)
            for path, (_blob, effective, warning, stale) in chosen.items():
                if stale:
                    db.mark_stale(path, warning)
                    continue
                existing = {region[0] for region in db.regions_of(path)}
                now = list(_region_tuples(path, effective))
                vanished.extend(existing - {region[0] for region in now})
                db.replace_regions(path, now)
            db.drop_edges_into(vanished)
            rows_out: list[FileRow] = []
            for path, resolved in resolved_files.items():
                db.replace_edges_from(path, _edge_tuples(resolved.edges))
                if path in chosen:
                    facts_blob, _effective, warning, stale = chosen[path]
                else:
                    facts_blob, warning, stale = rows[path].facts_blob, rows[path].warning, rows[path].stale
                rows_out.append(self.file_row(path, facts_blob, warning, stale, resolved.consulted,
                                              tuple(resolved.unresolved)))
            db.put_files(rows_out)
            # Same edges, reads and unresolved names as before: only the file's own row changes.
            heads = [self.file_row(path, chosen[path][0], chosen[path][2], False, frozenset(), ()) for path in alike]
            db.put_file_heads(heads)
            rows_out += heads
            db.put_stats(restat)
            db.set_meta({"serial": str(serial)})
        self.stats["resolved"] = len(uses)
        held = {path: row for path, row in rows.items() if path not in removed}
        held.update((row.path, row) for row in rows_out)
        for path, size, mtime, ino, ctime in restat:
            if path in held:
                held[path] = dataclasses.replace(held[path], size=size, mtime_ns=mtime, ino=ino, ctime_ns=ctime)
        return held


def resolves_alike(before: FileFacts, after: FileFacts) -> bool:
    """Whether two versions of a file resolve to the same edges: the same uses, region for region, and the
    same shape but for where its regions are (lines, hash, doc). Uses name regions by their place in the file,
    not by line, so an edit that uses nothing new (a literal, a comment, a local variable, lines added in a
    body) changes only its regions' rows: nothing is resolved again."""
    old, new = before.shape, after.shape
    return (before.uses == after.uses and [row[:2] for row in old.regions] == [row[:2] for row in new.regions]
            and old._replace(regions=()) == new._replace(regions=()))


class _LazyShapes(Mapping[str, FileShape]):
    """Every file's shape, loaded from the facts cache only when resolution asks for it."""

    def __init__(self, sync: Sync, rows: Mapping[str, FileRow]) -> None:
        self.sync = sync
        self.rows = rows
        self.loaded: dict[str, FileShape] = {}

    def __getitem__(self, path: str) -> FileShape:
        shape = self.loaded.get(path)
        if shape is None:
            row = self.rows.get(path)
            facts = self.sync.facts.get(row.facts_blob) if row is not None else None
            if facts is None:
                facts = self.sync.facts_for([path])[path]
            shape = self.loaded[path] = facts.shape
        return shape

    def __iter__(self) -> Iterator[str]:
        return iter(self.sync.sources)

    def __len__(self) -> int:
        return len(self.sync.sources)

