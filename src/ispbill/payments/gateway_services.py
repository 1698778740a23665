"""Paying through a gateway: attempts, browser returns, webhooks, settlement, re-queries.

The adapters in :mod:`ispbill.payments.gateways` speak the gateways' protocols and touch
no database; this module persists what they report:

* :func:`start_gateway_payment` stores a :class:`PaymentAttempt` for what the subscriber
  owes now and asks the gateway where to send the customer.
* Every browser return and webhook is stored raw first (:func:`store_inbound`, its own
  committed transaction), then :func:`process_inbound` has the adapter confirm it with the
  gateway (the browser's word is never taken) and :func:`settle` records the result.
* :func:`settle` is one transaction: the attempt row is locked, the payment is unique on
  (gateway, transaction id) so repeats and races credit once, amounts were compared with
  the attempt exactly by the adapter (``expected``), and anything that cannot be applied
  by itself becomes a ``needs_review`` payment for staff, never lost.
* :func:`requery_pending` (the ``payment_requery`` job) asks the gateway again about
  attempts whose confirmation was cut short by a gateway outage.
"""

from __future__ import annotations

import logging
import os
import secrets
import string
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F

from ispbill.audit import services as audit
from ispbill.audit.models import ActorKind
from ispbill.billing import ledger
from ispbill.core.backoff import doubling
from ispbill.core.db import insert_objects
from ispbill.core.errors import Conflict, DomainError, NotFound
from ispbill.core.money import from_paisa, to_paisa
from ispbill.payments import batching, services
from ispbill.payments.choices import (
    MONEY_MOVED_STATUSES,
    AttemptStatus,
    PaymentMethod,
    PaymentStatus,
    WebhookKind,
    WebhookOutcome,
)
from ispbill.payments.gateways import (
    GATEWAYS,
    Confirmation,
    Gateway,
    GatewayError,
    GatewayNotConfigured,
    GatewayRejected,
    GatewayUnavailable,
    StartRequest,
    Status,
    WebhookAck,
    configured_gateways,
)
from ispbill.payments.models import GatewaySwitch, InboundWebhook, Payment, PaymentAttempt

log = logging.getLogger("ispbill.payments")

#: How the payment page names each gateway.
LABELS = {"bkash": "bKash", "nagad": "Nagad", "sslcommerz": "Card / Rocket / other wallets (SSLCommerz)"}
#: Rejections that still say the customer's money moved: kept for staff, never dropped.
HOLD_CODES = frozenset({"amount_mismatch", "currency_mismatch", "unknown_reference"})
#: Rejections that say the message is not authentic (answered 403, not 400).
FORGERY_CODES = frozenset({"bad_signature", "bad_cert_url", "wrong_topic"})
REQUERY_GIVE_UP = timedelta(days=3)
REQUERY_FIRST_INTERVAL = timedelta(minutes=2)
REQUERY_MAX_INTERVAL = timedelta(hours=1)
_REFERENCE_ALPHABET = string.ascii_uppercase + string.digits
_REDACTED_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-csrftoken"}
_EXTRA_ENV = ("NAGAD_SIGNATURE_HASH",)


# -- which gateways are configured -----------------------------------------------------------

_adapter_options: dict[str, dict] = {}
_registry: dict = {"key": None, "adapters": {}}
_registry_lock = threading.Lock()


def set_adapter_options(name: str, **options) -> dict:
    """Constructor options for one adapter (e.g. bKash ``sns_host_pattern``/``sns_fetch``
    so a simulator's certificate is accepted, or ``timeout``); returns the previous ones.
    Used by tests and the demo; production needs none."""
    with _registry_lock:
        previous = _adapter_options.pop(name, {})
        if options:
            _adapter_options[name] = dict(options)
        _registry["key"] = None  # rebuilt on next use
        return previous


# -- the demo's simulators (``ispbill serve --demo-gateways``) ---------------------------------

#: Set by ``ispbill serve --demo-gateways`` for its children, with the simulators' TLS
#: certificate (PEM) in DEMO_SNS_CERT: bKash SNS certificates are then fetched from the
#: local simulator (https://127.0.0.1) instead of Amazon. Ignored in production mode.
DEMO_FLAG = "ISPBILL_DEMO_GATEWAYS"
DEMO_SNS_CERT = "ISPBILL_DEMO_SNS_CERT"
_demo_lock = threading.Lock()
_demo_checked = False


def _demo_fetch(cert_pem: str) -> Callable[[str], bytes]:
    import ssl

    import httpx

    context = ssl.create_default_context(cadata=cert_pem)

    def fetch(url: str) -> bytes:
        response = httpx.get(url, verify=context, timeout=10, follow_redirects=False, headers={"User-Agent": "ispbill"})
        if response.status_code != 200:
            raise GatewayUnavailable(f"SNS fetch answered HTTP {response.status_code}", code="gateway_http_error")
        return response.content

    return fetch


def _apply_demo_options() -> None:
    """Once per process: with ``ISPBILL_DEMO_GATEWAYS=1`` (and not in production), let
    the bKash adapter accept the demo simulator's SNS certificate, through the same hook
    the tests use. Options set explicitly (tests) are left alone. Other threads wait
    until this is done, so none builds (and then loses, mid-request) adapters without it."""
    global _demo_checked
    if _demo_checked:
        return
    with _demo_lock:
        if _demo_checked:
            return
        try:
            _demo_options()
        finally:
            _demo_checked = True


def _demo_options() -> None:
    if str(os.environ.get(DEMO_FLAG) or "").strip() != "1":
        return
    if getattr(settings, "PRODUCTION", True):
        log.error("%s is set in production mode: ignored; SNS certificates must come from Amazon", DEMO_FLAG)
        return
    cert = str(os.environ.get(DEMO_SNS_CERT) or "")
    if "-----BEGIN CERTIFICATE-----" not in cert:
        log.error("%s is set without %s (the simulators' certificate): bKash SNS messages will be rejected",
                  DEMO_FLAG, DEMO_SNS_CERT)
        return
    with _registry_lock:
        explicit = "bkash" in _adapter_options
    if not explicit:
        set_adapter_options("bkash", sns_host_pattern=r"127\.0\.0\.1|localhost", sns_fetch=_demo_fetch(cert))
        log.warning("demo gateways: bKash SNS certificates are fetched from the local simulator (%s=1)", DEMO_FLAG)


def _env_key(environ: Mapping[str, str]) -> tuple:
    names = sorted({v for cls in GATEWAYS.values() for v in cls.env_vars} | set(_EXTRA_ENV))
    return tuple((n, str(environ.get(n) or "")) for n in names)


def configured() -> dict[str, Gateway]:
    """``{name: adapter}`` for the gateways whose environment variables are set; built
    once per configuration (adapters hold connection pools and parsed keys). A gateway
    whose variables are set but unusable is left out and logged as an error."""
    from ispbill.payments.token_store import DbTokenStore

    _apply_demo_options()
    environ = os.environ
    with _registry_lock:
        key = _env_key(environ)  # set_adapter_options() clears the stored key
        if _registry["key"] == key:
            return _registry["adapters"]
        for adapter in _registry["adapters"].values():
            adapter.close()
        options = {name: dict(opts) for name, opts in _adapter_options.items()}
        options.setdefault("bkash", {}).setdefault("token_store", DbTokenStore())
        try:
            adapters = configured_gateways(environ, **options)
        except GatewayNotConfigured:
            adapters = {}
            for name, cls in GATEWAYS.items():
                mine = {var: environ.get(var, "") for var in (*cls.env_vars, *_EXTRA_ENV)}
                try:
                    adapters.update(configured_gateways(mine, **{name: options.get(name, {})}))
                except GatewayNotConfigured as exc:
                    log.error("%s is not offered: %s", cls.label, exc.message)
        _registry.update(key=key, adapters=adapters)
        return adapters


def gateway_for(name: str, *, required: bool = False) -> Gateway | None:
    adapter = configured().get(name)
    if adapter is None and required:
        raise DomainError(f"the {LABELS.get(name, name)} gateway is not configured", code="gateway_not_configured", status=503)
    return adapter


def enabled_gateways() -> list[dict]:
    """``[{"name", "label"}]`` of the gateways a subscriber can pay through now: those
    configured and not switched off by staff."""
    found = configured()
    off = GatewaySwitch.switched_off() if found else set()
    return [{"name": name, "label": LABELS.get(name, name)} for name in GATEWAYS if name in found and name not in off]


_EXPECTED_SQL = (
    f"SELECT amount_paisa, currency FROM {PaymentAttempt._meta.db_table} WHERE gateway = %s AND reference = %s"
)


def expected_for(gateway: str) -> Callable[[str], tuple[Decimal, str] | None]:
    """The adapters' ``expected(reference)``: what our stored attempt asks for."""

    def expected(reference: str):
        # Asked once per webhook: plain SQL, a third of what building the query costs.
        with connection.cursor() as cursor:
            cursor.execute(_EXPECTED_SQL, [gateway, reference])
            row = cursor.fetchone()
        return (from_paisa(row[0]), row[1]) if row else None

    return expected


# -- starting --------------------------------------------------------------------------------

def _new_reference() -> str:
    return "P" + "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(15))


def start_gateway_payment(
    *, subscriber_id: int, gateway: str, now: datetime, client_ip: str | None = None,
    admit: Callable[[], None] | None = None,
) -> tuple[PaymentAttempt, str]:
    """Open a payment at ``gateway`` for everything the subscriber owes now; returns the
    attempt and the URL to send the customer to. Nothing due, an unknown or unconfigured
    gateway, or a gateway that refuses or does not answer raise DomainError (the attempt,
    if one was made, is kept as ``failed`` with the reason).

    ``admit``, when given, decides first whether the subscriber may start one more
    payment, and refuses by raising: nothing is then stored and the gateway is not asked.
    It runs in the transaction that stores the attempt, with the subscriber's row locked,
    so concurrent starts for one subscriber are decided one after another, each seeing the
    attempts stored before it. That transaction commits before the gateway is asked."""
    adapter = gateway_for(gateway)
    for _ in range(5):
        try:
            with transaction.atomic():
                sub = ledger.lock_subscriber(subscriber_id, with_package=False)
                if admit is not None:
                    admit()
                # Switched off: no new payments through it (those already started still complete).
                if adapter is None or gateway in GatewaySwitch.switched_off():
                    raise DomainError("this payment method is not available", code="gateway_not_available", status=404)
                owed = ledger.balance(subscriber_id)
                if owed <= 0:
                    raise Conflict("Nothing is due on this account now.", code="nothing_due")
                attempt = PaymentAttempt.objects.create(
                    reference=_new_reference(), subscriber_id=subscriber_id, amount_paisa=owed, currency="BDT",
                    gateway=gateway, status=AttemptStatus.STARTED, created_at=now, updated_at=now,
                )
            break
        except IntegrityError:  # a reference collision: pick another
            continue
    else:  # pragma: no cover - 36**15 references
        raise DomainError("could not allocate a payment reference", code="reference_exhausted", status=500)
    request = StartRequest(
        reference=attempt.reference, amount=from_paisa(owed), customer_name=sub.name[:50] or sub.pppoe_username,
        customer_phone=sub.phone, customer_email=sub.email or f"{sub.pppoe_username}@customers.invalid",
        return_url_base=settings.ISPBILL_PUBLIC_URL, client_ip=client_ip,
    )
    try:
        started = adapter.start(request)
    except GatewayError as exc:
        PaymentAttempt.objects.filter(pk=attempt.pk).update(
            status=AttemptStatus.FAILED, last_error=f"start: {exc.code}: {exc.message}"[:500], updated_at=now,
        )
        log.warning("%s start failed for attempt %s: %s", gateway, attempt.reference, exc.code)
        unavailable = isinstance(exc, GatewayUnavailable)
        raise DomainError(
            f"{adapter.label} is not answering right now. Please try again in a few minutes." if unavailable
            else f"{adapter.label} could not start the payment. Please try again or choose another method.",
            code="gateway_unavailable" if unavailable else "gateway_refused", status=503 if unavailable else 502,
        ) from exc
    attempt.gateway_reference = started.gateway_reference[:200]
    attempt.updated_at = now
    attempt.save(update_fields=["gateway_reference", "updated_at"])
    return attempt, started.redirect_url


# -- storing what arrives --------------------------------------------------------------------

def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k): ("[redacted]" if str(k).lower() in _REDACTED_HEADERS else str(v)) for k, v in headers.items()}


def store_inbound(
    *, gateway: str, kind: str, method: str, path: str, headers: Mapping[str, str], body: bytes | str,
    source_ip: str | None, now: datetime,
) -> InboundWebhook:
    """Keep a callback or webhook as it arrived, committed before it is processed."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    webhook = InboundWebhook(
        gateway=gateway, kind=kind, method=method.upper()[:8], path=path[:2000], headers=redact_headers(headers),
        body=text, source_ip=source_ip or None, received_at=now,
    )
    # One INSERT: outside a transaction it commits by itself (no BEGIN/COMMIT round trips).
    insert_objects([webhook], return_ids=True)
    return webhook


# -- processing ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Processed:
    """What became of one callback or webhook.

    ``outcome`` is the stored :class:`WebhookOutcome`; ``page`` is what the customer is
    told on a browser return: ``received``, ``confirming`` or ``not_completed``."""

    outcome: str
    detail: str
    page: str
    payment: Payment | None = None
    attempt: PaymentAttempt | None = None
    code: str = ""

    @property
    def http_status(self) -> int:
        if self.outcome in (WebhookOutcome.ACCEPTED, WebhookOutcome.DUPLICATE):
            return 200
        if self.outcome == WebhookOutcome.REJECTED:
            return 403 if self.code in FORGERY_CODES else 400
        return 503 if self.code.startswith("gateway_") else 500


@dataclass(frozen=True)
class Settled:
    outcome: str  # accepted | duplicate
    payment: Payment | None
    attempt: PaymentAttempt | None
    detail: str


def process_inbound(webhook: InboundWebhook, *, now: datetime, replay: bool = False) -> Processed:
    """Confirm a stored callback/webhook with the gateway, settle it, and record the
    outcome on the row. Safe to repeat (a replay credits nothing twice)."""
    params: dict[str, str] = {}
    try:
        adapter = gateway_for(webhook.gateway)
        if adapter is None:
            raise GatewayUnavailable(f"{webhook.gateway} is not configured", code="gateway_not_configured")
        expected = expected_for(webhook.gateway)
        if webhook.kind == WebhookKind.CALLBACK:
            params = _params(webhook)
            _refuse_strangers(webhook.gateway, params)
            result = _confirmed(lambda: adapter.confirm_callback(params, expected))
        else:
            if webhook.gateway == "sslcommerz":
                params = dict(parse_qsl(webhook.body, keep_blank_values=True))
            result = _confirmed(lambda: adapter.verify_webhook(webhook.headers, webhook.body.encode("utf-8"), expected))
        if isinstance(result, WebhookAck):
            processed = Processed(WebhookOutcome.ACCEPTED, result.detail, "confirming")
        else:
            confirmation, reason = result
            # settle() locks the attempt the gateway's answer names; the (unverified) message's
            # own hint is only looked up when that answer names none (saves a query per webhook).
            hint = None if confirmation.reference else _attempt_hint(webhook.gateway, params)
            # Settled with its outcome written in the same transaction (one commit; the row
            # never says "received" about money already credited), together with other
            # webhooks arriving meanwhile when this process batches them.
            return batching.settle_webhook(batching.SettleRequest(
                webhook=webhook, confirmation=confirmation, review_reason=reason, attempt_hint=hint, now=now,
                replay=replay,
            ))
    except GatewayRejected as exc:
        detail = f"{exc.code}: {exc.message}" + (f" (gateway said {exc.gateway_code})" if exc.gateway_code else "")
        log.warning("%s %s %s rejected: %s", webhook.gateway, webhook.kind, webhook.pk, detail)
        # The attempt the message named, for staff looking at it (nothing was changed).
        processed = Processed(WebhookOutcome.REJECTED, detail, "not_completed", code=exc.code,
                              attempt=_attempt_hint(webhook.gateway, params))
    except GatewayUnavailable as exc:
        attempt = mark_pending(_attempt_hint(webhook.gateway, params), now=now, error=f"{exc.code}: {exc.message}")
        detail = f"{exc.code}: {exc.message}" + ("; the attempt will be asked about again" if attempt else "")
        processed = Processed(WebhookOutcome.ERROR, detail, "confirming", attempt=attempt, code=exc.code)
    except GatewayError as exc:  # NotSupported, GatewayNotConfigured
        processed = Processed(WebhookOutcome.REJECTED, f"{exc.code}: {exc.message}", "not_completed", code=exc.code)
    except Exception as exc:
        log.exception("processing %s %s %s failed", webhook.gateway, webhook.kind, webhook.pk)
        processed = Processed(WebhookOutcome.ERROR, f"internal error: {type(exc).__name__}", "confirming", code="internal_error")
    _record_outcome(webhook, processed, now=now, replay=replay)
    return processed


def replay_webhook(*, webhook_id: int, now: datetime) -> tuple[InboundWebhook, Processed]:
    """Process a stored callback/webhook again (after an outage or a fix)."""
    webhook = InboundWebhook.objects.filter(pk=webhook_id).first()
    if webhook is None:
        raise NotFound("webhook not found", code="webhook_not_found")
    processed = process_inbound(webhook, now=now, replay=True)
    webhook.refresh_from_db()
    return webhook, processed


def _confirmed(call: Callable[[], Confirmation | WebhookAck]) -> tuple[Confirmation, str] | WebhookAck:
    """Run an adapter call; a rejection that still says money moved (amount or currency
    not what we expect, unknown reference) comes back with the reason to hold it."""
    try:
        result = call()
    except GatewayRejected as exc:
        if exc.code in HOLD_CODES and exc.confirmation is not None and exc.confirmation.money_moved:
            return exc.confirmation, f"{exc.code}: {exc.message}"
        raise
    if isinstance(result, WebhookAck):
        return result
    return result, ""


#: The fields :func:`_record_outcome` writes (besides the replay count).
OUTCOME_FIELDS = ("outcome", "outcome_detail", "processed_at", "attempt", "payment")


def _record_outcome(webhook: InboundWebhook, processed: Processed, *, now: datetime, replay: bool) -> None:
    fields = _outcome_fields(webhook, processed, now=now, replay=replay)
    rows = InboundWebhook.objects.filter(pk=webhook.pk)
    if replay:
        fields["replays"] = F("replays") + 1
    else:
        # A first outcome is written once: a settlement that committed after its request
        # gave up waiting (and is recording an error here) keeps its own outcome.
        rows = rows.filter(outcome=WebhookOutcome.RECEIVED)
    # One UPDATE, committed by itself (autocommit) when not inside a caller's transaction.
    written = rows.update(**fields)
    if replay:
        webhook.refresh_from_db()  # for the incremented replay count
        return
    if not written:
        webhook.refresh_from_db()
        return
    # What was written, without reading the row back (one query less per webhook).
    set_outcome(webhook, fields)


def _outcome_fields(webhook: InboundWebhook, processed: Processed, *, now: datetime, replay: bool) -> dict:
    outcome, detail = processed.outcome, processed.detail
    if replay:
        detail = f"replayed {now:%Y-%m-%d %H:%M:%S}: {outcome}: {detail}"
        if webhook.outcome == WebhookOutcome.ACCEPTED and outcome == WebhookOutcome.DUPLICATE:
            outcome = WebhookOutcome.ACCEPTED  # the first acceptance stands
    fields = {"outcome": outcome, "outcome_detail": detail[:1000], "processed_at": now}
    if processed.attempt is not None:
        fields["attempt"] = processed.attempt
    if processed.payment is not None:
        fields["payment"] = processed.payment
    return fields


def set_outcome(webhook: InboundWebhook, fields: dict) -> None:
    for name, value in fields.items():
        setattr(webhook, name, value)


def _params(webhook: InboundWebhook) -> dict[str, str]:
    if webhook.method == "GET":
        return dict(parse_qsl(urlsplit(webhook.path).query, keep_blank_values=True))
    return dict(parse_qsl(webhook.body, keep_blank_values=True))


def _refuse_strangers(gateway: str, params: Mapping[str, str]) -> None:
    """A bKash return (no token, anyone can send one) naming a paymentID we never
    created is refused before bKash is called: executing it would make our server call
    bKash for whoever crafts such URLs, and nothing has moved at bKash until we execute.
    (Nagad and SSLCommerz returns may report money that moved; those are asked about and
    held for staff when the reference is unknown.)"""
    if gateway != "bkash":
        return
    payment_id = str(params.get("paymentID") or "").strip()
    if payment_id and not PaymentAttempt.objects.filter(gateway=gateway, gateway_reference=payment_id).exists():
        raise GatewayRejected("bKash return for a paymentID we never created", code="unknown_payment")


def _attempt_hint(gateway: str, params: Mapping[str, str]) -> PaymentAttempt | None:
    """The attempt a (not yet verified) message names: only ever used to decide which
    attempt to ask the gateway about again, never to credit anything."""
    if gateway == "bkash" and params.get("paymentID"):
        return PaymentAttempt.objects.filter(gateway=gateway, gateway_reference=params["paymentID"]).first()
    if gateway == "nagad":
        if params.get("payment_ref_id"):
            found = PaymentAttempt.objects.filter(gateway=gateway, gateway_reference=params["payment_ref_id"]).first()
            if found:
                return found
        if params.get("order_id"):
            return PaymentAttempt.objects.filter(gateway=gateway, reference=params["order_id"]).first()
    if gateway == "sslcommerz" and params.get("tran_id"):
        return PaymentAttempt.objects.filter(gateway=gateway, reference=params["tran_id"][:20]).first()
    return None


def _page(confirmation: Confirmation, settled: Settled) -> str:
    payment = settled.payment
    if payment is not None:
        return "received" if payment.status in (PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED) else "confirming"
    if confirmation.status == Status.PENDING:
        return "confirming"
    return "not_completed"


def mark_pending(attempt: PaymentAttempt | None, *, now: datetime, error: str) -> PaymentAttempt | None:
    """The gateway did not answer while confirming: keep the attempt ``pending`` so the
    worker asks again (attempts where money is known to have moved are left alone)."""
    if attempt is None:
        return None
    with transaction.atomic():
        attempt = PaymentAttempt.objects.select_for_update(no_key=True).get(pk=attempt.pk)
        if attempt.status in MONEY_MOVED_STATUSES:
            return attempt
        attempt.status = AttemptStatus.PENDING
        attempt.last_error = error[:500]
        if attempt.next_check_at is None:
            attempt.next_check_at = now
        attempt.updated_at = now
        attempt.save(update_fields=["status", "last_error", "next_check_at", "updated_at"])
        return attempt


# -- settlement ------------------------------------------------------------------------------

def settle(
    *, confirmation: Confirmation, gateway: str, now: datetime, review_reason: str = "",
    attempt_hint: PaymentAttempt | None = None,
) -> Settled:
    """Record what the gateway confirmed, in one transaction.

    Money that moved and matches its attempt is recorded and allocated by
    :func:`~ispbill.payments.services.record_payment` (unique on gateway + transaction id:
    a repeat, sequential or concurrent, returns the payment already recorded). Money that
    moved but cannot be applied by itself (``review_reason``, a risky transaction, no
    attempt, a second payment for one attempt) is kept as a ``needs_review`` payment with
    no ledger entry. A failure, cancellation or "not known yet" only updates the attempt;
    it never undoes a completed one. Inside a caller's transaction it takes part in it (no
    savepoint): a failure rolls back the caller's work too.
    """
    with transaction.atomic(savepoint=False):
        attempt = _locked_attempt(gateway, confirmation, attempt_hint)
        if not confirmation.money_moved:
            _record_unpaid(attempt, confirmation, now=now)
            detail = f"attempt {confirmation.status}" + (f": {confirmation.detail}" if confirmation.detail else "")
            return Settled(WebhookOutcome.ACCEPTED, None, attempt, detail)

        transaction_id = confirmation.transaction_id or confirmation.gateway_reference
        if not transaction_id:
            raise GatewayRejected(f"{gateway} confirmed a payment without a transaction id", code="malformed")
        if confirmation.amount is None or confirmation.amount <= 0:
            raise GatewayRejected(f"{gateway} confirmed a payment without an amount", code="malformed")
        amount_paisa = to_paisa(confirmation.amount)

        existing = Payment.objects.select_for_update(no_key=True).filter(gateway=gateway, transaction_id=transaction_id).first()
        if existing is not None:
            return _on_existing(existing, confirmation, attempt, review_reason=review_reason, now=now)

        reason = review_reason
        if not reason and attempt is None:
            reason = f"unknown_reference: no payment attempt {confirmation.reference or '(none given)'}" + (
                f" ({confirmation.detail})" if confirmation.detail else "")
        if not reason and confirmation.status == Status.NEEDS_REVIEW:
            reason = f"gateway_review: {confirmation.detail or 'the gateway asks for a review'}"
        if not reason and attempt.payment_id is not None:
            reason = f"second_payment: attempt {attempt.reference} was already paid by payment {attempt.payment_id}"

        if reason:
            payment, created = _hold(confirmation, gateway=gateway, transaction_id=transaction_id,
                                     amount_paisa=amount_paisa, attempt=attempt, reason=reason, now=now)
        else:
            try:
                payment, created = services.record_payment(
                    subscriber_id=attempt.subscriber_id, amount=from_paisa(amount_paisa), method=PaymentMethod.GATEWAY,
                    received_at=now, reference=attempt.reference, notes=confirmation.detail, gateway=gateway,
                    transaction_id=transaction_id, method_label=confirmation.method_label,
                    gateway_reference=confirmation.gateway_reference or "", attempt_id=attempt.pk,
                    transaction_id_checked=True,  # looked up (none) just above, in this transaction
                )
            except Conflict:
                # A concurrent writer recorded this transaction differently (e.g. held it).
                existing = Payment.objects.select_for_update(no_key=True).get(gateway=gateway, transaction_id=transaction_id)
                return _on_existing(existing, confirmation, attempt, review_reason=review_reason, now=now)
        if not created:
            return _on_existing(payment, confirmation, attempt, review_reason=review_reason, now=now)
        if attempt is not None:
            _link(attempt, payment, confirmation, now=now, first=attempt.payment_id is None)
        _audit_received(payment, gateway=gateway, now=now)
        detail = f"payment {payment.pk} {payment.status}" + (f": {payment.review_reason}" if payment.review_reason else "")
        return Settled(WebhookOutcome.ACCEPTED, payment, attempt, detail)


def _audit_received(payment: Payment, *, gateway: str, now: datetime) -> None:
    """``payment.receive`` in the audit log, by the gateway: credited, or held for staff."""
    audit.record(**_received_audit(payment, gateway=gateway, now=now))


def _received_audit(payment: Payment, *, gateway: str, now: datetime) -> dict:
    held = payment.status == PaymentStatus.NEEDS_REVIEW
    return dict(
        action="payment.receive", at=now, actor_kind=ActorKind.GATEWAY, subscriber_id=payment.subscriber_id,
        target=services.audit_target(payment),
        after={"amount_paisa": payment.amount_paisa, "gateway": gateway, "transaction_id": payment.transaction_id,
               "status": payment.status, **({"review_reason": payment.review_reason} if held else {})},
        summary=f"{payment.method_label or gateway} payment " + ("held for review" if held else "credited"),
    )


def _locked_attempt(gateway: str, confirmation: Confirmation, hint: PaymentAttempt | None) -> PaymentAttempt | None:
    qs = PaymentAttempt.objects.select_for_update(no_key=True)
    if confirmation.reference:
        # The gateway echoes our reference: that, not the hint, decides.
        return qs.filter(gateway=gateway, reference=confirmation.reference[:20]).first()
    if confirmation.gateway_reference:
        found = qs.filter(gateway=gateway, gateway_reference=confirmation.gateway_reference).first()
        if found is not None:
            return found
    if hint is not None and not confirmation.money_moved:
        return qs.filter(pk=hint.pk).first()
    return None


def _record_unpaid(attempt: PaymentAttempt | None, confirmation: Confirmation, *, now: datetime) -> None:
    if attempt is None or attempt.status in MONEY_MOVED_STATUSES:
        return  # nothing known, or money already moved: a failure report changes nothing
    status = {
        Status.FAILED: AttemptStatus.FAILED, Status.CANCELLED: AttemptStatus.CANCELLED, Status.PENDING: AttemptStatus.PENDING,
    }[confirmation.status]
    attempt.status = status
    attempt.last_error = (confirmation.detail or "")[:500]
    if status == AttemptStatus.PENDING and attempt.next_check_at is None:
        attempt.next_check_at = now + timedelta(minutes=1)
    elif status != AttemptStatus.PENDING:
        attempt.next_check_at = None
    if confirmation.gateway_reference and not attempt.gateway_reference:
        attempt.gateway_reference = confirmation.gateway_reference[:200]
    attempt.updated_at = now
    attempt.save(update_fields=["status", "last_error", "next_check_at", "gateway_reference", "updated_at"])


def _hold(
    confirmation: Confirmation, *, gateway: str, transaction_id: str, amount_paisa: int, attempt: PaymentAttempt | None,
    reason: str, now: datetime,
) -> tuple[Payment, bool]:
    """A ``needs_review`` payment (no ledger entry); returns ``(payment, created)``."""
    try:
        with transaction.atomic():
            payment = Payment.objects.create(
                subscriber_id=attempt.subscriber_id if attempt is not None else None, amount_paisa=amount_paisa,
                currency=(confirmation.currency or "BDT")[:3].upper(), method=PaymentMethod.GATEWAY,
                method_label=(confirmation.method_label or "")[:40], status=PaymentStatus.NEEDS_REVIEW,
                review_reason=reason[:300], reference=(attempt.reference if attempt else confirmation.reference or "")[:100],
                gateway=gateway, transaction_id=transaction_id, gateway_reference=(confirmation.gateway_reference or "")[:200],
                attempt=attempt, received_at=now, notes=confirmation.detail,
            )
        log.warning("%s payment %s held for review: %s", gateway, payment.pk, reason)
        return payment, True
    except IntegrityError:
        existing = Payment.objects.select_for_update(no_key=True).filter(gateway=gateway, transaction_id=transaction_id).first()
        if existing is None:
            raise
        return existing, False


def _on_existing(
    existing: Payment, confirmation: Confirmation, attempt: PaymentAttempt | None, *, review_reason: str, now: datetime,
) -> Settled:
    """This transaction is already recorded. One case changes it: a payment held only
    because its reference was unknown (a wallet webhook without our invoice number) is
    credited once the gateway confirms it for one of our attempts with the same amount."""
    if (
        existing.status == PaymentStatus.NEEDS_REVIEW and existing.subscriber_id is None
        and existing.review_reason.startswith("unknown_reference") and attempt is not None
        and confirmation.status == Status.COMPLETED and not review_reason and attempt.payment_id in (None, existing.pk)
        and existing.amount_paisa == to_paisa(confirmation.amount)
    ):
        existing.attempt = attempt
        existing.reference = attempt.reference
        existing.save(update_fields=["attempt", "reference"])
        services._credit_held(existing, subscriber_id=attempt.subscriber_id, now=now,
                              note=f"matched automatically: {existing.gateway} confirmed it for attempt {attempt.reference}")
        _link(attempt, existing, confirmation, now=now, first=True)
        return Settled(WebhookOutcome.ACCEPTED, existing, attempt, f"payment {existing.pk} matched to attempt {attempt.reference}")
    if attempt is not None and attempt.payment_id is None:
        _link(attempt, existing, confirmation, now=now, first=True)
    return Settled(WebhookOutcome.DUPLICATE, existing, attempt, f"payment {existing.pk} already recorded ({existing.status})")


def _link(attempt: PaymentAttempt, payment: Payment, confirmation: Confirmation, *, now: datetime, first: bool) -> None:
    """Point the attempt at its payment (a second payment for one attempt only marks it)."""
    attempt.save(update_fields=_linked(attempt, payment, confirmation, now=now, first=first))


def _linked(attempt: PaymentAttempt, payment: Payment, confirmation: Confirmation, *, now: datetime, first: bool) -> list[str]:
    """:func:`_link` in memory: the fields it changed."""
    credited = payment.status in (PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)
    fields = ["status", "next_check_at", "updated_at"]
    if first:
        attempt.payment = payment
        fields.append("payment")
        attempt.status = AttemptStatus.COMPLETED if credited else AttemptStatus.NEEDS_REVIEW
    elif attempt.status != AttemptStatus.COMPLETED:
        attempt.status = AttemptStatus.NEEDS_REVIEW
    if confirmation.gateway_reference and not attempt.gateway_reference:
        attempt.gateway_reference = confirmation.gateway_reference[:200]
        fields.append("gateway_reference")
    attempt.next_check_at = None
    attempt.updated_at = now
    return fields


# -- re-querying -----------------------------------------------------------------------------

def requery_pending(*, now: datetime, limit: int = 200) -> str:
    """Ask the gateways about attempts left ``pending`` (the gateway did not answer while
    confirming); settle what they say. Backs off per attempt up to an hour between checks
    and stops after three days (the attempt stays pending, with the reason)."""
    due = list(
        PaymentAttempt.objects.filter(status=AttemptStatus.PENDING, next_check_at__lte=now)
        .order_by("next_check_at", "id")[:limit]
    )
    counts: dict[str, int] = {}
    for attempt in due:
        result = _requery(attempt, now=now)
        counts[result] = counts.get(result, 0) + 1
    if not due:
        return "no attempts to re-query"
    return f"{len(due)} re-queried: " + ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))


def requery_attempt(*, attempt_id: int, now: datetime) -> str:
    attempt = PaymentAttempt.objects.filter(pk=attempt_id).first()
    if attempt is None:
        raise NotFound("payment attempt not found", code="attempt_not_found")
    return _requery(attempt, now=now)


def _requery(attempt: PaymentAttempt, *, now: datetime) -> str:
    """Ask again about one pending attempt. Callbacks and webhooks for it that failed
    because the gateway did not answer are processed again first (a bKash return that
    said "success" must still be executed, which a query alone never does); without
    one, the gateway is queried."""
    adapter = gateway_for(attempt.gateway)
    error = ""
    unfinished = list(
        InboundWebhook.objects.filter(attempt_id=attempt.pk, outcome=WebhookOutcome.ERROR).order_by("received_at", "id")
    )
    if adapter is None:
        error = f"{attempt.gateway} is not configured"
    elif unfinished:
        for webhook in unfinished:
            processed = process_inbound(webhook, now=now, replay=True)
            if processed.outcome == WebhookOutcome.ERROR:
                error = processed.detail
                break
        attempt.refresh_from_db()
        if attempt.status != AttemptStatus.PENDING:
            return attempt.status
    else:
        key = attempt.gateway_reference if adapter.query_key == "gateway_reference" else attempt.reference
        if not key:
            error = "the gateway never gave this attempt a reference"
        else:
            try:
                result = _confirmed(lambda: adapter.query(key, expected_for(attempt.gateway)))
                confirmation, reason = result
                settled = settle(confirmation=confirmation, gateway=attempt.gateway, now=now, review_reason=reason,
                                 attempt_hint=attempt)
                if settled.payment is not None:
                    return settled.payment.status
                if confirmation.status != Status.PENDING:
                    return str(confirmation.status)
                error = confirmation.detail or "still pending at the gateway"
            except GatewayUnavailable as exc:
                error = f"{exc.code}: {exc.message}"
            except GatewayError as exc:
                error = f"{exc.code}: {exc.message}"
                log.warning("re-query of %s %s refused: %s", attempt.gateway, attempt.reference, error)
    _reschedule(attempt.pk, now=now, error=error)
    return "still pending"


def _reschedule(attempt_id: int, *, now: datetime, error: str) -> None:
    with transaction.atomic():
        attempt = PaymentAttempt.objects.select_for_update(no_key=True).get(pk=attempt_id)
        if attempt.status != AttemptStatus.PENDING:
            return
        attempt.checks += 1
        if now - attempt.created_at >= REQUERY_GIVE_UP:
            attempt.next_check_at = None
            error = f"stopped asking after {REQUERY_GIVE_UP.days} days; check with the gateway. Last: {error}"
        else:
            # 2 minutes after the first check, then 4, 8… up to REQUERY_MAX_INTERVAL.
            attempt.next_check_at = now + doubling(REQUERY_FIRST_INTERVAL, attempt.checks, REQUERY_MAX_INTERVAL)
        attempt.last_error = error[:500]
        attempt.updated_at = now
        attempt.save(update_fields=["checks", "next_check_at", "last_error", "updated_at"])
