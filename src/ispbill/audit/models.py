from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ActorKind(models.TextChoices):
    STAFF = "staff", _("Staff")
    SYSTEM = "system", _("Automatic")
    GATEWAY = "gateway", _("Payment gateway")
    SUBSCRIBER = "subscriber", _("Subscriber")


class AuditEvent(models.Model):
    """One thing that happened: who did what to which record, with the values before and
    after. Append-only: the database refuses UPDATE and DELETE on this table (triggers
    in the migration), so not even a bug or a shell session can rewrite history.

    The actor and target are copied as plain values (id and label), not foreign keys:
    an event must survive the user or record it names. ``subscriber_id`` names the
    subscriber an event concerns (their invoice voided, their payment matched), so a
    subscriber's activity is one indexed read whatever the target is."""

    at = models.DateTimeField(db_index=True)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.BigIntegerField(null=True, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    subscriber_id = models.BigIntegerField(null=True, blank=True)
    summary = models.CharField(max_length=500, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["action", "at"], name="audit_action_at_idx"),
            models.Index(fields=["target_type", "target_id", "at"], name="audit_target_idx"),
            models.Index(fields=["actor_id", "at"], name="audit_actor_idx"),
            models.Index(fields=["subscriber_id", "at"], name="audit_subscriber_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name or self.actor_kind} {self.action} {self.target_label}"
