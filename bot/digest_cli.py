"""Command line: `digest --region R --week 2026-W47 --format md|csv|html --out FILE [--k 10]`.

The week's digests of every region and of the national view are built together, so that a
region's hidden figures are protected against the national ones too, and checked against
every digest released in the year around the week. Only the one asked for is written.
Unless --dry-run, it is then stored as released: later digests are checked against exactly
what was released. Only a week that has ended (in the service's time zone) is stored, and
only once its file is written: a half week would be frozen as the week's release, and a
file that could not be written would release what nobody saw. --dry-run shows a week so
far; it is audited, not released. A week already released is written again as it was
released, never recomputed (a second, different version could be differenced with the
first). Quotes are read afresh each time (bot/digest_quotes.py), so a forgotten person's
never come back.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import aiosqlite

from bot.digest import (
    DEFAULT_K,
    MIN_K,
    Digest,
    build_digests,
    check_k,
    from_json,
    to_csv,
    to_json,
    to_markdown,
)
from bot.digest_figures import region_name
from bot.digest_quotes import read_quotes
from bot.digest_report import report_files
from bot.digests import chart_history
from bot.secrets_file import Secrets, load_secrets
from bot.settings import Settings
from bot.themes import load_taxonomy
from state_machines.definition import REGION_SLUGS
from storage.clock import Clock, SystemClock
from storage.database import Database, MigrationError
from storage.digest_data import (
    NATIONAL,
    DigestData,
    DigestFigures,
    DigestStore,
    parse_week,
    shift_week,
    week_bounds,
)
from storage.staff import AuditLog

EXIT_PROBLEMS = 2
NATIONAL_NAME = "national"  # --region for the national view
WINDOW_WEEKS = 52  # earlier (and later) releases a digest is checked against
_ATTEMPTS = 3  # rebuilds when another release lands while this one is being built


@dataclass(frozen=True)
class Released:
    digest: Digest
    stored: bool  # stored by this call
    earlier: bool  # had been released before: the stored version is returned


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `digest` command to the main command line."""
    digest = subparsers.add_parser(
        "digest", help="write a region's weekly digest; figures about fewer than k people hidden"
    )
    digest.add_argument(
        "--region", required=True, metavar="REGION", help=f"{', '.join(REGION_SLUGS)} or national"
    )
    digest.add_argument("--week", required=True, metavar="YYYY-Www", help="e.g. 2026-W47")
    digest.add_argument(
        "--format",
        choices=("md", "csv", "html"),
        default="md",
        help="md, csv, or html (a report with the chart inside); default: md",
    )
    digest.add_argument("--out", required=True, type=Path, metavar="FILE")
    digest.add_argument(
        "--k",
        type=int,
        default=DEFAULT_K,
        help=f"hide figures about fewer than k people (at least {MIN_K}; default {DEFAULT_K})",
    )
    digest.add_argument(
        "--dry-run", action="store_true", help="write the file but do not record it as released"
    )


def run_digest(settings: Settings, args: argparse.Namespace, clock: Clock | None = None) -> int:
    """Run `digest`; bad input is one line on stderr and exit 2. `clock` (the system's by
    default) says whether the week has ended."""
    try:
        return asyncio.run(_run(settings, args, clock or SystemClock()))
    except (ValueError, MigrationError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS


def _region(text: str) -> str:
    if text == NATIONAL_NAME:
        return NATIONAL
    if text not in REGION_SLUGS:
        raise ValueError(f"--region must be one of: {', '.join(REGION_SLUGS)}, {NATIONAL_NAME}")
    return text


async def _run(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    region, week, k = _region(args.region), args.week, check_k(args.k)
    parse_week(week)
    taxonomy = load_taxonomy(settings.dialogues_dir / "themes.yaml")
    themes = [(theme.id, theme.label) for theme in taxonomy.themes]
    db = await Database.open(settings.database_path)
    try:
        await db.migrate()

        async def write(digest: Digest) -> None:
            # Called before the digest is stored: a path that cannot be written (a
            # directory missing, no permission, the disk full) must release nothing.
            async with db.read() as conn:
                decrypt = _decrypter(settings)
                quotes = await read_quotes(
                    conn, digest, settings.timezone, decrypt, now=clock.now_ms()
                )
                html = args.format == "html"
                previous = await chart_history(conn, region, week) if html else []
            if args.format == "html":
                text = report_files(digest, previous, region_name(region), quotes)[1]
            else:
                text = (to_markdown if args.format == "md" else to_csv)(digest, quotes)
            args.out.write_text(text, "utf-8")

        result = await release(
            db,
            region,
            week,
            k,
            settings.timezone,
            themes,
            store=not args.dry_run,
            write=write,
            clock=clock,
        )
    finally:
        await db.close()
    if result.earlier:
        note = f"released before (k={result.digest.k}): written as released"
    else:
        note = "stored as released" if result.stored else "not stored (--dry-run)"
    print(f"wrote the digest of {args.region} for {week} to {args.out}: {note}")
    return 0


def _decrypter(settings: Settings) -> Callable[[bytes], str]:
    """Decrypts quotes, reading the secrets file only when there is a quote to read (a
    week without quotes needs no key)."""

    @cache
    def secrets() -> Secrets:
        return load_secrets(settings.secrets_path, production=settings.production)

    return lambda ciphertext: secrets().decrypt_text(ciphertext)


async def release(
    db: Database,
    region: str,
    week: str,
    k: int,
    zone: str,
    themes: list[tuple[str, str]],
    *,
    store: bool,
    write: Callable[[Digest], Awaitable[None]],
    clock: Clock,
) -> Released:
    """The digest of `region` (NATIONAL: the national view) for `week`: the stored one if
    it was released before, else built now, and stored when `store` (a week not ended
    yet is refused: released weeks are never recomputed). `write` is given the digest
    before it is stored, so a file that cannot be written releases nothing.

    The figures are read in one read transaction (a consistent picture, without holding
    the write lock while building); storing then checks that no digest was released in
    the meantime, and builds (and writes) again if one was, so each is checked against
    all others."""
    first = shift_week(week, -WINDOW_WEEKS)
    if store:
        refuse_unfinished(week, zone, clock.now_ms())
    for _ in range(_ATTEMPTS):
        async with db.read() as conn:
            await conn.execute("BEGIN")
            try:
                earlier = await DigestStore(conn).get(region, week)
                released = await DigestStore(conn).since(first) if earlier is None else []
                data = await _figures(conn, week, zone) if earlier is None else {}
            finally:
                await conn.execute("ROLLBACK")
        if earlier is not None:
            await write(stored := from_json(earlier.cells))
            return Released(stored, stored=False, earlier=True)
        digest = build_digests(data, k, [from_json(r.cells) for r in released], themes, zone)[
            region
        ]
        await write(digest)
        if not store:
            # Not released, so not checked against later digests: two previews could be
            # differenced (another k, a day apart). The audit log keeps that each was made.
            async with db.transaction() as conn:
                details = {"week": week, "k": str(k)}
                target = f"region:{region or NATIONAL_NAME}"
                await AuditLog(conn).record(
                    "cli", "digest.previewed", target, details, clock.now_ms()
                )
            return Released(digest, stored=False, earlier=False)
        now = clock.now_ms()
        async with db.transaction() as conn:
            digests = DigestStore(conn)
            if [r.id for r in await digests.since(first)] != [r.id for r in released]:
                continue  # another digest was released meanwhile: check against it too
            await digests.save(region, week, k, to_json(digest), now)
            details = {"week": week, "k": str(k)}
            target = f"region:{region or NATIONAL_NAME}"
            await AuditLog(conn).record("cli", "digest.released", target, details, now)
        return Released(digest, stored=True, earlier=False)
    raise ValueError("other digests kept being released meanwhile; try again")


async def _figures(conn: aiosqlite.Connection, week: str, zone: str) -> dict[str, DigestData]:
    async with DigestFigures(conn) as figures:
        return {r: await figures.read(r, week, zone) for r in (NATIONAL, *REGION_SLUGS)}


def refuse_unfinished(week: str, zone: str, now: int) -> None:
    """ValueError (one line) for a week that has not ended yet in `zone`."""
    end = week_bounds(week, zone)[1]
    if now < end:
        ends = datetime.fromtimestamp(end / 1000, UTC).astimezone(ZoneInfo(zone))
        raise ValueError(
            f"{week} has not ended yet (it ends {ends:%a %d %b %Y %H:%M} {zone}), so it cannot "
            "be released; --dry-run shows it so far"
        )
