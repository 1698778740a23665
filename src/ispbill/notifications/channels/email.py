"""Email through Django's mail backend (SMTP in production, the console by default).

Settings (from the environment, see ``settings.py``): ``EMAIL_HOST``, ``EMAIL_PORT``,
``EMAIL_HOST_USER``, ``EMAIL_HOST_PASSWORD``, ``EMAIL_USE_TLS``, ``EMAIL_USE_SSL``,
``EMAIL_TIMEOUT``, ``DEFAULT_FROM_EMAIL``. Each message carries
``X-Ispbill-Reference: <reference>`` so it can be found in mail logs and bounces.
"""

from __future__ import annotations

import smtplib
from email.utils import make_msgid, parseaddr

from django.conf import settings
from django.core.mail import BadHeaderError, EmailMultiAlternatives

from ispbill.notifications.channels.base import PermanentSendError, SendResult, TemporarySendError

REFERENCE_HEADER = "X-Ispbill-Reference"


def _reply(code, message) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    return f"{code} {' '.join(text.split())}"


def _smtp_error(exc: smtplib.SMTPException) -> Exception:
    """Translate an SMTP failure: a 5xx refusal of the recipient, sender or data is
    permanent; 4xx replies and everything else (auth, dropped connection) may pass."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = list(exc.recipients.values())
        detail = "; ".join(f"{addr}: {_reply(code, msg)}" for addr, (code, msg) in exc.recipients.items())
        if replies and all(500 <= code < 600 for code, _ in replies):
            return PermanentSendError(f"SMTP server refused the recipient: {detail}")
        return TemporarySendError(f"SMTP server deferred the recipient: {detail}")
    if isinstance(exc, (smtplib.SMTPSenderRefused, smtplib.SMTPDataError)):
        what = "sender" if isinstance(exc, smtplib.SMTPSenderRefused) else "message"
        reply = _reply(exc.smtp_code, exc.smtp_error)
        if 500 <= exc.smtp_code < 600:
            return PermanentSendError(f"SMTP server refused the {what}: {reply}")
        return TemporarySendError(f"SMTP server deferred the {what}: {reply}")
    if isinstance(exc, smtplib.SMTPResponseException):
        return TemporarySendError(f"SMTP error: {_reply(exc.smtp_code, exc.smtp_error)}")
    return TemporarySendError(f"SMTP error: {type(exc).__name__}: {exc}")


class DjangoEmail:
    """Sends plain text with an HTML alternative through Django's configured backend."""

    def send_email(self, *, to: str, subject: str, text: str, html: str, reference: str) -> SendResult:
        from_email = settings.DEFAULT_FROM_EMAIL
        # Our own Message-ID (instead of Django's, which resolves the host's FQDN) doubles
        # as the provider reference staff can search mail logs for. Kept short (no
        # reference in it: that has its own header) so it is never folded.
        domain = parseaddr(from_email)[1].rpartition("@")[2] or "localhost"
        message_id = make_msgid(domain=domain)
        message = EmailMultiAlternatives(
            subject=subject, body=text, from_email=from_email, to=[to],
            headers={REFERENCE_HEADER: reference, "Message-ID": message_id},
        )
        if html:
            message.attach_alternative(html, "text/html")
        try:
            message.send(fail_silently=False)
        except (BadHeaderError, ValueError) as exc:
            # A newline in the subject or an address that cannot be encoded: resending the
            # same message cannot help.
            raise PermanentSendError(f"the message cannot be sent: {exc}") from None
        except smtplib.SMTPException as exc:  # includes SMTPServerDisconnected
            raise _smtp_error(exc) from None
        except OSError as exc:  # connection refused, socket timeout, TLS failure, DNS
            raise TemporarySendError(f"SMTP server unreachable: {type(exc).__name__}: {exc}") from None
        return SendResult(provider_reference=message_id)
