"""Invoices: line items, status changes and totals computed with per-line banker's rounding."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Iterable

from . import currency as cur
from .errors import InvoiceError
from .tax import apply_tax


class InvoiceStatus(str, Enum):
    """Lifecycle of an invoice: draft, issued to the customer, paid, or voided."""

    DRAFT = "draft"
    ISSUED = "issued"
    PAID = "paid"
    VOID = "void"


_ALLOWED_TRANSITIONS: dict[InvoiceStatus, set[InvoiceStatus]] = {
    InvoiceStatus.DRAFT: {InvoiceStatus.ISSUED, InvoiceStatus.VOID},
    InvoiceStatus.ISSUED: {InvoiceStatus.PAID, InvoiceStatus.VOID},
    InvoiceStatus.PAID: set(),
    InvoiceStatus.VOID: set(),
}


@dataclass(frozen=True)
class InvoiceLine:
    """One billed item: a description, a quantity and an unrounded unit price."""

    description: str
    quantity: Decimal
    unit_price: Decimal

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantity", cur.as_decimal(self.quantity))
        object.__setattr__(self, "unit_price", cur.as_decimal(self.unit_price))
        if self.quantity <= 0:
            raise InvoiceError(f"line {self.description!r} needs a positive quantity")
        if self.unit_price < 0:
            raise InvoiceError(f"line {self.description!r} has a negative unit price")

    def raw_amount(self) -> Decimal:
        """Quantity times unit price, before any rounding."""
        return self.quantity * self.unit_price


class InvoiceCalculator:
    """Computes invoice subtotals, tax and totals, rounding each line half-even before summing.

    Lines are rounded one by one (ADR 0002): the customer sees rounded line
    amounts on the invoice, so the total must be the sum of what they see.
    """

    def __init__(self, currency: str, tax_rate: cur.AmountLike = Decimal("0")) -> None:
        self.currency = cur.normalize_currency(currency)
        self.tax_rate = cur.as_decimal(tax_rate)

    def line_total(self, line: InvoiceLine) -> Decimal:
        """Return one line's amount rounded to the minor unit with banker's rounding."""
        return cur.round_minor_units(line.raw_amount(), self.currency)

    def subtotal(self, lines: Iterable[InvoiceLine]) -> Decimal:
        """Return the sum of the individually rounded line totals."""
        total = Decimal(0)
        for line in lines:
            total += self.line_total(line)
        return cur.round_minor_units(total, self.currency)

    def tax(self, taxable: cur.AmountLike) -> Decimal:
        """Return the tax on a taxable amount at the calculator's rate."""
        return apply_tax(taxable, self.tax_rate, self.currency)

    def total(self, lines: Iterable[InvoiceLine], discount: cur.AmountLike = Decimal("0")) -> Decimal:
        """Return the amount due: rounded lines summed, minus the discount, plus tax on the rest."""
        subtotal = self.subtotal(lines)
        discount_value = cur.round_minor_units(discount, self.currency)
        if discount_value < 0:
            raise InvoiceError("discounts cannot be negative")
        if discount_value > subtotal:
            raise InvoiceError(f"discount {discount_value} exceeds the subtotal {subtotal}")
        taxable = subtotal - discount_value
        return taxable + self.tax(taxable)


def invoice_total(
    lines: Iterable[InvoiceLine],
    currency: str,
    tax_rate: cur.AmountLike = Decimal("0"),
    discount: cur.AmountLike = Decimal("0"),
) -> Decimal:
    """Return the amount due for invoice lines: each line rounded half-even, then discount and tax."""
    return InvoiceCalculator(currency, tax_rate).total(lines, discount)


@dataclass
class Invoice:
    """A customer invoice: its lines, tax rate, discount and lifecycle status."""

    invoice_id: str
    customer_id: str
    currency: str
    lines: list[InvoiceLine] = field(default_factory=list)
    tax_rate: Decimal = Decimal("0")
    discount: Decimal = Decimal("0")
    status: InvoiceStatus = InvoiceStatus.DRAFT

    def add_line(self, description: str, quantity: cur.AmountLike, unit_price: cur.AmountLike) -> InvoiceLine:
        """Append a line item; only draft invoices can be edited."""
        if self.status is not InvoiceStatus.DRAFT:
            raise InvoiceError(f"invoice {self.invoice_id} is {self.status.value} and cannot be edited")
        line = InvoiceLine(description, quantity, unit_price)  # type: ignore[arg-type]
        self.lines.append(line)
        return line

    def calculator(self) -> InvoiceCalculator:
        """Return a calculator configured with this invoice's currency and tax rate."""
        return InvoiceCalculator(self.currency, self.tax_rate)

    def subtotal(self) -> Decimal:
        """Return the sum of the rounded line totals, before discount and tax."""
        return self.calculator().subtotal(self.lines)

    def total(self) -> Decimal:
        """Return the amount due for this invoice."""
        return invoice_total(self.lines, self.currency, self.tax_rate, self.discount)

    def _transition(self, target: InvoiceStatus) -> None:
        if target not in _ALLOWED_TRANSITIONS[self.status]:
            raise InvoiceError(f"invoice {self.invoice_id}: cannot go from {self.status.value} to {target.value}")
        self.status = target

    def mark_issued(self) -> None:
        """Move a draft invoice to issued; it must have at least one line."""
        if not self.lines:
            raise InvoiceError(f"invoice {self.invoice_id} has no lines")
        self._transition(InvoiceStatus.ISSUED)

    def mark_paid(self) -> None:
        """Record that an issued invoice has been paid."""
        self._transition(InvoiceStatus.PAID)

    def void(self) -> None:
        """Cancel an invoice that has not been paid."""
        self._transition(InvoiceStatus.VOID)


def summarize_invoice(invoice: Invoice) -> dict[str, str]:
    """Return a display-ready summary of an invoice (amounts as strings) for the API and emails."""
    calculator = invoice.calculator()
    subtotal = calculator.subtotal(invoice.lines)
    discount = cur.round_minor_units(invoice.discount, invoice.currency)
    return {
        "invoice_id": invoice.invoice_id,
        "customer_id": invoice.customer_id,
        "currency": invoice.currency,
        "status": invoice.status.value,
        "lines": str(len(invoice.lines)),
        "subtotal": str(subtotal),
        "discount": str(discount),
        "tax": str(calculator.tax(subtotal - discount)),
        "total": str(invoice.total()),
        "display_total": cur.format_amount(invoice.total(), invoice.currency),
    }
