"""The one clock everything time-based reads, so tests set time instead of waiting."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch, UTC."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: datetime | None = None) -> None:
        moment = start or datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
        self._now_ms = int(moment.timestamp() * 1000)

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, seconds: float) -> None:
        self._now_ms += int(seconds * 1000)

    def set(self, moment: datetime) -> None:
        self._now_ms = int(moment.timestamp() * 1000)


def to_datetime(ms: int) -> datetime:
    """A stored millisecond timestamp as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
