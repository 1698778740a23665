from django.contrib import admin

from ispbill.plans.models import Package


@admin.register(Package)
class PackageAdmin(admin.ModelAdmin):
    list_display = ("name", "price", "rate_limit", "router_profile", "is_active")
    list_filter = ("is_active",)
    search_fields = ("name",)
