"""Getting updates in without losing any: the inbox comes before the offset moves.

python-telegram-bot's Updater confirms a batch on its next getUpdates call whether or not the
handlers finished, so a `kill -9` could lose what was in flight. YouSaid polls itself instead:
each batch is written to the inbox table in one durable transaction *before* the next
getUpdates call confirms it, and every pending inbox row is handed to the Application again at
start. Redeliveries are recognised by update id (ids are not monotonic after an idle spell).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from telegram import Update
from telegram.error import (
    BadRequest,
    Conflict,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import Application

from bot.secrets_file import Secrets
from bot.sender import retry_after_seconds
from storage import json_text
from storage.clock import Clock
from storage.database import Database
from storage.queues import Inbox, Meta

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 25
# Telegram accepts an answer to a button tap for about 15 s after the tap.
TAP_ANSWER_WINDOW_MS = 15_000
# Per bot: the sandbox's local server and Telegram number updates differently, and an
# offset from one must never confirm (drop) the other's updates.
_OFFSET_KEY = "get_updates_offset:{bot_id}"


# The update kinds YouSaid handles. Asking for no others keeps third parties' data (chat
# member changes, reactions, poll answers) from ever reaching us.
ALLOWED_UPDATES = ("message", "edited_message", "callback_query", "my_chat_member")
# Never needed, so never written to disk: optional fields are dropped; fields the Bot API
# types require are blanked (dropping them would make the update unreadable).
# `reply_markup` is the keyboard of the message a person tapped (our own buttons, which we
# never read back): building its button objects was a third of turning a tap into an
# Update (inbound benchmark profile, bench/FINDINGS.md).
_DROPPED_KEYS = frozenset(
    {"last_name", "username", "bio", "vcard", "author_signature", "reply_markup"}
)
_BLANKED_TEXT = frozenset({"first_name", "phone_number", "sender_user_name", "title"})
_BLANKED_NUMBER = frozenset({"latitude", "longitude"})


def minimise(value: Any) -> Any:
    """A copy of a raw update without names, usernames, phone numbers or places; except the
    person's own phone number when they share it with the contact button after asking for
    contact (safeguarding) - it is relayed once, and the inbox copy is purged when handled."""
    shared = _own_shared_number(value)
    minimised = _minimise(value)
    if shared is not None:
        minimised["message"]["contact"]["phone_number"] = shared
    return minimised


def _own_shared_number(update: Any) -> str | None:
    message = update.get("message") if isinstance(update, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("contact"), dict):
        return None
    contact, sender = message["contact"], message.get("from") or {}
    if contact.get("user_id") is None or contact.get("user_id") != sender.get("id"):
        return None
    number = contact.get("phone_number")
    return number if isinstance(number, str) else None


def _minimise(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: "-" if key in _BLANKED_TEXT else 0.0 if key in _BLANKED_NUMBER else _minimise(item)
            for key, item in value.items()
            if key not in _DROPPED_KEYS
        }
    if isinstance(value, list):
        return [_minimise(item) for item in value]
    return value


class TapAnswers:
    """The answers to button taps under way, which go before handling under a burst.

    After a broadcast thousands of people can tap within seconds. Every tap must be answered
    within ~15 s, and an answer costs a fraction of what handling the tap does, but both
    share one event loop: while many answers are under way, no *new* update starts being
    handled (those started go on), so the answers get the loop first. A steady trickle never
    reaches the threshold, and an update waits at most `MAX_WAIT_S` for the answers. At most
    `AT_ONCE` calls to Telegram are in flight (an answer waiting to try again holds none), so
    replies keep their share of the HTTP pool."""

    THRESHOLD = 32
    MAX_WAIT_S = 2.0
    AT_ONCE = 8
    REPORT_EVERY_S = 10.0

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._few = asyncio.Event()
        self._few.set()
        self._in_flight = asyncio.Semaphore(self.AT_ONCE)
        self._refused = 0
        self._refused_with = ""  # the error type of the last refusal
        self._reported_at = -self.REPORT_EVERY_S

    def add(self, answer: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._answer(answer))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        if len(self._tasks) >= self.THRESHOLD:
            self._few.clear()

    def slot(self) -> asyncio.Semaphore:
        """Held for each call to Telegram (not while an answer waits to try again: a wait
        would keep newer taps from their answers, past Telegram's window)."""
        return self._in_flight

    async def _answer(self, answer: Coroutine[Any, Any, None]) -> None:
        try:
            await answer
        except TelegramError as exc:
            # Under a burst thousands can be refused (too late): counted, reported
            # now and then and at stop, not one line each.
            self._refused += 1
            self._refused_with = type(exc).__name__
            if time.monotonic() - self._reported_at >= self.REPORT_EVERY_S:
                self._report()

    def _report(self) -> None:
        if self._refused:
            log.warning(
                "%d button taps could not be answered since the last report (last: %s)",
                self._refused,
                self._refused_with,
            )
        self._refused, self._reported_at = 0, time.monotonic()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if len(self._tasks) < self.THRESHOLD:
            self._few.set()

    async def let_through(self) -> None:
        """Before an update is handled: wait while many answers are under way (bounded)."""
        if not self._few.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.MAX_WAIT_S):
                    await self._few.wait()

    async def finish(self) -> None:
        """At stop: let the answers already under way finish, and report any refused."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._report()


class Ingest:
    """Writes updates to the inbox, then hands them to the Application for handling."""

    def __init__(
        self,
        db: Database,
        application: Application[Any, Any, Any, Any, Any, Any],
        clock: Clock,
        secrets: Secrets,
        tap_answers: TapAnswers,
        poll_timeout: int = POLL_TIMEOUT_S,
    ) -> None:
        self._db = db
        self._secrets = secrets
        self._application = application
        self._clock = clock
        self._poll_timeout = poll_timeout
        self._stopping = asyncio.Event()
        self.tap_answers = tap_answers

    async def store(self, raw_updates: Sequence[dict[str, Any]], offset: int | None = None) -> int:
        """Durably record a batch (and the next offset, if polling); dispatch the new ones.
        Returns how many were new."""
        fresh: list[dict[str, Any]] = []
        now = self._clock.now_ms()
        async with self._db.transaction(quick=True) as conn:
            inbox = Inbox(conn)
            for raw in map(minimise, raw_updates):
                sealed = self._secrets.encrypt_text(json_text.dumps(raw))
                if await inbox.add(int(raw["update_id"]), sealed, now):
                    fresh.append(raw)
            if offset is not None:
                await Meta(conn).set(self._offset_key(), str(offset))
        for raw in fresh:
            self._answer_tap(raw)
            await self.dispatch(raw)
        return len(fresh)

    def _answer_tap(self, raw: dict[str, Any]) -> None:
        """A button tap is answered (the spinner on the person's button stops) as soon as it
        is stored, not when its turn to be handled comes: after a broadcast thousands of
        taps can queue for longer than Telegram's ~15 s, after which an answer is refused
        and the person watches a spinner. Nothing is promised by the answer, and the tap
        is durable in the inbox already, so nothing is acknowledged before its commit."""
        query = raw.get("callback_query")
        if isinstance(query, dict) and query.get("id"):
            self.tap_answers.add(self._answer(str(query["id"])))

    async def _answer(self, query_id: str) -> None:
        """Answer one tap. Told to wait (429), it waits and tries again while Telegram would
        still take the answer (TAP_ANSWER_WINDOW_MS from now, near enough from the tap):
        unanswered, the person's spinner runs until Telegram gives up. A network failure
        or a 5xx (a blip) is tried again too, half a second on and then longer."""
        give_up_at = time.monotonic() + TAP_ANSWER_WINDOW_MS / 1000
        blip_wait = 0.5
        while True:
            try:
                async with self.tap_answers.slot():
                    await self._application.bot._post(
                        "answerCallbackQuery", {"callback_query_id": query_id}
                    )
                return
            except RetryAfter as exc:
                wait = retry_after_seconds(exc)
                if time.monotonic() + wait >= give_up_at:
                    raise
            except BadRequest:
                raise  # "query is too old": no later try is taken either
            except (TimedOut, NetworkError):
                wait, blip_wait = blip_wait, blip_wait * 2
                if time.monotonic() + wait >= give_up_at:
                    raise
            await asyncio.sleep(wait)

    async def dispatch(self, raw: dict[str, Any]) -> bool:
        """Hand one stored update to the Application (True); one that cannot even be read is
        marked failed rather than allowed to stop the poller (or every later start)."""
        try:
            update = Update.de_json(raw, self._application.bot)
        except Exception as exc:
            log.error("an update could not be read (%s); it is dropped", type(exc).__name__)
            async with self._db.transaction() as conn:
                await Inbox(conn).record_failure(int(raw["update_id"]), self._clock.now_ms(), 1)
            return False
        await self._application.update_queue.put(update)
        return True

    async def redispatch_pending(self) -> int:
        """At start: hand every update stored but not handled to the Application again.

        A tap stored just before a crash may not have been answered, and its person still
        watches the spinner: taps young enough for Telegram to accept an answer are answered
        again (one answered already is refused, and counted, not retried)."""
        async with self._db.read() as conn:
            pending = await Inbox(conn).pending()
        answerable_since = self._clock.now_ms() - TAP_ANSWER_WINDOW_MS
        for item in pending:
            raw = self._open(item.payload)
            if item.received_at >= answerable_since:
                self._answer_tap(raw)
            await self.dispatch(raw)
        return len(pending)

    async def redispatch(self, update_id: int) -> bool:
        """Hand one stored, still pending update to the Application again (a retry)."""
        async with self._db.read() as conn:
            sealed = await Inbox(conn).pending_payload(update_id)
        return sealed is not None and await self.dispatch(self._open(sealed))

    def _open(self, sealed: bytes) -> dict[str, Any]:
        raw: dict[str, Any] = json_text.loads(self._secrets.decrypt_text(sealed))
        return raw

    async def poll(self) -> None:
        """Long-poll getUpdates until stopped. A batch is confirmed (by the next call's
        offset) only after it is in the inbox."""
        async with self._db.read() as conn:
            stored = await Meta(conn).get(self._offset_key())
        offset = int(stored) if stored else None
        failures = 0
        while not self._stopping.is_set():
            try:
                updates = await self._get_updates(offset)
            except RetryAfter as exc:
                await self._pause(retry_after_seconds(exc))
                continue
            except InvalidToken:
                log.error("Telegram refused our credentials (401); polling stops")
                raise
            except (TimedOut, NetworkError, Conflict) as exc:
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning(
                    "getUpdates failed (%s); trying again in %.1f s", type(exc).__name__, delay
                )
                await self._pause(delay)
                continue
            failures = 0
            if not updates:
                continue
            try:
                await self.store(updates, max(int(u["update_id"]) for u in updates) + 1)
            except sqlite3.OperationalError as exc:
                # Another writer held the database past busy_timeout (or the disk is
                # full). Nothing was stored and the offset did not move, so Telegram keeps
                # the batch and the next getUpdates fetches it again: wait, don't die.
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning(
                    "updates could not be stored (%s); trying again in %.1f s",
                    type(exc).__name__,
                    delay,
                )
                await self._pause(delay)
                continue
            offset = max(int(u["update_id"]) for u in updates) + 1

    async def _get_updates(self, offset: int | None) -> list[dict[str, Any]]:
        """getUpdates as Telegram's JSON. `Bot.get_updates` would build Update objects that
        `store` turns straight back into dicts and `dispatch` builds again: in the inbound
        benchmark's profile that round trip was a tenth of the bot's CPU. `_post` is the
        call `get_updates` makes itself (same request object, same error mapping)."""
        result = await self._application.bot._post(
            "getUpdates",
            {
                "offset": offset,
                "timeout": self._poll_timeout,
                "allowed_updates": list(ALLOWED_UPDATES),
            },
            read_timeout=self._poll_timeout + 10,
        )
        return [u for u in result if isinstance(u, dict)] if isinstance(result, list) else []

    def _offset_key(self) -> str:
        return _OFFSET_KEY.format(bot_id=self._application.bot.id)

    def stop(self) -> None:
        self._stopping.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
