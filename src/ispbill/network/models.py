from __future__ import annotations

from django.db import models

from ispbill.core import crypto
from ispbill.network.choices import ActionKind, ActionStatus, EnforcementMethod, NetState


class Router(models.Model):
    """A NAS: a MikroTik router reached over the RouterOS API, or a NAS behind RADIUS."""

    name = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=8728)
    use_tls = models.BooleanField(default=False)
    tls_verify = models.BooleanField(default=True)
    username = models.CharField(max_length=100, blank=True)
    password_encrypted = models.TextField(blank=True)
    method = models.CharField(max_length=16, choices=EnforcementMethod.choices, default=EnforcementMethod.ROUTEROS)
    suspended_profile = models.CharField(max_length=100, default="Suspended_Profile")
    suspended_address_list = models.CharField(max_length=100, default="suspended")
    radius_secret_encrypted = models.TextField(blank=True)
    coa_port = models.PositiveIntegerField(default=3799)
    is_active = models.BooleanField(default=True)
    # Health, as last seen by the dispatcher, the reconcile job or a test.
    identity = models.CharField(max_length=200, blank=True)
    version = models.CharField(max_length=100, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def password(self) -> str:
        return crypto.decrypt(self.password_encrypted)

    @password.setter
    def password(self, value: str) -> None:
        self.password_encrypted = crypto.encrypt(value)

    @property
    def radius_secret(self) -> str:
        return crypto.decrypt(self.radius_secret_encrypted)

    @radius_secret.setter
    def radius_secret(self, value: str) -> None:
        self.radius_secret_encrypted = crypto.encrypt(value)

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures == 0


class NetworkState(models.Model):
    """What the network should enforce for a subscriber, and what it last did."""

    subscriber = models.OneToOneField("subscribers.Subscriber", on_delete=models.CASCADE, related_name="network")
    desired = models.CharField(max_length=16, choices=NetState.choices, default=NetState.ACTIVE)
    applied = models.CharField(max_length=16, choices=NetState.choices, default=NetState.UNKNOWN)
    generation = models.PositiveIntegerField(default=0)
    reason = models.CharField(max_length=16, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    # Last session address seen for the subscriber (reconcile), for the captive page.
    address = models.CharField(max_length=45, blank=True, db_index=True)
    address_seen_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.subscriber_id}: want {self.desired}, applied {self.applied}"


class EnforcementAction(models.Model):
    """One change of a subscriber's network state, delivered by the outbox topic
    ``network.enforce``. Unique per (subscriber, action, generation)."""

    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.PROTECT, related_name="enforcement_actions")
    router = models.ForeignKey(Router, on_delete=models.PROTECT, null=True, blank=True, related_name="actions")
    action = models.CharField(max_length=16, choices=ActionKind.choices)
    generation = models.PositiveIntegerField()
    reason = models.CharField(max_length=16)
    status = models.CharField(max_length=16, choices=ActionStatus.choices, default=ActionStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    note = models.CharField(max_length=300, blank=True)
    requested_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField()
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "action", "generation"], name="enforcement_action_once"),
        ]
        indexes = [
            models.Index(fields=["status", "router"], name="enforcement_status_idx"),
            # The dashboard's suspensions and reconnections today.
            models.Index(fields=["created_at", "action"], name="enforcement_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.subscriber_id} gen {self.generation} ({self.status})"


class ReconcileRun(models.Model):
    """One comparison of a router with the billing system, and the leakage it found."""

    router = models.ForeignKey(Router, on_delete=models.CASCADE, related_name="reconcile_runs")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    secrets = models.PositiveIntegerField(default=0)
    online = models.PositiveIntegerField(default=0)
    online_unpaid = models.JSONField(default=list, help_text="usernames online though suspended in billing")
    unknown_on_router = models.JSONField(default=list, help_text="secrets billing does not know")
    paid_but_suspended = models.JSONField(default=list, help_text="usernames restricted on the router though active in billing")
    missing_on_router = models.JSONField(default=list)
    repaired = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
