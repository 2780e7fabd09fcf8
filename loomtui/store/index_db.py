"""The repository index on disk: files, regions, dependency edges and who read whose interface.

One SQLite database per indexed tree (`coordination.index_disk` names and
publishes them). Queries answer "which regions does this line range of this
file hit", "what is joined to these regions" and "which files read these
modules" without loading the rest, so a hook or a claim check costs what its
question costs, not what the repository weighs.

Region ids start with their file's path (`path` or `path::qualname`), so a
file's regions and its outgoing edges are one primary-key range: no second
index on the path. A new database is written with the journal off (it is not
published until it is whole); a published one is in WAL mode and changed only
in transactions, so a process killed mid-update leaves the previous version.
"""

from __future__ import annotations

import hashlib
import pickle
import sqlite3
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

INDEX_SCHEMA_VERSION = 2
"""2: who-read-what (consulted, unresolved) moved out of `files` into `file_details`, so that the scan of
`files` that every start makes reads 0.4 MB on a million lines, not 4 MB."""

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE files(
    path TEXT PRIMARY KEY,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    facts_blob TEXT NOT NULL,
    warning TEXT NOT NULL,
    stale INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE file_details(path TEXT PRIMARY KEY, consulted BLOB NOT NULL, unresolved BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE regions(
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    qualname TEXT NOT NULL,
    first_line INTEGER NOT NULL,
    last_line INTEGER NOT NULL,
    hash TEXT NOT NULL,
    doc TEXT NOT NULL,
    warning TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE edges(src TEXT NOT NULL, dst TEXT NOT NULL, kinds INTEGER NOT NULL,
                   PRIMARY KEY(src, dst)) WITHOUT ROWID;
CREATE TABLE consults(key INTEGER PRIMARY KEY, paths TEXT NOT NULL);
"""
# Made after a new database is filled: building an index row by row is slower than once.
_LATE_INDEXES = "CREATE INDEX edges_by_dst ON edges(dst);"

# (id, path, kind, qualname, first_line, last_line, hash, doc, warning)
RegionTuple = tuple[str, str, str, str, int, int, str, str, str]
# (src, dst, kinds bitmask)
EdgeTuple = tuple[str, str, int]


@dataclass(slots=True)
class FileRow:
    """One indexed file: its content (blob), its stat when last hashed, and the facts in effect.

    `facts_blob` differs from `blob` when the file no longer parses: its last
    good regions are kept (`stale`) until it parses again.
    """

    path: str
    blob: str
    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int
    facts_blob: str
    warning: str
    stale: bool
    consulted: frozenset[str]
    unresolved: tuple[tuple[str, str], ...]


class IndexDBError(Exception):
    """The database cannot be used: missing, written by another loomtui, or not an index at all."""


# What reading or writing an index database can raise: ours, the disk's and SQLite's own
# (a read-only mount, a full disk), for callers that fall back.
INDEX_FAILURES: tuple[type[Exception], ...] = (IndexDBError, OSError, sqlite3.Error)


def _file_range(path: str) -> tuple[str, str, str]:
    # `path` itself, then `path::...`: ':' + 1 is ';', the end of that range.
    return path, path + "::", path + ":;"


_IN_FILE = "({col} = ? OR ({col} >= ? AND {col} < ?))"
_BATCH = 500
_Item = TypeVar("_Item")


class IndexDB:
    """One index database. Not shared between threads; open one per thread."""

    def __init__(self, path: Path | str, *, new: bool = False, timeout: float = 30.0) -> None:
        self.path = str(path)
        try:
            # An existing database is opened as such: a file removed meanwhile is an error, not a new empty index.
            target = self.path if new or self.path == ":memory:" else f"file:{quote(self.path)}?mode=rw"
            self._conn = sqlite3.connect(target, timeout=timeout, isolation_level=None, check_same_thread=False,
                                         uri=not new and self.path != ":memory:")
        except sqlite3.Error as exc:
            raise IndexDBError(f"{self.path}: {exc}") from None
        try:
            # Pages are written in key order when a database is filled, so a small cache does;
            # queries of a published one get more.
            self._conn.execute(f"PRAGMA cache_size={-8192 if new else -32768}")
            if new:
                self._conn.execute("PRAGMA journal_mode=OFF")
                self._conn.execute("PRAGMA synchronous=OFF")
                self._conn.executescript(_SCHEMA)
                self._conn.execute(f"PRAGMA user_version = {INDEX_SCHEMA_VERSION}")
            else:
                version = self._conn.execute("PRAGMA user_version").fetchone()[0]
                if version != INDEX_SCHEMA_VERSION:
                    raise IndexDBError(f"{self.path}: index schema {version}, this loomtui reads "
                                           f"{INDEX_SCHEMA_VERSION}")
                self._conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise IndexDBError(f"{self.path}: {exc}") from None

    def close(self) -> None:
        self._conn.close()

    def finish_new(self) -> None:
        """Make the late indexes and switch a freshly written database to WAL, ready to publish."""
        self._conn.executescript(_LATE_INDEXES)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")

    def copy_to(self, target: Path) -> None:
        """A consistent copy of this database at `target` (another tree's starting point)."""
        try:
            destination = sqlite3.connect(str(target))
            try:
                self._conn.backup(destination)
                destination.execute("PRAGMA journal_mode=WAL")
            finally:
                destination.close()
        except sqlite3.Error as exc:
            raise IndexDBError(f"{target}: {exc}") from None

    @contextmanager
    def writing(self) -> Iterator[None]:
        """One transaction: every change in it lands, or none does."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- meta ---------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, values: dict[str, str]) -> None:
        self._conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", values.items())

    # -- files --------------------------------------------------------------------------

    def file_rows(self) -> dict[str, FileRow]:
        """Every file row, without its consulted and unresolved lists (`file_details` reads those)."""
        rows = self._conn.execute(
            "SELECT path, blob, size, mtime_ns, ino, ctime_ns, facts_blob, warning, stale FROM files").fetchall()
        return {path: FileRow(path, blob, size, mtime, ino, ctime, facts_blob, warning, bool(stale), frozenset(), ())
                for path, blob, size, mtime, ino, ctime, facts_blob, warning, stale in rows}

    def file_details(self, paths: Iterable[str]) -> dict[str, tuple[frozenset[int], tuple[tuple[str, str], ...]]]:
        """(consulted keys, unresolved) of each of `paths` that is indexed."""
        found: dict[str, tuple[frozenset[int], tuple[tuple[str, str], ...]]] = {}
        for chunk in _chunks(list(paths)):
            marks = ",".join("?" * len(chunk))
            for path, consulted, unresolved in self._conn.execute(
                    f"SELECT path, consulted, unresolved FROM file_details WHERE path IN ({marks})", chunk):
                found[path] = (frozenset(array("q", consulted)), pickle.loads(unresolved))
        return found

    def all_unresolved(self) -> Iterator[tuple[str, tuple[tuple[str, str], ...]]]:
        for path, unresolved in self._conn.execute("SELECT path, unresolved FROM file_details ORDER BY path"):
            yield path, pickle.loads(unresolved)

    def put_files(self, rows: Iterable[FileRow], *, new: bool = False) -> None:
        """Insert or replace file rows, recording who reads which module for `readers_of`.

        `new`: none of these files has a row yet (a database being filled).
        """
        rows = list(rows)
        packed: list[bytes] = []
        if new:
            # Half a million (name, file) reads on a million lines: no call and no new list per read.
            postings: defaultdict[int, list[str]] = defaultdict(list)
            known = _KEYS.get
            for row in rows:
                keys = {known(name) or _key(name) for name in row.consulted}
                packed.append(array("q", keys).tobytes())
                path = row.path
                for key in keys:
                    postings[key].append(path)
            self._conn.executemany("INSERT INTO consults(key, paths) VALUES (?, ?)",
                                   sorted((key, "\0".join(paths)) for key, paths in postings.items()))
        else:
            old = self.file_details(row.path for row in rows)
            changes: dict[int, tuple[set[str], set[str]]] = {}  # key -> (paths added, paths removed)
            for row in rows:
                row_keys = frozenset(map(_key, row.consulted))
                packed.append(array("q", row_keys).tobytes())
                before = old.get(row.path, (frozenset(), ()))[0]
                for key in row_keys - before:
                    changes.setdefault(key, (set(), set()))[0].add(row.path)
                for key in before - row_keys:
                    changes.setdefault(key, (set(), set()))[1].add(row.path)
            self._apply_postings(changes)
        self.put_file_heads(rows)
        self._conn.executemany(
            "INSERT OR REPLACE INTO file_details VALUES (?, ?, ?)",
            ((row.path, keys, pickle.dumps(row.unresolved, pickle.HIGHEST_PROTOCOL))
             for row, keys in zip(rows, packed, strict=True)))

    def put_file_heads(self, rows: Iterable[FileRow]) -> None:
        """Replace file rows but not what they read (`consulted`, `unresolved`): files whose content changed
        but whose resolution did not."""
        self._conn.executemany(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((row.path, row.blob, row.size, row.mtime_ns, row.ino, row.ctime_ns, row.facts_blob, row.warning,
              int(row.stale)) for row in rows))

    def _apply_postings(self, changes: dict[int, tuple[set[str], set[str]]]) -> None:
        # One row per consulted name (hashed), holding every path that read it: a few
        # thousand rows for a million lines instead of one per (name, path) pair.
        current: dict[int, set[str]] = {}
        for chunk in _chunks(sorted(changes)):
            marks = ",".join("?" * len(chunk))
            for key, paths in self._conn.execute(f"SELECT key, paths FROM consults WHERE key IN ({marks})", chunk):
                current[key] = set(paths.split("\0"))
        updated: list[tuple[int, str]] = []
        emptied: list[tuple[int]] = []
        for key, (added, removed) in changes.items():
            paths = (current.get(key, set()) | added) - removed
            if paths:
                updated.append((key, "\0".join(sorted(paths))))
            else:
                emptied.append((key,))
        self._conn.executemany("INSERT OR REPLACE INTO consults(key, paths) VALUES (?, ?)", sorted(updated))
        self._conn.executemany("DELETE FROM consults WHERE key = ?", emptied)

    def put_stats(self, stats: Iterable[tuple[str, int, int, int, int]]) -> None:
        """Record (path, size, mtime_ns, ino, ctime_ns) for files whose content is unchanged."""
        self._conn.executemany("UPDATE files SET size = ?, mtime_ns = ?, ino = ?, ctime_ns = ? WHERE path = ?",
                               ((size, mtime, ino, ctime, path) for path, size, mtime, ino, ctime in stats))

    def drop_files(self, paths: Sequence[str]) -> None:
        """Remove files with their regions, outgoing edges and reads."""
        old = self.file_details(paths)
        changes: dict[int, tuple[set[str], set[str]]] = {}
        for path in paths:
            for key in old.get(path, (frozenset(), ()))[0]:
                changes.setdefault(key, (set(), set()))[1].add(path)
            self.replace_regions(path, ())
            self.replace_edges_from(path, ())
        self._apply_postings(changes)
        self._conn.executemany("DELETE FROM files WHERE path = ?", ((path,) for path in paths))
        self._conn.executemany("DELETE FROM file_details WHERE path = ?", ((path,) for path in paths))

    def readers_of(self, names: Iterable[str]) -> set[str]:
        """Files whose resolution read any of these module names or paths (a few more, rarely:
        names are kept hashed, and a collision only means a file is resolved again for nothing)."""
        found: set[str] = set()
        for chunk in _chunks(sorted({_key(name) for name in names})):
            marks = ",".join("?" * len(chunk))
            for (paths,) in self._conn.execute(f"SELECT paths FROM consults WHERE key IN ({marks})", chunk):
                found.update(paths.split("\0"))
        return found

    # -- regions -------------------------------------------------------------------------

    def regions_of(self, path: str) -> list[RegionTuple]:
        return self._conn.execute(f"SELECT * FROM regions WHERE {_IN_FILE.format(col='id')}",
                                  _file_range(path)).fetchall()

    def regions_between(self, path: str, first: int, last: int) -> list[RegionTuple]:
        """Regions of `path` overlapping lines first..last."""
        return self._conn.execute(f"SELECT * FROM regions WHERE {_IN_FILE.format(col='id')} "
                                  "AND first_line <= ? AND last_line >= ?",
                                  (*_file_range(path), last, first)).fetchall()

    def region(self, region_id: str) -> RegionTuple | None:
        row: RegionTuple | None = self._conn.execute("SELECT * FROM regions WHERE id = ?", (region_id,)).fetchone()
        return row

    def all_regions(self) -> Iterator[RegionTuple]:
        yield from self._conn.execute("SELECT * FROM regions")

    def region_count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM regions").fetchone()[0])

    def replace_regions(self, path: str, regions: Iterable[RegionTuple]) -> None:
        self._conn.execute(f"DELETE FROM regions WHERE {_IN_FILE.format(col='id')}", _file_range(path))
        self.add_regions(regions)

    def add_regions(self, regions: Iterable[RegionTuple]) -> None:
        self._conn.executemany("INSERT OR REPLACE INTO regions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", regions)

    def mark_stale(self, path: str, warning: str) -> None:
        self._conn.execute(f"UPDATE regions SET warning = ? WHERE {_IN_FILE.format(col='id')}",
                           (warning, *_file_range(path)))

    # -- edges ---------------------------------------------------------------------------

    def _batched(self, sql: str, ids: Sequence[str], copies: int = 1) -> list[Any]:
        """`sql` run for each batch of `ids`, its `{marks}` standing for the batch (`copies` times)."""
        found: list[Any] = []
        for chunk in _chunks(list(ids)):
            found += self._conn.execute(sql.format(marks=",".join("?" * len(chunk))), chunk * copies).fetchall()
        return found

    def edges_touching(self, region_ids: Sequence[str]) -> list[EdgeTuple]:
        """Edges from or to any of these regions (once each, but for edges between two batches of 500)."""
        # UNION ALL with the overlap left out: no temporary table to sort away duplicates.
        return self._batched("SELECT src, dst, kinds FROM edges WHERE src IN ({marks}) UNION ALL "
                             "SELECT src, dst, kinds FROM edges WHERE dst IN ({marks}) AND src NOT IN ({marks})",
                             region_ids, copies=3)

    def edges_from(self, region_ids: Sequence[str]) -> list[EdgeTuple]:
        return self._batched("SELECT src, dst, kinds FROM edges WHERE src IN ({marks})", region_ids)

    def files_by_users(self, mask: int) -> list[tuple[str, int]]:
        """(file, how many other files have an edge of `mask` into it), most used first."""
        return self._conn.execute(
            "SELECT target, count(DISTINCT source) AS users FROM ("
            " SELECT substr(dst, 1, instr(dst || '::', '::') - 1) AS target,"
            "        substr(src, 1, instr(src || '::', '::') - 1) AS source"
            " FROM edges WHERE kinds & ?) WHERE target != source"
            " GROUP BY target ORDER BY users DESC, target", (mask,)).fetchall()

    def edges_into(self, region_ids: Sequence[str]) -> list[EdgeTuple]:
        return self._batched("SELECT src, dst, kinds FROM edges WHERE dst IN ({marks})", region_ids)

    def drop_edges_into(self, region_ids: Sequence[str]) -> None:
        """Remove edges that point at regions which no longer exist."""
        self._batched("DELETE FROM edges WHERE dst IN ({marks})", region_ids)

    def edges_between(self, a: str, b: str) -> tuple[int | None, int | None]:
        """The kinds of the edges a -> b and b -> a (None where there is none), in one query."""
        found = dict(((src, dst), kinds) for src, dst, kinds in self._conn.execute(
            "SELECT src, dst, kinds FROM edges WHERE (src = ? AND dst = ?) OR (src = ? AND dst = ?)", (a, b, b, a)))
        return found.get((a, b)), found.get((b, a))

    def all_edges(self) -> Iterator[EdgeTuple]:
        yield from self._conn.execute("SELECT src, dst, kinds FROM edges")

    def edge_count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM edges").fetchone()[0])

    def replace_edges_from(self, path: str, edges: Iterable[EdgeTuple]) -> None:
        """The outgoing edges of `path`'s regions become `edges`."""
        self._conn.execute(f"DELETE FROM edges WHERE {_IN_FILE.format(col='src')}", _file_range(path))
        self.add_edges(edges)

    def add_edges(self, edges: Iterable[EdgeTuple]) -> None:
        self._conn.executemany("INSERT OR REPLACE INTO edges VALUES (?, ?, ?)", edges)


_KEYS: dict[str, int] = {}


def _key(name: str) -> int:
    """A consulted name as a signed 64-bit key (remembered: the same names recur in every file)."""
    key = _KEYS.get(name)
    if key is None:
        digest = hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        key = _KEYS[name] = int.from_bytes(digest, "little", signed=True)
    return key


def _chunks(items: list[_Item]) -> Iterator[list[_Item]]:
    for start in range(0, len(items), _BATCH):
        yield items[start:start + _BATCH]
