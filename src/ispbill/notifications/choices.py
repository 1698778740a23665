from django.db import models


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    CANCELLED = "cancelled", "Cancelled"
    DEAD = "dead", "Failed"
    UNCERTAIN = "uncertain", "Outcome unknown"

    @property
    def colour(self) -> str:
        return {
            "queued": "blue", "sending": "orange", "sent": "green", "cancelled": "grey", "dead": "red", "uncertain": "orange",
        }[self.value]


class MessageKindChoice(models.TextChoices):
    REMINDER = "reminder", "Reminder before the due date"
    DUE_TODAY = "due_today", "Due today"
    OVERDUE = "overdue", "Overdue: suspension pending"
    SUSPENDED = "suspended", "Service suspended"
    RECONNECTED = "reconnected", "Service restored"
    RECEIPT = "receipt", "Payment receipt"


class ChannelChoice(models.TextChoices):
    SMS = "sms", "SMS"
    EMAIL = "email", "Email"


class Trigger(models.TextChoices):
    AUTO = "auto", "Automatic"
    MANUAL = "manual", "Sent by staff"


class Language(models.TextChoices):
    BANGLA = "bn", "বাংলা"
    ENGLISH = "en", "English"
