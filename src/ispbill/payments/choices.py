from django.db import models
from django.utils.translation import gettext_lazy as _


class PaymentMethod(models.TextChoices):
    CASH = "cash", _("Cash")
    BANK = "bank", _("Bank transfer")
    MANUAL_MFS = "manual_mfs", _("Mobile money (manual)")
    GATEWAY = "gateway", _("Online (payment gateway)")


class PaymentStatus(models.TextChoices):
    """Only completed and (partially) refunded payments have ledger entries; a payment
    held for review or rejected has none."""

    COMPLETED = "completed", _("Completed")
    NEEDS_REVIEW = "needs_review", _("Needs review")
    REJECTED = "rejected", _("Rejected")
    REFUNDED = "refunded", _("Refunded")
    PARTIALLY_REFUNDED = "partially_refunded", _("Partially refunded")

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

    STARTED = "started", _("Started")
    PENDING = "pending", _("Pending confirmation")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")
    NEEDS_REVIEW = "needs_review", _("Needs review")

    @property
    def colour(self) -> str:
        return {
            "started": "grey", "pending": "blue", "completed": "green", "failed": "red", "cancelled": "grey",
            "needs_review": "orange",
        }[self.value]


#: Attempt statuses that say the customer's money moved.
MONEY_MOVED_STATUSES = (AttemptStatus.COMPLETED, AttemptStatus.NEEDS_REVIEW)


class WebhookKind(models.TextChoices):
    CALLBACK = "callback", _("Browser return")
    IPN = "ipn", _("IPN (SSLCommerz)")
    SNS = "sns", _("SNS (bKash)")


class WebhookOutcome(models.TextChoices):
    RECEIVED = "received", _("Received (not processed yet)")
    ACCEPTED = "accepted", _("Accepted")
    DUPLICATE = "duplicate", _("Duplicate")
    REJECTED = "rejected", _("Rejected")
    ERROR = "error", _("Error")

    @property
    def colour(self) -> str:
        return {"received": "grey", "accepted": "green", "duplicate": "blue", "rejected": "red", "error": "orange"}[self.value]


class RefundStatus(models.TextChoices):
    """``pending``: the gateway accepted the refund and completes it later; the worker
    asks until it says ``completed`` or ``failed`` (cancelled: the money did not go back,
    and the payment is as it was before the refund)."""

    COMPLETED = "completed", _("Completed")
    PENDING = "pending", _("Accepted by the gateway, completing")
    FAILED = "failed", _("Cancelled by the gateway")

    @property
    def colour(self) -> str:
        return {"completed": "green", "pending": "blue", "failed": "red"}[self.value]
