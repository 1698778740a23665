from django.db import models
from django.utils.translation import gettext_lazy as _


class MessageStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    CANCELLED = "cancelled", _("Cancelled")
    DEAD = "dead", _("Failed")
    UNCERTAIN = "uncertain", _("Outcome unknown")

    @property
    def colour(self) -> str:
        return {
            "queued": "blue", "sending": "orange", "sent": "green", "cancelled": "grey", "dead": "red", "uncertain": "orange",
        }[self.value]


class MessageKindChoice(models.TextChoices):
    REMINDER = "reminder", _("Reminder before the due date")
    DUE_TODAY = "due_today", _("Due today")
    OVERDUE = "overdue", _("Overdue: suspension pending")
    SUSPENDED = "suspended", _("Service suspended")
    RECONNECTED = "reconnected", _("Service restored")
    RECEIPT = "receipt", _("Payment receipt")


class ChannelChoice(models.TextChoices):
    SMS = "sms", _("SMS")
    EMAIL = "email", _("Email")


class Trigger(models.TextChoices):
    AUTO = "auto", _("Automatic")
    MANUAL = "manual", _("Sent by staff")


class Language(models.TextChoices):
    BANGLA = "bn", "বাংলা"
    ENGLISH = "en", "English"
