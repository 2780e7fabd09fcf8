"""End to end, as a tech lead would: the installed `loomtui demo` in a real terminal (tmux), its
escalations triaged with the queue's keys (approve, reject with a reason, override through its
confirmation), then the store and `loomtui audit verify` checked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_e2e_tmux import LOOMTUI, Terminal

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
WAIT_S = 150.0  # the scenario's agents, gates and merges, on a loaded machine
ROW = re.compile(r"^ (\d+)\s+(?:high|critical|medium|low)\s")
PANE_BORDER = "▏"  # the detail pane's left border (vkey)


def _queue_rows(screen: str) -> list[tuple[int, str]]:
    """The queue's rows as shown: (escalation id, the row's own text), top to bottom. A screen line also
    holds the detail pane, right of its border: the selected escalation's text must not make another
    row match (the ledger's detail names the rounding change)."""
    return [(int(m.group(1)), line.split(PANE_BORDER, 1)[0]) for line in screen.splitlines()
            if (m := ROW.match(line))]


def _select(term: Terminal, words: str) -> int:
    """Put the queue's cursor on the row whose text has `words` once it is there; its escalation id."""
    deadline = time.monotonic() + WAIT_S
    rows = _queue_rows(term.screen())
    while not any(words in line for _id, line in rows):
        assert time.monotonic() < deadline, f"no {words!r} row in the queue:\n{term.screen()}"
        time.sleep(0.2)
        rows = _queue_rows(term.screen())
    term.keys("Home")
    index = next(n for n, (_id, line) in enumerate(rows) if words in line)
    for _ in range(index):
        term.keys("Down")
    return rows[index][0]  # (the detail pane follows; a toast may cover it: the store is checked after)


def _wait_until_gone(term: Terminal, words: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while any(words in line for _id, line in _queue_rows(term.screen())):
        assert time.monotonic() < deadline, f"{words!r} stayed in the queue:\n{term.screen()}"
        time.sleep(0.2)


LEDGER_SCRIPT = '- {after: 0.2, log: "moving the ledger to integer cents"}\n'


def _ask_to_start_on_the_ledger(scratch: Path) -> tuple[Path, str]:
    """bob asks, from another terminal, to start an agent on the ledger: the policy holds its start for a
    lead (a pre-start escalation, before any code is written), which the lead will reject. The demo's
    repository and the new sandbox's id (the queue's row shows the id; its summary is cut before the path)."""
    repos = list(scratch.glob("loomtui-demo-*/billing-service"))
    assert len(repos) == 1, repos
    script = scratch / "ledger.yaml"
    script.write_text(LEDGER_SCRIPT)
    asked = subprocess.run(
        [LOOMTUI, "sandbox", "new", "--runtime", "script", "--script", str(script), "--claim", "payments/ledger.py",
         "--task", "move the ledger's postings to integer cents"], cwd=repos[0], capture_output=True, text=True,
        env={**os.environ, "LOOM_USER": "bob@example.com"})
    assert asked.returncode == 0 and "waits for approval to start" in asked.stdout, asked.stdout + asked.stderr
    created = re.search(r"^sandbox (\S+?):", asked.stdout, re.M)
    assert created is not None, asked.stdout
    return repos[0], created.group(1)


def test_a_lead_triages_the_demo_with_keys_and_the_audit_verifies(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"  # the demo's repository is made here: the only one, so it can be found
    scratch.mkdir()
    term = Terminal(tmp_path, f"TMPDIR={scratch} {LOOMTUI} demo --keep")
    try:
        term.wait_for("loomtui · demo", timeout=30)
        repo, held_sandbox = _ask_to_start_on_the_ledger(scratch)
        term.keys("3")
        term.wait_for("Escalations", timeout=10)

        ledger = _select(term, held_sandbox)  # a start held for a lead: rejected, with a reason
        term.keys("r")
        term.wait_for(f"Reject escalation #{ledger}: why?")
        term.keys("-l", "not during the month-end freeze")
        term.keys("Enter")
        _wait_until_gone(term, held_sandbox)

        rounding = _select(term, "round_minor_units")  # payments: two approvals, yours and a reviewer's
        term.keys("a")
        _wait_until_gone(term, "round_minor_units")
        refunds = _select(term, "partial refunds")  # starts once rounding has merged
        term.keys("a")
        _wait_until_gone(term, "partial refunds")

        invoices = _select(term, "invoice")  # blocked: its regression test fails
        term.keys("o")
        term.wait_for("why?")
        term.keys("-l", "hotfix for the month-end run; follow-up fixes the rounding")
        term.keys("Enter")
        term.wait_for(f"Override escalation #{invoices}?")  # the confirmation says what it lets through
        term.keys("y")
        term.wait_for("No open escalations", timeout=WAIT_S)
        term.wait_for("The demo is over", timeout=WAIT_S)  # once the override's merge is done; said, not silent
        term.keys("q")
        screen = term.wait_for("EXIT=0", timeout=30)
    finally:
        term.close()
    assert "demo repository kept at" in screen, screen  # (its path may wrap at the pane's width)
    try:
        from loomtui.workspace import open_workspace

        workspace = open_workspace(repo)
        statuses = {e.id: (e.status, [h.get("by") for h in e.data.get("history", []) if h.get("event") != "opened"])
                    for e in workspace.store.list_escalations()}
        assert statuses[rounding] == ("approved", ["mia@example.com", "alice@example.com"]), statuses
        assert statuses[refunds] == ("approved", ["mia@example.com", "alice@example.com"]), statuses
        assert statuses[invoices] == ("overridden", ["mia@example.com"]), statuses
        assert statuses[ledger] == ("rejected", ["mia@example.com"]), statuses
        held = [s for s in workspace.store.list_sandboxes() if "integer cents" in s.task]
        assert [s.status for s in held] == ["rejected"] and held[0].pid is None  # its agent never started
        reasons = [(e.action, e.actor, e.details.get("reason")) for e in workspace.audit.entries()
                   if e.action in ("escalation.override", "escalation.reject")]
        assert reasons == [("escalation.reject", "mia@example.com", "not during the month-end freeze"),
                           ("escalation.override", "mia@example.com",
                            "hotfix for the month-end run; follow-up fixes the rounding")]
        workspace.close()
        verify = subprocess.run([LOOMTUI, "-C", str(repo), "audit", "verify"], capture_output=True, text=True)
        assert verify.returncode == 0 and verify.stdout.startswith("OK:"), verify.stdout + verify.stderr
    finally:
        from loomtui.demo.scenario import stop_scenario
        from loomtui.workspace import open_workspace

        workspace = open_workspace(repo)
        stop_scenario(workspace)
        workspace.close()
        shutil.rmtree(repo.parent, ignore_errors=True)
