from django.contrib import admin

from ispbill.payments.models import InboundWebhook, Payment, PaymentAttempt


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ("received_at", "subscriber", "amount", "method", "method_label", "reference", "status")
    list_filter = ("method", "status", "gateway")
    search_fields = ("reference", "transaction_id", "gateway_reference", "subscriber__name")
    list_select_related = ("subscriber",)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(_ReadOnly):
    list_display = ("created_at", "reference", "gateway", "subscriber", "amount", "status", "next_check_at")
    list_filter = ("gateway", "status")
    search_fields = ("reference", "gateway_reference", "subscriber__name")
    list_select_related = ("subscriber",)


@admin.register(InboundWebhook)
class InboundWebhookAdmin(_ReadOnly):
    list_display = ("received_at", "gateway", "kind", "outcome", "source_ip", "attempt", "payment")
    list_filter = ("gateway", "kind", "outcome")
    search_fields = ("body", "path", "outcome_detail")
