"""Text formatting helpers shared by email and SMS: amounts, names, SMS truncation."""

from __future__ import annotations

from decimal import Decimal

from payments import format_amount as _format_amount  # public payments API only

SMS_LIMIT = 160
ELLIPSIS = "..."


def display_amount(amount: Decimal | str, currency: str) -> str:
    """Format an amount for a customer-facing message, e.g. ``$1,234.50``."""
    return _format_amount(amount, currency)


def first_name(full_name: str) -> str:
    """Return the first word of a name for greetings, or "there" when the name is empty."""
    parts = full_name.split()
    return parts[0] if parts else "there"


def truncate_sms(text: str, limit: int = SMS_LIMIT) -> str:
    """Collapse whitespace and cut a message to fit one SMS, ending with an ellipsis if cut."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[: limit - len(ELLIPSIS)].rstrip() + ELLIPSIS
