"""Jobs queued in parts, at national scale: how long each holds the one database lock.

    .venv/bin/python -m bench.jobs [--people 240000] [--json out.json]

Everyone is seeded as bench/startup.py seeds them (12 regions; 20,000 people in the measured
one at the default size, each of whom said yes to everything). Then, on that database, one
after the other:
- a check-in round for the region (`checkin_round` and its parts);
- a panel created by a staff member of the region (the organiser's transaction, then the
  `panel_invite` parts);
- a "you said, we did" update on a theme raised lately by half the region (the staff
  member's transaction, then the `update_deliver` parts).
Each scheduler pass runs one part (and whatever progress tick is due) and is timed whole,
commit included: while it runs, every person's update waits for the lock. The baseline, in
the same run, is a transaction that writes one row: the commit (and its fsync) alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.startup import REGIONS, seed
from bot.checkins import ROUND_JOB, schedule_round
from bot.conversation import Actor
from bot.local_api import LocalBotApi
from bot.panels import INVITE_JOB
from bot.runtime import Runtime, build_runtime
from bot.settings import load_settings
from bot.updates import DELIVER_JOB
from storage.clock import SystemClock
from storage.queues import Meta

TOKEN = "123456789:AAinventedTOKENforBENCHonly_abcdefghij"
REGION = "london"
DAY_MS = 86_400_000
STAFF_CHAT = 780_000_000  # the staff member's chat: nothing is sent while measuring


async def parts_of(runtime: Runtime, kind: str) -> dict[str, Any]:
    """Run every due job until none is left, timing each scheduler pass; the figures of
    the passes that ran a part of `kind` (counted from the schedules table)."""
    passes: list[float] = []
    while True:
        began = time.perf_counter()
        ran = await runtime.scheduler.run_due()
        if not ran:
            break
        passes.append(time.perf_counter() - began)
    async with (
        runtime.db.read() as conn,
        conn.execute(
            "SELECT COUNT(*) FROM schedules WHERE kind = ? AND status = 'done'", (kind,)
        ) as cursor,
    ):
        row = await cursor.fetchone()
    return {
        "jobs": int(row[0]) if row else 0,
        "passes": len(passes),
        "longest_s": round(max(passes, default=0.0), 4),
        "mean_s": round(statistics.fmean(passes), 4) if passes else 0.0,
        "total_s": round(sum(passes), 2),
    }


async def timed_transaction(runtime: Runtime, work: Any) -> float:
    """Seconds from asking for the lock to the commit, for `work(conn)`."""
    began = time.perf_counter()
    async with runtime.db.transaction() as conn:
        await work(conn)
    return time.perf_counter() - began


async def commit_alone(runtime: Runtime, times: int = 20) -> float:
    """The baseline: the median of transactions that each write one row."""

    async def one_row(conn: Any) -> None:
        await Meta(conn).set("bench_jobs", str(time.time_ns()))

    return statistics.median([await timed_transaction(runtime, one_row) for _ in range(times)])


async def run(people: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="yousaid-jobs-"))
    try:
        return await measure(folder, people)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def measure(folder: Path, people: int) -> dict[str, Any]:
    began = time.perf_counter()
    database, secrets_path = await seed(folder, people, 0)
    now = SystemClock().now_ms()
    rng = random.Random(1)
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE people SET region = ? WHERE region = ?", (REGION, REGIONS[0]))
        region = [
            r[0] for r in conn.execute("SELECT pseudonym FROM people WHERE region = ?", (REGION,))
        ]
        staff = region[0]
        conn.execute(
            "INSERT INTO staff_roles (pseudonym, role, region, granted_by, granted_at) "
            "VALUES (?, 'staff', ?, 'cli', 0)",
            (staff, REGION),
        )
        raised = [p for p in region if rng.random() < 0.5]
        for pseudonym in raised:  # an answer on housing within the last 80 days
            cursor = conn.execute(
                "INSERT INTO answers (pseudonym, dialogue, question, ciphertext, created_at) "
                "VALUES (?, 'feedback', 'improve', x'00', ?)",
                (pseudonym, now - rng.randrange(80) * DAY_MS),
            )
            conn.execute(
                "INSERT INTO answer_themes (answer_id, theme, source) "
                "VALUES (?, 'housing', 'keywords')",
                (cursor.lastrowid,),
            )
        conn.execute(
            "INSERT INTO checkin_schedules (region, every_days, next_at, created_by, "
            "created_at, updated_at) VALUES (?, 28, ?, 'cli', 0, 0)",
            (REGION, now - 1000),
        )
    seeded = time.perf_counter() - began
    async with LocalBotApi(TOKEN, "bench_jobs_bot") as api:
        settings = load_settings(
            {
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_API_BASE_URL": api.base_url,
                "DATABASE_PATH": database,
                "SECRETS_PATH": secrets_path,
                "LOG_LEVEL": "WARNING",
            }
        )
        runtime = await build_runtime(settings, poll_timeout=1)
        try:
            baseline = await commit_alone(runtime)
            actor = Actor(staff, STAFF_CHAT, "en")

            async def start_round(conn: Any) -> None:
                await schedule_round(conn, REGION, now - 1000, SystemClock().now_ms())

            await timed_transaction(runtime, start_round)
            round_parts = await parts_of(runtime, ROUND_JOB)

            panel = {
                "region": REGION,
                "title": "Housing panel",
                "place": "Town hall",
                "capacity": "20",
                "starts_at": str(SystemClock().now_ms() + 7 * DAY_MS),
            }

            async def create_panel(conn: Any) -> None:
                await runtime.panels.create_panel(conn, actor, panel, SystemClock().now_ms())

            panel_first = await timed_transaction(runtime, create_panel)
            panel_parts = await parts_of(runtime, INVITE_JOB)

            update = {
                "region": REGION,
                "kind": "changed",
                "themes": "housing",
                "text_en": "The housing team is in the office every Tuesday.",
            }

            async def publish(conn: Any) -> None:
                await runtime.updates.publish(conn, actor, update, SystemClock().now_ms())

            update_first = await timed_transaction(runtime, publish)
            update_parts = await parts_of(runtime, DELIVER_JOB)
            counts: dict[str, int] = {}
            async with runtime.db.read() as reader:
                for table in ("checkins", "panel_invitations", "update_deliveries"):
                    async with reader.execute(f"SELECT COUNT(*) FROM {table}") as counted:
                        row = await counted.fetchone()
                    counts[table] = int(row[0]) if row else 0
        finally:
            await runtime.db.close()
    return {
        "people": people,
        "region_people": len(region),
        "raised_the_theme": len(raised),
        "seed_seconds": round(seeded, 1),
        "commit_alone_s": round(baseline, 4),
        "round": {**round_parts, "asked": counts["checkins"]},
        "panel": {
            **panel_parts,
            "organiser_transaction_s": round(panel_first, 3),
            "invited": counts["panel_invitations"],
        },
        "update": {
            **update_parts,
            "staff_transaction_s": round(update_first, 3),
            "delivered": counts["update_deliveries"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--people", type=int, default=240_000)
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args()
    result = asyncio.run(run(args.people))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
