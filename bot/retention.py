"""Retention: what people told us is not kept for ever.

Every day (and by hand with `python -m bot retention run`) the bot deletes:
- free-text answers older than RETENTION_MONTHS (default 24), with their themes and quotes;
- check-ins (and their scores) closed more than RETENTION_MONTHS ago: a check-in closes
  after all its answers were given, so its answers have gone first;
- safeguarding requests older than SAFEGUARDING_RETENTION_DAYS (default 90): the link
  between a person and what they disclosed. The audit log keeps that an alert happened and
  who acted (under the SG- reference, not the person), for any later review.

Kept: published digests (each exactly as released; later digests are checked against them,
so deleting the rows behind an old week changes no figure anyone has seen), the anonymous
check-in counters, the consent ledger and the audit log (append-only records), and
broadcasts (counts and a subject, nothing about any person). The digest reads raw rows for
its week and the eleven before it, and a check-in round looks back up to a year, so the
period can never be set shorter than 13 months.
"""

from __future__ import annotations

import calendar
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import aiosqlite

from storage.database import Database
from storage.queues import Job, Schedules
from storage.staff import AuditLog

log = logging.getLogger(__name__)

RETENTION_JOB = "retention"
RETENTION_WAL_JOB = "retention_wal"  # the checkpoint after a run, outside its transaction
_DAY_MS = 86_400_000
_RUN_AT_MS = 3 * 3_600_000 + 30 * 60_000  # 03:30 UTC, a quiet hour, after housekeeping
_BATCH = 500  # rows per table per transaction: the write lock is held briefly


@dataclass(frozen=True)
class RetentionRules:
    answer_months: int
    safeguarding_days: int

    def cutoffs(self, now: int) -> tuple[int, int]:
        """(answers and check-ins before, safeguarding requests before), in ms."""
        return months_before(now, self.answer_months), now - self.safeguarding_days * _DAY_MS


def months_before(now: int, months: int) -> int:
    """The same moment `months` calendar months earlier (the 31st becomes the month's last
    day), in UTC milliseconds."""
    moment = datetime.fromtimestamp(now / 1000, UTC)
    year, month = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return int(moment.replace(year=year, month=month + 1, day=day).timestamp() * 1000)


async def delete_expired(
    conn: aiosqlite.Connection, rules: RetentionRules, now: int, limit: int = _BATCH
) -> dict[str, int]:
    """Delete up to `limit` expired rows of each kind; returns how many went, by table."""
    answers_before, safeguarding_before = rules.cutoffs(now)
    deleted: dict[str, int] = {}
    cursor = await conn.execute(
        "DELETE FROM answers WHERE id IN (SELECT id FROM answers WHERE created_at < ? "
        "ORDER BY id LIMIT ?)",  # their answer_themes go with them (ON DELETE CASCADE)
        (answers_before, limit),
    )
    deleted["answers"] = cursor.rowcount
    old = (
        "SELECT id FROM checkins WHERE closed_at IS NOT NULL AND closed_at < :before "
        "ORDER BY id LIMIT :limit"
    )
    params = {"before": answers_before, "limit": limit}
    async with conn.execute(old, params) as found:
        ids = [int(r[0]) for r in await found.fetchall()]
    if ids:
        marks = ",".join("?" * len(ids))
        # An answer given after the cutoff cannot belong to a check-in closed before it,
        # but a link is never left dangling.
        unlink = f"UPDATE answers SET checkin_id = NULL WHERE checkin_id IN ({marks})"
        await conn.execute(unlink, ids)
        await conn.execute(f"DELETE FROM checkin_scores WHERE checkin_id IN ({marks})", ids)
        cursor = await conn.execute(f"DELETE FROM checkins WHERE id IN ({marks})", ids)
    deleted["checkins"] = cursor.rowcount if ids else 0
    cursor = await conn.execute(
        "DELETE FROM safeguarding_requests WHERE id IN (SELECT id FROM safeguarding_requests "
        "WHERE created_at < ? ORDER BY id LIMIT ?)",
        (safeguarding_before, limit),
    )
    deleted["safeguarding_requests"] = cursor.rowcount
    if any(deleted.values()):
        details = {table: str(count) for table, count in deleted.items()}
        await AuditLog(conn).record("system", "retention.deleted", "retention", details, now)
    return deleted


async def run_retention(db: Database, rules: RetentionRules, now: int) -> dict[str, int]:
    """Delete everything expired, in short transactions, then empty the WAL so that no copy
    of a deleted row's page stays there (secure_delete zeroes them in the database file)."""
    total: dict[str, int] = {}
    while True:
        async with db.transaction() as conn:
            deleted = await delete_expired(conn, rules, now)
        for table, count in deleted.items():
            total[table] = total.get(table, 0) + count
        if max(deleted.values()) < _BATCH:
            break
    await db.checkpoint()
    return total


class RetentionJob:
    """The daily scheduled run (a stored job: a day missed while the bot was down runs at
    the next start)."""

    def __init__(self, db: Database, rules: RetentionRules) -> None:
        self._db = db
        self._rules = rules

    async def ensure_scheduled(self, now: int) -> None:
        """At start: today's run (idempotent by key), which schedules tomorrow's."""
        async with self._db.transaction() as conn:
            await Schedules(conn).add(RETENTION_JOB, _key(now // _DAY_MS), now, {}, now)

    async def on_due(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        deleted = await delete_expired(conn, self._rules, now)
        schedules = Schedules(conn)
        if max(deleted.values()) >= _BATCH:  # more left: carry on in a moment
            await schedules.add(RETENTION_JOB, f"{RETENTION_JOB}:more:{now}", now + 1000, {}, now)
        tomorrow = (now // _DAY_MS + 1) * _DAY_MS + _RUN_AT_MS
        await schedules.add(RETENTION_JOB, _key(tomorrow // _DAY_MS), tomorrow, {}, now)
        # Once this has committed: empty the WAL, or copies of the deleted rows' pages (a
        # safeguarding request's category, say) would stay in it for a while. Only when
        # something was deleted: a checkpoint holds up every writer while it waits for
        # readers, and the day's run is due at every start.
        if any(deleted.values()):
            await schedules.add(RETENTION_WAL_JOB, f"{RETENTION_WAL_JOB}:{now}", now, {}, now)
        log.info(
            "retention: deleted %s",
            ", ".join(f"{count} {table}" for table, count in deleted.items()),
        )

    async def empty_wal(self, job: Job, now: int) -> None:
        """Outside any transaction (a prepared job): the checkpoint after a run."""
        await self._db.checkpoint()

    async def after_empty_wal(
        self, conn: aiosqlite.Connection, job: Job, now: int, done: None
    ) -> None:
        """Nothing left to do in the job's transaction."""


def _key(day: int) -> str:
    return f"{RETENTION_JOB}:{day}"
