"""Read-only views of billing documents: issued invoices are never edited, and every
change to money goes through the services (API, back office)."""

from django.contrib import admin

from ispbill.billing.models import BillingSettings, CreditNote, CreditNoteLine, Invoice, InvoiceLine, LedgerEntry


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    readonly_fields = ("position", "kind", "description", "amount_paisa")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ("number", "subscriber", "period_start", "period_end", "due_on", "total", "amount_due", "status")
    list_filter = ("status", "kind", "issued_on")
    search_fields = ("number", "subscriber__name", "subscriber__pppoe_username")
    list_select_related = ("subscriber",)
    inlines = [InvoiceLineInline]


class CreditNoteLineInline(InvoiceLineInline):
    model = CreditNoteLine


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyAdmin):
    list_display = ("number", "subscriber", "invoice", "issued_on", "total_paisa", "reason")
    search_fields = ("number", "subscriber__name")
    list_select_related = ("subscriber", "invoice")
    inlines = [CreditNoteLineInline]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "subscriber", "kind", "amount_paisa", "invoice", "payment", "credit_note")
    list_filter = ("kind",)
    search_fields = ("subscriber__name", "subscriber__pppoe_username")
    list_select_related = ("subscriber", "invoice", "payment", "credit_note")


@admin.register(BillingSettings)
class BillingSettingsAdmin(ReadOnlyAdmin):
    list_display = ("billing_mode", "billing_day", "payment_terms", "invoice_lead_days", "grace_days", "rounding")
