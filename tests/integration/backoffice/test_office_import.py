"""Spreadsheet import through the back office: upload, columns, dry run, confirm."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta

import pytest
from django.test import Client
from openpyxl import Workbook

from ispbill.audit.models import AuditEvent
from ispbill.backoffice.models import ImportBatch, ImportStatus
from ispbill.network.models import Router
from ispbill.subscribers.models import Subscriber
from ispbill.subscribers.services import create_subscriber

from .office_support import NO_ROLE, ROLES, make_staff, row_counts

pytestmark = pytest.mark.django_db

IMPORTERS = {"admin", "support", "superuser"}


def csv_file(text: str, *, bom: bool = False, encoding: str = "utf-8") -> bytes:
    return (("\ufeff" if bom else "") + text).encode(encoding)


def upload(client, data: bytes, name: str = "subscribers.csv"):
    return client.post("/office/import/upload", {"file": _named(data, name)})


def _named(data: bytes, name: str):
    f = io.BytesIO(data)
    f.name = name
    return f


def batch_id(response) -> int:
    assert response.status_code == 303, response
    match = re.fullmatch(r"/office/import/(\d+)/map", response["Location"])
    assert match, response["Location"]
    return int(match[1])


def mapping_from_page(client, batch: int) -> dict[str, str]:
    """The form as the map page pre-fills it: every select's selected option."""
    html = client.get(f"/office/import/{batch}/map").content.decode()
    form = {}
    for name, body in re.findall(r'<select name="([a-z_]+)" id="[a-z\-_]+">(.*?)</select>', html, re.S):
        selected = re.search(r'<option value="([^"]*)" selected>', body)
        form[name] = selected[1] if selected else ""
    return form


def dry_run(client, batch: int, **changes):
    form = mapping_from_page(client, batch)
    form.update(changes)
    response = client.post(f"/office/import/{batch}/map", form)
    assert response.status_code == 303
    return response


def saved_mapping(batch: int) -> dict[str, str]:
    """The mapping form as the batch holds it now."""
    return {f"map_{k}": "" if v is None else str(v) for k, v in ImportBatch.objects.get(pk=batch).mapping.items()}


def messages_of(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


GOOD_CSV = (
    "Name,Mobile,PPPoE,Package,Area,Email,Join date\n"
    "Rahim Uddin,01712345678,rahim1,basic 10m,Mirpur,rahim1@example.com,25/11/2026\n"
    "Karim,01812345678,karim1,Premium 30M,Uttara,,\n"
    "Bad Phone,12345,bad1,Basic 10M,,,\n"
)


# -- the happy path -----------------------------------------------------------------------

def test_upload_of_a_csv_with_a_byte_order_mark_guesses_the_columns(world, client_for):
    client = client_for("support")
    response = upload(client, csv_file(GOOD_CSV, bom=True))
    batch = batch_id(response)
    form = mapping_from_page(client, batch)
    assert form == {
        "map_name": "0", "map_phone": "1", "map_pppoe_username": "2", "map_package": "3", "map_area": "4",
        "map_address": "", "map_email": "5", "map_activated_on": "6", "map_router": "",
        "default_package": "", "default_router": "",
    }
    page = client.get(f"/office/import/{batch}/map").content.decode()
    for marker in ('id="map-name"', 'id="map-phone"', 'id="default-package"', 'id="default-router"', 'id="dry-run-button"'):
        assert marker in page
    assert ImportBatch.objects.get(pk=batch).headers[0] == "Name"  # the mark is not part of the header


def test_dry_run_writes_nothing_and_counts_ok_and_error_rows(world, client_for):
    client = client_for("admin")
    before, audit_before = row_counts(), AuditEvent.objects.count()
    batch = batch_id(upload(client, csv_file(GOOD_CSV)))
    response = dry_run(client, batch)
    assert response["Location"] == f"/office/import/{batch}/preview"
    page = client.get(response["Location"]).content.decode()
    assert row_counts() == before
    assert AuditEvent.objects.count() == audit_before
    assert re.search(r'id="count-ok">2<', page) and re.search(r'id="count-error">1<', page)
    assert 'data-row="2" data-status="ok"' in page and 'data-row="4" data-status="error"' in page
    assert 'data-errors-for="4"' in page and 'data-code="invalid_phone"' in page
    assert 'id="confirm-button"' in page and "Import 2 valid rows" in page
    only_errors = client.get(response["Location"], {"only": "errors"}).content.decode()
    assert 'data-row="4"' in only_errors and 'data-row="2"' not in only_errors


def test_confirm_creates_exactly_the_valid_rows_and_records_one_event(world, client_for, fixed_clock):
    client = client_for("support")
    existing = set(Subscriber.objects.values_list("pk", flat=True))
    batch = batch_id(upload(client, csv_file(GOOD_CSV)))
    dry_run(client, batch)
    response = client.post(f"/office/import/{batch}/confirm")
    assert response.status_code == 303 and response["Location"] == f"/office/import/{batch}/result"
    created = Subscriber.objects.exclude(pk__in=existing).order_by("pppoe_username")
    assert [(s.pppoe_username, s.name, s.phone, s.package.name, s.area, s.email) for s in created] == [
        ("karim1", "Karim", "+8801812345678", "Premium 30M", "Uttara", ""),
        ("rahim1", "Rahim Uddin", "+8801712345678", "Basic 10M", "Mirpur", "rahim1@example.com"),
    ]
    rahim = created.get(pppoe_username="rahim1")
    assert rahim.activated_on == date(2026, 11, 25) and rahim.billed_through is None
    assert created.get(pppoe_username="karim1").activated_on == date(2026, 11, 25)  # no date: the import day

    batch_row = ImportBatch.objects.get(pk=batch)
    assert batch_row.status == ImportStatus.CONFIRMED
    assert (batch_row.created_count, batch_row.failed_count) == (2, 1)
    assert batch_row.rows == []
    [event] = AuditEvent.objects.filter(action="import.confirm")
    assert event.after == {"file": "subscribers.csv", "rows": 3, "created": 2, "failed": 1}
    assert event.target_type == "importbatch" and event.target_id == batch
    assert event.actor_name == "support-user"
    assert set(AuditEvent.objects.filter(action="subscriber.create", target_id__in=[s.pk for s in created])
               .values_list("actor_name", flat=True)) == {"support-user"}

    page = client.get(response["Location"]).content.decode()
    assert re.search(r'id="created-count">2<', page) and re.search(r'id="failed-count">1<', page)
    assert 'data-row="4" data-status="failed"' in page and 'data-code="invalid_phone"' in page
    assert f'href="/office/subscribers/{rahim.pk}/"' in page


def test_a_second_confirm_is_refused(world, client_for):
    client = client_for("admin")
    batch = batch_id(upload(client, csv_file(GOOD_CSV)))
    dry_run(client, batch)
    client.post(f"/office/import/{batch}/confirm")
    before, audit_before = row_counts(), AuditEvent.objects.count()
    again = client.post(f"/office/import/{batch}/confirm")
    assert again.status_code == 303 and again["Location"] == f"/office/import/{batch}/result"
    assert "This file has already been imported." in messages_of(again)
    assert row_counts() == before and AuditEvent.objects.count() == audit_before
    # The columns and dry-run pages of an imported file lead to its result.
    assert client.get(f"/office/import/{batch}/map")["Location"] == f"/office/import/{batch}/result"
    assert client.get(f"/office/import/{batch}/preview")["Location"] == f"/office/import/{batch}/result"
    assert client.post(f"/office/import/{batch}/map", {"map_name": "0"})["Location"] == f"/office/import/{batch}/result"


def test_a_row_refused_at_confirm_time_is_reported_and_the_others_go_in(world, client_for):
    client = client_for("admin")
    batch = batch_id(upload(client, csv_file(GOOD_CSV)))
    dry_run(client, batch)
    assert 'id="count-ok">2<' in client.get(f"/office/import/{batch}/preview").content.decode()
    # Someone else takes one of the usernames between the dry run and the confirmation.
    create_subscriber(today=date(2026, 11, 25), name="Early", phone="01912345678", pppoe_username="karim1",
                      package_id=world["basic"].pk)
    response = client.post(f"/office/import/{batch}/confirm")
    assert response.status_code == 303
    batch_row = ImportBatch.objects.get(pk=batch)
    assert (batch_row.created_count, batch_row.failed_count) == (1, 2)
    karim = next(r for r in batch_row.results if r["number"] == 3)
    assert karim["status"] == "failed" and karim["errors"][0]["code"] == "duplicate_username"
    assert Subscriber.objects.filter(pppoe_username="rahim1").exists()
    assert Subscriber.objects.get(pppoe_username="karim1").name == "Early"


def test_semicolon_csv_with_bangla_headers_and_names(world, client_for):
    text = (
        "নাম;মোবাইল;ইউজার;প্যাকেজ;এলাকা;ঠিকানা\n"
        "রহিম উদ্দিন;০১৭১২৩৪৫৬৭৮;rahim-bn;BASIC 10M;মিরপুর;বাড়ি ৫, রোড ২\n"
    )
    client = client_for("admin")
    batch = batch_id(upload(client, csv_file(text), "গ্রাহক.csv"))
    dry_run(client, batch)
    client.post(f"/office/import/{batch}/confirm")
    sub = Subscriber.objects.get(pppoe_username="rahim-bn")
    assert (sub.name, sub.phone, sub.area, sub.address, sub.package_id) == (
        "রহিম উদ্দিন", "+8801712345678", "মিরপুর", "বাড়ি ৫, রোড ২", world["basic"].pk,
    )


def test_utf16_tab_separated_as_excel_saves_unicode_text(world, client_for):
    text = "Name\tPhone\tUsername\nকরিম\t01812345678\tkarim-u16\n"
    client = client_for("admin")
    batch = batch_id(upload(client, csv_file(text, encoding="utf-16"), "unicode.csv"))
    dry_run(client, batch, default_package=str(world["premium"].pk))
    client.post(f"/office/import/{batch}/confirm")
    sub = Subscriber.objects.get(pppoe_username="karim-u16")
    assert sub.name == "করিম" and sub.package_id == world["premium"].pk


def test_xlsx_with_a_phone_stored_as_a_number_and_a_date_cell(world, client_for):
    router = Router.objects.create(name="Core-1", host="10.0.0.1")
    wb = Workbook()
    ws = wb.active
    ws.append(["Customer Name", "Mobile No", "User ID", "Package", "Start date", "Router"])
    ws.append(["Rahim", 1712345678, 1001, "Premium 30M", date(2026, 12, 1), "core-1"])
    ws.append(["Karim", 8801812345678, "karim-x", None, date(2024, 1, 15), None])
    out = io.BytesIO()
    wb.save(out)
    client = client_for("support")
    batch = batch_id(upload(client, out.getvalue(), "subscribers.xlsx"))
    dry_run(client, batch, default_package=str(world["basic"].pk), default_router=str(router.pk))
    preview = client.get(f"/office/import/{batch}/preview").content.decode()
    assert "+8801712345678" in preview and 'id="count-ok">2<' in preview
    client.post(f"/office/import/{batch}/confirm")
    rahim = Subscriber.objects.get(pppoe_username="1001")
    assert rahim.phone == "+8801712345678" and rahim.package_id == world["premium"].pk and rahim.router_id == router.pk
    assert rahim.activated_on == date(2026, 12, 1) and rahim.billed_through is None
    karim = Subscriber.objects.get(pppoe_username="karim-x")
    assert karim.phone == "+8801812345678" and karim.package_id == world["basic"].pk and karim.router_id == router.pk
    # An old join date is kept, but billing starts on the import day.
    assert karim.activated_on == date(2024, 1, 15) and karim.billed_through == date(2026, 11, 24)


# -- what the dry run finds ------------------------------------------------------------------

def test_every_kind_of_row_error_is_shown(world, client_for):
    Router.objects.create(name="core-1", host="10.0.0.1")
    text = (
        "Name,Phone,Username,Package,Email,Start date,Router\n"
        ",01712345678,a1,Basic 10M,,,\n"                       # 2 name missing
        "A,,a2,Basic 10M,,,\n"                                 # 3 phone missing
        "A,01712345678,,Basic 10M,,,\n"                        # 4 username missing
        "A,01712345678,a5,,,,\n"                               # 5 package missing, no default
        "A,0171234,a6,Basic 10M,,,\n"                          # 6 bad phone
        "A,01712345678,a 7,Basic 10M,,,\n"                     # 7 bad username
        "A,01712345678,a8,Gold 1G,,,\n"                        # 8 unknown package
        "A,01712345678,a9,Basic 10M,not-mail,,\n"              # 9 bad email
        "A,01712345678,a10,Basic 10M,,32/01/2026,\n"           # 10 bad date
        "A,01712345678,a11,Basic 10M,,,edge-9\n"               # 11 unknown router
        f"A,01712345678,{world['sub'].pppoe_username},Basic 10M,,,\n"  # 12 taken in the database
        "A,01712345678,twin,Basic 10M,,,\n"                    # 13 twice in the file
        "B,01812345678,twin,Basic 10M,,,\n"                    # 14
        "Fine,01912345678,fine,basic 10m,,2026-11-01,CORE-1\n"  # 15 ok
    )
    client = client_for("admin")
    batch = batch_id(upload(client, csv_file(text)))
    dry_run(client, batch)
    page = client.get(f"/office/import/{batch}/preview").content.decode()
    expected = {
        2: "missing", 3: "missing", 4: "missing", 5: "missing", 6: "invalid_phone", 7: "invalid_username",
        8: "unknown_package", 9: "invalid_email", 10: "invalid_date", 11: "unknown_router", 12: "duplicate_username",
        13: "duplicate_in_file", 14: "duplicate_in_file",
    }
    for number, code in expected.items():
        cell = re.search(rf'data-errors-for="{number}">(.*?)</td>', page, re.S)[1]
        assert f'data-code="{code}"' in cell, (number, cell)
    assert 'data-row="15" data-status="ok"' in page
    assert 'id="count-ok">1<' in page and 'id="count-error">13<' in page


def test_markup_in_the_file_is_escaped_on_every_page(world, client_for):
    xss = '<script>alert("x")</script>'
    quoted = '"' + xss.replace('"', '""') + '"'
    text = f'Name,Phone,Username,Package,{quoted}\n{quoted},01712345678,xss1,Basic 10M,v\n"<img src=x onerror=alert(1)>",1,xss2,Basic 10M,v\n'
    client = client_for("admin")
    batch = batch_id(upload(client, csv_file(text), "<b>evil</b>.csv"))
    dry_run(client, batch)
    pages = [client.get(f"/office/import/{batch}/map"), client.get(f"/office/import/{batch}/preview")]
    client.post(f"/office/import/{batch}/confirm")
    pages += [client.get(f"/office/import/{batch}/result"), client.get("/office/import/")]
    for response in pages:
        html = response.content.decode()
        assert response.status_code == 200
        assert xss not in html and "<img src=x" not in html and "<b>evil</b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in pages[1].content.decode()
    assert Subscriber.objects.get(pppoe_username="xss1").name == xss


# -- refusals ------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "name", "says"), [
    (b"Name,Phone\nA,1\n", "subscribers.xls", "Only .csv and .xlsx files can be imported."),
    (b"Name,Phone\nA,1\n", "subscribers.txt", "Only .csv and .xlsx files can be imported."),
    (b"", "empty.csv", "The file is empty."),
    (b"not a workbook", "fake.xlsx", "The file is not an Excel workbook (.xlsx) that can be read."),
    ("Name\nR\xe9my\n".encode("latin-1"), "latin.csv", "The file is not UTF-8 or UTF-16 text"),
])
def test_unreadable_uploads_are_refused_with_a_reason(world, client_for, data, name, says):
    client = client_for("admin")
    response = upload(client, data, name)
    assert response.status_code == 303 and response["Location"] == "/office/import/"
    assert any(says in m for m in messages_of(response)), messages_of(response)
    assert ImportBatch.objects.count() == 0


def test_a_file_over_the_size_limit_is_refused(world, client_for):
    client = client_for("admin")
    data = b"Name,Phone\n" + b"x" * (5 * 1024 * 1024)
    response = upload(client, data, "big.csv")
    assert response["Location"] == "/office/import/"
    assert "The file is larger than 5 MB." in messages_of(response)
    assert ImportBatch.objects.count() == 0


def test_an_upload_without_a_file_is_refused(world, client_for):
    response = client_for("admin").post("/office/import/upload", {})
    assert response.status_code == 303
    assert "Choose a .csv or .xlsx file to upload." in messages_of(response)


def test_the_mapping_needs_every_required_field_and_one_field_per_column(world, client_for):
    client = client_for("admin")
    batch = batch_id(upload(client, csv_file("Full name,Phone,Username\nA,01712345678,a1\n")))
    form = mapping_from_page(client, batch)
    assert form["map_package"] == ""
    response = client.post(f"/office/import/{batch}/map", form)
    assert response["Location"] == f"/office/import/{batch}/map"
    assert "Choose a column for: Package." in messages_of(response)
    response = client.post(f"/office/import/{batch}/map", {**form, "map_area": "0", "default_package": str(world["basic"].pk)})
    assert "Each column can be chosen for one field only." in messages_of(response)
    assert ImportBatch.objects.get(pk=batch).status == ImportStatus.UPLOADED
    # Before the columns are chosen, the dry run and the confirmation lead back to them.
    assert client.get(f"/office/import/{batch}/preview")["Location"] == f"/office/import/{batch}/map"
    refused = client.post(f"/office/import/{batch}/confirm")
    assert "Choose the columns and run the dry run first." in messages_of(refused)
    assert Subscriber.objects.count() == 1


def test_a_file_with_no_valid_row_cannot_be_confirmed(world, client_for):
    client = client_for("admin")
    batch = batch_id(upload(client, csv_file("Name,Phone,Username,Package\nA,123,a1,Basic 10M\n")))
    dry_run(client, batch)
    page = client.get(f"/office/import/{batch}/preview").content.decode()
    assert 'id="nothing-valid"' in page and 'id="confirm-button"' not in page
    response = client.post(f"/office/import/{batch}/confirm")
    assert "No row is valid: nothing to import." in messages_of(response)
    assert ImportBatch.objects.get(pk=batch).status == ImportStatus.MAPPED


def test_unconfirmed_uploads_expire_and_are_purged(world, client_for, fixed_clock):
    client = client_for("admin")
    old = batch_id(upload(client, csv_file(GOOD_CSV)))
    dry_run(client, old)
    done = batch_id(upload(client, csv_file(GOOD_CSV.replace("rahim1", "rahim2").replace("karim1", "karim2"))))
    dry_run(client, done)
    client.post(f"/office/import/{done}/confirm")
    fixed_clock.advance(timedelta(hours=25))
    for path in (f"/office/import/{old}/map", f"/office/import/{old}/preview"):
        response = client.get(path)
        assert response.status_code == 303 and response["Location"] == "/office/import/"
        assert "This upload has expired; upload the file again." in messages_of(response)
    response = client.post(f"/office/import/{old}/confirm")
    assert response["Location"] == "/office/import/"
    assert not Subscriber.objects.filter(pppoe_username="rahim1").exists()
    # The next upload deletes the expired one; the confirmed one stays as history.
    upload(client, csv_file(GOOD_CSV))
    assert not ImportBatch.objects.filter(pk=old).exists()
    assert client.get(f"/office/import/{done}/result").status_code == 200
    assert "subscribers.csv" in client.get("/office/import/").content.decode()


def test_an_unknown_batch_is_not_found(world, client_for):
    client = client_for("admin")
    for path in ("/office/import/999/map", "/office/import/999/preview", "/office/import/999/result"):
        assert client.get(path).status_code == 404
    assert client.post("/office/import/999/confirm").status_code == 404


# -- who may -------------------------------------------------------------------------------

@pytest.fixture
def confirmed_and_mapped(world):
    """A confirmed batch and a mapped one, uploaded by an admin."""
    admin = Client()
    admin.force_login(make_staff("superuser"))
    done = batch_id(upload(admin, csv_file(GOOD_CSV)))
    dry_run(admin, done)
    admin.post(f"/office/import/{done}/confirm")
    mapped = batch_id(upload(admin, csv_file(GOOD_CSV.replace("rahim1", "r9").replace("karim1", "k9"))))
    dry_run(admin, mapped)
    return {"done": done, "mapped": mapped}


@pytest.mark.parametrize("role", [*ROLES, NO_ROLE])
def test_import_pages_by_role(confirmed_and_mapped, client_for, role):
    client = client_for(role)
    done, mapped = confirmed_and_mapped["done"], confirmed_and_mapped["mapped"]
    paths = ["/office/import/", f"/office/import/{mapped}/map", f"/office/import/{mapped}/preview",
             f"/office/import/{done}/result"]
    for path in paths:
        response = client.get(path)
        assert response.status_code == (200 if role in IMPORTERS else 403), path
    nav = client.get("/office/subscribers/").content.decode() if role != NO_ROLE else ""
    assert ('id="nav-import"' in nav) == (role in IMPORTERS)


@pytest.mark.parametrize("role", [*ROLES, NO_ROLE])
def test_import_actions_by_role(confirmed_and_mapped, client_for, role):
    client = client_for(role)
    mapped = confirmed_and_mapped["mapped"]
    before, batches = row_counts(), ImportBatch.objects.count()
    responses = [
        upload(client, csv_file(GOOD_CSV)),
        client.post(f"/office/import/{mapped}/map", saved_mapping(mapped)),
        client.post(f"/office/import/{mapped}/confirm"),
    ]
    if role in IMPORTERS:
        assert all(r.status_code == 303 for r in responses)
        assert ImportBatch.objects.count() == batches + 1
        assert row_counts()["Subscriber"] == before["Subscriber"] + 2
    else:
        assert [r.status_code for r in responses] == [403, 403, 403]
        assert ImportBatch.objects.count() == batches and row_counts() == before


def test_import_pages_send_anonymous_visitors_to_the_login_page(confirmed_and_mapped):
    mapped = confirmed_and_mapped["mapped"]
    for path in ("/office/import/", f"/office/import/{mapped}/map", f"/office/import/{mapped}/preview"):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/office/login/?next=/office/import/")
    response = Client().post(f"/office/import/{mapped}/confirm")
    assert response.status_code == 302
    assert ImportBatch.objects.get(pk=mapped).status == ImportStatus.MAPPED


def test_import_actions_are_post_only(confirmed_and_mapped, client_for):
    client = client_for("admin")
    assert client.get("/office/import/upload").status_code == 405
    assert client.get(f"/office/import/{confirmed_and_mapped['mapped']}/confirm").status_code == 405
    assert client.post("/office/import/").status_code == 405


def test_import_posts_without_a_csrf_token_are_refused(confirmed_and_mapped):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_staff("admin"))
    mapped = confirmed_and_mapped["mapped"]
    before, batches = row_counts(), ImportBatch.objects.count()
    assert upload(client, csv_file(GOOD_CSV)).status_code == 403
    assert client.post(f"/office/import/{mapped}/map", {"map_name": "1"}).status_code == 403
    assert client.post(f"/office/import/{mapped}/confirm").status_code == 403
    assert row_counts() == before and ImportBatch.objects.count() == batches
    assert ImportBatch.objects.get(pk=mapped).mapping["name"] == 0


def test_import_forms_carry_a_csrf_token(confirmed_and_mapped, client_for):
    client = client_for("admin")
    mapped = confirmed_and_mapped["mapped"]
    for path in ("/office/import/", f"/office/import/{mapped}/map", f"/office/import/{mapped}/preview"):
        page = client.get(path).content.decode()
        forms = page.count('method="post"')
        assert forms >= 2, path  # its own form and signing out
        assert forms == page.count('name="csrfmiddlewaretoken"'), path
