from __future__ import annotations

from django.shortcuts import get_object_or_404
from ninja import Router
from ninja.pagination import paginate

from ispbill.api.pagination import Pagination, Rows
from ispbill.api.permissions import require_permission
from ispbill.api.schemas import ErrorOut, MessageOut, TemplateIn, TemplateOut
from ispbill.core import clock
from ispbill.notifications import selectors, settings_services, templates_admin
from ispbill.notifications.models import Message

router = Router(tags=["messages"])
templates = Router(tags=["messages"])


def out(m: Message) -> dict:
    return {
        "id": m.pk, "subscriber": m.subscriber_id, "invoice": m.invoice_id, "payment": m.payment_id, "kind": m.kind,
        "step": m.step, "channel": m.channel, "trigger": m.trigger, "status": m.status, "recipient": m.recipient,
        "language": m.language, "subject": m.subject, "body": m.body, "encoding": m.encoding, "segments": m.segments,
        "error": m.error, "created_at": m.created_at, "sent_at": m.sent_at,
    }


@router.get("", response=list[MessageOut])
@paginate(Pagination)
def list_messages(request, subscriber: int | None = None, kind: str = "", status: str = "", channel: str = ""):
    return Rows(selectors.message_list(subscriber_id=subscriber, kind=kind, status=status, channel=channel), out)


@router.get("/{message_id}", response={200: MessageOut, 404: ErrorOut})
def get_message(request, message_id: int):
    return out(get_object_or_404(Message, pk=message_id))


@templates.get("", response=list[TemplateOut])
def list_templates(request):
    return templates_admin.effective_templates()


@templates.put("/{kind}/{language}/{channel}", response={200: TemplateOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut})
def put_template(request, kind: str, language: str, channel: str, payload: TemplateIn):
    """Customise a template (needs manage_settings; audited as ``settings.template``)."""
    require_permission(request, "manage_settings")
    return settings_services.save_template(
        kind=kind, language=language, channel=channel, subject=payload.subject, body=payload.body,
        now=clock.now(), user=request.user,
    )


@templates.delete("/{kind}/{language}/{channel}", response={200: TemplateOut, 403: ErrorOut, 404: ErrorOut})
def reset_template(request, kind: str, language: str, channel: str):
    """Back to the built-in text (needs manage_settings; audited)."""
    require_permission(request, "manage_settings")
    return settings_services.reset_template(kind=kind, language=language, channel=channel, now=clock.now(), user=request.user)
