from __future__ import annotations

from dataclasses import dataclass

from ispbill.billing.choices import InvoiceStatus
from ispbill.billing.ledger import balance
from ispbill.billing.models import BillingSettings, Invoice
from ispbill.core.money import format_amount
from ispbill.subscribers.models import Subscriber


@dataclass
class DueInvoice:
    number: str
    period: str
    due_on: object
    amount_due: str


@dataclass
class PaymentPage:
    name: str
    username: str
    isp_name: str
    hotline: str
    invoices: list[DueInvoice]
    total_due: str
    credit: str
    gateways: list[dict]


def enabled_gateways() -> list[dict]:
    """Gateways a subscriber can pay through; each is offered only when configured."""
    return []


def payment_page(*, subscriber_id: int) -> PaymentPage:
    sub = Subscriber.objects.get(pk=subscriber_id)
    settings = BillingSettings.load()
    invoices = list(
        Invoice.objects.filter(subscriber_id=subscriber_id, status__in=(InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID))
        .order_by("due_on", "id")
    )
    bal = balance(subscriber_id)
    return PaymentPage(
        name=sub.name, username=sub.pppoe_username, isp_name=settings.isp_name, hotline=settings.hotline,
        invoices=[
            DueInvoice(i.number, f"{i.period_start:%d %b} – {i.period_end:%d %b %Y}", i.due_on, format_amount(i.amount_due_paisa))
            for i in invoices
        ],
        total_due=format_amount(max(bal, 0)), credit=format_amount(-bal) if bal < 0 else "",
        gateways=enabled_gateways(),
    )
