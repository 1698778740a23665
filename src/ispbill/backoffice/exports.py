"""Lists as spreadsheets: any queryset, any columns, as CSV (streamed) or XLSX (written
to a temporary file), read from the database in keyset chunks so memory stays flat
however many rows there are.

Text a spreadsheet program would run as a formula (it starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return) is neutralised: prefixed with ``'`` in CSV, and
written as a text cell, never a formula, in XLSX. Plain numbers such as ``-500.00`` or
``+8801712345678`` are left alone: a spreadsheet reads them as numbers, not formulas.
"""

from __future__ import annotations

import csv
import re
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Sequence

from django.http import FileResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy

from ispbill.core.money import from_paisa

CHUNK = 2000
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")
# Control characters an XLSX file cannot hold (tab, newline and carriage return it can).
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def is_risky(text: str) -> bool:
    """True when a spreadsheet program could take ``text`` for a formula."""
    return text.startswith(_TRIGGERS) and not _PLAIN_NUMBER.match(text)


def neutralise(text: str) -> str:
    """``text`` safe to put in a CSV cell: a risky one gets a leading ``'``."""
    return "'" + text if is_risky(text) else text


@dataclass(frozen=True)
class ExportColumn:
    """One column: its header and how to get the value from a row (a dotted attribute
    path or a function). ``kind`` "money" turns paisa into taka."""

    header: str
    accessor: str | Callable[[Any], Any]
    kind: str = "text"  # text | money | date | choice

    def value(self, row) -> Any:
        if callable(self.accessor):
            value = self.accessor(row)
        else:
            value = row
            for part in self.accessor.split("."):
                value = getattr(value, part, None) if value is not None else None
        if self.kind == "money":
            return None if value is None else from_paisa(int(value))
        if isinstance(value, datetime):
            return timezone.localtime(value).replace(tzinfo=None) if timezone.is_aware(value) else value
        return value


def rows_in_chunks(queryset, *, size: int = CHUNK) -> Iterator:
    """Every row of ``queryset`` in primary-key order, ``size`` at a time (keyset: each
    chunk is a fresh query after the last key, so no cursor stays open between chunks)."""
    last = None
    while True:
        page = queryset.order_by("pk")
        if last is not None:
            page = page.filter(pk__gt=last)
        chunk = list(page[:size])
        if not chunk:
            return
        yield from chunk
        if len(chunk) < size:
            return
        last = chunk[-1].pk


def _csv_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return neutralise(str(value))


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable, columns: Sequence[ExportColumn]) -> Iterator[str]:
    """The CSV text, one line at a time, starting with a UTF-8 byte-order mark so that
    Excel reads Bangla correctly."""
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow([neutralise(str(c.header)) for c in columns])
    for row in rows:
        yield writer.writerow([_csv_text(c.value(row)) for c in columns])


def csv_response(queryset, columns: Sequence[ExportColumn], *, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        (line.encode("utf-8") for line in csv_lines(rows_in_chunks(queryset), columns)),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def write_xlsx(rows: Iterable, columns: Sequence[ExportColumn], target, *, title: str = "Export") -> None:
    """Write an XLSX workbook to ``target`` (a path or a binary file) with openpyxl's
    write-only mode: rows go straight to disk. Every text is a text cell."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=title[:31])

    def cell(value):
        if isinstance(value, Decimal):
            value = float(value)
        elif value is not None and not isinstance(value, (bool, int, float, date, datetime)):
            value = str(value)
        if isinstance(value, str):
            c = WriteOnlyCell(sheet, value=_ILLEGAL_XML.sub("", value))
            c.data_type = "s"  # openpyxl would take a leading "=" for a formula
            return c
        c = WriteOnlyCell(sheet, value=value)
        if isinstance(value, datetime):
            c.number_format = "yyyy-mm-dd hh:mm"
        elif isinstance(value, date):
            c.number_format = "yyyy-mm-dd"
        return c

    sheet.append([cell(str(c.header)) for c in columns])
    for row in rows:
        sheet.append([cell(c.value(row)) for c in columns])
    workbook.save(target)


def xlsx_response(queryset, columns: Sequence[ExportColumn], *, filename: str, title: str = "Export") -> FileResponse:
    spool = tempfile.TemporaryFile()
    write_xlsx(rows_in_chunks(queryset), columns, spool, title=title)
    spool.seek(0)
    return FileResponse(spool, as_attachment=True, filename=filename, content_type=XLSX_TYPE)


# -- column sets ---------------------------------------------------------------------------

#: The subscriber list. The headers are the ones the import recognises, so an export can
#: be edited and imported elsewhere.
SUBSCRIBER_COLUMNS = [
    ExportColumn(gettext_lazy("ID"), "pk"),
    ExportColumn(gettext_lazy("Name"), "name"),
    ExportColumn(gettext_lazy("Username"), "pppoe_username"),
    ExportColumn(gettext_lazy("Phone"), "phone"),
    ExportColumn(gettext_lazy("Email"), "email"),
    ExportColumn(gettext_lazy("Area"), "area"),
    ExportColumn(gettext_lazy("Address"), "address"),
    ExportColumn(gettext_lazy("Package"), "package.name"),
    ExportColumn(gettext_lazy("Router"), "router.name"),
    ExportColumn(gettext_lazy("Status"), lambda s: s.get_status_display()),
    ExportColumn(gettext_lazy("Start date"), "activated_on"),
    ExportColumn(gettext_lazy("Billed through"), "billed_through"),
    ExportColumn(gettext_lazy("Never suspend"), "never_suspend"),
    ExportColumn(gettext_lazy("Balance (BDT)"), "balance_paisa", kind="money"),
]
