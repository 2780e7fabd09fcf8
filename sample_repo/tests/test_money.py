from decimal import Decimal

import pytest

from payments.errors import CurrencyMismatchError
from payments.fx import ExchangeRateTable
from payments.money import Money, sum_money


def test_money_is_rounded_on_creation() -> None:
    assert Money(Decimal("10.005"), "usd") == Money(Decimal("10.00"), "USD")
    assert Money(Decimal("10.015"), "USD").minor_units == 1002


def test_money_arithmetic_and_currency_mismatch() -> None:
    total = Money(Decimal("1.10"), "USD") + Money(Decimal("2.20"), "USD")
    assert total.amount == Decimal("3.30")
    assert (total - Money(Decimal("3.30"), "USD")).is_zero()
    with pytest.raises(CurrencyMismatchError):
        Money(Decimal("1"), "USD") + Money(Decimal("1"), "EUR")


def test_allocate_never_loses_a_cent() -> None:
    parts = Money(Decimal("100.00"), "USD").allocate([1, 1, 1])
    assert [p.amount for p in parts] == [Decimal("33.34"), Decimal("33.33"), Decimal("33.33")]
    assert sum_money(parts, "USD") == Money(Decimal("100.00"), "USD")


def test_exchange_rate_conversion_rounds_in_target_currency() -> None:
    table = ExchangeRateTable({("EUR", "USD"): "1.0850"})
    assert table.convert(Money(Decimal("10.00"), "EUR"), "USD") == Money(Decimal("10.85"), "USD")
    assert table.convert(Money(Decimal("10.85"), "USD"), "EUR") == Money(Decimal("10.00"), "EUR")
    assert table.convert(Money(Decimal("100"), "JPY"), "JPY").amount == Decimal("100")
