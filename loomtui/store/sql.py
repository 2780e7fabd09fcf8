"""The store's records and queries, written once for both backends (SQLite and PostgreSQL).

`SqlStore` holds everything that is the same on both: the tables' reads and writes,
the event stream, nested transactions with their after-commit callbacks. A backend
(`sqlite.SqliteStore`, `postgres.PostgresStore`) supplies connections, how a write
transaction starts (SQLite's BEGIN IMMEDIATE; on PostgreSQL an advisory lock on the
repository's namespace, so writers of one repository queue exactly as on SQLite),
migrations, and the few expressions the two dialects spell differently.

Queries are written with `?` placeholders and the SQL both dialects share (RETURNING,
ON CONFLICT); the PostgreSQL backend turns `?` into psycopg's `%s`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from loomtui.errors import StoreError
from loomtui.store.base import CHUNK, DuplicateRow, Row, Written
from loomtui.store.eval_rows import EvalRows
from loomtui.store.metric_rows import MetricRows
from loomtui.store.records import (
    SANDBOX_COLUMNS,
    ClaimRecord,
    EscalationRecord,
    Event,
    RepositoryRecord,
    SandboxRecord,
    StoreStatus,
    data_json,
)

COUNTED_TABLES = ("sandboxes", "claims", "escalations", "gate_runs", "events")
"""The tables whose row counts `status` reports."""
WAIT_STEP_S = 0.2
"""The longest a waiter for events goes without looking at `cancelled` (and SQLite at its events)."""
_ESCALATION_MUTABLE = frozenset({"status", "risk", "summary", "data"})
class SqlStore(EvalRows, MetricRows):
    """The shared state of one repository: what both backends store and how they answer."""

    location: str
    """Where the store is, for messages: a file path, or a URL without its password."""
    namespace: str = "local"
    """The name of the repository's records in a shared database ('local' for an SQLite file)."""
    name: str = ""
    """The repository's directory name, as listed among a database's repositories."""
    embedded: bool = False
    """A file on this machine, which answers at once or fails at once: no network to wait on."""
    read_only: bool = False
    """Opened for reading only (where it cannot be written): a write fails with one line."""
    mirror: str
    """Which audit log file this process mirrors the audit table to (its checkpoint's key)."""

    def __init__(self) -> None:
        self._local = threading.local()

    # -- what a backend supplies ---------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        raise NotImplementedError

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Written:
        """Run one write; callers hold `transaction()` so events commit with it. A broken
        uniqueness rule raises DuplicateRow."""
        raise NotImplementedError

    def _insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one INSERT and return the new row's id."""
        raise NotImplementedError

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _begin(self) -> None:
        """Start this thread's write transaction (queued behind other writers of the store)."""
        raise NotImplementedError

    def _end(self, *, commit: bool) -> None:
        """Commit or roll back this thread's transaction (a failed commit raises StoreError)."""
        raise NotImplementedError

    def _lines_of(self, column: str) -> str:
        """An aggregate joining a column's values with newlines."""
        raise NotImplementedError

    def _json_value(self, key: str) -> str:
        """The value of a top-level key of the row's `data` (NULL when absent or damaged)."""
        raise NotImplementedError

    def _json_length(self, key: str) -> str:
        """The length of an array under a top-level key of `data` (NULL when it is not one)."""
        raise NotImplementedError

    def _in_byte_range(self, column: str) -> str:
        """`column` between two parameters, compared byte by byte (whatever the database's collation)."""
        return f"{column} >= ? AND {column} < ?"

    def _notify(self, event_id: int) -> None:
        """Tell other processes an event was added (sent when the transaction commits)."""

    def close(self) -> None:
        raise NotImplementedError

    def status(self) -> StoreStatus:
        raise NotImplementedError

    def integrity_problems(self) -> list[str]:
        raise NotImplementedError

    def _heard_of(self, after_id: int, seconds: float) -> bool:
        """Whether an event newer than `after_id` exists, waiting up to `seconds` to hear of one."""
        raise NotImplementedError

    def wait_for_events(self, after_id: int, timeout: float, *,
                        cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Block until an event newer than `after_id` exists (True), `timeout` seconds pass or
        `cancelled()` says to stop (False); the caller then reads `events_since`. It waits in
        steps of WAIT_STEP_S, so a cancelled waiter (an app quitting) returns within one."""
        deadline = time.monotonic() + timeout
        while not cancelled():
            left = deadline - time.monotonic()
            if self._heard_of(after_id, max(0.0, min(WAIT_STEP_S, left))):
                return True
            if left <= WAIT_STEP_S:
                return False
        return False

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _row_counts(self) -> dict[str, int]:
        return {table: int(self._query(f"SELECT COUNT(*) FROM {table}")[0][0]) for table in COUNTED_TABLES}

    def repositories(self) -> list[RepositoryRecord]:
        """The repositories whose state is in this store's database (SQLite: this one)."""
        return [self._repository(self.namespace, self.name)]

    def open_escalations_elsewhere(self) -> list[tuple[RepositoryRecord, EscalationRecord]]:
        """Open escalations of the other repositories in this store's database (SQLite: none)."""
        return []

    def _repository(self, namespace: str, name: str, schema: str = "") -> RepositoryRecord:
        prefix = f"{schema}." if schema else ""
        escalations = self._query(f"SELECT COUNT(*) FROM {prefix}escalations WHERE status = 'open'")[0][0]
        sandboxes = self._query(f"SELECT COUNT(*) FROM {prefix}sandboxes WHERE status != 'archived'")[0][0]
        return RepositoryRecord(namespace, name, int(escalations), int(sandboxes))

    # -- whole tables (store copy) ------------------------------------------------------

    def rows_of(self, sql: str) -> list[Row]:
        """Every row a SELECT of a whole table gives (store copy reads with this)."""
        return self._query(sql)

    def load_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows as they are, ids included, in the caller's transaction (store copy)."""
        marks = ", ".join("?" * len(columns))
        self._many(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def after_load(self) -> None:
        """Make new ids follow the loaded ones (PostgreSQL's identity sequences; SQLite does it itself)."""

    # -- transactions -----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[SqlStore]:
        """Group reads and writes into one atomic step, queued behind other writers; nests."""
        if getattr(self._local, "depth", 0):
            self._local.depth += 1
            try:
                yield self
            finally:
                self._local.depth -= 1
            return
        self._begin()
        self._local.depth = 1
        self._local.after = []
        try:
            yield self
        except BaseException:
            self._local.depth = 0
            self._end(commit=False)
            self._run_after(committed=False)
            raise
        self._local.depth = 0
        try:
            self._end(commit=True)
        except StoreError:
            self._run_after(committed=False)
            raise
        self._run_after(committed=True)

    def in_transaction(self) -> bool:
        """True while this thread is inside `transaction()`."""
        return bool(getattr(self._local, "depth", 0))

    def after_transaction(self, callback: Callable[[], None], *, also_on_rollback: bool = False) -> None:
        """Run `callback` when this thread's outermost transaction has committed (or, with
        `also_on_rollback`, ended either way); once however often it is asked for in one
        transaction; outside a transaction, at once."""
        if not self.in_transaction():
            callback()
            return
        if (callback, also_on_rollback) not in self._local.after:
            self._local.after.append((callback, also_on_rollback))

    def _run_after(self, *, committed: bool) -> None:
        callbacks: list[tuple[Callable[[], None], bool]] = self._local.after
        self._local.after = []
        failure: BaseException | None = None
        for callback, also_on_rollback in callbacks:
            if committed or also_on_rollback:
                try:
                    callback()
                except BaseException as exc:  # run the others, then raise the first
                    failure = failure or exc
        if failure is not None:
            raise failure

    # -- events -----------------------------------------------------------------

    def _emit(self, kind: str, subject: str = "", data: dict[str, Any] | None = None) -> int:
        event_id = self._insert("INSERT INTO events (ts, kind, subject, data) VALUES (?, ?, ?, ?)",
                                (time.time(), kind, subject, data_json(data)))
        self._notify(event_id)
        return event_id

    def append_event(self, kind: str, subject: str = "", data: dict[str, Any] | None = None) -> int:
        """Append one event to the stream and return its id."""
        with self.transaction():
            return self._emit(kind, subject, data)

    def events_since(self, after_id: int, limit: int = 1000) -> list[Event]:
        """Events with id > after_id, oldest first: what a UI reads to stay live."""
        rows = self._query(
            "SELECT id, ts, kind, subject, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [Event(r["id"], r["ts"], r["kind"], r["subject"], json.loads(r["data"])) for r in rows]

    def last_event_id(self) -> int:
        """The id of the newest event (0 for a new store)."""
        row = self._query("SELECT COALESCE(MAX(id), 0) FROM events")[0]
        return int(row[0])

    # -- sandboxes ----------------------------------------------------------------

    @staticmethod
    def _sandbox(row: Row) -> SandboxRecord:
        values = {name: row[name] for name in SANDBOX_COLUMNS}
        values["data"] = json.loads(values["data"])
        return SandboxRecord(**values)

    def add_sandbox(self, record: SandboxRecord) -> SandboxRecord:
        """Insert a new sandbox; its id must be unused."""
        values = [getattr(record, name) for name in SANDBOX_COLUMNS]
        values[SANDBOX_COLUMNS.index("data")] = data_json(record.data)
        with self.transaction():
            try:
                self._execute(
                    f"INSERT INTO sandboxes ({', '.join(SANDBOX_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(SANDBOX_COLUMNS))})",
                    values,
                )
            except DuplicateRow:
                raise StoreError(f"sandbox {record.id} already exists") from None
            self._emit("sandbox.added", record.id, {"status": record.status})
        return record

    def update_sandbox(
        self, sandbox_id: str, *, status: str | None = None, pid: int | None = None, pid_start: str | None = None,
        exit_code: int | None = None, task: str | None = None, data: Mapping[str, Any] | None = None,
    ) -> SandboxRecord:
        """Change some fields of a sandbox (those given; `data` is merged into the stored dict, a key
        set to None kept as null). The rest of a record is set when it is added, and never changes."""
        fields: dict[str, Any] = {name: value for name, value in (
            ("status", status), ("pid", pid), ("pid_start", pid_start), ("exit_code", exit_code), ("task", task),
            ("data", data)) if value is not None}
        with self.transaction():
            current = self.get_sandbox(sandbox_id)
            if current is None:
                raise StoreError(f"no sandbox {sandbox_id}")
            if "data" in fields:
                fields["data"] = data_json({**current.data, **fields["data"]})
            fields["updated"] = time.time()
            assignments = ", ".join(f"{name} = ?" for name in fields)
            self._execute(
                f"UPDATE sandboxes SET {assignments} WHERE id = ?", [*fields.values(), sandbox_id]
            )
            changed = {k: v for k, v in fields.items() if k in ("status", "exit_code", "pid")}
            self._emit("sandbox.updated", sandbox_id, changed)
            updated = self.get_sandbox(sandbox_id)
        assert updated is not None
        return updated

    def get_sandbox(self, sandbox_id: str) -> SandboxRecord | None:
        rows = self._query("SELECT * FROM sandboxes WHERE id = ?", (sandbox_id,))
        return self._sandbox(rows[0]) if rows else None

    def list_sandboxes(self, *, include_archived: bool = False) -> list[SandboxRecord]:
        """Sandboxes, newest first."""
        sql = "SELECT * FROM sandboxes"
        if not include_archived:
            sql += " WHERE status != 'archived'"
        return [self._sandbox(r) for r in self._query(sql + " ORDER BY created DESC, id")]

    def sandboxes_with_prefix(self, prefix: str) -> list[SandboxRecord]:
        """Sandboxes (archived ones too) whose id starts with `prefix`, oldest id first: what a shortened id
        names, without reading every sandbox the store ever held."""
        rows = self._query("SELECT * FROM sandboxes WHERE substr(id, 1, ?) = ? ORDER BY id", (len(prefix), prefix))
        return [self._sandbox(r) for r in rows]

    def heartbeat_sandbox(self, sandbox_id: str, when: float, data: dict[str, Any] | None = None) -> bool:
        """Record a supervisor's heartbeat (merging `data`) without an event: liveness is not news.

        Returns False when the sandbox does not exist.
        """
        with self.transaction():
            current = self.get_sandbox(sandbox_id)
            if current is None:
                return False
            self._execute(
                "UPDATE sandboxes SET heartbeat = ?, data = ? WHERE id = ?",
                (when, data_json({**current.data, **(data or {})}), sandbox_id),
            )
        return True

    # -- claims -------------------------------------------------------------------

    def _claims(self, where: str, params: Sequence[Any], source: str = "claims c") -> list[ClaimRecord]:
        # Columns by position, not by name: the dashboard reads every live claim (5,000 at scale) each time
        # the store changes, and each lookup by name is paid per column per claim.
        rows = self._query(
            "SELECT c.id, c.sandbox_id, c.target, c.mode, c.reason, c.created, c.expires, "
            f"{self._lines_of('r.region_id')}, c.released, c.release_reason FROM {source} "
            f"LEFT JOIN claim_regions r ON r.claim_id = c.id WHERE {where} "
            "GROUP BY c.id ORDER BY c.id",
            params,
        )
        return [
            ClaimRecord(claim_id, sandbox_id, target, mode, reason, created, expires,
                        tuple(sorted(regions.split("\n"))) if regions else (), released, release_reason)
            for claim_id, sandbox_id, target, mode, reason, created, expires, regions, released, release_reason
            in rows
        ]

    def all_claims(self) -> list[ClaimRecord]:
        """Every claim ever made, live or released, oldest first."""
        return self._claims("1 = 1", ())

    def sandbox_claims(self, sandbox_id: str) -> list[ClaimRecord]:
        """Every claim one sandbox made, live or released, oldest first."""
        return self._claims("c.sandbox_id = ?", (sandbox_id,))

    def live_claims(self, sandbox_id: str | None = None) -> list[ClaimRecord]:
        """Claims not yet released (expired leases included: the engine releases them)."""
        if sandbox_id is None:
            return self._claims("c.released IS NULL", ())
        return self._claims("c.released IS NULL AND c.sandbox_id = ?", (sandbox_id,))

    def live_claims_with_reason(self, text: str) -> list[ClaimRecord]:
        """Live claims whose reason holds `text` as it is (`%` and `_` too): the few a rule looks for, not all of
        them (every claim read 5,000 live ones, 21 ms, inside its write transaction)."""
        literal = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return self._claims("c.released IS NULL AND c.reason LIKE ? ESCAPE '\\'", (f"%{literal}%",))

    def live_claim_counts(self) -> dict[str, int]:
        """How many live claims each sandbox holds (sandboxes holding none are left out)."""
        rows = self._query("SELECT sandbox_id, count(*) FROM claims WHERE released IS NULL GROUP BY sandbox_id", ())
        return {str(sandbox_id): int(count) for sandbox_id, count in rows}

    def live_claims_on(self, region_ids: Sequence[str]) -> list[ClaimRecord]:
        """Live claims holding any of these regions (the index on region_id keeps this fast)."""
        found: dict[int, ClaimRecord] = {}
        for start in range(0, len(region_ids), CHUNK):
            chunk = list(region_ids[start:start + CHUNK])
            marks = ", ".join("?" * len(chunk))
            # Driven from the region index, whatever the planner believes of the claims table (a
            # PostgreSQL table filled since its last ANALYZE looked empty, and was scanned whole).
            # (An IN list, not one array parameter: PostgreSQL's generic plan for `= ANY($1)` made the
            # claim check's p50 3.4 ms where this gives 2.4.)
            hits = (f"(SELECT DISTINCT claim_id FROM claim_regions WHERE region_id IN ({marks})) AS hit "
                    "JOIN claims c ON c.id = hit.claim_id")
            for claim in self._claims("c.released IS NULL", chunk, hits):
                found[claim.id] = claim
        return sorted(found.values(), key=lambda c: c.id)

    def live_claims_under(self, region_ids: Sequence[str]) -> list[ClaimRecord]:
        """Live claims holding a region nested in any of these (a function of a claimed file or class), found by
        name: one added on another sandbox's branch is in no index here, and a claim on its file was granted."""
        found: dict[int, ClaimRecord] = {}
        for start in range(0, len(region_ids), CHUNK // 2):
            bounds: list[str] = []
            for region_id in region_ids[start:start + CHUNK // 2]:
                prefix = region_id + ("." if "::" in region_id else "::")
                bounds += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]
            ranges = " OR ".join(f"({self._in_byte_range('region_id')})" for _ in range(len(bounds) // 2))
            hits = (f"(SELECT DISTINCT claim_id FROM claim_regions WHERE {ranges}) AS hit "
                    "JOIN claims c ON c.id = hit.claim_id")
            for claim in self._claims("c.released IS NULL", bounds, hits):
                found[claim.id] = claim
        return sorted(found.values(), key=lambda c: c.id)

    def stale_claims(self, now: float, ended_statuses: Sequence[str]) -> list[ClaimRecord]:
        """Live claims whose lease has run out or whose sandbox has ended."""
        marks = ", ".join("?" * len(ended_statuses)) or "NULL"
        return self._claims(
            "c.released IS NULL AND (c.expires < ? OR c.sandbox_id IN "
            f"(SELECT id FROM sandboxes WHERE status IN ({marks})))",
            (now, *ended_statuses),
        )

    def get_claim(self, claim_id: int) -> ClaimRecord | None:
        found = self._claims("c.id = ?", (claim_id,))
        return found[0] if found else None

    def add_claim(
        self, sandbox_id: str, target: str, mode: str, reason: str, expires: float,
        region_ids: Sequence[str],
    ) -> ClaimRecord:
        """Insert a claim on some regions. Conflict checks belong to the caller's transaction."""
        now = time.time()
        with self.transaction():
            claim_id = self._insert(
                "INSERT INTO claims (sandbox_id, target, mode, reason, created, expires) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (sandbox_id, target, mode, reason, now, expires),
            )
            self._many("INSERT INTO claim_regions (claim_id, region_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                       [(claim_id, region) for region in dict.fromkeys(region_ids)])
            self._emit("claim.added", sandbox_id, {"claim": claim_id, "target": target, "mode": mode})
        claim = self.get_claim(claim_id)
        assert claim is not None
        return claim

    def renew_claim(self, claim_id: int, expires: float) -> None:
        with self.transaction():
            self._execute("UPDATE claims SET expires = ? WHERE id = ? AND released IS NULL", (expires, claim_id))
            self._emit("claim.renewed", str(claim_id), {"expires": expires})

    def set_claim_reason(self, claim_id: int, reason: str) -> bool:
        """Restate why a live claim is held (an edit's claim once its edit is confirmed)."""
        with self.transaction():
            written = self._execute("UPDATE claims SET reason = ? WHERE id = ? AND released IS NULL",
                                    (reason, claim_id))
            if written.rowcount:
                self._emit("claim.updated", str(claim_id), {"reason": reason})
        return bool(written.rowcount)

    def release_claim(self, claim_id: int, reason: str) -> bool:
        """Release a live claim; False when it was already released."""
        with self.transaction():
            written = self._execute(
                "UPDATE claims SET released = ?, release_reason = ? WHERE id = ? AND released IS NULL",
                (time.time(), reason, claim_id),
            )
            if written.rowcount:
                self._emit("claim.released", str(claim_id), {"reason": reason})
            return bool(written.rowcount)

    # -- escalations ----------------------------------------------------------------

    @staticmethod
    def _escalation(row: Row) -> EscalationRecord:
        return EscalationRecord(
            id=row["id"], sandbox_id=row["sandbox_id"], kind=row["kind"], status=row["status"],
            risk=row["risk"], summary=row["summary"], created=row["created"],
            updated=row["updated"], data=json.loads(row["data"]),
        )

    def add_escalation(
        self, kind: str, *, sandbox_id: str = "", risk: str = "normal", summary: str = "",
        data: dict[str, Any] | None = None,
    ) -> EscalationRecord:
        now = time.time()
        with self.transaction():
            escalation_id = self._insert(
                "INSERT INTO escalations (sandbox_id, kind, status, risk, summary, created, updated, data) "
                "VALUES (?, ?, 'open', ?, ?, ?, ?, ?)",
                (sandbox_id, kind, risk, summary, now, now, data_json(data)),
            )
            self._emit("escalation.opened", str(escalation_id), {"sandbox": sandbox_id, "risk": risk})
        found = self.get_escalation(escalation_id)
        assert found is not None
        return found

    def update_escalation(self, escalation_id: int, **fields: Any) -> EscalationRecord:
        unknown = set(fields) - _ESCALATION_MUTABLE
        if unknown:
            raise ValueError(f"not escalation fields: {sorted(unknown)}")
        with self.transaction():
            current = self.get_escalation(escalation_id)
            if current is None:
                raise StoreError(f"no escalation {escalation_id}")
            if "data" in fields:
                fields["data"] = data_json({**current.data, **fields["data"]})
            fields["updated"] = time.time()
            assignments = ", ".join(f"{name} = ?" for name in fields)
            self._execute(
                f"UPDATE escalations SET {assignments} WHERE id = ?", [*fields.values(), escalation_id]
            )
            self._emit("escalation.updated", str(escalation_id), {"status": fields.get("status", current.status)})
            updated = self.get_escalation(escalation_id)
        assert updated is not None
        return updated

    def get_escalation(self, escalation_id: int) -> EscalationRecord | None:
        rows = self._query("SELECT * FROM escalations WHERE id = ?", (escalation_id,))
        return self._escalation(rows[0]) if rows else None

    def list_escalations(self, status: str | None = None) -> list[EscalationRecord]:
        """Escalations, oldest first, optionally only those in one status."""
        if status is None:
            rows = self._query("SELECT * FROM escalations ORDER BY id")
        else:
            rows = self._query("SELECT * FROM escalations WHERE status = ? ORDER BY id", (status,))
        return [self._escalation(r) for r in rows]

    def live_escalations(self) -> list[EscalationRecord]:
        """The open escalations and every one of a sandbox not archived, oldest first: what a view of today's
        work reads (a year's decided reviews of archived sandboxes made each dashboard read 5 times slower)."""
        rows = self._query("SELECT * FROM escalations WHERE status = 'open' OR sandbox_id IN "
                           "(SELECT id FROM sandboxes WHERE status != 'archived') ORDER BY id")
        return [self._escalation(r) for r in rows]

    def sandbox_escalations(self, sandbox_id: str, kinds: Sequence[str] = (),
                            status: str | None = None) -> list[EscalationRecord]:
        """One sandbox's escalations, oldest first: of `kinds` only (given any), in `status` only (given)."""
        sql = "SELECT * FROM escalations WHERE sandbox_id = ?"
        params: list[Any] = [sandbox_id]
        if kinds:
            sql += f" AND kind IN ({', '.join('?' for _ in kinds)})"
            params += list(kinds)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        return [self._escalation(r) for r in self._query(sql + " ORDER BY id", params)]

    # -- audit entries ----------------------------------------------------------------

    def audit_head(self) -> tuple[int, str] | None:
        """The (seq, hash) of the newest committed audit entry (None for an empty table)."""
        rows = self._query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        return (int(rows[0]["seq"]), str(rows[0]["hash"])) if rows else None

    def add_audit_entries(self, rows: Sequence[tuple[int, str, str]]) -> None:
        """Insert (seq, hash, line) entries in the caller's transaction, with one event."""
        if not rows:
            return
        if not self.in_transaction():
            raise StoreError("audit entries are added inside a transaction (their seq is read under its lock)")
        self._many("INSERT INTO audit (seq, hash, entry) VALUES (?, ?, ?)", rows)
        self._emit("audit.appended", str(rows[-1][0]), {})

    def audit_entries_after(self, seq: int) -> list[tuple[int, str, str]]:
        """Committed (seq, hash, line) entries after `seq`, oldest first."""
        rows = self._query("SELECT seq, hash, entry FROM audit WHERE seq > ? ORDER BY seq", (seq,))
        return [(int(r["seq"]), str(r["hash"]), str(r["entry"])) for r in rows]

    def audit_hash(self, seq: int) -> str | None:
        rows = self._query("SELECT hash FROM audit WHERE seq = ?", (seq,))
        return str(rows[0]["hash"]) if rows else None

    def audit_hashes(self) -> list[str]:
        """The hash of every committed entry, by seq."""
        return [str(r[0]) for r in self._query("SELECT hash FROM audit ORDER BY seq")]

    def audit_checkpoint(self) -> tuple[int, str] | None:
        """The (seq, hash) of the newest audit entry known to be written to this machine's log file."""
        rows = self._query("SELECT seq, hash FROM audit_mirrors WHERE mirror = ?", (self.mirror,))
        return (int(rows[0]["seq"]), str(rows[0]["hash"])) if rows else None

    def set_audit_checkpoint(self, seq: int, entry_hash: str) -> None:
        """Advance this mirror's checkpoint; it never moves backwards."""
        with self.transaction():
            self._execute(
                "INSERT INTO audit_mirrors (mirror, seq, hash) VALUES (?, ?, ?) "
                "ON CONFLICT (mirror) DO UPDATE SET seq = excluded.seq, hash = excluded.hash "
                "WHERE excluded.seq > audit_mirrors.seq",
                (self.mirror, seq, entry_hash),
            )

    # -- workflow --

    def take_step_lease(self, sandbox_id: str, holder: str, step: str, *,
                        is_gone: Callable[[str], bool]) -> str | None:
        """Take the lease on a sandbox's next workflow step; None when taken, else who holds it.

        A lease held by `holder` itself, or by a holder `is_gone` says no longer
        exists (a process killed mid-step), is taken over: its step is redone.
        """
        with self.transaction():
            rows = self._query("SELECT holder FROM step_leases WHERE sandbox_id = ?", (sandbox_id,))
            if rows and rows[0]["holder"] != holder and not is_gone(rows[0]["holder"]):
                return str(rows[0]["holder"])
            self._execute("INSERT INTO step_leases (sandbox_id, holder, step, taken) VALUES (?, ?, ?, ?) "
                          "ON CONFLICT (sandbox_id) DO UPDATE SET holder = excluded.holder, step = excluded.step, "
                          "taken = excluded.taken", (sandbox_id, holder, step, time.time()))
        return None

    def drop_step_lease(self, sandbox_id: str, holder: str) -> None:
        """Give a step lease back (a no-op unless `holder` holds it)."""
        with self.transaction():
            self._execute("DELETE FROM step_leases WHERE sandbox_id = ? AND holder = ?", (sandbox_id, holder))

    def step_lease(self, sandbox_id: str) -> tuple[str, str] | None:
        """Who holds a sandbox's step lease and for which step, if anyone does."""
        rows = self._query("SELECT holder, step FROM step_leases WHERE sandbox_id = ?", (sandbox_id,))
        return (str(rows[0]["holder"]), str(rows[0]["step"])) if rows else None
