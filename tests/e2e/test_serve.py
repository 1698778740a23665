"""``ispbill serve`` for real: web and worker as child processes on an embedded SQLite
database; SIGTERM stops both."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

START_TIMEOUT = 30
STOP_TIMEOUT = 15


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isp_zone_with_billing_due() -> str:
    """The billing run is a Daily job at 00:05 local: on a fresh database it is due at
    start-up except between midnight and 00:05. Pick a zone where it is not that hour
    now (Dhaka normally), so the worker's first loop runs it."""
    local = datetime.now(UTC).astimezone(ZoneInfo("Asia/Dhaka"))
    near_midnight = (local.hour == 23 and local.minute >= 55) or (local.hour == 0 and local.minute < 10)
    return "UTC" if near_midnight else "Asia/Dhaka"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces or parentheses
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200 and b'"ok"' in r.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def billing_runs(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("SELECT runs FROM worker_jobrun WHERE name = 'billing_run'").fetchone()
    except sqlite3.OperationalError:
        return 0
    return row[0] if row else 0


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path


@pytest.fixture
def env(data_dir):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "ISPBILL_REQUIRE_DB", "DJANGO_SETTINGS_MODULE"}}
    env.update(
        ISPBILL_DATA_DIR=str(data_dir), ISPBILL_TIME_ZONE=isp_zone_with_billing_due(), ISPBILL_WEB_WORKERS="1",
        ISPBILL_WEB_THREADS="2", PYTHONUNBUFFERED="1",
    )
    return env


def ispbill(*argv: str) -> list[str]:
    return [sys.executable, "-m", "ispbill.cli", *argv]


class Served:
    """A running ``ispbill serve`` and its process tree."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, db_path: Path):
        self.proc, self.log_path, self.db_path = proc, log_path, db_path
        self.web = self.worker = 0
        self.web_workers: list[int] = []

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    @property
    def tree(self) -> list[int]:
        return [self.web, self.worker, *self.web_workers]


@pytest.fixture
def serve(data_dir, env):
    """Migrate a fresh database, start ``ispbill serve``, wait until the web answers
    and the worker has run the billing job; kill whatever is left afterwards."""
    subprocess.run(ispbill("migrate", "--verbosity", "0"), env=env, cwd=data_dir, check=True, timeout=120)
    db_path = data_dir / "ispbill.sqlite3"
    assert db_path.exists()
    port = free_port()
    log_path = data_dir / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ispbill("serve", "--port", str(port)), env=env, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so cleanup can never miss a child
        )
    served = Served(proc, log_path, db_path)
    try:
        def up():
            assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{served.log}"
            return healthz(port)

        wait_for(up, START_TIMEOUT, "/healthz to answer 200")

        children = children_of(proc.pid)
        assert len(children) == 2, [cmdline(p) for p in children]
        [served.web] = [p for p in children if "gunicorn" in cmdline(p)]
        [served.worker] = [p for p in children if cmdline(p).endswith("ispbill.cli worker")]
        served.web_workers = children_of(served.web)
        assert served.web_workers, "gunicorn started no worker processes"

        # the worker process really runs the scheduler: the billing run is due at start-up
        wait_for(lambda: billing_runs(db_path) >= 1, START_TIMEOUT, "the worker to run billing_run")
        assert alive(served.worker) and alive(served.web)
        yield served
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_serve_runs_web_and_worker_and_stops_on_sigterm(serve):
    started = time.monotonic()
    serve.proc.send_signal(signal.SIGTERM)
    code = serve.proc.wait(timeout=STOP_TIMEOUT)
    elapsed = time.monotonic() - started

    log = serve.log
    assert code == 0, log
    assert elapsed < STOP_TIMEOUT
    # serve reaps its children before it exits; orphans would still be listed here
    assert [p for p in serve.tree if alive(p)] == [], log
    assert "Traceback" not in log, log
    assert "a child process exited" not in log, log
    assert log.count("started; jobs:") == 1, log  # the worker logs each line once


def test_serve_stops_the_web_when_the_worker_dies(serve):
    os.kill(serve.worker, signal.SIGKILL)

    code = serve.proc.wait(timeout=STOP_TIMEOUT)

    log = serve.log
    assert code == 1, log
    assert "a child process exited with -9; stopping" in log
    assert [p for p in serve.tree if alive(p)] == [], log
