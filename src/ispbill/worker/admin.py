from django.contrib import admin

from ispbill.worker.models import JobRun, OutboxItem


@admin.register(OutboxItem)
class OutboxItemAdmin(admin.ModelAdmin):
    list_display = ("id", "topic", "dedupe_key", "state", "attempts", "next_attempt_at", "last_error")
    list_filter = ("state", "topic")
    search_fields = ("dedupe_key",)
    readonly_fields = [f.name for f in OutboxItem._meta.fields]


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    list_display = ("name", "last_as_of", "last_finished_at", "runs", "last_result", "last_error")
    readonly_fields = [f.name for f in JobRun._meta.fields]
