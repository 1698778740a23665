from django.db import models


class SubscriberStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    DISABLED = "disabled", "Disabled"

    @property
    def colour(self) -> str:
        return {"active": "green", "suspended": "orange", "disabled": "grey"}[self.value]


class BillingModeChoice(models.TextChoices):
    CALENDAR = "calendar", "Calendar month"
    ANNIVERSARY = "anniversary", "Anniversary of activation"
