from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from ispbill.backoffice.roles import PERMISSIONS


class Access(models.Model):
    """No table: the anchor of the back office's permissions (see :mod:`.roles`)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = list(PERMISSIONS.items())


class LoginFailure(models.Model):
    """One failed staff login, kept for throttling; in the database so every web
    process sees the same count."""

    username = models.CharField(max_length=150)
    ip = models.GenericIPAddressField(null=True, blank=True)
    failed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["username", "ip", "failed_at"], name="login_failure_idx")]

    def __str__(self) -> str:
        return f"{self.username} from {self.ip} at {self.failed_at:%Y-%m-%d %H:%M}"


class ImportStatus(models.TextChoices):
    UPLOADED = "uploaded", _("Uploaded")
    MAPPED = "mapped", _("Columns chosen")
    IMPORTING = "importing", _("Importing")
    CONFIRMED = "confirmed", _("Imported")


class ImportBatch(models.Model):
    """An uploaded spreadsheet of subscribers between its steps: the parsed cells, the
    column mapping staff chose, and, once confirmed, what happened to each row. An
    unconfirmed batch expires (``expires_at``); a confirmed one cannot be confirmed again.

    While ``importing``, ``results`` (and the counts) grow a chunk of rows at a time, and
    ``locked_by`` names the import job working on it until ``locked_until``; when that
    passes with nothing recorded, the job is taken for stopped and another may carry on."""

    file_name = models.CharField(max_length=255)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    uploaded_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=16, choices=ImportStatus.choices, default=ImportStatus.UPLOADED)
    headers = models.JSONField(default=list)
    rows = models.JSONField(default=list, help_text="cells as text, one list per row; emptied once confirmed")
    row_count = models.PositiveIntegerField(default=0)
    mapping = models.JSONField(default=dict, help_text="field -> column index")
    default_package = models.ForeignKey("plans.Package", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    default_router = models.ForeignKey("network.Router", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirmed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    results = models.JSONField(default=list, help_text="per row: number, values, status, subscriber id, errors")
    locked_by = models.CharField(max_length=100, blank=True, help_text="the import job working on it (while importing)")
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-uploaded_at", "-id"]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.get_status_display().lower()})"
