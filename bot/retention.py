"""Retention: what people told us is not kept for ever.

Every day (and by hand with `python -m bot retention run`) the bot deletes:
- free-text answers older than RETENTION_MONTHS (default 24), with their themes and quotes;
- check-ins (and their scores) closed more than RETENTION_MONTHS ago: a check-in closes
  after all its answers were given, so its answers have gone first;
- who was sent each update (and how they reacted), for updates published more than
  RETENTION_MONTHS ago: an update goes to those who raised its themes, so the row says
  what they raised (the update itself, staff's words, stays);
- who was invited to each panel, and what they answered, for panels that began more than
  RETENTION_MONTHS ago (the panel itself stays);
- safeguarding requests older than SAFEGUARDING_RETENTION_DAYS (default 90): the link
  between a person and what they disclosed. The audit log keeps that an alert happened and
  who acted (under the SG- reference, not the person), for any later review;
- everyone with no consent granted (their latest decision on every purpose a no, or none
  made: they declined everything, sent /stop, or never got past the notice) who has not
  written to the bot for RETENTION_MONTHS (`people.last_seen_at`, migration 0021): erased
  as /delete erases (`storage.erasure.erase_person`: their row, chat id, ledger, dialogue,
  invitations, deliveries; messages emptied; a tombstone says when). Being in the table at all says
  "on probation", so nobody is kept for ever only because they once wrote. Someone
  who still has a consent granted is kept however long they are silent: they asked for
  messages (invitations, updates) and keep getting them until they withdraw, and then
  the period runs from their last message. But not someone who blocked the bot (no
  message can reach them): silent for the period, they are erased as the others. Staff
  (any row in staff_roles) are never erased this way: their audit trail names them. A
  withdrawal already gave back any panel place, so nothing is withdrawn first, unlike
  /delete (nor for someone who blocked the bot: silent for the period, any panel they had
  a place at is long over).

Kept: published digests (each exactly as released; later digests are checked against them,
so deleting the rows behind an old week changes no figure anyone has seen), the anonymous
check-in counters, the consent ledger (but of those erased) and the audit log (append-only
records; retention's entries are counts), and
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
from storage.erasure import erase_person
from storage.people import FIRST_SEEN, SeenPosition, silent_without_consent
from storage.queues import Job, Schedules
from storage.staff import AuditLog

log = logging.getLogger(__name__)

RETENTION_JOB = "retention"
RETENTION_WAL_JOB = "retention_wal"  # the checkpoint after a run, outside its transaction
_DAY_MS = 86_400_000
_RUN_AT_MS = 3 * 3_600_000 + 30 * 60_000  # 03:30 UTC, a quiet hour, after housekeeping
_BATCH = 500  # rows per table per transaction: the write lock is held briefly
# People looked at per transaction (a few index probes each), and at most erased: an
# erasure is about a dozen indexed statements, each a trip to the database's worker thread
# (bench/jobs.py: a part of a job holds the lock for tens of milliseconds, not seconds).
_PEOPLE_BATCH = 500
_ERASE_BATCH = 50


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


@dataclass(frozen=True)
class Part:
    """What one transaction of a run deleted, by table, and whether there is more."""

    deleted: dict[str, int]
    aged_left: bool  # a kind deleted by age reached its limit: there may be more of it
    people_after: SeenPosition | None  # where the next part looks at people; None: done

    def more(self) -> bool:
        return self.aged_left or self.people_after is not None


async def delete_expired(
    conn: aiosqlite.Connection,
    rules: RetentionRules,
    now: int,
    limit: int = _BATCH,
    people_after: SeenPosition | None = FIRST_SEEN,
) -> Part:
    """Delete up to `limit` expired rows of each kind, and erase the inactive people without
    consent among the next _PEOPLE_BATCH silent since the cutoff (from `people_after`;
    None: that part of the run is done), at most _ERASE_BATCH of them."""
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
    # An update goes only to those who raised its themes: its delivery rows say which
    # themes a person raised, so they go when the answers that raised them would have.
    cursor = await conn.execute(
        "DELETE FROM update_deliveries WHERE rowid IN (SELECT d.rowid FROM update_deliveries d "
        "JOIN updates u ON u.id = d.update_id WHERE u.published_at < ? LIMIT ?)",
        (answers_before, limit),
    )
    deleted["update_deliveries"] = cursor.rowcount
    # Who was invited to a panel and what they answered (their ticket, the help they asked
    # for until it was erased after the day) says they are on probation in its area: gone
    # for panels that began before the cutoff. The panel (staff's words) stays.
    cursor = await conn.execute(
        "DELETE FROM panel_invitations WHERE id IN (SELECT i.id FROM panels p "
        "JOIN panel_invitations i ON i.panel_id = p.id WHERE p.starts_at < ? LIMIT ?)",
        (answers_before, limit),
    )
    deleted["panel_invitations"] = cursor.rowcount
    aged_left = max(deleted.values()) >= limit
    # The same cutoff as answers: silent for RETENTION_MONTHS (never shorter than 13).
    deleted["people"] = 0
    if people_after is not None:
        silent, people_after = await silent_without_consent(
            conn, answers_before, people_after, _PEOPLE_BATCH
        )
        if len(silent) > _ERASE_BATCH:  # the rest next time, from the last one erased
            silent = silent[:_ERASE_BATCH]
            people_after = silent[-1].position
        for person in silent:
            erased = await erase_person(conn, person.pseudonym, person.chat_id, now)
            for table, count in erased.items():
                deleted[table] = deleted.get(table, 0) + count
    if any(deleted.values()):
        details = {table: str(count) for table, count in deleted.items()}
        await AuditLog(conn).record("system", "retention.deleted", "retention", details, now)
    return Part(deleted, aged_left, people_after)


async def run_retention(db: Database, rules: RetentionRules, now: int) -> dict[str, int]:
    """Delete everything expired, in short transactions, then empty the WAL so that no copy
    of a deleted row's page stays there (secure_delete zeroes them in the database file)."""
    total: dict[str, int] = {}
    people_after: SeenPosition | None = FIRST_SEEN
    while True:
        async with db.transaction() as conn:
            part = await delete_expired(conn, rules, now, people_after=people_after)
        for table, count in part.deleted.items():
            total[table] = total.get(table, 0) + count
        people_after = part.people_after
        if not part.more():
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
        # A day's first part starts at the longest-silent person; the next parts go on from
        # where the last stopped (a position, not who: see storage.people.SeenPosition).
        after = job.payload.get("people_after", list(FIRST_SEEN))
        people_after = None if after is None else (int(after[0]), int(after[1]))
        part = await delete_expired(conn, self._rules, now, people_after=people_after)
        deleted = part.deleted
        schedules = Schedules(conn)
        if part.more():  # more left: carry on in a moment
            going_on = {
                "people_after": None if part.people_after is None else list(part.people_after)
            }
            await schedules.add(
                RETENTION_JOB, f"{RETENTION_JOB}:more:{now}", now + 1000, going_on, now
            )
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
