"""Enrolment codes: create a batch for a region (stored as keyed hashes, printed as a CSV and a
QR poster for office notice boards), and redeem a code from a /start deep link.

A code is never logged and never stored in plain text: only staff's codes.csv and poster.pdf
hold it, because those are what they print.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from secrets import choice, token_hex
from zoneinfo import ZoneInfo

import aiosqlite
import qrcode
from fpdf import FPDF
from PIL import Image
from qrcode.image.pil import PilImage

from bot.secrets_file import Secrets
from state_machines.definition import REGION_SLUGS
from storage.clock import to_datetime
from storage.database import Database
from storage.enrolment import EnrolmentCodes, Redemption

log = logging.getLogger(__name__)

# No 0/O, 1/l/I: the code is printed, and may be read out or typed by hand.
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_PREFIX = "e"  # marks a /start payload as an enrolment code
CODE_LENGTH = 12  # with the prefix: 11 random characters, 55 bits
MAX_BATCH = 1000
MAX_EXPIRES_DAYS = 365
LONDON = ZoneInfo("Europe/London")
CSV_NAME = "codes.csv"
PDF_NAME = "poster.pdf"

# The region's name as people see it in onboarding (dialogues/onboarding.yaml).
REGION_NAMES: dict[str, str] = {
    "north-east": "North East",
    "north-west": "North West",
    "greater-manchester": "Greater Manchester",
    "yorkshire-humber": "Yorkshire and the Humber",
    "wales": "Wales",
    "west-midlands": "West Midlands",
    "east-midlands": "East Midlands",
    "east-of-england": "East of England",
    "london": "London",
    "kent-surrey-sussex": "Kent, Surrey and Sussex",
    "south-west": "South West",
    "south-central": "South Central",
}

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


class EnrolmentError(ValueError):
    """A batch request that cannot be carried out; names the command-line option at fault."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        self.option = option
        self.problem = problem


@dataclass(frozen=True)
class BatchResult:
    batch: str
    region: str
    count: int
    last_day: date  # the last day (Europe/London) on which the codes work
    csv_path: Path
    pdf_path: Path


def enrolment_code_hash(secrets: Secrets, code: str) -> str:
    """The keyed hash under which a code is stored (HMAC-SHA256, hex)."""
    return hmac.new(
        secrets.pseudonym_key, b"enrolment-code:" + code.encode("utf-8"), hashlib.sha256
    ).hexdigest()


def new_code() -> str:
    """A fresh random code, e.g. eK7M2P9XQ4RT."""
    return CODE_PREFIX + "".join(choice(CODE_ALPHABET) for _ in range(CODE_LENGTH - 1))


def normalise_code(text: str) -> str | None:
    """The code in its stored form, or None when the text cannot be one.

    Forgives what hand typing adds (spaces, dashes, lower case)."""
    cleaned = text.strip().replace(" ", "").replace("-", "")
    if len(cleaned) != CODE_LENGTH or cleaned[0].lower() != CODE_PREFIX:
        return None
    body = cleaned[1:].upper()
    if any(c not in CODE_ALPHABET for c in body):
        return None
    return CODE_PREFIX + body


def deep_link(bot_username: str, code: str) -> str:
    """The t.me link that opens the bot with the code as the /start payload."""
    return f"https://t.me/{bot_username}?start={code}"


def check_batch_request(region: str, count: int, expires_days: int) -> None:
    """Raise EnrolmentError when a batch request is out of bounds."""
    if region not in REGION_SLUGS:
        raise EnrolmentError(
            "--region", f"'{region}' is not a region; use one of " + ", ".join(REGION_SLUGS)
        )
    if not 1 <= count <= MAX_BATCH:
        raise EnrolmentError("--count", f"must be a whole number from 1 to {MAX_BATCH}")
    if not 1 <= expires_days <= MAX_EXPIRES_DAYS:
        raise EnrolmentError("--expires-days", f"must be from 1 to {MAX_EXPIRES_DAYS}")


def expiry(now_ms: int, expires_days: int) -> tuple[date, int]:
    """The last day a code works (London) and the moment it stops: the midnight after."""
    today = to_datetime(now_ms).astimezone(LONDON).date()
    last_day = today + timedelta(days=expires_days)
    end = datetime.combine(last_day + timedelta(days=1), time(), tzinfo=LONDON)
    return last_day, int(end.timestamp() * 1000)


async def create_batch(
    db: Database,
    secrets: Secrets,
    region: str,
    count: int,
    expires_days: int,
    bot_username: str,
    out_dir: Path,
    now_ms: int,
) -> BatchResult:
    """Create `count` codes for a region; write codes.csv and poster.pdf into out_dir."""
    # Rendering and writing block the event loop: this runs from the command line only,
    # never inside the running bot.
    check_batch_request(region, count, expires_days)
    csv_path, pdf_path = out_dir / CSV_NAME, out_dir / PDF_NAME
    _refuse_existing(csv_path, pdf_path)
    last_day, expires_at = expiry(now_ms, expires_days)
    # Readable on the poster's footer: the day it was made, the region, a random tag.
    batch = f"{to_datetime(now_ms).astimezone(LONDON):%Y%m%d}-{region}-{token_hex(3)}"
    codes: set[str] = set()
    while len(codes) < count:
        codes.add(new_code())
    ordered = sorted(codes)
    links = [deep_link(bot_username, code) for code in ordered]
    # Render before storing: a layout fault then leaves no unprinted codes behind.
    csv_text = _codes_csv(ordered, links, region, last_day)
    pdf_bytes = _poster_pdf(ordered, links, region, last_day, batch)
    async with db.transaction() as conn:
        repository = EnrolmentCodes(conn)
        for code in ordered:
            await repository.add(
                enrolment_code_hash(secrets, code), region, batch, expires_at, now_ms
            )
    _write_private(csv_path, csv_text.encode("utf-8"))
    _write_private(pdf_path, pdf_bytes)
    log.info("created enrolment batch %s: %d codes for %s", batch, count, region)
    return BatchResult(batch, region, count, last_day, csv_path, pdf_path)


async def redeem_code(
    conn: aiosqlite.Connection, secrets: Secrets, code: str, now_ms: int
) -> Redemption:
    """Use a code (e.g. a /start payload) in the caller's transaction."""
    canonical = normalise_code(code)
    if canonical is None:
        return Redemption("unknown", None)
    return await EnrolmentCodes(conn).redeem(enrolment_code_hash(secrets, canonical), now_ms)


def _refuse_existing(*paths: Path) -> None:
    """Overwriting would lose the only printable copy of an earlier batch's codes."""
    for path in paths:
        if path.exists():
            raise EnrolmentError("--out", f"{path} already exists; choose an empty folder")


def _write_private(path: Path, body: bytes) -> None:
    """Write a new file readable by its owner only: it holds working codes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(body)


def _codes_csv(codes: list[str], links: list[str], region: str, last_day: date) -> str:
    """The batch as CSV: code, link, region, expires (the last day, ISO)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["code", "link", "region", "expires"])
    for code, link in zip(codes, links, strict=True):
        writer.writerow([code, link, region, last_day.isoformat()])
    return buffer.getvalue()


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


def _poster_pdf(
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
