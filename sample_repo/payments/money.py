"""The Money value type: an exact Decimal amount tied to one currency."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

from .currency import (
    AmountLike,
    as_decimal,
    format_amount,
    from_minor_units,
    normalize_currency,
    round_minor_units,
    to_minor_units,
)
from .errors import CurrencyMismatchError


@dataclass(frozen=True)
class Money:
    """An exact amount of money in a single currency, always rounded to its minor unit."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        code = normalize_currency(self.currency)
        object.__setattr__(self, "currency", code)
        object.__setattr__(self, "amount", round_minor_units(self.amount, code))

    @classmethod
    def zero(cls, currency: str) -> "Money":
        """Return a zero amount in ``currency``."""
        return cls(Decimal(0), currency)

    @classmethod
    def from_minor(cls, units: int, currency: str) -> "Money":
        """Build Money from an integer count of minor units (cents)."""
        return cls(from_minor_units(units, currency), currency)

    @property
    def minor_units(self) -> int:
        """The amount as an integer count of minor units (cents)."""
        return to_minor_units(self.amount, self.currency)

    def is_zero(self) -> bool:
        """Tell whether the amount is exactly zero."""
        return self.amount == 0

    def is_negative(self) -> bool:
        """Tell whether the amount is below zero."""
        return self.amount < 0

    def _check_same_currency(self, other: "Money") -> None:
        if not isinstance(other, Money):
            raise TypeError(f"expected Money, got {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatchError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: "Money") -> "Money":
        self._check_same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: "Money") -> "Money":
        self._check_same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> "Money":
        return Money(-self.amount, self.currency)

    def __mul__(self, factor: AmountLike) -> "Money":
        return Money(self.amount * as_decimal(factor), self.currency)

    def __lt__(self, other: "Money") -> bool:
        self._check_same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: "Money") -> bool:
        self._check_same_currency(other)
        return self.amount <= other.amount

    def allocate(self, ratios: Sequence[int]) -> list["Money"]:
        """Split the amount by integer ratios without losing or creating a single cent."""
        if not ratios or any(r < 0 for r in ratios) or sum(ratios) == 0:
            raise ValueError(f"ratios must be non-negative and not all zero: {ratios!r}")
        total = self.minor_units
        sign = -1 if total < 0 else 1
        remaining = abs(total)
        shares = [remaining * ratio // sum(ratios) for ratio in ratios]
        leftover = remaining - sum(shares)
        for index in range(leftover):
            shares[index % len(shares)] += 1
        return [Money.from_minor(sign * share, self.currency) for share in shares]

    def __str__(self) -> str:
        return format_amount(self.amount, self.currency)


def sum_money(amounts: Sequence[Money], currency: str) -> Money:
    """Add up Money values of one currency, returning zero for an empty sequence."""
    total = Money.zero(currency)
    for amount in amounts:
        total = total + amount
    return total
