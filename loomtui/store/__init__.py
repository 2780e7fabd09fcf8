"""The shared state store: the one place with SQL.

Engines and UIs call `open_store()` and use the methods of the returned store; they
never see a connection or a query. `Store` is `sql.SqlStore`, whose two backends are
`SqliteStore` (the default: WAL mode, `state.db` in the repository's git dir) and
`PostgresStore` (a team's database, for agents and leads on many machines). Which one
is `$LOOMTUI_STORE`, else `store:` in the main checkout's `.loom/loom.yaml` (never a
sandbox's copy, which its agent could edit). The records it returns are in
`store.records`.

The bottom layer, with the top-level modules (`audit`, `repo`, `errors`, ...): it imports
only those, never an engine layer or a front-end.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from loomtui.config import configured_store, store_problem
from loomtui.errors import LoomError, StoreError
from loomtui.files import file_size
from loomtui.gitcmd import Git
from loomtui.identity import current_host
from loomtui.repo import RepoPaths
from loomtui.store.moves import (
    note_a_joined_store,
    refuse_a_forgotten_team_store,
    refuse_a_left_store,
    refuse_a_moved_store,
    refuse_taking_the_team_log,
    store_move,
)
from loomtui.store.records import (
    ENDED_STATUSES,
    WORKTREE_MISSING_KEY,
    ClaimRecord,
    EscalationRecord,
    EvalReportRecord,
    Event,
    GateRunRecord,
    SandboxRecord,
    StoreStatus,
)
from loomtui.store.sql import SqlStore
from loomtui.store.sqlite import SqliteStore

Store = SqlStore

STORE_ENV = "LOOMTUI_STORE"

__all__ = [
    "ENDED_STATUSES", "WORKTREE_MISSING_KEY", "ClaimRecord", "EscalationRecord", "EvalReportRecord", "Event",
    "GateRunRecord", "SandboxRecord", "Store", "StoreStatus", "open_store", "store_from_env", "store_location",
    "repository_namespace",
]


def store_from_env() -> str | None:
    """The store `$LOOMTUI_STORE` names, if it names one."""
    location = os.environ.get(STORE_ENV, "").strip()
    if location and location != "sqlite" and not location.startswith(("postgresql://", "postgres://")):
        raise StoreError(f"${STORE_ENV}: must be `sqlite` or a postgresql:// URL")
    return location or None


def store_location(paths: RepoPaths) -> str:
    """`sqlite` or the PostgreSQL URL this repository's state lives at."""
    location = store_from_env()
    if location:
        return location
    location = configured_store(paths.main_checkout())
    problem = store_problem(location)
    if problem:
        raise StoreError(f"store: {problem}")
    return location


NAMESPACE_FILE = "namespace"
"""Where a repository's namespace is kept once found (in the state dir, which agents cannot write)."""


def repository_namespace(paths: RepoPaths) -> str:
    """The name every clone of this repository shares: its first commit (of several roots, the least
    id). Found once and kept, so a later merge of an unrelated history or a checkout of an orphan
    branch does not move this clone to another, empty namespace."""
    kept = paths.state_dir / NAMESPACE_FILE
    try:
        name = kept.read_text().strip()
        if re.fullmatch(r"loom_[0-9a-f]{16}", name):
            return name
    except OSError:
        pass
    result = Git(paths.root).run("rev-list", "--max-parents=0", "HEAD")
    roots = result.out.split() if result.status == 0 else []
    if not roots:
        raise StoreError(f"{paths.root}: a shared store names a repository by its first commit, and this "
                         "one has none yet: commit once, then run again")
    name = f"loom_{sorted(roots)[0][:16]}"
    try:
        paths.ensure_state_dir()
        kept.write_text(name + "\n")
    except (OSError, LoomError):
        pass  # found again next time
    return name


def _refuse_a_truncated_store(paths: RepoPaths) -> None:
    """An empty store file beside an audit log with entries was truncated (a full disk, a bad restore):
    opened, it would be a new, empty store, every sandbox, claim and escalation gone without a word.
    (A new store in WAL mode may be empty while its first pages sit in the -wal file.)"""
    store = paths.store_path
    if store.exists() and file_size(store) == 0 and file_size(Path(f"{store}-wal")) == 0 and (
            file_size(paths.audit_path) > 0):
        raise StoreError(f"{store}: the state store is empty while the audit log holds entries: it was "
                         "truncated; restore it from a backup, or move it aside and run again to start a new one")


def _state_writable(paths: RepoPaths) -> bool:
    """Whether the store (and the -wal and -shm files beside it) can be written here: no read-only
    mount, and the permissions allow it (access(2) answers both)."""
    if paths.store_path.exists():
        return os.access(paths.store_path, os.W_OK) and os.access(paths.state_dir, os.W_OK)
    nearest = next((p for p in (paths.state_dir, *paths.state_dir.parents) if p.exists()), None)
    return nearest is not None and os.access(nearest, os.W_OK)


def _has_entries(audit_path: Path) -> bool:
    try:
        return audit_path.stat().st_size > 0
    except OSError:
        return False


def open_store(paths: RepoPaths, location: str | None = None, *, reads_only: bool = False,
               joining: bool = False) -> Store:
    """Open (creating and migrating if needed) the store of a repository.

    `reads_only`: the caller only reads. Where the embedded store cannot be written (a read-only
    mount, another user's checkout), it is then opened read-only rather than refused. `joining`: a
    team's store this clone's SQLite store is being copied into (`store copy --to URL`), opened even
    after this clone left another (see `moves.LEFT_FILE`)."""
    configured = location is None and store_from_env() is None  # not asked for by name: loom.yaml's
    own_sqlite = paths.store_path.exists()  # before this open: a store of the clone's own, besides any team's
    location = location or store_location(paths)
    if location == "sqlite":
        refuse_a_moved_store(paths)
        if configured:
            refuse_a_forgotten_team_store(paths)
        elif not own_sqlite:
            refuse_taking_the_team_log(paths)
        if reads_only and not _state_writable(paths):
            _refuse_a_truncated_store(paths)
            return SqliteStore(paths.store_path, read_only=True)
        paths.ensure_state_dir()
        _refuse_a_truncated_store(paths)
        try:
            # A writer that opened it before a copy to a team's store wrote past the copy's read: lost to the
            # team's store, and its log then read BROKEN there. Each write asks, under the lock the copy holds.
            return SqliteStore(paths.store_path, before_writing=lambda: refuse_a_moved_store(paths))
        except StoreError:
            if paths.store_path.is_dir():  # sqlite says "unable to open database file" of a folder there
                raise StoreError(f"{paths.store_path}: the state store is a directory here, not a database: move it "
                                 "aside, and the next command starts a new store") from None
            if reads_only and paths.store_path.is_file():
                # A full disk (no room for the files a writer's connection makes): read what is there, as on
                # a read-only mount; `status` and `audit verify` failed with "cannot write the state store".
                with contextlib.suppress(StoreError):
                    return SqliteStore(paths.store_path, read_only=True)
            if _state_writable(paths):  # asked only now: the usual open makes no extra system call
                raise
            # Said plainly, not as sqlite's "unable to open database file".
            raise StoreError(f"{paths.store_path}: cannot write the state store here (a read-only file "
                             "system, or no permission to write it); reading it needs no write access") from None
    if not joining:
        refuse_a_left_store(paths)
    from loomtui.store.postgres import PostgresStore, redact  # psycopg loads only for a team's store

    move = None if joining else store_move(paths)
    elsewhere = f"its state was copied to {move.to} on {move.when()}" if move and move.to != redact(location) else ""
    if not joining and not elsewhere and _has_entries(paths.audit_path):
        # A mistyped database name (LOOMTUI_STORE, `store:`) made an empty team store, copied this clone's whole
        # audit log into it and took writes, while the real store's log then read BROKEN here.
        elsewhere = (f"this clone's audit log ({paths.audit_path}) holds entries of another store (to start "
                     f"the team's store from this clone: `loomtui store copy --to URL`)")
    store = PostgresStore(location, repository_namespace(paths), mirror=f"{current_host()}:{paths.audit_path}",
                          name=paths.main_checkout().name, elsewhere=elsewhere)
    # The team's store, named by loom.yaml's `store:`, or by LOOMTUI_STORE in a clone with no store of its own
    # (`store copy` says to use it so); one look by LOOMTUI_STORE from a clone that has its own is no joining.
    # A read only (`status`, a look at a staging store) joins nothing.
    if not joining and not reads_only and (configured or not own_sqlite):
        note_a_joined_store(paths, redact(location))
    return store
