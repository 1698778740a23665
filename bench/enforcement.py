"""Benchmark: network enforcement against the RouterOS simulator (prints numbers).

    .venv/bin/python bench/enforcement.py
    .venv/bin/python bench/enforcement.py --suspensions 10000 --secrets 50000 --latency-ms 5
    .venv/bin/python bench/enforcement.py --part a --database-url postgresql://postgres@127.0.0.1:5432/test

(a) payment → restore latency: ``--payments`` suspended subscribers, online (redialled
    into the walled garden) on a simulated router; each pays its invoice through
    ``payments.services.record_payment`` in its own transaction, whose on-commit dispatch
    tells the router at once. Measured per payment: from just before ``record_payment``
    to the moment the simulator's PPP secret shows the package profile again; p50, p95,
    p99 (target: p99 < 1 s). The gateway webhook path (``gateway_services.process_inbound``
    → ``settle``) is not driven here: it verifies the signature and confirms with the
    gateway, then calls this same ``record_payment`` inside its transaction, and the same
    on-commit dispatch tells the router, so this is its latency minus those two steps.
    Runs on a throwaway database, never an existing one: SQLite in a temporary directory,
    and with ``--database-url postgresql://…`` also a database ``ispbill_bench_enf_<pid>``
    created on that server and dropped afterwards (the URL's own database is never
    touched). Each database is measured in a child process of its own.
(b) bulk suspension: ``--suspensions`` subscribers, all online, suspended on one
    simulated router that delays every reply by ``--latency-ms`` (target: 10,000 in
    ≤ 10 s at 5 ms). Each suspension is three commands (profile, address list, end the
    session), so 10,000 suspensions are 30,000 commands: one round trip each would take
    150 s; the driver pipelines tagged commands instead. Then the same batch again (must
    change nothing) and the bulk restore.
(c) reconcile read: ``read_state`` of a router with ``--secrets`` secrets (40 % online,
    10 % suspended) and the diff against desired state (target: 50,000 in ≤ 10 s).

``--part a|b|c|all`` (default all) picks what to run.

The simulator runs in this process (its own thread and event loop), so simulator and
driver share one CPU's GIL: numbers are pessimistic compared with a real router.
Setup (creating secrets and sessions; for (a) subscribers, invoices and suspensions) is
not measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from throwaway import use_throwaway_database  # noqa: E402  (bench/, next to this script)

from ispbill.network.drift import Desired, diff  # noqa: E402
from ispbill.network.drivers.base import Target  # noqa: E402
from ispbill.network.drivers.routeros import RouterOSDriver  # noqa: E402
from ispbill.sim.routeros import RouterOSSimulator  # noqa: E402

PACKAGE = "home-10M"
SUSPENDED = "Suspended_Profile"


def _address(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def bench_bulk_suspend(count: int, latency: float, connections: int) -> None:
    print(f"(b) bulk suspend: {count:,} subscribers online, {latency * 1000:g} ms latency per command")
    with RouterOSSimulator(users={"admin": "admin"}, latency=latency) as sim:
        sim.add_profile(PACKAGE)
        names = [str(100000 + i) for i in range(count)]
        sim.add_secrets(names, profile=PACKAGE)
        for i, name in enumerate(names):
            sim.add_active(name, _address(i))
        targets = [Target(i, name, PACKAGE) for i, name in enumerate(names)]
        with RouterOSDriver("127.0.0.1", sim.port, "admin", "admin", connections=connections) as driver:
            started = time.perf_counter()
            result = driver.bulk_suspend(targets)
            elapsed = time.perf_counter() - started
            counts = sim.command_counts
            suspended = sum(1 for s in sim.secrets() if s["profile"] == SUSPENDED)
            print(f"    suspended {len(result.ok):,} (failed {len(result.failed)}) in {elapsed:.2f} s"
                  f" = {len(result.ok) / elapsed:,.0f}/s  [target: 10,000 in <= 10 s]")
            print(f"    router: {suspended:,} secrets on {SUSPENDED}, {len(sim.address_list('suspended')):,}"
                  f" address-list entries, {len(sim.active()):,} sessions left;"
                  f" commands: set {counts['/ppp/secret/set']:,}, add {counts['/ip/firewall/address-list/add']:,},"
                  f" kick {counts['/ppp/active/remove']:,}, prints"
                  f" {sum(v for k, v in counts.items() if k.endswith('/print'))}")

            started = time.perf_counter()
            again = driver.bulk_suspend(targets)
            elapsed = time.perf_counter() - started
            writes = sum(v for k, v in sim.command_counts.items() if not k.endswith("/print")) - sum(
                v for k, v in counts.items() if not k.endswith("/print")
            )
            print(f"    repeat (idempotent): {len(again.ok):,} ok in {elapsed:.2f} s, {writes} writes")

            for i, name in enumerate(names):
                sim.add_active(name, _address(i))
            started = time.perf_counter()
            restored = driver.bulk_restore(targets)
            elapsed = time.perf_counter() - started
            print(f"    bulk restore: {len(restored.ok):,} (failed {len(restored.failed)}) in {elapsed:.2f} s")

            sim.add_active(names[0], _address(0))
            driver.suspend(targets[0])
            sim.add_active(names[0], _address(0))
            started = time.perf_counter()
            driver.restore(targets[0])
            elapsed = time.perf_counter() - started
            print(f"    single restore (online subscriber, {count:,} secrets on the router):"
                  f" {elapsed * 1000:.0f} ms")


def bench_read_state(count: int, latency: float) -> None:
    print(f"(c) read_state + diff: {count:,} secrets, {latency * 1000:g} ms latency per command")
    with RouterOSSimulator(users={"admin": "admin"}, latency=latency) as sim:
        sim.add_profile(PACKAGE)
        names = [str(500000 + i) for i in range(count)]
        sim.add_secrets(names[: count - count // 10], profile=PACKAGE)
        sim.add_secrets(names[count - count // 10 :], profile=SUSPENDED)
        for i, name in enumerate(names):
            if i % 5 < 2:
                sim.add_active(name, _address(i))
        for i in range(count - count // 10, count):
            if i % 5 < 2:
                sim.add_address_list_entry("suspended", _address(i), comment=str(i))
        # Desired: the last 10 % plus every 100th should be suspended; a few are unknown.
        desired = [
            Desired(i, name, PACKAGE, suspended=i >= count - count // 10 or i % 100 == 0)
            for i, name in enumerate(names[: count - 50])
        ]
        with RouterOSDriver("127.0.0.1", sim.port, "admin", "admin") as driver:
            started = time.perf_counter()
            state = driver.read_state()
            read = time.perf_counter() - started
            started = time.perf_counter()
            drift = diff(desired, state, suspended_profile=SUSPENDED)
            compared = time.perf_counter() - started
        print(f"    read_state: {len(state.secrets):,} secrets, {len(state.active):,} sessions,"
              f" {len(state.suspended):,} suspended entries in {read:.2f} s")
        print(f"    diff: {compared:.2f} s -> to suspend {len(drift.to_suspend):,},"
              f" to restore {len(drift.to_restore):,}, online unpaid {len(drift.online_unpaid):,},"
              f" unknown on router {len(drift.unknown_on_router):,}")
        print(f"    total {read + compared:.2f} s  [target: 50,000 in <= 10 s]")


# -- (a) payment -> restore latency ----------------------------------------------------

ISSUED_ON = date(2026, 11, 24)  # the December invoice: issued 24 Nov, due 1 Dec
SUSPENDED_AT = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)  # 09:00 in Dhaka, after 3 days' grace
PAID_AT = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)  # 12:00 in Dhaka


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def bench_payment_restore(count: int, latency: float, url: str | None) -> int:
    """Part (a) in this process, on a throwaway database (see the module docstring)."""
    where = use_throwaway_database(url, label="enf")
    os.environ["DJANGO_SETTINGS_MODULE"] = "ispbill.settings"
    os.environ.setdefault("ISPBILL_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from ispbill.billing.models import Invoice
    from ispbill.billing.services import run_billing
    from ispbill.core import clock
    from ispbill.network.models import EnforcementAction, Router
    from ispbill.network.services import ENFORCE_TOPIC, suspend_overdue
    from ispbill.payments.choices import PaymentMethod
    from ispbill.payments.services import record_payment
    from ispbill.plans.services import create_package
    from ispbill.subscribers.models import Subscriber
    from ispbill.worker import outbox

    call_command("migrate", verbosity=0)
    print(f"(a) payment -> restore on the router: {count} payments, {connection.vendor},"
          f" {latency * 1000:g} ms latency per command")
    print(f"    database: {where}")
    with RouterOSSimulator(users={"admin": "admin"}, latency=latency) as sim:
        sim.add_profile(PACKAGE)
        package = create_package(name="Bench 10M", price=Decimal("500.00"), router_profile=PACKAGE)
        router = Router(name="bench-router", host="127.0.0.1", port=sim.port, username="admin")
        router.password = "admin"
        router.save()
        Subscriber.objects.bulk_create(
            Subscriber(
                name=f"Bench {i}", phone=f"+88017{i:08d}", pppoe_username=f"pay{i:05d}", package=package,
                router=router, activated_on=date(2026, 11, 1), billed_through=date(2026, 11, 30),
            )
            for i in range(count)
        )
        subs = list(Subscriber.objects.filter(router=router).order_by("id"))
        for i, sub in enumerate(subs):
            sim.add_secret(sub.pppoe_username, "pw", profile=PACKAGE)
            sim.add_active(sub.pppoe_username, _address(i))
        # Setup through the services: December's invoices, the suspension run on 5 Dec and
        # the worker applying it on the router (sessions kicked); then everyone redials
        # into the walled garden.
        run_billing(today=ISSUED_ON, now=SUSPENDED_AT - timedelta(days=11))
        suspended = suspend_overdue(now=SUSPENDED_AT)
        while outbox.dispatch(now=SUSPENDED_AT, limit=200, topics=[ENFORCE_TOPIC]).claimed:
            pass
        on_suspended = sum(1 for s in sim.secrets() if s["profile"] == SUSPENDED)
        for i, sub in enumerate(subs):
            sim.add_active(sub.pppoe_username, _address(i))
        print(f"    setup (not measured): {suspended} suspended, {on_suspended} on {SUSPENDED} on the router,"
              f" {len(sim.address_list('suspended'))} in the address list, {len(sim.active())} online")
        due = dict(Invoice.objects.filter(subscriber__router=router).values_list("subscriber_id", "amount_due_paisa"))

        samples: list[float] = []
        not_restored = 0
        with clock.use_clock(clock.FixedClock(PAID_AT)):
            for i, sub in enumerate(subs):
                started = time.perf_counter()
                record_payment(
                    subscriber_id=sub.pk, amount=Decimal(due[sub.pk]) / 100, method=PaymentMethod.GATEWAY,
                    gateway="bkash", transaction_id=f"BENCH{i:06d}", received_at=PAID_AT,
                )
                # Poll the router until the package profile is back (at once when the
                # on-commit dispatch succeeded; the worker is not running here).
                deadline = started + 10.0
                while (sim.secret(sub.pppoe_username) or {}).get("profile") != PACKAGE:
                    if time.perf_counter() > deadline:
                        not_restored += 1
                        break
                    time.sleep(0.0005)
                else:
                    samples.append(time.perf_counter() - started)

        restored = sum(1 for s in sim.secrets() if s["profile"] == PACKAGE)
        actions_done = EnforcementAction.objects.filter(action="restore", status="done").count()
        listed = len(sim.address_list("suspended"))
        online = len(sim.active())
    if samples:
        ordered = sorted(samples)
        ms = lambda v: f"{v * 1000:.1f} ms"  # noqa: E731
        p99 = _percentile(ordered, 99)
        print("    measured through payments.services.record_payment (not the gateway webhook, which adds signature"
              " checks and the gateway's confirmation call, then runs this same call and on-commit dispatch)")
        print(f"    latency from record_payment() to the secret's profile back on the router ({len(samples)} payments):")
        print(f"      p50 {ms(_percentile(ordered, 50))}   p95 {ms(_percentile(ordered, 95))}   p99 {ms(p99)}"
              f"   max {ms(ordered[-1])}   mean {ms(statistics.fmean(ordered))}"
              f"   [target: p99 < 1 s: {'met' if p99 < 1.0 else 'MISSED'}]")
        print(f"      first payment {ms(samples[0])} (the driver's connection was already open from the setup,"
              f" as in a running server); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"    router after: {restored}/{count} secrets back on {PACKAGE}, {listed} address-list entries,"
          f" {online} sessions (walled-garden sessions ended); restore actions done: {actions_done};"
          f" not restored within 10 s: {not_restored}")
    return 0 if not_restored == 0 and restored == count and actions_done == count else 1


def run_part_a(count: int, latency_ms: float, url: str | None) -> int:
    """Part (a) on SQLite, and on PostgreSQL when ``url`` is given: each in a child process."""
    code = 0
    for target in ["sqlite", *([url] if url else [])]:
        argv = [sys.executable, str(Path(__file__).resolve()), "--part", "a", "--payments", str(count),
                "--latency-ms", str(latency_ms), "--a-database", target]
        code |= subprocess.run(argv, check=False).returncode
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("a", "b", "c", "all"), default="all")
    parser.add_argument("--payments", type=int, default=200, help="(a) payments to measure")
    parser.add_argument("--database-url", default=None,
                        help="(a) also measure on PostgreSQL: a throwaway database on this URL's server"
                             " (default: $DATABASE_URL if it is postgresql://)")
    parser.add_argument("--a-database", default=None, help=argparse.SUPPRESS)  # child process of part (a)
    parser.add_argument("--suspensions", type=int, default=10_000)
    parser.add_argument("--secrets", type=int, default=50_000)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=2)
    args = parser.parse_args()
    latency = args.latency_ms / 1000.0
    if args.a_database:
        return bench_payment_restore(args.payments, latency, None if args.a_database == "sqlite" else args.a_database)
    code = 0
    if args.part in ("a", "all"):
        url = args.database_url or os.environ.get("DATABASE_URL", "")
        code |= run_part_a(args.payments, args.latency_ms, url if url.startswith(("postgres://", "postgresql://")) else None)
    if args.part in ("b", "all"):
        bench_bulk_suspend(args.suspensions, latency, args.connections)
    if args.part in ("c", "all"):
        bench_read_state(args.secrets, latency)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
