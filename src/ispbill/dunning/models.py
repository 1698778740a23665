from __future__ import annotations

from datetime import time

from django.db import models

from ispbill.dunning.policy import DEFAULT_LADDER, Channel, LadderStep, MessageKind


def default_ladder() -> list[dict]:
    return [{"offset": s.offset, "kind": str(s.kind), "channels": [str(c) for c in s.channels]} for s in DEFAULT_LADDER]


class DunningSettings(models.Model):
    """The reminder ladder and quiet hours: a single row (pk=1). Grace days live in the
    billing settings."""

    ladder = models.JSONField(default=default_ladder)
    quiet_hours_start = models.TimeField(default=time(21, 0))
    quiet_hours_end = models.TimeField(default=time(8, 0))
    payment_link_days = models.PositiveSmallIntegerField(default=30)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "dunning settings"
        constraints = [models.CheckConstraint(condition=models.Q(pk=1), name="dunning_settings_single_row")]

    @classmethod
    def load(cls) -> "DunningSettings":
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj

    def steps(self) -> tuple[LadderStep, ...]:
        return tuple(
            LadderStep(int(s["offset"]), MessageKind(s["kind"]), tuple(Channel(c) for c in s["channels"]))
            for s in self.ladder
        )
