"""The demo loader: believable data, built through the services, consistent with the ledger."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.db import transaction

from ispbill.billing import ledger
from ispbill.billing.choices import InvoiceKind, InvoiceStatus
from ispbill.billing.models import CreditNote, Invoice, LedgerEntry, PackageChange
from ispbill.core.timeutil import local_date
from ispbill.demo.data import ADMIN_PASSWORD, ADMIN_USERNAME, load_demo
from ispbill.payments.models import Payment
from ispbill.plans.models import Package
from ispbill.subscribers.choices import SubscriberStatus
from ispbill.subscribers.models import Subscriber

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 12:00 in Dhaka


@pytest.fixture
def demo(db):
    out = io.StringIO()
    result = load_demo(now=NOW, stdout=out)
    return result, out.getvalue()


def _counts() -> tuple[int, ...]:
    return tuple(
        model.objects.count() for model in (Package, Subscriber, Invoice, Payment, CreditNote, LedgerEntry, PackageChange)
    )


def test_loads_about_fifty_subscribers_in_every_status(demo):
    result, output = demo
    assert not result.skipped
    assert result.packages == Package.objects.count() >= 4
    assert result.subscribers == Subscriber.objects.count()
    assert 45 <= result.subscribers <= 55
    statuses = set(Subscriber.objects.values_list("status", flat=True))
    assert statuses == {SubscriberStatus.ACTIVE, SubscriberStatus.SUSPENDED, SubscriberStatus.DISABLED}
    assert Subscriber.objects.filter(status=SubscriberStatus.DISABLED).count() == 2
    assert Subscriber.objects.filter(status=SubscriberStatus.ACTIVE).count() > result.subscribers // 2
    assert result.invoices == Invoice.objects.count() > 0
    assert result.payments == Payment.objects.count() > 0
    assert "Demo data loaded" in output


def test_every_balance_follows_from_the_ledger(demo):
    assert ledger.ledger_discrepancies() == []


def test_invoices_in_every_state(demo):
    statuses = set(Invoice.objects.values_list("status", flat=True))
    assert {InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID, InvoiceStatus.PAID} <= statuses
    today = local_date(NOW)
    open_ = Invoice.objects.filter(status__in=ledger.OPEN_STATUSES)
    assert open_.filter(due_on__gte=today).exists(), "an open invoice not yet due"
    assert open_.filter(due_on__lt=today).exists(), "an overdue invoice"
    assert Invoice.objects.filter(kind=InvoiceKind.ADJUSTMENT).exists(), "the upgrade's invoice"
    # Nothing is dated after the moment the demo was loaded.
    assert not Invoice.objects.filter(issued_on__gt=today).exists()
    assert not Invoice.objects.filter(issued_at__gt=NOW).exists()
    assert not Payment.objects.filter(received_at__gt=NOW).exists()


def test_the_stories_worth_showing_are_there(demo):
    subs = list(Subscriber.objects.all())
    assert any(ledger.balance(s.pk) < 0 for s in subs), "someone holds a credit"
    assert any(s.never_suspend for s in subs)
    assert any(s.grace_days_override is not None for s in subs)
    assert any(s.pppoe_username.isdigit() for s in subs)
    assert sum(bool(s.email) for s in subs) >= 3
    assert all(s.phone.startswith("+8801") and len(s.phone) == 14 for s in subs)
    assert len({s.phone for s in subs}) == len(subs)
    assert PackageChange.objects.filter(invoice__isnull=False).exists(), "an upgrade"
    assert PackageChange.objects.filter(credit_note__isnull=False).exists(), "a downgrade"
    assert CreditNote.objects.filter(reason__startswith="Compensation").exists()
    prorated = Invoice.objects.filter(lines__kind="proration_charge", kind=InvoiceKind.RECURRING)
    assert prorated.values("subscriber").distinct().count() >= 2


def test_the_same_now_gives_the_same_data(db):
    class Rollback(Exception):
        pass

    def snapshot():
        try:
            with transaction.atomic():
                load_demo(now=NOW)
                rows = list(
                    Subscriber.objects.order_by("pppoe_username").values_list(
                        "pppoe_username", "name", "phone", "status", "activated_on"
                    )
                )
                rows.append(tuple(Invoice.objects.order_by("number").values_list("number", "total_paisa", "status")))
                raise Rollback
        except Rollback:
            return rows

    assert snapshot() == snapshot()


def test_a_second_load_into_a_full_database_is_skipped(demo):
    before = _counts()
    result = load_demo(now=NOW, if_empty=True)
    assert result.skipped
    assert (result.packages, result.subscribers, result.invoices, result.payments) == (0, 0, 0, 0)
    assert _counts() == before


def test_the_admin_can_sign_in(demo):
    result, output = demo
    assert (result.admin_username, result.admin_password) == (ADMIN_USERNAME, ADMIN_PASSWORD)
    user = authenticate(username=ADMIN_USERNAME, password=ADMIN_PASSWORD)
    assert user is not None and user.is_staff and user.is_superuser
    assert ADMIN_PASSWORD in output


def test_a_failure_leaves_the_database_empty(db, monkeypatch):
    from ispbill.demo import data

    def broken(**kwargs):
        raise RuntimeError("gateway down")

    monkeypatch.setattr(data, "record_payment", broken)
    with pytest.raises(RuntimeError):
        load_demo(now=NOW)
    assert _counts() == (0,) * 7
    assert not get_user_model().objects.exists()
    assert not Subscriber.objects.exists()
