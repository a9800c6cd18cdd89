"""Sentry for real: the bot process (`python -m bot run`, logging at DEBUG) reports a real
error to a fake Sentry ingestion endpoint on 127.0.0.1, and what arrives carries no message
text, name, token or Telegram id: the whole envelope is searched, not just the fields the
scrubber knows about."""

from __future__ import annotations

import gzip
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.local_api import FakePerson, LocalBotApi
from tests.harness import TOKEN, BotProcess, Chat, eventually, settings_for
from tests.log_privacy import Needles

PROBE = """\
schema_version: 1
id: probe
start: ask
states:
  ask:
    say: What one thing would make probation better for you?
    text: {max_length: 40, to: thanks, store: better}
  thanks:
    say: Thank you for telling us.
    end: true
"""
# Invented: a long name, so the name check has something to find.
GWENDOLYN = FakePerson(
    user_id=700000042, first_name="Gwendolyn", last_name="Pryce", username="gwen_pryce_test"
)
ANSWER = "Rhiannon moved it, ring 07700900461"  # within the 40 letters asked for


class FakeSentry:
    """Accepts envelopes the way Sentry's ingestion does (POST /api/<project>/envelope/)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _envelope(self, request: web.Request) -> web.Response:
        # aiohttp undoes the Content-Encoding (gzip; br too when brotli is installed, and
        # sentry-sdk only uses br then); a still-gzipped body would mean it did not.
        body = await request.read()
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        self.bodies.append(body)
        return web.json_response({"id": "0" * 32})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{project}/envelope/", self._envelope)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    def items(self) -> list[tuple[dict[str, Any], bytes]]:
        """(item header, payload) of every envelope item received."""
        items = []
        for body in self.bodies:
            rest = body.split(b"\n", 1)[1]  # after the envelope header
            while rest.strip():
                header_line, rest = rest.split(b"\n", 1)
                header = json.loads(header_line)
                if "length" in header:
                    payload, rest = rest[: header["length"]], rest[header["length"] + 1 :]
                else:
                    payload, _, rest = rest.partition(b"\n")
                items.append((header, payload))
        return items

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(p) for h, p in self.items() if h.get("type") == "event"]


@pytest.fixture()
async def sentry() -> AsyncIterator[FakeSentry]:
    server = FakeSentry()
    await server.start()
    try:
        yield server
    finally:
        assert server.runner is not None
        await server.runner.cleanup()


async def test_a_real_error_reaches_sentry_without_personal_data(
    api: LocalBotApi, tmp_path: Path, dialogues_copy: Path, sentry: FakeSentry
) -> None:
    (dialogues_copy / "probe.yaml").write_text(PROBE, "utf-8")
    common = dialogues_copy / "common.yaml"
    text = common.read_text("utf-8").replace(
        "commands:\n", "commands:\n  probe:\n    start: probe\n"
    )
    common.write_text(text, "utf-8")
    extra = {
        "DIALOGUES_DIR": str(dialogues_copy),
        "SENTRY_DSN": f"http://public@127.0.0.1:{sentry.port}/42",
    }
    bot = BotProcess(api, tmp_path, **extra)
    chat = Chat(api, GWENDOLYN)
    try:
        await bot.start()
        await chat.start()
        await chat.tap("OK, go on")
        await chat.tap("Yes")  # keep my answers
        assert "better for you" in (await chat.say("/probe")).text
        # A real fault where the answer is stored: the handler's transaction fails.
        database = settings_for(api, tmp_path, **extra).database_path
        with sqlite3.connect(database) as conn:
            conn.execute(
                "CREATE TRIGGER injected_fault BEFORE INSERT ON answers "
                "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            )
        api.send_text(GWENDOLYN, ANSWER)
        await eventually(lambda: bool(sentry.events()))
    finally:
        await bot.terminate()  # the SDK flushes what is left on the way out

    [event, *_] = sentry.events()
    [exception] = event["exception"]["values"]
    assert exception["type"] == "IntegrityError"
    assert exception["stacktrace"]["frames"], "a real traceback arrived"
    assert all("vars" not in frame for frame in exception["stacktrace"]["frames"])
    for key in ("breadcrumbs", "request", "user", "extra", "contexts"):
        assert key not in event, key
    # Still an event Sentry accepts: the scrubbing left the machine-made fields whole.
    assert re.fullmatch("[0-9a-f]{32}", event["event_id"])
    datetime.fromisoformat(event["timestamp"])

    needles = Needles(tokens={TOKEN})
    needles.add_update({"message": {"from": GWENDOLYN.user_json(), "text": ANSWER}})
    assert needles.texts and needles.names and needles.ids  # the check below has teeth
    everything = b"\n".join(sentry.bodies).decode("utf-8", errors="replace")
    assert needles.find(everything) == []
    assert "07700900461" not in everything

    log = bot.log_path.read_text("utf-8")
    assert " DEBUG " in log, "the bot process logged at DEBUG"
    assert "handling an update failed: IntegrityError" in log
