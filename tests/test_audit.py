"""The hash-chained audit log: durability, concurrency and every tamper case."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from loomtui.audit import AuditLog
from loomtui.store import SqliteStore


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    audit = AuditLog(tmp_path / "audit.jsonl", checkpoint=SqliteStore(tmp_path / "s.db"))
    for number in range(1, 6):
        audit.append("lead@example.com", "test.step", f"subject-{number}", {"n": number})
    return audit


def lines(audit: AuditLog) -> list[bytes]:
    return audit.path.read_bytes().splitlines(keepends=True)


def test_entries_chain_and_verify(log: AuditLog) -> None:
    result = log.verify()
    assert result.ok and result.entries == 5
    entries = log.tail(10)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert all(b.prev == a.hash for a, b in zip(entries, entries[1:]))
    assert entries[0].prev == "0" * 64
    assert log.tail(2)[-1].subject == "subject-5"


def test_edited_entry_is_named(log: AuditLog) -> None:
    rows = lines(log)
    rows[2] = rows[2].replace(b"subject-3", b"subject-X")
    log.path.write_bytes(b"".join(rows))
    result = log.verify()
    assert not result.ok and result.line == 3 and "edited" in result.problem
    assert result.entries == 2


def test_deleted_entry_is_named(log: AuditLog) -> None:
    rows = lines(log)
    del rows[1]
    log.path.write_bytes(b"".join(rows))
    result = log.verify()
    assert not result.ok and result.line == 2 and "deleted or reordered" in result.problem


def test_reordered_entries_are_named(log: AuditLog) -> None:
    rows = lines(log)
    rows[1], rows[2] = rows[2], rows[1]
    log.path.write_bytes(b"".join(rows))
    result = log.verify()
    assert not result.ok and result.line == 2


def test_edit_with_recomputed_hash_still_breaks_the_chain(log: AuditLog) -> None:
    from loomtui.audit import entry_hash

    rows = lines(log)
    forged = json.loads(rows[1])
    forged["actor"] = "mallory@example.com"
    forged["hash"] = entry_hash(forged)
    rows[1] = (json.dumps(forged) + "\n").encode()
    log.path.write_bytes(b"".join(rows))
    result = log.verify()
    assert not result.ok and result.line == 3 and "does not chain" in result.problem


def test_truncated_whole_entries_are_detected_by_the_checkpoint(log: AuditLog) -> None:
    log.path.write_bytes(b"".join(lines(log)[:3]))
    result = log.verify()
    assert not result.ok and "truncated" in result.problem and result.entries == 3


def test_rewritten_log_is_detected_by_the_checkpoint(log: AuditLog, tmp_path: Path) -> None:
    log.path.unlink()
    forged = AuditLog(log.path)  # a forger without the store
    for number in range(5):
        forged.append("mallory@example.com", "test.step", f"other-{number}")
    result = log.verify()
    assert not result.ok and "rewritten" in result.problem


def test_crash_mid_append_verifies_up_to_last_whole_entry_and_next_append_heals(log: AuditLog) -> None:
    with open(log.path, "ab") as handle:
        handle.write(b'{"action":"half-writ')
    result = log.verify()
    assert result.ok and result.entries == 5 and "interrupted append" in result.notes[0]
    entry = log.append("dev@example.com", "after.crash")
    assert entry.seq == 6
    assert log.verify().ok and log.verify().entries == 6
    kept = log.path.with_name("audit.jsonl.partial").read_bytes()
    assert kept == b'{"action":"half-writ\n'


def test_crash_of_a_real_process_mid_append(tmp_path: Path) -> None:
    """A writer killed between write and newline leaves a log that verifies."""
    path = tmp_path / "audit.jsonl"
    script = (
        "import os, sys\n"
        "from loomtui.audit import AuditLog\n"
        f"log = AuditLog({str(path)!r})\n"
        "log.append('a', 'one')\n"
        "fd = os.open(log.path, os.O_WRONLY | os.O_APPEND)\n"
        "os.write(fd, b'{\"seq\": 2, \"ts\": ')\n"
        "os._exit(9)\n"
    )
    done = subprocess.run([sys.executable, "-c", script])
    assert done.returncode == 9
    audit = AuditLog(path)
    assert audit.verify().ok and audit.verify().entries == 1
    audit.append("b", "two")
    assert audit.verify().ok and audit.verify().entries == 2


def _append_many(path: str, store: str, worker: int, count: int) -> None:
    audit = AuditLog(Path(path), checkpoint=SqliteStore(Path(store)))
    for number in range(count):
        audit.append(f"worker-{worker}", "load.test", str(number))


def test_fifty_processes_appending_a_hundred_entries_each(tmp_path: Path) -> None:
    path, store = tmp_path / "audit.jsonl", tmp_path / "s.db"
    SqliteStore(store).close()
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_append_many, args=(str(path), str(store), w, 100)) for w in range(50)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(240)
        assert proc.exitcode == 0
    audit = AuditLog(path, checkpoint=SqliteStore(store))
    result = audit.verify()
    assert result.ok, result.problem
    assert result.entries == 5000
    per_worker: dict[str, int] = {}
    for entry in audit.entries():
        per_worker[entry.actor] = per_worker.get(entry.actor, 0) + 1
    assert set(per_worker.values()) == {100} and len(per_worker) == 50


def test_checkpoint_survives_the_rollback_of_the_callers_transaction(tmp_path: Path) -> None:
    """An entry appended inside a transaction that then fails is on disk: so is its checkpoint."""
    store = SqliteStore(tmp_path / "s.db")
    audit = AuditLog(tmp_path / "audit.jsonl", checkpoint=store)
    audit.append("a", "first")
    with pytest.raises(RuntimeError):
        with store.transaction():
            with store.transaction():
                audit.append("a", "refused", details={"why": "overlap"})
            raise RuntimeError("the claim was refused")
    assert store.audit_checkpoint() is not None and store.audit_checkpoint()[0] == 2
    audit.path.write_bytes(b"".join(audit.path.read_bytes().splitlines(keepends=True)[:1]))
    result = audit.verify()
    assert not result.ok and "truncated" in result.problem
