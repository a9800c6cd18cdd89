"""LocalBotApi: a local stand-in for api.telegram.org that real Bot API clients can use."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from ._json import ChatId, JsonDict, Params
from .dispatch import CallDispatcher
from .faults import DropRule, FailRule, Faults, Hold
from .injection import UpdateInjector
from .limits import RateLimiter
from .people import BotIdentity
from .records import CallRecord, SentMessage
from .state import ApiState, StateOptions
from .webhook import RetryPolicy

DEFAULT_TOKEN = "123456789:AAtestTOKENtestTOKENtestTOKENtest12"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Telegram accepts uploads up to 50 MB; aiohttp's default body cap is 1 MB.
_MAX_BODY = 50 * 1024 * 1024


class LocalBotApi(UpdateInjector):
    """A Telegram Bot API server on 127.0.0.1 with fault injection and records.

    Point python-telegram-bot at ``base_url`` (and ``base_file_url`` for downloads).
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "yousaid_test_bot",
        *,
        bot_first_name: str = "YouSaid",
        enforce_limits: bool = False,
        global_rate: float = 30.0,
        per_chat_burst: int = 3,
        per_chat_window: float = 3.0,
        group_per_minute: int = 20,
        callback_query_ttl: float = 15.0,
        webhook_retry_initial: float = 0.2,
        webhook_retry_max: float = 2.0,
        first_update_id: int = 1,
    ) -> None:
        bot = BotIdentity.from_token(token, bot_first_name, bot_username)
        retry = RetryPolicy(initial=webhook_retry_initial, maximum=webhook_retry_max)
        self._state = ApiState(token, bot, StateOptions(callback_query_ttl, retry, first_update_id))
        self._faults = Faults()
        limiter = (
            RateLimiter(global_rate, per_chat_burst, per_chat_window, group_per_minute)
            if enforce_limits
            else None
        )
        self._dispatcher = CallDispatcher(self._state, self._faults, limiter)
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port: int | None = None

    def __repr__(self) -> str:
        # No token here: reprs end up in logs.
        return (
            f"LocalBotApi(host={self.host!r}, port={self.port!r}, bot=@{self._state.bot.username})"
        )

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on a loopback address; port 0 picks a free port (see ``port``)."""
        if host not in _LOOPBACK_HOSTS:
            raise ValueError("the local Bot API only listens on loopback addresses")
        if self._runner is not None:
            raise RuntimeError("already started")
        self._state.closing = False
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route("*", "/bot{token}/{method}", self._dispatcher.handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        # access_log=None: request paths contain the bot token.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner, self.host = runner, host
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop webhook delivery, release held calls (dropped) and close the server."""
        self._state.closing = True
        self._state.notifier.notify()
        self._faults.release_all(deliver=False)
        await self._state.webhook.delete()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalBotApi:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """For ``Bot(token, base_url=...)``: PTB appends ``{token}/{method}``."""
        return f"{self._origin()}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``Bot(token, base_file_url=...)``: file downloads."""
        return f"{self._origin()}/file/bot"

    def _origin(self) -> str:
        if self.port is None:
            raise RuntimeError("start() the server first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if not hmac.compare_digest(
            request.match_info["token"].encode(), self._state.token.encode()
        ):
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        stored = self._state.file_by_path(request.match_info["path"])
        if stored is None or stored.content is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        return web.Response(body=stored.content, content_type="application/octet-stream")

    # -- what the bot did ------------------------------------------------------------

    def messages(self, chat_id: int) -> list[SentMessage]:
        """Messages the bot delivered to the chat, in order, reflecting edits.

        Deleted messages stay in the list with ``deleted=True``.
        """
        chat = self._state.chats.get(chat_id)
        return [] if chat is None else sorted(chat.sent.values(), key=lambda m: m.message_id)

    def calls(self, method: str | None = None) -> list[CallRecord]:
        """Every call received (in arrival order), optionally for one method."""
        wanted = method.lower() if method else None
        return [c for c in self._dispatcher.calls if wanted is None or c.method.lower() == wanted]

    # The waits take a timeout argument (not asyncio.timeout) so that a failure can
    # report what did arrive instead of a bare CancelledError/TimeoutError.
    async def wait_for_messages(
        self,
        chat_id: int,
        count: int,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[SentMessage]:
        """Wait until the chat holds at least ``count`` bot messages."""
        if await self._state.notifier.wait_until(
            lambda: len(self.messages(chat_id)) >= count, timeout
        ):
            return self.messages(chat_id)
        raise TimeoutError(self._describe_shortfall(chat_id, count, timeout))

    async def wait_for_calls(
        self,
        method: str,
        count: int,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[CallRecord]:
        """Wait until ``count`` finished calls of ``method`` were received."""

        def done() -> list[CallRecord]:
            return [c for c in self.calls(method) if c.outcome != "pending"]

        if await self._state.notifier.wait_until(lambda: len(done()) >= count, timeout):
            return done()
        raise TimeoutError(
            f"expected {count} finished {method} call(s) within {timeout}s, got {len(done())}"
        )

    def _describe_shortfall(self, chat_id: int, count: int, timeout: float) -> str:
        got = self.messages(chat_id)
        lines = [
            f"expected {count} message(s) in chat {chat_id} within {timeout}s, got {len(got)}:"
        ]
        lines += [f"  #{m.message_id} {m.kind}: {_preview(m)}" for m in got]
        recent = [c for c in self._dispatcher.calls if c.chat_id == chat_id][-10:]
        summary = ", ".join(f"{c.method}→{c.outcome}({c.status})" for c in recent)
        lines.append(f"calls for this chat: {summary or 'none'}")
        return "\n".join(lines)

    @property
    def left_chats(self) -> set[int]:
        """Chats the bot left via leaveChat."""
        return set(self._state.left_chats)

    @property
    def callback_answers(self) -> list[JsonDict]:
        """Params of accepted answerCallbackQuery calls."""
        return list(self._state.callback_answers)

    @property
    def pending_update_count(self) -> int:
        """Updates not yet confirmed by getUpdates offset or a webhook 2xx."""
        return len(self._state.updates)

    def pending_updates(self) -> list[JsonDict]:
        """The unconfirmed updates themselves, oldest first."""
        return [entry.payload for entry in self._state.updates.pending]

    @property
    def too_many_requests_count(self) -> int:
        """429s produced by enforce_limits (not those scripted with fail_next)."""
        return self._dispatcher.too_many_requests_count

    @property
    def webhook_info(self) -> JsonDict:
        """What getWebhookInfo would answer."""
        return self._state.webhook.info()

    # -- faults --------------------------------------------------------------------

    def fail_next(
        self,
        method: str | None = "sendMessage",
        status: int = 429,
        retry_after: int | None = 2,
        times: int = 1,
        chat_id: ChatId | None = None,
        description: str | None = None,
    ) -> FailRule:
        """Answer the next ``times`` matching calls with a Telegram-style error.

        ``method=None`` matches any method; 429 carries ``retry_after``.
        """
        return self._faults.fail_next(method, status, retry_after, times, chat_id, description)

    def block(self, chat_id: ChatId) -> None:
        """Every send/edit to this chat → 403 until unblock()."""
        self._faults.block(chat_id)

    def unblock(self, chat_id: ChatId) -> None:
        """Undo block()."""
        self._faults.unblock(chat_id)

    def set_delay(self, method: str | None, seconds: float, chat_id: ChatId | None = None) -> None:
        """Sleep before answering matching calls (method=None: any; 0 removes)."""
        self._faults.set_delay(method, seconds, chat_id)

    def drop_next(
        self,
        method: str | None = "sendMessage",
        times: int = 1,
        chat_id: ChatId | None = None,
        after_processing: bool = False,
    ) -> DropRule:
        """Cut the connection of the next ``times`` matching calls without an answer:
        before the call takes effect, or (``after_processing``) after it did."""
        return self._faults.drop_next(method, times, chat_id, after_processing)

    def repeat_updates(self, seed: int | None, max_copies: int = 5) -> None:
        """Deliver every new update 1..max_copies times, in shuffled batches (None: off)."""
        self._state.updates.repeat_updates(seed, max_copies)

    @property
    def repeated_deliveries(self) -> int:
        """Extra copies of updates handed out since repeat_updates() was turned on."""
        return self._state.updates.repeated_deliveries

    def restart_update_ids(self, first_update_id: int) -> None:
        """Number the next updates from ``first_update_id`` (ids jump backwards)."""
        self._state.updates.restart_ids(first_update_id)

    def hold(
        self,
        method: str | None = "sendMessage",
        chat_id: ChatId | None = None,
        predicate: Callable[[Params], bool] | None = None,
    ) -> Hold:
        """Hold back the next matching call until ``hold.release(deliver)``."""
        return self._faults.hold(method, chat_id, predicate)


def _preview(msg: SentMessage) -> str:
    # Only for test diagnostics (exception text), never logged by the server itself.
    shown = msg.text if msg.kind == "text" else (msg.caption or msg.file_name or "")
    shown = (shown or "").replace("\n", " ")
    flags = "".join([" (edited)" if msg.edited else "", " (deleted)" if msg.deleted else ""])
    return (shown[:60] + ("…" if len(shown) > 60 else "")) + flags
