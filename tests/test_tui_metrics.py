"""The metrics view (8) and the checklist score in the header, driven with the pilot."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Sparkline, Static

from loomtui.store import SandboxRecord
from loomtui.tui.app import LoomApp
from loomtui.tui.screens.metrics import MetricsScreen
from loomtui.tui.widgets.status_header import StatusHeader
from loomtui.workspace import open_workspace
from tests.conftest import git

SIZE = (120, 40)


async def until(pilot: Any, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Let the app run until `condition` holds (its workers read the store and git)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the metrics view did not fill in"
        await pilot.pause(0.1)


def agent_history(repo: Path) -> None:
    """Three commits on main this week: two agent-made (loomtui's trailer, Claude's co-author), one not."""
    for number, trailer in enumerate(("Loom-Sandbox: aaaaaa", "Co-Authored-By: Claude <noreply@anthropic.com>", "")):
        (repo / f"f{number}.txt").write_text(str(number))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"change {number}" + (f"\n\n{trailer}" if trailer else ""))


def test_tokens_fit_the_runtime_table_in_three_figures() -> None:
    """At 80 columns the Tokens cell read "25,4" of 25,412 (a decimal, to the eye), and Cost was out of view."""
    from loomtui.tui.screens.metrics import compact

    assert [compact(n) for n in (0, 999, 1000, 25_412, 999_499, 3_100_000, 300_000_000_030)] == [
        "0", "999", "1.0k", "25.4k", "999k", "3.1M", "300G"]


async def test_the_metrics_view_shows_the_week_per_runtime_and_the_checklist(repo: Path) -> None:
    agent_history(repo)
    workspace = open_workspace(repo)
    now = time.time()
    for sandbox, runtime, status in (("aaaaaa", "claude", "merged"), ("bbbbbb", "claude", "rejected"),
                                     ("cccccc", "codex", "merged")):
        workspace.store.add_sandbox(SandboxRecord(id=sandbox, task="t", runtime=runtime, status=status,
                                                  created=now - 60, updated=now - 30))
        workspace.record(f"sandbox.{status}", sandbox, {"from": "awaiting_review", "to": status})
    workspace.record("sandbox.exited", "aaaaaa", {"from": "running", "to": "exited",
                                                  "usage": {"cost_usd": 0.0005, "output_tokens": 10}})
    workspace.record("sandbox.failed", "bbbbbb", {"from": "running", "to": "failed"})
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("8")
        await pilot.pause()
        assert isinstance(app.screen, MetricsScreen)
        screen = app.screen
        await until(pilot, lambda: screen.metrics is not None and screen.query_one(StatusHeader).checklist != "")
        glance = _shown(screen.query_one("#metrics-glance", Static).content)
        assert "67% acceptance rate" in glance and "50% agent-made share" in glance  # 2 of 3 decided; 2 of 4 commits
        assert glance.startswith("last 7 days: ") and " UTC, branch main" in glance  # the window said
        assert "; 1 agent failed" in glance  # no figure counted agents that did not finish
        table = screen.query_one("#metrics-runtimes", DataTable)
        rows = {str(table.get_row_at(i)[0]): table.get_row_at(i) for i in range(table.row_count)}
        assert {"claude", "codex"} <= set(rows)  # and "unknown": the agent-made commit no sandbox made
        assert [str(c) for c in rows["claude"][2:5]] == ["1", "1", "50%"]
        assert str(rows["claude"][-1]) == "<$0.01"  # as `report` says it: a real cost read "$0.00"
        assert sum(screen.query_one("#chart-merged", Sparkline).data or []) == 2
        checklist = str(screen.query_one("#metrics-checklist", Static).render())
        assert "checklist" in checklist and "/10" in checklist and " 1 " in checklist
        header = screen.query_one(StatusHeader)
        assert header.checklist.endswith("/10")  # the metrics view scored it; every header shows it
        # The store moves while the view is shown: its figures follow (they stayed until `r`).
        workspace.store.add_sandbox(SandboxRecord(id="dddddd", task="t", runtime="codex", status="merged",
                                                  created=now - 20, updated=now - 10))
        open_workspace(repo).record("sandbox.merged", "dddddd", {"from": "awaiting_review", "to": "merged"})
        await until(pilot, lambda: "3 merged of 4 decided" in _shown(screen.query_one("#metrics-glance",
                                                                                       Static).content))
        left = screen.query_one("#metrics-left")
        assert left.has_focus  # the keys scroll what is below the glance
        if left.max_scroll_y:
            await pilot.press("pagedown")
            await until(pilot, lambda: left.scroll_y > 0)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.query_one(StatusHeader).checklist == header.checklist


async def test_a_broken_config_says_its_error_and_still_answers_the_checklist(repo: Path) -> None:
    """The week's figures need the config: its error stopped the worker, and the checklist pane said
    "Checking the ten items…" for ever."""
    (repo / ".loom").mkdir()
    (repo / ".loom" / "loom.yaml").write_text("gates: [oops\n")
    app = LoomApp(open_workspace(repo))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("8")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, MetricsScreen)
        await until(pilot, lambda: screen.checklist is not None)
        assert ".loom/loom.yaml:1: invalid YAML" in _shown(screen.query_one("#metrics-glance", Static).content)
        checklist = str(screen.query_one("#metrics-checklist", Static).render())
        assert "/10?: no verdict" in checklist and " 4 unknown " in checklist
        await until(pilot, lambda: screen.query_one(StatusHeader).checklist.endswith("/10?"))


async def test_the_palette_finds_a_runtimes_figures_and_a_checklist_item_and_opens_the_view_there(repo: Path) -> None:
    from textual.command import CommandList, CommandPalette

    workspace = open_workspace(repo)
    now = time.time()
    for sandbox, runtime, status in (("aaaaaa", "claude", "merged"), ("bbbbbb", "aider", "rejected")):
        workspace.store.add_sandbox(SandboxRecord(id=sandbox, task="t", runtime=runtime, status=status,
                                                  created=now - 60, updated=now - 30))
        workspace.record(f"sandbox.{status}", sandbox, {"from": "awaiting_review", "to": status})
    app = LoomApp(workspace)
    async with app.run_test(size=(110, 16)) as pilot:  # short: the checklist scrolls past item 8

        async def pick(query: str, expected: str) -> None:
            await pilot.press("colon")
            await pilot.pause()
            assert isinstance(app.screen, CommandPalette)
            await pilot.press(*query)
            results = app.screen.query_one(CommandList)
            await until(pilot, lambda: results.option_count > 0
                        and expected in str(results.get_option_at_index(0).prompt))
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, MetricsScreen))

        await pick("aider acceptd", "metrics: runtime aider: 0 merged of 1, accepted 0%")  # a typo forgiven
        screen = app.screen
        assert isinstance(screen, MetricsScreen)
        table = screen.query_one("#metrics-runtimes", DataTable)
        await until(pilot, lambda: table.row_count > 1 and table.has_focus
                    and str(table.get_row_at(table.cursor_row)[0]) == "aider")  # not the first row
        await pilot.press("escape")
        await until(pilot, lambda: app.current_mode == "dashboard")
        await pick("audit trail", "checklist 8: Do you have an audit trail")
        right = screen.query_one("#metrics-right")
        await until(pilot, lambda: right.max_scroll_y > 0 and right.scroll_y > 0)
        checklist = screen.query_one("#metrics-checklist", Static)
        lines = [checklist.render_line(y).text for y in range(checklist.size.height)]
        item = next(y for y, line in enumerate(lines) if line.startswith(" 8 "))
        first = next(y for y, line in enumerate(lines) if line.startswith(" 1 "))
        assert first < item and lines[item + 1].startswith(" " * 11), lines  # it wraps under itself, not at column 0
        assert right.scroll_y == item <= right.max_scroll_y  # item 8 is the top line shown
        # Under 140 columns the checklist is under the figures, the whole width (beside them at 80
        # columns it had 28 cells, and a question stood six rows high).
        left = screen.query_one("#metrics-left")
        assert right.region.y >= left.region.bottom and right.region.width == screen.size.width


def _shown(renderable: Any, width: int = 120) -> str:
    """What a Rich renderable reads as, laid out at `width` columns."""
    from rich.console import Console

    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_a_figure_wraps_with_its_label_on_a_narrow_screen(repo: Path) -> None:
    from loomtui.observability.metrics import compute_metrics
    from loomtui.tui.screens.metrics import glance, week_figures

    metrics = compute_metrics(open_workspace(repo), time.time() - 7 * 86400)
    lines = _shown(glance(metrics), 46).splitlines()
    for label, value in week_figures(metrics):  # each figure on the line its label begins
        assert any(f"{value} {label.split()[0]}" in line for line in lines), (value, label, lines)


async def test_the_headers_score_follows_changes_that_came_while_it_waited(repo: Path,
                                                                            monkeypatch: Any) -> None:
    """The score is computed at most every CHECKLIST_EVERY_S; changes that came in that wait and then
    stopped were never scored: the demo's header said 7/10 while `loomtui checklist` said 9.5."""
    from loomtui.tui import app as app_module

    monkeypatch.setattr(app_module, "CHECKLIST_FIRST_S", 0.1)
    monkeypatch.setattr(app_module, "CHECKLIST_EVERY_S", 2.0)
    workspace = open_workspace(repo)
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        header = app.screen.query_one(StatusHeader)
        await until(pilot, lambda: header.checklist != "")
        before = header.checklist
        (repo / "AGENTS.md").write_text("# Conventions\n\nUse the money helpers for amounts.\n")
        workspace.record("claim.added", "aaaaaa", {})  # within the wait after the first score; then nothing
        await until(pilot, lambda: header.checklist != before, timeout=15)
        assert float(header.checklist.split("/")[0]) > float(before.split("/")[0])
        # The metrics view's `r` scores afresh, and every header shows what it found.
        scored = header.checklist
        (repo / "docs" / "adr").mkdir(parents=True)
        (repo / "docs" / "adr" / "0001-money.md").write_text("# Money\n\n## Status\n\nAccepted\n\n## Context\n\nx\n\n"
                                                             "## Decision\n\nIntegers of cents.\n")
        await pilot.press("8")
        await pilot.pause()
        await pilot.press("r")
        await until(pilot, lambda: app.screen.query_one(StatusHeader).checklist != scored, timeout=15)
        metrics = app.screen
        assert isinstance(metrics, MetricsScreen) and metrics.checklist is not None
        assert metrics.checklist.header == f"checklist {metrics.query_one(StatusHeader).checklist}"
