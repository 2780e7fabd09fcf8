"""The header line: repository, branch, store status and the live counts."""

from __future__ import annotations

from typing import Any, ClassVar
from weakref import WeakKeyDictionary, WeakSet

from rich.text import Text
from textual.app import App
from textual.reactive import reactive
from textual.widgets import Static

from loomtui.tui.base import inner_width


class StatusHeader(Static):
    """One line that says where you are and what needs attention.

    Every view has its own header; the app fills them all from its one state (`LoomApp.update_header`),
    the hidden views' too, so switching views never shows counts older than the view left
    (`every_one_in`).
    """

    DEFAULT_CSS = """
    StatusHeader { height: 1; background: $panel; color: $foreground; padding: 0 1; }
    """

    _mounted: ClassVar[WeakKeyDictionary[App[Any], WeakSet[StatusHeader]]] = WeakKeyDictionary()
    """The headers mounted in each running app (weak: a closed app's headers go with it)."""

    repo: reactive[str] = reactive("")
    branch: reactive[str] = reactive("")
    store_state: reactive[str] = reactive("opening")
    sandboxes: reactive[int] = reactive(0)
    escalations: reactive[int] = reactive(0)
    conflicts: reactive[int] = reactive(0)
    mode_title: reactive[str] = reactive("")
    chapter: reactive[str] = reactive("")
    """The demo's chapter now, beside the mode ("Agents at work"); "" outside the demo."""
    view: reactive[str] = reactive("")
    """The name of the view this header tops ("Sandboxes", "Claims", ...)."""
    checklist: reactive[str] = reactive("")
    """The infrastructure checklist's score ("9.5/10"); empty until computed."""

    @classmethod
    def every_one_in(cls, app: App[Any]) -> list[StatusHeader]:
        """Every header mounted in `app`, on the shown screen or not (a hidden view's too)."""
        return [header for header in list(cls._mounted.get(app, ())) if header.is_attached]

    def on_mount(self) -> None:
        # `self.app` is the app this header runs in (Textual's active app, set while it runs).
        self._mounted.setdefault(self.app, WeakSet()).add(self)

    def on_unmount(self) -> None:
        for headers in self._mounted.values():
            headers.discard(self)

    def _counts(self, names: tuple[str, str, str]) -> list[tuple[int, Text]]:
        """The three counts, under `names` (the words, or their short forms on a narrow screen)."""
        sandboxes, escalations, conflicts = names
        return [(1, Text(f"  {sandboxes} {self.sandboxes}")),
                (1, Text.assemble(f"  {escalations} ", (str(self.escalations),
                                                          "bold yellow" if self.escalations else ""))),
                (1, Text.assemble(f"  {conflicts} ", (str(self.conflicts), "bold red" if self.conflicts else "")))]

    def render(self) -> Text:
        """The parts that fit the width, most telling first: the counts, a store in trouble and the
        view stay; the checklist, the branch, a healthy store, the repository and the demo's
        chapter go, in that order, as it narrows (the counts shortened before the chapter goes)."""
        store_style = "green" if self.store_state == "ok" else "bold red"
        # (priority: smaller stays longer, the part): repository and branch names are untrusted
        # text, so each part is assembled from plain strings, never parsed as markup.
        parts: list[tuple[int, Text]] = [
            (0, Text.assemble(("loomtui", "bold"), f" · {self.mode_title}" if self.mode_title else "")),
            (4, Text(f": {self.chapter}", style="italic") if self.chapter else Text()),
            (3, Text.assemble(" ", (f" {self.view} ", "reverse")) if self.view else Text()),
            # The repository outlasts a healthy store: with several open, which one this is was gone first.
            (5, Text.assemble("  ", (self.repo, "bold"))),
            (7, Text.assemble(" on ", (self.branch, "italic"))),
            (2 if self.store_state != "ok" else 6, Text.assemble("  store: ", (self.store_state, store_style))),
            *self._counts(("sandboxes", "escalations", "conflicts")),
            (8, Text(f"  checklist {self.checklist}", style="dim") if self.checklist else Text()),
        ]
        room = inner_width(self) or 10**6
        for dropped in (8, 7, 6, 5, 4, 3):  # one kind of part at a time, the least telling first
            if sum(part.cell_len for _, part in parts) <= room:
                break
            if dropped == 4 and self.chapter:  # the demo's chapter is what it shows: the counts go short first
                short = iter(self._counts(("sbx", "esc", "conf")))
                parts = [next(short) if rank == 1 else (rank, part) for rank, part in parts]
                if sum(part.cell_len for _, part in parts) <= room:
                    break
                # Then the chapter without its parenthesis: "The end (3 merged, 1 rejected)" went whole at 80.
                brief = Text(f": {self.chapter.split(' (', 1)[0]}", style="italic")
                parts = [(rank, brief if rank == 4 else part) for rank, part in parts]
                if sum(part.cell_len for _, part in parts) <= room:
                    break
            parts = [(rank, part) for rank, part in parts if rank < dropped]
        if sum(part.cell_len for _, part in parts) > room:  # the counts stay: shorter, and the title goes
            parts = [(0, Text("loomtui", "bold")), *[(r, p) for r, p in parts if r == 2],
                     *self._counts(("sbx", "esc", "conf"))]
        return Text("").join(part for _, part in parts)
