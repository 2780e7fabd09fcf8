"""The store's queries for observability: rows of a time window, audit entries by seq, bulk loads.

A mixin of `SqlStore` (both backends), like `eval_rows`: it uses only the store's own query,
execute, transaction and event helpers. Reports filter by time here, in SQL, so a
store with years of sandboxes decodes only the window's rows; the audit log is read
by seq (entries are appended in time order, so a caller finds a window's first seq
by binary search with `audit_entry`). The bulk inserts are for benchmarks that
build a large store quickly: one statement per table, no event per row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loomtui.store.base import CHUNK, Row
from loomtui.store.records import (
    SANDBOX_COLUMNS,
    EscalationRecord,
    EvalReportRecord,
    GateRunRecord,
    SandboxRecord,
    data_json,
)


@dataclass(frozen=True, slots=True)
class SandboxFacts:
    """What a report needs of a sandbox."""

    id: str
    runtime: str
    created: float
    ended_at: float | None
    """When its agent last ended (None: it has not run, or has not ended)."""
    agent_result: dict[str, Any] | None
    """What the agent reported at its end (tokens, cost), if it did."""


@dataclass(frozen=True, slots=True)
class GateOutcome:
    """One sandbox gate run's outcome."""

    sandbox_id: str
    gate: str
    status: str
    commit_sha: str
    started: float
    blocking: bool


@dataclass(frozen=True, slots=True)
class EvalOutcome:
    """A stored eval's subject, time and regression count (None: the report does not say)."""

    id: int
    subject: str
    created: float
    regressions: int | None


class MetricRows:
    """Window queries, audit entries by seq, and bulk inserts."""

    if TYPE_CHECKING:
        def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
        def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
        def _json_value(self, key: str) -> str: ...
        def _json_length(self, key: str) -> str: ...
        def _emit(self, kind: str, subject: str = "", data: dict[str, Any] | None = None) -> int: ...
        def transaction(self) -> AbstractContextManager[Any]: ...
        @staticmethod
        def _escalation(row: Row) -> EscalationRecord: ...
        @staticmethod
        def _eval_report(row: Row) -> EvalReportRecord: ...

    # -- audit entries by seq -----------------------------------------------------------

    def audit_bounds(self) -> tuple[int, int] | None:
        """The (first, last) seq of the committed audit entries; None when there are none."""
        row = self._query("SELECT MIN(seq), MAX(seq) FROM audit")[0]
        return None if row[0] is None else (int(row[0]), int(row[1]))

    def audit_entry(self, seq: int) -> str | None:
        """The line of one committed audit entry (None when there is no such seq)."""
        rows = self._query("SELECT entry FROM audit WHERE seq = ?", (seq,))
        return str(rows[0][0]) if rows else None

    def audit_lines(self, first: int, last: int) -> list[tuple[int, str]]:
        """(seq, line) of the entries with first <= seq <= last, in order."""
        rows = self._query("SELECT seq, entry FROM audit WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last))
        return [(int(r[0]), str(r[1])) for r in rows]

    # -- rows of a window ---------------------------------------------------------------
    # Only the fields a report reads are taken out of `data` (in SQL): a sandbox's data holds
    # its context slice, a gate run's and an eval's whole test lists, too much to decode by
    # the thousand. A damaged `data` reads as absent rather than failing the query.

    def _facts_query(self) -> str:
        return (f"SELECT id, runtime, created, {self._json_value('ended_at')}, {self._json_value('agent_result')} "
                "FROM sandboxes")

    @staticmethod
    def _facts(row: Row) -> SandboxFacts:
        ended = row[3] if isinstance(row[3], (int, float)) else None
        result = row[4]  # JSON text from SQLite, already decoded by PostgreSQL
        try:
            result = json.loads(result) if isinstance(result, str) else result
        except ValueError:
            result = None
        return SandboxFacts(str(row[0]), str(row[1]), float(row[2]), ended,
                            result if isinstance(result, dict) else None)

    def sandbox_facts_between(self, since: float, until: float) -> list[SandboxFacts]:
        """Sandboxes that existed during [since, until) and changed at or after `since`: every one a
        step of which (start, end, decision, merge) can fall in the window. Oldest first."""
        rows = self._query(f"{self._facts_query()} WHERE created < ? AND updated >= ? ORDER BY created, id",
                           (until, since))
        return [self._facts(r) for r in rows]

    def sandbox_facts(self, ids: Sequence[str]) -> list[SandboxFacts]:
        """The facts of the sandboxes with these ids (those that exist), in no particular order."""
        found: list[SandboxFacts] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), CHUNK):
            chunk = unique[start:start + CHUNK]
            marks = ", ".join("?" * len(chunk))
            found.extend(self._facts(r) for r in self._query(f"{self._facts_query()} WHERE id IN ({marks})", chunk))
        return found

    def holds_records(self) -> bool:
        """Whether the store holds any sandbox, escalation or audit entry (False: nothing has run here)."""
        row = self._query("SELECT EXISTS (SELECT 1 FROM sandboxes) OR EXISTS (SELECT 1 FROM escalations) "
                          "OR EXISTS (SELECT 1 FROM audit)")[0]
        return bool(row[0])

    def escalations_opened_between(self, since: float, until: float) -> list[EscalationRecord]:
        """Escalations opened during [since, until), oldest first."""
        rows = self._query("SELECT * FROM escalations WHERE created >= ? AND created < ? ORDER BY id",
                           (since, until))
        return [self._escalation(r) for r in rows]

    def first_gate_outcomes(self, since: float, until: float) -> list[GateOutcome]:
        """The outcome of every sandbox gate run of the sandboxes whose first gate run started during
        [since, until), oldest first (what a first-try pass rate needs)."""
        rows = self._query(
            "SELECT sandbox_id, gate, status, commit_sha, started, "
            f"{self._json_value('blocking')} FROM gate_runs "
            "WHERE scope = 'sandbox' AND sandbox_id IN (SELECT sandbox_id FROM gate_runs "
            "WHERE scope = 'sandbox' AND started >= ? AND started < ?) ORDER BY id", (since, until))
        first: dict[str, float] = {}
        for row in rows:
            first.setdefault(row[0], row[4])
        return [GateOutcome(str(r[0]), str(r[1]), str(r[2]), str(r[3]), float(r[4]), r[5] != 0)
                for r in rows if since <= first[r[0]] < until]

    def eval_outcomes_between(self, kind: str, since: float, until: float) -> list[EvalOutcome]:
        """Every eval of a kind made during [since, until), oldest first, with how many regressions it
        found (None when the report does not say: read it whole)."""
        rows = self._query(
            f"SELECT id, subject, created, {self._json_length('regressions')} "
            "FROM eval_reports WHERE kind = ? AND created >= ? AND created < ? ORDER BY id", (kind, since, until))
        return [EvalOutcome(int(r[0]), str(r[1]), float(r[2]), None if r[3] is None else int(r[3])) for r in rows]

    def eval_report_by_id(self, report_id: int) -> EvalReportRecord | None:
        rows = self._query("SELECT * FROM eval_reports WHERE id = ?", (report_id,))
        return self._eval_report(rows[0]) if rows else None

    # -- bulk inserts (benchmarks) ------------------------------------------------------

    def bulk_add_sandboxes(self, records: Sequence[SandboxRecord]) -> None:
        """Insert many sandboxes at once (ids unused), with one event."""
        rows = [[data_json(r.data) if name == "data" else getattr(r, name) for name in SANDBOX_COLUMNS]
                for r in records]
        with self.transaction():
            self._many(f"INSERT INTO sandboxes ({', '.join(SANDBOX_COLUMNS)}) "
                       f"VALUES ({', '.join('?' * len(SANDBOX_COLUMNS))})", rows)
            self._emit("sandbox.added", "", {"bulk": len(rows)})

    def bulk_add_escalations(self, records: Sequence[EscalationRecord]) -> None:
        """Insert many escalations at once (their ids are assigned anew), with one event."""
        with self.transaction():
            self._many("INSERT INTO escalations (sandbox_id, kind, status, risk, summary, created, updated, data) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       [(r.sandbox_id, r.kind, r.status, r.risk, r.summary, r.created, r.updated, data_json(r.data))
                        for r in records])
            self._emit("escalation.opened", "", {"bulk": len(records)})

    def bulk_add_gate_runs(self, records: Sequence[GateRunRecord]) -> None:
        """Insert many finished gate runs at once (their ids are assigned anew), with one event."""
        with self.transaction():
            self._many("INSERT INTO gate_runs (sandbox_id, gate, status, commit_sha, started, finished, scope, "
                       "fingerprint, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(r.sandbox_id, r.gate, r.status, r.commit_sha, r.started, r.finished, r.scope,
                         r.fingerprint, data_json(r.data)) for r in records])
            self._emit("gate.finished", "", {"bulk": len(records)})

    def bulk_add_eval_reports(self, records: Sequence[EvalReportRecord]) -> None:
        """Insert many eval reports at once (their ids are assigned anew), with one event."""
        with self.transaction():
            self._many("INSERT INTO eval_reports (subject, kind, commit_sha, fingerprint, created, data) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       [(r.subject, r.kind, r.commit_sha, r.fingerprint, r.created, data_json(r.data))
                        for r in records])
            self._emit("eval.finished", "", {"bulk": len(records)})
