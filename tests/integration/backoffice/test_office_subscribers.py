"""The subscribers list and detail page, and what each action does."""

from __future__ import annotations

from datetime import date

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ispbill.backoffice.selectors import PAGE_SIZE
from ispbill.billing.models import Invoice
from ispbill.billing.services import change_package
from ispbill.network.models import EnforcementAction
from ispbill.notifications.models import Message
from ispbill.payments.models import Payment
from ispbill.subscribers.models import Subscriber

from ..billing.billing_support import make_subscriber
from .office_support import row_counts

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("params", [{}, {"q": "user", "status": "active", "area": "Mirpur", "overdue": "1"}])
def test_list_page_does_the_same_number_of_queries_for_5_and_50_subscribers(world, client_for, params):
    client = client_for("viewer")
    counts = []
    for n in (5, 50):
        for _ in range(n - Subscriber.objects.count()):
            make_subscriber(world["basic"], date(2026, 11, 1), area="Mirpur")
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/office/subscribers/", params).status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 12


def test_list_pages_by_keyset(world, client_for):
    for _ in range(PAGE_SIZE + 4):
        make_subscriber(world["basic"], date(2026, 11, 1))
    client = client_for("viewer")
    first = client.get("/office/subscribers/")
    page = first.context["page"]
    assert len(page.rows) == PAGE_SIZE and page.next_after == page.rows[-1].pk and page.count == PAGE_SIZE + 5
    second = client.get("/office/subscribers/", {"after": page.next_after}).context["page"]
    assert len(second.rows) == 5 and second.next_after is None and second.prev_before == second.rows[0].pk
    back = client.get("/office/subscribers/", {"before": second.prev_before}).context["page"]
    assert [s.pk for s in back.rows] == [s.pk for s in page.rows]


def test_list_filters(world, client_for):
    other = make_subscriber(world["premium"], date(2026, 11, 24), area="Uttara")
    Subscriber.objects.filter(pk=other.pk).update(name="Karim Mia")
    client = client_for("viewer")
    names = lambda **q: {s.pk for s in client.get("/office/subscribers/", q).context["page"].rows}  # noqa: E731
    sub = world["sub"]
    assert names(q="karim") == {other.pk}
    assert names(q=other.phone[-6:]) == {other.pk}
    assert names(q=sub.pppoe_username) == {sub.pk}
    assert names(area="Uttara") == {other.pk}
    assert names(package=world["premium"].pk) == {other.pk}
    assert names(overdue="1") == {sub.pk}  # billed 1 Nov, unpaid on 25 Nov
    assert names(status="suspended") == set()


def test_detail_page_shows_profile_balance_and_history(world, client_for):
    sub = world["sub"]
    html = client_for("viewer").get(f"/office/subscribers/{sub.pk}/").content.decode()
    invoice = Invoice.objects.get(subscriber=sub)
    assert sub.pppoe_username in html and invoice.number in html
    assert "৳ 1,000.00" in html  # balance and invoice total
    # A viewer sees no action forms.
    assert 'method="post" action="/office/subscribers' not in html


def test_unknown_subscriber_is_404(world, client_for):
    assert client_for("admin").get("/office/subscribers/999999/").status_code == 404


def test_record_payment_allocates_and_a_double_submit_records_once(world, client_for):
    client = client_for("billing")
    sub = world["sub"]
    form = {"amount": "1000.00", "method": "cash", "reference": "R-1", "key": "office-abc"}
    first = client.post(f"/office/subscribers/{sub.pk}/payments", form, follow=True)
    assert "Payment of ৳ 1,000.00 recorded." in first.content.decode()
    again = client.post(f"/office/subscribers/{sub.pk}/payments", form, follow=True)
    assert "already recorded" in again.content.decode()
    assert Payment.objects.filter(subscriber=sub).count() == 1
    assert Invoice.objects.get(subscriber=sub).status == "paid"


@pytest.mark.parametrize("amount", ["0", "-5", "12.345", "abc"])
def test_bad_payment_amounts_are_messages_not_errors(world, client_for, amount):
    response = client_for("billing").post(
        f"/office/subscribers/{world['sub'].pk}/payments", {"amount": amount, "method": "cash", "key": "k"}, follow=True
    )
    assert response.status_code == 200
    assert "Amount:" in response.content.decode()
    assert not Payment.objects.exists()


def test_suspend_and_restore_by_hand_keep_the_reason(world, client_for):
    client = client_for("support")
    sub = world["sub"]
    client.post(f"/office/subscribers/{sub.pk}/status", {"action": "suspend", "reason": "owner asked"})
    assert Subscriber.objects.get(pk=sub.pk).status == "suspended"
    action = EnforcementAction.objects.get(subscriber=sub, action="suspend")
    assert action.reason == "staff" and "owner asked" in action.note
    page = client.post(f"/office/subscribers/{sub.pk}/status", {"action": "restore", "reason": "sorted"}, follow=True)
    assert Subscriber.objects.get(pk=sub.pk).status == "active"
    assert "sorted" in page.content.decode()


def test_refused_status_changes_are_messages(world, client_for):
    client = client_for("support")
    sub = world["sub"]
    restore = client.post(f"/office/subscribers/{sub.pk}/status", {"action": "restore", "reason": "x"}, follow=True)
    assert restore.status_code == 200 and "cannot restore a subscriber who is active" in restore.content.decode()
    no_reason = client.post(f"/office/subscribers/{sub.pk}/status", {"action": "suspend", "reason": ""}, follow=True)
    assert no_reason.status_code == 200 and "Reason:" in no_reason.content.decode()
    assert Subscriber.objects.get(pk=sub.pk).status == "active"


def test_disable_and_exempt(world, client_for):
    client = client_for("admin")
    sub = world["sub"]
    client.post(f"/office/subscribers/{sub.pk}/exempt", {"never_suspend": "1"})
    assert Subscriber.objects.get(pk=sub.pk).never_suspend is True
    client.post(f"/office/subscribers/{sub.pk}/exempt", {"never_suspend": "0"})
    assert Subscriber.objects.get(pk=sub.pk).never_suspend is False
    client.post(f"/office/subscribers/{sub.pk}/status", {"action": "disable", "reason": "left the area"})
    assert Subscriber.objects.get(pk=sub.pk).status == "disabled"


def test_resend_reminder(world, client_for):
    sub = world["sub"]
    invoice = Invoice.objects.get(subscriber=sub)
    response = client_for("support").post(
        f"/office/subscribers/{sub.pk}/remind", {"invoice": invoice.pk, "kind": "overdue"}, follow=True
    )
    assert "Reminder queued" in response.content.decode()
    sent = Message.objects.filter(subscriber=sub, trigger="manual")
    assert {m.channel for m in sent} == {"sms", "email"}


def test_reminder_for_another_subscribers_invoice_is_refused(world, client_for):
    other = make_subscriber(world["basic"], date(2026, 11, 1))
    invoice = Invoice.objects.get(subscriber=world["sub"])
    response = client_for("support").post(
        f"/office/subscribers/{other.pk}/remind", {"invoice": invoice.pk, "kind": "overdue"}, follow=True
    )
    assert "not this subscriber" in response.content.decode()
    assert not Message.objects.filter(trigger="manual").exists()


def test_reminder_for_a_paid_invoice_is_a_message_not_a_500(world, client_for):
    sub = world["sub"]
    client = client_for("admin")
    client.post(f"/office/subscribers/{sub.pk}/payments", {"amount": "1000.00", "method": "cash", "key": "k9"})
    invoice = Invoice.objects.get(subscriber=sub)
    response = client.post(f"/office/subscribers/{sub.pk}/remind", {"invoice": invoice.pk, "kind": "overdue"}, follow=True)
    assert response.status_code == 200 and "nothing to remind about" in response.content.decode()


# -- change package: preview, then confirm ---------------------------------------------------

@pytest.mark.parametrize(("to", "effective_on"), [("premium", "2026-11-25"), ("premium", "2026-12-10")])
def test_preview_shows_the_services_lines_and_writes_nothing(world, client_for, to, effective_on):
    sub = world["sub"]
    target = world[to]
    expected = change_package(
        subscriber_id=sub.pk, package_id=target.pk, effective_on=date.fromisoformat(effective_on), preview=True,
        today=date(2026, 11, 25), now=world["sub"].created_at,
    )
    before = row_counts()
    response = client_for("billing").get(
        f"/office/subscribers/{sub.pk}/change-package/preview", {"package": target.pk, "effective_on": effective_on}
    )
    assert response.status_code == 200
    assert row_counts() == before
    shown = response.context["lines"]
    assert [(d, str(k), p) for d, k, p in shown] == [
        (line.description, str(line.kind), int(line.amount * 100)) for line in expected.lines
    ]
    html = response.content.decode()
    for line in expected.lines:
        assert line.description in html
    total = f"৳ {expected.total:,.2f}" if expected.total >= 0 else f"−৳ {-expected.total:,.2f}"
    assert total in html
    assert Subscriber.objects.get(pk=sub.pk).package_id == world["basic"].pk


def test_confirm_changes_the_package_and_invoices_the_difference(world, client_for):
    sub = world["sub"]
    client = client_for("billing")
    preview = client.get(
        f"/office/subscribers/{sub.pk}/change-package/preview", {"package": world["premium"].pk, "effective_on": "2026-11-25"}
    )
    total_paisa = preview.context["total_paisa"]
    assert total_paisa > 0
    response = client.post(
        f"/office/subscribers/{sub.pk}/change-package", {"package": world["premium"].pk, "effective_on": "2026-11-25"},
        follow=True,
    )
    assert "invoice" in response.content.decode() and "issued" in response.content.decode()
    assert Subscriber.objects.get(pk=sub.pk).package_id == world["premium"].pk
    newest = Invoice.objects.filter(subscriber=sub, kind="adjustment").get()
    assert newest.total_paisa == total_paisa


def test_refused_package_change_is_a_message(world, client_for):
    sub = world["sub"]
    response = client_for("billing").get(
        f"/office/subscribers/{sub.pk}/change-package/preview", {"package": world["premium"].pk, "effective_on": "2020-01-01"},
        follow=True,
    )
    assert response.status_code == 200
    assert "before the subscriber" in response.content.decode()


def test_money_filter():
    from ispbill.backoffice.templatetags.backoffice import taka

    assert taka(123456) == "৳ 1,234.56"
    assert taka(0) == "৳ 0.00"
    assert taka(-5000) == "−৳ 50.00"
    assert taka(100_000_000_00) == "৳ 100,000,000.00"
    assert taka(None) == ""
