"""Command line for scheduled check-ins: `checkin schedule | stop | list`.

A schedule is one row per region plus the job for its next round, written together, so a
running bot picks it up (its scheduler polls the database) and a restart loses nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.checkins import schedule_round
from bot.settings import Settings
from state_machines.definition import REGION_SLUGS
from storage.checkins import Checkins
from storage.clock import SystemClock
from storage.database import Database, MigrationError
from storage.staff import AuditLog

EXIT_PROBLEMS = 2
_EVERY = re.compile(r"^(?P<count>\d{1,3})(?P<unit>[dw])$")


def add_checkin_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `checkin` command to the main command line."""
    checkin = subparsers.add_parser("checkin", help="schedule repeating feedback check-ins")
    actions = checkin.add_subparsers(dest="checkin_action", required=True, metavar="ACTION")
    schedule = actions.add_parser(
        "schedule", help="ask a region's consenting people every N days/weeks"
    )
    schedule.add_argument("--region", required=True, metavar="REGION", help=", ".join(REGION_SLUGS))
    schedule.add_argument("--every", required=True, metavar="N[d|w]", help="e.g. 4w or 28d")
    schedule.add_argument(
        "--start", metavar="'YYYY-MM-DD HH:MM'", help="first round, UK time (default: now)"
    )
    stop = actions.add_parser("stop", help="stop a region's check-ins")
    stop.add_argument("--region", required=True, metavar="REGION")
    actions.add_parser("list", help="list the schedules")


def run_checkin(settings: Settings, args: argparse.Namespace) -> int:
    """Run a `checkin` command; bad input is one line on stderr and exit 2."""
    try:
        return asyncio.run(_run(settings, args))
    except (ValueError, MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS


def parse_every(text: str) -> int:
    """'4w' or '28d' as a number of days (1 to 366)."""
    match = _EVERY.match(text.strip().lower())
    days = 0 if match is None else int(match["count"]) * (7 if match["unit"] == "w" else 1)
    if not 1 <= days <= 366:
        raise ValueError("--every must be a number of days or weeks, e.g. 4w or 28d")
    return days


def parse_start(text: str | None, zone: str, now: int) -> int:
    if text is None:
        return now
    try:
        moment = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(zone))
    except ValueError:
        raise ValueError("--start must look like '2026-12-01 10:00' (UK time)") from None
    return int(moment.timestamp() * 1000)


def _region(text: str) -> str:
    if text not in REGION_SLUGS:
        raise ValueError(f"--region must be one of: {', '.join(REGION_SLUGS)}")
    return text


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    now = SystemClock().now_ms()
    action = args.checkin_action
    if action != "list":
        region = _region(args.region)
    if action == "schedule":
        every_days = parse_every(args.every)
        start = parse_start(args.start, settings.timezone, now)
    db = await Database.open(settings.database_path)
    try:
        await db.migrate()
        async with db.transaction() as conn:
            checkins = Checkins(conn)
            if action == "list":
                for schedule in await checkins.schedules():
                    when = datetime.fromtimestamp(
                        schedule.next_at / 1000, ZoneInfo(settings.timezone)
                    )
                    every = f"every {schedule.every_days} days"
                    print(f"{schedule.region}: {every}, next {when:%Y-%m-%d %H:%M}")
                return 0
            if action == "stop":
                stopped = await checkins.remove_schedule(region)
                await AuditLog(conn).record("cli", "checkin.stopped", f"region:{region}", {}, now)
                print(f"stopped check-ins for {region}" if stopped else f"{region} had none")
                return 0
            await checkins.set_schedule(region, every_days, start, "cli", now)
            await schedule_round(conn, region, start, now)
            details = {"every_days": str(every_days), "next_at": str(start)}
            await AuditLog(conn).record(
                "cli", "checkin.scheduled", f"region:{region}", details, now
            )
        print(f"check-ins for {region} every {every_days} days, first round {args.start or 'now'}")
        return 0
    finally:
        await db.close()
