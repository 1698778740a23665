"""/api/v1/webhooks: every callback and webhook the gateways sent, as stored, and replay."""

from __future__ import annotations

from ninja import Router
from ninja.pagination import paginate

from ispbill.api.pagination import Pagination, Rows
from ispbill.api.permissions import require_permission
from ispbill.api.schemas import ErrorOut, WebhookOut
from ispbill.core import clock
from ispbill.payments import gateway_services, selectors
from ispbill.payments.models import InboundWebhook

router = Router(tags=["webhooks"])


def out(w: InboundWebhook) -> dict:
    return {
        "id": w.pk, "gateway": w.gateway, "kind": w.kind, "method": w.method, "path": w.path, "headers": w.headers,
        "body": w.body, "source_ip": w.source_ip, "received_at": w.received_at, "outcome": w.outcome,
        "outcome_detail": w.outcome_detail, "processed_at": w.processed_at, "replays": w.replays,
        "attempt": w.attempt.reference if w.attempt_id else None, "payment": w.payment_id,
    }


@router.get("", response={200: list[WebhookOut], 403: ErrorOut})
@paginate(Pagination)
def list_webhooks(request, gateway: str = "", outcome: str = ""):
    """Newest first; filter by ``gateway`` (bkash, nagad, sslcommerz) and ``outcome``
    (received, accepted, duplicate, rejected, error). Needs the manage_billing permission
    (raw bodies carry customers' payment details)."""
    require_permission(request, "manage_billing")
    return Rows(selectors.webhook_list(gateway=gateway, outcome=outcome), out)


@router.get("/{webhook_id}", response={200: WebhookOut, 403: ErrorOut, 404: ErrorOut})
def get_webhook(request, webhook_id: int):
    require_permission(request, "manage_billing")
    return out(selectors.webhook(webhook_id))


@router.post("/{webhook_id}/replay", response={200: WebhookOut, 403: ErrorOut, 404: ErrorOut})
def replay_webhook(request, webhook_id: int):
    """Process a stored callback/webhook again (after an outage or a fix). Idempotent:
    replaying one already accepted credits nothing twice. Needs manage_billing."""
    require_permission(request, "manage_billing")
    webhook, _ = gateway_services.replay_webhook(webhook_id=webhook_id, now=clock.now())
    return out(selectors.webhook(webhook.pk))
