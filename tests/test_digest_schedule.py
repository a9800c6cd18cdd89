"""The Monday digest on a clock the test moves: one per region per week, a Monday missed
while the bot was down is caught up at the next start, and a restart never sends twice;
managers get the week's report even when it was released before 08:00, admins the national
view the same way, and a Monday job given up after failures is run again by the hourly
check."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot import digest_cli
from bot import digests as digests_module
from bot.digests import PreparedRelease, last_monday_morning, next_monday_morning, week_before
from bot.local_api import FakePerson, LocalBotApi
from bot.runtime import Runtime
from storage.clock import ManualClock
from storage.people import People
from storage.queues import Job, Schedules
from storage.staff import StaffRoles
from tests.harness import Chat, Records, as_time_goes_by, eventually, running_bot

MIA = FakePerson(user_id=760000001, first_name="Mia")  # manager, London
SAM = FakePerson(user_id=760000002, first_name="Sam")  # staff, London
ADA = FakePerson(user_id=760000003, first_name="Ada")  # admin
KIT = FakePerson(user_id=760000004, first_name="Kit")  # admin, and manager in Wales


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
    assert last_monday_morning(monday, zone) == monday  # at or before
    assert last_monday_morning(monday - 1, zone) == int(
        datetime(2026, 11, 23, 8, 0, tzinfo=UTC).timestamp() * 1000
    )
    assert last_monday_morning(summer, zone) == int(
        datetime(2027, 5, 31, 7, 0, tzinfo=UTC).timestamp() * 1000  # 08:00 BST
    )


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
    assert "23–29 Nov 2026 (week 2026-W48)" in caption  # the days, as read on a phone
    assert "Check-ins sent: " in caption and "Themes with an update: " in caption
    report = sent[-1].content or b""
    assert b"<html" in report.lower() and str(MIA.user_id).encode() not in report


async def _grant(runtime: Runtime, person: FakePerson, role: str, now: int) -> None:
    who = runtime.service.pseudonym_of(person.user_id)
    async with runtime.db.transaction() as conn:
        await People(conn).touch(who, person.chat_id, "en", now)
        await StaffRoles(conn).grant(who, role, "london", False, "cli", 0)


@pytest.mark.parametrize("released_by", ["staff asking", "the command line"])
async def test_managers_get_the_week_that_was_released_before_0800(
    api: LocalBotApi, tmp_path: Path, released_by: str
) -> None:
    """Staff sending /digest between midnight and 08:00 on Monday, or an admin running
    `python -m bot digest` without --dry-run, releases the week before the Monday job.
    The job released nothing new then, and sent the managers nothing: they are sent the
    week's report all the same, once, whatever runs after."""
    clock = ManualClock(datetime(2026, 11, 23, 6, 0, tzinfo=UTC))  # Monday, 06:00 London
    api.add_chat(MIA)
    api.add_chat(SAM)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await _grant(runtime, MIA, "manager", clock.now_ms())
        await _grant(runtime, SAM, "staff", clock.now_ms())
        if released_by == "staff asking":
            sam = Chat(api, SAM)
            await sam.say("/digest")
            async with asyncio.timeout(10):
                while not any(m.kind == "document" for m in sam.messages):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
    if released_by == "the command line":  # while the bot is stopped, before 08:00
        parser = argparse.ArgumentParser()
        digest_cli.add_parser(parser.add_subparsers(dest="command"))
        argv = ["digest", "--region", "london", "--week", "2026-W47", "--out"]
        args = parser.parse_args([*argv, str(tmp_path / "london.md")])
        run = digest_cli.run_digest  # asyncio.run of its own: in a thread
        assert await asyncio.to_thread(run, runtime.settings, args, clock) == 0
    records = Records(runtime.settings)
    # every report drawn and every message sent (nothing left to send Mia a second one)
    unfinished = (
        "SELECT (SELECT COUNT(*) FROM schedules WHERE kind = 'digest_report' "
        "AND status = 'pending') + (SELECT COUNT(*) FROM outbox WHERE status = 'pending')"
    )
    released = records.query("SELECT COUNT(*) FROM published_digests WHERE week = '2026-W47'")
    assert released == [(13 if released_by == "staff asking" else 1,)]
    assert documents(api) == []  # Mia: nothing before 08:00

    clock.set(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    due = clock.now_ms()
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        runtime.scheduler.wake()
        await wait_for_documents(api, 1)
        # The week's Monday job run once more (as the hourly check runs one given up),
        # then the hourly checks: the managers' report is keyed by region and week.
        again = f"{digests_module.DIGEST_JOB}:{due}:again:1"
        async with runtime.db.transaction() as conn:
            await Schedules(conn).add(digests_module.DIGEST_JOB, again, due, {"due": due}, due)
        clock.set(datetime(2026, 11, 23, 11, 30, tzinfo=UTC))
        runtime.scheduler.wake()
        check = f"{digests_module.DIGEST_CHECK_JOB}:{clock.now_ms() // 3_600_000}"
        done = "SELECT COUNT(*) FROM schedules WHERE key IN (?, ?) AND status = 'done'"
        await eventually(lambda: records.query(done, again, check) == [(2,)])
    async with running_bot(api, tmp_path, clock=clock) as runtime:  # a restart
        runtime.scheduler.wake()
        await eventually(lambda: records.query(unfinished) == [(0,)])
    assert documents(api) == ["yousaid-digest-london-2026-W47.html"]  # once
    assert records.query("SELECT COUNT(*) FROM published_digests") == [(13,)]
    reports = records.query(
        "SELECT key FROM schedules WHERE kind = ? AND key LIKE '%managers%'",
        digests_module.REPORT_JOB,
    )
    assert reports == [("digest_report:london:2026-W47:managers",)]


def files_of(api: LocalBotApi, person: FakePerson) -> list[str]:
    return [m.file_name or "" for m in api.messages(person.chat_id) if m.kind == "document"]


@pytest.mark.parametrize("released_by", ["the Monday job", "staff asking"])
async def test_admins_are_sent_the_national_view_once_a_week(
    api: LocalBotApi, tmp_path: Path, released_by: str
) -> None:
    """Who is not being heard, by region, is only in the national view: every admin is
    sent it on Monday (chart, caption and report), once a week whoever released the week
    and however often the Monday job runs. An admin who also manages a region gets both;
    staff and managers who are not admins never get the national view."""
    clock = ManualClock(datetime(2026, 11, 23, 6, 0, tzinfo=UTC))  # Monday, 06:00 London
    grants = [
        (MIA, "manager", "london"),
        (SAM, "staff", "london"),
        (ADA, "admin", None),
        (KIT, "admin", None),
        (KIT, "manager", "wales"),
    ]
    for person in (MIA, SAM, ADA, KIT):
        api.add_chat(person)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        async with runtime.db.transaction() as conn:
            for person, role, region in grants:
                who = runtime.service.pseudonym_of(person.user_id)
                await People(conn).touch(who, person.chat_id, "en", clock.now_ms())
                await StaffRoles(conn).grant(who, role, region, False, "cli", 0)
        if released_by == "staff asking":  # released before 08:00; Sam gets London's
            sam = Chat(api, SAM)
            await sam.say("/digest")
            async with asyncio.timeout(10):
                while not any(m.kind == "document" for m in sam.messages):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
    records = Records(runtime.settings)
    assert files_of(api, ADA) == files_of(api, KIT) == []  # nothing before 08:00

    clock.set(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    due = clock.now_ms()
    national = "yousaid-digest-national-2026-W47.html"
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        runtime.scheduler.wake()
        await eventually(lambda: national in files_of(api, ADA) and national in files_of(api, KIT))
        again = f"{digests_module.DIGEST_JOB}:{due}:again:1"  # the Monday job once more
        async with runtime.db.transaction() as conn:
            await Schedules(conn).add(digests_module.DIGEST_JOB, again, due, {"due": due}, due)
        clock.set(datetime(2026, 11, 23, 11, 30, tzinfo=UTC))
        runtime.scheduler.wake()
        done = "SELECT COUNT(*) FROM schedules WHERE key = ? AND status = 'done'"
        await eventually(lambda: records.query(done, again) == [(1,)])
    unfinished = (
        "SELECT (SELECT COUNT(*) FROM schedules WHERE kind = 'digest_report' "
        "AND status = 'pending') + (SELECT COUNT(*) FROM outbox WHERE status = 'pending')"
    )
    async with running_bot(api, tmp_path, clock=clock) as runtime:  # a restart
        runtime.scheduler.wake()
        await eventually(lambda: records.query(unfinished) == [(0,)])

    assert files_of(api, ADA) == [national]  # once
    assert sorted(files_of(api, KIT)) == [national, "yousaid-digest-wales-2026-W47.html"]
    assert files_of(api, MIA) == ["yousaid-digest-london-2026-W47.html"]
    sam_gets = ["yousaid-digest-london-2026-W47.html"] if released_by == "staff asking" else []
    assert files_of(api, SAM) == sam_gets  # his own /digest only: never the national view
    photos = [m for m in api.messages(ADA.chat_id) if m.kind == "photo"]
    assert len(photos) == 1
    caption = photos[0].caption or ""
    assert caption.startswith(
        "The YouSaid digest for England and Wales, 16–22 Nov 2026 (week 2026-W47)."
    )
    assert "Check-ins sent: " in caption and "Themes with an update: " in caption
    keys = records.query("SELECT key FROM schedules WHERE kind = ?", digests_module.REPORT_JOB)
    weekly = sorted(str(k) for (k,) in keys if str(k).endswith(("managers", "admins")))
    assert weekly == [
        "digest_report:london:2026-W47:managers",
        "digest_report:national:2026-W47:admins",
        "digest_report:wales:2026-W47:managers",
    ]


async def test_staff_asking_get_the_digest_of_every_region_of_theirs(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Staff of four regions who send /digest get all four reports (it was the first three,
    in alphabetical order, and nothing said about the fourth)."""
    clock = ManualClock(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))  # a Wednesday
    regions = ["london", "north-east", "south-west", "wales"]
    api.add_chat(SAM)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        who = runtime.service.pseudonym_of(SAM.user_id)
        async with runtime.db.transaction() as conn:
            await People(conn).touch(who, SAM.chat_id, "en", clock.now_ms())
            for region in regions:
                await StaffRoles(conn).grant(who, "staff", region, False, "cli", 0)
        await Chat(api, SAM).say("/digest")
        async with asyncio.timeout(40):  # four charts drawn one after another
            while len(files_of(api, SAM)) < len(regions):  # noqa: ASYNC110 - the server's records
                await asyncio.sleep(0.05)
    assert sorted(files_of(api, SAM)) == [
        f"yousaid-digest-{region}-2026-W47.html" for region in regions
    ]


@pytest.mark.parametrize("failing", ["a while", "for good", "again and again"])
async def test_a_monday_job_given_up_is_caught_up_by_the_hourly_check(
    api: LocalBotApi, tmp_path: Path, failing: str
) -> None:
    """The Monday job fails while the bot runs. While it is retrying, the hourly check
    leaves it alone (nothing runs twice). Given up after its retries, it used to end the
    weekly chain: that week was never released nor sent, and no later Monday was
    scheduled until a restart. The hourly check runs it again within the hour (managers
    get the week's report, once) and keeps next Monday's job scheduled; a job that keeps
    failing when run again is run again three times, then left."""
    clock = ManualClock(datetime(2026, 11, 22, 20, 0, tzinfo=UTC))  # Sunday evening
    due = int(datetime(2026, 11, 23, 8, 0, tzinfo=UTC).timestamp() * 1000)
    hour = 3_600_000
    base = f"{digests_module.DIGEST_JOB}:{due}"
    next_monday = f"{digests_module.DIGEST_JOB}:{next_monday_morning(due, 'Europe/London')}"
    api.add_chat(MIA)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await _grant(runtime, MIA, "manager", clock.now_ms())
        records = Records(runtime.settings)
        failures: list[str] = []

        async def fails(job: Job, now: int) -> PreparedRelease:
            if (
                (failing == "a while" and len(failures) < 2)
                or (failing == "for good" and job.key == base)
                or failing == "again and again"
            ):
                failures.append(job.key)
                raise ConnectionError("an invented failure of the Monday job")
            return await runtime.digests.prepare_weekly(job, now)

        runtime.scheduler.register_prepared(
            digests_module.DIGEST_JOB, fails, runtime.digests.on_weekly
        )

        def status(key: str) -> str | None:
            found = records.query("SELECT status FROM schedules WHERE key = ?", key)
            return str(found[0][0]) if found else None

        def check_done(at: int) -> Callable[[], bool]:
            return lambda: status(f"{digests_module.DIGEST_CHECK_JOB}:{at // hour}") == "done"

        async def at(moment: int, condition: Callable[[], bool]) -> None:
            clock.set(datetime.fromtimestamp(moment / 1000, UTC))
            runtime.scheduler.wake()
            await eventually(condition)

        await at(due, lambda: len(failures) == 1)
        # 09:00: the retry (due 08:01) fails again, then the check finds the job pending
        await at(due + hour, check_done(due + hour))
        assert failures == [base, base] and status(f"{base}:again:1") is None
        if failing == "again and again":
            await eventually(
                as_time_goes_by(clock, runtime, lambda: status(f"{base}:again:3") == "failed")
            )
        else:
            await eventually(as_time_goes_by(clock, runtime, lambda: len(documents(api)) == 1))
        later = clock.now_ms() + 3 * hour  # more checks: nothing more
        await at(later, check_done(later))
        await asyncio.sleep(0.5)
    sent = [] if failing == "again and again" else ["yousaid-digest-london-2026-W47.html"]
    assert documents(api) == sent
    runs_again = records.query(
        "SELECT key, status FROM schedules WHERE key LIKE ? ORDER BY id", f"{base}:%"
    )
    if failing == "a while":
        assert runs_again == []  # the job's own retry did it
    elif failing == "for good":
        assert runs_again == [(f"{base}:again:1", "done")]
    else:
        assert runs_again == [(f"{base}:again:{n}", "failed") for n in (1, 2, 3)]
    assert status(base) == ("done" if failing == "a while" else "failed")
    weeks = records.query("SELECT COUNT(*) FROM published_digests WHERE week = '2026-W47'")
    assert weeks == [(0 if failing == "again and again" else 13,)]
    assert status(next_monday) == "pending"  # the chain goes on


async def test_a_week_whose_job_was_never_made_after_a_failure_is_caught_up_at_start(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """A Monday job given up just before the bot stopped: the next Monday's job was never
    made. At the next start the last complete week is released and sent all the same."""
    clock = ManualClock(datetime(2026, 11, 15, 20, 0, tzinfo=UTC))  # Sunday evening
    api.add_chat(MIA)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await _grant(runtime, MIA, "manager", clock.now_ms())
    records = Records(runtime.settings)
    given_up = f"{digests_module.DIGEST_JOB}:{next_monday_morning(clock.now_ms(), 'Europe/London')}"
    records.query("UPDATE schedules SET status = 'failed', attempts = 5 WHERE key = ?", given_up)

    clock.set(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))  # down all Monday the 23rd
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        runtime.scheduler.wake()
        await wait_for_documents(api, 1)
    assert documents(api) == ["yousaid-digest-london-2026-W47.html"]
    weeks = records.query("SELECT week, COUNT(*) FROM published_digests GROUP BY week")
    assert weeks == [("2026-W47", 13)]  # the week given up stays given up
