"""The limit on starting gateway payments from a payment link (``POST /pay/<token>/start``).

Each start stores a :class:`~ispbill.payments.models.PaymentAttempt` and opens a session
at the gateway; the limit counts those stored rows, so every web process sees the same
count. The rule is :mod:`ispbill.payments.start_limits`; the limits come from
``ISPBILL_PAY_START_LIMIT`` (default ``5/10m,20/1d``), checked when the app starts and
on use. A refusal stores nothing: it is logged (``ispbill.portal``, INFO) with the
subscriber's id.

The count must not race the insert: :func:`admit_start` is handed to
:func:`~ispbill.payments.gateway_services.start_gateway_payment`, which calls it in the
transaction that stores the attempt, with the subscriber's row locked, so starts arriving
at the same moment are counted one after another.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ispbill.core.errors import DomainError
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


class TooManyStarts(DomainError):
    """A start refused by the limit; ``refused`` says what to tell the customer."""

    status = 429
    code = "too_many_starts"

    def __init__(self, refused: StartRefused):
        super().__init__("Too many payments were started lately; please wait a little.")
        self.refused = refused


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


def admit_start(*, subscriber_id: int, gateway: str, now: datetime) -> None:
    """Raise :class:`TooManyStarts` when :func:`start_refused` refuses the start. Meant
    as ``start_gateway_payment(admit=...)``, which calls it with the subscriber's row
    locked."""
    refused = start_refused(subscriber_id=subscriber_id, gateway=gateway, now=now)
    if refused is not None:
        raise TooManyStarts(refused)
