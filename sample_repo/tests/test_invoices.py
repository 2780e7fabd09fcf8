from decimal import Decimal

import pytest

from payments.errors import InvoiceError
from payments.invoices import Invoice, InvoiceCalculator, InvoiceLine, InvoiceStatus, invoice_total, summarize_invoice


def test_invoice_total_rounds_each_line_half_even_before_summing() -> None:
    """Regression for INC-2231: summing first and rounding once overcharged customers.

    Each line is 5 x 0.025 = 0.125, which rounds half-even to 0.12, so the
    invoice is 3 x 0.12 = 0.36. Summing the raw lines first gives 0.375 and
    rounding once gives 0.38; rounding half-up per line gives 0.39. Both are wrong.
    """
    lines = [InvoiceLine(f"API calls batch {n}", Decimal("5"), Decimal("0.025")) for n in range(3)]
    total = invoice_total(lines, "USD")
    assert total == Decimal("0.36")
    assert str(total) == "0.36"


def test_calculator_line_totals_and_subtotal() -> None:
    calc = InvoiceCalculator("USD")
    line = InvoiceLine("Seats", Decimal("3"), Decimal("19.99"))
    assert calc.line_total(line) == Decimal("59.97")
    assert calc.subtotal([line, InvoiceLine("Setup", Decimal("1"), Decimal("0.005"))]) == Decimal("59.97")


def test_invoice_total_applies_discount_before_tax() -> None:
    lines = [InvoiceLine("Plan", Decimal("1"), Decimal("100.00"))]
    # (100.00 - 10.00) * 7.25% = 6.525 -> 6.52 (half-even)
    assert invoice_total(lines, "USD", tax_rate=Decimal("0.0725"), discount=Decimal("10")) == Decimal("96.52")


def test_discount_larger_than_subtotal_is_rejected() -> None:
    with pytest.raises(InvoiceError):
        invoice_total([InvoiceLine("Plan", Decimal("1"), Decimal("5"))], "USD", discount=Decimal("6"))


def test_invoice_lifecycle_and_editing_rules() -> None:
    invoice = Invoice("inv_1", "cus_1", "EUR", tax_rate=Decimal("0.19"))
    with pytest.raises(InvoiceError):
        invoice.mark_issued()  # no lines yet
    invoice.add_line("Consulting", Decimal("2"), Decimal("150"))
    invoice.mark_issued()
    assert invoice.status is InvoiceStatus.ISSUED
    with pytest.raises(InvoiceError):
        invoice.add_line("Extra", Decimal("1"), Decimal("1"))
    invoice.mark_paid()
    with pytest.raises(InvoiceError):
        invoice.void()


def test_summarize_invoice_reports_strings() -> None:
    invoice = Invoice("inv_2", "cus_1", "EUR", tax_rate=Decimal("0.19"))
    invoice.add_line("Consulting", Decimal("2"), Decimal("150"))
    summary = summarize_invoice(invoice)
    assert summary["subtotal"] == "300.00"
    assert summary["tax"] == "57.00"
    assert summary["total"] == "357.00"
    assert summary["display_total"] == "€357.00"


def test_invoice_line_validation() -> None:
    with pytest.raises(InvoiceError):
        InvoiceLine("Nothing", Decimal("0"), Decimal("1"))
    with pytest.raises(TypeError):
        InvoiceLine("Float", 1, 0.1)  # type: ignore[arg-type]
