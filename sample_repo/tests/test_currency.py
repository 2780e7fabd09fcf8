from decimal import Decimal

import pytest

from payments.currency import (
    as_decimal,
    format_amount,
    from_minor_units,
    minor_unit_exponent,
    round_minor_units,
    to_minor_units,
)
from payments.errors import UnsupportedCurrencyError


@pytest.mark.parametrize(
    ("amount", "expected"),
    [("0.125", "0.12"), ("0.135", "0.14"), ("2.675", "2.68"), ("-0.125", "-0.12"), ("10", "10.00")],
)
def test_round_minor_units_uses_bankers_rounding(amount: str, expected: str) -> None:
    assert round_minor_units(Decimal(amount), "USD") == Decimal(expected)
    assert str(round_minor_units(Decimal(amount), "USD")) == expected


def test_round_minor_units_respects_currency_exponent() -> None:
    assert round_minor_units("1234.5", "JPY") == Decimal("1234")
    assert round_minor_units("1.2345", "KWD") == Decimal("1.234")
    assert minor_unit_exponent("jpy") == 0


def test_to_and_from_minor_units_round_trip() -> None:
    assert to_minor_units(Decimal("19.99"), "USD") == 1999
    assert to_minor_units("0.005", "EUR") == 0
    assert from_minor_units(1999, "USD") == Decimal("19.99")
    assert str(from_minor_units(100, "USD")) == "1.00"


def test_floats_are_refused_as_money() -> None:
    with pytest.raises(TypeError):
        as_decimal(0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        round_minor_units(1.005, "USD")  # type: ignore[arg-type]


def test_unsupported_currency_is_rejected() -> None:
    with pytest.raises(UnsupportedCurrencyError):
        round_minor_units("1.00", "XYZ")


def test_format_amount() -> None:
    assert format_amount(Decimal("1234.5"), "USD") == "$1,234.50"
    assert format_amount(Decimal("-3"), "EUR") == "-€3.00"
    assert format_amount(Decimal("1.5"), "CHF") == "1.50 CHF"
