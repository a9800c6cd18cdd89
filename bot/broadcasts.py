"""The broadcast engine: one message to many people, at Telegram's pace, that survives crashes.

A broadcast is a batch of broadcast-priority outbox rows written in one transaction, so:
replies and safeguarding answers always overtake it; the paced sender keeps it within
Telegram's limits (429 pauses everything, 403 marks the person unreachable, 5xx and timeouts
retry); and after a crash it resumes where it was, repeating at most what was in flight.
The organiser sees one message, edited in place with progress, with a button to stop it.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import aiosqlite
from babel.dates import format_timedelta
from babel.numbers import format_decimal

from bot.access import access_of
from bot.rendering import Catalogs, fill
from state_machines.engine import Engine
from storage.broadcasts import BroadcastProgress, Broadcasts
from storage.clock import Clock
from storage.database import Database
from storage.people import Recipient, reachable_with_consent
from storage.queues import PRIORITY_REPLY, Inbox, Job, Outbox, Schedules
from storage.staff import AuditLog

log = logging.getLogger(__name__)

PROGRESS_JOB = "broadcast_progress"
CANCEL_PREFIX = "bc:"  # callback data of the organiser's stop button: "bc:<broadcast id>"
_PROGRESS_EVERY_MS = 5_000


class BroadcastService:
    """Starts, reports on and stops broadcasts."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        engine: Engine,
        catalogs: Catalogs,
        rate_per_second: float,
        on_queued: Callable[[], None],
    ) -> None:
        self._db = db
        self._clock = clock
        self._engine = engine
        self._catalogs = catalogs
        self._rate = rate_per_second
        self._on_queued = on_queued

    async def start(
        self,
        kind: str,
        subject: str,
        region: str | None,
        created_by: str,
        messages: Sequence[tuple[int, dict[str, Any]]],
        organiser: tuple[int, str] | None = None,
    ) -> int:
        """Queue one message per (chat id, payload) as one broadcast. `organiser` is the
        (chat id, locale) that gets the progress message, if any."""
        now = self._clock.now_ms()
        async with self._db.transaction() as conn:
            broadcast_id = await self.queue_in(
                conn, kind, subject, region, created_by, messages, organiser, now
            )
        self._on_queued()
        return broadcast_id

    async def start_for_region(
        self,
        kind: str,
        subject: str,
        region: str,
        purpose: str,
        created_by: str,
        payload_for: Callable[[Recipient], dict[str, Any]],
        organiser: tuple[int, str] | None = None,
    ) -> int:
        """Broadcast to everyone in `region` who can be reached and said yes to `purpose`,
        chosen inside the same transaction that queues the messages (so someone who
        withdraws a moment before is never included), and audited."""
        now = self._clock.now_ms()
        async with self._db.transaction() as conn:
            recipients = await reachable_with_consent(conn, region, purpose)
            messages = [(r.chat_id, payload_for(r)) for r in recipients]
            broadcast_id = await self.queue_in(
                conn, kind, subject, region, created_by, messages, organiser, now
            )
        self._on_queued()
        return broadcast_id

    async def queue_in(
        self,
        conn: aiosqlite.Connection,
        kind: str,
        subject: str,
        region: str | None,
        created_by: str,
        messages: Sequence[tuple[int, dict[str, Any]]],
        organiser: tuple[int, str] | None,
        now: int,
        expected: int | None = None,
        outbox_kind: str = "message",
    ) -> int:
        """Queue a broadcast inside the caller's transaction (e.g. with the panel it
        invites people to): the broadcast row, its messages, the organiser's progress
        message and the first progress report, audited. The caller wakes the sender after
        its commit (`wake`). `expected`: how many it is for in all, when `messages` is its
        first part and the rest follow (`next_part_later`). `outbox_kind` "edit": each
        message edits one already sent (a panel's invitations corrected)."""
        broadcasts = Broadcasts(conn)
        chat_id = organiser[0] if organiser else None
        broadcast_id = await broadcasts.create(
            kind, subject, region, created_by, messages, chat_id, now, expected, outbox_kind
        )
        if organiser is not None:
            progress = await broadcasts.progress(broadcast_id)
            assert progress is not None
            payload = self._progress_payload(progress, organiser[1])
            outbox_id = await Outbox(conn).enqueue(
                organiser[0], PRIORITY_REPLY, "message", payload, now
            )
            await broadcasts.attach_progress_message(broadcast_id, outbox_id)
        await self._schedule_tick(conn, broadcast_id, organiser, now)
        await AuditLog(conn).record(
            created_by,
            "broadcast.started",
            f"broadcast:{broadcast_id}",
            {
                "kind": kind,
                "subject": subject,
                "region": region or "",
                "recipients": str(len(messages) if expected is None else expected),
            },
            now,
        )
        log.info(
            "broadcast %d (%s) queued: %d messages of %d",
            broadcast_id,
            kind,
            len(messages),
            len(messages) if expected is None else expected,
        )
        return broadcast_id

    async def queue_more(
        self,
        conn: aiosqlite.Connection,
        broadcast_id: int | None,
        kind: str,
        subject: str,
        region: str | None,
        created_by: str,
        messages: Sequence[tuple[int, dict[str, Any]]],
        now: int,
    ) -> int:
        """The next part of a broadcast queued in parts (a check-in round, a panel's
        invitations: a whole region in one transaction would hold the database lock for
        seconds): added to `broadcast_id` while it runs, else queued as a new broadcast
        (the first part, or the broadcast was stopped). Returns the broadcast's id."""
        if broadcast_id is not None and (
            not messages or await Broadcasts(conn).add_messages(broadcast_id, messages, now)
        ):
            return broadcast_id
        return await self.queue_in(conn, kind, subject, region, created_by, messages, None, now)

    async def next_part_later(
        self,
        conn: aiosqlite.Connection,
        broadcast_id: int,
        kind: str,
        key: str,
        payload: dict[str, Any],
        now: int,
    ) -> None:
        """The next part of a broadcast queued in parts, as a job of its own due now (a
        check-in round, a panel's invitations, an update's deliveries). The broadcast is
        not finished while that job is still to run, even if all queued so far has gone
        (it may be retried minutes later after a failure)."""
        await Schedules(conn).add(kind, key, now, payload, now)
        await Broadcasts(conn).expect_part(broadcast_id, key)
        # Wake the scheduler now, inside the transaction: its first read waits for the one
        # lock, and whoever takes it next commits this transaction first, so the job is
        # there when it looks. (After a staff member's update, nothing else would wake it.)
        self._on_queued()

    async def was_stopped(self, conn: aiosqlite.Connection, broadcast_id: int) -> bool:
        """Whether the organiser stopped this broadcast ("Stop sending"): a broadcast queued
        in parts then queues no more parts (`queue_more` would start a new broadcast)."""
        return await Broadcasts(conn).status(broadcast_id) == "cancelled"

    async def stop_about(
        self,
        conn: aiosqlite.Connection,
        subject: str,
        kinds: Sequence[str],
        stopped_by: str,
        now: int,
    ) -> int:
        """Stop the running broadcasts of `kinds` about `subject`, because what they
        announce is off (a panel called off): nothing still queued is sent and no further
        part is queued; each organiser's progress message says so at its next tick.
        Audited; returns how many messages were not sent."""
        broadcasts = Broadcasts(conn)
        not_sent = 0
        for broadcast_id in await broadcasts.running_about(subject, kinds):
            cancelled = await broadcasts.cancel(broadcast_id, now)
            not_sent += cancelled
            await AuditLog(conn).record(
                stopped_by,
                "broadcast.stopped",
                f"broadcast:{broadcast_id}",
                {"not_sent": str(cancelled), "because": subject},
                now,
            )
            log.info("broadcast %d stopped; %d messages not sent", broadcast_id, cancelled)
        return not_sent

    def wake(self) -> None:
        """Wake the sender and the scheduler for what a committed transaction queued."""
        self._on_queued()

    async def stop_requested(
        self, update_id: int, broadcast_id: int, pseudonym: str, chat_id: int, locale: str
    ) -> bool:
        """The organiser tapped "Stop sending". The person who started the broadcast, staff
        of its region and admins may stop it (audited); anyone else (e.g. with forged button
        data) is told it is not available, and nothing changes. Returns whether it stopped."""
        now = self._clock.now_ms()
        async with self._db.transaction() as conn:
            if await Inbox(conn).status(update_id) != "pending":
                return False
            broadcasts = Broadcasts(conn)
            progress = await broadcasts.progress(broadcast_id)
            allowed = progress is not None and (
                progress.created_by == pseudonym
                or (await access_of(conn, pseudonym)).is_staff_in(progress.region or "")
            )
            if allowed:
                cancelled = await broadcasts.cancel(broadcast_id, now)
                await AuditLog(conn).record(
                    pseudonym,
                    "broadcast.stopped",
                    f"broadcast:{broadcast_id}",
                    {"not_sent": str(cancelled)},
                    now,
                )
                await self._schedule_tick(conn, broadcast_id, (chat_id, locale), now - 5_000)
                log.info("broadcast %d stopped; %d messages not sent", broadcast_id, cancelled)
            else:
                text = self._catalogs.gettext(locale, self._engine.message("not_available"))
                await Outbox(conn).enqueue(chat_id, PRIORITY_REPLY, "message", {"text": text}, now)
            await Inbox(conn).mark_handled(update_id, now)
        self._on_queued()
        return allowed

    async def progress(self, broadcast_id: int) -> BroadcastProgress | None:
        async with self._db.read() as conn:
            return await Broadcasts(conn).progress(broadcast_id)

    async def on_progress_tick(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """Scheduled every few seconds while a broadcast runs: edit the organiser's message
        (when what it says has changed), and finish the broadcast once nothing is left to
        send and no part of it is still to come."""
        broadcast_id = int(job.payload["broadcast_id"])
        locale = str(job.payload.get("locale") or "en")
        broadcasts = Broadcasts(conn)
        progress = await broadcasts.progress(broadcast_id)
        if progress is None:
            return
        incomplete = False
        shows_progress = (
            progress.progress_chat_id is not None and progress.progress_message_id is not None
        )
        emptied = progress.status == "running" and progress.pending == 0
        # Read only when it matters: a round's ticks (no organiser's message) run every few
        # seconds for as long as its parts go out.
        next_part = await broadcasts.next_part(broadcast_id) if shows_progress or emptied else None
        next_status = None if next_part is None else next_part.status
        if emptied:
            if next_status != "pending":
                await broadcasts.finish(broadcast_id, now)
                progress = await broadcasts.progress(broadcast_id)
                assert progress is not None
            if next_status == "failed":  # the rest were never queued: say so, not "Finished"
                incomplete = True
                log.error(
                    "broadcast %d finished without its next part: %d of %d queued",
                    broadcast_id,
                    progress.total,
                    progress.planned,
                )
        shown: int | None = job.payload.get("shown")
        if progress.progress_chat_id is not None and progress.progress_message_id is not None:
            # A part that failed waits for its retry (1, 2, 4, 8 minutes), or is due and
            # about to run again.
            retry_in_ms: int | None = None
            if next_part is not None and next_status == "pending" and next_part.attempts:
                retry_in_ms = max(0, next_part.due_at - now)
            payload = self._progress_payload(progress, locale, incomplete, retry_in_ms)
            # The same text again (e.g. while a failed part waits minutes for its retry)
            # would be an edit Telegram refuses as "not modified": not sent.
            text_now = zlib.crc32(json.dumps(payload, sort_keys=True).encode())
            if text_now != shown:
                payload["message_id"] = progress.progress_message_id
                await Outbox(conn).enqueue(
                    progress.progress_chat_id, PRIORITY_REPLY, "edit", payload, now
                )
                shown = text_now
        if progress.status == "running":
            organiser = (
                None if progress.progress_chat_id is None else (progress.progress_chat_id, locale)
            )
            await self._schedule_tick(conn, broadcast_id, organiser, now, shown)

    async def _schedule_tick(
        self,
        conn: aiosqlite.Connection,
        broadcast_id: int,
        organiser: tuple[int, str] | None,
        now: int,
        shown: int | None = None,
    ) -> None:
        """The next progress tick. `shown`: a checksum of what the organiser's message
        says now, so the tick edits it only when that changes."""
        due = now + _PROGRESS_EVERY_MS
        payload: dict[str, Any] = {
            "broadcast_id": broadcast_id,
            "locale": organiser[1] if organiser else "en",
        }
        if shown is not None:
            payload["shown"] = shown
        await Schedules(conn).add(
            PROGRESS_JOB, f"{PROGRESS_JOB}:{broadcast_id}:{due}", due, payload, now
        )

    def _progress_payload(
        self,
        progress: BroadcastProgress,
        locale: str,
        incomplete: bool = False,
        retry_in_ms: int | None = None,
    ) -> dict[str, Any]:
        """The organiser's progress message, e.g. "Sending: 1,240 of 5,000 sent...".
        `incomplete`: finished because a part could not be queued (given up).
        `retry_in_ms`: how long until the next part, which failed, is tried again."""
        key = {"running": "broadcast_sending", "done": "broadcast_done"}.get(
            progress.status, "broadcast_cancelled"
        )
        if incomplete:
            key = "broadcast_incomplete"
        # Running, stopped or cut short, the whole broadcast (its parts still to come too);
        # finished, what was queued in the end (someone may have withdrawn before their part).
        total = progress.planned if incomplete or progress.status != "done" else progress.total
        # What is queued goes out meanwhile; the rest once the next part has run.
        queued_s = progress.pending / self._rate
        rest_s = (progress.planned - progress.total) / self._rate
        eta_seconds = max(1.0, max(queued_s, (retry_in_ms or 0) / 1000) + rest_s)
        if retry_in_ms is not None:
            # Whole minutes while a retry is awaited: "About 8 minutes left" counts down a
            # minute at a time, an edit a minute, not one every tick (nor "1 second" when
            # the retry is due and the tick runs first).
            eta_seconds = max(1, round(eta_seconds / 60)) * 60
        params = {
            "sent": format_decimal(progress.sent, locale=locale),
            "total": format_decimal(total, locale=locale),
            "unreachable": format_decimal(progress.unreachable, locale=locale),
            "eta": format_timedelta(timedelta(seconds=eta_seconds), locale=locale),
        }
        text = fill(self._catalogs.gettext(locale, self._engine.message(key)), params)
        payload: dict[str, Any] = {"text": text}
        if progress.status == "running":
            label = self._catalogs.gettext(locale, self._engine.message("broadcast_stop_button"))
            payload["buttons"] = [
                [{"text": label, "callback_data": f"{CANCEL_PREFIX}{progress.id}"}]
            ]
        return payload
