"""The store's schema as an ordered list of migrations.

One list for both backends: SQLite applies it as written (`PRAGMA user_version` holds
how many a database has had); PostgreSQL applies the same statements as
`postgres.postgres_ddl` spells them, counting them in a `schema_version` table.
Opening a store applies the missing ones in one transaction, so a store is never
half-migrated.
Append new migrations; never edit a released one.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the foundation tables.
    """
    CREATE TABLE events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        ts      REAL NOT NULL,
        kind    TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        data    TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE sandboxes (
        id        TEXT PRIMARY KEY,
        task      TEXT NOT NULL,
        runtime   TEXT NOT NULL,
        status    TEXT NOT NULL,
        base_ref  TEXT NOT NULL DEFAULT '',
        branch    TEXT NOT NULL DEFAULT '',
        worktree  TEXT NOT NULL DEFAULT '',
        isolation TEXT NOT NULL DEFAULT '',
        pid       INTEGER,
        pid_start TEXT,
        exit_code INTEGER,
        created   REAL NOT NULL,
        updated   REAL NOT NULL,
        heartbeat REAL,
        data      TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE claims (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        sandbox_id TEXT NOT NULL,
        target     TEXT NOT NULL,
        mode       TEXT NOT NULL CHECK (mode IN ('exclusive', 'shared')),
        reason     TEXT NOT NULL DEFAULT '',
        created    REAL NOT NULL,
        expires    REAL NOT NULL,
        released   REAL,
        release_reason TEXT
    );
    CREATE TABLE claim_regions (
        claim_id  INTEGER NOT NULL REFERENCES claims(id),
        region_id TEXT NOT NULL,
        PRIMARY KEY (claim_id, region_id)
    );
    CREATE INDEX claim_regions_by_region ON claim_regions(region_id);
    CREATE INDEX claims_live ON claims(released, sandbox_id);
    CREATE TABLE escalations (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        sandbox_id TEXT NOT NULL DEFAULT '',
        kind       TEXT NOT NULL,
        status     TEXT NOT NULL,
        risk       TEXT NOT NULL DEFAULT 'normal',
        summary    TEXT NOT NULL DEFAULT '',
        created    REAL NOT NULL,
        updated    REAL NOT NULL,
        data       TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX escalations_open ON escalations(status);
    CREATE TABLE gate_runs (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        sandbox_id TEXT NOT NULL,
        gate       TEXT NOT NULL,
        status     TEXT NOT NULL,
        commit_sha TEXT NOT NULL DEFAULT '',
        started    REAL NOT NULL,
        finished   REAL,
        data       TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX gate_runs_by_sandbox ON gate_runs(sandbox_id);
    CREATE TABLE audit_checkpoint (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        seq  INTEGER NOT NULL,
        hash TEXT NOT NULL
    );
    """,
    # 2: the audit entries themselves, written in the transaction of the change they
    # record (the JSONL file mirrors this table; audit.py imports an older file on
    # first use). `entry` is the entry's exact line; `audit_checkpoint` now marks the
    # newest entry known to be in the file.
    """
    CREATE TABLE audit (
        seq   INTEGER PRIMARY KEY,
        hash  TEXT NOT NULL,
        entry TEXT NOT NULL
    );
    """,
    # 4: who is doing a sandbox's workflow step right now (so two callers do it once).
    """
    CREATE TABLE step_leases (
        sandbox_id TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        step       TEXT NOT NULL,
        taken      REAL NOT NULL
    );
    """,
    # 5: evals. A gate run is a sandbox's, a commit's baseline (shared by every sandbox
    # on that commit) or a merged gate's; `fingerprint` names the check's settings, so a
    # stored result is reused only for the same check. An eval report is one whole eval
    # (gate 1's classification and gate 2's score) of a subject at a commit.
    """
    ALTER TABLE gate_runs ADD COLUMN scope TEXT NOT NULL DEFAULT 'sandbox';
    ALTER TABLE gate_runs ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
    CREATE INDEX gate_runs_shared ON gate_runs(scope, commit_sha, gate, fingerprint);
    CREATE TABLE eval_reports (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        subject     TEXT NOT NULL,
        kind        TEXT NOT NULL,
        commit_sha  TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        created     REAL NOT NULL,
        data        TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX eval_reports_by_subject ON eval_reports(subject, kind, fingerprint);
    """,
    # 6: a team's store (PostgreSQL, many machines): the host a sandbox runs on (only that
    # host can judge its processes), and the audit checkpoint per mirror, since each machine
    # keeps its own copy of the log file ('' is the file beside an SQLite store).
    """
    ALTER TABLE sandboxes ADD COLUMN host TEXT NOT NULL DEFAULT '';
    CREATE TABLE audit_mirrors (
        mirror TEXT PRIMARY KEY,
        seq    INTEGER NOT NULL,
        hash   TEXT NOT NULL
    );
    INSERT INTO audit_mirrors (mirror, seq, hash) SELECT '', seq, hash FROM audit_checkpoint;
    """,
    # 7: one sandbox's escalations, read on each of its permission requests, merges and removals
    # (every escalation of the store was read and filtered).
    """
    CREATE INDEX escalations_by_sandbox ON escalations(sandbox_id, kind);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def newer_schema(where: str, version: int, *, while_running: bool = False) -> str:
    """The one line for a store whose schema is newer than this loomtui's: at its opening, or met by a
    write of a process that opened it before another loomtui upgraded it (it wrote on, unaware)."""
    said = f"{where}: the state store has schema {version}, newer than this loomtui understands ({SCHEMA_VERSION})"
    if while_running:
        return f"{said}: a newer loomtui upgraded it since this one started; nothing was written (upgrade loomtui)"
    return f"{said}; upgrade loomtui"
