"""Staff editing of message templates (built-in text unless customised)."""

from __future__ import annotations

from ispbill.core.errors import DomainError, NotFound
from ispbill.notifications import services, texts
from ispbill.notifications.models import MessageTemplate


def _check_key(kind: str, language: str, channel: str) -> texts.Text:
    default = texts.DEFAULTS.get((kind, language, channel))
    if default is None:
        raise NotFound(f"no template {kind}/{language}/{channel}", code="template_not_found")
    return default


def _out(kind, language, channel, text: texts.Text, customised: bool) -> dict:
    return {"kind": kind, "language": language, "channel": channel, "subject": text.subject, "body": text.body, "customised": customised}


def effective_templates() -> list[dict]:
    custom = {(t.kind, t.language, t.channel): t for t in MessageTemplate.objects.all()}
    out = []
    for key, default in sorted(texts.DEFAULTS.items()):
        row = custom.get(key)
        out.append(_out(*key, texts.Text(row.subject, row.body) if row else default, row is not None))
    return out


def save_template(*, kind: str, language: str, channel: str, subject: str, body: str) -> dict:
    _check_key(kind, language, channel)
    unknown = texts.unknown_placeholders(body) + texts.unknown_placeholders(subject)
    if unknown:
        raise DomainError(
            f"unknown placeholders: {', '.join('{' + u + '}' for u in unknown)}; use {', '.join('{' + p + '}' for p in texts.PLACEHOLDERS)}",
            code="invalid_template", field="body", status=422,
        )
    if channel == "email" and not subject.strip():
        raise DomainError("an email template needs a subject", code="invalid_template", field="subject", status=422)
    MessageTemplate.objects.update_or_create(kind=kind, language=language, channel=channel, defaults={"subject": subject, "body": body})
    services.forget_templates()
    return _out(kind, language, channel, texts.Text(subject, body), True)


def reset_template(*, kind: str, language: str, channel: str) -> dict:
    default = _check_key(kind, language, channel)
    MessageTemplate.objects.filter(kind=kind, language=language, channel=channel).delete()
    services.forget_templates()
    return _out(kind, language, channel, default, False)
