from decimal import Decimal

import pytest

from payments.errors import RefundError
from payments.ledger import Ledger
from payments.money import Money
from payments.refunds import RefundPolicy, RefundService, prorated_refund, split_refund


def test_full_refund_refunds_what_remains(charged_ledger: Ledger) -> None:
    service = RefundService(charged_ledger)
    service.issue_refund("inv_test", Decimal("20.00"))
    entry = service.issue_refund("inv_test")
    assert entry.amount == Money(Decimal("100.00"), "USD")
    assert service.refundable_amount("inv_test").is_zero()


def test_partial_refund_amount_is_rounded_half_even(charged_ledger: Ledger) -> None:
    entry = RefundService(charged_ledger).issue_refund("inv_test", "10.125", reason="late delivery")
    assert entry.amount.amount == Decimal("10.12")
    assert entry.memo == "late delivery"


def test_refund_cannot_exceed_charge(charged_ledger: Ledger) -> None:
    with pytest.raises(RefundError):
        RefundService(charged_ledger).issue_refund("inv_test", Decimal("120.01"))


def test_refund_of_unknown_charge_is_rejected(refunds: RefundService) -> None:
    with pytest.raises(RefundError):
        refunds.issue_refund("inv_missing")


def test_refund_window_is_enforced(charged_ledger: Ledger, clock) -> None:
    service = RefundService(charged_ledger, RefundPolicy(window_days=30))
    clock.advance(31)
    with pytest.raises(RefundError):
        service.issue_refund("inv_test", Decimal("1.00"))


def test_prorated_refund_rounds_to_minor_units() -> None:
    # 120.00 * 20 / 30 = 80.00 exactly; 100.00 * 2 / 3 = 66.666... -> 66.67
    assert prorated_refund(Decimal("120.00"), 10, 30, "USD") == Decimal("80.00")
    assert prorated_refund(Decimal("100.00"), 1, 3, "USD") == Decimal("66.67")
    assert prorated_refund(Decimal("100.00"), 45, 30, "USD") == Decimal("0.00")


def test_issue_prorated_refund_posts_to_ledger(charged_ledger: Ledger) -> None:
    entry = RefundService(charged_ledger).issue_prorated_refund("inv_test", days_used=10, days_total=30)
    assert entry.amount.amount == Decimal("80.00")
    assert charged_ledger.balance("cus_test", "USD").amount == Decimal("40.00")


def test_split_refund_parts_add_up_exactly() -> None:
    parts = split_refund(Decimal("100.00"), "USD", 3)
    assert parts == [Decimal("33.34"), Decimal("33.33"), Decimal("33.33")]
    assert sum(parts) == Decimal("100.00")
