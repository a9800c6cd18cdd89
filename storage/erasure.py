"""Erasing a person: every row that holds their pseudonym or chat id, in one transaction,
leaving a tombstone that says it happened. Anonymous totals (checkin_counts) stay: they
hold neither."""

from __future__ import annotations

import aiosqlite

from storage.answers import Answers
from storage.checkins import Checkins
from storage.queues import FORGOTTEN
from storage.safeguarding import SafeguardingRequests
from storage.updates import Updates

# Tables holding a pseudonym column that belong to a participant, in a safe order (rows
# referring to others first). Staff are not erased this way (their audit trail stays).
_BY_PSEUDONYM = ("panel_invitations", "dialogue_sessions", "consent_ledger")


async def erase_person(
    conn: aiosqlite.Connection, pseudonym: str, chat_id: int, now: int
) -> dict[str, int]:
    """Delete everything about one person; returns rows deleted per table."""
    await conn.execute(
        "INSERT INTO erasures (pseudonym, erased_at) VALUES (?, ?)", (pseudonym, now)
    )
    deleted = {
        "checkins": await Checkins(conn).erase_person(pseudonym),
        "answers": await Answers(conn).erase(pseudonym),
        "safeguarding_requests": await SafeguardingRequests(conn).erase_person(pseudonym),
        "update_deliveries": await Updates(conn).erase_person(pseudonym),
    }
    for table in _BY_PSEUDONYM:
        cursor = await conn.execute(f"DELETE FROM {table} WHERE pseudonym = ?", (pseudonym,))
        deleted[table] = cursor.rowcount
    # The person's outbox rows are emptied, not deleted (see FORGOTTEN): a row sent moments
    # ago may not be recorded sent yet, and a reply to duty staff queued next was lost so.
    cursor = await conn.execute(
        f"UPDATE outbox SET {FORGOTTEN}, "
        "status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END "
        "WHERE chat_id = ?",
        (chat_id,),
    )
    deleted["outbox"] = cursor.rowcount
    cursor = await conn.execute("DELETE FROM people WHERE pseudonym = ?", (pseudonym,))
    deleted["people"] = cursor.rowcount
    return deleted


async def was_erased(conn: aiosqlite.Connection, pseudonym: str) -> bool:
    async with conn.execute("SELECT 1 FROM erasures WHERE pseudonym = ?", (pseudonym,)) as cursor:
        return await cursor.fetchone() is not None
