from django.contrib import admin

from ispbill.subscribers.models import Subscriber


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = ("name", "pppoe_username", "phone", "area", "package", "status", "activated_on", "billed_through")
    list_filter = ("status", "package", "area")
    search_fields = ("name", "pppoe_username", "phone")
    list_select_related = ("package",)
    readonly_fields = ("billed_through", "package", "created_at", "updated_at")
