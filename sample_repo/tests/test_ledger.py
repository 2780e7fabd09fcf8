from decimal import Decimal

import pytest

from payments.errors import LedgerError
from payments.ledger import EntryKind, Ledger
from payments.money import Money


def usd(amount: str) -> Money:
    return Money(Decimal(amount), "USD")


def test_balance_is_charges_minus_refunds(charged_ledger: Ledger) -> None:
    charged_ledger.record_refund("cus_test", usd("20.00"), "inv_test")
    assert charged_ledger.balance("cus_test", "USD") == usd("100.00")
    assert [e.kind for e in charged_ledger.entries_for("cus_test")] == [EntryKind.CHARGE, EntryKind.REFUND]


def test_duplicate_charge_for_same_reference_is_rejected(charged_ledger: Ledger) -> None:
    with pytest.raises(LedgerError):
        charged_ledger.record_charge("cus_test", usd("1.00"), "inv_test")


def test_zero_and_negative_amounts_are_rejected(ledger: Ledger) -> None:
    with pytest.raises(LedgerError):
        ledger.record_charge("cus_a", usd("0"), "inv_zero")
    with pytest.raises(LedgerError):
        ledger.record_refund("cus_a", usd("-1"), "inv_neg")


def test_adjustments_need_a_memo_and_may_be_negative(ledger: Ledger) -> None:
    with pytest.raises(LedgerError):
        ledger.record_adjustment("cus_a", usd("-5"), "adj_1", memo=" ")
    ledger.record_adjustment("cus_a", usd("-5"), "adj_1", memo="duplicate card fee")
    assert ledger.balance("cus_a", "USD") == usd("-5.00")


def test_money_moving_calls_are_audited(charged_ledger: Ledger) -> None:
    charged_ledger.record_refund("cus_test", usd("1.00"), "inv_test")
    actions = [record.action for record in charged_ledger.audit_log.records()]
    assert actions == ["ledger.charge", "ledger.refund"]
