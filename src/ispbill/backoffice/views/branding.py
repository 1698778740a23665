"""Back-office pages: the ISP's identity on its documents (name, address, hotline, logo)."""

from __future__ import annotations

import hashlib
from io import BytesIO

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from ispbill.audit.services import record, target_of
from ispbill.backoffice.forms import client_ip
from ispbill.backoffice.permissions import permission_required
from ispbill.backoffice.views.common import SeeOther, form_errors
from ispbill.billing.models import BillingSettings
from ispbill.billing.services import update_billing_settings
from ispbill.core import clock
from ispbill.core.errors import DomainError

LOGO_MAX_BYTES = 256 * 1024
LOGO_MAX_PIXELS = 4096 * 4096
#: Magic bytes of the image kinds a logo may be, and the content type each is served as.
LOGO_KINDS = ((b"\x89PNG\r\n\x1a\n", "image/png", "PNG"), (b"\xff\xd8\xff", "image/jpeg", "JPEG"))


def sniff_logo(data: bytes) -> str:
    """The logo's content type, told by its first bytes and confirmed by decoding it
    (a file that only starts like a PNG must not break every PDF later)."""
    for magic, content_type, pil_format in LOGO_KINDS:
        if data.startswith(magic):
            break
    else:
        raise ValidationError(_("the logo must be a PNG or JPEG image"))
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(BytesIO(data)) as image:
            if image.format != pil_format:
                raise ValidationError(_("the logo must be a PNG or JPEG image"))
            width, height = image.size
            if width * height > LOGO_MAX_PIXELS:
                raise ValidationError(_("the logo is too large (at most 4096 × 4096 pixels)"))
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise ValidationError(_("the logo could not be read as an image")) from None
    return content_type


class BrandingForm(forms.Form):
    isp_name = forms.CharField(label=gettext_lazy("ISP name"), max_length=120)
    isp_address = forms.CharField(
        label=gettext_lazy("Address"), max_length=300, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    hotline = forms.CharField(label=gettext_lazy("Hotline"), max_length=32, required=False)
    logo = forms.FileField(
        label=gettext_lazy("Logo (PNG or JPEG, at most 256 KB)"), required=False,
        widget=forms.ClearableFileInput(attrs={"accept": "image/png,image/jpeg"}),
    )
    remove_logo = forms.BooleanField(label=gettext_lazy("Remove the logo"), required=False)

    def clean_logo(self):
        upload = self.cleaned_data.get("logo")
        if not upload:
            return None
        if upload.size > LOGO_MAX_BYTES:
            raise ValidationError(_("the logo must be at most 256 KB"))
        data = upload.read(LOGO_MAX_BYTES + 1)
        if len(data) > LOGO_MAX_BYTES:
            raise ValidationError(_("the logo must be at most 256 KB"))
        return data, sniff_logo(data)


def _identity(settings: BillingSettings) -> dict:
    """What the audit log keeps of the branding: the image as its type, size and hash."""
    logo = bytes(settings.logo) if settings.logo else b""
    return {
        "isp_name": settings.isp_name,
        "isp_address": settings.isp_address,
        "hotline": settings.hotline,
        "logo": {
            "content_type": settings.logo_content_type, "bytes": len(logo), "sha256": hashlib.sha256(logo).hexdigest()
        } if logo else None,
    }


@require_http_methods(["GET", "HEAD", "POST"])
@permission_required("manage_settings")
def branding(request):
    settings = BillingSettings.load()
    if request.method != "POST":
        form = BrandingForm(initial={"isp_name": settings.isp_name, "isp_address": settings.isp_address, "hotline": settings.hotline})
        context = {"title": _("Branding"), "nav": "settings", "form": form, "s": settings, "has_logo": bool(settings.logo)}
        return render(request, "backoffice/invoice_branding.html", context)

    form = BrandingForm(request.POST, request.FILES)
    if not form.is_valid():
        form_errors(request, form)
        return SeeOther(reverse("backoffice:branding"))
    data = form.cleaned_data
    changes = {"isp_name": data["isp_name"].strip(), "isp_address": data["isp_address"].strip(), "hotline": data["hotline"].strip()}
    if data["logo"]:
        changes["logo"], changes["logo_content_type"] = data["logo"]
    elif data["remove_logo"]:
        changes["logo"], changes["logo_content_type"] = b"", ""
    now = clock.now()
    try:
        with transaction.atomic():
            before = _identity(BillingSettings.objects.select_for_update().get(pk=settings.pk))
            updated = update_billing_settings(**changes)
            after = _identity(updated)
            if before != after:
                record(
                    action="settings.branding", at=now, user=request.user, target=target_of(updated),
                    before=before, after=after, summary=_("ISP name, address, hotline or logo changed"), ip=client_ip(request),
                )
    except DomainError as exc:
        messages.error(request, exc.message)
        return SeeOther(reverse("backoffice:branding"))
    messages.success(request, _("Saved. Invoices, receipts and credit notes now show these details."))
    return SeeOther(reverse("backoffice:branding"))


@require_GET
@permission_required("view_subscribers")
def branding_logo(request):
    """The logo as uploaded, with the content type it was checked to be."""
    row = BillingSettings.objects.filter(pk=1).values_list("logo", "logo_content_type").first()
    if not row or not row[0] or row[1] not in {kind[1] for kind in LOGO_KINDS}:
        raise Http404("no logo")
    response = HttpResponse(bytes(row[0]), content_type=row[1])
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=300"
    return response


urlpatterns = [
    path("settings/branding", branding, name="branding"),
    path("branding/logo", branding_logo, name="branding-logo"),
]
