"""The ledger: an append-only record of charges, refunds and adjustments per customer account."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Callable

from storage import ids as idgen
from storage.repository import InMemoryRepository, Repository

from .audit import AuditLog, audited
from .errors import LedgerError
from .money import Money, sum_money

logger = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class EntryKind(str, Enum):
    """What a ledger entry records: money collected, money returned, or a manual correction."""

    CHARGE = "charge"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"


@dataclass(frozen=True)
class LedgerEntry:
    """A single immutable posting to a customer account in the ledger."""

    entry_id: str
    account_id: str
    kind: EntryKind
    amount: Money
    reference: str
    created_at: datetime
    memo: str = ""

    @property
    def signed_amount(self) -> Money:
        """The entry's effect on the account's net collected balance (refunds are negative)."""
        return -self.amount if self.kind is EntryKind.REFUND else self.amount


class Ledger:
    """Append-only ledger of charges, refunds and adjustments, keyed by customer account."""

    def __init__(
        self,
        repository: Repository[LedgerEntry] | None = None,
        audit_log: AuditLog | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._entries: Repository[LedgerEntry] = (
            repository
            if repository is not None
            else InMemoryRepository(key=lambda entry: entry.entry_id, kind="ledger entry")
        )
        self.audit_log = audit_log if audit_log is not None else AuditLog()
        self._clock = clock or _utcnow

    def now(self) -> datetime:
        """Return the ledger's current time (injectable for tests and the demo)."""
        return self._clock()

    def post(
        self,
        account_id: str,
        kind: EntryKind,
        amount: Money,
        reference: str,
        memo: str = "",
    ) -> LedgerEntry:
        """Validate and append one entry to the ledger, returning the stored entry."""
        self._validate_amount(amount, allow_negative=kind is EntryKind.ADJUSTMENT)
        if not account_id:
            raise LedgerError("a ledger entry needs an account id")
        entry = LedgerEntry(
            entry_id=idgen.new_id("le"),
            account_id=account_id,
            kind=kind,
            amount=amount,
            reference=reference,
            created_at=self.now(),
            memo=memo,
        )
        self._entries.add(entry)
        logger.info("ledger %s %s %s ref=%s", kind.value, account_id, amount, reference)
        return entry

    @audited("ledger.charge")
    def record_charge(self, account_id: str, amount: Money, reference: str, memo: str = "") -> LedgerEntry:
        """Record money collected from a customer for an invoice; one charge per reference."""
        if self.find_charge(reference) is not None:
            raise LedgerError(f"reference {reference!r} has already been charged")
        return self.post(account_id, EntryKind.CHARGE, amount, reference, memo)

    @audited("ledger.refund")
    def record_refund(self, account_id: str, amount: Money, reference: str, memo: str = "") -> LedgerEntry:
        """Record money returned to a customer against an earlier charge."""
        return self.post(account_id, EntryKind.REFUND, amount, reference, memo)

    @audited("ledger.adjustment")
    def record_adjustment(self, account_id: str, amount: Money, reference: str, memo: str) -> LedgerEntry:
        """Record a manual correction (positive or negative); a memo explaining it is mandatory."""
        if not memo.strip():
            raise LedgerError("adjustments need a memo explaining why")
        return self.post(account_id, EntryKind.ADJUSTMENT, amount, reference, memo)

    def entries_for(self, account_id: str) -> list[LedgerEntry]:
        """Return every entry posted to an account, oldest first."""
        return self._entries.find(lambda entry: entry.account_id == account_id)

    def entries_for_reference(self, reference: str) -> list[LedgerEntry]:
        """Return every entry (charge, refunds, adjustments) posted against one reference."""
        return self._entries.find(lambda entry: entry.reference == reference)

    def find_charge(self, reference: str) -> LedgerEntry | None:
        """Return the charge posted for ``reference`` (an invoice id), or ``None``."""
        for entry in self.entries_for_reference(reference):
            if entry.kind is EntryKind.CHARGE:
                return entry
        return None

    def total_refunded(self, reference: str, currency: str) -> Money:
        """Return how much has already been refunded against ``reference``."""
        refunds = [e.amount for e in self.entries_for_reference(reference) if e.kind is EntryKind.REFUND]
        return sum_money(refunds, currency)

    def balance(self, account_id: str, currency: str) -> Money:
        """Return the net amount collected from an account in one currency (charges minus refunds)."""
        entries = [e for e in self.entries_for(account_id) if e.amount.currency == currency]
        return sum_money([e.signed_amount for e in entries], currency)

    @staticmethod
    def _validate_amount(amount: Money, allow_negative: bool = False) -> None:
        if not isinstance(amount, Money):
            raise LedgerError(f"ledger amounts must be Money, got {type(amount).__name__}")
        if amount.is_zero():
            raise LedgerError("ledger amounts must not be zero")
        if amount.is_negative() and not allow_negative:
            raise LedgerError("charges and refunds must be positive amounts")
