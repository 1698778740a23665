from django.db import models
from django.utils.translation import gettext_lazy as _


class EnforcementMethod(models.TextChoices):
    ROUTEROS = "routeros", _("RouterOS API")
    RADIUS = "radius", _("RADIUS (FreeRADIUS SQL + CoA)")


class NetState(models.TextChoices):
    ACTIVE = "active", _("Active")
    SUSPENDED = "suspended", _("Suspended")
    UNKNOWN = "unknown", _("Unknown")


class ActionKind(models.TextChoices):
    SUSPEND = "suspend", _("Suspend")
    RESTORE = "restore", _("Restore")


class ActionStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")
    SUPERSEDED = "superseded", _("Superseded")
    SKIPPED = "skipped", _("Skipped: no router")

    @property
    def colour(self) -> str:
        return {"pending": "blue", "done": "green", "failed": "red", "superseded": "grey", "skipped": "grey"}[self.value]


class Reason(models.TextChoices):
    OVERDUE = "overdue", _("Unpaid past the grace period")
    PAYMENT = "payment", _("Paid")
    STAFF = "staff", _("By staff")
    RECONCILE = "reconcile", _("Router repaired by reconciliation")
