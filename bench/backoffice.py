"""Benchmark: server time of the back-office pages staff open all day, on a full database.

    .venv/bin/python bench/backoffice.py --subscribers 100000
    .venv/bin/python bench/backoffice.py --subscribers 100000 --database-url postgresql://postgres@127.0.0.1:5432/test

Always works on a throwaway database (see ``throwaway.py``). Setup is not measured: N
subscribers over a dozen areas, five packages and six routers; three months of invoices
(September to November 2026; most paid, some partly paid, a quarter of November's still
open and overdue, so some subscribers are suspended), their payments through bKash,
Nagad, SSLCommerz and by hand, ledger entries, reminders and receipts, enforcement
actions, network states, outbox items and reconcile runs. The first ``--long-history``
subscribers have twelve months of all of it, for the detail page.

Measured, in this process through Django's test client signed in as an admin, on
25 November 2026: each case is requested ``--warmup`` times, then ``--requests`` times
timed; the median, p95 and maximum of the server time and the SQL statements per request
are printed. Cases: the dashboard; the subscriber list's first page and a page deep in
keyset paging; filtered by status, area, package, router and overdue; searched by a
name fragment, phone digits and an exact username; a subscriber's detail page. Prints
numbers; checks only that each page answers 200 and shows what it should.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from throwaway import use_throwaway_database  # noqa: E402  (bench/, next to this script)

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # 10:00 in Dhaka
CURRENT = date(2026, 11, 1)  # the month being collected: a quarter still unpaid
UPCOMING = date(2026, 12, 1)  # invoiced on 24 November, seven days ahead; due 1 December
TARGET_P95_MS = 150.0
PACKAGES = [("Home 5M", 50_000), ("Home 10M", 80_000), ("Home 20M", 100_000), ("Family 40M", 150_000),
            ("Business 100M", 350_000)]
PACKAGE_WEIGHTS = [15, 40, 25, 15, 5]
# (area, weight, router index)
AREAS = [("Mirpur", 18, 0), ("Uttara", 12, 1), ("Dhanmondi", 8, 2), ("Mohammadpur", 10, 2), ("Gulshan", 4, 3),
         ("Banani", 3, 3), ("Badda", 10, 4), ("Rampura", 8, 4), ("Khilgaon", 7, 5), ("Motijheel", 5, 5),
         ("Shyamoli", 6, 0), ("Bashundhara", 9, 1)]
FIRST = ["Abdul", "Rahim", "Karim", "Jamal", "Kamal", "Nasir", "Rafiq", "Shafiq", "Habib", "Mizanur", "Anwar",
         "Farhana", "Nusrat", "Taslima", "Sharmin", "Ayesha", "Fatema", "Rokeya", "Sabina", "Nasrin", "Tanvir",
         "Imran", "Sohel", "Rubel", "Shahin", "Mamun", "Arif", "Sumon", "Ripon", "Liton", "Jahangir", "Mostafa",
         "Shirin", "Rupa", "Mitu", "Lucky", "Shapla", "Jesmin", "Parvin", "Moni"]
LAST = ["Hossain", "Rahman", "Islam", "Ahmed", "Uddin", "Khan", "Chowdhury", "Sarker", "Mia", "Begum", "Akter",
        "Khatun", "Alam", "Haque", "Kabir", "Siddique", "Talukder", "Bhuiyan", "Sheikh", "Mollah", "Das", "Roy",
        "Paul", "Biswas", "Karim"]
GATEWAYS = [("bkash", "gateway", "bKash", 45), ("nagad", "gateway", "Nagad", 25), ("sslcommerz", "gateway", "Visa", 10),
            ("", "cash", "", 15), ("", "manual_mfs", "Rocket", 5)]


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", type=int, default=100_000)
    p.add_argument("--long-history", type=int, default=500, help="subscribers with 12 months of history (default 500)")
    p.add_argument("--database-url", default=None, help="default: $DATABASE_URL if postgresql://, else SQLite")
    p.add_argument("--requests", type=int, default=40, help="timed requests per case (default 40)")
    p.add_argument("--warmup", type=int, default=3, help="untimed requests per case first (default 3)")
    p.add_argument("--only", default="", help="comma-separated case names to run (default: all)")
    p.add_argument("--explain", action="store_true", help="print each case's slowest SQL with its plan")
    p.add_argument("--keep", action="store_true", help="keep the throwaway database (prints where it is)")
    return p.parse_args()


# -- setup ----------------------------------------------------------------------------

def _row_template(model, now: datetime):
    """Column names, a row of defaults and {attname: position} for ``model``."""
    from django.db import connection

    fields = list(model._meta.concrete_fields)
    defaults = []
    for f in fields:
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            defaults.append(now)
        elif f.has_default() or not f.null:
            defaults.append(f.get_db_prep_save(f.get_default(), connection))
        else:
            defaults.append(None)
    return [f.column for f in fields], defaults, {f.attname: i for i, f in enumerate(fields)}


class _Table:
    """Rows for one model, built from its defaults and flushed with ``bulk_insert``."""

    def __init__(self, model, now: datetime, *, ids: bool = False):
        self.model = model
        self.columns, self.template, self.at = _row_template(model, now)
        if not ids:  # the database numbers the rows
            pk = self.at.pop(model._meta.pk.attname)
            del self.columns[pk], self.template[pk]
            self.at = {k: i - (i > pk) for k, i in self.at.items()}
        self.rows: list[tuple] = []
        self.total = 0

    def add(self, **values) -> None:
        row = self.template.copy()
        at = self.at
        for key, value in values.items():
            row[at[key]] = value
        self.rows.append(tuple(row))

    def flush(self) -> None:
        from ispbill.core.db import bulk_insert

        bulk_insert(self.model, self.columns, self.rows)
        self.total += len(self.rows)
        self.rows = []


def _month_starts(last: date, count: int) -> list[date]:
    months, d = [], last
    for _ in range(count):
        months.append(d)
        d = (d - timedelta(days=1)).replace(day=1)
    return list(reversed(months))


def _month_end(start: date) -> date:
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def _dhaka(day: date, seconds: int) -> datetime:
    """An instant ``seconds`` after midnight of ``day`` in Dhaka (UTC+6, no DST)."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=6) + timedelta(seconds=seconds)


def _setup(n: int, long_history: int) -> dict:
    from django.db import transaction

    from ispbill.billing.models import BillingSettings, Invoice, LedgerEntry
    from ispbill.core.db import reserve_ids
    from ispbill.network.models import EnforcementAction, NetworkState, ReconcileRun, Router
    from ispbill.notifications.models import Message
    from ispbill.payments.models import Payment
    from ispbill.plans.models import Package
    from ispbill.subscribers.models import Subscriber
    from ispbill.worker.models import OutboxItem

    rng = random.Random(20261125)
    BillingSettings.load()
    packages = [Package.objects.create(name=name, price_paisa=price, rate_limit="", router_profile=name.lower())
                for name, price in PACKAGES]
    routers = [Router.objects.create(name=f"nas-{i + 1:02d}", host=f"10.10.{i}.1", last_ok_at=NOW - timedelta(minutes=3),
                                     consecutive_failures=2 if i == 5 else 0, last_error="timeout" if i == 5 else "")
               for i in range(6)]
    for r in routers:
        for k in range(3):
            ReconcileRun.objects.create(
                router=r, started_at=NOW - timedelta(minutes=5 + 10 * k), finished_at=NOW - timedelta(minutes=4 + 10 * k),
                secrets=n // 6, online=n // 8, online_unpaid=[f"u{j}" for j in range(k + 2)],
                unknown_on_router=["guest"], paid_but_suspended=[], missing_on_router=[],
            )
    area_names = [a for a, _, _ in AREAS]
    area_weights = [w for _, w, _ in AREAS]
    area_router = {a: routers[r].pk for a, _, r in AREAS}
    months_all = _month_starts(UPCOMING, 12)
    subs_t, inv_t, led_t = _Table(Subscriber, NOW, ids=True), _Table(Invoice, NOW, ids=True), _Table(LedgerEntry, NOW)
    pay_t, msg_t = _Table(Payment, NOW, ids=True), _Table(Message, NOW)
    act_t, net_t = _Table(EnforcementAction, NOW), _Table(NetworkState, NOW)
    seq = {"inv": 0}
    info = {"long": [], "usernames": [], "phones": []}
    chunk, done = 10_000, 0
    while done < n:
        size = min(chunk, n - done)
        with transaction.atomic():
            sub_ids = reserve_ids(Subscriber, size)
            n_inv = sum(12 if i < long_history else 3 for i in range(done, done + size))
            inv_ids = iter(reserve_ids(Invoice, n_inv))
            pay_ids = iter(reserve_ids(Payment, n_inv))
            for i, sub_id in zip(range(done, done + size), sub_ids):
                first, last = rng.choice(FIRST), rng.choice(LAST)
                area = rng.choices(area_names, area_weights)[0]
                pkg = rng.choices(packages, PACKAGE_WEIGHTS)[0]
                phone = f"+8801{rng.choice('3456789')}{rng.randrange(10**8):08d}"
                username = f"{first.lower()}.{last.lower()}{i}"
                roll = rng.random()
                nov = "paid" if roll < 0.72 else "partially_paid" if roll < 0.75 else "open"
                disabled = rng.random() < 0.02
                activated = date(2025, 11, 1) if i < long_history else date(2026, 8, rng.randrange(1, 29))
                months = months_all if i < long_history else months_all[-3:]
                if disabled:
                    months = months[:-1]
                # What happened to November's invoice decides the subscriber's state.
                suspended = not disabled and nov != "paid" and rng.random() < 0.6
                status = "disabled" if disabled else "suspended" if suspended else "active"
                subs_t.add(id=sub_id, name=f"{first} {last}", phone=phone, email=f"{username}@example.com" if i % 4 == 0 else "",
                           address=f"House {i % 97 + 1}, Road {i % 23 + 1}, {area}", area=area, pppoe_username=username,
                           package_id=pkg.pk, router_id=area_router[area], status=status, activated_on=activated,
                           billing_mode="", billed_through=date(2026, 11, 30), created_at=_dhaka(activated, 40_000),
                           updated_at=NOW)
                if i < long_history:
                    info["long"].append(sub_id)
                if i % 997 == 0:
                    info["usernames"].append(username)
                    info["phones"].append(phone)
                generation = 0
                for m in months:
                    inv_id = next(inv_ids)
                    seq["inv"] += 1
                    issued_on = m - timedelta(days=7)
                    issued_at = _dhaka(issued_on, 300)
                    price = pkg.price_paisa
                    if m == UPCOMING:
                        state = "paid" if rng.random() < 0.08 else "open"
                    elif m == CURRENT:
                        state = nov
                    else:
                        state = "open" if rng.random() < 0.03 else "paid"
                    paid = price if state == "paid" else price // 2 if state == "partially_paid" else 0
                    inv_t.add(id=inv_id, number=f"INV-{m.year}-{seq['inv']:07d}", subscriber_id=sub_id, kind="recurring",
                              package_id=pkg.pk, period_start=m, period_end=_month_end(m), issued_on=issued_on,
                              issued_at=issued_at, due_on=m, currency="BDT", total_paisa=price,
                              amount_due_paisa=price - paid, status=state)
                    led_t.add(subscriber_id=sub_id, kind="invoice", amount_paisa=price, invoice_id=inv_id, created_at=issued_at)
                    if m < UPCOMING:
                        msg_t.add(subscriber_id=sub_id, invoice_id=inv_id, kind="reminder", step="-5", channel="sms",
                                  status="dead" if rng.random() < 0.003 else "sent",
                                  dedupe_key=f"invoice:{inv_id}:-5:sms", recipient=phone, language="bn",
                                  body=f"Your internet bill of Tk {price // 100} is due on {m:%d %b}.", encoding="ucs2",
                                  segments=1, created_at=_dhaka(m - timedelta(days=5), 36_000),
                                  sent_at=_dhaka(m - timedelta(days=5), 36_010))
                    if paid:
                        pay_id = next(pay_ids)
                        gateway, method, label, _ = rng.choices(GATEWAYS, [g[3] for g in GATEWAYS])[0]
                        day = m + timedelta(days=rng.randrange(-6, 24 if m == CURRENT else 1 if m == UPCOMING else 8))
                        received = min(_dhaka(day, rng.randrange(8 * 3600, 22 * 3600)), NOW - timedelta(minutes=rng.randrange(1, 600)))
                        pay_t.add(id=pay_id, subscriber_id=sub_id, amount_paisa=paid, currency="BDT", method=method,
                                  method_label=label, status="completed", gateway=gateway,
                                  transaction_id=f"TX{pay_id:09d}" if gateway else None, received_at=received,
                                  refunded_paisa=0)
                        led_t.add(subscriber_id=sub_id, kind="payment", amount_paisa=-paid, invoice_id=inv_id,
                                  payment_id=pay_id, created_at=received)
                        msg_t.add(subscriber_id=sub_id, payment_id=pay_id, kind="receipt", channel="sms", status="sent",
                                  dedupe_key=f"payment:{pay_id}:receipt:sms", recipient=phone, language="bn",
                                  body=f"Received Tk {paid // 100}. Thank you.", encoding="ucs2", segments=1,
                                  created_at=received, sent_at=received + timedelta(seconds=2))
                    if (state != "paid" and m < CURRENT) or (m == CURRENT and (suspended or rng.random() < 0.05)):
                        generation += 1
                        at = _dhaka(m + timedelta(days=4 + rng.randrange(0, 20 if m == CURRENT else 3)), 3600 * 9)
                        at = min(at, NOW - timedelta(minutes=rng.randrange(1, 300)))
                        act_t.add(subscriber_id=sub_id, router_id=area_router[area], action="suspend", generation=generation,
                                  reason="overdue", status="done", created_at=at, done_at=at + timedelta(seconds=1))
                        if not suspended or m < CURRENT:
                            generation += 1
                            back = min(at + timedelta(days=rng.randrange(0, 6)), NOW - timedelta(minutes=1))
                            act_t.add(subscriber_id=sub_id, router_id=area_router[area], action="restore",
                                      generation=generation, reason="payment", status="done", created_at=back,
                                      done_at=back + timedelta(seconds=1))
                net_t.add(subscriber_id=sub_id, desired="suspended" if suspended else "active",
                          applied="suspended" if suspended else "active", generation=generation,
                          reason="overdue" if suspended else "", changed_at=NOW - timedelta(days=3), applied_at=NOW - timedelta(days=3))
            for t in (subs_t, inv_t, led_t, pay_t, msg_t, act_t, net_t):
                t.flush()
        done += size
    with transaction.atomic():
        OutboxItem.objects.bulk_create(
            OutboxItem(topic="notifications.send", dedupe_key=f"bench:{k}", payload={"message": k},
                       state="dead" if k % 10 == 0 else "pending", attempts=8 if k % 10 == 0 else 1,
                       next_attempt_at=NOW + timedelta(minutes=k % 30), created_at=NOW)
            for k in range(300)
        )
        for k in range(12):  # unmatched gateway payments waiting for staff
            Payment.objects.create(amount_paisa=80_000, method="gateway", method_label="bKash", status="needs_review",
                                   review_reason="unknown reference", gateway="bkash", transaction_id=f"RV{k:06d}",
                                   received_at=NOW - timedelta(hours=k))
    _analyze()
    info["rows"] = {t.model.__name__: t.total for t in (subs_t, inv_t, led_t, pay_t, msg_t, act_t, net_t)}
    info["packages"] = [p.pk for p in packages]
    info["routers"] = [r.pk for r in routers]
    return info


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        # VACUUM too on PostgreSQL, as autovacuum would soon: index-only scans need the
        # visibility map that a freshly bulk-loaded table lacks.
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


# -- measurement ----------------------------------------------------------------------

def _cases(info: dict, rng: random.Random) -> list[tuple[str, object, str]]:
    """(name, request -> (path, params), text the page must contain)."""
    from ispbill.subscribers.models import Subscriber

    ids = list(Subscriber.objects.order_by("id").values_list("id", flat=True)[::1000])
    mid = ids[len(ids) // 2]
    username = info["usernames"][len(info["usernames"]) // 3]
    phone = info["phones"][len(info["phones"]) // 2]
    long = info["long"]
    pkg, router = info["packages"][3], info["routers"][4]
    rare_name = "sharmin talukder"
    return [
        ("dashboard", lambda: ("/office/", {}), "Outstanding"),
        ("list: first page", lambda: ("/office/subscribers/", {}), "Next"),
        ("list: after 50,000th id", lambda: ("/office/subscribers/", {"after": mid}), "Next"),
        ("list: status=suspended", lambda: ("/office/subscribers/", {"status": "suspended"}), "Next"),
        ("list: area=Gulshan", lambda: ("/office/subscribers/", {"area": "Gulshan"}), "Next"),
        ("list: package", lambda: ("/office/subscribers/", {"package": pkg}), "Next"),
        ("list: router", lambda: ("/office/subscribers/", {"router": router}), "Next"),
        ("list: overdue=1", lambda: ("/office/subscribers/", {"overdue": "1"}), "Next"),
        ("list: overdue+area+suspended", lambda: ("/office/subscribers/", {"overdue": "1", "area": "Badda", "status": "suspended"}), "match"),
        ("search: name 'hossain'", lambda: ("/office/subscribers/", {"q": "hossain"}), "Hossain"),
        ("search: name (rare)", lambda: ("/office/subscribers/", {"q": rare_name}), "Sharmin Talukder"),
        ("search: phone digits", lambda: ("/office/subscribers/", {"q": phone[-7:]}), phone),
        ("search: exact username", lambda: ("/office/subscribers/", {"q": username}), username),
        ("detail: 12 months", lambda: (f"/office/subscribers/{rng.choice(long)}/", {}), "Invoices"),
    ]


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * len(values) + 0.5) - 1))
    return values[k]


def _measure(client, name, make, expect, *, requests: int, warmup: int, explain: bool) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(warmup):
        path, params = make()
        response = client.get(path, params)
        assert response.status_code == 200, (name, response.status_code)
        assert expect in response.content.decode(), f"{name}: {expect!r} not on the page"
    times, queries, slowest = [], [], (0.0, "")
    for _ in range(requests):
        path, params = make()
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            response = client.get(path, params)
            elapsed = time.perf_counter() - t0
        assert response.status_code == 200, (name, response.status_code)
        times.append(elapsed * 1000)
        queries.append(len(ctx.captured_queries))
        for q in ctx.captured_queries:
            if float(q["time"]) > slowest[0]:
                slowest = (float(q["time"]), q["sql"])
    if explain and slowest[1]:
        with connection.cursor() as cursor:
            prefix = "EXPLAIN ANALYZE " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "
            cursor.execute(prefix + slowest[1])
            plan = "\n".join("    " + " ".join(str(c) for c in row) for row in cursor.fetchall())
        print(f"  slowest SQL of {name} ({slowest[0] * 1000:.1f} ms): {slowest[1][:400]}\n{plan}")
    return {"median": statistics.median(times), "p95": _pct(times, 95), "max": max(times),
            "queries": sorted(set(queries))}


def main() -> int:
    args = _parse_args()
    url = args.database_url or os.environ.get("DATABASE_URL", "")
    use_throwaway_database(url, label="office", keep=args.keep)
    os.environ["DJANGO_SETTINGS_MODULE"] = "ispbill.settings"
    os.environ.setdefault("ISPBILL_LOG_LEVEL", "WARNING")

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from ispbill.core import clock

    # Not setup_test_environment(): its instrumented template rendering would be timed too.
    settings.DEBUG = False
    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    t_migrate = time.perf_counter() - t0
    t0 = time.perf_counter()
    info = _setup(args.subscribers, min(args.long_history, args.subscribers))
    t_setup = time.perf_counter() - t0
    vendor = connection.vendor
    if vendor == "postgresql":
        server = f"{connection.settings_dict['NAME']} (PostgreSQL {connection.cursor().connection.info.server_version})"
    else:
        import sqlite3

        server = f"{connection.settings_dict['NAME']} (SQLite {sqlite3.sqlite_version})"
    print(f"database   : {vendor} {server}")
    print(f"data       : {args.subscribers} subscribers; " + ", ".join(f"{k} {v:,}" for k, v in info["rows"].items()))
    print(f"setup      : migrate {t_migrate:.1f} s, load {t_setup:.1f} s (not measured)")

    admin = get_user_model().objects.create_superuser("bench-admin", "admin@example.com", None)
    client = Client()
    client.force_login(admin)
    rng = random.Random(7)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    results = []
    load_before = os.getloadavg()
    with clock.use_clock(clock.FixedClock(NOW)):
        for name, make, expect in _cases(info, rng):
            if only and not any(o in name for o in only):
                continue
            r = _measure(client, name, make, expect, requests=args.requests, warmup=args.warmup, explain=args.explain)
            results.append((name, r))
            print(f"  {name:<30} median {r['median']:7.1f} ms   p95 {r['p95']:7.1f} ms   max {r['max']:7.1f} ms   "
                  f"queries {'/'.join(map(str, r['queries']))}", flush=True)
    load_after = os.getloadavg()
    missed = [name for name, r in results if r["p95"] > TARGET_P95_MS]
    print(f"load average: {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} CPUs "
          "(other work on the machine inflates every time)")
    print(f"result     : {len(results) - len(missed)}/{len(results)} cases with p95 <= {TARGET_P95_MS:.0f} ms"
          + (f"; over: {', '.join(missed)}" if missed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
