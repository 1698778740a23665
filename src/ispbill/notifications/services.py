"""Queueing, rendering and sending messages to subscribers.

A message is queued (a :class:`Message` row plus an outbox item) in the transaction
that decides it, and sent by the ``notifications.send`` outbox handler, which renders it
at send time (so the amount is current), checks it is still wanted, records
``sending`` before calling the provider and the provider's answer after.
"""

from __future__ import annotations

import logging
import time as _time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import Sum

from ispbill.billing.choices import InvoiceStatus
from ispbill.billing.models import BillingSettings, Invoice, LedgerEntry
from ispbill.core.errors import Conflict, DomainError
from ispbill.core.money import format_amount
from ispbill.core.timeutil import isp_zone
from ispbill.dunning.models import DunningSettings
from ispbill.dunning.policy import DUNNING_KINDS, Channel, MessageKind, grace_days_for, quiet_release, suspension_on, SubscriberState
from ispbill.notifications import texts
from ispbill.notifications.channels import PermanentSendError, TemporarySendError, email_channel, sms_channel
from ispbill.notifications.choices import MessageStatus, Trigger
from ispbill.notifications.models import Message, MessageTemplate
from ispbill.notifications.sms import sms_cost
from ispbill.payments import links
from ispbill.subscribers.models import Subscriber
from ispbill.worker import outbox

log = logging.getLogger("ispbill.notifications")

SEND_TOPIC = "notifications.send"


def language_for(subscriber: Subscriber) -> str:
    if subscriber.language in ("bn", "en"):
        return subscriber.language
    return "bn" if subscriber.phone.startswith("+880") else "en"


def recipient_for(subscriber: Subscriber, channel: str) -> str:
    return subscriber.phone if channel == Channel.SMS else subscriber.email


def sms_release_at(now: datetime, *, dunning: DunningSettings | None = None) -> datetime | None:
    """When an SMS decided at ``now`` may go out (None: at once), honouring quiet hours."""
    ds = dunning or DunningSettings.load()
    return quiet_release(now.astimezone(isp_zone()), start=ds.quiet_hours_start, end=ds.quiet_hours_end)


def queue_message(
    *, subscriber: Subscriber, kind: str, channel: str, now: datetime, dedupe_key: str | None = None,
    invoice: Invoice | None = None, payment=None, step: str = "", trigger: str = Trigger.AUTO, user=None,
) -> Message | None:
    """Queue one message inside the caller's transaction; None if ``dedupe_key`` was used."""
    if channel == Channel.EMAIL and not subscriber.email:
        return None
    key = dedupe_key or f"{trigger}:{uuid.uuid4().hex}"
    if Message.objects.filter(dedupe_key=key).exists():
        return None
    try:
        with transaction.atomic():
            msg = _create_queued(
                subscriber=subscriber, invoice=invoice, payment=payment, kind=kind, step=step, channel=channel,
                trigger=trigger, dedupe_key=key, user=user, now=now,
            )
    except IntegrityError:
        return None  # a concurrent writer queued the same key first
    return msg


def _create_queued(*, subscriber, invoice, payment, kind, step, channel, trigger, dedupe_key, user, now) -> Message:
    msg = Message.objects.create(
        subscriber=subscriber, invoice=invoice, payment=payment, kind=kind, step=step, channel=channel,
        trigger=trigger, dedupe_key=dedupe_key, recipient=recipient_for(subscriber, channel),
        language=language_for(subscriber), requested_by=user, created_at=now,
    )
    release = sms_release_at(now) if channel == Channel.SMS else None
    outbox.enqueue(topic=SEND_TOPIC, dedupe_key=f"message:{msg.pk}", payload={"message_id": msg.pk}, now=now, available_at=release)
    return msg


def request_reminder(*, invoice_id: int, kind: str, channels: list[str] | None, now: datetime, user=None) -> list[Message]:
    """A reminder staff ask for by hand (recorded as manual); queued at once."""
    if kind not in (*DUNNING_KINDS, MessageKind.SUSPENDED):
        raise DomainError(f"'{kind}' cannot be sent as a reminder", code="invalid_kind", field="kind", status=422)
    with transaction.atomic():
        invoice = Invoice.objects.select_related("subscriber").filter(pk=invoice_id).first()
        if invoice is None:
            raise DomainError("invoice not found", code="invoice_not_found", status=404)
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID):
            raise Conflict(f"invoice {invoice.number} is {invoice.status}; nothing to remind about", code="invoice_not_open")
        sub = invoice.subscriber
        if sub.status == "disabled":
            raise Conflict("the subscriber is disabled", code="subscriber_disabled")
        wanted = channels or [Channel.SMS, Channel.EMAIL]
        if Channel.EMAIL in wanted and not sub.email and channels:
            raise DomainError("the subscriber has no email address", code="no_email", field="channels", status=422)
        out = []
        for channel in wanted:
            msg = queue_message(subscriber=sub, kind=kind, channel=channel, now=now, invoice=invoice, step="manual", trigger=Trigger.MANUAL, user=user)
            if msg:
                out.append(msg)
        return out


# -- rendering ---------------------------------------------------------------------------

_template_cache: dict = {"at": 0.0, "rows": {}}


def _template(kind: str, language: str, channel: str) -> texts.Text:
    if _time.monotonic() - _template_cache["at"] > 10:
        _template_cache["rows"] = {
            (t.kind, t.language, t.channel): texts.Text(t.subject, t.body) for t in MessageTemplate.objects.all()
        }
        _template_cache["at"] = _time.monotonic()
    return _template_cache["rows"].get((kind, language, channel)) or texts.DEFAULTS[(kind, language, channel)]


def forget_templates() -> None:
    _template_cache["at"] = 0.0


def _date(d) -> str:
    return f"{d:%d %b %Y}" if d else ""


# (stamp, (BillingSettings, DunningSettings)): see current_settings().
_settings_cache: tuple | None = None


def _settings_stamp() -> tuple:
    """Both settings rows' ``updated_at`` as stored (one plain query; None if a row is missing)."""
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT {qn('updated_at')} FROM {qn(BillingSettings._meta.db_table)} WHERE {qn('id')} = 1), "
            f"(SELECT {qn('updated_at')} FROM {qn(DunningSettings._meta.db_table)} WHERE {qn('id')} = 1)"
        )
        return tuple(cursor.fetchone())


def current_settings() -> tuple[BillingSettings, DunningSettings]:
    """The billing and dunning settings as stored now, for rendering and quiet hours.

    Every send needs both, and loading them through the ORM cost more than the rest of
    rendering. They are kept in memory and re-read whenever either row's ``updated_at``
    (set by every save) differs from the one they were read at, so a change is seen by
    the very next send, as before. Callers must not modify the returned objects.
    """
    global _settings_cache
    stamp = _settings_stamp()
    cached = _settings_cache
    if cached is not None and None not in stamp and cached[0] == stamp:
        return cached[1]
    rows = (BillingSettings.load(), DunningSettings.load())
    # Stamped with the value read *before* loading: a save in between only causes one
    # more reload on the next call, never a stale read.
    _settings_cache = (stamp, rows) if None not in stamp else None
    return rows


def placeholders(tpl: texts.Text) -> frozenset[str]:
    """The placeholder names a template's subject and body use."""
    return frozenset(texts._FIELD.findall(tpl.subject)) | frozenset(texts._FIELD.findall(tpl.body))


def context_for(
    msg: Message, *, now: datetime, fields: frozenset[str] | None = None,
    isp_settings: tuple[BillingSettings, DunningSettings] | None = None,
) -> dict[str, str]:
    """Placeholder values for ``msg``. Given ``fields`` (what the template uses), values
    nothing reads are left blank instead of computed: the balance and the payment link
    cost queries, and a payment link is only created for a message that shows it."""
    sub = msg.subscriber
    billing, dunning = isp_settings or current_settings()
    need_balance = fields is None or "balance" in fields or ("amount_due" in fields and not msg.invoice_id)
    balance = ""
    if need_balance:
        owed = LedgerEntry.objects.filter(subscriber_id=sub.pk).aggregate(s=Sum("amount_paisa"))["s"] or 0
        balance = format_amount(max(owed, 0))
    link = ""
    if fields is None or "payment_link" in fields:
        link = links.url_for(links.current_link(subscriber_id=sub.pk, now=now, valid_days=dunning.payment_link_days))
    ctx = {
        "name": sub.name, "isp_name": billing.isp_name, "hotline": billing.hotline, "payment_link": link,
        "balance": balance, "amount_due": balance,
        "due_date": "", "suspension_date": "", "invoice_number": "", "amount_paid": "",
    }
    if msg.invoice_id:
        inv = msg.invoice
        grace = grace_days_for(SubscriberState(status=sub.status, grace_days_override=sub.grace_days_override), billing.grace_days)
        ctx.update(
            amount_due=format_amount(inv.amount_due_paisa), due_date=_date(inv.due_on),
            suspension_date=_date(suspension_on(inv.due_on, grace)), invoice_number=inv.number,
        )
    if msg.payment_id:
        ctx["amount_paid"] = format_amount(msg.payment.amount_paisa)
    return ctx


def render_message(
    msg: Message, *, now: datetime, isp_settings: tuple[BillingSettings, DunningSettings] | None = None,
) -> tuple[str, str, str]:
    """(subject, text, html) for the message in its language."""
    tpl = _template(msg.kind, msg.language or language_for(msg.subscriber), msg.channel)
    ctx = context_for(msg, now=now, fields=placeholders(tpl), isp_settings=isp_settings)
    text = texts.render(tpl.body, ctx)
    subject = texts.render(tpl.subject, ctx)
    return subject, text, texts.to_html(text) if msg.channel == Channel.EMAIL else ""


def why_not_send(msg: Message) -> str | None:
    """A reason to cancel a queued message, or None if it is still wanted."""
    if msg.subscriber.status == "disabled" and msg.kind != MessageKind.RECEIPT:
        return "subscriber disabled"
    if msg.kind in DUNNING_KINDS and msg.invoice_id:
        inv = msg.invoice
        if inv.status not in (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID) or inv.amount_due_paisa <= 0:
            return f"invoice {inv.status} before sending"
    if not recipient_for(msg.subscriber, msg.channel):
        return f"no {msg.channel} address"
    return None


# -- sending -----------------------------------------------------------------------------

@dataclass
class _Prepared:
    subject: str
    text: str
    html: str
    recipient: str


@outbox.handler(SEND_TOPIC)
def send_message(item, attempt) -> None:
    now = attempt.now
    message_id = item.payload["message_id"]
    with transaction.atomic():
        # Lock the message row only: invoice and payment are nullable (LEFT JOIN), and
        # PostgreSQL refuses FOR UPDATE on the nullable side of an outer join.
        msg = (
            Message.objects.select_for_update(of=("self",))
            .select_related("subscriber", "invoice")  # the payment (receipts only) loads when rendered
            .get(pk=message_id)
        )
        if msg.status in (MessageStatus.SENT, MessageStatus.CANCELLED, MessageStatus.DEAD, MessageStatus.UNCERTAIN):
            return
        if msg.status == MessageStatus.SENDING:
            # An earlier attempt called the provider and never recorded the answer: it may
            # have gone out. Resending could duplicate it, so staff decide.
            msg.status = MessageStatus.UNCERTAIN
            msg.error = "the worker stopped while sending; not resent automatically (check with the subscriber, resend by hand if needed)"
            msg.save(update_fields=["status", "error"])
            return
        reason = why_not_send(msg)
        if reason:
            msg.status = MessageStatus.CANCELLED
            msg.error = reason
            msg.save(update_fields=["status", "error"])
            return
        isp_settings = current_settings()
        if msg.channel == Channel.SMS:
            release = sms_release_at(now, dunning=isp_settings[1])
            if release is not None:
                raise outbox.RetryLater("quiet hours", after_seconds=max(1, int((release - now).total_seconds())), count_attempt=False)
        subject, text, html = render_message(msg, now=now, isp_settings=isp_settings)
        msg.subject, msg.body, msg.recipient = subject[:200], text, recipient_for(msg.subscriber, msg.channel)
        if msg.channel == Channel.SMS:
            cost = sms_cost(text)
            msg.encoding, msg.segments = cost.encoding, cost.segments
        msg.status = MessageStatus.SENDING
        msg.sending_at = now
        msg.save(update_fields=["subject", "body", "recipient", "encoding", "segments", "status", "sending_at"])
    prepared = _Prepared(msg.subject, msg.body, html, msg.recipient)
    reference = f"ispbill-{msg.pk}"
    try:
        if msg.channel == Channel.SMS:
            result = sms_channel().send_sms(to=prepared.recipient, text=prepared.text, reference=reference)
        else:
            result = email_channel().send_email(
                to=prepared.recipient, subject=prepared.subject, text=prepared.text, html=prepared.html, reference=reference
            )
    except PermanentSendError as exc:
        Message.objects.filter(pk=msg.pk, status=MessageStatus.SENDING).update(status=MessageStatus.DEAD, error=str(exc)[:2000])
        raise outbox.PermanentFailure(str(exc)) from None
    except (TemporarySendError, Exception) as exc:
        # The provider did not take it (or we cannot tell after a timeout): back to
        # queued so the outbox retries; if attempts run out the outbox marks it dead.
        dead = item.attempts >= item.max_attempts
        Message.objects.filter(pk=msg.pk, status=MessageStatus.SENDING).update(
            status=MessageStatus.DEAD if dead else MessageStatus.QUEUED, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    # Guarded on "sending": if the lease ran out and another worker has since marked the
    # message uncertain, the provider's late answer is still recorded as sent.
    Message.objects.filter(pk=msg.pk, status__in=(MessageStatus.SENDING, MessageStatus.UNCERTAIN)).update(
        status=MessageStatus.SENT, sent_at=now, provider_reference=result.provider_reference[:200], error=""
    )

