"""Webhook mode: Telegram POSTs each update; it is stored in the inbox before we answer 200.

The secret header is compared in constant time. A missing or wrong secret gets 403 before
the body is read: nothing is processed, stored or logged. Telegram retries anything that is
not a 2xx, so answering only after the inbox commit means a crash loses nothing.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass

from aiohttp import web

from bot.ingest import Ingest

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Telegram's updates are small; anything larger is not an update.
_MAX_BODY_BYTES = 1_000_000


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: str
    host: str
    port: int
    path: str


class WebhookReceiver:
    """An aiohttp server with one route: the webhook path."""

    def __init__(self, config: WebhookConfig, ingest: Ingest) -> None:
        self._config = config
        self._ingest = ingest
        self._secret = config.secret.encode()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_post(self._config.path, self.receive)
        # No access log: it would record every request, including refused ones.
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._config.host, self._config.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._config.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def receive(self, request: web.Request) -> web.Response:
        """One update from Telegram."""
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            return web.Response(status=403)
        try:
            raw = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400)
        if not isinstance(raw, dict) or not isinstance(raw.get("update_id"), int):
            return web.Response(status=400)
        await self._ingest.store([raw])
        return web.Response(status=200)
