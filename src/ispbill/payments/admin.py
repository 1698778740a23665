from django.contrib import admin

from ispbill.payments.models import Payment


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ("received_at", "subscriber", "amount", "method", "reference", "status")
    list_filter = ("method", "status")
    search_fields = ("reference", "transaction_id", "subscriber__name")
    list_select_related = ("subscriber",)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
