from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ispbill.billing.choices import InvoiceStatus
from ispbill.billing.ledger import balance
from ispbill.billing.models import BillingSettings, Invoice
from ispbill.core.money import format_amount
from ispbill.network.models import NetworkState
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
    """Gateways a subscriber can pay through (``{"name", "label"}``); each is offered only
    when its environment variables are set."""
    from ispbill.payments.gateway_services import enabled_gateways as configured

    return configured()


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


# An address the reconcile job has not confirmed for this long no longer identifies anyone
# on the captive page: it may have gone back to the pool and on to someone else.
CAPTIVE_ADDRESS_MAX_AGE = timedelta(hours=1)


def subscriber_at_address(*, address: str, now: datetime) -> int | None:
    """The one subscriber whose session address (as last seen on their router) is
    ``address``; None when nobody or more than one subscriber has it."""
    if not address:
        return None
    ids = list(
        NetworkState.objects.filter(address=address, address_seen_at__gte=now - CAPTIVE_ADDRESS_MAX_AGE)
        .values_list("subscriber_id", flat=True)[:2]
    )
    return ids[0] if len(ids) == 1 else None


@dataclass
class IspContact:
    isp_name: str
    hotline: str


def isp_contact() -> IspContact:
    settings = BillingSettings.load()
    return IspContact(isp_name=settings.isp_name, hotline=settings.hotline)


def service_suspended(*, subscriber_id: int) -> bool:
    """Whether billing wants the subscriber's service cut off now."""
    status = Subscriber.objects.filter(pk=subscriber_id).values_list("status", flat=True).first()
    desired = NetworkState.objects.filter(subscriber_id=subscriber_id).values_list("desired", flat=True).first()
    return status in ("suspended", "disabled") or desired == "suspended"
