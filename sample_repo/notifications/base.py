"""Notifier base class, the Notification message type and the in-memory outbox."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Mapping

from .renderer import TemplateRenderer

logger = logging.getLogger(__name__)


class NotificationError(Exception):
    """Raised when a notification cannot be composed or sent."""


@dataclass(frozen=True)
class Notification:
    """A rendered message ready to send on one channel to one recipient."""

    channel: str
    recipient: str
    subject: str
    body: str
    template: str


class Outbox:
    """Collects sent notifications in memory so tests and the demo can inspect them."""

    def __init__(self) -> None:
        self._sent: list[Notification] = []

    def append(self, notification: Notification) -> None:
        """Record a sent notification."""
        self._sent.append(notification)

    def sent(self, channel: str | None = None) -> list[Notification]:
        """Return sent notifications, optionally only those of one channel."""
        return [n for n in self._sent if channel is None or n.channel == channel]

    def last(self) -> Notification | None:
        """Return the most recently sent notification, if any."""
        return self._sent[-1] if self._sent else None

    def __len__(self) -> int:
        return len(self._sent)


class Notifier(ABC):
    """Base class for a channel: renders a template, prepares the message, delivers it."""

    channel: str = "base"

    def __init__(self, renderer: TemplateRenderer | None = None, outbox: Outbox | None = None) -> None:
        self.renderer = renderer or TemplateRenderer()
        self.outbox = outbox if outbox is not None else Outbox()

    def compose(self, template: str, context: Mapping[str, object]) -> Notification:
        """Render ``template`` with ``context`` into a Notification without sending it."""
        subject, body = self.renderer.render_message(template, context)
        return Notification(self.channel, "", subject, body, template)

    def send(self, recipient: str, template: str, context: Mapping[str, object]) -> Notification:
        """Compose, prepare and deliver a notification, then record it in the outbox."""
        if not recipient:
            raise NotificationError(f"{self.channel} notification {template!r} has no recipient")
        draft = self.compose(template, context)
        notification = self._prepare(
            Notification(self.channel, recipient, draft.subject, draft.body, template)
        )
        self._deliver(notification)
        self.outbox.append(notification)
        logger.info("%s notification %s sent", self.channel, template)
        return notification

    def _prepare(self, notification: Notification) -> Notification:
        """Adjust a message to the channel's constraints; the default keeps it unchanged."""
        return notification

    @abstractmethod
    def _deliver(self, notification: Notification) -> None:
        """Hand the message to the channel's transport."""
