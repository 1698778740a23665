"""The captive "please pay" page (``/portal``) suspended subscribers' browsers land on.

The router's walled garden sends a suspended subscriber's plain-HTTP requests here (see
the README, "Network enforcement (MikroTik)"). The subscriber is recognised by the
request's source address, matched against the session addresses reconciliation saw on
the routers; anyone who cannot be told apart exactly (no match, or an address two
subscribers share) gets a generic page that shows nobody's data. No login.

Kept apart from :mod:`ispbill.portal.views` (the payment-link pages) because it trusts a
different thing: a network address rather than a signed token.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from functools import lru_cache

from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from ispbill.core import clock
from ispbill.dunning.models import DunningSettings
from ispbill.payments import links
from ispbill.portal import selectors

log = logging.getLogger("ispbill.portal")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@never_cache
@require_safe
def captive_page(request):
    now = clock.now()
    address = client_address(request)
    subscriber_id = selectors.subscriber_at_address(address=address, now=now) if address else None
    if subscriber_id is None:
        return _private(render(request, "portal/captive_generic.html", {"isp": selectors.isp_contact()}))
    page = selectors.payment_page(subscriber_id=subscriber_id)
    link = links.current_link(subscriber_id=subscriber_id, now=now, valid_days=DunningSettings.load().payment_link_days)
    context = {
        "page": page, "pay_url": links.url_for(link), "suspended": selectors.service_suspended(subscriber_id=subscriber_id),
    }
    return _private(render(request, "portal/captive.html", context))


def client_address(request) -> str:
    """The address the request came from: ``REMOTE_ADDR``; or, when that is one of the
    proxies in ``ISPBILL_TRUSTED_PROXIES`` (comma-separated addresses and networks), the
    right-most ``X-Forwarded-For`` address that is not a trusted proxy: everything left
    of it is whatever the client chose to claim. "" when there is no usable address."""
    remote = _ip(request.META.get("REMOTE_ADDR", ""))
    if remote is None:
        return ""
    trusted = _trusted_proxies(os.environ.get("ISPBILL_TRUSTED_PROXIES", ""))
    if not _within(remote, trusted):
        return str(remote)
    hops = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    client = remote
    for part in reversed(hops):
        hop = _ip(part)
        if hop is None:
            return ""  # a hop we cannot read: we cannot know who is behind it
        client = hop
        if not _within(hop, trusted):
            break
    return str(client)


def _ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _within(ip: IPAddress, networks: tuple) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


@lru_cache(maxsize=8)
def _trusted_proxies(raw: str) -> tuple:
    networks = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            log.warning("ISPBILL_TRUSTED_PROXIES: ignoring '%s' (not an IP address or network)", part)
    return tuple(networks)


def _private(response):
    """The page links to the subscriber's payment page (a token): never send it on as a
    referrer, never index it."""
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex"
    return response
