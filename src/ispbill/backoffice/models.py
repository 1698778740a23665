from __future__ import annotations

from django.db import models

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
