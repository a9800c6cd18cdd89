"""Retention: answers, check-ins and safeguarding requests past their period are deleted,
exactly those, and people with no consent granted (or who blocked the bot) silent for the
period are erased (staff and anyone still consenting and reachable are kept), by hand
(`python -m bot retention run`) and by the bot's daily job."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot import retention
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
from storage.panels import Panels
from storage.people import ConsentLedger, People, Sessions
from storage.queues import Outbox
from storage.safeguarding import SafeguardingRequests
from storage.staff import StaffRoles
from storage.updates import Updates
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
    keep: dict[str, set[int]] = {
        "answers": set(),
        "checkins": set(),
        "safeguarding": set(),
        "deliveries": set(),
        "invitations": set(),
    }
    async with db.transaction() as conn:
        for who, chat, region in (("p-ada", 1, "london"), ("p-bo", 2, "wales")):
            await People(conn).touch(who, chat, "en", now)  # seen lately: not erased
            await People(conn).set_region(who, region, now)
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
        # Updates published a day either side of the cutoff, each sent to Ada: who was sent
        # one says what she raised, so the old one's delivery goes (the update stays).
        for published in (cutoff - DAY, cutoff + DAY):
            async with conn.execute(
                "INSERT INTO updates (region, kind, themes, text_en, published_by, "
                "published_at) VALUES ('london', 'changed', '[\"housing\"]', 'x', 'p-staff', ?) "
                "RETURNING id",
                (published,),
            ) as cursor:
                row = await cursor.fetchone()
            assert row is not None
            await Updates(conn).deliver(int(row[0]), "p-ada")
            if published > cutoff:
                keep["deliveries"].add(int(row[0]))
        # Panels that began a day either side of the cutoff, Ada invited to each: who was
        # invited to the old one goes (the panel stays).
        for starts in (cutoff - DAY, cutoff + DAY):
            panel = await Panels(conn).create(
                "london", "Housing panel", starts, "Town hall", 5, (), "p-staff", starts - DAY
            )
            token = await Panels(conn).invite(panel, "p-ada", starts - DAY)
            assert token is not None
            await Panels(conn).respond(token, "yes", starts - DAY)
            if starts > cutoff:
                keep["invitations"].add(panel)
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
            ("deliveries", "SELECT update_id FROM update_deliveries"),
            ("invitations", "SELECT panel_id FROM panel_invitations"),
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
        assert {t: deleted[t] for t in ("answers", "checkins", "safeguarding_requests")} == {
            "answers": len(before["answers"] - keep["answers"]),
            "checkins": len(before["checkins"] - keep["checkins"]),
            "safeguarding_requests": len(before["safeguarding"] - keep["safeguarding"]),
        }
        assert deleted["update_deliveries"] == 1
        assert deleted["panel_invitations"] == 1
        assert deleted["people"] == 0  # both were seen lately
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
        now = SystemClock().now_ms()
        await seed(db, now - 11 * 30 * DAY)  # seen from 11 months ago
        await seed_people(db, now, 13)
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
    assert f" {len(SILENT_GONE)} people," in result.stdout  # erased: silent, no consent

    async def check() -> None:
        db = await Database.open(env["DATABASE_PATH"])
        try:
            await assert_erased_and_kept(db)
        finally:
            await db.close()

    asyncio.run(check())


async def test_the_bot_runs_retention_daily_from_the_start(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bot started after a long time down deletes what expired meanwhile (the day's run
    is due at start), and schedules tomorrow's. People are looked at two a part here, so
    the run goes on in parts from where the last stopped, past those it keeps."""
    monkeypatch.setattr(retention, "_PEOPLE_BATCH", 2)
    settings = settings_for(api, tmp_path)
    db = await Database.open(settings.database_path)
    await db.migrate()
    now = SystemClock().now_ms()
    keep = await seed(db, now, margin=3_600_000)  # the bot starts a moment later
    await seed_people(db, now, RULES.answer_months)
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
        # Three parts: the two longest silent (kept), the two erased, then nobody left.
        more = "SELECT status FROM schedules WHERE kind = ? AND key LIKE '%:more:%'"
        await eventually(lambda: records.query(more, RETENTION_JOB) == [("done",)] * 2)
        erased = "SELECT pseudonym FROM erasures ORDER BY pseudonym"
        assert [r[0] for r in records.query(erased)] == sorted(SILENT_GONE)
        # The WAL is emptied after the run has committed (no copy of a deleted row stays).
        wal = "SELECT status FROM schedules WHERE kind = ? ORDER BY id"
        await eventually(lambda: {r[0] for r in records.query(wal, RETENTION_WAL_JOB)} == {"done"})
        jobs = records.query(
            "SELECT due_at, status FROM schedules WHERE kind = ? AND key NOT LIKE '%:more:%' "
            "ORDER BY due_at",
            RETENTION_JOB,
        )
        parts = records.query(
            "SELECT payload FROM schedules WHERE kind = ? AND key LIKE '%:more:%'", RETENTION_JOB
        )
    db = await Database.open(settings.database_path)
    try:
        await assert_erased_and_kept(db)
    finally:
        await db.close()
    assert len(parts) == 2  # went on in parts, each from a position (never a pseudonym)
    assert not any("p-" in str(p[0]) or "s-" in str(p[0]) for p in parts)
    assert {r[0] for r in records.query("SELECT id FROM checkins")} == keep["checkins"]
    assert [status for _, status in jobs] == ["done", "pending"]
    tomorrow = datetime.fromtimestamp(int(str(jobs[-1][0])) / 1000, UTC)
    assert (tomorrow.hour, tomorrow.minute) == (3, 30) and int(str(jobs[-1][0])) > now


# People for the erasure of the silent: (pseudonym, chat id, when they wrote, decisions per
# purpose in order, staff). "Long ago" is before the cutoff, "lately" after it.
SILENT_GONE = {"p-gone", "p-never", "p-blocked"}
SILENT_KEPT = {"p-wants", "p-recent", "s-staff", "p-back"}
CHAT = {"p-gone": 880_000_001, "p-never": 880_000_002, "p-wants": 880_000_003}
CHAT |= {"p-recent": 880_000_004, "s-staff": 880_000_005, "p-back": 880_000_006}
CHAT |= {"p-blocked": 880_000_007}


async def seed_people(db: Database, now: int, months: int) -> None:
    cutoff = months_before(now, months)
    long_ago, lately = cutoff - 40 * DAY, cutoff + DAY
    cases: tuple[tuple[str, list[int], dict[str, list[bool]], bool], ...] = (
        # said yes to answers once, then /stop: nothing granted now
        ("p-gone", [long_ago], {"feedback": [True, False], "panel_invitations": [False]}, False),
        ("p-never", [long_ago - 400 * DAY], {}, False),  # never got past the notice
        # silent longer, but still wants "you said, we did" updates: kept
        (
            "p-wants",
            [long_ago - 800 * DAY],
            {"updates": [False, True], "feedback": [True, False]},
            False,
        ),
        ("p-recent", [lately], {"feedback": [False], "updates": [False]}, False),
        ("s-staff", [long_ago - 800 * DAY], {}, True),  # staff: never erased this way
        ("p-back", [long_ago, now - DAY], {"feedback": [False]}, False),  # wrote again
        # still wants updates, but blocked the bot: nothing can reach them
        ("p-blocked", [long_ago - 200 * DAY], {"updates": [True]}, False),
    )
    async with db.transaction() as conn:
        for who, written, decisions, staff in cases:
            for moment in written:
                await People(conn).touch(who, CHAT[who], "en", moment)
            await People(conn).set_region(who, "london", written[0])
            for purpose, said in decisions.items():
                for step, granted in enumerate(said):
                    await ConsentLedger(conn).record(who, purpose, granted, "v1", written[0] + step)
            await Sessions(conn).save(who, "{}", written[-1])
            await Outbox(conn).enqueue(CHAT[who], 1, "message", {"text": "hello"}, written[-1])
            await conn.execute(  # sent: the row still ties the chat to when it was written to
                "UPDATE outbox SET status = 'sent', sent_at = ? WHERE chat_id = ?",
                (written[-1], CHAT[who]),
            )
            if staff:
                await StaffRoles(conn).grant(who, "staff", "london", False, "cli", written[0])
            if who == "p-blocked":
                await People(conn).set_reachable(CHAT[who], False, written[-1])


async def traces(db: Database, values: set[object]) -> list[str]:
    """Every table and column holding one of `values`, but the erasure tombstones."""
    found = []
    async with db.read() as conn:
        tables = await conn.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        for (table,) in tables:
            columns = await conn.execute_fetchall(f"SELECT name FROM pragma_table_info('{table}')")
            for (column,) in columns:
                for value in values:
                    hits = await conn.execute_fetchall(
                        f"SELECT COUNT(*) FROM {table} WHERE {column} = ? "
                        f"OR CAST({column} AS TEXT) LIKE '%' || ? || '%'",
                        (value, str(value)),
                    )
                    if next(iter(hits))[0] and table != "erasures":
                        found.append(f"{table}.{column}")
    return found


async def assert_erased_and_kept(db: Database) -> None:
    async with db.read() as conn:
        erased = await conn.execute_fetchall("SELECT pseudonym FROM erasures")
        people = await conn.execute_fetchall("SELECT pseudonym, chat_id FROM people")
        ledger = await conn.execute_fetchall("SELECT DISTINCT pseudonym FROM consent_ledger")
    assert {r[0] for r in erased} == SILENT_GONE  # a tombstone each
    assert {(r[0], r[1]) for r in people} >= {(who, CHAT[who]) for who in SILENT_KEPT}
    assert not SILENT_GONE & {r[0] for r in people}
    assert {r[0] for r in ledger} >= {"p-wants", "p-recent", "p-back"}  # their ledger stays
    # Neither the pseudonym nor the chat id of an erased person is anywhere.
    assert await traces(db, {*SILENT_GONE, *(CHAT[who] for who in SILENT_GONE)}) == []


async def test_silent_people_with_no_consent_are_erased(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Silent for the period and nothing granted, or blocked the bot: erased as /delete
    erases, a tombstone left. Kept: anyone still consenting to something who can be
    reached, anyone seen since the cutoff (writing again moves it), staff. At most one
    erased a part, each part going on from the last one erased."""
    monkeypatch.setattr(retention, "_PEOPLE_BATCH", 4)
    monkeypatch.setattr(retention, "_ERASE_BATCH", 1)
    db = await Database.open(str(tmp_path / "y.db"))
    try:
        await db.migrate()
        await seed_people(db, NOW, RULES.answer_months)
        deleted = await run_retention(db, RULES, NOW)
        assert deleted["people"] == len(SILENT_GONE)
        assert deleted["consent_ledger"] == 4 and deleted["outbox"] == 3
        await assert_erased_and_kept(db)
        async with db.read() as conn:
            audit = await conn.execute_fetchall(
                "SELECT details FROM audit_log WHERE action = 'retention.deleted' ORDER BY id"
            )
        assert ['"people": "1"' in row[0] for row in audit] == [True] * 3  # counts only
        again = await run_retention(db, RULES, NOW)
        assert again == dict.fromkeys(again, 0)
        assert await db.integrity_check() == "ok"
    finally:
        await db.close()


async def test_writing_moves_last_seen_on_at_most_once_a_day(tmp_path: Path) -> None:
    db = await Database.open(str(tmp_path / "y.db"))
    try:
        await db.migrate()
        seen = "SELECT last_seen_at FROM people WHERE pseudonym = 'p-ada'"
        for moment, expected in (
            (NOW, NOW),  # first contact
            (NOW + DAY - 1, NOW),  # within the day: nothing written
            (NOW + DAY + 1, NOW + DAY + 1),
            (NOW, NOW + DAY + 1),  # a clock set back never moves it back
        ):
            async with db.transaction() as conn:
                await People(conn).touch("p-ada", 1001, "en", moment)
                assert [tuple(r) for r in await conn.execute_fetchall(seen)] == [(expected,)]
    finally:
        await db.close()
