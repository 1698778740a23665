"""The ISP's time zone: local dates and day boundaries."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Q


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def isp_zone() -> ZoneInfo:
    return _zone(settings.ISPBILL_TIME_ZONE)


def local_date(at: datetime) -> date:
    """The calendar date at the ISP at instant ``at`` (aware)."""
    if at.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    return at.astimezone(isp_zone()).date()


def start_of_day(day: date) -> datetime:
    """The aware instant at which ``day`` begins at the ISP."""
    return datetime.combine(day, time.min, tzinfo=isp_zone())


def parse_instant(text: str) -> datetime:
    """Parse ISO-8601; a value without an offset is read in the ISP's zone."""
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        at = at.replace(tzinfo=isp_zone())
    return at


def on_local_days(field: str, date_from: date | None, date_to: date | None) -> Q:
    """Instants in ``field`` falling on ``date_from`` … ``date_to`` (both included, either
    may be open) as calendar days at the ISP."""
    cond = Q()
    if date_from is not None:
        cond &= Q(**{f"{field}__gte": start_of_day(date_from)})
    if date_to is not None:
        cond &= Q(**{f"{field}__lt": start_of_day(date_to + timedelta(days=1))})
    return cond
