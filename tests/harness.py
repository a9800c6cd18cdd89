"""End-to-end harness: the real bot (python-telegram-bot Application, storage, sender) against
the project's local Bot API server on 127.0.0.1, driven the way a person would drive it."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from bot.local_api import FakePerson, LocalBotApi, SentMessage
from bot.runtime import Runtime, build_runtime, start, stop
from bot.secrets_file import load_secrets
from bot.sender import ChatPacer
from bot.settings import PROJECT_ROOT, Settings, load_settings
from storage.clock import Clock, ManualClock
from storage.queues import Job
from tests.log_privacy import note_process_log

TOKEN = "123456789:AAinventedTOKENforTESTSonly_abcdefgh"

# Invented people only.
ADA = FakePerson(user_id=700000001, first_name="Ada", language_code="en")
BRAN = FakePerson(user_id=700000002, first_name="Bran", language_code="en")
CERI = FakePerson(user_id=700000003, first_name="Ceri", language_code="en-GB")


def settings_for(api: LocalBotApi, tmp_path: Path, **extra: str) -> Settings:
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": api.base_url,
        "DATABASE_PATH": str(tmp_path / "yousaid.db"),
        "SECRETS_PATH": str(tmp_path / "secrets"),
        "SEND_RATE_PER_SECOND": "200",
        # Tests tap faster than any person; the flood limit is tested on its own.
        "FLOOD_LIMIT": "100000",
        **extra,
    }
    return load_settings(env)


@dataclass
class Chat:
    """A person talking to the bot through the local server."""

    api: LocalBotApi
    person: FakePerson

    @property
    def messages(self) -> list[SentMessage]:
        return self.api.messages(self.person.chat_id)

    async def expect(self, count: int) -> SentMessage:
        """Wait until the bot has sent `count` messages in all; return the newest."""
        return (await self.api.wait_for_messages(self.person.chat_id, count, 10.0))[-1]

    async def mydata_file(self) -> dict[str, Any]:
        """/mydata, then "Get a file": everything kept about the person, as the file they
        are sent (parsed)."""
        await self.say("/mydata")

        def offered() -> bool:  # under what we keep, or the list of it that follows
            return any("Get a file" in str(m.reply_markup) for m in self.messages)

        await eventually(offered)
        message, data = self.find_button("Get a file")
        had = len(self.messages)
        self.api.press_button(self.person, message.message_id, data)
        # (the list of what we keep may still be on its way before it)
        await eventually(lambda: any(m.kind == "document" for m in self.messages[had:]))
        [document] = [m for m in self.messages[had:] if m.kind == "document"]
        assert document.content is not None
        exported: dict[str, Any] = json.loads(document.content)
        return exported

    async def start(self, language: str = "English") -> SentMessage:
        """/start, then pick the language: returns the notice."""
        await self.say("/start")
        return await self.tap(language)

    async def say(self, text: str) -> SentMessage:
        before = len(self.messages)
        self.api.send_text(self.person, text)
        return await self.expect(before + 1)

    async def tap(self, label: str) -> SentMessage:
        before = len(self.messages)
        message, data = self.find_button(label)
        self.api.press_button(self.person, message.message_id, data)
        return await self.expect(before + 1)

    async def toggle(self, label: str) -> SentMessage:
        """Tap a button whose answer edits the same message (a choice ticked on a question
        that stays open); return the message once edited."""
        message, data = self.find_button(label)
        before = (message.text, message.reply_markup)
        self.api.press_button(self.person, message.message_id, data)
        await eventually(lambda: (message.text, message.reply_markup) != before)
        return message

    def find_button(self, label: str) -> tuple[SentMessage, str]:
        for message in reversed(self.messages):
            for row in (message.reply_markup or {}).get("inline_keyboard", []):
                for button in row:
                    if button["text"] == label:
                        return message, button["callback_data"]
        raise AssertionError(f"no button {label!r} in the chat")


class BotProcess:
    """`python -m bot run` as a child process, with its log kept for failures."""

    def __init__(self, api: LocalBotApi, tmp_path: Path, **extra: str) -> None:
        self.api = api
        self.env = {
            **os.environ,
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": api.base_url,
            "DATABASE_PATH": str(tmp_path / "yousaid.db"),
            "SECRETS_PATH": str(tmp_path / "secrets"),
            # Every test's bot logs at DEBUG; tests/log_privacy.py reads this log for leaks.
            "LOG_LEVEL": "DEBUG",
            "FLOOD_LIMIT": "100000",
            **extra,
        }
        self.log_path = tmp_path / "bot.log"
        note_process_log(self.log_path)
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        # deleteWebhook is the last call before polling starts (getUpdates long-polls, so
        # it only finishes when an update arrives or the poll times out).
        ready = len(self.api.calls("deleteWebhook"))
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        await self.api.wait_for_calls("deleteWebhook", ready + 1, timeout=30)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no clean-up runs
        await self.process.wait()

    async def terminate(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), timeout=20)


class Records:
    """Reads the bot's database directly (a second connection; WAL lets it read safely)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.secrets = load_secrets(settings.secrets_path, production=False)

    def query(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        # Closed at once: a connection left to the garbage collector keeps the database
        # open, and `restore` or `keys rotate` would rightly refuse to run.
        connection = sqlite3.connect(self.settings.database_path, timeout=10)
        try:
            with connection:
                return list(connection.execute(sql, args))
        finally:
            connection.close()

    def pseudonym(self, person: FakePerson) -> str:
        return self.secrets.pseudonym(person.user_id)

    def consents(self, person: FakePerson) -> list[tuple[object, ...]]:
        return self.query(
            "SELECT purpose, granted, notice_version FROM consent_ledger "
            "WHERE pseudonym = ? ORDER BY id",
            self.pseudonym(person),
        )

    def current_consents(self, person: FakePerson) -> dict[str, bool]:
        rows = self.query(
            "SELECT purpose, granted FROM consent_ledger WHERE id IN (SELECT "
            "MAX(id) FROM consent_ledger WHERE pseudonym = ? GROUP BY purpose)",
            self.pseudonym(person),
        )
        return {str(p): bool(g) for p, g in rows}

    def pending_jobs(self, kind: str) -> int:
        rows = self.query(
            "SELECT COUNT(*) FROM schedules WHERE kind = ? AND status = 'pending'", kind
        )
        return int(str(rows[0][0]))

    def place(self, person: FakePerson) -> list[str] | None:
        rows = self.query(
            "SELECT session FROM dialogue_sessions WHERE pseudonym = ?", self.pseudonym(person)
        )
        return json.loads(str(rows[0][0]))["place"] if rows else None


# Tests tap faster than any person; the real per-chat pace is tested on its own.
FAST_PACER = ChatPacer(burst=1000, window=1.0)


@asynccontextmanager
async def running_bot(
    api: LocalBotApi,
    tmp_path: Path,
    pacer: ChatPacer | None = FAST_PACER,
    clock: Clock | None = None,
    **extra: str,
) -> AsyncIterator[Runtime]:
    runtime = await build_runtime(
        settings_for(api, tmp_path, **extra), clock=clock, poll_timeout=1, chat_pacer=pacer
    )
    await start(runtime)
    try:
        yield runtime
    finally:
        await stop(runtime)


def hold_jobs(runtime: Runtime, kind: str) -> list[Job]:
    """Jobs of `kind` are kept here when due instead of run, for the test to run one by
    hand once it has set the scene (e.g. a broadcast's next part after "Stop sending")."""
    held: list[Job] = []

    async def hold(_: aiosqlite.Connection, job: Job, __: int) -> None:
        held.append(job)

    runtime.scheduler.register(kind, hold)
    return held


def as_time_goes_by(
    clock: ManualClock, runtime: Runtime, condition: Callable[[], bool]
) -> Callable[[], bool]:
    """`condition` for `eventually`, moving the manual clock on five minutes (and waking
    the scheduler) each time it does not hold yet: for jobs retried minutes apart."""

    def check() -> bool:
        if condition():
            return True
        clock.advance(5 * 60)
        runtime.scheduler.wake()
        return False

    return check


async def settled(api: LocalBotApi, records: Records) -> None:
    """Wait until nothing more is on its way to anyone: the server holds no update for the
    bot, every update taken is handled, and no message waits to go. (A reply is queued in
    the transaction that handles its update, so none can follow; scheduled jobs can.) For
    "and nothing else was said", without a sleep that a slow machine outlasts."""

    def check() -> bool:
        waiting = records.query(
            "SELECT (SELECT COUNT(*) FROM inbox WHERE status = 'pending')"
            " + (SELECT COUNT(*) FROM outbox WHERE status = 'pending')"
        )
        return api.pending_update_count == 0 and waiting == [(0,)]

    await eventually(check)


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait up to 10 s until `condition()` holds (for effects with no message to wait for)."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - the condition is a database read
            await asyncio.sleep(0.02)


async def onboard(chat: Chat, region: str = "London") -> None:
    """The whole onboarding: notice, four consents (yes, yes, no, yes), region."""
    await chat.start()
    await chat.tap("OK, go on")
    for answer in ("Yes", "Yes", "No", "Yes"):
        await chat.tap(answer)
    done = await chat.tap(region)
    assert "You are signed up" in done.text
