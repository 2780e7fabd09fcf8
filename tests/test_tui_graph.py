"""The coordination view driven with the pilot: conflicts, detail, live claims, keyboard, the drawn graph."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Static, Tree

from tests.conftest import demo_repo
from loomtui.governance.coordinator import governed_coordinator
from loomtui.tui.app import LoomApp
from loomtui.tui.screens.graph import GraphScreen
from loomtui.tui.widgets.claims_canvas import ClaimsCanvas
from loomtui.tui.widgets.status_header import StatusHeader
from loomtui.workspace import open_workspace
from tests.test_tui import wait_for

QUOTE = "payments/refunds.py::RefundService.quote"
ROUNDING = "payments/currency.py::round_minor_units"
SIZE = (150, 40)


@pytest.fixture
def billing(tmp_path: Path) -> Path:
    repo = demo_repo(tmp_path)
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
        # Wrapped for the pane: at spaces, and after a `/` inside a region id, never mid-name.
        flat = detail.replace("/\n", "/").replace("\n", " ")
        assert "partial refunds" in flat and f"{QUOTE} → {ROUNDING}" in flat
        assert all(not line.endswith(("_", "-")) for line in detail.splitlines())
        assert app.screen.query_one(StatusHeader).conflicts == 1
        tree = app.screen.query_one("#claims-tree", Tree)
        labels = [str(node.label) for node in tree.root.children]
        assert labels == ["● refunds", "● rounding"]
        await pilot.press("escape")
        await pilot.pause()
        assert app.current_mode == "dashboard"


async def test_at_80x24_the_whole_explanation_of_a_conflict_is_reached_by_scrolling(billing: Path) -> None:
    """It was cut at half the column, in a pane that no key reached."""
    from textual.containers import VerticalScroll

    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.coordination is not None)
        await pilot.press("2")
        await pilot.pause()
        table = app.screen.query_one("#conflicts", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        pane = app.screen.query_one("#conflict-detail-pane", VerticalScroll)
        await wait_for(pilot, lambda: pane.max_scroll_y > 0)
        table.focus()
        await pilot.press("tab")  # the next stop after the table
        await pilot.press("end")
        await pilot.pause()
        assert pane.scroll_y == pane.max_scroll_y and pane.has_focus


async def test_a_claim_from_another_process_updates_conflicts_live(billing: Path) -> None:
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.query("#conflicts"))  # made on its first showing
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


async def test_a_burst_of_claims_while_conflicts_are_recomputed_runs_no_second_recompute_beside_it(
        billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each claim or sandbox event started a recompute in a thread worker; `exclusive` only marked the one
    going cancelled, so on a slow repository (a worktree of 3,000 new files: 28 s) the threads piled up."""
    import threading
    import time

    from loomtui.coordination import view

    picture = view.coordination_picture
    going: list[int] = []
    most = [0]
    lock = threading.Lock()

    def slow_picture(coordinator):  # type: ignore[no-untyped-def]
        with lock:
            going.append(1)
            most[0] = max(most[0], len(going))
        time.sleep(0.3)
        with lock:
            going.pop()
        return picture(coordinator)

    monkeypatch.setattr(view, "coordination_picture", slow_picture)
    coordinator = governed_coordinator(open_workspace(billing))
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.coordination is not None)
        errors = ("PaymentError", "UnsupportedCurrencyError", "CurrencyMismatchError", "MissingRateError")
        for n, error in enumerate(errors):  # four events, each read by the app while a recompute runs
            coordinator.claim(f"burst{n}", f"payments/errors.py::{error}", reason="burst")
            app.refresh_coordination()
            await pilot.pause(0.05)
        await wait_for(pilot, lambda: len(app.coordination.claims) == 6 and not going)  # type: ignore[union-attr]
    assert most[0] == 1


@pytest.mark.parametrize("lazy", [False, True])
async def test_a_node_closed_and_the_cursor_on_it_stay_when_the_claims_change(
        billing: Path, lazy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tree is built again at each claim event: a claim a person closed opened again, and the cursor kept
    its line, on another claim once one was added above it. Lazily (many claims: a sandbox's claims are
    added when it is opened) too."""
    from loomtui.tui.screens import graph

    if lazy:
        monkeypatch.setattr(graph, "TREE_OPEN_CLAIMS", 0)
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.query("#claims-tree"))  # made on its first showing
        tree = app.screen.query_one("#claims-tree", Tree)
        await wait_for(pilot, lambda: len(tree.root.children) == 2)
        for node in tree.root.children:
            node.expand()  # opened by the person, lazily; already open otherwise
        await pilot.pause()
        rounding = next(node for node in tree.root.children if node.data == "rounding")
        claim = rounding.children[0]
        label = str(claim.label)
        claim.collapse()
        tree.move_cursor(claim)
        await pilot.pause()
        before = app.screen.picture
        # A claim of the sandbox above: a line more above the cursor.
        governed_coordinator(open_workspace(billing)).claim("refunds", "README.md", reason="docs")
        await wait_for(pilot, lambda: app.screen.picture is not None and len(app.screen.picture.claims) == 3)
        await pilot.pause()
        rounding = next(node for node in tree.root.children if node.data == "rounding")
        assert not rounding.children[0].is_expanded and rounding.is_expanded
        # Put back once the rebuilt tree is laid out (a loaded machine takes more than a pause for it).
        await wait_for(pilot, lambda: tree.cursor_node is not None and str(tree.cursor_node.label) == label)
        # Built twice before it is laid out (two claim events at once, CI once): the second read the cursor where
        # the first had left it, not where it was going.
        screen = app.screen
        assert isinstance(screen, graph.GraphScreen) and screen.picture is not None and before is not None
        screen._fill_tree(before, screen.colours)  # its lines move: the cursor's goes with them, once laid out
        screen._fill_tree(screen.picture, screen.colours)
        await wait_for(pilot, lambda: tree.cursor_node is not None and str(tree.cursor_node.label) == label)


async def test_conflicts_are_navigable_with_the_keyboard(billing: Path) -> None:
    governed_coordinator(open_workspace(billing)).claim("reader", QUOTE, mode="shared")
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.query("#conflicts"))  # the view is made on its first showing
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


async def test_a_claim_on_a_region_the_code_no_longer_has_says_so_in_the_tree(billing: Path) -> None:
    refunds = billing / "payments" / "refunds.py"
    refunds.write_text(refunds.read_text().replace("    def quote(", "    def quote_v2("))  # as a merge renames it
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        tree = (await open_claims(pilot, app, rows=0)).query_one("#claims-tree", Tree)
        await wait_for(pilot, lambda: len(tree.root.children) == 2)
        regions = {str(region.label) for sandbox in tree.root.children for claim in sandbox.children
                   for region in claim.children}
        assert "RefundService.quote  payments/refunds.py  gone from the code: claim again" in regions
        assert not any("gone" in label for label in regions if "round_minor_units" in label)


async def test_a_claim_of_many_regions_is_closed_and_its_regions_in_number_order(billing: Path) -> None:
    """A generated file's commit claimed 200 regions: opened whole, row by row in text order (f0, f1, f10, f100),
    it pushed the claims in conflict 200 rows down."""
    import time

    workspace = open_workspace(billing)
    regions = [f"payments/gen.py::f{n}" for n in range(25)]
    workspace.store.add_claim("gen", "25 regions in 1 file", "exclusive", "claimed by commit of payments/gen.py",
                              time.time() + 3600, regions)
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        tree = (await open_claims(pilot, app, rows=0)).query_one("#claims-tree", Tree)
        await wait_for(pilot, lambda: len(tree.root.children) == 3)
        [big] = [claim for sandbox in tree.root.children for claim in sandbox.children if "25 regions" in
                 str(claim.label)]
        assert not big.is_expanded
        assert [str(region.label).split()[0] for region in big.children][:4] == ["f0", "f1", "f2", "f3"]


# -- the drawn graph (`g`), its filter (`f`) and zoom (`z`) ------------------------------------------


async def open_claims(pilot: Pilot[None], app: LoomApp, rows: int = 1) -> GraphScreen:
    await wait_for(pilot, lambda: app.coordination is not None)
    await pilot.press("2")
    await pilot.pause()
    assert isinstance(app.screen, GraphScreen)
    table = app.screen.query_one("#conflicts", DataTable)
    await wait_for(pilot, lambda: table.row_count >= rows)
    return app.screen


async def test_g_switches_between_the_tree_and_the_drawn_graph(billing: Path) -> None:
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_claims(pilot, app)
        tree = screen.query_one("#claims-tree", Tree)
        canvas = screen.query_one("#claims-canvas", ClaimsCanvas)
        assert tree.display and not canvas.display
        await pilot.press("g")
        await wait_for(pilot, lambda: canvas.canvas is not None)
        assert canvas.display and not tree.display
        drawing = canvas.text()
        assert "RefundService.quote" in drawing and "round_minor_units" in drawing
        assert "━" in drawing  # the conflict between them, heavy
        assert canvas.canvas is not None and canvas.canvas.width <= canvas.scrollable_content_region.width
        assert "Claims graph" in str(screen.query_one("#claims-title", Static).render())
        await pilot.press("g")
        await pilot.pause()
        assert tree.display and not canvas.display


async def test_f_cycles_the_sandbox_filter_and_esc_backs_out_before_leaving(billing: Path) -> None:
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_claims(pilot, app)
        canvas = screen.query_one("#claims-canvas", ClaimsCanvas)
        await pilot.press("f")  # from the tree: shows the drawing, filtered
        await wait_for(pilot, lambda: canvas.canvas is not None and canvas.sandbox == "refunds")
        assert canvas.display and "filter: refunds" in canvas.text()
        assert "filter: refunds" in str(screen.query_one("#claims-title", Static).render())
        await pilot.press("f")
        await wait_for(pilot, lambda: "filter: rounding" in canvas.text())
        await pilot.press("f")  # past the last sandbox: all of them again
        await wait_for(pilot, lambda: canvas.sandbox is None and "filter:" not in canvas.text())
        await pilot.press("f")
        await wait_for(pilot, lambda: canvas.sandbox == "refunds")
        await pilot.press("escape")
        await wait_for(pilot, lambda: canvas.sandbox is None)
        assert app.current_mode == "graph"
        await pilot.press("escape")
        await pilot.pause()
        assert app.current_mode == "dashboard"


async def test_z_zooms_the_drawing_to_the_conflict_selected_in_the_table(billing: Path) -> None:
    governed_coordinator(open_workspace(billing)).claim("invoices", "payments/invoices.py::InvoiceCalculator")
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_claims(pilot, app, rows=2)
        canvas = screen.query_one("#claims-canvas", ClaimsCanvas)
        await pilot.press("g")
        await wait_for(pilot, lambda: canvas.canvas is not None)
        everything = canvas.canvas
        assert everything is not None
        await pilot.press("down")
        await pilot.pause()
        selected = screen.selected_conflict()
        assert selected is not None
        await pilot.press("z")
        await wait_for(pilot, lambda: canvas.conflict is not None and canvas.canvas is not everything)
        assert canvas.canvas is not None
        assert {box.key for box in canvas.canvas.boxes} == {r.partition("::")[0] for r in selected.path}
        assert len(canvas.canvas.boxes) < len(everything.boxes)
        await pilot.press("escape")
        await wait_for(pilot, lambda: canvas.conflict is None)
        assert app.current_mode == "graph"


async def test_z_without_a_conflict_says_why(tmp_path: Path) -> None:
    repo = demo_repo(tmp_path)
    governed_coordinator(open_workspace(repo)).claim("refunds", QUOTE)
    app = LoomApp(open_workspace(repo))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_claims(pilot, app, rows=0)
        await pilot.press("z")
        await wait_for(pilot, lambda: any("No conflict selected" in str(n.message) for n in app._notifications))
        assert screen.query_one("#claims-canvas", ClaimsCanvas).conflict is None


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_between_and_the_trees_edges_fit_with_both_sides_named(billing: Path, size: tuple[int, int]) -> None:
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=size) as pilot:
        screen = await open_claims(pilot, app)
        table = screen.query_one("#conflicts", DataTable)
        await pilot.pause()
        cell = table.get_row_at(0)[2]
        assert isinstance(cell, Text)
        column_room = table.scrollable_content_region.width - sum(
            column.get_render_width(table) for column in list(table.columns.values())[:2]) - 2
        assert cell.cell_len <= column_room, (cell.plain, column_room)
        assert "refunds" in cell.plain and "rounding" in cell.plain and not cell.plain.endswith("…")
        tree = screen.query_one("#claims-tree", Tree)
        region = tree.root.children[0].children[0].children[0]
        leaves = [str(leaf.label) for leaf in region.children]
        # The neighbour comes first, right after the arrow: a narrow pane cuts the kind, not the target.
        assert any(leaf.startswith("⚠ → round_minor_units") for leaf in leaves), leaves


async def test_the_palette_finds_a_claimed_region_and_draws_its_sandboxs_claims(billing: Path) -> None:
    from textual.command import CommandList, CommandPalette

    from loomtui.tui.widgets.claims_canvas import ClaimsCanvas

    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.coordination is not None and len(app.coordination.claims) == 2)
        await pilot.press("colon")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"round_minor_units")
        results = app.screen.query_one(CommandList)
        await wait_for(pilot, lambda: results.option_count > 0, timeout=10)
        await pilot.pause(0.3)
        found = [str(results.get_option_at_index(i).prompt) for i in range(results.option_count)]
        target = next(i for i, line in enumerate(found) if line.startswith(f"region {ROUNDING} "))
        assert "sandbox rounding" in found[target], found
        results.highlighted = target
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GraphScreen) and app.screen.drawn)
        canvas = app.screen.query_one("#claims-canvas", ClaimsCanvas)
        await wait_for(pilot, lambda: canvas.sandbox == "rounding")


async def test_many_claims_show_a_node_per_sandbox_that_fills_when_opened(tmp_path: Path) -> None:
    """Past TREE_OPEN_CLAIMS the tree holds a node per sandbox with its count (5,000 claims drawn as
    10,000 nodes took the view's first visit seconds); opening one adds its claims then."""
    from loomtui.tui.bench_data import BenchSize, bench_repository
    from loomtui.tui.screens.graph import TREE_OPEN_CLAIMS

    # Six sandboxes, three of them holding claims (an exited or a merged one holds none).
    repo = bench_repository(tmp_path, BenchSize(sandboxes=6, claims=TREE_OPEN_CLAIMS + 30, audit=0))
    app = LoomApp(open_workspace(repo))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.coordination is not None)
        await pilot.press("2")
        await pilot.pause()
        tree = app.screen.query_one("#claims-tree", Tree)
        await wait_for(pilot, lambda: len(tree.root.children) == 3)
        assert [str(node.label) for node in tree.root.children] == [
            "● b00001  30 claims", "● b00002  30 claims", "● b00005  30 claims"]
        assert all(not node.is_expanded and not node.children for node in tree.root.children)
        tree.focus()
        tree.move_cursor(tree.root.children[1])
        await pilot.press("enter")  # opens the node under the cursor
        await wait_for(pilot, lambda: len(tree.root.children[1].children) == 30)
        first = tree.root.children[1].children[0]
        assert str(first.label).startswith("#") and "pkg/m" in str(first.label) and "b00002" not in str(first.label)
        assert not tree.root.children[0].children  # the others wait for their own turn


async def test_without_a_conflict_the_claims_take_the_room_an_empty_table_kept(billing: Path) -> None:
    app = LoomApp(open_workspace(billing))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.query("#conflicts"))  # made on its first showing
        table = app.screen.query_one("#conflicts", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        screen = app.screen
        assert not screen.has_class("-calm")
        workspace = open_workspace(billing)
        (rounding,) = workspace.store.live_claims("rounding")
        governed_coordinator(workspace).release(rounding.id, "done")
        await wait_for(pilot, lambda: table.row_count == 0 and screen.has_class("-calm"))
        await pilot.pause()
        assert screen.query_one("#graph-left").size.width <= 36 < screen.query_one("#graph-right").size.width
        detail = str(screen.query_one("#conflict-detail", Static).render())
        assert detail.startswith("No conflicts among 1 live claim.")


def test_an_edge_seen_from_its_other_end_reads_as_english() -> None:
    """The claims tree said `← quote  imports by`, `references by`."""
    from loomtui.coordination.view import Edge
    from loomtui.tui.screens.graph import GraphScreen

    def label(kind: str, outgoing: bool) -> str:
        edge = Edge("payments/refunds.py::RefundService.quote", kind, outgoing, ())
        return GraphScreen._edge_label("payments/currency.py::round_minor_units", edge, {}, set()).plain

    assert "  referenced by · payments/refunds.py" in label("references", False)
    assert "  imported by" in label("imports", False) and "  inherited by" in label("inherits", False)
    assert "  references ·" in label("references", True)


def test_a_conflict_between_whole_files_keeps_their_names_when_cut_to_80_columns() -> None:
    """At 80 columns `payments/tax.py × customers/validation.py` read `py × py` (a method's cut applied to paths)."""
    from loomtui.coordination.claims import Conflict
    from loomtui.tui.screens.graph import between

    conflict = Conflict("dependency", "high", "45da47", "payments/tax.py", 1, "edfdb3", "customers/validation.py", 2,
                        (), "tax uses validation")
    assert between(conflict, {}, 40).plain == "45da47 tax.py × edfdb3 validation.py"
    method = Conflict("overlap", "error", "a1", "payments/refunds.py::RefundService.quote", 1, "b2",
                      "payments/refunds.py::RefundService.issue", 2, (), "")
    assert between(method, {}, 24).plain == "a1 quote × b2 issue"
