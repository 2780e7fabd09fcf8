"""Refund calculation and issuing: full, partial and prorated refunds posted to the ledger."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from .currency import AmountLike, as_decimal, from_minor_units, round_minor_units, to_minor_units
from .errors import RefundError
from .ledger import Ledger, LedgerEntry
from .money import Money

logger = logging.getLogger(__name__)

#: Refunds are accepted for this many days after the charge unless a policy says otherwise.
DEFAULT_REFUND_WINDOW_DAYS = 90


def prorated_refund(amount: AmountLike, days_used: int, days_total: int, currency: str) -> Decimal:
    """Compute the unused share of a subscription charge, rounded to the currency's minor unit."""
    if days_total <= 0:
        raise RefundError("a billing period must last at least one day")
    if days_used < 0:
        raise RefundError("days used cannot be negative")
    unused_days = max(days_total - days_used, 0)
    return round_minor_units(as_decimal(amount) * unused_days / days_total, currency)


def split_refund(amount: AmountLike, currency: str, parts: int) -> list[Decimal]:
    """Split a refund into ``parts`` instalments that differ by at most one cent and add up exactly."""
    if parts < 1:
        raise RefundError("a refund must be split into at least one part")
    base, remainder = divmod(to_minor_units(amount, currency), parts)
    return [from_minor_units(base + (1 if index < remainder else 0), currency) for index in range(parts)]


class RefundPolicy:
    """Rules deciding whether a charge may still be refunded and the smallest refund allowed."""

    def __init__(self, window_days: int = DEFAULT_REFUND_WINDOW_DAYS, min_refund_minor_units: int = 1) -> None:
        self.window_days = window_days
        self.min_refund_minor_units = min_refund_minor_units

    def is_within_window(self, charged_at: datetime, now: datetime) -> bool:
        """Tell whether a charge made at ``charged_at`` can still be refunded at ``now``."""
        return now - charged_at <= timedelta(days=self.window_days)

    def check_amount(self, amount: Decimal, currency: str) -> None:
        """Reject refunds smaller than the policy minimum (in minor units)."""
        if to_minor_units(amount, currency) < self.min_refund_minor_units:
            raise RefundError(f"refund of {amount} {currency} is below the minimum")


@dataclass(frozen=True)
class RefundQuote:
    """What a refund would pay out, computed before anything is posted to the ledger."""

    charge_reference: str
    requested: Money
    remaining_after: Money


class RefundService:
    """Issues refunds against charges recorded in the ledger, enforcing the refund policy."""

    def __init__(self, ledger: Ledger, policy: RefundPolicy | None = None) -> None:
        self.ledger = ledger
        self.policy = policy or RefundPolicy()

    def _find_charge(self, charge_reference: str) -> LedgerEntry:
        charge = self.ledger.find_charge(charge_reference)
        if charge is None:
            raise RefundError(f"no charge found for {charge_reference!r}")
        return charge

    def refundable_amount(self, charge_reference: str) -> Money:
        """Return how much of a charge can still be refunded (the charge minus earlier refunds)."""
        charge = self._find_charge(charge_reference)
        refunded = self.ledger.total_refunded(charge_reference, charge.amount.currency)
        return charge.amount - refunded

    def quote(self, charge_reference: str, amount: AmountLike | None = None) -> RefundQuote:
        """Validate a refund request and return what it would pay out, without posting it."""
        charge = self._find_charge(charge_reference)
        currency = charge.amount.currency
        if not self.policy.is_within_window(charge.created_at, self.ledger.now()):
            raise RefundError(f"charge {charge_reference!r} is outside the refund window")
        remaining = self.refundable_amount(charge_reference)
        requested = remaining.amount if amount is None else round_minor_units(amount, currency)
        if requested <= 0:
            raise RefundError("refund amount must be positive")
        if requested > remaining.amount:
            raise RefundError(f"refund of {requested} exceeds the refundable {remaining.amount} {currency}")
        self.policy.check_amount(requested, currency)
        requested_money = Money(requested, currency)
        return RefundQuote(charge_reference, requested_money, remaining - requested_money)

    def issue_refund(self, charge_reference: str, amount: AmountLike | None = None, reason: str = "") -> LedgerEntry:
        """Refund part or all of a charge (all of what remains when ``amount`` is None)."""
        quote = self.quote(charge_reference, amount)
        charge = self._find_charge(charge_reference)
        entry = self.ledger.record_refund(charge.account_id, quote.requested, charge_reference, memo=reason)
        logger.info("refund %s issued for %s", quote.requested, charge_reference)
        return entry

    def issue_prorated_refund(
        self, charge_reference: str, days_used: int, days_total: int, reason: str = ""
    ) -> LedgerEntry:
        """Refund the unused days of a subscription charge."""
        charge = self._find_charge(charge_reference)
        amount = prorated_refund(charge.amount.amount, days_used, days_total, charge.amount.currency)
        return self.issue_refund(charge_reference, amount, reason or "prorated cancellation")
