from django.db import models


class InvoiceStatus(models.TextChoices):
    OPEN = "open", "Open"
    PARTIALLY_PAID = "partially_paid", "Partially paid"
    PAID = "paid", "Paid"
    VOID = "void", "Void"

    @property
    def colour(self) -> str:
        return {"open": "blue", "partially_paid": "orange", "paid": "green", "void": "grey"}[self.value]


class InvoiceKind(models.TextChoices):
    RECURRING = "recurring", "Recurring service"
    ADJUSTMENT = "adjustment", "Adjustment"


class LineKind(models.TextChoices):
    PLAN = "plan", "Plan charge"
    PRORATION_CHARGE = "proration_charge", "Proration charge"
    PRORATION_CREDIT = "proration_credit", "Proration credit"
    ADJUSTMENT = "adjustment", "Adjustment"
    TAX = "tax", "Tax"


class EntryKind(models.TextChoices):
    INVOICE = "invoice", "Invoice issued"
    PAYMENT = "payment", "Payment received"
    CREDIT_NOTE = "credit_note", "Credit note"
    CREDIT_APPLIED = "credit_applied", "Credit applied to an invoice"
    VOID = "void", "Invoice voided"
    REFUND = "refund", "Payment refunded"


class PaymentTermsChoice(models.TextChoices):
    PREPAID = "prepaid", "Prepaid"
    POSTPAID = "postpaid", "Postpaid"


class DueRuleChoice(models.TextChoices):
    PERIOD_START = "period_start", "Days after the period starts"
    AFTER_ISSUE = "after_issue", "Days after the invoice is issued"


class RoundingChoice(models.TextChoices):
    PAISA = "paisa", "To the paisa"
    TAKA = "taka", "To the whole taka"
