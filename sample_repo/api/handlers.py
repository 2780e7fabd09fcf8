"""API handlers for customers, invoices, refunds and balances, registered on the router."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from customers.models import Customer
from notifications import sms as sms_notifications
from notifications.email import send_invoice_issued, send_refund_issued
from payments import invoices as inv
from payments.currency import format_amount as fmt
from payments.ledger import LedgerEntry
from payments.money import Money
from payments.tax import tax_rate_for
from storage.ids import new_id

from .middleware import handle_errors, parse_amount, require_fields
from .requests import Request, Response, json_ok
from .routing import Router

if TYPE_CHECKING:
    from .app import Services

router = Router()


def customer_to_dict(customer: Customer) -> dict[str, Any]:
    """Serialise a customer for API responses (phone numbers are not returned)."""
    return {
        "customer_id": customer.customer_id,
        "name": customer.name,
        "email": customer.email,
        "currency": customer.currency,
        "region": customer.region,
        "tier": customer.tier.value,
        "sms_opt_in": customer.preferences.sms,
    }


def refund_to_dict(entry: LedgerEntry) -> dict[str, Any]:
    """Serialise a refund ledger entry for API responses."""
    return {
        "refund_id": entry.entry_id,
        "invoice_id": entry.reference,
        "amount": str(entry.amount.amount),
        "currency": entry.amount.currency,
        "display_amount": fmt(entry.amount.amount, entry.amount.currency),
        "reason": entry.memo,
    }


@router.route("POST", "/customers")
@handle_errors
@require_fields("name", "email")
def create_customer(request: Request, services: "Services") -> Response:
    """Register a new customer and text them a welcome message if they opted in to SMS."""
    body = request.body
    customer = services.customers.register(
        name=body["name"],
        email=body["email"],
        phone=body.get("phone"),
        currency=body.get("currency", "USD"),
        region=body.get("region", "US-CA"),
        sms_opt_in=bool(body.get("sms_opt_in", False)),
    )
    if customer.can_be_contacted("sms") and customer.phone:
        sms_notifications.send_welcome_sms(services.sms, phone=customer.phone, customer_name=customer.name)
    return json_ok(customer_to_dict(customer), status=201)


@router.route("GET", "/customers/{customer_id}")
@handle_errors
def get_customer(request: Request, services: "Services") -> Response:
    """Return one customer's profile."""
    return json_ok(customer_to_dict(services.customers.get(request.params["customer_id"])))


@router.route("POST", "/invoices")
@handle_errors
@require_fields("customer_id", "lines")
def create_invoice(request: Request, services: "Services") -> Response:
    """Create an invoice from line items, charge its total to the ledger and email the customer."""
    customer = services.customers.get(request.body["customer_id"])
    invoice = inv.Invoice(
        invoice_id=new_id("inv"),
        customer_id=customer.customer_id,
        currency=customer.currency,
        tax_rate=tax_rate_for(customer.region),
        discount=parse_amount(request.body.get("discount", "0"), "discount"),
    )
    for line in request.body["lines"]:
        invoice.add_line(
            line.get("description", "item"),
            parse_amount(line.get("quantity", 1), "quantity"),
            parse_amount(line.get("unit_price"), "unit_price"),
        )
    invoice.mark_issued()
    total = invoice.total()
    services.ledger.record_charge(customer.customer_id, Money(total, invoice.currency), invoice.invoice_id, "invoice")
    invoice.mark_paid()
    services.invoices.add(invoice)
    if customer.can_be_contacted("email"):
        send_invoice_issued(
            services.email,
            recipient=customer.email,
            customer_name=customer.name,
            invoice_id=invoice.invoice_id,
            total=total,
            currency=invoice.currency,
        )
    return json_ok(inv.summarize_invoice(invoice), status=201)


@router.route("GET", "/invoices/{invoice_id}")
@handle_errors
def get_invoice(request: Request, services: "Services") -> Response:
    """Return the summary of one invoice."""
    return json_ok(inv.summarize_invoice(services.invoices.get(request.params["invoice_id"])))


@router.route("POST", "/refunds")
@handle_errors
@require_fields("invoice_id")
def create_refund(request: Request, services: "Services") -> Response:
    """Refund all or part of a paid invoice and notify the customer by email and SMS."""
    body = request.body
    amount = parse_amount(body["amount"], "amount") if body.get("amount") is not None else None
    entry = services.refunds.issue_refund(body["invoice_id"], amount, reason=body.get("reason", ""))
    customer = services.customers.get(entry.account_id)
    refunded = entry.amount
    if customer.can_be_contacted("email"):
        send_refund_issued(
            services.email,
            recipient=customer.email,
            customer_name=customer.name,
            amount=refunded.amount,
            currency=refunded.currency,
            reference=entry.reference,
        )
    if customer.can_be_contacted("sms") and customer.phone:
        sms_notifications.send_refund_sms(
            services.sms, phone=customer.phone, amount=refunded.amount, currency=refunded.currency, reference=entry.reference
        )
    return json_ok(refund_to_dict(entry), status=201)


@router.route("GET", "/accounts/{customer_id}/balance")
@handle_errors
def get_balance(request: Request, services: "Services") -> Response:
    """Return the net amount collected from a customer (charges minus refunds)."""
    customer = services.customers.get(request.params["customer_id"])
    balance = services.ledger.balance(customer.customer_id, customer.currency)
    return json_ok(
        {
            "customer_id": customer.customer_id,
            "currency": balance.currency,
            "balance": str(balance.amount),
            "display_balance": str(balance),
        }
    )
