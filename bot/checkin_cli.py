"""Command line for scheduled check-ins: `checkin schedule | stop | list`.

A schedule is one row per region plus the job for its next round, written together, so a
running bot picks it up (its scheduler polls the database) and a restart loses nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bot.checkins import local_time_of_day, schedule_round
from bot.settings import Settings
from state_machines.definition import REGION_SLUGS
from storage.checkins import Checkins
from storage.clock import Clock, SystemClock
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


def run_checkin(settings: Settings, args: argparse.Namespace, clock: Clock | None = None) -> int:
    """Run a `checkin` command; bad input is one line on stderr and exit 2. `clock` (the
    system's by default) is for tests: a --start is refused when it is past."""
    try:
        return asyncio.run(_run(settings, args, clock or SystemClock()))
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
    """--start as a moment (ms, UTC); now when not given. Refused: a time the zone's clocks
    never show (in the hour skipped when they go forward), which would otherwise quietly
    become another, and a time before the current minute, whose round would be sent at once
    rather than when staff said. A time in the hour shown twice when the clocks go back is
    its first occurrence, as for every round after it (bot.checkins.at_local_time)."""
    if text is None:
        return now
    try:
        wall = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M")
    except ValueError:
        raise ValueError("--start must look like '2026-12-01 10:00' (UK time)") from None
    tz = ZoneInfo(zone)
    moment = wall.replace(tzinfo=tz, fold=0)
    # A time that does not exist comes back from UTC as another one (01:30 as 02:30).
    if moment.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
        raise ValueError(
            f"--start {wall:%Y-%m-%d %H:%M} does not exist in {zone} "
            "(the clocks go forward that night); give another time"
        )
    start = int(moment.timestamp()) * 1000
    if start < now - now % 60_000:  # the current minute is "now", not the past
        raise ValueError(
            f"--start {wall:%Y-%m-%d %H:%M} is in the past; give a later time, "
            "or leave --start out to start now"
        )
    return start


def _region(text: str) -> str:
    if text not in REGION_SLUGS:
        raise ValueError(f"--region must be one of: {', '.join(REGION_SLUGS)}")
    return text


async def _run(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    now = clock.now_ms()
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
            # the rounds keep the first one's local time of day whatever the clocks do
            local_time = local_time_of_day(start, settings.timezone)
            await checkins.set_schedule(region, every_days, start, "cli", now, local_time)
            await schedule_round(conn, region, start, now)
            details = {"every_days": str(every_days), "next_at": str(start)}
            await AuditLog(conn).record(
                "cli", "checkin.scheduled", f"region:{region}", details, now
            )
        print(f"check-ins for {region} every {every_days} days, first round {args.start or 'now'}")
        return 0
    finally:
        await db.close()
