"""Free-text answers. The text arrives already encrypted; this layer never sees plain text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite


@dataclass(frozen=True)
class StoredAnswer:
    id: int
    dialogue: str
    question: str
    ciphertext: bytes
    created_at: int
    quotable: bool  # a scrubbed copy may be quoted (the person gave the quote consent)


class Answers:
    """The answers table."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def add(
        self,
        pseudonym: str,
        dialogue: str,
        question: str,
        ciphertext: bytes,
        now: int,
        checkin_id: int | None = None,
        quote: bytes | None = None,
    ) -> int:
        """Store an encrypted answer (and its encrypted, scrubbed quote, if the person
        agreed to be quoted); returns its id."""
        async with self._conn.execute(
            "INSERT INTO answers (pseudonym, dialogue, question, ciphertext, created_at, "
            "checkin_id, quote) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (pseudonym, dialogue, question, ciphertext, now, checkin_id, quote),
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def latest_since(self, pseudonym: str, since: int) -> StoredAnswer | None:
        """The person's newest answer written since `since`, if any."""
        async with self._conn.execute(
            "SELECT id, dialogue, question, ciphertext, created_at, quote IS NOT NULL "
            "FROM answers WHERE pseudonym = ? AND created_at >= ? ORDER BY id DESC LIMIT 1",
            (pseudonym, since),
        ) as cursor:
            r = await cursor.fetchone()
        return StoredAnswer(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5])) if r else None

    async def rewrite(self, answer_id: int, ciphertext: bytes, quote: bytes | None) -> None:
        """Replace an answer's text (and its quotable copy) with a longer one."""
        await self._conn.execute(
            "UPDATE answers SET ciphertext = ?, quote = ? WHERE id = ?",
            (ciphertext, quote, answer_id),
        )

    async def forget_quotes(self, pseudonym: str) -> int:
        """The person withdrew the quote consent: no answer of theirs may be quoted."""
        cursor = await self._conn.execute(
            "UPDATE answers SET quote = NULL WHERE pseudonym = ? AND quote IS NOT NULL",
            (pseudonym,),
        )
        return cursor.rowcount

    async def erase(self, pseudonym: str) -> int:
        """Delete every answer of the person (their themes go with them)."""
        cursor = await self._conn.execute("DELETE FROM answers WHERE pseudonym = ?", (pseudonym,))
        return cursor.rowcount

    async def of(self, pseudonym: str) -> list[StoredAnswer]:
        async with self._conn.execute(
            "SELECT id, dialogue, question, ciphertext, created_at, quote IS NOT NULL "
            "FROM answers WHERE pseudonym = ? ORDER BY id",
            (pseudonym,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [StoredAnswer(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5])) for r in rows]

    async def reviewable(
        self, regions: Sequence[str], since: int, before: int
    ) -> list[tuple[int, str, str]]:
        """(answer id, region, author's pseudonym) of every answer written from `since` to
        `before` that may be quoted (the quote consent was given), for staff theme review,
        in id order. The region is the check-in's, else the person's. The quotes
        themselves: `quotes`."""
        async with self._conn.execute(
            "SELECT a.id, COALESCE(c.region, p.region) AS region, a.pseudonym FROM answers a "
            "LEFT JOIN checkins c ON c.id = a.checkin_id "
            "LEFT JOIN people p ON p.pseudonym = a.pseudonym "
            "WHERE a.quote IS NOT NULL AND a.created_at >= ? AND a.created_at < ? "
            "AND COALESCE(c.region, p.region) IN (SELECT value FROM json_each(?)) "
            "ORDER BY a.id",
            (since, before, json.dumps(list(regions))),
        ) as cursor:
            rows = await cursor.fetchall()
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def quotes(self, answer_ids: Sequence[int]) -> dict[int, bytes]:
        """answer id -> its encrypted scrubbed quote, for those that still have one."""
        async with self._conn.execute(
            "SELECT id, quote FROM answers WHERE quote IS NOT NULL "
            "AND id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(answer_ids)),),
        ) as cursor:
            rows = await cursor.fetchall()
        return {int(r[0]): bytes(r[1]) for r in rows}

    async def region_of(self, answer_id: int) -> str | None:
        """The region an answer counts for (its check-in's, else its author's)."""
        async with self._conn.execute(
            "SELECT COALESCE(c.region, p.region) FROM answers a "
            "LEFT JOIN checkins c ON c.id = a.checkin_id "
            "LEFT JOIN people p ON p.pseudonym = a.pseudonym WHERE a.id = ?",
            (answer_id,),
        ) as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row and row[0] is not None else None
