"""Benchmark: one billing run over N subscribers, each due one recurring invoice.

    .venv/bin/python bench/billing_run.py --subscribers 100000
    .venv/bin/python bench/billing_run.py --subscribers 100000 --database-url postgresql://postgres@127.0.0.1:5432/test

Always works on a throwaway database: SQLite in a temporary ISPBILL_DATA_DIR, or, for a
postgresql:// URL, a dedicated database (``ispbill_bench_<pid>``) created on that URL's
server and dropped afterwards. The database named in the URL is only used for its
host, port and user; it is never connected to or changed.

Setup (migrations, packages, subscribers) is not measured. Measured: exactly one
``run_billing(today=2026-11-25, ...)`` that issues the December invoice for every
subscriber, then a second run for the same day (must issue nothing). Prints numbers;
asserts nothing beyond reporting the correctness check.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from throwaway import use_throwaway_database  # noqa: E402  (bench/, next to this script)

TODAY = date(2026, 11, 25)
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
ACTIVATED = date(2026, 11, 1)
BILLED_THROUGH = date(2026, 11, 30)
EXPECT_THROUGH = date(2026, 12, 31)
# (name, price in paisa): round prices, and one with paisa to keep the sum honest.
PACKAGES = [("Bench 10M", 50_000), ("Bench 20M", 80_000), ("Bench 40M", 120_000), ("Bench 80M", 150_050)]


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", type=int, default=100_000)
    p.add_argument("--database-url", default=None, help="default: $DATABASE_URL if postgresql://, else SQLite")
    p.add_argument("--batch-size", type=int, default=None, help="passed to run_billing (default: its own)")
    p.add_argument("--profile", metavar="FILE", default=None, help="write a cProfile of the measured run to FILE")
    p.add_argument("--keep", action="store_true", help="keep the throwaway database (prints where it is)")
    return p.parse_args()


# -- memory ---------------------------------------------------------------------------

def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _backend_pid() -> int | None:
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _cpu_seconds(pid: int | None) -> float | None:
    """User+system CPU of a local process (the PostgreSQL backend serving us), if visible."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- setup ----------------------------------------------------------------------------

def _setup(n: int) -> dict[int, int]:
    """Packages and ``n`` subscribers (bulk insert); returns {package_id: subscriber count}."""
    from django.db import connection, transaction

    from ispbill.billing.models import BillingSettings
    from ispbill.core.db import bulk_insert, reserve_ids
    from ispbill.plans.models import Package
    from ispbill.subscribers.models import Subscriber

    BillingSettings.load()  # defaults: calendar, day 1, prepaid, 7 lead days, no tax
    packages = [Package.objects.create(name=name, price_paisa=price, rate_limit="", router_profile=name)
                for name, price in PACKAGES]
    counts = {p.pk: 0 for p in packages}
    # Every concrete column, so fields added to Subscriber later still get their defaults.
    fields = [f for f in Subscriber._meta.concrete_fields]
    columns = [f.column for f in fields]
    defaults = {}
    for f in fields:
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            defaults[f.attname] = NOW
        elif f.has_default() or not f.null:
            defaults[f.attname] = f.get_db_prep_save(f.get_default(), connection)
        else:
            defaults[f.attname] = None
    template = [defaults[f.attname] for f in fields]
    slot = {f.attname: i for i, f in enumerate(fields)}
    chunk = 20_000
    done = 0
    while done < n:
        size = min(chunk, n - done)
        with transaction.atomic():
            ids = reserve_ids(Subscriber, size)
            rows = []
            for i, sub_id in enumerate(ids, start=done):
                pkg = packages[i % len(packages)].pk
                counts[pkg] += 1
                row = template.copy()
                row[slot["id"]] = sub_id
                row[slot["name"]] = f"Bench Subscriber {i}"
                row[slot["phone"]] = f"+88017{i:08d}"
                row[slot["area"]] = f"Area {i % 50}"
                row[slot["pppoe_username"]] = f"bench{i}"
                row[slot["package_id"]] = pkg
                row[slot["status"]] = "active"
                row[slot["activated_on"]] = ACTIVATED
                row[slot["billing_mode"]] = ""
                row[slot["billed_through"]] = BILLED_THROUGH
                rows.append(tuple(row))
            bulk_insert(Subscriber, columns, rows)
        done += size
    _analyze()
    return counts


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


# -- verification ---------------------------------------------------------------------

def _verify(n: int, counts: dict[int, int]) -> list[tuple[str, object, object]]:
    from django.db.models import Count, Max, Min, Sum

    from ispbill.billing.models import Invoice, InvoiceLine, LedgerEntry, NumberSequence
    from ispbill.plans.models import Package
    from ispbill.subscribers.models import Subscriber

    prices = dict(Package.objects.values_list("id", "price_paisa"))
    expected_sum = sum(prices[pk] * c for pk, c in counts.items())
    inv = Invoice.objects.aggregate(
        n=Count("id"), subs=Count("subscriber_id", distinct=True), total=Sum("total_paisa"),
        first=Min("period_start"), last=Max("period_end"),
    )
    wrong_total = 0
    for pk, price in prices.items():
        wrong_total += Invoice.objects.filter(package_id=pk).exclude(total_paisa=price).count()
    numbers = list(Invoice.objects.values_list("number", flat=True))
    seq_values = sorted(int(x.rsplit("-", 1)[1]) for x in numbers)
    gapless = seq_values == list(range(1, len(seq_values) + 1))
    seq_next = NumberSequence.objects.filter(scope__startswith="invoice").values_list("next_value", flat=True).first()
    checks = [
        ("invoices", inv["n"], n),
        ("subscribers invoiced", inv["subs"], n),
        ("recurring open invoices", Invoice.objects.filter(kind="recurring", status="open").count(), n),
        ("invoice lines (one plan line each)", (InvoiceLine.objects.count(), InvoiceLine.objects.filter(kind="plan", position=1).count()), (n, n)),
        ("ledger entries", LedgerEntry.objects.count(), n),
        ("ledger sum (paisa)", LedgerEntry.objects.aggregate(s=Sum("amount_paisa"))["s"], expected_sum),
        ("invoice totals sum (paisa)", inv["total"], expected_sum),
        ("invoices with wrong total", wrong_total, 0),
        ("period", f"{inv['first']}..{inv['last']}", f"{date(2026, 12, 1)}..{EXPECT_THROUGH}"),
        ("billed_through advanced", Subscriber.objects.filter(billed_through=EXPECT_THROUGH).count(), n),
        ("issued_at/created_at == now (ORM lookup)",
         (Invoice.objects.filter(issued_at=NOW, issued_on=TODAY).count(), LedgerEntry.objects.filter(created_at=NOW).count()),
         (n, n)),
        ("numbers gapless 1..N", gapless, True),
        ("number sequence next", seq_next, n + 1),
    ]
    return checks


# -- main -----------------------------------------------------------------------------

def main() -> int:
    args = _parse_args()
    url = args.database_url or os.environ.get("DATABASE_URL", "")
    use_throwaway_database(url, label="billing", keep=args.keep)
    os.environ["DJANGO_SETTINGS_MODULE"] = "ispbill.settings"
    os.environ.setdefault("ISPBILL_LOG_LEVEL", "WARNING")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from ispbill.billing.services import run_billing

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    t_migrate = time.perf_counter() - t0
    t0 = time.perf_counter()
    counts = _setup(args.subscribers)
    t_setup = time.perf_counter() - t0
    vendor = connection.vendor
    server = ""
    if vendor == "postgresql":
        server = f" {connection.settings_dict['NAME']} on {connection.settings_dict['HOST']}:{connection.settings_dict['PORT']}"
    elif vendor == "sqlite":
        import sqlite3

        server = f" {sqlite3.sqlite_version} at {connection.settings_dict['NAME']}"
    print(f"database      : {vendor}{server}")
    print(f"subscribers   : {args.subscribers}  (setup: migrate {t_migrate:.2f} s, insert {t_setup:.2f} s; not measured)")

    kwargs = {"today": TODAY, "now": NOW}
    if args.batch_size:
        kwargs["batch_size"] = args.batch_size
    gc.collect()
    rss_before_kb = _proc_status_kb("VmRSS")
    hwm_reset = _reset_hwm()
    maxrss_before = _maxrss_mb()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    backend = _backend_pid()
    backend_cpu0 = _cpu_seconds(backend)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    result = run_billing(**kwargs)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    backend_cpu1 = _cpu_seconds(backend)
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    hwm_after_kb = _proc_status_kb("VmHWM")
    maxrss_after = _maxrss_mb()

    rate = result.issued / elapsed if elapsed else float("inf")
    print(f"run 1         : issued {result.issued} invoices, checked {result.checked}, passes {result.passes}")
    print(f"run 1 time    : {elapsed:.3f} s  ->  {rate:,.0f} invoices/s" + ("  (under cProfile)" if profiler else ""))
    load = os.getloadavg()
    cpu_line = f"cpu during run: this process {cpu:.2f} s"
    if backend_cpu0 is not None and backend_cpu1 is not None:
        cpu_line += f", PostgreSQL backend {backend_cpu1 - backend_cpu0:.2f} s"
    print(cpu_line + f"  (load average {load[0]:.2f} on {os.cpu_count()} CPUs: other work on the machine inflates the time)")
    print(f"peak RSS      : {maxrss_after:.1f} MB  (getrusage ru_maxrss, whole process incl. setup; "
          f"{maxrss_before:.1f} MB before the run)")
    if rss_before_kb is not None and hwm_after_kb is not None:
        how = ("VmHWM reset via /proc/self/clear_refs before the run" if hwm_reset
               else "VmHWM not resettable: peak since process start")
        print(f"RSS during run: {rss_before_kb / 1024:.1f} MB before -> {hwm_after_kb / 1024:.1f} MB peak, "
              f"{(hwm_after_kb - rss_before_kb) / 1024:+.1f} MB  (/proc/self/status VmRSS before, VmHWM after; {how})")

    t0 = time.perf_counter()
    again = run_billing(**kwargs)
    elapsed2 = time.perf_counter() - t0
    print(f"run 2 (same day): issued {again.issued} invoices, checked {again.checked}, in {elapsed2:.3f} s "
          f"({'idempotent' if again.issued == 0 else 'NOT IDEMPOTENT'})")

    checks = _verify(args.subscribers, counts)
    ok = all(got == want for _, got, want in checks)
    print("verification  :")
    for label, got, want in checks:
        print(f"  {'ok ' if got == want else 'BAD'} {label}: {got}" + ("" if got == want else f" (expected {want})"))
    print(f"result        : {'PASS' if ok and again.issued == 0 else 'FAIL'}  "
          f"({args.subscribers} subscribers, {result.issued} invoices, {elapsed:.3f} s, {rate:,.0f}/s, "
          f"peak RSS {maxrss_after:.0f} MB)")
    return 0 if ok and again.issued == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
