"""PDF invoices, receipts and credit notes (fpdf2, pure Python).

A :class:`~ispbill.billing.documents.Document` is laid out on A4 with the fonts shipped
in ``fonts/`` (Noto Sans for Latin, Noto Sans Bengali as the fallback for Bengali names
and the taka sign), shaped with HarfBuzz so conjuncts and vowel signs join as they
should. Only the glyphs a document uses are embedded.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from django.utils.translation import gettext as _
from fpdf import FPDF
from fpdf.enums import TableBordersLayout, XPos, YPos
from fpdf.fonts import FontFace

from ispbill.billing.documents import Document
from ispbill.core.money import format_taka

FONT_DIR = Path(__file__).resolve().parent / "fonts"
_FONTS = {
    ("latin", ""): "NotoSans-Regular.ttf",
    ("latin", "B"): "NotoSans-Bold.ttf",
    ("bengali", ""): "NotoSansBengali-Regular.ttf",
    ("bengali", "B"): "NotoSansBengali-Bold.ttf",
}

_INK = (23, 33, 43)
_MUTED = (91, 103, 117)
_RED = (166, 27, 27)
_LOGO_MAX = (42.0, 22.0)  # width, height in mm


class _Sheet(FPDF):
    def __init__(self, doc: Document):
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.doc = doc
        for (family, style), name in _FONTS.items():
            self.add_font(family, style, str(FONT_DIR / name))
        self.set_fallback_fonts(["bengali"])
        self.set_text_shaping(True)
        self.set_margins(16, 16, 16)
        self.set_auto_page_break(auto=True, margin=18)
        self.set_title(f"{doc.title} {doc.number}")
        self.set_author(doc.issuer.name)
        self.set_creator("ispbill")

    def footer(self):
        self.set_y(-13)
        self.set_font("latin", "", 8)
        self.set_text_color(*_MUTED)
        left = f"{self.doc.issuer.name} · {self.doc.title} {self.doc.number}"
        self.cell(0, 5, left, align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, _("Page %(page)s of %(pages)s") % {"page": self.page_no(), "pages": "{nb}"}, align="R")


def render(doc: Document) -> bytes:
    """The document as a PDF file."""
    pdf = _Sheet(doc)
    pdf.add_page()
    _header(pdf, doc)
    _addressee(pdf, doc)
    _lines(pdf, doc)
    _totals(pdf, doc)
    _notes(pdf, doc)
    return bytes(pdf.output())


def _header(pdf: _Sheet, doc: Document) -> None:
    top = pdf.get_y()
    text_x = pdf.l_margin
    if doc.issuer.logo:
        w, h = _logo_size(doc.issuer.logo)
        pdf.image(BytesIO(doc.issuer.logo), x=pdf.l_margin, y=top, w=w, h=h)
        text_x += w + 5
    width = 110 - (text_x - pdf.l_margin)
    pdf.set_xy(text_x, top)
    pdf.set_text_color(*_INK)
    pdf.set_font("latin", "B", 15)
    pdf.multi_cell(width, 7, doc.issuer.name, align="L", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font("latin", "", 9)
    pdf.set_text_color(*_MUTED)
    if doc.issuer.address:
        pdf.multi_cell(width, 4.5, doc.issuer.address, align="L", new_x=XPos.LEFT, new_y=YPos.NEXT)
    if doc.issuer.hotline:
        hotline = _("Hotline: %(hotline)s") % {"hotline": doc.issuer.hotline}
        pdf.multi_cell(width, 4.5, hotline, align="L", new_x=XPos.LEFT, new_y=YPos.NEXT)
    left_bottom = max(pdf.get_y(), top + (_logo_size(doc.issuer.logo)[1] if doc.issuer.logo else 0))

    right_w = pdf.w - pdf.r_margin - (pdf.l_margin + 112)
    pdf.set_xy(pdf.l_margin + 112, top)
    pdf.set_text_color(*(_RED if doc.void else _INK))
    pdf.set_font("latin", "B", 18)
    title = f"{doc.title} — {_('VOID')}" if doc.void else doc.title
    pdf.multi_cell(right_w, 8, title.upper() if doc.kind != "receipt" else title, align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_text_color(*_INK)
    pdf.set_font("latin", "B", 11)
    pdf.multi_cell(right_w, 6, doc.number, align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_y(max(left_bottom, pdf.get_y()) + 4)
    pdf.set_draw_color(*_MUTED)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(5)


def _addressee(pdf: _Sheet, doc: Document) -> None:
    top = pdf.get_y()
    pdf.set_text_color(*_MUTED)
    pdf.set_font("latin", "", 8.5)
    pdf.cell(90, 5, _("Billed to").upper() if doc.kind == "invoice" else _("Customer").upper(), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*_INK)
    pdf.set_font("latin", "B", 11)
    pdf.multi_cell(90, 6, doc.party.name, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("latin", "", 9.5)
    for text in (
        _("Username: %(username)s") % {"username": doc.party.username} if doc.party.username else "",
        _("Phone: %(phone)s") % {"phone": doc.party.phone} if doc.party.phone else "",
        doc.party.address,
    ):
        if text:
            pdf.multi_cell(90, 5, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    left_bottom = pdf.get_y()

    x = pdf.l_margin + 100
    pdf.set_y(top)
    for label, value in doc.facts:
        pdf.set_x(x)
        pdf.set_font("latin", "", 9)
        pdf.set_text_color(*_MUTED)
        pdf.cell(32, 5.5, label)
        pdf.set_font("latin", "", 9.5)
        pdf.set_text_color(*_INK)
        pdf.multi_cell(pdf.w - pdf.r_margin - x - 32, 5.5, value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(left_bottom, pdf.get_y()) + 7)


def _lines(pdf: _Sheet, doc: Document) -> None:
    pdf.set_text_color(*_INK)
    pdf.set_font("latin", "", 10)
    heading = FontFace(emphasis="BOLD", color=_MUTED, fill_color=(243, 245, 248))
    with pdf.table(
        col_widths=(140, 38), text_align=("LEFT", "RIGHT"), headings_style=heading, line_height=6.5,
        borders_layout=TableBordersLayout.HORIZONTAL_LINES, padding=1.5,
    ) as table:
        row = table.row()
        row.cell(doc.lines_heading)
        row.cell(_("Amount"))
        if not doc.lines:
            table.row().cell("—", colspan=2)
        for line in doc.lines:
            row = table.row()
            row.cell(line.label)
            row.cell(format_taka(line.amount_paisa))
    pdf.ln(3)


def _totals(pdf: _Sheet, doc: Document) -> None:
    label_w, amount_w = 60, 38
    x = pdf.w - pdf.r_margin - label_w - amount_w
    for row in doc.totals:
        pdf.set_x(x)
        pdf.set_font("latin", "B" if row.strong else "", 11 if row.strong else 10)
        pdf.set_text_color(*_INK if row.strong else _MUTED)
        pdf.cell(label_w, 7, row.label, align="R")
        pdf.set_text_color(*_INK)
        pdf.cell(amount_w, 7, format_taka(row.amount_paisa), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)


def _notes(pdf: _Sheet, doc: Document) -> None:
    pdf.set_font("latin", "", 9.5)
    pdf.set_text_color(*_MUTED)
    for note in doc.notes:
        pdf.multi_cell(0, 5, note, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _logo_size(data: bytes) -> tuple[float, float]:
    """The logo's printed size in mm: as large as fits the box, keeping its proportions."""
    from PIL import Image

    with Image.open(BytesIO(data)) as image:
        px_w, px_h = image.size
    max_w, max_h = _LOGO_MAX
    if px_w <= 0 or px_h <= 0:
        return max_w, max_h
    scale = min(max_w / px_w, max_h / px_h)
    return px_w * scale, px_h * scale
