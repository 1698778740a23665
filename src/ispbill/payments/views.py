"""Server-to-server webhooks from the gateways (no login, no CSRF: they are verified).

Each request is stored raw before anything else, then confirmed and settled; the answer
is 200 for accepted and duplicate messages (the gateway stops retrying), 4xx for
rejected ones (forged, replayed with changes, not ours) and 5xx when we could not
decide (the gateway retries; staff can replay it from the API).
"""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ispbill.core import clock
from ispbill.payments import gateway_services
from ispbill.payments.choices import WebhookKind
from ispbill.payments.models import InboundWebhook


def client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def store_request(request, *, gateway: str, kind: str, now) -> InboundWebhook:
    """Keep the request as it arrived (secrets in headers redacted)."""
    return gateway_services.store_inbound(
        gateway=gateway, kind=kind, method=request.method, path=request.get_full_path(), headers=dict(request.headers),
        body=request.body, source_ip=client_ip(request), now=now,
    )


def _webhook(request, *, gateway: str, kind: str) -> JsonResponse:
    now = clock.now()
    stored = store_request(request, gateway=gateway, kind=kind, now=now)
    processed = gateway_services.process_inbound(stored, now=now)
    # The sender learns the outcome, not our reasons (they may name amounts or references).
    return JsonResponse({"outcome": processed.outcome, "code": processed.code or None, "id": stored.pk},
                        status=processed.http_status)


@csrf_exempt
@require_POST
def sslcommerz_ipn(request):
    return _webhook(request, gateway="sslcommerz", kind=WebhookKind.IPN)


@csrf_exempt
@require_POST
def bkash_sns(request):
    return _webhook(request, gateway="bkash", kind=WebhookKind.SNS)
