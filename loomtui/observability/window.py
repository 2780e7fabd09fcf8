"""A report's window: parsing `--since`/`--until`, and the audit entries that fall in it.

Audit entries are appended in time order, so the window's first and last seq are
found by binary search on seq (a few probes of one entry each), and only the
window's entries are parsed: a report over a week of a year's log reads a week.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from loomtui.errors import LoomError, quoted
from loomtui.json_text import parse_json

if TYPE_CHECKING:
    from loomtui.workspace import Workspace

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_ACTION = re.compile(r'"action":"([^"\\]*)"')
_AGO = re.compile(r"\A *([0-9]+(?:\.[0-9]+)?) *([smhdw]) *\Z", re.I)  # ASCII digits; no newline inside


class AuditRows(Protocol):
    """What the window needs from the store."""

    def audit_bounds(self) -> tuple[int, int] | None: ...

    def audit_entry(self, seq: int) -> str | None: ...

    def audit_lines(self, first: int, last: int) -> list[tuple[int, str]]: ...


@dataclass(frozen=True, slots=True)
class Entry:
    """One audit entry of the window, its time as seconds since the epoch."""

    seq: int
    at: float
    actor: str
    action: str
    subject: str
    details: dict[str, Any]


def parse_when(text: str, now: float, option: str = "--since") -> float:
    """A time given on the command line: `7d`, `12h`, `2w`, `30m` ago, `now`, or an ISO date or time
    (UTC unless it names its offset). Anything else is one line of error, exit 2."""
    match = _AGO.match(text)
    if match:
        # No earlier than the epoch: a window reaching before git and loomtui existed is all of history.
        return max(0.0, now - float(match[1]) * _UNITS[match[2].lower()])
    if text.strip().lower() == "now":
        return now
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise LoomError(f"{option}: expected a time ago such as 7d, 12h or 2w, or an ISO date such as 2026-11-24 "
                        f"(got {quoted(text)})", exit_code=2) from None
    try:  # said in UTC: year 1 at +14:00 is year 0 there, an internal error where the report was written
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC).timestamp()
    except (OverflowError, ValueError):
        raise LoomError(f"{option}: {quoted(text)} is no date in UTC (before year 1 or past 9999 there)",
                        exit_code=2) from None


def stamp(text: object) -> float | None:
    """An audit entry's ISO `ts` as epoch seconds (None when it is not one)."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def parse_entry(seq: int, line: str) -> Entry | None:
    """An entry's fields, or None when the line is not a valid audit record."""
    try:
        fields = parse_json(line)
    except ValueError:
        return None
    if not isinstance(fields, dict) or not isinstance(fields.get("details", {}), dict):
        return None
    at = stamp(fields.get("ts"))
    action = fields.get("action")
    if at is None or not isinstance(action, str):
        return None
    return Entry(seq, at, str(fields.get("actor", "")), action, str(fields.get("subject", "")),
                 fields.get("details") or {})


def _readable(store: AuditRows, seq: int) -> Entry | None:
    line = store.audit_entry(seq)
    return parse_entry(seq, line) if line is not None else None


def _first_at(store: AuditRows, lo: int, hi: int, when: float) -> int:
    """The first seq in [lo, hi] whose entry is at or after `when` (hi + 1: none is).

    An unreadable entry is stepped over to the next readable one; when none after the
    probe is readable, the search goes left, so damaged entries fall inside the window
    (to be reported) rather than hide its start.
    """
    while lo <= hi:
        mid = (lo + hi) // 2
        probe, at = mid, None
        while probe <= hi and at is None:
            parsed = _readable(store, probe)
            at = parsed.at if parsed is not None else None
            probe += 1 if at is None else 0
        if at is None or at >= when:
            hi = mid - 1
        else:
            lo = probe + 1
    return lo


@dataclass(frozen=True)
class Window:
    """The audit entries of a window that a reader asked for, and what else it held."""

    entries: list[Entry]
    count: int
    """Every entry in the window's seq range, read or not."""
    damaged: list[int]
    """Seqs of entries that are not valid audit records (skipped)."""


def window_entries(store: AuditRows, since: float, until: float, actions: Collection[str] | None = None) -> Window:
    """The audit entries of [since, until), oldest first; with `actions`, only those (the others are
    not parsed: an entry line is canonical JSON, so its action is read without parsing it)."""
    bounds = store.audit_bounds()
    if bounds is None:
        return Window([], 0, [])
    first = _first_at(store, bounds[0], bounds[1], since)
    stop = _first_at(store, first, bounds[1], until)
    while stop <= bounds[1] and _readable(store, stop) is None:
        stop += 1  # damaged entries at the end may be in the window: read them, to report them
    last = stop - 1
    lines = store.audit_lines(first, last) if first <= last else []
    entries: list[Entry] = []
    damaged: list[int] = []
    for seq, line in lines:
        named = _ACTION.search(line)
        if named is not None and actions is not None and named[1] not in actions:
            continue
        entry = parse_entry(seq, line)
        if entry is None:
            damaged.append(seq)
        elif since <= entry.at < until:
            entries.append(entry)
    return Window(entries, len(lines), damaged)


def workspace_window(workspace: Workspace, since: float, until: float,
                     actions: Collection[str] | None = None) -> tuple[Window, str | None]:
    """`window_entries` of the workspace's store, which keeps every committed entry (the file may be
    damaged or cut; it is a mirror), after importing a log written before the store kept entries; with
    why that import failed, if it did (the figures are then partial)."""
    problem = None
    if workspace.store.audit_bounds() is None:
        try:
            workspace.audit.sync()
        except LoomError as exc:
            problem = f"the audit log could not be read ({exc})"
    return window_entries(workspace.store, since, until, actions), problem


def newest_entry_time(store: AuditRows) -> float | None:
    """When the newest readable audit entry was written (None: no entry)."""
    bounds = store.audit_bounds()
    seq = bounds[1] if bounds else 0
    while bounds is not None and seq >= max(bounds[0], bounds[1] - 100):  # a damaged tail is not read whole
        parsed = _readable(store, seq)
        if parsed is not None:
            return parsed.at
        seq -= 1
    return None
