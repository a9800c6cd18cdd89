"""The Monday digest on a clock the test moves: one per region per week, a Monday missed
while the bot was down is caught up at the next start, and a restart never sends twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from bot.digests import next_monday_morning, week_before
from bot.local_api import FakePerson, LocalBotApi
from storage.clock import ManualClock
from storage.people import People
from storage.staff import StaffRoles
from tests.harness import Records, running_bot

MIA = FakePerson(user_id=760000001, first_name="Mia")  # manager, London


def documents(api: LocalBotApi) -> list[str]:
    return [m.file_name or "" for m in api.messages(MIA.chat_id) if m.kind == "document"]


async def wait_for_documents(api: LocalBotApi, count: int) -> None:
    async with asyncio.timeout(10):
        while len(documents(api)) < count:  # noqa: ASYNC110 - the server's records
            await asyncio.sleep(0.05)


def test_monday_morning_is_0800_london_time_across_clock_changes() -> None:
    zone = "Europe/London"
    winter = int(datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp() * 1000)
    assert next_monday_morning(winter, zone) == int(
        datetime(2026, 11, 30, 8, 0, tzinfo=UTC).timestamp() * 1000
    )
    summer = int(datetime(2027, 6, 2, 12, 0, tzinfo=UTC).timestamp() * 1000)
    assert next_monday_morning(summer, zone) == int(
        datetime(2027, 6, 7, 7, 0, tzinfo=UTC).timestamp() * 1000  # 08:00 BST
    )
    monday = next_monday_morning(winter, zone)
    assert next_monday_morning(monday, zone) > monday  # strictly after
    assert week_before(monday, zone) == "2026-W48"


async def test_one_digest_per_week_caught_up_after_downtime_and_never_twice(
    api: LocalBotApi, tmp_path: Path
) -> None:
    clock = ManualClock(datetime(2026, 11, 18, 10, 0, tzinfo=UTC))  # a Wednesday
    api.add_chat(MIA)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        who = runtime.service.pseudonym_of(MIA.user_id)
        async with runtime.db.transaction() as conn:
            await People(conn).touch(who, MIA.chat_id, "en", clock.now_ms())
            await StaffRoles(conn).grant(who, "manager", "london", False, "cli", 0)
    records = Records(runtime.settings)

    clock.set(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))  # down all Monday the 23rd
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await runtime.scheduler.run_due()
        await wait_for_documents(api, 1)
    assert documents(api) == ["yousaid-digest-london-2026-W47.html"]
    released = records.query("SELECT COUNT(*), COUNT(DISTINCT region) FROM published_digests")
    assert released == [(13, 13)]  # twelve regions and the national view, once each

    async with running_bot(api, tmp_path, clock=clock) as runtime:  # a restart
        await runtime.scheduler.run_due()
        await asyncio.sleep(0.5)
    assert len(documents(api)) == 1
    assert records.query("SELECT COUNT(*) FROM published_digests") == [(13,)]

    clock.set(datetime(2026, 11, 30, 8, 0, tzinfo=UTC))  # the next Monday, 08:00
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await runtime.scheduler.run_due()
        await wait_for_documents(api, 2)
    assert documents(api)[-1] == "yousaid-digest-london-2026-W48.html"
    weeks = records.query("SELECT week, COUNT(*) FROM published_digests GROUP BY week")
    assert weeks == [("2026-W47", 13), ("2026-W48", 13)]
    sent = api.messages(MIA.chat_id)
    assert [m.kind for m in sent] == ["photo", "document", "photo", "document"]  # chart, report
    caption = sent[-2].caption or ""
    assert "week 2026-W48" in caption
    assert "Check-ins sent: " in caption and "Themes with an update: " in caption
    report = sent[-1].content or b""
    assert b"<html" in report.lower() and str(MIA.user_id).encode() not in report
