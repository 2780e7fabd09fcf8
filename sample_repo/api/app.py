"""Application wiring: builds the services and dispatches requests to the API handlers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from customers.service import CustomerService
from notifications.base import Outbox
from notifications.email import EmailNotifier
from notifications.renderer import TemplateRenderer
from notifications.sms import SmsNotifier
from payments.invoices import Invoice
from payments.ledger import Ledger
from payments.refunds import RefundPolicy, RefundService
from storage.repository import InMemoryRepository

from .handlers import router as default_router
from .requests import Request, Response
from .routing import Router


@dataclass
class Services:
    """Every service a handler may use, built once per application instance."""

    customers: CustomerService
    ledger: Ledger
    refunds: RefundService
    invoices: InMemoryRepository[Invoice]
    email: EmailNotifier
    sms: SmsNotifier
    outbox: Outbox


def build_services(clock: Callable[[], datetime] | None = None, refund_window_days: int = 90) -> Services:
    """Create the in-memory services of one billing application (one shared outbox)."""
    outbox = Outbox()
    renderer = TemplateRenderer()
    ledger = Ledger(clock=clock)
    return Services(
        customers=CustomerService(),
        ledger=ledger,
        refunds=RefundService(ledger, RefundPolicy(window_days=refund_window_days)),
        invoices=InMemoryRepository(key=lambda invoice: invoice.invoice_id, kind="invoice"),
        email=EmailNotifier(renderer, outbox),
        sms=SmsNotifier(renderer, outbox),
        outbox=outbox,
    )


class BillingApp:
    """The billing service entry point: routes requests to handlers over shared services."""

    def __init__(self, services: Services | None = None, router: Router | None = None) -> None:
        self.services = services or build_services()
        self.router = router or default_router

    def handle(self, request: Request) -> Response:
        """Dispatch one request and return the handler's response."""
        return self.router.dispatch(request, self.services)

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Convenience wrapper building a Request from its parts, for tests and scripts."""
        return self.handle(Request(method, path, dict(body or {}), dict(headers or {})))


def create_app(**options: Any) -> BillingApp:
    """Build a BillingApp with fresh services; options are passed to :func:`build_services`."""
    return BillingApp(build_services(**options))
