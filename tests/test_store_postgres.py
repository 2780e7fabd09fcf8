"""The store on PostgreSQL: the same answers as SQLite, one namespace per repository shared by
its clones, racing claims across processes and machines, NOTIFY across processes, and faults
(the database down, bad credentials, a newer schema, a connection killed mid-run).

Everything runs against a real server (tests/postgres_cluster.py), never a mock.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from loomtui.audit import AuditLog
from loomtui.coordination.claims import ClaimRefused
from loomtui.errors import StoreError
from loomtui.governance.coordinator import governed_coordinator
from loomtui.repo import find_repo
from loomtui.store import SandboxRecord, SqliteStore, Store, open_store, repository_namespace
from loomtui.store.postgres import PostgresStore, redact, scrub
from loomtui.store.schema import SCHEMA_VERSION
from loomtui.workspace import open_workspace
from tests.conftest import git
from tests.postgres_cluster import USER, Cluster

QUOTE = "payments/refunds.py::RefundService.quote"
TIMES = ("created", "updated", "ts", "expires", "released", "started", "finished", "heartbeat")


def _sandbox(sandbox_id: str) -> SandboxRecord:
    now = time.time()
    return SandboxRecord(id=sandbox_id, task="fix the thing", runtime="script", status="planned",
                         created=now, updated=now, host="here")


def _plain(value: Any) -> Any:
    """A record with its clock fields blanked, to compare two backends' answers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: (None if k in TIMES else _plain(v)) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: (None if k in TIMES else _plain(v)) for k, v in value.items()}
    return value


def _exercise(store: Store) -> list[Any]:
    """Every kind of write and read the engines use, and what each answered."""
    seen: list[Any] = []
    store.add_sandbox(_sandbox("s1"))
    store.add_sandbox(_sandbox("s2"))
    with pytest.raises(StoreError, match="already exists"):
        store.add_sandbox(_sandbox("s1"))
    seen.append(store.update_sandbox("s1", status="running", pid=123, data={"agent_result": {"tokens": 9},
                                                                           "ended_at": 5.0}))
    seen.append(store.heartbeat_sandbox("s1", 7.0, {"beat": 1}))
    far = time.time() + 3600
    first = store.add_claim("s1", "a.py::f", "exclusive", "edit", far, ["a.py::f", "a.py::f", "a.py"])
    store.add_claim("s2", "b.py", "shared", "read", far, ["b.py"])
    seen += [first, store.live_claims_on(["a.py"]), store.live_claims("s2"), store.set_claim_reason(first.id, "x")]
    seen += [store.live_claims_under(["a.py"]), store.live_claims_under(["a.py::f", "b.py"])]
    assert [c.id for c in seen[-2]] == [first.id] and seen[-1] == []  # by name, never a sibling's ("a.py::f2")
    seen += [store.release_claim(first.id, "done"), store.release_claim(first.id, "again"), store.all_claims()]
    seen += [store.sandbox_claims("s1"), store.sandboxes_with_prefix("s"), store.sandboxes_with_prefix("s2"),
             store.sandboxes_with_prefix("s%")]
    seen.append(store.stale_claims(far + 1, ["merged"]))
    escalation = store.add_escalation("post-gate", sandbox_id="s1", risk="high", summary="look", data={"a": 1})
    seen += [escalation, store.update_escalation(escalation.id, status="approved", data={"b": 2})]
    seen += [store.list_escalations("approved"), store.list_escalations("open")]
    run = store.add_gate_run("s1", "tests", "c0ffee", data={"blocking": True})
    seen.append(store.update_gate_run(run.id, {"progress": 1}))
    store.finish_gate_run(run.id, "failed", {"blocking": True, "summary": "1 failed"})
    seen += [store.gate_runs("s1"), store.update_gate_run(run.id, {"late": 1})]
    shared, mine = store.take_shared_run("baseline", "c0ffee", "tests", "fp", {"pid": 1}, lambda _: False)
    seen += [shared, mine, store.take_shared_run("baseline", "c0ffee", "tests", "fp", {"pid": 2}, lambda _: True)[1]]
    report = store.add_eval_report("s1", "sandbox", "c0ffee", "fp", {"regressions": ["t1", "t2"]})
    seen += [report, store.latest_eval_report("s1", "sandbox"), store.latest_eval_report_ids("sandbox")]
    seen += [store.eval_outcomes_between("sandbox", 0, far), store.first_gate_outcomes(0, far)]
    seen += [sorted(store.sandbox_facts(["s1", "s2", "nope"]), key=lambda f: f.id)]
    seen += [store.take_step_lease("s1", "me", "merge", is_gone=lambda _: False),
             store.take_step_lease("s1", "you", "merge", is_gone=lambda _: False),
             store.take_step_lease("s1", "you", "merge", is_gone=lambda _: True), store.step_lease("s1")]
    store.drop_step_lease("s1", "you")
    seen.append(store.step_lease("s1"))
    with store.transaction():
        store.add_audit_entries([(1, "h1", '{"seq": 1}'), (2, "h2", '{"seq": 2}')])
    store.set_audit_checkpoint(2, "h2")
    store.set_audit_checkpoint(1, "h1")  # never backwards
    seen += [store.audit_head(), store.audit_entries_after(1), store.audit_checkpoint(), store.audit_bounds()]
    with pytest.raises(RuntimeError), store.transaction():
        store.append_event("rolled.back")
        raise RuntimeError("roll it back")
    seen += [[(e.kind, e.subject, e.data) for e in store.events_since(0)], store.holds_records()]
    seen.append(store.integrity_problems())
    return seen


def test_both_backends_give_the_same_answers(tmp_path: Path, postgres_url: str) -> None:
    sqlite = SqliteStore(tmp_path / "s.db")
    postgres = PostgresStore(postgres_url, "loom_same", mirror="here")
    try:
        assert _plain(_exercise(postgres)) == _plain(_exercise(sqlite))
        assert postgres.status().counts == sqlite.status().counts
    finally:
        postgres.close()


def test_clones_share_one_namespace_and_a_claim_in_one_is_enforced_in_the_other(
        billing_clones: tuple[Path, Path], postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOMTUI_STORE", postgres_url)
    first, second = billing_clones
    assert repository_namespace(find_repo(first)) == repository_namespace(find_repo(second))
    monkeypatch.setenv("LOOMTUI_HOST", "laptop-a")
    mine = governed_coordinator(open_workspace(first))
    mine.claim("s-a", QUOTE)
    monkeypatch.setenv("LOOMTUI_HOST", "laptop-b")
    theirs = governed_coordinator(open_workspace(second))
    with pytest.raises(ClaimRefused, match="s-a"):
        theirs.claim("s-b", QUOTE)
    assert [c.sandbox_id for c in theirs.store.live_claims()] == ["s-a"]
    assert not (first / ".git" / "loom" / "state.db").exists()  # nothing written locally instead
    # Each machine mirrors the one audit table into its own log file, and each verifies.
    for workspace in (mine.workspace, theirs.workspace):
        assert workspace.audit.verify().ok
        assert [e.action for e in workspace.audit.entries()] == ["claim.added", "claim.refused"]


def test_a_sandboxs_escalations_are_read_alone_on_postgresql(postgres_url: str) -> None:
    from tests.test_store import sandbox_escalations_read_alone

    sandbox_escalations_read_alone(PostgresStore(postgres_url, "loom_by_sandbox", mirror="here"))


@pytest.fixture
def billing_clones(tmp_path: Path) -> tuple[Path, Path]:
    from tests.conftest import demo_repo

    origin = demo_repo(tmp_path)
    clones = (tmp_path / "a" / "billing", tmp_path / "b" / "billing")
    for clone in clones:
        git(tmp_path, "clone", "-q", str(origin), str(clone))
    return clones


def _race(repo: str, url: str, host: str, sandbox: str, barrier: Any, results: Any) -> None:
    os.environ["LOOMTUI_STORE"], os.environ["LOOMTUI_HOST"] = url, host
    coordinator = governed_coordinator(open_workspace(repo))
    barrier.wait(120)  # a racer that died before it breaks the barrier: the test fails, never hangs
    try:
        coordinator.claim(sandbox, QUOTE)
        results.put(f"won:{sandbox}")
    except ClaimRefused:
        results.put(f"refused:{sandbox}")


def test_racing_exclusive_claims_from_two_machines_exactly_one_wins(
        billing_clones: tuple[Path, Path], postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    context = multiprocessing.get_context("spawn")
    racers = 12
    barrier = context.Barrier(racers)
    results = context.Queue()
    procs = [context.Process(target=_race, args=(str(billing_clones[n % 2]), postgres_url, f"host-{n % 2}",
                                                 f"s{n}", barrier, results)) for n in range(racers)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    assert sum(o.startswith("won:") for o in outcomes) == 1, outcomes
    monkeypatch.setenv("LOOMTUI_STORE", postgres_url)
    workspace = open_workspace(billing_clones[0])
    assert len(workspace.store.live_claims()) == 1
    assert workspace.audit.verify().ok
    actions = [e.action for e in workspace.audit.entries()]
    assert actions.count("claim.added") == 1 and actions.count("claim.refused") == racers - 1
    assert workspace.store.integrity_problems() == []


_LISTEN = """
import sys, time
from loomtui.store.postgres import PostgresStore
store = PostgresStore(sys.argv[1], "loom_live", mirror="lead")
last = store.last_event_id()
print("listening", flush=True)
while True:
    if store.wait_for_events(last, 10):
        for event in store.events_since(last):
            if event.kind == "escalation.opened":
                print(f"{time.time():.6f}", flush=True)
                sys.exit(0)
            last = event.id
"""


def test_an_escalation_opened_on_one_machine_reaches_a_lead_elsewhere_without_polling(postgres_url: str) -> None:
    agent = PostgresStore(postgres_url, "loom_live", mirror="agent")
    lead = subprocess.Popen([sys.executable, "-c", _LISTEN, postgres_url], stdout=subprocess.PIPE, text=True)
    try:
        assert lead.stdout is not None and lead.stdout.readline().strip() == "listening"
        time.sleep(0.3)  # the lead is blocked in wait_for_events, reading nothing
        before = _activity(postgres_url)
        time.sleep(1.0)
        assert _activity(postgres_url) == before  # no connection ran anything: no table read on a timer
        agent.append_event("sandbox.updated", "other")
        opened = time.time()
        agent.add_escalation("post-gate", sandbox_id="s1")
        seen = float(lead.stdout.readline())
        assert lead.wait(10) == 0
        assert seen - opened < 1.0
    finally:
        lead.kill()
        agent.close()


def _activity(url: str) -> list[tuple[Any, ...]]:
    """Each loomtui connection's last statement and when its state last changed."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT pid, query, state, state_change FROM pg_stat_activity "
                            "WHERE application_name = 'loomtui' ORDER BY pid").fetchall()


def test_waiting_with_nothing_new_times_out(postgres_url: str) -> None:
    store = PostgresStore(postgres_url, "loom_quiet", mirror="x")
    try:
        store.append_event("before")
        started = time.monotonic()
        assert store.wait_for_events(store.last_event_id(), 0.5) is False
        assert time.monotonic() - started >= 0.45
        assert store.wait_for_events(0, 5) is True  # an event it had not seen: at once
    finally:
        store.close()


def test_the_database_down_at_start_is_one_line_naming_the_url_without_the_password(
        repo: Path, monkeypatch: pytest.MonkeyPatch, postgres_cluster: Cluster) -> None:
    from tests.postgres_cluster import _free_port

    url = f"postgresql://loom:s3cret@127.0.0.1:{_free_port()}/team"
    monkeypatch.setenv("LOOMTUI_STORE", url)
    result = subprocess.run([sys.executable, "-m", "loomtui", "status"], cwd=repo, capture_output=True, text=True)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "postgresql://loom@127.0.0.1" in result.stderr and "s3cret" not in result.stderr
    assert not (repo / ".git" / "loom" / "state.db").exists()  # nothing written locally instead


def test_bad_credentials_are_one_line(repo: Path, postgres_cluster: Cluster, postgres_url: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = postgres_url.replace(postgres_cluster.password, "wrong-password")
    monkeypatch.setenv("LOOMTUI_STORE", wrong)
    result = subprocess.run([sys.executable, "-m", "loomtui", "status"], cwd=repo, capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "refused the credentials" in result.stderr and "wrong-password" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_schema_newer_than_this_loomtui_is_refused_with_no_writes(postgres_url: str) -> None:
    PostgresStore(postgres_url, "loom_new", mirror="x").close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"UPDATE loom_new.schema_version SET version = {SCHEMA_VERSION + 1}")
        before = conn.execute("SELECT last_seen FROM loomtui.repositories WHERE namespace = 'loom_new'").fetchone()
    with pytest.raises(StoreError, match="newer than this loomtui") as refused:
        PostgresStore(postgres_url, "loom_new", mirror="x")
    assert "\n" not in str(refused.value)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        after = conn.execute("SELECT last_seen FROM loomtui.repositories WHERE namespace = 'loom_new'").fetchone()
    assert after == before


def test_a_role_that_may_only_read_reads_and_is_told_plainly_why_it_cannot_write(
        postgres_url: str, postgres_cluster: Cluster) -> None:
    """A write said "state store error: permission denied for table sandboxes" (SQLite's read-only store
    says "cannot write the state store")."""
    PostgresStore(postgres_url, "loom_ro", mirror="x").close()
    database = postgres_url.rsplit("/", 1)[1]
    reader = f"reader_{database}"  # roles are the cluster's, shared by every test of this worker
    postgres_cluster.admin(f"CREATE ROLE {reader} LOGIN PASSWORD 'readpw'")
    postgres_cluster.admin(f"GRANT CONNECT ON DATABASE {database} TO {reader}")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for schema in ("loom_ro", "loomtui"):
            conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {reader}")
            conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {reader}")
    url = postgres_url.replace(f"{USER}:{postgres_cluster.password}", f"{reader}:readpw")
    assert f"{reader}:readpw" in url
    store = PostgresStore(url, "loom_ro", mirror="x")
    try:
        assert store.list_sandboxes() == []
        with pytest.raises(StoreError) as refused:
            store.add_sandbox(_sandbox("s1"))
        said = str(refused.value)
        assert "cannot write the state store (the database role may only read it" in said and "readpw" not in said
    finally:
        store.close()


def test_a_store_upgraded_by_a_newer_loomtui_while_this_one_runs_takes_no_more_writes(postgres_url: str) -> None:
    """One lead upgraded loomtui (which migrates); another's app, open, merged into the newer store."""
    store = PostgresStore(postgres_url, "loom_upgraded", mirror="x")
    try:
        store.add_sandbox(_sandbox("s1"))
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"UPDATE loom_upgraded.schema_version SET version = {SCHEMA_VERSION + 1}")
        with pytest.raises(StoreError, match="a newer loomtui upgraded it since this one started; nothing was"):
            store.add_sandbox(_sandbox("s2"))
        assert store.get_sandbox("s2") is None and store.get_sandbox("s1") is not None  # reads still answer
    finally:
        store.close()


def test_a_connection_killed_mid_run_is_replaced_on_the_next_call(postgres_url: str) -> None:
    store = PostgresStore(postgres_url, "loom_kill", mirror="x")
    try:
        store.add_sandbox(_sandbox("s1"))
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'loomtui' AND pid <> pg_backend_pid()")
        assert store.get_sandbox("s1") is not None
        store.add_sandbox(_sandbox("s2"))
        assert [s.id for s in store.list_sandboxes()] == ["s2", "s1"] or len(store.list_sandboxes()) == 2
    finally:
        store.close()


def test_the_url_is_never_shown_with_its_password(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact("postgresql://loom:pw@db.internal:5432/team") == "postgresql://loom@db.internal:5432/team"
    assert redact("postgresql://db/team?password=pw&sslpassword=k&sslmode=require") == \
        "postgresql://db/team?sslmode=require"
    # A local socket's URL as written: it read `postgresql:/team?host=%2Frun%2Fpostgresql`.
    assert redact("postgresql:///team?host=/run/postgresql&pass%77ord=pw") == "postgresql:///team?host=/run/postgresql"
    # A URL libpq cannot even parse: its message quotes the password back; ours does not.
    monkeypatch.setenv("LOOMTUI_STORE", "postgresql://loom:s3cr%zzet@127.0.0.1:1/team")
    result = subprocess.run([sys.executable, "-m", "loomtui", "status"], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 2 and "s3cr" not in result.stderr and len(result.stderr.splitlines()) == 1, \
        result.stderr


def test_a_short_password_is_blanked_where_it_stands_whole_not_inside_other_words() -> None:
    url = "postgresql://u:p@127.0.0.1:1/x"
    said = scrub('connection to server at "127.0.0.1", port 1 failed: password "p" rejected', url)
    assert said == 'connection to server at "127.0.0.1", port 1 failed: password "***" rejected'


def test_a_nul_from_an_agents_output_neither_fails_a_write_nor_a_report(postgres_url: str) -> None:
    store = PostgresStore(postgres_url, "loom_nul", mirror="x")
    try:
        record = store.add_escalation("question", summary="tests printed a\x00b", data={"output": "x\x00y"})
        assert record.summary == "tests printed a\ufffdb" and record.data["output"] == "x\ufffdy"
        store.add_sandbox(dataclasses.replace(_sandbox("s1"), data={"output_tail": "\x00", "ended_at": 3.0}))
        assert [f.ended_at for f in store.sandbox_facts(["s1"])] == [3.0]
        assert store.sandbox_facts_between(0, time.time() + 10)[0].id == "s1"
    finally:
        store.close()


def test_a_connection_lost_inside_a_transaction_fails_it_whole(postgres_url: str) -> None:
    store = PostgresStore(postgres_url, "loom_lost", mirror="x")
    try:
        with pytest.raises(StoreError, match="lost in the middle of a transaction|cannot reach"), \
                store.transaction():
            store.append_event("first")
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = 'loomtui' AND pid <> pg_backend_pid()")
            store.append_event("second")
            store.append_event("third")
        assert [e.kind for e in store.events_since(0)] == []  # nothing of it was committed
        store.append_event("after")  # and the store goes on, on a new connection
        assert [e.kind for e in store.events_since(0)] == ["after"]
    finally:
        store.close()


def test_a_password_in_loom_yaml_is_refused_at_its_line(repo: Path) -> None:
    (repo / ".loom").mkdir(exist_ok=True)
    (repo / ".loom" / "loom.yaml").write_text("version: 1\nstore: postgresql://loom:pw@db/team\n")
    result = subprocess.run([sys.executable, "-m", "loomtui", "config", "check"], cwd=repo,
                            capture_output=True, text=True)
    assert result.returncode == 2 and ".loom/loom.yaml:2" in result.stderr and "PGPASSWORD" in result.stderr


def test_a_sandbox_cannot_point_the_store_elsewhere_from_its_worktree(repo: Path, tmp_path: Path) -> None:
    """`store:` is read from the main checkout: an agent editing its worktree's loom.yaml changes nothing."""
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt"), "-b", "agent")
    (tmp_path / "wt" / ".loom").mkdir(exist_ok=True)
    (tmp_path / "wt" / ".loom" / "loom.yaml").write_text("store: postgresql://attacker@127.0.0.1:9/x\n")
    store = open_store(find_repo(tmp_path / "wt"))
    assert isinstance(store, SqliteStore) and store.path == find_repo(repo).store_path


def test_an_audit_log_on_two_machines_each_verifies_and_a_cut_is_still_caught(
        tmp_path: Path, postgres_url: str) -> None:
    one = PostgresStore(postgres_url, "loom_audit", mirror="a:/log")
    two = PostgresStore(postgres_url, "loom_audit", mirror="b:/log")
    try:
        log_one, log_two = AuditLog(tmp_path / "a.jsonl", store=one), AuditLog(tmp_path / "b.jsonl", store=two)
        for number in range(3):
            log_one.append("lead", "step", str(number))
        log_two.append("agent", "step", "3")
        first = log_one.verify()  # the other machine's entry is said as what it is, not a crash's recovery
        assert first.ok and log_two.verify().ok
        assert any(note.startswith("copied 1 entry into this machine's log (seq 4-4), committed since by other machines") for note in first.notes), first
        assert [e.seq for e in log_two.entries()] == [1, 2, 3, 4] == [e.seq for e in log_one.entries()]
        lines = (tmp_path / "a.jsonl").read_text().splitlines(keepends=True)
        (tmp_path / "a.jsonl").write_text("".join(lines[:2]))
        result = log_one.verify()
        assert not result.ok and "truncated" in result.problem
    finally:
        one.close()
        two.close()


def test_a_store_copy_cut_short_before_its_note_is_finished_by_running_it_again(
        billing_clones: tuple[Path, Path], postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after the team's store committed the copy, before the note: the clone went on writing its SQLite
    store, and `store copy` again was refused ("already holds records"), with no command to empty it."""
    import json

    from loomtui.store import moves
    from tests.conftest import run_cli

    repo = billing_clones[0]
    workspace = open_workspace(repo)
    governed_coordinator(workspace).claim("s-a", QUOTE)
    workspace.close()
    noted = moves.record_move

    def killed(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(moves, "record_move", killed)
    assert run_cli(repo, "store", "copy", "--to", postgres_url).returncode != 0
    monkeypatch.setattr(moves, "record_move", noted)
    again = run_cli(repo, "store", "copy", "--to", postgres_url, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["verified"], again.stderr
    stale = run_cli(repo, "claim", "list")  # the SQLite store is no longer opened: the note was written
    assert stale.returncode == 1 and "was copied to" in stale.stderr
    monkeypatch.setenv("LOOMTUI_STORE", postgres_url)
    team = open_workspace(repo)
    try:
        assert [c.sandbox_id for c in team.store.live_claims()] == ["s-a"] and team.audit.verify().ok
    finally:
        team.close()
    monkeypatch.delenv("LOOMTUI_STORE")
    # Another clone's own store, which is not that copy: refused, as ever (it would mix two histories).
    other = billing_clones[1]
    workspace = open_workspace(other)
    governed_coordinator(workspace).claim("s-b", QUOTE)
    workspace.close()
    mixed = run_cli(other, "store", "copy", "--to", postgres_url)
    assert mixed.returncode == 2 and "already holds records for this repository" in mixed.stderr, mixed.stderr


def test_store_copy_moves_everything_verifies_it_the_audit_log_keeps_verifying_and_it_comes_back(
        billing_clones: tuple[Path, Path], postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    repo = billing_clones[0]
    coordinator = governed_coordinator(open_workspace(repo))  # some history on SQLite first
    coordinator.claim("s-a", QUOTE)
    with pytest.raises(ClaimRefused):
        coordinator.claim("s-b", QUOTE)
    coordinator.store.add_escalation("post-gate", sandbox_id="s-a", summary="look")
    before = list(coordinator.workspace.audit.entries())
    # Not while an agent is at work: its supervisor would go on writing the old store and the log's file.
    from loomtui.store import SandboxRecord

    coordinator.store.add_sandbox(SandboxRecord(id="live01", task="t", runtime="script", status="running",
                                                created=0.0, updated=0.0))
    busy = subprocess.run([sys.executable, "-m", "loomtui", "store", "copy", "--to", postgres_url],
                          cwd=repo, capture_output=True, text=True)
    assert busy.returncode == 1 and "sandboxes are at work on this store: live01 (running)" in busy.stderr
    coordinator.store.update_sandbox("live01", status="archived")
    copied = subprocess.run([sys.executable, "-m", "loomtui", "store", "copy", "--to", postgres_url, "--json"],
                            cwd=repo, capture_output=True, text=True)
    assert copied.returncode == 0, copied.stderr
    report = json.loads(copied.stdout)
    assert report["verified"] and report["rows"]["audit"] == len(before) and report["rows"]["claims"] == 1
    assert "s3cret" not in copied.stdout and postgres_url not in copied.stdout  # no password shown
    # A writer that opened the SQLite store before the copy writes nothing after it (it was lost to the team's
    # store, whose log then read BROKEN here).
    with pytest.raises(StoreError, match=f"was copied to {report['destination']}"):
        coordinator.claim("s-z", "payments/currency.py::round_minor_units")
    coordinator.workspace.close()
    # The SQLite store is left as it was, and not opened as if it were current: its claims and escalations
    # would silently be those of the day of the copy.
    stale = subprocess.run([sys.executable, "-m", "loomtui", "claim", "list"], cwd=repo, capture_output=True,
                           text=True)
    assert stale.returncode == 1 and stale.stderr.count("\n") == 1 and "Traceback" not in stale.stderr
    assert f"was copied to {report['destination']}" in stale.stderr and "store copy --to sqlite" in stale.stderr
    assert "s3cret" not in stale.stderr
    # Another database (a mistyped name) holds none of it: said, not made as a second, empty team store.
    other = postgres_url.rsplit("/", 1)[0] + "/postgres"
    typo = subprocess.run([sys.executable, "-m", "loomtui", "store", "migrate"], cwd=repo, capture_output=True,
                          text=True, env={**os.environ, "LOOMTUI_STORE": other})
    assert typo.returncode != 0 and typo.stderr.count("\n") == 1, typo.stderr
    assert "holds no store of this repository" in typo.stderr and f"copied to {report['destination']}" in typo.stderr
    with psycopg.connect(other) as conn:
        namespace = repository_namespace(find_repo(repo))
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (namespace,)).fetchone() is None

    monkeypatch.setenv("LOOMTUI_STORE", postgres_url)
    workspace = open_workspace(repo)
    assert isinstance(workspace.store, PostgresStore)
    assert workspace.audit.verify().ok and [e.hash for e in workspace.audit.entries()] == [e.hash for e in before]
    assert workspace.store.audit_checkpoint() == (before[-1].seq, before[-1].hash)
    new = governed_coordinator(workspace).claim("s-c", "payments/currency.py::round_minor_units")
    assert new.claim.id == 2  # ids go on from the copied ones
    assert workspace.audit.verify().ok
    again = subprocess.run([sys.executable, "-m", "loomtui", "store", "copy", "--to", postgres_url],
                           cwd=repo, capture_output=True, text=True)
    assert again.returncode == 2 and "this repository's store is that store already" in again.stderr
    repos = subprocess.run([sys.executable, "-m", "loomtui", "store", "repos", "--json"], cwd=repo,
                           capture_output=True, text=True, env={**os.environ, "LOOMTUI_STORE": postgres_url})
    assert [(r["name"], r["open_escalations"]) for r in json.loads(repos.stdout)] == [("billing", 1)]
    listed = subprocess.run([sys.executable, "-m", "loomtui", "store", "repos"], cwd=repo, capture_output=True,
                            text=True, env={**os.environ, "LOOMTUI_STORE": postgres_url})
    assert "billing" in listed.stdout and " 1 open escalation " in listed.stdout and "(s)" not in listed.stdout

    # Leaving waits for this machine's sandboxes to be done with (one left behind kept its claims and escalation
    # in the team's queue, no clone able to end it), and for them only (another's agent kept a clone in for good).
    from loomtui.identity import current_host

    workspace.store.add_sandbox(dataclasses.replace(_sandbox("theirs"), status="running", host="build-2"))
    workspace.store.add_sandbox(dataclasses.replace(_sandbox("mine01"), status="awaiting_review",
                                                    host=current_host()))
    waiting = subprocess.run([sys.executable, "-m", "loomtui", "store", "copy", "--to", "sqlite"], cwd=repo,
                             capture_output=True, text=True)
    assert waiting.returncode == 1 and "sandboxes are not done with on the team's store: mine01 (awaiting_review)" \
        in waiting.stderr and "theirs" not in waiting.stderr, waiting.stderr
    workspace.store.update_sandbox("mine01", status="archived")
    # This clone's by its branch too, whatever host name it was recorded under (LOOMTUI_HOST in one shell only).
    git(repo, "branch", "loom/mine02")
    workspace.store.add_sandbox(dataclasses.replace(_sandbox("mine02"), status="awaiting_review",
                                                    host="laptop-in-docker", branch="loom/mine02"))
    renamed = subprocess.run([sys.executable, "-m", "loomtui", "store", "copy", "--to", "sqlite"], cwd=repo,
                             capture_output=True, text=True)
    assert renamed.returncode == 1 and "mine02 (awaiting_review)" in renamed.stderr, renamed.stderr
    workspace.store.update_sandbox("mine02", status="archived")
    # And back: the team's store (with the claim made there) into a new SQLite store; the old one is kept.
    here = subprocess.run([sys.executable, "-m", "loomtui", "store", "copy", "--to", "sqlite", "--json"], cwd=repo,
                          capture_output=True, text=True)
    assert here.returncode == 0, here.stderr
    back = json.loads(here.stdout)
    assert back["verified"] and back["rows"]["claims"] == 2 and back["destination"].endswith("state.db")
    old_store = Path(back["previous_store"])
    assert old_store.name.startswith("state.db.before-") and old_store.is_file()
    monkeypatch.delenv("LOOMTUI_STORE")
    workspace.close()
    sqlite_again = open_workspace(repo)
    try:
        assert isinstance(sqlite_again.store, SqliteStore)
        assert [c.sandbox_id for c in sqlite_again.store.live_claims()] == ["s-a", "s-c"]
        assert sqlite_again.audit.verify().ok
        # Its log named apart from the team's from here on: both lines' anchors met in one main branch and each
        # clone's `audit verify` read the other's as this log rewritten.
        from loomtui.auditanchor import configured_log_id, log_id, log_identity

        entries = list(sqlite_again.audit.entries())
        assert entries[-1].action == "audit.forked" and "s3cret" not in json.dumps(entries[-1].details)
        assert log_identity(entries) == log_id(entries[-1].hash) != log_id(entries[0].hash)
        assert configured_log_id(repo) == log_identity(entries)
        governed_coordinator(sqlite_again).claim("s-d", "payments/currency.py::format_amount")
        assert sqlite_again.audit.verify().ok
    finally:
        sqlite_again.close()
    twice = subprocess.run([sys.executable, "-m", "loomtui", "store", "copy", "--to", "sqlite"], cwd=repo,
                           capture_output=True, text=True)
    assert twice.returncode == 1 and "SQLite already" in twice.stderr
    # Its audit log goes its own way now, beside the team's under one log id: the team's store, opened
    # again from this clone (loom.yaml still names it on every clone), met a log that disagreed with it:
    # `audit verify` BROKEN, and every decision taken elsewhere read as written into the store by hand.
    rejoined = subprocess.run([sys.executable, "-m", "loomtui", "claim", "list"], cwd=repo, capture_output=True,
                              text=True, env={**os.environ, "LOOMTUI_STORE": postgres_url})
    assert rejoined.returncode == 1 and rejoined.stderr.count("\n") == 1, rejoined.stderr
    assert "this clone left the team's store" in rejoined.stderr and "set LOOMTUI_STORE=sqlite here" in rejoined.stderr
    assert "s3cret" not in rejoined.stderr


def test_bench_store_reports_every_figure_on_postgresql(postgres_url: str) -> None:
    import json

    result = subprocess.run([sys.executable, "-m", "loomtui", "bench", "store", "--store", postgres_url,
                             "--rounds", "2", "--escalations", "3", "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["backend"] == "postgresql" and figures["claims"] == 5000
    assert figures["race_rounds_with_exactly_one_winner"] == 2 and figures["race_processes"] == 32
    assert figures["claim_check_p99_ms"] > 0 and figures["escalation_to_listener_max_ms"] > 0
    with psycopg.connect(postgres_url) as conn:  # the scratch namespace is gone
        assert conn.execute("SELECT count(*) FROM loomtui.repositories").fetchone() == (0,)


def test_an_agents_hook_fails_closed_when_the_team_store_is_unreachable(tmp_path: Path) -> None:
    from tests.conftest import demo_repo
    from tests.postgres_cluster import _free_port
    from tests.test_hooks import GET_LINE, LOOMTUI, clean_env, edit

    billing = demo_repo(tmp_path)
    data = edit(billing, GET_LINE, GET_LINE.replace("get", "find"))
    down = f"postgresql://loom:pw@127.0.0.1:{_free_port()}/team"
    done = subprocess.run([*LOOMTUI, "hook", "claude"], input=json.dumps(data), capture_output=True, text=True,
                          cwd=billing, env=clean_env(LOOMTUI_STORE=down), timeout=60)
    assert done.returncode == 2 and done.stdout == "", done.stdout  # Claude Code blocks the edit on exit 2
    assert done.stderr.startswith("loomtui: denied: ") and "cannot reach the database" in done.stderr
    assert "pw@" not in done.stderr and done.stderr.count("\n") == 1
    assert not (billing / ".git" / "loom" / "state.db").exists()


_NEWER_LOOMTUI = """
import sys
from loomtui.store import postgres, schema
postgres.MIGRATIONS = [*schema.MIGRATIONS, "CREATE TABLE probe (x INTEGER)"]
postgres.SCHEMA_VERSION = schema.SCHEMA_VERSION + 1
postgres.PostgresStore(sys.argv[1], "loom_racing", mirror="x").close()
"""
"""A loomtui one migration newer than this one, opening the store (which migrates it)."""


def test_a_migration_waits_for_a_write_in_flight_and_the_next_write_is_refused(postgres_url: str) -> None:
    """The migrator took a lock of its own, not the namespace's writers' lock: an older loomtui's write
    ran beside the newer one's DDL, and the writes after it went on into the upgraded schema."""
    store = PostgresStore(postgres_url, "loom_racing", mirror="x")
    try:
        with psycopg.connect(postgres_url, autocommit=True) as watcher, store.transaction():
            store.add_sandbox(_sandbox("s1"))
            newer = subprocess.Popen([sys.executable, "-c", _NEWER_LOOMTUI, postgres_url])
            try:
                while not watcher.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                          "AND NOT granted").fetchone()[0]:
                    assert newer.poll() is None, "the migration ran while a write was in flight"
                    time.sleep(0.05)
            except BaseException:
                newer.kill()
                raise
        assert newer.wait(timeout=60) == 0  # once the write committed
        with pytest.raises(StoreError, match="a newer loomtui upgraded it since this one started"):
            store.add_sandbox(_sandbox("s2"))
        assert store.get_sandbox("s1") is not None and store.get_sandbox("s2") is None
    finally:
        store.close()


def test_a_writer_held_past_the_lock_timeout_is_said_as_busy_not_as_the_database_down(postgres_url: str) -> None:
    """60 writers from two clones: some waited out the lock and were told `cannot reach the database`."""
    from loomtui.errors import StoreBusy

    store = PostgresStore(postgres_url, "loom_busy", mirror="x", timeout=0.5)
    other = PostgresStore(postgres_url, "loom_busy", mirror="x", timeout=0.5)
    try:
        with store.transaction():
            store.add_sandbox(_sandbox("s1"))
            with pytest.raises(StoreError) as busy:
                other.add_sandbox(_sandbox("s2"))
        assert isinstance(busy.value, StoreBusy)  # transient, as the supervisor's patience takes it
        assert str(busy.value).endswith("the state store is locked by another writer (waited 0.5s); try again")
        other.add_sandbox(_sandbox("s2"))  # once it is let go
    finally:
        store.close()
        other.close()


def test_a_team_clone_on_a_commit_from_before_the_team_store_opens_no_store_of_its_own(
        billing_clones: tuple[Path, Path], postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clone of a team whose loom.yaml names the team's store, checked out on an older commit (a release tag,
    a bisect, a branch from before): it made an SQLite store of its own, took the team's log as its own,
    listed no sandboxes, took claims the team's store never saw; back on main its audit log read BROKEN."""
    from tests.conftest import run_cli

    first, second = billing_clones
    url, password = postgres_url.replace(postgres_url.split("//")[1].split("@")[0], USER), \
        postgres_url.split("//")[1].split("@")[0].split(":")[1]
    monkeypatch.setenv("PGPASSWORD", password)
    before = git(first, "rev-parse", "HEAD")
    config = first / ".loom" / "loom.yaml"
    config.write_text(config.read_text() + f"store: {url}\n")
    git(first, "commit", "-qam", "The team's store")
    governed_coordinator(open_workspace(first)).claim("s-a", QUOTE)  # joined: the team's log mirrored here
    # A look at the team's store by LOOMTUI_STORE, once, joins nothing: the clone keeps its own store.
    assert run_cli(second, "claim", "add", "--sandbox", "bob", QUOTE).returncode == 0
    monkeypatch.setenv("LOOMTUI_STORE", postgres_url)
    assert run_cli(second, "claim", "list").returncode == 0
    monkeypatch.delenv("LOOMTUI_STORE")
    own = run_cli(second, "claim", "list")
    assert own.returncode == 0 and "bob" in own.stdout, own
    # A clone with no store of its own that works by LOOMTUI_STORE (as `store copy` says to): one shell without it
    # opened a new SQLite store beside the team's (its log then read BROKEN there).
    third = first.parent.parent / "c" / "billing"
    git(first.parent.parent, "clone", "-q", str(first), str(third))
    git(third, "checkout", "-q", before)
    monkeypatch.setenv("LOOMTUI_STORE", postgres_url)
    assert run_cli(third, "status").returncode == 0  # a look only joins nothing
    monkeypatch.delenv("LOOMTUI_STORE")
    assert not (third / ".git" / "loom" / "store-joined").exists()
    monkeypatch.setenv("LOOMTUI_STORE", postgres_url)
    assert run_cli(third, "claim", "add", "--sandbox", "carol", "README.md").returncode == 0  # work: joined
    monkeypatch.delenv("LOOMTUI_STORE")
    bare = run_cli(third, "claim", "list")
    assert bare.returncode == 1 and "nothing here names it (no LOOMTUI_STORE" in bare.stderr, bare.stderr
    assert not (third / ".git" / "loom" / "state.db").exists()
    git(first, "checkout", "-q", before)
    old = run_cli(first, "claim", "list")
    assert old.returncode == 1 and old.stderr.count("\n") == 1, old.stderr
    assert f"this clone works in the team's store {redact(url)}" in old.stderr and "LOOMTUI_STORE" in old.stderr
    assert not (first / ".git" / "loom" / "state.db").exists()
    # Asked for by name, a store of this clone's own took the team's log file as its own: the next team write
    # read BROKEN here, and `audit restore` logged the mistake in the team's log.
    monkeypatch.setenv("LOOMTUI_STORE", "sqlite")
    taken = run_cli(first, "status")
    assert taken.returncode == 1 and "its copy of the team's audit log: a store of this clone's own would take " \
        f"that log over, so none was made; to leave the team for one, `LOOMTUI_STORE={redact(url)} loomtui store " \
        "copy --to sqlite`" in taken.stderr
    monkeypatch.delenv("LOOMTUI_STORE")
    assert not (first / ".git" / "loom" / "state.db").exists()
    git(first, "checkout", "-q", "main")
    workspace = open_workspace(first)
    assert workspace.audit.verify().ok and {c.sandbox_id for c in workspace.store.live_claims()} == {"s-a", "carol"}


def test_a_clone_with_an_audit_log_is_refused_an_empty_team_store_it_never_copied_to(
        billing_clones: tuple[Path, Path], postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clone that joined the team's store by LOOMTUI_STORE, given a mistyped database name: an empty store was
    made there, this clone's whole audit log copied into it and writes taken, and on the right URL again its log
    read BROKEN (an entry the team's store never had)."""
    first, _second = billing_clones
    monkeypatch.setenv("LOOMTUI_STORE", postgres_url)
    governed_coordinator(open_workspace(first)).claim("s-a", QUOTE)  # the team's store, joined: its log grows
    other = postgres_url.rsplit("/", 1)[0] + "/postgres"
    typo = subprocess.run([sys.executable, "-m", "loomtui", "claim", "list"], cwd=first, capture_output=True,
                          text=True, env={**os.environ, "LOOMTUI_STORE": other})
    assert typo.returncode != 0 and typo.stderr.count("\n") == 1, typo.stderr
    assert "holds no store of this repository" in typo.stderr and "this clone's audit log" in typo.stderr
    assert "store copy --to URL" in typo.stderr and "nothing was made" in typo.stderr
    with psycopg.connect(other) as conn:
        namespace = repository_namespace(find_repo(first))
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (namespace,)).fetchone() is None
    workspace = open_workspace(first)  # the right URL: as it was
    assert workspace.audit.verify().ok and len(workspace.store.live_claims()) == 1
