"""Exception hierarchy for money-moving operations in the payments package."""

from __future__ import annotations


class PaymentError(Exception):
    """Base class for every error raised by the payments package."""

    code: str = "payment_error"


class UnsupportedCurrencyError(PaymentError):
    """Raised for a currency code the service does not bill in."""

    code = "unsupported_currency"


class CurrencyMismatchError(PaymentError):
    """Raised when two amounts in different currencies are combined."""

    code = "currency_mismatch"


class MissingRateError(PaymentError):
    """Raised when no exchange rate is known between two currencies."""

    code = "missing_rate"


class LedgerError(PaymentError):
    """Raised when a ledger posting is invalid (zero amount, duplicate charge, ...)."""

    code = "ledger_error"


class RefundError(PaymentError):
    """Raised when a refund is not allowed: unknown charge, too large, outside the window."""

    code = "refund_rejected"


class InvoiceError(PaymentError):
    """Raised for invalid invoices: bad lines, illegal status changes, oversized discounts."""

    code = "invoice_error"
