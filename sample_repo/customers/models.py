"""Customer data model: the customer profile, its tier and its contact preferences."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class CustomerTier(str, Enum):
    """Commercial tier of a customer; decides the credit limit and support level."""

    STANDARD = "standard"
    GOLD = "gold"
    ENTERPRISE = "enterprise"


@dataclass
class ContactPreferences:
    """Which channels a customer agreed to be contacted on."""

    email: bool = True
    sms: bool = False

    def allows(self, channel: str) -> bool:
        """Tell whether the customer opted in to ``channel`` ("email" or "sms")."""
        return bool(getattr(self, channel, False))


@dataclass
class Customer:
    """A billed customer: identity, contact details, billing currency and region."""

    customer_id: str
    name: str
    email: str
    phone: str | None = None
    currency: str = "USD"
    region: str = "US-CA"
    tier: CustomerTier = CustomerTier.STANDARD
    preferences: ContactPreferences = field(default_factory=ContactPreferences)

    @property
    def first_name(self) -> str:
        """The first word of the customer's name, used in greetings."""
        return self.name.split()[0] if self.name.strip() else self.name

    def can_be_contacted(self, channel: str) -> bool:
        """Tell whether we may message the customer on ``channel`` and have an address for it."""
        address = self.email if channel == "email" else self.phone
        return bool(address) and self.preferences.allows(channel)
