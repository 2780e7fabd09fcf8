"""The coordination view driven with the pilot: conflicts, detail, live claims, keyboard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static, Tree

from loomtui.governance.coordinator import governed_coordinator
from loomtui.demo import prepare_demo_repo
from loomtui.tui.app import LoomApp
from loomtui.tui.screens.graph import GraphScreen
from loomtui.tui.widgets.status_header import StatusHeader
from loomtui.workspace import open_workspace
from tests.test_tui import wait_for

QUOTE = "payments/refunds.py::RefundService.quote"
ROUNDING = "payments/currency.py::round_minor_units"
SIZE = (150, 40)


@pytest.fixture
def billing(tmp_path: Path) -> Path:
    repo = prepare_demo_repo(tmp_path)
    coordinator = governed_coordinator(open_workspace(repo))
    coordinator.claim("refunds", QUOTE, reason="partial refunds")
    coordinator.claim("rounding", ROUNDING, reason="refactor rounding")
    return repo


async def test_graph_shows_the_conflict_with_both_claims_and_the_path(billing: Path) -> None:
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.coordination is not None)
        await pilot.press("2")
        await pilot.pause()
        assert isinstance(app.screen, GraphScreen)
        table = app.screen.query_one("#conflicts", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        detail = str(app.screen.query_one("#conflict-detail", Static).render())
        assert "sandbox refunds" in detail and "sandbox rounding" in detail
        assert "partial refunds" in detail and f"{QUOTE} → {ROUNDING}" in detail.replace("\n", " ")
        assert app.screen.query_one(StatusHeader).conflicts == 1
        tree = app.screen.query_one("#claims-tree", Tree)
        labels = [str(node.label) for node in tree.root.children]
        assert labels == ["● refunds", "● rounding"]
        await pilot.press("escape")
        await pilot.pause()
        assert app.current_mode == "dashboard"


async def test_a_claim_from_another_process_updates_conflicts_live(billing: Path) -> None:
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        table = app.screen.query_one("#conflicts", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        done = subprocess.run(
            [sys.executable, "-m", "loomtui", "-C", str(billing), "claim", "add", "--sandbox", "invoices",
             "payments/invoices.py::InvoiceCalculator"],
            capture_output=True, text=True,
        )
        assert done.returncode == 0, done.stderr
        await wait_for(pilot, lambda: table.row_count > 1)
        assert app.screen.query_one(StatusHeader).conflicts == table.row_count


async def test_conflicts_are_navigable_with_the_keyboard(billing: Path) -> None:
    governed_coordinator(open_workspace(billing)).claim("reader", QUOTE, mode="shared")
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        table = app.screen.query_one("#conflicts", DataTable)
        await wait_for(pilot, lambda: table.row_count >= 2)
        detail = app.screen.query_one("#conflict-detail", Static)
        first = str(detail.render())
        await pilot.press("down")
        await pilot.pause()
        assert str(detail.render()) != first


async def test_r_brings_the_index_up_to_date_says_what_it_did_and_names_a_stale_file(billing: Path) -> None:
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.coordination is not None)
        await pilot.press("2")
        await pilot.pause()
        await pilot.press("r")
        await wait_for(pilot, lambda: any("up to date" in str(n.message) for n in app._notifications))
        (billing / "payments" / "invoices.py").write_text("def broken(:\n")
        await pilot.press("r")
        await wait_for(pilot, lambda: app.coordination is not None and bool(app.coordination.stale))
        assert any("parsed 1" in str(n.message) for n in app._notifications)
        assert app.coordination.stale == ("payments/invoices.py",)
        # Its regions are those of its last version that parsed: the claims on it still mean something.
        assert app.coordinator is not None
        assert "payments/invoices.py::InvoiceCalculator" in app.coordinator.index.regions
