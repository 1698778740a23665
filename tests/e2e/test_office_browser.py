"""The back office in a real browser: Debian's Chromium, headless, driven by Playwright
against the live test server (pytest-django's ``live_server``, which serves the test
database; the fixed clock of ``tests/conftest.py`` holds for the server too, since it
runs in this process).

Each test is one thing a staff member does, asserted on what the page shows."""

from __future__ import annotations

import re
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest
from playwright.sync_api import expect

from integration.backoffice.office_support import build_world, make_staff
from integration.billing.billing_support import at

from .browser_support import LAPTOP, PHONE, BrowserMissing, allow_sync_orm, launch, overflow, start_playwright

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
#: Every wait is for something to appear; none is a fixed sleep.
WAIT_MS = 15_000


def _or_fail(make):
    """``make()``, or this test fails (never skips) saying what to install."""
    try:
        return make()
    except BrowserMissing as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module; each test gets its own context (cookies)."""
    with allow_sync_orm():
        playwright = _or_fail(start_playwright)
        try:
            expect.set_options(timeout=WAIT_MS)
            chromium = _or_fail(lambda: launch(playwright))
            yield chromium
            chromium.close()
        finally:
            playwright.stop()


@pytest.fixture
def office(browser, live_server, django_db_serialized_rollback, fixed_clock, settings):
    """The billed world of the back-office tests, a few more subscribers to search among,
    and a billing clerk with a password. The live server needs committed rows, so each
    test's are flushed afterwards; the rows the migrations create (staff roles) are
    restored before each test."""
    from ispbill.subscribers.services import create_subscriber

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    world = build_world()
    for n, name in enumerate(["Rahima Begum", "Karim Uddin", "Nasrin Akter"], start=1):
        world[name] = create_subscriber(
            today=date(2026, 11, 1), name=name, phone=f"0181555000{n}", pppoe_username=f"home{n:03d}",
            package_id=world["basic"].pk, activated_on=date(2026, 11, 1), area="Uttara",
        )
    world["user"] = make_staff("billing", password=PASSWORD)
    world["support"] = make_staff("support", password=PASSWORD)
    world["url"] = live_server.url
    return world


def new_page(browser, office, viewport=LAPTOP, **options):
    context = browser.new_context(
        base_url=office["url"], viewport=viewport, locale="en-US", timezone_id="Asia/Dhaka", **options
    )
    context.set_default_timeout(WAIT_MS)
    return context.new_page()


@pytest.fixture
def page(browser, office):
    page = new_page(browser, office)
    yield page
    page.context.close()


def sign_in(page, office, user=None) -> None:
    page.goto("/office/login/")
    page.get_by_label("Username").fill((user or office["user"]).username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name=re.compile("^Dashboard"))).to_be_visible()


def profile(page):
    return page.locator("section", has=page.get_by_role("heading", name="Profile")).locator("dl.props")


def taka(amount: Decimal) -> str:
    """How the back office writes an amount: ``৳ 1,234.56``, ``−৳ 366.67``."""
    return f"{'−' if amount < 0 else ''}৳ {abs(amount):,.2f}"


def amount_of(text: str) -> Decimal:
    """``"৳ 1,234.56"`` → ``Decimal("1234.56")``."""
    negative = text.strip().startswith("−")
    value = Decimal(re.sub(r"[^0-9.]", "", text))
    return -value if negative else value


def share(price: str, days: int, of_days: int) -> Decimal:
    """``price / days_in_month * days``, half-up to the paisa: the README's proration."""
    return (Decimal(price) * days / of_days).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def collected_this_month(page) -> Decimal:
    card = page.locator(".kpi").filter(has=page.get_by_text("Collected this month", exact=True))
    return amount_of(card.locator(".value").inner_text())


# -- 1. sign in ------------------------------------------------------------------------------

def test_a_wrong_password_is_refused_and_the_right_one_opens_the_dashboard(page, office):
    page.goto("/office/")
    expect(page).to_have_url(re.compile(r"/office/login/\?next=/office/$"))

    page.get_by_label("Username").fill(office["user"].username)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".errorlist")).to_contain_text("Please enter a correct username and password")
    expect(page.get_by_label("Password")).to_have_value("")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/office/$"))
    expect(page.get_by_role("heading", name=re.compile("^Dashboard"))).to_be_visible()
    expect(page.locator("header .who")).to_contain_text(office["user"].username)
    expect(page.get_by_text("Collected this month", exact=True)).to_be_visible()
    # The three charts are drawn by the locally served Chart.js.
    for chart in ("chart-payments", "chart-aging", "chart-status"):
        expect(page.locator(f'canvas[data-chart="{chart}"]')).to_have_attribute("data-drawn", "1")
    assert page.evaluate("Object.keys(Chart.instances).length") == 3


# -- 2. search ---------------------------------------------------------------------------------

def test_the_search_box_finds_a_subscriber_and_opens_their_page(page, office):
    sign_in(page, office)
    page.get_by_role("link", name="Subscribers", exact=True).click()
    expect(page.locator("table.data tbody tr")).to_have_count(4)

    page.get_by_label("Search").fill("rahima")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"[?&]q=rahima"))
    rows = page.locator("table.data tbody tr")
    expect(rows).to_have_count(1)
    expect(page.get_by_text(re.compile(r"\b1 match(es)? the filters\."))).to_be_visible()

    rows.get_by_role("link", name="Rahima Begum").click()
    rahima = office["Rahima Begum"]
    expect(page).to_have_url(re.compile(rf"/office/subscribers/{rahima.pk}/$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Rahima Begum")
    expect(profile(page)).to_contain_text(rahima.phone)
    expect(profile(page)).to_contain_text("home001")


# -- 3. change package -----------------------------------------------------------------------

def test_a_package_change_is_previewed_with_prorated_lines_then_confirmed(page, office):
    sub, basic, premium = office["sub"], office["basic"], office["premium"]
    # From 20 Nov: 11 of November's 30 days, already billed at the old price.
    credit = -share("1000.00", 11, 30)
    charge = share("1500.00", 11, 30)
    assert (credit, charge) == (Decimal("-366.67"), Decimal("550.00"))
    total = credit + charge

    sign_in(page, office)
    page.goto(f"/office/subscribers/{sub.pk}/")
    expect(profile(page)).to_contain_text(f"{basic.name} (৳ 1,000.00)")
    page.get_by_label("New package").select_option(label=f"{premium.name} (৳ 1,500.00)")
    page.get_by_label("From").fill("2026-11-20")
    page.get_by_role("button", name="Preview the charge").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(f"Change package: {basic.name} → {premium.name}")
    expect(page.get_by_text("Nothing has changed yet.")).to_be_visible()
    lines = page.locator("#preview-lines tbody tr")
    expect(lines).to_have_count(3)
    expect(lines.nth(0)).to_contain_text(basic.name)
    expect(lines.nth(0).locator("td.num")).to_have_text(taka(credit))
    expect(lines.nth(1)).to_contain_text(premium.name)
    expect(lines.nth(1).locator("td.num")).to_have_text(taka(charge))
    expect(lines.nth(2)).to_contain_text("Total")
    expect(lines.nth(2).locator("td.num")).to_have_text(taka(total))
    assert taka(total) == "৳ 183.33"

    page.get_by_role("button", name="Confirm the change").click()

    expect(page).to_have_url(re.compile(rf"/office/subscribers/{sub.pk}/$"))
    success = page.locator(".messages li.success")
    expect(success).to_have_text(re.compile(r"^Package changed; invoice (INV-\S+) issued\.$"))
    number = re.search(r"invoice (\S+) issued", success.inner_text()).group(1)
    invoice_row = page.locator("section", has=page.get_by_role("heading", name="Invoices")).locator("tr", has_text=number)
    expect(invoice_row.locator("td[data-label=Total]")).to_have_text(taka(total))
    expect(profile(page)).to_contain_text(f"{premium.name} (৳ 1,500.00)")
    expect(page.locator(".balance")).to_have_text(taka(Decimal("1000.00") + total))


# -- 4. record a payment ---------------------------------------------------------------------

def test_a_recorded_payment_lowers_the_balance_and_adds_to_collected_this_month(page, office):
    from ispbill.payments.services import record_payment

    sub, other = office["sub"], office["Karim Uddin"]
    # something already collected this month, so the dashboard's figure is not zero to start with
    record_payment(subscriber_id=other.pk, amount=Decimal("250.50"), method="cash", received_at=at(date(2026, 11, 10)))
    paid = Decimal("400.00")

    sign_in(page, office)
    before = collected_this_month(page)
    assert before == Decimal("250.50")

    page.goto(f"/office/subscribers/{sub.pk}/")
    expect(page.locator(".balance")).to_have_text(taka(Decimal("1000.00")))
    page.get_by_label("Amount (৳)").fill(str(paid))
    page.get_by_label("Method").select_option(label="Cash")
    page.get_by_label("Reference").fill("counter receipt 0042")
    page.get_by_role("button", name="Record payment").click()

    expect(page.locator(".messages li.success")).to_have_text(f"Payment of {taka(paid)} recorded.")
    expect(page.locator(".balance")).to_have_text(taka(Decimal("1000.00") - paid))
    payments = page.locator("section", has=page.get_by_role("heading", name="Payments"))
    expect(payments.locator("tr", has_text="counter receipt 0042").locator("td[data-label=Amount]")).to_have_text(taka(paid))

    page.get_by_role("link", name="Dashboard", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile("^Dashboard"))).to_be_visible()
    assert collected_this_month(page) == before + paid


# -- 5. spreadsheet import -------------------------------------------------------------------

HEADER = "Name,Mobile,Username,Package,Area\n"
GOOD_ROWS = ("Shirin Akter,01712345671,shirin01,Basic 10M,Mirpur\n", "Ruma Khatun,01812345673,ruma03,Premium 30M,Uttara\n")


def upload(page, name: str, text: str) -> None:
    """From the import page: upload a CSV, keep the guessed columns, run the dry run."""
    expect(page.get_by_role("heading", name="1. Upload a spreadsheet")).to_be_visible()
    page.get_by_label("File").set_input_files(files=[{"name": name, "mimeType": "text/csv", "buffer": text.encode()}])
    page.get_by_role("button", name="Upload and read").click()
    expect(page.locator(".messages li.success")).to_have_text(f"{name}: 3 rows read. Check which column holds what.")
    # the columns are guessed from the header
    for field, column in [("name", "Name"), ("phone", "Mobile"), ("pppoe_username", "Username"), ("package", "Package")]:
        expect(page.locator(f"#map-{field} option:checked")).to_have_text(column)
    page.get_by_role("button", name="Dry run").click()
    expect(page.get_by_role("heading", name="3. Dry run")).to_be_visible()


def test_a_spreadsheet_with_a_bad_row_is_caught_in_the_dry_run_then_imported_once_fixed(page, office):
    bad = HEADER + GOOD_ROWS[0] + "Jamal Hossain,12345,jamal02,Basic 10M,Mirpur\n" + GOOD_ROWS[1]
    fixed = bad.replace(",12345,", ",01912345672,")

    sign_in(page, office, office["support"])
    page.get_by_role("link", name="Import", exact=True).click()
    upload(page, "customers.csv", bad)

    expect(page.locator("#count-rows")).to_have_text("3")
    expect(page.locator("#count-ok")).to_have_text("2")
    expect(page.locator("#count-error")).to_have_text("1")
    jamal = page.locator("#import-rows tr[data-row='3']")
    expect(jamal).to_contain_text("Jamal Hossain")
    expect(jamal.locator(".row-errors li")).to_have_text("'12345' is not a Bangladeshi mobile number")
    expect(jamal.locator(".row-errors li")).to_have_attribute("data-code", "invalid_phone")
    expect(page.locator("#import-rows tr[data-status=error]")).to_have_count(1)
    expect(page.get_by_role("button", name="Import 2 valid rows")).to_be_visible()

    page.get_by_role("link", name="Upload a corrected file").click()
    upload(page, "customers-fixed.csv", fixed)

    expect(page.locator("#count-ok")).to_have_text("3")
    expect(page.locator("#count-error")).to_have_text("0")
    expect(page.locator("#import-rows tr[data-row='3'] .row-errors")).to_have_text("ok")
    page.get_by_role("button", name="Import 3 valid rows").click()

    expect(page.locator(".messages li.success")).to_have_text("3 subscribers imported; 0 rows not imported.")
    expect(page.locator("#created-count")).to_have_text("3")
    expect(page.locator("#import-created tbody tr")).to_have_count(3)

    page.get_by_role("link", name="Subscribers", exact=True).first.click()
    expect(page.locator("table.data tbody tr")).to_have_count(4 + 3)
    for name, username, package in [("Shirin Akter", "shirin01", "Basic 10M"), ("Jamal Hossain", "jamal02", "Basic 10M"),
                                    ("Ruma Khatun", "ruma03", "Premium 30M")]:
        row = page.locator("table.data tbody tr", has=page.get_by_role("link", name=name, exact=True))
        expect(row.locator("td[data-label=Username]")).to_have_text(username)
        expect(row.locator("td[data-label=Package]")).to_have_text(package)
    page.get_by_label("Search").fill("jamal")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.data tbody tr")).to_have_count(1)
    page.get_by_role("link", name="Jamal Hossain").click()
    expect(profile(page)).to_contain_text("+8801912345672")


def test_an_import_left_to_the_worker_shows_its_progress_until_it_is_done(page, office, monkeypatch):
    from ispbill.backoffice import imports
    from ispbill.core import clock
    from ispbill.worker import outbox

    # A file too big for the request: it imports one row, the worker the rest.
    monkeypatch.setattr(imports, "REQUEST_SECONDS", 0)
    monkeypatch.setattr(imports, "CHUNK_ROWS", 1)
    sign_in(page, office, office["support"])
    page.get_by_role("link", name="Import", exact=True).click()
    upload(page, "many.csv", HEADER + "".join(GOOD_ROWS) + "Jamal Hossain,01912345672,jamal02,Basic 10M,Mirpur\n")
    page.get_by_role("button", name="Import 3 valid rows").click()

    expect(page.locator(".messages li.info")).to_have_text(
        "1 of 3 rows imported so far; the rest are being imported in the background.")
    expect(page.get_by_role("heading", name="Importing", exact=True)).to_be_visible()
    expect(page.locator("#done-count")).to_have_text("1 of 3 rows done.")
    assert outbox.drain(now=clock.now()).done == 1  # what the worker does
    # the page reloads itself until the import is done
    expect(page.get_by_role("heading", name="Imported", exact=True)).to_be_visible()
    expect(page.locator("#created-count")).to_have_text("3")
    expect(page.locator("#import-created tbody tr")).to_have_count(3)


# -- 6. phone width ----------------------------------------------------------------------------

def fits_the_screen(page, what: str) -> None:
    seen = overflow(page)
    assert seen["scrollWidth"] <= seen["innerWidth"] == PHONE["width"], f"{what} is wider than a phone's screen: {seen}"


def test_the_dashboard_the_subscriber_list_and_a_subscriber_fit_a_phone_screen(browser, office):
    from ispbill.billing.services import change_package
    from ispbill.core import clock
    from ispbill.worker import outbox

    # some history on the subscriber's page: a package change staff made last week
    sub = office["sub"]
    change_package(subscriber_id=sub.pk, package_id=office["premium"].pk, effective_on=date(2026, 11, 18), preview=False,
                   today=date(2026, 11, 18), now=at(date(2026, 11, 18)), user=office["user"])
    page = new_page(browser, office, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        sign_in(page, office, office["support"])
        expect(page.get_by_text("Collected this month", exact=True)).to_be_visible()
        fits_the_screen(page, "the dashboard")

        subscribers = page.get_by_role("link", name="Subscribers", exact=True)
        expect(subscribers).to_be_in_viewport()
        subscribers.tap()
        expect(page.get_by_role("heading", name="Subscribers", level=1)).to_be_visible()
        fits_the_screen(page, "the subscriber list")

        # a row is a card on a phone: the name can be tapped
        name = page.get_by_role("link", name=sub.name, exact=True)
        name.scroll_into_view_if_needed()
        expect(name).to_be_in_viewport()
        name.tap()
        expect(page.get_by_role("heading", level=1)).to_contain_text(sub.name)
        fits_the_screen(page, "a subscriber's page")

        # an SMS reminder (Bangla text and a long unbroken payment link) still fits
        reminder = page.locator("form", has=page.get_by_role("button", name="Send reminder")).first
        reminder.locator("select[name=channel]").select_option(label="SMS only")
        reminder.get_by_role("button", name="Send reminder").tap()
        expect(page.locator(".messages li.success")).to_have_text("Reminder queued (sms).")
        assert outbox.drain(now=clock.now()).done >= 1  # what the worker does
        page.reload()
        messages = page.locator("section", has=page.get_by_role("heading", name="Messages"))
        expect(messages.locator("td[data-label=Text]").first).to_contain_text(sub.name)
        fits_the_screen(page, "a subscriber's page with a reminder")
    finally:
        page.context.close()
