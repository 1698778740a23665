from django.db import models
from django.utils.translation import gettext_lazy as _


class InvoiceStatus(models.TextChoices):
    OPEN = "open", _("Open")
    PARTIALLY_PAID = "partially_paid", _("Partially paid")
    PAID = "paid", _("Paid")
    VOID = "void", _("Void")

    @property
    def colour(self) -> str:
        return {"open": "blue", "partially_paid": "orange", "paid": "green", "void": "grey"}[self.value]


class InvoiceKind(models.TextChoices):
    RECURRING = "recurring", _("Recurring service")
    ADJUSTMENT = "adjustment", _("Adjustment")


class LineKind(models.TextChoices):
    PLAN = "plan", _("Plan charge")
    PRORATION_CHARGE = "proration_charge", _("Proration charge")
    PRORATION_CREDIT = "proration_credit", _("Proration credit")
    ADJUSTMENT = "adjustment", _("Adjustment")
    TAX = "tax", _("Tax")


class EntryKind(models.TextChoices):
    INVOICE = "invoice", _("Invoice issued")
    PAYMENT = "payment", _("Payment received")
    CREDIT_NOTE = "credit_note", _("Credit note")
    CREDIT_APPLIED = "credit_applied", _("Credit applied to an invoice")
    VOID = "void", _("Invoice voided")
    REFUND = "refund", _("Payment refunded")


class PaymentTermsChoice(models.TextChoices):
    PREPAID = "prepaid", _("Prepaid")
    POSTPAID = "postpaid", _("Postpaid")


class DueRuleChoice(models.TextChoices):
    PERIOD_START = "period_start", _("Days after the period starts")
    AFTER_ISSUE = "after_issue", _("Days after the invoice is issued")


class RoundingChoice(models.TextChoices):
    PAISA = "paisa", _("To the paisa")
    TAKA = "taka", _("To the whole taka")
