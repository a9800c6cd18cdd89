"""Jobs due at a time, kept in the database: reminders, nudges, digests, housekeeping.

A job and what it does are committed in one transaction, so a restart neither loses a job
nor runs it twice. The scheduler reads the application clock, so tests move time instead
of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite

from bot import error_reporting
from storage.clock import Clock
from storage.database import Database
from storage.queues import HEARTBEAT_KEY, Inbox, Job, Meta, Outbox, Schedules

log = logging.getLogger(__name__)

JobHandler = Callable[[aiosqlite.Connection, Job, int], Awaitable[None]]
# Slow work for a job (e.g. drawing a chart), done before its transaction so the database is
# not held meanwhile; its result is handed to the job's handler.
JobPreparer = Callable[[Job, int], Awaitable[Any]]
PreparedHandler = Callable[[aiosqlite.Connection, Job, int, Any], Awaitable[None]]

HOUSEKEEPING = "housekeeping"
PRUNE_BATCH = 5_000  # rows of each queue forgotten per housekeeping transaction (<= 45 ms)
JOB_PRUNE_BATCH = 2_000  # finished jobs forgotten per housekeeping transaction (<= 60 ms)
_DAY_MS = 86_400_000
# Telegram redelivers an unconfirmed update for 24 hours; keep handled ids (and finished
# outbox rows) a week, then forget them.
_INBOX_MEMORY_MS = 7 * _DAY_MS
# Finished jobs are kept a month (what ran lately, for whoever looks into a problem), then
# forgotten: two per check-in and one per progress tick of a broadcast, millions a year at
# national scale. Failed jobs stay until someone deals with them. Keys carry ids never
# reused or a time already passed, so a month-old key comes back in one case only: a
# check-in round stuck between its parts that long is scheduled again by the hourly check
# (`CheckinService.on_rounds_check`), which asks whoever is still due, as resuming it would.
_JOB_MEMORY_MS = 30 * _DAY_MS
# A failing job is tried again after 1, 2, 4, 8 minutes, then given up (status 'failed',
# reported), unless its kind keeps trying (see `register`): then every half hour at most.
_GIVE_UP_AFTER = 5
_KEEP_TRYING_EVERY_MS = 30 * 60_000


class Scheduler:
    """Runs due jobs by kind; each kind has one handler."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        max_sleep_s: float = 30.0,
        after_jobs: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        # Called after jobs ran (e.g. to wake the sender for the messages they queued).
        self._after_jobs = after_jobs
        self._handlers: dict[str, JobHandler] = {HOUSEKEEPING: housekeeping}
        self._preparers: dict[str, tuple[JobPreparer, PreparedHandler]] = {}
        self._quick: set[str] = set()  # kinds whose transaction runs inline (see register)
        self._keep_trying = {HOUSEKEEPING}  # kinds never given up (see register)
        self._wake = asyncio.Event()
        self._stopping = False
        self._max_sleep_s = max_sleep_s

    def register(
        self, kind: str, handler: JobHandler, quick: bool = False, keep_trying: bool = False
    ) -> None:
        """keep_trying: a failing job of this kind is never given up (a safety alert's
        follow-up, the daily retention): it is tried again every half hour at most, for as
        long as it fails, and reported to Sentry.

        quick: the job's transaction runs its statements on the event loop's thread
        (`Database.transaction(quick=True)`), for a part of a job queued in parts: a few
        hundred people's worth of small indexed statements. In the worker thread, each of
        its ~2,400 statements was a round trip to the thread, and a part held the database
        lock for up to 0.39 s (a check-in round of 20,000 people); inline, up to 0.15 s,
        while the event loop waits for it (bench/FINDINGS.md, fifth round; since the sixth,
        with a part's rows written in a few multi-row statements, up to ~0.09 s). Most of
        what the loop would do meanwhile needs the lock anyway."""
        self._handlers[kind] = handler
        if quick:
            self._quick.add(kind)
        else:
            self._quick.discard(kind)
        if keep_trying:
            self._keep_trying.add(kind)
        else:
            self._keep_trying.discard(kind)

    def register_prepared(self, kind: str, prepare: JobPreparer, handler: PreparedHandler) -> None:
        """A job whose slow part runs first, outside any transaction (it may run again if
        the process stops before the job's transaction commits)."""
        self._preparers[kind] = (prepare, handler)

    def wake(self) -> None:
        self._wake.set()

    async def ensure_housekeeping(self) -> None:
        """Make sure tomorrow's housekeeping is scheduled (idempotent by key)."""
        now = self._clock.now_ms()
        day = now // _DAY_MS
        async with self._db.transaction() as conn:
            await Schedules(conn).add(HOUSEKEEPING, f"{HOUSEKEEPING}:{day}", now, {}, now)

    async def run_due(self) -> int:
        """Run every job due now; returns how many ran."""
        now = self._clock.now_ms()
        async with self._db.read() as conn:
            jobs = await Schedules(conn).due(now)
        ran = 0
        for job in jobs:
            try:
                handler = await self._handler_for(job, now)
                async with self._db.transaction(quick=job.kind in self._quick) as conn:
                    if handler is None:
                        raise LookupError(f"no handler for job kind {job.kind!r}")
                    await handler(conn, job, now)
                    await Schedules(conn).mark_done(job.id, now)
                ran += 1
            except Exception as exc:
                log.exception("scheduled job %s (%s) failed", job.id, job.kind)
                keep_trying = job.kind in self._keep_trying
                delay = 60_000 * 2 ** min(job.attempts, 10)
                if keep_trying:
                    delay = min(delay, _KEEP_TRYING_EVERY_MS)
                tries = job.attempts + 1
                # Reported on the first failure, and when given up (or, for a job that
                # keeps trying, when it would have been): not once a half hour for ever.
                if tries in (1, _GIVE_UP_AFTER):
                    error_reporting.report(exc)
                async with self._db.transaction() as conn:
                    await Schedules(conn).record_failure(
                        job.id,
                        now + delay,
                        give_up_after=None if keep_trying else _GIVE_UP_AFTER,
                        now=now,
                    )
        if ran and self._after_jobs is not None:
            self._after_jobs()
        return ran

    async def _handler_for(self, job: Job, now: int) -> JobHandler | None:
        """The job's handler; for a prepared job, its slow part is done here, first."""
        if job.kind not in self._preparers:
            return self._handlers.get(job.kind)
        prepare, handler = self._preparers[job.kind]
        prepared = await prepare(job, now)

        async def with_prepared(conn: aiosqlite.Connection, job: Job, now: int) -> None:
            await handler(conn, job, now, prepared)

        return with_prepared

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self._heartbeat()
                await self.run_due()
                async with self._db.read() as conn:
                    next_due = await Schedules(conn).next_due_time()
            except sqlite3.OperationalError as exc:
                # Another writer held the database past busy_timeout, or the disk is full:
                # every job is still in the database, so wait and look again, as the poller
                # does, rather than stop the bot.
                failures += 1
                if failures == 1:
                    error_reporting.report(exc)
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning(
                    "the scheduler could not reach the database (%s); again in %.1f s",
                    type(exc).__name__,
                    delay,
                )
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                continue
            failures = 0
            sleep = self._max_sleep_s
            if next_due is not None:
                sleep = min(sleep, max(0.05, (next_due - self._clock.now_ms()) / 1000))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=sleep)

    async def _heartbeat(self) -> None:
        """Note that the bot is alive (event loop turning, database writable) for
        `python -m bot health`. A receiving task that dies stops the whole process instead
        (see runtime.supervise), so this one beat covers polling and webhook mode alike."""
        async with self._db.transaction() as conn:
            await Meta(conn).set(HEARTBEAT_KEY, str(self._clock.now_ms()))

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()


async def housekeeping(conn: aiosqlite.Connection, job: Job, now: int) -> None:
    """Daily: forget old handled update ids and sent messages, and schedule tomorrow's run.
    A day's rows are hundreds of thousands at national scale: each run forgets at most
    PRUNE_BATCH of each, and carries on a second later in a new transaction, so the one
    database lock is never held for long."""
    inbox = await Inbox(conn).prune(now - _INBOX_MEMORY_MS, PRUNE_BATCH)
    outbox = await Outbox(conn).prune(now - _INBOX_MEMORY_MS, PRUNE_BATCH)
    schedules = Schedules(conn)
    jobs = await schedules.prune(now - _JOB_MEMORY_MS, JOB_PRUNE_BATCH)
    if max(inbox, outbox) >= PRUNE_BATCH or jobs >= JOB_PRUNE_BATCH:  # more: carry on soon
        await schedules.add(HOUSEKEEPING, f"{HOUSEKEEPING}:more:{now}", now + 1000, {}, now)
    tomorrow = (now // _DAY_MS + 1) * _DAY_MS + 3 * 3_600_000  # 03:00 UTC, a quiet hour
    await schedules.add(HOUSEKEEPING, f"{HOUSEKEEPING}:{tomorrow // _DAY_MS}", tomorrow, {}, now)
    log.info(
        "housekeeping: forgot %d finished inbox and outbox rows and %d finished jobs",
        inbox + outbox,
        jobs,
    )
