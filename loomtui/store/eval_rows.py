"""The store's rows for evals: gate runs (a sandbox's, a commit's baseline, a merged gate's) and eval reports.

A mixin of `SqlStore` (both backends), kept apart so the store module stays one job per file; it
uses only the store's own query, execute, transaction and event helpers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from loomtui.store.base import Row, Written
from loomtui.store.records import EvalReportRecord, GateRunRecord, data_json

FINISHED_STATUSES = ("passed", "failed", "error")


class EvalRows:
    """Gate runs and eval reports."""

    if TYPE_CHECKING:
        def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
        def _execute(self, sql: str, params: Sequence[Any] = ()) -> Written: ...
        def _insert(self, sql: str, params: Sequence[Any] = ()) -> int: ...
        def _emit(self, kind: str, subject: str = "", data: dict[str, Any] | None = None) -> int: ...
        def transaction(self) -> AbstractContextManager[Any]: ...

    # -- gate runs --------------------------------------------------------------------

    @staticmethod
    def _gate_run(row: Row) -> GateRunRecord:
        return GateRunRecord(
            id=row["id"], sandbox_id=row["sandbox_id"], gate=row["gate"], status=row["status"],
            commit_sha=row["commit_sha"], started=row["started"], finished=row["finished"],
            data=json.loads(row["data"]), scope=row["scope"], fingerprint=row["fingerprint"],
        )

    def _insert_gate_run(self, sandbox_id: str, gate: str, commit_sha: str, scope: str, fingerprint: str,
                         data: dict[str, Any] | None) -> int:
        run_id = self._insert(
            "INSERT INTO gate_runs (sandbox_id, gate, status, commit_sha, started, scope, fingerprint, data) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?, ?)",
            (sandbox_id, gate, commit_sha, time.time(), scope, fingerprint, data_json(data)),
        )
        self._emit("gate.started", sandbox_id, {"run": run_id, "gate": gate, "scope": scope})
        return run_id

    def add_gate_run(self, sandbox_id: str, gate: str, commit_sha: str = "", *, scope: str = "sandbox",
                     fingerprint: str = "", data: dict[str, Any] | None = None) -> GateRunRecord:
        """Start a gate run (status `running`)."""
        with self.transaction():
            run_id = self._insert_gate_run(sandbox_id, gate, commit_sha, scope, fingerprint, data)
        return self.gate_run(run_id)

    def gate_run(self, run_id: int) -> GateRunRecord:
        return self._gate_run(self._query("SELECT * FROM gate_runs WHERE id = ?", (run_id,))[0])

    def update_gate_run(self, run_id: int, data: dict[str, Any]) -> bool:
        """Replace a running gate run's data (its live progress); False once it has finished.

        No event: progress is polled by whoever shows it, and would flood the stream.
        """
        with self.transaction():
            cursor = self._execute("UPDATE gate_runs SET data = ? WHERE id = ? AND status = 'running'",
                                   (data_json(data), run_id))
        return cursor.rowcount > 0

    def finish_gate_run(self, run_id: int, status: str, data: dict[str, Any] | None = None) -> None:
        """Finish a run; its `gate.finished` event names the sandbox (as `gate.started` does) and the run."""
        with self.transaction():
            self._execute(
                "UPDATE gate_runs SET status = ?, finished = ?, data = ? WHERE id = ?",
                (status, time.time(), data_json(data), run_id),
            )
            rows = self._query("SELECT sandbox_id, gate FROM gate_runs WHERE id = ?", (run_id,))
            subject, gate = (rows[0]["sandbox_id"], rows[0]["gate"]) if rows else ("", "")
            self._emit("gate.finished", subject, {"run": run_id, "gate": gate, "status": status})

    def close_abandoned_gate_runs(self, sandbox_id: str, summary: str) -> int:
        """Mark a sandbox's own runs still `running` as `error` with `summary`: their review ended without
        finishing them (its process killed, or the review given up). Left running, the sandbox was one whose
        gates were never judged, in `report` for good. How many were closed."""
        with self.transaction():
            rows = self._query("SELECT id, data FROM gate_runs WHERE sandbox_id = ? AND scope = 'sandbox' "
                               "AND status = 'running'", (sandbox_id,))
            for row in rows:
                self._execute("UPDATE gate_runs SET status = 'error', finished = ?, data = ? WHERE id = ?",
                              (time.time(), data_json({**json.loads(row["data"]), "summary": summary}), row["id"]))
        return len(rows)

    def gate_runs(self, sandbox_id: str) -> list[GateRunRecord]:
        """A sandbox's own gate runs, oldest first."""
        rows = self._query("SELECT * FROM gate_runs WHERE sandbox_id = ? AND scope = 'sandbox' ORDER BY id",
                           (sandbox_id,))
        return [self._gate_run(r) for r in rows]

    def live_gate_runs(self) -> dict[str, list[GateRunRecord]]:
        """Every sandbox's own gate runs but an archived one's, by sandbox, oldest first: one query for a view
        of them all (one a sandbox was a thousand round trips a poll on a team's database)."""
        rows = self._query("SELECT * FROM gate_runs WHERE scope = 'sandbox' AND sandbox_id IN "
                           "(SELECT id FROM sandboxes WHERE status != 'archived') ORDER BY id")
        found: dict[str, list[GateRunRecord]] = {}
        for row in rows:
            run = self._gate_run(row)
            found.setdefault(run.sandbox_id, []).append(run)
        return found

    def shared_gate_runs(self, scope: str, commit_sha: str) -> list[GateRunRecord]:
        """The baseline (or merged) runs at a commit, oldest first."""
        rows = self._query("SELECT * FROM gate_runs WHERE scope = ? AND commit_sha = ? ORDER BY id",
                           (scope, commit_sha))
        return [self._gate_run(r) for r in rows]

    def take_shared_run(self, scope: str, commit_sha: str, gate: str, fingerprint: str, holder: dict[str, Any],
                        abandoned: Callable[[GateRunRecord], bool], *,
                        fresh: bool = False) -> tuple[GateRunRecord, bool]:
        """The run of a check shared by many sandboxes (a commit's baseline): run once, by one process.

        In one transaction: a finished run is returned as it is (False: not yours); a
        running one too, unless `abandoned` says its holder is gone, when it is marked
        `error` and a new one is started; with none, a new run is started for the caller
        (True: yours to run and finish). `holder` (pid, host) goes into its data. `fresh`:
        a finished run is not enough (the caller wants it run again).
        """
        with self.transaction():
            rows = self._query(
                "SELECT * FROM gate_runs WHERE scope = ? AND commit_sha = ? AND gate = ? AND fingerprint = ? "
                "AND status IN ('running', 'passed', 'failed') ORDER BY id DESC LIMIT 1",
                (scope, commit_sha, gate, fingerprint))
            if rows:
                found = self._gate_run(rows[0])
                if found.status == "running" and not abandoned(found):
                    return found, False
                if found.status != "running" and not fresh:
                    return found, False
            if rows and rows[0]["status"] == "running":
                gone = {**json.loads(rows[0]["data"]), "summary": "its runner went away"}
                self._execute("UPDATE gate_runs SET status = 'error', finished = ?, data = ? WHERE id = ?",
                              (time.time(), data_json(gone), rows[0]["id"]))
            run_id = self._insert_gate_run("", gate, commit_sha, scope, fingerprint, {"holder": holder})
        return self.gate_run(run_id), True

    # -- eval reports ----------------------------------------------------------------

    @staticmethod
    def _eval_report(row: Row) -> EvalReportRecord:
        return EvalReportRecord(id=row["id"], subject=row["subject"], kind=row["kind"],
                                commit_sha=row["commit_sha"], fingerprint=row["fingerprint"],
                                created=row["created"], data=json.loads(row["data"]))

    def add_eval_report(self, subject: str, kind: str, commit_sha: str, fingerprint: str,
                        data: dict[str, Any]) -> EvalReportRecord:
        """Record one whole eval; an `eval.finished` event tells the app."""
        with self.transaction():
            report_id = self._insert(
                "INSERT INTO eval_reports (subject, kind, commit_sha, fingerprint, created, data) "
                "VALUES (?, ?, ?, ?, ?, ?)", (subject, kind, commit_sha, fingerprint, time.time(), data_json(data)))
            self._emit("eval.finished", subject, {"report": report_id, "kind": kind})
        return self._eval_report(self._query("SELECT * FROM eval_reports WHERE id = ?", (report_id,))[0])

    def latest_eval_report(self, subject: str, kind: str, fingerprint: str | None = None) -> EvalReportRecord | None:
        """The newest eval of a subject (for that fingerprint, when given)."""
        if fingerprint is None:
            rows = self._query("SELECT * FROM eval_reports WHERE subject = ? AND kind = ? ORDER BY id DESC LIMIT 1",
                               (subject, kind))
        else:
            rows = self._query("SELECT * FROM eval_reports WHERE subject = ? AND kind = ? AND fingerprint = ? "
                               "ORDER BY id DESC LIMIT 1", (subject, kind, fingerprint))
        return self._eval_report(rows[0]) if rows else None

    def eval_reports_at(self, subject: str, kind: str, commit_sha: str, limit: int = 20) -> list[EvalReportRecord]:
        """A subject's evals at one commit, newest first (at most `limit`)."""
        rows = self._query("SELECT * FROM eval_reports WHERE subject = ? AND kind = ? AND commit_sha = ? "
                           "ORDER BY id DESC LIMIT ?", (subject, kind, commit_sha, limit))
        return [self._eval_report(row) for row in rows]

    def latest_eval_report_ids(self, kind: str) -> dict[str, int]:
        """The id of the newest eval of each subject of a kind (no report parsed: the app polls this)."""
        rows = self._query("SELECT subject, MAX(id) AS id FROM eval_reports WHERE kind = ? GROUP BY subject", (kind,))
        return {row["subject"]: int(row["id"]) for row in rows}

    def eval_report(self, report_id: int) -> EvalReportRecord | None:
        rows = self._query("SELECT * FROM eval_reports WHERE id = ?", (report_id,))
        return self._eval_report(rows[0]) if rows else None

    def latest_eval_reports(self, kind: str) -> dict[str, EvalReportRecord]:
        """The newest eval of each subject of a kind (the dashboard's badges)."""
        rows = self._query("SELECT * FROM eval_reports WHERE id IN (SELECT MAX(id) FROM eval_reports "
                           "WHERE kind = ? GROUP BY subject)", (kind,))
        return {row["subject"]: self._eval_report(row) for row in rows}
