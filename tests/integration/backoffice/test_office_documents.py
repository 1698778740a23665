"""Printable and PDF invoices, receipts and credit notes, and the branding they carry."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from io import BytesIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image
from pypdf import PdfReader

from ispbill.audit.models import AuditEvent
from ispbill.billing.models import BillingSettings, Invoice
from ispbill.billing.services import issue_credit_note, update_billing_settings
from ispbill.payments.choices import PaymentStatus
from ispbill.payments.models import Payment
from ispbill.payments.services import record_payment
from ispbill.subscribers.models import Subscriber

from ..billing.billing_support import bill, make_package, make_subscriber
from .office_support import NO_ROLE, ROLES

pytestmark = pytest.mark.django_db

BANGLA_NAME = "মোহাম্মদ রহিম উদ্দিন"


def _image(kind: str = "PNG", size=(120, 48)) -> bytes:
    buf = BytesIO()
    Image.new("RGB", size, (11, 92, 173)).save(buf, kind)
    return buf.getvalue()


def _pdf_text(response) -> str:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    reader = PdfReader(BytesIO(response.content))
    return "\n".join(page.extract_text() for page in reader.pages)


def _flat(text: str) -> str:
    """The extracted text without line breaks (pypdf breaks lines inside some shaped
    Bengali words) and without the codes of glyphs that carry no text of their own (the
    first half of a split vowel sign such as ো: its cluster maps to the whole sign)."""
    return re.sub(r"[\x00-\x09\x0b-\x1f]", "", re.sub(r"\s*\n\s*", "", text))


def _pdf_images(response) -> int:
    reader = PdfReader(BytesIO(response.content))
    return sum(len(page.images) for page in reader.pages)


def _pay(sub, amount: str, now, **kwargs):
    payment, _ = record_payment(subscriber_id=sub.pk, amount=Decimal(amount), method="cash", received_at=now, notify=False, **kwargs)
    return payment


@pytest.fixture
def branded(world):
    update_billing_settings(isp_name="Dhaka Net Ltd", isp_address="House 7, Road 3, Mirpur 10, Dhaka", hotline="09612-345678")
    return world


# -- invoice ------------------------------------------------------------------------------

def test_invoice_pdf_has_the_number_total_name_and_isp(branded, client_for):
    inv = Invoice.objects.get(subscriber=branded["sub"])
    response = client_for("viewer").get(f"/office/invoices/{inv.pk}/pdf")
    text = _pdf_text(response)
    assert response["Content-Disposition"] == f'inline; filename="{inv.number}.pdf"'
    assert inv.number in text
    assert "৳ 1,000.00" in text  # total and amount due, exact, with the taka sign
    assert branded["sub"].name in text
    assert "Dhaka Net Ltd" in text and "09612-345678" in text and "Mirpur 10" in text
    assert "Basic 10M" in text


def test_invoice_pdf_prints_a_bengali_name_and_exact_paisa(world, client_for, fixed_clock):
    pkg = make_package("Home 7M", "999.99")
    sub = make_subscriber(pkg, date(2026, 11, 1))
    Subscriber.objects.filter(pk=sub.pk).update(name=BANGLA_NAME)
    bill(date(2026, 11, 1))
    inv = Invoice.objects.get(subscriber=sub)
    _pay(sub, "333.33", fixed_clock.now())
    text = _pdf_text(client_for("viewer").get(f"/office/invoices/{inv.pk}/pdf"))
    assert BANGLA_NAME in _flat(text)
    assert "৳ 999.99" in text and "−৳ 333.33" in text and "৳ 666.66" in text


def test_the_pdf_embeds_fonts_covering_bengali(world, client_for):
    Subscriber.objects.filter(pk=world["sub"].pk).update(name=BANGLA_NAME)
    inv = Invoice.objects.get(subscriber=world["sub"])
    response = client_for("viewer").get(f"/office/invoices/{inv.pk}/pdf")
    reader = PdfReader(BytesIO(response.content))
    fonts = set()
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            fonts.add(str(font.get_object()["/BaseFont"]))
    assert any("NotoSansBengali" in f for f in fonts), fonts
    assert any(re.search(r"\+NotoSans$", f) for f in fonts), fonts


def test_a_void_invoice_says_so(world, client_for):
    inv = Invoice.objects.get(subscriber=world["sub"])
    client = client_for("billing")
    client.post(f"/office/invoices/{inv.pk}/void", {"reason": "dup", "confirm": "1"})
    text = _pdf_text(client.get(f"/office/invoices/{inv.pk}/pdf"))
    assert "VOID" in text and "৳ 0.00" in text
    assert "VOID" in client.get(f"/office/invoices/{inv.pk}/print").content.decode()


def test_invoice_print_page(branded, client_for, fixed_clock):
    inv = Invoice.objects.get(subscriber=branded["sub"])
    _pay(branded["sub"], "250.00", fixed_clock.now())
    response = client_for("viewer").get(f"/office/invoices/{inv.pk}/print")
    body = response.content.decode()
    assert response.status_code == 200
    for text in (inv.number, "Dhaka Net Ltd", "House 7, Road 3", "09612-345678", branded["sub"].name, "৳ 1,000.00", "−৳ 250.00", "৳ 750.00"):
        assert text in body, text
    assert f'href="/office/invoices/{inv.pk}/pdf"' in body
    assert "/office/branding/logo" not in body  # no logo yet


def test_unknown_documents_are_404(world, client_for):
    client = client_for("viewer")
    for url in ("/office/invoices/999999/pdf", "/office/invoices/999999/print", "/office/credit-notes/999999/pdf",
                "/office/payments/999999/receipt", "/office/payments/999999/receipt.pdf"):
        assert client.get(url).status_code == 404, url


# -- receipt ------------------------------------------------------------------------------

def test_receipt_shows_the_payment_and_where_it_went(branded, client_for, fixed_clock):
    sub = branded["sub"]
    inv = Invoice.objects.get(subscriber=sub)
    payment = _pay(sub, "1200.50", fixed_clock.now(), reference="MR-1182")
    client = client_for("viewer")
    page = client.get(f"/office/payments/{payment.pk}/receipt")
    body = page.content.decode()
    assert page.status_code == 200
    for text in ("Payment receipt", "Dhaka Net Ltd", sub.name, "৳ 1,200.50", inv.number, "৳ 1,000.00", "৳ 200.50", "MR-1182", "Cash"):
        assert text in body, text
    response = client.get(f"/office/payments/{payment.pk}/receipt.pdf")
    text = _pdf_text(response)
    assert response["Content-Disposition"] == f'inline; filename="Payment-{payment.pk}.pdf"'
    for expected in ("৳ 1,200.50", inv.number, "৳ 1,000.00", "৳ 200.50", sub.name, "Account credit now"):
        assert expected in text, expected


def test_no_receipt_for_a_payment_held_for_review(world, client_for, fixed_clock):
    payment = _pay(world["sub"], "10.00", fixed_clock.now())
    Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.REJECTED)
    client = client_for("admin")
    assert client.get(f"/office/payments/{payment.pk}/receipt").status_code == 404
    assert client.get(f"/office/payments/{payment.pk}/receipt.pdf").status_code == 404


# -- credit note --------------------------------------------------------------------------

def test_credit_note_pdf(branded, client_for, fixed_clock):
    inv = Invoice.objects.get(subscriber=branded["sub"])
    note = issue_credit_note(
        subscriber_id=branded["sub"].pk, invoice_id=inv.pk, amount=Decimal("87.65"), reason="Outage 2 days",
        today=date(2026, 11, 25), now=fixed_clock.now(),
    )
    client = client_for("viewer")
    response = client.get(f"/office/credit-notes/{note.pk}/pdf")
    text = _pdf_text(response)
    assert response["Content-Disposition"] == f'inline; filename="{note.number}.pdf"'
    for expected in (note.number, inv.number, "Outage 2 days", "৳ 87.65", branded["sub"].name, "Dhaka Net Ltd"):
        assert expected in text, expected
    body = client.get(f"/office/credit-notes/{note.pk}/print").content.decode()
    assert note.number in body and "৳ 87.65" in body


# -- branding -----------------------------------------------------------------------------

def test_logo_upload_appears_on_documents_and_is_served_back(world, client_for):
    inv = Invoice.objects.get(subscriber=world["sub"])
    client = client_for("admin")
    assert _pdf_images(client.get(f"/office/invoices/{inv.pk}/pdf")) == 0
    logo = _image("PNG")
    response = client.post("/office/settings/branding", {
        "isp_name": "Mirpur Fiber", "isp_address": "Road 1, Mirpur", "hotline": "16XXX",
        "logo": SimpleUploadedFile("logo.png", logo, content_type="image/png"),
    })
    assert response.status_code == 303 and response["Location"] == "/office/settings/branding"
    settings = BillingSettings.load()
    assert bytes(settings.logo) == logo and settings.logo_content_type == "image/png" and settings.isp_name == "Mirpur Fiber"

    served = client.get("/office/branding/logo")
    assert served.status_code == 200 and served["Content-Type"] == "image/png" and served.content == logo
    assert served["X-Content-Type-Options"] == "nosniff"
    pdf = client.get(f"/office/invoices/{inv.pk}/pdf")
    assert _pdf_images(pdf) == 1 and "Mirpur Fiber" in _pdf_text(pdf)
    assert "/office/branding/logo" in client.get(f"/office/invoices/{inv.pk}/print").content.decode()

    event = AuditEvent.objects.get(action="settings.branding")
    assert event.actor_name == "admin-user"
    assert event.before["isp_name"] == "ispbill demo ISP" and event.before["logo"] is None
    assert event.after["isp_name"] == "Mirpur Fiber" and event.after["hotline"] == "16XXX"
    assert event.after["logo"]["content_type"] == "image/png" and event.after["logo"]["bytes"] == len(logo)
    assert "iVBOR" not in str(event.after) and "\\x89PNG" not in str(event.after)  # no image bytes in the log


def test_a_jpeg_logo_is_accepted_and_can_be_removed(world, client_for):
    client = client_for("admin")
    jpeg = _image("JPEG")
    client.post("/office/settings/branding", {"isp_name": "X Net", "logo": SimpleUploadedFile("l.jpg", jpeg, "image/jpeg")})
    assert client.get("/office/branding/logo")["Content-Type"] == "image/jpeg"
    client.post("/office/settings/branding", {"isp_name": "X Net", "remove_logo": "1"})
    assert client.get("/office/branding/logo").status_code == 404
    assert not BillingSettings.load().logo
    assert AuditEvent.objects.filter(action="settings.branding").count() == 2


@pytest.mark.parametrize("name,data", [
    ("logo.gif", b"GIF89a" + b"\x00" * 64),
    ("logo.png", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"),
    ("logo.png", b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10),  # right magic, not an image
    ("logo.jpg", b"\x89PNG\r\n\x1a\n" + b"\x00" * 10),
    ("big.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * (256 * 1024)),
])
def test_bad_logos_are_refused(world, client_for, name, data):
    client = client_for("admin")
    response = client.post(
        "/office/settings/branding", {"isp_name": "Evil", "logo": SimpleUploadedFile(name, data, "image/png")}, follow=True
    )
    assert response.status_code == 200
    assert any("logo" in str(m).lower() for m in response.context["messages"])
    settings = BillingSettings.load()
    assert not settings.logo and settings.isp_name != "Evil"
    assert not AuditEvent.objects.filter(action="settings.branding").exists()


def test_branding_form_shows_current_values(world, client_for):
    update_billing_settings(isp_name="Shown Net <b>", hotline="01700")
    body = client_for("admin").get("/office/settings/branding").content.decode()
    assert 'value="Shown Net &lt;b&gt;"' in body and 'value="01700"' in body


def test_saving_unchanged_branding_records_nothing(world, client_for):
    s = BillingSettings.load()
    client_for("admin").post("/office/settings/branding", {"isp_name": s.isp_name, "isp_address": s.isp_address, "hotline": s.hotline})
    assert not AuditEvent.objects.filter(action="settings.branding").exists()


# -- who may see what ---------------------------------------------------------------------

DOCUMENT_PAGES = {
    "receipt": "/office/payments/{payment}/receipt",
    "receipt-pdf": "/office/payments/{payment}/receipt.pdf",
    "credit-note": "/office/credit-notes/{note}/",
    "credit-note-print": "/office/credit-notes/{note}/print",
    "credit-note-pdf": "/office/credit-notes/{note}/pdf",
}


@pytest.fixture
def documents_world(world, fixed_clock):
    sub = world["sub"]
    inv = Invoice.objects.get(subscriber=sub)
    note = issue_credit_note(
        subscriber_id=sub.pk, invoice_id=inv.pk, amount=Decimal("10.00"), reason="r", today=date(2026, 11, 25), now=fixed_clock.now()
    )
    return {"payment": _pay(sub, "100.00", fixed_clock.now()).pk, "note": note.pk}


@pytest.mark.parametrize("role", [*ROLES, NO_ROLE])
@pytest.mark.parametrize("page", list(DOCUMENT_PAGES))
def test_document_page_by_role(documents_world, client_for, page, role):
    response = client_for(role).get(DOCUMENT_PAGES[page].format(**documents_world))
    assert response.status_code == (403 if role == NO_ROLE else 200)


@pytest.mark.parametrize("page", list(DOCUMENT_PAGES))
def test_document_page_sends_anonymous_visitors_to_the_login_page(documents_world, page):
    response = Client().get(DOCUMENT_PAGES[page].format(**documents_world))
    assert response.status_code == 302 and response["Location"].startswith("/office/login/?next=/office/")


@pytest.mark.parametrize("role,allowed", [("admin", True), ("billing", False), ("support", False), ("viewer", False), (NO_ROLE, False)])
def test_only_settings_managers_change_branding(world, client_for, role, allowed):
    response = client_for(role).post("/office/settings/branding", {"isp_name": "Changed"})
    assert response.status_code == (303 if allowed else 403)
    assert (BillingSettings.load().isp_name == "Changed") is allowed
