"""The back office in English and Bangla: the language switcher, every page rendered in
Bangla without English left in the navigation, headings, table headers and buttons, the
catalog itself, and amounts that read the same in both languages."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation

from ispbill.backoffice.templatetags.backoffice import taka

from .test_office_permissions import PAGES, _fill

BENGALI = re.compile(r"[\u0980-\u09FF]")
#: Words that stay as they are in the Bangla interface: names of formats, protocols,
#: products and the application itself.
KEPT = {
    "ispbill", "API", "SMS", "PDF", "CSV", "XLSX", "HTML", "IPN", "SNS", "TLS", "RADIUS", "CoA", "RouterOS", "PPPoE",
    "GSM-7", "UCS-2", "SSLCommerz", "bKash", "Nagad", "Rocket", "English", "OpenAPI", "JSON", "ID", "URL", "IP", "MB",
    "KB", "ISP", "PPP", "BDT", "UTF-8", "PNG", "JPEG", "api-ssl", "PROFILE", "PACKAGE", "NAME", "console", "locmem",
}
#: Words of the English interface that must not be left in a Bangla page's chrome.
NAV_WORDS = ("Dashboard", "Subscribers", "Invoices", "Payments", "Messages", "Routers", "Import", "Audit log",
             "Staff", "Settings", "Sign out")
#: Pages that are HTML for staff (not files or documents for the subscriber).
HTML_PAGES = [
    name for name, (path, _query, _roles) in PAGES.items()
    if not name.endswith(("-csv", "-xlsx", "-pdf", "-print")) and name != "receipt"
]


class _Chrome(HTMLParser):
    """Collects the text of the navigation, headings, table headers, labels and buttons
    (not the field names an audit diff quotes from the record)."""

    TAGS = {"nav", "h1", "h2", "h3", "th", "button", "label", "legend", "title"}

    def __init__(self):
        super().__init__()
        self.stack: list[list] = []
        self.texts: list[tuple[str, str]] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("select", "textarea", "option", "script", "style") or dict(attrs).get("class") == "audit-diff":
            self.skip += 1
        if tag in self.TAGS or (tag == "a" and "btn" in (dict(attrs).get("class") or "").split()):
            self.stack.append([tag, ""])

    def handle_endtag(self, tag):
        if tag in ("select", "textarea", "option", "script", "style") or (tag == "table" and self.skip):
            self.skip = max(0, self.skip - 1)
        if self.stack and self.stack[-1][0] == tag:
            name, text = self.stack.pop()
            self.texts.append((name, " ".join(text.split())))

    def handle_data(self, data):
        if self.stack and not self.skip:
            self.stack[-1][1] += data


def _chrome(html: str) -> list[tuple[str, str]]:
    parser = _Chrome()
    parser.feed(html)
    return parser.texts


def _english_left(text: str, data: set[str]) -> list[str]:
    """English words in ``text`` other than the kept ones and the page's own data."""
    for value in sorted(data, key=len, reverse=True):
        text = text.replace(value, " ")
    words = re.findall(r"[A-Za-z][A-Za-z0-9.'-]*[A-Za-z0-9]|[A-Za-z]", text)
    return [w for w in words if w not in KEPT and w.strip(".") not in KEPT]


def _data_words(world) -> set[str]:
    """Words that come from the records themselves (names, numbers, areas), not the UI."""
    from django.contrib.auth import get_user_model

    from ispbill.billing.models import CreditNote, Invoice
    from ispbill.network.models import Router
    from ispbill.plans.models import Package
    from ispbill.subscribers.models import Subscriber

    values: list[str] = []
    for s in Subscriber.objects.all():
        values += [s.name, s.pppoe_username, s.area, s.email]
    values += [p.name for p in Package.objects.all()]
    values += [r.name for r in Router.objects.all()]
    values += list(Invoice.objects.values_list("number", flat=True))
    values += list(CreditNote.objects.values_list("number", flat=True))
    values += list(get_user_model().objects.values_list("username", flat=True))
    return {v for v in values if v}


@pytest.fixture
def bangla(client_for):
    client = client_for("superuser")
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "bn"
    return client


@pytest.mark.parametrize("page", HTML_PAGES)
def test_every_page_reads_in_bangla(world, bangla, page):
    path, query, _roles = PAGES[page]
    response = bangla.get(_fill(path, world), {k: _fill(v, world) for k, v in query.items()})
    assert response.status_code == 200
    html = response.content.decode()
    assert '<html lang="bn">' in html
    chrome = _chrome(html)
    nav = " ".join(text for tag, text in chrome if tag == "nav")
    assert "ড্যাশবোর্ড" in nav and "গ্রাহক" in nav and "সেটিংস" in nav
    for word in NAV_WORDS:
        assert word not in nav, f"{word!r} left in English in the navigation"
    headings = [text for tag, text in chrome if tag == "h1"]
    assert headings, "the page has a heading"
    data = _data_words(world)
    left = {(tag, text): words for tag, text in chrome if tag != "nav" and (words := _english_left(text, data))}
    assert not left, f"English left on {page}: {left}"
    assert "Sign out" not in html and "সাইন আউট" in html


def test_switching_the_language_sets_the_cookie_and_returns_to_the_page(world, client_for):
    client = client_for("admin")
    english = client.get("/office/subscribers/")
    assert '<html lang="en">' in english.content.decode() and ">Subscribers</a>" in english.content.decode()
    assert 'action="/i18n/setlang/"' in english.content.decode()

    switched = client.post("/i18n/setlang/", {"language": "bn", "next": "/office/subscribers/?status=active"})
    assert switched.status_code == 302 and switched["Location"] == "/office/subscribers/?status=active"
    cookie = switched.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "bn" and int(cookie["max-age"]) >= 300 * 24 * 3600  # remembered, not per session

    bangla = client.get("/office/subscribers/").content.decode()
    assert '<html lang="bn">' in bangla and "<h1>গ্রাহক</h1>" in bangla and ">Subscribers</a>" not in bangla
    assert ">English</button>" in bangla  # the way back, in its own language

    client.post("/i18n/setlang/", {"language": "en", "next": "/office/"})
    assert '<html lang="en">' in client.get("/office/").content.decode()


def test_the_login_page_offers_the_switch_and_signs_in_in_bangla(db, fast_hasher):
    from .office_support import make_staff

    make_staff("viewer", password="secret-pass-1")
    client = Client()
    page = client.get("/office/login/").content.decode()
    assert 'action="/i18n/setlang/"' in page and ">বাংলা</button>" in page
    client.post("/i18n/setlang/", {"language": "bn", "next": "/office/login/"})
    page = client.get("/office/login/").content.decode()
    assert "সাইন ইন" in page and "পাসওয়ার্ড" in page and "Password" not in page
    signed_in = client.post("/office/login/", {"username": "viewer-user", "password": "secret-pass-1"}, follow=True)
    assert "ড্যাশবোর্ড" in signed_in.content.decode()


def test_an_unsupported_language_falls_back_to_english(world, client_for):
    client = client_for("admin")
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "fr"
    assert '<html lang="en">' in client.get("/office/").content.decode()


def test_messages_after_an_action_follow_the_language(world, bangla):
    response = bangla.post(
        f"/office/subscribers/{world['sub'].pk}/payments", {"amount": "1234.56", "method": "cash", "key": "i18n-1"},
        follow=True,
    )
    assert "৳ 1,234.56 পেমেন্ট রেকর্ড হয়েছে।" in response.content.decode()


@pytest.mark.parametrize("language", ["en", "bn"])
@pytest.mark.parametrize(
    ("paisa", "shown"),
    [(123456, "৳ 1,234.56"), (0, "৳ 0.00"), (5, "৳ 0.05"), (-5000, "−৳ 50.00"), (100_000_000_00, "৳ 100,000,000.00")],
)
def test_amounts_read_the_same_in_both_languages(language, paisa, shown):
    with translation.override(language):
        assert taka(paisa) == shown


def test_a_bangla_page_shows_amounts_with_latin_digits_and_two_decimals(world, bangla):
    html = bangla.get(f"/office/subscribers/{world['sub'].pk}/").content.decode()
    assert "৳ 1,000.00" in html
    assert not re.search(r"৳ [০-৯]", html)


def test_the_catalog_is_complete_and_compiled():
    po = Path(settings.LOCALE_PATHS[0]) / "bn" / "LC_MESSAGES" / "django.po"
    mo = po.with_suffix(".mo")
    text = po.read_text(encoding="utf-8")
    assert "#, fuzzy" not in text
    entries = text.split("\n\n")[1:]
    assert len(entries) > 500
    for entry in entries:
        msgids = re.findall(r'^msgid(?:_plural)? ((?:".*"\n?)+)', entry, re.M)
        msgstrs = re.findall(r"^msgstr(?:\[\d\])? ((?:\".*\"\n?)+)", entry, re.M)
        joined = ["".join(re.findall(r'"(.*)"', block)) for block in msgstrs]
        assert msgstrs and all(joined), f"untranslated: {entry}"
        placeholders = set(re.findall(r"%\(\w+\)[sd]", "".join(msgids)))
        for translated in joined:
            assert set(re.findall(r"%\(\w+\)[sd]", translated)) == placeholders, entry
    # The compiled catalog ships with the package and is not older than its source.
    assert mo.exists() and mo.stat().st_size > 10_000


def test_a_bangla_export_has_bangla_headers_the_import_recognises_and_latin_figures(world, bangla):
    from ispbill.subscribers.importing import guess_mapping

    response = bangla.get("/office/subscribers/export.csv")
    header, row = b"".join(response.streaming_content).decode("utf-8-sig").splitlines()[:2]
    headers = header.split(",")
    assert "নাম" in headers and "ফোন" in headers and "প্যাকেজ" in headers
    assert all(column is not None for column in guess_mapping(headers).values())
    assert row.endswith(",1000.00") and not re.search(r"[০-৯]", row)


def test_the_front_page_follows_the_language(db):
    client = Client()
    assert "Back office" in client.get("/").content.decode()
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "bn"
    page = client.get("/").content.decode()
    assert '<html lang="bn">' in page and "ব্যাক অফিস" in page and "Back office" not in page
