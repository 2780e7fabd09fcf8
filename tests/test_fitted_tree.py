"""The plan and claims trees: a row too long for the width ends in … beside its guides, and a resize
fits it again; nothing scrolls sideways."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult

from loomtui.tui.widgets.fitted_tree import FittedTree

LONG = "refunds planned  waits for the merge of 9d288e (awaiting_review) and a decision on escalation #1"


class TreeApp(App[None]):
    def compose(self) -> ComposeResult:
        yield FittedTree("plans")

    def on_mount(self) -> None:
        tree = self.query_one(FittedTree)
        tree.show_root = False
        wave = tree.root.add("wave 1", expand=True)
        wave.add_leaf(LONG)
        wave.add_leaf("short")
        tree.root.add_leaf(Text("[bold]not markup[/bold] " + LONG))  # untrusted text, as the screens add it


def rows(tree: FittedTree[None]) -> list[str]:
    return [tree.render_line(y).text.rstrip() for y in range(3 + 1)]


async def test_a_row_too_long_ends_in_an_ellipsis_beside_its_guides_and_a_resize_fits_it_again() -> None:
    app = TreeApp()
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        tree = app.query_one(FittedTree)
        shown = rows(tree)
        assert shown[0] == "▼ wave 1"
        assert shown[1].startswith("├── refunds planned") and shown[1].endswith("…") and len(shown[1]) == 60
        assert shown[2] == "└── short"
        assert shown[3].startswith("[bold]not markup[/bold] refunds") and len(shown[3]) == 60
        assert tree.virtual_size.width <= 60  # nothing behind a horizontal scroll
        await pilot.resize_terminal(90, 10)
        await pilot.pause()
        wider = rows(tree)
        assert wider[1].endswith("…") and len(wider[1]) == 90
        assert wider[1][:-1] in "├── " + LONG
        await pilot.resize_terminal(140, 10)
        await pilot.pause()
        assert rows(tree)[1] == "├── " + LONG  # room for it all: whole, no …
