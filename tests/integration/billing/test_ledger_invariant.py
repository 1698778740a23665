"""The ledger stays the source of truth under any sequence of money operations.

Hypothesis generates settings and a list of operations (billing runs over days,
payments including overpayments, credit notes, voids, package changes, disabling and
re-enabling); after every step the stored amounts due must agree with the ledger.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ispbill.billing import jobs, ledger
from ispbill.billing.models import CreditNote, Invoice
from ispbill.billing.services import change_package, issue_credit_note, void_invoice
from ispbill.core.errors import DomainError
from ispbill.core.money import from_paisa
from ispbill.payments.models import Payment
from ispbill.payments.services import record_payment
from ispbill.subscribers.models import Subscriber
from ispbill.subscribers.services import update_subscriber

from .billing_support import at, configure, make_package, make_subscriber

pytestmark = pytest.mark.django_db

START = date(2026, 10, 1)
PRICES = ("500.00", "1000.00", "1499.99")
SUBSCRIBERS = 3

sub_index = st.integers(0, SUBSCRIBERS - 1)
pick = st.integers(0, 30)
operation = st.one_of(
    st.tuples(st.just("bill"), st.integers(1, 35)),
    st.tuples(st.just("pay"), sub_index, st.integers(1, 400_000)),
    st.tuples(st.just("credit"), sub_index, st.integers(1, 150_000), st.booleans(), pick),
    st.tuples(st.just("void"), sub_index, pick),
    # Package change: step 0 is the package already held (refused), 1 and 2 the others.
    st.tuples(st.just("change"), sub_index, st.sampled_from([0, 1, 1, 2, 2]), st.integers(-20, 12)),
    st.tuples(st.just("toggle"), sub_index),
)
isp_settings = st.fixed_dictionaries(
    {
        "payment_terms": st.sampled_from(["prepaid", "postpaid"]),
        "billing_mode": st.sampled_from(["calendar", "anniversary"]),
        "tax_rate": st.sampled_from([Decimal("0"), Decimal("5"), Decimal("7.5")]),
        "rounding": st.sampled_from(["paisa", "taka"]),
        "invoice_lead_days": st.integers(0, 10),
    }
)


class Rollback(Exception):
    pass


def check_invariants(subs: list[Subscriber]) -> None:
    assert ledger.ledger_discrepancies() == []
    for sub in subs:
        invoices = list(Invoice.objects.filter(subscriber_id=sub.pk))
        live = [i for i in invoices if i.status != "void"]
        credit = ledger.unapplied_credit(sub.pk)
        balance = ledger.balance(sub.pk)
        assert balance == sum(i.amount_due_paisa for i in live) - credit
        assert all(0 <= i.amount_due_paisa <= i.total_paisa for i in invoices)
        assert all(i.amount_due_paisa == 0 for i in invoices if i.status in ("void", "paid"))
        assert credit >= 0
        if credit > 0:
            assert not [i.number for i in live if i.amount_due_paisa > 0], "credit left unapplied beside an open invoice"
        # Recurring service is never billed twice for the same day.
        spans = sorted((i.period_start, i.period_end) for i in invoices if i.kind == "recurring")
        assert all(prev[1] < nxt[0] for prev, nxt in zip(spans, spans[1:])), spans
        # Money is neither created nor lost: what was invoiced minus what came in.
        paid = Payment.objects.filter(subscriber_id=sub.pk).aggregate(s=Sum("amount_paisa"))["s"] or 0
        credited = CreditNote.objects.filter(subscriber_id=sub.pk).aggregate(s=Sum("total_paisa"))["s"] or 0
        assert balance == sum(i.total_paisa for i in live) - paid - credited


def apply(op: tuple, *, state: dict, subs: list[Subscriber], packages: list) -> None:
    kind = op[0]
    today = state["today"]
    if kind == "bill":
        state["today"] = today = today + timedelta(days=op[1])
        jobs.billing_run(at(today, 0, 30))
        return
    sub = Subscriber.objects.get(pk=subs[op[1]].pk)
    invoices = list(Invoice.objects.filter(subscriber_id=sub.pk).order_by("id"))
    if kind == "pay":
        record_payment(subscriber_id=sub.pk, amount=from_paisa(op[2]), method="cash", received_at=at(today))
    elif kind == "credit":
        _, _, amount, to_invoice, index = op
        invoice = invoices[index % len(invoices)] if to_invoice and invoices else None
        try:
            issue_credit_note(
                subscriber_id=sub.pk, amount=from_paisa(amount), reason="Goodwill", today=today, now=at(today),
                invoice_id=invoice.pk if invoice else None,
            )
        except DomainError as exc:
            assert invoice is not None and invoice.status == "void" and exc.code == "invoice_void"
    elif kind == "void":
        if not invoices:
            return
        invoice = invoices[op[2] % len(invoices)]
        try:
            void_invoice(invoice_id=invoice.pk, reason="Issued in error", now=at(today))
        except DomainError as exc:
            event("void refused")
            assert exc.code == "invoice_has_payments"
            assert invoice.amount_due_paisa != invoice.total_paisa
        else:
            event("void done")
            assert invoice.status == "void" or invoice.amount_due_paisa == invoice.total_paisa
    elif kind == "change":
        _, _, step, offset = op
        held = next(i for i, p in enumerate(packages) if p.pk == sub.package_id)
        package = packages[(held + step) % len(packages)]
        effective_on = today + timedelta(days=offset)
        try:
            outcome = change_package(
                subscriber_id=sub.pk, package_id=package.pk, effective_on=effective_on, preview=False, today=today,
                now=at(today),
            )
            event(f"package change: {outcome.document}")
        except DomainError as exc:
            event(f"package change refused: {exc.code}")
            expected = {
                "same_package": package.pk == sub.package_id,
                "subscriber_disabled": sub.status == "disabled",
                "effective_on_before_activation": effective_on < sub.activated_on,
            }
            assert expected.get(exc.code), (exc.code, exc.message)
    elif kind == "toggle":
        status = "active" if sub.status == "disabled" else "disabled"
        update_subscriber(subscriber_id=sub.pk, today=today, status=status)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    isp=isp_settings,
    activation_offsets=st.lists(st.integers(0, 20), min_size=SUBSCRIBERS, max_size=SUBSCRIBERS),
    operations=st.lists(operation, min_size=1, max_size=25),
)
def test_ledger_agrees_with_invoices_after_every_operation(isp, activation_offsets, operations):
    try:
        with transaction.atomic():
            configure(**isp)
            packages = [make_package(f"Package {i}", price) for i, price in enumerate(PRICES)]
            subs = [
                make_subscriber(packages[i % len(packages)], START + timedelta(days=offset))
                for i, offset in enumerate(activation_offsets)
            ]
            state = {"today": START}
            jobs.billing_run(at(START, 0, 30))
            check_invariants(subs)
            for op in operations:
                apply(op, state=state, subs=subs, packages=packages)
                check_invariants(subs)
            raise Rollback
    except Rollback:
        pass
