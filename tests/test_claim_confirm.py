"""The provisional-claim window (`coordination.confirm_seconds`): a claim made for a tool call is
released when the call never happens, but not while the call waits on a person."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loomtui.config import parse_config
from loomtui.errors import ConfigError
from loomtui.governance.broker import Broker, confirm_window_from_env
from loomtui.governance.coordinator import governed_coordinator
from loomtui.governance.escalations import decide
from loomtui.governance.hooks.gate import NEVER_HAPPENED, HookGate, awaiting
from loomtui.governance.policy import load_policy
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import demo_repo, wait_until

AGENT = "agent-1"
LEDGER = "payments/ledger.py"
LEAD = "lead@example.com"


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def billing(tmp_path: Path) -> Path:
    return demo_repo(tmp_path)


@pytest.fixture
def ws(billing: Path) -> Iterator[Workspace]:
    workspace = open_workspace(billing)
    yield workspace
    workspace.close()


def ledger_call(gate: HookGate, billing: Path, tool_use_id: str) -> None:
    line = next(i for i, row in enumerate((billing / LEDGER).read_text().splitlines(), 1) if "def find_charge" in row)
    answer = gate.check_tool("Edit", [{"path": str(billing / LEDGER), "lines": [line, line]}],
                             tool_use_id=tool_use_id)
    assert answer.decision == "ask", answer  # ledger-claims: a lead must agree


def lead_decides(billing: Path, escalation_id: int, decision: str) -> float:
    lead = open_workspace(billing)
    lead.actor = LEAD
    try:
        decided = decide(lead, load_policy(billing, ".loom/policy.yaml"), escalation_id, decision,
                         reason="" if decision == "approve" else "not this week")
    finally:
        lead.close()
    return decided.updated


def waiting_claims(ws: Workspace) -> list[int]:
    return [c.id for c in ws.store.live_claims(AGENT) if awaiting(c)]


@pytest.mark.parametrize("with_id", [True, False], ids=["mcp-permission-tool", "permission-request-hook"])
def test_a_claim_waiting_on_a_person_is_kept_until_they_decide_then_confirmed(
        billing: Path, ws: Workspace, with_id: bool) -> None:
    clock = Clock()
    gate = HookGate(ws, AGENT, billing, confirm_window=120, clock=clock)
    ledger_call(gate, billing, "toolu_L")
    (claim,) = ws.store.live_claims(AGENT)
    # The permission tool (which names the call) or a PermissionRequest hook (which may not).
    opened = gate.open_permission_request("Edit", {"file_path": str(billing / LEDGER), "old_string": "a",
                                                   "new_string": "b"},
                                          extra={"via": "mcp", "tool_use_id": "toolu_L"} if with_id else {})
    clock.now = claim.created + 10_000  # the person takes their time: far past the window
    assert gate.release_unconfirmed() == []
    assert waiting_claims(ws) == [claim.id]
    decided = lead_decides(billing, opened["id"], "approve")
    clock.now = decided + 60  # approved: the window starts again from the decision
    assert gate.release_unconfirmed() == []
    assert gate.confirm_tool_use("toolu_L", "Edit") == [claim.id]  # its PostToolUse
    assert waiting_claims(ws) == [] and [c.id for c in ws.store.live_claims(AGENT)] == [claim.id]


def test_an_approved_call_that_never_happens_is_released_a_window_after_the_decision(
        billing: Path, ws: Workspace) -> None:
    clock = Clock()
    gate = HookGate(ws, AGENT, billing, confirm_window=120, clock=clock)
    ledger_call(gate, billing, "toolu_L")
    opened = gate.open_permission_request("Edit", {"file_path": str(billing / LEDGER)},
                                          extra={"tool_use_id": "toolu_L"})
    decided = lead_decides(billing, opened["id"], "approve")
    clock.now = decided + 119
    assert gate.release_unconfirmed() == []
    clock.now = decided + 121
    assert len(gate.release_unconfirmed()) == 1
    assert not ws.store.live_claims(AGENT)
    (released,) = [e for e in ws.audit.entries() if e.action == "claim.released"]
    assert released.details["reason"] == NEVER_HAPPENED


@pytest.mark.parametrize("decision", ["reject", "withdraw"])
def test_a_refused_or_withdrawn_request_releases_its_claims(billing: Path, ws: Workspace, decision: str) -> None:
    clock = Clock()
    gate = HookGate(ws, AGENT, billing, confirm_window=120, clock=clock)
    ledger_call(gate, billing, "toolu_L")
    (claim,) = ws.store.live_claims(AGENT)
    opened = gate.open_permission_request("Edit", {"file_path": str(billing / LEDGER)},
                                          extra={"tool_use_id": "toolu_L"})
    if decision == "reject":
        lead_decides(billing, opened["id"], "reject")
    else:
        gate.withdraw_permission_request(opened["id"], "no decision within 120s")
    clock.now = claim.created + 60
    assert gate.release_unconfirmed() == []  # still inside its window
    clock.now = claim.created + 121
    assert gate.release_unconfirmed() == [claim.id]
    (released,) = [e for e in ws.audit.entries() if e.action == "claim.released"]
    status = "rejected" if decision == "reject" else "withdrawn"
    assert released.details["reason"] == \
        f"the edit it was claimed for was refused (escalation #{opened['id']} {status})"
    assert released.details["escalation"] == opened["id"]


def test_a_call_refused_before_a_person_saw_it_lets_its_claims_go_at_once(billing: Path, ws: Workspace) -> None:
    """Refused for its size (or a block, or too many asks), a call's claim held the function for the rest of
    its window, every other sandbox refused it for a call that would never happen."""
    gate = HookGate(ws, AGENT, billing, confirm_window=120, clock=Clock())
    ledger_call(gate, billing, "toolu_shared")
    ledger_call(gate, billing, "toolu_big")  # inside the same claim: it waits for both calls now
    (claim,) = ws.store.live_claims(AGENT)
    assert awaiting(claim) == ["toolu_shared", "toolu_big"]
    refused = gate.open_permission_request("Edit", {"file_path": str(billing / LEDGER), "new_string": "x" * 70_000},
                                           extra={"tool_use_id": "toolu_big"})
    assert refused["decision"] == "deny"
    (kept,) = ws.store.live_claims(AGENT)  # the other call may still come: it waits for that one alone
    assert awaiting(kept) == ["toolu_shared"]
    assert gate.open_permission_request("Edit", {"file_path": str(billing / LEDGER), "new_string": "x" * 70_000},
                                        extra={"tool_use_id": "toolu_shared"})["decision"] == "deny"
    assert ws.store.live_claims(AGENT) == []
    (released,) = [e for e in ws.audit.entries() if e.action == "claim.released"]
    assert released.details["reason"].startswith("the edit it was claimed for was refused: this Edit call cannot "
                                                 "be put to a person whole")
    assert released.details["tool_use_id"] == "toolu_shared"


def test_a_call_no_one_was_asked_about_is_released_after_the_window(billing: Path, ws: Workspace) -> None:
    clock = Clock()
    gate = HookGate(ws, AGENT, billing, confirm_window=30, clock=clock)
    ledger_call(gate, billing, "toolu_L")
    # Another call's request does not keep this one's claims.
    gate.open_permission_request("Bash", {"command": "make"}, extra={"tool_use_id": "toolu_other"})
    (claim,) = ws.store.live_claims(AGENT)
    clock.now = claim.created + 31
    assert gate.release_unconfirmed() == [claim.id]


def test_a_lapsed_claim_of_a_holder_with_no_broker_is_let_go_by_the_next_claim_anyone_makes(
        billing: Path, ws: Workspace) -> None:
    """A hook in a person's checkout (`hook claude --sandbox mine`) whose call never came: its session's
    next hook call would have let it go, but none came, and the file stayed held for the lease's hour."""
    from loomtui.errors import LoomError
    from loomtui.governance.hooks.gate import release_lapsed

    gate = HookGate(ws, "mine", billing, confirm_window=120)
    readme = billing / "README.md"
    assert gate.check_tool("Edit", [{"path": str(readme), "lines": None}], tool_use_id="t1").decision != "deny"
    (claim,) = ws.store.live_claims("mine")
    assert awaiting(claim) == ["t1"]
    assert release_lapsed(ws, clock=lambda: claim.created + 60) == []  # its window is still open
    with pytest.raises(LoomError, match="refused"):
        governed_coordinator(ws).claim("other", "README.md")
    assert release_lapsed(ws, clock=lambda: claim.created + 121) == [claim.id]
    assert governed_coordinator(ws).claim("other", "README.md").claim is not None
    (released,) = [e for e in ws.audit.entries() if e.action == "claim.released"]
    assert released.subject == "mine" and released.details["reason"] == NEVER_HAPPENED


def test_a_claim_anyone_makes_lets_go_of_what_has_lapsed(billing: Path, ws: Workspace) -> None:
    config = billing / ".loom" / "loom.yaml"
    config.write_text(config.read_text() + "  confirm_seconds: 0.2\n")  # the file ends in coordination:
    gate = HookGate(ws, "mine", billing)
    gate.check_tool("Edit", [{"path": str(billing / "README.md"), "lines": None}], tool_use_id="t1")
    (claim,) = ws.store.live_claims("mine")
    wait_until(lambda: time.time() > claim.created + 0.3, what="the window to close")
    assert governed_coordinator(ws).claim("other", "README.md").claim is not None
    assert ws.store.live_claims("mine") == []


# -- the window's setting ------------------------------------------------------------------------


def test_confirm_seconds_is_read_from_the_config(billing: Path, ws: Workspace,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_config("coordination:\n  confirm_seconds: 45\n", ".loom/loom.yaml").coordination.confirm_seconds \
        == 45
    assert parse_config("version: 1\n", ".loom/loom.yaml").coordination.confirm_seconds == 120
    config = billing / ".loom" / "loom.yaml"
    config.write_text(config.read_text() + "  confirm_seconds: 7.5\n")  # the file ends in coordination:
    monkeypatch.delenv("LOOM_CLAIM_CONFIRM_S", raising=False)
    assert HookGate(ws, AGENT, billing).confirm_window == 7.5
    assert Broker(ws, AGENT, billing, billing / "b.sock").gate.confirm_window == 7.5
    monkeypatch.setenv("LOOM_CLAIM_CONFIRM_S", "3")  # the environment overrides it
    assert confirm_window_from_env() == 3
    assert Broker(ws, AGENT, billing, billing / "b.sock").gate.confirm_window == 3
    monkeypatch.setenv("LOOM_CLAIM_CONFIRM_S", "soon")
    assert confirm_window_from_env() is None


@pytest.mark.parametrize(("text", "error"), [
    ("coordination:\n  confirm_seconds: 0\n", ".loom/loom.yaml:2: coordination.confirm_seconds: must be greater than 0"),
    ("coordination:\n  confirm_seconds: soon\n", ".loom/loom.yaml:2: coordination.confirm_seconds: expected a number"),
    ("coordination:\n\n  confirm_seconds: 99999999\n", ".loom/loom.yaml:3: coordination.confirm_seconds: must be at most"),
])
def test_a_bad_confirm_seconds_names_its_line(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, ".loom/loom.yaml")
    assert str(raised.value).startswith(error), str(raised.value)
