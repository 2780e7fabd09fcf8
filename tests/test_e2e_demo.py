"""End to end, as a tech lead would: the installed `loomtui demo` in a real terminal (tmux), its
escalations triaged with the queue's keys, then the store and `loomtui audit verify` checked."""

from __future__ import annotations

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


def _queue_rows(screen: str) -> list[tuple[int, str]]:
    """The queue's rows as shown: (escalation id, the row's text), top to bottom."""
    return [(int(m.group(1)), line) for line in screen.splitlines() if (m := ROW.match(line))]


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


def test_a_lead_triages_the_demo_with_keys_and_the_audit_verifies(tmp_path: Path) -> None:
    term = Terminal(tmp_path, f"{LOOMTUI} demo --keep")
    try:
        term.wait_for("loomtui · demo", timeout=30)
        term.keys("3")
        term.wait_for("Escalations", timeout=10)

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
        term.keys("q")
        screen = term.wait_for("EXIT=0", timeout=30)
    finally:
        term.close()
    kept = re.search(r"demo repository kept at (\S+)", screen)
    assert kept, screen
    repo = Path(kept.group(1))
    try:
        from loomtui.workspace import open_workspace

        workspace = open_workspace(repo)
        statuses = {e.id: (e.status, [h.get("by") for h in e.data.get("history", []) if h.get("event") != "opened"])
                    for e in workspace.store.list_escalations()}
        assert statuses[rounding] == ("approved", ["mia@example.com", "alice@example.com"]), statuses
        assert statuses[refunds] == ("approved", ["mia@example.com", "alice@example.com"]), statuses
        assert statuses[invoices] == ("overridden", ["mia@example.com"]), statuses
        override = [e for e in workspace.audit.entries() if e.action == "escalation.override"]
        assert [(e.actor, e.details.get("reason")) for e in override] == [
            ("mia@example.com", "hotfix for the month-end run; follow-up fixes the rounding")]
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
