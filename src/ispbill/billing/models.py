from __future__ import annotations

from decimal import Decimal

from django.db import models

from ispbill.billing.choices import (
    DueRuleChoice,
    EntryKind,
    InvoiceKind,
    InvoiceStatus,
    LineKind,
    PaymentTermsChoice,
    RoundingChoice,
)
from ispbill.billing.periods import BillingMode
from ispbill.billing.policy import BillingPolicy, DueRule, PaymentTerms
from ispbill.core.money import Rounding, from_paisa
from ispbill.subscribers.choices import BillingModeChoice


class BillingSettings(models.Model):
    """ISP-wide billing settings: a single row (pk=1)."""

    billing_mode = models.CharField(max_length=16, choices=BillingModeChoice.choices, default=BillingModeChoice.CALENDAR)
    billing_day = models.PositiveSmallIntegerField(default=1)
    payment_terms = models.CharField(max_length=16, choices=PaymentTermsChoice.choices, default=PaymentTermsChoice.PREPAID)
    invoice_lead_days = models.PositiveSmallIntegerField(default=7)
    due_rule = models.CharField(max_length=16, choices=DueRuleChoice.choices, default=DueRuleChoice.PERIOD_START)
    due_days = models.PositiveSmallIntegerField(default=0)
    grace_days = models.PositiveSmallIntegerField(default=3)
    rounding = models.CharField(max_length=8, choices=RoundingChoice.choices, default=RoundingChoice.PAISA)
    invoice_number_format = models.CharField(max_length=64, default="INV-{year}-{seq:06d}")
    credit_note_number_format = models.CharField(max_length=64, default="CN-{year}-{seq:06d}")
    tax_name = models.CharField(max_length=32, default="VAT")
    tax_rate = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("0"))
    isp_name = models.CharField(max_length=120, default="ispbill demo ISP")
    hotline = models.CharField(max_length=32, blank=True)
    isp_address = models.CharField(max_length=300, blank=True)
    #: The ISP's logo on invoices and receipts (PNG or JPEG), kept in the database so a
    #: deployment needs no media directory.
    logo = models.BinaryField(null=True, blank=True, editable=True)
    logo_content_type = models.CharField(max_length=32, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "billing settings"
        constraints = [models.CheckConstraint(condition=models.Q(pk=1), name="billing_settings_single_row")]

    def __str__(self) -> str:
        return "Billing settings"

    @classmethod
    def load(cls) -> "BillingSettings":
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj

    def policy(self) -> BillingPolicy:
        return BillingPolicy(
            mode=BillingMode(self.billing_mode),
            billing_day=self.billing_day,
            terms=PaymentTerms(self.payment_terms),
            invoice_lead_days=self.invoice_lead_days,
            due_rule=DueRule(self.due_rule),
            due_days=self.due_days,
            grace_days=self.grace_days,
            rounding=Rounding(self.rounding),
            tax_rate=Decimal(self.tax_rate),
            tax_name=self.tax_name,
        )


class NumberSequence(models.Model):
    """Gapless document numbers: the row is locked and advanced inside the issuing transaction."""

    scope = models.CharField(max_length=64, unique=True)
    next_value = models.BigIntegerField(default=1)

    def __str__(self) -> str:
        return f"{self.scope}: next {self.next_value}"


class Invoice(models.Model):
    number = models.CharField(max_length=64, unique=True)
    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.PROTECT, related_name="invoices")
    kind = models.CharField(max_length=16, choices=InvoiceKind.choices, default=InvoiceKind.RECURRING)
    package = models.ForeignKey("plans.Package", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    period_start = models.DateField()
    period_end = models.DateField()
    issued_on = models.DateField()
    issued_at = models.DateTimeField()
    due_on = models.DateField()
    currency = models.CharField(max_length=3, default="BDT")
    total_paisa = models.BigIntegerField()
    # Kept equal to the sum of this invoice's ledger entries by every service that posts one.
    amount_due_paisa = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.OPEN)

    class Meta:
        ordering = ["-issued_on", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscriber", "period_start"],
                condition=models.Q(kind="recurring"),
                name="invoice_one_recurring_per_period",
            ),
        ]
        indexes = [
            # Carries the amount so the dashboard's outstanding and aging sums read the index only.
            models.Index(fields=["status", "due_on", "amount_due_paisa"], name="invoice_status_due_amount_idx"),
            models.Index(fields=["subscriber", "status"], name="invoice_subscriber_status_idx"),
            # "Billed this month" on the dashboard, from the index alone.
            models.Index(fields=["issued_on", "status", "total_paisa"], name="invoice_issued_idx"),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def total(self):
        return from_paisa(self.total_paisa)

    @property
    def amount_due(self):
        return from_paisa(self.amount_due_paisa)


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=20, choices=LineKind.choices)
    description = models.CharField(max_length=300)
    amount_paisa = models.BigIntegerField()

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_position_unique")]


class CreditNote(models.Model):
    """A correction that lowers what a subscriber owes; issued invoices are never edited."""

    number = models.CharField(max_length=64, unique=True)
    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.PROTECT, related_name="credit_notes")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="credit_notes")
    issued_on = models.DateField()
    issued_at = models.DateTimeField()
    currency = models.CharField(max_length=3, default="BDT")
    total_paisa = models.BigIntegerField(help_text="amount credited, positive")
    reason = models.CharField(max_length=300)
    created_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-issued_on", "-id"]
        constraints = [models.CheckConstraint(condition=models.Q(total_paisa__gt=0), name="credit_note_positive")]

    def __str__(self) -> str:
        return self.number


class CreditNoteLine(models.Model):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=20, choices=LineKind.choices)
    description = models.CharField(max_length=300)
    amount_paisa = models.BigIntegerField(help_text="signed as on an invoice: negative is a credit")

    class Meta:
        ordering = ["credit_note", "position"]


class LedgerEntry(models.Model):
    """One movement on a subscriber's account: positive = owed by the subscriber.

    Entries with an invoice make up that invoice's amount due; entries without one are
    unapplied credit. A subscriber's balance is the sum of all their entries.
    """

    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    amount_paisa = models.BigIntegerField()
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_entries")
    payment = models.ForeignKey("payments.Payment", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_entries")
    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_entries")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["subscriber", "invoice"], name="ledger_subscriber_invoice_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_paisa}"


class PackageChange(models.Model):
    """A subscriber's move from one package to another and the documents it produced."""

    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.PROTECT, related_name="package_changes")
    old_package = models.ForeignKey("plans.Package", on_delete=models.PROTECT, related_name="+")
    new_package = models.ForeignKey("plans.Package", on_delete=models.PROTECT, related_name="+")
    effective_on = models.DateField()
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField()
    created_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    applied_at = models.DateTimeField(null=True, blank=True, help_text="null while scheduled for a future date")

    class Meta:
        ordering = ["-created_at"]
