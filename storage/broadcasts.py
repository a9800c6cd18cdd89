"""Broadcasts: batches of broadcast-priority outbox rows, with their progress."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from storage.queues import PRIORITY_BROADCAST


@dataclass(frozen=True)
class BroadcastProgress:
    id: int
    kind: str
    subject: str
    region: str | None
    created_by: str
    status: str
    total: int
    sent: int
    unreachable: int
    failed: int
    cancelled: int
    pending: int
    progress_chat_id: int | None
    progress_message_id: int | None
    # how many the broadcast is for in all: `expected` when its first part knew more were
    # to come (queued in parts), else `total`
    planned: int


@dataclass(frozen=True)
class NextPart:
    """The job that adds a broadcast's next part (`Broadcasts.expect_part`)."""

    # 'pending' (still to run, or to be retried), 'done', 'failed' (given up after
    # repeated failures)
    status: str
    due_at: int  # when it runs; later than now while it waits to be retried
    attempts: int  # how many times it failed


class Broadcasts:
    """The broadcasts table and the outbox rows that belong to each broadcast."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def latest_sent_to(self, chat_id: int, since: int) -> tuple[str, str] | None:
        """(kind, subject) of the latest broadcast message sent to the chat since `since`
        (e.g. an organiser's message and its panel), whatever its kind; None if none was.
        Edits are not messages: one changes what the person already has, silently, and the
        last message they see is still the one before it."""
        async with self._conn.execute(
            "SELECT b.kind, b.subject FROM outbox o JOIN broadcasts b ON b.id = o.broadcast_id "
            "WHERE o.chat_id = ? AND o.status = 'sent' AND o.kind = 'message' "
            "AND o.sent_at >= ? "
            "ORDER BY o.sent_at DESC, o.id DESC LIMIT 1",
            (chat_id, since),
        ) as cursor:
            row = await cursor.fetchone()
        return (str(row[0]), str(row[1])) if row else None

    async def create(
        self,
        kind: str,
        subject: str,
        region: str | None,
        created_by: str,
        messages: Sequence[tuple[int, dict[str, Any]]],
        progress_chat_id: int | None,
        now: int,
        expected: int | None = None,
        outbox_kind: str = "message",
    ) -> int:
        """Record a broadcast and queue one message per (chat id, payload), all at once.
        `expected`: how many it is for in all, when the rest follow in parts.
        `outbox_kind` "edit": each payload edits a message already sent (its message_id)."""
        async with self._conn.execute(
            "INSERT INTO broadcasts (kind, subject, region, created_by, total, progress_chat_id, "
            "created_at, expected) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (kind, subject, region, created_by, len(messages), progress_chat_id, now, expected),
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        broadcast_id = int(row[0])
        await self._queue(broadcast_id, messages, now, outbox_kind)
        return broadcast_id

    async def add_messages(
        self, broadcast_id: int, messages: Sequence[tuple[int, dict[str, Any]]], now: int
    ) -> bool:
        """More messages for a broadcast still running (a check-in round queued in parts);
        False, and nothing queued, when it has finished or was cancelled meanwhile."""
        cursor = await self._conn.execute(
            "UPDATE broadcasts SET total = total + ? WHERE id = ? AND status = 'running'",
            (len(messages), broadcast_id),
        )
        if cursor.rowcount == 0:
            return False
        await self._queue(broadcast_id, messages, now)
        return True

    async def _queue(
        self,
        broadcast_id: int,
        messages: Sequence[tuple[int, dict[str, Any]]],
        now: int,
        outbox_kind: str = "message",
    ) -> None:
        await self._conn.executemany(
            "INSERT INTO outbox (chat_id, priority, kind, payload, not_before, created_at, "
            "broadcast_id) VALUES (?, ?, ?, seal_payload(?), ?, ?, ?)",
            [
                (
                    chat_id,
                    PRIORITY_BROADCAST,
                    outbox_kind,
                    json.dumps(payload, separators=(",", ":")),
                    now,
                    now,
                    broadcast_id,
                )
                for chat_id, payload in messages
            ],
        )

    async def attach_progress_message(self, broadcast_id: int, outbox_id: int) -> None:
        await self._conn.execute(
            "UPDATE broadcasts SET progress_outbox_id = ? WHERE id = ?", (outbox_id, broadcast_id)
        )

    async def progress(self, broadcast_id: int) -> BroadcastProgress | None:
        async with self._conn.execute(
            "SELECT b.id, b.kind, b.subject, b.region, b.created_by, b.status, b.total, "
            " COALESCE(SUM(o.status = 'sent'), 0), "
            " COALESCE(SUM(o.last_error LIKE '403%'), 0), "
            " COALESCE(SUM(o.status = 'failed'), 0), "
            " COALESCE(SUM(o.status = 'cancelled' AND o.last_error NOT LIKE '403%'), 0), "
            " COALESCE(SUM(o.status = 'pending'), 0), "
            " b.progress_chat_id, "
            " (SELECT message_id FROM outbox WHERE id = b.progress_outbox_id), "
            " MAX(b.total, COALESCE(b.expected, 0)) "
            "FROM broadcasts b LEFT JOIN outbox o ON o.broadcast_id = b.id "
            "WHERE b.id = ? GROUP BY b.id",
            (broadcast_id,),
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else BroadcastProgress(*row)

    async def expect_part(self, broadcast_id: int, job_key: str) -> None:
        """The job with this key will add the broadcast's next part (queued in parts)."""
        await self._conn.execute(
            "UPDATE broadcasts SET next_part_key = ? WHERE id = ?", (job_key, broadcast_id)
        )

    async def next_part(self, broadcast_id: int) -> NextPart | None:
        """The job that adds the broadcast's next part; None when it was queued whole, or
        the job has been forgotten."""
        async with self._conn.execute(
            "SELECT s.status, s.due_at, s.attempts FROM broadcasts b JOIN schedules s "
            "ON s.key = b.next_part_key WHERE b.id = ?",
            (broadcast_id,),
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else NextPart(str(row[0]), int(row[1]), int(row[2]))

    async def status(self, broadcast_id: int) -> str | None:
        """'running', 'done' or 'cancelled' (stopped by its organiser); None if unknown."""
        async with self._conn.execute(
            "SELECT status FROM broadcasts WHERE id = ?", (broadcast_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def running_about(self, subject: str, kinds: Sequence[str]) -> list[int]:
        """The broadcasts of these kinds about `subject` (e.g. "panel:7") still running."""
        async with self._conn.execute(
            "SELECT id FROM broadcasts WHERE subject = ? AND status = 'running' "
            "AND kind IN (SELECT value FROM json_each(?)) ORDER BY id",
            (subject, json.dumps(list(kinds))),
        ) as cursor:
            rows = await cursor.fetchall()
        return [int(r[0]) for r in rows]

    async def cancel(self, broadcast_id: int, now: int) -> int:
        """Stop a running broadcast: what is still queued is cancelled; returns how many."""
        cursor = await self._conn.execute(
            "UPDATE outbox SET status = 'cancelled', last_error = 'cancelled by the organiser', "
            "payload = NULL WHERE broadcast_id = ? AND status = 'pending'",
            (broadcast_id,),
        )
        await self._conn.execute(
            "UPDATE broadcasts SET status = 'cancelled', finished_at = ? "
            "WHERE id = ? AND status = 'running'",
            (now, broadcast_id),
        )
        return cursor.rowcount

    async def finish(self, broadcast_id: int, now: int) -> None:
        await self._conn.execute(
            "UPDATE broadcasts SET status = 'done', finished_at = ? "
            "WHERE id = ? AND status = 'running'",
            (now, broadcast_id),
        )
