"""`loomtui mcp`, for real: the MCP SDK's client drives the server over stdio in a subprocess,
against the bundled sample repo with a sandbox and its broker; and once the real Claude Code
CLI, against a fake Anthropic Messages API on 127.0.0.1, through the permission prompt tool."""

from __future__ import annotations

import asyncio
import json
import re
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from loomtui import __version__
from loomtui.config import LoomConfig
from loomtui.errors import LoomError
from loomtui.execution import sandboxes as sb
from loomtui.execution.mcpconfig import mcp_config_path
from loomtui.execution.runtimes import agent_environment, prepare_launch
from loomtui.governance.agent_ops import PERMISSION_KIND
from loomtui.governance.broker import Broker
from loomtui.governance.coordinator import governed_coordinator
from loomtui.governance.escalations import DecisionRefused, decide
from loomtui.governance.hooks import PERMISSION_KIND as GATE_PERMISSION_KIND
from loomtui.governance.policy import load_policy
from loomtui.mcp.server import OWN_TOOLS
from loomtui.store import EscalationRecord
from loomtui.workflow import tasks
from loomtui.workspace import Workspace, open_workspace
from tests.fake_anthropic import FakeAnthropic, text, tool_use

LEAD = "lead@example.com"
SERVICE = "customers/service.py"
LEDGER = "payments/ledger.py"


@pytest.fixture
def ws(billing: Path) -> Iterator[Workspace]:
    workspace = open_workspace(billing)
    yield workspace
    workspace.close()


@pytest.fixture
def sandbox(ws: Workspace) -> sb.SandboxRecord:
    """A planned sandbox (its worktree, hooks and MCP config made); the test plays its agent."""
    return tasks.create_sandbox(ws, "work on billing", "command", command=["true"], isolate=False)


@pytest.fixture
def broker(ws: Workspace, sandbox: sb.SandboxRecord) -> Iterator[Path]:
    """The sandbox's broker, where its supervisor serves it (its MCP config names it), served from this process
    (the MCP server is its descendant)."""
    socket_path = sb.sandbox_paths(ws.paths, sandbox.id).broker
    serving = Broker(ws, sandbox.id, Path(sandbox.worktree or ""), socket_path)
    serving.start()
    yield socket_path
    serving.close()


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOOM_SANDBOX", "LOOM_BROKER", "LOOM_REPO")}
    return {**env, **extra}


def server_argv(worktree: Path, timeout: float, *extra: str) -> list[str]:
    return ["-m", "loomtui", "-C", str(worktree), "mcp", "--timeout", f"{timeout:g}", "--poll", "0.1", *extra]


@asynccontextmanager
async def session(worktree: Path, *, broker: Path | None = None, timeout: float = 30,
                  errlog: TextIO = sys.stderr) -> AsyncIterator[ClientSession]:
    """The MCP SDK's client on a real `loomtui mcp` subprocess (its stderr to `errlog`)."""
    env = server_env(**({"LOOM_BROKER": str(broker)} if broker else {}))
    params = StdioServerParameters(command=sys.executable, args=server_argv(worktree, timeout), env=env,
                                   cwd=str(worktree))
    async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        yield client


async def call(client: ClientSession, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result
    return json.loads(result.content[0].text)  # type: ignore[union-attr]


def write(worktree: Path, path: str, content: str) -> dict[str, Any]:
    return {"tool_name": "Write", "input": {"file_path": str(worktree / path), "content": content},
            "tool_use_id": "toolu_01McpTest"}


def ledger_edit(worktree: Path) -> dict[str, Any]:
    text_now = (worktree / LEDGER).read_text()
    line = next(row for row in text_now.splitlines(keepends=True) if "def find_charge" in row)
    return {"tool_name": "Edit", "input": {"file_path": str(worktree / LEDGER), "old_string": line,
                                           "new_string": line.replace("find_charge", "find_charge "),
                                           "replace_all": False}, "tool_use_id": "toolu_01Ledger"}


async def lead_decides(billing: Path, decision: str, kind: str = PERMISSION_KIND, reason: str = "") -> EscalationRecord:
    """A lead in the TUI: waits for the open escalation, then decides it."""
    lead = open_workspace(billing)
    lead.actor = LEAD
    try:
        deadline = time.monotonic() + 90  # a real CLI and the MCP SDK start slowly on a loaded machine
        while time.monotonic() < deadline:
            waiting = [e for e in lead.store.list_escalations("open") if e.kind == kind]
            if waiting:
                return decide(lead, load_policy(billing, ".loom/policy.yaml"), waiting[0].id, decision,
                              reason=reason)
            await asyncio.sleep(0.05)
        raise AssertionError("no escalation opened")
    finally:
        lead.close()


def test_the_permission_kind_is_the_gates() -> None:
    assert PERMISSION_KIND == GATE_PERMISSION_KIND


# -- the permission prompt --------------------------------------------------------------------------


async def test_a_write_to_free_or_own_regions_is_allowed_with_its_input_unchanged(
        ws: Workspace, sandbox: sb.SandboxRecord, broker: Path) -> None:
    tree = Path(sandbox.worktree or "")
    async with session(tree, broker=broker) as client:
        request = write(tree, "docs/notes.md", "# notes\n")
        assert await call(client, "permission_prompt", **request) == {"behavior": "allow",
                                                                      "updatedInput": request["input"]}
        claims = await call(client, "my_claims")
    assert claims["sandbox"] == sandbox.id
    assert [c["regions"] for c in claims["claims"]] == [["docs/notes.md"]]
    assert not ws.store.list_escalations()


async def test_a_region_another_sandbox_holds_is_denied_naming_the_holder(
        ws: Workspace, sandbox: sb.SandboxRecord, broker: Path) -> None:
    governed_coordinator(ws).claim("rival-7", SERVICE, reason="theirs")
    tree = Path(sandbox.worktree or "")
    async with session(tree, broker=broker) as client:
        answer = await call(client, "permission_prompt", **write(tree, SERVICE, "x = 1\n"))
    assert answer["behavior"] == "deny"
    assert "held by sandbox rival-7" in answer["message"] and answer["message"].startswith("loomtui: ")
    assert not ws.store.live_claims(sandbox.id)


async def test_inputs_nothing_foresaw_are_answers_not_tracebacks(
        ws: Workspace, sandbox: sb.SandboxRecord, broker: Path) -> None:
    """A hostile agent's odd inputs: each is a deny or a one-line tool error, never a crash; and a tool
    of another server that merely begins with `loomtui__` is not allowed as one of loomtui's own."""
    tree = Path(sandbox.worktree or "")
    errlog = tempfile.TemporaryFile("w+")  # a file: the SDK hands it to the server process as its stderr
    async with session(tree, broker=broker, errlog=errlog) as client:
        for path in ("\x00bad", "a" * 5000, "b" * 300):
            answer = await call(client, "permission_prompt", **write(tree, path, "x = 1\n"))
            assert answer["behavior"] in ("allow", "deny") and "internal error" not in str(answer), answer
        # A NUL in a path: refused saying so (it read "cannot check this call (ValueError)", nothing to act on).
        for tool, tool_input in (("Write", {"file_path": str(tree / "a\x00.py"), "content": "x"}),
                                 ("Bash", {"command": "echo x > /tmp/a\x00b"})):
            nul = await call(client, "permission_prompt", tool_name=tool, input=tool_input)
            assert nul == {"behavior": "deny", "message": "loomtui: a path this call writes holds a NUL byte: no "
                                                          "file is named so"}, (tool, nul)
        for target, said in (("a" * 5000, "longer than 4096"), ("b" * 300, "not"), ("x\x00y", "not")):
            result = await client.call_tool("conflicts", {"target": target})
            assert result.is_error and said in result.content[0].text, result  # type: ignore[union-attr]
        huge = await client.call_tool("search_context", {"query": "x" * 100_000})
        assert huge.is_error and "at most" in huge.content[0].text  # type: ignore[union-attr]
        for limit in (-5, 0, 10**9):  # -5 answered with sections, as if no limit were said
            bad = await client.call_tool("search_context", {"query": "rounding", "limit": limit})
            assert bad.is_error and "limit: from 1 to 50" in bad.content[0].text  # type: ignore[union-attr]
        theirs = governed_coordinator(ws).claim(sandbox.id, SERVICE).claim  # `true` was read as 1: this claim
        assert theirs.id == 1
        odd = await client.call_tool("release", {"claim_id": True})
        assert odd.is_error and "valid integer" in odd.content[0].text  # type: ignore[union-attr]
        # Nor is "yes" a boolean, nor "3" a number ("yes" claimed a new file the agent never said it would write).
        loose = [await client.call_tool("claim", {"target": "customers/x.py", "new_file": "yes"}),
                 await client.call_tool("search_context", {"query": "rounding", "limit": "3"})]
        assert all(answer.is_error for answer in loose), loose
        assert [c.id for c in ws.store.live_claims()] == [theirs.id]
        listed = await client.list_tools()
    assert OWN_TOOLS == {f"mcp__loomtui__{tool.name}" for tool in listed.tools if tool.name != "permission_prompt"}
    assert "mcp__loomtui__fs__write_file" not in OWN_TOOLS  # another server's, allowed by a prefix before
    errlog.seek(0)  # a refusal is the agent's answer, not a log entry (each was a dozen boxed INFO lines)
    assert "INFO" not in errlog.read()


@pytest.mark.parametrize("decision", ["approve", "reject"])
async def test_a_policy_require_waits_for_a_lead(billing: Path, ws: Workspace, sandbox: sb.SandboxRecord,
                                                 broker: Path, decision: str) -> None:
    tree = Path(sandbox.worktree or "")
    async with session(tree, broker=broker) as client:
        asked = asyncio.ensure_future(call(client, "permission_prompt", **ledger_edit(tree)))
        decided = await lead_decides(billing, decision, reason="" if decision == "approve" else "not today")
        answer = await asyncio.wait_for(asked, 60)
    (escalation,) = ws.store.list_escalations()
    assert escalation.kind == PERMISSION_KIND and escalation.sandbox_id == sandbox.id
    assert escalation.data["evidence"]["via"] == "mcp"
    assert escalation.data["evidence"]["tool_use_id"] == "toolu_01Ledger"
    if decision == "approve":
        assert decided.status == "approved"
        assert answer == {"behavior": "allow", "updatedInput": ledger_edit(tree)["input"]}
    else:
        assert decided.status == "rejected"
        assert answer["behavior"] == "deny" and "rejected by lead@example.com: not today" in answer["message"]


async def test_no_decision_in_time_withdraws_the_request_and_denies(
        billing: Path, ws: Workspace, sandbox: sb.SandboxRecord, broker: Path) -> None:
    tree = Path(sandbox.worktree or "")
    async with session(tree, broker=broker, timeout=1) as client:
        answer = await call(client, "permission_prompt", **ledger_edit(tree))
    assert answer["behavior"] == "deny" and "within 1s; it was withdrawn" in answer["message"]
    # A question no one answered in time is answered `none`, not a lead's `no` (which a model acts on as one).
    async with session(tree, broker=broker, timeout=1) as client:
        unheard = await call(client, "ask_lead", question="May I rename Ledger.find_charge?")
    assert unheard["answer"] == "none" and "not allowed for now (ask again later)" in unheard["message"], unheard
    (escalation,) = [e for e in ws.store.list_escalations() if e.kind != "question"]
    assert escalation.status == "withdrawn"
    # A lead deciding now: noted in the history, refused with why, nothing changes.
    lead = open_workspace(billing)
    lead.actor = LEAD
    with pytest.raises(DecisionRefused, match="was withdrawn before this approve.*already told no"):
        decide(lead, load_policy(billing, ".loom/policy.yaml"), escalation.id, "approve")
    lead.close()
    history = ws.store.get_escalation(escalation.id).data["history"]  # type: ignore[union-attr]
    assert history[-1]["event"] == "late-approve" and history[-1]["by"] == LEAD
    assert ws.store.get_escalation(escalation.id).status == "withdrawn"  # type: ignore[union-attr]


class RawServer:
    """`loomtui mcp` spoken to by hand (JSON-RPC lines), so a test can kill it mid-call."""

    def __init__(self, worktree: Path, env: dict[str, str], *extra: str, errlog: TextIO | None = None) -> None:
        self.process = subprocess.Popen([sys.executable, *server_argv(worktree, 60, *extra)], cwd=worktree, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=errlog or subprocess.DEVNULL, text=True)
        self.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}})
        assert self.process.stdout is not None
        initialized = json.loads(self.process.stdout.readline())
        # Which loomtui it is (serverInfo.version was ""), for a client that shows it.
        assert initialized["result"]["serverInfo"] == {"name": "loomtui", "version": __version__}, initialized
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def call(self, tool: str, arguments: dict[str, Any]) -> None:
        self.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool,
                                                                                  "arguments": arguments}})

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


def wait_for_status(ws: Workspace, status: str, kind: str = PERMISSION_KIND) -> EscalationRecord:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [e for e in ws.store.list_escalations(status) if e.kind == kind]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {kind} escalation became {status}")


def test_a_server_killed_mid_wait_has_its_request_withdrawn_by_the_broker(
        ws: Workspace, sandbox: sb.SandboxRecord, broker: Path) -> None:
    tree = Path(sandbox.worktree or "")
    server = RawServer(tree, server_env(LOOM_BROKER=str(broker)))
    try:
        server.call("permission_prompt", ledger_edit(tree))
        opened = wait_for_status(ws, "open")
    finally:
        server.kill()
    withdrawn = wait_for_status(ws, "withdrawn")
    assert withdrawn.id == opened.id
    assert "connection closed" in withdrawn.data["history"][-1]["reason"]


def test_a_client_gone_mid_call_ends_the_server_quietly(ws: Workspace, sandbox: sb.SandboxRecord, broker: Path,
                                                         tmp_path: Path) -> None:
    """Its answer met a closed pipe: "internal error: ExceptionGroup ... (a bug in loomtui ...)", exit 1, in the
    agent's log each time a client was killed."""
    tree = Path(sandbox.worktree or "")
    errors = tmp_path / "server.err"
    with errors.open("w") as errlog:
        server = RawServer(tree, server_env(LOOM_BROKER=str(broker)), errlog=errlog)
        server.call("permission_prompt", ledger_edit(tree))
        wait_for_status(ws, "open")
        assert server.process.stdout is not None and server.process.stdin is not None
        server.process.stdout.close()
        server.process.stdin.close()
        code = server.process.wait(30)
    assert code == 0 and "internal error" not in errors.read_text(), errors.read_text()
    assert wait_for_status(ws, "withdrawn")  # and its request given up


def test_outside_a_sandbox_the_next_server_withdraws_what_a_killed_one_left(
        ws: Workspace, sandbox: sb.SandboxRecord) -> None:
    tree = Path(sandbox.worktree or "")
    server = RawServer(tree, server_env())
    try:
        server.call("permission_prompt", ledger_edit(tree))
        opened = wait_for_status(ws, "open")
    finally:
        server.kill()
    assert opened.sandbox_id == sandbox.id  # the id `hook install` recorded for the worktree
    assert opened.data["evidence"]["waiter"]["pid"] == server.process.pid
    RawServer(tree, server_env()).kill()  # starts, withdraws the orphan, and goes
    withdrawn = wait_for_status(ws, "withdrawn")
    assert withdrawn.id == opened.id and "had stopped" in withdrawn.data["history"][-1]["reason"]


@pytest.mark.parametrize("named", [pytest.param((), id="no-sandbox"), pytest.param(("--sandbox", "nosuch"),
                                                                                     id="a-sandbox-no-one-has")])
def test_a_server_with_no_sandbox_claims_nothing_that_would_outlive_it(billing: Path, ws: Workspace,
                                                                      named: tuple[str, ...]) -> None:
    """Outside any sandbox, with no --sandbox and no `hook install`, its id was made up from its pid: a
    claim under it held the region for the whole lease after the server ended, and blocked real sandboxes.
    So did one under a --sandbox naming no sandbox (a typo, one removed)."""
    server = RawServer(billing, server_env(), *named)
    try:
        server.call("claim", {"target": SERVICE})
        assert server.process.stdout is not None
        answer = json.loads(server.process.stdout.readline())["result"]
        assert answer["isError"] and "no sandbox to claim for" in answer["content"][0]["text"]
        # Nor does its permission check: answered as the hook answers, and let go (its claim, under the
        # made-up id, refused every other agent the file for an hour, and no one could release it).
        server.call("permission_prompt", {"tool_name": "Write", "input": {"file_path": str(billing / "NOTES.md"),
                                                                           "content": "x\n"}})
        checked = json.loads(json.loads(server.process.stdout.readline())["result"]["content"][0]["text"])
        assert checked["behavior"] == "allow", checked
    finally:
        server.kill()
    assert ws.store.live_claims() == []


def test_a_server_that_cannot_reach_its_store_says_so(billing: Path, ws: Workspace) -> None:
    """With no --sandbox, every tool said "no sandbox id: not in a sandbox, ..." of a store that was unreachable."""
    server = RawServer(billing, server_env(LOOMTUI_STORE="postgresql://loom@127.0.0.1:1/loom"))
    try:
        server.call("my_claims", {})
        assert server.process.stdout is not None
        answer = json.loads(server.process.stdout.readline())["result"]
        said = answer["content"][0]["text"]
        assert answer["isError"] and "no sandbox id" not in said and "127.0.0.1:1" in said, said
    finally:
        server.kill()


@pytest.mark.parametrize("from_worktree", [pytest.param(False, id="main-checkout-sandbox-flag"),
                                           pytest.param(True, id="its-worktree-as-hook-install-recorded")])
def test_a_server_named_for_a_sandbox_reads_that_sandboxs_context(billing: Path, sandbox: sb.SandboxRecord,
                                                                 from_worktree: bool) -> None:
    """`loomtui mcp --sandbox ID` from the main checkout (the README's own-claude mode): its claims were the
    sandbox's, but `context` said there was none, reading only the variable a sandbox's agent gets. So it
    said in the sandbox's worktree, whose id `hook install` recorded there (a person's own claude in it)."""
    server = (RawServer(Path(sandbox.worktree or ""), server_env()) if from_worktree
              else RawServer(billing, server_env(), "--sandbox", sandbox.id))
    try:
        server.call("context", {})
        assert server.process.stdout is not None
        answer = json.loads(server.process.stdout.readline())["result"]
    finally:
        server.kill()
    assert not answer["isError"], answer
    path = sb.record_paths(open_workspace(billing).paths, sandbox).context
    assert answer["content"][0]["text"] == path.read_text()


# -- cooperating ------------------------------------------------------------------------------------


async def test_claim_release_conflicts_and_a_question_to_a_lead(
        billing: Path, ws: Workspace, sandbox: sb.SandboxRecord, broker: Path) -> None:
    governed_coordinator(ws).claim("rival-7", f"{SERVICE}::CustomerService.get", reason="theirs")
    tree = Path(sandbox.worktree or "")
    async with session(tree, broker=broker) as client:
        taken = await call(client, "claim", target=f"{SERVICE}::CustomerService.get")
        assert taken["claimed"] is False and "held by sandbox rival-7" in taken["reason"]
        probe = await call(client, "conflicts", target=SERVICE)
        assert probe["free"] is False and probe["conflicts"][0]["b"]["sandbox"] == "rival-7"
        mine = await call(client, "claim", target="customers/validation.py", reason="normaliser les e-mails (é)")
        assert mine["claimed"] is True
        # Read as written: a time (not seconds since 1970), the reason's é (not "\u00e9").
        raw = (await client.call_tool("my_claims", {})).content[0].text  # type: ignore[union-attr]
        assert "(é)" in raw and "\\u00e9" not in raw, raw
        [held] = json.loads(raw)["claims"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", held["expires"]), held
        assert 0 < held["expires_in_s"] <= 3600
        unwritten = await client.call_tool("claim", {"target": "customers/emails.py"})
        assert unwritten.is_error and "no such file or region" in unwritten.content[0].text  # type: ignore[union-attr]
        new = await call(client, "claim", target="customers/emails.py", new_file=True)
        assert new["claimed"] is True and new["claim"]["regions"] == ["customers/emails.py"], new
        ledger = await call(client, "claim", target=LEDGER)
        assert ledger["claimed"] is True and "ledger-claims needs 1 approval from leads" in ledger["needs_approval"]
        listed = await call(client, "my_claims")
        assert {c["target"] for c in listed["claims"]} == {"customers/validation.py", "customers/emails.py", LEDGER}
        released = await call(client, "release", target=LEDGER)
        assert released["released"] == [ledger["claim"]["id"]]
        assert sorted(c["target"] for c in released["claims"]) == ["customers/emails.py", "customers/validation.py"]
        # A new file's claim by its target: "no such file or region" (only its claim id released it).
        released = await call(client, "release", target="customers/emails.py")
        assert released["released"] == [new["claim"]["id"]], released

        asked = asyncio.ensure_future(call(client, "ask_lead", question="May I rename Ledger.find_charge?",
                                           paths=[LEDGER]))
        await lead_decides(billing, "reject", kind="question", reason="callers depend on it; add an alias")
        answer = await asyncio.wait_for(asked, 60)
    assert answer["answer"] == "no" and "add an alias" in answer["message"]
    (question,) = [e for e in ws.store.list_escalations() if e.kind == "question"]
    assert question.summary == f"{sandbox.id} asks: May I rename Ledger.find_charge?"
    assert ws.store.get_claim(ledger["claim"]["id"]).released is not None  # type: ignore[union-attr]
    # In the log, what the agent did says so: its own reason text read as the person's who started it.
    agents = [(e.action, e.details.get("agent")) for e in ws.audit.entries()
              if e.action in ("claim.added", "claim.released", "escalation.opened")]
    assert agents[0] == ("claim.added", None)  # rival-7's claim above, made in the test's own process
    assert {agent for _action, agent in agents[1:]} == {sandbox.id}, agents
    assert {action for action, _agent in agents[1:]} == {"claim.added", "claim.released", "escalation.opened"}


def test_nothing_in_the_vocabulary_decides() -> None:
    from loomtui.governance.hooks import OPERATIONS

    assert {"my_claims", "claim", "release", "conflicts", "ask_lead", "give_up"} <= set(OPERATIONS)
    assert not {"decide", "approve", "reject", "override"} & set(OPERATIONS)


async def test_the_config_reaches_the_sandbox_s_broker_whatever_environment_the_host_passes_on(
        ws: Workspace, sandbox: sb.SandboxRecord) -> None:
    """The official SDK's stdio client passes HOME, PATH and a few more, not the agent's environment: under
    bubblewrap every tool but `context` then failed on the read-only store. The config names the broker."""
    paths = sb.sandbox_paths(ws.paths, sandbox.id)
    server = json.loads(mcp_config_path(paths.dir).read_text())["mcpServers"]["loomtui"]
    assert server["env"] == {"LOOM_BROKER": str(paths.broker), "LOOM_SANDBOX": sandbox.id, "LOOM_REPO": str(ws.root)}
    serving = Broker(ws, sandbox.id, Path(sandbox.worktree or ""), paths.broker)  # as its supervisor serves it
    asked: list[bytes] = []
    answer = serving.answer
    serving.answer = (  # type: ignore[method-assign]
        lambda line, waits=None: (asked.append(line), answer(line, waits))[1])
    serving.start()
    try:
        params = StdioServerParameters(command=server["command"], args=server["args"], env=server["env"],
                                       cwd=sandbox.worktree)  # the SDK's defaults, and the config's own
        async with stdio_client(params) as (read, write_stream), ClientSession(read, write_stream) as client:
            await client.initialize()
            held = await call(client, "my_claims")
    finally:
        serving.close()
    assert [c["target"] for c in held["claims"]] == [c.target for c in ws.store.live_claims(sandbox.id)], held
    assert [json.loads(line)["op"] for line in asked] == ["my_claims"]  # answered by the broker, as inside bwrap


def test_the_claude_runtime_is_wired_to_the_server(ws: Workspace, sandbox: sb.SandboxRecord) -> None:
    config = json.loads(mcp_config_path(sb.sandbox_paths(ws.paths, sandbox.id).dir).read_text())
    server = config["mcpServers"]["loomtui"]
    assert server["command"] == sys.executable and server["args"][:2] == ["-m", "loomtui"]
    assert "mcp" in server["args"] and server["alwaysLoad"] is True
    argv = LoomConfig().runtimes["claude"].argv
    assert argv[argv.index("--mcp-config") + 1] == "{mcp_config}"
    assert argv[argv.index("--permission-prompt-tool") + 1] == "mcp__loomtui__permission_prompt"


# -- the real Claude Code CLI -------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("claude") is None, reason="the claude CLI is not on PATH")
def test_real_claude_code_asks_a_lead_through_the_permission_tool(
        billing: Path, ws: Workspace, sandbox: sb.SandboxRecord, broker: Path, tmp_path: Path) -> None:
    tree = Path(sandbox.worktree or "")
    target = tree / LEDGER
    new_text = target.read_text() + "\n\n# reviewed by a lead\n"
    paths = sb.sandbox_paths(ws.paths, sandbox.id)
    spec = prepare_launch(LoomConfig().runtimes["claude"], {
        "task": "note the review in the ledger", "sandbox": sandbox.id, "worktree": str(tree),
        "context_file": str(paths.context), "script": str(paths.script),
        "mcp_config": str(mcp_config_path(paths.dir))})
    home = tmp_path / "home"
    home.mkdir()
    with FakeAnthropic([tool_use("Read", {"file_path": str(target)}),  # Claude Code writes only what it read
                        tool_use("Write", {"file_path": str(target), "content": new_text}),
                        text("Noted.")]) as api:
        # The environment a sandbox's agent gets, its runtime's defaults included (the MCP connect wait:
        # without it a loaded machine starts Claude Code's first turn before the server is up).
        env = agent_environment(spec, server_env(), {
            "HOME": str(home), "ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": "test",
            "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"})
        agent = subprocess.Popen(list(spec.argv), cwd=tree, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            decided = asyncio.run(lead_decides(billing, "approve"))
            out, err = agent.communicate(timeout=120)
        except AssertionError:
            agent.kill()
            out, err = agent.communicate()
            raise AssertionError(f"{out[-3000:]}\n{err[-2000:]}\n{api.requests and api.tool_results()}") from None
        finally:
            if agent.poll() is None:
                agent.kill()
        results = api.tool_results()
    assert agent.returncode == 0, err[-2000:]
    assert decided.status == "approved" and decided.data["evidence"]["via"] == "mcp"
    assert decided.data["evidence"]["tool_name"] == "Write"
    assert target.read_text() == new_text
    assert len(results) == 2 and not any(r.get("is_error") for r in results), results
    assert json.loads(out.splitlines()[-1])["result"] == "Noted."


def test_errors_are_loom_errors() -> None:
    assert issubclass(DecisionRefused, LoomError)


async def test_an_agent_reads_its_context_and_searches_the_teams(
        billing: Path, ws: Workspace, sandbox: sb.SandboxRecord) -> None:
    tree = Path(sandbox.worktree or "")
    context_file = sb.sandbox_paths(ws.paths, sandbox.id).context
    env = server_env(LOOM_CONTEXT_FILE=str(context_file), LOOM_REPO=str(billing))
    params = StdioServerParameters(command=sys.executable, args=server_argv(tree, 30), env=env, cwd=str(tree))
    async with stdio_client(params) as (read, write_stream), ClientSession(read, write_stream) as client:
        await client.initialize()
        given = await client.call_tool("context", {})
        assert not given.is_error and given.content[0].text == context_file.read_text()  # type: ignore[union-attr]
        found = await call(client, "search_context", query="banker's rounding per line item", limit=3)
    assert found[0]["where"].startswith("docs/adr/0002") and found[0]["excerpt"]


async def test_an_isolated_agent_searches_the_teams_context_through_its_broker(
        ws: Workspace, sandbox: sb.SandboxRecord, broker: Path, tmp_path: Path) -> None:
    """Under bubblewrap the main checkout, where the team's context is read, is hidden (an empty folder):
    `search_context` answered `[]` to every isolated agent. Its broker, outside, reads it; the agent's own
    copy in its worktree (which it can rewrite) is never what is searched."""
    tree = Path(sandbox.worktree or "")
    shutil.rmtree(tree / "docs")
    hidden = tmp_path / "hidden-checkout"
    hidden.mkdir()
    # A lead's draft in the main checkout, not committed (a token in it): the checkout is hidden from the agent,
    # and its search must not serve it either (it did, through the broker).
    draft = ws.root / "docs" / "adr" / "0099-on-call-draft.md"
    draft.write_text("# 99. On-call escalation\n\n## Status\n\nDraft\n\nPagerDuty token pd_live_9f8e7d6c5b4a.\n")
    env = server_env(LOOM_BROKER=str(broker), LOOM_REPO=str(hidden))
    params = StdioServerParameters(command=sys.executable, args=server_argv(tree, 30), env=env, cwd=str(tree))
    async with stdio_client(params) as (read, write_stream), ClientSession(read, write_stream) as client:
        await client.initialize()
        found = await call(client, "search_context", query="banker's rounding per line item", limit=3)
        leaked = await call(client, "search_context", query="pagerduty token on-call escalation", limit=50)
        bad = await client.call_tool("search_context", {"query": "rounding", "limit": 0})
    assert found[0]["where"].startswith("docs/adr/0002") and found[0]["excerpt"]
    assert "pd_live" not in json.dumps(leaked) and "0099" not in json.dumps(leaked), leaked
    assert bad.is_error and "limit: from 1 to 50 sections (got 0)" in bad.content[0].text  # type: ignore[union-attr]


def test_the_broker_answers_every_line_and_a_search_matching_nothing_finds_nothing(
        ws: Workspace, sandbox: sb.SandboxRecord, broker: Path) -> None:
    """A number of 5,000 digits or `[` nested 100,000 deep got no answer (the connection dropped: the broker,
    which "never raises", raised); a query matching nothing answered the first sections it scored anyway."""
    import socket as sockets

    from loomtui.governance.hooks.client import addressable

    with sockets.socket(sockets.AF_UNIX) as client, addressable(broker) as address:
        client.connect(address)
        reader = client.makefile("rb")
        refused = {"ok": False, "error": "a request is one line of JSON"}
        for line, expected in ((b'{"op": "my_claims", "n": ' + b"1" * 5000 + b"}\n", refused),
                               (b"[" * 100_000 + b"\n", refused),
                               (b'{"op": "search_context", "query": "zqzqzq"}\n', {"ok": True, "results": []})):
            client.sendall(line)
            assert json.loads(reader.readline()) == expected
