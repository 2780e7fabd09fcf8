"""The shared state store: the one place with SQL.

Engines and UIs call `open_store()` and use the methods of the returned store; they
never see a connection or a query. `Store` names the interface; SQLite (WAL) is the
backend for one machine, and a PostgreSQL backend for a team across machines would
implement the same methods.
"""

from __future__ import annotations

from loomtui.repo import RepoPaths
from loomtui.store.records import (
    ClaimRecord,
    EscalationRecord,
    Event,
    GateRunRecord,
    SandboxRecord,
    StoreStatus,
)
from loomtui.store.sqlite import SqliteStore

Store = SqliteStore

__all__ = [
    "ClaimRecord", "EscalationRecord", "Event", "GateRunRecord", "SandboxRecord",
    "Store", "StoreStatus", "open_store",
]


def open_store(paths: RepoPaths) -> Store:
    """Open (creating and migrating if needed) the store of a repository."""
    paths.ensure_state_dir()
    return SqliteStore(paths.store_path)
