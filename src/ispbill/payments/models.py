from __future__ import annotations

from django.db import models

from ispbill.core.money import from_paisa
from ispbill.payments.choices import (
    AttemptStatus,
    PaymentMethod,
    PaymentStatus,
    RefundStatus,
    WebhookKind,
    WebhookOutcome,
)


class Payment(models.Model):
    """Money received. The ledger records where it went.

    A gateway payment that cannot be applied on its own (unknown reference, amount or
    currency not what the attempt expected, a risky transaction) is kept with status
    ``needs_review`` and no ledger entry, possibly without a subscriber, until staff match,
    refund or reject it.
    """

    subscriber = models.ForeignKey(
        "subscribers.Subscriber", on_delete=models.PROTECT, related_name="payments", null=True, blank=True,
        help_text="null for a gateway payment staff have not matched to a subscriber yet",
    )
    amount_paisa = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="BDT")
    method = models.CharField(max_length=20, choices=PaymentMethod.choices)
    # How the customer paid, as staff and receipts name it: "bKash", "Nagad", "Rocket", "Visa".
    method_label = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.COMPLETED)
    review_reason = models.CharField(max_length=300, blank=True)
    reference = models.CharField(max_length=100, blank=True)
    # Gateway and its transaction id; unique together so one transaction credits once.
    gateway = models.CharField(max_length=32, blank=True)
    transaction_id = models.CharField(max_length=100, null=True, blank=True)
    # The gateway's handle for the payment (bKash paymentID, Nagad paymentRefId, SSLCommerz val_id).
    gateway_reference = models.CharField(max_length=200, blank=True)
    attempt = models.ForeignKey("payments.PaymentAttempt", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    refunded_paisa = models.BigIntegerField(default=0)
    idempotency_key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    received_at = models.DateTimeField()
    recorded_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "transaction_id"],
                condition=models.Q(transaction_id__isnull=False),
                name="payment_gateway_txn_unique",
            ),
            models.CheckConstraint(condition=models.Q(amount_paisa__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(refunded_paisa__gte=0) & models.Q(refunded_paisa__lte=models.F("amount_paisa")),
                name="payment_refunded_within_amount",
            ),
            models.CheckConstraint(
                condition=models.Q(subscriber__isnull=False) | models.Q(status__in=["needs_review", "rejected", "refunded"]),
                name="payment_credited_has_subscriber",
            ),
        ]
        indexes = [
            # Also carries what the dashboard sums per day, so those sums read the index alone.
            models.Index(
                fields=["status", "received_at", "gateway", "method", "amount_paisa", "refunded_paisa"],
                name="payment_status_day_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method_label or self.method} {self.amount}"

    @property
    def amount(self):
        return from_paisa(self.amount_paisa)


class PaymentAttempt(models.Model):
    """One try at paying through a gateway: what we asked the gateway to collect.

    ``reference`` is ours (random, alphanumeric, at most 20 characters): the gateway echoes
    it (bKash merchantInvoiceNumber, Nagad orderId, SSLCommerz tran_id), and the amount
    and currency the gateway reports are compared with this row exactly.
    """

    reference = models.CharField(max_length=20, unique=True)
    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.PROTECT, related_name="payment_attempts")
    amount_paisa = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="BDT")
    gateway = models.CharField(max_length=32)
    gateway_reference = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=AttemptStatus.choices, default=AttemptStatus.STARTED)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    last_error = models.CharField(max_length=500, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True)
    checks = models.PositiveIntegerField(default=0, help_text="how often the worker has asked the gateway")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=models.Q(amount_paisa__gt=0), name="attempt_amount_positive")]
        indexes = [
            models.Index(fields=["gateway", "gateway_reference"], name="attempt_gateway_ref_idx"),
            models.Index(fields=["status", "next_check_at"], name="attempt_requery_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.gateway} {self.reference} ({self.status})"

    @property
    def amount(self):
        return from_paisa(self.amount_paisa)


class InboundWebhook(models.Model):
    """A callback or webhook exactly as it arrived, stored before it is processed so a
    failure can be replayed; ``outcome`` says what processing made of it."""

    gateway = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, choices=WebhookKind.choices)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=2000, help_text="with the query string")
    headers = models.JSONField(default=dict, help_text="Authorization and cookies redacted")
    body = models.TextField(blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=WebhookOutcome.choices, default=WebhookOutcome.RECEIVED)
    outcome_detail = models.CharField(max_length=1000, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    replays = models.PositiveIntegerField(default=0)
    attempt = models.ForeignKey(PaymentAttempt, on_delete=models.PROTECT, null=True, blank=True, related_name="webhooks")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="webhooks")

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["gateway", "outcome", "received_at"], name="webhook_gateway_outcome_idx"),
            models.Index(fields=["outcome", "received_at"], name="webhook_outcome_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.gateway} {self.kind} {self.received_at:%Y-%m-%d %H:%M:%S} {self.outcome}"


class Refund(models.Model):
    """Money sent back through the gateway; its ledger entries carry the payment.

    A ``pending`` refund (accepted, completed by the gateway later) is asked about again
    at ``next_check_at`` until the gateway says completed or cancelled; ``next_check_at``
    empty on a pending refund means the worker stopped asking (``last_error`` says why).
    """

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount_paisa = models.BigIntegerField()
    reason = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=RefundStatus.choices)
    gateway_refund_id = models.CharField(max_length=100, blank=True)
    gateway_response = models.JSONField(default=dict)
    # What a cancelled refund returns the payment to: credited or not, and if not, which status.
    payment_status_before = models.CharField(max_length=20, choices=PaymentStatus.choices, blank=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    completed_at = models.DateTimeField(null=True, blank=True)
    checks = models.PositiveIntegerField(default=0, help_text="how often the gateway was asked about it")
    last_checked_at = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=models.Q(amount_paisa__gt=0), name="refund_amount_positive")]
        indexes = [models.Index(fields=["status", "next_check_at"], name="refund_follow_up_idx")]

    def __str__(self) -> str:
        return f"refund {from_paisa(self.amount_paisa)} of payment {self.payment_id}"


class GatewayToken(models.Model):
    """A gateway's access token (bKash), shared by every process; encrypted at rest
    with :mod:`ispbill.core.crypto`."""

    gateway = models.CharField(max_length=64, unique=True, help_text="the adapter's cache key")
    id_token = models.TextField()
    refresh_token = models.TextField(blank=True)
    expires_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"token for {self.gateway} until {self.expires_at}"


class PaymentLink(models.Model):
    """A subscriber's link to the payment page: signed, expiring, revocable."""

    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.PROTECT, related_name="payment_links")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_opened_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["subscriber", "expires_at"], name="paymentlink_subscriber_idx")]

    def __str__(self) -> str:
        return f"link {self.pk} for subscriber {self.subscriber_id}"


class GatewaySwitch(models.Model):
    """Staff's on/off switch for offering a gateway on the payment page. No row means on.

    Off only hides the gateway from new payments: callbacks, webhooks and re-queries for
    payments already started through it are still processed."""

    gateway = models.CharField(max_length=32, unique=True)
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField()
    updated_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    def __str__(self) -> str:
        return f"{self.gateway}: {'on' if self.enabled else 'off'}"

    @classmethod
    def switched_off(cls) -> set[str]:
        """Names of the gateways staff have switched off."""
        return set(cls.objects.filter(enabled=False).values_list("gateway", flat=True))
