from django.db import models


class EnforcementMethod(models.TextChoices):
    ROUTEROS = "routeros", "RouterOS API"
    RADIUS = "radius", "RADIUS (FreeRADIUS SQL + CoA)"


class NetState(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    UNKNOWN = "unknown", "Unknown"


class ActionKind(models.TextChoices):
    SUSPEND = "suspend", "Suspend"
    RESTORE = "restore", "Restore"


class ActionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    SUPERSEDED = "superseded", "Superseded"
    SKIPPED = "skipped", "Skipped: no router"

    @property
    def colour(self) -> str:
        return {"pending": "blue", "done": "green", "failed": "red", "superseded": "grey", "skipped": "grey"}[self.value]


class Reason(models.TextChoices):
    OVERDUE = "overdue", "Unpaid past the grace period"
    PAYMENT = "payment", "Paid"
    STAFF = "staff", "By staff"
    RECONCILE = "reconcile", "Router repaired by reconciliation"
