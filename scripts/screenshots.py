"""Screenshots of the back office on the demo data, for the README.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Migrates a throw-away embedded database, loads the demo data (``ispbill demo``), starts
``ispbill serve --demo-router`` on a free port, signs in as the demo admin in headless
Chromium (Debian's ``chromium`` package, see ``tests/e2e/browser_support.py``) and saves
PNGs of the main pages at laptop width (1280 px) and, for the pages staff use on the go,
phone width (390 px). A page the server does not have (404) is reported and skipped.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from browser_support import LAPTOP, PHONE, launch, overflow, start_playwright  # noqa: E402

ADMIN = ("admin", "ispbill-admin")
#: Tallest picture kept, in CSS pixels: enough to show what a page is about.
MAX_HEIGHT = {"laptop": 1100, "phone": 1500}
#: A small spreadsheet with one bad row, for the import dry run.
IMPORT_CSV = (
    "Name,Mobile,Username,Package,Area\n"
    "Shirin Akter,01712345671,shirin01,{package},Mirpur\n"
    "Jamal Hossain,12345,jamal02,{package},Mirpur\n"
    "Ruma Khatun,01812345673,ruma03,{package},Uttara\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ispbill(*argv: str) -> list[str]:
    return [sys.executable, "-m", "ispbill.cli", *argv]


def wait_until_up(base: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ispbill serve exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"ispbill serve did not answer within {timeout} s:\n{log.read_text(errors='replace')}")


class Shooter:
    def __init__(self, page, out: Path, width: str):
        self.page, self.out, self.width = page, out, width
        self.saved: list[Path] = []

    def open(self, path: str) -> bool:
        response = self.page.goto(path)
        if response is None or response.status == 404:
            print(f"  {path}: not found, skipped")
            return False
        if response.status >= 400:
            raise SystemExit(f"{path} answered {response.status}")
        return True

    def shoot(self, name: str) -> None:
        page = self.page
        page.wait_for_load_state("networkidle")
        viewport = page.viewport_size
        height = min(page.evaluate("document.documentElement.scrollHeight"), MAX_HEIGHT[self.width])
        target = self.out / f"{name}-{self.width}.png"
        page.screenshot(path=str(target), full_page=True, clip={"x": 0, "y": 0, "width": viewport["width"], "height": height})
        self.saved.append(target)
        print(f"  {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
        seen = overflow(page)
        if not seen["fits"]:
            print(f"    warning: the page is {seen['scrollWidth']} px wide on a {seen['device']} px screen "
                  f"(window {seen['innerWidth']} px); reaching past it: {', '.join(seen['wide']) or '?'}")


def sign_in(page) -> None:
    page.goto("/office/login/")
    page.get_by_label("Username").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/office/")


def a_subscriber(page) -> str:
    """The page of a subscriber with some history: the first active one who is overdue
    (else the first suspended one, else the first on the list)."""
    for query in ("?status=active&overdue=1", "?status=suspended", ""):
        page.goto(f"/office/subscribers/{query}")
        links = page.locator("table.data tbody tr td a")
        if links.count():
            return links.first.get_attribute("href")
    raise SystemExit("the demo data has no subscribers")


def laptop_pages(shot: Shooter) -> None:
    page = shot.page
    if shot.open("/office/"):
        shot.shoot("dashboard")
    if shot.open("/office/subscribers/"):
        shot.shoot("subscribers")
    detail = a_subscriber(page)
    if shot.open(detail):
        shot.shoot("subscriber")
        form = page.locator("form", has=page.get_by_role("button", name="Preview the charge"))
        options = form.locator("select[name=package] option")
        current = page.locator("dl.props").first.inner_text()
        for i in range(options.count()):
            label = options.nth(i).inner_text()
            if label.split(" (")[0] not in current:
                form.locator("select[name=package]").select_option(label=label)
                break
        form.get_by_role("button", name="Preview the charge").click()
        page.wait_for_url("**/change-package/preview**")
        shot.shoot("change-package-preview")
    for path, name in [
        ("/office/invoices/", "invoices"),
        ("/office/payments/", "payments"),
        ("/office/payments/exceptions/", "payment-exceptions"),
        ("/office/messages/", "messages"),
        ("/office/routers/", "routers"),
        ("/office/settings/", "settings"),
        ("/office/audit/", "audit"),
    ]:
        if shot.open(path):
            shot.shoot(name)
    csv_text = IMPORT_CSV.format(package=demo_package(page))
    if shot.open("/office/import/"):
        page.get_by_label("File").set_input_files(
            files=[{"name": "new-subscribers.csv", "mimeType": "text/csv", "buffer": csv_text.encode()}]
        )
        page.get_by_role("button", name="Upload and read").click()
        page.get_by_role("button", name="Dry run").click()
        page.wait_for_url("**/preview")
        shot.shoot("import-preview")


def demo_package(page) -> str:
    """The name of a package the demo has (read from the subscriber list's filter)."""
    page.goto("/office/subscribers/")
    return page.locator("select[name=package] option").nth(1).inner_text()


def phone_pages(shot: Shooter) -> None:
    if shot.open("/office/"):
        shot.shoot("dashboard")
    if shot.open("/office/subscribers/"):
        shot.shoot("subscribers")
    detail = a_subscriber(shot.page)
    if shot.open(detail):
        shot.shoot("subscriber")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="ispbill-screenshots-") as tmp:
        data_dir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env.update(ISPBILL_DATA_DIR=str(data_dir), ISPBILL_DEMO_ROUTER_PORT=str(free_port()), ISPBILL_PUBLIC_URL=base,
                   ISPBILL_WEB_WORKERS="1", ISPBILL_WEB_THREADS="4", PYTHONUNBUFFERED="1")
        print("loading the demo data ...")
        for step in (ispbill("migrate", "--verbosity", "0"), ispbill("demo")):
            done = subprocess.run(step, env=env, cwd=data_dir, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{' '.join(step[2:])} failed:\n{done.stdout}{done.stderr}")
        log = data_dir / "serve.log"
        with open(log, "wb") as sink:
            server = subprocess.Popen(ispbill("serve", "--demo-router", "--port", str(port)), env=env, cwd=data_dir,
                                      stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        playwright = None
        try:
            wait_until_up(base, server, log)
            playwright = start_playwright()
            browser = launch(playwright)
            for width, viewport, pages, options in [
                ("laptop", LAPTOP, laptop_pages, {}),
                ("phone", PHONE, phone_pages, {"is_mobile": True, "has_touch": True}),
            ]:
                print(f"{width} ({viewport['width']} px):")
                context = browser.new_context(base_url=base, viewport=viewport, locale="en-US",
                                              timezone_id="Asia/Dhaka", **options)
                context.set_default_timeout(30_000)
                page = context.new_page()
                sign_in(page)
                pages(Shooter(page, out, width))
                context.close()
            browser.close()
        finally:
            if playwright is not None:
                playwright.stop()
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                try:
                    server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
