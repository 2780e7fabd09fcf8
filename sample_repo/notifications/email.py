"""Email notifications: invoice issued, refund issued and payment failed messages."""

from __future__ import annotations

import logging
from decimal import Decimal

from .base import Notification, Notifier, Outbox
from .formatting import display_amount, first_name
from .renderer import TemplateRenderer

logger = logging.getLogger(__name__)


class EmailNotifier(Notifier):
    """Sends emails rendered from templates; delivery is simulated by the outbox."""

    channel = "email"

    def __init__(
        self,
        renderer: TemplateRenderer | None = None,
        outbox: Outbox | None = None,
        sender: str = "billing@example.com",
    ) -> None:
        super().__init__(renderer, outbox)
        self.sender = sender

    def _prepare(self, notification: Notification) -> Notification:
        """Refuse emails without a subject line: every email template must start with one."""
        if not notification.subject:
            raise ValueError(f"email template {notification.template!r} has no Subject line")
        return notification

    def _deliver(self, notification: Notification) -> None:
        logger.debug("email from %s using template %s", self.sender, notification.template)


def send_invoice_issued(
    notifier: Notifier, *, recipient: str, customer_name: str, invoice_id: str, total: Decimal | str, currency: str
) -> Notification:
    """Email a customer that a new invoice is available, with its total."""
    context = {
        "first_name": first_name(customer_name),
        "invoice_id": invoice_id,
        "total": display_amount(total, currency),
    }
    return notifier.send(recipient, "invoice_issued", context)


def send_refund_issued(
    notifier: Notifier, *, recipient: str, customer_name: str, amount: Decimal | str, currency: str, reference: str
) -> Notification:
    """Email a customer that a refund was issued, and when to expect the money."""
    context = {
        "first_name": first_name(customer_name),
        "amount": display_amount(amount, currency),
        "reference": reference,
    }
    return notifier.send(recipient, "refund_issued", context)


def send_payment_failed(notifier: Notifier, *, recipient: str, customer_name: str, invoice_id: str) -> Notification:
    """Email a customer that charging their card for an invoice failed."""
    context = {"first_name": first_name(customer_name), "invoice_id": invoice_id}
    return notifier.send(recipient, "payment_failed", context)
