"""`loomtui bench tui` at a tiny size: every figure is there and measured (no timing thresholds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Static, TabbedContent

from loomtui.tui.bench_data import BenchSize, seed_repository
from loomtui.workflow.steps import next_step
from loomtui.workspace import open_workspace
from tests.conftest import git, run_cli, wait_for

FIGURES = (
    "first_frame_bare_s", "first_frame_loomtui_s", "first_frame_ratio", "first_frame_bare_rss_mb",
    "first_frame_loomtui_rss_mb", "cursor_p50_ms", "cursor_p95_ms", "cursor_max_ms", "cursor_samples",
    "view_switch_p50_ms", "view_switch_p95_ms", "view_switch_max_ms", "view_switch_samples", "peak_rss_mb",
)
VIEWS = ("dashboard", "graph", "escalations", "policy", "audit")


def _numbers(value: Any, where: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _numbers(item, f"{where}.{key}")]
    return [(where, value)]


def test_seeded_records_are_in_the_store_and_leave_the_workflow_nothing_to_do(repo: Path) -> None:
    workspace = open_workspace(repo)
    try:
        written = seed_repository(workspace, BenchSize(sandboxes=8, claims=30, audit=40))
        store = workspace.store
        assert len(store.list_sandboxes()) == written["sandboxes"] == 8
        assert len(store.live_claims()) == written["claims"] == 30
        assert len(store.list_escalations("open")) == written["open_escalations"] > 0
        assert len(workspace.audit.tail(100)) == 40
        assert workspace.audit.verify().ok
        # The app would otherwise start working on them (gates, merges) while it is measured.
        assert not [s.id for s in store.list_sandboxes() if next_step(workspace, s).step.is_work]
    finally:
        workspace.close()


def test_bench_tui_reports_every_figure_as_a_positive_number(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "bench", "tui", "--sandboxes", "5", "--claims", "20", "--audit", "50",
                     "--rounds", "1", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert (figures["sandboxes"], figures["claims"], figures["audit_entries"], figures["rounds"]) == (5, 20, 50, 1)
    for name in FIGURES:
        assert name in figures, name
    assert sorted(figures["view_first_visit_ms"]) == sorted(VIEWS)
    assert figures["view_switch_samples"] == len(VIEWS)
    for where, value in _numbers(figures):
        assert isinstance(value, int | float) and not isinstance(value, bool) and value > 0, (where, value)
    assert "first frame" in result.stderr  # progress lines go to stderr, the JSON alone to stdout


def test_bench_tui_needs_two_sandboxes(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "bench", "tui", "--sandboxes", "1", "--json")
    assert result.returncode == 2
    assert "--sandboxes" in result.stderr


def test_the_snapshot_names_sandbox_evals_as_the_eval_engine_does() -> None:
    from loomtui.guardrails.evals import SANDBOX_EVAL
    from loomtui.tui import snapshot

    assert snapshot.SANDBOX_EVAL == SANDBOX_EVAL  # the snapshot keeps its own copy so as not to import the engine


def test_the_snapshot_gives_each_sandbox_the_step_the_store_alone_gives(repo: Path) -> None:
    """The snapshot reads every live claim and open escalation once and hands them to each step; a step
    on its own asks the store. Both must agree, including where those facts decide the step."""
    import time

    from loomtui.tui.snapshot import read_snapshot
    from loomtui.workflow.steps import Step

    workspace = open_workspace(repo)
    try:
        seed_repository(workspace, BenchSize(sandboxes=12, claims=40, audit=10))
        store = workspace.store
        merged = next(s for s in store.list_sandboxes() if s.status == "merged")
        with store.transaction():  # a merged sandbox still holding a claim: it is released next
            store.add_claim(merged.id, "app.py", "exclusive", "left over", time.time() + 600, ["app.py"])
        # A rejection a lead overrode (the snapshot reads its escalation from the list it read) and a gate run.
        reviewed = next(s for s in store.list_sandboxes() if s.status == "awaiting_review")
        escalation = int(reviewed.data["review_escalation"])
        store.update_escalation(escalation, status="overridden")
        store.update_sandbox(reviewed.id, status="rejected")
        store.finish_gate_run(store.add_gate_run(reviewed.id, "tests", "abc").id, "failed")
        snapshot = read_snapshot(workspace, 0)
        counted = read_snapshot(workspace, 0, with_claims=False)  # the app's first read: counts only
        for sandbox in store.list_sandboxes():
            assert snapshot.steps[sandbox.id] == next_step(workspace, sandbox), sandbox.id
            assert counted.steps[sandbox.id] == snapshot.steps[sandbox.id], sandbox.id
        assert snapshot.steps[merged.id].step == Step.RELEASE
        assert snapshot.steps[reviewed.id].step == Step.FOLLOW_DECISION
        assert snapshot.gates_by_sandbox[reviewed.id] == {"tests": "failed"}
        assert snapshot.claims_by_sandbox is not None and counted.claims_by_sandbox is None
        assert counted.claim_counts == snapshot.claim_counts == {
            sandbox_id: len(claims) for sandbox_id, claims in snapshot.claims_by_sandbox.items()}
        assert sum(counted.claim_counts.values()) == 41
    finally:
        workspace.close()


def test_a_step_read_again_follows_a_claim_released_elsewhere(repo: Path) -> None:
    """The app keeps each sandbox's step until its record or another's changes; a claim released (by the
    command line's `sandbox stop`, say) changes neither, and the app showed "release" for good."""
    import time

    from loomtui.tui.snapshot import StepCache, read_snapshot
    from loomtui.workflow.steps import Step

    workspace = open_workspace(repo)
    try:
        seed_repository(workspace, BenchSize(sandboxes=6, claims=0, audit=1))
        store = workspace.store
        merged = next(s for s in store.list_sandboxes() if s.status == "merged")
        claim = store.add_claim(merged.id, "app.py", "exclusive", "left over", time.time() + 600, ["app.py"])
        cache: StepCache = {}
        assert read_snapshot(workspace, 0, step_cache=cache).steps[merged.id].step == Step.RELEASE
        store.release_claim(claim.id, "released elsewhere")
        again = read_snapshot(workspace, 0, step_cache=cache).steps[merged.id]
        assert again.step != Step.RELEASE and again == next_step(workspace, store.get_sandbox(merged.id))
    finally:
        workspace.close()


def test_a_step_read_again_follows_a_commit_made_with_git_alone(billing: Path) -> None:
    """A merge conflict resolved in the worktree with git, as the README says: no record changes, and the app
    kept "resolve it" (and never ran the review now due) for good."""
    from loomtui.tui.snapshot import StepCache, read_snapshot
    from loomtui.workflow.steps import Step
    from loomtui.workflow.tasks import create_sandbox

    workspace = open_workspace(billing)
    try:
        script = billing.parent / "idle.yaml"
        script.write_text("- {log: idle}\n")
        record = create_sandbox(workspace, "a change", "script", script=script, isolate=False)
        tree = Path(record.worktree)
        (tree / "NOTES.md").write_text("one\n")
        git(tree, "add", "-A")
        git(tree, "commit", "-qm", "one")
        tip = git(tree, "rev-parse", "HEAD").strip()
        workspace.store.update_sandbox(record.id, status="approved", data={"approved_commit": tip})
        cache: StepCache = {}
        assert read_snapshot(workspace, 0, step_cache=cache).steps[record.id].step != Step.REVIEW
        (tree / "NOTES.md").write_text("two\n")
        git(tree, "commit", "-qam", "two")  # git alone: no record of it changes
        again = read_snapshot(workspace, 0, step_cache=cache).steps[record.id]
        assert again.step == Step.REVIEW and "new commits since its approval" in again.line(), again
        # A merge into another branch (`sandbox merge --into release`) that conflicted, that branch then mended.
        git(billing, "branch", "release", "main")
        tip = git(tree, "rev-parse", "HEAD").strip()
        workspace.store.update_sandbox(record.id, data={"approved_commit": tip, "merge_requested": {"into": "release"},
                                                        "merge_conflict": {"target": "release", "message": "x",
                                                                           "target_sha": git(billing, "rev-parse",
                                                                                             "release").strip()}})
        assert read_snapshot(workspace, 0, step_cache=cache).steps[record.id].step == Step.MERGE_CONFLICT
        mended = git(billing, "commit-tree", "release^{tree}", "-p", "release", "-m", "mended").strip()
        git(billing, "update-ref", "refs/heads/release", mended)  # that branch alone moves, with git alone
        assert read_snapshot(workspace, 0, step_cache=cache).steps[record.id].step != Step.MERGE_CONFLICT
    finally:
        workspace.close()


def test_the_snapshot_asks_the_store_as_often_for_sixty_sandboxes_as_for_six(repo: Path, tmp_path: Path) -> None:
    """The dashboard's poll read each sandbox's gate runs, review escalation and dependencies one query at a
    time: 1,505 queries for 1,000 sandboxes, a round trip each on a team's PostgreSQL. Now a fixed few."""
    from loomtui.tui.snapshot import read_snapshot

    def queries(sandboxes: int, root: Path) -> int:
        workspace = open_workspace(root)
        try:
            seed_repository(workspace, BenchSize(sandboxes=sandboxes, claims=sandboxes, audit=1))
            asked = []
            real = workspace.store._query
            workspace.store._query = lambda *args: (asked.append(args[0]), real(*args))[1]  # type: ignore[method-assign]
            read_snapshot(workspace, 0)
            return len(asked)
        finally:
            workspace.close()

    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    git(other, "commit", "-q", "--allow-empty", "-m", "initial")
    assert queries(6, repo) == queries(60, other)


async def test_the_dashboard_shows_its_rows_without_waiting_for_the_store_s_listener(
        repo: Path, monkeypatch: Any) -> None:
    """From an embedded store the first snapshot is read before the dashboard is composed, so its first
    frame has the rows: here the listener never reads, and the rows are there."""
    from loomtui.tui.app import LoomApp
    from loomtui.tui.widgets.fitted_table import FittedTable

    workspace = open_workspace(repo)
    try:
        seed_repository(workspace, BenchSize(sandboxes=6, claims=10, audit=10))
        monkeypatch.setattr(LoomApp, "_listen_worker", lambda _app, _seen, **_how: None)
        app = LoomApp(workspace, clock=lambda: 1_000_000.0)
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.pause()
            table = app.screen.query_one("#sandboxes", FittedTable)
            assert table.row_count == 6
            assert app.screen.query_one("#status").sandboxes == 6  # type: ignore[attr-defined]
            counts = {str(key.value): str(table.cell(str(key.value), "claims")) for key in table.rows}
            assert sorted(counts.values()) != ["0"] * 6 and sum(map(int, counts.values())) == 10
            # The claims themselves are the listener's to read (here it never does), and the tab says so.
            app.screen.query_one("#detail", TabbedContent).active = "tab-claims"
            await pilot.pause()
            assert "reading claims" in str(app.screen.query_one("#claims", Static).render())
    finally:
        workspace.close()


async def test_the_listener_reads_the_claims_the_first_frame_went_without(repo: Path) -> None:
    from loomtui.tui.app import LoomApp

    workspace = open_workspace(repo)
    try:
        seed_repository(workspace, BenchSize(sandboxes=3, claims=6, audit=5))
        held = {claim.sandbox_id for claim in workspace.store.live_claims()}
        app = LoomApp(workspace, clock=lambda: 1_000_000.0)
        async with app.run_test(size=(120, 30)) as pilot:
            # Nothing changes in the store: the listener reads because it was told to.
            await wait_for(pilot, lambda: app.latest_snapshot is not None
                           and app.latest_snapshot.claims_by_sandbox is not None)
            snapshot = app.latest_snapshot
            assert snapshot is not None and snapshot.claims_by_sandbox is not None
            assert set(snapshot.claims_by_sandbox) == held
            table = app.screen.query_one("#sandboxes", DataTable)
            table.move_cursor(row=table.get_row_index(sorted(held)[0]))
            app.screen.query_one("#detail", TabbedContent).active = "tab-claims"
            await pilot.pause()
            assert "live claim" in str(app.screen.query_one("#claims", Static).render())
    finally:
        workspace.close()


async def test_the_dashboards_first_frame_shows_its_rows(repo: Path, monkeypatch: Any) -> None:
    """The table is laid out in the pass that draws the first frame (FittedTable._size_updated): the
    first frame drawn is not an empty table with the rows a frame or two behind it."""
    from textual.app import App

    from loomtui.tui.app import LoomApp
    from loomtui.tui.screens.dashboard import DashboardScreen
    from loomtui.tui.widgets.fitted_table import FittedTable

    frames: list[tuple[int, int]] = []  # per dashboard frame: rows in the table, its scrollable height
    display = App._display

    def recorded(app: Any, screen: Any, renderable: Any) -> None:
        if renderable is not None and isinstance(screen, DashboardScreen):
            table = screen.query_one("#sandboxes", FittedTable)
            frames.append((table.row_count, table.virtual_size.height))
        display(app, screen, renderable)

    monkeypatch.setattr(App, "_display", recorded)
    workspace = open_workspace(repo)
    try:
        seed_repository(workspace, BenchSize(sandboxes=5, claims=5, audit=5))
        app = LoomApp(workspace, clock=lambda: 1_000_000.0)
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.pause()
        assert frames, "no frame of the dashboard was drawn"
        assert frames[0] == (5, 6)  # five rows and the header
    finally:
        workspace.close()


async def test_a_first_read_that_fails_leaves_the_rows_to_the_store_s_listener(repo: Path, monkeypatch: Any) -> None:
    """The early read is only a head start: when it fails the app still starts, and the listener reads."""
    import loomtui.tui.app as app_module
    from loomtui.tui.app import LoomApp
    from loomtui.tui.widgets.fitted_table import FittedTable

    real = app_module.read_snapshot
    calls: list[int] = []

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the first read fails")
        return real(*args, **kwargs)

    workspace = open_workspace(repo)
    try:
        seed_repository(workspace, BenchSize(sandboxes=4, claims=5, audit=5))
        monkeypatch.setattr(app_module, "read_snapshot", failing_once)
        app = LoomApp(workspace, clock=lambda: 1_000_000.0)
        async with app.run_test(size=(120, 30)) as pilot:
            table = app.screen.query_one("#sandboxes", FittedTable)
            for _ in range(100):
                if table.row_count == 4:
                    break
                await pilot.pause(0.05)
            assert table.row_count == 4 and len(calls) >= 2
    finally:
        workspace.close()


def test_the_snapshot_reads_no_decided_escalation_of_an_archived_sandbox(repo: Path) -> None:
    """Every review opens an escalation, and the dashboard read them all on each event: a year's (5,000 decided
    reviews of archived sandboxes) made each read 5 times slower. It reads the open ones and those of sandboxes
    not archived; the steps are the same."""
    from loomtui.tui.snapshot import read_snapshot

    workspace = open_workspace(repo)
    try:
        seed_repository(workspace, BenchSize(sandboxes=8, claims=8, audit=1))
        store = workspace.store
        old, asking = [s for s in store.list_sandboxes() if s.status == "merged"][:2]
        decided = store.add_escalation("post-gate", sandbox_id=old.id, risk="low", summary="old review")
        store.update_escalation(decided.id, status="approved")
        still_open = store.add_escalation("question", sandbox_id=asking.id, risk="low", summary="a question")
        for archived in (old, asking):
            store.update_sandbox(archived.id, status="archived")
        read = {e.id for e in store.live_escalations()}
        assert decided.id not in read and still_open.id in read
        snapshot = read_snapshot(workspace, 0)
        assert [e.id for e in snapshot.escalations_to_decide] == [e.id for e in store.list_escalations("open")]
        for sandbox in store.list_sandboxes(include_archived=True):
            if sandbox.status != "archived":
                assert snapshot.steps[sandbox.id] == next_step(workspace, sandbox), sandbox.id
    finally:
        workspace.close()
