"""The escalation keys driven with the pilot: a approve, r reject with a reason, o hidden when not allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from rich.text import Text
from textual.widgets import DataTable, Input, Static

from loomtui.tui.app import LoomApp
from loomtui.tui.keys import KeysFooter
from loomtui.tui.screens.escalations import EscalationsScreen, ReasonScreen
from loomtui.workspace import open_workspace
from tests.test_escalations import ALICE, CAROL, escalate, payments_change
from tests.test_tui import wait_for

SIZE = (150, 40)


def app_as(repo: Path, user: str) -> LoomApp:
    workspace = open_workspace(repo)
    workspace.actor = user
    return LoomApp(workspace)


def toasts_of(app: LoomApp) -> list[str]:
    """Each toast the app shows from now on, as `title: message`."""
    said: list[str] = []
    notify = app.notify
    app.notify = lambda message, **kwargs: (said.append(f"{kwargs.get('title')}: {message}"),  # type: ignore
                                            notify(message, **kwargs))[1]
    return said


async def open_queue(app: LoomApp, pilot, rows: int = 1) -> DataTable:  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: app.policy is not None)
    await pilot.press("3")
    await pilot.pause()
    assert isinstance(app.screen, EscalationsScreen)
    table = app.screen.query_one("#queue", DataTable)
    await wait_for(pilot, lambda: table.row_count == rows)
    return table


async def test_approve_with_a(billing: Path) -> None:
    _, escalation_id = escalate(billing, payments_change())
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_queue(app, pilot)
        app.screen.action_decide("approve")  # as `a` twice before the first is recorded: the second said
        await pilot.press("a")  # "not recorded: already approved" before the first was said done
        store = app.workspace.store
        await wait_for(pilot, lambda: len(store.get_escalation(escalation_id).data["approvals"]) == 1)
        assert store.get_escalation(escalation_id).status == "open"  # one of two
        # Said as how far it is ("approve recorded (open)" read as if it had not counted).
        await wait_for(pilot, lambda: any(n.message.startswith(f"#{escalation_id}: approval recorded, still open: 1 of 2")
                                          for n in app._notifications))
        await wait_for(pilot, lambda: not any(w.group == "decide" and not w.is_finished for w in app.workers))
        await pilot.pause()
        assert not [n.message for n in app._notifications if n.title == "not recorded"]
        # Recorded, the escalation takes keys again: every later one was answered "a decision is being
        # recorded" until the app restarted (the worker's hand-back failed on a builtin method).
        said = len([n for n in app._notifications if "being recorded" in n.message])  # the second `a` above
        await pilot.press("a")
        await wait_for(pilot, lambda: any(n.title == f"cannot approve #{escalation_id}" for n in app._notifications))
        assert len([n for n in app._notifications if "being recorded" in n.message]) == said


async def test_a_pressed_twice_does_not_approve_the_next_escalation_unread(billing: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`a a` (a key held, or pressed twice): the first approval cleared #1, its row left, and the second `a`
    approved #2, which took the cursor's place, never shown (and the change merged)."""
    from loomtui.governance.policy import ChangeFacts
    from loomtui.tui.screens import escalations

    from tests.test_escalations import escalate as opened

    monkeypatch.setattr(escalations, "KEY_SETTLE_S", 60.0)  # "at once", however loaded the machine

    ids = [opened(billing, ChangeFacts(stage="post-gate", paths=(f"scripts/n{n}.sh",), lines_changed=3,
                                       gates={"tests": "passed"}, author="agent@example.com"), commit=f"c{n}")[1]
           for n in (1, 2, 3)]
    app = app_as(billing, "lead@example.com")
    said = toasts_of(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        table = await open_queue(app, pilot, rows=3)
        store = app.workspace.store
        await pilot.press("a")
        await wait_for(pilot, lambda: table.row_count == 2)
        await pilot.press("a")  # at once: #2 has not been on the screen for a person to read
        await wait_for(pilot, lambda: any(f"decided here, has left the queue; the cursor is on #{ids[1]} now: "
                                          "press again to approve it" in line for line in said))
        assert [store.get_escalation(i).status for i in ids] == ["approved", "open", "open"]
        await pilot.press("a")  # pressed again: approved
        await wait_for(pilot, lambda: store.get_escalation(ids[1]).status == "approved")
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("home", "a")  # the cursor put there by the person: chosen, approved at once
        await wait_for(pilot, lambda: store.get_escalation(ids[2]).status == "approved")


async def test_a_row_approved_here_in_part_and_finished_elsewhere_is_gone_as_any_other(
        billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alice gave one approval of two, Bob the second from the command line: the row left, and Alice's next `a`
    (however long after) approved the row that took its place, unwarned (a second review's finding)."""
    from loomtui.governance.escalations import decide
    from loomtui.tui.screens import escalations
    from tests.test_escalations import BOB, as_user

    monkeypatch.setattr(escalations, "KEY_SETTLE_S", 0.0)  # read for as long as she likes: not the `a a` case
    policy, first = escalate(billing, payments_change())
    _, second = escalate(billing, payments_change())
    app = app_as(billing, ALICE)
    said = toasts_of(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        table = await open_queue(app, pilot, rows=2)
        chosen = int(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value or 0)
        other = second if chosen == first else first
        store = app.workspace.store
        await pilot.press("a")
        await wait_for(pilot, lambda: len(store.get_escalation(chosen).data.get("approvals") or []) == 1)
        await wait_for(pilot, lambda: not any(w.group == "decide" and not w.is_finished for w in app.workers))
        decide(as_user(billing, BOB), policy, chosen, "approve")
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.pause()
        await pilot.press("a")
        await wait_for(pilot, lambda: any(f"#{chosen}, the one selected, is gone" in line for line in said))
        assert not store.get_escalation(other).data.get("approvals")


@pytest.mark.parametrize("user", [ALICE, CAROL])
async def test_a_is_offered_only_to_whoever_may_approve_and_pressed_anyway_says_why(billing: Path, user: str) -> None:
    """The footer offered `a` to the change's own author (separation of duties) and to carol, in no group:
    pressed, it was refused; the detail already said they may only reject, or nothing."""
    _, escalation_id = escalate(billing, payments_change(author=ALICE))
    app = app_as(billing, user)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_queue(app, pilot)
        screen = app.screen
        assert isinstance(screen, EscalationsScreen)
        assert screen.check_action("decide", ("approve",)) is False
        footer = [active.binding.description for active in app.active_bindings.values() if active.binding.show]
        assert "Reject" in footer and "Approve" not in footer, footer
        await pilot.press("a")
        await wait_for(pilot, lambda: any(f"cannot approve #{escalation_id}" in (n.title or "")
                                          for n in app._notifications))
        assert app.workspace.store.get_escalation(escalation_id).data.get("approvals", []) == []
        if user == CAROL:  # `o` says she may not override, not to approve it or use the command line
            await pilot.press("o")
            await wait_for(pilot, lambda: any(f"cannot override #{escalation_id}" == n.title and "may not override"
                                              in n.message for n in app._notifications))


async def test_shift_a_approves_with_a_note_the_history_shows_and_esc_records_nothing(billing: Path) -> None:
    """`a` approves at once; `A` asks for a note first (optional: enter on an empty one approves too)."""
    _, escalation_id = escalate(billing, payments_change())
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE) as pilot:
        await open_queue(app, pilot)
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, ReasonScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, EscalationsScreen))
        store = app.workspace.store
        assert store.get_escalation(escalation_id).data["approvals"] == []
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, ReasonScreen))
        app.screen.query_one(Input).value = "checked the rounding"
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(store.get_escalation(escalation_id).data["approvals"]) == 1)
        assert store.get_escalation(escalation_id).data["history"][-1]["reason"] == "checked the rounding"
        detail = app.screen.query_one("#esc-detail", Static)
        await wait_for(pilot, lambda: "approve by alice@example.com" in str(detail.render()))
        assert "checked the rounding" in str(detail.render())


async def test_reject_asks_for_a_reason(billing: Path) -> None:
    _, escalation_id = escalate(billing, payments_change())
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_queue(app, pilot)
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ReasonScreen)
        await pilot.press("enter")  # empty: refused, stays open
        await pilot.pause()
        assert isinstance(app.screen, ReasonScreen)
        app.screen.query_one(Input).value = "double rounding in quote"
        await pilot.press("enter")
        await wait_for(pilot, lambda: table.row_count == 0)
        record = app.workspace.store.get_escalation(escalation_id)
        assert record.status == "rejected"
        assert record.data["history"][-1]["reason"] == "double rounding in quote"


async def test_a_decision_the_user_may_not_take_says_why_and_records_nothing(billing: Path) -> None:
    escalate(billing, payments_change())
    app = app_as(billing, CAROL)  # not in payments-team, not an overrider
    said = toasts_of(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_queue(app, pilot)
        screen = app.screen
        assert screen.check_action("decide", ("override",)) is False  # not a block: no override offered
        await pilot.press("a")
        await wait_for(pilot, lambda: any(line.startswith("cannot approve #") for line in said))
        assert any("needs a member of payments-team" in line for line in said), said
        assert not isinstance(app.screen, ReasonScreen)
        record = app.workspace.store.list_escalations()[0]
        assert record.data["approvals"] == [] and record.status == "open"


async def test_a_decision_on_a_request_withdrawn_while_it_was_read_says_it_was_noted_not_refused(
        billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its sandbox removed while the lead read it: the toast said "not recorded" over "your approve is noted in its
    history" (it is: a late decision)."""
    from loomtui.governance.escalations import withdraw_open

    from loomtui.tui.screens import escalations as screen

    escalate(billing, payments_change())
    app = app_as(billing, "alice@example.com")
    said = toasts_of(app)
    record = screen.decide

    def withdrawn_first(workspace, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Between the key and the record, as it happens: withdrawn before the key, the app's next read of the
        # store took the row away first (a CI run's loaded machine did), and `a` had no row to decide.
        withdraw_open(workspace, "sb1", "sandbox archived")
        return record(workspace, *args, **kwargs)

    monkeypatch.setattr(screen, "decide", withdrawn_first)
    async with app.run_test(size=SIZE) as pilot:
        await open_queue(app, pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: any("is noted in its history" in line for line in said))
        assert any(line.startswith("too late: noted only: ") for line in said), said


async def test_while_the_policy_is_broken_a_decision_is_refused_as_the_command_line_refuses_it(
        billing: Path) -> None:
    """The app shows the last good policy while `.loom/policy.yaml` is broken; it took decisions under it too,
    where `loomtui escalation approve` refused each one: the two answered the same question apart."""
    _, escalation_id = escalate(billing, payments_change())
    app = app_as(billing, ALICE)
    said = toasts_of(app)
    policy = billing / ".loom" / "policy.yaml"
    async with app.run_test(size=SIZE) as pilot:
        await open_queue(app, pilot)
        good = policy.read_text()
        policy.write_text(good + "rules: [\n")
        await wait_for(pilot, lambda: app.config_problem is not None)
        await pilot.press("a")
        await wait_for(pilot, lambda: any(line.startswith(f"cannot decide #{escalation_id} while the config is "
                                                           "broken: fix it first") for line in said))
        assert any(".loom/policy.yaml:" in line for line in said), said
        assert app.workspace.store.get_escalation(escalation_id).data["approvals"] == []
        policy.write_text(good)
        await wait_for(pilot, lambda: app.config_problem is None)
        await pilot.press("a")
        await wait_for(pilot, lambda: len(app.workspace.store.get_escalation(escalation_id).data["approvals"]) == 1)


async def test_an_escalation_from_another_process_appears_and_rings(billing: Path) -> None:
    app = app_as(billing, ALICE)
    rang: list[bool] = []
    app.bell = lambda: rang.append(True)  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        table = await open_queue(app, pilot, rows=0)
        script = (
            "from pathlib import Path\n"
            "from tests.test_escalations import escalate, payments_change\n"
            f"escalate(Path({str(billing)!r}), payments_change())\n"
        )
        subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parent.parent)
        await wait_for(pilot, lambda: table.row_count == 1, timeout=3)
        await wait_for(pilot, lambda: bool(rang), timeout=3)
        # The queue in view shows the row: no toast over its detail pane.
        await pilot.pause(0.6)
        assert not any("escalation" in (n.title or "") for n in app._notifications)


async def test_d_shows_the_sandbox_diff_behind_an_escalation(billing: Path) -> None:
    from loomtui.governance.escalations import open_escalation
    from loomtui.governance.policy import evaluate, load_policy
    from loomtui.tui.screens.sandbox_forms import DiffScreen
    from loomtui.workflow.tasks import create_sandbox

    workspace = open_workspace(billing)
    script = billing.parent / "noop.yaml"
    script.write_text('- {log: "nothing"}\n')
    record = create_sandbox(workspace, "touch refunds", "script", script=script)
    refunds = billing / "payments/refunds.py"
    (Path(record.worktree) / "payments/refunds.py").write_text(refunds.read_text() + "\n# reviewed change\n")
    facts = payments_change()
    open_escalation(workspace, "post-gate", evaluate(load_policy(billing), facts), facts, sandbox_id=record.id)
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE) as pilot:
        await open_queue(app, pilot)
        app.screen.action_diff()  # as `d` twice before the first diff is read: two of them, each to be closed
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen))
        assert "# reviewed change" in app.screen.patch
        await wait_for(pilot, lambda: not any(w.group == "diff" and not w.is_finished for w in app.workers))
        await pilot.pause()
        assert [type(screen) for screen in app.screen_stack].count(DiffScreen) == 1
        # Another escalation's diff, asked for meanwhile, replaces it (dropped, the lead read the first one's
        # under the second's decision).
        DiffScreen.open_over(app, "escalation #9, sandbox other: 1 file", "+another change\n")
        await pilot.pause()
        assert isinstance(app.screen, DiffScreen) and app.screen.patch == "+another change\n"
        assert [type(screen) for screen in app.screen_stack].count(DiffScreen) == 1


async def test_an_escalation_with_gate_evidence_shows_each_gate_and_failed_test(billing: Path) -> None:
    from textual.widgets import Static

    from loomtui.governance.escalations import open_escalation
    from loomtui.governance.policy import evaluate, load_policy

    workspace = open_workspace(billing)
    facts = payments_change()
    open_escalation(workspace, "post-gate", evaluate(load_policy(billing), facts), facts, sandbox_id="sb1",
                    evidence={"gates": {"tests": {"status": "failed", "summary": "1 failed, 20 passed",
                                                  "failed_tests": ["tests/test_invoices.py::test_fragile"]},
                                        "compile": {"status": "passed", "summary": ""}},
                              "evals": {"regressions": ["tests/test_a.py::one", "tests/test_b.py::two"],
                                        "breaks_with": []},
                              "merged_breaks": [], "lines_changed": 12})
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE) as pilot:
        await open_queue(app, pilot)
        shown = str(app.screen.query_one("#esc-detail", Static).render())
        assert "tests: failed 1 failed, 20 passed" in shown
        assert "✗ tests/test_invoices.py::test_fragile" in shown and "compile: passed" in shown
        # Lists one item a line, empty ones left out: never a Python list on the screen.
        assert "regressions:\n      tests/test_a.py::one\n      tests/test_b.py::two" in shown
        assert "[" not in shown.split("Evidence", 1)[1].split("History", 1)[0]
        assert "breaks_with" not in shown and "merged_breaks" not in shown


async def test_a_request_an_agent_shaped_to_crash_the_queue_is_shown_as_it_is(billing: Path) -> None:
    """A permission request's input is the agent's: JSON of any shape (it once ended the app)."""
    from textual.widgets import Static

    from loomtui.governance.hooks.gate import HookGate

    workspace = open_workspace(billing)
    HookGate(workspace, "agent-1", billing).open_permission_request(
        "Bash", {"command": "echo hi", "x": {"failed_tests": 1, "status": ["a"]}, "y": [{"z": None}], "n": 7})
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE) as pilot:
        await open_queue(app, pilot)
        shown = str(app.screen.query_one("#esc-detail", Static).render())
        assert "echo hi" in shown
        assert app.is_running


async def test_o_is_offered_on_a_block_only_and_asks_before_it_lets_the_change_through(billing: Path) -> None:
    from loomtui.governance.policy import ChangeFacts
    from loomtui.tui.screens.sandbox_forms import ConfirmScreen
    from tests.test_escalations import LEAD

    _, held = escalate(billing, payments_change())  # approval required: a lead approves or rejects
    blocked_facts = ChangeFacts(stage="post-gate", paths=("config/prod.env", "certs/server.pem"),
                                author="x@example.com")
    _, blocked = escalate(billing, blocked_facts)
    app = app_as(billing, LEAD)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_queue(app, pilot, rows=2)
        screen = app.screen
        assert isinstance(screen, EscalationsScreen)

        def highlight(escalation_id: int) -> None:
            table.move_cursor(row=table.get_row_index(str(escalation_id)))

        highlight(held)
        await pilot.pause()
        assert screen.check_action("decide", ("override",)) is False  # not in the footer...
        notes: list[str] = []
        notify = app.notify
        app.notify = lambda message, **kw: (notes.append(message), notify(message, **kw))[1]  # type: ignore
        await pilot.press("o")  # ...yet the key answers: why not, and what does
        await wait_for(pilot, lambda: any("waits for approvals" in note for note in notes))
        assert not app.screen.is_modal
        highlight(blocked)
        await pilot.pause()
        assert screen.check_action("decide", ("override",)) is True
        # No one can approve a block: `a` is not in the footer (pressed, it says why).
        assert screen.check_action("decide", ("approve",)) is False
        await pilot.press("a")
        await wait_for(pilot, lambda: any("cannot be approved" in note for note in notes))
        for answer, status in (("n", "open"), ("y", "overridden")):
            await pilot.press("o")
            await wait_for(pilot, lambda: isinstance(app.screen, ReasonScreen))
            app.screen.query_one(Input).value = "incident 42: the certificate expires tonight"
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "config/prod.env" in app.screen.question or "block" in app.screen.question
            # Each rule it lets through, by name (the first two lines of the explanation left out the rest).
            applied = [rule["name"] for rule in app.workspace.store.get_escalation(blocked).data["rules"]
                       if rule["decision"] != "auto_approve"]
            assert applied and all(name in app.screen.question for name in applied), (applied, app.screen.question)
            await pilot.press(answer)
            store = app.workspace.store
            await wait_for(pilot, lambda s=status: store.get_escalation(blocked).status == s)
            await pilot.pause()


async def test_o_overrules_a_reviewer_s_rejection_from_the_decided_list(billing: Path) -> None:
    """A reviewer's rejection (bob, in payments-team, who may not override) was final: the lead's `o` on it
    did nothing, and `escalation override` said it was already rejected."""
    from loomtui.governance.escalations import decide
    from loomtui.governance.policy import load_policy
    from loomtui.tui.screens.sandbox_forms import ConfirmScreen
    from tests.test_escalations import BOB, LEAD, as_user

    _, rejected = escalate(billing, payments_change())
    decide(as_user(billing, BOB), load_policy(billing), rejected, "reject", reason="not the way to round")
    app = app_as(billing, LEAD)
    async with app.run_test(size=SIZE) as pilot:
        await open_queue(app, pilot, rows=0)

        def footer() -> list[str]:
            return [active.binding.description for active in app.active_bindings.values() if active.binding.show]

        assert "Decided too" in footer() and "Open only" not in footer()
        await pilot.press("h")  # decided ones too
        table = app.screen.query_one("#queue", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        assert "Open only" in footer() and "Decided too" not in footer()  # the label says what `h` does now
        screen = app.screen
        assert isinstance(screen, EscalationsScreen)
        assert screen.check_action("decide", ("override",)) is True
        assert screen.check_action("decide", ("approve",)) is False
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, ReasonScreen))
        app.screen.query_one(Input).value = "the rounding is what the ADR asks for"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        # Whose "no" it overrules, and why they said it (the question named the rules only).
        assert f"It overrules {BOB}'s rejection (not the way to round)." in app.screen.question  # type: ignore[attr-defined]
        await pilot.press("y")
        store = app.workspace.store
        await wait_for(pilot, lambda: store.get_escalation(rejected).status == "overridden")  # type: ignore[union-attr]
        await pilot.pause()


async def test_escalations_arriving_together_are_one_toast_not_a_pile(billing: Path) -> None:
    from textual.notifications import Notify

    app = app_as(billing, ALICE)
    # Long enough that the next two arrive while the first toast shows, on a loaded machine too (at 1.5 s a
    # whole run's load let them come as a toast each).
    app.escalation_toasts.seconds = 4
    said: list[str] = []
    post = app.post_message
    app.post_message = lambda message: (  # type: ignore[method-assign]
        isinstance(message, Notify) and said.append(str(message.notification.message)), post(message))[1]
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.policy is not None)  # on the dashboard: the queue is not in view
        escalate(billing, payments_change())
        await wait_for(pilot, lambda: any("waiting" in line for line in said))
        escalate(billing, payments_change())
        escalate(billing, payments_change())
        await wait_for(pilot, lambda: sum("waiting" in line for line in said) == 2)
        await pilot.pause(0.5)
        assert [line for line in said if "waiting" in line] == [
            "1 new escalation waiting: press 3", "2 new escalations waiting: press 3"]
        # Pressing 3 answers the toast: it goes, rather than stay over the queue's detail.
        app.escalation_toasts.seconds = 60
        escalate(billing, payments_change())
        await wait_for(pilot, lambda: any("press 3" in str(n.message) for n in app._notifications))
        await pilot.press("3")
        await pilot.pause()
        assert not [n.message for n in app._notifications if "press 3" in str(n.message)]


async def test_the_palette_finds_keys_sandboxes_and_escalations_and_goes_there(billing: Path) -> None:
    from textual.command import CommandList, CommandPalette

    _, escalation_id = escalate(billing, payments_change())
    app = app_as(billing, ALICE)

    async def search(pilot, text: str) -> list[str]:  # type: ignore[no-untyped-def]
        await pilot.press("colon")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*text)
        results = app.screen.query_one(CommandList)
        await wait_for(pilot, lambda: results.option_count > 0, timeout=10)
        await pilot.pause(0.3)
        return [str(results.get_option_at_index(i).prompt) for i in range(results.option_count)]

    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.latest_snapshot is not None and app.latest_snapshot.escalations_to_decide)
        await pilot.press("colon")  # empty, the palette lists loomtui's keys before the table's cursor keys
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        listed = app.screen.query_one(CommandList)
        await wait_for(pilot, lambda: listed.option_count > 5, timeout=10)
        await pilot.pause(0.3)
        first = [str(listed.get_option_at_index(i).prompt) for i in range(5)]
        assert not any(line.startswith(("Cursor", "Home", "End", "Page")) for line in first), first
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("ctrl+p")  # Textual's own key for it opens it too (it did nothing)
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        # A footer of its own: the bottom line said the view's keys (`n` New ...), which type into the search.
        await wait_for(pilot, lambda: bool(app.screen.query(KeysFooter)))
        await pilot.pause()
        shown = [b.binding.description for b in app.active_bindings.values() if b.binding.show]
        assert shown == ["Exit the command palette"], shown
        await pilot.press("escape")
        await pilot.pause()
        found = await search(pilot, "merge")
        assert any(line.startswith("Merge (m)") for line in found), found
        assert any("Merge an approved sandbox (asks first)" in line for line in found), found  # what it does
        await pilot.press("escape")
        await pilot.pause()
        found = await search(pilot, "refunds escalation")
        assert any(line.startswith(f"escalation #{escalation_id} ") for line in found), found
        assert not any(line.startswith("End (") for line in found), found  # "end" is in "refunds", not a match
        results = app.screen.query_one(CommandList)
        target = next(i for i in range(results.option_count)
                      if str(results.get_option_at_index(i).prompt).startswith(f"escalation #{escalation_id}"))
        results.highlighted = target
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, EscalationsScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.selected() is not None and screen.selected().id == escalation_id)


async def test_the_queue_age_moves_on_while_an_escalation_waits_and_the_summary_fits_at_80_columns(
        billing: Path) -> None:
    from loomtui.tui.widgets.fitted_table import FittedTable

    _policy, escalation_id = escalate(billing, payments_change())
    workspace = open_workspace(billing)
    created = workspace.store.get_escalation(escalation_id).created  # type: ignore[union-attr]
    now = [created + 5]
    workspace.actor = ALICE
    app = LoomApp(workspace, clock=lambda: now[0])
    async with app.run_test(size=(80, 24)) as pilot:
        await open_queue(app, pilot)
        table = app.screen.query_one("#queue", FittedTable)
        key = str(escalation_id)
        assert str(table.cell(key, "age")) == "5s"
        assert isinstance(app.screen, EscalationsScreen)
        now[0] = created + 6
        app.screen._tick_ages()  # each second: under a minute old, its age is in seconds (it moved by ten)
        await pilot.pause()
        assert str(table.cell(key, "age")) == "6s"
        now[0] = created + 2 * 3600
        app.screen.refresh_ages()  # what its timer runs every AGE_REFRESH_S
        await pilot.pause()
        assert str(table.cell(key, "age")) == "2h"
        # Summary, the one column that says what the change is, is shown; nothing scrolls sideways.
        assert "summary" in table.layout_shown.keys() and table.virtual_size.width <= table.size.width
        # R, on a store that is this repository's file: not offered, and pressed, it says why (it did nothing).
        await pilot.press("R")
        await wait_for(pilot, lambda: any("a file of its own" in n.message for n in app._notifications))
        assert not app.screen.all_repositories


async def test_the_next_escalations_detail_opens_at_its_top_and_a_live_update_keeps_the_place(billing: Path) -> None:
    from textual.containers import VerticalScroll

    for _ in range(2):
        escalate(billing, payments_change())
    app = app_as(billing, ALICE)
    async with app.run_test(size=(100, 16)) as pilot:  # short: each detail scrolls
        table = await open_queue(app, pilot, rows=2)
        pane = app.screen.query_one("#esc-detail-pane", VerticalScroll)
        await wait_for(pilot, lambda: pane.max_scroll_y > 0)
        pane.scroll_end(animate=False)
        await pilot.pause()
        assert pane.scroll_y > 0
        screen = app.screen
        assert isinstance(screen, EscalationsScreen)
        screen.show_detail()  # what a live reload of the same row does: the reader stays where they were
        await pilot.pause()
        assert pane.scroll_y > 0
        table.move_cursor(row=1)
        await wait_for(pilot, lambda: pane.scroll_y == 0)
        pane.focus()  # esc backs out one level: the detail to the queue, then the queue to the sandboxes
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen and app.focused is table
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is not screen


async def test_the_detail_shows_the_whole_task_its_abridged_summary_cuts(billing: Path) -> None:
    from textual.widgets import Static

    from loomtui.errors import abridged
    from loomtui.governance.escalations import open_escalation
    from loomtui.governance.policy import evaluate, load_policy
    from tests.test_tui import add_sandbox

    workspace = open_workspace(billing)
    task = ("Add partial refunds to the refunds API: quote and issue a refund for part of a charge, "
            "never more than what is left of it")
    add_sandbox(workspace, "sb1", task, status="awaiting_review")
    facts = payments_change()
    open_escalation(workspace, "post-gate", evaluate(load_policy(billing), facts), facts, sandbox_id="sb1",
                    summary=f"{abridged(task, 70)} (require: payments-high-risk)")
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE) as pilot:
        await open_queue(app, pilot)
        detail = app.screen.query_one("#esc-detail", Static)
        await wait_for(pilot, lambda: "never more than what is left of it" in " ".join(str(detail.render()).split()))


async def test_an_agents_control_characters_never_reach_the_terminal_from_the_queue_or_a_toast(billing: Path) -> None:
    """A task with `ESC]0;PWNED BEL ESC[2J` retitled and cleared the lead's terminal from view 3 (the
    sandboxes table escaped it; the queue's summary cell did not)."""
    from loomtui.governance.escalations import open_escalation
    from loomtui.governance.policy import evaluate, load_policy
    from tests.test_escalations import as_user

    evil = "esc task \x1b]0;PWNED\x07 \x1b[2J end"
    facts = payments_change()
    open_escalation(as_user(billing, "agent-runner@example.com"), "post-gate", evaluate(load_policy(billing), facts),
                    facts, sandbox_id="sb1", commit="c1", summary=evil)
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_queue(app, pilot)
        shown = [str(cell) for cell in table.get_row_at(0)]
        assert any("esc task" in cell for cell in shown) and not any("\x1b" in cell or "\x07" in cell
                                                                     for cell in shown), shown
        # Each drawn, the BEL too (Rich's `Text(...)` dropped it unseen, beside the ␛ it shows).
        assert any("␛]0;PWNED␇ ␛[2J end" in cell for cell in shown), shown
        app.notify(evil, title="a\x1btitle")
        await pilot.pause()
        toast = list(app._notifications)[-1]
        assert "\x1b" not in toast.message and "\x07" not in toast.message and "\x1b" not in toast.title


async def test_without_a_signing_key_a_reject_is_refused_before_its_reason_is_typed(
        billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reason was asked for, typed, then the decision refused for the missing key: the reason lost."""
    policy = billing / ".loom" / "policy.yaml"
    policy.write_text(policy.read_text() + "\ndecisions: {require_signature: true}\n")
    (billing / ".loom" / "allowed_signers").write_text(
        f"{ALICE} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx0dGVzdGtleWZvcmxvb210dWl0ZXN0cw\n")
    monkeypatch.delenv("LOOM_SIGNING_KEY", raising=False)
    escalate(billing, payments_change())
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE) as pilot:
        await open_queue(app, pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: any("no signing key" in n.message for n in app._notifications))
        assert isinstance(app.screen, EscalationsScreen)  # no reason asked for
        detail = str(app.screen.query_one("#esc-detail", Static).visual)
        assert "once you have a signing key" in detail, detail  # "You may: approve, reject", while she could not


def _escalations_in(billing: Path, statuses: tuple[str, ...]) -> None:
    """One escalation in each of `statuses`, about sandbox sb1, made now."""
    import time

    from loomtui.store import EscalationRecord

    workspace = open_workspace(billing)
    now = time.time()
    workspace.store.bulk_add_escalations([EscalationRecord(0, "sb1", "post-gate", status, "high", status, now, now, {})
                                          for status in statuses])
    workspace.close()


async def test_h_shows_every_escalation_superseded_and_withdrawn_too_then_only_the_open(billing: Path) -> None:
    """The superseded one (a new commit was reviewed) and its approvals vanished from `h`'s history."""
    _escalations_in(billing, ("open", "approved", "superseded", "withdrawn"))
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_queue(app, pilot)
        await pilot.press("h")
        await wait_for(pilot, lambda: table.row_count == 4)
        # On a decided one, a newly waiting escalation takes the cursor: "press 3" then `a` answered
        # "already approved" of the decided one under it.
        screen = app.screen
        assert isinstance(screen, EscalationsScreen)
        decided = next(e for e in screen.escalations if e.status == "approved")
        # Its status is styled apart from its summary (a summary's own "[approved]" text read as decided).
        summary = table.cell(str(decided.id), "summary")
        assert isinstance(summary, Text) and summary.plain.startswith("[approved] ") and any(
            span.end == len("[approved] ") and "italic" in str(span.style) for span in summary.spans), summary
        table.move_cursor(row=table.get_row_index(str(decided.id)))
        await pilot.pause()
        fresh = open_workspace(billing).store.add_escalation("post-gate", sandbox_id="sb2", risk="low", summary="new")
        screen.reload()
        await wait_for(pilot, lambda: table.row_count == 5 and screen.selected() is not None
                       and screen.selected().id == fresh.id)  # type: ignore[union-attr]
        await pilot.press("h")
        await wait_for(pilot, lambda: table.row_count == 2)


async def test_on_an_empty_queue_the_decision_keys_and_d_say_why_they_do_nothing(billing: Path) -> None:
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE) as pilot:
        await open_queue(app, pilot, rows=0)
        for key in ("a", "r", "o", "d"):
            await pilot.press(key)
        await wait_for(pilot, lambda: sum("no escalation selected" in n.message for n in app._notifications) == 4)
        assert isinstance(app.screen, EscalationsScreen)


async def test_a_long_history_line_wraps_under_itself_with_its_signature_tag_coloured(billing: Path) -> None:
    from loomtui.governance.escalations import decide
    from tests.test_escalations import as_user

    policy, escalation_id = escalate(billing, payments_change())
    decide(as_user(billing, ALICE), policy, escalation_id, "reject",
           reason="the refund path skips the ledger entry " * 4)
    app = app_as(billing, ALICE)
    async with app.run_test(size=(80, 40)) as pilot:
        await open_queue(app, pilot, rows=0)
        await pilot.press("h")
        await wait_for(pilot, lambda: "History" in str(app.screen.query_one("#esc-detail", Static).visual))
        lines = str(app.screen.query_one("#esc-detail", Static).visual).split("History\n", 1)[1].splitlines()
        at = next(n for n, line in enumerate(lines) if "reject by" in line)
        assert "reject by alice@example.com [unsigned] — the refund" in lines[at], lines
        assert lines[at + 1].startswith("      ") and lines[at + 1].strip().startswith(("the", "skips", "refund", "path",
                                                                                "ledger", "entry")), lines


async def test_a_pre_start_escalation_shows_the_claims_it_asks_for_not_a_change_of_no_lines(billing: Path) -> None:
    """It said "1 path(s), 0 lines (d shows the diff)", and d showed no changes: nothing ran yet."""
    from loomtui.governance.escalations import open_escalation
    from loomtui.governance.policy import ChangeFacts, evaluate, load_policy
    from tests.test_escalations import as_user

    facts = ChangeFacts(stage="claim", paths=("payments/refunds.py",), author="agent@example.com")
    open_escalation(as_user(billing, "agent@example.com"), "pre-start", evaluate(load_policy(billing), facts), facts,
                    sandbox_id="sb1")
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE) as pilot:
        await open_queue(app, pilot)
        await wait_for(pilot, lambda: "Claims" in str(app.screen.query_one("#esc-detail", Static).visual))
        detail = str(app.screen.query_one("#esc-detail", Static).visual)
        assert "1 path it would work on, before any change" in detail and "0 lines" not in detail, detail


async def test_a_read_of_every_escalation_ending_after_h_asked_for_the_open_ones_is_not_shown(
        billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow read of the whole history, begun before `h` went back to the open ones, ended after their read:
    its rows replaced the open ones and stayed (seen as a flaky `h` under load)."""
    import threading

    import loomtui.governance.escalations as escalations

    _escalations_in(billing, ("open", "approved", "withdrawn"))
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_queue(app, pilot)
        await pilot.press("h")
        await wait_for(pilot, lambda: table.row_count == 3)
        release = threading.Event()
        real_queue = escalations.queue

        def slow_for_every_status(workspace, statuses=None):  # type: ignore[no-untyped-def]
            if statuses is not None and len(statuses) > 1:
                release.wait(10)
            return real_queue(workspace, statuses) if statuses is not None else real_queue(workspace)

        monkeypatch.setattr(escalations, "queue", slow_for_every_status)
        screen = app.screen
        assert isinstance(screen, EscalationsScreen)
        screen.reload()  # every escalation, held back
        await pilot.pause(0.2)
        await pilot.press("h")  # the open ones only: read at once
        await wait_for(pilot, lambda: table.row_count == 1)
        release.set()
        await pilot.pause(0.5)
        assert table.row_count == 1


async def test_a_key_on_a_row_that_went_under_the_cursor_acts_on_nothing_until_pressed_again(
        billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The highlighted escalation decided elsewhere (or withdrawn: a hook's request after its 120 s) left the
    cursor on the next row, and `a` approved that one, which the lead never chose."""
    from loomtui.governance.escalations import decide
    from loomtui.tui.screens import escalations
    from tests.test_escalations import BOB, as_user

    monkeypatch.setattr(escalations, "KEY_SETTLE_S", 60.0)  # "at once", however loaded the machine

    policy, first = escalate(billing, payments_change())
    _, second = escalate(billing, payments_change())
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        table = await open_queue(app, pilot, rows=2)
        chosen = int(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value or 0)
        other = second if chosen == first else first
        said = toasts_of(app)
        decide(as_user(billing, BOB), policy, chosen, "reject", reason="not this way")
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.pause()
        await pilot.press("a")
        await wait_for(pilot, lambda: any(f"#{chosen}, the one selected, is gone" in line for line in said))
        await pilot.pause(0.3)
        store = app.workspace.store
        assert not store.get_escalation(other).data.get("approvals"), said
        await pilot.press("a")  # pressed again: the row it is on now is one chosen
        await wait_for(pilot, lambda: len(store.get_escalation(other).data.get("approvals") or []) == 1)
        # One decided here, gone from the queue on purpose: a key at once asks again too (`a a` approved the next
        # row unread), and then acts on the row the cursor is on.
        _, third = escalate(billing, payments_change())
        await wait_for(pilot, lambda: table.row_count == 2)
        table.move_cursor(row=table.get_row_index(str(other)))
        await pilot.pause()
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ReasonScreen))
        await pilot.press(*"not this way", "enter")
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.pause()
        await pilot.press("a")
        await wait_for(pilot, lambda: any(f"#{other}, decided here, has left the queue" in line for line in said))
        assert not store.get_escalation(third).data.get("approvals")
        await pilot.press("a")
        await wait_for(pilot, lambda: len(store.get_escalation(third).data.get("approvals") or []) == 1)


async def test_slash_filters_the_queue_by_summary_sandbox_or_rule_and_esc_clears_it(billing: Path) -> None:
    """`/` said "the Escalations view has no / filter": a lead looked for one sandbox's in the whole queue."""
    escalate(billing, payments_change())
    open_workspace(billing).store.add_escalation("post-gate", sandbox_id="sb7", risk="low", summary="docs typo")
    app = app_as(billing, ALICE)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_queue(app, pilot, rows=2)
        await pilot.press("slash", *"SB7", "enter")
        await wait_for(pilot, lambda: table.row_count == 1)
        assert app.focused is table and "docs typo" in str(table.get_row_at(0)[-1])
        await pilot.press("slash", "ctrl+u", *"payments-high")  # a rule's name
        await wait_for(pilot, lambda: table.row_count == 1 and "docs typo" not in str(table.get_row_at(0)[-1]))
        await pilot.press("slash", "ctrl+u", *"zzz")  # none: said so, not "No escalations." (an empty queue)
        detail = app.screen.query_one("#esc-detail", Static)
        await wait_for(pilot, lambda: "No escalation shown holds 'zzz' (esc clears the filter)." in str(detail.render()))
        await pilot.press("escape")
        await wait_for(pilot, lambda: table.row_count == 2)
        assert isinstance(app.screen, EscalationsScreen)
        # Typed in one go (a paste, an app busy with gates): every key after `/` is the filter's, never `a`'s.
        # Typed in one go (a paste, an app busy with gates), the keys after `/` are queued already: the box has the
        # focus as `/` is handled, not once they are (`/ap` ran `a`, approving the selected change).
        screen = app.screen
        assert isinstance(screen, EscalationsScreen)
        screen.action_filter()
        box = screen.query_one("#esc-filter", Input)
        assert app.focused is box
        assert not box.select_on_focus  # its focus event, after those keys, selected the first for the next to replace


async def test_the_queue_read_while_the_store_was_away_is_read_again_once_it_answers(
        billing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Escalations view's read failed with the store, and its queue stayed empty under a header counting the
    escalations to decide, the store back, until the view was left and shown again."""
    from loomtui.errors import StoreError
    from loomtui.governance import escalations

    workspace = open_workspace(billing)
    workspace.store.add_escalation("post-gate", sandbox_id="sb1", risk="low", summary="docs typo")
    read = escalations.queue
    away = {"now": True}

    def queue_of_a_store(*args: object, **kwargs: object) -> object:
        if away["now"]:
            raise StoreError("postgresql://loom@127.0.0.1/loom: cannot reach the database")
        return read(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(escalations, "queue", queue_of_a_store)
    app = LoomApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await pilot.pause()
        table = app.screen.query_one("#queue", DataTable)
        detail = app.screen.query_one("#esc-detail", Static)
        # An empty queue read as nothing to decide: why it is empty is said
        await wait_for(pilot, lambda: "could not be read: postgresql://" in str(detail.render()))
        assert table.row_count == 0
        away["now"] = False
        app._store_back()
        await wait_for(pilot, lambda: table.row_count == 1)
