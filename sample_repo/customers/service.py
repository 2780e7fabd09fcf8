"""Customer service: registering customers, updating preferences and looking up credit limits."""

from __future__ import annotations

from decimal import Decimal

from storage.ids import new_id
from storage.repository import InMemoryRepository, Repository

from . import validation as v
from .models import ContactPreferences, Customer, CustomerTier

#: Maximum outstanding amount per tier, in the customer's billing currency.
CREDIT_LIMITS: dict[CustomerTier, Decimal] = {
    CustomerTier.STANDARD: Decimal("1000.00"),
    CustomerTier.GOLD: Decimal("10000.00"),
    CustomerTier.ENTERPRISE: Decimal("250000.00"),
}


class CustomerService:
    """Creates and updates customers, stored in a repository keyed by customer id."""

    def __init__(self, repository: Repository[Customer] | None = None) -> None:
        self._customers: Repository[Customer] = (
            repository
            if repository is not None
            else InMemoryRepository(key=lambda customer: customer.customer_id, kind="customer")
        )

    def register(
        self,
        name: str,
        email: str,
        phone: str | None = None,
        currency: str = "USD",
        region: str = "US-CA",
        tier: CustomerTier = CustomerTier.STANDARD,
        sms_opt_in: bool = False,
    ) -> Customer:
        """Validate and store a new customer; email addresses must be unique."""
        if not name.strip():
            raise v.InvalidCustomerError("customer name is required")
        clean_email = v.validate_email(email)
        if self.find_by_email(clean_email) is not None:
            raise v.InvalidCustomerError(f"a customer with email {clean_email} already exists")
        customer = Customer(
            customer_id=new_id("cus"),
            name=name.strip(),
            email=clean_email,
            phone=v.normalize_phone(phone) if phone else None,
            currency=v.validate_currency(currency),
            region=v.validate_region(region),
            tier=tier,
            preferences=ContactPreferences(email=True, sms=sms_opt_in and bool(phone)),
        )
        return self._customers.add(customer)

    def get(self, customer_id: str) -> Customer:
        """Return a customer by id, raising ``NotFoundError`` if unknown."""
        return self._customers.get(customer_id)

    def find_by_email(self, email: str) -> Customer | None:
        """Return the customer registered with ``email``, if any."""
        wanted = email.strip().lower()
        matches = self._customers.find(lambda customer: customer.email == wanted)
        return matches[0] if matches else None

    def update_preferences(self, customer_id: str, *, email: bool | None = None, sms: bool | None = None) -> Customer:
        """Change which channels a customer may be contacted on."""
        customer = self.get(customer_id)
        if email is not None:
            customer.preferences.email = email
        if sms is not None:
            if sms and not customer.phone:
                raise v.InvalidCustomerError("cannot opt in to SMS without a phone number")
            customer.preferences.sms = sms
        return self._customers.update(customer)

    def upgrade_tier(self, customer_id: str, tier: CustomerTier) -> Customer:
        """Move a customer to a higher tier; downgrades go through account management."""
        customer = self.get(customer_id)
        order = list(CustomerTier)
        if order.index(tier) < order.index(customer.tier):
            raise v.InvalidCustomerError("tier downgrades are not allowed here")
        customer.tier = tier
        return self._customers.update(customer)

    def credit_limit(self, customer_id: str) -> Decimal:
        """Return the credit limit of a customer, from their tier."""
        return CREDIT_LIMITS[self.get(customer_id).tier]
