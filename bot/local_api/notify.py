"""Change notification so coroutines can wait for conditions on the server's state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class Notifier:
    """Wakes every waiter on each state change; waiters re-check their own predicate.

    Broadcasting to all is deliberately simple: the server holds test-sized state, so
    re-evaluating a few predicates per change is cheaper than per-condition bookkeeping.
    Must be used from the event loop thread.
    """

    def __init__(self) -> None:
        self._events: list[asyncio.Event] = []

    def notify(self) -> None:
        """Signal that shared state changed."""
        events, self._events = self._events, []
        for event in events:
            event.set()

    async def wait_next(self, max_wait: float | None = None) -> bool:
        """Wait for the next notify(); False on timeout."""
        event = asyncio.Event()
        self._events.append(event)
        try:
            await asyncio.wait_for(event.wait(), max_wait)
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._events.remove(event)
        return True

    async def wait_until(self, predicate: Callable[[], bool], max_wait: float | None) -> bool:
        """Wait until predicate() holds; returns its final value when the timeout passes."""
        loop = asyncio.get_running_loop()
        deadline = None if max_wait is None else loop.time() + max_wait
        while not predicate():
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            await self.wait_next(remaining)
        return True
