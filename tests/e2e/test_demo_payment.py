"""``make run``'s demo, paid for real: ``ispbill serve --demo-router --demo-gateways`` on
the demo data (embedded SQLite), a suspended demo subscriber opens their payment link,
pays through each simulated gateway's hosted page, and comes back paid and restored."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from .gateway_support import auto_post_fields, base_env, forms, free_port, ispbill, press, run_world, start_process
from .gateway_support import wait_for

RECEIVED = "Payment received, thank you"
SSLCOMMERZ = "Pay with Card / Rocket / other wallets (SSLCommerz)"


def two_free_ports() -> int:
    """A port ``p`` with ``p + 1`` free too (the simulators' HTTP and TLS ports)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


def rows(db: Path, query: str, *params) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("demo-pay")
    env = base_env(data_dir)
    env.update(ISPBILL_DEMO_ROUTER_PORT=str(free_port()), ISPBILL_DEMO_GATEWAYS_PORT=str(two_free_ports()),
               ISPBILL_WEB_WORKERS="1", ISPBILL_WEB_THREADS="4")
    subprocess.run(ispbill("migrate", "--verbosity", "0"), env=env, cwd=data_dir, check=True, timeout=120)
    subprocess.run(ispbill("demo"), env=env, cwd=data_dir, check=True, timeout=120, capture_output=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_process(ispbill("serve", "--demo-router", "--demo-gateways", "--port", str(port)), env=env,
                           cwd=data_dir, log_path=data_dir / "serve.log", health_url=base)
    try:
        yield {"env": env, "data_dir": data_dir, "db": data_dir / "ispbill.sqlite3", "base": base, "server": server}
    finally:
        server.stop()


def suspended(demo) -> list[str]:
    return [r[0] for r in rows(demo["db"], "SELECT pppoe_username FROM subscribers_subscriber "
                                           "WHERE status = 'suspended' ORDER BY id")]


def pay_link(demo, username: str) -> tuple[int, str]:
    made = run_world(demo["env"], demo["data_dir"], "link", "--subscriber", username)
    return made["subscriber_id"], f"{demo['base']}/pay/{made['token']}"


def assert_paid_and_restored(demo, subscriber_id: int, gateway: str) -> None:
    db = demo["db"]
    (payment,) = rows(db, "SELECT id, status, amount_paisa FROM payments_payment WHERE subscriber_id = ? AND gateway = ?",
                      subscriber_id, gateway)
    assert payment[1] == "completed"
    # credited once: one ledger entry per invoice it paid, summing to the payment
    assert rows(db, "SELECT sum(amount_paisa) FROM billing_ledgerentry WHERE payment_id = ? AND kind = 'payment'",
                payment[0]) == [(-payment[2],)]
    open_invoices = rows(db, "SELECT id FROM billing_invoice WHERE subscriber_id = ? AND amount_due_paisa > 0 "
                             "AND status != 'void'", subscriber_id)
    assert open_invoices == []
    assert rows(db, "SELECT status FROM subscribers_subscriber WHERE id = ?", subscriber_id) == [("active",)]
    # ... and the worker told the (simulated) router
    wait_for(lambda: rows(db, "SELECT status FROM network_enforcementaction WHERE subscriber_id = ? "
                              "AND action = 'restore' ORDER BY id DESC LIMIT 1", subscriber_id) == [("done",)],
             20, "the restore to reach the demo router")


def test_pay_a_demo_invoice_through_sslcommerz(demo):
    subscriber_id, url = pay_link(demo, suspended(demo)[0])
    with httpx.Client(timeout=20) as browser:
        page = browser.get(url)
        assert page.status_code == 200
        offered = [label for form in forms(page.text) for label in form.buttons]
        assert offered == ["Pay with bKash", "Pay with Nagad", SSLCOMMERZ]

        to_gateway = press(browser, url, SSLCOMMERZ)  # POST /pay/<token>/start
        assert to_gateway.status_code == 303
        hosted = to_gateway.headers["location"]
        action, fields = auto_post_fields(press(browser, hosted, "Pay"))  # the IPN has been delivered by now
        assert action == f"{demo['base']}/pay/sslcommerz/success"
        back = browser.post(action, data=fields)

    assert back.status_code == 200 and RECEIVED in back.text
    assert_paid_and_restored(demo, subscriber_id, "sslcommerz")
    outcomes = rows(demo["db"], "SELECT kind, outcome FROM payments_inboundwebhook WHERE gateway = 'sslcommerz' ORDER BY id")
    assert outcomes == [("ipn", "accepted"), ("callback", "duplicate")]


@pytest.mark.parametrize("gateway", ["bkash", "nagad"])
def test_pay_a_demo_invoice_through_the_wallets(demo, gateway):
    subscriber_id, url = pay_link(demo, suspended(demo)[0])
    with httpx.Client(timeout=20) as browser:
        to_gateway = press(browser, url, f"Pay with {'bKash' if gateway == 'bkash' else 'Nagad'}")
        assert to_gateway.status_code == 303
        to_us = press(browser, to_gateway.headers["location"], "Pay")
        assert to_us.status_code == 302 and to_us.headers["location"].startswith(f"{demo['base']}/pay/{gateway}/callback?")
        back = browser.get(to_us.headers["location"])

    assert back.status_code == 200 and RECEIVED in back.text
    assert_paid_and_restored(demo, subscriber_id, gateway)
    if gateway == "bkash":  # the simulator's SNS notification is verified (demo certificate) and credits nothing more
        wait_for(lambda: rows(demo["db"], "SELECT outcome FROM payments_inboundwebhook WHERE gateway = 'bkash' "
                                          "AND kind = 'sns' AND outcome != 'received'"), 10, "bKash's SNS notification")
        assert rows(demo["db"], "SELECT outcome FROM payments_inboundwebhook WHERE gateway = 'bkash' AND kind = 'sns'") \
            in ([("duplicate",)], [("accepted",)])
    assert "Traceback" not in demo["server"].log, demo["server"].log[-4000:]
