"""Reads for the back-office pages: a bounded number of queries per page, whatever the
number of rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db.models import Case, Count, Exists, IntegerField, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy

from ispbill.audit.selectors import subscriber_activity
from ispbill.billing.choices import InvoiceStatus
from ispbill.billing.ledger import OPEN_STATUSES
from ispbill.billing.models import Invoice, LedgerEntry
from ispbill.core.timeutil import start_of_day
from ispbill.network.choices import ActionKind
from ispbill.network.models import EnforcementAction, NetworkState, ReconcileRun, Router
from ispbill.notifications.choices import MessageStatus
from ispbill.notifications.models import Message
from ispbill.payments.choices import CREDITED_STATUSES, PaymentMethod, PaymentStatus
from ispbill.payments.models import Payment
from ispbill.plans.models import Package
from ispbill.subscribers.choices import SubscriberStatus
from ispbill.subscribers.models import Subscriber
from ispbill.subscribers.selectors import subscriber_list
from ispbill.worker.models import OutboxItem, OutboxState

PAGE_SIZE = 50
#: The list counts matches up to this many; beyond it the page says "more than".
COUNT_LIMIT = 1000


# -- subscribers list ----------------------------------------------------------------------

@dataclass
class SubscriberFilters:
    q: str = ""
    status: str = ""
    area: str = ""
    package: int | None = None
    router: int | None = None
    overdue: bool = False

    @classmethod
    def from_query(cls, params) -> "SubscriberFilters":
        def as_id(name):
            value = (params.get(name) or "").strip()
            return int(value) if value.isdigit() else None

        status = params.get("status", "")
        return cls(
            q=(params.get("q") or "").strip()[:100],
            status=status if status in SubscriberStatus.values else "",
            area=(params.get("area") or "").strip()[:100],
            package=as_id("package"),
            router=as_id("router"),
            overdue=params.get("overdue") in ("1", "on", "true"),
        )

    def active(self) -> bool:
        return bool(self.q or self.status or self.area or self.package or self.router or self.overdue)


def overdue_exists(today: date):
    return Exists(
        Invoice.objects.filter(
            subscriber_id=OuterRef("pk"), status__in=OPEN_STATUSES, amount_due_paisa__gt=0, due_on__lt=today
        )
    )


def filtered_subscribers(filters: SubscriberFilters, *, today: date):
    qs = subscriber_list(q=filters.q, status=filters.status, area=filters.area, package_id=filters.package)
    if filters.router is not None:
        qs = qs.filter(router_id=filters.router)
    if filters.overdue:
        qs = qs.filter(overdue_exists(today))
    return qs.select_related("package", "router")


@dataclass
class Page:
    rows: list
    count: int
    count_capped: bool
    next_after: int | None
    prev_before: int | None
    first: bool


def subscriber_match(q: str, prefix: str = "subscriber__") -> Q:
    """Rows whose subscriber (through ``prefix``) has ``q`` in their name or username, or
    its digits (without a leading + or 0) in their phone number."""
    cond = Q(**{f"{prefix}name__icontains": q}) | Q(**{f"{prefix}pppoe_username__icontains": q})
    digits = q.lstrip("+0")
    if digits:
        cond |= Q(**{f"{prefix}phone__contains": digits})
    return cond


def newest_first_page(qs, *, after: int | None, before: int | None, count: int | None = None) -> Page:
    """One page of ``qs`` newest first (id descending), by keyset: ``after`` is the last
    id of the page before (older rows follow), ``before`` the first id of the page after.
    ``count``: the exact number of matches when the caller has it; otherwise it is
    counted up to :data:`COUNT_LIMIT` over a LIMITed subquery."""
    if before is not None:
        rows = list(qs.filter(id__gt=before).order_by("id")[: PAGE_SIZE + 1])
        more_before = len(rows) > PAGE_SIZE
        rows = list(reversed(rows[:PAGE_SIZE]))
        more_after = True
    else:
        rows = list((qs if after is None else qs.filter(id__lt=after)).order_by("-id")[: PAGE_SIZE + 1])
        more_after = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        more_before = after is not None
    capped = False
    if count is None:
        # COUNT over a LIMITed subquery: bounded work however many rows match.
        counted = qs.order_by().values("id")[: COUNT_LIMIT + 1].count()
        capped = counted > COUNT_LIMIT
        count = min(counted, COUNT_LIMIT)
    return Page(
        rows=rows, count=count, count_capped=capped,
        next_after=rows[-1].pk if rows and more_after else None,
        prev_before=rows[0].pk if rows and more_before else None,
        first=not more_before,
    )


def subscriber_page(filters: SubscriberFilters, *, today: date, after: int | None = None, before: int | None = None) -> Page:
    """One page of subscribers in id order, by keyset (``after``/``before`` an id), so
    page 2,000 costs what page 1 does; the match count stops at :data:`COUNT_LIMIT`."""
    qs = filtered_subscribers(filters, today=today)
    if before is not None:
        rows = list(qs.filter(id__lt=before).order_by("-id")[: PAGE_SIZE + 1])
        more_before = len(rows) > PAGE_SIZE
        rows = list(reversed(rows[:PAGE_SIZE]))
        more_after = True
    else:
        if after is not None:
            qs = qs.filter(id__gt=after)
        rows = list(qs.order_by("id")[: PAGE_SIZE + 1])
        more_after = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        more_before = after is not None
    if after is None and before is None and not more_after:
        counted = len(rows)  # the first page holds every match: no second pass over the table
    else:
        # COUNT over a LIMITed subquery: bounded work however many rows match.
        counted = filtered_subscribers(filters, today=today).order_by().values("id")[: COUNT_LIMIT + 1].count()
    return Page(
        rows=rows,
        count=min(counted, COUNT_LIMIT),
        count_capped=counted > COUNT_LIMIT,
        next_after=rows[-1].pk if rows and more_after else None,
        prev_before=rows[0].pk if rows and more_before else None,
        first=not more_before,
    )


def filter_choices() -> dict:
    return {
        "packages": list(Package.objects.order_by("name").values_list("id", "name")),
        "routers": list(Router.objects.order_by("name").values_list("id", "name")),
        "areas": list(
            Subscriber.objects.exclude(area="").order_by("area").values_list("area", flat=True).distinct()[:500]
        ),
        "statuses": SubscriberStatus.choices,
    }


# -- subscriber detail ---------------------------------------------------------------------

DETAIL_ROWS = 25


@dataclass
class SubscriberDetail:
    subscriber: Subscriber
    balance_paisa: int
    network: NetworkState | None
    ledger: list
    invoices: list
    open_invoices: list
    payments: list
    messages: list
    enforcement: list
    packages: list
    pending_change: object | None = None
    activity: list = field(default_factory=list)  # audit events concerning the subscriber


def subscriber_detail(subscriber_id: int) -> SubscriberDetail | None:
    from ispbill.billing.models import PackageChange

    sub = (
        Subscriber.objects.select_related("package", "router")
        .annotate(balance_paisa=Coalesce(Subquery(
            LedgerEntry.objects.filter(subscriber_id=OuterRef("pk")).order_by().values("subscriber_id")
            .annotate(s=Sum("amount_paisa")).values("s")
        ), Value(0)))
        .filter(pk=subscriber_id)
        .first()
    )
    if sub is None:
        return None
    invoices = list(Invoice.objects.filter(subscriber_id=sub.pk).order_by("-issued_on", "-id")[:DETAIL_ROWS])
    return SubscriberDetail(
        subscriber=sub,
        balance_paisa=sub.balance_paisa,
        network=NetworkState.objects.filter(subscriber_id=sub.pk).first(),
        ledger=list(
            LedgerEntry.objects.filter(subscriber_id=sub.pk).select_related("invoice", "payment", "credit_note")
            .order_by("-created_at", "-id")[:DETAIL_ROWS]
        ),
        invoices=invoices,
        open_invoices=list(
            Invoice.objects.filter(subscriber_id=sub.pk, status__in=OPEN_STATUSES, amount_due_paisa__gt=0)
            .order_by("due_on", "id")[:DETAIL_ROWS]
        ),
        payments=list(Payment.objects.filter(subscriber_id=sub.pk).order_by("-received_at", "-id")[:DETAIL_ROWS]),
        messages=list(Message.objects.filter(subscriber_id=sub.pk).order_by("-created_at", "-id")[:DETAIL_ROWS]),
        enforcement=list(
            EnforcementAction.objects.filter(subscriber_id=sub.pk).select_related("router", "requested_by")
            .order_by("-created_at", "-id")[:DETAIL_ROWS]
        ),
        packages=list(Package.objects.filter(is_active=True).exclude(pk=sub.package_id).order_by("price_paisa", "name")),
        pending_change=PackageChange.objects.filter(subscriber_id=sub.pk, applied_at__isnull=True)
        .select_related("new_package").first(),
        activity=subscriber_activity(sub.pk, limit=DETAIL_ROWS),
    )


# -- dashboard -----------------------------------------------------------------------------

def _day_index(field: str, bounds: list[datetime], lo: int, hi: int):
    """SQL expression: how many of the sorted instants ``bounds[:hi]`` are <= ``field``
    (``lo`` of them known to be), as a binary search of nested CASEs: a handful of
    comparisons per row, done by the database. Unlike a time zone conversion per row
    (a Python function on SQLite), this costs next to nothing."""
    if lo == hi:
        return Value(lo)
    mid = (lo + hi) // 2
    return Case(
        When(**{f"{field}__lt": bounds[mid]}, then=_day_index(field, bounds, lo, mid)),
        default=_day_index(field, bounds, mid + 1, hi),
        output_field=IntegerField(),
    )


def _payments_by_local_day(first: date, last: date):
    """(local date, gateway, method, paisa, refunded paisa) of credited payments received
    from ``first`` to ``last`` (days in the ISP's zone).

    Days before ``last`` are over: their sums are kept in the cache for
    ``ISPBILL_DASHBOARD_CACHE_SECONDS`` (a refund of an earlier day's payment shows within
    that time); ``last`` itself (today) is always summed afresh, so a payment shows at once."""
    if first >= last:
        return _sum_payments_by_local_day(first, last)
    key = f"ispbill:dashboard:payments:{first.isoformat()}:{last.isoformat()}"
    closed = cache.get(key)
    if closed is None:
        closed = _sum_payments_by_local_day(first, last - timedelta(days=1))
        cache.set(key, closed, settings.ISPBILL_DASHBOARD_CACHE_SECONDS)
    return closed + _sum_payments_by_local_day(last, last)


def _sum_payments_by_local_day(first: date, last: date):
    n = (last - first).days + 1
    bounds = [start_of_day(first + timedelta(days=i)) for i in range(1, n)]
    rows = (
        Payment.objects.filter(
            status__in=CREDITED_STATUSES,
            received_at__gte=start_of_day(first),
            received_at__lt=start_of_day(last + timedelta(days=1)),
        )
        .annotate(day=_day_index("received_at", bounds, 0, len(bounds)))
        .order_by().values_list("day", "gateway", "method")
        .annotate(s=Sum("amount_paisa"), r=Sum("refunded_paisa"))
    )
    return [(first + timedelta(days=i), gateway, method, s, r) for i, gateway, method, s, r in rows]


AGING_BUCKETS = (
    (gettext_lazy("0–7 days"), 0, 7), (gettext_lazy("8–30 days"), 8, 30), (gettext_lazy("31–60 days"), 31, 60),
    (gettext_lazy("60+ days"), 61, None),
)


@dataclass
class Dashboard:
    today: date
    month_start: date
    billed_paisa: int
    collected_paisa: int
    collection_rate: Decimal | None
    outstanding_paisa: int
    not_due_paisa: int
    overdue_paisa: int
    aging: list[tuple[str, int]]
    by_status: dict[str, int]
    suspended_today: int
    restored_today: int
    routers: list
    outbox_backlog: int
    outbox_dead: int
    messages_dead: int
    needs_review: int
    leakage: dict[str, int]
    payments_by_day: dict = field(default_factory=dict)  # {series label: {date: paisa}}
    days: list[date] = field(default_factory=list)


def dashboard(*, now: datetime, today: date, days: int = 30) -> Dashboard:
    month_start = today.replace(day=1)
    billed = Invoice.objects.filter(issued_on__gte=month_start, issued_on__lte=today).exclude(
        status=InvoiceStatus.VOID
    ).aggregate(s=Sum("total_paisa"))["s"] or 0

    # Outstanding money, aged by days past the due date: the database sums per due date
    # (one pass over an index that carries the amount), the buckets are added up here.
    # Grouped by status too, which is the index's order: the rows stream out without a sort.
    per_due_on = (
        Invoice.objects.filter(status__in=OPEN_STATUSES, amount_due_paisa__gt=0)
        .order_by().values_list("status", "due_on").annotate(s=Sum("amount_due_paisa"))
    )
    outstanding = not_due = overdue = 0
    aging = [0] * len(AGING_BUCKETS)
    for _status, due_on, paisa in per_due_on:
        late = (today - due_on).days
        outstanding += paisa
        if late < 0:
            not_due += paisa
        elif late > 0:
            overdue += paisa
        for i, (_, lo, hi) in enumerate(AGING_BUCKETS):
            if late >= lo and (hi is None or late <= hi):
                aging[i] += paisa

    by_status = {s: 0 for s in SubscriberStatus.values}
    by_status.update(dict(Subscriber.objects.order_by().values_list("status").annotate(n=Count("id"))))

    actions_today = dict(
        EnforcementAction.objects.filter(created_at__gte=start_of_day(today)).order_by()
        .values_list("action").annotate(n=Count("id"))
    )
    outbox = dict(
        OutboxItem.objects.filter(state__in=(OutboxState.PENDING, OutboxState.IN_FLIGHT, OutboxState.DEAD)).order_by()
        .values_list("state").annotate(n=Count("id"))
    )

    routers = list(Router.objects.order_by("name"))
    latest = ReconcileRun.objects.filter(
        pk__in=Subquery(
            Router.objects.annotate(
                run=Subquery(ReconcileRun.objects.filter(router=OuterRef("pk")).order_by("-started_at").values("pk")[:1])
            ).values("run")
        )
    ).only("router_id", "online_unpaid", "unknown_on_router", "paid_but_suspended", "missing_on_router", "finished_at")
    leakage = {"online_unpaid": 0, "unknown_on_router": 0, "paid_but_suspended": 0, "missing_on_router": 0}
    last_run = {}
    for run in latest:
        last_run[run.router_id] = run
        for key in leakage:
            leakage[key] += len(getattr(run, key) or [])
    for router in routers:
        router.last_run = last_run.get(router.pk)

    # One pass over the payments of this month and the chart's days: money collected this
    # month and money received per day, by gateway or method.
    first_day = today - timedelta(days=days - 1)
    since = min(first_day, month_start)
    collected_paisa = 0
    per_day: dict[str, dict[date, int]] = {}
    method_labels = dict(PaymentMethod.choices)
    for day, gateway, method, paisa, refunded in _payments_by_local_day(since, today):
        if day >= month_start:
            collected_paisa += (paisa or 0) - (refunded or 0)
        if day >= first_day:
            label = gateway or method_labels.get(method, method)
            per_day.setdefault(label, {})
            per_day[label][day] = per_day[label].get(day, 0) + (paisa or 0)

    return Dashboard(
        today=today,
        month_start=month_start,
        billed_paisa=billed,
        collected_paisa=collected_paisa,
        collection_rate=(Decimal(collected_paisa) / Decimal(billed)) if billed else None,
        outstanding_paisa=outstanding,
        not_due_paisa=not_due,
        overdue_paisa=overdue,
        aging=[(label, aging[i]) for i, (label, _, _) in enumerate(AGING_BUCKETS)],
        by_status=by_status,
        suspended_today=actions_today.get(ActionKind.SUSPEND, 0),
        restored_today=actions_today.get(ActionKind.RESTORE, 0),
        routers=routers,
        outbox_backlog=outbox.get(OutboxState.PENDING, 0) + outbox.get(OutboxState.IN_FLIGHT, 0),
        outbox_dead=outbox.get(OutboxState.DEAD, 0),
        messages_dead=Message.objects.filter(status=MessageStatus.DEAD).count(),
        needs_review=Payment.objects.filter(status=PaymentStatus.NEEDS_REVIEW).count(),
        leakage=leakage,
        payments_by_day=per_day,
        days=[first_day + timedelta(days=i) for i in range(days)],
    )

