"""'You said, we did' updates, who they reached, and how people reacted."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from storage.database import Row

# Who an update of some themes is for: in the region, reachable, raised one of the themes in
# an answer between two times, and whose latest decision on updates is a yes. Parameters:
# region, since, until, the themes as a JSON list.
_RAISERS = (
    "WHERE p.region = ? AND p.reachable = 1 "
    "AND EXISTS (SELECT 1 FROM answers a JOIN answer_themes t ON t.answer_id = a.id "
    "            WHERE a.pseudonym = p.pseudonym AND a.created_at BETWEEN ? AND ? "
    "            AND t.theme IN (SELECT value FROM json_each(?))) "
    "AND (SELECT granted FROM consent_ledger WHERE id = (SELECT MAX(id) "
    "     FROM consent_ledger WHERE pseudonym = p.pseudonym AND purpose = 'updates')) = 1 "
)


@dataclass(frozen=True)
class Update:
    id: int
    region: str
    kind: str
    themes: tuple[str, ...]
    text_en: str
    text_cy: str | None
    published_by: str
    published_at: int
    withdrawn_at: int | None = None  # taken back by staff (migration 0029)


@dataclass(frozen=True)
class SentCopy:
    """A copy of an update someone has, as a Telegram message we know."""

    pseudonym: str
    chat_id: int
    locale: str
    message_id: int


@dataclass(frozen=True)
class Delivery:
    update_id: int
    pseudonym: str
    token: str
    reaction: str | None


@dataclass(frozen=True)
class Reactions:
    sent: int  # the people it went to
    helps: int
    not_helps: int
    more: int  # tapped "Tell us what you think"


_COLUMNS = "id, region, kind, themes, text_en, text_cy, published_by, published_at, withdrawn_at"


def _update(row: Row) -> Update:
    themes = tuple(json.loads(row[3]))
    return Update(row[0], row[1], row[2], themes, row[4], row[5], row[6], row[7], row[8])


class Updates:
    """The updates and update_deliveries tables."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def publish(
        self,
        region: str,
        kind: str,
        themes: Sequence[str],
        text_en: str,
        text_cy: str | None,
        published_by: str,
        now: int,
    ) -> Update:
        async with self._conn.execute(
            "INSERT INTO updates (region, kind, themes, text_en, text_cy, published_by, "
            f"published_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
            (region, kind, json.dumps(sorted(set(themes))), text_en, text_cy, published_by, now),
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return _update(row)

    async def get(self, update_id: int) -> Update | None:
        async with self._conn.execute(
            f"SELECT {_COLUMNS} FROM updates WHERE id = ?", (update_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return _update(row) if row else None

    async def latest(self, region: str, limit: int, taken_back_too: bool = False) -> list[Update]:
        """The region's latest updates, newest first; those taken back only if asked for
        (staff see what was taken back; people are not shown it again)."""
        async with self._conn.execute(
            f"SELECT {_COLUMNS} FROM updates WHERE region = ? "
            "AND (? OR withdrawn_at IS NULL) ORDER BY published_at DESC, id DESC LIMIT ?",
            (region, int(taken_back_too), limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_update(r) for r in rows]

    async def raisers(
        self,
        region: str,
        themes: Sequence[str],
        since: int,
        until: int,
        not_reached_by: int | None = None,
        limit: int = -1,
    ) -> list[tuple[str, int, str]]:
        """(pseudonym, chat id, locale) of the people in the region who raised one of the
        themes in an answer from `since` to `until`, can be reached, and whose latest
        decision on updates is a yes. At most `limit` (-1: all), in pseudonym order; with
        `not_reached_by`, only those after the last that update was delivered to: its parts
        go in this order, so the next part starts there without reading the people before
        it again (and nothing about a person is kept between parts)."""
        async with self._conn.execute(
            "SELECT p.pseudonym, p.chat_id, p.locale FROM people p "
            + _RAISERS
            + "AND p.pseudonym > COALESCE((SELECT MAX(pseudonym) FROM update_deliveries "
            "                            WHERE update_id = ?), '') "
            "ORDER BY p.pseudonym LIMIT ?",
            (region, since, until, json.dumps(list(themes)), not_reached_by, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    async def count_raisers(
        self, region: str, themes: Sequence[str], since: int, until: int
    ) -> int:
        """How many `raisers` would find for an update not yet published (a preview)."""
        async with self._conn.execute(
            "SELECT COUNT(*) FROM people p " + _RAISERS,
            (region, since, until, json.dumps(list(themes))),
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def deliver(self, update_id: int, pseudonym: str) -> str:
        """Record that the update goes to this person; returns the token for its buttons."""
        return (await self.deliver_all(update_id, [pseudonym]))[0]

    async def deliver_all(self, update_id: int, pseudonyms: Sequence[str]) -> list[str]:
        """Record that the update goes to these people; returns each one's token for the
        buttons, in the same order (one statement for a part of hundreds)."""
        tokens = [secrets.token_hex(8) for _ in pseudonyms]
        await self._conn.executemany(
            "INSERT INTO update_deliveries (update_id, pseudonym, token) VALUES (?, ?, ?)",
            [
                (update_id, pseudonym, token)
                for pseudonym, token in zip(pseudonyms, tokens, strict=True)
            ],
        )
        return tokens

    async def delivery(self, token: str) -> Delivery | None:
        async with self._conn.execute(
            "SELECT update_id, pseudonym, token, reaction FROM update_deliveries WHERE token = ?",
            (token,),
        ) as cursor:
            row = await cursor.fetchone()
        return Delivery(row[0], row[1], row[2], row[3]) if row else None

    async def react(self, token: str, reaction: str, now: int) -> None:
        """The person's reaction (the last one counts)."""
        await self._conn.execute(
            "UPDATE update_deliveries SET reaction = ?, reacted_at = ? WHERE token = ?",
            (reaction, now, token),
        )

    async def reactions(self, update_ids: Sequence[int]) -> dict[int, Reactions]:
        """How each update was received: who it went to, and each reaction given (the last
        one of each person), for the updates asked about that went to anyone."""
        async with self._conn.execute(
            "SELECT update_id, COUNT(*), "
            "COUNT(*) FILTER (WHERE reaction = 'helps'), "
            "COUNT(*) FILTER (WHERE reaction = 'not_helps'), "
            "COUNT(*) FILTER (WHERE reaction = 'more') "
            "FROM update_deliveries WHERE update_id IN (SELECT value FROM json_each(?)) "
            "GROUP BY update_id",
            (json.dumps(list(update_ids)),),
        ) as cursor:
            rows = await cursor.fetchall()
        return {int(r[0]): Reactions(int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}

    async def withdraw(self, update_id: int, now: int) -> bool:
        """Take the update back; False when it already was (or is not there)."""
        cursor = await self._conn.execute(
            "UPDATE updates SET withdrawn_at = ? WHERE id = ? AND withdrawn_at IS NULL",
            (now, update_id),
        )
        return cursor.rowcount > 0

    async def copies_to_edit(self, update_id: int, limit: int) -> list[SentCopy]:
        """The copies of the update people were sent (as a message we know) and not yet
        edited, in pseudonym order, at most `limit`, of people still reachable. Whatever they
        decided on updates since: an edit sends nothing new and wakes nobody, and an update
        is taken back because it is wrong; a copy left standing would go on saying it (a
        panel's corrections, about a date, go only to those still wanting invitations)."""
        async with self._conn.execute(
            "SELECT d.pseudonym, p.chat_id, p.locale, d.message_id FROM update_deliveries d "
            "JOIN people p ON p.pseudonym = d.pseudonym "
            "WHERE d.update_id = ? AND d.message_id IS NOT NULL AND d.edited_at IS NULL "
            "AND p.reachable = 1 ORDER BY d.pseudonym LIMIT ?",
            (update_id, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [SentCopy(r[0], r[1], r[2], r[3]) for r in rows]

    async def mark_edited(self, update_id: int, pseudonyms: Sequence[str], now: int) -> None:
        await self._conn.executemany(
            "UPDATE update_deliveries SET edited_at = ? WHERE update_id = ? AND pseudonym = ?",
            [(now, update_id, pseudonym) for pseudonym in pseudonyms],
        )

    async def forget_unsent(self, update_id: int) -> int:
        """Deliveries recorded for messages that were never sent (stopped as the update was
        taken back, a minute after): they did not reach anyone, so they are not counted as
        sent, nor shown in /mydata as received. Returns how many."""
        cursor = await self._conn.execute(
            "DELETE FROM update_deliveries WHERE update_id = :id AND message_id IS NULL "
            "AND reaction IS NULL AND pseudonym IN (SELECT p.pseudonym FROM outbox o "
            "  JOIN broadcasts b ON b.id = o.broadcast_id JOIN people p ON p.chat_id = o.chat_id "
            "  WHERE b.kind = 'update' AND b.subject = 'update:' || :id "
            "  AND o.status = 'cancelled')",
            {"id": update_id},
        )
        return cursor.rowcount

    async def erase_person(self, pseudonym: str) -> int:
        cursor = await self._conn.execute(
            "DELETE FROM update_deliveries WHERE pseudonym = ?", (pseudonym,)
        )
        return cursor.rowcount
