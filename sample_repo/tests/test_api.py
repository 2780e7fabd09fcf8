from api import BillingApp, Request
from api.handlers import router


def test_routes_are_registered() -> None:
    assert ("POST", "/invoices") in router.routes()
    assert ("GET", "/accounts/{customer_id}/balance") in router.routes()


def test_create_customer_validates_required_fields(app: BillingApp) -> None:
    response = app.call("POST", "/customers", {"name": "No Email"})
    assert response.status == 400
    assert response.body["error"]["code"] == "missing_fields"


def test_invoice_refund_and_balance_flow(app: BillingApp, customer_id: str) -> None:
    invoice = app.call(
        "POST",
        "/invoices",
        {"customer_id": customer_id, "lines": [{"description": "Seats", "quantity": 3, "unit_price": "19.99"}]},
    )
    assert invoice.status == 201, invoice.body
    # US-CA tax: 59.97 * 0.0725 = 4.3478... -> 4.35
    assert invoice.body["total"] == "64.32"
    refund = app.call("POST", "/refunds", {"invoice_id": invoice.body["invoice_id"], "amount": "14.32"})
    assert refund.status == 201, refund.body
    balance = app.call("GET", f"/accounts/{customer_id}/balance")
    assert balance.body["balance"] == "50.00"
    templates = [n.template for n in app.services.outbox.sent()]
    assert templates == ["welcome.sms", "invoice_issued", "refund_issued", "refund_issued.sms"]


def test_float_amounts_are_rejected(app: BillingApp, customer_id: str) -> None:
    response = app.call(
        "POST", "/invoices", {"customer_id": customer_id, "lines": [{"description": "x", "unit_price": 0.1}]}
    )
    assert response.status == 400
    assert "string" in response.body["error"]["message"]


def test_over_refund_is_unprocessable(app: BillingApp, customer_id: str) -> None:
    invoice = app.call(
        "POST", "/invoices", {"customer_id": customer_id, "lines": [{"description": "x", "unit_price": "10.00"}]}
    )
    response = app.call("POST", "/refunds", {"invoice_id": invoice.body["invoice_id"], "amount": "999.00"})
    assert response.status == 422
    assert response.body["error"]["code"] == "refund_rejected"


def test_unknown_routes_and_records(app: BillingApp) -> None:
    assert app.handle(Request("GET", "/nope")).status == 404
    assert app.call("DELETE", "/invoices").status == 405
    assert app.call("GET", "/customers/cus_999999").status == 404
