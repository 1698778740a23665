"""Column definitions for the shared list template (NetBox-style: a page declares its
columns; ``backoffice/list.html`` renders any of them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Column:
    label: str  # a lazy translation: the header follows the page's language
    accessor: str  # dotted attribute path on the row
    kind: str = "text"  # text | money | badge | date | bool
    badge: str = ""  # which choices class colours a badge (see templatetags)
    link: Callable | None = None  # row -> url; the cell links there
    classes: str = ""

    def value(self, row):
        value = row
        for part in self.accessor.split("."):
            value = getattr(value, part, None) if value is not None else None
            if callable(value):
                value = value()
        return value


SUBSCRIBER_COLUMNS = [
    Column(_("Name"), "name", link=lambda s: f"/office/subscribers/{s.pk}/", classes="strong"),
    Column(_("Username"), "pppoe_username", classes="mono"),
    Column(_("Phone"), "phone", classes="mono nowrap"),
    Column(_("Area"), "area"),
    Column(_("Package"), "package.name"),
    Column(_("Router"), "router.name"),
    Column(_("Status"), "status", kind="badge", badge="subscriber"),
    Column(_("Balance"), "balance_paisa", kind="money", classes="num"),
]
