"""The limit on starting gateway payments from a payment link (``POST /pay/<token>/start``).

Each start stores a :class:`~ispbill.payments.models.PaymentAttempt` and opens a session
at the gateway; the limit counts those stored rows, so every web process sees the same
count. The rule is :mod:`ispbill.payments.start_limits`; the limits come from
``ISPBILL_PAY_START_LIMIT`` (default ``5/10m,20/1d``), checked when the app starts and
on use. A refusal stores nothing: it is logged (``ispbill.portal``, INFO) with the
subscriber's id.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ispbill.payments.choices import AttemptStatus
from ispbill.payments.models import PaymentAttempt
from ispbill.payments.start_limits import (
    DEFAULT_START_LIMITS,
    StartLimit,
    StartLimitError,
    parse_start_limits,
    refusal,
)

log = logging.getLogger("ispbill.portal")

SETTING = "ISPBILL_PAY_START_LIMIT"


@dataclass(frozen=True)
class StartRefused:
    """A start refused by the limit: what to tell the customer."""

    retry_after: int  # seconds
    limit: StartLimit
    started: int
    #: The requested gateway, when a start there within the shortest window is still
    #: ``started`` (its page may still be open in the customer's browser); else "".
    open_gateway: str


def configured_limits() -> tuple[StartLimit, ...]:
    """The limits in force: the ``ISPBILL_PAY_START_LIMIT`` setting or environment
    variable, blank meaning the default. Raises ImproperlyConfigured naming the variable
    when its value does not follow the format."""
    raw = getattr(settings, SETTING, None)
    if raw is None:
        raw = os.environ.get(SETTING, "")
    return _parsed(str(raw).strip() or DEFAULT_START_LIMITS)


@lru_cache(maxsize=8)
def _parsed(text: str) -> tuple[StartLimit, ...]:
    try:
        return parse_start_limits(text)
    except StartLimitError as exc:
        raise ImproperlyConfigured(f"{SETTING}={text!r}: {exc}") from None


def start_refused(*, subscriber_id: int, gateway: str, now: datetime) -> StartRefused | None:
    """None when the subscriber may start one more payment now; otherwise why not and
    for how long (and the refusal is logged)."""
    limits = configured_limits()
    shortest, longest = limits[0].window, limits[-1].window
    started_at = list(
        PaymentAttempt.objects.filter(subscriber_id=subscriber_id, created_at__gt=now - longest)
        .order_by("-created_at", "-id")
        .values_list("created_at", flat=True)[: max(limit.starts for limit in limits)]
    )
    refused = refusal(limits, started_at, now=now)
    if refused is None:
        return None
    still_open = PaymentAttempt.objects.filter(
        subscriber_id=subscriber_id, gateway=gateway, status=AttemptStatus.STARTED, created_at__gt=now - shortest,
    ).exists()
    log.info(
        "payment start refused for subscriber %s: %s starts in the last %s (limit %s); retry after %ss",
        subscriber_id, refused.started, refused.limit.window_text, refused.limit, refused.retry_after,
    )
    return StartRefused(
        retry_after=refused.retry_after, limit=refused.limit, started=refused.started,
        open_gateway=gateway if still_open else "",
    )
