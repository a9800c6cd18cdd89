"""The paced sender: drains the durable outbox by priority within Telegram's limits.

- Priority is re-read from the database before every send, so a reply queued behind a
  thousand broadcasts goes next, not last.
- A global pace (about 30 messages a second) and a per-chat window (about 1 a second, short
  bursts allowed) keep Telegram from answering 429; if it still does, the whole sender
  pauses for `retry_after` and the message stays queued.
- 403 means the person blocked the bot: they are marked unreachable and their queue cancelled.
- A message is marked sent only after Telegram confirmed it, so a crash can repeat at most
  the messages that were in flight, never lose one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections import deque
from datetime import timedelta
from typing import Any

from telegram import Bot, InputFile
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot import error_reporting
from storage.clock import Clock
from storage.database import Database
from storage.people import People
from storage.queues import STALE_AT, Outbox, OutgoingMessage

log = logging.getLogger(__name__)

_CANDIDATES = 64
# Group commit of sends: at most this long, or this many, between commits. A crash repeats
# at most what was in flight plus what was confirmed since the last commit.
_FLUSH_EVERY_S = 0.05
FLUSH_AT = 32
_OWN_FAULT_TRIES = 5
DEFAULT_CONCURRENCY = 8
_MAX_BACKOFF_S = 300.0
# The errors of network trouble (the names `_retry_later` records): once a send goes
# through again, messages waiting after one of them go at once (`_after_outage`).
_NETWORK_ERRORS = ("TimedOut", "NetworkError")
# At most this often: a failure that is not an outage (one chat's sends failing) would
# otherwise be retried at the pace of everyone else's successes.
_BRING_FORWARD_EVERY_S = 60.0
# Only what still has longer than this to wait: a stumble's short backoff (seconds) is
# fine; an outage's (minutes, up to _MAX_BACKOFF_S) is what keeps people waiting.
_BRING_FORWARD_BEYOND_S = 30.0
# Telegram's 400s for an edit whose message is no longer there to edit.
_EDIT_GONE = ("message to edit not found", "message can't be edited")


def retry_after_seconds(error: RetryAfter) -> float:
    """The wait Telegram asked for (PTB gives int seconds or a timedelta by version)."""
    value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# The same refusal of Telegram is sent to Sentry at most this often (each is logged).
_ALERT_AGAIN_AFTER_S = 600.0


class ChatPacer:
    """At most `burst` sends to one chat in any `window` seconds (Telegram: ~1/s per chat).

    Only chats that have used up their burst are tracked as blocked, so asking which chats
    must wait costs nothing per chat that merely received a message recently."""

    def __init__(self, burst: int = 3, window: float = 3.5) -> None:
        self.burst = burst
        self.window = window
        self._sent: dict[int, deque[float]] = {}
        self._blocked_until: dict[int, float] = {}
        self._pruned_at = 0.0

    def wait_time(self, chat_id: int, now: float) -> float:
        until = self._blocked_until.get(chat_id, 0.0)
        return until - now if until > now else 0.0

    def record(self, chat_id: int, now: float) -> None:
        history = self._sent.setdefault(chat_id, deque())
        while history and now - history[0] >= self.window:
            history.popleft()
        history.append(now)
        if len(history) >= self.burst:
            self._blocked_until[chat_id] = history[0] + self.window
        if now - self._pruned_at >= self.window:
            self._prune(now)

    def busy_chats(self, now: float) -> set[int]:
        """Chats that must wait before their next message."""
        return {chat for chat, until in self._blocked_until.items() if until > now}

    def _prune(self, now: float) -> None:
        """Forget chats with nothing in the window (memory stays bounded by the pace)."""
        self._pruned_at = now
        self._sent = {c: h for c, h in self._sent.items() if now - h[-1] < self.window}
        self._blocked_until = {c: u for c, u in self._blocked_until.items() if u > now}


class OutboxSender:
    """Sends what the outbox holds, most urgent first, until stopped."""

    def __init__(
        self,
        db: Database,
        bot: Bot,
        clock: Clock,
        rate_per_second: float = 28.0,
        concurrency: int = DEFAULT_CONCURRENCY,
        pacer: ChatPacer | None = None,
    ) -> None:
        self._db = db
        self._bot = bot
        self._clock = clock
        self._interval = 1.0 / rate_per_second
        self._pacer = pacer or ChatPacer()
        self._concurrency = concurrency
        self._wake = asyncio.Event()
        self._in_flight: set[int] = set()  # chat ids with a send under way
        self._held_back: dict[int, float] = {}  # chat id -> monotonic time it may go again
        # A send failed for network trouble since the last one went through (`_after_outage`).
        self._network_trouble = False
        self._brought_forward_at = -_BRING_FORWARD_EVERY_S  # monotonic time it was last done
        self._alerted: dict[str, float] = {}  # refusal -> monotonic time it was last alerted
        self._deliveries: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        # The most urgent pending rows, read in one query and used until something new is
        # queued (wake) or they run out: one query per batch, not per message.
        self._candidates: deque[OutgoingMessage] = deque()
        self._stale = True
        # Sent and confirmed by Telegram, not yet committed as sent: one commit (one fsync)
        # for many messages instead of one each.
        # outbox id -> (Telegram message id, the row's version as sent)
        self._unrecorded: dict[int, tuple[int | None, int]] = {}
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._stopping = False
        self.sent_count = 0

    def wake(self) -> None:
        """Something was queued or cancelled: read the outbox again before the next send, so
        a reply queued now goes before the broadcast rows already read."""
        self._stale = True
        self._wake.set()

    def start(self) -> asyncio.Task[None]:
        """Start sending in the background; `stop()` ends it cleanly."""
        self._runner = asyncio.create_task(self._run(), name="sender")
        self._flusher = asyncio.create_task(self._flush_regularly(), name="sender-flush")
        return self._runner

    async def stop(self) -> None:
        """Stop choosing messages, then wait for every send already under way to finish
        and be recorded (so nothing confirmed by Telegram is sent again after a restart)."""
        self._stopping = True
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._deliveries:
            await asyncio.wait(set(self._deliveries))
        if self._flusher is not None:
            # Not cancelled: it may be inside a transaction. It sees _stopping and ends.
            await asyncio.gather(self._flusher, return_exceptions=True)
        try:
            await self._flush()
        except Exception as exc:  # those rows stay pending: resent (once) after the restart
            log.error("recording the last sent messages failed (%s)", type(exc).__name__)

    async def _run(self) -> None:
        while not self._stopping:
            # Cleared before looking, so a wake-up that arrives while we look is not lost.
            self._wake.clear()
            if len(self._deliveries) >= self._concurrency:
                await self._sleep(1.0)
                continue
            if len(self._unrecorded) >= FLUSH_AT:
                # Back-pressure: never more confirmed-but-unrecorded sends than FLUSH_AT (the
                # most a crash could repeat), even while the database cannot be written.
                await self._flush_or_wait()
                continue
            chosen, wait = await self._choose()
            if chosen is None:
                await self._sleep(wait)
                continue
            self._in_flight.add(chosen.chat_id)
            try:
                await self._pace_globally()
            except BaseException:
                self._in_flight.discard(chosen.chat_id)
                raise
            self._pacer.record(chosen.chat_id, time.monotonic())
            task = asyncio.create_task(self._deliver(chosen))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _choose(self) -> tuple[OutgoingMessage | None, float]:
        """The most urgent message whose chat may be sent to now, or how long to wait."""
        now = time.monotonic()
        pause = self._paused_until - now
        if pause > 0:
            return None, pause
        busy = {chat for chat, until in self._held_back.items() if until > now}
        busy |= self._in_flight | self._pacer.busy_chats(now)
        now_ms = self._clock.now_ms()
        next_retry = None
        if self._stale or not self._candidates:
            async with self._db.read(quick=True) as conn:
                outbox = Outbox(conn)
                # Busy chats, and a chat's messages held back by one at least as urgent that
                # waits for a retry, are left out in SQL: one chat with a long queue never
                # blocks everyone else, and the safety signpost goes past a stuck broadcast.
                fetched = await outbox.most_urgent(_CANDIDATES, now_ms, sorted(busy))
                next_retry = None if fetched else await outbox.next_retry_time(now_ms)
            # A row confirmed but not yet committed is still "pending" in the table.
            self._candidates = deque(m for m in fetched if m.id not in self._unrecorded)
            self._stale = False
        blocked: set[int] = set()
        for index, message in enumerate(self._candidates):
            # A chat's messages go in order: if its first one must wait, so do the rest.
            if message.chat_id in busy or message.chat_id in blocked:
                blocked.add(message.chat_id)
                continue
            del self._candidates[index]
            return message, 0.0
        self._stale = True
        waits = [5.0, *(until - now for until in self._held_back.values() if until > now)]
        waits += [self._pacer.wait_time(chat, now) for chat in busy]
        if next_retry is not None:
            waits.append((next_retry - now_ms) / 1000)
        return None, max(0.01, min(w for w in waits if w > 0))

    async def _flush_regularly(self) -> None:
        while not self._stopping:
            await asyncio.sleep(_FLUSH_EVERY_S)
            try:
                await self._flush()
            except Exception as exc:  # kept in memory; the next flush tries again
                log.error("recording sent messages failed (%s)", type(exc).__name__)

    async def _flush(self) -> None:
        """Commit every confirmed send as sent, in one transaction (one flush at a time)."""
        async with self._flush_lock:
            if not self._unrecorded:
                return
            batch = [(key, sent, version) for key, (sent, version) in self._unrecorded.items()]
            async with self._db.transaction(quick=True) as conn:
                await Outbox(conn).mark_sent_many(batch, self._clock.now_ms())
            for message_id, _, _ in batch:
                self._unrecorded.pop(message_id, None)

    async def _flush_or_wait(self) -> None:
        try:
            await self._flush()
        except Exception as exc:
            log.error("recording sent messages failed (%s); sending waits", type(exc).__name__)
            await asyncio.sleep(1.0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _pace_globally(self) -> None:
        now = time.monotonic()
        self._next_slot = max(self._next_slot, now)
        delay = self._next_slot - now
        self._next_slot += self._interval
        if delay > 0:
            await asyncio.sleep(delay)

    async def _deliver(self, message: OutgoingMessage) -> None:
        try:
            await self._deliver_outcome(message)
        except Exception as exc:
            # The send's outcome could not be recorded (e.g. the database is briefly
            # unavailable): hold this chat back for a while instead of resending at once.
            hold = min(_MAX_BACKOFF_S, 5.0 * 2 ** min(message.attempts, 6))
            self._held_back[message.chat_id] = time.monotonic() + hold
            log.error(
                "recording a send failed (%s); chat held back %.0f s", type(exc).__name__, hold
            )
        finally:
            self._in_flight.discard(message.chat_id)
            self._wake.set()  # a slot is free (the rows already read stay valid)

    async def _attempt(self, message: OutgoingMessage) -> None:
        try:
            telegram_id = await self._call(message)
        except BaseException:
            # Not sent: this row is still first in its chat's queue, so rows of the same
            # chat already read must not overtake it. Read the outbox again.
            self._stale = True
            raise
        else:
            # Recorded by the next group commit (within _FLUSH_EVERY_S); until then the row
            # is known here as sent, so it is never chosen again.
            self._unrecorded[message.id] = (telegram_id, message.version)
            self._held_back.pop(message.chat_id, None)
            self.sent_count += 1
            if len(self._unrecorded) >= FLUSH_AT:
                await self._flush_or_wait()

    async def _deliver_outcome(self, message: OutgoingMessage) -> None:
        """Send one message and deal with every way Telegram can answer."""
        stale_at = message.payload.get(STALE_AT)
        if isinstance(stale_at, int) and self._clock.now_ms() >= stale_at:
            # Its moment passed while it waited (Telegram out of reach for hours): "your
            # panel is tomorrow" the day after would be worse than nothing.
            async with self._db.transaction() as conn:
                await Outbox(conn).cancel_one(message.id, "its moment passed before it could go")
            log.info("a message was not sent: its moment passed while it waited")
            return
        try:
            await self._attempt(message)
        except RetryAfter as exc:
            seconds = retry_after_seconds(exc)
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
            log.warning("Telegram asked us to wait %.0f s; the whole sender pauses", seconds)
        except Forbidden:
            await self._unreachable(message.chat_id)
        except BadRequest as exc:
            if "chat not found" in exc.message.lower():  # the account is gone: as a 403
                await self._unreachable(message.chat_id)
            else:
                await self._bad_request(message, exc)
        except (TimedOut, NetworkError) as exc:
            # python-telegram-bot reports 413 (a file over Telegram's limit) as a network
            # error: trying again cannot help, and the retries would hold the chat back.
            too_large = "too large" in str(exc).lower()
            self._network_trouble = self._network_trouble or not too_large
            await self._retry_later(message, type(exc).__name__, 3 if too_large else None)
        except InvalidToken:
            # Nothing can be sent, but nothing is wrong with the messages: keep them all.
            # The poller fails the same way, which stops the process (runtime.supervise).
            self._paused_until = time.monotonic() + 3600
            log.error("Telegram refused our credentials (401); the sender stops")
        except TelegramError as exc:
            # Permanent for this message (e.g. the chat migrated).
            async with self._db.transaction() as conn:
                await Outbox(conn).mark_failed(message.id, self._clock.now_ms(), type(exc).__name__)
            log.error("Telegram refused an outbox message for good (%s)", type(exc).__name__)
        except Exception as exc:
            # A fault in our own payload (not Telegram's answer): retrying will not help
            # for long, so it is given up after a few tries rather than block the chat.
            log.debug("own fault sending an outbox message", exc_info=True)
            await self._retry_later(message, type(exc).__name__, give_up_after=_OWN_FAULT_TRIES)
        else:
            if self._network_trouble:
                await self._after_outage()

    async def _call(self, message: OutgoingMessage) -> int | None:
        payload = message.payload
        if message.kind == "message" and "photo" in payload:
            picture = base64.b64decode(payload["photo"]["content_b64"])
            sent = await self._bot.send_photo(
                message.chat_id,
                InputFile(picture, filename="chart.png"),
                caption=payload.get("text"),
            )
            return sent.message_id
        if message.kind == "message" and "document" in payload:
            document = payload["document"]
            sent = await self._bot.send_document(
                message.chat_id,
                InputFile(str(document["content"]).encode("utf-8"), filename=document["filename"]),
                caption=payload.get("text"),
            )
            return sent.message_id
        # Text messages and edits go through `_post`, the call `send_message` and
        # `edit_message_text` make themselves, so that Telegram's answer is not built into a
        # Message object only for its id: that was a tenth of the CPU in the inbound
        # benchmark (bench/RESULTS.md). Errors are mapped exactly as before.
        if message.kind == "message":
            sent = await self._bot._post(
                "sendMessage",
                {
                    "chat_id": message.chat_id,
                    "text": payload["text"],
                    "reply_markup": _reply_markup(payload),
                },
            )
            return int(sent["message_id"])
        if message.kind == "edit":
            await self._bot._post(
                "editMessageText",
                {
                    "chat_id": message.chat_id,
                    "message_id": payload["message_id"],
                    "text": payload["text"],
                    "reply_markup": _markup(payload.get("buttons")),
                },
            )
            return int(payload["message_id"])
        if message.kind == "leave":
            await self._bot.leave_chat(message.chat_id)
            return None
        raise ValueError(f"unknown outbox kind {message.kind!r}")

    async def _unreachable(self, chat_id: int) -> None:
        """403 (the person blocked the bot), or 400 "chat not found" (their account is
        gone): stop sending to them until they write again."""
        async with self._db.transaction() as conn:
            await People(conn).set_reachable(chat_id, False, self._clock.now_ms())
            cancelled = await Outbox(conn).cancel_chat(chat_id, "403: blocked by the person")
        log.info("a chat blocked the bot; %d queued messages cancelled", cancelled)

    async def _bad_request(self, message: OutgoingMessage, exc: BadRequest) -> None:
        now = self._clock.now_ms()
        async with self._db.transaction() as conn:
            refusal = exc.message.lower()
            if "not modified" in refusal:
                await Outbox(conn).mark_sent(message.id, now, None)
            elif message.kind == "edit" and any(gone in refusal for gone in _EDIT_GONE):
                # The person deleted the message (or the chat's history): nothing to
                # correct, and no fault of ours to report.
                await Outbox(conn).mark_failed(message.id, now, f"400: {exc.message[:200]}")
                log.info("an edit found its message gone; given up")
            elif message.kind == "leave" or message.chat_id < 0:
                # A group the bot was added to, where it may not post its "private chats
                # only" (or has left already): nobody needed that message. Not an alert: a
                # stranger adding the bot to groups would bury the real ones.
                await Outbox(conn).mark_failed(message.id, now, f"400: {exc.message[:200]}")
                log.info("a group refused the bot's goodbye; given up")
            else:
                await Outbox(conn).mark_failed(message.id, now, f"400: {exc.message[:200]}")
                # A message someone needed is lost (an answer, a safety alert): ours to fix.
                # Each such refusal once in ten minutes: one bad broadcast to thousands must
                # not use up the Sentry quota and hide the next safety alert.
                said = (
                    f"Telegram refused an outbox message ({message.kind} kind, priority "
                    f"{message.priority}): {exc.message[:200]}"
                )
                last = self._alerted.get(said)
                if last is None or time.monotonic() - last >= _ALERT_AGAIN_AFTER_S:
                    self._alerted[said] = time.monotonic()
                    error_reporting.alert(said)
                else:
                    log.error("%s (again)", said)

    async def _after_outage(self) -> None:
        """Telegram answers again after network trouble: what waits to try again after it
        for more than half a minute more goes now, not at the end of its backoff (up to
        five minutes, replies and safety messages among them). Each chat's messages still
        go in order."""
        self._network_trouble = False
        if time.monotonic() - self._brought_forward_at < _BRING_FORWARD_EVERY_S:
            return  # a chat whose sends keep failing is not tried again with every success
        self._brought_forward_at = time.monotonic()
        now = self._clock.now_ms()
        async with self._db.transaction() as conn:
            brought = await Outbox(conn).retry_now(
                _NETWORK_ERRORS, now, now + int(_BRING_FORWARD_BEYOND_S * 1000)
            )
        if brought:
            log.info("Telegram answers again: %d messages held back by it go now", brought)
            self._stale = True
            self._wake.set()

    async def _retry_later(
        self, message: OutgoingMessage, error: str, give_up_after: int | None = None
    ) -> None:
        """Keep the message and try again with a growing delay (network trouble is never
        given up; our own faults are, after `give_up_after` tries)."""
        now = self._clock.now_ms()
        if give_up_after is not None and message.attempts + 1 >= give_up_after:
            async with self._db.transaction() as conn:
                await Outbox(conn).mark_failed(message.id, now, error)
            log.error("an outbox message failed %d times (%s); given up", give_up_after, error)
            return
        delay = min(_MAX_BACKOFF_S, 2.0 ** min(message.attempts, 9))
        async with self._db.transaction() as conn:
            await Outbox(conn).retry_later(message.id, now + int(delay * 1000), error)
        log.warning("sending failed (%s); retrying in %.0f s", error, delay)


# Keyboards are written as the Bot API's JSON, not built as python-telegram-bot objects that
# `_post` turns straight back into the same dicts (object construction was the largest part
# of python-telegram-bot's CPU in the inbound benchmark, bench/FINDINGS.md).
Markup = dict[str, Any]


def _reply_markup(payload: dict[str, Any]) -> Markup | None:
    """Inline buttons; or Telegram's own "share my phone number" button (the number then
    comes from Telegram, typed by no one); or taking that button away again."""
    if payload.get("contact_button"):
        button = {"text": str(payload["contact_button"]), "request_contact": True}
        return {"keyboard": [[button]], "resize_keyboard": True, "one_time_keyboard": True}
    if payload.get("remove_keyboard"):
        return {"remove_keyboard": True}
    return _markup(payload.get("buttons"))


def _markup(rows: list[list[dict[str, Any]]] | None) -> Markup | None:
    if not rows:
        return None
    return {
        "inline_keyboard": [
            [{"text": b["text"], "callback_data": b["callback_data"]} for b in row] for row in rows
        ]
    }
