"""Benchmark: verified payment webhooks per second at a running server, and the latency
to "payment committed".

    .venv/bin/python bench/webhooks.py --webhooks 2000 --concurrency 16
    .venv/bin/python bench/webhooks.py --database-url postgresql://postgres@127.0.0.1:5432/test --webhooks 2000
    .venv/bin/python bench/webhooks.py --sqlite --webhooks 500 --concurrency 4
    .venv/bin/python bench/webhooks.py --webhooks 2000 --profile 300     # then profile the IPN path in-process

What runs:

* A throwaway database: by default PostgreSQL, ``ispbill_bench_wh_<pid>`` created on the
  server of ``--database-url`` (default ``$DATABASE_URL`` if it is PostgreSQL, else
  ``postgresql://postgres@127.0.0.1:5432/test``; that URL's own database is only used for
  its host, port and user, never connected to or changed) and dropped at exit; with
  ``--sqlite``, a file in a temporary directory.
* The bKash, Nagad and SSLCommerz simulators (``ispbill.sim.gateways``) in this process.
* ``ispbill web`` (gunicorn; ``--workers``/``--threads``, i.e. ISPBILL_WEB_WORKERS /
  ISPBILL_WEB_THREADS) as a subprocess on that database, configured for the simulators.
  No worker process: receipts are queued (outbox) as in production, not sent.

Set-up, not measured, through the services: one subscriber per webhook, each owing
1000.00 on this month's invoice, with a payment attempt opened at the gateway
(``start_gateway_payment``: a real session/create call to the simulator), and the
payment completed at the simulator (SSLCommerz: the hosted page's Pay, which yields the
signed IPN; bKash: the hosted page's Pay and execute, then the signed SNS notification).

Measured: ``--warmup`` webhooks first (not counted), then ``--webhooks`` distinct valid
webhooks (SSLCommerz IPNs and, ``--bkash-share`` of them, bKash SNS notifications),
posted by ``--concurrency`` client threads, each on one kept-alive connection, as fast as the server
answers, bounded by ``--max-seconds``. Each one is the full path: stored raw, signature
verified (SSLCommerz verify_sign + verify_sign_sha2 then the Validation API call to the
simulator over HTTP; bKash SNS certificate + RSA signature), settled (attempt locked,
payment unique on gateway + transaction id, ledger credit and allocation, receipt queued),
outcome recorded. **Latency is from the POST to its 200 answer; the server answers only
after the settlement transaction (and the outcome row) committed, so it is the latency
to "payment committed".** Each server process settles the webhooks that arrive together
in one transaction (``--batch``, ISPBILL_WEBHOOK_BATCH; ``--batch 1`` for one each). Throughput is accepted webhooks (HTTP 200, outcome
``accepted``) per second of wall time of the measured phase.

Target (issue 4) on PostgreSQL, 2 cores: >= 300 webhooks/s sustained, p99 <= 250 ms.
Everything (PostgreSQL, gunicorn, the simulators, the load generator) shares this
machine's CPUs: the CPU each used during the measured phase is printed.

``--floor http|store|verify`` serves ``bench/webhook_floor.py`` instead: the same
server with the webhook path cut short after routing, after the raw store, or after the
gateway's confirmation (nothing settled), to measure what each layer costs on its own.

``--profile N`` afterwards processes N more webhooks in this process through Django's
test client under cProfile (same code path: payments/views.py -> gateway_services ->
adapter verify + the validation HTTP call -> settle) and prints where the time goes.
"""

from __future__ import annotations

import argparse
import atexit
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_RATE, TARGET_P99_MS = 300.0, 250.0


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--webhooks", type=int, default=2000, help="measured webhooks (each a distinct payment)")
    p.add_argument("--warmup", type=int, default=100, help="webhooks sent before measuring (default 100)")
    p.add_argument("--concurrency", type=int, default=16, help="client threads posting at once")
    p.add_argument("--bkash-share", type=float, default=0.25, help="fraction that are bKash SNS notifications")
    p.add_argument("--max-seconds", type=float, default=120.0, help="stop sending after this long (measured phase)")
    p.add_argument("--database-url", default=None, help=f"PostgreSQL server to create the throwaway database on "
                                                         f"(default $DATABASE_URL if PostgreSQL, else {DEFAULT_PG})")
    p.add_argument("--sqlite", action="store_true", help="use an embedded SQLite database instead")
    p.add_argument("--workers", default=os.environ.get("ISPBILL_WEB_WORKERS", "2"), help="gunicorn processes")
    p.add_argument("--threads", default=os.environ.get("ISPBILL_WEB_THREADS", "8"), help="threads per process")
    p.add_argument("--batch", default=os.environ.get("ISPBILL_WEBHOOK_BATCH", "32"),
                   help="ISPBILL_WEBHOOK_BATCH for the server: webhooks settled per transaction at most (1: one each)")
    p.add_argument("--floor", choices=("http", "store", "verify"), default="",
                   help="serve bench/webhook_floor.py instead: the path cut short after this layer (http: routing only; "
                        "store: + raw INSERT; verify: + signature and gateway confirmation), nothing settled")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="afterwards, profile N more webhooks in this process (cProfile) and print where time goes")
    p.add_argument("--keep", action="store_true", help="keep the throwaway database and data directory")
    return p.parse_args()


# -- throwaway database -------------------------------------------------------------------------

def _throwaway(args) -> tuple[str, str]:
    """Point this process at a new database; returns (DATABASE_URL or "", description)."""
    data_dir = tempfile.mkdtemp(prefix="ispbill-bench-wh-")
    os.environ["ISPBILL_DATA_DIR"] = data_dir
    if not args.keep:
        atexit.register(shutil.rmtree, data_dir, True)
    if args.sqlite:
        os.environ.pop("DATABASE_URL", None)
        return "", f"sqlite at {data_dir}/ispbill.sqlite3"
    url = args.database_url or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        url = DEFAULT_PG
    import psycopg

    parts = urlsplit(url)
    name = f"ispbill_bench_wh_{os.getpid()}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    if args.keep:
        print(f"keeping database {name} and {data_dir}")
    else:
        atexit.register(drop)
    bench_url = urlunsplit(parts._replace(path=f"/{name}"))
    os.environ["DATABASE_URL"] = bench_url
    return bench_url, f"postgresql database {name} on {parts.hostname}:{parts.port or 5432} (created for this run)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- CPU accounting (Linux /proc) ---------------------------------------------------------------

def _proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


class CpuMeter:
    """CPU seconds used by the server's processes, the PostgreSQL backends serving the
    benchmark's database (when local) and this process."""

    def __init__(self, server_pid: int, db_url: str):
        self.server_pid = server_pid
        self.db_url = db_url
        self.backends = self._backends()
        self.start = self._sample()

    def _backends(self) -> set[int]:
        if not self.db_url:
            return set()
        import psycopg

        with psycopg.connect(self.db_url, autocommit=True) as conn:
            me = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()").fetchall()
        return {pid for (pid,) in rows if pid != me}

    def _sample(self) -> dict[str, float]:
        server = sum(_proc_cpu(p) for p in _descendants(self.server_pid))
        postgres = sum(_proc_cpu(p) for p in self.backends)
        return {"server": server, "postgres": postgres, "bench": time.process_time()}

    def used(self) -> dict[str, float]:
        now = self._sample()
        return {k: now[k] - self.start[k] for k in now}


# -- set-up (not measured) ----------------------------------------------------------------------

class _Inputs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inputs: dict[str, str] = {}
        self.action = ""

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("name"):
            self.inputs[a["name"]] = a.get("value", "")


@dataclass
class Webhook:
    kind: str  # "sslcommerz" | "bkash"
    path: str
    body: bytes
    headers: dict[str, str]
    # filled in when sent
    status: int = 0
    outcome: str = ""
    seconds: float = 0.0
    done_at: float = 0.0
    error: str = ""


def _subscribers(count: int, now) -> list[int]:
    from decimal import Decimal

    from ispbill.billing.services import run_billing
    from ispbill.core.timeutil import local_date
    from ispbill.plans.services import create_package
    from ispbill.subscribers.services import create_subscriber

    first = local_date(now).replace(day=1)
    package = create_package(name="Bench 10M", price=Decimal("1000.00"), rate_limit="10M/10M", router_profile="bench-10m")
    ids = [
        create_subscriber(
            today=first, name=f"Bench Subscriber {i}", phone=f"017{i:08d}", pppoe_username=f"wh{i:06d}",
            package_id=package.pk, activated_on=first, email=f"wh{i:06d}@example.com",
        ).pk
        for i in range(count)
    ]
    run_billing(today=first, now=now)
    return ids


def _attempts(subscriber_ids: list[int], gateway: str) -> list:
    """One attempt per subscriber, opened at the simulator, from a few threads."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from ispbill.core import clock
    from ispbill.payments.gateway_services import start_gateway_payment

    def one(sid: int):
        try:
            return start_gateway_payment(subscriber_id=sid, gateway=gateway, now=clock.now())[0]
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, subscriber_ids))


def _paid_sslcommerz(sim, attempts) -> list[Webhook]:
    """Press Pay on each session's hosted page (in-process); the signed IPN fields."""
    from ispbill.sim.http import Request

    out = []
    for attempt in attempts:
        key = attempt.gateway_reference
        body = urlencode({"sessionkey": key, "method": "visa", "action": "pay"}).encode()
        response = sim.dispatch(Request("POST", f"/EasyCheckOut/{key}/action", {},
                                        {"content-type": "application/x-www-form-urlencoded"}, body))
        parser = _Inputs()
        parser.feed(response.body.decode())
        assert parser.inputs.get("status") == "VALID", response.body[:300]
        out.append(Webhook("sslcommerz", "/webhooks/sslcommerz/ipn", urlencode(parser.inputs).encode(),
                           {"Content-Type": "application/x-www-form-urlencoded"}))
    return out


def _paid_bkash(sims, attempts) -> list[Webhook]:
    """Approve (Pay) and execute each payment at the simulator; its signed SNS notification."""
    import httpx

    from ispbill.sim.gateways import BKASH_CREDENTIALS

    sim = sims.bkash
    base = sim.api_base_url + "/tokenized/checkout/"
    with httpx.Client(timeout=10) as client:
        grant = client.post(base + "token/grant", headers={"username": BKASH_CREDENTIALS["username"],
                                                           "password": BKASH_CREDENTIALS["password"]},
                            json={"app_key": BKASH_CREDENTIALS["app_key"], "app_secret": BKASH_CREDENTIALS["app_secret"]})
        token = grant.json()["id_token"]
        out = []
        for attempt in attempts:
            sim.approve(attempt.gateway_reference)
            done = client.post(base + "execute", json={"paymentID": attempt.gateway_reference},
                               headers={"Authorization": token, "X-APP-Key": BKASH_CREDENTIALS["app_key"]}).json()
            assert done.get("transactionStatus") == "Completed", done
            headers, body = sim.sns_notification(attempt.gateway_reference)
            out.append(Webhook("bkash", "/webhooks/bkash", body, headers))
    return out


# -- the server -----------------------------------------------------------------------------------

def _start_server(port: int, args, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, ISPBILL_WEB_WORKERS=str(args.workers), ISPBILL_WEB_THREADS=str(args.threads),
               ISPBILL_WEBHOOK_BATCH=str(args.batch),
               ISPBILL_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    command = [sys.executable, "-m", "ispbill.cli", "web", "--port", str(port)]
    if args.floor:
        from ispbill.cli import _gunicorn_argv

        env.update(DJANGO_SETTINGS_MODULE="ispbill.settings", ISPBILL_BENCH_FLOOR=args.floor)
        command = _gunicorn_argv("127.0.0.1", port)
        command[command.index("ispbill.wsgi:application")] = "webhook_floor:application"
        command[command.index("--workers") + 1] = str(args.workers)
        command[command.index("--threads") + 1] = str(args.threads)
        command += ["--pythonpath", str(ROOT / "bench")]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    atexit.register(_stop_server, proc)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not answer /healthz in 60 s")


def _stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# -- sending --------------------------------------------------------------------------------------

def _send(base: str, webhooks: list[Webhook], concurrency: int, max_seconds: float) -> float:
    """POST every webhook, ``concurrency`` at a time, each thread on one kept-alive
    connection (the standard library's http.client: the load generator shares the CPUs
    with the server, so it should cost as little as it can); returns the wall time."""
    import http.client
    import json

    host, port = urlsplit(base).hostname, urlsplit(base).port
    lock = threading.Lock()
    cursor = iter(webhooks)
    start = time.perf_counter()
    deadline = start + max_seconds

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            while True:
                with lock:
                    item = next(cursor, None)
                if item is None or time.perf_counter() > deadline:
                    return
                t0 = time.perf_counter()
                try:
                    conn.request("POST", item.path, body=item.body, headers=item.headers)
                    response = conn.getresponse()
                    body = response.read()
                    item.status = response.status
                    try:
                        item.outcome = json.loads(body).get("outcome") or ""
                    except ValueError:
                        item.outcome = ""
                    if response.will_close:
                        conn.close()
                except (OSError, http.client.HTTPException) as exc:
                    item.error = type(exc).__name__
                    conn.close()
                t1 = time.perf_counter()
                item.seconds, item.done_at = t1 - t0, t1
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def _pct(ordered: list[float], q: float) -> float:
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def _latency_line(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    o = sorted(samples)
    ms = lambda v: f"{v * 1000:.1f}"  # noqa: E731
    return (f"p50 {ms(_pct(o, 50))} ms  p95 {ms(_pct(o, 95))} ms  p99 {ms(_pct(o, 99))} ms  "
            f"max {ms(o[-1])} ms  mean {ms(statistics.fmean(o))} ms")


# -- profiling (in-process) ---------------------------------------------------------------------

@dataclass
class _Phases:
    seconds: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # label -> [(wall, cpu)]

    def wrap(self, owner, name: str, label: str):
        original = getattr(owner, name)

        def timed(*a, **kw):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return original(*a, **kw)
            finally:
                self.seconds.setdefault(label, []).append((time.perf_counter() - t0, time.thread_time() - c0))

        setattr(owner, name, timed)
        return lambda: setattr(owner, name, original)


def _profile(webhooks: list[Webhook]) -> None:
    import cProfile
    import io
    import pstats

    from django.test import Client

    from ispbill.billing import ledger
    from ispbill.network import services as network
    from ispbill.notifications import services as notifications
    from ispbill.payments import gateway_services, services, views
    from ispbill.payments.gateways import base as gateway_base
    from ispbill.payments.gateways.bkash import BkashGateway
    from ispbill.payments.gateways.sslcommerz import SslcommerzGateway

    phases = _Phases()
    undo = [
        phases.wrap(views, "store_request", "store raw webhook (INSERT, commit)"),
        phases.wrap(SslcommerzGateway, "_check_signature", "sslcommerz verify_sign (+sha2)"),
        phases.wrap(gateway_base.Http, "send", "gateway HTTP call (validation API)"),
        phases.wrap(SslcommerzGateway, "verify_webhook", "sslcommerz verify_webhook total"),
        phases.wrap(BkashGateway, "verify_webhook", "bkash SNS verify_webhook total"),
        phases.wrap(gateway_services, "settle", "settle (one transaction, commit)"),
        phases.wrap(services, "record_payment", "  of which services.record_payment"),
        phases.wrap(ledger, "post_credit", "    ledger.post_credit (allocation)"),
        phases.wrap(notifications, "queue_message", "    queue_message (receipt, x2)"),
        phases.wrap(network, "restore_if_settled", "    network.restore_if_settled"),
        phases.wrap(gateway_services, "_record_outcome", "record outcome (UPDATE, commit)"),
        phases.wrap(views.gateway_services, "process_inbound", "process_inbound total"),
    ]
    client = Client(HTTP_HOST="127.0.0.1")
    profiler = cProfile.Profile()
    totals: list[float] = []
    outcomes: Counter = Counter()
    queries: dict[str, list[float]] = {}

    def timed_sql(execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            queries.setdefault(" ".join(str(sql).split())[:110], []).append(time.perf_counter() - t0)

    from django.db import connection

    cpu: list[float] = []

    def post(item: Webhook):
        extra = {k: v for k, v in item.headers.items() if k.lower() not in ("content-type", "content-length")}
        ctype = item.headers.get("Content-Type", "") or item.headers.get("content-type", "")
        return client.generic("POST", item.path, item.body, content_type=ctype, headers=extra)

    # First half: timed (phases, SQL, CPU) without the profiler; second half under cProfile.
    half = (len(webhooks) + 1) // 2
    timed_part, profiled_part = webhooks[:half], webhooks[half:]
    with connection.execute_wrapper(timed_sql):
        for item in timed_part:
            t0, c0 = time.perf_counter(), time.thread_time()
            response = post(item)
            totals.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
            outcomes[(response.status_code, response.json().get("outcome"))] += 1
    for u in undo:
        u()
    for item in profiled_part:
        profiler.enable()
        response = post(item)
        profiler.disable()
        outcomes[(response.status_code, response.json().get("outcome"))] += 1
    webhooks = timed_part
    print(f"\nprofile: {len(timed_part)} webhooks timed, then {len(profiled_part)} under cProfile, through Django's"
          f" test client in this process (simulators in this process too), one at a time (outcomes {dict(outcomes)})")
    print(f"  whole request (wall): {_latency_line(totals)}")
    print(f"  CPU of the request's thread (our side only; the simulator answers from its own thread):"
          f" mean {statistics.fmean(cpu) * 1000:.2f} ms per webhook")
    print(f"  {'phase':<42} {'calls':>5}  {'wall ms':>8}  {'CPU ms':>7}  (means per call)")
    for label, values in phases.seconds.items():
        print(f"  {label:<42} {len(values):>5}  {statistics.fmean(v[0] for v in values) * 1000:8.2f}"
              f"  {statistics.fmean(v[1] for v in values) * 1000:7.2f}")
    n = len(webhooks)
    print(f"  SQL: {sum(len(v) for v in queries.values()) / n:.1f} statements and "
          f"{sum(map(sum, queries.values())) / n * 1000:.2f} ms per webhook; the 15 costliest (total per webhook):")
    for text, values in sorted(queries.items(), key=lambda kv: -sum(kv[1]))[:15]:
        print(f"    {sum(values) / n * 1000:6.2f} ms  x{len(values) / n:<4.1f} {text}")
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(30)
    print("  cProfile, by cumulative time (top 30):")
    print("\n".join("    " + line for line in out.getvalue().splitlines()[:60] if line.strip()))
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
    print("  cProfile, by own time (top 20):")
    print("\n".join("    " + line for line in out.getvalue().splitlines()[:45] if line.strip()))


# -- main -----------------------------------------------------------------------------------------

def main() -> int:
    args = _parse_args()
    if args.webhooks <= 0 or args.concurrency <= 0 or not 0 <= args.bkash_share <= 1:
        raise SystemExit("--webhooks and --concurrency must be positive, --bkash-share within 0..1")
    db_url, where = _throwaway(args)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"

    from ispbill.sim.gateways import start_gateway_sims

    sims = start_gateway_sims(public_url=base, keep_requests=50)
    atexit.register(sims.stop)
    sims.sslcommerz.ipn_order = "off"  # this benchmark delivers the IPNs
    sims.bkash.notify_url = None  # ... and the SNS notifications
    os.environ.update(sims.environment())
    os.environ["ISPBILL_PUBLIC_URL"] = base
    os.environ["DJANGO_SETTINGS_MODULE"] = "ispbill.settings"
    os.environ.setdefault("ISPBILL_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections

    from ispbill.core import clock

    call_command("migrate", verbosity=0)
    total = args.warmup + args.webhooks + args.profile
    n_bkash = round(total * args.bkash_share)
    print(f"webhook benchmark: {args.webhooks} measured (+{args.warmup} warm-up) webhooks, {args.concurrency} concurrent;"
          f" {connection.vendor}; server: gunicorn {args.workers} processes x {args.threads} threads, batches of at most {args.batch};"
          f" {os.cpu_count()} CPUs (shared by everything)")
    print(f"  database: {where}")
    t0 = time.perf_counter()
    subs = _subscribers(total, clock.now())
    ssl_attempts = _attempts(subs[n_bkash:], "sslcommerz")
    bkash_attempts = _attempts(subs[:n_bkash], "bkash")
    webhooks = _paid_sslcommerz(sims.sslcommerz, ssl_attempts) + _paid_bkash(sims, bkash_attempts)
    random.Random(4).shuffle(webhooks)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    connections.close_all()
    print(f"  set-up (not measured): {total} subscribers with an open invoice and a paid attempt"
          f" ({total - n_bkash} SSLCommerz, {n_bkash} bKash) in {time.perf_counter() - t0:.1f} s")

    log_path = Path(os.environ["ISPBILL_DATA_DIR"]) / "web.log"
    server = _start_server(port, args, log_path)
    warm, measured, profiled = (webhooks[:args.warmup], webhooks[args.warmup:args.warmup + args.webhooks],
                                webhooks[args.warmup + args.webhooks:])
    _send(base, warm, args.concurrency, args.max_seconds)
    load_before = os.getloadavg()[0]
    meter = CpuMeter(server.pid, db_url)
    wall = _send(base, measured, args.concurrency, args.max_seconds)
    cpu = meter.used()

    sent = [w for w in measured if w.done_at]
    accepted = [w for w in sent if w.status == 200 and w.outcome == "accepted"]
    rate = len(accepted) / wall if wall else 0.0
    p99 = _pct(sorted(w.seconds for w in sent), 99) * 1000 if sent else float("inf")
    print(f"\nmeasured: {len(sent)} webhooks sent in {wall:.2f} s ({len(measured) - len(sent)} not sent: time limit)")
    print(f"  answers: {dict(Counter((w.status, w.outcome or w.error) for w in sent))}")
    print(f"  accepted webhooks/s: {rate:.1f}")
    print("  latency to \"payment committed\" (POST -> 200, sent after the settlement transaction commits):")
    print(f"    all         {_latency_line([w.seconds for w in sent])}")
    for kind in ("sslcommerz", "bkash"):
        mine = [w.seconds for w in sent if w.kind == kind]
        if mine:
            print(f"    {kind:<11} {_latency_line(mine)}  (n={len(mine)})")
    if sent:
        start = min(w.done_at - w.seconds for w in sent)
        buckets = Counter(int(w.done_at - start) for w in accepted)
        full = [buckets.get(s, 0) for s in range(int(wall))]  # whole seconds only
        if full:
            print(f"  accepted per whole second: min {min(full)}, median {statistics.median(full):.0f}, max {max(full)}"
                  f" over {len(full)} s")
    pg_part = f"PostgreSQL backends {cpu['postgres']:.1f} s, " if db_url else ""
    print(f"  CPU used during the measured phase: server (gunicorn) {cpu['server']:.1f} s, {pg_part}"
          f"this process (simulators + load generator) {cpu['bench']:.1f} s, of "
          f"{wall * (os.cpu_count() or 1):.1f} CPU-s; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
          f" (other work on the machine takes CPU from the benchmark)")
    if accepted:
        per = 1000 / len(accepted)
        pg_part = f"PostgreSQL {cpu['postgres'] * per:.2f} ms, " if db_url else ""
        print(f"  CPU per accepted webhook: server {cpu['server'] * per:.2f} ms, {pg_part}"
              f"simulators + client {cpu['bench'] * per:.2f} ms")

    # Correctness: exactly one payment, credit and pair of receipts per accepted webhook.
    from django.db.models import Sum

    from ispbill.billing import ledger
    from ispbill.billing.models import LedgerEntry
    from ispbill.notifications.models import Message
    from ispbill.payments.models import InboundWebhook, Payment

    all_sent = [w for w in webhooks[:args.warmup + args.webhooks] if w.done_at]
    all_accepted = sum(1 for w in all_sent if w.status == 200 and w.outcome == "accepted")
    checks = [
        ("completed payments == accepted webhooks", Payment.objects.filter(status="completed").count(), all_accepted),
        ("payment ledger credits (paisa)", -(LedgerEntry.objects.filter(kind="payment").aggregate(s=Sum("amount_paisa"))["s"] or 0),
         all_accepted * 100_000),
        ("receipts queued (sms + email)", Message.objects.filter(kind="receipt").count(), 2 * all_accepted),
        ("webhooks stored", InboundWebhook.objects.count(), len(all_sent)),
        ("ledger discrepancies", len(ledger.ledger_discrepancies()), 0),
    ]
    if args.floor:  # nothing is settled: only the stored webhooks can be checked
        checks = [c for c in checks if c[0] == "webhooks stored"] if args.floor != "http" else []
    ok = all(got == want for _, got, want in checks)
    print("  verification: " + "; ".join(f"{'ok' if got == want else 'BAD'} {label}: {got}"
                                         + ("" if got == want else f" (expected {want})") for label, got, want in checks))
    log = log_path.read_text(errors="replace")
    if "Traceback" in log:
        print("  the server logged a traceback:\n" + log[log.index("Traceback"):][:3000])
        ok = False
    met = rate >= TARGET_RATE and p99 <= TARGET_P99_MS
    verdict = ("met" if met else "MISSED") if db_url else "not applicable: SQLite"
    if args.floor:
        verdict = f"not applicable: --floor {args.floor}, nothing settled"
    print(f"result: {rate:.0f} accepted webhooks/s, p99 {p99:.0f} ms  [target on PostgreSQL, 2 cores: >= {TARGET_RATE:.0f}/s"
          f" and p99 <= {TARGET_P99_MS:.0f} ms: {verdict}]; verification {'PASS' if ok else 'FAIL'}")

    _stop_server(server)
    if args.profile and profiled:
        connections.close_all()
        _profile(profiled)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
