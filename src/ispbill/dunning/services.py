"""The dunning run: decide which reminders are due and queue them.

One pass over the invoices whose due date puts them inside the ladder's window. For each,
the pure policy picks the current step; a Message (dedupe key: invoice, step, channel)
and its outbox item are written unless that key was written before. The pass holds a
lock for its duration so two workers running it at once queue nothing twice, and the
unique key backs that up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import connection, transaction

from ispbill.billing.choices import InvoiceStatus
from ispbill.billing.models import BillingSettings, Invoice
from ispbill.core.db import advisory_xact_lock, bulk_insert, id_chunks, is_postgres, reserve_ids
from ispbill.core.timeutil import isp_zone, local_date
from ispbill.dunning.models import DunningSettings
from ispbill.dunning.policy import Channel, InvoiceState, SubscriberState, current_step, quiet_release, window
from ispbill.notifications.choices import MessageStatus, Trigger
from ispbill.notifications.models import Message
from ispbill.notifications.services import SEND_TOPIC
from ispbill.worker.models import OutboxItem, OutboxState

log = logging.getLogger("ispbill.dunning")


@dataclass
class DunningResult:
    today: date
    invoices_checked: int = 0
    queued: int = 0


def dedupe_key(invoice_id: int, step_key: str, channel: str) -> str:
    return f"dunning:{invoice_id}:{step_key}:{channel}"


def run_dunning(*, now: datetime, batch_size: int = 20_000) -> DunningResult:
    """Queue every reminder due as of ``now`` (dates in the ISP's zone)."""
    today = local_date(now)
    billing = BillingSettings.load()
    ds = DunningSettings.load()
    ladder = ds.steps()
    result = DunningResult(today=today)
    if not ladder:
        return result
    max_override = max(billing.grace_days, 60)
    first, last = window(ladder, grace_days_max=max_override + 1)
    due_from, due_to = today - timedelta(days=last), today - timedelta(days=first)
    release = quiet_release(now.astimezone(isp_zone()), start=ds.quiet_hours_start, end=ds.quiet_hours_end)
    decide = _decider(ladder, today, grace_days=billing.grace_days)
    last_id = 0
    while True:
        with transaction.atomic():
            advisory_xact_lock("dunning")
            rows = list(
                Invoice.objects.filter(
                    id__gt=last_id, status__in=(InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID),
                    amount_due_paisa__gt=0, due_on__gte=due_from, due_on__lte=due_to,
                )
                .exclude(subscriber__status="disabled")
                .order_by("id")
                .values_list(
                    "id", "due_on", "amount_due_paisa", "status", "subscriber_id", "subscriber__status",
                    "subscriber__never_suspend", "subscriber__grace_days_override", "subscriber__phone",
                    "subscriber__email", "subscriber__language",
                )[:batch_size]
            )
            if not rows:
                break
            last_id = rows[-1][0]
            result.invoices_checked += len(rows)
            wanted = []
            add = wanted.append
            for inv_id, due, amount, status, sub_id, sub_status, never, grace_override, phone, email, language in rows:
                decision = decide(due, amount, status, sub_status, never, grace_override, bool(phone), bool(email))
                if decision is None:
                    continue
                step_key, kind, channels = decision
                lang = language if language in ("bn", "en") else ("bn" if phone.startswith("+880") else "en")
                for channel, is_sms in channels:
                    add((f"dunning:{inv_id}:{step_key}:{channel}", inv_id, sub_id, step_key, kind, channel, is_sms,
                         phone if is_sms else email, lang))
            result.queued += _queue(wanted, now=now, release=release)
    if result.queued:
        log.info("dunning %s: queued %d messages for %d invoices checked", today, result.queued, result.invoices_checked)
    return result


def _decider(ladder, today: date, *, grace_days: int):
    """``policy.current_step`` memoised for one run, flattened for :func:`_queue`.

    The step depends only on the invoice's and subscriber's state (a handful of
    distinct combinations among many invoices: same due date, same package price), so
    each combination is decided once by the pure policy. Returns None or
    ``(step key, kind, ((channel, is_sms), ...))``.
    """
    cache: dict[tuple, tuple | None] = {}

    def decide(due, amount, status, sub_status, never, grace_override, has_phone, has_email):
        key = (due, amount, status, sub_status, never, grace_override, has_phone, has_email)
        try:
            return cache[key]
        except KeyError:
            pass
        step = current_step(
            InvoiceState(due, amount, status),
            SubscriberState(sub_status, never, grace_override, has_phone, has_email),
            ladder, today, grace_days=grace_days,
        )
        decision = None
        if step is not None:
            decision = (step.step.key, str(step.step.kind), tuple((str(c), c is Channel.SMS) for c in step.channels))
        cache[key] = decision
        return decision

    return decide


def _queue(wanted: list, *, now: datetime, release: datetime | None) -> int:
    """Insert a Message and its outbox item for every wanted key not queued before."""
    if not wanted:
        return 0
    existing = _existing_keys([w[0] for w in wanted])
    new = [w for w in wanted if w[0] not in existing] if existing else wanted
    if not new:
        return 0
    ids = reserve_ids(Message, len(new))
    max_attempts = _max_attempts()
    auto, queued, pending = Trigger.AUTO.value, MessageStatus.QUEUED.value, OutboxState.PENDING.value
    sms_available = release if release is not None else now
    message_rows, outbox_rows = [], []
    add_message, add_item = message_rows.append, outbox_rows.append
    for msg_id, (key, inv_id, sub_id, step_key, kind, channel, is_sms, recipient, lang) in zip(ids, new):
        add_message(
            (msg_id, sub_id, inv_id, kind, step_key, channel, auto, queued, key, recipient, lang, "", "", "", "", "", now)
        )
        # The payload is what json.dumps({"message_id": msg_id}) writes, without its cost.
        add_item(
            (SEND_TOPIC, f"message:{msg_id}", f'{{"message_id": {msg_id}}}', pending, 0, max_attempts,
             sms_available if is_sms else now, "", "", now)
        )
    bulk_insert(
        Message,
        ["id", "subscriber_id", "invoice_id", "kind", "step", "channel", "trigger", "status", "dedupe_key", "recipient",
         "language", "subject", "body", "encoding", "provider_reference", "error", "created_at"],
        message_rows,
    )
    bulk_insert(
        OutboxItem,
        ["topic", "dedupe_key", "payload", "state", "attempts", "max_attempts", "next_attempt_at", "locked_by",
         "last_error", "created_at"],
        outbox_rows,
    )
    return len(new)


def _existing_keys(keys: list[str]) -> set[str]:
    """Which of ``keys`` a Message already has (exact, by the unique dedupe key).

    Plain SQL: the ORM's per-parameter preparation of a 100,000-key IN list costs more
    than the queries. PostgreSQL binds each part as one text[] parameter.
    """
    table = connection.ops.quote_name(Message._meta.db_table)
    column = connection.ops.quote_name("dedupe_key")
    found: set[str] = set()
    with connection.cursor() as cursor:
        for part in id_chunks(keys):
            if is_postgres():
                cursor.execute(f"SELECT {column} FROM {table} WHERE {column} = ANY(%s)", [list(part)])
            else:
                marks = ", ".join(["%s"] * len(part))
                cursor.execute(f"SELECT {column} FROM {table} WHERE {column} IN ({marks})", list(part))
            found.update(row[0] for row in cursor.fetchall())
    return found


def _max_attempts() -> int:
    from django.conf import settings

    return settings.ISPBILL_OUTBOX_MAX_ATTEMPTS


def update_dunning_settings(**changes) -> DunningSettings:
    """Change the reminder ladder, quiet hours or payment-link lifetime."""
    from datetime import time as dtime

    from ispbill.core.errors import DomainError

    with transaction.atomic():
        DunningSettings.load()
        ds = DunningSettings.objects.select_for_update().get(pk=1)
        if changes.get("ladder") is not None:
            ladder = [dict(s) for s in changes["ladder"]]
            offsets = [s["offset"] for s in ladder]
            if len(set(offsets)) != len(offsets):
                raise DomainError("two ladder steps share an offset", code="invalid_ladder", field="ladder", status=422)
            ds.ladder = sorted(
                ({"offset": s["offset"], "kind": s["kind"], "channels": sorted(set(s["channels"]))} for s in ladder),
                key=lambda s: s["offset"],
            )
        for field in ("quiet_hours_start", "quiet_hours_end"):
            if changes.get(field) is not None:
                hh, mm = changes[field].split(":")
                setattr(ds, field, dtime(int(hh), int(mm)))
        if changes.get("payment_link_days") is not None:
            ds.payment_link_days = changes["payment_link_days"]
        ds.save()
        return ds
