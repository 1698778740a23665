"""Posting to the ledger and allocating credit to invoices.

Callers hold the subscriber's row lock (see :func:`lock_subscriber`) so two money
operations for one subscriber never interleave.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Sum

from ispbill.billing.choices import EntryKind, InvoiceStatus
from ispbill.billing.models import Invoice, LedgerEntry
from ispbill.core.db import insert_objects, update_rows
from ispbill.core.errors import NotFound
from ispbill.subscribers.models import Subscriber

OPEN_STATUSES = (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID)


def lock_subscriber(subscriber_id: int, *, with_package: bool = True) -> Subscriber:
    """Lock the subscriber's row for the rest of the transaction (no-op lock on SQLite,
    where the IMMEDIATE transaction already serialises writers).

    Only the subscriber's row: without ``of`` PostgreSQL would also lock the joined
    package row and serialise every money operation of everyone on that package.
    ``with_package=False``: callers that never look at the package skip the join (it
    is then loaded on first access, as for any foreign key)."""
    qs = Subscriber.objects.select_for_update(of=("self",))
    if with_package:
        qs = qs.select_related("package")
    sub = qs.filter(pk=subscriber_id).first()
    if sub is None:
        raise NotFound("subscriber not found", code="subscriber_not_found")
    return sub


def lock_subscribers(subscriber_ids: list[int]) -> dict[int, Subscriber]:
    """:func:`lock_subscriber` (without the package) for several subscribers in one
    statement, locked in id order; ``{id: subscriber}`` of those that exist."""
    qs = Subscriber.objects.select_for_update(of=("self",)).filter(pk__in=sorted(set(subscriber_ids))).order_by("pk")
    return {sub.pk: sub for sub in qs}


def status_for(invoice: Invoice) -> str:
    if invoice.status == InvoiceStatus.VOID:
        return InvoiceStatus.VOID
    if invoice.amount_due_paisa <= 0:
        return InvoiceStatus.PAID
    if invoice.amount_due_paisa < invoice.total_paisa:
        return InvoiceStatus.PARTIALLY_PAID
    return InvoiceStatus.OPEN


def open_invoices(subscriber_id: int) -> list[Invoice]:
    """Open invoices, oldest first: the order money is applied in."""
    return list(
        Invoice.objects.select_for_update()
        .filter(subscriber_id=subscriber_id, status__in=OPEN_STATUSES, amount_due_paisa__gt=0)
        .order_by("due_on", "issued_on", "id")
    )


@dataclass(frozen=True)
class Applied:
    invoice_id: int
    amount_paisa: int


def _apply_to_invoice(invoice: Invoice, amount: int) -> None:
    invoice.amount_due_paisa -= amount
    invoice.status = status_for(invoice)
    invoice.save(update_fields=["amount_due_paisa", "status"])


def allocate(amount_paisa: int, owed: list[int]) -> tuple[list[int], int]:
    """Split ``amount_paisa`` over amounts owed, in the order given, each up to what it
    owes: ``(shares, remainder)`` with one share per amount (0 once the money runs out).
    The one allocation rule, used by every credit."""
    remaining = amount_paisa
    shares = []
    for due in owed:
        share = min(remaining, due) if remaining > 0 and due > 0 else 0
        shares.append(share)
        remaining -= share
    return shares, remaining


def _credit_entries(
    *, subscriber_id: int, amount_paisa: int, kind: EntryKind, now: datetime, invoices: list[Invoice],
    payment_id: int | None = None, credit_note_id: int | None = None,
) -> tuple[list[LedgerEntry], list[Applied], list[Invoice], int]:
    """The entries crediting ``amount_paisa`` to ``invoices`` (oldest first), with the
    invoices' new amounts due and statuses set in memory: ``(entries, applied,
    changed invoices, remainder)``; the remainder is an entry without an invoice."""
    shares, remaining = allocate(amount_paisa, [inv.amount_due_paisa for inv in invoices])
    entries: list[LedgerEntry] = []
    applied: list[Applied] = []
    changed: list[Invoice] = []
    for invoice, share in zip(invoices, shares):
        if share <= 0:
            continue
        invoice.amount_due_paisa -= share
        invoice.status = status_for(invoice)
        changed.append(invoice)
        entries.append(LedgerEntry(
            subscriber_id=subscriber_id, kind=kind, amount_paisa=-share, invoice_id=invoice.pk,
            payment_id=payment_id, credit_note_id=credit_note_id, created_at=now,
        ))
        applied.append(Applied(invoice.pk, share))
    if remaining > 0:
        entries.append(LedgerEntry(
            subscriber_id=subscriber_id, kind=kind, amount_paisa=-remaining, invoice_id=None,
            payment_id=payment_id, credit_note_id=credit_note_id, created_at=now,
        ))
    return entries, applied, changed, remaining


def post_credit(
    *,
    subscriber_id: int,
    amount_paisa: int,
    kind: EntryKind,
    now: datetime,
    payment_id: int | None = None,
    credit_note_id: int | None = None,
    invoices: list[Invoice] | None = None,
) -> list[Applied]:
    """Credit ``amount_paisa`` to the subscriber: to ``invoices`` (default: every open
    invoice, oldest first) up to what each owes; any remainder stays as unapplied credit."""
    entries, applied, changed, remaining = _credit_entries(
        subscriber_id=subscriber_id, amount_paisa=amount_paisa, kind=kind, now=now, payment_id=payment_id,
        credit_note_id=credit_note_id, invoices=invoices if invoices is not None else open_invoices(subscriber_id),
    )
    for invoice in changed:
        invoice.save(update_fields=["amount_due_paisa", "status"])
    LedgerEntry.objects.bulk_create(entries)
    if invoices is not None and remaining > 0:
        applied += apply_unapplied_credit(subscriber_id=subscriber_id, now=now)
    return applied


@dataclass(frozen=True)
class Credit:
    """One payment's credit for :func:`post_payment_credits`."""

    subscriber_id: int
    amount_paisa: int
    payment_id: int
    now: datetime


def post_payment_credits(credits: list[Credit]) -> dict[int, list[Applied]]:
    """:func:`post_credit` (kind ``payment``, every open invoice oldest first) for
    payments of different subscribers at once, in three statements: the open invoices
    of all of them, one UPDATE of the invoices paid, one INSERT of the entries. The
    caller holds every one of the subscribers' locks. Returns ``{payment_id: applied}``."""
    if len({c.subscriber_id for c in credits}) != len(credits):
        raise ValueError("post_payment_credits takes one credit per subscriber")
    by_subscriber: dict[int, list[Invoice]] = {c.subscriber_id: [] for c in credits}
    for invoice in (
        Invoice.objects.select_for_update()
        .filter(subscriber_id__in=list(by_subscriber), status__in=OPEN_STATUSES, amount_due_paisa__gt=0)
        .order_by("subscriber_id", "due_on", "issued_on", "id")
    ):
        by_subscriber[invoice.subscriber_id].append(invoice)
    entries: list[LedgerEntry] = []
    changed: list[Invoice] = []
    out: dict[int, list[Applied]] = {}
    for credit in credits:
        mine, applied, paid, _ = _credit_entries(
            subscriber_id=credit.subscriber_id, amount_paisa=credit.amount_paisa, kind=EntryKind.PAYMENT,
            now=credit.now, payment_id=credit.payment_id, invoices=by_subscriber[credit.subscriber_id],
        )
        entries += mine
        changed += paid
        out[credit.payment_id] = applied
    update_rows(changed, ["amount_due_paisa", "status"])
    insert_objects(entries)
    return out


def unapplied_credit(subscriber_id: int) -> int:
    total = LedgerEntry.objects.filter(subscriber_id=subscriber_id, invoice__isnull=True).aggregate(s=Sum("amount_paisa"))["s"]
    return -(total or 0)


def apply_unapplied_credit(*, subscriber_id: int, now: datetime) -> list[Applied]:
    """Move unapplied credit onto open invoices, oldest first."""
    credit = unapplied_credit(subscriber_id)
    applied: list[Applied] = []
    if credit <= 0:
        return applied
    entries = []
    invoices = open_invoices(subscriber_id)
    shares, _ = allocate(credit, [invoice.amount_due_paisa for invoice in invoices])
    for invoice, share in zip(invoices, shares):
        if share <= 0:
            break
        _apply_to_invoice(invoice, share)
        entries += [
            LedgerEntry(subscriber_id=subscriber_id, kind=EntryKind.CREDIT_APPLIED, amount_paisa=share, invoice_id=None, created_at=now),
            LedgerEntry(subscriber_id=subscriber_id, kind=EntryKind.CREDIT_APPLIED, amount_paisa=-share, invoice_id=invoice.pk, created_at=now),
        ]
        applied.append(Applied(invoice.pk, share))
    LedgerEntry.objects.bulk_create(entries)
    return applied


def balance(subscriber_id: int) -> int:
    """What the subscriber owes (negative: credit), from the ledger alone."""
    total = LedgerEntry.objects.filter(subscriber_id=subscriber_id).aggregate(s=Sum("amount_paisa"))["s"]
    return total or 0


def ledger_discrepancies(subscriber_id: int | None = None) -> list[str]:
    """Every place where a stored amount due or status disagrees with the ledger.

    An empty list means every invoice's amount due equals the sum of its entries and its
    status follows from it. Used by tests and by ``ispbill check-ledger``.
    """
    problems: list[str] = []
    sums = LedgerEntry.objects.filter(invoice__isnull=False)
    invoices = Invoice.objects.all()
    if subscriber_id is not None:
        sums = sums.filter(subscriber_id=subscriber_id)
        invoices = invoices.filter(subscriber_id=subscriber_id)
    by_invoice = dict(sums.values_list("invoice_id").annotate(s=Sum("amount_paisa")).values_list("invoice_id", "s"))
    for inv in invoices.only("id", "number", "total_paisa", "amount_due_paisa", "status").iterator(chunk_size=5000):
        derived = by_invoice.get(inv.pk, 0)
        if derived != inv.amount_due_paisa:
            problems.append(f"{inv.number}: amount due {inv.amount_due_paisa} but ledger says {derived}")
        if inv.amount_due_paisa < 0:
            problems.append(f"{inv.number}: negative amount due {inv.amount_due_paisa}")
        if status_for(inv) != inv.status:
            problems.append(f"{inv.number}: status {inv.status} but amounts say {status_for(inv)}")
    return problems


def reverse_payment_credit(*, subscriber_id: int, payment_id: int, amount_paisa: int, now: datetime) -> list[Applied]:
    """Take back ``amount_paisa`` of a payment's credit (a refund); returns the invoices
    re-opened, each with the amount put back on it.

    The money comes from the subscriber's unapplied credit first, then from the newest
    invoices the payment paid (never more than it paid on each), then from the newest
    invoices paid by credit; whatever is left is owed without an invoice (a positive
    entry with no invoice). The entries are of kind ``refund`` with positive amounts and
    carry the payment, so a payment's entries always sum to minus what it still credits.
    The caller holds the subscriber's lock and has checked ``amount_paisa`` against what
    the payment still credits.
    """
    if amount_paisa <= 0:
        raise ValueError("a reversal must be positive")
    remaining = amount_paisa
    entries: list[LedgerEntry] = []
    reopened: list[Applied] = []

    def take(invoice_id: int | None, share: int) -> None:
        entries.append(LedgerEntry(
            subscriber_id=subscriber_id, kind=EntryKind.REFUND, amount_paisa=share, invoice_id=invoice_id,
            payment_id=payment_id, created_at=now,
        ))

    from_credit = min(remaining, unapplied_credit(subscriber_id))
    if from_credit > 0:
        take(None, from_credit)
        remaining -= from_credit

    if remaining > 0:
        money_kinds = (EntryKind.PAYMENT, EntryKind.CREDIT_APPLIED, EntryKind.REFUND)
        paid_by_payment = dict(
            LedgerEntry.objects.filter(subscriber_id=subscriber_id, payment_id=payment_id, invoice__isnull=False)
            .values_list("invoice_id").annotate(s=Sum("amount_paisa")).values_list("invoice_id", "s")
        )
        paid_by_money = dict(
            LedgerEntry.objects.filter(subscriber_id=subscriber_id, kind__in=money_kinds, invoice__isnull=False)
            .values_list("invoice_id").annotate(s=Sum("amount_paisa")).values_list("invoice_id", "s")
        )
        candidates = list(
            Invoice.objects.select_for_update()
            .filter(subscriber_id=subscriber_id, pk__in=list(paid_by_money))
            .exclude(status=InvoiceStatus.VOID)
            .order_by("-due_on", "-issued_on", "-id")
        )
        # This payment's own invoices first, then those paid from credit; newest first.
        candidates.sort(key=lambda inv: 0 if -(paid_by_payment.get(inv.pk) or 0) > 0 else 1)
        for invoice in candidates:
            if remaining <= 0:
                break
            own = -(paid_by_payment.get(invoice.pk) or 0)
            limit = own if own > 0 else -(paid_by_money.get(invoice.pk) or 0)
            # Never beyond what money paid on it, nor above its total.
            limit = min(limit, -(paid_by_money.get(invoice.pk) or 0), invoice.total_paisa - invoice.amount_due_paisa)
            share = min(remaining, limit)
            if share <= 0:
                continue
            _apply_to_invoice(invoice, -share)
            take(invoice.pk, share)
            reopened.append(Applied(invoice.pk, share))
            remaining -= share

    if remaining > 0:
        take(None, remaining)
    LedgerEntry.objects.bulk_create(entries)
    return reopened
