"""Notifications: email and SMS messages rendered from text templates.

Rule (AGENTS.md): this package may import only the public ``payments`` API,
never modules inside ``payments`` such as ``payments.ledger``.
"""

from .base import Notification, NotificationError, Notifier, Outbox
from .email import EmailNotifier
from .renderer import TemplateNotFoundError, TemplateRenderer
from .sms import SmsNotifier

__all__ = [
    "EmailNotifier",
    "Notification",
    "NotificationError",
    "Notifier",
    "Outbox",
    "SmsNotifier",
    "TemplateNotFoundError",
    "TemplateRenderer",
]
