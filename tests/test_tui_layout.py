"""Layout that adapts: columns by priority for the width, no horizontal scroll, the detail pane
on screen, values wrapped under their label; at 80x24, 120x40 and 200x60."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.text import Text

from loomtui.tui.app import LoomApp
from loomtui.tui.screens.dashboard import DETAIL_WIDTH, SandboxTable
from loomtui.tui.widgets.fields import Field, hanging, reflowed, render_fields, wrap_value
from loomtui.tui.widgets.fitted_table import FitColumn, cut, fit_columns
from loomtui.tui.widgets.status_header import StatusHeader
from loomtui.workspace import open_workspace
from tests.conftest import wait_for
from tests.test_tui import add_sandbox

COLUMNS = (FitColumn("id", "ID", 0), FitColumn("status", "Status", 1),
           FitColumn("task", "Task", 2, flex=True, min_width=6, want=10), FitColumn("age", "Age", 3),
           FitColumn("runtime", "Runtime", 4))
NATURAL = {"id": 6, "status": 15, "task": 50, "age": 3, "runtime": 7}


def test_columns_are_dropped_by_priority_and_the_flexible_one_takes_what_is_left() -> None:
    wide = fit_columns(COLUMNS, NATURAL, 200)
    assert wide.keys() == ["id", "status", "task", "age", "runtime"]
    assert dict(wide.widths)["task"] == 50  # no wider than its longest cell
    narrow = fit_columns(COLUMNS, NATURAL, 48)
    # id 8 + status 17 + task's claim 12 = 37; age 5 fits (42); runtime 9 does not; task grows by 6.
    assert narrow.keys() == ["id", "status", "task", "age"]
    assert dict(narrow.widths)["task"] == 16
    assert sum(w + 2 for _, w in narrow.widths) <= 48
    tiny = fit_columns(COLUMNS, NATURAL, 30)  # the task only at its minimum; nothing after it
    assert tiny.keys() == ["id", "status"] or dict(tiny.widths).get("task", 99) >= 6
    assert sum(w + 2 for _, w in tiny.widths) <= 30
    assert fit_columns(COLUMNS, NATURAL, 3).keys() == ["id"]  # the first column stays, always
    # id 8 + status 17 = 25; the task's minimum (8) does not fit in 31, age (5) would: it must not stand
    # where the task went (the sandboxes' table beside the Evals tab showed Age and no Task)
    assert fit_columns(COLUMNS, NATURAL, 31).keys() == ["id", "status"]


def test_two_flexible_columns_share_the_width_left_over_evenly() -> None:
    """The sandboxes' Next and Task: the first took it all (a long task left the next step cut at 20)."""
    columns = (FitColumn("id", "ID", 0), FitColumn("next", "Next", 1, flex=True, min_width=6, want=10),
               FitColumn("task", "Task", 2, flex=True, min_width=6, want=10))
    shared = dict(fit_columns(columns, {"id": 6, "next": 40, "task": 60}, 60).widths)
    assert shared == {"id": 6, "next": 24, "task": 24}  # 8 + 12 + 12 = 32 with padding; 28 left: 14 each
    short = dict(fit_columns(columns, {"id": 6, "next": 15, "task": 60}, 60).widths)
    assert short == {"id": 6, "next": 15, "task": 33}  # what one cannot use goes to the other


def test_a_cut_cell_ends_in_an_ellipsis_and_keeps_its_style() -> None:
    cell = cut(Text("Refactor the rounding helper", style="red"), 10)
    assert isinstance(cell, Text) and cell.plain == "Refactor …" and cell.style == "red"
    assert cut("short", 10) == "short"
    # Cut just after an ellipsis of its own (a summary abridging a task): one ellipsis, not "for… …".
    assert cut(Text("issue a refund for… (require: payments)"), 21).plain == "issue a refund for…"
    assert cut(Text("issue a refund for…(require)"), 20).plain == "issue a refund for…"


def test_values_wrap_after_spaces_and_path_separators_not_mid_word() -> None:
    path = "~/.local/share/loomtui/worktrees/billing-service-3a16845de6/0f9c86"
    lines = wrap_value(path, 36)
    assert "".join(lines) == path and all(len(line) <= 36 for line in lines)
    assert all(line.endswith("/") for line in lines[:-1])  # each break falls after a separator
    assert wrap_value("Refactor round_minor_units, the currency rounding helper", 30) == [
        "Refactor round_minor_units,", "the currency rounding helper"]
    assert wrap_value("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]  # only a part wider than the pane is cut
    text = render_fields([Field("task", "[bold]two words[/]"), Field("worktree", path)], 40)
    assert "[bold]two words[/]" in text.plain  # never parsed as markup
    continuation = text.plain.splitlines()[2]
    assert continuation.startswith(" " * 12) and continuation.strip()  # under the value, not the label


def test_a_long_explanation_line_wraps_under_itself_not_at_column_0() -> None:
    wrapped = hanging("    paths payments/** matched payments/currency.py and payments/refunds.py", 40).splitlines()
    assert wrapped[0] == "    paths payments/** matched"
    assert all(line.startswith(" " * 8) and len(line) <= 40 for line in wrapped[1:]) and len(wrapped) > 1
    assert hanging("  short", 40) == "  short"


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
async def test_the_dashboard_fits_each_terminal_with_nothing_behind_a_horizontal_scroll(
        repo: Path, size: tuple[int, int]) -> None:
    workspace = open_workspace(repo)
    for number in range(3):
        add_sandbox(workspace, f"s{number}", f"Refactor the rounding helper used by invoices and refunds ({number})",
                    status="awaiting_review")
    app = LoomApp(workspace)
    async with app.run_test(size=size) as pilot:
        table = app.screen.query_one(SandboxTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        await pilot.pause()
        shown = table.layout_shown.keys()
        assert not app.screen.query_one("#empty").display  # rows shown: no "nothing matches" line above them
        header = app.screen.query_one(StatusHeader)
        line = str(header.render())
        assert "sandboxes 3" in line and "escalations 0" in line and "conflicts 0" in line, line  # always
        assert len(line) <= header.content_size.width, line
        assert ("Sandboxes" in line and "repo on main" in line) == (size[0] >= 120), line
        assert shown[:3] == ["id", "status", "next"] and "task" in shown
        assert table.virtual_size.width <= table.size.width, (size, table.layout_shown)
        assert not table.show_horizontal_scrollbar
        if size[0] >= 200:
            assert len(shown) == 10  # every column, at a wide terminal
        if size[0] >= 120:  # the next step and the task before Runtime and Isolation ("waits for 961e7a (aw…")
            assert all(dict(table.layout_shown.widths)[key] >= min(28, table._widest[key]) for key in ("next", "task"))
        assert str(table.get_cell("s0", "task")).startswith("Refactor the")
        assert table.cell("s0", "task").plain.endswith("(0)")  # type: ignore[union-attr]  # kept whole
        detail = app.screen.query_one("#detail")
        screen = app.screen.region
        assert detail.region.height >= 8 and screen.contains_region(detail.region), (size, detail.region)
        # Beside the table only where both have room: at 120 columns the table kept 70 and cut its tasks.
        assert (detail.region.x > table.region.x) == (size[0] >= 140), (size, detail.region)
        # The task wraps under its label in the detail pane, every word whole.
        details = app.screen.query_one("#details")
        rendered = str(details.render())
        assert "rounding" in rendered and "roundi\n" not in rendered


async def test_a_resize_lays_the_table_out_again_and_keeps_the_cursor(repo: Path) -> None:
    workspace = open_workspace(repo)
    for number in range(4):
        add_sandbox(workspace, f"s{number}", f"task {number}", status="running")
    app = LoomApp(workspace)
    async with app.run_test(size=(200, 40)) as pilot:
        table = app.screen.query_one(SandboxTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        table.focus()
        await pilot.press("down", "down")
        chosen = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        assert "isolation" in table.layout_shown.keys()
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: "isolation" not in table.layout_shown.keys())
        assert table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value == chosen
        assert table.virtual_size.width <= table.size.width


async def test_the_demos_chapters_go_into_every_header_and_only_warnings_toast(repo: Path) -> None:
    import asyncio

    from loomtui.tui.demo_feed import DemoFeed

    app = LoomApp(open_workspace(repo))
    feed = DemoFeed(app)  # what the demo's scenario says goes through it
    said: list[str] = []
    notify = app.notify
    app.notify = lambda message, **kwargs: (said.append(str(message)), notify(message, **kwargs))[1]  # type: ignore
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.pause()
        await pilot.press("3")  # another view's header too
        await pilot.pause()
        # What the scenario's worker says, from its thread.
        await asyncio.to_thread(feed.say, "== Agents at work")
        await asyncio.to_thread(feed.say, "[rounding] agent running")  # visible in the table: no toast
        await asyncio.to_thread(feed.say, "WARNING: dependency conflict with rounding")
        await wait_for(pilot, lambda: len(said) == 1)
        await pilot.pause()
        assert said == ["WARNING: dependency conflict with rounding"]
        await asyncio.to_thread(feed.say, "[refunds] not started: were it to start now, WARNING: dependency conflict "
                                "with rounding (sandbox 0b31a1): payments/refunds.py::RefundService.quote "
                                "-references-> payments/currency.py::round_minor_units")
        await wait_for(pilot, lambda: len(said) == 2)
        assert said.pop() == ("[refunds] not started: were it to start now, WARNING: dependency conflict with "
                              "rounding (sandbox 0b31a1)")  # the regions are in the Claims tab: two rows, not four
        # After the person's `a`, the demo's colleague approves too: said, or the row vanished on one `a`
        # that needed two. The person's own decision is the app's to say.
        await asyncio.to_thread(feed.say, "[rounding] alice@example.com approves escalation #1 -> approved")
        await asyncio.to_thread(feed.say, "[rounding] demo@example.com approves escalation #1 -> still open")
        await wait_for(pilot, lambda: len(said) == 2)
        await pilot.pause()
        assert said[1].startswith("alice@example.com approves escalation #1 -> approved: the demo's second")
        headers = StatusHeader.every_one_in(app)
        assert len(headers) >= 2 and all(h.chapter == "Agents at work" for h in headers)
        assert ": Agents at work" in str(app.screen.query_one(StatusHeader).render())
        # The chapter outlasts the branch and the repository's name as the terminal narrows (at 120 and
        # 80 columns it was gone).
        await pilot.press("1")  # the sandboxes view, whose title is the longest
        await pilot.pause()
        for width in (120, 80, 66):  # narrower still, the counts go short before the chapter goes
            await pilot.resize_terminal(width, 30)
            await pilot.pause()
            shown = str(app.screen.query_one(StatusHeader).render())
            assert ": Agents at work" in shown and ("sbx 0" in shown) == (width == 66), (width, shown)
        # Waiting for a person, at 80 columns: the chapter beside the view's name (it took the name's room).
        await asyncio.to_thread(feed._show_chapter, "Your turn: 2 escalations")
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: ": Your turn: 2 escalations" in str(app.screen.query_one(StatusHeader).render()))
        shown = str(app.screen.query_one(StatusHeader).render())
        assert "Sandboxes" in shown and "esc 0" in shown, shown
        # An end too long for 80 columns beside the demo's title says "The end" (it went whole: the reader never
        # saw the story end).
        for header in StatusHeader.every_one_in(app):
            header.mode_title = "demo"
        await asyncio.to_thread(feed._show_chapter, "The end (3 merged, 1 rejected)")
        await wait_for(pilot, lambda: "demo: The end  Sandboxes" in str(app.screen.query_one(StatusHeader).render()))
        said.clear()  # (the end's toast: said again below)
        # The end is said, with the keys of the views it names (it sent a reader to 6 for the audit log, 5).
        await asyncio.to_thread(feed._show_chapter, "The end (4 merged)")
        await wait_for(pilot, lambda: len(said) == 1)
        assert said[-1] == ("The demo is over (4 merged): the audit log (5) has each step, the metrics (8) the "
                            "figures; q quits")
        assert all(h.chapter == "The end (4 merged)" for h in StatusHeader.every_one_in(app))


@pytest.mark.parametrize(("size", "widest", "rows"), [((80, 24), 80, 4), ((120, 40), 120, 4), ((160, 45), 44, 5)])
async def test_a_toast_leaves_the_table_and_header_in_view(repo: Path, size: tuple[int, int], widest: int,
                                                            rows: int) -> None:
    """At 80 columns a toast was 36 cells wide and 9 rows high, over the sandboxes and the header's
    counts; across the whole width it takes three rows at the bottom."""
    from textual.widgets._toast import Toast

    app = LoomApp(open_workspace(repo))
    async with app.run_test(size=size, notifications=True) as pilot:
        await pilot.pause()
        app.notify("[rounding]   HIGH, were refunds beside it: dependency conflict with refunds (sandbox 8a6ea0): "
                   "payments/refunds.py::RefundService.quote", title="demo")
        await wait_for(pilot, lambda: bool(app.screen.query(Toast)))
        await pilot.pause()
        toast = app.screen.query_one(Toast).region
        assert toast.width >= widest - 2 and toast.width <= widest and toast.height <= rows, toast
        assert size[0] >= 140 or toast.y >= size[1] // 2  # under the table, at the bottom
        # Under a dialog the toast is drawn as it was: the screen below kept its own, and the two (one
        # wide, one narrow) showed side by side.
        from loomtui.tui.screens.sandbox_forms import ConfirmScreen

        await app.push_screen(ConfirmScreen("Merge sandbox sb1?"))
        await wait_for(pilot, lambda: bool(app.screen.query(Toast)))
        await pilot.pause()
        assert app.screen.query_one(Toast).region == toast


async def test_a_scrolled_table_draws_the_cursor_on_its_row_only_and_reuses_the_other_rows() -> None:
    """Rows the cursor is not on are cached whatever row it is on (DataTable's own cache missed on every
    key that scrolled): the cursor's row, and only it, is drawn as the cursor, the header never."""
    from textual.app import App, ComposeResult

    from loomtui.tui.widgets.fitted_table import FittedTable

    class OneTable(App[None]):
        def compose(self) -> ComposeResult:
            yield FittedTable([FitColumn("n", "N"), FitColumn("text", "Text", flex=True)], id="table")

    app = OneTable()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(FittedTable)
        table.show_rows({str(n): {"n": str(n), "text": Text(f"row {n}")} for n in range(60)})
        table.focus()
        await pilot.pause()
        cursor_style = table.get_component_rich_style("datatable--cursor")
        for _ in range(25):
            await pilot.press("down")
        await pilot.pause()
        assert table.cursor_row == 25 and table.scroll_y > 0

        def shown() -> list[tuple[str, bool]]:
            lines = [table.render_line(y) for y in range(table.size.height)]
            return [(line.text.strip(), any(seg.style is not None and seg.style.bgcolor == cursor_style.bgcolor
                                             for seg in line)) for line in lines]

        lines = shown()
        assert lines[0][0].startswith("N") and not lines[0][1]  # the header, not highlighted
        assert [text for text, lit in lines if lit] == ["25  row 25"]
        cached = len(table._row_render_cache)
        await pilot.press("down")
        await pilot.pause()
        assert [text for text, lit in shown() if lit] == ["26  row 26"]
        # Scrolling one row drew the two rows the cursor left and reached, and the one that came into view.
        assert len(table._row_render_cache) - cached <= 3


async def test_the_detail_wraps_again_when_its_pane_changes_width_without_a_resize(repo: Path) -> None:
    """The first frame lays the dashboard out side by side, the next below, with no resize between:
    the detail wrapped for the first kept a path under its label, from column 0, until a key was
    pressed. Here the pane is narrowed by its style, as a layout change does."""
    from time import time

    from textual.widgets import Static

    from loomtui.store import SandboxRecord

    workspace = open_workspace(repo)
    path = "/home/someone/.local/share/loomtui/worktrees/billing-service-64f284f19d/7be995"
    workspace.store.add_sandbox(SandboxRecord(id="7be995", task="Refactor the rounding helper", runtime="script",
                                              status="exited", created=time(), updated=time(), worktree=path))
    app = LoomApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        details = app.screen.query_one("#details", Static)
        await wait_for(pilot, lambda: "worktree" in str(details.render()))
        wide = str(details.render())
        pane = app.screen.query_one("#detail")
        pane.styles.min_width, pane.styles.width = 0, 40  # its values now need a narrower column
        await wait_for(pilot, lambda: str(details.render()) != wide)
        lines = [line.rstrip() for line in str(details.render()).splitlines()]
        at = next(i for i, line in enumerate(lines) if line.strip().startswith("worktree"))
        assert len(lines[at]) <= details.size.width and lines[at + 1].startswith(" " * 12), lines


async def test_a_detail_shown_while_another_tab_was_open_is_wrapped_for_its_width_when_its_tab_returns(
        repo: Path) -> None:
    from textual.widgets import Static, TabbedContent

    workspace = open_workspace(repo)
    path = "/home/someone/.local/share/loomtui/worktrees/billing-service-64f284f19d"
    for name in ("a1", "b2"):
        add_sandbox(workspace, name, f"a task of {name}", status="exited", worktree=f"{path}/{name}")
    app = LoomApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one(SandboxTable)
        details = app.screen.query_one("#details", Static)
        await wait_for(pilot, lambda: table.row_count == 2 and "worktree" in str(details.render()))
        tabs = app.screen.query_one("#detail", TabbedContent)
        tabs.active = "tab-log"
        await pilot.pause()
        shown = "a1" if "id  a1" in str(details.render()) else "b2"
        table.focus()
        await pilot.press("down")  # another sandbox, its details made while their tab is hidden
        await pilot.pause(0.4)
        other = "b2" if shown == "a1" else "a1"
        tabs.active = "tab-details"
        await wait_for(pilot, lambda: f"id  {other}" in str(details.render()))

        def worktree_line() -> str:
            lines = [line.rstrip() for line in str(details.render()).splitlines()]
            return next(line for line in lines if line.strip().startswith("worktree"))

        # Wrapped for the pane (about 78 wide), not the fallback: once its tab is laid out (a loaded machine took
        # more than one pause).
        await wait_for(pilot, lambda: len(worktree_line()) > DETAIL_WIDTH + 5)


async def test_home_and_end_go_to_the_first_and_last_row_and_sideways_keys_are_not_offered(repo: Path) -> None:
    """The table fits its width, so nothing scrolls sideways: those keys did nothing yet were listed."""
    from loomtui.tui.screens.help import key_rows

    workspace = open_workspace(repo)
    for number in range(3):
        add_sandbox(workspace, f"s{number}", f"task {number}", status="exited")
    app = LoomApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(SandboxTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        table.focus()
        await pilot.press("end")
        await pilot.pause()
        assert table.cursor_row == 2
        await pilot.press("home")
        await pilot.pause()
        assert table.cursor_row == 0
        rows = key_rows(app)
        listed = {description for _key, description, _where, _id in rows}
        ids = [binding_id for *_, binding_id in rows]
        first = ids.index("table.first")  # after the view's and the app's keys, before Textual's (no id)
        assert ids[first:first + 2] == ["table.first", "table.last"] and all(ids[:first]) and not any(ids[first + 2:])
        assert not listed & {"Cursor left", "Cursor right", "Home", "End", "Page left", "Page right"}, listed


def test_a_sections_paragraphs_are_joined_so_the_pane_wraps_them_and_blocks_keep_their_lines() -> None:
    source = ("# Money\n\nAmounts are Decimal,\nnever float.\n\n- one\n- two\n  more\n\n```py\nx = 1\n"
              "y = 2\n```\n    code\n    too\n> a\n> b\n| a | b |\n| c | d |\nLast\nline.")
    assert reflowed(source) == (
        "# Money\n\nAmounts are Decimal, never float.\n\n- one\n- two\n  more\n\n```py\nx = 1\ny = 2\n```\n"
        "    code\n    too\n> a\n> b\n| a | b |\n| c | d |\nLast line.")


def test_a_value_in_wide_characters_is_cut_by_cells_not_characters() -> None:
    from rich.cells import cell_len

    from loomtui.tui.widgets.fields import wrap_value

    lines = wrap_value("为部分退款添加接口并且修正四舍五入的问题然后更新账本", 10)
    assert all(cell_len(line) <= 10 for line in lines), lines  # else the pane wraps it again, at its edge
    assert "".join(lines) == "为部分退款添加接口并且修正四舍五入的问题然后更新账本"


async def test_a_column_whose_widest_cell_narrows_gives_its_width_back() -> None:
    """A gate's "running gate 1…" became "✓ · 80", and the Gates column kept its width (the task and
    the next step cut beside it) until the terminal was resized."""
    from textual.app import App, ComposeResult

    from loomtui.tui.widgets.fitted_table import FittedTable

    columns = [FitColumn("task", "Task", 1, flex=True, min_width=8, want=10), FitColumn("gates", "Gates", 0)]

    class OneTable(App[None]):
        def compose(self) -> ComposeResult:
            yield FittedTable(columns, id="table")

    app = OneTable()
    async with app.run_test(size=(50, 8)) as pilot:
        table = app.query_one(FittedTable)
        task = "Refactor the rounding helper used by invoices"
        table.show_rows({"a": {"task": task, "gates": "running gate 1 of 3…"}})
        await pilot.pause()
        cut_before = dict(table.layout_shown.widths)["task"]
        table.show_rows({"a": {"task": task, "gates": "✓ · 80"}})
        await pilot.pause()
        assert dict(table.layout_shown.widths)["gates"] == len("✓ · 80")
        assert dict(table.layout_shown.widths)["task"] > cut_before
        table.set_cell("a", "gates", "running gate 2 of 3…")  # and by one cell, as the Age ticks
        table.set_cell("a", "gates", "✗")
        await pilot.pause()
        assert dict(table.layout_shown.widths)["gates"] == len("Gates")


async def test_rows_given_while_the_table_is_off_screen_are_laid_out_once_it_is_back() -> None:
    """The Evals tab shown again emptied its tests table (laid out for the labels alone), then got the next
    sandbox's tests in the pass before it had its place: they kept those columns, a few cells each."""
    from textual.app import App, ComposeResult
    from textual.widgets import Static, TabbedContent, TabPane

    from loomtui.tui.widgets.fitted_table import FittedTable

    columns = [FitColumn("cls", "Class", 0), FitColumn("test", "Test", 1, flex=True, min_width=8, want=44)]
    rows = {"a": {"cls": "PASS_TO_PASS", "test": "tests/test_api.py::test_float_amounts_are_rejected"}}

    class Tabs(App[None]):
        def compose(self) -> ComposeResult:
            with TabbedContent():
                with TabPane("Details", id="details"):
                    yield Static("details")
                with TabPane("Evals", id="evals"):
                    yield FittedTable(columns, id="table")

    app = Tabs()
    async with app.run_test(size=(80, 12)) as pilot:
        table = app.query_one(FittedTable)
        app.query_one(TabbedContent).active = "evals"
        table.show_rows(rows)
        await pilot.pause()
        laid_out = table.layout_shown
        assert dict(laid_out.widths)["cls"] == len("PASS_TO_PASS")
        app.query_one(TabbedContent).active = "details"
        await pilot.pause()
        app.query_one(TabbedContent).active = "evals"
        await pilot.pause()
        table.show_rows({})  # as the tab shown again does, at the width it had, and hidden with no tests
        table.display = False
        await pilot.pause()
        table.display = True  # then the next sandbox's tests, given before the table is placed again
        table.show_rows(rows)
        await wait_for(pilot, lambda: table.layout_shown == laid_out)


def test_at_120_columns_the_next_step_and_the_task_come_before_runtime_and_isolation() -> None:
    """They read "waits for 961e7a (aw…" and "Refactor round_mino…" beside Runtime and Isolation, the same
    on every row of the demo."""
    from loomtui.tui.sandbox_rows import SANDBOX_COLUMNS

    natural = {"id": 6, "status": 15, "next": 44, "task": 56, "gates": 8, "risk": 4, "claims": 6, "age": 3,
               "runtime": 7, "isolation": 9}
    widths = dict(fit_columns(SANDBOX_COLUMNS, natural, 118).widths)
    assert widths["next"] >= 28 and widths["task"] >= 28, widths
    # At 80 columns with a review waiting and a critical risk, the next step gives room for the task (it kept
    # its want, and the Task column went while Risk stayed).
    widths = dict(fit_columns(SANDBOX_COLUMNS, {**natural, "risk": 8}, 76).widths)
    assert list(widths) == ["id", "status", "next", "task", "risk"] and widths["task"] >= 12, widths
    assert widths["next"] >= 12 and sum(widths.values()) + 2 * len(widths) <= 76


async def test_a_toast_that_just_fits_a_line_at_80_columns_shows_all_of_it(repo: Path) -> None:
    """The toasts' rack kept a scrollbar's gutter: Textual sized a toast without it and drew it with it, so a
    message that just fit on one line wrapped to two and the second was cut off ("... (awaiting_review) to"
    without "merge")."""
    app = LoomApp(open_workspace(repo))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.pause()
        message = "sandbox 914d46 cannot start yet: waits for 5f72c2 (awaiting_review) to merges"
        assert len(message) == 80 - 1 - 2  # the width less the toast's edge and padding: one line, just
        app.notify(message, title="start 914d46", severity="error", timeout=30)
        await wait_for(pilot, lambda: "914d46" in app.export_screenshot())
        await pilot.pause()
        assert "merges" in app.export_screenshot()


@pytest.mark.parametrize("width", [140, 160])
async def test_the_evals_tab_leaves_the_table_its_id_status_next_and_task(repo: Path, width: int) -> None:
    """The Evals tab takes the wider share of the screen: the table, 46 columns at 140, kept Risk and lost
    Task, then Next too (a reviewer could not tell which task the scores were of)."""
    from textual.widgets import TabbedContent

    from loomtui.store import SandboxRecord
    from loomtui.tui.widgets.fitted_table import FittedTable

    workspace = open_workspace(repo)
    workspace.store.add_sandbox(SandboxRecord(id="f4965b", task="make invoice totals round each line half even",
                                              runtime="script", status="awaiting_review", created=1.0, updated=1.0))
    from loomtui.workflow.steps import REVIEW_ESCALATION_KEY

    asked = workspace.store.add_escalation("post-gate", sandbox_id="f4965b", risk="high", summary="needs a lead",
                                           data={"outcome": "require"})  # a Risk, a long next step: both claim room
    workspace.store.update_sandbox("f4965b", data={REVIEW_ESCALATION_KEY: asked.id})
    app = LoomApp(workspace)
    async with app.run_test(size=(width, 40)) as pilot:
        await wait_for(pilot, lambda: app.latest_snapshot is not None and len(app.latest_snapshot.sandboxes) == 1)
        table = app.screen.query_one("#sandboxes", FittedTable)
        app.screen.query_one("#detail", TabbedContent).active = "tab-evals"
        await wait_for(pilot, lambda: app.screen.has_class("-evals"))
        await pilot.pause()
        assert {"id", "status", "next", "task", "risk"} <= set(table.layout_shown.keys()), table.layout_shown.keys()


async def test_the_cursor_stays_on_its_row_when_rows_above_it_go() -> None:
    """A sandbox removed above the selected one moved the cursor onto the next (DataTable keeps the index),
    and `p`, `S` or `e` then acted on a sandbox the user never selected."""
    from textual.app import App, ComposeResult

    from loomtui.tui.widgets.fitted_table import FittedTable

    class OneTable(App[None]):
        def compose(self) -> ComposeResult:
            yield FittedTable([FitColumn("n", "N"), FitColumn("text", "Text", flex=True)], id="table")

    rows = {name: {"n": name, "text": Text(f"task {name}")} for name in ("a", "b", "c", "d")}
    app = OneTable()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(FittedTable)
        table.show_rows(rows)
        table.focus()
        await pilot.pause()
        await pilot.press("down", "down")
        await pilot.pause()
        assert table.highlighted_key() == "c"
        table.show_rows({key: cells for key, cells in rows.items() if key != "a"})
        await pilot.pause()
        assert table.highlighted_key() == "c" and table.cursor_row == 1


@pytest.mark.parametrize("size", [(80, 24), (60, 20)])
async def test_a_long_question_scrolls_inside_its_dialog_and_its_answers_stay_on_screen(
        repo: Path, size: tuple[int, int]) -> None:
    """An override's 200-word reason put the end of the question and its `y yes · n no` off screen at 80x24,
    nothing scrolled; at 60 columns the dialogs' right border was cut off."""
    from textual.widgets import Static

    from loomtui.tui.screens.escalations import ReasonScreen
    from loomtui.tui.screens.sandbox_forms import ConfirmScreen

    app = LoomApp(open_workspace(repo))
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        reason = " ".join(f"w{n:03}" for n in range(1, 201)) + " END"
        await app.push_screen(ConfirmScreen(f"Override escalation #2? its change goes on: {reason}"))
        await pilot.pause()
        dialog = app.screen.query_one("ConfirmScreen > Vertical").region
        answers = list(app.screen.query(Static))[-1]
        assert "yes" in str(answers.render()) and answers.region.bottom <= size[1] - 1, answers.region
        assert dialog.right <= size[0] and dialog.y >= 0, dialog
        question = app.screen.query_one("#confirm-question")
        await pilot.press("end")
        await pilot.pause()
        assert question.scroll_y > 0 and question.scroll_y == question.max_scroll_y
        await pilot.press("n")
        await pilot.pause()
        await app.push_screen(ReasonScreen("Override escalation #2: why?"))
        await pilot.pause()
        assert app.screen.query_one("ReasonScreen > Vertical").region.right <= size[0]
