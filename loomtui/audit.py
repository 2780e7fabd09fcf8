"""The append-only, hash-chained audit log of every decision.

One JSON object per line. Each entry carries the SHA-256 of the previous entry
(`prev`) and of itself (`hash`, over the canonical JSON of every other field), so an
edit, a deleted or reordered entry, or a cut in the middle of the chain breaks it.
A checkpoint of the newest (seq, hash) is kept in the state store, outside the log
file, so cutting entries off the end or rewriting the whole file is detected too.

Appends from many processes are serialised with an exclusive `flock` and made
durable with flush + fsync before they return. A process that dies mid-append
leaves a partial last line; the next append moves it to `<log>.partial` (kept for
forensics, never silently dropped) and continues the chain from the last whole entry.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from loomtui.errors import AuditError

GENESIS = "0" * 64


class Checkpoint(Protocol):
    """Where the newest (seq, hash) is kept outside the log (the state store)."""

    def audit_checkpoint(self) -> tuple[int, str] | None: ...

    def set_audit_checkpoint(self, seq: int, entry_hash: str) -> None: ...


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


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditLog:
    """The audit log of one repository."""

    def __init__(self, path: Path, checkpoint: Checkpoint | None = None) -> None:
        self.path = Path(path)
        self.checkpoint = checkpoint

    # -- writing --------------------------------------------------------------

    def append(
        self, actor: str, action: str, subject: str = "", details: dict[str, Any] | None = None
    ) -> AuditEntry:
        """Append one entry durably; safe from many processes at once."""
        try:
            created = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise AuditError(f"{self.path}: cannot open the audit log ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            seq, prev = self._tail_state(fd)
            fields: dict[str, Any] = {
                "seq": seq + 1,
                "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
                "actor": actor,
                "action": action,
                "subject": subject,
                "details": json.loads(json.dumps(details or {}, default=str)),
                "prev": prev,
            }
            entry = AuditEntry(**fields, hash=entry_hash(fields))
            data = (entry.line() + "\n").encode()
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(28, "short write (disk full?)")
            os.fsync(fd)
        except OSError as exc:
            raise AuditError(f"{self.path}: audit append failed ({exc.strerror or exc})") from None
        finally:
            os.close(fd)  # closing releases the flock
        if created:
            _fsync_dir(self.path.parent)
        # After the lock is released, so a caller holding a store transaction can
        # never deadlock against a process that holds the log lock; the store only
        # moves the checkpoint forwards, so ordering between processes is kept.
        if self.checkpoint is not None:
            self.checkpoint.set_audit_checkpoint(entry.seq, entry.hash)
        return entry

    def _tail_state(self, fd: int) -> tuple[int, str]:
        """(seq, hash) of the last whole entry; a partial line left by a crash is set aside."""
        size = os.fstat(fd).st_size
        if size == 0:
            return 0, GENESIS
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
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            partial = data[cut:]
            keep = size - len(partial)
            with open(self.path.with_name(self.path.name + ".partial"), "ab") as aside:
                aside.write(partial + b"\n")
                aside.flush()
                os.fsync(aside.fileno())
            os.ftruncate(fd, keep)
            os.fsync(fd)
            return self._tail_state(fd)
        last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        try:
            parsed = json.loads(last)
            return int(parsed["seq"]), str(parsed["hash"])
        except (ValueError, KeyError, TypeError):
            # A damaged last entry: chain to its raw bytes so nothing is lost;
            # verify reports the damage.
            return sum(1 for _ in self._raw_lines()), hashlib.sha256(last).hexdigest()

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
        for raw in self._raw_lines():
            if not raw.endswith(b"\n"):
                return
            try:
                yield AuditEntry(**json.loads(raw))
            except (ValueError, TypeError):
                continue

    def tail(self, count: int = 20) -> list[AuditEntry]:
        """The newest `count` entries, oldest first."""
        return list(deque(self.entries(), maxlen=count))

    def verify(self) -> VerifyResult:
        """Check the whole chain and the checkpoint; report the first broken entry."""
        prev = GENESIS
        count = 0
        notes: list[str] = []
        last_hash = GENESIS
        for number, raw in enumerate(self._raw_lines(), start=1):
            if not raw.endswith(b"\n"):
                notes.append(f"line {number} is an interrupted append (ignored; set aside on next append)")
                break
            try:
                fields = json.loads(raw)
                if not isinstance(fields, dict):
                    raise ValueError("not an object")
                entry = AuditEntry(**fields)
            except (ValueError, TypeError):
                return VerifyResult(False, count, "entry is not a valid audit record (edited or corrupted)", number)
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
            prev = last_hash = entry.hash
            count += 1
        return self._check_checkpoint(count, last_hash, notes)

    def _check_checkpoint(self, count: int, last_hash: str, notes: list[str]) -> VerifyResult:
        if self.checkpoint is None:
            notes.append("no checkpoint to compare (store not available)")
            return VerifyResult(True, count, notes=notes)
        mark = self.checkpoint.audit_checkpoint()
        if mark is None:
            if count:
                notes.append("no checkpoint recorded yet")
            return VerifyResult(True, count, notes=notes)
        seq, mark_hash = mark
        if seq > count:
            return VerifyResult(
                False, count,
                f"truncated: the log ends at seq {count} but the checkpoint records seq {seq}",
                count + 1,
            )
        if seq == count and mark_hash != last_hash:
            return VerifyResult(False, count, f"rewritten: seq {seq} differs from the checkpoint", seq)
        if seq < count:
            matched = next((e for e in self.entries() if e.seq == seq), None)
            if matched is None or matched.hash != mark_hash:
                return VerifyResult(False, count, f"rewritten: seq {seq} differs from the checkpoint", seq)
        return VerifyResult(True, count, notes=notes)
