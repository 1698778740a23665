"""Subscriber-facing pages (no login): the payment page behind a payment link, starting
a gateway payment from it, and the pages the customer comes back to from the gateway."""

from __future__ import annotations

import math
from functools import partial

from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST, require_safe

from ispbill.core import clock
from ispbill.core.errors import DomainError
from ispbill.payments import gateway_services, links
from ispbill.payments.choices import WebhookKind
from ispbill.payments.views import client_ip, store_request
from ispbill.portal import limits, selectors


@never_cache
@require_safe
def pay_page(request, token: str):
    now = clock.now()
    try:
        link = links.resolve(token, now=now)
    except links.LinkError as exc:
        return _link_error(request, exc)
    page = selectors.payment_page(subscriber_id=link.subscriber_id)
    links.mark_opened(link, now=now)
    return _private(render(request, "portal/pay.html", {"page": page, "token": token, "now": timezone.localtime(now)}))


class HttpResponseSeeOther(HttpResponseRedirect):
    status_code = 303


@never_cache
@require_POST
def start_payment(request, token: str):
    """The payment page's form (CSRF-protected): ``gateway=<name>`` → 303 to the gateway;
    429 with Retry-After while the subscriber has started too many payments lately."""
    now = clock.now()
    try:
        link = links.resolve(token, now=now)
    except links.LinkError as exc:
        return _link_error(request, exc)
    gateway = request.POST.get("gateway", "")
    admit = partial(limits.admit_start, subscriber_id=link.subscriber_id, gateway=gateway, now=now)
    try:
        _, redirect_url = gateway_services.start_gateway_payment(
            subscriber_id=link.subscriber_id, gateway=gateway, now=now, client_ip=client_ip(request), admit=admit,
        )
    except limits.TooManyStarts as exc:
        return _too_many_starts(request, token, exc.refused)
    except DomainError as exc:
        context = {"message": exc.message, "code": exc.code, "token": token}
        return _private(render(request, "portal/pay_error.html", context, status=exc.status))
    return _private(HttpResponseSeeOther(redirect_url))


# Up to this many minutes the wait is told in minutes; beyond, in whole hours (rounded up).
_WAIT_IN_MINUTES_UP_TO = 90


def _too_many_starts(request, token: str, refused: limits.StartRefused):
    minutes = math.ceil(refused.retry_after / 60)
    context = {
        "token": token,
        "wait_minutes": minutes if minutes <= _WAIT_IN_MINUTES_UP_TO else None,
        "wait_hours": None if minutes <= _WAIT_IN_MINUTES_UP_TO else math.ceil(refused.retry_after / 3600),
        "open_gateway": gateway_services.LABELS.get(refused.open_gateway, refused.open_gateway),
        "isp": selectors.isp_contact(),
    }
    response = render(request, "portal/pay_wait.html", context, status=429)
    response["Retry-After"] = str(refused.retry_after)
    return _private(response)


# -- back from the gateway: shown to the customer, never believed ------------------------------

@csrf_exempt
@never_cache
@require_GET
def bkash_callback(request):
    return _returned(request, "bkash")


@csrf_exempt
@never_cache
@require_GET
def nagad_callback(request):
    return _returned(request, "nagad")


@csrf_exempt
@never_cache
@require_POST
def sslcommerz_return(request, result: str):
    """SSLCommerz's success, fail and cancel URLs (the posted, signed fields decide)."""
    return _returned(request, "sslcommerz")


def _returned(request, gateway: str):
    now = clock.now()
    stored = store_request(request, gateway=gateway, kind=WebhookKind.CALLBACK, now=now)
    processed = gateway_services.process_inbound(stored, now=now)
    payment, attempt = processed.payment, processed.attempt
    context = {
        "state": processed.page,
        "amount": (payment.amount if payment is not None else attempt.amount if attempt is not None else None),
        "method": payment.method_label if payment is not None else "",
        "transaction_id": payment.transaction_id if payment is not None and processed.page == "received" else "",
        "reference": attempt.reference if attempt is not None else "",
    }
    status = 400 if processed.outcome == "rejected" else 200
    return _private(render(request, "portal/pay_result.html", context, status=status))


def _link_error(request, exc: links.LinkError):
    status = 404 if exc.reason == "invalid" else 410
    return _private(render(request, "portal/link_error.html", {"message": exc.message, "reason": exc.reason}, status=status))


def _private(response):
    """The URL carries the token: never send it on as a referrer, never index the page."""
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex"
    return response
