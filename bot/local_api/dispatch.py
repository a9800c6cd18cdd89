"""The request pipeline: authenticate, decode, record, inject faults, enforce limits, answer."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Any

from aiohttp import web

from ._json import ChatId, JsonDict, Params
from .errors import ApiError, forbidden
from .faults import Faults
from .limits import SEND_METHODS, RateLimiter
from .methods_control import CONTROL_HANDLERS
from .methods_messages import MESSAGE_HANDLERS, Handler
from .parsing import chat_id_of, read_params
from .records import CallRecord, Outcome
from .state import ApiState

_LOG = logging.getLogger(__name__)
_HANDLERS: dict[str, tuple[str, Handler]] = {
    name.lower(): (name, handler)
    for name, handler in {**MESSAGE_HANDLERS, **CONTROL_HANDLERS}.items()
}
# Calls that write into a chat and so fail when the user blocked the bot.
_CHAT_WRITE_PREFIXES = ("send", "edit", "copymessage", "forwardmessage")


class _Dropped(Exception):
    """A held call released with deliver=False: the connection 'dies' unanswered."""


def _json_response(status: int, body: JsonDict) -> web.Response:
    return web.json_response(body, status=status)


class CallDispatcher:
    """Turns HTTP requests into Bot API answers and keeps the call log."""

    def __init__(self, state: ApiState, faults: Faults, limiter: RateLimiter | None) -> None:
        self._state = state
        self._faults = faults
        self._limiter = limiter
        self.calls: list[CallRecord] = []
        self.too_many_requests_count = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler for ``/bot{token}/{method}``."""
        name = request.match_info["method"]
        method = _HANDLERS.get(name.lower(), (name, None))[0]
        if not hmac.compare_digest(
            request.match_info["token"].encode(), self._state.token.encode()
        ):
            return self._reject(method, ApiError(401, "Unauthorized"))
        try:
            params = await read_params(request)
        except ApiError as err:
            return self._reject(method, err)
        except web.HTTPRequestEntityTooLarge:
            return self._reject(method, ApiError(413, "Request Entity Too Large"))
        return await self._answer(request, method, params)

    def _reject(self, method: str, err: ApiError) -> web.Response:
        record = CallRecord(method, {}, time.monotonic(), None)
        self.calls.append(record)
        self._finish(record, "error", err.status, err.description)
        return _json_response(err.status, err.payload())

    async def _answer(
        self, request: web.Request, method: str, params: Params
    ) -> web.StreamResponse:
        record = CallRecord(method, params, time.monotonic(), chat_id_of(params))
        self.calls.append(record)
        try:
            result = await self._process(method, params, record.chat_id)
        except ApiError as err:
            self._finish(record, "error", err.status, err.description)
            return _json_response(err.status, err.payload())
        except _Dropped:
            self._finish(record, "dropped", None, None)
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=502)
        except asyncio.CancelledError:
            self._finish(record, "dropped", None, None)
            raise
        except Exception:
            # Keep serving; the traceback has no message text or token in it.
            _LOG.exception("local Bot API handler for %s failed", method)
            self._finish(record, "error", 500, "Internal Server Error")
            return _json_response(500, ApiError(500).payload())
        self._finish(record, "ok", 200, None)
        return _json_response(200, {"ok": True, "result": result})

    def _finish(
        self, record: CallRecord, outcome: Outcome, status: int | None, description: str | None
    ) -> None:
        record.outcome, record.status, record.description = outcome, status, description
        # No chat id: in the sandbox this line lands in the bot's log, which never holds ids.
        _LOG.debug("call %s -> %s %s", record.method, outcome, status)
        self._state.notifier.notify()

    async def _process(self, method: str, params: Params, chat_id: ChatId | None) -> Any:
        entry = _HANDLERS.get(method.lower())
        if entry is None:
            raise ApiError(404, "Not Found: method not found")
        hold = self._faults.take_hold(method, chat_id, params)
        if hold is not None and not await hold.outcome():
            raise _Dropped
        delay = self._faults.delay_for(method, chat_id)
        # The delay ends early on shutdown so stop() never waits for slow answers.
        if delay > 0 and await self._state.notifier.wait_until(lambda: self._state.closing, delay):
            raise _Dropped
        failure = self._faults.take_failure(method, chat_id)
        if failure is not None:
            raise failure
        if self._faults.take_drop(method, chat_id, after_processing=False):
            raise _Dropped
        # Send handlers never suspend, so a limit check and its record can't interleave.
        self._check_writable(method, chat_id)
        limited = self._limited_chat(method, chat_id)
        result = await entry[1](self._state, params)
        if limited is not None and self._limiter is not None:
            self._limiter.record(chat_id, limited, time.monotonic())
        if self._faults.take_drop(method, chat_id, after_processing=True):
            raise _Dropped  # done, but the answer never reaches the caller
        return result

    def _check_writable(self, method: str, chat_id: ChatId | None) -> None:
        if not method.lower().startswith(_CHAT_WRITE_PREFIXES):
            return
        chat = self._state.find_chat(chat_id)
        if self._faults.is_blocked(chat_id) or (chat is not None and chat.kicked):
            raise forbidden()
        if chat is not None and chat.left:
            raise forbidden("bot is not a member of the group chat")

    def _limited_chat(self, method: str, chat_id: ChatId | None) -> bool | None:
        """None when the call is not rate limited, else whether the chat is private."""
        if self._limiter is None or method.lower() not in SEND_METHODS:
            return None
        chat = self._state.find_chat(chat_id)
        is_private = chat is None or chat.is_private
        retry_after = self._limiter.retry_after(chat_id, is_private, time.monotonic())
        if retry_after is not None:
            self.too_many_requests_count += 1
            raise ApiError(429, retry_after=retry_after)
        return is_private
