"""The shared state store: the one place with SQL.

Engines and UIs call `open_store()` and use the methods of the returned store; they
never see a connection or a query. `Store` is an alias of `SqliteStore` (SQLite in WAL
mode, `store.sqlite`), the only backend: there is no separate interface yet, so a second
backend (PostgreSQL, for a team across machines) would first turn `Store` into a
`typing.Protocol` of those methods. The records it returns are in `store.records`.

The bottom layer, with the top-level modules (`audit`, `repo`, `errors`, ...): it imports
only those, never an engine layer or a front-end.
"""

from __future__ import annotations

from loomtui.repo import RepoPaths
from loomtui.store.records import (
    ClaimRecord,
    EscalationRecord,
    EvalReportRecord,
    Event,
    GateRunRecord,
    SandboxRecord,
    StoreStatus,
)
from loomtui.store.sqlite import SqliteStore

Store = SqliteStore

__all__ = [
    "ClaimRecord", "EscalationRecord", "EvalReportRecord", "Event", "GateRunRecord", "SandboxRecord",
    "Store", "StoreStatus", "open_store",
]


def open_store(paths: RepoPaths) -> Store:
    """Open (creating and migrating if needed) the store of a repository."""
    paths.ensure_state_dir()
    return SqliteStore(paths.store_path)
