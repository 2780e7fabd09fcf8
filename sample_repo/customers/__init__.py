"""Customers: profiles, contact preferences, tiers and the customer service."""

from .models import ContactPreferences, Customer, CustomerTier
from .service import CustomerService
from .validation import InvalidCustomerError

__all__ = ["ContactPreferences", "Customer", "CustomerService", "CustomerTier", "InvalidCustomerError"]
