from __future__ import annotations

from django.db import models


class OutboxState(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_FLIGHT = "in_flight", "In flight"
    DONE = "done", "Done"
    DEAD = "dead", "Dead"

    @property
    def colour(self) -> str:
        return {"pending": "blue", "in_flight": "orange", "done": "green", "dead": "red"}[self.value]


class OutboxItem(models.Model):
    """A side effect to perform after the transaction that wrote it commits.

    ``topic`` names the registered handler; ``dedupe_key`` makes writing the same intent
    twice harmless. The dispatcher leases a row (``in_flight`` until ``locked_until``),
    runs the handler and records the outcome; a lease that expires is reclaimed.
    """

    topic = models.CharField(max_length=64)
    dedupe_key = models.CharField(max_length=200, unique=True)
    payload = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=OutboxState.choices, default=OutboxState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=8)
    next_attempt_at = models.DateTimeField()
    locked_until = models.DateTimeField(null=True, blank=True)
    locked_by = models.CharField(max_length=100, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="outbox_ready_idx"),
            models.Index(fields=["state", "locked_until"], name="outbox_lease_idx"),
            models.Index(fields=["topic", "state"], name="outbox_topic_state_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.topic} {self.dedupe_key} ({self.state})"


class JobRun(models.Model):
    """When each periodic job last ran, so a restarted worker knows what is due."""

    name = models.CharField(max_length=64, unique=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_as_of = models.DateTimeField(null=True, blank=True, help_text="the instant the last run ran as of")
    last_result = models.TextField(blank=True)
    last_error = models.TextField(blank=True)
    runs = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.name


class LeaderLease(models.Model):
    """Scheduler leadership where PostgreSQL advisory locks are not available (SQLite)."""

    name = models.CharField(max_length=64, unique=True)
    holder = models.CharField(max_length=100)
    expires_at = models.DateTimeField()
