"""Steps of a gateway payment as a subscriber takes them, and what tests check after."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlencode

from ispbill.billing import ledger
from ispbill.billing.models import Invoice, LedgerEntry
from ispbill.notifications.models import Message
from ispbill.payments.models import InboundWebhook, Payment, PaymentAttempt

from .conftest import forward

RECEIVED = "Payment received, thank you"
NOT_COMPLETED = "Payment not completed"
CONFIRMING = "We are confirming your payment"


def start(client, token: str, gateway: str):
    """Press "Pay with <gateway>" on the payment page; returns the gateway URL (303)."""
    response = client.post(f"/pay/{token}/start", {"gateway": gateway})
    assert response.status_code == 303, (response.status_code, response.content[:500])
    return response["Location"]


def press(browser, url: str, label: str = "Pay", **fields):
    """On the gateway's hosted page, press ``label``; the gateway sends the browser back
    to our public URL (recorded by the receiver)."""
    return browser.back_to_merchant(browser.press(url, label, **fields))


def returned(client, receiver, path: str):
    """Hand the browser's (last) return to ``path`` to our routes; returns the page."""
    requests = receiver.received(path)
    assert requests, f"nothing came back to {path}"
    return forward(client, requests[-1])


def post_form(client, path: str, fields: dict):
    """POST ``fields`` form-encoded, as gateways and browsers do."""
    return client.post(path, urlencode(fields), content_type="application/x-www-form-urlencoded")


def page_text(response) -> str:
    return response.content.decode()


def ipn(receiver):
    (request,) = receiver.received("/webhooks/sslcommerz/ipn")
    return request


def paid_with(gateway: str, client, world, receiver, browser) -> Payment:
    """World's subscriber pays November's 1000.00 through ``gateway``: the hosted page's
    Pay, then the IPN (SSLCommerz) or the browser's return (bKash, Nagad); returns the
    payment that made (credited, or held for review)."""
    url = start(client, world.token(), gateway)
    press(browser, url, "Pay")
    if gateway == "sslcommerz":
        forward(client, ipn(receiver))
    else:
        returned(client, receiver, f"/pay/{gateway}/callback")
    return Payment.objects.filter(gateway=gateway).latest("pk")


def completed_payments() -> list[Payment]:
    return list(Payment.objects.filter(status="completed"))


def assert_paid_once(sub, *, gateway: str, amount_paisa: int = 100_000, method_label: str | None = None) -> Payment:
    """One completed payment for ``sub`` through ``gateway``, allocated, receipted."""
    (payment,) = Payment.objects.all()
    assert (payment.status, payment.gateway, payment.subscriber_id, payment.amount_paisa) == (
        "completed", gateway, sub.pk, amount_paisa,
    )
    assert payment.transaction_id
    if method_label is not None:
        assert payment.method_label == method_label
    credits = LedgerEntry.objects.filter(payment=payment)
    assert sum(e.amount_paisa for e in credits) == -amount_paisa
    (invoice,) = Invoice.objects.filter(subscriber=sub)
    assert (invoice.amount_due_paisa, invoice.status) == (0, "paid")
    receipts = Message.objects.filter(payment=payment, kind="receipt")
    assert sorted(receipts.values_list("channel", flat=True)) == ["email", "sms"]
    attempt = PaymentAttempt.objects.get(payment=payment)
    assert attempt.status == "completed"
    assert ledger.ledger_discrepancies() == []
    return payment


def assert_nothing_credited(sub) -> None:
    assert not Payment.objects.filter(status="completed").exists()
    assert not LedgerEntry.objects.filter(kind="payment").exists()
    assert ledger.balance(sub.pk) == 100_000
    assert not Message.objects.filter(kind="receipt").exists()
    assert ledger.ledger_discrepancies() == []


def last_webhook(**filters) -> InboundWebhook:
    return InboundWebhook.objects.filter(**filters).order_by("-id").first()


class _Buttons(HTMLParser):
    def __init__(self):
        super().__init__()
        self.labels: list[str] = []
        self._in = False

    def handle_starttag(self, tag, attrs):
        self._in = tag == "button"
        if self._in:
            self.labels.append("")

    def handle_data(self, data):
        if self._in:
            self.labels[-1] += data

    def handle_endtag(self, tag):
        self._in = False


def buttons(html: str) -> list[str]:
    parser = _Buttons()
    parser.feed(html)
    return [label.strip() for label in parser.labels]
