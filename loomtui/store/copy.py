"""Copying a whole store to another (SQLite to a team's PostgreSQL), audit log and checkpoint included.

The source is read in one transaction; every table is written with its ids in one
transaction of the destination, which must hold nothing yet, then read back inside
it and compared with what was read, as multisets of rows (two databases may sort
text differently), so a copy that lost or changed anything says which table and
commits nothing. The source's audit checkpoint (`''`, the file beside an
SQLite store) becomes the destination's checkpoint for this machine's log file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from loomtui.errors import StoreError, plural
from loomtui.store.records import SANDBOX_COLUMNS
from loomtui.store.sql import SqlStore

COPIED: dict[str, tuple[str, ...]] = {
    "events": ("id", "ts", "kind", "subject", "data"),
    "sandboxes": SANDBOX_COLUMNS,
    "claims": ("id", "sandbox_id", "target", "mode", "reason", "created", "expires", "released", "release_reason"),
    "claim_regions": ("claim_id", "region_id"),
    "escalations": ("id", "sandbox_id", "kind", "status", "risk", "summary", "created", "updated", "data"),
    "gate_runs": ("id", "sandbox_id", "gate", "status", "commit_sha", "started", "finished", "data", "scope",
                  "fingerprint"),
    "eval_reports": ("id", "subject", "kind", "commit_sha", "fingerprint", "created", "data"),
    "audit": ("seq", "hash", "entry"),
    "audit_mirrors": ("mirror", "seq", "hash"),
    "step_leases": ("sandbox_id", "holder", "step", "taken"),
}
"""Each table a copy moves, and its columns."""
BATCH = 2000


@dataclass
class CopyReport:
    source: str
    destination: str
    rows: dict[str, int] = field(default_factory=dict)
    verified: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"source": self.source, "destination": self.destination, "rows": self.rows,
                "verified": self.verified}


def _select(table: str) -> str:
    return f"SELECT {', '.join(COPIED[table])} FROM {table}"


def _fingerprint(rows: list[tuple[object, ...]]) -> Counter[str]:
    """The rows as a multiset: compared whatever order a database's collation gives them."""
    return Counter(repr(row) for row in rows)


def copy_store(source: SqlStore, destination: SqlStore,
               progress: Callable[[str], None] = lambda _line: None) -> CopyReport:
    """Copy every record of `source` into the empty `destination`, verified before it commits.

    The source is read in one transaction (a consistent moment, however busy its writers);
    the destination is written in one, read back inside it and compared with what was read,
    so a copy that does not match is rolled back whole and can simply be run again.
    """
    report = CopyReport(source.location, destination.location)
    if source.location == destination.location:
        raise StoreError(f"{destination.location}: this repository's store is that store already: nothing to copy")
    with source.transaction():
        read = {table: [tuple(row) for row in source.rows_of(_select(table))] for table in COPIED}
    mirrors = [row for row in read["audit_mirrors"] if row[0] == source.mirror]
    # Only this machine's checkpoint moves: another machine's file records its own.
    read["audit_mirrors"] = [(destination.mirror, *row[1:]) for row in mirrors]
    if destination.holds_records() or destination.last_event_id():
        if all(_fingerprint([tuple(row) for row in destination.rows_of(_select(table))]) == _fingerprint(rows)
               for table, rows in read.items()):
            # This very store, copied whole by a copy cut short before its note: it is finished, not refused
            # (with no note the clone went on writing here, and nothing could empty the team's store).
            report.rows = {table: len(rows) for table, rows in read.items()}
            report.verified = True
            progress("verified: it holds this store's copy already, every table as the source")
            return report
        raise StoreError(f"{destination.location}: already holds records for this repository; a copy goes "
                         "only into an empty store (copying would mix two histories)")
    with destination.transaction():
        for table, columns in COPIED.items():
            rows = read[table]
            for start in range(0, len(rows), BATCH):
                destination.load_rows(table, columns, rows[start:start + BATCH])
            report.rows[table] = len(rows)
            progress(f"{table}: {plural(len(rows), 'row')}")
        destination.after_load()
        for table in COPIED:
            if _fingerprint([tuple(row) for row in destination.rows_of(_select(table))]) != _fingerprint(read[table]):
                raise StoreError(f"{destination.location}: the copy of {table} does not match the source; nothing "
                                 "was committed there, and the source is as it was")
    report.verified = True
    progress("verified: every table matches the source")
    return report
