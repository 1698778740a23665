"""Queueing, rendering and sending messages to subscribers.

A message is queued (a :class:`Message` row plus an outbox item) in the transaction
that decides it, and sent by the ``notifications.send`` outbox handler, which renders it
at send time (so the amount is current), checks it is still wanted, records
``sending`` before calling the provider and the provider's answer after.

The dispatcher claims items in batches; :func:`prepare_sends` (the topic's outbox
preparer) loads and renders a whole batch in a few queries, and each send then marks its
message ``sending`` with one UPDATE that also checks nothing the text was rendered from
has changed meanwhile (message still queued, subscriber, invoice, payment link, balance,
settings). If anything has, the send does all the work again itself under the message's
row lock, exactly as an unprepared send.
"""

from __future__ import annotations

import logging
import time as _time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import Sum

from ispbill.audit import services as audit
from ispbill.billing.choices import InvoiceStatus
from ispbill.billing.models import BillingSettings, Invoice, LedgerEntry
from ispbill.core.db import insert_objects
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
from ispbill.payments.models import Payment, PaymentLink
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


def queue_messages(
    *, subscriber: Subscriber, kind: str, channels: tuple[str, ...], now: datetime, dedupe_keys: tuple[str, ...],
    payment=None, trigger: str = Trigger.AUTO,
) -> list[Message]:
    """Queue one message per channel (each with its dedupe key) in the caller's
    transaction, as :func:`queue_message` would one by one, in a few statements: the
    messages and their outbox items each inserted in one statement, in a savepoint.
    Should any key be taken already (or by a concurrent writer meanwhile), the savepoint
    is rolled back and it falls back to :func:`queue_message` per channel, which skips
    the keys taken."""
    wanted = [(c, k) for c, k in zip(channels, dedupe_keys) if not (c == Channel.EMAIL and not subscriber.email)]
    if not wanted:
        return []

    def one_by_one() -> list[Message]:
        out = [queue_message(subscriber=subscriber, kind=kind, channel=c, now=now, dedupe_key=k, payment=payment,
                             trigger=trigger) for c, k in wanted]
        return [m for m in out if m is not None]

    if not connection.features.can_return_rows_from_bulk_insert:
        return one_by_one()
    # No look-up first: the keys are unique in the table, so a key already used fails
    # the insert below and the fallback then skips it.
    try:
        with transaction.atomic():
            return _insert_queued(
                [_Wanted(subscriber, kind, c, k, payment, trigger) for c, k in wanted], now=now,
            )
    except IntegrityError:
        return one_by_one()


#: The channels a receipt goes out on (email only where the subscriber has an address).
RECEIPT_CHANNELS = (Channel.SMS, Channel.EMAIL)


def receipt_key(payment_id: int, channel: str) -> str:
    """The dedupe key of a payment's receipt on ``channel``: one receipt per payment and channel."""
    return f"receipt:{payment_id}:{channel}"


def queue_receipts(paid: list[tuple[Subscriber, Payment]], *, now: datetime) -> list[Message]:
    """Receipts for payments just recorded in this transaction, all in two statements,
    keyed by :func:`receipt_key`. The payments are new, so their keys are unused: a key
    already taken fails the insert (and the caller's transaction). Needs a database
    that returns ids from a bulk insert (the caller checks)."""
    return _insert_queued([
        _Wanted(sub, MessageKind.RECEIPT, channel, receipt_key(payment.pk, channel), payment, Trigger.AUTO)
        for sub, payment in paid
        for channel in RECEIPT_CHANNELS if channel == Channel.SMS or sub.email
    ], now=now)


@dataclass(frozen=True)
class _Wanted:
    subscriber: Subscriber
    kind: str
    channel: str
    dedupe_key: str
    payment: Payment | None
    trigger: str


def _insert_queued(wanted: list[_Wanted], *, now: datetime) -> list[Message]:
    """The messages and their outbox items, one INSERT each."""
    if not wanted:
        return []
    msgs = [
        Message(
            subscriber=w.subscriber, payment=w.payment, kind=w.kind, channel=w.channel, trigger=w.trigger,
            dedupe_key=w.dedupe_key, recipient=recipient_for(w.subscriber, w.channel),
            language=language_for(w.subscriber), created_at=now,
        )
        for w in wanted
    ]
    insert_objects(msgs, return_ids=True)
    sms_release = sms_release_at(now, dunning=current_settings()[1]) if any(m.channel == Channel.SMS for m in msgs) else None
    outbox.enqueue_many(topic=SEND_TOPIC, items=[
        (f"message:{m.pk}", {"message_id": m.pk}, sms_release if m.channel == Channel.SMS else None) for m in msgs
    ], now=now)
    return msgs


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
    """A reminder staff ask for by hand (recorded as manual); queued at once. Recorded
    in the audit log (``reminder.send``) when anything was queued."""
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
        if out:
            audit.record(
                action="reminder.send", at=now, user=user, target=audit.target_of(invoice), subscriber_id=sub.pk,
                after={"kind": kind, "channels": [m.channel for m in out]},
                summary=f"{kind} reminder for {invoice.number}",
            )
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
    return _stamped_settings()[1]


def _stamped_settings() -> tuple[tuple, tuple[BillingSettings, DunningSettings]]:
    """:func:`current_settings` and the stamp they are at least as new as (the rows'
    ``updated_at`` as stored; contains None when a row was missing)."""
    global _settings_cache
    stamp = _settings_stamp()
    cached = _settings_cache
    if cached is not None and None not in stamp and cached[0] == stamp:
        return stamp, cached[1]
    rows = (BillingSettings.load(), DunningSettings.load())
    # Stamped with the value read *before* loading: a save in between only causes one
    # more reload on the next call, never a stale read.
    _settings_cache = (stamp, rows) if None not in stamp else None
    return stamp, rows


def placeholders(tpl: texts.Text) -> frozenset[str]:
    """The placeholder names a template's subject and body use."""
    return frozenset(texts._FIELD.findall(tpl.subject)) | frozenset(texts._FIELD.findall(tpl.body))


def _needs_balance(msg: Message, fields: frozenset[str] | None) -> bool:
    return fields is None or "balance" in fields or ("amount_due" in fields and not msg.invoice_id)


def _needs_link(fields: frozenset[str] | None) -> bool:
    return fields is None or "payment_link" in fields


def context_for(
    msg: Message, *, now: datetime, fields: frozenset[str] | None = None,
    isp_settings: tuple[BillingSettings, DunningSettings] | None = None,
    link: PaymentLink | None = None, owed: int | None = None,
) -> dict[str, str]:
    """Placeholder values for ``msg``. Given ``fields`` (what the template uses), values
    nothing reads are left blank instead of computed: the balance and the payment link
    cost queries, and a payment link is only created for a message that shows it.
    ``link`` and ``owed`` (the ledger sum) may be passed in when already loaded."""
    sub = msg.subscriber
    billing, dunning = isp_settings or current_settings()
    balance = ""
    if _needs_balance(msg, fields):
        if owed is None:
            owed = LedgerEntry.objects.filter(subscriber_id=sub.pk).aggregate(s=Sum("amount_paisa"))["s"] or 0
        balance = format_amount(max(owed, 0))
    link_url = ""
    if _needs_link(fields):
        if link is None:
            link = links.current_link(subscriber_id=sub.pk, now=now, valid_days=dunning.payment_link_days)
        link_url = links.url_for(link)
    ctx = {
        "name": sub.name, "isp_name": billing.isp_name, "hotline": billing.hotline, "payment_link": link_url,
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


def _template_key(msg: Message) -> tuple[str, str, str]:
    return msg.kind, msg.language or language_for(msg.subscriber), msg.channel


def _template_for(msg: Message) -> texts.Text:
    return _template(*_template_key(msg))


def render_message(
    msg: Message, *, now: datetime, isp_settings: tuple[BillingSettings, DunningSettings] | None = None,
    tpl: texts.Text | None = None, link: PaymentLink | None = None, owed: int | None = None,
) -> tuple[str, str, str]:
    """(subject, text, html) for the message in its language."""
    tpl = tpl or _template_for(msg)
    ctx = context_for(msg, now=now, fields=placeholders(tpl), isp_settings=isp_settings, link=link, owed=owed)
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


# -- sending ---------------------------------------------------------------------------

@dataclass
class _Prepared:
    """A rendered message, ready to be marked "sending" and handed to its channel."""

    message_id: int
    channel: str
    subject: str
    text: str
    html: str
    recipient: str
    encoding: str
    segments: int | None
    # Prepared in a batch: the UPDATE (and its WHERE parameters) that marks the message
    # "sending" only if nothing it was rendered from has changed since, and the template
    # used (by its key), which must still be the current one.
    guard: tuple[str, list] | None = None
    template_key: tuple[str, str, str] | None = None
    template: texts.Text | None = None


def _rendered(msg: Message, *, now: datetime, isp_settings, tpl=None, link=None, owed=None) -> _Prepared:
    subject, text, html = render_message(msg, now=now, isp_settings=isp_settings, tpl=tpl, link=link, owed=owed)
    encoding, segments = "", None
    if msg.channel == Channel.SMS:
        cost = sms_cost(text)
        encoding, segments = cost.encoding, cost.segments
    return _Prepared(
        message_id=msg.pk, channel=msg.channel, subject=subject[:200], text=text, html=html,
        recipient=recipient_for(msg.subscriber, msg.channel), encoding=encoding, segments=segments,
    )


def prepare_sends(items, *, now: datetime) -> dict[int, _Prepared]:
    """The ``notifications.send`` preparer: renders a claimed batch's messages at once.

    One query for the messages with their subscribers, invoices and payments, the
    settings once, the payment links (reused or created) and balances in bulk. Only
    messages that are simply to be sent now are prepared; anything else (not queued any
    more, to be cancelled, held by quiet hours) is left to :func:`send_message`'s own
    path, which decides it under the message's row lock.
    """
    from ispbill.core.db import id_chunks

    wanted = {item.pk: item.payload.get("message_id") for item in items}
    wanted = {pk: mid for pk, mid in wanted.items() if isinstance(mid, int)}
    if not wanted:
        return {}
    stamp, isp_settings = _stamped_settings()
    if None in stamp:
        return {}
    billing, dunning = isp_settings
    release = sms_release_at(now, dunning=dunning)
    messages: dict[int, Message] = {}
    for part in id_chunks(sorted(set(wanted.values()))):
        qs = Message.objects.select_related("subscriber", "invoice", "payment").filter(pk__in=part, status=MessageStatus.QUEUED)
        messages.update((m.pk, m) for m in qs)
    todo = []
    for item_pk, message_id in wanted.items():
        msg = messages.get(message_id)
        if msg is None or why_not_send(msg) or (msg.channel == Channel.SMS and release is not None):
            continue
        tpl = _template_for(msg)
        todo.append((item_pk, msg, tpl, placeholders(tpl)))
    link_for = links.current_links(
        subscriber_ids={m.subscriber_id for _, m, _, f in todo if _needs_link(f)}, now=now,
        valid_days=dunning.payment_link_days,
    )
    owed = _balances({m.subscriber_id for _, m, _, f in todo if _needs_balance(m, f)})
    out = {}
    for item_pk, msg, tpl, fields in todo:
        link = link_for[msg.subscriber_id] if _needs_link(fields) else None
        balance = owed.get(msg.subscriber_id, 0) if _needs_balance(msg, fields) else None
        prepared = _rendered(msg, now=now, isp_settings=isp_settings, tpl=tpl, link=link, owed=balance)
        prepared.guard = _sending_guard(msg, stamp, link=link, owed=balance)
        prepared.template_key, prepared.template = _template_key(msg), tpl
        out[item_pk] = prepared
    return out


def _balances(subscriber_ids: set[int]) -> dict[int, int]:
    """Ledger sums (what each subscriber owes, before clamping at zero)."""
    from ispbill.core.db import id_chunks

    out: dict[int, int] = {}
    for part in id_chunks(sorted(subscriber_ids)):
        rows = LedgerEntry.objects.filter(subscriber_id__in=part).values("subscriber_id").annotate(s=Sum("amount_paisa"))
        out.update((r["subscriber_id"], r["s"] or 0) for r in rows)
    return out


_GUARD_SQL: dict[tuple, str] = {}


def _sending_guard(msg: Message, stamp: tuple, *, link: PaymentLink | None, owed: int | None) -> tuple[str, list]:
    """The UPDATE that marks a prepared message "sending" if, at that moment, the message
    is still queued and everything its text and its cancel checks were taken from is as
    it was: the subscriber's name, status, contact, language and grace days, the
    invoice's status, amount due, due date and number, the payment's amount, the payment
    link (not revoked), the balance, and both settings rows (their ``updated_at``)."""
    shape = (connection.vendor, msg.invoice_id is not None, msg.payment_id is not None, link is not None, owed is not None)
    sql = _GUARD_SQL.get(shape)
    if sql is None:
        sql = _GUARD_SQL[shape] = _guard_sql(*shape[1:])
    sub = msg.subscriber
    params = [
        msg.pk, MessageStatus.QUEUED.value,
        sub.pk, sub.status, sub.name, sub.phone, sub.email, sub.language,
        -1 if sub.grace_days_override is None else sub.grace_days_override,
    ]
    if msg.invoice_id is not None:
        inv = msg.invoice
        due_on = Invoice._meta.get_field("due_on").get_db_prep_value(inv.due_on, connection)
        params += [inv.pk, inv.status, inv.amount_due_paisa, due_on, inv.number]
    if msg.payment_id is not None:
        params += [msg.payment_id, msg.payment.amount_paisa]
    if link is not None:
        params += [link.pk]
    if owed is not None:
        params += [sub.pk, owed]
    params += list(stamp)
    return sql, params


def _guard_sql(invoice: bool, payment: bool, link: bool, balance: bool) -> str:
    qn = connection.ops.quote_name

    def table(model) -> str:
        return qn(model._meta.db_table)

    def col(model, name: str) -> str:
        return qn(model._meta.get_field(name).column)

    m = Message
    sets = ", ".join(f"{col(m, f)} = %s" for f in ("status", "sending_at", "subject", "body", "recipient", "encoding", "segments"))
    where = [
        f"{col(m, 'id')} = %s", f"{col(m, 'status')} = %s",
        f"EXISTS (SELECT 1 FROM {table(Subscriber)} WHERE {col(Subscriber, 'id')} = %s AND {col(Subscriber, 'status')} = %s "
        f"AND {col(Subscriber, 'name')} = %s AND {col(Subscriber, 'phone')} = %s AND {col(Subscriber, 'email')} = %s "
        f"AND {col(Subscriber, 'language')} = %s AND COALESCE({col(Subscriber, 'grace_days_override')}, -1) = %s)",
    ]
    if invoice:
        where.append(
            f"EXISTS (SELECT 1 FROM {table(Invoice)} WHERE {col(Invoice, 'id')} = %s AND {col(Invoice, 'status')} = %s "
            f"AND {col(Invoice, 'amount_due_paisa')} = %s AND {col(Invoice, 'due_on')} = %s AND {col(Invoice, 'number')} = %s)"
        )
    if payment:
        where.append(
            f"EXISTS (SELECT 1 FROM {table(Payment)} WHERE {col(Payment, 'id')} = %s AND {col(Payment, 'amount_paisa')} = %s)"
        )
    if link:
        where.append(
            f"EXISTS (SELECT 1 FROM {table(PaymentLink)} WHERE {col(PaymentLink, 'id')} = %s "
            f"AND {col(PaymentLink, 'revoked_at')} IS NULL)"
        )
    if balance:
        where.append(
            f"(SELECT COALESCE(SUM({col(LedgerEntry, 'amount_paisa')}), 0) FROM {table(LedgerEntry)} "
            f"WHERE {col(LedgerEntry, 'subscriber')} = %s) = %s"
        )
    where += [
        f"(SELECT {col(BillingSettings, 'updated_at')} FROM {table(BillingSettings)} WHERE {col(BillingSettings, 'id')} = 1) = %s",
        f"(SELECT {col(DunningSettings, 'updated_at')} FROM {table(DunningSettings)} WHERE {col(DunningSettings, 'id')} = 1) = %s",
    ]
    return f"UPDATE {table(m)} SET {sets} WHERE " + " AND ".join(where)


def _mark_prepared_sending(prepared: _Prepared, now: datetime) -> bool:
    """Record "sending" for a message prepared in a batch, in one statement (committed
    on its own); False if anything it was rendered from has changed since."""
    sql, where = prepared.guard
    sending_at = Message._meta.get_field("sending_at").get_db_prep_save(now, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [
            MessageStatus.SENDING.value, sending_at, prepared.subject, prepared.text, prepared.recipient,
            prepared.encoding, prepared.segments, *where,
        ])
        return cursor.rowcount == 1


def _prepare_locked(message_id: int, now: datetime) -> _Prepared | None:
    """The unprepared path: load, check and render the message under its row lock and
    record "sending"; None when there is nothing to send (already settled, uncertain,
    cancelled). Raises RetryLater during quiet hours."""
    with transaction.atomic():
        # Lock the message row only: invoice and payment are nullable (LEFT JOIN), and
        # PostgreSQL refuses FOR UPDATE on the nullable side of an outer join.
        msg = (
            Message.objects.select_for_update(of=("self",))
            .select_related("subscriber", "invoice")  # the payment (receipts only) loads when rendered
            .get(pk=message_id)
        )
        if msg.status in (MessageStatus.SENT, MessageStatus.CANCELLED, MessageStatus.DEAD, MessageStatus.UNCERTAIN):
            return None
        if msg.status == MessageStatus.SENDING:
            # An earlier attempt called the provider and never recorded the answer: it may
            # have gone out. Resending could duplicate it, so staff decide.
            msg.status = MessageStatus.UNCERTAIN
            msg.error = "the worker stopped while sending; not resent automatically (check with the subscriber, resend by hand if needed)"
            msg.save(update_fields=["status", "error"])
            return None
        reason = why_not_send(msg)
        if reason:
            msg.status = MessageStatus.CANCELLED
            msg.error = reason
            msg.save(update_fields=["status", "error"])
            return None
        isp_settings = current_settings()
        if msg.channel == Channel.SMS:
            release = sms_release_at(now, dunning=isp_settings[1])
            if release is not None:
                raise outbox.RetryLater("quiet hours", after_seconds=max(1, int((release - now).total_seconds())), count_attempt=False)
        prepared = _rendered(msg, now=now, isp_settings=isp_settings)
        msg.subject, msg.body, msg.recipient = prepared.subject, prepared.text, prepared.recipient
        if msg.channel == Channel.SMS:
            msg.encoding, msg.segments = prepared.encoding, prepared.segments
        msg.status = MessageStatus.SENDING
        msg.sending_at = now
        msg.save(update_fields=["subject", "body", "recipient", "encoding", "segments", "status", "sending_at"])
    return prepared


_OUTCOME_SQL: dict[tuple, str] = {}


def _outcome_sql(*, sent: bool) -> str:
    key = (connection.vendor, sent)
    sql = _OUTCOME_SQL.get(key)
    if sql is None:
        qn = connection.ops.quote_name
        sets = ("status", "sent_at", "provider_reference", "error") if sent else ("status", "error")
        guard = f"{qn('status')} IN (%s, %s)" if sent else f"{qn('status')} = %s"
        sql = _OUTCOME_SQL[key] = (
            f"UPDATE {qn(Message._meta.db_table)} SET {', '.join(f'{qn(c)} = %s' for c in sets)} "
            f"WHERE {qn('id')} = %s AND {guard}"
        )
    return sql


def _sent_write(message_id: int, now: datetime, provider_reference: str) -> tuple[str, list]:
    """Record the provider's acceptance. Guarded on "sending": if the lease ran out and
    another worker has since marked the message uncertain, the provider's late answer
    is still recorded as sent."""
    sent_at = Message._meta.get_field("sent_at").get_db_prep_save(now, connection)
    return _outcome_sql(sent=True), [
        MessageStatus.SENT.value, sent_at, provider_reference, "", message_id,
        MessageStatus.SENDING.value, MessageStatus.UNCERTAIN.value,
    ]


def _failed_write(message_id: int, status: str, error: str) -> tuple[str, list]:
    return _outcome_sql(sent=False), [str(status), error, message_id, MessageStatus.SENDING.value]


@outbox.handler(SEND_TOPIC, prepare=prepare_sends)
def send_message(item, attempt) -> None:
    now = attempt.now
    prepared = attempt.prepared
    if (
        prepared is None
        # Staff edited the template since (templates are cached for up to 10 s)?
        or _template(*prepared.template_key) != prepared.template
        or not _mark_prepared_sending(prepared, now)
    ):
        # Not prepared, or something changed since: decide and render it here.
        prepared = _prepare_locked(item.payload["message_id"], now)
        if prepared is None:
            return
    message_id = prepared.message_id
    reference = f"ispbill-{message_id}"
    # The provider's answer is recorded on the message in the same commit as the
    # outbox row's outcome.
    try:
        if prepared.channel == Channel.SMS:
            result = sms_channel().send_sms(to=prepared.recipient, text=prepared.text, reference=reference)
        else:
            result = email_channel().send_email(
                to=prepared.recipient, subject=prepared.subject, text=prepared.text, html=prepared.html, reference=reference
            )
    except PermanentSendError as exc:
        attempt.record_with_outcome(*_failed_write(message_id, MessageStatus.DEAD, str(exc)[:2000]))
        raise outbox.PermanentFailure(str(exc)) from None
    except (TemporarySendError, Exception) as exc:
        # The provider did not take it (or we cannot tell after a timeout): back to
        # queued so the outbox retries; if attempts run out the outbox marks it dead.
        status = MessageStatus.DEAD if item.attempts >= item.max_attempts else MessageStatus.QUEUED
        attempt.record_with_outcome(*_failed_write(message_id, status, f"{type(exc).__name__}: {exc}"[:2000]))
        raise
    attempt.record_with_outcome(*_sent_write(message_id, now, result.provider_reference[:200]))
