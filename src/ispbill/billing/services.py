"""Billing use cases: the billing run, package changes, credit notes, voids.

Every function is one transaction. ``today`` (the ISP's local date) and ``now`` (aware
UTC) are arguments: callers read the clock once.
"""

from __future__ import annotations

import logging
import re
import string
from collections import defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from django.db import connection, transaction

from ispbill.audit import services as audit
from ispbill.billing import ledger
from ispbill.billing.choices import EntryKind, InvoiceKind, InvoiceStatus
from ispbill.billing.models import (
    BillingSettings,
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
    LedgerEntry,
    NumberSequence,
    PackageChange,
)
from ispbill.billing.periods import BillingMode, Period, period_containing, periods_between
from ispbill.billing.policy import BillingPolicy, PaymentTerms, due_on, latest_candidate_billed_through, next_invoice
from ispbill.billing.proration import (
    Line,
    LineKind,
    invoiced_price,
    package_change_lines,
    service_charge,
    tax_line,
    used_service_lines,
)
from ispbill.core.db import bulk_insert, id_chunks, in_ids, overlapped, reserve_ids
from ispbill.core.errors import DomainError, NotFound
from ispbill.core.money import from_paisa, to_paisa
from ispbill.plans.models import Package
from ispbill.subscribers.choices import SubscriberStatus
from ispbill.subscribers.models import Subscriber

log = logging.getLogger("ispbill.billing")

BILLABLE_STATUSES = (SubscriberStatus.ACTIVE, SubscriberStatus.SUSPENDED)


def current_policy() -> BillingPolicy:
    return BillingSettings.load().policy()


# -- document numbers -------------------------------------------------------------------

_SEQ_FIELD = re.compile(r"\{seq(?::[^}]*)?\}")


def reserve_numbers(*, fmt: str, kind: str, issued_on: date, count: int) -> list[str]:
    """``count`` consecutive numbers from the gapless sequence, inside the caller's transaction."""
    # The scope is the number with its sequence part blanked out, so formats that
    # render alike ("INV-{year}-{seq:06d}" and "INV-2026-{seq:05d}") share one sequence
    # and a format change can never reissue a number already used.
    scope = f"{kind}:" + _SEQ_FIELD.sub("#", fmt).format(year=issued_on.year)
    NumberSequence.objects.get_or_create(scope=scope)
    seq = NumberSequence.objects.select_for_update().get(scope=scope)
    start = seq.next_value
    seq.next_value = start + count
    seq.save(update_fields=["next_value"])
    return [fmt.format(year=issued_on.year, seq=n) for n in range(start, start + count)]


# -- invoices ---------------------------------------------------------------------------

@dataclass
class DraftInvoice:
    subscriber_id: int
    kind: str
    package_id: int | None
    period_start: date
    period_end: date
    due_on: date
    lines: list[Line]

    @property
    def total_paisa(self) -> int:
        return sum(to_paisa(line.amount) for line in self.lines)


def with_tax(lines: list[Line], policy: BillingPolicy) -> list[Line]:
    tax = tax_line(lines, rate_percent=policy.tax_rate, name=policy.tax_name, rounding=policy.rounding)
    return lines + [tax] if tax else lines


def post_invoices(drafts: list[DraftInvoice], *, settings: BillingSettings, issued_on: date, now: datetime) -> list[int]:
    """Insert invoices, their lines and ledger debits in bulk; returns the new ids."""
    return _post_invoices(drafts, settings=settings, issued_on=issued_on, now=now)


def _post_invoices(
    drafts: list[DraftInvoice], *, settings: BillingSettings, issued_on: date, now: datetime,
    alongside: Callable[[], None] | None = None,
) -> list[int]:
    """:func:`post_invoices`; ``alongside`` issues more writes of the same transaction
    whose results nobody reads. They are sent once numbers and ids are reserved, and on
    PostgreSQL the server runs them while the rows are being built (see
    :func:`~ispbill.core.db.overlapped`)."""
    if not drafts:
        if alongside is not None:
            alongside()
        return []
    numbers = reserve_numbers(fmt=settings.invoice_number_format, kind="invoice", issued_on=issued_on, count=len(drafts))
    ids = reserve_ids(Invoice, len(drafts))
    with overlapped() if alongside is not None else nullcontext():
        if alongside is not None:
            alongside()
        invoice_rows, line_rows, entry_rows = _invoice_rows(drafts, ids, numbers, issued_on=issued_on, now=now)
    bulk_insert(
        Invoice,
        ["id", "number", "subscriber_id", "kind", "package_id", "period_start", "period_end", "issued_on",
         "issued_at", "due_on", "currency", "total_paisa", "amount_due_paisa", "status"],
        invoice_rows,
    )
    bulk_insert(InvoiceLine, ["invoice_id", "position", "kind", "description", "amount_paisa"], line_rows)
    bulk_insert(LedgerEntry, ["subscriber_id", "kind", "amount_paisa", "invoice_id", "created_at"], entry_rows)
    return ids


def _invoice_rows(drafts: list[DraftInvoice], ids: list[int], numbers: list[str], *, issued_on: date, now: datetime):
    invoice_rows, line_rows, entry_rows = [], [], []
    add_invoice, add_line, add_entry = invoice_rows.append, line_rows.append, entry_rows.append
    entry_kind = EntryKind.INVOICE.value
    # Drafts of one billing run share their ``lines`` list (same package, same period):
    # convert each distinct list to paisa once. Keyed by identity, which is stable
    # because ``drafts`` keeps every list alive for the whole call.
    converted: dict[int, tuple[int, str, list[tuple]]] = {}
    for inv_id, number, d in zip(ids, numbers, drafts):
        lines = d.lines
        conv = converted.get(id(lines))
        if conv is None:
            cells = [(pos, str(line.kind), line.description[:300], to_paisa(line.amount)) for pos, line in enumerate(lines, start=1)]
            total = sum(cell[3] for cell in cells)
            if total < 0:
                raise DomainError("an invoice cannot total less than zero; issue a credit note", code="negative_invoice")
            status = InvoiceStatus.PAID if total == 0 else InvoiceStatus.OPEN
            conv = converted[id(lines)] = (total, status, cells)
        total, status, cells = conv
        add_invoice(
            (inv_id, number, d.subscriber_id, d.kind, d.package_id, d.period_start, d.period_end, issued_on, now,
             d.due_on, "BDT", total, total, status)
        )
        for pos, kind, description, paisa in cells:
            add_line((inv_id, pos, kind, description, paisa))
        add_entry((d.subscriber_id, entry_kind, total, inv_id, now))
    return invoice_rows, line_rows, entry_rows


@dataclass
class BillingRunResult:
    today: date
    issued: int = 0
    checked: int = 0
    passes: int = 0
    invoice_ids: list[int] = field(default_factory=list)


def run_billing(*, today: date, now: datetime, batch_size: int = 5000, keep_ids: bool = False) -> BillingRunResult:
    """Issue every recurring invoice due to be issued as of ``today``.

    Idempotent: each batch locks its subscribers, re-reads ``billed_through`` and
    advances it in the same transaction as the invoices, and a unique key on
    (subscriber, period start) backs that up. Running it twice, or in two processes at
    once, issues nothing twice. A subscriber far behind gets one invoice per pass, and
    passes repeat until nobody is due.
    """
    settings = BillingSettings.load()
    policy = settings.policy()
    packages = {p.pk: p for p in Package.objects.all()}
    result = BillingRunResult(today=today)
    bound = latest_candidate_billed_through(policy, today)
    while True:
        result.passes += 1
        issued_this_pass = 0
        last_id = 0
        while True:
            with transaction.atomic():
                batch = _lock_candidates(after_id=last_id, bound=bound, limit=batch_size)
                if not batch:
                    break
                last_id = batch[-1][0]
                result.checked += len(batch)
                drafts, advance = _draft_recurring(batch, policy=policy, packages=packages, today=today)
                ids = _post_invoices(
                    drafts, settings=settings, issued_on=today, now=now, alongside=lambda: _advance_billed_through(advance)
                )
                _apply_credit_after_issue([d.subscriber_id for d in drafts], now=now)
                issued_this_pass += len(ids)
                if keep_ids:
                    result.invoice_ids += ids
        result.issued += issued_this_pass
        if issued_this_pass == 0 or result.passes >= 240:
            break
    if result.issued:
        log.info("billing run %s: issued %d invoices in %d passes", today, result.issued, result.passes)
    return result


def models_q_billed_through(bound: date):
    from django.db.models import Q

    return Q(billed_through__isnull=True) | Q(billed_through__lte=bound)


def _lock_candidates(*, after_id: int, bound: date, limit: int) -> list[tuple]:
    """The next ``limit`` billable subscribers after ``after_id`` that may be due, locked
    for the rest of the transaction (``SELECT … FOR UPDATE``; SQLite's IMMEDIATE
    transaction already holds the only write lock): (id, activated_on, billed_through,
    billing_mode, package_id) tuples in id order.

    The ORM query ``Subscriber.objects.select_for_update().filter(status__in=
    BILLABLE_STATUSES, id__gt=after_id).filter(models_q_billed_through(bound))
    .order_by("id").values_list(...)[:limit]`` written out, without its per-row
    converters.
    """
    qn = connection.ops.quote_name
    col = {f.name: qn(f.column) for f in Subscriber._meta.concrete_fields}
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    sql = (
        f"SELECT {col['id']}, {col['activated_on']}, {col['billed_through']}, {col['billing_mode']}, {col['package']} "
        f"FROM {qn(Subscriber._meta.db_table)} "
        f"WHERE {col['status']} IN ({', '.join(['%s'] * len(BILLABLE_STATUSES))}) AND {col['id']} > %s "
        f"AND ({col['billed_through']} IS NULL OR {col['billed_through']} <= %s) "
        f"ORDER BY {col['id']} LIMIT %s{lock}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*(str(s) for s in BILLABLE_STATUSES), after_id, bound, limit])
        return cursor.fetchall()


_NOT_DUE = object()


def _draft_recurring(batch, *, policy: BillingPolicy, packages: dict, today: date):
    """Drafts for the subscribers of ``batch`` whose next invoice may be issued ``today``.

    The schedule and the charge depend only on the first unbilled day, the anchor day and
    the package, and most subscribers share those: each distinct combination is
    computed once (with the same pure functions as always) and its line list shared.
    """
    drafts: list[DraftInvoice] = []
    advance: dict[date, list[int]] = defaultdict(list)
    add_draft = drafts.append
    recurring = InvoiceKind.RECURRING
    one_day = timedelta(days=1)
    anchors: dict[tuple, int] = {}
    plans: dict[tuple, object] = {}
    for sub_id, activated_on, billed_through, mode, package_id in batch:
        akey = (mode, activated_on)
        anchor = anchors.get(akey)
        if anchor is None:
            anchor = anchors[akey] = policy.anchor_day(activated_on=activated_on, mode=BillingMode(mode) if mode else None)
        # The first day not yet billed, as next_invoice() derives it (checked on each miss).
        first = activated_on if billed_through is None or billed_through < activated_on else billed_through + one_day
        pkey = (first, anchor, package_id)
        plan = plans.get(pkey)
        if plan is None:
            plan = plans[pkey] = _plan_recurring(
                policy, packages=packages, today=today, billed_through=billed_through, activated_on=activated_on,
                anchor=anchor, package_id=package_id, first=first,
            )
        if plan is _NOT_DUE:
            continue
        period_start, period_end, due, lines, ids = plan
        add_draft(DraftInvoice(sub_id, recurring, package_id, period_start, period_end, due, lines))
        ids.append(sub_id)
    for plan in plans.values():
        if plan is not _NOT_DUE and plan[4]:
            advance[plan[1]].extend(plan[4])
    return drafts, advance


def _plan_recurring(policy, *, packages, today, billed_through, activated_on, anchor, package_id, first):
    nxt = next_invoice(policy, billed_through=billed_through, activated_on=activated_on, anchor_day=anchor)
    if nxt.coverage.start != first:  # pragma: no cover - guards the cache key against policy changes
        raise AssertionError(f"next_invoice starts on {nxt.coverage.start}, cache key says {first}")
    if nxt.issue_on > today:
        return _NOT_DUE
    package = packages[package_id]
    period, line = service_charge(
        package_name=package.name, price=from_paisa(package.price_paisa), first=nxt.coverage.start,
        anchor_day=anchor, rounding=policy.rounding,
    )
    due = due_on(policy, coverage_start=period.start, issued_on=today)
    return (period.start, period.end, due, with_tax([line], policy), [])


def _advance_billed_through(advance: dict[date, list[int]]) -> None:
    """One UPDATE per distinct new ``billed_through`` (per id chunk on SQLite)."""
    table = connection.ops.quote_name(Subscriber._meta.db_table)
    with connection.cursor() as cursor:
        for through, ids in advance.items():
            for part in id_chunks(ids, reserve_params=1):
                where, params = in_ids("id", part)
                cursor.execute(f"UPDATE {table} SET billed_through = %s WHERE {where}", [through, *params])


def _apply_credit_after_issue(subscriber_ids: list[int], *, now: datetime) -> None:
    """Unapplied credit (an earlier overpayment) pays new invoices at once."""
    table = connection.ops.quote_name(LedgerEntry._meta.db_table)
    with_credit: list[int] = []
    with connection.cursor() as cursor:
        for part in id_chunks(subscriber_ids):
            where, params = in_ids("subscriber_id", part)
            cursor.execute(
                f"SELECT subscriber_id FROM {table} WHERE invoice_id IS NULL AND {where} "
                "GROUP BY subscriber_id HAVING SUM(amount_paisa) < 0",
                params,
            )
            with_credit += [row[0] for row in cursor.fetchall()]
    for sub_id in with_credit:
        ledger.apply_unapplied_credit(subscriber_id=sub_id, now=now)


def issue_invoice(
    *, subscriber_id: int, lines: list[Line], period_start: date, period_end: date, today: date, now: datetime,
    package_id: int | None = None, kind: str = InvoiceKind.ADJUSTMENT,
) -> Invoice:
    """Issue one invoice now (adjustments, upgrades); the caller holds the subscriber lock.

    ``lines`` are final: the caller has already added tax (see :func:`with_tax`), so the
    invoice carries exactly the lines a preview showed.
    """
    settings = BillingSettings.load()
    policy = settings.policy()
    draft = DraftInvoice(
        subscriber_id=subscriber_id, kind=kind, package_id=package_id, period_start=period_start,
        period_end=period_end, due_on=due_on(policy, coverage_start=period_start, issued_on=today),
        lines=list(lines),
    )
    (inv_id,) = post_invoices([draft], settings=settings, issued_on=today, now=now)
    ledger.apply_unapplied_credit(subscriber_id=subscriber_id, now=now)
    return Invoice.objects.get(pk=inv_id)


# -- credit notes -----------------------------------------------------------------------

def _post_credit_note(
    *, subscriber_id: int, lines: list[Line], reason: str, today: date, now: datetime,
    invoice: Invoice | None = None, user=None,
) -> CreditNote:
    total = -sum(to_paisa(line.amount) for line in lines)
    if total <= 0:
        raise DomainError("a credit note must credit a positive amount", code="invalid_amount")
    settings = BillingSettings.load()
    (number,) = reserve_numbers(fmt=settings.credit_note_number_format, kind="credit_note", issued_on=today, count=1)
    note = CreditNote.objects.create(
        number=number, subscriber_id=subscriber_id, invoice=invoice, issued_on=today, issued_at=now,
        total_paisa=total, reason=reason[:300], created_by=user,
    )
    CreditNoteLine.objects.bulk_create(
        CreditNoteLine(credit_note=note, position=i, kind=str(line.kind), description=line.description[:300], amount_paisa=to_paisa(line.amount))
        for i, line in enumerate(lines, start=1)
    )
    ledger.post_credit(
        subscriber_id=subscriber_id, amount_paisa=total, kind=EntryKind.CREDIT_NOTE, now=now,
        credit_note_id=note.pk, invoices=[invoice] if invoice is not None else None,
    )
    return note


def issue_credit_note(
    *, subscriber_id: int, amount: Decimal, reason: str, today: date, now: datetime,
    invoice_id: int | None = None, user=None,
) -> CreditNote:
    """A correction: credits ``amount`` to an invoice (or to the oldest open ones)."""
    if not reason.strip():
        raise DomainError("a credit note needs a reason", code="reason_required", field="reason", status=422)
    with transaction.atomic():
        ledger.lock_subscriber(subscriber_id)
        invoice = None
        if invoice_id is not None:
            invoice = Invoice.objects.select_for_update().filter(pk=invoice_id, subscriber_id=subscriber_id).first()
            if invoice is None:
                raise NotFound("invoice not found for this subscriber", code="invoice_not_found")
            if invoice.status == InvoiceStatus.VOID:
                raise DomainError("a void invoice cannot be credited", code="invoice_void", status=409)
        line = Line(LineKind.ADJUSTMENT, reason.strip(), -amount)
        note = _post_credit_note(
            subscriber_id=subscriber_id, lines=[line], reason=reason.strip(), today=today, now=now, invoice=invoice, user=user
        )
        audit.record(
            action="credit_note.issue", at=now, user=user, target=audit.target_of(note), subscriber_id=subscriber_id,
            after={"total_paisa": note.total_paisa, "invoice": invoice.number if invoice else None}, summary=note.reason,
        )
        return note


def void_invoice(*, invoice_id: int, reason: str, now: datetime, user=None) -> Invoice:
    """Cancel an invoice nobody has paid anything on; the ledger records the reversal.
    Voiding a void invoice changes (and records) nothing."""
    with transaction.atomic():
        invoice = Invoice.objects.filter(pk=invoice_id).first()
        if invoice is None:
            raise NotFound("invoice not found", code="invoice_not_found")
        ledger.lock_subscriber(invoice.subscriber_id)
        invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
        if invoice.status == InvoiceStatus.VOID:
            return invoice
        if invoice.amount_due_paisa != invoice.total_paisa:
            raise DomainError(
                "money has already been applied to this invoice; issue a credit note instead", code="invoice_has_payments",
                status=409,
            )
        LedgerEntry.objects.create(
            subscriber_id=invoice.subscriber_id, kind=EntryKind.VOID, amount_paisa=-invoice.amount_due_paisa,
            invoice=invoice, created_at=now,
        )
        before = {"status": invoice.status, "amount_due_paisa": invoice.amount_due_paisa}
        invoice.amount_due_paisa = 0
        invoice.status = InvoiceStatus.VOID
        invoice.save(update_fields=["amount_due_paisa", "status"])
        audit.record(
            action="invoice.void", at=now, user=user, target=audit.target_of(invoice), subscriber_id=invoice.subscriber_id,
            before=before, after={"status": invoice.status, "amount_due_paisa": 0}, summary=(reason or "").strip(),
        )
        log.info("invoice %s voided: %s", invoice.number, reason)
        return invoice


# -- package changes --------------------------------------------------------------------

@dataclass
class PackageChangeOutcome:
    document: str  # "invoice", "credit_note", "none" or "scheduled"
    lines: list[Line]
    total: Decimal
    invoice: Invoice | None = None
    credit_note: CreditNote | None = None
    change: PackageChange | None = None


def _charged_old_prices(
    sub: Subscriber, *, effective_on: date, billed_through: date, anchor: int
) -> tuple[dict[date, Decimal | Fraction], tuple[Period, ...]]:
    """What ``sub`` was charged for its package in each period from ``effective_on`` to
    ``billed_through`` (keyed by period start), and the periods whose recurring invoice
    was voided (nothing was charged there).

    A period's price is the one its recurring invoice's package line charged for the
    credited days (:func:`~ispbill.billing.proration.invoiced_price`), so a later change
    of the package's price does not change what is credited. That line is not the last
    word on those days once a package change applied after the invoice re-priced them;
    such periods, and periods with no single package line (invoices from before lines
    were kept), are credited at the package's current price.
    """
    invoices = list(
        Invoice.objects.filter(
            subscriber_id=sub.pk, kind=InvoiceKind.RECURRING, period_end__gte=effective_on, period_start__lte=billed_through,
        ).only("id", "period_start", "period_end", "status", "issued_at", "package_id")
    )
    voided = tuple(Period(inv.period_start, inv.period_end) for inv in invoices if inv.status == InvoiceStatus.VOID)
    charged = [inv for inv in invoices if inv.status != InvoiceStatus.VOID]
    package_lines: dict[int, list[int]] = defaultdict(list)
    changes: list[tuple[date, datetime, int]] = []
    if charged:
        for invoice_id, amount_paisa in InvoiceLine.objects.filter(
            invoice_id__in=[inv.pk for inv in charged], kind__in=(LineKind.PLAN, LineKind.PRORATION_CHARGE),
        ).values_list("invoice_id", "amount_paisa"):
            package_lines[invoice_id].append(amount_paisa)
        changes = list(
            PackageChange.objects.filter(
                subscriber_id=sub.pk, applied_at__isnull=False, effective_on__lte=billed_through,
                applied_at__gte=min(inv.issued_at for inv in charged),
            ).values_list("effective_on", "applied_at", "new_package_id")
        )

    def repriced(inv: Invoice) -> bool:
        # Changes applied at the instant the invoice was issued are told apart by package:
        # an invoice issued just after a change bills the change's new package.
        return any(
            changed_on <= inv.period_end
            and (applied_at > inv.issued_at or (applied_at == inv.issued_at and new_package_id != inv.package_id))
            for changed_on, applied_at, new_package_id in changes
        )

    current_price = from_paisa(sub.package.price_paisa)
    prices: dict[date, Decimal | Fraction] = {}
    for stretch in periods_between(effective_on, billed_through, anchor):
        period = period_containing(stretch.start, anchor)
        invoice = next((inv for inv in charged if inv.period_start <= stretch.start and stretch.end <= inv.period_end), None)
        if invoice is None or len(package_lines[invoice.pk]) != 1 or repriced(invoice):
            prices[period.start] = current_price  # no invoice line says what these days cost
            continue
        prices[period.start] = invoiced_price(
            amount=from_paisa(package_lines[invoice.pk][0]), charged=Period(invoice.period_start, invoice.period_end),
            period=period,
        )
    return prices, voided


def _package_change_plan(sub: Subscriber, new: Package, effective_on: date, policy: BillingPolicy):
    old = sub.package
    anchor = policy.anchor_day(activated_on=sub.activated_on, mode=BillingMode(sub.billing_mode) if sub.billing_mode else None)
    billed_through = sub.billed_through
    if billed_through is not None and effective_on <= billed_through:
        old_prices, voided = _charged_old_prices(sub, effective_on=effective_on, billed_through=billed_through, anchor=anchor)
        lines = package_change_lines(
            old_name=old.name, old_prices=old_prices, new_name=new.name,
            new_price=from_paisa(new.price_paisa), effective_on=effective_on, billed_through=billed_through,
            anchor_day=anchor, rounding=policy.rounding, not_charged=voided,
        )
        return lines, (effective_on, billed_through), None
    # Days not yet billed before the change (postpaid) are billed now at the old price.
    first_unbilled = sub.activated_on if billed_through is None else max(billed_through + timedelta(days=1), sub.activated_on)
    last_old_day = effective_on - timedelta(days=1)
    if policy.terms is PaymentTerms.POSTPAID and first_unbilled <= last_old_day:
        lines = used_service_lines(
            package_name=old.name, price=from_paisa(old.price_paisa), first=first_unbilled, last=last_old_day,
            anchor_day=anchor, rounding=policy.rounding,
        )
        return lines, (first_unbilled, last_old_day), last_old_day
    return [], None, None


def change_package(
    *, subscriber_id: int, package_id: int, effective_on: date, preview: bool, today: date, now: datetime, user=None
) -> PackageChangeOutcome:
    """Move a subscriber to another package from ``effective_on``.

    Already-billed days are credited at the price they were invoiced at (the old
    package's current price where no invoice line says) and charged at the new package's
    current price: a net charge is invoiced at once (upgrade), a net credit becomes a
    credit note on the balance (downgrade). ``preview`` returns the same lines and
    writes nothing. A future ``effective_on`` is scheduled and applied by the billing
    job on that day.
    """
    policy = current_policy()
    with transaction.atomic():
        sub = ledger.lock_subscriber(subscriber_id) if not preview else Subscriber.objects.select_related("package").filter(pk=subscriber_id).first()
        if sub is None:
            raise NotFound("subscriber not found", code="subscriber_not_found")
        new = Package.objects.filter(pk=package_id).first()
        if new is None:
            raise DomainError("unknown package", code="unknown_package", field="package", status=422)
        if not new.is_active:
            raise DomainError("this package is no longer sold", code="package_inactive", field="package", status=422)
        if new.pk == sub.package_id:
            raise DomainError("the subscriber is already on this package", code="same_package", field="package", status=422)
        if sub.status == SubscriberStatus.DISABLED:
            raise DomainError("a disabled subscriber cannot change package", code="subscriber_disabled", status=409)
        if effective_on < sub.activated_on:
            raise DomainError("effective_on is before the subscriber's activation", code="effective_on_before_activation", field="effective_on", status=422)
        if effective_on < today - timedelta(days=62):
            raise DomainError("effective_on is too far in the past", code="effective_on_too_old", field="effective_on", status=422)
        lines, span, new_billed_through = _package_change_plan(sub, new, effective_on, policy)
        lines = with_tax(lines, policy) if lines else lines
        total = sum((line.amount for line in lines), Decimal("0.00"))
        if effective_on > today:
            if preview:
                return PackageChangeOutcome("scheduled", lines, total)
            PackageChange.objects.filter(subscriber=sub, applied_at__isnull=True).delete()
            change = PackageChange.objects.create(
                subscriber=sub, old_package=sub.package, new_package=new, effective_on=effective_on, created_at=now, created_by=user
            )
            audit.record(
                action="package.schedule", at=now, user=user, target=audit.target_of(sub),
                before={"package": sub.package.name}, after={"package": new.name, "effective_on": effective_on},
                summary=f"{sub.package.name} → {new.name} from {effective_on.isoformat()}",
            )
            return PackageChangeOutcome("scheduled", lines, total, change=change)
        document = "invoice" if total > 0 else "credit_note" if total < 0 else "none"
        if preview:
            return PackageChangeOutcome(document, lines, total)
        change = PackageChange.objects.create(
            subscriber=sub, old_package=sub.package, new_package=new, effective_on=effective_on, created_at=now,
            created_by=user, applied_at=now,
        )
        return _apply_change(sub, change, lines, span, new_billed_through, total, today=today, now=now, user=user)


def _apply_change(
    sub, change, lines, span, new_billed_through, total, *, today, now, user, scheduled: bool = False,
) -> PackageChangeOutcome:
    """Post the change's document and move the subscriber; records ``package.change``
    (actor ``user``; the system when it applies a ``scheduled`` change)."""
    outcome = PackageChangeOutcome("none", lines, total, change=change)
    before = {"package": sub.package.name, "package_id": sub.package_id, "billed_through": sub.billed_through}
    if total > 0:
        outcome.invoice = issue_invoice(
            subscriber_id=sub.pk, lines=lines, period_start=span[0], period_end=span[1], today=today, now=now,
            package_id=change.new_package_id,
        )
        outcome.document = "invoice"
        change.invoice = outcome.invoice
    elif total < 0:
        outcome.credit_note = _post_credit_note(
            subscriber_id=sub.pk, lines=lines, reason=f"Package change to {change.new_package.name}", today=today, now=now, user=user
        )
        outcome.document = "credit_note"
        change.credit_note = outcome.credit_note
    change.save(update_fields=["invoice", "credit_note"])
    sub.package = change.new_package
    if new_billed_through is not None:
        sub.billed_through = new_billed_through
    sub.save(update_fields=["package", "billed_through", "updated_at"])
    old, new = audit.changes(
        before, {"package": change.new_package.name, "package_id": change.new_package_id, "billed_through": sub.billed_through},
    )
    document = outcome.invoice or outcome.credit_note
    if document is not None:
        new[outcome.document] = document.number
        new["total_paisa"] = to_paisa(total)
    audit.record(
        action="package.change", at=now, user=None if scheduled else user, target=audit.target_of(sub),
        before=old, after=new,
        summary=f"{old.get('package', '')} → {change.new_package.name} from {change.effective_on.isoformat()}"
        + (" (scheduled)" if scheduled else ""),
    )
    return outcome


def apply_scheduled_package_changes(*, today: date, now: datetime) -> int:
    """Apply every scheduled package change whose day has come."""
    policy = current_policy()
    applied = 0
    for change_id, subscriber_id in list(
        PackageChange.objects.filter(applied_at__isnull=True, effective_on__lte=today).values_list("id", "subscriber_id")
    ):
        with transaction.atomic():
            # Subscriber first, then the change: the order change_package() takes them in.
            sub = ledger.lock_subscriber(subscriber_id)
            change = (
                PackageChange.objects.select_for_update(of=("self",)).select_related("new_package")
                .filter(pk=change_id).first()
            )
            if change is None or change.applied_at is not None:  # replaced or applied meanwhile
                continue
            if sub.status == SubscriberStatus.DISABLED or sub.package_id == change.new_package_id:
                change.applied_at = now
                change.save(update_fields=["applied_at"])
                continue
            # Planned before this change counts as applied: an applied change re-prices the
            # days it covers (see _charged_old_prices).
            lines, span, nbt = _package_change_plan(sub, change.new_package, change.effective_on, policy)
            change.old_package = sub.package
            change.applied_at = now
            change.save(update_fields=["old_package", "applied_at"])
            lines = with_tax(lines, policy) if lines else lines
            total = sum((line.amount for line in lines), Decimal("0.00"))
            _apply_change(sub, change, lines, span, nbt, total, today=today, now=now, user=change.created_by, scheduled=True)
            applied += 1
    return applied


# -- settings ---------------------------------------------------------------------------

_FORMAT_FIELDS = ("invoice_number_format", "credit_note_number_format")


_NUMBER_MAX_LENGTH = 64  # Invoice.number and CreditNote.number


def _check_number_format(fmt: str, field: str) -> None:
    """Refuse a format that cannot be used, or that could give two documents one number.

    Only ``{year}`` and ``{seq}`` with a plain format spec are allowed (no attribute or
    index access, no nested fields, widths of at most two digits), so checking it never
    builds a huge string. As :func:`reserve_numbers` restarts the sequence each year
    when the format mentions ``{year``, the year must then really be in the number.
    """

    def refuse(problem: str) -> DomainError:
        return DomainError(
            f"{field}: {problem}; use {{year}} and {{seq}} (e.g. INV-{{year}}-{{seq:06d}})",
            code="invalid_number_format", field=field, status=422,
        )

    try:
        fields = [(name, spec) for _, name, spec, _ in string.Formatter().parse(fmt) if name is not None]
    except ValueError as exc:
        raise refuse(str(exc)) from None
    for name, spec in fields:
        if name not in ("year", "seq"):
            raise refuse(f"unknown field {{{name}}}")
        if "{" in spec or any(len(digits) > 2 for digits in re.findall(r"[0-9]+", spec)):
            raise refuse(f"unsupported format spec '{spec}'")
    if "seq" not in {name for name, _ in fields}:
        raise refuse("the format must contain {seq}")
    try:
        samples = {(year, seq): fmt.format(year=year, seq=seq) for year in (2026, 2027) for seq in (1, 2, 999_999_999)}
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise refuse(str(exc)) from None
    scoped = samples if "{year" in fmt else {k: v for k, v in samples.items() if k[0] == 2026}
    if len(set(scoped.values())) != len(scoped):
        raise refuse("different documents would get the same number")
    if max(len(number) for number in samples.values()) > _NUMBER_MAX_LENGTH:
        raise refuse(f"numbers would be longer than {_NUMBER_MAX_LENGTH} characters")


def update_billing_settings(**changes) -> BillingSettings:
    """Change ISP-wide billing settings; they apply to invoices issued from now on."""
    changes = {k: v for k, v in changes.items() if v is not None}
    for field in _FORMAT_FIELDS:
        if field in changes:
            _check_number_format(changes[field], field)
    if "tax_rate" in changes and not Decimal(0) <= changes["tax_rate"] <= Decimal(100):
        raise DomainError("tax_rate must be between 0 and 100", code="invalid_tax_rate", field="tax_rate", status=422)
    if "billing_day" in changes and not 1 <= changes["billing_day"] <= 31:
        raise DomainError("billing_day must be 1-31", code="invalid_billing_day", field="billing_day", status=422)
    with transaction.atomic():
        BillingSettings.load()
        obj = BillingSettings.objects.select_for_update().get(pk=1)
        for field, value in changes.items():
            setattr(obj, field, value)
        obj.save()
        return obj
