"""SMS notifications: short messages truncated to one 160-character segment."""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal

from . import formatting as fmt
from .base import Notification, Notifier, Outbox
from .renderer import TemplateRenderer

logger = logging.getLogger(__name__)


class SmsNotifier(Notifier):
    """Sends SMS messages rendered from ``*.sms`` templates, cut to a single segment."""

    channel = "sms"

    def __init__(
        self, renderer: TemplateRenderer | None = None, outbox: Outbox | None = None, limit: int = fmt.SMS_LIMIT
    ) -> None:
        super().__init__(renderer, outbox)
        self.limit = limit

    def _prepare(self, notification: Notification) -> Notification:
        """Drop the subject and truncate the body to the SMS limit."""
        return replace(notification, subject="", body=fmt.truncate_sms(notification.body, self.limit))

    def _deliver(self, notification: Notification) -> None:
        logger.debug("sms using template %s (%d chars)", notification.template, len(notification.body))


def send_welcome_sms(notifier: Notifier, *, phone: str, customer_name: str) -> Notification:
    """Text a newly registered customer who opted in to SMS."""
    return notifier.send(phone, "welcome.sms", {"first_name": fmt.first_name(customer_name)})


def send_refund_sms(notifier: Notifier, *, phone: str, amount: Decimal | str, currency: str, reference: str) -> Notification:
    """Text a customer that a refund was issued."""
    context = {"amount": fmt.display_amount(amount, currency), "reference": reference}
    return notifier.send(phone, "refund_issued.sms", context)
