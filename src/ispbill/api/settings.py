from __future__ import annotations

from ninja import Router

from ispbill.api.schemas import ErrorOut, SettingsOut, SettingsPatch
from ispbill.billing import services
from ispbill.billing.models import BillingSettings

router = Router(tags=["settings"])


def out(s: BillingSettings) -> dict:
    fields = [f for f in SettingsOut.model_fields if f != "tax_rate"]
    data = {f: getattr(s, f) for f in fields}
    data["tax_rate"] = f"{s.tax_rate:.2f}"
    return data


@router.get("", response=SettingsOut)
def get_settings(request):
    return out(BillingSettings.load())


@router.patch("", response={200: SettingsOut, 422: ErrorOut})
def update_settings(request, payload: SettingsPatch):
    return out(services.update_billing_settings(**payload.dict(exclude_unset=True)))
