"""Foreign exchange: a table of conversion rates and Money conversion between currencies."""

from __future__ import annotations

from decimal import Decimal
from typing import Mapping

from .currency import AmountLike, as_decimal, normalize_currency
from .currency import round_minor_units as _round
from .errors import MissingRateError
from .money import Money


class ExchangeRateTable:
    """Holds exchange rates between currency pairs and converts Money between them."""

    def __init__(self, rates: Mapping[tuple[str, str], AmountLike] | None = None) -> None:
        self._rates: dict[tuple[str, str], Decimal] = {}
        for (base, quote), rate in (rates or {}).items():
            self.set_rate(base, quote, rate)

    def set_rate(self, base: str, quote: str, rate: AmountLike) -> None:
        """Record that one unit of ``base`` buys ``rate`` units of ``quote``."""
        value = as_decimal(rate)
        if value <= 0:
            raise ValueError("exchange rates must be positive")
        self._rates[(normalize_currency(base), normalize_currency(quote))] = value

    def rate(self, base: str, quote: str) -> Decimal:
        """Return the rate from ``base`` to ``quote``, using the inverse pair when only it is known."""
        base, quote = normalize_currency(base), normalize_currency(quote)
        if base == quote:
            return Decimal(1)
        if (base, quote) in self._rates:
            return self._rates[(base, quote)]
        if (quote, base) in self._rates:
            return Decimal(1) / self._rates[(quote, base)]
        raise MissingRateError(f"no exchange rate between {base} and {quote}")

    def convert(self, money: Money, target: str) -> Money:
        """Convert Money to ``target``, rounding once in the target currency."""
        converted = money.amount * self.rate(money.currency, target)
        return Money(_round(converted, target), target)
