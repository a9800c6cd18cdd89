"""The durable queues: the inbox of received updates, the outbox of messages to send, the
schedule of jobs due at a time, and small named values."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from storage import json_text

PRIORITY_SAFEGUARDING = 0
PRIORITY_REPLY = 1
PRIORITY_BROADCAST = 2

# Telegram keeps an update for at most 24 hours, so a redelivery comes within a day of the
# first delivery. An id last seen longer ago than this belongs to an older update: after a
# week without updates Telegram numbers afresh from a random id, and the new ids may meet
# old ones the inbox still remembers (kept 7 days, pruned daily).
REDELIVERY_WINDOW_MS = 48 * 3_600_000

# Meta key: when the bot last reported itself alive (ms), read by `python -m bot health`.
HEARTBEAT_KEY = "poller_heartbeat_ms"


# What an outbox row keeps of a person once it must forget them (an erasure; the goodbye to
# an erased person once done with): nothing but its id, status and times. Emptied, not
# deleted: the sender records sends in batches, by row id, and a deleted newest row's id is
# given to the next row queued (SQLite reuses the highest rowid), which a late record of the
# old send would then mark sent, never sent. Housekeeping forgets the row with the others.
FORGOTTEN = "chat_id = 0, payload = NULL, message_id = NULL, last_error = NULL"


# A payload key: when (UTC ms) a message stops being true, so is not sent after it (a
# panel's reminder at its start, a check-in's nudge once the check-in has closed).
STALE_AT = "stale_at"


@dataclass(frozen=True)
class PendingUpdate:
    update_id: int
    payload: bytes  # sealed by the application; storage never reads it
    attempts: int
    received_at: int


@dataclass(frozen=True)
class OutgoingMessage:
    id: int
    chat_id: int
    priority: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    not_before: int
    version: int = 0  # moved on when the row is written again (`rewrite_pending`)


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    key: str
    due_at: int
    payload: dict[str, Any]
    attempts: int


class Inbox:
    """Updates are stored here before the getUpdates offset moves past them."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def add(self, update_id: int, payload: bytes, now: int) -> bool:
        """Store an update; False when this update id was seen before (a redelivery).

        An id finished longer ago than the redelivery window is not a redelivery but a new
        update whose id repeats an old one (ids restart after an idle week): the old row
        makes way for it."""
        if await self._insert(update_id, payload, now):
            return True
        cursor = await self._conn.execute(
            "DELETE FROM inbox WHERE update_id = ? AND status <> 'pending' AND received_at < ?",
            (update_id, now - REDELIVERY_WINDOW_MS),
        )
        return cursor.rowcount > 0 and await self._insert(update_id, payload, now)

    async def _insert(self, update_id: int, payload: bytes, now: int) -> bool:
        rows = await self._conn.execute_fetchall(
            "INSERT INTO inbox (update_id, payload, received_at, outbox_mark) "
            "VALUES (?, ?, ?, (SELECT COALESCE(MAX(id), 0) FROM outbox)) "
            "ON CONFLICT (update_id) DO NOTHING RETURNING seq",
            (update_id, payload, now),
        )
        return bool(list(rows))

    async def pending(self) -> list[PendingUpdate]:
        async with self._conn.execute(
            "SELECT update_id, payload, attempts, received_at FROM inbox "
            "WHERE status = 'pending' ORDER BY seq"
        ) as cursor:
            rows = await cursor.fetchall()
        return [PendingUpdate(r[0], bytes(r[1]), r[2], r[3]) for r in rows]

    async def pending_payload(self, update_id: int) -> bytes | None:
        async with self._conn.execute(
            "SELECT payload FROM inbox WHERE update_id = ? AND status = 'pending'", (update_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else bytes(row[0])

    async def status(self, update_id: int) -> str | None:
        # execute_fetchall: one trip to the database thread instead of three (execute,
        # fetch, close) when this runs outside a quick transaction (storage/database.py):
        # the write lock is held across every trip, each waiting for the event loop.
        rows = list(
            await self._conn.execute_fetchall(
                "SELECT status FROM inbox WHERE update_id = ?", (update_id,)
            )
        )
        return str(rows[0][0]) if rows else None

    async def mark_handled(self, update_id: int, now: int) -> None:
        """Done: the payload (which may hold message text) is dropped, the id kept."""
        await self._conn.execute(
            "UPDATE inbox SET status = 'handled', payload = NULL, handled_at = ? "
            "WHERE update_id = ?",
            (now, update_id),
        )

    async def record_failure(self, update_id: int, now: int, give_up_after: int) -> int | None:
        """Count a failed attempt of a pending update. Returns the attempts so far while it
        will be retried; None once it is given up (after `give_up_after` attempts the
        payload is cleared) or when it was not pending."""
        async with self._conn.execute(
            "UPDATE inbox SET attempts = attempts + 1 WHERE update_id = ? AND status = 'pending' "
            "RETURNING attempts",
            (update_id,),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        if int(row[0]) < give_up_after:
            return int(row[0])
        await self._conn.execute(
            "UPDATE inbox SET status = 'failed', payload = NULL, handled_at = ? "
            "WHERE update_id = ?",
            (now, update_id),
        )
        return None

    async def prune(self, before: int, limit: int = -1) -> int:
        """Forget ids of updates finished before `before` (Telegram redelivers for 24 h), at
        most `limit` of them (-1: all)."""
        cursor = await self._conn.execute(
            "DELETE FROM inbox WHERE seq IN (SELECT seq FROM inbox "
            "WHERE status <> 'pending' AND received_at < ? LIMIT ?)",
            (before, limit),
        )
        return cursor.rowcount


class Outbox:
    """Messages to send, drained by priority then age by the paced sender."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def enqueue(
        self,
        chat_id: int,
        priority: int,
        kind: str,
        payload: dict[str, Any],
        now: int,
        not_before: int | None = None,
    ) -> int:
        # One trip to the database thread (see Inbox.status).
        rows = list(
            await self._conn.execute_fetchall(
                "INSERT INTO outbox (chat_id, priority, kind, payload, not_before, created_at) "
                "VALUES (?, ?, ?, seal_payload(?), ?, ?) RETURNING id",
                (
                    chat_id,
                    priority,
                    kind,
                    json_text.dumps(payload),
                    now if not_before is None else not_before,
                    now,
                ),
            )
        )
        assert rows
        return int(rows[0][0])

    async def most_urgent(
        self, limit: int, now: int, skip_chats: list[int] | None = None
    ) -> list[OutgoingMessage]:
        """Pending messages that may go now, most urgent first: priority, then oldest.

        Chats in `skip_chats` (busy, paced) are left out entirely. A message waiting for a
        retry holds back its chat's messages of the same or lower urgency, so each chat's
        messages of a kind keep their order; a more urgent one goes past it (the 999 and
        Samaritans signpost must not wait minutes behind a broadcast that met a network
        fault)."""
        async with self._conn.execute(
            "SELECT o.id, o.chat_id, o.priority, o.kind, open_payload(o.payload), o.attempts, "
            "o.not_before, o.version FROM outbox o WHERE o.status = 'pending' "
            "AND o.chat_id NOT IN (SELECT value FROM json_each(?)) "
            "AND NOT EXISTS (SELECT 1 FROM outbox w WHERE w.chat_id = o.chat_id "
            "  AND w.status = 'pending' AND w.not_before > ? AND w.priority <= o.priority) "
            "ORDER BY o.priority, o.id LIMIT ?",
            (json.dumps(skip_chats or []), now, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            OutgoingMessage(r[0], r[1], r[2], r[3], json_text.loads(r[4]), r[5], r[6], r[7])
            for r in rows
        ]

    async def next_retry_time(self, now: int) -> int | None:
        """When the earliest message waiting for a retry may go."""
        async with self._conn.execute(
            "SELECT MIN(not_before) FROM outbox WHERE status = 'pending' AND not_before > ?",
            (now,),
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    async def sent_after_written(
        self, message_row: int, update_id: int, telegram_message_id: int
    ) -> bool:
        """Whether the message in row `message_row` (a question) reached the person only
        after they wrote the message of update `update_id`: it was queued after that update
        was stored (inbox.outbox_mark), or Telegram numbered it after their message
        (Telegram numbers a chat's messages, both ways, in the order they reach it). One
        sent but not yet recorded as sent when the update was stored counts as before it."""
        async with self._conn.execute(
            "SELECT 1 FROM outbox WHERE id = ? AND status IN ('pending', 'sent') "
            "AND (message_id > ? OR id > COALESCE("
            "(SELECT outbox_mark FROM inbox WHERE update_id = ?), 9223372036854775807))",
            (message_row, telegram_message_id, update_id),
        ) as cursor:
            return await cursor.fetchone() is not None

    async def mark_sent(self, message_id: int, now: int, telegram_message_id: int | None) -> None:
        """Sent: the text is dropped, the Telegram message id kept (for later edits)."""
        await self._conn.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?, message_id = ?, payload = NULL "
            "WHERE id = ? AND chat_id <> 0",
            (now, telegram_message_id, message_id),
        )

    async def _forget_if_last_words(self, message_id: int, status: str) -> None:
        """The goodbye to an erased person keeps nothing of them once it is done with, sent
        or not: emptied to `status` (see `FORGOTTEN`)."""
        await self._conn.execute(
            f"UPDATE outbox SET status = ?, {FORGOTTEN} "
            "WHERE id = ? AND json_extract(payload, '$.forget_chat') IS 1",
            (status, message_id),
        )

    async def mark_sent_many(self, sent: list[tuple[int, int | None, int]], now: int) -> None:
        """`mark_sent` for a batch of (outbox id, Telegram message id, the row's version when
        it was read to be sent). A row written again meanwhile (`rewrite_pending`) is left
        pending, so its new words go too. A message marked `forget_chat` (the last one to a
        person who was erased) is emptied as well, so their chat id is kept nowhere once it
        has gone; an emptied row (chat 0) is given no Telegram message id."""
        await self._conn.executemany(
            f"UPDATE outbox SET status = 'sent', {FORGOTTEN} "
            "WHERE id = ? AND json_extract(payload, '$.forget_chat') IS 1",
            [(message_id,) for message_id, _, _ in sent],
        )
        await self._conn.executemany(
            "UPDATE outbox SET status = 'sent', sent_at = ?, message_id = ?, payload = NULL "
            "WHERE id = ? AND version = ? AND chat_id <> 0",
            [(now, telegram_id, message_id, version) for message_id, telegram_id, version in sent],
        )

    async def retry_now(self, errors: Sequence[str], now: int, beyond: int) -> int:
        """Messages waiting past `beyond` to try again after one of `errors` may go now;
        how many."""
        cursor = await self._conn.execute(
            "UPDATE outbox SET not_before = ? WHERE status = 'pending' AND not_before > ? "
            "AND last_error IN (SELECT value FROM json_each(?))",
            (now, beyond, json.dumps(list(errors))),
        )
        return cursor.rowcount

    async def retry_later(self, message_id: int, not_before: int, error: str) -> None:
        await self._conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, not_before = ?, last_error = ? "
            "WHERE id = ?",
            (not_before, error, message_id),
        )

    async def mark_failed(self, message_id: int, now: int, error: str) -> None:
        await self._forget_if_last_words(message_id, "failed")
        await self._conn.execute(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, sent_at = ?, "
            "last_error = ?, payload = NULL WHERE id = ? AND chat_id <> 0",
            (now, error, message_id),
        )

    async def cancel_one(self, message_id: int, reason: str) -> None:
        """Cancel one pending message (e.g. a reminder whose moment has passed)."""
        await self._forget_if_last_words(message_id, "cancelled")
        await self._conn.execute(
            "UPDATE outbox SET status = 'cancelled', last_error = ?, payload = NULL "
            "WHERE id = ? AND status = 'pending'",
            (reason, message_id),
        )

    async def cancel_chat(self, chat_id: int, reason: str, min_priority: int = 0) -> int:
        """Cancel what is still pending for a chat at `min_priority` or less urgent (e.g. all
        of it when the person blocked the bot, broadcasts only when they said /stop)."""
        await self._conn.execute(
            f"UPDATE outbox SET status = 'cancelled', {FORGOTTEN} "
            "WHERE chat_id = ? AND status = 'pending' "
            "AND json_extract(payload, '$.forget_chat') IS 1",
            (chat_id,),
        )
        cursor = await self._conn.execute(
            "UPDATE outbox SET status = 'cancelled', last_error = ?, payload = NULL "
            "WHERE chat_id = ? AND status = 'pending' AND priority >= ?",
            (reason, chat_id, min_priority),
        )
        return cursor.rowcount

    async def rewrite_pending(self, payloads: Sequence[tuple[int, dict[str, Any]]]) -> int:
        """New payloads for messages still queued, by outbox id (what they say changed
        before they went, e.g. a panel's date); those recorded as sent are left alone. Each
        row's version moves on: one on its way to Telegram with the old words is then not
        recorded as sent, and goes again with the new (`mark_sent_many`). Returns how many
        were rewritten."""
        cursor = await self._conn.executemany(
            "UPDATE outbox SET payload = seal_payload(?), version = version + 1 "
            "WHERE id = ? AND status = 'pending'",
            [(json_text.dumps(payload), outbox_id) for outbox_id, payload in payloads],
        )
        return cursor.rowcount

    async def cancel_broadcasts_to(self, chat_id: int, kinds: Sequence[str], reason: str) -> int:
        """Cancel a chat's messages still queued by broadcasts of these kinds (the person
        said no to what they are for); returns how many."""
        if not kinds:
            return 0
        cursor = await self._conn.execute(
            "UPDATE outbox SET status = 'cancelled', last_error = ?, payload = NULL "
            "WHERE chat_id = ? AND status = 'pending' AND broadcast_id IN "
            "(SELECT id FROM broadcasts WHERE kind IN (SELECT value FROM json_each(?)))",
            (reason, chat_id, json.dumps(list(kinds))),
        )
        return cursor.rowcount

    async def prune(self, before: int, limit: int = -1) -> int:
        """Forget finished rows (sent, failed, cancelled) older than `before`, at most
        `limit` of them (-1: all): a chat id and a time are still data about a person."""
        cursor = await self._conn.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox "
            "WHERE status <> 'pending' AND created_at < ? LIMIT ?)",
            (before, limit),
        )
        return cursor.rowcount

    async def count(self, status: str = "pending", priority: int | None = None) -> int:
        sql = "SELECT COUNT(*) FROM outbox WHERE status = ?"
        args: tuple[Any, ...] = (status,)
        if priority is not None:
            sql += " AND priority = ?"
            args += (priority,)
        async with self._conn.execute(sql, args) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0


class Schedules:
    """Jobs due at a time. Kept in the database so a restart neither loses nor repeats them."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def add(
        self, kind: str, key: str, due_at: int, payload: dict[str, Any], now: int
    ) -> bool:
        """Schedule a job once: False when a job with this key already exists."""
        async with self._conn.execute(
            "INSERT INTO schedules (kind, key, due_at, payload, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING RETURNING id",
            (kind, key, due_at, json.dumps(payload), now),
        ) as cursor:
            return await cursor.fetchone() is not None

    async def add_all(self, jobs: Sequence[tuple[str, str, int, dict[str, Any]]], now: int) -> None:
        """Schedule each (kind, key, due_at, payload) once, in one statement (a keyed job
        that already exists is left as it is)."""
        await self._conn.executemany(
            "INSERT INTO schedules (kind, key, due_at, payload, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            [(kind, key, due_at, json.dumps(payload), now) for kind, key, due_at, payload in jobs],
        )

    async def prune(self, before: int, limit: int = -1) -> int:
        """Forget jobs done before `before`, at most `limit` of them (-1: all); pending and
        failed jobs stay."""
        cursor = await self._conn.execute(
            "DELETE FROM schedules WHERE id IN (SELECT id FROM schedules "
            "WHERE status = 'done' AND done_at < ? LIMIT ?)",
            (before, limit),
        )
        return cursor.rowcount

    async def status_of(self, key: str) -> str | None:
        """The status of the job with this key (pending, done, failed), if there is one."""
        async with self._conn.execute(
            "SELECT status FROM schedules WHERE key = ?", (key,)
        ) as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row else None

    async def pending_under(self, prefix: str) -> bool:
        """Whether a job whose key starts with `prefix` is still to run (a key range, so
        the keys' unique index finds it)."""
        async with self._conn.execute(
            "SELECT EXISTS (SELECT 1 FROM schedules "
            "WHERE key >= ? AND key < ? AND status = 'pending')",
            (prefix, _after_every_key_under(prefix)),
        ) as cursor:
            row = await cursor.fetchone()
        return bool(row and row[0])

    async def failed_under(self, prefix: str) -> int:
        """How many jobs whose key starts with `prefix` were given up (a key range)."""
        async with self._conn.execute(
            "SELECT COUNT(*) FROM schedules WHERE key >= ? AND key < ? AND status = 'failed'",
            (prefix, _after_every_key_under(prefix)),
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def due(self, now: int, limit: int = 100) -> list[Job]:
        async with self._conn.execute(
            "SELECT id, kind, key, due_at, payload, attempts FROM schedules "
            "WHERE status = 'pending' AND due_at <= ? ORDER BY due_at, id LIMIT ?",
            (now, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [Job(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    async def next_due_time(self) -> int | None:
        async with self._conn.execute(
            "SELECT MIN(due_at) FROM schedules WHERE status = 'pending'"
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    async def mark_done(self, job_id: int, now: int) -> None:
        await self._conn.execute(
            "UPDATE schedules SET status = 'done', done_at = ? WHERE id = ?", (now, job_id)
        )

    async def record_failure(
        self, job_id: int, retry_at: int, give_up_after: int | None, now: int
    ) -> None:
        """Count a failed run: due again at `retry_at`, or given up (status 'failed') at
        the `give_up_after`th failure; never given up when None."""
        if give_up_after is None:
            await self._conn.execute(
                "UPDATE schedules SET attempts = attempts + 1, due_at = ? WHERE id = ?",
                (retry_at, job_id),
            )
            return
        await self._conn.execute(
            "UPDATE schedules SET attempts = attempts + 1, due_at = ?, "
            "status = CASE WHEN attempts + 1 >= ? THEN 'failed' ELSE 'pending' END, "
            "done_at = CASE WHEN attempts + 1 >= ? THEN ? ELSE NULL END WHERE id = ?",
            (retry_at, give_up_after, give_up_after, now, job_id),
        )


class Meta:
    """Small named values (e.g. the getUpdates offset)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def get(self, key: str) -> str | None:
        async with self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row else None

    async def set(self, key: str, value: str) -> None:
        await self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def _after_every_key_under(prefix: str) -> str:
    """The least string after every key that starts with `prefix` (its last character
    moved up one): keys in [prefix, this) are a range the keys' unique index finds."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
