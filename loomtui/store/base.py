"""What both store backends share below the queries: rows, write results, one error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from loomtui.errors import StoreError

CHUNK = 500
"""SQLite caps bound parameters; IN lists go in chunks of this many."""


class Row(Protocol):
    """A result row, by column name or position (sqlite3.Row, or the PostgreSQL backend's)."""

    def __getitem__(self, key: int | str) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class Written(Protocol):
    """What a write says back: how many rows it changed."""

    @property
    def rowcount(self) -> int: ...


class DuplicateRow(StoreError):
    """A write broke a uniqueness rule (an id that is already taken)."""
