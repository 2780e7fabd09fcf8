"""SVG snapshots of each screen at a fixed size, with a fixed clock and no cursor blink."""

from __future__ import annotations

from pathlib import Path

import pytest

from loomtui.execution.isolation import ISOLATION_BWRAP, ISOLATION_NONE
from loomtui.governance.coordinator import governed_coordinator
from loomtui.store import SandboxRecord
from loomtui.tui.app import LoomApp
from loomtui.workspace import open_workspace

FIXED_NOW = 1_790_000_000.0
SIZE = (120, 30)


@pytest.fixture
def populated(repo: Path) -> LoomApp:
    workspace = open_workspace(repo)
    for number, (task, status, runtime, isolation) in enumerate([
        # No live statuses: reconcile would (rightly) orphan a "running" record with no process. And
        # none the app's workflow would act on (an awaiting_review with no escalation is due for a
        # review, which these records, with no branch, would fail at a moment the picture cannot fix).
        ("Add partial refunds to the refunds API", "failed", "claude", ISOLATION_BWRAP),
        ("Refactor currency rounding helper", "approved", "codex", ISOLATION_BWRAP),
        # The one an agent ran without isolation: the app warns about it.
        ("Fix typos in notification templates", "exited", "script", ISOLATION_NONE),
    ]):
        workspace.store.add_sandbox(SandboxRecord(
            id=f"sb{number + 1}", task=task, runtime=runtime, status=status,
            created=FIXED_NOW - 600 * (number + 1), updated=FIXED_NOW, isolation=isolation,
        ))
    return LoomApp(workspace, clock=lambda: FIXED_NOW)


def settled_then(*keys: str):  # type: ignore[no-untyped-def]
    """Wait until the app has read the store and the index (a busy machine reads them late, and a
    late read would restyle the screen after the shot), then press `keys`."""

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        from tests.test_tui import wait_for

        app = pilot.app
        await wait_for(pilot, lambda: app.latest_snapshot is not None and app.coordination is not None)
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
        await pilot.pause()

    return run_before


def test_dashboard_empty(snap_compare, repo: Path) -> None:  # type: ignore[no-untyped-def]
    app = LoomApp(open_workspace(repo), clock=lambda: FIXED_NOW)
    assert snap_compare(app, terminal_size=SIZE, run_before=settled_then())


def test_help_screen(snap_compare, populated: LoomApp) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(populated, terminal_size=SIZE, run_before=settled_then("question_mark"))


def test_claims_graph(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import demo_repo

    repo = demo_repo(tmp_path)
    coordinator = governed_coordinator(open_workspace(repo))
    coordinator.claim("refunds", "payments/refunds.py::RefundService.quote", reason="partial refunds")
    coordinator.claim("rounding", "payments/currency.py::round_minor_units", reason="refactor rounding")
    app = LoomApp(open_workspace(repo), clock=lambda: FIXED_NOW)

    async def open_graph(pilot) -> None:  # type: ignore[no-untyped-def]
        from tests.test_tui import wait_for

        await wait_for(pilot, lambda: app.coordination is not None)
        await pilot.press("2")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(140, 36), run_before=open_graph)


def _evals_app(repo: Path) -> LoomApp:
    """Two sandboxes with stored evals (the first's gate 1 failed on a regression), the first's check output,
    and a merged gate that found them breaking a test together; fixed commits, times and ids."""
    from loomtui.guardrails.classify import Classification, ClassifiedTest, TestClass
    from loomtui.guardrails.evals import SANDBOX_EVAL, EvalReport
    from loomtui.guardrails.gates import GateResult
    from loomtui.guardrails.merged import MERGED_EVAL, BreakingSet, MergedReport
    from loomtui.guardrails.reports import Outcome
    from loomtui.guardrails.score import ItemStatus, Score, ScoreItem

    workspace = open_workspace(repo)
    for number, task in enumerate(["Speed up invoice totals", "Refactor currency rounding helper"]):
        workspace.store.add_sandbox(SandboxRecord(
            id=f"sb{number + 1}", task=task, runtime="script", status="approved",
            created=FIXED_NOW - 600 * (number + 1), updated=FIXED_NOW, isolation=ISOLATION_BWRAP))
    regression = "tests/test_invoices.py::test_invoice_total_rounds_each_line_half_even_before_summing"
    log = repo.parent / "tests-output.log"
    log.write_text("....................F............................ [100%]\n"
                   f"FAILED {regression} - AssertionError: assert Decimal('0.38') == Decimal('0.36')\n"
                   "1 failed, 48 passed in 0.61s\n")
    tests = Classification((
        ClassifiedTest(regression, TestClass.PASS_TO_FAIL, Outcome.passed, Outcome.failed,
                       message="AssertionError: assert Decimal('0.38') == Decimal('0.36')"),
        ClassifiedTest("tests/test_refunds.py::test_partial_refund_is_capped", TestClass.FAIL_TO_PASS, Outcome.failed,
                       Outcome.passed),
        ClassifiedTest("tests/test_api.py::test_routes_are_registered", TestClass.PASS_TO_PASS, Outcome.passed,
                       Outcome.passed, flaky=True, message="ConnectionResetError: [Errno 104] (passed on its re-run)"),
        ClassifiedTest("tests/test_currency.py::test_format_amount", TestClass.PASS_TO_PASS, Outcome.passed,
                       Outcome.passed)))
    commit, base = "c0ffee" + "0" * 34, "ba5e00" + "0" * 34
    for sandbox, status, score, items in (
            ("sb1", "failed", 71, (("scope", "pass", "all 2 changed regions inside the claims", ()),
                                   ("tests", "fail", "1 test removed, skipped or regressed",
                                    (f"{regression}: regressed (passed before, failed now)",)),
                                   ("size", "pass", "8 lines changed (budget 400)", ("payments/invoices.py: 8 lines",)),
                                   ("contracts", "pass", "no signature others use was changed", ()),
                                   ("conventions", "warn", "1 new convention finding",
                                    ("payments/invoices.py:41: money-is-decimal: float() on an amount",)),
                                   ("task_fit", "pass", "1 of 1 changed code region fit the task (100%)", ()))),
            ("sb2", "passed", 94, (("scope", "pass", "all 1 changed region inside the claims", ()),))):
        checks = []
        for gate, outcome, summary, classified in (
                ("tests", status, f"{tests.summary()}; regressed: {regression}" if status == "failed" else "49 unchanged",
                 tests),
                ("compile", "passed", "", None)):
            run = workspace.store.add_gate_run(sandbox, gate, commit)
            data = {"duration_s": 1.4 if gate == "tests" else 0.3, "summary": summary, "blocking": True,
                    "log": str(log) if gate == "tests" else ""}
            workspace.store.finish_gate_run(run.id, outcome, data)
            checks.append(GateResult(gate, outcome, run.id, commit, (), 0, data["duration_s"], summary,
                                     tests=classified if sandbox == "sb1" else None))
        report = EvalReport(sandbox, commit, base, "all", tuple(checks), Score(score, True, tuple(
            ScoreItem(name, ItemStatus(item_status), 0.0, 1, headline, evidence)
            for name, item_status, headline, evidence in items)))
        workspace.store.add_eval_report(sandbox, SANDBOX_EVAL, commit, "k", report.as_dict())
    merged = MergedReport("main", base, commit, ("sb1", "sb2"), breaking=(
        BreakingSet(("sb1", "sb2"), "tests", ("tests/test_currency.py::test_round_minor_units_total",)),))
    workspace.store.add_eval_report(MERGED_EVAL, MERGED_EVAL, commit, "k", merged.as_dict())
    return LoomApp(workspace, clock=lambda: FIXED_NOW)


def test_evals_tab(snap_compare, repo: Path) -> None:  # type: ignore[no-untyped-def]
    from loomtui.tui.widgets.evals import EvalsPane

    app = _evals_app(repo)

    async def open_evals(pilot) -> None:  # type: ignore[no-untyped-def]
        from textual.widgets import DataTable

        from loomtui.tui.widgets.bounded_log import BoundedLog

        from tests.test_tui import wait_for

        await settled_then()(pilot)
        app.screen.query_one("#detail").active = "tab-evals"
        await wait_for(pilot, lambda: app.screen.query(EvalsPane))  # mounted after the first frame (Lazy)
        pane = app.screen.query_one(EvalsPane)
        tests = pane.query_one("#evals-tests", DataTable)
        # The rows' widths are measured when the table is next idle (a loaded machine drew it before:
        # the picture then had other column widths).
        await wait_for(pilot, lambda: tests.row_count == 4 and not tests._require_update_dimensions
                       and len(pane.query_one("#evals-output", BoundedLog).written) == 3)
        # Gate 2's evidence wrapped for the pane as it is laid out at last (its scrollbar in: it overflows).
        from textual.widgets import Static

        from loomtui.tui.base import wrap_width

        score = pane.query_one("#evals-score", Static)
        await wait_for(pilot, lambda: pane.show_vertical_scrollbar and pane._score_width == wrap_width(score, pane, 0)
                       and score.size.width == pane._score_width)
        tests.refresh()  # its header, drawn before, for the widths the rows gave the columns
        await pilot.pause()

    assert snap_compare(app, terminal_size=(140, 40), run_before=open_evals)
