"""Enrolment codes on real SQLite files: single use, expiry, keyed hashes, the printed poster
(every QR code decoded back from the rendered PDF) and the command line."""

from __future__ import annotations

import argparse
import asyncio
import csv
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pypdfium2
import pytest
import zxingcpp

from bot.enrolment import (
    CODE_ALPHABET,
    REGION_NAMES,
    create_batch,
    enrolment_code_hash,
    new_code,
    normalise_code,
    redeem_code,
)
from bot.enrolment_cli import add_enrol_parser, run_enrol
from bot.secrets_file import Secrets
from bot.settings import Settings, SettingsError, load_settings
from state_machines.definition import REGION_SLUGS
from storage.database import Database
from storage.enrolment import EnrolmentCodes
from storage.staff import AuditLog

NOW = 1_790_000_000_000
DAY = 86_400_000
BOT = "YouSaidTestBot"
SECRETS = Secrets(b"k" * 32, b"t" * 32)
OTHER_SECRETS = Secrets(b"o" * 32, b"t" * 32)
PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@pytest.fixture()
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(str(tmp_path / "test.db"))
    await database.migrate()
    yield database
    await database.close()


async def add_code(db: Database, code: str, expires_at: int, secrets: Secrets = SECRETS) -> None:
    async with db.transaction() as conn:
        await EnrolmentCodes(conn).add(
            enrolment_code_hash(secrets, code), "london", "b1", expires_at, NOW
        )


async def redeem(
    db: Database, code: str, now: int, secrets: Secrets = SECRETS
) -> tuple[str, str | None]:
    async with db.transaction() as conn:
        result = await redeem_code(conn, secrets, code, now)
    return result.status, result.region


def database_files(folder: Path) -> bytes:
    """Everything SQLite wrote to disk: the database, its WAL and shared memory."""
    return b"".join(path.read_bytes() for path in sorted(folder.glob("test.db*")))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


async def test_a_code_works_once(db: Database) -> None:
    code = new_code()
    await add_code(db, code, NOW + DAY)
    assert await redeem(db, code, NOW + 1) == ("ok", "london")
    assert await redeem(db, code, NOW + 2) == ("used", None)


async def test_an_expired_code_is_refused(db: Database) -> None:
    code = new_code()
    await add_code(db, code, NOW + DAY)
    assert await redeem(db, code, NOW + DAY) == ("expired", None)
    assert await redeem(db, code, NOW + DAY - 1) == ("ok", "london")


async def test_unknown_codes_and_other_keys(db: Database) -> None:
    code = new_code()
    await add_code(db, code, NOW + DAY)
    assert await redeem(db, new_code(), NOW) == ("unknown", None)
    assert await redeem(db, "not-a-code", NOW) == ("unknown", None)
    assert await redeem(db, code, NOW, OTHER_SECRETS) == ("unknown", None)
    assert await redeem(db, code, NOW) == ("ok", "london")  # the failed tries used nothing


async def test_two_connections_racing_for_one_code(db: Database, tmp_path: Path) -> None:
    code = new_code()
    await add_code(db, code, NOW + DAY)
    other = await Database.open(str(tmp_path / "test.db"))
    try:
        results = await asyncio.gather(redeem(db, code, NOW), redeem(other, code, NOW))
    finally:
        await other.close()
    assert sorted(status for status, _ in results) == ["ok", "used"]


async def test_batch_summary(db: Database) -> None:
    for expires_at in (NOW + DAY, NOW + DAY, NOW + 2 * DAY):
        await add_code(db, new_code(), expires_at)
    first = new_code()
    await add_code(db, first, NOW + DAY)
    assert await redeem(db, first, NOW) == ("ok", "london")
    async with db.read() as conn:
        summary = await EnrolmentCodes(conn).batch_summary("b1", NOW + DAY)
        missing = await EnrolmentCodes(conn).batch_summary("nope", NOW)
    assert summary is not None
    assert (summary.region, summary.total, summary.used, summary.expired, summary.unused) == (
        "london",
        4,
        1,
        2,
        1,
    )
    assert missing is None


def test_new_codes_are_unambiguous_payloads() -> None:
    codes = {new_code() for _ in range(500)}
    assert len(codes) == 500
    for code in codes:
        assert len(code) == 12 and code[0] == "e" and PAYLOAD.match(code)
        assert not set(code[1:]) - set(CODE_ALPHABET)
        assert not set(code) & set("0O1lI")
        assert normalise_code(code) == code
        assert normalise_code(f" {code[:4]} {code[4:8].lower()}-{code[8:]} ") == code
    assert normalise_code("e0000000000O") is None
    assert normalise_code("hello") is None


def test_every_region_has_a_display_name() -> None:
    assert set(REGION_NAMES) == set(REGION_SLUGS)


async def test_poster_holds_exactly_the_codes_of_the_csv(db: Database, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = await create_batch(db, SECRETS, "wales", 10, 30, BOT, out, NOW)
    rows = read_csv(result.csv_path)
    links = [row["link"] for row in rows]
    assert len(rows) == 10 and len(set(links)) == 10

    decoded: list[str] = []
    document = pypdfium2.PdfDocument(str(result.pdf_path))
    scale = 3.0  # 216 dpi
    try:
        assert len(document) == 2
        for page in document:
            image = page.render(scale=scale).to_pil()
            for barcode in zxingcpp.read_barcodes(image):
                assert barcode.format == zxingcpp.BarcodeFormat.QRCode
                decoded.append(barcode.text)
                # The symbol alone (quiet zone not counted) must be big enough to print.
                position = barcode.position
                width_px = abs(position.top_right.x - position.top_left.x)
                assert width_px / (scale * 72 / 25.4) >= 40
    finally:
        document.close()
    assert len(decoded) == len(links)
    assert sorted(decoded) == sorted(links)


async def test_csv_content_and_no_plain_code_in_the_database(db: Database, tmp_path: Path) -> None:
    result = await create_batch(db, SECRETS, "london", 5, 90, BOT, tmp_path / "out", NOW)
    async with db.read() as conn:  # audited, without a code
        entries = await AuditLog(conn).entries()
    assert [(e.actor, e.action, e.details["codes"]) for e in entries] == [
        ("cli", "enrolment.created", "5")
    ]
    rows = read_csv(result.csv_path)
    assert list(rows[0]) == ["code", "link", "region", "expires"]
    for row in rows:
        assert PAYLOAD.match(row["code"])
        assert row["link"] == f"https://t.me/{BOT}?start={row['code']}"
        assert row["region"] == "london"
        assert row["expires"] == result.last_day.isoformat()
    # NOW is 2026-09-21 in London; 90 days on, and the code works until that day ends.
    assert result.last_day.isoformat() == "2026-12-20"
    assert await redeem(db, rows[0]["code"], NOW + 90 * DAY) == ("ok", "london")
    async with db.read() as conn, conn.execute("SELECT * FROM enrolment_codes") as cursor:
        stored = [tuple(r) for r in await cursor.fetchall()]
    assert len(stored) == 5
    disk = database_files(tmp_path)
    for row in rows:
        assert row["code"].encode() not in disk
        assert all(row["code"] not in str(value) for r in stored for value in r)
    assert result.csv_path.stat().st_mode & 0o077 == 0


async def test_an_existing_output_is_never_overwritten(db: Database, tmp_path: Path) -> None:
    out = tmp_path / "out"
    await create_batch(db, SECRETS, "london", 1, 90, BOT, out, NOW)
    before = (out / "codes.csv").read_bytes()
    with pytest.raises(ValueError, match="already exists"):
        await create_batch(db, SECRETS, "london", 1, 90, BOT, out, NOW)
    assert (out / "codes.csv").read_bytes() == before


def settings_for(tmp_path: Path) -> Settings:
    return load_settings(
        {"DATABASE_PATH": str(tmp_path / "cli.db"), "SECRETS_PATH": str(tmp_path / "secrets")}
    )


def enrol_args(tmp_path: Path, **changes: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "enrol_command": "create",
        "region": "london",
        "count": 3,
        "out": tmp_path / "posters",
        "expires_days": 90,
        "bot_username": BOT,
    }
    values.update(changes)
    return argparse.Namespace(**values)


def test_the_parser_reads_enrol_create(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_enrol_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["enrol", "create", "--region", "london", "--count", "40", "--out", str(tmp_path)]
    )
    assert (args.command, args.enrol_command, args.region, args.count) == (
        "enrol",
        "create",
        "london",
        40,
    )
    assert (args.out, args.expires_days, args.bot_username) == (tmp_path, 90, None)


def test_the_cli_creates_a_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_enrol(settings_for(tmp_path), enrol_args(tmp_path)) == 0
    out = tmp_path / "posters"
    assert capsys.readouterr().out == (
        f"created 3 codes for london: {out / 'codes.csv'}, {out / 'poster.pdf'}\n"
    )
    assert len(read_csv(out / "codes.csv")) == 3


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"region": "atlantis"}, "--region"),
        ({"count": 0}, "--count"),
        ({"count": 1001}, "--count"),
        ({"expires_days": 0}, "--expires-days"),
        ({"bot_username": "not a name"}, "--bot-username/BOT_USERNAME"),
    ],
)
def test_the_cli_refuses_bad_input_in_one_line(
    tmp_path: Path, changes: dict[str, object], named: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        run_enrol(settings_for(tmp_path), enrol_args(tmp_path, **changes))
    assert str(raised.value).startswith(f"{named}: ")
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "cli.db").exists()  # refused before touching anything


def test_the_cli_needs_a_bot_username(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOT_USERNAME", raising=False)
    with pytest.raises(SettingsError, match=r"^--bot-username/BOT_USERNAME: not set"):
        run_enrol(settings_for(tmp_path), enrol_args(tmp_path, bot_username=None))
    monkeypatch.setenv("BOT_USERNAME", "@" + BOT)
    assert run_enrol(settings_for(tmp_path), enrol_args(tmp_path, bot_username=None)) == 0
    rows = read_csv(tmp_path / "posters" / "codes.csv")
    assert rows[0]["link"].startswith(f"https://t.me/{BOT}?start=")
