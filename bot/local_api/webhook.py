"""Webhook delivery: POST queued updates to the bot's URL like Telegram does.

Updates of one chat go out one at a time in order; different chats run concurrently
up to max_connections. An update is confirmed only by a 2xx answer; anything else is
retried with a doubling backoff kept short so tests stay fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass

import aiohttp

from ._json import JsonDict
from .notify import Notifier
from .updates import PendingUpdate, UpdateQueue

_LOG = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@dataclass(slots=True)
class WebhookConfig:
    """What setWebhook configured."""

    url: str
    secret_token: str | None
    max_connections: int


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff between failed deliveries of the same update."""

    initial: float = 0.2
    maximum: float = 2.0
    request_timeout: float = 10.0


class WebhookDispatcher:
    """Runs while a webhook is set; stops (leaving updates queued) when it is deleted."""

    def __init__(self, queue: UpdateQueue, notifier: Notifier, policy: RetryPolicy) -> None:
        self._queue = queue
        self._notifier = notifier
        self._policy = policy
        self.config: WebhookConfig | None = None
        self.last_error_date: int | None = None
        self.last_error_message: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._deliveries: dict[int, asyncio.Task[None]] = {}

    @property
    def active(self) -> bool:
        """Whether a webhook is set."""
        return self.config is not None

    async def set(self, config: WebhookConfig) -> None:
        """Replace any current webhook and start delivering."""
        await self.delete()
        self.config = config
        self._session = aiohttp.ClientSession()
        self._loop_task = asyncio.create_task(self._run(), name="local-bot-api-webhook")

    async def delete(self) -> None:
        """Stop delivering; in-flight updates stay unconfirmed."""
        self.config = None
        tasks = [*self._deliveries.values()]
        if self._loop_task is not None:
            tasks.append(self._loop_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._deliveries.clear()
        self._loop_task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def info(self) -> JsonDict:
        """Bot API ``WebhookInfo``."""
        info: JsonDict = {
            "url": self.config.url if self.config else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._queue),
        }
        if self.config is not None:
            info["max_connections"] = self.config.max_connections
        if self._queue.allowed_updates:
            info["allowed_updates"] = list(self._queue.allowed_updates)
        if self.last_error_date is not None:
            info["last_error_date"] = self.last_error_date
            info["last_error_message"] = self.last_error_message
        return info

    async def _run(self) -> None:
        while True:
            self._start_ready()
            await self._notifier.wait_next()

    def _start_ready(self) -> None:
        config = self.config
        if config is None:
            return
        waiting_keys: set[str] = set()
        for entry in self._queue.pending:
            if len(self._deliveries) >= config.max_connections:
                return
            # A chat's later update waits while an earlier one is still pending.
            if entry.order_key in waiting_keys:
                continue
            waiting_keys.add(entry.order_key)
            if entry.seq not in self._deliveries:
                self._deliveries[entry.seq] = asyncio.create_task(self._deliver(entry))

    async def _deliver(self, entry: PendingUpdate) -> None:
        delay = self._policy.initial
        try:
            while not await self._post(entry):
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._policy.maximum)
            self._queue.remove(entry)
        finally:
            self._deliveries.pop(entry.seq, None)
            self._notifier.notify()

    async def _post(self, entry: PendingUpdate) -> bool:
        config, session = self.config, self._session
        if config is None or session is None:
            return False
        headers = {"Content-Type": "application/json"}
        if config.secret_token:
            headers[SECRET_HEADER] = config.secret_token
        timeout = aiohttp.ClientTimeout(total=self._policy.request_timeout)
        try:
            async with session.post(
                config.url, data=json.dumps(entry.payload), headers=headers, timeout=timeout
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return True
                self._note_error(
                    f"Wrong response from the webhook: {response.status} {response.reason}"
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._note_error(f"Connection failed: {type(exc).__name__}")
        return False

    def _note_error(self, message: str) -> None:
        self.last_error_date = int(time.time())
        self.last_error_message = message
        # The URL may embed a secret path, so only the failure kind is logged.
        _LOG.info("webhook delivery failed: %s", message)
