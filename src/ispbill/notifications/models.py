from __future__ import annotations

from django.db import models

from ispbill.notifications.choices import ChannelChoice, Language, MessageKindChoice, MessageStatus, Trigger


class Message(models.Model):
    """One SMS or email to a subscriber: what was decided, what was sent, what it cost.

    ``dedupe_key`` is (invoice, step, channel) for automatic reminders, so a step is
    never queued twice however often the dunning job runs. The outbox item
    ``notifications.send`` with key ``message:<id>`` delivers it.
    """

    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.PROTECT, related_name="messages")
    invoice = models.ForeignKey("billing.Invoice", on_delete=models.PROTECT, null=True, blank=True, related_name="messages")
    payment = models.ForeignKey("payments.Payment", on_delete=models.PROTECT, null=True, blank=True, related_name="messages")
    kind = models.CharField(max_length=16, choices=MessageKindChoice.choices)
    step = models.CharField(max_length=16, blank=True, help_text="ladder offset, e.g. -5, +0, +1")
    channel = models.CharField(max_length=8, choices=ChannelChoice.choices)
    trigger = models.CharField(max_length=8, choices=Trigger.choices, default=Trigger.AUTO)
    status = models.CharField(max_length=16, choices=MessageStatus.choices, default=MessageStatus.QUEUED)
    dedupe_key = models.CharField(max_length=120, unique=True)
    recipient = models.CharField(max_length=254, blank=True)
    language = models.CharField(max_length=2, choices=Language.choices, blank=True)
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField(blank=True)
    encoding = models.CharField(max_length=8, blank=True)
    segments = models.PositiveSmallIntegerField(null=True, blank=True)
    provider_reference = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField()
    sending_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["subscriber", "created_at"], name="message_subscriber_idx"),
            models.Index(fields=["invoice"], name="message_invoice_idx"),
            models.Index(fields=["status", "channel"], name="message_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.channel} to {self.recipient or self.subscriber_id} ({self.status})"


class MessageTemplate(models.Model):
    """A staff-edited template; kinds without one use the built-in text."""

    kind = models.CharField(max_length=16, choices=MessageKindChoice.choices)
    language = models.CharField(max_length=2, choices=Language.choices)
    channel = models.CharField(max_length=8, choices=ChannelChoice.choices)
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "language", "channel"], name="template_unique")]

    def __str__(self) -> str:
        return f"{self.kind}/{self.language}/{self.channel}"
