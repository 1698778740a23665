"""The WSGI application ``bench/webhooks.py --floor`` serves: ispbill's own, with the
webhook path cut short after one of its layers, so that the cost of the layers before the
cut can be measured on their own (nothing of ispbill's code is changed on disk).

``ISPBILL_BENCH_FLOOR`` names the last layer kept:

* ``http``: gunicorn and Django route the POST to the webhook view, which reads the body
  and answers ``accepted``; nothing is stored.
* ``store``: as in production up to the raw webhook row (``store_inbound``: one INSERT,
  committed), then ``accepted``.
* ``verify``: as in production up to and including the gateway's confirmation (SSLCommerz
  verify_sign + verify_sign_sha2 and the Validation API call; bKash SNS certificate and
  signature), then ``accepted`` instead of settling: nothing is credited.
"""

from __future__ import annotations

import os

from django.http import JsonResponse

from ispbill.wsgi import application  # noqa: F401  (Django set up as ``ispbill web`` does it)
from ispbill.payments import batching, gateway_services, views
from ispbill.payments.choices import WebhookOutcome

FLOOR = os.environ.get("ISPBILL_BENCH_FLOOR", "")
FLOORS = ("http", "store", "verify")
if FLOOR not in FLOORS:
    raise RuntimeError(f"ISPBILL_BENCH_FLOOR must be one of {', '.join(FLOORS)}, not {FLOOR!r}")


def _accepted() -> gateway_services.Processed:
    return gateway_services.Processed(WebhookOutcome.ACCEPTED, "benchmark floor: not settled", "received")


if FLOOR == "http":
    def _answer_only(request, *, gateway: str, kind: str) -> JsonResponse:
        _ = request.body
        return JsonResponse({"outcome": WebhookOutcome.ACCEPTED, "code": None, "id": None})

    views._webhook = _answer_only
elif FLOOR == "store":
    gateway_services.process_inbound = lambda webhook, *, now, replay=False: _accepted()
else:
    batching.settle_webhook = lambda request: _accepted()
