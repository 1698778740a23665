"""``ledger.reverse_payment_credit``: where a refund takes the money back from."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ispbill.billing import ledger
from ispbill.billing.models import LedgerEntry
from ispbill.payments.services import record_payment

from ..billing.billing_support import at, bill, invoices_of

pytestmark = pytest.mark.django_db


def dues(sub) -> list[tuple[int, str]]:
    return [(i.amount_due_paisa, i.status) for i in invoices_of(sub)]


def test_unapplied_credit_first_then_its_own_invoice_then_invoices_paid_from_its_credit(world):
    sub = world.sub
    payment, _ = record_payment(subscriber_id=sub.pk, amount=Decimal("1500.00"), method="cash", received_at=at(date(2026, 11, 2)))
    assert dues(sub) == [(0, "paid")] and ledger.unapplied_credit(sub.pk) == 50_000
    bill(date(2026, 11, 25))  # December: 1000.00, 500.00 of it paid from the credit
    assert dues(sub) == [(0, "paid"), (50_000, "partially_paid")]
    other, _ = record_payment(subscriber_id=sub.pk, amount=Decimal("100.00"), method="cash", received_at=at(date(2026, 11, 26)))
    assert dues(sub) == [(0, "paid"), (40_000, "partially_paid")]
    before = ledger.balance(sub.pk)

    reopened = ledger.reverse_payment_credit(subscriber_id=sub.pk, payment_id=payment.pk, amount_paisa=120_000,
                                             now=at(date(2026, 11, 27)))

    nov, dec = invoices_of(sub)
    # No unapplied credit was left; November (its own) first, then December (paid from its credit).
    assert [(r.invoice_id, r.amount_paisa) for r in reopened] == [(nov.pk, 100_000), (dec.pk, 20_000)]
    assert dues(sub) == [(100_000, "open"), (60_000, "partially_paid")]
    assert ledger.balance(sub.pk) == before + 120_000
    assert sum(LedgerEntry.objects.filter(payment=payment).values_list("amount_paisa", flat=True)) == -30_000
    assert sum(LedgerEntry.objects.filter(payment=other).values_list("amount_paisa", flat=True)) == -10_000
    assert ledger.ledger_discrepancies() == []


def test_more_than_invoices_can_take_is_owed_without_an_invoice(world):
    sub = world.sub
    payment, _ = record_payment(subscriber_id=sub.pk, amount=Decimal("1000.00"), method="cash", received_at=at(date(2026, 11, 2)))

    ledger.reverse_payment_credit(subscriber_id=sub.pk, payment_id=payment.pk, amount_paisa=100_000, now=at(date(2026, 11, 3)))
    ledger.reverse_payment_credit(subscriber_id=sub.pk, payment_id=payment.pk, amount_paisa=1, now=at(date(2026, 11, 3)))

    assert dues(sub) == [(100_000, "open")]
    assert ledger.balance(sub.pk) == 100_001 and ledger.unapplied_credit(sub.pk) == -1
    assert ledger.ledger_discrepancies() == []
    with pytest.raises(ValueError):
        ledger.reverse_payment_credit(subscriber_id=sub.pk, payment_id=payment.pk, amount_paisa=0, now=at(date(2026, 11, 3)))
