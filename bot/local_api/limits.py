"""Telegram's flood limits, enforced with sliding windows.

Telegram documents roughly 30 messages per second overall, about one message per
second per private chat (short bursts tolerated) and 20 messages per minute per group.
We model the per-chat rule as "at most ``per_chat_burst`` sends in any
``per_chat_window`` seconds" (default 3 in 3 s): the long-run rate is 1/s while a
short burst of 3 replies passes, which matches what bots observe in practice.
Only sends that succeed consume quota; a 429 does not, but while its retry_after runs
every limited call is refused (TELEGRAM.md: "during it every call fails"), so a sender
that paused only the chat concerned, or came back early, meets 429s here as it would
there. Edits count as sends: Telegram throttles them alike.
"""

from __future__ import annotations

import math
from collections import deque

from ._json import ChatId

# Methods that post or change a message and therefore count against the flood limits.
SEND_METHODS = frozenset(
    {
        "editmessagetext",
        "editmessagereplymarkup",
        "editmessagecaption",
        "sendmessage",
        "senddocument",
        "sendphoto",
        "sendsticker",
        "sendvoice",
        "sendaudio",
        "sendvideo",
        "sendanimation",
        "sendmediagroup",
        "sendlocation",
        "sendcontact",
        "sendpoll",
        "senddice",
        "sendvideonote",
        "copymessage",
        "forwardmessage",
    }
)
_GROUP_WINDOW = 60.0


class SlidingWindow:
    """At most ``limit`` events in any ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._stamps: deque[float] = deque()

    def wait_needed(self, now: float) -> float:
        """Seconds until one more event fits (0 when it fits now)."""
        while self._stamps and self._stamps[0] <= now - self.window:
            self._stamps.popleft()
        if len(self._stamps) < self.limit:
            return 0.0
        return self._stamps[0] + self.window - now

    def add(self, now: float) -> None:
        """Record one event."""
        self._stamps.append(now)


class RateLimiter:
    """Global, per-private-chat and per-group windows."""

    def __init__(
        self, global_rate: float, per_chat_burst: int, per_chat_window: float, group_per_minute: int
    ) -> None:
        if global_rate < 1 or per_chat_burst < 1 or per_chat_window <= 0 or group_per_minute < 1:
            raise ValueError("rate limits must be positive")
        self._global = SlidingWindow(int(global_rate), 1.0)
        self._per_chat_burst = per_chat_burst
        self._per_chat_window = per_chat_window
        self._group_per_minute = group_per_minute
        self._chats: dict[ChatId, SlidingWindow] = {}
        self._refusing_until = 0.0  # a 429's retry_after: every limited call is refused

    def retry_after(self, chat_id: ChatId | None, is_private: bool, now: float) -> int | None:
        """Whole seconds to wait (≥1) if a send now would exceed a limit, else None. A
        refusal starts a spell in which every send is refused, whatever its chat."""
        waits = [self._global.wait_needed(now), self._refusing_until - now]
        if chat_id is not None:
            waits.append(self._chat_window(chat_id, is_private).wait_needed(now))
        worst = max(waits)
        if worst <= 0:
            return None
        seconds = max(1, math.ceil(worst))
        self._refusing_until = max(self._refusing_until, now + seconds)
        return seconds

    def record(self, chat_id: ChatId | None, is_private: bool, now: float) -> None:
        """Count a successful send."""
        self._global.add(now)
        if chat_id is not None:
            self._chat_window(chat_id, is_private).add(now)

    def _chat_window(self, chat_id: ChatId, is_private: bool) -> SlidingWindow:
        window = self._chats.get(chat_id)
        if window is None:
            if is_private:
                window = SlidingWindow(self._per_chat_burst, self._per_chat_window)
            else:
                window = SlidingWindow(self._group_per_minute, _GROUP_WINDOW)
            self._chats[chat_id] = window
        return window
