"""Benchmark: one dunning run over N open invoices, then the dispatcher sending SMS.

    .venv/bin/python bench/dunning_run.py --subscribers 100000
    .venv/bin/python bench/dunning_run.py --subscribers 100000 --database-url postgresql://postgres@127.0.0.1:5432/test

Always works on a throwaway database: SQLite in a temporary ISPBILL_DATA_DIR, or, for a
postgresql:// URL, a dedicated database (``ispbill_bench_dunning_<pid>``) created on
that URL's server and dropped afterwards. The database named in the URL is only used
for its host, port and user; it is never connected to or changed.

Setup (migrations, N subscribers and N open invoices due 1 Dec, bulk-inserted as in
bench/billing_run.py) is not measured. Measured:

1. one ``run_dunning(now=26 Nov 10:00 Dhaka)``: the -5 reminder is current for every
   invoice (SMS for all, email for the quarter with an address); then a second run at
   the same instant, which must queue nothing;
2. the dispatcher (``outbox.drain``) sending ``--messages`` of those SMS through the
   real ``HttpSmsProvider`` (``SMS_PROVIDER=http``, ``SMS_HTTP_URL``) to a local HTTP
   SMS sink in a separate process (as a real provider is remote, its work does not
   compete with the dispatcher for this process's GIL); the other outbox rows are parked
   for the duration so only those SMS are ready. Threads as ``ispbill worker`` uses
   them: ``ISPBILL_DISPATCH_THREADS`` on PostgreSQL, one on SQLite. Besides this
   process's CPU time, the CPU time of the sink and (for a local server) of the
   database's PostgreSQL backends is reported, which the machine's load does not skew
   as much as the throughput.

Prints numbers; targets (run_dunning <= 5 s for 100k, dispatcher >= 500 SMS/s) are
reported, not asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from throwaway import use_throwaway_database  # noqa: E402  (bench/, next to this script)

ACTIVATED = date(2026, 11, 1)
ISSUED_ON = date(2026, 11, 24)
DUE_ON = date(2026, 12, 1)
# 26 Nov 10:00 in Dhaka (UTC+6): five days before the due date, outside quiet hours.
NOW = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
PRICE_PAISA = 80_000
DUNNING_TARGET_S = 5.0
DISPATCH_TARGET = 500.0


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", type=int, default=100_000)
    p.add_argument("--database-url", default=None, help="default: $DATABASE_URL if postgresql://, else SQLite")
    p.add_argument("--messages", type=int, default=5000, help="SMS to dispatch to the local sink (default 5000)")
    p.add_argument("--batch-size", type=int, default=None, help="passed to run_dunning (default: its own)")
    p.add_argument("--profile", metavar="PREFIX", default=None,
                   help="write cProfile stats of the measured parts to PREFIX.dunning and PREFIX.dispatch")
    p.add_argument("--keep", action="store_true", help="keep the throwaway database (prints where it is)")
    return p.parse_args()


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


def _setup(n: int) -> dict[str, int]:
    """N subscribers and, for each, an open December invoice (with its ledger debit)."""
    from django.db import transaction

    from ispbill.billing.models import BillingSettings, Invoice, LedgerEntry
    from ispbill.core.db import bulk_insert, reserve_ids
    from ispbill.dunning.models import DunningSettings
    from ispbill.plans.models import Package
    from ispbill.subscribers.models import Subscriber

    BillingSettings.load()  # defaults: prepaid, 7 lead days, grace 3
    DunningSettings.load()  # default ladder -5, 0, +1 on SMS and email; quiet 21:00-08:00
    package = Package.objects.create(name="Bench 20M", price_paisa=PRICE_PAISA, rate_limit="", router_profile="bench")
    issued_at = datetime(2026, 11, 23, 18, 5, tzinfo=UTC)  # 24 Nov 00:05 Dhaka
    s_cols, s_tpl, s_at = _row_template(Subscriber, issued_at)
    i_cols, i_tpl, i_at = _row_template(Invoice, issued_at)
    counts = {"subscribers": 0, "with_email": 0, "english": 0}
    chunk, done = 20_000, 0
    while done < n:
        size = min(chunk, n - done)
        with transaction.atomic():
            sub_ids = reserve_ids(Subscriber, size)
            inv_ids = reserve_ids(Invoice, size)
            subs, invoices, entries = [], [], []
            for i, sub_id, inv_id in zip(range(done, done + size), sub_ids, inv_ids):
                row = s_tpl.copy()
                row[s_at["id"]] = sub_id
                row[s_at["name"]] = f"Bench Subscriber {i}"
                row[s_at["phone"]] = f"+88017{i:08d}"
                row[s_at["email"]] = f"bench{i}@example.com" if i % 4 == 0 else ""
                row[s_at["area"]] = f"Area {i % 50}"
                row[s_at["pppoe_username"]] = f"bench{i}"
                row[s_at["package_id"]] = package.pk
                row[s_at["status"]] = "active"
                row[s_at["activated_on"]] = ACTIVATED
                row[s_at["billing_mode"]] = ""
                row[s_at["language"]] = "en" if i % 10 == 0 else ""  # the rest: Bangla (+880)
                row[s_at["billed_through"]] = date(2026, 12, 31)
                subs.append(tuple(row))
                inv = i_tpl.copy()
                inv[i_at["id"]] = inv_id
                inv[i_at["number"]] = f"BENCH-{i + 1:07d}"
                inv[i_at["subscriber_id"]] = sub_id
                inv[i_at["kind"]] = "recurring"
                inv[i_at["package_id"]] = package.pk
                inv[i_at["period_start"]] = DUE_ON
                inv[i_at["period_end"]] = date(2026, 12, 31)
                inv[i_at["issued_on"]] = ISSUED_ON
                inv[i_at["issued_at"]] = issued_at
                inv[i_at["due_on"]] = DUE_ON
                inv[i_at["currency"]] = "BDT"
                inv[i_at["total_paisa"]] = PRICE_PAISA
                inv[i_at["amount_due_paisa"]] = PRICE_PAISA
                inv[i_at["status"]] = "open"
                invoices.append(tuple(inv))
                entries.append((sub_id, "invoice", PRICE_PAISA, inv_id, issued_at))
                counts["with_email"] += i % 4 == 0
                counts["english"] += i % 10 == 0
            bulk_insert(Subscriber, s_cols, subs)
            bulk_insert(Invoice, i_cols, invoices)
            bulk_insert(LedgerEntry, ["subscriber_id", "kind", "amount_paisa", "invoice_id", "created_at"], entries)
        done += size
    counts["subscribers"] = n
    _analyze()
    return counts


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


# -- the SMS sink ---------------------------------------------------------------------
#
# A real provider is remote: its work must not compete with the dispatcher for this
# process's GIL (or be counted in its CPU time), so the sink runs in a child process
# (this same file, started with --sms-sink). It is a minimal asyncio HTTP/1.1 server
# with keep-alive, as a provider's API would allow: every POST is answered 200 with a
# JSON message id, and GET /count reports what it received.

SINK_FLAG = "--sms-sink"


def _serve_sink() -> int:
    """The child process: prints its port, serves until its stdin closes."""
    import asyncio
    import socket

    received = 0
    recipients: dict[str, int] = {}

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Headers and body go out in one write anyway; no Nagle delay on the answer.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, target = request_line.split(" ", 2)[:2]
                length, close = 0, False
                for line in lines:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "connection" and value.strip().lower() == "close":
                        close = True
                body = await reader.readexactly(length) if length else b""
                if method == "GET" and target.startswith("/count"):
                    duplicates = sum(n - 1 for n in recipients.values())
                    answer = json.dumps({"received": received, "distinct": len(recipients), "duplicates": duplicates})
                elif method == "POST":
                    to = parse_qs(body.decode()).get("to", [""])[0]
                    received += 1
                    recipients[to] = recipients.get(to, 0) + 1
                    answer = json.dumps({"status": "ok", "message_id": f"sink-{received}"})
                else:
                    answer = json.dumps({"status": "error", "error": "not found"})
                data = answer.encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                    % (len(data), b"Connection: close\r\n" if close else b"", data)
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        except asyncio.CancelledError:  # shutting down with the connection still open
            pass
        finally:
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(client, "127.0.0.1", 0, backlog=256)
        print(server.sockets[0].getsockname()[1], flush=True)
        # Serve until the parent closes our stdin (or dies).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(serve())
    return 0


class SmsSink:
    """The parent's handle on the sink process."""

    def __init__(self):
        self.proc = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/send"

    def counts(self) -> dict[str, int]:
        """What the sink has received so far: received, distinct (recipients), duplicates."""
        from urllib.request import urlopen

        with urlopen(f"http://127.0.0.1:{self.port}/count", timeout=10) as response:
            return json.loads(response.read())

    def __enter__(self):
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), SINK_FLAG],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline()
        if not line.strip():
            self.proc.kill()
            raise RuntimeError("the SMS sink process did not start")
        self.port = int(line)
        return self

    def __exit__(self, *exc):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def _park_all_but(sms_item_ids: list[int], *, now: datetime) -> None:
    """Make only ``sms_item_ids`` ready at ``now``; every other outbox row waits a day."""
    from django.db import transaction

    from ispbill.core.db import id_chunks
    from ispbill.worker.models import OutboxItem

    with transaction.atomic():
        OutboxItem.objects.update(next_attempt_at=now + timedelta(days=1))
        for part in id_chunks(sms_item_ids):
            OutboxItem.objects.filter(pk__in=part).update(next_attempt_at=now)


# -- main -----------------------------------------------------------------------------

class _NullSms:
    """An SMS channel that accepts everything in memory (the no-provider comparison)."""

    def send_sms(self, *, to: str, text: str, reference: str):
        from ispbill.notifications.channels import SendResult

        return SendResult(provider_reference=reference)


def _proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a local process so far (None if not readable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _database_cpu() -> float | None:
    """CPU seconds used so far by this database's PostgreSQL backends, when the server
    runs on this machine (None otherwise, or on SQLite, which runs in this process)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        pids = [row[0] for row in cursor.fetchall()]
    total = 0.0
    for pid in pids:
        cpu = _proc_cpu(pid)
        if cpu is None:
            return None
        total += cpu
    return total


def _count_sent(message_ids: list[int]) -> int:
    from ispbill.core.db import id_chunks
    from ispbill.notifications.models import Message

    return sum(Message.objects.filter(pk__in=part, status="sent").count() for part in id_chunks(message_ids))


def _profiled(prefix: str | None, suffix: str, fn):
    if not prefix:
        return fn()
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return fn()
    finally:
        profiler.disable()
        profiler.dump_stats(f"{prefix}.{suffix}")


def main() -> int:
    if sys.argv[1:2] == [SINK_FLAG]:
        return _serve_sink()
    args = _parse_args()
    url = args.database_url or os.environ.get("DATABASE_URL", "")
    use_throwaway_database(url, label="dunning", keep=args.keep)
    os.environ["DJANGO_SETTINGS_MODULE"] = "ispbill.settings"
    os.environ.setdefault("ISPBILL_LOG_LEVEL", "WARNING")
    os.environ["ISPBILL_TIME_ZONE"] = "Asia/Dhaka"

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count

    from ispbill.dunning.services import run_dunning
    from ispbill.notifications.channels import reset_channels, set_channels, sms_channel
    from ispbill.notifications.models import Message
    from ispbill.worker import outbox
    from ispbill.worker.models import OutboxItem

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    t_migrate = time.perf_counter() - t0
    t0 = time.perf_counter()
    counts = _setup(args.subscribers)
    t_setup = time.perf_counter() - t0
    vendor = connection.vendor
    where = ""
    if vendor == "postgresql":
        s = connection.settings_dict
        where = f" {s['NAME']} on {s['HOST']}:{s['PORT']}"
    else:
        import sqlite3

        where = f" {sqlite3.sqlite_version} at {connection.settings_dict['NAME']}"
    n = args.subscribers
    print(f"database      : {vendor}{where}")
    print(f"setup         : {n} subscribers ({counts['with_email']} with email, {counts['english']} English), "
          f"{n} open invoices due {DUE_ON}; migrate {t_migrate:.2f} s, insert {t_setup:.2f} s (not measured)")

    # -- 1. the dunning run -------------------------------------------------------------
    kwargs = {"now": NOW}
    if args.batch_size:
        kwargs["batch_size"] = args.batch_size
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    result = _profiled(args.profile, "dunning", lambda: run_dunning(**kwargs))
    t_dunning, c_dunning = time.perf_counter() - t0, time.process_time() - c0
    expected = n + counts["with_email"]
    print(f"run_dunning   : {t_dunning:.3f} s  ->  {result.invoices_checked / t_dunning:,.0f} invoices/s, "
          f"{result.queued} messages queued ({result.queued / t_dunning:,.0f}/s)  "
          f"[target <= {DUNNING_TARGET_S:.0f} s per 100k: {t_dunning * 100_000 / n:.2f} s per 100k, "
          f"{'met' if t_dunning * 100_000 / n <= DUNNING_TARGET_S else 'MISSED'}]"
          + ("  (under cProfile)" if args.profile else ""))
    print(f"                (this process's CPU time: {c_dunning:.3f} s; the rest is waiting for the database or the machine)")
    t0 = time.perf_counter()
    again = run_dunning(**kwargs)
    t_again = time.perf_counter() - t0
    print(f"run again     : {t_again:.3f} s, {again.invoices_checked} checked, {again.queued} queued "
          f"({'idempotent' if again.queued == 0 else 'NOT IDEMPOTENT'})")
    by_channel = dict(Message.objects.values_list("channel").annotate(c=Count("id")))
    checks = [
        ("invoices checked", result.invoices_checked, n),
        ("messages queued", result.queued, expected),
        ("messages (sms)", by_channel.get("sms", 0), n),
        ("messages (email)", by_channel.get("email", 0), counts["with_email"]),
        ("outbox items", OutboxItem.objects.count(), expected),
        ("second run queued", again.queued, 0),
    ]

    # -- 2. the dispatcher --------------------------------------------------------------
    k = min(args.messages, n)
    sms_ids = list(Message.objects.filter(channel="sms").order_by("id").values_list("id", flat=True)[:k])
    item_ids = list(
        OutboxItem.objects.filter(dedupe_key__in=[f"message:{i}" for i in sms_ids]).values_list("id", flat=True)
    )
    _park_all_but(item_ids, now=NOW)
    with SmsSink() as sink:
        os.environ.update(SMS_PROVIDER="http", SMS_HTTP_URL=sink.url, SMS_SENDER_ID="ISPBILL", SMS_HTTP_TIMEOUT="10")
        reset_channels()
        provider = sms_channel()
        gc.collect()
        # As `ispbill worker` dispatches (worker/loop.py): ISPBILL_DISPATCH_THREADS sends in
        # flight on PostgreSQL; one at a time on SQLite, which has a single writer anyway.
        from concurrent.futures import ThreadPoolExecutor

        from django.conf import settings as dj_settings

        threads = dj_settings.ISPBILL_DISPATCH_THREADS if vendor == "postgresql" else 1
        pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
        db0, sink0, load0 = _database_cpu(), _proc_cpu(sink.proc.pid), os.getloadavg()[0]
        c0, t0 = time.process_time(), time.perf_counter()
        dispatched = _profiled(args.profile, "dispatch", lambda: outbox.drain(now=NOW, worker_id="bench", pool=pool))
        t_dispatch, c_dispatch = time.perf_counter() - t0, time.process_time() - c0
        # Before the pool's threads (and their database sessions) go away.
        db1, sink1 = _database_cpu(), _proc_cpu(sink.proc.pid)
        if pool is not None:
            pool.shutdown(wait=True)
        provider.close()
        got = sink.counts()
        received, distinct, duplicates = got["received"], got["distinct"], got["duplicates"]
    rate = dispatched.done / t_dispatch if t_dispatch else float("inf")
    print(f"dispatcher    : {threads} thread{'s' if threads > 1 else ''}; {dispatched.done} SMS sent to the local sink ({type(provider).__name__}) in "
          f"{t_dispatch:.3f} s  ->  {rate:,.0f} messages/s, {1000 * t_dispatch / max(1, dispatched.done):.2f} ms each  "
          f"[target >= {DISPATCH_TARGET:.0f}/s: {'met' if rate >= DISPATCH_TARGET else 'MISSED'}]"
          + ("  (under cProfile)" if args.profile else ""))
    others = []
    if db0 is not None and db1 is not None:
        others.append(f"database server {db1 - db0:.2f} s")
    if sink0 is not None and sink1 is not None:
        others.append(f"SMS sink {sink1 - sink0:.2f} s")
    print(f"                (CPU time: this process {c_dispatch:.3f} s ({1000 * c_dispatch / max(1, dispatched.done):.2f} ms each)"
          + "".join(f", {o}" for o in others) + f"; machine load average at the start: {load0:.2f})")
    sent = _count_sent(sms_ids)

    # The same pipeline without a provider (an in-memory channel): what the dispatcher
    # itself costs per message, for comparison. Not the target figure.
    more = list(Message.objects.filter(channel="sms", status="queued").order_by("id").values_list("id", flat=True)[:k])
    _park_all_but(
        list(OutboxItem.objects.filter(dedupe_key__in=[f"message:{i}" for i in more]).values_list("id", flat=True)),
        now=NOW,
    )
    set_channels(sms=_NullSms())
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    bare = outbox.drain(now=NOW, worker_id="bench")
    t_bare, c_bare = time.perf_counter() - t0, time.process_time() - c0
    reset_channels()
    print(f"no provider   : {bare.done} SMS through the same dispatcher to an in-memory channel in {t_bare:.3f} s  ->  "
          f"{bare.done / t_bare:,.0f} messages/s, {1000 * t_bare / max(1, bare.done):.2f} ms each "
          f"(CPU {1000 * c_bare / max(1, bare.done):.2f} ms each; for comparison only)")
    checks += [
        ("dispatched (done)", dispatched.done, k),
        ("retried/dead", (dispatched.retried, dispatched.dead), (0, 0)),
        ("sink requests", received, k),
        ("sink distinct recipients", distinct, k),
        ("sink duplicate deliveries", duplicates, 0),
        ("messages marked sent", sent, k),
        ("no-provider run sent", (bare.done, _count_sent(more)), (len(more), len(more))),
    ]
    ok = all(got == want for _, got, want in checks)
    print("verification  :")
    for label, got, want in checks:
        print(f"  {'ok ' if got == want else 'BAD'} {label}: {got}" + ("" if got == want else f" (expected {want})"))
    print(f"result        : {'PASS' if ok else 'FAIL'}  ({vendor}: {n} invoices, run_dunning {t_dunning:.3f} s, "
          f"{result.queued} queued; dispatcher {rate:,.0f} SMS/s over {dispatched.done})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
