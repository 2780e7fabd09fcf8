"""Audit trail for money-moving calls: a decorator that records each successful operation."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class AuditRecord:
    """One audited operation: what was done, a short summary of the result, and when."""

    action: str
    summary: str
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


class AuditLog:
    """An append-only, in-memory list of audit records."""

    def __init__(self) -> None:
        self._records: list[AuditRecord] = []

    def append(self, record: AuditRecord) -> None:
        """Add a record at the end of the log; records are never changed or removed."""
        self._records.append(record)

    def records(self, action: str | None = None) -> list[AuditRecord]:
        """Return every record, or only those for ``action``, oldest first."""
        return [r for r in self._records if action is None or r.action == action]

    def __len__(self) -> int:
        return len(self._records)


DEFAULT_AUDIT_LOG = AuditLog()


def _summarize(result: Any) -> str:
    entry_id = getattr(result, "entry_id", None)
    if entry_id is not None:
        return str(entry_id)
    return repr(result)[:80]


def audited(action: str, log: AuditLog | None = None) -> Callable[[F], F]:
    """Decorator factory: record every successful call of a money-moving function in an audit log.

    The log is, in order of preference: the ``log`` argument, the ``audit_log``
    attribute of the bound instance (``self``), or :data:`DEFAULT_AUDIT_LOG`.
    """

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = func(*args, **kwargs)
            target = log
            if target is None and args:
                target = getattr(args[0], "audit_log", None)
            if target is None:
                target = DEFAULT_AUDIT_LOG
            target.append(AuditRecord(action=action, summary=_summarize(result)))
            return result

        return wrapper  # type: ignore[return-value]

    return decorator
