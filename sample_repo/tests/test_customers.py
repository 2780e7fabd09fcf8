from decimal import Decimal

import pytest

from customers import CustomerService, CustomerTier, InvalidCustomerError
from customers.validation import normalize_phone, validate_email
from storage import InMemoryRepository, NotFoundError, new_id


def test_register_normalises_contact_details() -> None:
    service = CustomerService()
    customer = service.register("  Ada Lovelace ", "Ada@Example.COM", phone="0044 20 7946 0958", sms_opt_in=True)
    assert customer.email == "ada@example.com"
    assert customer.phone == "+442079460958"
    assert customer.first_name == "Ada"
    assert customer.can_be_contacted("sms")


def test_duplicate_email_and_bad_input_are_rejected() -> None:
    service = CustomerService()
    service.register("Ada", "ada@example.com")
    with pytest.raises(InvalidCustomerError):
        service.register("Ada Again", "ADA@example.com")
    with pytest.raises(InvalidCustomerError):
        validate_email("not-an-email")
    with pytest.raises(InvalidCustomerError):
        normalize_phone("12")
    with pytest.raises(InvalidCustomerError):
        service.register("Bob", "bob@example.com", region="ZZ")


def test_credit_limit_follows_tier_and_downgrades_are_refused() -> None:
    service = CustomerService()
    customer = service.register("Ada", "ada@example.com")
    assert service.credit_limit(customer.customer_id) == Decimal("1000.00")
    service.upgrade_tier(customer.customer_id, CustomerTier.GOLD)
    assert service.credit_limit(customer.customer_id) == Decimal("10000.00")
    with pytest.raises(InvalidCustomerError):
        service.upgrade_tier(customer.customer_id, CustomerTier.STANDARD)


def test_in_memory_repository_basics() -> None:
    repo: InMemoryRepository[dict] = InMemoryRepository(key=lambda item: item["id"], kind="widget")
    repo.add({"id": "a", "n": 1})
    repo.add({"id": "b", "n": 2})
    with pytest.raises(ValueError):
        repo.add({"id": "a", "n": 3})
    repo.update({"id": "a", "n": 10})
    assert [item["n"] for item in repo] == [10, 2]
    repo.delete("b")
    assert repo.get_or_none("b") is None
    with pytest.raises(NotFoundError, match="widget 'b' not found"):
        repo.get("b")
    assert new_id("tst").startswith("tst_")
