from decimal import Decimal

import pytest

from notifications import EmailNotifier, Outbox, SmsNotifier, TemplateNotFoundError, TemplateRenderer
from notifications.email import send_invoice_issued
from notifications.formatting import truncate_sms
from notifications.renderer import split_subject


def test_every_template_renders_with_its_placeholders() -> None:
    renderer = TemplateRenderer()
    context = {"first_name": "Ada", "invoice_id": "inv_1", "total": "$1.00", "amount": "$1.00", "reference": "inv_1"}
    names = renderer.available()
    assert {"invoice_issued", "refund_issued", "payment_failed", "welcome.sms"} <= set(names)
    for name in names:
        assert "$" not in renderer.render(name, context).replace("$1.00", "")


def test_email_has_subject_and_formatted_total() -> None:
    outbox = Outbox()
    notifier = EmailNotifier(outbox=outbox)
    sent = send_invoice_issued(
        notifier, recipient="ada@example.com", customer_name="Ada Lovelace", invoice_id="inv_7",
        total=Decimal("1234.5"), currency="USD",
    )
    assert sent.subject == "Your invoice inv_7 is ready"
    assert "Hi Ada," in sent.body
    assert "$1,234.50" in sent.body
    assert outbox.last() == sent


def test_sms_is_truncated_to_one_segment() -> None:
    notifier = SmsNotifier(limit=40)
    sent = notifier.send("+14155550100", "welcome.sms", {"first_name": "Grace"})
    assert len(sent.body) <= 40
    assert sent.body.endswith("...")
    assert sent.subject == ""
    assert truncate_sms("short  message\n") == "short message"


def test_missing_template_and_missing_placeholder_fail_clearly() -> None:
    renderer = TemplateRenderer()
    with pytest.raises(TemplateNotFoundError):
        renderer.load("does_not_exist")
    with pytest.raises(ValueError, match="invoice_id"):
        renderer.render("invoice_issued", {"first_name": "Ada", "total": "$1.00"})
    assert split_subject("no subject here") == ("", "no subject here")


def test_notifications_import_only_the_public_payments_api() -> None:
    """AGENTS.md: notifications must not import payments internals (payments.ledger, ...)."""
    import ast
    from pathlib import Path

    import notifications

    package_dir = Path(notifications.__file__).parent
    for path in package_dir.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                assert not node.module.startswith("payments."), f"{path.name} imports {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("payments."), f"{path.name} imports {alias.name}"
