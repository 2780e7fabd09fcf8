"""Every view's header shows the same counts, from one source, whatever changed while it was hidden."""

from __future__ import annotations

import re
from pathlib import Path

from textual.geometry import Region
from textual.widgets import Input

from loomtui.execution.lifecycle import ARCHIVED
from loomtui.governance.escalations import decide
from loomtui.governance.policy import load_policy
from loomtui.tui.app import LoomApp
from loomtui.tui.screens.escalations import ReasonScreen
from loomtui.tui.widgets.status_header import StatusHeader
from loomtui.workspace import open_workspace
from tests.conftest import wait_for
from tests.test_escalations import ALICE, LEAD, escalate, payments_change
from tests.test_tui import add_sandbox

SIZE = (150, 40)
VIEWS = ("1", "2", "3", "4", "5")


def counts(header: StatusHeader) -> tuple[int, int, int]:
    """The counts as the header paints them (its line, not its attributes)."""
    line = "".join(strip.text for strip in header.render_lines(Region(0, 0, header.size.width, 1)))
    found = re.search(r"sandboxes (\d+)\s+escalations (\d+)\s+conflicts (\d+)", line)
    assert found, line
    return int(found[1]), int(found[2]), int(found[3])


def shown(app: LoomApp) -> tuple[int, int, int]:
    return counts(app.screen.query_one(StatusHeader))


async def switch_through_views(app: LoomApp, pilot) -> dict[str, tuple[int, int, int]]:  # type: ignore[no-untyped-def]
    """Views 1-5, each one's header as it is shown."""
    seen = {}
    for key in VIEWS:
        await pilot.press(key)
        await pilot.pause()
        seen[key] = shown(app)
    return seen


def every_view(app: LoomApp) -> dict[str, tuple[int, int, int]]:
    """Each mounted view's header as it stands, without showing the view (hidden ones too)."""
    seen = {}
    for mode in app.MODES:
        try:
            stack = app.get_screen_stack(mode)
        except KeyError:
            continue  # never shown: it has no header yet
        for screen in stack:
            for header in screen.query(StatusHeader):
                seen[mode] = counts(header)
    return seen


def truth(app: LoomApp) -> tuple[int, int, int]:
    """The counts read from the store now (conflicts: the app's coordination picture)."""
    store = app.workspace.store
    conflicts = len(app.coordination.conflicts) if app.coordination is not None else 0
    return len(store.list_sandboxes()), len(store.list_escalations("open")), conflicts


async def test_every_views_header_follows_a_rejection_a_decision_elsewhere_and_an_archive(billing: Path) -> None:
    """Reject in view 3; then, with view 2 shown, another process resolves an escalation and a sandbox
    is archived. Every view's header, hidden or shown, says what the store says, without waiting
    for a sandbox to change or for the view to be shown again."""
    workspace = open_workspace(billing)
    for sandbox_id in ("sb1", "sb2", "sb3", "sb4"):
        add_sandbox(workspace, sandbox_id, f"task {sandbox_id}")
    ids = [escalate(billing, payments_change(author))[1]
           for author in ("one@example.com", "two@example.com", "three@example.com")]
    workspace.actor = ALICE
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.policy is not None and app.latest_snapshot is not None)
        assert truth(app)[:2] == (4, 3)
        assert set((await switch_through_views(app, pilot)).values()) == {truth(app)}

        await pilot.press("3")
        await pilot.pause()
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ReasonScreen))
        app.screen.query_one(Input).value = "rounds twice"
        await pilot.press("enter")
        await wait_for(pilot, lambda: shown(app)[1] == 2)
        assert truth(app)[:2] == (4, 2)
        hidden = every_view(app)  # before any view is shown again
        assert len(hidden) == len(VIEWS) and set(hidden.values()) == {truth(app)}, hidden

        await pilot.press("2")
        await pilot.pause()
        lead = open_workspace(billing)
        try:
            lead.actor = LEAD
            decide(lead, load_policy(billing), ids[-1], "reject", reason="not now")
            lead.store.update_sandbox("sb4", status=ARCHIVED)
        finally:
            lead.close()
        await wait_for(pilot, lambda: shown(app)[:2] == (3, 1))
        hidden = every_view(app)
        assert len(hidden) == len(VIEWS) and set(hidden.values()) == {truth(app)}, hidden
        assert set((await switch_through_views(app, pilot)).values()) == {truth(app)}


async def test_the_counts_stay_in_the_header_at_any_width(billing: Path) -> None:
    """The README's promise: as the terminal narrows, the checklist, branch, repository and title
    go, and the counts stay (shorter at the narrowest)."""
    for width in (120, 80, 60, 50, 40, 34):
        app = LoomApp(open_workspace(billing))
        async with app.run_test(size=(width, 20)) as pilot:
            header = app.screen.query_one(StatusHeader)
            await wait_for(pilot, lambda h=header, a=app: h.size.width > 0 and a.latest_snapshot is not None)
            await pilot.pause()
            line = "".join(strip.text for strip in header.render_lines(Region(0, 0, header.outer_size.width, 1)))
            assert re.search(r"(sandboxes|sbx) \d+\s+(escalations|esc) \d+\s+(conflicts|conf) \d+", line), (width, line)
            if width == 80:  # the repository's name outlasts a healthy store (it went first: which repo was this?)
                assert f" {billing.name} " in line and "store: ok" not in line, line
