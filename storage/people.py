"""People and their consents. A person is a pseudonym; nothing identifying is stored."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from storage.database import Row


@dataclass(frozen=True)
class Person:
    pseudonym: str
    chat_id: int
    locale: str
    region: str | None
    reachable: bool


@dataclass(frozen=True)
class ConsentRecord:
    purpose: str
    granted: bool
    notice_version: str
    recorded_at: int


# How stale `people.last_seen_at` may get before a person's update moves it on: retention
# counts in months, so a day's lag changes nothing, and spares a write on nearly every update.
SEEN_EVERY_MS = 86_400_000


def _person(row: Row) -> Person:
    return Person(
        row["pseudonym"], row["chat_id"], row["locale"], row["region"], bool(row["reachable"])
    )


class People:
    """The people table."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def get(self, pseudonym: str) -> Person | None:
        # One trip to the database thread, not three (storage/queues.py, Inbox.status).
        rows = list(
            await self._conn.execute_fetchall(
                "SELECT * FROM people WHERE pseudonym = ?", (pseudonym,)
            )
        )
        return _person(rows[0]) if rows else None

    async def by_chat(self, chat_id: int) -> Person | None:
        async with self._conn.execute(
            "SELECT * FROM people WHERE chat_id = ?", (chat_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return _person(row) if row else None

    async def touch(self, pseudonym: str, chat_id: int, locale: str, now: int) -> Person:
        """Create the person on first contact; writing again makes them reachable again,
        and is when they were last seen (`last_seen_at`, which retention reads: moved on at
        most once a day, so most updates still write nothing here)."""
        person, _ = await self.arrive(pseudonym, chat_id, locale, now)
        return person

    async def arrive(
        self, pseudonym: str, chat_id: int, locale: str, now: int
    ) -> tuple[Person, bool]:
        """`touch`, and whether the person could not be written to until now (they had
        blocked the bot; writing shows they unblocked it, should Telegram's word of it
        have been lost). Read first: most updates then write and read nothing more."""
        before = await self.get(pseudonym)
        cursor = await self._conn.execute(
            "INSERT INTO people (pseudonym, chat_id, locale, created_at, updated_at, "
            "last_seen_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (pseudonym) DO UPDATE SET "
            "chat_id = excluded.chat_id, reachable = 1, updated_at = excluded.updated_at, "
            "last_seen_at = MAX(people.last_seen_at, excluded.last_seen_at) "
            "WHERE people.reachable = 0 OR people.chat_id <> excluded.chat_id "
            "OR people.last_seen_at < excluded.last_seen_at - ?",
            (pseudonym, chat_id, locale, now, now, now, SEEN_EVERY_MS),
        )
        if before is not None and cursor.rowcount == 0:
            return before, False
        person = await self.get(pseudonym)
        assert person is not None
        return person, before is not None and not before.reachable

    async def set_region(self, pseudonym: str, region: str | None, now: int) -> None:
        await self._conn.execute(
            "UPDATE people SET region = ?, updated_at = ? WHERE pseudonym = ?",
            (region, now, pseudonym),
        )

    async def set_locale(self, pseudonym: str, locale: str, now: int) -> None:
        await self._conn.execute(
            "UPDATE people SET locale = ?, updated_at = ? WHERE pseudonym = ?",
            (locale, now, pseudonym),
        )

    async def set_reachable(self, chat_id: int, reachable: bool, now: int) -> str | None:
        """Mark the person behind a chat reachable or not; returns their pseudonym if known."""
        async with self._conn.execute(
            "UPDATE people SET reachable = ?, updated_at = ? WHERE chat_id = ? RETURNING pseudonym",
            (int(reachable), now, chat_id),
        ) as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row else None


@dataclass(frozen=True)
class Recipient:
    pseudonym: str
    chat_id: int
    locale: str


# Who a broadcast for a purpose may go to (parameters: purpose, region): through
# people_by_region, and the latest decision on the purpose through the ledger's index.
_REACHABLE_WITH_CONSENT = (
    "FROM people p "
    "JOIN consent_ledger c ON c.id = (SELECT MAX(id) FROM consent_ledger "
    "  WHERE pseudonym = p.pseudonym AND purpose = ?) "
    "WHERE p.region = ? AND p.reachable = 1 AND c.granted = 1"
)


async def reachable_with_consent(
    conn: aiosqlite.Connection,
    region: str,
    purpose: str,
    not_invited_to: int | None = None,
    limit: int = -1,
    start: str = "",
) -> list[Recipient]:
    """Everyone in a region who can be reached and whose latest decision for `purpose` is a
    yes: the only people a broadcast for that purpose may go to. At most `limit` (-1: all),
    in pseudonym order from just after `start` to the end, then round from the beginning
    up to `start` (a panel's own starting point, so that the same people are not first
    for every panel's first-come places; "": plain pseudonym order).

    `not_invited_to`: only those whose turn comes after the last person invited to that
    panel: a panel invites its region in parts, in this order (invitations are made
    nowhere else), so each part starts where the last ended (through people_by_region,
    migration 0015) instead of passing everyone invited so far again. Once anyone up to
    `start` is invited the walk has wrapped round, and goes on from the last of them.
    Whether someone is invited is decided when their turn comes: a person who says yes to
    panels while the parts go out is invited if their turn is still to come.

    One statement, each of its two halves a range of people_by_region that stops when it
    has enough; SQLite gives a UNION ALL's left half first (the order tests rely on)."""
    last_invited = "SELECT MAX(pseudonym) FROM panel_invitations WHERE panel_id = ? AND pseudonym "
    people = "SELECT p.pseudonym, p.chat_id, p.locale " + _REACHABLE_WITH_CONSENT
    # After `start` to the end, while nobody up to `start` is invited (the walk has not
    # wrapped round): (purpose, region, start, panel, start, panel, start, limit).
    to_the_end = (
        f"{people} AND p.pseudonym > MAX(?, COALESCE(({last_invited} > ?), '')) "
        "AND NOT EXISTS (SELECT 1 FROM panel_invitations WHERE panel_id = ? AND pseudonym <= ?) "
        "ORDER BY p.pseudonym LIMIT ?"
    )
    # Then from the beginning up to `start`: (purpose, region, start, panel, start, limit).
    from_the_beginning = (
        f"{people} AND p.pseudonym <= ? AND p.pseudonym > COALESCE(({last_invited} <= ?), '') "
        "ORDER BY p.pseudonym LIMIT ?"
    )
    async with conn.execute(
        f"SELECT * FROM ({to_the_end}) UNION ALL SELECT * FROM ({from_the_beginning}) LIMIT ?",
        (
            *(purpose, region, start, not_invited_to, start, not_invited_to, start, limit),
            *(purpose, region, start, not_invited_to, start, limit),
            limit,
        ),
    ) as cursor:
        rows = await cursor.fetchall()
    return [Recipient(r[0], r[1], r[2]) for r in rows]


async def count_reachable_with_consent(
    conn: aiosqlite.Connection, region: str, purpose: str, leaving_out: str = ""
) -> int:
    """How many `reachable_with_consent` finds in all (but `leaving_out`, e.g. the
    organiser): to tell staff the whole number when only the first part is read. Half
    the time of reading all 20,000 of a region (bench/FINDINGS.md, sixth round)."""
    async with conn.execute(
        "SELECT COUNT(*) " + _REACHABLE_WITH_CONSENT + " AND p.pseudonym <> ?",
        (purpose, region, leaving_out),
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


# Where a look through the people not seen lately stopped: (last_seen_at, rowid) of the
# last person looked at. The rowid, not the pseudonym, so that a position kept in a job's
# payload never holds who someone is (and bench/startup.py seeds everyone at one moment).
SeenPosition = tuple[int, int]
FIRST_SEEN: SeenPosition = (-1, -1)


@dataclass(frozen=True)
class Silent:
    pseudonym: str
    chat_id: int
    position: SeenPosition  # to go on after them


async def silent_without_consent(
    conn: aiosqlite.Connection, before: int, after: SeenPosition, limit: int
) -> tuple[list[Silent], SeenPosition | None]:
    """Look at up to `limit` people last seen before `before`, the longest silent first,
    starting after `after`; return those with no staff role (staff_roles: any grant) and
    either no consent granted (their latest decision on every purpose a no, or no decision
    at all) or no way to reach them (they blocked the bot: nothing they consented to can
    come to them), and where the next look starts (None: nobody left before `before`). A
    part looks at a bounded number of people however many of them are kept, through
    people_by_last_seen (migration 0021), each checked through the ledger's and
    staff_roles' indexes."""
    rows = await conn.execute_fetchall(
        "SELECT p.last_seen_at, p.rowid, p.pseudonym, p.chat_id, "
        "  EXISTS (SELECT 1 FROM staff_roles s WHERE s.pseudonym = p.pseudonym) "
        "  OR (p.reachable = 1 AND EXISTS (SELECT 1 FROM consent_ledger c "
        "    WHERE c.pseudonym = p.pseudonym AND c.granted = 1 "
        "    AND c.id = (SELECT MAX(l.id) FROM consent_ledger l "
        "      WHERE l.pseudonym = p.pseudonym AND l.purpose = c.purpose))) "
        "FROM people p INDEXED BY people_by_last_seen "
        "WHERE p.last_seen_at < ? AND (p.last_seen_at, p.rowid) > (?, ?) "
        "ORDER BY p.last_seen_at, p.rowid LIMIT ?",
        (before, after[0], after[1], limit),
    )
    looked = list(rows)
    silent = [Silent(str(r[2]), int(r[3]), (int(r[0]), int(r[1]))) for r in looked if not r[4]]
    if len(looked) < limit:
        return silent, None
    return silent, (int(looked[-1][0]), int(looked[-1][1]))


class ConsentLedger:
    """The append-only consent ledger: one row per decision."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def record(
        self, pseudonym: str, purpose: str, granted: bool, notice_version: str, now: int
    ) -> None:
        await self._conn.execute(
            "INSERT INTO consent_ledger (pseudonym, purpose, granted, notice_version, "
            "recorded_at) VALUES (?, ?, ?, ?, ?)",
            (pseudonym, purpose, int(granted), notice_version, now),
        )

    async def current(self, pseudonym: str) -> dict[str, bool]:
        """The latest decision per purpose; purposes never asked are absent."""
        rows = await self._conn.execute_fetchall(
            "SELECT purpose, granted FROM consent_ledger WHERE id IN ("
            " SELECT MAX(id) FROM consent_ledger WHERE pseudonym = ? GROUP BY purpose)",
            (pseudonym,),
        )
        return {row["purpose"]: bool(row["granted"]) for row in rows}

    async def withdraw_all(self, pseudonym: str, notice_version: str, now: int) -> list[str]:
        """Withdraw every purpose currently granted; returns the purposes withdrawn."""
        granted = [p for p, g in (await self.current(pseudonym)).items() if g]
        for purpose in granted:
            await self.record(pseudonym, purpose, False, notice_version, now)
        return granted

    async def history(self, pseudonym: str) -> list[ConsentRecord]:
        async with self._conn.execute(
            "SELECT purpose, granted, notice_version, recorded_at FROM consent_ledger "
            "WHERE pseudonym = ? ORDER BY id",
            (pseudonym,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            ConsentRecord(r["purpose"], bool(r["granted"]), r["notice_version"], r["recorded_at"])
            for r in rows
        ]


class Sessions:
    """Dialogue sessions, stored as the engine's JSON."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def load(self, pseudonym: str) -> str | None:
        # One trip to the database thread, not three (storage/queues.py, Inbox.status).
        rows = list(
            await self._conn.execute_fetchall(
                "SELECT session FROM dialogue_sessions WHERE pseudonym = ?", (pseudonym,)
            )
        )
        return str(rows[0][0]) if rows else None

    async def save(self, pseudonym: str, session_json: str, now: int) -> None:
        await self._conn.execute(
            "INSERT INTO dialogue_sessions (pseudonym, session, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (pseudonym) DO UPDATE SET session = excluded.session, "
            "updated_at = excluded.updated_at",
            (pseudonym, session_json, now),
        )
