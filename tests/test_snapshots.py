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


def test_dashboard_with_sandboxes(snap_compare, populated: LoomApp) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(populated, terminal_size=SIZE, run_before=settled_then("down", "down"))  # NOT isolated


def test_help_screen(snap_compare, populated: LoomApp) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(populated, terminal_size=SIZE, run_before=settled_then("question_mark"))


def test_high_contrast_theme(snap_compare, populated: LoomApp) -> None:  # type: ignore[no-untyped-def]
    async def to_high_contrast(pilot) -> None:  # type: ignore[no-untyped-def]
        await settled_then()(pilot)
        pilot.app.theme = "loom-high-contrast"
        await pilot.pause()

    assert snap_compare(populated, terminal_size=SIZE, run_before=to_high_contrast)


def test_claims_graph(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from loomtui.demo import prepare_demo_repo

    repo = prepare_demo_repo(tmp_path)
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


def _governance_app(tmp_path: Path) -> LoomApp:
    from loomtui.demo import prepare_demo_repo
    from loomtui.governance.escalations import open_escalation
    from loomtui.governance.policy import ChangeFacts, evaluate, load_policy

    repo = prepare_demo_repo(tmp_path)
    workspace = open_workspace(repo)
    facts = ChangeFacts(stage="post-gate", paths=("payments/refunds.py",),
                        regions=("payments/refunds.py::RefundService.quote",), lines_changed=12,
                        gates={"tests": "passed"}, author="agent@example.com")
    escalation = open_escalation(workspace, "post-gate", evaluate(load_policy(repo), facts), facts,
                                 sandbox_id="sb1", commit="c1")
    # Fixed times in what the pictures show: no real clock.
    workspace.store.update_escalation(escalation.id, data={"history": [
        {"at": FIXED_NOW - 60, "event": "opened", "by": "agent-runner@example.com"}]})
    workspace.actor = "alice@example.com"
    return LoomApp(workspace, clock=lambda: FIXED_NOW)


def test_escalation_queue(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = _governance_app(tmp_path)

    async def open_queue(pilot) -> None:  # type: ignore[no-untyped-def]
        from tests.test_tui import wait_for

        await wait_for(pilot, lambda: app.policy is not None)
        await pilot.press("3")
        await wait_for(pilot, lambda: app.screen.query_one("#queue").row_count == 1)

    assert snap_compare(app, terminal_size=(140, 40), run_before=open_queue)


def test_policy_view(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = _governance_app(tmp_path)

    async def open_policy(pilot) -> None:  # type: ignore[no-untyped-def]
        from tests.test_tui import wait_for

        # Settled first (policy, store, index read), so nothing restyles the screen after the shot.
        await wait_for(pilot, lambda: app.policy is not None and app.latest_snapshot is not None
                       and app.coordination is not None)
        await pilot.press("4")
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(140, 36), run_before=open_policy)
