"""Copying a whole store to another (SQLite to a team's PostgreSQL), audit log and checkpoint included.

Every table is copied with its ids in one transaction of the destination, which must
hold nothing yet; then each table is read back from both sides and compared row by
row (a digest of each side's rows in key order), so a copy that lost or changed
anything says which table. The source's audit checkpoint (`''`, the file beside an
SQLite store) becomes the destination's checkpoint for this machine's log file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from loomtui.errors import StoreError
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
"""Each table a copy moves and its columns; the first column orders it (with the second, for
claim_regions)."""
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


def _ordered(table: str) -> str:
    columns = COPIED[table]
    return f"SELECT {', '.join(columns)} FROM {table} ORDER BY {', '.join(columns[:2])}"


def _digest(store: SqlStore, table: str, mirror_map: dict[str, str]) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    for row in store.rows_of(_ordered(table)):
        values = list(row)
        if table == "audit_mirrors":
            values[0] = mirror_map.get(values[0], values[0])
        digest.update(repr(values).encode())
        count += 1
    return count, digest.hexdigest()


def copy_store(source: SqlStore, destination: SqlStore,
               progress: Callable[[str], None] = lambda _line: None) -> CopyReport:
    """Copy every record of `source` into the empty `destination`, then verify the copy."""
    report = CopyReport(source.location, destination.location)
    if destination.holds_records() or destination.last_event_id():
        raise StoreError(f"{destination.location}: already holds records for this repository; a copy goes "
                         "only into an empty store (copying would mix two histories)")
    mirror_map = {source.mirror: destination.mirror}
    with destination.transaction():
        for table, columns in COPIED.items():
            count = 0
            batch: list[list[object]] = []
            for row in source.rows_of(_ordered(table)):
                values = list(row)
                if table == "audit_mirrors":
                    if values[0] != source.mirror:
                        continue  # another machine's file: it records its own checkpoint
                    values[0] = destination.mirror
                batch.append(values)
                if len(batch) >= BATCH:
                    destination.load_rows(table, columns, batch)
                    count += len(batch)
                    batch = []
            if batch:
                destination.load_rows(table, columns, batch)
                count += len(batch)
            report.rows[table] = count
            progress(f"{table}: {count} rows")
        destination.after_load()
    for table in COPIED:
        if table == "audit_mirrors":
            continue  # only this machine's checkpoint moves (above)
        if _digest(source, table, mirror_map) != _digest(destination, table, mirror_map):
            raise StoreError(f"{destination.location}: the copy of {table} differs from the source; "
                             "nothing else was changed in the source")
    report.verified = True
    progress("verified: every table matches the source")
    return report
