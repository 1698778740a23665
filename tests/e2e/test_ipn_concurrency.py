"""20 identical, valid SSLCommerz IPNs fired at once at a real ``ispbill web`` server on
PostgreSQL credit one payment, once.

The server runs as a subprocess (gunicorn: 2 processes x 8 threads) on a database this
module creates on the PostgreSQL server of ``DATABASE_URL`` (``ispbill_e2e_<pid>``,
dropped afterwards), against an SSLCommerz simulator served from this process. The
subscriber, invoice and payment attempt are made through the services by
``gateway_world.py`` against the same database; the customer presses Pay on the
simulator's hosted page; then the signed IPN it produced is delivered 20 times
concurrently (and, in the second test, raced by the customer's browser return).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections import Counter

import httpx
import pytest

from ispbill.sim.http import serve_in_thread
from ispbill.sim.sslcommerz import SslcommerzSimulator

from .gateway_support import auto_post_fields, base_env, free_port, ispbill, press, run_world, sql, start_process
from .gateway_support import throwaway_postgres

pytestmark = pytest.mark.postgres_only

STORE, STORE_PASSWORD = "e2estore", "e2estore@ssl"
RECEIVED = "Payment received, thank you"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        pytest.skip("needs DATABASE_URL pointing at PostgreSQL")
    data_dir = tmp_path_factory.mktemp("ipn-e2e")
    sim = SslcommerzSimulator(stores={STORE: STORE_PASSWORD}, ipn_order="off")  # the test delivers the IPNs
    sim_server = serve_in_thread(sim)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        with throwaway_postgres(url, f"ispbill_e2e_{os.getpid()}") as db_url:
            env = base_env(data_dir)
            env.update(
                DATABASE_URL=db_url, ISPBILL_PUBLIC_URL=base, ISPBILL_WEB_WORKERS="2", ISPBILL_WEB_THREADS="8",
                SSLCOMMERZ_BASE_URL=sim.base_url, SSLCOMMERZ_STORE_ID=STORE, SSLCOMMERZ_STORE_PASSWORD=STORE_PASSWORD,
            )
            subprocess.run(ispbill("migrate", "--verbosity", "0"), env=env, cwd=data_dir, check=True, timeout=180)
            server = start_process(ispbill("web", "--port", str(port)), env=env, cwd=data_dir,
                                   log_path=data_dir / "web.log", health_url=base)
            try:
                yield {"env": env, "data_dir": data_dir, "db_url": db_url, "base": base, "sim": sim, "server": server}
            finally:
                server.stop()
    finally:
        sim_server.stop()


def paid_on_the_simulator(stack) -> tuple[dict, dict[str, str]]:
    """A subscriber owing 1000.00 with an SSLCommerz attempt, paid on the hosted page;
    returns (the attempt, the signed fields SSLCommerz posts to the IPN and the browser)."""
    (attempt,) = run_world(stack["env"], stack["data_dir"], "attempts", "--gateway", "sslcommerz", "--count", "1")["attempts"]
    with httpx.Client(timeout=10) as browser:
        action, fields = auto_post_fields(press(browser, attempt["redirect_url"], "Pay"))
    assert action == f"{stack['base']}/pay/sslcommerz/success"
    assert (fields["status"], fields["tran_id"], fields["amount"]) == ("VALID", attempt["reference"], "1000.00")
    return attempt, fields


def fire(requests: list[tuple[str, dict]]) -> list[httpx.Response | BaseException]:
    """POST every ``(url, form fields)`` at once, one thread each; responses in order."""
    results: list[httpx.Response | BaseException | None] = [None] * len(requests)
    barrier = threading.Barrier(len(requests))
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=len(requests))) as client:
        def post(i: int, url: str, fields: dict) -> None:
            try:
                barrier.wait(timeout=10)
                results[i] = client.post(url, data=fields)
            except BaseException as exc:  # reported by the caller
                results[i] = exc

        threads = [threading.Thread(target=post, args=(i, u, f)) for i, (u, f) in enumerate(requests)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    return results


def assert_credited_once(stack, attempt: dict, *, webhooks: int) -> int:
    db = stack["db_url"]
    payments = sql(db, "SELECT id, status, amount_paisa, gateway, subscriber_id FROM payments_payment "
                       "WHERE attempt_id = %s OR reference = %s", attempt["attempt_id"], attempt["reference"])
    assert len(payments) == 1, payments
    (payment_id, status, amount, gateway, subscriber_id), = payments
    assert (status, amount, gateway, subscriber_id) == ("completed", 100_000, "sslcommerz", attempt["subscriber_id"])
    credits = sql(db, "SELECT amount_paisa FROM billing_ledgerentry WHERE payment_id = %s AND kind = 'payment'", payment_id)
    assert credits == [(-100_000,)]
    receipts = sql(db, "SELECT channel FROM notifications_message WHERE payment_id = %s AND kind = 'receipt'", payment_id)
    assert sorted(r[0] for r in receipts) == ["email", "sms"]
    invoices = sql(db, "SELECT status, amount_due_paisa FROM billing_invoice WHERE subscriber_id = %s", subscriber_id)
    assert invoices == [("paid", 0)]
    (attempt_status,), = sql(db, "SELECT status FROM payments_paymentattempt WHERE id = %s", attempt["attempt_id"])
    assert attempt_status == "completed"
    stored = sql(db, "SELECT outcome, payment_id FROM payments_inboundwebhook WHERE body LIKE %s",
                 f"%tran_id={attempt['reference']}%")
    assert len(stored) == webhooks
    assert Counter(o for o, _ in stored) == {"accepted": 1, "duplicate": webhooks - 1}
    assert {p for _, p in stored} == {payment_id}
    return payment_id


def test_twenty_concurrent_identical_ipns_credit_once(stack):
    attempt, fields = paid_on_the_simulator(stack)
    ipn = f"{stack['base']}/webhooks/sslcommerz/ipn"

    results = fire([(ipn, fields)] * 20)

    errors = [r for r in results if not isinstance(r, httpx.Response)]
    assert errors == [], errors
    assert [r.status_code for r in results] == [200] * 20, [r.text[:200] for r in results]
    answers = [r.json() for r in results]
    assert Counter(a["outcome"] for a in answers) == {"accepted": 1, "duplicate": 19}
    assert len({a["id"] for a in answers}) == 20  # every delivery was stored as its own row
    assert_credited_once(stack, attempt, webhooks=20)
    assert stack["sim"].transaction(attempt["reference"])["validations"] == 20  # each one asked the gateway
    assert "Traceback" not in stack["server"].log, stack["server"].log[-4000:]


def test_browser_returns_racing_the_ipns_credit_once(stack):
    attempt, fields = paid_on_the_simulator(stack)
    base = stack["base"]
    requests = [(f"{base}/webhooks/sslcommerz/ipn", fields), (f"{base}/pay/sslcommerz/success", fields)] * 10

    results = fire(requests)

    errors = [r for r in results if not isinstance(r, httpx.Response)]
    assert errors == [], errors
    assert [r.status_code for r in results] == [200] * 20, [r.text[:200] for r in results]
    ipns, pages = results[0::2], results[1::2]
    assert all(RECEIVED in p.text for p in pages), [p.text[:300] for p in pages if RECEIVED not in p.text]
    outcomes = Counter(r.json()["outcome"] for r in ipns)
    assert outcomes["accepted"] + outcomes["duplicate"] == 10 and outcomes["accepted"] <= 1
    assert_credited_once(stack, attempt, webhooks=20)
    kinds = sql(stack["db_url"], "SELECT kind, count(*) FROM payments_inboundwebhook WHERE body LIKE %s GROUP BY kind",
                f"%tran_id={attempt['reference']}%")
    assert dict(kinds) == {"ipn": 10, "callback": 10}
    assert "Traceback" not in stack["server"].log, stack["server"].log[-4000:]
