"""Message settings for staff: the templates (list, edit, reset, preview) and test sends
through the configured SMS and email channels. Every change records an audit event."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Sum
from django.utils.translation import gettext as _

from ispbill.audit.services import Target, record
from ispbill.billing.models import Invoice, LedgerEntry
from ispbill.core.errors import DomainError, NotFound
from ispbill.core.phone import PhoneError, normalize_bd_mobile
from ispbill.core.timeutil import isp_zone
from ispbill.dunning.policy import DUNNING_KINDS, Channel, MessageKind
from ispbill.notifications import services, templates_admin, texts
from ispbill.notifications.channels import PermanentSendError, TemporarySendError, email_channel, sms_channel
from ispbill.notifications.choices import MessageKindChoice
from ispbill.notifications.models import Message, MessageTemplate
from ispbill.notifications.sms import sms_cost
from ispbill.payments.models import Payment, PaymentLink
from ispbill.subscribers.models import Subscriber

SUBJECT_MAX = 200
BODY_MAX = 2000
LANGUAGES = ("en", "bn")
CHANNELS = (Channel.SMS.value, Channel.EMAIL.value)
KINDS = tuple(MessageKindChoice.values)


# -- templates --------------------------------------------------------------------------------

def template_key(kind: str, language: str, channel: str) -> tuple[str, str, str]:
    """The key if a built-in template exists for it, else NotFound."""
    if (kind, language, channel) not in texts.DEFAULTS:
        raise NotFound(_("there is no message template %(key)s") % {"key": f"{kind}/{language}/{channel}"},
                       code="template_not_found")
    return kind, language, channel


def template_rows() -> list[dict]:
    """Every kind × language × channel, in the kinds' order, with ``customised``."""
    order = {k: i for i, k in enumerate(KINDS)}
    rows = templates_admin.effective_templates()
    return sorted(rows, key=lambda r: (order.get(r["kind"], 99), LANGUAGES.index(r["language"]), CHANNELS.index(r["channel"])))


def current_template(kind: str, language: str, channel: str) -> tuple[texts.Text, bool]:
    """(text in use, customised?) for one template."""
    template_key(kind, language, channel)
    row = MessageTemplate.objects.filter(kind=kind, language=language, channel=channel).first()
    if row is not None:
        return texts.Text(row.subject, row.body), True
    return texts.DEFAULTS[(kind, language, channel)], False


def check_template(*, channel: str, subject: str, body: str) -> None:
    """Refuse a template the send path could not use well: empty, too long, an unknown
    placeholder, an email without a subject."""
    if not body.strip():
        raise DomainError(_("the text must not be empty"), code="invalid_template", field="body", status=422)
    if len(body) > BODY_MAX:
        raise DomainError(_("the text may be at most %(n)d characters") % {"n": BODY_MAX}, code="invalid_template",
                          field="body", status=422)
    if len(subject) > SUBJECT_MAX:
        raise DomainError(_("the subject may be at most %(n)d characters") % {"n": SUBJECT_MAX}, code="invalid_template",
                          field="subject", status=422)
    unknown = texts.unknown_placeholders(body) + texts.unknown_placeholders(subject)
    if unknown:
        raise DomainError(
            _("unknown placeholders: %(unknown)s; use %(known)s") % {
                "unknown": ", ".join("{" + u + "}" for u in unknown),
                "known": ", ".join("{" + p + "}" for p in texts.PLACEHOLDERS),
            },
            code="invalid_template", field="body", status=422,
        )
    if channel == Channel.EMAIL and not subject.strip():
        raise DomainError(_("an email template needs a subject"), code="invalid_template", field="subject", status=422)


def _template_audit(kind, language, channel, text: texts.Text, customised: bool) -> dict:
    return {"subject": text.subject, "body": text.body, "customised": customised}


def _template_target(kind: str, language: str, channel: str) -> Target:
    return Target("messagetemplate", None, f"{kind}/{language}/{channel}")


def save_template(
    *, kind: str, language: str, channel: str, subject: str, body: str, now: datetime, user=None, ip: str | None = None,
) -> dict:
    """Save a customised template (checked as :func:`check_template`) and record
    ``settings.template``; nothing is recorded when the text did not change."""
    template_key(kind, language, channel)
    body = body.replace("\r\n", "\n")
    subject = subject.strip() if channel == Channel.EMAIL else ""
    check_template(channel=channel, subject=subject, body=body)
    with transaction.atomic():
        before, was_custom = current_template(kind, language, channel)
        out = templates_admin.save_template(kind=kind, language=language, channel=channel, subject=subject, body=body)
        after = texts.Text(subject, body)
        if before != after or not was_custom:
            record(
                action="settings.template", at=now, user=user, target=_template_target(kind, language, channel),
                before=_template_audit(kind, language, channel, before, was_custom),
                after=_template_audit(kind, language, channel, after, True),
                summary=f"message template {kind}/{language}/{channel} edited", ip=ip,
            )
    return out


def reset_template(*, kind: str, language: str, channel: str, now: datetime, user=None, ip: str | None = None) -> dict:
    """Go back to the built-in text and record ``settings.template`` (if it was customised)."""
    template_key(kind, language, channel)
    with transaction.atomic():
        before, was_custom = current_template(kind, language, channel)
        out = templates_admin.reset_template(kind=kind, language=language, channel=channel)
        if was_custom:
            record(
                action="settings.template", at=now, user=user, target=_template_target(kind, language, channel),
                before=_template_audit(kind, language, channel, before, True),
                after=_template_audit(kind, language, channel, texts.DEFAULTS[(kind, language, channel)], False),
                summary=f"message template {kind}/{language}/{channel} reset to the built-in text", ip=ip,
            )
    return out


# -- preview ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Preview:
    subject: str
    text: str
    html: str
    sample: str  # who the sample is
    encoding: str = ""
    units: int = 0
    segments: int = 0
    per_segment: int = 0  # characters (units) per segment for this encoding and length


SAMPLE_NAME = "Rahim Uddin"


def _sample_subscriber() -> tuple[Subscriber, bool]:
    sub = Subscriber.objects.order_by("pk").first()
    if sub is not None:
        return sub, True
    return Subscriber(name=SAMPLE_NAME, phone="+8801712345678", email="rahim@example.com", status="active"), False


def preview_template(
    *, kind: str, language: str, channel: str, subject: str, body: str, now: datetime,
) -> Preview:
    """Render a template (saved or not) for a sample subscriber exactly as a send renders
    it, writing nothing: the first subscriber with their latest invoice, balance, payment
    and payment link where they exist, or a built-in sample. Unknown placeholders and the
    other mistakes :func:`check_template` refuses raise DomainError."""
    template_key(kind, language, channel)
    body = body.replace("\r\n", "\n")
    subject = subject if channel == Channel.EMAIL else ""
    check_template(channel=channel, subject=subject, body=body)
    sub, real = _sample_subscriber()
    today = now.astimezone(isp_zone()).date()
    msg = Message(subscriber=sub, kind=kind, channel=channel, language=language, created_at=now)
    # As queued: reminders carry their invoice, receipts their payment; the samples get
    # an id of -1 (never saved) so the renderer takes them as present.
    if kind in DUNNING_KINDS:
        msg.invoice = (
            Invoice.objects.filter(subscriber=sub).order_by("-issued_on", "-id").first() if real else None
        ) or Invoice(pk=-1, number="INV-2026-000123", due_on=today + timedelta(days=5), amount_due_paisa=100_000, status="open")
    if kind == MessageKind.RECEIPT:
        msg.payment = (
            Payment.objects.filter(subscriber=sub).order_by("-received_at", "-id").first() if real else None
        ) or Payment(pk=-1, amount_paisa=100_000)
    if real:
        owed = LedgerEntry.objects.filter(subscriber=sub).aggregate(s=Sum("amount_paisa"))["s"] or 0
    else:
        owed = 0 if kind == MessageKind.RECEIPT else 100_000
    link = _sample_link(sub, real=real, now=now)
    tpl = texts.Text(subject, body)
    subj, text, html = services.render_message(msg, now=now, isp_settings=services.current_settings(), tpl=tpl, link=link, owed=owed)
    who = sub.name if real else _("built-in sample (no subscribers yet)")
    if channel != Channel.SMS:
        return Preview(subject=subj[:200], text=text, html=html, sample=who)
    cost = sms_cost(text)
    single, multi = (160, 153) if cost.encoding == "GSM-7" else (70, 67)
    return Preview(
        subject="", text=text, html="", sample=who, encoding=cost.encoding, units=cost.units, segments=cost.segments,
        per_segment=single if cost.segments <= 1 else multi,
    )


def _sample_link(sub: Subscriber, *, real: bool, now: datetime) -> PaymentLink:
    """The subscriber's current payment link if there is one; otherwise an unsaved link
    numbered like the next one, so the URL (and the SMS length) is as a send would make it."""
    if real:
        link = (
            PaymentLink.objects.filter(subscriber=sub, revoked_at__isnull=True, expires_at__gte=now + timedelta(days=7))
            .order_by("-expires_at").first()
        )
        if link is not None:
            return link
    last = PaymentLink.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    return PaymentLink(pk=last + 1, subscriber_id=sub.pk or 1, created_at=now, expires_at=now + timedelta(days=30))


# -- test sends -------------------------------------------------------------------------------

TEST_TEXTS = {
    "en": "{isp_name}: this is a test message from ispbill, sent {at}.",
    "bn": "{isp_name}: এটি ispbill থেকে একটি পরীক্ষামূলক বার্তা, পাঠানো হয়েছে {at}।",
}


@dataclass(frozen=True)
class TestSend:
    channel: str
    to: str
    ok: bool
    reference: str = ""
    provider_reference: str = ""
    error: str = ""
    encoding: str = ""
    segments: int = 0


def _test_text(language: str, now: datetime) -> str:
    billing, _dunning = services.current_settings()
    at = f"{now.astimezone(isp_zone()):%d %b %Y %H:%M}"
    return TEST_TEXTS[language].format(isp_name=billing.isp_name, at=at)


def send_test(*, channel: str, to: str, language: str = "en", now: datetime, user=None, ip: str | None = None) -> TestSend:
    """Send one test SMS or email through the configured channel now (no outbox, no
    quiet hours: staff are checking the provider) and record ``settings.test_send`` with
    the outcome. A refused address raises DomainError; a provider failure is an outcome."""
    if channel not in CHANNELS:
        raise DomainError(_("choose SMS or email"), code="invalid_channel", field="channel", status=422)
    if language not in LANGUAGES:
        raise DomainError(_("choose English or Bangla"), code="invalid_language", field="language", status=422)
    to = (to or "").strip()
    if channel == Channel.SMS:
        try:
            to = normalize_bd_mobile(to)
        except PhoneError as exc:
            raise DomainError(str(exc), code="invalid_phone", field="to", status=422) from None
    else:
        try:
            validate_email(to)
        except ValidationError:
            raise DomainError(_("'%(to)s' is not an email address") % {"to": to}, code="invalid_email", field="to",
                              status=422) from None
    text = _test_text(language, now)
    reference = f"ispbill-test-{uuid.uuid4().hex[:12]}"
    cost = sms_cost(text) if channel == Channel.SMS else None
    try:
        if channel == Channel.SMS:
            result = sms_channel().send_sms(to=to, text=text, reference=reference)
        else:
            subject = text.split(":", 1)[0] + (": test message" if language == "en" else ": পরীক্ষামূলক বার্তা")
            result = email_channel().send_email(to=to, subject=subject, text=text, html=texts.to_html(text), reference=reference)
        outcome = TestSend(channel=channel, to=to, ok=True, reference=reference, provider_reference=result.provider_reference)
    except (PermanentSendError, TemporarySendError) as exc:
        outcome = TestSend(channel=channel, to=to, ok=False, reference=reference, error=str(exc)[:500])
    except Exception as exc:  # a misconfigured provider must show as an outcome, not a server error
        outcome = TestSend(channel=channel, to=to, ok=False, reference=reference, error=f"{type(exc).__name__}: {exc}"[:500])
    if cost is not None:
        outcome = TestSend(**{**outcome.__dict__, "encoding": cost.encoding, "segments": cost.segments})
    with transaction.atomic():
        record(
            action="settings.test_send", at=now, user=user, target=Target("channel", None, channel),
            before=None,
            after={k: v for k, v in outcome.__dict__.items() if v not in ("", 0) or k == "ok"} | {"language": language},
            summary=f"test {channel} to {to}: {'sent' if outcome.ok else 'failed'}", ip=ip,
        )
    return outcome


def recent_test_sends(limit: int = 10) -> list:
    """The latest test sends, newest first (from the audit log)."""
    from ispbill.audit.models import AuditEvent

    return list(AuditEvent.objects.filter(action="settings.test_send").order_by("-at", "-id")[:limit])

