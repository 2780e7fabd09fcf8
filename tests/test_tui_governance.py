"""The policy and audit views driven with the pilot."""

from __future__ import annotations

from pathlib import Path

import pytest

from textual.widgets import DataTable, Select, Static

from loomtui.tui.app import LoomApp
from loomtui.tui.screens.governance import AuditScreen, PolicyScreen
from loomtui.workflow.tasks import create_sandbox
from loomtui.workspace import open_workspace
from tests.test_tui import wait_for

SIZE = (160, 45)


async def test_policy_view_marks_the_rules_that_fire_for_a_sandbox(billing: Path) -> None:
    workspace = open_workspace(billing)
    script = billing.parent / "noop.yaml"
    script.write_text('- {log: "nothing"}\n')
    record = create_sandbox(workspace, "ledger work", "script", script=script,
                            claims=["payments/ledger.py::Ledger"])
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.policy is not None and app.latest_snapshot is not None)
        await pilot.press("4")
        await pilot.pause()
        assert isinstance(app.screen, PolicyScreen)
        table = app.screen.query_one("#rules", DataTable)
        assert "payments-high-risk" in [k.value for k in table.rows]
        picker = app.screen.query_one("#policy-sandbox", Select)
        await wait_for(pilot, lambda: record.id in app.screen.sandbox_options)
        await pilot.press("s")  # the picker, opened from the keyboard (Tab reached it last)
        await pilot.pause()
        assert picker.expanded and app.focused is not table
        await pilot.press("enter")  # on the first sandbox (it was on the prompt row: Enter cleared the pick)
        await wait_for(pilot, lambda: str(table.get_cell("ledger-claims", "fired")) == "●")
        assert picker.value == record.id
        assert str(table.get_cell("no-secrets", "fired")) == ""
        assert "claim: require" in str(app.screen.query_one("#policy-detail", Static).render())
        assert app.focused is table  # the keys go back to the rules, not into the picker
        # A sandbox made elsewhere is offered at once, and the pick stays (new options cleared it, and the
        # explanation with it).
        other = create_sandbox(workspace, "other work", "script", script=script)
        await wait_for(pilot, lambda: other.id in app.screen.sandbox_options)
        await pilot.pause()
        assert picker.value == record.id and str(table.get_cell("ledger-claims", "fired")) == "●"
        assert "claim: require" in str(app.screen.query_one("#policy-detail", Static).render())
        picker.clear()  # its prompt row, chosen: the explanation goes with the marks (it raised an internal error)
        await wait_for(pilot, lambda: str(table.get_cell("ledger-claims", "fired")) == "")
        assert "claim: require" not in str(app.screen.query_one("#policy-detail", Static).render())
        assert not [n for n in app._notifications if "Select" in str(n.message)]


async def test_audit_view_lists_entries_live_and_verifies(billing: Path) -> None:
    workspace = open_workspace(billing)
    workspace.record("test.first", "one")
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await pilot.pause()
        assert isinstance(app.screen, AuditScreen)
        table = app.screen.query_one("#audit", DataTable)
        verify = app.screen.query_one("#verify", Static)
        await wait_for(pilot, lambda: table.row_count == 1 and "OK: 1 entries" in str(verify.render()))
        open_workspace(billing).record("test.second", "two")
        await wait_for(pilot, lambda: table.row_count == 2)
        # The verify line speaks for the entries it checked: a newer one is said, until `v` again.
        await wait_for(pilot, lambda: "(1 newer entry since; v verifies again)" in str(verify.render()))
        await pilot.press("v")
        await wait_for(pilot, lambda: "OK: 2 entries" in str(verify.render()) and "newer" not in str(verify.render()))
        log = workspace.audit.path
        log.write_text(log.read_text().replace('"one"', '"uno"'))
        await pilot.press("v")
        await wait_for(pilot, lambda: "BROKEN" in str(verify.render()))
        assert "next: `loomtui audit restore` writes the file again" in str(verify.render())  # what puts it right


async def test_audit_view_verifies_in_full_a_forged_decision_with_a_valid_chain(billing: Path) -> None:
    """`v` makes the whole check `audit verify` makes, not only the chain: a decision appended with a
    valid chain but no signature, under a policy that requires signed decisions, is caught."""
    policy = billing / ".loom" / "policy.yaml"
    policy.write_text(policy.read_text() + "decisions: {require_signature: true}\n")
    (billing / ".loom" / "allowed_signers").write_text(  # the lead's key (the forger has no use for it)
        "lead@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    workspace = open_workspace(billing)
    forged = workspace.audit.append("lead@example.com", "escalation.approve", "1",
                                    {"by": "lead@example.com", "reason": "", "commit": "c1", "status": "approved"})
    assert workspace.audit.verify().ok  # the chain alone cannot tell
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await pilot.pause()
        verify = app.screen.query_one("#verify", Static)
        await wait_for(pilot, lambda: "BROKEN" in str(verify.render()))
        assert f"seq {forged.seq}" in str(verify.render()) and "unsigned" in str(verify.render())


async def test_at_80_columns_the_audit_view_shows_action_and_subject_whatever_the_actors_email(
        billing: Path) -> None:
    workspace = open_workspace(billing)
    workspace.actor = "a.very.long.name.of.a.reviewer@payments-platform.internal.example.com"
    # Who acted stays ahead of the subject's room: a long subject (a region id) dropped Actor.
    workspace.record("claim.added", "payments/refunds.py::RefundService.quote_partial_refund_for_charge", {})
    workspace.record("escalation.approve", "12", {"by": workspace.actor})
    app = LoomApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await wait_for(pilot, lambda: isinstance(app.screen, AuditScreen))
        table = app.screen.query_one("#audit", DataTable)

        def column_labels() -> list[str]:
            return [str(column.label) for column in table.columns.values()]

        # The narrow layout (the detail below the table) comes a frame after the first, laid out side by
        # side at about 48 columns, where Actor has no room: the columns are read once the table is full width.
        await wait_for(pilot, lambda: table.row_count >= 1 and app.screen.has_class("-narrow")
                       and "Actor" in column_labels())
        labels = column_labels()
        assert labels.index("Action") < labels.index("Actor") and labels.index("Subject") < labels.index("Actor")
        shown = table.get_row_at(table.row_count - 1)
        assert str(shown[2]) == "escalation.approve" and str(shown[3]) == "12"
        assert len(str(shown[4])) <= 22 and str(shown[4]).endswith("…")
        # Action and Subject sit inside the table's visible width, with no scrolling.
        offset = sum(column.get_render_width(table) for column in list(table.columns.values())[:4])
        assert offset <= table.scrollable_content_region.width
        # The entry's detail: a value too long for the line (the actor) wraps under its own column.
        detail = app.screen.query_one("#audit-detail", Static)
        await wait_for(pilot, lambda: "actor" in str(detail.render()))
        lines = str(detail.render()).splitlines()
        actor_at = next(i for i, line in enumerate(lines) if line.strip().startswith("actor"))
        column = lines[actor_at].index(lines[actor_at].split()[1])
        assert lines[actor_at + 1][:column].strip() == "", lines[actor_at:actor_at + 3]  # not back at the edge


async def test_at_80_columns_long_actions_still_leave_the_subject(billing: Path) -> None:
    """With the demo's longer actions the Actor column, kept first, left the Subject no room at 80
    columns: no row said which sandbox or escalation it was about."""
    workspace = open_workspace(billing)
    workspace.actor = "sam.the.engineer@example.com"
    for action in ("sandbox.worktree_missing", "escalation.late_decision", "escalation.withdrawn"):
        workspace.record(action, "3fa9c1", {})
    app = LoomApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await wait_for(pilot, lambda: isinstance(app.screen, AuditScreen))
        table = app.screen.query_one("#audit", DataTable)
        await wait_for(pilot, lambda: table.row_count >= 3 and app.screen.has_class("-narrow"))
        await pilot.pause()
        labels = [str(column.label) for column in table.columns.values()]
        assert labels[:4] == ["#", "Time (UTC)", "Action", "Subject"], labels
        assert str(table.get_row_at(table.row_count - 1)[3]) == "3fa9c1"


async def test_esc_backs_out_one_level_in_every_view_from_its_pane_to_its_list_then_to_the_sandboxes(
        billing: Path) -> None:
    """From a view's detail pane `esc` went straight to the sandboxes (the Audit row being read lost); only the
    Escalations view backed out to its list first."""
    from loomtui.tui.screens.dashboard import DashboardScreen

    workspace = open_workspace(billing)
    workspace.record("test.first", "one")
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        for key in ("4", "5", "7", "8"):
            await pilot.press(key)
            await pilot.pause()
            view = app.screen
            home = view.query_one(view.AUTO_FOCUS)
            await wait_for(pilot, lambda: app.focused is home)  # noqa: B023 (awaited in this turn)
            for _ in range(4):  # to a pane beside the list (the metrics' list holds a table of its own)
                await pilot.press("tab")
                await pilot.pause()
                focused = app.focused
                if focused is not None and focused is not home and home not in focused.ancestors:
                    break
            else:
                continue  # a view with nothing else to focus (no plan: one pane)
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is view and app.focused is home, (key, app.focused)
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, DashboardScreen), key


async def test_slash_filters_the_audit_view_by_action_subject_or_actor_and_esc_clears_it(billing: Path) -> None:
    """`/` in the Audit view said "the Audit view has no / filter": a lead looking for one sandbox's entries
    among hundreds read them all."""
    from loomtui.tui.screens.dashboard import DashboardScreen

    workspace = open_workspace(billing)
    for action, subject in (("sandbox.planned", "ab12cd"), ("claim.added", "ef34gh"), ("sandbox.merged", "ab12cd")):
        workspace.record(action, subject)
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await pilot.pause()
        table = app.screen.query_one("#audit", DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        await pilot.press("slash", *"AB12", "enter")  # any case
        await wait_for(pilot, lambda: table.row_count == 2)
        assert app.focused is table
        await pilot.press("slash", "ctrl+u", *"nothing")
        await wait_for(pilot, lambda: table.row_count == 0)
        await wait_for(pilot, lambda: "holds 'nothing'" in str(app.screen.query_one("#audit-detail", Static).render()))
        await pilot.press("escape")  # out of the filter: every entry again, still the Audit view
        await wait_for(pilot, lambda: table.row_count == 3)
        assert isinstance(app.screen, AuditScreen) and app.focused is table
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)


async def test_enter_in_the_audit_filter_searches_the_whole_log(billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The filter read only the newest 500 entries the view keeps ("no entry holds it" of a sandbox a month old)."""
    from loomtui.tui.screens import governance

    monkeypatch.setattr(governance, "AUDIT_ROWS", 4)
    workspace = open_workspace(billing)
    workspace.record("escalation.override", "17", {"reason": "hotfix 全角 \u202eexe"})
    for n in range(6):
        workspace.record("claim.added", f"s{n}")
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await pilot.pause()
        table = app.screen.query_one("#audit", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        detail = app.screen.query_one("#audit-detail", Static)
        await pilot.press("slash", *"override")
        await wait_for(pilot, lambda: "enter searches the whole log" in str(detail.render()))
        await pilot.press("enter")
        await wait_for(pilot, lambda: table.row_count == 1)
        assert table.get_row_at(0)[2].plain == "escalation.override"
        await wait_for(pilot, lambda: "hotfix" in str(detail.render()))  # its details, the reason among them
        # as typed (it read \u5168\u89d2), what draws nothing or reorders drawn as a symbol
        assert '"reason": "hotfix 全角 �exe"' in str(detail.render()), str(detail.render())
        await pilot.press("slash", "ctrl+u", *"nothing", "enter")
        await wait_for(pilot, lambda: "No entry in the whole log holds 'nothing'" in str(detail.render()))
        await pilot.press("escape")
        await wait_for(pilot, lambda: table.row_count == 4)
