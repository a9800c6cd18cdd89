"""python-telegram-bot's HTTP calls made with aiohttp instead of httpx.

Profiling the inbound benchmark (bench/RESULTS.md) showed the bot spending most of its CPU in
httpcore's connection pool: with dozens of updates answering callback queries at once while
the sender sends, every request and every response re-scans the queue of waiting requests and
checks each pooled socket with a system call. The same calls made through an aiohttp
connector cost about a fifth as much (about 5x the calls per second on one core, against
the local Bot API server in the same process). aiohttp is already a dependency (webhook mode
and the local server).

The behaviour python-telegram-bot relies on is kept: timeouts become `TimedOut`, transport
failures `NetworkError`, and the status code and body are handed back for PTB to interpret
(429 -> RetryAfter, 403 -> Forbidden, ...). A proxy named in the environment (HTTPS_PROXY,
HTTP_PROXY and NO_PROXY, as aiohttp reads them; not ALL_PROXY, which httpx also reads) is
honoured, with its credentials from the URL or ~/.netrc.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import JSONDict
from telegram.error import NetworkError, TelegramError, TimedOut
from telegram.request import BaseRequest, RequestData
from yarl import URL

from storage import json_text

_JSON_HEADERS = {"Content-Type": "application/json"}


class AiohttpRequest(BaseRequest):
    """A `BaseRequest` over one aiohttp session with at most `pool_size` connections."""

    def __init__(
        self,
        pool_size: int = 16,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
    ) -> None:
        self._pool_size = pool_size
        self._read_timeout = read_timeout
        # aiohttp has no separate write timeout; a stalled write ends at the read timeout.
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._session: aiohttp.ClientSession | None = None
        # The environment's proxy for each origin, looked up once. aiohttp's own
        # `trust_env=True` looks it up (and reads ~/.netrc) in a worker thread on every
        # request: two thread round trips per call (bench/FINDINGS.md, third round).
        self._proxies: dict[tuple[str, str | None, int | None], _Proxy] = {}

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    @staticmethod
    def parse_json_payload(payload: bytes) -> JSONDict:
        """Telegram's answer, read with orjson (storage/json_text.py). For a successful
        answer PTB's own logs the whole payload when it cannot read it, and a payload holds
        people's messages: this says only that it was unreadable. (An error answer's body
        still goes into PTB's exception message; those are not logged, only their type.)"""
        try:
            parsed: JSONDict = json_text.loads(payload)
        except ValueError:
            try:  # bytes that are not UTF-8 replaced, as PTB reads them
                parsed = json_text.loads(payload.decode("utf-8", "replace"))
            except ValueError:
                raise TelegramError("Invalid server response") from None
        return parsed

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        read = _given(read_timeout, self._read_timeout)
        connect = _given(connect_timeout, self._connect_timeout)
        pool = _given(pool_timeout, self._pool_timeout)
        # aiohttp's `connect` covers waiting for a pooled connection and connecting;
        # `sock_connect` the connecting alone.
        write = _given(write_timeout, self._write_timeout)
        waiting = None if connect is None or pool is None else connect + pool
        # aiohttp has no write timeout (sock_read starts once the body is sent): a bound on
        # the whole call keeps a stalled upload (a report, a /mydata file) from holding a
        # sender slot for ever.
        parts = (waiting, write, read)
        total = None if any(t is None for t in parts) else sum(t or 0.0 for t in parts)
        timeout = aiohttp.ClientTimeout(
            total=total, connect=waiting, sock_connect=connect, sock_read=read
        )
        proxy = await self._proxy_for(url)
        body = _body(request_data)
        headers = {**proxy.headers, **body.pop("headers", {})}
        try:
            async with self._session.request(
                method, url, timeout=timeout, headers=headers or None, **proxy.arguments, **body
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            # The type only: the text of some (a bad URL, redirects) holds the URL, and with
            # it the bot token.
            raise NetworkError(f"aiohttp.{type(exc).__name__}") from exc

    async def _proxy_for(self, url: str) -> _Proxy:
        """The proxy for a request to `url`, from the environment as it was at this
        origin's first request (read in a thread: it may read ~/.netrc)."""
        try:
            target = URL(url)
        except ValueError as exc:  # the type only: the URL holds the bot token
            raise NetworkError(f"yarl.{type(exc).__name__}") from exc
        origin = (target.scheme, target.host, target.port)
        found = self._proxies.get(origin)
        if found is None:
            found = await asyncio.to_thread(_environment_proxy, target)
            self._proxies[origin] = found
        return found


@dataclass(frozen=True)
class _Proxy:
    """Arguments for aiohttp's `request`, and headers to send with the request itself."""

    arguments: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def _environment_proxy(url: URL) -> _Proxy:
    try:
        proxy, auth = get_env_proxy_for_url(url)
    except LookupError:  # no proxy for this scheme, or NO_PROXY names the host
        return _Proxy()
    if auth is None:
        return _Proxy({"proxy": proxy})
    # As a header (aiohttp 3.14 deprecates its proxy_auth argument): on the CONNECT that
    # opens the tunnel for https, so never seen by Telegram; for plain http the proxy
    # receives the request itself, so it goes with the request's own headers.
    credentials = {"Proxy-Authorization": auth.encode()}
    if url.scheme == "https":
        return _Proxy({"proxy": proxy, "proxy_headers": credentials})
    return _Proxy({"proxy": proxy}, credentials)


def _given(value: Any, default: float | None) -> float | None:
    if isinstance(value, DefaultValue):
        return default
    return None if value is None else float(value)


def _body(request_data: RequestData | None) -> dict[str, Any]:
    """A JSON body (the Bot API takes one; aiohttp's form encoding was a tenth of the
    bot's CPU in the inbound benchmark), or multipart when files are attached, with the
    form fields PTB encodes (JSON values)."""
    if request_data is None:
        return {}
    files = request_data.multipart_data
    if not files:
        return {
            "data": json_text.dumps_bytes(request_data.parameters),
            "headers": _JSON_HEADERS,
        }
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, part in files.items():
        filename, content, mimetype = part
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return {"data": form}
