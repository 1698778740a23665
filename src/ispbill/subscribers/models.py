from __future__ import annotations

from django.db import models

from ispbill.subscribers.choices import BillingModeChoice, SubscriberStatus


class Subscriber(models.Model):
    """A customer with one PPPoE account on one package."""

    name = models.CharField(max_length=200)
    phone = models.CharField(max_length=16, help_text="E.164, +8801XXXXXXXXX")
    email = models.EmailField(blank=True)
    address = models.CharField(max_length=300, blank=True)
    area = models.CharField(max_length=100, blank=True, db_index=True)
    pppoe_username = models.CharField(max_length=64, unique=True)
    package = models.ForeignKey("plans.Package", on_delete=models.PROTECT, related_name="subscribers")
    router = models.ForeignKey("network.Router", on_delete=models.PROTECT, null=True, blank=True, related_name="subscribers")
    status = models.CharField(max_length=16, choices=SubscriberStatus.choices, default=SubscriberStatus.ACTIVE)
    activated_on = models.DateField()
    billing_mode = models.CharField(
        max_length=16, choices=BillingModeChoice.choices, blank=True, default="", help_text="blank: the ISP's default"
    )
    grace_days_override = models.PositiveSmallIntegerField(null=True, blank=True)
    never_suspend = models.BooleanField(default=False)
    language = models.CharField(
        max_length=2, choices=[("bn", "বাংলা"), ("en", "English")], blank=True, default="",
        help_text="language of SMS and email; blank: Bangla for +880 numbers",
    )
    notes = models.TextField(blank=True)
    # Last day for which recurring service has been invoiced; null before the first invoice.
    billed_through = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "billed_through"], name="subscriber_billing_idx"),
            models.Index(fields=["phone"], name="subscriber_phone_idx"),
            # The back-office list: each filter in id order (keyset paging). Search and
            # area indexes differ by database: see migration 0004.
            models.Index(fields=["status", "id"], name="subscriber_status_id_idx"),
            models.Index(fields=["package", "id"], name="subscriber_package_id_idx"),
            models.Index(fields=["router", "id"], name="subscriber_router_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.pppoe_username})"
