"""The toast that says escalations are waiting: one for those that come together, gone once the queue shows."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from textual.notifications import Notification, Notify
from textual.timer import Timer

from loomtui.tui.keys import shown_key

if TYPE_CHECKING:
    from textual.app import App

ESCALATION_TOAST_SECONDS: Final = 8.0
QUEUE_MODE: Final = "escalations"


class EscalationToasts:
    """Announces escalations opened elsewhere, as the app's events bring them."""

    def __init__(self, app: App[Any], seconds: float = ESCALATION_TOAST_SECONDS) -> None:
        self.app = app
        self.seconds = seconds
        """How long a toast shows; escalations opened meanwhile are counted into the next one."""
        self._unannounced = 0
        self._announced_at = 0.0
        self._timer: Timer | None = None
        self._shown: Notification | None = None

    def listen(self) -> None:
        """Follow the app's view changes (once it runs): showing the queue dismisses the toast."""
        self.app.mode_change_signal.subscribe(self.app, self._mode_changed)

    def opened(self, count: int) -> None:
        """`count` escalations were opened: a toast now, or once the one showing has gone."""
        self._unannounced += count
        if self._timer is None:
            wait = self._announced_at + self.seconds - time.monotonic()
            self._timer = self.app.set_timer(max(0.01, wait), self._announce)

    def _announce(self) -> None:
        # Those opened while the last toast still showed are counted into this one, not stacked over
        # the header as toasts of their own.
        self._timer = None
        count, self._unannounced = self._unannounced, 0
        # With the queue in view its new rows show (and the bell rang): a toast would cover its detail.
        if count and self.app.current_mode != QUEUE_MODE:
            self._announced_at = time.monotonic()
            self._shown = Notification(f"{count} new escalation{'s' if count != 1 else ''} waiting: "
                                       f"press {shown_key('app.mode.escalations', '3')}",
                                       "escalation", "warning", self.seconds)
            self.app.post_message(Notify(self._shown))

    def _mode_changed(self, mode: str) -> None:
        # The queue in view answers "press 3": its toast goes rather than cover the queue's detail.
        if mode == QUEUE_MODE and self._shown is not None:
            self.app._unnotify(self._shown)  # what a toast's own click does; Textual has no public single dismiss
            self._shown = None
