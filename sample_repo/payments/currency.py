"""Currency metadata and the single place where money amounts are rounded.

Every rounding of a money amount in this service goes through
:func:`round_minor_units` (see AGENTS.md and docs/adr/0002). Rounding is
banker's rounding (ROUND_HALF_EVEN) to the currency's minor unit.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from typing import Union

from .errors import UnsupportedCurrencyError

AmountLike = Union[Decimal, int, str]

#: Rounding mode for every money amount (banker's rounding, ADR 0002).
ROUNDING = ROUND_HALF_EVEN

#: Number of decimal places of each supported currency's minor unit (ISO 4217).
MINOR_UNIT_EXPONENTS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "JPY": 0,
    "KWD": 3,
}

CURRENCY_SYMBOLS: dict[str, str] = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}


def normalize_currency(code: str) -> str:
    """Return the upper-case ISO 4217 code, rejecting currencies we do not support."""
    if not isinstance(code, str):
        raise UnsupportedCurrencyError(f"currency must be a string, got {code!r}")
    normalized = code.strip().upper()
    if normalized not in MINOR_UNIT_EXPONENTS:
        raise UnsupportedCurrencyError(f"unsupported currency: {code!r}")
    return normalized


def minor_unit_exponent(currency: str) -> int:
    """Return how many decimal places the currency's minor unit has (2 for USD, 0 for JPY)."""
    return MINOR_UNIT_EXPONENTS[normalize_currency(currency)]


@lru_cache(maxsize=None)
def quantum_for(currency: str) -> Decimal:
    """Return the Decimal quantum (e.g. ``Decimal('0.01')``) used to round amounts in a currency."""
    return Decimal(1).scaleb(-minor_unit_exponent(currency))


def as_decimal(value: AmountLike) -> Decimal:
    """Coerce an int, str or Decimal to Decimal, refusing floats so money stays exact."""
    if isinstance(value, (bool, float)):
        raise TypeError(f"money must be Decimal, int or str, never {type(value).__name__}: {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a valid amount: {value!r}") from None
    else:
        raise TypeError(f"cannot interpret {value!r} as an amount")
    if not result.is_finite():
        raise ValueError(f"amount must be finite, got {value!r}")
    return result


def round_minor_units(amount: AmountLike, currency: str) -> Decimal:
    """Round an amount to the currency's minor unit using banker's rounding (ROUND_HALF_EVEN)."""
    return as_decimal(amount).quantize(quantum_for(currency), rounding=ROUNDING)


def to_minor_units(amount: AmountLike, currency: str) -> int:
    """Convert a major-unit amount to an integer count of minor units (cents), rounding half-even."""
    rounded = round_minor_units(amount, currency)
    return int(rounded.scaleb(minor_unit_exponent(currency)))


def from_minor_units(units: int, currency: str) -> Decimal:
    """Convert an integer count of minor units (cents) back to a Decimal major-unit amount."""
    if isinstance(units, bool) or not isinstance(units, int):
        raise TypeError(f"minor units must be an int, got {units!r}")
    return Decimal(units).scaleb(-minor_unit_exponent(currency)).quantize(quantum_for(currency))


def format_amount(amount: AmountLike, currency: str) -> str:
    """Format an amount for display with its currency symbol and thousands separators."""
    code = normalize_currency(currency)
    rounded = round_minor_units(amount, code)
    digits = format(abs(rounded), f",.{minor_unit_exponent(code)}f")
    sign = "-" if rounded < 0 else ""
    symbol = CURRENCY_SYMBOLS.get(code)
    if symbol is None:
        return f"{sign}{digits} {code}"
    return f"{sign}{symbol}{digits}"
