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
import contextlib
import logging
import time
from collections import defaultdict, deque
from datetime import timedelta
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from storage.clock import Clock
from storage.database import Database
from storage.people import People
from storage.queues import Outbox, OutgoingMessage

log = logging.getLogger(__name__)

_CANDIDATES = 200
_MAX_BACKOFF_S = 300.0


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class ChatPacer:
    """At most `burst` sends to one chat in any `window` seconds (Telegram: ~1/s per chat)."""

    def __init__(self, burst: int = 3, window: float = 3.5) -> None:
        self.burst = burst
        self.window = window
        self._sent: defaultdict[int, deque[float]] = defaultdict(deque)

    def wait_time(self, chat_id: int, now: float) -> float:
        history = self._sent.get(chat_id)
        if not history:
            return 0.0
        while history and now - history[0] >= self.window:
            history.popleft()
        if not history:
            del self._sent[chat_id]
            return 0.0
        return 0.0 if len(history) < self.burst else self.window - (now - history[0])

    def record(self, chat_id: int, now: float) -> None:
        self._sent[chat_id].append(now)


class OutboxSender:
    """Sends what the outbox holds, most urgent first, until stopped."""

    def __init__(
        self,
        db: Database,
        bot: Bot,
        clock: Clock,
        rate_per_second: float = 28.0,
        concurrency: int = 8,
        pacer: ChatPacer | None = None,
    ) -> None:
        self._db = db
        self._bot = bot
        self._clock = clock
        self._interval = 1.0 / rate_per_second
        self._pacer = pacer or ChatPacer()
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._in_flight: set[int] = set()  # chat ids with a send under way
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._stopping = False
        self.sent_count = 0

    def wake(self) -> None:
        """Something was queued: look at the outbox again now."""
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            await self._slots.acquire()
            try:
                chosen, wait = await self._choose()
            except BaseException:
                self._slots.release()
                raise
            if chosen is None:
                self._slots.release()
                await self._sleep(wait)
                continue
            self._in_flight.add(chosen.chat_id)
            await self._pace_globally()
            self._pacer.record(chosen.chat_id, time.monotonic())
            task = asyncio.create_task(self._deliver(chosen))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop choosing new messages and let the ones in flight finish."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)

    async def _choose(self) -> tuple[OutgoingMessage | None, float]:
        """The most urgent message whose chat may be sent to now, or how long to wait."""
        pause = self._paused_until - time.monotonic()
        if pause > 0:
            return None, pause
        now_ms = self._clock.now_ms()
        async with self._db.read() as conn:
            candidates = await Outbox(conn).most_urgent(_CANDIDATES)
        wait = 1.0 if len(candidates) >= _CANDIDATES else 5.0
        seen: set[int] = set()
        now = time.monotonic()
        for message in candidates:
            # Only the first pending message of each chat may go, so a chat's messages
            # keep their order even when one of them waits for a retry.
            if message.chat_id in seen:
                continue
            seen.add(message.chat_id)
            if message.chat_id in self._in_flight:
                continue
            if message.not_before > now_ms:
                wait = min(wait, (message.not_before - now_ms) / 1000)
                continue
            chat_wait = self._pacer.wait_time(message.chat_id, now)
            if chat_wait > 0:
                wait = min(wait, chat_wait)
                continue
            return message, 0.0
        return None, max(wait, 0.01)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
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
            telegram_id = await self._call(message)
        except RetryAfter as exc:
            seconds = _seconds(exc.retry_after)
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
            log.warning("Telegram asked us to wait %.0f s; the whole sender pauses", seconds)
        except Forbidden:
            await self._unreachable(message.chat_id)
        except BadRequest as exc:
            await self._bad_request(message, exc)
        except (NetworkError, TelegramError) as exc:
            await self._retry_later(message, type(exc).__name__)
        else:
            async with self._db.transaction() as conn:
                await Outbox(conn).mark_sent(message.id, self._clock.now_ms(), telegram_id)
            self.sent_count += 1
        finally:
            self._in_flight.discard(message.chat_id)
            self._slots.release()
            self._wake.set()

    async def _call(self, message: OutgoingMessage) -> int | None:
        payload = message.payload
        if message.kind == "message":
            sent = await self._bot.send_message(
                message.chat_id, payload["text"], reply_markup=_markup(payload.get("buttons"))
            )
            return sent.message_id
        if message.kind == "edit":
            await self._bot.edit_message_text(
                payload["text"],
                chat_id=message.chat_id,
                message_id=payload["message_id"],
                reply_markup=_markup(payload.get("buttons")),
            )
            return int(payload["message_id"])
        if message.kind == "leave":
            await self._bot.leave_chat(message.chat_id)
            return None
        raise ValueError(f"unknown outbox kind {message.kind!r}")

    async def _unreachable(self, chat_id: int) -> None:
        """403: the person blocked the bot. Stop sending to them until they write again."""
        async with self._db.transaction() as conn:
            await People(conn).set_reachable(chat_id, False, self._clock.now_ms())
            cancelled = await Outbox(conn).cancel_chat(chat_id, "403: blocked by the person")
        log.info("a chat blocked the bot; %d queued messages cancelled", cancelled)

    async def _bad_request(self, message: OutgoingMessage, exc: BadRequest) -> None:
        now = self._clock.now_ms()
        async with self._db.transaction() as conn:
            if "not modified" in exc.message.lower():
                await Outbox(conn).mark_sent(message.id, now, None)
            else:
                await Outbox(conn).mark_failed(message.id, now, f"400: {exc.message[:200]}")
                log.error(
                    "Telegram refused an outbox message (%s kind): %s",
                    message.kind,
                    exc.message[:200],
                )

    async def _retry_later(self, message: OutgoingMessage, error: str) -> None:
        """Network trouble: keep the message and try again with a growing delay."""
        delay = min(_MAX_BACKOFF_S, 2.0 ** min(message.attempts, 9))
        retry_at = self._clock.now_ms() + int(delay * 1000)
        async with self._db.transaction() as conn:
            await Outbox(conn).retry_later(message.id, retry_at, error)
        log.warning("sending failed (%s); retrying in %.0f s", error, delay)


def _markup(rows: list[list[dict[str, Any]]] | None) -> InlineKeyboardMarkup | None:
    if not rows:
        return None
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(b["text"], callback_data=b["callback_data"]) for b in row]
            for row in rows
        ]
    )
