"""Claude Code, the real CLI, end to end through `loomtui sandbox new --runtime claude` (issue #9).

The built-in claude runtime (`claude -p TASK --output-format stream-json --verbose --mcp-config
... --permission-prompt-tool mcp__loomtui__permission_prompt`) runs against a scripted Anthropic
Messages API on 127.0.0.1 (tests/fake_anthropic.py, one server per sandbox), under bubblewrap
and without it, on the bundled sample repo, with a HOME that has no ~/.claude at all:

- an Edit of a free region is allowed by the PreToolUse hook, lands, is confirmed by the real
  PostToolUse (`claim.confirmed`, its tool_use_id) and is committed on the sandbox branch;
- a Write to a region another sandbox holds is denied naming the holder: the model gets an
  error tool_result saying so, and nothing is written;
- a Write to payments/ledger.py (claim-stage `ledger-claims`: a lead must agree) goes to
  loomtui's MCP permission tool, which opens an escalation and waits; a lead approves and the
  write lands; the review the supervisor runs when the agent ends still asks the payments
  reviewers, nothing merges before them, and (the sample's `merge: auto`) it merges by itself
  once they have approved.

And the faults: a model API that is unreachable or answers 500 (Claude Code's own error is
the sandbox's activity; the sandbox fails; its claims are kept), malformed stream-json lines
(skipped and counted), and interactive mode (tmux).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest

from loomtui.execution import agent_control
from loomtui.execution import sandboxes as sb
from loomtui.execution.isolation import isolation_available
from loomtui.execution.sandbox_paths import TMUX
from loomtui.governance.escalations import decide
from loomtui.governance.hooks.gate import awaiting
from loomtui.governance.policy import load_policy
from loomtui.workflow import tasks
from loomtui.workflow.engine import wait_until_settled
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import demo_repo, git
from tests.fake_anthropic import FakeAnthropic, Turn, text, tool_use

CLAUDE = shutil.which("claude")
needs_claude = pytest.mark.skipif(CLAUDE is None, reason="the claude CLI is not installed (npm i -g "
                                                          "@anthropic-ai/claude-code)")
needs_bwrap = pytest.mark.skipif(not isolation_available(), reason="bubblewrap does not work here")
ISOLATION = [pytest.param(True, id="bwrap", marks=needs_bwrap), pytest.param(False, id="no-isolation")]

FREE = "notifications/formatting.py"
HELD = "customers/validation.py"
LEDGER = "payments/ledger.py"
LEAD, PAYMENTS = "lead@example.com", ("alice@example.com", "bob@example.com")
MARK = "Edited by the agent. "

# -- the agent's world ------------------------------------------------------------------------


@pytest.fixture
def scratch() -> Iterator[Path]:
    """Outside /tmp: bubblewrap gives the agent a private /tmp, so its HOME can't live there."""
    path = Path(tempfile.mkdtemp(prefix="loomtui-claude-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def claude_repo(base: Path) -> Path:
    """The sample repo (whose claude runtime is the built-in one) with one quick gate."""
    repo = demo_repo(base)
    config = repo / ".loom" / "loom.yaml"
    text_ = config.read_text()
    assert "  claude:\n" not in text_, "the sample overrides the built-in claude runtime"
    start, end = text_.index("gates:"), text_.index("context:")
    config.write_text(text_[:start] + 'gates:\n  - name: compile\n    run: ["python", "-c", "pass"]\n'
                      + text_[end:])
    subprocess.run(["git", "commit", "-qam", "The built-in claude runtime, one quick gate"], cwd=repo, check=True,
                   capture_output=True)
    return repo


def agent_env(scratch: Path, api_url: str, **extra: str) -> dict[str, str]:
    """What a user exports: a key and an endpoint. HOME is new and empty (no ~/.claude)."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=scratch))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANTHROPIC_", "CLAUDE_CODE_", "LOOM_")) and k != "PYTHONPATH"}
    env.update(HOME=str(home), ANTHROPIC_BASE_URL=api_url, ANTHROPIC_API_KEY="test", DISABLE_AUTOUPDATER="1",
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", **extra)
    return env


def docstring_edit(repo: Path, path: str) -> tuple[dict[str, Any], str]:
    """An Edit input changing `path`'s first line (its docstring), and the file's text after it."""
    old = (repo / path).read_text()
    first = old.splitlines()[0]
    changed = first.replace('"""', '"""' + MARK, 1)
    return {"old_string": first, "new_string": changed}, old.replace(first, changed, 1)


class ScriptedLater(FakeAnthropic):
    """A fake model whose script is given once the sandbox (and so its worktree path) exists:
    the agent's first turn waits for it."""

    def __init__(self) -> None:
        super().__init__()
        self.ready = threading.Event()

    def _next(self, body: dict[str, Any]) -> Turn:
        if body.get("tools"):
            self.ready.wait(60)
        return super()._next(body)

    def script(self, *turns: Turn) -> None:
        self.add(*turns)
        self.ready.set()


@dataclass
class Agent:
    api: ScriptedLater
    env: dict[str, str]
    task: str
    args: tuple[str, ...] = ()
    sandbox: str = ""
    turns: dict[str, Turn] = field(default_factory=dict)
    last: tuple[Turn, ...] = ()  # after the turns, each with no Read before it


def loom(repo: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loomtui", *args], cwd=repo, capture_output=True, text=True,
                          env=env or {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")},
                          timeout=timeout, check=False)


def person(email: str) -> dict[str, str]:
    """The environment of a person at the command line (LOOM_USER: who decides)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}, "LOOM_USER": email}


def start_agents(repo: Path, isolated: bool, agents: dict[str, Agent]) -> None:
    """`loomtui sandbox new --runtime claude` for every agent at once, each with its own model."""
    running = {}
    for name, agent in agents.items():
        argv = [sys.executable, "-m", "loomtui", "sandbox", "new", "--runtime", "claude", "--task", agent.task,
                "--json", *agent.args, *([] if isolated else ["--no-isolation"])]
        running[name] = subprocess.Popen(argv, cwd=repo, env=agent.env, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
    for name, process in running.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (name, process.returncode, out, err)
        agents[name].sandbox = json.loads(out)["id"]


class Lead:
    """lead@example.com at the escalation queue: approves each permission request as it opens."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.approved: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _watch(self) -> None:
        workspace = open_workspace(self.repo)
        workspace.actor = LEAD
        policy = load_policy(self.repo, ".loom/policy.yaml")
        try:
            while not self._stop.wait(0.1):
                for escalation in workspace.store.list_escalations("open"):
                    if escalation.kind == "permission-request" and escalation.id not in self.approved:
                        decide(workspace, policy, escalation.id, "approve")
                        self.approved.append(escalation.id)
        finally:
            workspace.close()


def audit(workspace: Workspace, sandbox: str) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in workspace.paths.audit_path.read_text().splitlines() if line.strip()]
    return [e for e in entries if e["subject"] == sandbox]


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def ended(workspace: Workspace, agent: Agent, timeout: float = 150) -> sb.SandboxRecord:
    """The sandbox once its agent has ended (exit 0) and the supervisor has advanced it as far as it
    goes: a change is gated and judged by the policy, which here asks people."""
    wait_until_settled(workspace, agent.sandbox, timeout=timeout)
    record = sb.get_sandbox(workspace, agent.sandbox)
    log = sb.log_path(workspace, record.id).read_text(errors="replace")
    actions = [e["action"] for e in audit(workspace, record.id)]
    assert record.exit_code == 0 and "sandbox.exited" in actions and "sandbox.failed" not in actions, (
        record.status, record.data.get("error"), log[-3000:], agent.api.tool_results())
    return record


def reviewed(workspace: Workspace, record: sb.SandboxRecord, rule: str) -> Any:
    """The post-gate review the supervisor ran on the sandbox's branch tip: the one quick gate
    passed, and the policy asks people (`rule` among its rules): an open escalation, `awaiting_review`."""
    assert record.status == "awaiting_review", (record.status, record.data)
    tip = git_out(workspace.root, "rev-parse", record.branch or "").strip()
    post = workspace.store.get_escalation(int(record.data["review_escalation"]))
    assert post is not None and post.kind == "post-gate" and post.status == "open", post
    assert post.sandbox_id == record.id and post.data["commit"] == tip
    assert post.data["outcome"] == "require", post.data["outcome"]
    assert rule in [r["name"] for r in post.data["rules"]], post.data["rules"]
    runs = workspace.store.gate_runs(record.id)
    assert [(r.gate, r.status, r.commit_sha) for r in runs] == [("compile", "passed", tip)], runs
    assert post.data["evidence"]["gates"]["compile"]["status"] == "passed"
    actions = [e["action"] for e in audit(workspace, record.id)]
    assert actions.index("sandbox.exited") < actions.index("sandbox.gating") < actions.index(
        "policy.evaluated") < actions.index("sandbox.awaiting_review"), actions
    return post


# -- the runs ----------------------------------------------------------------------------------


@needs_claude
@pytest.mark.parametrize("isolated", ISOLATION)
def test_real_claude_free_edit_lands_held_region_refused_ledger_asks_a_lead(
        isolated: bool, tmp_path: Path, scratch: Path) -> None:
    repo = claude_repo(tmp_path)
    workspace = open_workspace(repo)
    # Another sandbox holds the validation module (its agent never started).
    holder = tasks.create_sandbox(workspace, "hold validation", "command", command=["true"], isolate=False,
                               claims=[HELD]).id

    # The model's script for two agents, one sandbox each, running at once.
    free_edit, free_after = docstring_edit(repo, FREE)
    _ledger_edit, ledger_after = docstring_edit(repo, LEDGER)
    held_before = (repo / HELD).read_text()
    agents: dict[str, Agent] = {}
    try:
        edits = {"free": tool_use("Edit", {"file_path": "WT/" + FREE, **free_edit}),
                 "held": tool_use("Write", {"file_path": "WT/" + HELD, "content": "taken = True\n"})}
        ledger = {"ledger": tool_use("Write", {"file_path": "WT/" + LEDGER, "content": ledger_after})}
        for name, turns in (("edits", edits), ("ledger", ledger)):
            api = ScriptedLater().start()
            # A task starting with "-r": it was read as --resume, and the model never reached.
            agents[name] = Agent(api, agent_env(scratch, api.url), turns=turns,
                                 task=f"{'-r ' if name == 'ledger' else ''}{name}: edit the docstrings")
        # A command, in a HOME with no ~/.claude: under bubblewrap Claude Code could not make it (the
        # home is read-only) and failed every Bash call, `pwd` too.
        agents["edits"].last = (tool_use("Bash", {"command": "pwd", "description": "where"}),)
        start_agents_scripted(repo, isolated, agents, reads={"edits": (FREE, HELD), "ledger": (LEDGER,)})
        with Lead(repo) as lead:
            records = {name: ended(workspace, agent) for name, agent in agents.items()}
    finally:
        for agent in agents.values():
            agent.api.stop()

    for name, record in records.items():
        assert record.isolation == ("bwrap" if isolated else "none"), record.isolation
        # The network is on for claude (network: true): 127.0.0.1 reached the fake model.
        assert agents[name].api.turn_requests, f"{name}: claude never reached the model"

    # -- the free edit: allowed, written, confirmed by PostToolUse, committed on the branch.
    edits_record, free_id = records["edits"], agents["edits"].turns["free"].tool_id
    results = {r["tool_use_id"]: r for r in agents["edits"].api.tool_results()}
    assert not results[free_id].get("is_error"), results[free_id]
    assert (Path(edits_record.worktree or "") / FREE).read_text() == free_after
    assert FREE in git_out(repo, "diff", "--name-only", f"main...{edits_record.branch}").split()
    assert edits_record.data.get("saved_commit"), edits_record.data  # loomtui committed what it left
    entries = audit(workspace, edits_record.id)
    allowed = [e for e in entries if e["action"] == "hook.edit" and e["details"].get("tool_use_id") == free_id]
    assert [e["details"]["decision"] for e in allowed] == ["allow"], allowed
    assert allowed[0]["details"]["path"] == FREE and allowed[0]["details"]["tool"] == "Edit"
    confirmed = [e for e in entries if e["action"] == "claim.confirmed"]
    assert [(e["details"]["tool_use_id"], e["details"]["tool"]) for e in confirmed] == [(free_id, "Edit")], confirmed
    claims = workspace.store.live_claims(edits_record.id)
    assert claims and all(not awaiting(c) for c in claims), [(c.target, c.reason) for c in claims]
    assert any(r.startswith(FREE) for c in claims for r in c.region_ids), [c.region_ids for c in claims]

    # `sandbox logs` reads as what happened (it printed one stream-json event a line); --raw as written.
    shown = loom(repo, "sandbox", "logs", edits_record.id, "-n", "1000")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    # Paths in the worktree as the repository names them (each was the worktree's whole path, cut short).
    assert f"▸ Edit {FREE}" in lines and "▸ Bash pwd" in lines and f"✗ denied: Write {HELD}" in lines, lines
    assert "done" in lines and any(line.startswith("■ finished: success") for line in lines), lines
    assert not any(line.startswith("{") for line in lines), lines
    raw = loom(repo, "sandbox", "logs", edits_record.id, "-n", "1000", "--raw").stdout.splitlines()
    assert len(raw) > len(lines) and all(line.startswith("{") or line.startswith("── loomtui") for line in raw if line)

    bash = agents["edits"].last[0].tool_id
    assert not results[bash].get("is_error") and edits_record.worktree in json.dumps(results[bash]["content"]), \
        results[bash]

    # -- the held region: denied naming the holder; the model was told; nothing written.
    held_id = agents["edits"].turns["held"].tool_id
    assert results[held_id].get("is_error") is True, results[held_id]
    assert f"held by sandbox {holder}" in json.dumps(results[held_id]["content"]), results[held_id]
    assert (Path(edits_record.worktree or "") / HELD).read_text() == held_before
    assert HELD not in git_out(repo, "diff", "--name-only", f"main...{edits_record.branch}").split()
    denied = [e for e in entries if e["action"] == "hook.edit" and e["details"].get("tool_use_id") == held_id]
    assert denied and denied[0]["details"]["decision"] == "deny" and holder in denied[0]["details"]["reason"]
    assert not any(HELD in r for c in claims for r in c.region_ids)
    assert [c.target for c in workspace.store.live_claims(holder)] == [HELD]
    assert edits_record.data["agent_result"]["denials"], edits_record.data["agent_result"]
    # Nobody was asked while it ran; once it ended, its review asks the platform group (notifications/*.py).
    edits_post = reviewed(workspace, edits_record, "api-and-services")
    assert [e.id for e in workspace.store.list_escalations() if e.sandbox_id == edits_record.id] == [edits_post.id]

    # -- the ledger: asked of a person through the MCP permission tool, approved by the lead.
    ledger_record, ledger_id = records["ledger"], agents["ledger"].turns["ledger"].tool_id
    (escalation,) = [e for e in workspace.store.list_escalations() if e.sandbox_id == ledger_record.id
                     and e.kind != "post-gate"]
    assert escalation.kind == "permission-request" and escalation.status == "approved"
    assert escalation.id in lead.approved
    assert escalation.data["evidence"]["via"] == "mcp" and escalation.data["evidence"]["tool_use_id"] == ledger_id
    assert escalation.data["evidence"]["tool_name"] == "Write"
    assert (Path(ledger_record.worktree or "") / LEDGER).read_text() == ledger_after
    ledger_results = {r["tool_use_id"]: r for r in agents["ledger"].api.tool_results()}
    assert not ledger_results[ledger_id].get("is_error"), ledger_results[ledger_id]
    entries = audit(workspace, ledger_record.id)
    asked = [e["details"]["decision"] for e in entries if e["action"] == "hook.edit"
             and e["details"].get("tool_use_id") == ledger_id]
    assert asked and set(asked) == {"ask"}, asked  # the hook's ask, then the permission tool's own check
    assert [e["details"]["tool_use_id"] for e in entries if e["action"] == "claim.confirmed"] == [ledger_id]

    # -- nothing reaches main without the policy's approvals: the supervisor's review asks the payments
    # reviewers (the claim stage was granted by the lead, so ledger-claims is not asked again).
    post = reviewed(workspace, ledger_record, "payments-high-risk")
    rules = [rule["name"] for rule in post.data["rules"]]
    assert not any(r.startswith("ledger-claims") for r in rules), rules
    main_before = git_out(repo, "rev-parse", "main")
    refused = loom(repo, "sandbox", "merge", ledger_record.id)
    assert refused.returncode == 1 and "not approved" in refused.stderr, refused.stderr
    assert git_out(repo, "rev-parse", "main") == main_before
    # The sample's policy merges an approved change by itself; each reviewer approves from the CLI.
    assert load_policy(repo, ".loom/policy.yaml").merge == "auto"
    first, second = PAYMENTS
    approve = loom(repo, "escalation", "approve", str(post.id), env=person(first))
    assert approve.returncode == 0, approve.stderr
    assert sb.get_sandbox(workspace, ledger_record.id).status == "awaiting_review"  # one of two approvals
    assert git_out(repo, "rev-parse", "main") == main_before
    approve = loom(repo, "escalation", "approve", str(post.id), env=person(second))
    assert approve.returncode == 0, approve.stderr
    merged = sb.get_sandbox(workspace, ledger_record.id)
    assert merged.status == "merged", (merged.status, approve.stdout)
    assert git_out(repo, "show", f"main:{LEDGER}") == ledger_after
    assert merged.data["merged_commit"] == git_out(repo, "rev-parse", "main").strip()
    message = git_out(repo, "log", "-1", "--format=%B", "main")
    assert f"Loom-Escalation: #{post.id}" in message and f"Loom-Approved-by: {first}, {second}" in message, message
    assert workspace.store.live_claims(ledger_record.id) == []  # released by the merge
    # The other change still waits for the platform group.
    assert sb.get_sandbox(workspace, edits_record.id).status == "awaiting_review"
    workspace.close()


def start_agents_scripted(repo: Path, isolated: bool, agents: dict[str, Agent],
                          reads: dict[str, tuple[str, ...]]) -> None:
    """Start the agents, then give each model its script with the worktree's real paths (Claude Code
    writes only a file it has read, so each write is preceded by a Read)."""
    start_agents(repo, isolated, agents)
    workspace = open_workspace(repo)
    try:
        for name, agent in agents.items():
            tree = sb.get_sandbox(workspace, agent.sandbox).worktree or ""
            for turn in agent.turns.values():
                for key in ("file_path",):
                    if isinstance(turn.tool_input.get(key), str):
                        turn.tool_input[key] = turn.tool_input[key].replace("WT", tree, 1)
            script: list[Turn] = []
            for path, (_label, turn) in zip(reads[name], agent.turns.items(), strict=True):
                script += [tool_use("Read", {"file_path": f"{tree}/{path}"}), turn]
            agent.api.script(*script, *agent.last, text("done"))
    finally:
        workspace.close()


# -- faults --------------------------------------------------------------------------------------


def activities(workspace: Workspace, sandbox: str) -> list[dict[str, Any]]:
    return [e.data for e in workspace.store.events_since(0) if e.kind == "sandbox.activity"
            and e.subject == sandbox]


@needs_claude
def test_a_model_api_unreachable_or_failing_fails_the_sandbox_with_claude_s_own_error_claims_kept(
        tmp_path: Path, scratch: Path) -> None:
    repo = claude_repo(tmp_path)
    workspace = open_workspace(repo)
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    # CLAUDE_CODE_MAX_RETRIES (passed: CLAUDE_CODE_*) keeps Claude Code from retrying for minutes.
    with FakeAnthropic(always_fail=500) as failing:
        agents = {
            "unreachable": Agent(failing, agent_env(scratch, closed, CLAUDE_CODE_MAX_RETRIES="0"), task="edit",
                                 args=("--claim", FREE)),
            "500": Agent(failing, agent_env(scratch, failing.url, CLAUDE_CODE_MAX_RETRIES="0"), task="edit",
                         args=("--claim", HELD)),
        }
        start_agents(repo, False, agents)
        records = {name: sb.wait_for_status(workspace, agent.sandbox, {"exited", "failed"}, timeout=90)
                   for name, agent in agents.items()}
    assert failing.requests, "claude never reached the failing model"
    for name, record in records.items():
        assert record.status == "failed" and record.exit_code == 1, (name, record.status, record.data)
        words = "Unable to connect" if name == "unreachable" else "500"
        # The reason names the API's error (`sandbox list`, --json, the audit): a code alone said nothing.
        error = str(record.data.get("error"))
        assert error.startswith("exited with code 1: API Error") and words in error, error
        failed = [e for e in audit(workspace, record.id) if e["action"] == "sandbox.failed"]
        assert [e["details"]["reason"] for e in failed] == [error], failed
        seen = activities(workspace, record.id)
        (result,) = [a for a in seen if a["kind"] == "result"]
        assert result["is_error"] is True and result["summary"].startswith("finished: error (API Error"), result
        assert record.data["agent_result"]["is_error"] is True
        assert any(words in a["summary"] for a in seen if a["kind"] == "text"), seen
        assert [c.target for c in workspace.store.live_claims(record.id)], f"{name}: claims are kept for a retry"
        assert "unparsed_lines" not in record.data
        actions = [e["action"] for e in audit(workspace, record.id)]
        assert "sandbox.failed" in actions, actions
    workspace.close()


def test_malformed_stream_json_lines_are_skipped_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in `claude` (the real one never writes a broken line on purpose) mixing good lines
    with broken ones: the good ones are activity, the broken ones are counted, the run is fine."""
    repo = claude_repo(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "claude"
    program.write_text(f"#!{sys.executable}\n" + textwrap.dedent("""\
        import json
        def emit(text):
            print(text, flush=True)
        emit(json.dumps({"type": "system", "subtype": "init", "model": "stand-in"}))
        emit('{"type": "assistant", "message": {"content": [{"type": "text"')   # cut short
        emit("[1, 2, 3]")                                                        # not an object
        emit('{"type": "assistant", "a": ' + "[" * 3000 + "]" * 3000 + "}")  # past the decoder's recursion
        emit("Warning: something the CLI printed on its own")                    # not JSON
        emit("")
        emit(json.dumps({"type": "assistant", "message": {"content": [{"type": "text", "text": "Done."}]}}))
        import os  # a path in its worktree, as Claude Code names it: whole
        emit(json.dumps({"type": "assistant", "message": {"content": [
            {"type": "tool_use", "name": "Read", "input": {"file_path": os.getcwd() + "/notes/a.md"}}]}}))
        # Lines longer than the supervisor's read (a 128 KB Write; the result repeats a denied one's input):
        # each was parsed in pieces, its tool call and the result (denials, cost) lost.
        emit(json.dumps({"type": "assistant", "message": {"content": [
            {"type": "text", "text": "Long: " + "x" * 200000}]}}))
        emit(json.dumps({"type": "result", "subtype": "success", "num_turns": 1, "is_error": False,
                         "permission_denials": [{"tool_name": "Write", "tool_input": {"content": "y" * 150000}}]}))
    """))
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    workspace = open_workspace(repo)
    record = tasks.start(workspace, tasks.create_sandbox(workspace, "say done", "claude", isolate=False).id)
    # It changed nothing: it stays exited (nothing to review).
    assert wait_until_settled(workspace, record.id, timeout=60).step == "no-change"
    done = sb.get_sandbox(workspace, record.id)
    assert done.status == "exited", done.data
    # The nested one killed the supervisor (RecursionError), and the agent with it.
    assert done.data["unparsed_lines"] == 4
    summaries = [a["summary"] for a in activities(workspace, record.id)]
    # The path in its worktree as the repository names it, as the Log tab says it (it was whole, over two lines).
    assert summaries[:3] == ["session started (stand-in)", "Done.", "Read notes/a.md"], summaries[:3]
    assert summaries[3].startswith("Long: xxx")
    assert summaries[4:] == ["denied: Write", "finished: success, 1 turn, 1 permission denial"], summaries[4:]
    assert done.data["agent_result"]["is_error"] is False
    workspace.close()


def test_claude_only_retrying_a_model_api_that_never_answers_is_stopped_after_the_offline_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in `claude` retrying as the real one does against an API that accepts and never answers (its own
    timeout, then ten retries: near an hour of "agent running"): stopped after the runtime's offline_timeout."""
    repo = claude_repo(tmp_path)
    config = repo / ".loom" / "loom.yaml"
    config.write_text(config.read_text().replace("runtimes:\n", "runtimes:\n  claude:\n    offline_timeout: 1\n", 1)
                      if "runtimes:\n" in config.read_text() else
                      config.read_text() + "runtimes:\n  claude:\n    offline_timeout: 1\n")
    git(repo, "commit", "-qam", "offline after 1 s")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "claude"
    program.write_text(f"#!{sys.executable}\n" + textwrap.dedent("""\
        import json, time
        print(json.dumps({"type": "system", "subtype": "init", "model": "stand-in"}), flush=True)
        for attempt in range(1, 1000):
            print(json.dumps({"type": "system", "subtype": "api_retry", "attempt": attempt, "max_retries": 1000,
                              "error": "unknown"}), flush=True)
            time.sleep(0.2)
    """))
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    workspace = open_workspace(repo)
    record = tasks.start(workspace, tasks.create_sandbox(workspace, "wait", "claude", isolate=False).id)
    done = sb.wait_for_status(workspace, record.id, {"exited", "failed"}, timeout=60)
    assert done.status == "failed", done.data
    assert str(done.data.get("error")).startswith("the model API did not answer for 1 s (model API gave no answer: "
                                                  "retry "), done.data
    assert "sandbox.offline" in [e["action"] for e in audit(workspace, record.id)]
    workspace.close()


# -- interactive (tmux) -----------------------------------------------------------------------------


def pane(session: str) -> str:
    return subprocess.run([*TMUX, "capture-pane", "-p", "-t", f"={session}:"], capture_output=True, text=True,
                          check=False).stdout


def wait_for(what: str, check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@needs_claude
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_interactive_claude_in_tmux_takes_a_typed_prompt_and_its_edit_is_checked(
        tmp_path: Path, scratch: Path) -> None:
    """`mode: interactive`: Claude Code's own TUI in the tmux session `loom-ID`, with the hooks and the
    MCP server wired as for the headless runtime; a person types a prompt (here tmux send-keys)."""
    repo = claude_repo(tmp_path)
    config = repo / ".loom" / "loom.yaml"
    config.write_text(config.read_text().replace("runtimes:\n", (
        "runtimes:\n  claude-tui:\n    argv: [claude, --mcp-config, '{mcp_config}', --permission-prompt-tool,"
        " mcp__loomtui__permission_prompt]\n    mode: interactive\n    network: true\n"), 1))
    subprocess.run(["git", "commit", "-qam", "An interactive claude"], cwd=repo, check=True, capture_output=True)
    workspace = open_workspace(repo)
    with ScriptedLater() as api:
        env = agent_env(scratch, api.url)
        # What a user of the TUI has already answered once: onboarding done, this API key approved.
        (Path(env["HOME"]) / ".claude.json").write_text(json.dumps({
            "hasCompletedOnboarding": True, "theme": "dark",
            "customApiKeyResponses": {"approved": ["test"], "rejected": []}}))
        agent = Agent(api, env, task="interactive session")
        started = loom(repo, "sandbox", "new", "--runtime", "claude-tui", "--task", agent.task, "--json", env=env)
        assert started.returncode == 0, started.stderr
        record = json.loads(started.stdout)
        sandbox, tree = record["id"], Path(record["worktree"])
        assert record["isolation"] == ("bwrap" if isolation_available() else "none")
        session = f"loom-{sandbox}"
        new_file = tree / "notifications" / "hello.py"
        api.script(tool_use("Write", {"file_path": str(new_file), "content": "HELLO = 1\n"}), text("Written."))
        try:
            wait_for("the session", lambda: sb.get_sandbox(workspace, sandbox).data.get("tmux_session") == session)
            wait_for("the folder trust question", lambda: "trust this folder" in pane(session))
            subprocess.run([*TMUX, "send-keys", "-t", f"={session}:", "Enter"], check=True)
            wait_for("the prompt", lambda: "for shortcuts" in pane(session))
            subprocess.run([*TMUX, "send-keys", "-t", f"={session}:", "-l", "write the hello module"], check=True)
            time.sleep(0.3)
            subprocess.run([*TMUX, "send-keys", "-t", f"={session}:", "Enter"], check=True)
            wait_for("the write", new_file.exists)
            wait_for("its PostToolUse", lambda: any(e["action"] == "claim.confirmed"
                                                    for e in audit(workspace, sandbox)))
        finally:
            stopped = agent_control.stop(workspace, sandbox, grace=5)
    assert new_file.read_text() == "HELLO = 1\n"
    (write,) = [e for e in audit(workspace, sandbox) if e["action"] == "hook.edit"]
    assert write["details"]["decision"] == "allow" and write["details"]["path"] == "notifications/hello.py"
    assert (tree / ".claude" / "settings.json").exists()  # the hooks that answered
    # Stopped, its session's work saved on the branch, then reviewed by the supervisor with no app open.
    assert stopped.status not in ("running", "paused", "failed"), stopped.status
    wait_until_settled(workspace, sandbox, timeout=60)
    done = sb.get_sandbox(workspace, sandbox)
    assert done.data.get("saved_commit"), done.data
    assert "HELLO = 1" in git_out(repo, "show", f"{done.branch}:notifications/hello.py")
    reviewed(workspace, done, "api-and-services")
    workspace.close()
