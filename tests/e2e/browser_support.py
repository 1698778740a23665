"""Headless Chromium for the browser tests and ``scripts/screenshots.py``: Debian's
``chromium`` package driven by Playwright (never a browser Playwright downloads).

No pytest here, so the screenshot script can use it too."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

#: The Noto fonts the project ships for its PDFs (Latin, Bengali, the taka sign ৳): the
#: browser gets them too, so pages render the same whatever fonts the machine has.
FONTS = Path(__file__).resolve().parents[2] / "src" / "ispbill" / "backoffice" / "fonts"

#: Override with ISPBILL_CHROMIUM=/path/to/chromium.
DEFAULT_CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
    "--disable-background-networking",
    "--disable-extensions",
    "--no-first-run",
    "--mute-audio",
]
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


class BrowserMissing(RuntimeError):
    """Chromium or Playwright is not installed; the message says how to install it."""


def chromium_path() -> str:
    path = os.environ.get("ISPBILL_CHROMIUM") or DEFAULT_CHROMIUM
    found = shutil.which(path) if not Path(path).is_absolute() else (path if Path(path).is_file() else None)
    if not found or not os.access(found, os.X_OK):
        raise BrowserMissing(
            f"Chromium is not installed at {path}: the back-office browser tests drive Debian's chromium "
            "package (apt-get install --no-install-recommends chromium; .ci/run installs it when missing), "
            "or set ISPBILL_CHROMIUM to another Chromium binary."
        )
    return found


def start_playwright():
    """Playwright's sync API, started; the caller stops it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - the dev extras install it
        raise BrowserMissing("Playwright for Python is not installed: pip install -e '.[dev]'") from exc
    return sync_playwright().start()


def _font_config() -> str:
    """A fontconfig file: the system's fonts plus :data:`FONTS`."""
    folder = Path(tempfile.gettempdir()) / f"ispbill-fonts-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    system = "<include ignore_missing=\"yes\">/etc/fonts/fonts.conf</include>"
    text = f"<?xml version=\"1.0\"?>\n<fontconfig>{system}<dir>{FONTS}</dir><cachedir>{folder}</cachedir></fontconfig>\n"
    conf = folder / "fonts.conf"
    if not conf.exists() or conf.read_text() != text:
        partial = folder / f"fonts.conf.{os.getpid()}"
        partial.write_text(text)
        partial.replace(conf)
    return str(conf)


def launch(playwright):
    """Debian's Chromium, headless, with the project's fonts."""
    env = {**os.environ, "FONTCONFIG_FILE": _font_config()}
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=LAUNCH_ARGS, env=env)


@contextlib.contextmanager
def allow_sync_orm() -> Iterator[None]:
    """While Playwright's sync API is started, the thread that started it has a running
    asyncio loop (Playwright's dispatcher), and Django refuses ORM calls from such a
    thread. Browser steps and database steps in a test take turns, never overlap, so
    lifting Django's check for that stretch is safe."""
    name = "DJANGO_ALLOW_ASYNC_UNSAFE"
    previous = os.environ.get(name)
    os.environ[name] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


_OVERFLOW_JS = """(width) => {
  const scrolls = (e) => {
    for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== "visible") return true;
    }
    return false;
  };
  const past = [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > width + 1 && !scrolls(e));
  // the innermost ones: what makes their containers wide
  const wide = past.filter((e) => !past.some((other) => other !== e && e.contains(other)))
    .slice(0, 5)
    .map((e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + [...e.classList].map((c) => "." + c).join(""));
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, wide};
}"""


def overflow(page) -> dict:
    """The page's width against the window's and the device's, and the first elements
    that reach past the window outside any scrolling box. On a phone, content wider than
    the screen also widens the window (``innerWidth``) as the browser zooms out to show
    it, so a page fits only if neither is wider than the device."""
    device = page.viewport_size["width"]
    seen = page.evaluate(_OVERFLOW_JS, device)
    seen["device"] = device
    seen["fits"] = max(seen["scrollWidth"], seen["innerWidth"]) <= seen["device"]
    return seen
