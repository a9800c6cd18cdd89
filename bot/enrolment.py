"""Enrolment codes: create a batch for a region (stored as keyed hashes, printed as a CSV and a
QR poster for office notice boards), and redeem a code from a /start deep link.

A code is never logged and never stored in plain text: only staff's codes.csv and poster.pdf
hold it, because those are what they print.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from secrets import choice, token_hex
from zoneinfo import ZoneInfo

import aiosqlite

from bot.secrets_file import Secrets
from state_machines.definition import REGION_SLUGS
from storage.clock import to_datetime
from storage.database import Database
from storage.enrolment import EnrolmentCodes, Redemption
from storage.staff import AuditLog

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
    return secrets.keyed_hash("enrolment-code", code)


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
    # Imported here: fpdf, qrcode and Pillow take half a second to load, and no other
    # command (nor the running bot) needs them.
    from bot.enrolment_poster import poster_pdf

    pdf_bytes = poster_pdf(ordered, links, region, last_day, batch)
    async with db.transaction() as conn:
        repository = EnrolmentCodes(conn)
        for code in ordered:
            await repository.add(
                enrolment_code_hash(secrets, code), region, batch, expires_at, now_ms
            )
        details = {"region": region, "codes": str(count), "expires_at": str(expires_at)}
        await AuditLog(conn).record("cli", "enrolment.created", f"batch:{batch}", details, now_ms)
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
