"""Helpers for end-to-end payment tests: a throwaway PostgreSQL database, a real
``ispbill web`` server, the set-up script run against the server's database, and a
small browser for the simulators' hosted pages."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from integration.gateways.hosted_pages import forms  # noqa: F401  (re-exported: one form parser for all tests)

HERE = Path(__file__).resolve().parent
WORLD = HERE / "gateway_world.py"
START_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def healthz(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def ispbill(*argv: str) -> list[str]:
    return [sys.executable, "-m", "ispbill.cli", *argv]


def base_env(data_dir: Path) -> dict[str, str]:
    """The test process's environment without its database choice and gateway settings."""
    drop = {"DATABASE_URL", "ISPBILL_REQUIRE_DB", "DJANGO_SETTINGS_MODULE", "ISPBILL_PUBLIC_URL"}
    env = {k: v for k, v in os.environ.items()
           if k not in drop and not k.startswith(("BKASH_", "NAGAD_", "SSLCOMMERZ_", "ISPBILL_DEMO_"))}
    env.update(ISPBILL_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    return env


# -- a throwaway PostgreSQL database -------------------------------------------------------------

@contextmanager
def throwaway_postgres(server_url: str, name: str) -> Iterator[str]:
    """Create database ``name`` on the server of ``server_url`` (whose own database is
    never touched), yield its URL, drop it afterwards."""
    import psycopg

    parts = urlsplit(server_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sql(url: str, query: str, *params) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


# -- a running server -------------------------------------------------------------------------

class Server:
    def __init__(self, proc: subprocess.Popen, base_url: str, log_path: Path):
        self.proc, self.base_url, self.log_path = proc, base_url, log_path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def start_process(argv: list[str], *, env: dict, cwd: Path, log_path: Path, health_url: str) -> Server:
    """Start ``argv`` in its own process group; wait until ``health_url``/healthz answers."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, health_url, log_path)
    try:
        def up():
            assert proc.poll() is None, f"{argv[3:]} exited with {proc.returncode}:\n{server.log}"
            return healthz(health_url)

        wait_for(up, START_TIMEOUT, f"{health_url}/healthz")
    except BaseException:
        server.stop()
        raise
    return server


def run_world(env: dict, cwd: Path, *argv: str) -> dict:
    done = subprocess.run([sys.executable, str(WORLD), *argv], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the simulators' hosted pages ------------------------------------------------------------

def press(client: httpx.Client, url: str, label: str = "Pay") -> httpx.Response:
    """Open the hosted page (or our payment page) at ``url`` and press ``label``."""
    page = client.get(url)
    assert page.status_code == 200, (page.status_code, page.text[:500])
    (form,) = [f for f in forms(page.text) if label in f.buttons] or forms(page.text)
    assert label in form.buttons, f"no {label!r} button; have {sorted(form.buttons)}"
    name, value = form.buttons[label]
    return client.post(urljoin(url, form.action), data={**form.inputs, name: value})


def auto_post_fields(response: httpx.Response) -> tuple[str, dict[str, str]]:
    """The (action, fields) of a gateway's self-submitting "back to the merchant" form."""
    assert response.status_code == 200, (response.status_code, response.text[:500])
    (form,) = forms(response.text)
    assert form.method == "post"
    return form.action, dict(form.inputs)
