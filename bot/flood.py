"""Slowing down one person who floods the bot, without storing what they flood it with.

Per chat, at most `limit` updates in each fixed window of `window_s` seconds are handled.
Beyond that an update is marked handled without being read (the inbox drops its payload),
so neither its text nor any reply to it is kept; the first one dropped in a window gets one
short "slow down" message, later ones nothing. Others are untouched: the per-chat lock in
`PerChatUpdateProcessor` already keeps a flood from taking their concurrency slots, and a
dropped update costs one small transaction instead of a dialogue step and a reply.

Time is when the person *sent* the message (Telegram's `date`), not when it reached us, so a
backlog delivered at once after downtime (or replayed from the inbox at start) is not taken
for a flood. Callback queries carry no date of their own; their arrival time is used.
Fixed windows (not sliding) make the count independent of the order updates arrive in.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from datetime import datetime

from telegram import Update

# A person tapping and typing as fast as they can stays well below 30 in 10 s; a script or a
# held-down key does not. Generous on purpose: a false positive loses a real answer.
DEFAULT_LIMIT = 30
DEFAULT_WINDOW_S = 10.0
# Forget windows this old; the table then holds only chats active in the last minute or so.
_KEEP_WINDOWS = 3
_SWEEP_EVERY = 1_000


class Verdict(enum.Enum):
    HANDLE = "handle"
    WARN = "warn"  # the first update over the limit in this window: say "slow down" once
    DROP = "drop"


class FloodGate:
    """Counts updates per chat and window; says whether to handle one."""

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        window_s: float = DEFAULT_WINDOW_S,
        now: Callable[[], float] = time.time,
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a flood limit needs at least 1 update in a positive window")
        self._limit = limit
        self._window_s = window_s
        self._now = now
        self._counts: dict[tuple[int, int], int] = {}
        # An update tried again (a database fault, a restart) is not counted again: it keeps
        # the verdict it had, or a few retries would push a person's real answers over.
        self._decided: dict[int, tuple[int, Verdict]] = {}  # update id -> (window, verdict)
        self._checks = 0

    def check(
        self, chat_key: int, sent_at: float | None = None, update_id: int | None = None
    ) -> Verdict:
        """Count one update of `chat_key`, sent at `sent_at` (epoch seconds; arrival time
        when None); an `update_id` already counted gets its first verdict again."""
        if update_id is not None and update_id in self._decided:
            return self._decided[update_id][1]
        self._checks += 1
        if self._checks % _SWEEP_EVERY == 0:
            self._sweep()
        now = self._now()
        # Never later than now: a window in the future would never be swept.
        window = int((now if sent_at is None else min(sent_at, now)) // self._window_s)
        key = (chat_key, window)
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        verdict = Verdict.HANDLE
        if count > self._limit:
            verdict = Verdict.WARN if count == self._limit + 1 else Verdict.DROP
        if update_id is not None:
            self._decided[update_id] = (window, verdict)
        return verdict

    def excuse(self, chat_key: int, update_id: int) -> None:
        """Take back the count of an update let through after all (a STOP, a number shared
        for the duty staff), so it neither counts towards the limit nor uses up the
        window's one "slow down": the next one over the limit still gets it."""
        decided = self._decided.pop(update_id, None)
        if decided is None:
            return
        key = (chat_key, decided[0])
        if self._counts.get(key, 0) > 0:
            self._counts[key] -= 1

    def tracked(self) -> int:
        """How many (chat, window) counters are held (memory stays bounded)."""
        return len(self._counts)

    def _sweep(self) -> None:
        oldest = int(self._now() // self._window_s) - _KEEP_WINDOWS
        for key in [k for k in self._counts if k[1] < oldest]:
            del self._counts[key]
        for update_id in [u for u, (window, _) in self._decided.items() if window < oldest]:
            del self._decided[update_id]


def sent_at(update: Update) -> float | None:
    """When the person sent this update (epoch seconds), if Telegram says."""
    message = update.message or update.edited_message
    if message is None:
        return None
    stamp: datetime | None = message.edit_date if update.edited_message else message.date
    return stamp.timestamp() if stamp is not None else None
