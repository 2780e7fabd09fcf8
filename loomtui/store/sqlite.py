"""The SQLite backend of the state store (WAL, short BEGIN IMMEDIATE transactions).

Many processes write at once: the TUI, CLI calls from agent hooks, sandbox
supervisors. Every write runs in an immediate transaction, so writers queue on the
database lock (up to the busy timeout) instead of failing half way, and a caller can
group reads and writes into one atomic step with `transaction()` (that is how a claim
checks for conflicts and inserts without a race).
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loomtui.errors import StoreError
from loomtui.store.base import DuplicateRow, Row, Written
from loomtui.store.records import StoreStatus
from loomtui.store.schema import MIGRATIONS, SCHEMA_VERSION, newer_schema
from loomtui.store.sql import SqlStore

BUSY_TIMEOUT_S = 10.0
DISK_FULL_BYTES = 64 * 1024
"""Less room than this where the store is: a write's failure is said as a full disk."""
WAL_SWITCH_RETRY_S = 0.005


def _disk_full(path: Path) -> str:
    """"; its disk is full" where it is (sqlite says "disk I/O error" when it cannot make its -shm file)."""
    try:
        return "; its disk is full" if shutil.disk_usage(path.parent).free < DISK_FULL_BYTES else ""
    except OSError:
        return ""


def _describe(exc: sqlite3.Error, path: Path, waited: float = BUSY_TIMEOUT_S) -> StoreError:
    """Turn an sqlite error into one line a user can act on."""
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return StoreError(
            f"{path}: the state store is corrupt ({text}); move it aside and run again to start a new one"
        )
    if "locked" in text or "busy" in text:
        return StoreError(
            f"{path}: the state store is locked by another process (waited {waited:g}s); try again"
        )
    if "readonly" in text or "unable to open" in text or "disk I/O" in text or "full" in text:
        return StoreError(f"{path}: cannot write the state store ({text}{_disk_full(path)})")
    return StoreError(f"{path}: state store error: {text}")


class SqliteStore(SqlStore):
    """The shared state of one repository, in one SQLite file."""

    mirror = ""
    """The audit log file beside the store is its only mirror."""
    embedded = True

    def __init__(self, path: Path, *, busy_timeout: float = BUSY_TIMEOUT_S, read_only: bool = False,
                 before_writing: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self._before_writing = before_writing
        """Asked once each write transaction holds the lock (raises to refuse it): the store may have been
        copied away since it was opened, by a copy that held the lock from its read to its note."""
        self.location = str(self.path)
        self.name = self.path.parent.parent.parent.name  # <repo>/.git/loom/state.db
        self.busy_timeout = busy_timeout
        self.read_only = read_only  # nothing is then created, migrated or written
        self._uri = f"{self.path.resolve().as_uri()}?mode=ro" if read_only else ""
        self._connections: list[tuple[sqlite3.Connection, threading.Lock]] = []
        self._closing = False
        self._lock = threading.Lock()
        if read_only:
            self._check_readable()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path.parent}: {exc.strerror}") from None
        self._migrate()

    # -- connections and transactions ------------------------------------------

    def _error(self, exc: sqlite3.Error) -> StoreError:
        return _describe(exc, self.path, self.busy_timeout)

    def _conn(self) -> sqlite3.Connection:
        return self._conn_and_lock()[0]

    def _conn_and_lock(self) -> tuple[sqlite3.Connection, threading.Lock]:
        opened: tuple[sqlite3.Connection, threading.Lock] | None = getattr(self._local, "conn", None)
        if opened is None:
            conn = self._connect_read_only() if self.read_only else self._connect()
            opened = self._local.conn = (conn, threading.Lock())
            with self._lock:
                self._connections.append(opened)
        return opened

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None,
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            # Set once, by whoever opens the file first: setting it again wants a lock, which
            # busy writers can keep from a newcomer past the busy timeout.
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                self._switch_to_wal(conn)
            # NORMAL is durable across application crashes in WAL mode; only
            # a power loss can drop the last commits, never corrupt the file.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return conn

    @contextmanager
    def _statement(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, held while one statement runs, so that `close` (from another
        thread) waits for it: closing a connection under a running statement crashed the interpreter
        (the app's store listener, mid-read when the app quit). Used after `close`, it raises."""
        if self._closing:  # no new statement while `close` waits: a busy thread would keep it waiting
            raise self._closed_error()
        conn, running = self._conn_and_lock()
        with running:
            if self._closing:
                raise self._closed_error()
            yield conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """A read-only connection. A WAL store wants its shared-memory file even to read; where that
        cannot be created (a read-only directory after the last writer closed cleanly, so none is
        left), the file is read as immutable: nothing can write it through this mount either."""
        last: sqlite3.Error | None = None
        for uri in (self._uri, f"{self._uri}&immutable=1"):
            try:
                conn = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout, isolation_level=None,
                                       check_same_thread=False)
            except sqlite3.Error as exc:
                last = exc
                continue
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as exc:
                conn.close()
                last = exc
                continue
            conn.row_factory = sqlite3.Row
            return conn
        assert last is not None
        raise self._error(last) from None

    def _check_readable(self) -> None:
        """A read-only store must exist already, at the schema this loomtui reads (migrating is a write)."""
        if not self.path.is_file():
            raise StoreError(f"{self.path}: there is no state store yet, and it cannot be created here "
                             "(read-only)")
        try:
            version = self._conn().execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: the state store has schema {version} and this loomtui reads "
                             f"{SCHEMA_VERSION}; it cannot be migrated here (read-only)")

    def _closed_error(self) -> StoreError:
        return StoreError(f"{self.path}: the state store is being closed")

    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        """Put a new store in WAL mode. SQLite answers a contended journal-mode change with SQLITE_BUSY
        at once, without waiting: of two processes opening a new store together (two `sandbox new`
        in a fresh clone), one failed. Tried again until the busy timeout; once another process has
        made the change, the PRAGMA finds it made."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                busy = (exc.sqlite_errorcode & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(WAL_SWITCH_RETRY_S)

    def _begin(self) -> None:
        try:
            with self._statement() as conn:
                conn.execute("BEGIN IMMEDIATE")
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                if version > SCHEMA_VERSION:
                    self._rollback(conn)
                    raise StoreError(newer_schema(str(self.path), version, while_running=True))
                if self._before_writing is not None:
                    try:
                        self._before_writing()
                    except BaseException:
                        self._rollback(conn)
                        raise
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _end(self, *, commit: bool) -> None:
        with self._statement() as conn:
            if commit:
                try:
                    conn.execute("COMMIT")
                    return
                except sqlite3.Error as exc:
                    self._rollback(conn)
                    raise self._error(exc) from None
            self._rollback(conn)

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite already rolled it back (some errors end the transaction themselves)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            with self._statement() as conn:
                rows: list[Row] = conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return rows

    def _integrity_error(self, exc: sqlite3.IntegrityError) -> StoreError:
        """DuplicateRow for a taken id or a unique value; any other broken rule (NOT NULL, CHECK) is a
        plain store error, never said as "already exists"."""
        if "UNIQUE constraint failed" in str(exc) or getattr(exc, "sqlite_errorname", "") in (
                "SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
            return DuplicateRow(f"{self.path}: {exc}")
        return StoreError(f"{self.path}: a write broke a rule of the store: {exc}")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Written:
        try:
            with self._statement() as conn:
                return conn.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise self._integrity_error(exc) from None
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            with self._statement() as conn:
                cursor = conn.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise self._integrity_error(exc) from None
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return int(cursor.lastrowid or 0)

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            with self._statement() as conn:
                conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise self._integrity_error(exc) from None
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _migrate(self) -> None:
        conn = self._conn()
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        if version > SCHEMA_VERSION:
            raise StoreError(newer_schema(str(self.path), version))
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            # Re-read under the lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self._execute(statement)
                self._execute(f"PRAGMA user_version = {number + 1}")

    def close(self) -> None:
        """Close every connection this store opened (one per thread that used it), each once the
        statement running on it, if any, has finished."""
        with self._lock:
            self._closing = True
            try:
                for conn, running in self._connections:
                    with running:
                        conn.close()
                self._connections.clear()
                self._local = threading.local()
            finally:
                self._closing = False

    # -- dialect ------------------------------------------------------------------------

    def _lines_of(self, column: str) -> str:
        return f"group_concat({column}, char(10))"

    def _json_value(self, key: str) -> str:
        return f"CASE WHEN json_valid(data) THEN json_extract(data, '$.{key}') END"

    def _json_length(self, key: str) -> str:
        return f"CASE WHEN json_valid(data) THEN json_array_length(data, '$.{key}') END"

    # -- health and liveness ------------------------------------------------------------

    def status(self) -> StoreStatus:
        """Schema version, journal mode, newest event and row counts."""
        counts = self._row_counts()
        return StoreStatus(
            path=str(self.path),
            schema_version=int(self._query("PRAGMA user_version")[0][0]),
            # Read-only (and perhaps immutable, which reports "delete"): that is what the reader needs to know.
            journal_mode="read-only" if self.read_only else str(self._query("PRAGMA journal_mode")[0][0]),
            last_event_id=self.last_event_id(),
            counts=counts,
        )

    def integrity_problems(self) -> list[str]:
        """SQLite's full integrity check: an empty list means the file is sound."""
        rows = self._query("PRAGMA integrity_check")
        return [str(r[0]) for r in rows if r[0] != "ok"]

    def _heard_of(self, after_id: int, seconds: float) -> bool:
        """SQLite cannot tell another process of a commit: look, and if nothing is new, sleep."""
        if self.last_event_id() > after_id:
            return True
        time.sleep(seconds)
        return False
