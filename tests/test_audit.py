"""The hash-chained audit log: durability, concurrency and every tamper case."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from loomtui.audit import AuditLog
from loomtui.errors import LoomError
from loomtui.store import SqliteStore


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    audit = AuditLog(tmp_path / "audit.jsonl", store=SqliteStore(tmp_path / "s.db"))
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


def test_an_entry_replaced_by_json_nested_past_recursion_is_named_not_an_internal_error(log: AuditLog) -> None:
    rows = lines(log)
    rows[2] = b"[" * 100_000 + b"\n"
    log.path.write_bytes(b"".join(rows))
    result = log.verify()
    assert not result.ok and result.line == 3 and result.entries == 2
    assert [e.seq for e in log.tail(5)] == [1, 2, 3, 4, 5]  # from the store


def test_deleted_entry_is_named(log: AuditLog) -> None:
    rows = lines(log)
    del rows[1]
    log.path.write_bytes(b"".join(rows))
    result = log.verify()
    assert not result.ok and result.line == 2 and "deleted or reordered" in result.problem


@pytest.mark.parametrize(("seq", "said"), [(b'"3"', 'seq "3" is not'), (b"1e999", "seq Infinity is not"),
                                           (b"true", "seq true is not")])
def test_a_seq_that_is_no_whole_number_is_named_as_it_is(log: AuditLog, seq: bytes, said: str) -> None:
    """It said "expected seq 3, found seq 3" for "3", and "found seq inf" for 1e999."""
    rows = lines(log)
    rows[2] = rows[2].replace(b'"seq":3', b'"seq":' + seq, 1)
    assert rows[2] != lines(log)[2]
    log.path.write_bytes(b"".join(rows))
    result = log.verify()
    assert not result.ok and result.line == 3 and said in result.problem and "whole number" in result.problem


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
    audit = AuditLog(Path(path), store=SqliteStore(Path(store)))
    for number in range(count):
        audit.append(f"worker-{worker}", "load.test", str(number))


def _appending(log: AuditLog, count: int, writers: int = 4) -> list[multiprocessing.process.BaseProcess]:
    """`writers` processes, started, each appending `count` entries to `log` (through its store)."""
    store = log.store
    assert isinstance(store, SqliteStore)
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_append_many, args=(str(log.path), str(store.path), w, count))
             for w in range(writers)]
    for proc in procs:
        proc.start()
    return procs


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
    audit = AuditLog(path, store=SqliteStore(store))
    result = audit.verify()
    assert result.ok, result.problem
    assert result.entries == 5000
    per_worker: dict[str, int] = {}
    for entry in audit.entries():
        per_worker[entry.actor] = per_worker.get(entry.actor, 0) + 1
    assert set(per_worker.values()) == {100} and len(per_worker) == 50


def test_an_entry_in_a_rolled_back_transaction_never_appears(tmp_path: Path) -> None:
    """A state change and its entry commit together or not at all: neither table nor file keep it."""
    store = SqliteStore(tmp_path / "s.db")
    audit = AuditLog(tmp_path / "audit.jsonl", store=store)
    audit.append("a", "first")
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.append_event("state.change")
            with store.transaction():
                audit.append("a", "refused", details={"why": "overlap"})
            raise RuntimeError("the claim was refused")
    assert [e.action for e in audit.entries()] == ["first"]
    assert len(store.audit_hashes()) == 1 and store.audit_checkpoint() == (1, store.audit_hashes()[0])
    assert b"refused" not in audit.path.read_bytes()
    entry = audit.append("a", "second")  # the chain goes on from the last committed entry
    assert entry.seq == 2 and audit.verify().ok and audit.verify().entries == 2


def test_an_entry_in_a_committed_transaction_reaches_the_file_after_the_commit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    audit = AuditLog(tmp_path / "audit.jsonl", store=store)
    with store.transaction():
        audit.append("a", "one")
        audit.append("a", "two")
        assert not audit.path.exists()  # nothing reaches the file before the commit
    assert [e.action for e in audit.entries()] == ["one", "two"]
    assert store.audit_checkpoint() == (2, audit.tail(1)[0].hash)


def test_an_attempt_is_recorded_whether_the_transaction_commits_or_not(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    audit = AuditLog(tmp_path / "audit.jsonl", store=store)
    with pytest.raises(RuntimeError):
        with store.transaction():
            audit.append("a", "claim.added")
            audit.append_after_transaction("a", "claim.refused")
            raise RuntimeError("refused")
    assert [e.action for e in audit.entries()] == ["claim.refused"]
    assert audit.verify().ok


def test_a_crash_between_commit_and_file_loses_nothing(tmp_path: Path) -> None:
    """A writer killed after its commit, before the file: the next reader appends the entry."""
    path, db = tmp_path / "audit.jsonl", tmp_path / "s.db"
    AuditLog(path, store=SqliteStore(db)).append("a", "one")
    script = (
        "import os\n"
        "from pathlib import Path\n"
        "from loomtui.audit import AuditLog\n"
        "from loomtui.store import SqliteStore\n"
        f"log = AuditLog(Path({str(path)!r}), store=SqliteStore(Path({str(db)!r})))\n"
        "log._mirror_after_commit = lambda: os._exit(9)\n"
        "log.append('a', 'committed, then killed')\n"
    )
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert len(path.read_bytes().splitlines()) == 1
    audit = AuditLog(path, store=SqliteStore(db))
    result = audit.verify()
    assert result.ok and result.entries == 2 and "missing from the log" in result.notes[0]
    assert audit.tail(1)[0].action == "committed, then killed"
    assert audit.verify().ok and audit.verify().notes == []


def test_a_line_the_store_never_committed_is_reported(log: AuditLog) -> None:
    """A forger who appends a well-chained line to the file is caught: the store does not have it."""
    from loomtui.audit import entry_hash

    last = json.loads(lines(log)[-1])
    forged = {**last, "seq": 6, "prev": last["hash"], "action": "escalation.approve", "subject": "7"}
    forged["hash"] = entry_hash(forged)
    with open(log.path, "a") as handle:
        handle.write(json.dumps(forged) + "\n")
    result = log.verify()
    assert not result.ok and result.line == 6 and "never committed" in result.problem
    log.append("dev@example.com", "later")  # the store's entry 6 is not written over the forged line
    assert b"later" not in log.path.read_bytes()
    assert [e.action for e in log.tail(2)] == ["test.step", "later"]  # the store's: every committed entry
    assert log.file_behind() == 6  # the file's last line is not the store's entry 6
    assert not log.verify().ok


def test_a_store_row_edited_with_its_hash_kept_is_named_and_tail_warns(log: AuditLog, tmp_path: Path) -> None:
    """`tail` shows the store's copy: an actor rewritten there (hash kept, file untouched) was shown as
    fact, and verify, comparing hashes only, said OK."""
    import sqlite3

    from loomtui.audit import is_whole

    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("update audit set entry = replace(entry, 'lead@example.com', 'mallory@example.com') where seq = 3")
    conn.commit()
    conn.close()
    result = log.verify()
    assert not result.ok and result.line == 3 and "seq 3 in the store was edited" in result.problem
    shown = log.tail(5)
    assert [e.seq for e in shown if not is_whole(e)] == [3] and shown[2].actor == "mallory@example.com"
    # A row that is no entry at all (nested past the parser's recursion): left out, the rest shown (it raised
    # out of `audit tail` and the app's Audit view).
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("update audit set entry = ? where seq = 4", ("[" * 100_000,))
    conn.commit()
    conn.close()
    assert [e.seq for e in log.tail(5)] == [1, 2, 3, 5]


def test_a_damaged_last_line_stops_the_file_and_tail_still_shows_every_committed_entry(log: AuditLog) -> None:
    with open(log.path, "ab") as handle:
        handle.write(b"\xff junk\n")
    log.append("dev@example.com", "claim.added", "x")
    assert b"claim.added" not in log.path.read_bytes()  # not appended after a line it cannot chain to
    assert [e.action for e in log.tail(2)] == ["test.step", "claim.added"] and log.file_behind() == 6
    assert log.tail(0) == []


def test_a_last_line_cut_after_it_was_mirrored_stops_the_file_and_says_so(log: AuditLog) -> None:
    """Not an interrupted append (that is before the checkpoint moves on, and healed): the file held entry 5
    whole, and lost it. Nothing is appended after the cut, so `tail` must say the file is behind."""
    cut = lines(log)
    log.path.write_bytes(b"".join(cut[:-1]) + cut[-1][:40])
    assert log.file_behind() == 5
    log.append("dev@example.com", "claim.added", "x")
    assert b"claim.added" not in log.path.read_bytes() and log.file_behind() == 6
    assert "truncated" in log.verify().problem


def test_a_whole_file_is_not_behind(log: AuditLog) -> None:
    assert log.file_behind() is None and [e.seq for e in log.tail(3)] == [3, 4, 5]


def test_a_file_only_behind_a_commit_another_process_has_not_mirrored_yet_is_not_damaged(log: AuditLog) -> None:
    """Committed in the store, its copy not yet in the file (another process, between its commit and
    its write): the file still ends with one of the store's entries, so no warning."""
    from loomtui.audit import _new_entry

    assert log.store is not None
    with log.store.transaction():
        seq, prev = log.store.audit_head()  # type: ignore[misc]
        entry = _new_entry(seq + 1, prev, "other@example.com", "claim.added", "x", None)
        log.store.add_audit_entries([(entry.seq, entry.hash, entry.line())])
    log.sync = lambda: []  # type: ignore[method-assign]  # the other process's mirror has not run yet
    assert log.file_behind() is None


def test_a_log_from_before_the_audit_table_is_imported_and_keeps_verifying(tmp_path: Path) -> None:
    """An old repository: its JSONL log (and checkpoint) predate the table; they migrate."""
    import sqlite3

    path, db = tmp_path / "audit.jsonl", tmp_path / "s.db"
    old = AuditLog(path)  # entries written the old way, file only
    for number in range(3):
        old.append("a", "old.step", str(number))
    SqliteStore(db).close()
    conn = sqlite3.connect(db)  # back to schema 1, as a store of the previous release
    conn.execute("DROP TABLE audit")
    conn.execute("DROP TABLE step_leases")  # newer than the previous release too
    conn.execute("DROP TABLE eval_reports")
    conn.execute("DROP INDEX gate_runs_shared")
    conn.execute("ALTER TABLE gate_runs DROP COLUMN scope")
    conn.execute("ALTER TABLE gate_runs DROP COLUMN fingerprint")
    conn.execute("ALTER TABLE sandboxes DROP COLUMN host")
    conn.execute("DROP TABLE audit_mirrors")
    conn.execute("DROP INDEX escalations_by_sandbox")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO audit_checkpoint (id, seq, hash) VALUES (1, 3, ?)", (old.tail(1)[0].hash,))
    conn.commit()
    conn.close()
    audit = AuditLog(path, store=SqliteStore(db))
    result = audit.verify()
    assert result.ok and result.entries == 3
    entry = audit.append("b", "new.step")
    assert entry.seq == 4 and audit.verify().ok and len(audit.store.audit_hashes()) == 4  # type: ignore[union-attr]


def test_an_entry_lists_at_most_fifty_of_a_kind_and_says_how_many_there_were() -> None:
    """A conftest can make 600,000 failing tests: every id in `gate.failed` was 60 MB of a log kept for good."""
    from loomtui.audit import MAX_LISTED, listed_in_entry

    assert listed_in_entry("failed_tests", ["a", "b"]) == {"failed_tests": ["a", "b"]}
    many = [f"tests/test_x.py::test_{n}" for n in range(600)]
    assert listed_in_entry("failed_tests", many) == {"failed_tests": many[:MAX_LISTED], "failed_tests_total": 600}


@pytest.mark.parametrize("damage", ["deleted", "cut", "edited"])
def test_a_damaged_log_is_restored_from_the_store_kept_aside_and_the_restore_recorded(log: AuditLog,
                                                                                      damage: str) -> None:
    """A deleted or damaged file took no entry ever again, every write saying "recorded in the store only",
    and no command put it right."""
    from loomtui.auditrestore import restore_log

    before = log.path.read_bytes()
    if damage == "deleted":
        log.path.unlink()
    elif damage == "cut":
        log.path.write_bytes(b"".join(lines(log)[:3]))
    else:
        log.path.write_bytes(before.replace(b"subject-3", b"subject-X"))
    damaged = log.path.read_bytes() if log.path.exists() else None
    log.append("lead@example.com", "test.step", "subject-6")  # into the store only
    restored = restore_log(log, "lead@example.com")
    assert restored.entries == 6 and restored.problem
    assert (restored.kept_aside is None) == (damage == "deleted")
    if restored.kept_aside is not None:
        assert damaged and restored.kept_aside.read_bytes().startswith(damaged)  # what was there, kept whole
    assert log.path.read_bytes().startswith(before)  # the entries as written, then what followed
    result = log.verify()
    assert result.ok and result.entries == 7, result
    last = log.tail(1)[0]
    assert (last.action, last.details["entries"], last.details["problem"]) == ("audit.restored", 6, restored.problem)
    log.append("lead@example.com", "test.step", "subject-8")  # the file takes entries again
    assert log.verify().entries == 8 and log.file_behind() is None
    with pytest.raises(LoomError, match="verifies against the store: nothing to restore"):
        restore_log(log, "lead@example.com")


def test_a_store_edited_too_restores_nothing(log: AuditLog) -> None:
    import sqlite3

    from loomtui.auditrestore import restore_log

    log.path.unlink()
    store = log.store
    assert isinstance(store, SqliteStore)
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE audit SET entry = replace(entry, 'subject-2', 'subject-Z') WHERE seq = 2")
    with pytest.raises(LoomError, match="the store's own copy breaks at seq 2"):
        restore_log(log, "lead@example.com")
    assert not log.path.exists() or log.path.read_bytes() == b""  # nothing written from it


def test_a_restore_while_others_append_leaves_every_entry_in_the_new_file(log: AuditLog) -> None:
    """Writers waiting on the old file's lock wrote into it after it was replaced, into the copy kept aside,
    and moved the checkpoint past the new file: restored, the log was broken again at once."""
    from loomtui.auditrestore import restore_log

    log.path.write_bytes(log.path.read_bytes().replace(b"subject-3", b"subject-X"))  # mid-file: its end is whole
    procs = _appending(log, 60)
    restore_log(log, "lead@example.com")
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    result = log.verify()
    assert result.ok and result.entries == 5 + 4 * 60 + 1, result


def test_a_restore_refuses_a_store_that_holds_less_than_the_log_did_and_keeps_to_a_link(log: AuditLog,
                                                                                       tmp_path: Path) -> None:
    """A store missing its newest entries (the checkpoint says the log held more) was "restored" from,
    exit 0, and the log stayed broken; a second restore within the second failed (File exists); a log
    that is a link to elsewhere was replaced by a file, the link's target no longer written."""
    import sqlite3

    from loomtui.auditrestore import restore_log

    store = log.store
    assert isinstance(store, SqliteStore)
    elsewhere = tmp_path / "elsewhere" / "real.jsonl"
    elsewhere.parent.mkdir()
    log.path.rename(elsewhere)
    log.path.symlink_to(elsewhere)
    for _ in range(2):  # damaged twice, restored twice in the same second
        elsewhere.write_bytes(elsewhere.read_bytes().replace(b"subject-2", b"subject-X"))
        restore_log(log, "lead@example.com")
    assert log.path.is_symlink() and log.verify().ok
    assert len(list(elsewhere.parent.glob("real.jsonl.damaged-*"))) == 2
    with sqlite3.connect(store.path) as db:
        db.execute("DELETE FROM audit WHERE seq > 5")
    elsewhere.write_bytes(b"".join(elsewhere.read_bytes().splitlines(keepends=True)[:5]))
    with pytest.raises(LoomError, match=r"the store's entries end before, or differ from, what the log once held"):
        restore_log(log, "lead@example.com")


def test_verify_while_others_append_never_reads_a_moved_checkpoint_as_a_cut(log: AuditLog) -> None:
    """verify read the file, then the checkpoint: a writer moving it in between made an intact log read
    "truncated" (and failed a restore that had succeeded)."""
    procs = _appending(log, 150)
    results = []
    while any(proc.is_alive() for proc in procs):
        results.append(log.verify())
    for proc in procs:
        proc.join(120)
    assert results and all(result.ok for result in results), next(r.problem for r in results if not r.ok)


def test_a_store_put_back_from_a_copy_is_not_restored_from(log: AuditLog, tmp_path: Path) -> None:
    """The store copied back from before a decision: the log held the decision's entries, whole and chained,
    and `audit restore` cut them from it (they lived on only in the copy kept aside)."""
    import shutil

    from loomtui.auditrestore import restore_log

    store = log.store
    assert isinstance(store, SqliteStore)
    store.close()
    shutil.copy(store.path, tmp_path / "backup.db")
    reopened = AuditLog(log.path, store=SqliteStore(store.path))
    reopened.append("lead@example.com", "escalation.reject", "2")
    reopened.store.close()  # type: ignore[union-attr]
    shutil.copy(tmp_path / "backup.db", store.path)
    behind = AuditLog(log.path, store=SqliteStore(store.path))
    before = log.path.read_bytes()
    with pytest.raises(LoomError, match=r"holds 1 whole entry past the store's newest .* the store is behind"):
        restore_log(behind, "lead@example.com")
    assert log.path.read_bytes() == before
