"""Typed messages the app's workers post to the UI thread."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # types only: the engines load in the workers that post these
    from loomtui.coordination.view import CoordinationPicture
    from loomtui.tui.snapshot import DashboardSnapshot


class StoreChanged(Message):
    """The store has new events; `snapshot` holds the fresh state."""

    def __init__(self, snapshot: DashboardSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class ConfigProblem(Message):
    """`.loom/loom.yaml` failed to load; the app keeps the last good config."""

    def __init__(self, message: str | None) -> None:
        super().__init__()
        self.message = message


class IndexProgress(Message):
    """Indexing the repository: `done` of `total` files parsed."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__()
        self.done = done
        self.total = total


class CoordinationChanged(Message):
    """Claims or the index changed; `picture` is the fresh coordination state."""

    def __init__(self, picture: CoordinationPicture) -> None:
        super().__init__()
        self.picture = picture
