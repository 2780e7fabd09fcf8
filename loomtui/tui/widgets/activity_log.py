"""The dashboard's Activity tab: every event of the store once, in order, those that came while it was hidden too.

A hidden screen skips the app's snapshots and, when it returns, is shown the newest; each snapshot carries only
the events since the one before it. What came between (a lead triaging in the Escalations view while the
demo's approvals, merges and gate runs went by) was missing from the feed. Those are read again from the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from textual import work
from textual._context import NoActiveAppError

from loomtui.store import Event
from loomtui.tui.sandbox_text import format_event, is_quiet
from loomtui.tui.widgets.bounded_log import BoundedLog


class EventSource(Protocol):
    def events_since(self, after_id: int, limit: int = 1000) -> list[Event]: ...


class ActivityLog(BoundedLog):
    """A BoundedLog of the store's events; `add` a snapshot's, `catch_up` after the screen was hidden."""

    def __init__(self, *, max_lines: int, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(max_lines=max_lines, id=id)
        self.seen: int | None = None  # the newest event id shown (or skipped as quiet)
        self._held: list[Event] | None = None  # events that came while the missed ones were read

    def add(self, events: Sequence[Event], newest: int) -> None:
        """A snapshot's events (those after `seen`); `newest` is its last event id."""
        if self._held is not None:
            self._held.extend(events)
            return
        self._write(events)
        self.seen = max(self.seen or 0, newest)

    def catch_up(self, store: EventSource, newest: int) -> None:
        """Read the events after `seen` up to `newest` from the store, then go on with the snapshots'."""
        if self.seen is None or newest <= self.seen or self._held is not None:
            return
        self._held = []
        self._read_missed(store, self.seen, newest)

    def _write(self, events: Sequence[Event]) -> None:
        fresh = [event for event in events if self.seen is None or event.id > self.seen]
        if fresh:
            self.seen = fresh[-1].id  # a store's events come in id order
            self.write_lines(format_event(e) for e in fresh if not is_quiet(e))

    @work(thread=True, exclusive=True, group="activity-catch-up", exit_on_error=False)
    def _read_missed(self, store: EventSource, after: int, upto: int) -> None:
        missed: list[Event] = []
        try:
            while after < upto:
                batch = store.events_since(after)
                if not batch:
                    break
                missed = (missed + batch)[-self.max_lines:] if self.max_lines else missed + batch
                after = batch[-1].id
        finally:
            try:
                self.app.call_from_thread(self._caught_up, missed)
            except (NoActiveAppError, RuntimeError):
                pass  # removed, or the app is closing

    def _caught_up(self, missed: list[Event]) -> None:
        held, self._held = self._held or [], None
        self._write(missed)
        self._write(held)
