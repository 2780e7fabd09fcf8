"""Shared fixtures: a controllable clock, a ledger, a refund service and a wired-up app."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from api import BillingApp, create_app
from payments.ledger import Ledger
from payments.money import Money
from payments.refunds import RefundService


class FakeClock:
    """A clock that only moves when a test tells it to."""

    def __init__(self) -> None:
        self.current = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, days: int) -> None:
        self.current += timedelta(days=days)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(clock: FakeClock) -> Ledger:
    return Ledger(clock=clock)


@pytest.fixture
def refunds(ledger: Ledger) -> RefundService:
    return RefundService(ledger)


@pytest.fixture
def charged_ledger(ledger: Ledger) -> Ledger:
    """A ledger holding one $120.00 charge for invoice ``inv_test`` on account ``cus_test``."""
    ledger.record_charge("cus_test", Money(Decimal("120.00"), "USD"), "inv_test")
    return ledger


@pytest.fixture
def app(clock: FakeClock) -> BillingApp:
    return create_app(clock=clock)


@pytest.fixture
def customer_id(app: BillingApp) -> str:
    response = app.call(
        "POST",
        "/customers",
        {"name": "Grace Hopper", "email": "grace@example.com", "phone": "+1 415 555 0100", "sms_opt_in": True},
    )
    assert response.status == 201, response.body
    return response.body["customer_id"]
