"""Believable demo data, built the way an ISP's own history would have been built.

:func:`load_demo` moves a simulated clock from about three months before ``now`` up to
``now``: people sign up, the daily billing run issues their invoices, they pay by bKash,
Nagad, cash or bank (or don't), change package, get a credit note, are suspended or
disabled. Every write goes through the services, never to the ledger or invoice tables
directly, so every balance and invoice status follows from the ledger.

Every subscriber is on one router, "demo-router" (127.0.0.1, port
``ISPBILL_DEMO_ROUTER_PORT``, default 18728, user admin / admin), which
``ispbill serve --demo-router`` runs as a simulated MikroTik. Loading the demo contacts
no router: suspensions are only queued (EnforcementAction + outbox item) and the worker
applies them once the router is up.

The roster is fixed and the randomness is seeded, so the same ``now`` gives the same data.
"""

from __future__ import annotations

import heapq
import itertools
import os
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Callable

from django.contrib.auth import get_user_model
from django.db import transaction

from ispbill.billing.ledger import OPEN_STATUSES
from ispbill.billing.models import BillingSettings, Invoice
from ispbill.billing.services import change_package, issue_credit_note, run_billing, update_billing_settings
from ispbill.core.money import from_paisa
from ispbill.core.timeutil import local_date, start_of_day
from ispbill.network.choices import Reason
from ispbill.network.models import Router
from ispbill.network.services import suspend_subscriber
from ispbill.payments.choices import PaymentMethod
from ispbill.payments.models import Payment
from ispbill.payments.services import record_payment
from ispbill.plans.models import Package
from ispbill.plans.services import create_package
from ispbill.subscribers.choices import SubscriberStatus
from ispbill.subscribers.models import Subscriber
from ispbill.subscribers.services import create_subscriber, update_subscriber

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "ispbill-admin"
SEED = 2026

DEMO_ROUTER_NAME = "demo-router"
DEMO_ROUTER_USER = "admin"
DEMO_ROUTER_PASSWORD = "admin"
# Not 8728: the simulator must not need root, nor clash with a real router's API.
DEMO_ROUTER_PORT_DEFAULT = 18728


def demo_router_port() -> int:
    """Where the demo router listens: ``ISPBILL_DEMO_ROUTER_PORT`` (default 18728)."""
    return int(os.environ.get("ISPBILL_DEMO_ROUTER_PORT", "") or DEMO_ROUTER_PORT_DEFAULT)


@dataclass
class DemoResult:
    """What :func:`load_demo` created (all zero when it skipped a non-empty database).

    ``admin_password`` is ``None`` when an ``admin`` user already existed and was kept.
    """

    skipped: bool
    packages: int = 0
    subscribers: int = 0
    invoices: int = 0
    payments: int = 0
    admin_username: str = ADMIN_USERNAME
    admin_password: str | None = None


# -- the catalogue and the people ------------------------------------------------------

PACKAGES = (
    # name, monthly price (BDT), rate limit, router profile
    ("Home 5 Mbps", Decimal("400.00"), "5M/5M", "home-5m"),
    ("Home 10 Mbps", Decimal("500.00"), "10M/10M", "home-10m"),
    ("Home 20 Mbps", Decimal("800.00"), "20M/20M", "home-20m"),
    ("Fiber 40 Mbps", Decimal("1200.00"), "40M/40M", "fiber-40m"),
    ("Business 100 Mbps", Decimal("3000.00"), "100M/100M", "business-100m"),
)
HOME_PACKAGE_WEIGHTS = {"Home 5 Mbps": 3, "Home 10 Mbps": 8, "Home 20 Mbps": 6, "Fiber 40 Mbps": 3}

MALE_NAMES = (
    "Rahim", "Karim", "Rafiq", "Shafiq", "Jamal", "Kamal", "Nasir", "Habib", "Tanvir", "Sakib", "Imran",
    "Arif", "Fahim", "Rashed", "Mizanur", "Anisur", "Shahidul", "Jahangir", "Mahmud", "Sohel", "Rubel",
    "Masud", "Faruk", "Zahid", "Shuvo", "Tareq", "Mehedi", "Rakib",
)
FEMALE_NAMES = (
    "Fatema", "Ayesha", "Nasrin", "Shirin", "Rokeya", "Taslima", "Sharmin", "Nusrat", "Farzana", "Sumaiya",
    "Tahmina", "Rumana", "Jannatul", "Sabina", "Marium", "Lamia",
)
SURNAMES = (
    "Hossain", "Rahman", "Islam", "Ahmed", "Uddin", "Chowdhury", "Khan", "Sarkar", "Miah", "Talukder",
    "Sheikh", "Bhuiyan", "Mollah", "Haque", "Alam", "Kabir", "Siddique", "Mahmud",
)
FEMALE_SURNAMES = ("Akter", "Begum", "Khatun", "Sultana", "Rahman", "Islam", "Chowdhury", "Haque", "Jahan")
HINDU_NAMES = (("Sujit", "Das"), ("Pritom", "Saha"), ("Ananya", "Roy"), ("Gopal", "Ghosh"), ("Rina", "Sen"))
BUSINESSES = (
    ("Shapla Pharmacy", "Mirpur"),
    ("Bismillah Telecom & Computer", "Badda"),
)

AREAS = ("Mirpur", "Uttara", "Dhanmondi", "Mohammadpur", "Badda", "Rampura", "Banasree", "Khilgaon")
# Operator prefixes, roughly by market share (GP 017/013, Robi 018, Banglalink 019/014, Airtel 016, Teletalk 015).
MOBILE_PREFIXES = ("017",) * 5 + ("013",) * 2 + ("018",) * 3 + ("019",) * 3 + ("014", "016", "016", "015")
EMAIL_DOMAINS = ("gmail.com", "gmail.com", "gmail.com", "yahoo.com", "outlook.com")
LINE_MEN = ("Jasim", "Babul", "Alamgir")
BANKS = ("DBBL", "BRAC Bank", "City Bank", "Islami Bank")


MOHAMMADPUR_STREETS = ("Iqbal Road", "Tajmahal Road", "Block C", "Shyamoli Housing")


def _address(rng: random.Random, area: str) -> str:
    house, road = rng.randint(1, 120), rng.randint(1, 28)
    return {
        "Mirpur": f"House {house}, Road {road}, Section {rng.choice((1, 2, 6, 10, 11, 12))}, Mirpur, Dhaka",
        "Uttara": f"House {house}, Road {road}, Sector {rng.randint(1, 14)}, Uttara, Dhaka",
        "Dhanmondi": f"House {house}, Road {rng.choice(('2', '4/A', '8/A', '11', '15', '27'))}, Dhanmondi, Dhaka",
        "Mohammadpur": f"House {house}, {rng.choice(MOHAMMADPUR_STREETS)}, Mohammadpur, Dhaka",
        "Badda": f"House {house}, {rng.choice(('Merul', 'Uttar', 'Madhya'))} Badda, Dhaka",
        "Rampura": f"House {house}, Road {road}, West Rampura, Dhaka",
        "Banasree": f"House {house}, Road {road}, Block {rng.choice('BCDEFGHJ')}, Banasree, Dhaka",
        "Khilgaon": f"House {house}, Road {road}, Khilgaon, Dhaka",
    }[area]


# -- how each subscriber behaves -------------------------------------------------------

PROMPT = "prompt"  # pays every invoice in full around its due date
LATE = "late"  # pays a day or three after the due date, inside the grace period
SALARY_DAY = "salary_day"  # has a longer grace period and pays around the 10th
OVERDUE = "overdue"  # stopped paying recently: an overdue, unpaid invoice
NEVER_SUSPEND = "never_suspend"  # overdue too, but exempt from suspension
PARTIAL = "partial"  # pays part of recent invoices
SUSPENDED = "suspended"  # stopped paying and was suspended
DISABLED_UNPAID = "disabled_unpaid"  # stopped paying, suspended, then disconnected
MOVED_AWAY = "moved_away"  # paid up, then disconnected on request
ADVANCE = "advance"  # paid six months ahead: a credit on the account

# Invoices falling due within this many days before today are left unpaid.
UNPAID_WINDOW_DAYS = {OVERDUE: 25, NEVER_SUSPEND: 55, PARTIAL: 35, SUSPENDED: 40, DISABLED_UNPAID: 75}


@dataclass
class _Plan:
    behaviour: str
    activation_window: tuple[int, int]  # days before today
    package: str | None = None
    business: tuple[str, str] | None = None
    upgrade_to: str | None = None
    downgrade_to: str | None = None
    credit_note: bool = False
    never_suspend: bool = False
    grace_days_override: int | None = None
    notes: str = ""


def _roster() -> list[_Plan]:
    """Fifty subscribers: mostly good payers, and one or more of every state worth showing."""
    plans = [
        _Plan(PROMPT, (45, 95), package="Home 10 Mbps", upgrade_to="Fiber 40 Mbps"),
        _Plan(PROMPT, (45, 95), package="Fiber 40 Mbps", downgrade_to="Home 20 Mbps"),
        _Plan(PROMPT, (45, 95), credit_note=True),
        _Plan(PROMPT, (8, 14)),  # joined this month: a prorated first invoice
        _Plan(PROMPT, (8, 14)),
        _Plan(PROMPT, (30, 95), package="Business 100 Mbps", business=BUSINESSES[0]),
        _Plan(PROMPT, (30, 95), package="Business 100 Mbps", business=BUSINESSES[1]),
        *(_Plan(PROMPT, (20, 95)) for _ in range(24)),
        _Plan(LATE, (35, 95)),
        _Plan(LATE, (35, 95)),
        _Plan(
            SALARY_DAY, (40, 95), grace_days_override=10,
            notes="Pays on salary day (around the 10th); grace extended by the manager.",
        ),
        *(_Plan(OVERDUE, (40, 95)) for _ in range(5)),
        _Plan(
            NEVER_SUSPEND, (75, 95), never_suspend=True,
            notes="Mosque committee office: never auto-suspend, call the secretary instead.",
        ),
        *(_Plan(PARTIAL, (40, 95)) for _ in range(4)),
        *(_Plan(SUSPENDED, (55, 95)) for _ in range(3)),
        _Plan(DISABLED_UNPAID, (90, 100)),
        _Plan(MOVED_AWAY, (60, 95)),
        _Plan(ADVANCE, (50, 80), package="Home 10 Mbps", notes="Paid six months in advance."),
    ]
    return plans


@dataclass
class _Member:
    subscriber_id: int
    plan: _Plan
    package_price: Decimal
    paid_first: bool = False


# -- the simulation --------------------------------------------------------------------

@dataclass(order=True)
class _Event:
    at: datetime
    seq: int
    run: Callable[[], None] = field(compare=False)


class _Simulation:
    def __init__(self, *, now: datetime, rng: random.Random, staff):
        self.now = now.astimezone(UTC)
        self.today = local_date(now)
        self.rng = rng
        self.staff = staff
        self.grace_days = BillingSettings.load().grace_days
        self.packages: dict[str, Package] = {}
        self.router: Router | None = None
        self.members: dict[int, _Member] = {}
        self.queue: list[_Event] = []
        self.current = self.now  # the instant of the event being played
        self.phones: set[str] = set()
        self.seq = itertools.count()
        self.last_invoice_id = Invoice.objects.order_by("-id").values_list("id", flat=True).first() or 0
        self.receipt_numbers = itertools.count(1201)

    # time ---------------------------------------------------------------------------

    def at(self, day: date, hour: int, minute: int = 0) -> datetime:
        return (start_of_day(day) + timedelta(hours=hour, minutes=minute)).astimezone(UTC)

    def daytime(self, day: date, first_hour: int = 9, last_hour: int = 21) -> datetime:
        return self.at(day, self.rng.randint(first_hour, last_hour), self.rng.randint(0, 59))

    def days_ago(self, n: int) -> date:
        return self.today - timedelta(days=n)

    def schedule(self, at: datetime, run: Callable[[], None]) -> None:
        heapq.heappush(self.queue, _Event(at, next(self.seq), run))

    def run(self) -> None:
        """Play every event up to ``now``, in time order; events later than ``now`` never happen."""
        while self.queue and self.queue[0].at <= self.now:
            event = heapq.heappop(self.queue)
            self.current = event.at
            event.run()
            self._notice_new_invoices()

    # set-up -------------------------------------------------------------------------

    def create_packages(self) -> None:
        for name, price, rate_limit, profile in PACKAGES:
            self.packages[name] = create_package(name=name, price=price, rate_limit=rate_limit, router_profile=profile)

    def create_router(self) -> None:
        """The simulated MikroTik every demo subscriber dials into."""
        router = Router.objects.filter(name=DEMO_ROUTER_NAME).first()
        if router is None:
            router = Router(name=DEMO_ROUTER_NAME, host="127.0.0.1", port=demo_router_port(), username=DEMO_ROUTER_USER)
            router.password = DEMO_ROUTER_PASSWORD
            router.save()
        self.router = router

    def plan_subscribers(self) -> None:
        rng = self.rng
        plans = _roster()
        people = self._people(len(plans))
        numeric = set(rng.sample(range(7, len(plans)), 4))  # a few accounts from the old numeric scheme
        with_email = set(rng.sample(range(len(plans)), 8)) | {5, 6}
        used_usernames: set[str] = set()
        next_numeric = itertools.count(1001)
        for index, (plan, (name, first, last)) in enumerate(zip(plans, people, strict=True)):
            area = plan.business[1] if plan.business else rng.choice(AREAS)
            if plan.business:
                name = plan.business[0]
            package = plan.package or _weighted(rng, HOME_PACKAGE_WEIGHTS)
            activated_on = self._activation(plan.activation_window, mid_month=plan.activation_window[0] < 20)
            if index in numeric:
                username = str(next(next_numeric))
            else:
                stem = f"{area.lower()}-{(first if not plan.business else name.split()[0]).lower()}"
                username = next(f"{stem}{n:02d}" for n in itertools.count(1) if f"{stem}{n:02d}" not in used_usernames)
            used_usernames.add(username)
            email = ""
            if index in with_email:
                if plan.business:
                    email = f"accounts@{name.split()[0].lower()}.com.bd"
                else:
                    email = f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@{rng.choice(EMAIL_DOMAINS)}"
            details = dict(
                name=name, phone=self._phone(), email=email, address=_address(rng, area), area=area,
                pppoe_username=username, package_id=self.packages[package].pk, router=self.router, activated_on=activated_on,
                never_suspend=plan.never_suspend, grace_days_override=plan.grace_days_override, notes=plan.notes,
            )
            # Sign-up a day or three before the line is installed and the service starts.
            signed_up = self.daytime(activated_on - timedelta(days=rng.randint(1, 3)), 10, 18)
            self.schedule(signed_up, lambda details=details, plan=plan, package=package: self._sign_up(details, plan, package))

    def _people(self, count: int) -> list[tuple[str, str, str]]:
        rng = self.rng
        seen: set[str] = set()
        people: list[tuple[str, str, str]] = []
        hindu = list(HINDU_NAMES)
        rng.shuffle(hindu)
        while len(people) < count:
            roll = rng.random()
            if roll < 0.08 and hindu:
                first, last = hindu.pop()
            elif roll < 0.35:
                first, last = rng.choice(FEMALE_NAMES), rng.choice(FEMALE_SURNAMES)
            else:
                first, last = rng.choice(MALE_NAMES), rng.choice(SURNAMES)
            full = f"{'Md. ' if roll > 0.8 else ''}{first} {last}"
            if first == last or f"{first} {last}" in seen:
                continue
            seen.add(f"{first} {last}")
            people.append((full, first, last))
        return people

    def _phone(self) -> str:
        while True:
            number = self.rng.choice(MOBILE_PREFIXES) + f"{self.rng.randrange(10**8):08d}"
            if number not in self.phones:
                self.phones.add(number)
                return number

    def _activation(self, window: tuple[int, int], *, mid_month: bool) -> date:
        day = self.days_ago(self.rng.randint(*window))
        if mid_month:
            return day + timedelta(days=1) if day.day == 1 else day
        if self.rng.random() < 0.35:
            # Many connections start on the 1st: a full first month, no proration.
            first = day.replace(day=1)
            following = (first + timedelta(days=32)).replace(day=1)
            low, high = window
            return following if self.days_ago(high) <= following <= self.days_ago(low) else first
        return day

    def schedule_billing_runs(self) -> None:
        """The daily billing run at 06:00, from the first sign-up to today."""
        first = min(e.at for e in self.queue)
        day = local_date(first)
        while day <= self.today:
            at = min(self.at(day, 6), self.now)
            self.schedule(at, lambda day=day, at=at: run_billing(today=day, now=at))
            day += timedelta(days=1)

    # events -------------------------------------------------------------------------

    def _sign_up(self, details: dict, plan: _Plan, package: str) -> None:
        today = local_date(self.current)
        sub = create_subscriber(today=today, **details)
        member = _Member(sub.pk, plan, self.packages[package].price)
        self.members[sub.pk] = member
        if plan.upgrade_to:
            self._change_on(member, self.days_ago(12), plan.upgrade_to)
        if plan.downgrade_to:
            self._change_on(member, self.days_ago(8), plan.downgrade_to)
        if plan.credit_note:
            at = self.daytime(self.days_ago(6), 11, 16)
            self.schedule(at, lambda: self._credit_note(member))
        if plan.behaviour == MOVED_AWAY:
            self._disable_on(member, self.days_ago(18), "Moved to Chattogram; ONU collected.")
        if plan.behaviour == DISABLED_UNPAID:
            self._disable_on(member, self.days_ago(7), "Disconnected for non-payment; dues outstanding.")

    def _disable_on(self, member: _Member, day: date, notes: str) -> None:
        at = self.daytime(day, 11, 16)
        self.schedule(at, lambda: self._set_status(member, SubscriberStatus.DISABLED, notes=notes))

    def _change_on(self, member: _Member, day: date, package: str) -> None:
        def change() -> None:
            today = local_date(self.current)
            change_package(
                subscriber_id=member.subscriber_id, package_id=self.packages[package].pk, effective_on=today,
                preview=False, today=today, now=self.current, user=self.staff,
            )

        self.schedule(self.daytime(day, 10, 17), change)

    def _credit_note(self, member: _Member) -> None:
        today = local_date(self.current)
        sub = Subscriber.objects.get(pk=member.subscriber_id)
        invoice = (
            Invoice.objects.filter(subscriber_id=sub.pk, period_start__lte=today).order_by("-period_start", "-id").first()
        )
        issue_credit_note(
            subscriber_id=sub.pk, amount=Decimal("100.00"), today=today, now=self.current, user=self.staff,
            invoice_id=invoice.pk if invoice else None,
            reason=f"Compensation: 3-day fibre cut on the {sub.area} backbone",
        )

    def _set_status(self, member: _Member, status: str, **changes) -> None:
        update_subscriber(subscriber_id=member.subscriber_id, today=local_date(self.current), status=status, **changes)

    def _suspend_if_unpaid(self, member: _Member, invoice_id: int) -> None:
        status = Subscriber.objects.filter(pk=member.subscriber_id).values_list("status", flat=True).get()
        unpaid = Invoice.objects.filter(pk=invoice_id, amount_due_paisa__gt=0).exists()
        if status == SubscriberStatus.ACTIVE and unpaid:
            self._suspend_for_non_payment(member)

    def _suspend_for_non_payment(self, member: _Member) -> None:
        """What the suspension run does: desired state suspended (reason overdue, so a
        payment lifts it), the router action queued, not sent."""
        suspend_subscriber(subscriber_id=member.subscriber_id, reason=Reason.OVERDUE, now=self.current)

    # paying -------------------------------------------------------------------------

    def _notice_new_invoices(self) -> None:
        """Decide how each newly issued invoice gets paid (or not)."""
        fresh = list(
            Invoice.objects.filter(id__gt=self.last_invoice_id)
            .order_by("id")
            .values_list("id", "subscriber_id", "issued_on", "due_on", "amount_due_paisa")
        )
        for invoice_id, subscriber_id, issued_on, due_on, amount_due in fresh:
            self.last_invoice_id = invoice_id
            member = self.members.get(subscriber_id)
            if member is not None and amount_due > 0:
                self._plan_payment(member, invoice_id, issued_on, due_on)

    def _plan_payment(self, member: _Member, invoice_id: int, issued_on: date, due_on: date) -> None:
        rng, behaviour = self.rng, member.plan.behaviour
        grace = member.plan.grace_days_override if member.plan.grace_days_override is not None else self.grace_days
        window = UNPAID_WINDOW_DAYS.get(behaviour)
        recent = window is not None and due_on >= self.days_ago(window)
        if recent and behaviour != PARTIAL:
            if behaviour in (SUSPENDED, DISABLED_UNPAID):
                day = due_on + timedelta(days=grace + 1)
                self.schedule(self.at(day, 8, rng.randint(0, 59)), lambda: self._suspend_if_unpaid(member, invoice_id))
            return
        if behaviour == LATE:
            day = due_on + timedelta(days=rng.randint(1, max(grace, 1)))
        elif behaviour == SALARY_DAY:
            day = due_on + timedelta(days=rng.randint(max(grace - 5, 1), max(grace - 1, 1)))
        else:
            # Most pay between the invoice SMS and the due date; a few a day or two late.
            span = max((due_on - issued_on).days, 0)
            day = issued_on + timedelta(days=rng.randint(0, span))
            if rng.random() < 0.15:
                day = due_on + timedelta(days=rng.randint(1, 2))
        at = max(self.daytime(day), self.current + timedelta(minutes=rng.randint(20, 240)))
        partial = behaviour == PARTIAL and recent
        self.schedule(at, lambda: self._pay(member, invoice_id, partial=partial))

    def _pay(self, member: _Member, invoice_id: int, *, partial: bool) -> None:
        due = self._owed_through(member, invoice_id)
        if due <= 0:
            return  # already paid with an earlier bill, or covered by credit
        amount = from_paisa(due)
        notes = ""
        if member.plan.behaviour == ADVANCE and not member.paid_first:
            amount = member.package_price * 6
            notes = "Six months in advance."
        elif partial:
            # Part of the bill, in round hundreds of taka ("the rest next week, bhai").
            fraction = Decimal(self.rng.choice(("0.4", "0.5", "0.6")))
            share = (amount * fraction / 100).quantize(Decimal("1"), rounding=ROUND_DOWN) * 100
            if share > 0:
                amount = share.quantize(Decimal("0.01"))
                notes = "Part payment; promised the rest next week."
        member.paid_first = True
        method, reference = self._method(member)
        record_payment(
            subscriber_id=member.subscriber_id, amount=amount, method=method, reference=reference, notes=notes,
            received_at=self.current, user=self.staff, notify=False,
        )

    def _owed_through(self, member: _Member, invoice_id: int) -> int:
        """What the bill for ``invoice_id`` asks for: it and any older open invoice, in the
        order payments are applied (paisa; 0 once it is paid)."""
        owed = 0
        for pk, amount_due in (
            Invoice.objects.filter(subscriber_id=member.subscriber_id, status__in=OPEN_STATUSES, amount_due_paisa__gt=0)
            .order_by("due_on", "issued_on", "id")
            .values_list("id", "amount_due_paisa")
        ):
            owed += amount_due
            if pk == invoice_id:
                return owed
        return 0

    def _method(self, member: _Member) -> tuple[str, str]:
        rng = self.rng
        if member.plan.business and rng.random() < 0.7:
            return PaymentMethod.BANK, f"EFT {rng.choice(BANKS)} {rng.randrange(10**9):09d}"
        roll = rng.random()
        if roll < 0.42:
            return PaymentMethod.MANUAL_MFS, f"bKash TrxID {_token(rng, 10)}"
        if roll < 0.58:
            return PaymentMethod.MANUAL_MFS, f"Nagad TxnID {_token(rng, 8)}"
        if roll < 0.63:
            return PaymentMethod.MANUAL_MFS, f"Rocket TxnID {rng.randrange(10**10):010d}"
        if roll < 0.95:
            return PaymentMethod.CASH, f"Receipt {next(self.receipt_numbers)}, collected by {rng.choice(LINE_MEN)}"
        return PaymentMethod.BANK, f"Deposit slip {rng.choice(BANKS)} {rng.randrange(10**6):06d}"

    def finish(self) -> None:
        """Anyone meant to be suspended whose suspension day has not come yet is suspended now."""
        self.current = self.now
        for member in self.members.values():
            if member.plan.behaviour == SUSPENDED:
                status = Subscriber.objects.filter(pk=member.subscriber_id).values_list("status", flat=True).get()
                if status == SubscriberStatus.ACTIVE:
                    self._suspend_for_non_payment(member)


def _weighted(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _token(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(length))


# -- entry point -----------------------------------------------------------------------

def load_demo(*, now: datetime, if_empty: bool = True, stdout=None) -> DemoResult:
    """Fill the database with about three months of a small Dhaka ISP's history, up to ``now``.

    With ``if_empty`` (the default) a database that already has subscribers is left
    alone and the result says ``skipped``. Everything happens in one transaction: a
    failure leaves the database as it was. The billing runs it plays back are global,
    so load it only into an empty (or throw-away) database.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")

    def say(message: str) -> None:
        if stdout is not None:
            stdout.write(message + "\n")

    with transaction.atomic():
        if if_empty and Subscriber.objects.exists():
            say("Demo data skipped: the database already has subscribers.")
            return DemoResult(skipped=True, admin_password=None)
        invoices_before, payments_before = Invoice.objects.count(), Payment.objects.count()
        staff, admin_password = _ensure_admin()
        update_billing_settings(isp_name="Dhaka Demo Net", hotline="09610-123456")
        sim = _Simulation(now=now, rng=random.Random(SEED), staff=staff)
        sim.create_packages()
        sim.create_router()
        sim.plan_subscribers()
        sim.schedule_billing_runs()
        say(f"Playing back billing from {local_date(sim.queue[0].at)} to {sim.today} ...")
        sim.run()
        sim.finish()
        result = DemoResult(
            skipped=False,
            packages=len(sim.packages),
            subscribers=len(sim.members),
            invoices=Invoice.objects.count() - invoices_before,
            payments=Payment.objects.count() - payments_before,
            admin_username=ADMIN_USERNAME,
            admin_password=admin_password,
        )
    say(
        f"Demo data loaded: {result.packages} packages, {result.subscribers} subscribers, "
        f"{result.invoices} invoices, {result.payments} payments."
    )
    if admin_password:
        say(f"Sign in as '{ADMIN_USERNAME}' with password '{admin_password}'.")
    return result


def _ensure_admin():
    """The staff user the demo acts as; created with the demo password if missing."""
    User = get_user_model()
    user = User.objects.filter(username=ADMIN_USERNAME).first()
    if user is not None:
        return user, None
    user = User.objects.create_superuser(ADMIN_USERNAME, email="admin@example.com", password=ADMIN_PASSWORD)
    return user, ADMIN_PASSWORD
