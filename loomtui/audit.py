"""The append-only, hash-chained audit log of every decision.

One JSON object per line. Each entry carries the SHA-256 of the previous entry
(`prev`) and of itself (`hash`, over the canonical JSON of every other field), so an
edit, a deleted or reordered entry, or a cut in the middle of the chain breaks it.

With a state store (the normal case), the store is the record and the file its
durable mirror:

- An entry is written into the store's `audit` table in the same transaction as the
  state change it describes; its seq and prev are read under that transaction's
  write lock, so the database serialises appends. A rolled-back transaction takes
  its entries with it: a state change and its audit entry commit together or not
  at all.
- After the commit, the entries the file lacks are appended to it (under an
  exclusive `flock`, flush + fsync), and the store's checkpoint records the newest
  (seq, hash) known to be in the file. A crash between commit and file loses
  nothing: the next append, `tail` or `verify` brings the file up to the table.
- `verify` checks the file's chain, then the file against the table: a line the
  table does not have is an entry the store never committed; a line that differs
  is a rewrite; a file that ends before the checkpoint was cut off (entries that
  were written to it are gone, which no crash does).
- A log that predates the table (or outlives a store moved aside) is imported into
  the table, up to its last whole, chained entry, before the first entry is added.

Without a store (`AuditLog(path)`), appends go straight to the file under the
same flock. Either way, a process that dies mid-append leaves a partial last line;
the next append moves it to `<log>.partial` (kept for forensics, never silently
dropped) and continues the chain from the last whole entry.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from loomtui.errors import AuditError, LoomError, plural
from loomtui.json_text import parse_json

GENESIS = "0" * 64


class AuditStore(Protocol):
    """What the log needs from the state store: its transactions and its `audit` table."""

    def transaction(self) -> AbstractContextManager[Any]: ...

    def in_transaction(self) -> bool: ...

    def after_transaction(self, callback: Callable[[], None], *, also_on_rollback: bool = False) -> None: ...

    def audit_head(self) -> tuple[int, str] | None: ...

    def add_audit_entries(self, rows: Sequence[tuple[int, str, str]]) -> None: ...

    def audit_entries_after(self, seq: int) -> list[tuple[int, str, str]]: ...

    def audit_hash(self, seq: int) -> str | None: ...

    def audit_hashes(self) -> list[str]: ...

    def audit_checkpoint(self) -> tuple[int, str] | None: ...

    def set_audit_checkpoint(self, seq: int, entry_hash: str) -> None: ...

    @property
    def read_only(self) -> bool: ...

    embedded: bool
    """This machine's store alone (SQLite), not a team's that other machines write too."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts: str
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev: str
    hash: str

    def line(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of `verify()`: ok, how many entries, and the first problem if any."""

    ok: bool
    entries: int
    problem: str = ""
    line: int | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self, path: Path) -> str:
        if self.ok:
            tail = "".join(f"; {note}" for note in self.notes)
            return f"OK: {self.entries} entries, chain intact{tail}"
        where = f"{path}:{self.line}: " if self.line else f"{path}: "
        return f"BROKEN: {where}{self.problem} ({self.entries} entries verified before it)"


def entry_hash(fields: dict[str, Any]) -> str:
    """SHA-256 of an entry's canonical JSON, without its own `hash` field."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def is_whole(entry: AuditEntry) -> bool:
    """Whether an entry is as it was written: its fields hash to its own hash (a row of the store
    edited by hand, its hash kept, does not)."""
    return entry_hash(asdict(entry)) == entry.hash


def _row_matches(row_hash: str, line: str) -> bool:
    """Whether a store row's entry is whole and is the entry its hash column names."""
    try:
        fields = parse_json(line)
    except ValueError:
        return False
    return isinstance(fields, dict) and entry_hash(fields) == fields.get("hash") == row_hash


MAX_LISTED: Final = 50
"""Items an entry lists of one kind (failed tests, regressions): the log is shared and kept for good, and an
agent's tests can fail by the hundred thousand. The run's own record and log keep every one."""


def listed_in_entry(name: str, items: Sequence[str]) -> dict[str, Any]:
    """`{name: items}` for an entry's details, at most MAX_LISTED of them, and `{name}_total` when cut."""
    kept = list(items[:MAX_LISTED])
    return {name: kept, f"{name}_total": len(items)} if len(items) > MAX_LISTED else {name: kept}


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_entry(seq: int, prev: str, actor: str, action: str, subject: str,
               details: dict[str, Any] | None) -> AuditEntry:
    fields: dict[str, Any] = {
        "seq": seq,
        "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": json.loads(json.dumps(details or {}, default=str)),
        "prev": prev,
    }
    return AuditEntry(**fields, hash=entry_hash(fields))


def entry_or_none(line: str | bytes) -> AuditEntry | None:
    """An entry as written (a line of the file, a store row), or None for one damaged: readers skip it,
    `verify` names it."""
    try:
        return AuditEntry(**parse_json(line))
    except (ValueError, TypeError):
        return None


def _parse_tail(line: bytes) -> tuple[int, str] | None:
    try:
        parsed = parse_json(line)
        return int(parsed["seq"]), str(parsed["hash"])
    except (ValueError, KeyError, TypeError):
        return None


class AuditLog:
    """The audit log of one repository."""

    def __init__(self, path: Path, store: AuditStore | None = None, *,
                 checkpoint: AuditStore | None = None) -> None:
        self.path = Path(path)
        self.store = store if store is not None else checkpoint  # `checkpoint=`: the older name
        self.unmirrored = 0
        """Entries this process committed that the file did not take (it disagrees with the store:
        damaged, changed or cut); each is in the store, and `file_behind` says why."""
        self._refused = False

    # -- writing --------------------------------------------------------------

    def append(
        self, actor: str, action: str, subject: str = "", details: dict[str, Any] | None = None
    ) -> AuditEntry:
        """Append one entry durably; safe from many processes at once.

        Inside a store transaction the entry is part of it: committed with it (and then
        written to the file) or rolled back with it. Outside one it has its own.
        """
        store = self.store
        if store is None:
            return self._append_to_file(actor, action, subject, details)
        with store.transaction():
            head = store.audit_head()
            if head is None:
                head = self._adopt_file()
            seq, prev = head or (0, GENESIS)
            entry = _new_entry(seq + 1, prev, actor, action, subject, details)
            store.add_audit_entries([(entry.seq, entry.hash, entry.line())])
            store.after_transaction(self._mirror_after_commit)
        return entry

    def append_after_transaction(
        self, actor: str, action: str, subject: str = "", details: dict[str, Any] | None = None
    ) -> None:
        """Append an entry once the current transaction ends, committed or rolled back.

        For what happened whatever becomes of the caller's transaction: a refusal
        changed nothing, and is recorded even when the refusal rolls back the
        caller's other steps. Outside a transaction it is appended at once.
        """
        store = self.store
        if store is None or not store.in_transaction():
            self.append(actor, action, subject, details)
            return
        store.after_transaction(lambda: self._append_quietly(actor, action, subject, details),
                                also_on_rollback=True)

    def _append_quietly(self, actor: str, action: str, subject: str, details: dict[str, Any] | None) -> None:
        try:
            self.append(actor, action, subject, details)
        except LoomError:
            pass  # the store is unavailable: the transaction it follows failed the same way

    def _mirror_after_commit(self) -> None:
        try:
            self.sync()
        except LoomError:
            # Committed in the store; the file catches up at the next append, tail or verify.
            pass
        if self._refused:
            self.unmirrored += 1

    def _append_to_file(
        self, actor: str, action: str, subject: str, details: dict[str, Any] | None
    ) -> AuditEntry:
        """A log without a store: the file alone, serialised by flock."""
        created = not self.path.exists()
        fd = self.locked()
        try:
            seq, prev = self._tail_state(fd)
            entry = _new_entry(seq + 1, prev, actor, action, subject, details)
            self._write(fd, [entry.line()])
        except OSError as exc:
            raise AuditError(f"{self.path}: audit append failed ({exc.strerror or exc})") from None
        finally:
            os.close(fd)  # closing releases the flock
        if created:
            _fsync_dir(self.path.parent)
        return entry

    def locked(self) -> int:
        """The log opened for appending, under its exclusive lock, and still the file at its path: one
        written again whole (`audit restore`) replaces it, and a writer that waited on the old one wrote
        there, into the copy kept aside."""
        while True:
            fd = self._open_for_append()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                here, now = os.fstat(fd), os.stat(self.path)
            except FileNotFoundError:  # replaced (or removed) as it was locked: open it again
                os.close(fd)
                continue
            except OSError as exc:
                os.close(fd)
                raise AuditError(f"{self.path}: cannot lock the audit log ({exc.strerror or exc})") from None
            if (here.st_dev, here.st_ino) == (now.st_dev, now.st_ino):
                return fd
            os.close(fd)

    def _open_for_append(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise AuditError(f"{self.path}: cannot open the audit log ({exc.strerror})") from None

    @staticmethod
    def _write(fd: int, lines: Sequence[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode()
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(28, "short write (disk full?)")
            view = view[written:]
        os.fsync(fd)

    # -- the file as the store's mirror -----------------------------------------

    def sync(self) -> list[str]:
        """Append to the file the committed entries it lacks; returns notes on what was done.

        Nothing is written when the file disagrees with the store (a line the store
        never committed, a rewritten or cut-off log): `verify` reports that.
        Inside a transaction this does nothing (what it sees is not committed yet).
        """
        store = self.store
        self._refused = False
        if store is None or store.in_transaction():
            return []
        if store.read_only:  # nothing can be appended (or adopted) here: say what the file lacks
            head, tail = store.audit_head(), self._quick_tail()
            missing = (head[0] if head else 0) - (tail[0] if tail else 0)
            return [f"{missing} committed entries are missing from the log; not appended here (the store "
                    "is read-only)"] if missing > 0 else []
        head = store.audit_head()
        if head is None:
            if not self._raw_lines_exist():
                return []  # nothing committed, nothing to import
            with store.transaction():
                head = store.audit_head() or self._adopt_file()
            if head is None:
                return []
        if self._quick_tail() == head:
            return []
        created = not self.path.exists()
        fd = self.locked()
        written: tuple[int, str] | None = None
        notes: list[str] = []
        try:
            seq, last, partial = self._whole_tail(fd)
            mark = store.audit_checkpoint()
            if (seq and store.audit_hash(seq) != last) or (mark is not None and seq < mark[0]):
                # The file disagrees with the store, or was cut off: `verify` says where, and
                # appending would hide it.
                self._refused = True
                return notes
            rows = store.audit_entries_after(seq)
            if not rows:
                return notes
            if partial:
                self._set_aside(fd, partial)
            self._write(fd, [row[2] for row in rows])
            written = rows[-1][0], rows[-1][1]
            # On a team's store most are other machines' entries, each machine keeping its own copy of the
            # log: said as the crash recovery it is only on a store of this machine's alone.
            span = f"seq {rows[0][0]}-{rows[-1][0]}"
            notes.append(f"{len(rows)} committed entries were missing from the log and were appended ({span})"
                         if store.embedded else
                         f"copied {plural(len(rows), 'entry')} into this machine's log ({span}), committed since by "
                         "other machines (or by a process that ended before writing its copy)")
        except OSError as exc:
            raise AuditError(f"{self.path}: audit append failed ({exc.strerror or exc})") from None
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)
        if written is not None:
            # After the flock is released: the store lock is never awaited while holding it.
            store.set_audit_checkpoint(*written)
        return notes

    def _raw_lines_exist(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    def _sync_quietly(self) -> None:
        try:
            self.sync()
        except LoomError:
            pass  # a read-only copy (inside a sandbox) still reads what the file holds

    def _adopt_file(self) -> tuple[int, str] | None:
        """Import the file's whole, chained entries into an empty table (inside its transaction).

        A log written before the store kept entries, or one whose store was moved
        aside, keeps verifying; lines after a break stay in the file only, and
        verify reports them.
        """
        assert self.store is not None
        rows: list[tuple[int, str, str]] = []
        prev = GENESIS
        for number, raw in enumerate(self._raw_lines(), start=1):
            if not raw.endswith(b"\n"):
                break
            try:
                fields = parse_json(raw)
                entry = AuditEntry(**fields)
            except (ValueError, TypeError):
                break
            if entry.seq != number or entry.prev != prev or entry_hash(fields) != entry.hash:
                break
            rows.append((entry.seq, entry.hash, raw.rstrip(b"\n").decode()))
            prev = entry.hash
        if not rows:
            return None
        self.store.add_audit_entries(rows)
        return rows[-1][0], rows[-1][1]

    def _quick_tail(self) -> tuple[int, str] | None:
        """(seq, hash) of the file's last whole line, read without the lock (None if unreadable)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return 0, GENESIS
        except OSError:
            return None
        try:
            seq, last, _ = self._whole_tail(fd)
            return seq, last
        except OSError:
            return None
        finally:
            os.close(fd)

    def _whole_tail(self, fd: int) -> tuple[int, str, bytes]:
        """(seq, hash, partial) of the last whole line; `partial` is an interrupted append after it."""
        size = os.fstat(fd).st_size
        if size == 0:
            return 0, GENESIS, b""
        block = 4096
        data = b""
        offset = size
        # Read backwards until we hold the last whole line and the newline before it.
        while offset > 0:
            start = max(0, offset - block)
            data = os.pread(fd, offset - start, start) + data
            offset = start
            if data.count(b"\n") >= 2 or (offset == 0 and b"\n" in data):
                break
            block *= 2
        cut = data.rfind(b"\n") + 1
        partial = data[cut:]
        whole = data[:cut]
        if not whole:
            return 0, GENESIS, partial
        last = whole.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        parsed = _parse_tail(last)
        if parsed is not None:
            return parsed[0], parsed[1], partial
        # A damaged last entry: chain to its raw bytes so nothing is lost; verify reports it.
        return sum(1 for _ in self._raw_lines()), hashlib.sha256(last).hexdigest(), partial

    def _set_aside(self, fd: int, partial: bytes) -> None:
        """Move an interrupted append to `<log>.partial` (kept, never dropped) and cut it off."""
        with open(self.path.with_name(self.path.name + ".partial"), "ab") as aside:
            aside.write(partial + b"\n")
            aside.flush()
            os.fsync(aside.fileno())
        os.ftruncate(fd, os.fstat(fd).st_size - len(partial))
        os.fsync(fd)

    def _tail_state(self, fd: int) -> tuple[int, str]:
        """(seq, hash) of the last whole entry; a partial line left by a crash is set aside."""
        seq, last, partial = self._whole_tail(fd)
        if partial:
            self._set_aside(fd, partial)
        return seq, last

    # -- reading --------------------------------------------------------------

    def _raw_lines(self) -> Iterator[bytes]:
        try:
            with open(self.path, "rb") as handle:
                yield from handle
        except FileNotFoundError:
            return
        except OSError as exc:
            raise AuditError(f"{self.path}: cannot read the audit log ({exc.strerror})") from None

    def entries(self) -> Iterator[AuditEntry]:
        """Every whole, parseable entry in order (damaged lines are skipped; verify reports them)."""
        self._sync_quietly()
        for raw in self._raw_lines():
            if not raw.endswith(b"\n"):
                return
            if (entry := entry_or_none(raw)) is not None:
                yield entry

    def tail(self, count: int = 20, keep: Callable[[AuditEntry], bool] | None = None) -> list[AuditEntry]:
        """The newest `count` entries (of those `keep` takes, given it: the whole log is read), oldest first:
        the store's, which holds every committed one (the file may lack some, when it was damaged or changed:
        see `file_behind`), else the file's."""
        if count <= 0:
            return []
        found: Iterator[AuditEntry] | None = None
        store = self.store
        if store is not None:
            self._sync_quietly()
            try:
                head = store.audit_head()
                after = 0 if keep is not None or head is None else max(0, head[0] - count)
                rows = store.audit_entries_after(after) if head is not None else []
            except LoomError:
                rows = []  # a store it may not read (inside a sandbox): the file is what there is
            if rows:
                found = (entry for _seq, _hash, line in rows if (entry := entry_or_none(line)))
        if found is None:
            found = self.entries()
        return list(deque(found if keep is None else filter(keep, found), maxlen=count))

    def file_behind(self) -> int | None:
        """The store's newest entry when the file does not end with it: after a sync, only when the
        file disagrees with the store (a damaged or changed line; `verify` says where), so no entry is
        added to it. None when it does, or with no store."""
        store = self.store
        if store is None:
            return None
        self._sync_quietly()
        tail = self._quick_tail()
        try:
            head = store.audit_head()
            # A file that ends with one of the store's entries is whole, only behind: another process
            # committed after the sync and writes its copy after its commit. Unless it once went further
            # (the checkpoint): then it was cut, and no entry is added to it (`sync`).
            mark = store.audit_checkpoint()
            whole = (tail is not None and tail[0] > 0 and store.audit_hash(tail[0]) == tail[1]
                     and (mark is None or tail[0] >= mark[0]))
        except LoomError:
            return None
        return head[0] if head is not None and tail != head and not whole else None

    def verify(self) -> VerifyResult:
        """Bring the file up to the store, then check its chain, and it against the store.

        Reports the first broken entry: edited, deleted, reordered, never committed by
        the store, rewritten, or cut off.
        """
        notes: list[str] = []
        mark: tuple[int, str] | None = None
        if self.store is not None:
            try:
                notes.extend(self.sync())
            except LoomError as exc:
                notes.append(f"could not bring the log up to the store: {exc}")
            # Read before the file: writers append, then move it, so the file read after holds what it names
            # (read after, a checkpoint moved on by a writer meanwhile read as a cut-off log).
            mark = self.store.audit_checkpoint()
        prev = GENESIS
        count = 0
        hashes: list[str] = []
        for number, raw in enumerate(self._raw_lines(), start=1):
            if not raw.endswith(b"\n"):
                notes.append(f"line {number} is an interrupted append (ignored; set aside on next append)")
                break
            try:
                fields = parse_json(raw)
                if not isinstance(fields, dict):
                    raise ValueError("not an object")
                entry = AuditEntry(**fields)
            except (ValueError, TypeError):
                return VerifyResult(False, count, "entry is not a valid audit record (edited or corrupted)", number)
            if type(entry.seq) is not int:  # noqa: E721 - "3" or 1e999 is no seq (True is no seq either)
                return VerifyResult(False, count, f"seq {json.dumps(fields.get('seq'))[:40]} is not a whole number "
                                                  "(edited or corrupted)", number)
            if entry.seq != number:
                return VerifyResult(
                    False, count,
                    f"expected seq {number}, found seq {entry.seq} (an entry was deleted or reordered)",
                    number,
                )
            if entry.prev != prev:
                return VerifyResult(
                    False, count,
                    f"seq {entry.seq} does not chain to the entry before it (deleted, reordered or edited)",
                    number,
                )
            if entry_hash(fields) != entry.hash:
                return VerifyResult(False, count, f"seq {entry.seq} was edited (its hash does not match)", number)
            prev = entry.hash
            hashes.append(entry.hash)
            count += 1
        return self._check_store(hashes, notes, mark)

    def _check_store(self, hashes: list[str], notes: list[str], mark: tuple[int, str] | None) -> VerifyResult:
        count = len(hashes)
        if self.store is None:
            notes.append("no store to compare (store not available)")
            return VerifyResult(True, count, notes=notes)
        committed = self.store.audit_hashes()
        for number, (mine, theirs) in enumerate(zip(hashes, committed, strict=False), start=1):
            if mine != theirs:
                return VerifyResult(
                    False, number - 1,
                    f"rewritten: seq {number} differs from the entry the store committed", number,
                )
        # The store's own copy of each entry too: `tail` shows it, and a row edited with its hash kept
        # matched the file's hashes above while it said something else.
        for seq, _hash, line in self.store.audit_entries_after(0):
            if not _row_matches(_hash, line):
                return VerifyResult(False, seq - 1, f"seq {seq} in the store was edited: its entry does not match "
                                                    "its hash (the log file's line is the one written)", seq)
        if count > len(committed):
            number = len(committed) + 1
            return VerifyResult(
                False, number - 1,
                f"seq {number} is not in the store: an entry the store never committed", number,
            )
        if mark is None:
            return VerifyResult(True, count, notes=notes)
        seq, mark_hash = mark
        if seq > count:
            return VerifyResult(
                False, count,
                f"truncated: the log ends at seq {count} but the checkpoint records seq {seq}",
                count + 1,
            )
        if hashes[seq - 1] != mark_hash:
            return VerifyResult(False, count, f"rewritten: seq {seq} differs from the checkpoint", seq)
        return VerifyResult(True, count, notes=notes)
