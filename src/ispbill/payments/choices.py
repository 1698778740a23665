from django.db import models


class PaymentMethod(models.TextChoices):
    CASH = "cash", "Cash"
    BANK = "bank", "Bank transfer"
    MANUAL_MFS = "manual_mfs", "Mobile money (manual)"
    GATEWAY = "gateway", "Online (payment gateway)"


class PaymentStatus(models.TextChoices):
    """Only completed and (partially) refunded payments have ledger entries; a payment
    held for review or rejected has none."""

    COMPLETED = "completed", "Completed"
    NEEDS_REVIEW = "needs_review", "Needs review"
    REJECTED = "rejected", "Rejected"
    REFUNDED = "refunded", "Refunded"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"

    @property
    def colour(self) -> str:
        return {
            "completed": "green", "needs_review": "orange", "rejected": "red", "refunded": "grey",
            "partially_refunded": "blue",
        }[self.value]


#: Statuses whose payment is on the ledger.
CREDITED_STATUSES = (PaymentStatus.COMPLETED, PaymentStatus.REFUNDED, PaymentStatus.PARTIALLY_REFUNDED)


class AttemptStatus(models.TextChoices):
    """A subscriber's try at paying through a gateway.

    ``pending``: the outcome is not known yet (the gateway did not answer): the worker asks
    again. ``completed`` and ``needs_review`` say money moved and are never downgraded by a
    later failure report; a later completion wins over ``failed``/``cancelled``."""

    STARTED = "started", "Started"
    PENDING = "pending", "Pending confirmation"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    NEEDS_REVIEW = "needs_review", "Needs review"

    @property
    def colour(self) -> str:
        return {
            "started": "grey", "pending": "blue", "completed": "green", "failed": "red", "cancelled": "grey",
            "needs_review": "orange",
        }[self.value]


#: Attempt statuses that say the customer's money moved.
MONEY_MOVED_STATUSES = (AttemptStatus.COMPLETED, AttemptStatus.NEEDS_REVIEW)


class WebhookKind(models.TextChoices):
    CALLBACK = "callback", "Browser return"
    IPN = "ipn", "IPN (SSLCommerz)"
    SNS = "sns", "SNS (bKash)"


class WebhookOutcome(models.TextChoices):
    RECEIVED = "received", "Received (not processed yet)"
    ACCEPTED = "accepted", "Accepted"
    DUPLICATE = "duplicate", "Duplicate"
    REJECTED = "rejected", "Rejected"
    ERROR = "error", "Error"

    @property
    def colour(self) -> str:
        return {"received": "grey", "accepted": "green", "duplicate": "blue", "rejected": "red", "error": "orange"}[self.value]


class RefundStatus(models.TextChoices):
    COMPLETED = "completed", "Completed"
    PENDING = "pending", "Accepted by the gateway, completing"
