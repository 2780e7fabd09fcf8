"""A Static whose text its owner wraps for the width it has (hanging indents Rich cannot do), told to wrap
it again whenever that width changes: the owner's own resize missed a scrollbar coming in beside it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.widgets import Static


class RewrappedStatic(Static):
    """`rewrap` is called on every resize of this widget (its owner compares the width it wrapped for)."""

    def __init__(self, *args: Any, rewrap: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rewrap = rewrap

    def on_resize(self) -> None:
        self._rewrap()
