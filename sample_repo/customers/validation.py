"""Validation and normalisation of customer input: emails, phone numbers, regions."""

from __future__ import annotations

import re

from payments import tax as tax_rules
from payments.currency import MINOR_UNIT_EXPONENTS

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)


class InvalidCustomerError(ValueError):
    """Raised when customer input fails validation."""


def validate_email(email: str) -> str:
    """Return the email address trimmed and lower-cased, or raise if it is malformed."""
    candidate = email.strip().lower()
    if not _EMAIL_RE.match(candidate):
        raise InvalidCustomerError(f"invalid email address: {email!r}")
    return candidate


def normalize_phone(phone: str) -> str:
    """Return a phone number in E.164 form (``+`` and 8 to 15 digits), or raise."""
    digits = re.sub(r"\D", "", phone)
    if phone.strip().startswith("00"):
        digits = digits[2:]
    if not 8 <= len(digits) <= 15:
        raise InvalidCustomerError(f"invalid phone number: {phone!r}")
    return f"+{digits}"


def validate_region(region: str) -> str:
    """Return the upper-cased billing region, or raise if we cannot tax it."""
    if not tax_rules.is_supported_region(region):
        raise InvalidCustomerError(f"unsupported billing region: {region!r}")
    return region.upper()


def validate_currency(currency: str) -> str:
    """Return the upper-cased billing currency, or raise if we do not bill in it."""
    code = currency.strip().upper()
    if code not in MINOR_UNIT_EXPONENTS:
        raise InvalidCustomerError(f"unsupported billing currency: {currency!r}")
    return code
