"""Reading spreadsheets of subscribers and checking their rows (no database)."""

from __future__ import annotations

import io
from datetime import date, datetime

import pytest
from openpyxl import Workbook

from ispbill.subscribers.importing import (
    MAX_ROWS,
    ImportFileError,
    Lookups,
    check_rows,
    guess_mapping,
    normalise_header,
    parse_date,
    read_table,
    sniff_delimiter,
    xlsx_text,
)

HEADERS = ["Name", "Mobile", "PPPoE", "Package", "Area", "Email", "Join date", "Router"]
LOOKUPS = Lookups(packages={"basic 10m": 1, "premium 30m": 2}, routers={"core-1": 7}, taken_usernames={"taken"})


# -- reading -------------------------------------------------------------------------------

def test_csv_with_a_utf8_byte_order_mark():
    data = "\ufeffName,Phone\nRahim,01712345678\n".encode()
    table = read_table(data, "subs.csv")
    assert table.headers == ["Name", "Phone"]
    assert table.rows == [["Rahim", "01712345678"]]


def test_csv_without_a_byte_order_mark_and_bangla_text():
    data = "নাম,মোবাইল\nরহিম উদ্দিন,01712345678\n".encode()
    table = read_table(data, "subs.CSV")
    assert table.headers == ["নাম", "মোবাইল"]
    assert table.rows == [["রহিম উদ্দিন", "01712345678"]]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_as_excel_writes_unicode_text(encoding):
    data = "Name\tPhone\nকরিম\t01812345678\n".encode(encoding)
    table = read_table(data, "export.csv")
    assert table.headers == ["Name", "Phone"]
    assert table.rows == [["করিম", "01812345678"]]


@pytest.mark.parametrize(("text", "delimiter"), [
    ("Name;Phone;Area\nA;017;Mirpur\nB;018;Uttara\n", ";"),
    ("Name\tPhone\nA\t017\n", "\t"),
    ("Name,Phone\nA,017\n", ","),
    ('Name;Address\n"Rahim";"House 5, Road 2, Mirpur"\n', ";"),
    ("Name\nRahim\n", ","),
])
def test_delimiter_is_sniffed(text, delimiter):
    assert sniff_delimiter(text) == delimiter


def test_semicolon_file_keeps_commas_inside_cells():
    data = 'Name;Address;Phone\nRahim;"House 5, Road 2";01712345678\n'.encode()
    table = read_table(data, "a.csv")
    assert table.rows == [["Rahim", "House 5, Road 2", "01712345678"]]


def test_blank_rows_are_skipped_and_short_rows_padded_and_cells_trimmed():
    data = b"Name,Phone,Area\n\n , , \nRahim ,01712345678\n,,\n"
    table = read_table(data, "a.csv")
    assert table.rows == [["Rahim", "01712345678", ""]]


def test_a_blank_header_gets_a_name():
    table = read_table(b"Name,,Phone\nA,x,017\n", "a.csv")
    assert table.headers == ["Name", "Column 2", "Phone"]


@pytest.mark.parametrize(("data", "name", "says"), [
    (b"", "a.csv", "empty"),
    (b"Name,Phone\n", "a.csv", "no subscribers"),
    (b"Name,Phone\nA,1\n", "a.xls", ".csv and .xlsx"),
    ("Name\nR\xe9my\n".encode("latin-1"), "a.csv", "UTF-8"),
    (b"PK\x03\x04 not really a zip", "a.xlsx", "Excel workbook"),
    (b"Name,Phone\nA,1\n", "a.xlsx", "Excel workbook"),
])
def test_unreadable_files_are_refused_with_a_reason(data, name, says):
    with pytest.raises(ImportFileError, match=says):
        read_table(data, name)


def test_too_many_rows_are_refused():
    data = ("Name\n" + "x\n" * (MAX_ROWS + 1)).encode()
    with pytest.raises(ImportFileError, match="more than"):
        read_table(data, "big.csv")


def test_xlsx_first_sheet_numbers_dates_and_bangla():
    wb = Workbook()
    ws = wb.active
    ws.append(["নাম", "মোবাইল", "ইউজার", "Join date", "Amount"])
    ws.append(["রহিম", 1712345678, 1001, datetime(2026, 11, 5), 12.5])
    ws.append(["Karim", 8801812345678, "karim", date(2026, 1, 2), None])
    ws.append([None, None, None, None, None])
    other = wb.create_sheet("Other")
    other.append(["ignored"])
    out = io.BytesIO()
    wb.save(out)
    table = read_table(out.getvalue(), "subs.xlsx")
    assert table.headers == ["নাম", "মোবাইল", "ইউজার", "Join date", "Amount"]
    assert table.rows == [
        ["রহিম", "1712345678", "1001", "2026-11-05", "12.5"],
        ["Karim", "8801812345678", "karim", "2026-01-02", ""],
    ]


def test_xlsx_gives_formula_results_not_formulas():
    wb = Workbook()
    ws = wb.active
    ws.append(["Name", "Phone"])
    ws.append(["=CONCAT(\"a\",\"b\")", "01712345678"])
    out = io.BytesIO()
    wb.save(out)
    # openpyxl stores no cached result, so the cell reads as empty rather than as the formula.
    table = read_table(out.getvalue(), "f.xlsx")
    assert table.rows == [["", "01712345678"]]


@pytest.mark.parametrize(("value", "text"), [
    (1712345678, "1712345678"), (1712345678.0, "1712345678"), (8801712345678.0, "8801712345678"),
    (2.5, "2.5"), (datetime(2026, 11, 5, 14, 30), "2026-11-05 14:30:00"), (date(2026, 1, 2), "2026-01-02"),
    (None, ""), (True, "TRUE"), ("text", "text"),
])
def test_xlsx_cell_values_as_text(value, text):
    assert xlsx_text(value) == text


# -- guessing the columns -------------------------------------------------------------------

def test_english_headers_are_recognised():
    mapping = guess_mapping(HEADERS)
    assert mapping == {
        "name": 0, "phone": 1, "pppoe_username": 2, "package": 3, "area": 4, "address": None, "email": 5,
        "activated_on": 6, "router": 7,
    }


def test_bangla_headers_are_recognised():
    headers = ["গ্রাহকের নাম", "মোবাইল নম্বর", "ইউজার আইডি", "প্যাকেজ", "এলাকা", "ঠিকানা", "সংযোগের তারিখ", "রাউটার", "ইমেইল"]
    assert guess_mapping(headers) == {
        "name": 0, "phone": 1, "pppoe_username": 2, "package": 3, "area": 4, "address": 5, "activated_on": 6,
        "router": 7, "email": 8,
    }


def test_headers_with_extra_words_and_punctuation():
    headers = ["SL#", "Customer User Name", "Customer Name", "Mobile_No.", "Internet Plan (BDT)", "E-mail"]
    mapping = guess_mapping(headers)
    assert mapping["pppoe_username"] == 1
    assert mapping["name"] == 2
    assert mapping["phone"] == 3
    assert mapping["package"] == 4
    assert mapping["email"] == 5
    assert mapping["area"] is None


def test_normalise_header_keeps_bangla_vowel_signs():
    assert normalise_header(" Mobile_No. ") == "mobile no"
    assert normalise_header("নাম") == "নাম"


# -- checking rows -------------------------------------------------------------------------

def check(rows, *, headers=HEADERS, lookups=LOOKUPS, **kwargs):
    return check_rows(rows, mapping=guess_mapping(headers), lookups=lookups, **kwargs)


GOOD = ["Rahim", "01712345678", "rahim1", "basic 10M", "Mirpur", "rahim@example.com", "05/11/2026", "CORE-1"]


def test_a_good_row_becomes_create_subscriber_arguments():
    [row] = check([GOOD])
    assert row.ok and row.number == 2
    assert row.data == {
        "name": "Rahim", "phone": "+8801712345678", "pppoe_username": "rahim1", "package_id": 1, "area": "Mirpur",
        "address": "", "email": "rahim@example.com", "activated_on": date(2026, 11, 5), "router_id": 7,
    }
    assert row.values["phone"] == "+8801712345678"
    assert row.values["activated_on"] == "2026-11-05"


def test_a_phone_stored_as_a_number_gets_its_leading_zero_back():
    [row] = check([["Rahim", "1712345678", "rahim1", "Basic 10M", "", "", "", ""]])
    assert row.ok
    assert row.data["phone"] == "+8801712345678"


def test_bangla_digits_in_phone_and_date():
    [row] = check([["রহিম", "০১৭১২৩৪৫৬৭৮", "rahim1", "Basic 10M", "", "", "২৫/১১/২০২৬", ""]])
    assert row.ok, row.errors
    assert row.data["phone"] == "+8801712345678"
    assert row.data["activated_on"] == date(2026, 11, 25)


@pytest.mark.parametrize(("index", "value", "field", "code"), [
    (0, "", "name", "missing"),
    (1, "", "phone", "missing"),
    (2, "", "pppoe_username", "missing"),
    (3, "", "package", "missing"),
    (1, "12345", "phone", "invalid_phone"),
    (1, "01212345678", "phone", "invalid_phone"),
    (2, "has space", "pppoe_username", "invalid_username"),
    (2, "x" * 65, "pppoe_username", "invalid_username"),
    (2, "taken", "pppoe_username", "duplicate_username"),
    (3, "Gold 100M", "package", "unknown_package"),
    (5, "not-an-email", "email", "invalid_email"),
    (6, "31/02/2026", "activated_on", "invalid_date"),
    (6, "next tuesday", "activated_on", "invalid_date"),
    (7, "edge-9", "router", "unknown_router"),
    (0, "x" * 201, "name", "too_long"),
])
def test_each_kind_of_error(index, value, field, code):
    row_in = list(GOOD)
    row_in[index] = value
    [row] = check([row_in])
    assert [(e.field, e.code) for e in row.errors] == [(field, code)]
    assert not row.ok
    assert row.errors[0].message


def test_several_errors_on_one_row_are_all_reported():
    [row] = check([["", "12", "", "Nope", "", "bad", "soon", ""]])
    assert {e.code for e in row.errors} == {"missing", "invalid_phone", "unknown_package", "invalid_email", "invalid_date"}


def test_defaults_fill_rows_without_package_or_router():
    row_in = list(GOOD)
    row_in[3] = row_in[7] = ""
    [row] = check([row_in], default_package=2, default_router=9)
    assert row.ok
    assert row.data["package_id"] == 2 and row.data["router_id"] == 9


def test_a_package_named_in_the_row_wins_over_the_default():
    [row] = check([GOOD], default_package=2)
    assert row.data["package_id"] == 1


def test_a_username_twice_in_the_file_refuses_both_rows():
    second = list(GOOD)
    second[1] = "01812345678"
    third = list(GOOD)
    third[2] = "other"
    rows = check([GOOD, second, third])
    assert [r.ok for r in rows] == [False, False, True]
    assert [e.code for e in rows[0].errors] == ["duplicate_in_file"]
    assert "row 3" in rows[0].errors[0].message and "row 2" in rows[1].errors[0].message


def test_taken_usernames_are_not_checked_when_not_given():
    row_in = list(GOOD)
    row_in[2] = "taken"
    [row] = check([row_in], lookups=Lookups(packages=LOOKUPS.packages, routers=LOOKUPS.routers, taken_usernames=None))
    assert row.ok


def test_unmapped_optional_fields_are_left_out():
    [row] = check([["Rahim", "01712345678", "rahim1"]], headers=["Name", "Phone", "Username"], default_package=1)
    assert row.ok
    assert "activated_on" not in row.data and "router_id" not in row.data and "email" not in row.data


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-05", date(2026, 11, 5)), ("2026-11-05 14:30:00", date(2026, 11, 5)), ("05/11/2026", date(2026, 11, 5)),
    ("5-11-2026", date(2026, 11, 5)), ("5.11.26", date(2026, 11, 5)), ("05-Nov-2026", date(2026, 11, 5)),
    ("5 November 2026", date(2026, 11, 5)), ("১/১/২০২৬", date(2026, 1, 1)),
])
def test_dates_day_first(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["13/13/2026", "2026/11/05x", "Nov 5", "", "5 Foo 2026"])
def test_not_dates(text):
    with pytest.raises(ValueError):
        parse_date(text)
