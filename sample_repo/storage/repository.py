"""Repository interface and the dict-backed in-memory implementation used by every service."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class NotFoundError(KeyError):
    """Raised when a repository has no item stored under the requested key."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key

    def __str__(self) -> str:
        return str(self.args[0])


class Repository(ABC, Generic[T]):
    """Abstract key-value repository interface used by services for persistence."""

    kind: str = "item"

    @abstractmethod
    def add(self, item: T) -> T:
        """Store a new item; fail if an item with the same key already exists."""

    @abstractmethod
    def get(self, key: str) -> T:
        """Return the item stored under ``key`` or raise :class:`NotFoundError`."""

    @abstractmethod
    def update(self, item: T) -> T:
        """Replace an existing item with a new version of it."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the item stored under ``key``."""

    @abstractmethod
    def __iter__(self) -> Iterator[T]:
        """Iterate over stored items in insertion order."""

    def get_or_none(self, key: str) -> T | None:
        """Return the item stored under ``key``, or ``None`` when there is none."""
        try:
            return self.get(key)
        except NotFoundError:
            return None

    def exists(self, key: str) -> bool:
        """Tell whether an item is stored under ``key``."""
        return self.get_or_none(key) is not None

    def find(self, predicate: Callable[[T], bool]) -> list[T]:
        """Return every stored item for which ``predicate`` is true, in insertion order."""
        return [item for item in self if predicate(item)]


class InMemoryRepository(Repository[T]):
    """Dict-backed repository for tests and the demo; preserves insertion order."""

    def __init__(self, key: Callable[[T], str], kind: str = "item") -> None:
        self._key = key
        self._items: dict[str, T] = {}
        self.kind = kind

    def add(self, item: T) -> T:
        """Store a new item; raise ``ValueError`` on a duplicate key."""
        key = self._key(item)
        if key in self._items:
            raise ValueError(f"{self.kind} {key!r} already exists")
        self._items[key] = item
        return item

    def get(self, key: str) -> T:
        """Return the item stored under ``key`` or raise :class:`NotFoundError`."""
        try:
            return self._items[key]
        except KeyError:
            raise NotFoundError(self.kind, key) from None

    def update(self, item: T) -> T:
        """Replace an existing item, keeping its position in insertion order."""
        key = self._key(item)
        self.get(key)
        self._items[key] = item
        return item

    def delete(self, key: str) -> None:
        """Remove the item stored under ``key``; raise :class:`NotFoundError` if absent."""
        self.get(key)
        del self._items[key]

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)
