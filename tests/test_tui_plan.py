"""The plan view (7) and the dashboard's Next column, driven with Textual's pilot."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Static, Tree

from loomtui.governance.coordinator import governed_coordinator
from loomtui.store import SandboxRecord
from loomtui.tui.app import LoomApp
from loomtui.tui.screens.dashboard import SandboxTable
from loomtui.tui.screens.plan import PlanScreen
from loomtui.tui.screens.sandbox_forms import ConfirmScreen
from loomtui.workflow import tasks
from loomtui.workspace import open_workspace
from tests.conftest import new_script_sandbox_form, wait_for
from tests.test_workflow import edit, make_repo

SIZE = (140, 36)


async def test_the_plan_view_draws_waves_and_why_a_task_waits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", "manual")
    workspace = open_workspace(repo)
    first = tasks.create_sandbox(workspace, "change the helper", "script",
                                 script=edit(workspace, "first", "lib.py", "x + 1", "x + 2"))
    second = tasks.create_sandbox(workspace, "use the new helper", "script", after=[first.id], autostart=True,
                                  script=edit(workspace, "second", "app.py", "helper(1)", "helper(2)"))
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#sandboxes", SandboxTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        waiting = str(table.cell(second.id, "next"))
        assert waiting.startswith("waits for ") and "to merge" in waiting
        assert "waits for a person" in str(table.cell(first.id, "next"))
        await pilot.press("7")
        await pilot.pause()
        assert isinstance(app.screen, PlanScreen)
        tree = app.screen.query_one("#plan-tree", Tree)
        await wait_for(pilot, lambda: bool(tree.root.children))
        run = tree.root.children[0]
        assert str(run.label) == "tasks with dependencies"
        waves = [[str(leaf.label) for leaf in wave.children] for wave in run.children]
        assert [label.split()[0] for label in waves[0]] == [first.id]
        assert [label.split()[0] for label in waves[1]] == [second.id]
        assert f"waits for {first.id} (planned) to merge" in waves[1][0]
        plan_detail = app.screen.query_one("#plan-detail", Static)
        # The first task is selected: why it waits shows at once.
        await wait_for(pilot, lambda: f"sandbox {first.id}" in " ".join(str(plan_detail.render()).split()))
        # Its next step's key works in the sandboxes view, one ⏎ away (pressed here, `S` did nothing).
        assert "(⏎ then press S)" in " ".join(str(plan_detail.render()).split())
        # The tree's own line too ("(press S)" did nothing), the key first: the end of a line is cut at 80 columns.
        assert waves[0][0].startswith(f"{first.id} planned  ⏎ then press S · "), waves[0][0]
        # The footer names that ⏎ (the tree's own was unnamed: the hints named a key the footer did not).
        shown = {active.binding.key_display: active.binding.description
                 for active in app.active_bindings.values() if active.binding.show and active.enabled}
        assert shown.get("⏎") == "Its sandbox", shown
        tree.move_cursor(run.children[1].children[0])
        await pilot.pause()
        detail = " ".join(str(app.screen.query_one("#plan-detail", Static).render()).split())
        assert f"sandbox {second.id}" in detail and f"after {first.id}" in detail
        # A wave closed, and the cursor on it, stay so through the next store event (the tree is built again:
        # the wave opened and the cursor went to the first task).
        run.children[0].collapse()
        tree.move_cursor(run.children[0])
        await pilot.pause()
        events = app.latest_snapshot.last_event_id if app.latest_snapshot else 0
        governed_coordinator(workspace).claim("someone", "app.py", mode="shared", reason="unrelated")
        await wait_for(pilot, lambda: app.latest_snapshot is not None and app.latest_snapshot.last_event_id > events
                       and app.screen.query_one("#plan-tree", Tree).root.children[0] is not run)
        await pilot.pause()
        run = tree.root.children[0]
        assert not run.children[0].is_expanded and run.children[1].is_expanded
        # Put back once the rebuilt tree is laid out (a loaded machine takes more than a pause for it).
        await wait_for(pilot, lambda: tree.cursor_node is tree.root.children[0].children[0])
        await pilot.press("escape")
        await pilot.pause()
        assert app.current_mode == "dashboard"
        await pilot.press("7")
        await pilot.pause()
        tree = app.screen.query_one("#plan-tree", Tree)
        tree.move_cursor(tree.root.children[0].children[1].children[0])  # the first wave is closed, above
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current_mode == "dashboard")
        await wait_for(pilot, lambda: table.cursor_row is not None and table.coordinate_to_cell_key(
            table.cursor_coordinate).row_key.value == second.id)


async def test_n_states_a_task_that_waits_on_another(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", "manual")
    workspace = open_workspace(repo)
    first = tasks.create_sandbox(workspace, "change the helper", "script",
                                 script=edit(workspace, "first", "lib.py", "x + 1", "x + 2"))
    second_script = edit(workspace, "second", "app.py", "helper(1)", "helper(2)")
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        form = await new_script_sandbox_form(pilot, app, second_script, "use the new helper")
        form.query_one("#after", Input).value = first.id
        await pilot.click("#start")
        table = app.screen.query_one("#sandboxes", SandboxTable)
        await wait_for(pilot, lambda: table.row_count == 2, timeout=15)
        second = next(r for r in workspace.store.list_sandboxes() if r.id != first.id)
        assert second.after == (first.id,) and second.status == "planned"
        await wait_for(pilot, lambda: f"waits for {first.id}" in str(table.cell(second.id, "next")))


async def test_the_app_advances_a_task_nobody_advanced(tmp_path: Path) -> None:
    """A sandbox whose supervisor did not advance it (ended under execution's bare supervisor) is
    reviewed by the open app, from the steps its poll already worked out."""
    from tests.test_workflow import _ended_unadvanced

    workspace = open_workspace(make_repo(tmp_path / "repo", "manual"))
    sandbox_id = _ended_unadvanced(workspace, "nobody")
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#sandboxes", SandboxTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        await wait_for(pilot, lambda: str(table.cell(sandbox_id, "status")) == "approved")
        assert "waits for a person" in str(table.cell(sandbox_id, "next"))


async def test_w_lets_a_held_task_start_without_the_one_that_will_never_merge(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", "manual")
    workspace = open_workspace(repo)
    first = tasks.create_sandbox(workspace, "change the helper", "script",
                                 script=edit(workspace, "first", "lib.py", "x + 1", "x + 2"))
    second = tasks.create_sandbox(workspace, "use the helper", "script", after=[first.id], autostart=True,
                                  script=edit(workspace, "second", "app.py", "helper(1)", "helper(2)"))
    tasks.remove(workspace, first.id, force=True)  # archived unmerged: the second is held for good
    # It also came after one merged and archived since (not in the table): its change is in, and was asked about.
    workspace.store.add_sandbox(SandboxRecord(id="merged1", task="t", runtime="script", status="archived",
                                              created=1.0, updated=1.0, data={"merged_commit": "f" * 40}))
    workspace.store.update_sandbox(second.id, data={"after": ["merged1", first.id]})
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#sandboxes", SandboxTable)
        await wait_for(pilot, lambda: table.row_count == 1 and "W starts it without" in str(
            table.cell(second.id, "next")))
        await wait_for(pilot, lambda: app.screen.active_bindings["W"].binding.show)  # offered in the footer
        await pilot.press("W")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))  # it asks first
        question = app.screen.question
        assert f"stops waiting for {first.id} (archived) and starts" in question and "merged1" not in question
        await pilot.press("y")
        await wait_for(pilot, lambda: workspace.store.get_sandbox(second.id).status != "planned")
    record = workspace.store.get_sandbox(second.id)
    assert record is not None and record.after == ("merged1",)
    assert any(e.action == "sandbox.after_dropped" and e.subject == second.id for e in workspace.audit.entries())


async def test_the_plan_view_of_a_repository_without_a_plan_says_how_to_make_one(tmp_path: Path) -> None:
    """It was blank but for "Select a task to see why it waits.": its first resize redrew the line."""
    workspace = open_workspace(make_repo(tmp_path / "repo", "manual"))
    app = LoomApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("7")
        await pilot.pause()
        detail = app.screen.query_one("#plan-detail", Static)
        await wait_for(pilot, lambda: "No planned tasks" in str(detail.render()))
        await pilot.resize_terminal(100, 30)
        await pilot.pause()
        await wait_for(pilot, lambda: "`loomtui plan run`" in " ".join(str(detail.render()).split()))
        # The footer does not offer ⏎ with no task to open; pressed anyway, it is said, not nothing.
        assert not any(active.binding.show and active.enabled and active.binding.id == "plan.open"
                       for active in app.screen.active_bindings.values())
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("No planned tasks" in str(n.message) for n in app._notifications))


def test_a_task_archived_keeps_its_wave_for_the_tasks_after_it() -> None:
    """Archiving a plan's first task (merged) moved the tasks that waited on it up into wave 1, beside tasks
    that ran at the same time as it: the view misstated the order the tasks ran in."""
    from loomtui.store import SandboxRecord
    from loomtui.tui.screens.plan import plan_runs
    from loomtui.tui.snapshot import DashboardSnapshot

    def task(name: str, created: float, waits: tuple[str, ...] = ()) -> SandboxRecord:
        return SandboxRecord(id=f"id-{name}", task=name, runtime="script", status="merged", created=created,
                             updated=created, data={"plan": {"run": "r1", "task": name, "waits_on": list(waits)}})

    # `rounding` (wave 1) is archived: the snapshot lists the sandboxes not archived.
    shown = [task("templates", 1.0), task("refunds", 2.0, ("rounding",)), task("invoices", 3.0, ("rounding",)),
             task("receipts", 4.0, ("refunds",))]
    snapshot = DashboardSnapshot(sandboxes=shown, gates_by_sandbox={}, risk_by_sandbox={}, escalations_to_decide=[],
                                 claims_by_sandbox=None, claim_counts={}, steps={}, eval_badges={}, events=[],
                                 last_event_id=0)
    waves = plan_runs(snapshot)["r1"]
    assert [[t.name for t in wave] for wave in waves] == [["templates"], ["refunds", "invoices"], ["receipts"]]
