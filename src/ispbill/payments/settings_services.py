"""The payment gateways as staff see them: configured (from the environment, secrets
never shown) and switched on or off. Off hides a gateway from new payments only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils.translation import gettext as _

from ispbill.audit.services import record, target_of
from ispbill.core.errors import NotFound
from ispbill.payments.gateways import GATEWAYS
from ispbill.payments.models import GatewaySwitch


@dataclass(frozen=True)
class GatewayRow:
    name: str
    label: str
    configured: bool  # every variable set
    usable: bool  # configured and the adapter could be built (keys load)
    enabled: bool  # staff's switch
    variables: tuple[tuple[str, bool], ...]  # (variable name, set?): never the value

    @property
    def offered(self) -> bool:
        return self.usable and self.enabled


def gateway_rows() -> list[GatewayRow]:
    from ispbill.payments.gateway_services import LABELS, configured

    off = GatewaySwitch.switched_off()
    variables = {
        name: tuple((var, bool(str(os.environ.get(var) or "").strip())) for var in cls.env_vars)
        for name, cls in GATEWAYS.items()
    }
    ready = configured() if any(all(is_set for _var, is_set in vs) for vs in variables.values()) else {}
    return [
        GatewayRow(
            name=name, label=LABELS.get(name, cls.label), configured=all(is_set for _var, is_set in variables[name]),
            usable=name in ready, enabled=name not in off, variables=variables[name],
        )
        for name, cls in GATEWAYS.items()
    ]


def set_gateway_enabled(*, gateway: str, enabled: bool, now: datetime, user=None, ip: str | None = None) -> GatewaySwitch:
    """Switch a gateway on or off for new payments and record ``settings.gateway``
    (nothing is recorded when it already was so)."""
    if gateway not in GATEWAYS:
        raise NotFound(_("there is no gateway '%(name)s'") % {"name": gateway}, code="gateway_not_found")
    with transaction.atomic():
        GatewaySwitch.objects.get_or_create(gateway=gateway, defaults={"enabled": True, "updated_at": now})
        switch = GatewaySwitch.objects.select_for_update().get(gateway=gateway)
        was = switch.enabled
        switch.enabled = enabled
        switch.updated_at = now
        switch.updated_by = user if getattr(user, "is_authenticated", False) else None
        switch.save()
        if was != enabled:
            record(
                action="settings.gateway", at=now, user=user, target=target_of(switch),
                before={"gateway": gateway, "enabled": was}, after={"gateway": gateway, "enabled": enabled},
                summary=f"{gateway} switched {'on' if enabled else 'off'} for new payments", ip=ip,
            )
    return switch
