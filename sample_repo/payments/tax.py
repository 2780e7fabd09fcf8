"""Sales tax and VAT: rates per region and tax amounts rounded through payments.currency."""

from __future__ import annotations

from decimal import Decimal

from .currency import AmountLike, as_decimal
from .currency import round_minor_units as round_money
from .errors import PaymentError

#: Tax rate per billing region (ISO country, or country-state for the US).
TAX_RATES: dict[str, Decimal] = {
    "US-CA": Decimal("0.0725"),
    "US-NY": Decimal("0.04"),
    "US-OR": Decimal("0"),
    "DE": Decimal("0.19"),
    "FR": Decimal("0.20"),
    "GB": Decimal("0.20"),
    "JP": Decimal("0.10"),
}


def is_supported_region(region: str) -> bool:
    """Tell whether the service knows the tax rate of a billing region."""
    return region.upper() in TAX_RATES


def tax_rate_for(region: str) -> Decimal:
    """Return the tax rate of a billing region such as ``US-CA`` or ``DE``."""
    try:
        return TAX_RATES[region.upper()]
    except KeyError:
        raise PaymentError(f"no tax rate for region {region!r}") from None


def apply_tax(amount: AmountLike, rate: AmountLike, currency: str) -> Decimal:
    """Return the tax owed on a net amount at ``rate``, rounded to the currency's minor unit."""
    rate_value = as_decimal(rate)
    if rate_value < 0:
        raise PaymentError("tax rates cannot be negative")
    return round_money(as_decimal(amount) * rate_value, currency)


def net_of_tax(gross: AmountLike, rate: AmountLike, currency: str) -> Decimal:
    """Split a tax-inclusive price and return its net part, rounded to the minor unit."""
    return round_money(as_decimal(gross) / (1 + as_decimal(rate)), currency)
