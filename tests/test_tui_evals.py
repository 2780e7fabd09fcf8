"""The dashboard's Evals tab over real evals of the sample repo: gate 1's checks (live while they run), the
per-test classes against the baseline, gate 2's score, a check's output, the table's badge, `e`, and the
merged gate's warning.

The sandboxes here are prepared (worktree, branch, claim) and their change committed by the test, with no
agent running: the demo's careless speed-up of invoice totals, which a test of the sample catches.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from textual.widgets import DataTable, Static, TabbedContent

from loomtui.execution.lifecycle import transition
from loomtui.guardrails.evals import latest_eval
from loomtui.guardrails.merged import MERGED_EVAL, BreakingSet, MergedReport
from loomtui.store import SandboxRecord
from loomtui.tui.app import LoomApp
from loomtui.tui.evals_text import REGRESSION_STYLE, short_test_id
from loomtui.tui.screens.dashboard import SandboxTable
from loomtui.tui.widgets.evals import EvalsPane
from loomtui.workflow.tasks import create_sandbox
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import git, wait_for

SIZE = (160, 45)
REGRESSION = "tests/test_invoices.py::test_invoice_total_rounds_each_line_half_even_before_summing"
# A test the sandbox adds that holds gate 1 running until the test driving the app lets it go: the live
# view is then looked at while the check really runs, however fast or slow the machine is.
HELD = """\
import time
from pathlib import Path


def test_waits_for_the_harness() -> None:
    release = Path(__file__).resolve().parent.parent / ".release"
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
"""


def careless_sandbox(workspace: Workspace, extra: dict[str, str] | None = None) -> SandboxRecord:
    """A sandbox whose branch holds the demo agent's change (sample_repo/.loom/demo/invoices.yaml: sum the raw
    lines, round once), committed by hand; it stays planned, so nothing else acts on it."""
    script = workspace.root / ".loom" / "demo" / "invoices.yaml"
    record = create_sandbox(workspace, "Speed up invoice totals", "script", script=script,
                            claims=("payments/invoices.py",))
    replace = next(step["replace"] for step in yaml.safe_load(script.read_text()) if "replace" in step)
    worktree = Path(record.worktree)
    target = worktree / replace["path"]
    target.write_text(target.read_text().replace(replace["old"], replace["new"]))
    for name, text in (extra or {}).items():
        (worktree / name).write_text(text)
    git(worktree, "add", "-A")
    git(worktree, "commit", "-qm", "Speed up invoice totals: round the subtotal once")
    return record


def rows(table: DataTable[object]) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(index)] for index in range(table.row_count)]


async def open_evals(pilot, app: LoomApp):  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: app.screen.query_one("#sandboxes", SandboxTable).row_count == 1)
    app.screen.query_one("#detail", TabbedContent).active = "tab-evals"
    await wait_for(pilot, lambda: app.screen.query(EvalsPane))  # mounted after the first frame (Lazy)
    return app.screen.query_one(EvalsPane)


async def test_e_runs_the_eval_live_then_the_tab_shows_the_regression_score_output_and_the_table_badge(
        billing: Path) -> None:
    workspace = open_workspace(billing)
    record = careless_sandbox(workspace, {"tests/test_waits.py": HELD})
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_evals(pilot, app)
        summary = pane.query_one("#evals-summary", Static)
        await wait_for(pilot, lambda: "No eval yet" in str(summary.render()))
        app.screen.query_one("#detail", TabbedContent).active = "tab-details"
        await pilot.pause()

        # `e`, from any tab: the Evals tab follows the eval while gate 1's checks run.
        await pilot.press("e")
        assert app.screen.query_one("#detail", TabbedContent).active == "tab-evals"
        assert "eval running" in str(summary.render())
        checks = pane.query_one("#evals-checks", DataTable)

        def status(gate: str) -> str:
            return str(checks.get_cell(gate, "status")) if gate in checks.rows else ""

        await wait_for(pilot, lambda: status("tests") == "running")
        assert str(checks.get_cell("tests", "time")).endswith("s")  # its elapsed time, counting
        assert "live" in str(pane.query_one("#evals-output-title", Static).render())
        await pilot.press("e")  # a second press while it runs is refused, not queued
        await wait_for(pilot, lambda: any("still running" in n.message for n in app._notifications))
        # Gate 1 runs on the committed tip in a scratch tree of it (the held test looks there).
        [held] = [r for r in workspace.store.gate_runs(record.id) if r.gate == "tests" and r.status == "running"]
        (workspace.paths.state_dir / "evals" / "trees" / f"sandbox-{held.id}" / ".release").touch()
        await wait_for(pilot, lambda: record.id not in pane.evaluating, timeout=60)

        # Then the eval as stored: each check, the tests against the baseline, the score, the output.
        report = latest_eval(workspace, record.id)
        assert report is not None and report.score is not None and REGRESSION in report.regressions
        await wait_for(pilot, lambda: any(n.title == f"eval {record.id}" and report.badge() in n.message
                                          for n in app._notifications), timeout=10)
        await wait_for(pilot, lambda: status("tests") == "failed" and status("compile") == "passed")
        assert str(checks.get_cell("tests", "blocking")) == "yes"
        assert "regression" in str(checks.get_cell("tests", "outcome"))
        tests = pane.query_one("#evals-tests", DataTable)
        # As wide as the column the pane leaves it (it was cut to 44 cells at any width), its name's end kept.
        def shown(row: list[str]) -> bool:
            return row[2] == short_test_id(REGRESSION, len(row[2])) and len(row[2]) > 44

        await wait_for(pilot, lambda: any(shown(row) for row in rows(tests)))
        listed = rows(tests)
        regressions = [row for row in listed if row[0] == "PASS_TO_FAIL"]
        assert any(shown(row) for row in regressions)  # whole under the table when highlighted
        assert listed[: len(regressions)] == regressions  # regressions first, in red
        assert tests.get_row_at(0)[0].style == REGRESSION_STYLE and tests.get_row_at(0)[2].style == REGRESSION_STYLE
        assert [row[0] for row in listed if row[2].endswith("::test_waits_for_the_harness")] == ["ADDED"]
        assert any(row[0] == "PASS_TO_PASS" for row in listed)
        shown = str(summary.render())
        assert report.badge() in shown and "gate 1 failed" in shown
        score = str(pane.query_one("#evals-score", Static).render())
        assert f"score {report.score.total}" in score
        # The item and its evidence (a test id longer than the pane wraps after a `/`).
        assert "FAIL tests" in score and REGRESSION in "".join(score.split())
        from loomtui.tui.widgets.bounded_log import BoundedLog

        output = pane.query_one("#evals-output", BoundedLog)  # the failed check's, chosen by default
        # As written: a line longer than the pane is folded on the screen.
        await wait_for(pilot, lambda: any(line.startswith(f"FAILED {REGRESSION}") for line in output.written))

        # The sandboxes table's Gates column: the eval's badge, red (gate 1 failed).
        table = app.screen.query_one("#sandboxes", SandboxTable)
        await wait_for(pilot, lambda: str(table.cell(record.id, "gates")) == report.badge())
        assert "regr" in report.badge() and table.cell(record.id, "gates").style == "red"

        # The merged gate found it breaks something together with another sandbox: the tab says so at once.
        workspace.store.update_sandbox(record.id, status="awaiting_review")  # both pending, as the gate found them
        workspace.store.add_sandbox(SandboxRecord(id="other", task="t", runtime="script", status="awaiting_review",
                                                  created=0.0, updated=0.0))
        merged = MergedReport("main", "0" * 40, "1" * 40, (record.id, "other"),
                              breaking=(BreakingSet((record.id, "other"), "tests", (REGRESSION,)),))
        workspace.store.add_eval_report(MERGED_EVAL, MERGED_EVAL, merged.commit, "k", merged.as_dict())
        banner = pane.query_one("#evals-banner", Static)
        line = pane.query_one("#evals-merged", Static)
        await wait_for(pilot, lambda: banner.display and "breaks tests together with other:" in str(banner.render()))
        assert f"{record.id} + other break tests together" in str(line.render())
        assert "since then" not in str(line.render())
        # The other is rejected: the gate's finding is about a change that will not merge, and says so.
        transition(workspace, "other", "rejected", reason="not this way")
        await wait_for(pilot, lambda: "together with other (rejected since)" in str(banner.render()))
        assert "since then: other rejected (M runs it again" in str(line.render())


async def test_e_without_a_branch_is_refused_with_the_reason_and_m_finds_nothing_to_merge(repo: Path) -> None:
    workspace = open_workspace(repo)
    workspace.store.add_sandbox(SandboxRecord(id="sb1", task="never prepared", runtime="script", status="failed",
                                              created=0.0, updated=0.0))
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_evals(pilot, app)
        await pilot.press("e")
        await wait_for(pilot, lambda: any(n.title == "eval sb1" for n in app._notifications))
        [note] = [n for n in app._notifications if n.title == "eval sb1"]
        assert "no branch tip" in note.message and note.severity == "warning"
        assert "sb1" not in pane.evaluating
        assert "No eval yet" in str(pane.query_one("#evals-summary", Static).render())
        # ⏎ with the focus in the tab (its pane, or a table there) opened the Log tab, unasked.
        pane.focus()
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.query_one("#detail", TabbedContent).active == "tab-evals"

        def footer() -> set[str]:
            return {key for key, active in app.screen.active_bindings.items()
                    if active.binding.show and active.enabled}

        assert "escape" in footer()  # the way back to the table, shown where it works (it was hidden)
        # On the tabs themselves ⏎ opens, as the README says (it did nothing, unsaid).
        app.screen.query_one("#detail Tabs").focus()
        await pilot.pause()
        assert {"enter", "escape"} <= footer()
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.query_one("#detail", TabbedContent).active == "tab-log"
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is app.screen.query_one("#sandboxes", SandboxTable) and "escape" not in footer()

        # `M`, the merged gate: with no sandbox awaiting review or approved there is nothing to merge.
        await pilot.press("M")
        await wait_for(pilot, lambda: any(n.title == "merged gate" for n in app._notifications))
        assert "no sandbox to merge" in next(n.message for n in app._notifications if n.title == "merged gate")
        await wait_for(pilot, lambda: not pane.merging)
        assert "not run yet" in str(pane.query_one("#evals-merged", Static).render())


def test_a_long_test_id_keeps_its_name_and_the_outcome_leaves_the_tests_to_the_table_below() -> None:
    """At 80 columns the checks' Outcome read "... regressed: tes" and each test id was cut at its end,
    every id of one file reading the same."""
    from loomtui.store import GateRunRecord
    from loomtui.tui.evals_text import TEST_WIDTH, check_cells, short_test_id

    long_id = "tests/billing/test_invoices.py::test_calculator_line_totals_and_subtotals_are_rounded"
    assert short_test_id("tests/test_a.py::test_b") == "tests/test_a.py::test_b"
    short = short_test_id(long_id)
    assert len(short) == TEST_WIDTH and short.startswith("test_invoices.py::") and short.endswith("are_rounded")
    assert short_test_id("tests/unit/billing/test_invoices.py::test_line_totals_ok") == \
        "test_invoices.py::test_line_totals_ok"  # folders go first, then the middle
    run = GateRunRecord(id=1, sandbox_id="s", gate="tests", status="failed", commit_sha="c", started=0.0, finished=1.0,
                        data={"summary": f"1 regression · 47 unchanged; regressed: {long_id}", "duration_s": 0.5})
    assert str(check_cells(run, 1.0, True)["outcome"]) == "1 regression · 47 unchanged"


def test_a_sandbox_whose_review_runs_its_checks_is_not_said_to_wait_for_e() -> None:
    """"No eval yet: e runs gate 1 ..." stood above its review's "tests running…"."""
    from loomtui.store import GateRunRecord
    from loomtui.tui.evals_text import EvalsView, summary_text

    idle = str(summary_text(EvalsView("s"), "s", evaluating=False))
    assert idle.startswith("No eval yet: e runs gate 1")
    running = GateRunRecord(id=1, sandbox_id="s", gate="tests", status="running", commit_sha="c", started=0.0,
                            finished=None)
    said = str(summary_text(EvalsView("s", runs=(running,)), "s", evaluating=False))
    assert said == "No eval yet: gate 1's checks are running (below); gate 2's score follows."
