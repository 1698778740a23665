from __future__ import annotations

from ninja import Router

from ispbill.api.permissions import require_permission
from ispbill.api.schemas import DunningSettingsOut, DunningSettingsPatch, ErrorOut, SettingsOut, SettingsPatch
from ispbill.billing.models import BillingSettings
from ispbill.billing.settings_services import update_billing_settings
from ispbill.core import clock
from ispbill.dunning.settings_services import update_reminder_settings

router = Router(tags=["settings"])


def out(s: BillingSettings) -> dict:
    fields = [f for f in SettingsOut.model_fields if f != "tax_rate"]
    data = {f: getattr(s, f) for f in fields}
    data["tax_rate"] = f"{s.tax_rate:.2f}"
    return data


@router.get("", response=SettingsOut)
def get_settings(request):
    return out(BillingSettings.load())


def _actor(request) -> dict:
    return {"now": clock.now(), "user": getattr(request, "auth", None), "ip": request.META.get("REMOTE_ADDR") or None}


@router.patch("", response={200: SettingsOut, 422: ErrorOut})
def update_settings(request, payload: SettingsPatch):
    require_permission(request, "manage_settings")
    return out(update_billing_settings(changes=payload.dict(exclude_unset=True), **_actor(request)))


def dunning_out(ds) -> dict:
    return {
        "ladder": ds.ladder, "quiet_hours_start": ds.quiet_hours_start.strftime("%H:%M"),
        "quiet_hours_end": ds.quiet_hours_end.strftime("%H:%M"), "payment_link_days": ds.payment_link_days,
    }


@router.get("/dunning", response=DunningSettingsOut)
def get_dunning_settings(request):
    from ispbill.dunning.models import DunningSettings

    return dunning_out(DunningSettings.load())


@router.patch("/dunning", response={200: DunningSettingsOut, 422: ErrorOut})
def update_dunning_settings(request, payload: DunningSettingsPatch):
    require_permission(request, "manage_settings")
    return dunning_out(update_reminder_settings(changes=payload.dict(exclude_unset=True), **_actor(request)))
