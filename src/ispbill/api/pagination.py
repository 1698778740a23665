"""Lists page in the database: ``?limit=&offset=`` become SQL LIMIT/OFFSET and ``count`` one
COUNT query, so a page costs the same however many rows the table holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import Model, QuerySet
from ninja import Schema
from ninja.pagination import LimitOffsetPagination
from pydantic import Field

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class Rows:
    """The rows of ``queryset`` as ``out`` renders them, read only when a page is asked for.

    ``queryset`` should select or prefetch whatever ``out`` reads, so that a page is a fixed
    number of queries whatever its size."""

    def __init__(self, queryset: QuerySet, out: Callable[[Model], dict]):
        self.queryset = queryset
        self.out = out

    def page(self, *, offset: int, limit: int) -> list[dict]:
        return [self.out(row) for row in self.queryset[offset : offset + limit]]

    def count(self) -> int:
        return self.queryset.count()


class Pagination(LimitOffsetPagination):
    """``limit`` (1 to :data:`MAX_LIMIT`, default :data:`DEFAULT_LIMIT`) and ``offset``;
    answers ``{"items": [...], "count": N}``. A route returns :class:`Rows`, never a list
    built in Python (that would read every row to serve one page)."""

    class Input(Schema):
        limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"items per page, at most {MAX_LIMIT}")
        offset: int = Field(0, ge=0, description="items to skip")

    def paginate_queryset(self, rows: Rows, pagination: Input, request, **params: Any) -> dict:
        if not isinstance(rows, Rows):
            raise TypeError(f"a paginated route returns Rows, not {type(rows).__name__}")
        return {
            self.items_attribute: rows.page(offset=pagination.offset, limit=pagination.limit),
            "count": rows.count(),
        }
