"""The state store: schema, migrations, atomic transactions, concurrency, failures."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from loomtui.errors import StoreError
from loomtui.repo import find_repo
from loomtui.store import SandboxRecord, SqliteStore, open_store
from loomtui.store.schema import SCHEMA_VERSION


def sandbox(sandbox_id: str, status: str = "planned") -> SandboxRecord:
    now = time.time()
    return SandboxRecord(id=sandbox_id, task="fix the thing", runtime="script", status=status,
                         created=now, updated=now)


def test_store_lives_under_git_common_dir_shared_by_worktrees(repo: Path) -> None:
    from tests.conftest import git

    git(repo, "worktree", "add", "-q", str(repo.parent / "wt"), "-b", "other")
    main_paths = find_repo(repo)
    worktree_paths = find_repo(repo.parent / "wt")
    assert main_paths.store_path == worktree_paths.store_path
    assert main_paths.store_path.is_relative_to(repo / ".git")
    store = open_store(main_paths)
    store.add_sandbox(sandbox("s1"))
    assert open_store(worktree_paths).get_sandbox("s1") is not None
    assert git(repo, "status", "--porcelain") == ""


def test_new_store_is_migrated_to_current_schema_in_wal_mode(tmp_path: Path) -> None:
    status = SqliteStore(tmp_path / "s.db").status()
    assert status.schema_version == SCHEMA_VERSION
    assert status.journal_mode == "wal"


def test_migration_from_an_older_schema_and_refusal_of_a_newer_one(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 0")
    conn.close()
    assert SqliteStore(path).status().schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this loomtui"):
        SqliteStore(path)
    # Upgraded by a newer loomtui while this one has it open: its writes stop (they went on, unaware).
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.close()
    store = SqliteStore(path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="upgraded it since this one started; nothing was written"):
        store.add_sandbox(sandbox("s1"))
    assert store.get_sandbox("s1") is None


def test_sandbox_roundtrip_update_and_events(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.add_sandbox(sandbox("s1"))
    updated = store.update_sandbox("s1", status="running", pid=42, data={"risk": "high"})
    assert (updated.status, updated.pid, updated.data) == ("running", 42, {"risk": "high"})
    with pytest.raises(StoreError, match="already exists"):
        store.add_sandbox(sandbox("s1"))
    kinds = [e.kind for e in store.events_since(0)]
    assert kinds == ["sandbox.added", "sandbox.updated"]
    assert store.events_since(1)[0].data == {"pid": 42, "status": "running"}


def test_failed_transaction_rolls_back_its_event(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.add_sandbox(sandbox("s1"))
            raise RuntimeError("boom")
    assert store.get_sandbox("s1") is None
    assert store.last_event_id() == 0


def test_claims_live_and_release(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    claim = store.add_claim("s1", "a.py::f", "exclusive", "why", time.time() + 60, ["a.py::f", "a.py"])
    assert claim.region_ids == ("a.py", "a.py::f")
    assert [c.id for c in store.live_claims("s1")] == [claim.id]
    assert store.release_claim(claim.id, "done") is True
    assert store.release_claim(claim.id, "again") is False
    assert store.live_claims() == []


def sandbox_escalations_read_alone(store: Any) -> None:
    """One sandbox's escalations, by kind and status, without the others' (either backend)."""
    mine = [store.add_escalation(kind, sandbox_id="s1") for kind in ("permission-request", "question", "post-gate")]
    store.add_escalation("permission-request", sandbox_id="s2")
    store.add_escalation("post-gate")  # no sandbox's
    store.update_escalation(mine[0].id, status="approved")
    assert [e.id for e in store.sandbox_escalations("s1")] == [e.id for e in mine]
    assert [e.kind for e in store.sandbox_escalations("s1", ("question", "permission-request"))] == [
        "permission-request", "question"]
    assert [e.kind for e in store.sandbox_escalations("s1", status="open")] == ["question", "post-gate"]
    assert [e.id for e in store.sandbox_escalations("s1", ("permission-request",), "approved")] == [mine[0].id]
    assert store.sandbox_escalations("s3") == []


def test_a_sandboxs_escalations_are_read_alone(tmp_path: Path) -> None:
    sandbox_escalations_read_alone(SqliteStore(tmp_path / "s.db"))


def _add_events(path: str, worker: int, count: int) -> None:
    store = SqliteStore(Path(path))
    for number in range(count):
        store.append_event("test.event", f"w{worker}", {"n": number})
    store.close()


def test_many_processes_write_without_losing_anything(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_add_events, args=(str(path), w, 200)) for w in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    events = SqliteStore(path).events_since(0, limit=10_000)
    assert len(events) == 1200
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert SqliteStore(path).integrity_problems() == []


OPEN_NEW_STORES_TOGETHER = """
import multiprocessing, sys
from pathlib import Path
from loomtui.errors import StoreError
from loomtui.store import SqliteStore

def open_new_store(path, start, answers):
    start.wait()
    try:
        SqliteStore(Path(path)).close()
        answers.put("ok")
    except StoreError as exc:
        answers.put(str(exc))

context = multiprocessing.get_context("fork")  # cheap: the race is in the first milliseconds
answers = context.Queue()
for round_number in range(60):
    path = Path(sys.argv[1]) / f"round{round_number}" / "s.db"
    start = context.Barrier(4)
    procs = [context.Process(target=open_new_store, args=(str(path), start, answers)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    got = [answers.get(timeout=5) for _ in procs]
    if got != ["ok"] * 4:
        print(round_number, got)
"""


def test_processes_opening_a_new_store_together_all_open_it(tmp_path: Path) -> None:
    """Two `sandbox new` in a fresh clone: both create the store. Switching a new file to WAL is
    answered SQLITE_BUSY at once when contended (no busy wait), and one of them used to fail. Forked from a
    fresh process: a pytest worker's heap made each of the 240 forks slow (12 s in a whole run, 1.3 s alone)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", OPEN_NEW_STORES_TOGETHER, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


CLOSE_WHILE_READING = """
import sys, threading, time
from pathlib import Path
from loomtui.errors import LoomError
from loomtui.store import SqliteStore
store = SqliteStore(Path(sys.argv[1]))
with store.transaction():
    for n in range(300):
        store.append_event("x", f"s{n}", {"n": n, "pad": "y" * 200})
for _ in range(15):
    stop = threading.Event()
    def reader():
        while not stop.is_set():
            try:
                store.events_since(0, limit=10_000)
            except LoomError:
                pass  # used after close: an error, not a crash
    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.02)
    store.close()
    stop.set()
    for thread in threads:
        thread.join()
print("ok")
"""


def test_closing_the_store_while_other_threads_read_it_waits_for_their_statements(tmp_path: Path) -> None:
    """The app's store listener may be mid-read when the app quits and the workspace is closed: closing
    a connection under a running statement crashed the interpreter (SIGSEGV). In a child process, so
    that a crash is an exit status here."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", CLOSE_WHILE_READING, str(tmp_path / "s.db")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-2000:])


def test_corrupt_store_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(StoreError, match="corrupt.*move it aside"):
        SqliteStore(path)


def test_a_directory_where_the_store_belongs_is_said_so(tmp_path: Path) -> None:
    """It read "cannot write the state store (unable to open database file)", which sends one to permissions."""
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path / "r")], check=True)
    paths = find_repo(tmp_path / "r")
    paths.store_path.mkdir(parents=True)
    with pytest.raises(StoreError, match=r"state\.db: the state store is a directory here, not a database: move it"):
        open_store(paths)


def test_locked_store_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        store = SqliteStore(path, busy_timeout=0.2)
        with pytest.raises(StoreError, match="locked by another process"):
            store.append_event("x")
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root can write anywhere")
def test_unwritable_location_is_one_clear_error(tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    with pytest.raises(StoreError):
        SqliteStore(locked / "sub" / "s.db")


def test_an_empty_store_file_beside_an_audit_log_with_entries_is_refused_not_started_anew(repo: Path) -> None:
    from loomtui.store import open_store
    from loomtui.workspace import open_workspace

    workspace = open_workspace(repo)
    workspace.record("test.step", "x")
    workspace.close()
    workspace.paths.store_path.write_bytes(b"")  # truncated: a full disk, a bad restore
    with pytest.raises(StoreError, match="the state store is empty while the audit log holds entries"):
        open_store(workspace.paths)
    assert workspace.paths.store_path.stat().st_size == 0  # nothing was written over it
    workspace.paths.audit_path.unlink()  # a store no log vouches for: a new one starts
    open_store(workspace.paths).close()


def test_a_broken_rule_other_than_a_taken_id_is_not_said_as_already_exists(tmp_path: Path) -> None:
    import time

    from loomtui.store import SandboxRecord

    store = SqliteStore(tmp_path / "s.db")
    now = time.time()
    record = SandboxRecord(id="a1", task="t", runtime="script", status="planned", created=now, updated=now)
    store.add_sandbox(record)
    with pytest.raises(StoreError, match="sandbox a1 already exists"):
        store.add_sandbox(record)
    with pytest.raises(StoreError) as broken:
        store.add_sandbox(SandboxRecord(id="b2", task="t", runtime="script", status="planned", created=now,
                                        updated=now, worktree=None))  # type: ignore[arg-type]
    assert "already exists" not in str(broken.value) and "NOT NULL" in str(broken.value)


def test_a_way_back_to_sqlite_that_fails_changes_nothing_and_one_that_works_keeps_the_old_store(repo: Path) -> None:
    from loomtui.store.moves import record_move, replace_sqlite_store, store_move

    paths = find_repo(repo)
    old = open_store(paths)
    old.add_sandbox(SandboxRecord(id="before", task="t", runtime="script", status="archived", created=0, updated=0))
    old.close()
    record_move(paths, "postgresql://loom@db/team")
    with pytest.raises(StoreError, match=r"copied to postgresql://loom@db/team on .* store copy --to sqlite"):
        open_store(paths, reads_only=True)

    def fails(new: SqliteStore) -> None:
        new.add_sandbox(SandboxRecord(id="half", task="t", runtime="script", status="archived", created=0,
                                      updated=0))
        raise StoreError("the copy did not match")

    with pytest.raises(StoreError, match="did not match"):
        replace_sqlite_store(paths, fails)
    assert store_move(paths) is not None and sorted(p.name for p in paths.state_dir.glob("state.db*")) == [
        "state.db"]
    record = SqliteStore(paths.store_path)
    assert [r.id for r in record.list_sandboxes(include_archived=True)] == ["before"]
    record.close()

    held = SqliteStore(paths.store_path)  # a process still writing it: its write-ahead log holds pages
    held.add_sandbox(SandboxRecord(id="late", task="t", runtime="script", status="archived", created=0, updated=0))
    copied: list[SqliteStore] = []
    with pytest.raises(StoreError, match="is open, or was not closed cleanly"):
        replace_sqlite_store(paths, copied.append)
    assert copied == []  # said before the copy is made, not after
    held.close()
    assert sorted(p.name for p in paths.state_dir.glob("state.db*")) == ["state.db"]

    def fills(new: SqliteStore) -> str:
        new.add_sandbox(SandboxRecord(id="after", task="t", runtime="script", status="archived", created=0,
                                      updated=0))
        return "filled"

    filled, aside = replace_sqlite_store(paths, fills)
    assert filled == "filled" and aside is not None and store_move(paths) is None
    _again, second = replace_sqlite_store(paths, fills)  # within the same second: both old stores kept
    assert second is not None and second != aside and second.is_file() and aside.is_file()
    back = open_store(paths)
    assert [r.id for r in back.list_sandboxes(include_archived=True)] == ["after"]
    back.close()
    kept = SqliteStore(aside)
    assert [r.id for r in kept.list_sandboxes(include_archived=True)] == ["before", "late"]
    kept.close()


def test_live_claims_with_reason_finds_the_text_as_it_is(tmp_path: Path) -> None:
    """A rule looking for a few claims by their reason (the provisional ones a hook lets go of) read every live
    claim, 5,000 at scale, inside each claim's write transaction: the store finds them, the text taken as it
    is (`_` and `%` are not patterns), released ones left out."""
    store = SqliteStore(tmp_path / "s.db")
    expires = time.time() + 600
    with store.transaction():
        wanted = store.add_claim("a", "x.py", "exclusive", "edit (awaiting tool call t_1)", expires, ["x.py"])
        store.add_claim("b", "y.py", "exclusive", "edit (awaiting tool call tx1)", expires, ["y.py"])
        store.add_claim("c", "z.py", "exclusive", "50% off", expires, ["z.py"])
        gone = store.add_claim("d", "w.py", "exclusive", "edit (awaiting tool call t_1)", expires, ["w.py"])
    store.release_claim(gone.id, "done")
    assert [c.id for c in store.live_claims_with_reason("(awaiting tool call t_1)")] == [wanted.id]
    assert [c.region_ids for c in store.live_claims_with_reason("0% o")] == [("z.py",)]
    assert store.live_claims_with_reason("5_%") == []
    store.close()
