"""The agent loop's hooks: the stdlib-only fast path inside a sandbox, claims confirmed by what
really happened (PostToolUse, commits) and released when the edit never came, and an audit
log that records exactly the answer the hook gave."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loomtui.governance.coordinator import governed_coordinator
from loomtui.governance.broker import Broker
from loomtui.governance.hooks import NEVER_HAPPENED, HookGate
from loomtui.governance.hooks.gate import awaiting
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import demo_repo, git

SERVICE = "customers/service.py"
GET_LINE = "        return self._customers.get(customer_id)\n"
FIND_LINE = "        wanted = email.strip().lower()\n"
AGENT = "agent-1"
HEAVY = ("networkx", "git", "textual", "yaml", "libcst", "sqlite3", "loomtui.workspace", "loomtui.store",
         "loomtui.coordination", "loomtui.governance.hooks.gate", "argparse")


def payload(repo: Path, tool: str, tool_input: dict[str, Any], *, event: str = "PreToolUse",
            tool_use_id: str = "toolu_01Fast") -> dict[str, Any]:
    return {"session_id": "5d1e2f3a-8b7c", "transcript_path": "/dev/null", "cwd": str(repo),
            "permission_mode": "default", "hook_event_name": event, "tool_name": tool,
            "tool_input": tool_input, "tool_use_id": tool_use_id}


def edit(repo: Path, old: str, new: str, path: str = SERVICE, **extra: Any) -> dict[str, Any]:
    return payload(repo, "Edit", {"file_path": str(repo / path), "old_string": old, "new_string": new}, **extra)


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("LOOM_SANDBOX", "LOOM_BROKER", "LOOM_REPO")}
    return {**base, **extra}


def run_hook(data: dict[str, Any], *args: str, broker: Path | None = None, cwd: Path | None = None,
             command: str = "claude") -> subprocess.CompletedProcess[str]:
    extra = {"LOOM_BROKER": str(broker)} if broker else {}
    return subprocess.run([sys.executable, "-m", "loomtui", "hook", command, *args], input=json.dumps(data),
                          capture_output=True, text=True, cwd=cwd, env=env(**extra), timeout=60, check=False)


@pytest.fixture
def ws(billing: Path) -> Iterator[Workspace]:
    workspace = open_workspace(billing)
    yield workspace
    workspace.close()


@pytest.fixture
def broker(ws: Workspace, billing: Path, tmp_path: Path) -> Iterator[Path]:
    served = Broker(ws, AGENT, billing, tmp_path / "broker.sock")
    served.start()
    yield served.path
    served.close()


# -- the fast path ------------------------------------------------------------------------


def _stub_broker(path: Path, answer: dict[str, Any], seen: list[dict[str, Any]]) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        connection, _ = server.accept()
        with connection, connection.makefile("rwb") as stream:
            seen.append(json.loads(stream.readline()))
            stream.write(json.dumps({"ok": True, **answer}).encode() + b"\n")
            stream.flush()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_the_fast_path_loads_no_engine_and_sends_one_request(billing: Path, tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    sock = tmp_path / "stub.sock"
    thread = _stub_broker(sock, {"decision": "deny", "reason": "held by sandbox other", "regions": []}, seen)
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['loomtui', 'hook', 'claude']\n"
        "try:\n    runpy.run_module('loomtui', run_name='__main__')\n"
        "except SystemExit as done:\n    code = done.code\n"
        f"print(json.dumps([code, sorted(m for m in sys.modules if m.split('.')[0] in {list(HEAVY)!r} "
        f"or m.startswith(('loomtui.coordination', 'loomtui.store')) or m in {list(HEAVY)!r})]),"
        " file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", "import json\n" + probe],
                          input=json.dumps(edit(billing, GET_LINE, GET_LINE.replace("get(", "get( "))),
                          capture_output=True, text=True, env=env(LOOM_BROKER=str(sock)), timeout=60, check=False)
    thread.join(10)
    code, heavy = json.loads(done.stderr.strip().splitlines()[-1])
    assert (code, heavy) == (0, [])
    assert json.loads(done.stdout)["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert [r["op"] for r in seen] == ["check_tool"]
    assert seen[0]["targets"] == [{"path": str(billing / SERVICE), "lines": [[61, 61]]}]
    assert seen[0]["tool_use_id"] == "toolu_01Fast"


def test_the_console_script_entry_point_imports_nothing_heavy() -> None:
    done = subprocess.run([sys.executable, "-c", "import sys, loomtui.cli; print(sorted(sys.modules))"],
                          capture_output=True, text=True, check=True, env=env())
    loaded = set(json.loads(done.stdout.replace("'", '"')))
    assert not loaded & (set(HEAVY) - {"argparse"})


def _answers(repo: Path, broker_path: Path | None) -> list[tuple[int, str, str]]:
    """allow, deny, ask and none, through the fast path (a broker) or the full CLI (no broker)."""
    workspace = open_workspace(repo)
    governed_coordinator(workspace).claim("refunds-agent", f"{SERVICE}::CustomerService.find_by_email")
    workspace.close()
    ledger = (repo / "payments/ledger.py").read_text()
    charge = next(row for row in ledger.splitlines(keepends=True) if "def find_charge" in row)
    events = [
        edit(repo, GET_LINE, GET_LINE.replace("get(", "get( ")),
        edit(repo, FIND_LINE, FIND_LINE.replace("lower()", "casefold()")),
        edit(repo, charge, charge.replace("find_charge", "find_charge "), path="payments/ledger.py"),
        payload(repo, "Bash", {"command": "echo x >> docs/runbook.md"}),
        payload(repo, "Bash", {"command": "ls"}),
    ]
    args = () if broker_path else ("--sandbox", AGENT)
    found = []
    for event in events:
        done = run_hook(event, *args, broker=broker_path, cwd=repo)
        found.append((done.returncode, done.stdout, done.stderr))
    done = run_hook(events[1], "--exit-code", *args, broker=broker_path, cwd=repo)
    found.append((done.returncode, done.stdout, done.stderr))
    return found


def test_the_fast_path_answers_as_the_full_cli_does(billing: Path, broker: Path, tmp_path: Path) -> None:
    (tmp_path / "slow").mkdir()
    slow_repo = demo_repo(tmp_path / "slow")
    fast = _answers(billing, broker)
    slow = _answers(slow_repo, None)
    assert fast == slow
    decisions = [json.loads(out)["hookSpecificOutput"]["permissionDecision"] if out else f"exit {code}"
                 for code, out, _err in fast]
    assert decisions == ["allow", "deny", "ask", "exit 0", "exit 0", "exit 2"]


def test_the_fast_pre_commit_answers_as_the_full_cli_does(billing: Path, ws: Workspace, broker: Path) -> None:
    governed_coordinator(ws).claim("refunds-agent", f"{SERVICE}::CustomerService.find_by_email")
    service = billing / SERVICE
    service.write_text(service.read_text().replace(FIND_LINE, FIND_LINE.replace("lower()", "casefold()")))
    git(billing, "add", SERVICE)
    answers = []
    for broker_path in (broker, None):
        done = subprocess.run([sys.executable, "-m", "loomtui", "hook", "git-pre-commit"], cwd=billing,
                              capture_output=True, text=True, timeout=60, check=False,
                              env=env(**({"LOOM_BROKER": str(broker_path)} if broker_path else {})))
        answers.append((done.returncode, done.stderr.replace(AGENT, "-")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 1 and "held by sandbox refunds-agent" in answers[0][1]


# -- claims confirmed by what really happened -----------------------------------------------


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _target(billing: Path, line: str) -> list[dict[str, Any]]:
    number = (billing / SERVICE).read_text().splitlines(keepends=True).index(line) + 1
    return [{"path": str(billing / SERVICE), "lines": [[number, number]]}]


def test_a_post_tool_use_confirms_the_claims_of_its_call(billing: Path, ws: Workspace, broker: Path) -> None:
    done = run_hook(edit(billing, GET_LINE, GET_LINE.replace("get(", "get( "), tool_use_id="toolu_A"),
                    broker=broker, cwd=billing)
    assert json.loads(done.stdout)["hookSpecificOutput"]["permissionDecision"] == "allow"
    (claim,) = ws.store.live_claims(AGENT)
    assert awaiting(claim) == ["toolu_A"]
    post = edit(billing, GET_LINE, GET_LINE.replace("get(", "get( "), tool_use_id="toolu_A", event="PostToolUse")
    post["tool_response"] = {"filePath": str(billing / SERVICE), "success": True}
    done = run_hook(post, broker=broker, cwd=billing)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    (claim,) = ws.store.live_claims(AGENT)
    assert awaiting(claim) == [] and claim.reason == f"claimed by edit of {SERVICE}"
    confirmed = [e for e in ws.audit.entries() if e.action == "claim.confirmed"]
    assert [(e.subject, e.details["claims"], e.details["tool_use_id"]) for e in confirmed] == \
        [(AGENT, [claim.id], "toolu_A")]


def test_a_claim_whose_edit_never_happens_is_released(billing: Path, ws: Workspace) -> None:
    clock = Clock()
    gate = HookGate(ws, AGENT, billing, confirm_window=120, clock=clock)
    assert gate.check_tool("Edit", _target(billing, GET_LINE), tool_use_id="toolu_refused").decision == "allow"
    assert gate.check_tool("Edit", _target(billing, FIND_LINE), tool_use_id="toolu_done").decision == "allow"
    assert gate.confirm_tool_use("toolu_done", "Edit")
    (refused,) = [c for c in ws.store.live_claims(AGENT) if awaiting(c)]
    clock.now = refused.created + 60
    assert gate.release_unconfirmed() == []
    clock.now = refused.created + 121
    assert gate.release_unconfirmed() == [refused.id]
    assert {rid for c in ws.store.live_claims(AGENT) for rid in c.region_ids} == \
        {f"{SERVICE}::CustomerService.find_by_email"}
    released = [e for e in ws.audit.entries() if e.action == "claim.released"]
    assert [(e.details["claim"], e.details["reason"], e.details["tool_use_id"]) for e in released] == \
        [(refused.id, NEVER_HAPPENED, "toolu_refused")]
    # So another sandbox may now edit the region the refused call had claimed.
    other = HookGate(ws, "agent-2", billing)
    assert other.check_tool("Edit", _target(billing, GET_LINE), tool_use_id="toolu_other").decision == "allow"


def test_a_later_call_inside_a_waiting_claim_confirms_it_too(billing: Path, ws: Workspace) -> None:
    gate = HookGate(ws, AGENT, billing)
    gate.check_tool("Edit", _target(billing, GET_LINE), tool_use_id="toolu_1")
    assert gate.check_tool("Edit", _target(billing, GET_LINE), tool_use_id="toolu_2").reason == \
        "inside this sandbox's claims"
    (claim,) = ws.store.live_claims(AGENT)
    assert awaiting(claim) == ["toolu_1", "toolu_2"]
    assert gate.confirm_tool_use("toolu_2") == [claim.id]
    assert awaiting(ws.store.live_claims(AGENT)[0]) == []


def test_the_agent_ending_releases_what_still_waits_and_a_commit_confirms(billing: Path, ws: Workspace,
                                                                          tmp_path: Path) -> None:
    served = Broker(ws, AGENT, billing, tmp_path / "b.sock")
    served.start()
    gate = served.gate
    gate.check_tool("Edit", _target(billing, GET_LINE), tool_use_id="toolu_committed")
    gate.check_tool("Write", [{"path": str(billing / "reports/new.py"), "lines": None}], tool_use_id="toolu_never")
    assert gate.check_commit([SERVICE], []).decision == "allow"
    served.close()
    live = ws.store.live_claims(AGENT)
    assert [(c.region_ids, awaiting(c)) for c in live] == [((f"{SERVICE}::CustomerService.get",), [])]
    reasons = [e.details["reason"] for e in ws.audit.entries() if e.action == "claim.released"]
    assert reasons == [NEVER_HAPPENED]


def test_without_a_tool_use_id_a_claim_is_held_at_once(billing: Path, ws: Workspace) -> None:
    gate = HookGate(ws, AGENT, billing)
    gate.check_tool("Edit", _target(billing, GET_LINE))
    assert [awaiting(c) for c in ws.store.live_claims(AGENT)] == [[]]


# -- the audit log records the answer given --------------------------------------------------


def test_the_audit_records_exactly_what_the_hook_answered(billing: Path, ws: Workspace, broker: Path) -> None:
    governed_coordinator(ws).claim("docs-agent", "docs/architecture.md")
    done = run_hook(payload(billing, "Bash", {"command": "echo x >> docs/runbook.md"}), broker=broker, cwd=billing)
    assert (done.returncode, done.stdout) == (0, "")
    done = run_hook(payload(billing, "Bash", {"command": "echo x > docs/runbook.md; tee docs/architecture.md"}),
                    broker=broker, cwd=billing)
    emitted = json.loads(done.stdout)["hookSpecificOutput"]["permissionDecision"]
    done = run_hook(edit(billing, GET_LINE, GET_LINE.replace("get(", "get( ")), broker=broker, cwd=billing)
    entries = [e.details for e in ws.audit.entries() if e.action == "hook.edit"]
    assert [(e["tool"], e["decision"]) for e in entries] == [("Bash", "none"), ("Bash", emitted), ("Edit", "allow")]
    assert emitted == "deny"
    assert [t["decision"] for t in entries[1]["targets"]] == ["allow", "deny"]
    assert all(isinstance(e["ms"], float) for e in entries)
    # The deny handed back what the refused command had claimed; the first command's claim stays.
    assert {rid for c in ws.store.live_claims(AGENT) for rid in c.region_ids} == \
        {"docs/runbook.md", f"{SERVICE}::CustomerService.get"}


def test_a_commit_the_policy_blocks_points_at_the_policy_not_at_claims(monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from loomtui.governance.hooks import client

    class Channel:
        def __init__(self, reason: str) -> None:
            self.reason = reason

        def request(self, op: str, **_fields: object) -> dict[str, str]:
            return {"decision": "deny", "reason": self.reason}

        def close(self) -> None:
            pass

    monkeypatch.setattr(client, "staged_request", lambda _tree: {"paths": ["secrets.env"], "regions": []})
    assert client.pre_commit_hook(None, lambda: Channel("policy: blocked by no-secrets")) == 1  # type: ignore[arg-type, return-value]
    assert capsys.readouterr().err.strip().endswith("blocked by no-secrets (see the policy's rules)")
    assert client.pre_commit_hook(None, lambda: Channel("x.py is held by sandbox a")) == 1  # type: ignore[arg-type, return-value]
    assert capsys.readouterr().err.strip().endswith("held by sandbox a (see `loomtui claim list`)")
