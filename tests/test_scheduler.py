"""Schedules live in the database and read a settable clock: time is moved, never waited."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import pytest

from bot import scheduler as scheduler_module
from bot.scheduler import HOUSEKEEPING, Scheduler
from storage.clock import ManualClock
from storage.database import Database
from storage.queues import Inbox, Job, Meta, Outbox, Schedules

DAY = 86_400


@pytest.fixture()
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(str(tmp_path / "s.db"))
    await database.migrate()
    yield database
    await database.close()


async def count_runs(conn: aiosqlite.Connection, job: Job, now: int) -> None:
    meta = Meta(conn)
    await meta.set("runs", str(int(await meta.get("runs") or 0) + 1))


async def runs(db: Database) -> int:
    async with db.read() as conn:
        return int(await Meta(conn).get("runs") or 0)


async def test_a_job_runs_once_when_due_and_survives_a_restart(db: Database) -> None:
    clock = ManualClock(datetime(2026, 11, 23, 7, 0, tzinfo=UTC))
    scheduler = Scheduler(db, clock)
    scheduler.register("reminder", count_runs)
    due = clock.now_ms() + 3600_000
    async with db.transaction() as conn:
        assert await Schedules(conn).add("reminder", "reminder:panel-1", due, {}, clock.now_ms())
    assert await scheduler.run_due() == 0
    clock.advance(3599)
    assert await scheduler.run_due() == 0
    clock.advance(1)
    assert await scheduler.run_due() == 1
    assert await runs(db) == 1
    restarted = Scheduler(db, clock)  # a new process: the job is not repeated
    restarted.register("reminder", count_runs)
    clock.advance(DAY)
    assert await restarted.run_due() == 0
    assert await runs(db) == 1


async def test_a_job_missed_while_down_runs_at_the_next_start(db: Database) -> None:
    clock = ManualClock(datetime(2026, 11, 23, 7, 0, tzinfo=UTC))
    async with db.transaction() as conn:
        await Schedules(conn).add("reminder", "reminder:x", clock.now_ms() + 60_000, {}, 0)
    clock.advance(5 * DAY)  # the bot was down when it was due
    scheduler = Scheduler(db, clock)
    scheduler.register("reminder", count_runs)
    assert await scheduler.run_due() == 1
    assert await runs(db) == 1


@pytest.mark.parametrize("quick", [False, True])
async def test_a_quick_job_runs_its_statements_on_the_event_loop_s_thread(
    db: Database, quick: bool
) -> None:
    """A part of a job queued in parts is registered quick: hundreds of small statements,
    each a round trip to the database's worker thread otherwise (bench/FINDINGS.md)."""
    clock = ManualClock()
    threads: set[int] = set()

    async def part(conn: aiosqlite.Connection, job: Job, now: int) -> None:
        await conn.set_trace_callback(lambda _: threads.add(threading.get_ident()))
        await count_runs(conn, job, now)
        await conn.set_trace_callback(None)

    scheduler = Scheduler(db, clock)
    scheduler.register("part", part, quick=quick)
    async with db.transaction() as conn:
        await Schedules(conn).add("part", "part:1", clock.now_ms(), {}, 0)
    assert await scheduler.run_due() == 1
    assert await runs(db) == 1
    assert (threads == {threading.get_ident()}) is quick and len(threads) == 1


@pytest.mark.parametrize("quick", [False, True])
async def test_a_failing_job_is_retried_later_then_given_up(db: Database, quick: bool) -> None:
    clock = ManualClock()

    async def broken(conn: aiosqlite.Connection, job: Job, now: int) -> None:
        await count_runs(conn, job, now)  # rolled back with the failure
        raise RuntimeError("no route to the digest service")

    scheduler = Scheduler(db, clock)
    scheduler.register("digest", broken, quick=quick)
    async with db.transaction() as conn:
        await Schedules(conn).add("digest", "digest:london:2026-W48", clock.now_ms(), {}, 0)
    for _ in range(5):
        assert await scheduler.run_due() == 0
        clock.advance(DAY)
    async with db.read() as conn, conn.execute("SELECT status, attempts FROM schedules") as cur:
        assert [tuple(r) for r in await cur.fetchall()] == [("failed", 5)]
    assert await runs(db) == 0


async def test_a_job_that_keeps_trying_is_never_given_up_and_is_reported_twice(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A safety follow-up that fails (the disk full for an afternoon) is tried again at
    most every half hour for as long as it fails, then runs: never left 'failed' with
    nobody told. Sentry hears of it at the first failure and at the fifth, not every time."""
    clock = ManualClock()
    reported: list[BaseException] = []
    monkeypatch.setattr(scheduler_module.error_reporting, "report", reported.append)
    failing = {"left": 9}

    async def follow_up(conn: aiosqlite.Connection, job: Job, now: int) -> None:
        if failing["left"]:
            failing["left"] -= 1
            raise OSError("database or disk is full")
        await count_runs(conn, job, now)

    scheduler = Scheduler(db, clock)
    scheduler.register("safety_follow_up", follow_up, keep_trying=True)
    async with db.transaction() as conn:
        await Schedules(conn).add("safety_follow_up", "follow_up:1", clock.now_ms(), {}, 0)
    for _ in range(9):
        assert await scheduler.run_due() == 0
        async with db.read() as conn:
            due = await Schedules(conn).next_due_time()
        assert due is not None and due - clock.now_ms() <= 30 * 60_000  # never given up
        clock.advance(30 * 60)
    assert await scheduler.run_due() == 1 and await runs(db) == 1
    assert len(reported) == 2


async def test_the_scheduler_waits_out_a_locked_database_instead_of_stopping(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer holding the database past busy_timeout (a backup, an admin command)
    made the scheduler's task end, and with it the bot. It now waits and goes on."""
    monkeypatch.setattr(scheduler_module.error_reporting, "report", lambda error: None)
    clock = ManualClock()
    scheduler = Scheduler(db, clock, max_sleep_s=0.05)
    scheduler.register("digest", count_runs)
    locked = {"times": 2}
    beat = scheduler._heartbeat

    async def heartbeat() -> None:
        if locked["times"]:
            locked["times"] -= 1
            raise sqlite3.OperationalError("database is locked")
        await beat()

    monkeypatch.setattr(scheduler, "_heartbeat", heartbeat)
    async with db.transaction() as conn:
        await Schedules(conn).add("digest", "digest:london:2026-W48", clock.now_ms(), {}, 0)
    task = asyncio.create_task(scheduler.run())
    try:
        async with asyncio.timeout(10):
            while await runs(db) == 0:
                assert not task.done(), task
                await asyncio.sleep(0.05)
    finally:
        scheduler.stop()
        scheduler.wake()
        await asyncio.wait_for(task, 5)
    assert locked["times"] == 0


async def test_housekeeping_forgets_old_update_ids_daily(db: Database) -> None:
    clock = ManualClock(datetime(2026, 11, 23, 7, 0, tzinfo=UTC))
    async with db.transaction() as conn:
        inbox = Inbox(conn)
        await inbox.add(1, b"sealed-1", clock.now_ms())
        await inbox.mark_handled(1, clock.now_ms())
        await inbox.add(2, b"sealed-2", clock.now_ms())  # pending: never forgotten
    scheduler = Scheduler(db, clock)
    await scheduler.ensure_housekeeping()
    await scheduler.ensure_housekeeping()  # idempotent
    assert await scheduler.run_due() == 1
    clock.advance(8 * DAY)
    assert await scheduler.run_due() == 1  # tomorrow's run was scheduled by today's
    async with db.read() as conn:
        assert await Inbox(conn).status(1) is None
        assert await Inbox(conn).status(2) == "pending"
        jobs = await Schedules(conn).due(clock.now_ms() + 2 * DAY * 1000)
    assert [j.kind for j in jobs] == [HOUSEKEEPING]


async def test_housekeeping_forgets_a_large_day_in_short_transactions(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day's finished rows are hundreds of thousands at national scale: each run forgets
    at most PRUNE_BATCH of each queue and carries on a second later, until none is left;
    pending rows are never forgotten."""
    monkeypatch.setattr(scheduler_module, "PRUNE_BATCH", 3)
    clock = ManualClock(datetime(2026, 11, 23, 7, 0, tzinfo=UTC))
    async with db.transaction() as conn:
        inbox, outbox = Inbox(conn), Outbox(conn)
        for update_id in range(1, 8):
            await inbox.add(update_id, b"sealed", clock.now_ms())
            await inbox.mark_handled(update_id, clock.now_ms())
            sent = await outbox.enqueue(700000001, 1, "message", {"text": "-"}, clock.now_ms())
            await outbox.mark_sent(sent, clock.now_ms(), 100 + update_id)
        await inbox.add(8, b"sealed", clock.now_ms())  # pending: never forgotten
        await outbox.enqueue(700000001, 1, "message", {"text": "-"}, clock.now_ms())
    clock.advance(8 * DAY)
    scheduler = Scheduler(db, clock)
    await scheduler.ensure_housekeeping()

    async def left() -> tuple[int, int]:
        async with db.read() as conn:
            ((inbox_rows,),) = await conn.execute_fetchall("SELECT COUNT(*) FROM inbox")
            ((outbox_rows,),) = await conn.execute_fetchall("SELECT COUNT(*) FROM outbox")
        return inbox_rows, outbox_rows

    for expected in [(5, 5), (2, 2), (1, 1)]:
        assert await scheduler.run_due() == 1
        assert await left() == expected
        clock.advance(1)
    assert await scheduler.run_due() == 0  # all forgotten: nothing more until tomorrow


async def test_housekeeping_forgets_jobs_done_over_a_month_ago(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two jobs per check-in, one per broadcast progress tick: millions a year at national
    scale. Jobs done more than 30 days ago go, in batches; recent, pending and failed ones
    stay."""
    monkeypatch.setattr(scheduler_module, "JOB_PRUNE_BATCH", 3)
    clock = ManualClock(datetime(2026, 11, 23, 7, 0, tzinfo=UTC))
    scheduler = Scheduler(db, clock)
    scheduler.register("nudge", count_runs)

    async def broken(conn: aiosqlite.Connection, job: Job, now: int) -> None:
        raise RuntimeError("a job that keeps failing")

    scheduler.register("broken", broken)
    async with db.transaction() as conn:
        schedules = Schedules(conn)
        for n in range(7):
            await schedules.add("nudge", f"nudge:{n}", clock.now_ms(), {}, clock.now_ms())
        await schedules.add("broken", "broken:1", clock.now_ms(), {}, clock.now_ms())
    for _ in range(5):  # the nudges run; the broken job is given up after 5 tries
        await scheduler.run_due()
        clock.advance(DAY)
    async with db.transaction() as conn:
        now = clock.now_ms()
        await Schedules(conn).add("nudge", "nudge:recent", now + 29 * DAY * 1000, {}, now)
        await Schedules(conn).add("nudge", "nudge:later", now + 60 * DAY * 1000, {}, now)
    clock.advance(30 * DAY)  # 35 days after the nudges ran, 31 after the last failure
    await scheduler.ensure_housekeeping()

    async def kept() -> list[tuple[str, str]]:
        async with db.read() as conn:
            rows = await conn.execute_fetchall(
                "SELECT key, status FROM schedules WHERE kind <> 'housekeeping' ORDER BY key"
            )
        return [(str(r[0]), str(r[1])) for r in rows]

    assert await scheduler.run_due() == 2  # nudge:recent, and housekeeping: forgot 3
    assert len(await kept()) == 10 - 3
    clock.advance(1)
    assert await scheduler.run_due() == 1  # 3 more
    clock.advance(1)
    assert await scheduler.run_due() == 1  # the last 1
    assert await kept() == [
        ("broken:1", "failed"),
        ("nudge:later", "pending"),
        ("nudge:recent", "done"),
    ]
    assert await runs(db) == 8
