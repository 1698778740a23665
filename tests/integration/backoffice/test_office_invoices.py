"""The invoice and credit-note pages, and voiding and crediting an invoice from them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ispbill.backoffice.selectors import PAGE_SIZE
from ispbill.billing import ledger
from ispbill.billing.models import CreditNote, Invoice, LedgerEntry
from ispbill.billing.services import issue_credit_note
from ispbill.notifications.services import request_reminder
from ispbill.payments.services import record_payment
from ispbill.subscribers.models import Subscriber

from ..billing.billing_support import assert_ledger_consistent, bill, make_subscriber
from .office_support import make_staff, row_counts

pytestmark = pytest.mark.django_db

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _invoice(world) -> Invoice:
    return Invoice.objects.get(subscriber=world["sub"])


def _pay(sub, amount: str, now):
    payment, _ = record_payment(subscriber_id=sub.pk, amount=Decimal(amount), method="cash", received_at=now, notify=False)
    return payment


def _messages(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


# -- list ---------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [{}, {"q": "Subscriber", "status": "open", "month": "2026-11", "overdue": "1", "area": "Mirpur"}])
def test_list_does_the_same_number_of_queries_for_few_and_many_invoices(world, client_for, params):
    client = client_for("viewer")
    counts = []
    for n in (3, 40):
        for _ in range(n - Invoice.objects.count()):
            make_subscriber(world["basic"], date(2026, 11, 1), area="Mirpur")
        bill(date(2026, 11, 1))
        assert Invoice.objects.count() == n
        with CaptureQueriesContext(connection) as ctx:
            response = client.get("/office/invoices/", params)
        assert response.status_code == 200
        assert len(response.context["page"].rows) == n
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 12


def test_list_pages_by_keyset_newest_first(world, client_for):
    for _ in range(PAGE_SIZE + 3):
        make_subscriber(world["basic"], date(2026, 11, 1))
    bill(date(2026, 11, 1))
    client = client_for("viewer")
    page = client.get("/office/invoices/").context["page"]
    ids = [i.pk for i in page.rows]
    assert len(ids) == PAGE_SIZE and ids == sorted(ids, reverse=True) and page.count == PAGE_SIZE + 4
    assert ids[0] == Invoice.objects.order_by("-id").first().pk and page.first and page.prev_before is None
    second = client.get("/office/invoices/", {"after": page.next_after}).context["page"]
    assert len(second.rows) == 4 and second.next_after is None and second.prev_before == second.rows[0].pk
    assert max(i.pk for i in second.rows) < min(ids)
    back = client.get("/office/invoices/", {"before": second.prev_before}).context["page"]
    assert [i.pk for i in back.rows] == ids


def test_list_filters(world, client_for, fixed_clock):
    other = make_subscriber(world["premium"], date(2026, 11, 20), area="Uttara")
    Subscriber.objects.filter(pk=other.pk).update(name="Karim Mia")
    bill(date(2026, 11, 20))
    mine, theirs = _invoice(world), Invoice.objects.get(subscriber=other)
    _pay(other, str(theirs.total), fixed_clock.now())
    client = client_for("viewer")

    def found(**q):
        response = client.get("/office/invoices/", q)
        assert response.status_code == 200
        return {i.pk for i in response.context["page"].rows}

    assert found() == {mine.pk, theirs.pk}
    assert found(q=theirs.number) == {theirs.pk}
    assert found(q="karim") == {theirs.pk}
    assert found(q=other.phone[-6:]) == {theirs.pk}
    assert found(q=world["sub"].pppoe_username) == {mine.pk}
    assert found(status="paid") == {theirs.pk}
    assert found(status="open") == {mine.pk}
    assert found(area="uttara") == {theirs.pk}
    assert found(overdue="1") == {mine.pk}
    assert found(month="2026-11") == {mine.pk, theirs.pk}
    assert found(month="2026-12") == set()
    assert found(month="not-a-month", status="bogus") == {mine.pk, theirs.pk}  # ignored, not an error


# -- detail -------------------------------------------------------------------------------

def test_detail_shows_lines_and_amounts_from_the_ledger(world, client_for, fixed_clock):
    inv = _invoice(world)
    _pay(world["sub"], "400.00", fixed_clock.now())
    request_reminder(invoice_id=inv.pk, kind="overdue", channels=["sms"], now=fixed_clock.now())
    # The stored amount due is a cache; the page must add up the ledger itself.
    Invoice.objects.filter(pk=inv.pk).update(amount_due_paisa=1)
    response = client_for("viewer").get(f"/office/invoices/{inv.pk}/")
    assert response.status_code == 200
    x = response.context["x"]
    assert x.amounts.total_paisa == 100000 and x.amounts.paid_paisa == 40000 and x.amounts.due_paisa == 60000
    body = response.content.decode()
    assert inv.number in body and "Basic 10M" in body
    assert "৳ 600.00" in body and "৳ 1,000.00" in body and "−৳ 400.00" in body
    assert f"/office/invoices/{inv.pk}/print" in body and f"/office/invoices/{inv.pk}/pdf" in body
    assert len(x.messages) == 1 and "Overdue" in body
    assert "Void invoice" not in body  # a viewer sees no actions


def test_detail_is_404_for_an_unknown_invoice(world, client_for):
    assert client_for("viewer").get("/office/invoices/999999/").status_code == 404


def test_subscriber_page_links_its_invoices(world, client_for):
    inv = _invoice(world)
    body = client_for("viewer").get(f"/office/subscribers/{world['sub'].pk}/").content.decode()
    assert f'href="/office/invoices/{inv.pk}/"' in body


# -- void ---------------------------------------------------------------------------------

def test_void_through_the_page_reverses_the_invoice_on_the_ledger(world, client_for):
    inv, sub = _invoice(world), world["sub"]
    assert ledger.balance(sub.pk) == 100000
    client = client_for("billing")
    response = client.post(f"/office/invoices/{inv.pk}/void", {"reason": "duplicate connection", "confirm": "1"})
    assert response.status_code == 303 and response["Location"] == f"/office/invoices/{inv.pk}/"
    inv.refresh_from_db()
    assert inv.status == "void" and inv.amount_due_paisa == 0
    assert LedgerEntry.objects.filter(invoice=inv, kind="void").get().amount_paisa == -100000
    assert ledger.balance(sub.pk) == 0
    assert_ledger_consistent(sub)
    page = client.get(response["Location"])
    assert "voided" in " ".join(_messages(page)) and "This invoice is void." in page.content.decode()


def test_void_needs_a_reason_and_confirmation(world, client_for):
    inv = _invoice(world)
    client = client_for("admin")
    before = row_counts()
    for data in ({"reason": "x"}, {"confirm": "1"}, {"reason": "  ", "confirm": "1"}):
        response = client.post(f"/office/invoices/{inv.pk}/void", data, follow=True)
        assert response.status_code == 200 and any("Reason" in m or "confirm" in m for m in _messages(response))
    assert row_counts() == before
    inv.refresh_from_db()
    assert inv.status == "open"


def test_void_is_refused_once_money_is_applied(world, client_for, fixed_clock):
    inv = _invoice(world)
    _pay(world["sub"], "100.00", fixed_clock.now())
    client = client_for("billing")
    assert "cannot be voided" in client.get(f"/office/invoices/{inv.pk}/").content.decode()
    response = client.post(f"/office/invoices/{inv.pk}/void", {"reason": "oops", "confirm": "1"}, follow=True)
    assert any("credit note instead" in m for m in _messages(response))
    inv.refresh_from_db()
    assert inv.status == "partially_paid" and inv.amount_due_paisa == 90000
    assert_ledger_consistent(world["sub"])


# -- credit notes -------------------------------------------------------------------------

def test_credit_note_through_the_page_lowers_what_is_owed(world, client_for):
    inv, sub = _invoice(world), world["sub"]
    client = client_for("billing")
    response = client.post(
        f"/office/invoices/{inv.pk}/credit-note", {"amount": "250.50", "reason": "outage 5 days", "confirm": "on"}
    )
    assert response.status_code == 303 and response["Location"] == f"/office/invoices/{inv.pk}/"
    note = CreditNote.objects.get(invoice=inv)
    assert note.total_paisa == 25050 and note.reason == "outage 5 days" and note.created_by.username == "billing-user"
    inv.refresh_from_db()
    assert inv.amount_due_paisa == 100000 - 25050 and inv.status == "partially_paid"
    assert ledger.balance(sub.pk) == 100000 - 25050
    assert_ledger_consistent(sub)
    page = client.get(response["Location"])
    body = page.content.decode()
    assert note.number in body and "outage 5 days" in body and "৳ 749.50" in body
    assert any(note.number in m for m in _messages(page))


def test_credit_note_on_a_paid_invoice_becomes_account_credit(world, client_for, fixed_clock):
    inv, sub = _invoice(world), world["sub"]
    _pay(sub, "1000.00", fixed_clock.now())
    response = client_for("admin").post(
        f"/office/invoices/{inv.pk}/credit-note", {"amount": "100.00", "reason": "goodwill", "confirm": "1"}
    )
    assert response.status_code == 303
    assert ledger.balance(sub.pk) == -10000 and ledger.unapplied_credit(sub.pk) == 10000
    assert_ledger_consistent(sub)


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "1.234", "1000.01", "1e3"])
def test_credit_note_refuses_bad_amounts(world, client_for, amount):
    inv = _invoice(world)
    before = row_counts()
    response = client_for("billing").post(
        f"/office/invoices/{inv.pk}/credit-note", {"amount": amount, "reason": "r", "confirm": "1"}, follow=True
    )
    assert response.status_code == 200 and any(m.startswith("Amount:") for m in _messages(response))
    assert row_counts() == before


def test_credit_notes_cannot_add_up_to_more_than_the_invoice(world, client_for, fixed_clock):
    inv = _invoice(world)
    issue_credit_note(
        subscriber_id=world["sub"].pk, invoice_id=inv.pk, amount=Decimal("900.00"), reason="earlier",
        today=date(2026, 11, 25), now=fixed_clock.now(),
    )
    client = client_for("billing")
    refused = client.post(f"/office/invoices/{inv.pk}/credit-note", {"amount": "100.01", "reason": "r", "confirm": "1"}, follow=True)
    assert any("at most ৳ 100.00" in m for m in _messages(refused))
    assert CreditNote.objects.count() == 1
    client.post(f"/office/invoices/{inv.pk}/credit-note", {"amount": "100.00", "reason": "rest", "confirm": "1"})
    assert CreditNote.objects.count() == 2
    inv.refresh_from_db()
    assert inv.amount_due_paisa == 0 and inv.status == "paid"
    assert_ledger_consistent(world["sub"])


def test_a_void_invoice_cannot_be_credited(world, client_for):
    inv = _invoice(world)
    client = client_for("billing")
    client.post(f"/office/invoices/{inv.pk}/void", {"reason": "dup", "confirm": "1"})
    assert "Issue a credit note" not in client.get(f"/office/invoices/{inv.pk}/").content.decode()
    response = client.post(f"/office/invoices/{inv.pk}/credit-note", {"amount": "10", "reason": "r", "confirm": "1"}, follow=True)
    assert any("void" in m for m in _messages(response))
    assert CreditNote.objects.count() == 0


def test_credit_note_list_and_detail(world, client_for, fixed_clock):
    inv = _invoice(world)
    note = issue_credit_note(
        subscriber_id=world["sub"].pk, invoice_id=inv.pk, amount=Decimal("120.00"), reason="router down",
        today=date(2026, 11, 25), now=fixed_clock.now(),
    )
    client = client_for("viewer")
    listing = client.get("/office/credit-notes/")
    assert [n.pk for n in listing.context["page"].rows] == [note.pk]
    assert note.number in listing.content.decode() and "router down" in listing.content.decode()
    assert [n.pk for n in client.get("/office/credit-notes/", {"q": inv.number}).context["page"].rows] == [note.pk]
    assert [n.pk for n in client.get("/office/credit-notes/", {"q": "nobody"}).context["page"].rows] == []
    assert [n.pk for n in client.get("/office/credit-notes/", {"month": "2026-11"}).context["page"].rows] == [note.pk]
    assert [n.pk for n in client.get("/office/credit-notes/", {"month": "2026-10"}).context["page"].rows] == []
    detail = client.get(f"/office/credit-notes/{note.pk}/")
    body = detail.content.decode()
    assert detail.status_code == 200 and inv.number in body and "৳ 120.00" in body and "router down" in body
    assert client.get("/office/credit-notes/999999/").status_code == 404


def test_credit_note_list_does_the_same_number_of_queries_for_few_and_many(world, client_for, fixed_clock):
    client = client_for("viewer")
    counts = []
    for n in (2, 30):
        while CreditNote.objects.count() < n:
            sub = make_subscriber(world["basic"], date(2026, 11, 1))
            issue_credit_note(
                subscriber_id=sub.pk, amount=Decimal("10.00"), reason="r", today=date(2026, 11, 25), now=fixed_clock.now()
            )
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/office/credit-notes/", {"q": "Subscriber"}).status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts


# -- security -----------------------------------------------------------------------------

def test_a_subscriber_name_is_escaped_on_every_page(world, client_for, fixed_clock):
    sub = world["sub"]
    Subscriber.objects.filter(pk=sub.pk).update(name=XSS, address=XSS)
    inv = _invoice(world)
    note = issue_credit_note(
        subscriber_id=sub.pk, invoice_id=inv.pk, amount=Decimal("5.00"), reason=XSS, today=date(2026, 11, 25), now=fixed_clock.now()
    )
    payment = _pay(sub, "10.00", fixed_clock.now())
    client = client_for("admin")
    for url in (
        "/office/invoices/", f"/office/invoices/?q={inv.number}", f"/office/invoices/{inv.pk}/", f"/office/invoices/{inv.pk}/print",
        "/office/credit-notes/", f"/office/credit-notes/{note.pk}/", f"/office/credit-notes/{note.pk}/print",
        f"/office/payments/{payment.pk}/receipt",
    ):
        body = client.get(url).content.decode()
        assert "<script>alert" not in body and "<img src=x" not in body, url
        assert "&lt;script&gt;alert" in body, url


def test_actions_without_a_csrf_token_are_refused(world):
    inv = _invoice(world)
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_staff("admin"))
    before = row_counts()
    assert client.post(f"/office/invoices/{inv.pk}/void", {"reason": "x", "confirm": "1"}).status_code == 403
    assert client.post(f"/office/invoices/{inv.pk}/credit-note", {"amount": "5", "reason": "x", "confirm": "1"}).status_code == 403
    assert client.post("/office/settings/branding", {"isp_name": "Evil"}).status_code == 403
    assert row_counts() == before
    inv.refresh_from_db()
    assert inv.status == "open"


def test_nav_links_the_invoices_page(world, client_for):
    body = client_for("viewer").get("/office/invoices/").content.decode()
    assert 'href="/office/invoices/" class="on"' in body
