"""Subscriber-facing pages (no login): the payment page behind a payment link."""

from __future__ import annotations

from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from ispbill.core import clock
from ispbill.payments import links
from ispbill.portal import selectors


@never_cache
@require_safe
def pay_page(request, token: str):
    now = clock.now()
    try:
        link = links.resolve(token, now=now)
    except links.LinkError as exc:
        status = 404 if exc.reason == "invalid" else 410
        return _private(render(request, "portal/link_error.html", {"message": exc.message, "reason": exc.reason}, status=status))
    page = selectors.payment_page(subscriber_id=link.subscriber_id)
    links.mark_opened(link, now=now)
    return _private(render(request, "portal/pay.html", {"page": page, "token": token, "now": timezone.localtime(now)}))


def _private(response):
    """The URL carries the token: never send it on as a referrer, never index the page."""
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex"
    return response
