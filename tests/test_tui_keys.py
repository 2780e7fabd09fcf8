"""Every key of every view, pressed as a person exploring the app would: each does its work (or
says why not) without an error, a form or a question it opens closes with esc, and the view is
still there after. (What each key does is tested in the view's own tests.)"""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Select

from loomtui.tui.app import LoomApp
from loomtui.workspace import open_workspace
from tests.conftest import wait_for
from tests.test_snapshots_matrix import FIXED_NOW, world  # noqa: F401  (the fixture)

VIEWS = "12345678"
APP_KEYS = frozenset({"q", "question_mark", "colon", "t", "T", "escape", *VIEWS})
"""The app's own keys, pressed elsewhere (`q` quits; the views are walked here one by one), and esc,
which each test of a view presses (here it closes what a key opened)."""
HEAVY_KEYS = frozenset({"e", "M"})
"""Keys that run a sandbox's gates (pytest in its worktree): tested in test_tui_evals, not swept."""


async def test_every_key_of_every_view_works_or_says_why_and_esc_backs_out(world: Path) -> None:  # noqa: F811
    workspace = open_workspace(world)
    workspace.actor = "mia@example.com"
    app = LoomApp(workspace, clock=lambda: FIXED_NOW)
    failures: list[str] = []
    notify = app.notify

    def noted(message: str, **kwargs: object) -> None:
        if str(kwargs.get("title", "")).endswith(" failed"):  # a worker's unexpected error (on_worker_state_changed)
            failures.append(f"{kwargs.get('title')}: {message}")
        notify(message, **kwargs)  # type: ignore[arg-type]

    app.notify = noted  # type: ignore[method-assign]
    pressed: dict[str, list[str]] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.policy is not None and app.latest_snapshot is not None
                       and app.coordination is not None)
        for view in VIEWS:
            await pilot.press(view)
            await pilot.pause()
            screen = app.screen
            # loomtui's own keys (each has an id; Textual's table and focus keys have none).
            keys = sorted({key for key, active in screen.active_bindings.items()
                           if active.binding.id and active.node is not app and key not in APP_KEYS | HEAVY_KEYS})
            pressed[view] = keys
            for key in keys:
                await pilot.press(key)
                await pilot.pause()
                for _ in range(3):  # a form, a question, a diff or a search box it opened: esc closes it
                    if app.screen.is_modal or isinstance(app.focused, Input) or any(
                            picker.expanded for picker in app.screen.query(Select)):
                        await pilot.press("escape")
                        await pilot.pause()
                if app.screen is not screen:  # the key took us to another view (esc goes back): return
                    await pilot.press(view)
                    await pilot.pause()
                assert app.screen is screen, (view, key, app.screen)
                assert app.is_running, (view, key)
        await pilot.pause(0.5)  # the workers the keys started end
    assert not failures, failures
    assert all(pressed[view] for view in "1234568"), pressed  # the views with keys of their own were swept
