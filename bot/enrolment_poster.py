"""The printable poster of enrolment codes: A4 sheets of cards, one QR code per code."""

from __future__ import annotations

from datetime import date

import qrcode
from fpdf import FPDF
from PIL import Image
from qrcode.image.pil import PilImage

from bot.enrolment import REGION_NAMES

# One sentence a line, so neither is broken mid-way on the card.
CARD_MESSAGE = "Scan to join YouSaid.\nYour answers do not affect your licence."

# Poster layout, in mm on A4. 2 x 3 cards rather than 2 x 4, so each QR code can be 54 mm
# (its symbol about 44 mm, with the 4-module quiet zone around it) and still scan from a
# notice board at arm's length.
_PAGE_W, _PAGE_H, _MARGIN, _FOOTER = 210.0, 297.0, 8.0, 6.0
_COLUMNS, _ROWS = 2, 3
_CARD_W = (_PAGE_W - 2 * _MARGIN) / _COLUMNS
_CARD_H = (_PAGE_H - 2 * _MARGIN - _FOOTER) / _ROWS
_QR_MM = 54.0


def _qr_image(link: str) -> Image.Image:
    """A QR code of the link with the standard 4-module quiet zone."""
    # Q (25% recovery): posters get creased, pinned through and scuffed.
    qr = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_Q,
        box_size=10,
        border=4,
        image_factory=PilImage,
    )
    qr.add_data(link)
    qr.make(fit=True)
    return qr.make_image().get_image().convert("L")


def poster_pdf(
    codes: list[str], links: list[str], region: str, last_day: date, batch: str
) -> bytes:
    """A4 pages of cut-out cards, each with a QR code, the code and one plain line."""
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_title(f"YouSaid enrolment codes: {REGION_NAMES[region]}")
    pdf.set_creator("YouSaid")
    per_page = _COLUMNS * _ROWS
    pages = (len(codes) + per_page - 1) // per_page
    for index, (code, link) in enumerate(zip(codes, links, strict=True)):
        slot = index % per_page
        if slot == 0:
            pdf.add_page()
            _footer(pdf, region, batch, index // per_page + 1, pages)
        x = _MARGIN + (slot % _COLUMNS) * _CARD_W
        y = _MARGIN + (slot // _COLUMNS) * _CARD_H
        _card(pdf, x, y, code, link, region, last_day)
    return bytes(pdf.output())


def _card(pdf: FPDF, x: float, y: float, code: str, link: str, region: str, last_day: date) -> None:
    """One card: region, QR code, the code in large type, the plain line, the last day."""
    inner = _CARD_W - 8
    pdf.set_draw_color(170)
    with pdf.local_context(dash_pattern={"dash": 2, "gap": 2}):
        pdf.rect(x, y, _CARD_W, _CARD_H)  # a cutting line
    pdf.set_text_color(0)
    pdf.set_font("Helvetica", "B", 11)
    pdf.set_xy(x + 4, y + 3)
    pdf.cell(inner, 5, REGION_NAMES[region], align="C")
    pdf.image(_qr_image(link), x=x + (_CARD_W - _QR_MM) / 2, y=y + 9, w=_QR_MM, h=_QR_MM)
    pdf.set_font("Courier", "B", 22)
    pdf.set_xy(x + 4, y + 9 + _QR_MM)
    pdf.cell(inner, 9, code, align="C")
    pdf.set_font("Helvetica", "", 10)
    pdf.set_xy(x + 4, y + 18 + _QR_MM)
    pdf.multi_cell(inner, 4.5, CARD_MESSAGE, align="C")
    pdf.set_font("Helvetica", "", 8)
    pdf.set_xy(x + 4, y + 27.5 + _QR_MM)
    pdf.cell(inner, 4, f"Use by {last_day.day} {last_day:%B %Y}", align="C")


def _footer(pdf: FPDF, region: str, batch: str, page: int, pages: int) -> None:
    """A line for staff: what this sheet is, so old sheets can be matched and taken down."""
    pdf.set_font("Helvetica", "", 8)
    pdf.set_text_color(90)
    pdf.set_xy(_MARGIN, _PAGE_H - _MARGIN - _FOOTER + 1)
    pdf.cell(
        _PAGE_W - 2 * _MARGIN,
        5,
        f"YouSaid enrolment codes - batch {batch} - each code works once - "
        f"cut along the dashed lines - page {page} of {pages}",
        align="C",
    )
