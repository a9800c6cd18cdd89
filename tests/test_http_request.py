"""The aiohttp request object honours a proxy named in the environment, as PTB's httpx does.

A real aiohttp server plays the Bot API and another plays an HTTP proxy (an HTTP proxy is
sent the whole URL in the request line), both on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot.http_request import AiohttpRequest

_PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
)


class Recorder:
    """A server that answers every request with `{"ok": true, "result": <its name>}`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[str] = []
        self.proxy_credentials: list[str | None] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def answer(request: web.Request) -> web.Response:
            self.seen.append(f"{request.method} {request.raw_path}")
            self.proxy_credentials.append(request.headers.get("Proxy-Authorization"))
            return web.json_response({"ok": True, "result": self.name})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def servers(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Recorder, Recorder]]:
    for variable in _PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    api, proxy = Recorder("api"), Recorder("proxy")
    await api.start()
    await proxy.start()
    yield api, proxy
    await api.stop()
    await proxy.stop()


async def _call(*urls: str) -> list[str]:
    """POST to each URL with one request object; the name of the server that answered."""
    request = AiohttpRequest()
    await request.initialize()
    answered: list[str] = []
    try:
        for url in urls:
            status, body = await request.do_request(url, "POST")
            assert status == 200
            answered.append(str(json.loads(body)["result"]))
    finally:
        await request.shutdown()
    return answered


async def test_without_a_proxy_calls_go_straight_to_the_api(
    servers: tuple[Recorder, Recorder],
) -> None:
    api, proxy = servers
    assert await _call(f"{api.url}/botTOKEN/getMe") == ["api"]
    assert api.seen == ["POST /botTOKEN/getMe"]
    assert proxy.seen == []


async def test_a_proxy_in_the_environment_is_used_for_every_call(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, proxy = servers
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    answered = await _call(f"{api.url}/botTOKEN/getMe", f"{api.url}/botTOKEN/sendMessage")
    assert answered == ["proxy", "proxy"]
    # The proxy was sent the whole URL; the API itself saw nothing.
    assert proxy.seen == [f"POST {api.url}/botTOKEN/getMe", f"POST {api.url}/botTOKEN/sendMessage"]
    assert api.seen == []


async def test_no_proxy_names_hosts_reached_directly(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, proxy = servers
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert await _call(f"{api.url}/botTOKEN/getMe") == ["api"]
    assert proxy.seen == []


async def test_a_proxy_s_credentials_are_sent_to_the_proxy(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, proxy = servers
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://relay:s3cret@"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. aiohttp's deprecated proxy_auth argument
        assert await _call(f"{api.url}/botTOKEN/getMe") == ["proxy"]
    expected = "Basic " + base64.b64encode(b"relay:s3cret").decode()
    assert proxy.proxy_credentials == [expected]
