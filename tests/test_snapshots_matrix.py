"""SVG snapshots of every view at 80x24 and 120x40, in each shipped theme at 120x40: one repository
with claims, sandboxes in each state and an escalation, a fixed clock, no cursor blink. (The audit and
metrics views show wall-clock times the store stamps, so they are tested by pilot, not pictured.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from loomtui.execution.isolation import ISOLATION_BWRAP, ISOLATION_NONE
from loomtui.store import SandboxRecord
from loomtui.tui.app import LoomApp
from loomtui.workflow.steps import REVIEW_ESCALATION_KEY
from loomtui.workspace import open_workspace

FIXED_NOW = 1_790_000_000.0
VIEWS = {"dashboard": ("1",), "claims": ("2",), "drawn-claims": ("2", "g"), "escalations": ("3",),
         "policy": ("4",), "context": ("6",), "plan": ("7",)}
THEMES = ("loom-dark", "loom-light", "loom-high-contrast")
SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
CASES = [(view, "80x24", "loom-dark") for view in VIEWS] + [
    (view, "120x40", theme) for view in VIEWS for theme in THEMES]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's repository with two claims, four sandboxes at rest and one open escalation."""
    from tests.conftest import demo_repo
    from loomtui.governance.coordinator import governed_coordinator
    from loomtui.governance.escalations import open_escalation
    from loomtui.governance.policy import ChangeFacts, evaluate, load_policy

    repo = demo_repo(tmp_path_factory.mktemp("matrix"))
    workspace = open_workspace(repo)
    # Every task at rest, waiting on a person or another task, so the app's workflow has no step to
    # take while the pictures are taken (and a run leaves the store as it found it): sb1 waits for a
    # decision on its escalation, sb2 for sb1's merge; sb3 ended with no change (and no isolation).
    rows = [("Add partial refunds to the refunds API", "awaiting_review", "claude", ISOLATION_BWRAP, ()),
            ("Refactor round_minor_units, the currency rounding helper", "planned", "codex", ISOLATION_BWRAP,
             ("sb1",)),
            ("Fix typos in notification templates", "failed", "script", ISOLATION_NONE, ()),
            ("Speed up invoice subtotal and totals", "rejected", "aider", ISOLATION_BWRAP, ())]
    for number, (task, status, runtime, isolation, after) in enumerate(rows):
        workspace.store.add_sandbox(SandboxRecord(
            id=f"sb{number + 1}", task=task, runtime=runtime, status=status, data={"after": list(after)},
            created=FIXED_NOW - 600 * (number + 1), updated=FIXED_NOW, isolation=isolation))
    coordinator = governed_coordinator(workspace)
    coordinator.claim("sb1", "payments/refunds.py::RefundService.quote", reason="partial refunds")
    coordinator.claim("sb2", "payments/currency.py::round_minor_units", reason="refactor rounding")
    facts = ChangeFacts(stage="post-gate", paths=("payments/refunds.py",),
                        regions=("payments/refunds.py::RefundService.quote",), lines_changed=12,
                        gates={"tests": "passed"}, author="agent@example.com")
    escalation = open_escalation(workspace, "post-gate", evaluate(load_policy(repo), facts), facts,
                                 sandbox_id="sb1", commit="c1")
    workspace.store.update_escalation(escalation.id, data={"history": [
        {"at": FIXED_NOW - 300, "event": "opened", "by": "agent-runner@example.com"}]})
    workspace.store.update_sandbox("sb1", data={REVIEW_ESCALATION_KEY: escalation.id})
    workspace.close()
    return repo


@pytest.mark.parametrize(("view", "size", "theme"), CASES, ids=[f"{v}-{s}-{t}" for v, s, t in CASES])
def test_view(snap_compare, world: Path, view: str, size: str, theme: str) -> None:  # type: ignore[no-untyped-def]
    workspace = open_workspace(world)
    workspace.actor = "alice@example.com"
    app = LoomApp(workspace, clock=lambda: FIXED_NOW)

    async def open_view(pilot) -> None:  # type: ignore[no-untyped-def]
        from tests.test_tui import wait_for

        # Settled first (policy, store, index read): a late read would restyle the screen after the shot.
        await wait_for(pilot, lambda: app.policy is not None and app.latest_snapshot is not None
                       and app.coordination is not None)
        app.theme = theme
        await pilot.press(*VIEWS[view])
        await pilot.pause()
        if view == "escalations":
            await wait_for(pilot, lambda: app.screen.query_one("#queue").row_count == 1)
        if view == "context":
            await wait_for(pilot, lambda: app.screen.query_one("#sections").row_count > 0)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZES[size], run_before=open_view)
