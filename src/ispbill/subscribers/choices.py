from django.db import models
from django.utils.translation import gettext_lazy as _


class SubscriberStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    SUSPENDED = "suspended", _("Suspended")
    DISABLED = "disabled", _("Disabled")

    @property
    def colour(self) -> str:
        return {"active": "green", "suspended": "orange", "disabled": "grey"}[self.value]


class BillingModeChoice(models.TextChoices):
    CALENDAR = "calendar", _("Calendar month")
    ANNIVERSARY = "anniversary", _("Anniversary of activation")
