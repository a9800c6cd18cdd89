"""Retention: answers, check-ins and safeguarding requests past their period are deleted,
exactly those, by hand (`python -m bot retention run`) and by the bot's daily job."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.local_api import LocalBotApi
from bot.retention import (
    RETENTION_JOB,
    RETENTION_WAL_JOB,
    RetentionRules,
    months_before,
    run_retention,
)
from bot.settings import PROJECT_ROOT, SettingsError, load_settings
from storage.checkins import Checkins
from storage.clock import SystemClock
from storage.database import Database
from storage.safeguarding import SafeguardingRequests
from tests.harness import Records, eventually, running_bot, settings_for

DAY = 86_400_000
NOW = int(datetime(2026, 11, 26, 12, tzinfo=UTC).timestamp() * 1000)
RULES = RetentionRules(answer_months=24, safeguarding_days=90)


def ms(*when: int) -> int:
    return int(datetime(*when, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_months_are_calendar_months() -> None:
    assert months_before(NOW, 24) == ms(2024, 11, 26, 12)
    assert months_before(ms(2026, 3, 31, 9), 1) == ms(2026, 2, 28, 9)
    assert months_before(ms(2028, 3, 31), 1) == ms(2028, 2, 29)
    assert months_before(ms(2026, 1, 15), 13) == ms(2024, 12, 15)


def test_the_periods_are_validated() -> None:
    assert load_settings({}).retention_months == 24
    assert load_settings({}).safeguarding_retention_days == 90
    assert load_settings({"RETENTION_MONTHS": "36"}).retention_months == 36
    for bad in ("12", "121", "two years", "24.5", "-24"):
        with pytest.raises(SettingsError, match="RETENTION_MONTHS"):
            load_settings({"RETENTION_MONTHS": bad})
    with pytest.raises(SettingsError, match="SAFEGUARDING_RETENTION_DAYS"):
        load_settings({"SAFEGUARDING_RETENTION_DAYS": "7"})


async def seed(db: Database, now: int, margin: int = 0) -> dict[str, set[int]]:
    """Rows on either side of each cutoff (those that stay `margin` ms inside it); returns
    the ids that must stay, by table."""
    cutoff = months_before(now, RULES.answer_months)
    keep: dict[str, set[int]] = {"answers": set(), "checkins": set(), "safeguarding": set()}
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO people (pseudonym, chat_id, locale, region, created_at, updated_at) "
            "VALUES ('p-ada', 1, 'en', 'london', 0, 0), ('p-bo', 2, 'en', 'wales', 0, 0)"
        )
        checkins = Checkins(conn)
        for who, sent, closed, stays in (
            ("p-ada", cutoff - 10 * DAY, cutoff - 1, False),  # closed just before: goes
            ("p-bo", cutoff - 10 * DAY, cutoff + margin, True),  # at the cutoff: stays
            ("p-ada", now - DAY, None, True),  # open, recent
        ):
            checkin = await checkins.create(who, "london", "en", "2024-W47", "asked", sent)
            await checkins.record_score(checkin.id, "voice", 4, sent)
            if closed is not None:
                await checkins.complete(checkin.id, closed)
            if stays:
                keep["checkins"].add(checkin.id)
            async with conn.execute(
                "INSERT INTO answers (pseudonym, dialogue, question, ciphertext, created_at, "
                "checkin_id, quote) VALUES (?, 'feedback', 'improve', x'00', ?, ?, x'01') "
                "RETURNING id",
                (who, sent + 1, checkin.id),
            ) as cursor:
                row = await cursor.fetchone()
            assert row is not None
            await checkins.tag_answer(int(row[0]), ["housing"])
            if sent + 1 >= cutoff:
                keep["answers"].add(int(row[0]))
        for created in (now - 90 * DAY - 1, now - 90 * DAY + margin, now):
            await SafeguardingRequests(conn).open("p-bo", "wales", "self_harm", created)
        async with conn.execute("SELECT id, created_at FROM safeguarding_requests") as cursor:
            keep["safeguarding"] = {
                int(r[0]) for r in await cursor.fetchall() if r[1] >= now - 90 * DAY + margin
            }
        # An answer outside any check-in, one day either side of the cutoff.
        for written in (cutoff - DAY, cutoff + DAY):
            async with conn.execute(
                "INSERT INTO answers (pseudonym, dialogue, question, ciphertext, created_at) "
                "VALUES ('p-bo', 'probe', 'better', x'02', ?) RETURNING id",
                (written,),
            ) as cursor:
                row = await cursor.fetchone()
            assert row is not None
            if written > cutoff:
                keep["answers"].add(int(row[0]))
    return keep


async def remaining(db: Database) -> dict[str, set[int]]:
    async with db.read() as conn:
        found = {}
        for name, sql in (
            ("answers", "SELECT id FROM answers"),
            ("checkins", "SELECT id FROM checkins"),
            ("safeguarding", "SELECT id FROM safeguarding_requests"),
        ):
            async with conn.execute(sql) as cursor:
                found[name] = {int(r[0]) for r in await cursor.fetchall()}
    return found


async def test_exactly_the_expired_rows_go(tmp_path: Path) -> None:
    db = await Database.open(str(tmp_path / "y.db"))
    try:
        await db.migrate()
        keep = await seed(db, NOW)
        before = await remaining(db)
        assert all(keep[t] < before[t] for t in keep)  # something to delete in each
        deleted = await run_retention(db, RULES, NOW)
        assert await remaining(db) == keep
        assert deleted == {
            "answers": len(before["answers"] - keep["answers"]),
            "checkins": len(before["checkins"] - keep["checkins"]),
            "safeguarding_requests": len(before["safeguarding"] - keep["safeguarding"]),
        }
        async with db.read() as conn:
            async with conn.execute(
                "SELECT COUNT(*) FROM answer_themes WHERE answer_id NOT IN (SELECT id FROM answers)"
            ) as cursor:
                assert tuple(await cursor.fetchone() or ()) == (0,)  # themes went too
            async with conn.execute(
                "SELECT COUNT(*) FROM checkin_scores WHERE checkin_id NOT IN "
                "(SELECT id FROM checkins)"
            ) as cursor:
                assert tuple(await cursor.fetchone() or ()) == (0,)
            async with conn.execute("SELECT SUM(sent) FROM checkin_counts") as cursor:
                assert tuple(await cursor.fetchone() or ()) == (3,)  # counters stay
            async with conn.execute(
                "SELECT actor, details FROM audit_log WHERE action = 'retention.deleted'"
            ) as cursor:
                audit = await cursor.fetchall()
        assert [a[0] for a in audit] == ["system"]
        assert await run_retention(db, RULES, NOW) == dict.fromkeys(deleted, 0)
        assert await db.integrity_check() == "ok"
    finally:
        await db.close()


def test_the_command_deletes_and_says_how_many(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_PATH": str(tmp_path / "y.db"),
        "SECRETS_PATH": str(tmp_path / "secrets"),
        "RETENTION_MONTHS": "13",
    }

    async def prepare() -> None:
        db = await Database.open(env["DATABASE_PATH"])
        await db.migrate()
        await seed(db, SystemClock().now_ms() - 11 * 30 * DAY)  # seen from 11 months ago
        await db.close()

    asyncio.run(prepare())
    result = subprocess.run(
        [sys.executable, "-m", "bot", "retention", "run"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # 13 months from today reaches into what was kept at 24 months from 11 months ago.
    assert "13 months" in result.stdout and "deleted" in result.stdout
    assert " 0 answers" not in result.stdout


async def test_the_bot_runs_retention_daily_from_the_start(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """A bot started after a long time down deletes what expired meanwhile (the day's run
    is due at start), and schedules tomorrow's."""
    settings = settings_for(api, tmp_path)
    db = await Database.open(settings.database_path)
    await db.migrate()
    now = SystemClock().now_ms()
    keep = await seed(db, now, margin=3_600_000)  # the bot starts a moment later
    await db.close()
    records = Records(settings)
    async with running_bot(api, tmp_path):
        await eventually(
            lambda: {r[0] for r in records.query("SELECT id FROM answers")} == keep["answers"]
        )
        await eventually(
            lambda: (
                {r[0] for r in records.query("SELECT id FROM safeguarding_requests")}
                == keep["safeguarding"]
            )
        )
        jobs = records.query(
            "SELECT due_at, status FROM schedules WHERE kind = ? ORDER BY due_at", RETENTION_JOB
        )
        # The WAL is emptied after the run has committed (no copy of a deleted row stays).
        wal = "SELECT status FROM schedules WHERE kind = ?"
        await eventually(lambda: records.query(wal, RETENTION_WAL_JOB) == [("done",)])
    assert {r[0] for r in records.query("SELECT id FROM checkins")} == keep["checkins"]
    assert [status for _, status in jobs] == ["done", "pending"]
    tomorrow = datetime.fromtimestamp(int(str(jobs[-1][0])) / 1000, UTC)
    assert (tomorrow.hour, tomorrow.minute) == (3, 30) and int(str(jobs[-1][0])) > now
