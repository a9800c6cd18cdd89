"""Feedback check-ins: four 1-5 questions, one per procedural-justice principle, each of
which may be skipped, plus one optional free-text answer (kept encrypted in `answers`).

A check-in moves sent -> started -> completed, or to expired from either open state. Each
step is a conditional UPDATE, so a button tapped twice or a job run twice after a crash
changes nothing the second time, and the anonymous digest counters (checkin_counts) are
added to exactly once per step. The counters hold no pseudonym: they survive a person being
forgotten, while everything that names them here is deleted.

Every method runs inside the caller's transaction (Database.transaction, BEGIN IMMEDIATE) and
never commits: a check-in, its counters and the message that sends it are written together or
not at all.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import aiosqlite

from storage.database import Row

# One question per procedural-justice principle, in the order they are asked.
PRINCIPLES: tuple[str, ...] = ("voice", "respect", "neutrality", "trust")
SOURCES: tuple[str, ...] = ("asked", "scheduled")
STATUSES: tuple[str, ...] = ("sent", "started", "completed", "expired")
THEME_SOURCES: tuple[str, ...] = ("keywords", "staff")

# The consent a check-in needs.
FEEDBACK = "feedback"


class CheckinAlreadyOpen(Exception):
    """The person already has a check-in that is sent or started: resume or expire it first.
    Two open at once would leave answers and the free text without one check-in to go to."""


@dataclass(frozen=True)
class Checkin:
    id: int
    pseudonym: str
    token: str
    region: str | None
    locale: str
    week: str
    source: str
    status: str
    sent_at: int
    started_at: int | None
    completed_at: int | None
    nudged_at: int | None
    closed_at: int | None

    @property
    def is_open(self) -> bool:
        return self.status in ("sent", "started")


@dataclass(frozen=True)
class CheckinSchedule:
    region: str
    every_days: int
    next_at: int
    created_by: str
    # the rounds' wall-clock time of day in the service's zone, ms after local midnight;
    # None for a schedule made before it was kept (taken from next_at at its next round)
    local_time_ms: int | None = None


@dataclass(frozen=True)
class CheckinCount:
    """One row of the digest's counters. region is '' for people who had none yet."""

    week: str
    region: str
    locale: str
    sent: int
    started: int
    completed: int


_COLUMNS = (
    "id, pseudonym, token, region, locale, week, source, status, sent_at, started_at, "
    "completed_at, nudged_at, closed_at"
)

# Column names never come from callers: each step has its own fixed statement. Only 'sent'
# may create a row; later steps add to the row their check-in's sending created (an upsert
# would not do: the funnel CHECK is tested on the row to insert, before the conflict).
_COUNT_SENT = (  # (week, region, locale, how many)
    "INSERT INTO checkin_counts (week, region, locale, sent) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (week, region, locale) DO UPDATE SET sent = sent + excluded.sent"
)
_COUNT_LATER = {
    step: (
        f"UPDATE checkin_counts SET {step} = {step} + 1 "
        "WHERE week = ? AND region = ? AND locale = ?"
    )
    for step in ("started", "completed")
}


def _checkin(row: Row) -> Checkin:
    return Checkin(
        row["id"],
        row["pseudonym"],
        row["token"],
        row["region"],
        row["locale"],
        row["week"],
        row["source"],
        row["status"],
        row["sent_at"],
        row["started_at"],
        row["completed_at"],
        row["nudged_at"],
        row["closed_at"],
    )


_SCHEDULE_COLUMNS = "region, every_days, next_at, created_by, local_time_ms"


def _schedule(row: Row) -> CheckinSchedule:
    return CheckinSchedule(row[0], row[1], row[2], row[3], row[4])


def _strings(values: Collection[str], what: str) -> list[str]:
    # A bare string is a sequence of one-letter strings: "housing" would become h, o, u...
    if isinstance(values, str):
        raise TypeError(f"{what} must be a list, not a string")
    return list(dict.fromkeys(values))


class Checkins:
    """The checkins, checkin_scores, checkin_counts, checkin_schedules and answer_themes
    tables."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    # Check-ins

    async def create(
        self,
        pseudonym: str,
        region: str | None,
        locale: str,
        week: str,
        source: str,
        now: int,
    ) -> Checkin:
        """Record a check-in as sent and count it for (week, region or '', locale).

        Raises CheckinAlreadyOpen when the person has one open (the unique index is the
        backstop; checking first keeps the caller's transaction usable either way)."""
        if await self.open_for(pseudonym) is not None:
            raise CheckinAlreadyOpen(pseudonym)
        try:
            (checkin,) = await self._record_sent([(pseudonym, region, locale)], week, source, now)
        except sqlite3.IntegrityError as exc:
            if "checkins.pseudonym" in str(exc):
                raise CheckinAlreadyOpen(pseudonym) from exc
            raise
        return checkin

    async def create_for_round(
        self, people: Sequence[tuple[str, str]], region: str, week: str, now: int
    ) -> list[Checkin]:
        """Check-ins sent by a region's round to (pseudonym, locale) each, in that order,
        and counted, in a few statements (statement by statement, they were most of a
        round part's hold on the database lock). Those given have none open (`due_people`
        and `close_open_sent_by`, in the same transaction); the unique index is the
        backstop, and would fail the whole part. (A part of 200 binds 1,400 values, well
        within SQLite's 32,766.)"""
        return await self._record_sent(
            [(pseudonym, region, locale) for pseudonym, locale in people],
            week,
            source="scheduled",
            now=now,
        )

    async def _record_sent(
        self, people: Sequence[tuple[str, str | None, str]], week: str, source: str, now: int
    ) -> list[Checkin]:
        """Insert a check-in as sent for each (pseudonym, region, locale), in one statement,
        and count them per (week, region or '', locale) in one more; returned in the order
        given."""
        if not people:
            return []
        rows = [
            (pseudonym, secrets.token_hex(8), region, locale, week, source, now)
            for pseudonym, region, locale in people
        ]
        async with self._conn.execute(
            "INSERT INTO checkins (pseudonym, token, region, locale, week, source, sent_at) "
            "VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(rows)) + " "
            f"RETURNING {_COLUMNS}",
            [value for row in rows for value in row],
        ) as cursor:
            # RETURNING promises no order: matched up by person
            made = {c.pseudonym: c for c in map(_checkin, await cursor.fetchall())}
        sent = Counter((region or "", locale) for _, region, locale in people)
        await self._conn.executemany(
            _COUNT_SENT, [(week, region, locale, n) for (region, locale), n in sorted(sent.items())]
        )
        return [made[pseudonym] for pseudonym, _, _ in people]

    # The lookups on every answer use execute_fetchall: one trip to the database thread
    # instead of three (execute, fetch, close) while the update holds the write lock.

    async def get(self, checkin_id: int) -> Checkin | None:
        return await self._one(f"SELECT {_COLUMNS} FROM checkins WHERE id = ?", (checkin_id,))

    async def by_token(self, token: str) -> Checkin | None:
        return await self._one(f"SELECT {_COLUMNS} FROM checkins WHERE token = ?", (token,))

    async def open_for(self, pseudonym: str) -> Checkin | None:
        """The person's check-in still taking answers (sent or started), if any."""
        return await self._one(
            f"SELECT {_COLUMNS} FROM checkins "
            "WHERE pseudonym = ? AND status IN ('sent', 'started') "
            "ORDER BY sent_at DESC, id DESC LIMIT 1",
            (pseudonym,),
        )

    async def _one(self, sql: str, params: tuple[object, ...]) -> Checkin | None:
        rows = list(await self._conn.execute_fetchall(sql, params))
        return _checkin(rows[0]) if rows else None

    async def last_sent_at(self, pseudonym: str) -> int | None:
        """When the person was last sent a check-in, whatever became of it: nobody is asked
        again sooner than their region's interval, even if they ignored the last one."""
        async with self._conn.execute(
            "SELECT MAX(sent_at) FROM checkins WHERE pseudonym = ?", (pseudonym,)
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else None

    async def due_people(
        self, region: str, not_since: int, now: int, limit: int = -1, after: str = ""
    ) -> list[tuple[str, int, str]]:
        """(pseudonym, chat_id, locale) of everyone a round for `region` should go to: in the
        region, reachable, latest decision on 'feedback' a yes, and sent no check-in after
        `not_since`. One sent before that may still be open (not finished at the last round,
        and not yet closed by its expiry, due at about the same moment): the round replaces
        it (`close_open_sent_by`, before `create_for_round`). Sorted by pseudonym; the first
        `limit` (-1: all) after `after` (where the round's last part stopped,
        `round_position`).

        One query: people by the region index, the latest consent by the ledger index, and
        an indexed probe of the person's check-ins. `now` is only a guard: swapped arguments
        would ask everyone again at once."""
        if not_since > now:
            raise ValueError("not_since is after now: are the arguments swapped?")
        async with self._conn.execute(
            "SELECT p.pseudonym, p.chat_id, p.locale FROM people p "
            "JOIN consent_ledger c ON c.id = (SELECT MAX(id) FROM consent_ledger "
            "  WHERE pseudonym = p.pseudonym AND purpose = ?) "
            "WHERE p.region = ? AND p.reachable = 1 AND p.pseudonym > ? AND c.granted = 1 "
            "AND NOT EXISTS (SELECT 1 FROM checkins k "
            "  WHERE k.pseudonym = p.pseudonym AND k.sent_at > ?) "
            "ORDER BY p.pseudonym LIMIT ?",
            (FEEDBACK, region, after, not_since, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [(str(r[0]), int(r[1]), str(r[2])) for r in rows]

    async def close_open_sent_by(
        self, pseudonyms: Collection[str], sent_by: int, now: int
    ) -> list[tuple[str, str]]:
        """Expire these people's open check-ins sent at or before `sent_by`: a round's new
        check-in replaces the last round's unfinished one (a person has one open at most).
        Returns (pseudonym, token) of those that had been started, whose person may still
        be in the check-in dialogue."""
        wanted = _strings(pseudonyms, "pseudonyms")
        if not wanted:
            return []
        async with self._conn.execute(
            "UPDATE checkins SET status = 'expired', closed_at = ? "
            f"WHERE pseudonym IN ({', '.join('?' * len(wanted))}) "
            "AND status IN ('sent', 'started') AND sent_at <= ? "
            "RETURNING pseudonym, token, started_at",
            (now, *wanted, sent_by),
        ) as cursor:
            rows = await cursor.fetchall()
        return sorted((str(r[0]), str(r[1])) for r in rows if r[2] is not None)

    async def mark_started(self, checkin_id: int, now: int) -> bool:
        """sent -> started, counted once in the check-in's own week, region and locale (not
        the person's current ones). False when it was not 'sent': a second call, or a
        check-in already closed."""
        started = await self._one(
            "UPDATE checkins SET status = 'started', started_at = ? "
            f"WHERE id = ? AND status = 'sent' RETURNING {_COLUMNS}",
            (now, checkin_id),
        )
        if started is None:
            return False
        await self._count("started", started)
        return True

    async def record_score(
        self, checkin_id: int, principle: str, score: int | None, now: int
    ) -> bool:
        """Keep the person's choice for one principle (None: skipped); a later choice
        replaces it. Marks the check-in started. False, and nothing stored, when the
        check-in is closed: its numbers have already gone into the digest.

        An unknown principle or a score outside 1-5 is refused by the table's CHECK
        (sqlite3.IntegrityError) before anything is written."""
        cursor = await self._conn.execute(
            "INSERT INTO checkin_scores (checkin_id, principle, score, answered_at) "
            "SELECT id, ?, ?, ? FROM checkins WHERE id = ? AND status IN ('sent', 'started') "
            "ON CONFLICT (checkin_id, principle) DO UPDATE SET score = excluded.score, "
            "answered_at = excluded.answered_at",
            (principle, score, now, checkin_id),
        )
        if cursor.rowcount == 0:
            return False
        await self.mark_started(checkin_id, now)
        return True

    async def complete(self, checkin_id: int, now: int) -> bool:
        """-> completed, counted once. A check-in completed straight from 'sent' (every
        question skipped at once, say) is counted as started too, so the funnel adds up.
        False when it was already closed."""
        await self.mark_started(checkin_id, now)
        async with self._conn.execute(
            "UPDATE checkins SET status = 'completed', completed_at = ?, closed_at = ? "
            f"WHERE id = ? AND status = 'started' RETURNING {_COLUMNS}",
            (now, now, checkin_id),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return False
        await self._count("completed", _checkin(row))
        return True

    async def mark_nudged(self, checkin_id: int, now: int) -> bool:
        """Claim the check-in's one reminder. True only for the call that claimed it, and
        only while the check-in is open: the caller sends the nudge when this says True."""
        cursor = await self._conn.execute(
            "UPDATE checkins SET nudged_at = ? "
            "WHERE id = ? AND status IN ('sent', 'started') AND nudged_at IS NULL",
            (now, checkin_id),
        )
        return cursor.rowcount > 0

    async def expire(self, checkin_id: int, now: int) -> bool:
        """Stop an open check-in taking answers. True when this call did it; a completed
        check-in stays completed."""
        cursor = await self._conn.execute(
            "UPDATE checkins SET status = 'expired', closed_at = ? "
            "WHERE id = ? AND status IN ('sent', 'started')",
            (now, checkin_id),
        )
        return cursor.rowcount > 0

    async def expire_all_open(self, pseudonym: str, now: int) -> int:
        """Expire whatever the person has open (they withdrew the feedback consent, or are
        leaving); returns how many were."""
        cursor = await self._conn.execute(
            "UPDATE checkins SET status = 'expired', closed_at = ? "
            "WHERE pseudonym = ? AND status IN ('sent', 'started')",
            (now, pseudonym),
        )
        return cursor.rowcount

    async def scores(self, checkin_id: int) -> dict[str, int | None]:
        """principle -> score, None where skipped, in the order asked; principles not yet
        answered are absent (absent is "not asked yet", None is "chose to skip")."""
        async with self._conn.execute(
            "SELECT principle, score FROM checkin_scores WHERE checkin_id = ?", (checkin_id,)
        ) as cursor:
            rows = await cursor.fetchall()
        found = {str(r[0]): (None if r[1] is None else int(r[1])) for r in rows}
        return {p: found[p] for p in PRINCIPLES if p in found}

    async def counts(self, week: str, regions: Collection[str] | None = None) -> list[CheckinCount]:
        """The digest's counters for one week, by region then locale. `regions` None means
        every region (including '' for people who had none); an empty collection means none."""
        sql = (
            "SELECT week, region, locale, sent, started, completed FROM checkin_counts "
            "WHERE week = ?"
        )
        params: tuple[object, ...] = (week,)
        if regions is not None:
            wanted = _strings(regions, "regions")
            if not wanted:
                return []
            sql += f" AND region IN ({', '.join('?' * len(wanted))})"
            params += tuple(wanted)
        async with self._conn.execute(sql + " ORDER BY region, locale", params) as cursor:
            rows = await cursor.fetchall()
        return [CheckinCount(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    # Themes of free-text answers

    async def tag_answer(
        self, answer_id: int, themes: Sequence[str], source: str = "keywords"
    ) -> None:
        """Add themes to an answer, keeping those it has. A staff tag turns an equal keyword
        guess into a staff one; keyword guesses never touch an answer staff have tagged,
        because their reading replaced the guess (see retag_answer)."""
        wanted = _strings(themes, "themes")
        if source == "keywords" and await self._staff_tagged(answer_id):
            return
        for theme in wanted:
            await self._conn.execute(
                "INSERT INTO answer_themes (answer_id, theme, source) VALUES (?, ?, ?) "
                "ON CONFLICT (answer_id, theme) DO UPDATE SET source = excluded.source "
                "WHERE excluded.source = 'staff'",
                (answer_id, theme, source),
            )

    async def retag_answer(
        self, answer_id: int, themes: Sequence[str], source: str = "staff"
    ) -> None:
        """Replace every theme of an answer, keyword guesses included, with `themes`: staff
        reading an answer decide what it is about, including that a guess was wrong.

        An answer retagged with no themes at all keeps no row to say so, so a later keyword
        pass could tag it again; keyword tagging is meant to run once, when it is stored."""
        wanted = _strings(themes, "themes")
        await self._conn.execute("DELETE FROM answer_themes WHERE answer_id = ?", (answer_id,))
        for theme in wanted:
            await self._conn.execute(
                "INSERT INTO answer_themes (answer_id, theme, source) VALUES (?, ?, ?)",
                (answer_id, theme, source),
            )

    async def themes_of(self, answer_id: int) -> list[str]:
        """The answer's themes, sorted."""
        async with self._conn.execute(
            "SELECT theme FROM answer_themes WHERE answer_id = ? ORDER BY theme", (answer_id,)
        ) as cursor:
            rows = await cursor.fetchall()
        return [str(r[0]) for r in rows]

    # Schedules: one repeating round per region

    async def set_schedule(
        self,
        region: str,
        every_days: int,
        next_at: int,
        created_by: str,
        now: int,
        local_time_ms: int | None = None,
    ) -> None:
        """Start or change a region's round, at `local_time_ms` on the local clock (None:
        the next round reads it from next_at). Changing it keeps who created it and when;
        who changed it belongs in the audit log."""
        await self._conn.execute(
            "INSERT INTO checkin_schedules (region, every_days, next_at, created_by, "
            "created_at, updated_at, local_time_ms) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (region) DO UPDATE SET every_days = excluded.every_days, "
            "next_at = excluded.next_at, updated_at = excluded.updated_at, "
            "local_time_ms = excluded.local_time_ms, "
            # a round replaced by another time: its parts stop, and so does its position
            "round_after = CASE WHEN next_at = excluded.next_at THEN round_after END",
            (region, every_days, next_at, created_by, now, now, local_time_ms),
        )

    async def schedule_of(self, region: str) -> CheckinSchedule | None:
        async with self._conn.execute(
            f"SELECT {_SCHEDULE_COLUMNS} FROM checkin_schedules WHERE region = ?", (region,)
        ) as cursor:
            row = await cursor.fetchone()
        return _schedule(row) if row else None

    async def schedules(self) -> list[CheckinSchedule]:
        """Every region's round, by region."""
        async with self._conn.execute(
            f"SELECT {_SCHEDULE_COLUMNS} FROM checkin_schedules ORDER BY region"
        ) as cursor:
            rows = await cursor.fetchall()
        return [_schedule(r) for r in rows]

    async def round_position(self, region: str) -> str:
        """Where the region's round under way goes on: after this pseudonym ('' from the
        beginning)."""
        async with self._conn.execute(
            "SELECT round_after FROM checkin_schedules WHERE region = ?", (region,)
        ) as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row and row[0] is not None else ""

    async def move_round_position(self, region: str, after: str | None) -> None:
        """The round under way has asked everyone due up to `after`; None: it is over."""
        await self._conn.execute(
            "UPDATE checkin_schedules SET round_after = ? WHERE region = ?", (after, region)
        )

    async def advance_schedule(
        self, region: str, next_at: int, now: int, local_time_ms: int | None = None
    ) -> bool:
        """Move a round on to its next time (and keep its local time of day, if given: a
        schedule made before it was kept). Only ever forwards: True for the call that moved
        it, so a round job run twice after a crash can tell it has already sent."""
        cursor = await self._conn.execute(
            "UPDATE checkin_schedules SET next_at = ?, updated_at = ?, round_after = NULL, "
            "local_time_ms = COALESCE(?, local_time_ms) WHERE region = ? AND next_at < ?",
            (next_at, now, local_time_ms, region, next_at),
        )
        return cursor.rowcount > 0

    async def remove_schedule(self, region: str) -> bool:
        """Stop a region's round; True when there was one."""
        cursor = await self._conn.execute(
            "DELETE FROM checkin_schedules WHERE region = ?", (region,)
        )
        return cursor.rowcount > 0

    # Forgetting a person

    async def erase_person(self, pseudonym: str) -> int:
        """Delete the person's check-ins and scores, and any round's position at them;
        returns how many check-ins there were.

        The counters stay: they hold no pseudonym, and the digest's past weeks must not
        change when someone leaves. Their answers are erased elsewhere (with their themes),
        but may still point at these check-ins, so the links go first."""
        mine = "SELECT id FROM checkins WHERE pseudonym = ?"
        await self._conn.execute(
            f"UPDATE answers SET checkin_id = NULL WHERE checkin_id IN ({mine})", (pseudonym,)
        )
        await self._conn.execute(
            f"DELETE FROM checkin_scores WHERE checkin_id IN ({mine})", (pseudonym,)
        )
        cursor = await self._conn.execute("DELETE FROM checkins WHERE pseudonym = ?", (pseudonym,))
        await self._conn.execute(  # a round's next part began after them: from the start
            "UPDATE checkin_schedules SET round_after = NULL WHERE round_after = ?", (pseudonym,)
        )
        return cursor.rowcount

    # Internals

    async def _count(self, step: str, checkin: Checkin) -> None:
        key = (checkin.week, checkin.region or "", checkin.locale)
        cursor = await self._conn.execute(_COUNT_LATER[step], key)
        # The row is made when the check-in is sent and never deleted; if it were missing
        # the digest would silently undercount, so fail (and roll back) instead.
        if cursor.rowcount != 1:
            raise RuntimeError(f"no checkin_counts row for {key!r}")

    async def _staff_tagged(self, answer_id: int) -> bool:
        async with self._conn.execute(
            "SELECT 1 FROM answer_themes WHERE answer_id = ? AND source = 'staff' LIMIT 1",
            (answer_id,),
        ) as cursor:
            return await cursor.fetchone() is not None
