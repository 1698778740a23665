"""Subscribers from a spreadsheet: read a CSV or XLSX file into rows of text, guess which
column holds which field, and check every row without writing anything.

Nothing here touches the database: what the checks need to know about it (packages and
routers by name, usernames already taken) comes in as a :class:`Lookups`.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ispbill.core.phone import PhoneError, normalize_bd_mobile

MAX_ROWS = 5000
MAX_COLUMNS = 100
MAX_CELL = 1000
#: A workbook whose parts unpack to more than this is refused before it is read.
MAX_UNPACKED_BYTES = 100 * 1024 * 1024
EXTENSIONS = (".csv", ".xlsx")


class ImportFileError(ValueError):
    """The file cannot be read as a table; the message says what to do about it."""


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]  # each padded to len(headers)


# -- reading -------------------------------------------------------------------------------

def read_table(data: bytes, filename: str) -> Table:
    """The first sheet (XLSX) or the whole file (CSV) as text cells; the first non-blank
    row is the header. Raises :class:`ImportFileError`."""
    name = filename.lower()
    if name.endswith(".xlsx"):
        raw = _read_xlsx(data)
    elif name.endswith(".csv"):
        raw = _read_csv(data)
    else:
        raise ImportFileError(_("Only .csv and .xlsx files can be imported."))
    return _tabulate(raw)


def _tabulate(raw) -> Table:
    headers: list[str] | None = None
    rows: list[list[str]] = []
    for cells in raw:
        cells = [c.strip()[:MAX_CELL] for c in cells]
        while cells and not cells[-1]:
            cells.pop()
        if not cells:
            continue
        if headers is None:
            if len(cells) > MAX_COLUMNS:
                raise ImportFileError(_("The file has more than %(n)d columns.") % {"n": MAX_COLUMNS})
            headers = [c or _("Column %(n)d") % {"n": i + 1} for i, c in enumerate(cells)]
            continue
        if len(rows) >= MAX_ROWS:
            raise ImportFileError(
                _("The file has more than %(n)d rows; split it into smaller files.") % {"n": MAX_ROWS}
            )
        cells = cells[: len(headers)]
        rows.append(cells + [""] * (len(headers) - len(cells)))
    if headers is None:
        raise ImportFileError(_("The file is empty."))
    if not rows:
        raise ImportFileError(_("The file has a header row but no subscribers under it."))
    return Table(headers=headers, rows=rows)


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        encodings = ["utf-8-sig"]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encodings = ["utf-16"]  # Excel's "Unicode text"
    elif len(data) >= 4 and data[1:4:2] == b"\x00\x00" and data[0:1] != b"\x00":
        encodings = ["utf-16-le"]
    elif len(data) >= 4 and data[0:3:2] == b"\x00\x00" and data[1:2] != b"\x00":
        encodings = ["utf-16-be"]
    else:
        encodings = ["utf-8"]
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass
    raise ImportFileError(
        _("The file is not UTF-8 or UTF-16 text. In Excel, save it as “CSV UTF-8” or “Unicode text”, or upload the .xlsx.")
    )


def sniff_delimiter(text: str) -> str:
    """Comma, semicolon or tab: the one that splits the first lines into the most columns,
    the same number on every line (comma when nothing says otherwise)."""
    sample = "\n".join(text.splitlines()[:20])
    best, best_score = ",", (False, 1)
    for delimiter in (",", ";", "\t"):
        try:
            widths = [len(r) for r in csv.reader(io.StringIO(sample), delimiter=delimiter) if any(c.strip() for c in r)]
        except csv.Error:
            continue
        if not widths:
            continue
        score = (len(set(widths)) == 1, widths[0])
        if widths[0] > 1 and score > best_score:
            best, best_score = delimiter, score
    return best


def _read_csv(data: bytes):
    text = _decode(data)
    if "\x00" in text:
        raise ImportFileError(_("The file is not a text (CSV) file."))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(text))
    try:
        yield from reader
    except csv.Error as exc:
        raise ImportFileError(_("The CSV file cannot be read (line %(line)d): %(error)s") % {
            "line": reader.line_num, "error": exc,
        }) from None


def xlsx_text(value) -> str:
    """An XLSX cell value as the text a person typed: whole numbers without ``.0``
    (a phone stored as the number 1712345678 comes back as ``1712345678``), dates as
    ``YYYY-MM-DD``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        if value.time() == time(0):
            return value.date().isoformat()
        return value.replace(microsecond=0).isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


def _read_xlsx(data: bytes):
    from openpyxl import load_workbook

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if sum(info.file_size for info in archive.infolist()) > MAX_UNPACKED_BYTES:
                raise ImportFileError(_("The workbook is too large once unpacked."))
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except ImportFileError:
        raise
    except Exception:  # openpyxl raises many kinds for a damaged or foreign file
        raise ImportFileError(_("The file is not an Excel workbook (.xlsx) that can be read.")) from None
    try:
        if not workbook.worksheets:
            raise ImportFileError(_("The workbook has no sheet."))
        sheet = workbook.worksheets[0]
        try:
            for values in sheet.iter_rows(values_only=True):
                yield [xlsx_text(v) for v in values[:MAX_COLUMNS + 1]]
        except ImportFileError:
            raise
        except Exception:
            raise ImportFileError(_("The workbook's first sheet cannot be read.")) from None
    finally:
        workbook.close()


# -- fields and the column guess ------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    name: str
    label: str
    required: bool
    synonyms: tuple[str, ...]  # whole headers, normalised (see normalise_header)
    keywords: tuple[str, ...]  # parts of a header, tried when no whole header matched


FIELDS: tuple[Field, ...] = (
    Field("name", gettext_lazy("Name"), True,
          ("name", "full name", "customer name", "subscriber name", "client name", "customer", "subscriber", "client",
           "নাম", "গ্রাহকের নাম", "গ্রাহক", "পুরো নাম"),
          ("name", "নাম")),
    Field("phone", gettext_lazy("Phone"), True,
          ("phone", "mobile", "mobile no", "mobile number", "phone number", "phone no", "cell", "contact",
           "contact no", "contact number", "মোবাইল", "মোবাইল নম্বর", "মোবাইল নং", "ফোন", "ফোন নম্বর", "ফোন নং"),
          ("mobile", "phone", "cell", "মোবাইল", "ফোন")),
    Field("pppoe_username", gettext_lazy("PPPoE username"), True,
          ("username", "user name", "user", "pppoe", "pppoe username", "pppoe user", "pppoe id", "user id", "login",
           "secret", "ইউজারনেম", "ইউজার নেম", "ইউজার", "ইউজার আইডি", "ইউজার নাম"),
          ("pppoe", "username", "user name", "ইউজার")),
    Field("package", gettext_lazy("Package"), True,
          ("package", "package name", "plan", "internet package", "প্যাকেজ", "প্যাকেজের নাম"),
          ("package", "plan", "প্যাকেজ")),
    Field("area", gettext_lazy("Area"), False,
          ("area", "zone", "location", "pop", "এলাকা", "এরিয়া", "জোন"),
          ("area", "zone", "এলাকা", "এরিয়া")),
    Field("address", gettext_lazy("Address"), False,
          ("address", "house", "ঠিকানা"),
          ("address", "ঠিকানা")),
    Field("email", gettext_lazy("Email"), False,
          ("email", "e mail", "email address", "mail", "ইমেইল", "ই মেইল", "ইমেল"),
          ("email", "e mail", "ইমেইল")),
    Field("activated_on", gettext_lazy("Start date"), False,
          ("start date", "join date", "joining date", "activation date", "activated on", "connection date", "start",
           "joined", "date", "শুরুর তারিখ", "সংযোগের তারিখ", "যোগদানের তারিখ", "তারিখ"),
          ("date", "তারিখ")),
    Field("router", gettext_lazy("Router"), False,
          ("router", "nas", "mikrotik", "রাউটার"),
          ("router", "mikrotik", "রাউটার")),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)
# The order in which the keyword pass claims columns: "user name" is a username before it
# is a name.
_KEYWORD_ORDER = ("pppoe_username", "phone", "email", "package", "router", "activated_on", "area", "address", "name")

_HEADER_PUNCTUATION = re.compile(r"[\s_\-./:()#*।]+")


def normalise_header(header: str) -> str:
    """Lower case, punctuation as single spaces: ``"Mobile_No."`` → ``"mobile no"``.
    (Bangla vowel signs are kept: they are not punctuation.)"""
    return _HEADER_PUNCTUATION.sub(" ", header.casefold()).strip()


def guess_mapping(headers: list[str]) -> dict[str, int | None]:
    """Which column (index) holds each field, from the headers; None where no header fits."""
    normalised = [normalise_header(h) for h in headers]
    mapping: dict[str, int | None] = {f.name: None for f in FIELDS}
    taken: set[int] = set()
    for f in FIELDS:
        for i, header in enumerate(normalised):
            if i not in taken and header in f.synonyms:
                mapping[f.name] = i
                taken.add(i)
                break
    by_name = {f.name: f for f in FIELDS}
    for name in _KEYWORD_ORDER:
        if mapping[name] is not None:
            continue
        for i, header in enumerate(normalised):
            if i not in taken and any(k in header for k in by_name[name].keywords):
                mapping[name] = i
                taken.add(i)
                break
    return mapping


# -- checking rows ---------------------------------------------------------------------------

@dataclass
class Lookups:
    """What the checks need from the database."""

    packages: dict[str, int]  # casefolded package name -> id
    routers: dict[str, int]  # casefolded router name -> id
    #: Usernames already in use; None: do not check (the creating service will).
    taken_usernames: set[str] | None = None


@dataclass
class RowError:
    field: str
    code: str
    message: str


@dataclass
class RowResult:
    number: int  # the row's line in the spreadsheet (the header is line 1)
    values: dict[str, str]  # what the row says, cleaned, for showing
    data: dict = field(default_factory=dict)  # keyword arguments for create_subscriber
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def cells(self) -> list[str]:
        """The values in the order of :data:`FIELDS`."""
        return [self.values.get(name, "") for name in FIELD_NAMES]


_BENGALI_DIGITS = str.maketrans("০১২৩৪৫৬৭৮৯", "0123456789")
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$")
_DAY_FIRST = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})$")
_DAY_MONTH_NAME = re.compile(r"^(\d{1,2})[\s\-/]([a-z]{3})[a-z]*[\s\-/,]+(\d{2}|\d{4})$")


def parse_date(text: str) -> date:
    """``2026-11-05``, ``05/11/2026``, ``5.11.26``, ``05-Nov-2026``, ``5 November 2026``
    (day first, as in Bangladesh; Bangla digits too). Raises ValueError."""
    text = text.strip().translate(_BENGALI_DIGITS).lower()
    if m := _ISO.match(text):
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
    elif m := _DAY_FIRST.match(text):
        d, mo, y = int(m[1]), int(m[2]), int(m[3])
    elif (m := _DAY_MONTH_NAME.match(text)) and m[2] in _MONTHS:
        d, mo, y = int(m[1]), _MONTHS[m[2]], int(m[3])
    else:
        raise ValueError(text)
    if y < 100:
        y += 2000
    return date(y, mo, d)


_LIMITS = {"name": 200, "area": 100, "address": 300, "email": 254}
_LABELS = {f.name: f.label for f in FIELDS}
# Translated only for a row that misses one: checking thousands of rows, that adds up.
_REQUIRED = (
    ("name", gettext_lazy("name")), ("phone", gettext_lazy("phone")), ("pppoe_username", gettext_lazy("username")),
)


def check_rows(
    rows: list[list[str]], *, mapping: dict[str, int | None], lookups: Lookups,
    default_package: int | None = None, default_router: int | None = None,
) -> list[RowResult]:
    """Each row checked as ``create_subscriber`` would check it, plus what only a whole
    file shows (a username on two rows: both are refused, since either may be the wrong
    one). Writes nothing."""
    results = [_check_row(n, row, mapping, lookups, default_package, default_router)
               for n, row in enumerate(rows, start=2)]
    seen: dict[str, list[RowResult]] = {}
    for result in results:
        username = result.data.get("pppoe_username")
        if username:
            seen.setdefault(username, []).append(result)
    for same in seen.values():
        if len(same) < 2:
            continue
        for result in same:
            others = ", ".join(str(r.number) for r in same if r is not result)
            result.errors.append(RowError(
                "pppoe_username", "duplicate_in_file",
                _("username '%(username)s' is also on row %(rows)s") % {"username": result.data["pppoe_username"], "rows": others},
            ))
    return results


def _check_row(number, row, mapping, lookups: Lookups, default_package, default_router) -> RowResult:
    def cell(name: str) -> str:
        index = mapping.get(name)
        return row[index].strip() if index is not None and 0 <= index < len(row) else ""

    result = RowResult(number=number, values={name: cell(name) for name in FIELD_NAMES})
    errors, data = result.errors, result.data

    def error(field_name, code, message):
        errors.append(RowError(field_name, code, message))

    for name, label in _REQUIRED:
        if not result.values[name]:
            error(name, "missing", _("%(field)s is missing") % {"field": label})

    for name, limit in _LIMITS.items():
        value = result.values[name]
        if len(value) > limit:
            error(name, "too_long", _("%(field)s is longer than %(n)d characters") % {"field": _LABELS[name], "n": limit})
        elif name != "email":
            data[name] = value

    if phone := result.values["phone"]:
        try:
            data["phone"] = result.values["phone"] = normalize_bd_mobile(phone.translate(_BENGALI_DIGITS))
        except PhoneError:
            error("phone", "invalid_phone", _("'%(phone)s' is not a Bangladeshi mobile number") % {"phone": phone})

    if username := result.values["pppoe_username"]:
        if any(c.isspace() for c in username) or len(username) > 64:
            error("pppoe_username", "invalid_username", _("the username must be 1-64 characters without spaces"))
        elif lookups.taken_usernames is not None and username in lookups.taken_usernames:
            error("pppoe_username", "duplicate_username", _("username '%(username)s' is already taken") % {"username": username})
        else:
            data["pppoe_username"] = username

    if package := result.values["package"]:
        if (package_id := lookups.packages.get(package.casefold())) is None:
            error("package", "unknown_package", _("no package is called '%(package)s'") % {"package": package})
        else:
            data["package_id"] = package_id
    elif default_package is not None:
        data["package_id"] = default_package
    else:
        error("package", "missing", _("package is missing (and no default package is chosen)"))

    if router := result.values["router"]:
        if (router_id := lookups.routers.get(router.casefold())) is None:
            error("router", "unknown_router", _("no router is called '%(router)s'") % {"router": router})
        else:
            data["router_id"] = router_id
    elif default_router is not None:
        data["router_id"] = default_router

    if email := result.values["email"]:
        try:
            validate_email(email)
        except ValidationError:
            error("email", "invalid_email", _("'%(email)s' is not an email address") % {"email": email})
        else:
            data["email"] = email

    if started := result.values["activated_on"]:
        try:
            data["activated_on"] = parse_date(started)
            result.values["activated_on"] = data["activated_on"].isoformat()
        except ValueError:
            error("activated_on", "invalid_date", _("'%(date)s' is not a date (use 2026-11-05 or 05/11/2026)") % {"date": started})
    return result
