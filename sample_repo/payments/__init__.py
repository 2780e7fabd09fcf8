"""Payments: money, currency rounding, the ledger, invoices and refunds (high-risk code).

This module is the package's public API. Code outside ``payments`` that is not
the ``api`` layer (notably ``notifications``) may import only names listed here.
"""

from .currency import format_amount, round_minor_units, to_minor_units
from .errors import PaymentError, RefundError
from .invoices import Invoice, InvoiceCalculator, invoice_total
from .ledger import Ledger
from .money import Money
from .refunds import RefundService

__all__ = [
    "Invoice",
    "InvoiceCalculator",
    "Ledger",
    "Money",
    "PaymentError",
    "RefundError",
    "RefundService",
    "format_amount",
    "invoice_total",
    "round_minor_units",
    "to_minor_units",
]
