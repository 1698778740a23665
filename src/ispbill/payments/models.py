from __future__ import annotations

from django.db import models

from ispbill.core.money import from_paisa
from ispbill.payments.choices import PaymentMethod, PaymentStatus


class Payment(models.Model):
    """Money received from a subscriber. The ledger records where it went."""

    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.PROTECT, related_name="payments")
    amount_paisa = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="BDT")
    method = models.CharField(max_length=20, choices=PaymentMethod.choices)
    status = models.CharField(max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.COMPLETED)
    reference = models.CharField(max_length=100, blank=True)
    # Gateway and its transaction id; unique together so one transaction credits once.
    gateway = models.CharField(max_length=32, blank=True)
    transaction_id = models.CharField(max_length=100, null=True, blank=True)
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
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.amount}"

    @property
    def amount(self):
        return from_paisa(self.amount_paisa)


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
