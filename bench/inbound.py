"""Inbound benchmark: invented people each completing a feedback check-in, as a burst.

Every update is created by the local Bot API server (a real button press on a message the bot
sent, or a real text message) and fetched with getUpdates, so each bot below runs its real
receive path against the same server:

- **yousaid**: the real bot (`build_runtime`: its own poller writing the inbox, the
  per-chat processor, the conversation service, storage at synchronous=FULL, the sender
  delivering the replies from the outbox);
- **ceiling**: the same python-telegram-bot Application with a trivial handler that replies
  (answers the button, sends one message) and stores nothing;
- **peer**: the check-in written the way python-telegram-bot's conversation examples teach: a
  persistent `ConversationHandler` (PicklePersistence), one handler per state, replying with
  `query.answer()` and `edit_message_text`, each answer stored with its own aiosqlite commit
  at synchronous=FULL.

People act in rounds: in each round every person takes their next step (the button on the
last message the bot sent them, or their written answer) at once, and the round ends when
every update of it was handled and every reply delivered. An update's latency runs from its
creation on the server to the end of its handling (for yousaid: its transaction committed,
replies durably queued; for the others: the handler returned, replies sent).
Updates/s = updates ÷ the sum of the rounds' times (handling and delivering the replies).

The server and the people's scripts run in a process of their own (`Crowd`), as Telegram's
servers are not in a bot's process; `--server-in-process` runs them in the bot's process, as
the first four rounds of bench/FINDINGS.md did, so their CPU is charged to the bot under test.

    .venv/bin/python -m bench.inbound [--people 5000] [--baseline-updates 5000]
        [--repeats 3] [--server-in-process] [--profile FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import multiprocessing
import os
import pstats
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiosqlite
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    PicklePersistence,
    TypeHandler,
    filters,
)

from bot.http_request import AiohttpRequest
from bot.local_api import FakePerson, LocalBotApi
from bot.runtime import build_runtime, start, stop
from bot.secrets_file import load_secrets
from bot.sender import ChatPacer
from bot.settings import load_settings
from state_machines.session import Session
from storage.clock import SystemClock
from storage.database import Database

TOKEN = "123456789:AAinventedTOKENforBENCHonly_abcdefghij"
# The sender's pace for YouSaid here: none to speak of, as the ceiling and the peer send
# unpaced. Until the seventh round it was SEND_RATE_PER_SECOND's ceiling, 1,000/s, taken
# for "no limit"; on a quiet machine a round's replies reached it (bench/FINDINGS.md).
UNPACED = 100_000.0
RATINGS = ("Always", "Mostly", "Sometimes", "Not often", "Never", "Skip this one")
EXPLAIN = "I don't understand"
IMPROVE = "More evening appointments, and staff who call back when they say they will."
# A person's steps: /feedback, Start, four principles (with "I don't understand" on two of
# them for some people), and the written answer: 7 to 9 updates each.
Step = tuple[str, str]  # ("text", words) or ("tap", button label)


def script_for(n: int) -> list[Step]:
    rng = random.Random(n)
    steps: list[Step] = [("text", "/feedback"), ("tap", "Start")]
    for principle in range(4):
        if n % 2 == 0 and principle in (1, 3):
            steps.append(("tap", EXPLAIN))
        steps.append(("tap", rng.choice(RATINGS)))
    steps.append(("text", IMPROVE))
    return steps


@dataclass
class Measure:
    name: str
    updates: int = 0
    seconds: float = 0.0  # sum over rounds: handled and replies delivered
    handling_seconds: float = 0.0  # sum over rounds: until the last update was handled
    latencies: list[float] = field(default_factory=list)
    # From an update's creation to the server receiving the last reply of that round to the
    # person (what they wait for; the ceiling and the peer reply inside their handler).
    reply_latencies: list[float] = field(default_factory=list)
    http_calls: int = 0
    # CPU seconds (user + system, every thread) while the rounds ran: the bot's process
    # (the benchmark's driver runs in it too: a small share, a little more for yousaid,
    # whose replies are checked for in its database every 20 ms), and the server's and
    # people's process (None when they run in the bot's, which is then charged for them).
    # Unlike updates/s, CPU per update hardly moves with what else the machine is doing.
    cpu_seconds: float = 0.0
    server_cpu_seconds: float | None = None
    wall_seconds: float = 0.0  # the rounds from the first made to the last settled
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.updates / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_update(self) -> float:
        return 1000 * self.cpu_seconds / self.updates if self.updates else 0.0

    def percentile(self, q: float, replies: bool = False) -> float:
        values = self.reply_latencies if replies else self.latencies
        if not values:
            return 0.0
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "updates": self.updates,
            "updates_per_s": round(self.per_second, 1),
            "handling_updates_per_s": round(self.updates / self.handling_seconds, 1)
            if self.handling_seconds
            else 0.0,
            "p50_ms": round(self.percentile(0.50), 1),
            "p99_ms": round(self.percentile(0.99), 1),
            "reply_p50_ms": round(self.percentile(0.50, replies=True), 1),
            "reply_p99_ms": round(self.percentile(0.99, replies=True), 1),
            "http_calls_per_update": round(self.http_calls / self.updates, 2)
            if self.updates
            else 0.0,
            "cpu_ms_per_update": round(self.cpu_ms_per_update, 2),
            "server_cpu_ms_per_update": None
            if self.server_cpu_seconds is None or not self.updates
            else round(1000 * self.server_cpu_seconds / self.updates, 2),
            # The bot's CPU ÷ the time the rounds took: near 1.0, one core was the limit.
            "cpu_busy": round(self.cpu_seconds / self.wall_seconds, 2)
            if self.wall_seconds
            else 0.0,
            **self.notes,
        }


class Timer:
    """Records, per update id, when the server created it and when handling ended (a
    TypeHandler in a later group runs after the handlers of group 0 have finished). Times
    are `time.monotonic()`, one clock for every process on Linux (CLOCK_MONOTONIC), so
    the server in a process of its own stamps creation on the same clock."""

    def __init__(self) -> None:
        self.created: dict[int, float] = {}
        self.done: dict[int, float] = {}
        # The round's updates not yet handled, and an event set when none is left: the
        # driver waits on it instead of scanning thousands of ids every few milliseconds
        # (which took ~5% of the one core from the bot under test in a 5,000-person round).
        self._waiting: set[int] = set()
        self.round_handled = asyncio.Event()

    def expect(self, update_ids: list[int]) -> None:
        self._waiting = {i for i in update_ids if i not in self.done}
        if self._waiting:
            self.round_handled.clear()
        else:
            self.round_handled.set()

    def install(self, application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        application.add_handler(TypeHandler(Update, self._handled), group=99)

    async def _handled(self, update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        self.done[update.update_id] = time.monotonic()
        self._waiting.discard(update.update_id)
        if not self._waiting:
            self.round_handled.set()


def find_button(api: LocalBotApi, person: FakePerson, label: str) -> tuple[int, str]:
    for message in reversed(api.messages(person.chat_id)):
        for row in (message.reply_markup or {}).get("inline_keyboard", []):
            for button in row:
                if button["text"] == label:
                    return message.message_id, button["callback_data"]
    raise AssertionError(f"no button {label!r} for an invented person")


@dataclass
class RoundMade:
    began: float  # time.monotonic() when the first update was about to be made
    created: dict[int, float]  # update id -> when the server made it


class Crowd:
    """The invented people's side of the benchmark: the local Bot API server, and each
    person's script, played one step per round. It holds no reference to the bot under
    test, so it can run in a process of its own (`serve_crowd`)."""

    def __init__(self, api: LocalBotApi, people: list[FakePerson]) -> None:
        self.api = api
        self.people = people
        self.scripts = {p.user_id: script_for(i) for i, p in enumerate(people)}
        self.rounds = max(len(s) for s in self.scripts.values())
        self._made_at: dict[int, float] = {}  # chat id -> when its update was made
        self._calls_before = 0
        for person in people:
            api.add_chat(person)

    def make_round(self, round_no: int, room: int | None) -> RoundMade:
        """Every person with a step left takes it (at most `room` updates)."""
        self._made_at = {}
        self._calls_before = len(self.api.calls())
        made = RoundMade(began=time.monotonic(), created={})
        for person in self.people:
            script = self.scripts[person.user_id]
            if round_no >= len(script):
                continue
            if room is not None and len(made.created) >= room:
                break
            kind, what = script[round_no]
            if kind == "text":
                update_id = self.api.send_text(person, what)
            else:
                message_id, data = find_button(self.api, person, what)
                update_id = self.api.press_button(person, message_id, data)
            made.created[update_id] = self._made_at[person.chat_id] = time.monotonic()
        return made

    def round_replies(self) -> tuple[list[float], int]:
        """The last round's reply latencies, and how many of its people got no reply."""
        replied = _reply_latencies(self.api.calls()[self._calls_before :], self._made_at)
        return replied, len(self._made_at) - len(replied)

    def totals(self) -> tuple[int, int]:
        """Bot API calls made (getUpdates aside), and how many of them the server refused."""
        return _calls(self.api), _failed(self.api)


class CrowdLink:
    """The bot's side of a `Crowd`: the same calls, awaited; in this process by default."""

    def __init__(self, crowd: Crowd | None = None) -> None:
        self._crowd = crowd
        self.rounds = crowd.rounds if crowd is not None else 0
        self.base_url = crowd.api.base_url if crowd is not None else ""

    async def make_round(self, round_no: int, room: int | None) -> RoundMade:
        assert self._crowd is not None
        return self._crowd.make_round(round_no, room)

    async def round_replies(self) -> tuple[list[float], int]:
        assert self._crowd is not None
        return self._crowd.round_replies()

    async def totals(self) -> tuple[int, int]:
        assert self._crowd is not None
        return self._crowd.totals()

    def cpu_seconds(self) -> float | None:
        """The CPU the server and the people have used, when in a process of their own."""
        return None


_FAILED = "crowd failed: "  # the prefix of a reply that reports an error in the child


class RemoteCrowdLink(CrowdLink):
    """A `Crowd` in a process of its own, spoken to over a pipe (a few messages a round).

    In production Telegram's servers are not in the bot's process; here the local Bot API
    server and the people's scripts cost as much CPU per call as a bot's own HTTP client.
    In the bot's process they are charged to the bot under test, more to a bot that makes
    more calls per update. In a process of their own they take the machine's other core."""

    def __init__(self, people: tuple[int, int]) -> None:
        super().__init__()
        context = multiprocessing.get_context("spawn")  # the parent runs threads: no fork
        self._conn, child_end = context.Pipe()
        self._process = context.Process(target=serve_crowd, args=(child_end, people))
        self._process.start()
        child_end.close()
        self._asking = False

    async def open(self) -> None:
        self.base_url, self.rounds = await self._ask("hello")

    # A round of 5,000 people is made in a few seconds; a child that says nothing for this
    # long is stuck, and the benchmark stops instead of waiting for ever.
    ANSWER_TIMEOUT_S = 300.0

    async def _ask(self, *message: Any) -> Any:
        if self._asking:
            raise RuntimeError("the crowd is still answering an earlier question")
        self._asking = True
        self._conn.send(message)
        reply = await asyncio.to_thread(self._receive)
        self._asking = False  # not reset when cancelled: the thread still reads the pipe
        if isinstance(reply, str) and reply.startswith(_FAILED):
            raise RuntimeError(f"the crowd's process failed: {reply[len(_FAILED) :]}")
        return reply

    def _receive(self) -> Any:
        try:
            if not self._conn.poll(self.ANSWER_TIMEOUT_S):
                raise TimeoutError(
                    f"the crowd's process said nothing for {self.ANSWER_TIMEOUT_S} s"
                )
            return self._conn.recv()
        except EOFError:
            self._process.join(5)
            code = self._process.exitcode
            raise RuntimeError(f"the crowd's process ended (exit code {code})") from None

    async def make_round(self, round_no: int, room: int | None) -> RoundMade:
        made: RoundMade = await self._ask("make_round", round_no, room)
        return made

    async def round_replies(self) -> tuple[list[float], int]:
        replies: tuple[list[float], int] = await self._ask("round_replies")
        return replies

    async def totals(self) -> tuple[int, int]:
        totals: tuple[int, int] = await self._ask("totals")
        return totals

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self._process.pid) if self._process.pid else None

    async def close(self) -> None:
        if not self._asking:  # else a question is unanswered (cancelled, or it timed out)
            with contextlib.suppress(BrokenPipeError, TimeoutError, RuntimeError):
                await self._ask("stop")
        await asyncio.to_thread(self._process.join, 10)
        if self._process.is_alive():
            self._process.kill()


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, every thread) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_crowd(conn: Connection, people: tuple[int, int]) -> None:
    """The child process of `RemoteCrowdLink`: the server and the people, until "stop"."""

    async def serve() -> None:
        async with LocalBotApi(TOKEN, "yousaid_bench_bot") as api:
            crowd = Crowd(api, people_for(*people))
            while True:
                command, *args = await asyncio.to_thread(conn.recv)
                try:
                    if command == "hello":
                        reply: Any = (api.base_url, crowd.rounds)
                    elif command == "make_round":
                        reply = crowd.make_round(*args)
                    elif command == "round_replies":
                        reply = crowd.round_replies()
                    elif command == "totals":
                        reply = crowd.totals()
                    elif command == "stop":
                        conn.send(None)
                        return
                    else:
                        raise ValueError(f"unknown command {command!r}")
                except Exception as error:  # reported to the benchmark, which raises it
                    reply = f"{_FAILED}{error!r}"  # as text: not every exception pickles
                conn.send(reply)

    asyncio.run(serve())


@contextlib.asynccontextmanager
async def crowd_for(people: tuple[int, int], server_in_process: bool) -> AsyncIterator[CrowdLink]:
    """The people (count, first id) and their server: in this process, or in their own."""
    if server_in_process:
        async with LocalBotApi(TOKEN, "yousaid_bench_bot") as api:
            yield CrowdLink(Crowd(api, people_for(*people)))
        return
    link = RemoteCrowdLink(people)
    try:
        await link.open()
        yield link
    finally:
        await link.close()


async def drive(
    crowd: CrowdLink,
    timer: Timer,
    measure: Measure,
    settled: Callable[[], Awaitable[bool]],
    limit_updates: int | None = None,
) -> None:
    """Every person takes their next step at once; the round ends when everything was
    handled and the replies delivered."""
    cpu_before, wall_before = time.process_time(), time.monotonic()
    server_cpu_before = crowd.cpu_seconds()
    await _play_rounds(crowd, timer, measure, settled, limit_updates)
    measure.cpu_seconds += time.process_time() - cpu_before
    measure.wall_seconds += time.monotonic() - wall_before
    server_cpu_after = crowd.cpu_seconds()
    if server_cpu_before is not None and server_cpu_after is not None:
        measure.server_cpu_seconds = (measure.server_cpu_seconds or 0.0) + (
            server_cpu_after - server_cpu_before
        )


async def _play_rounds(
    crowd: CrowdLink,
    timer: Timer,
    measure: Measure,
    settled: Callable[[], Awaitable[bool]],
    limit_updates: int | None,
) -> None:
    for round_no in range(crowd.rounds):
        room = None if limit_updates is None else limit_updates - measure.updates
        if room is not None and room <= 0:
            break
        made = await crowd.make_round(round_no, room)
        ids = list(made.created)
        if not ids:
            break
        timer.created.update(made.created)
        deadline = time.monotonic() + 600
        timer.expect(ids)
        try:
            await asyncio.wait_for(timer.round_handled.wait(), timeout=600)
        except TimeoutError:
            raise TimeoutError(f"{measure.name}: round {round_no} not handled in 10 min") from None
        measure.handling_seconds += max(timer.done[i] for i in ids) - made.began
        while not await settled():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{measure.name}: round {round_no} replies not delivered")
            await asyncio.sleep(0.02)  # the check takes the bot's database lock: not too often
        measure.seconds += time.monotonic() - made.began
        measure.updates += len(ids)
        measure.latencies += [timer.done[i] - timer.created[i] for i in ids]
        replied, without_reply = await crowd.round_replies()
        measure.reply_latencies += replied
        # People who got no reply in the round are not in the reply latencies: counted, so
        # a percentile that leaves them out is seen to.
        missing = measure.notes.get("rounds_without_a_reply", 0) + without_reply
        measure.notes["rounds_without_a_reply"] = missing


def _reply_latencies(calls: list[Any], made_at: dict[int, float]) -> list[float]:
    """Per person of the round: from their update's creation to the last message sent or
    edited in their chat (answering the button is not a reply)."""
    last: dict[int, float] = {}
    for call in calls:
        if (
            call.status == 200
            and call.chat_id in made_at
            and call.method.lower() not in ("getupdates", "answercallbackquery")
        ):
            last[call.chat_id] = max(last.get(call.chat_id, 0.0), call.time)
    return [when - made_at[chat] for chat, when in last.items()]


def people_for(count: int, base: int) -> list[FakePerson]:
    return [FakePerson(user_id=base + n, first_name="-", language_code="en") for n in range(count)]


# -- yousaid -----------------------------------------------------------------------------


def seed_yousaid(database: str, secrets_path: str, people: list[FakePerson]) -> None:
    """Onboarded people with every consent and a region, written directly (one transaction:
    seeding is not what is measured)."""
    secrets = load_secrets(secrets_path, production=False)
    now = SystemClock().now_ms()
    session = Session(completed=frozenset({"onboarding"})).to_json()
    with sqlite3.connect(database) as conn:
        pseudonyms = [(secrets.pseudonym(p.user_id), p.chat_id) for p in people]
        conn.executemany(
            "INSERT INTO people (pseudonym, chat_id, locale, region, created_at, updated_at) "
            "VALUES (?, ?, 'en', 'london', ?, ?)",
            [(ps, chat, now, now) for ps, chat in pseudonyms],
        )
        conn.executemany(
            "INSERT INTO consent_ledger (pseudonym, purpose, granted, notice_version, "
            "recorded_at) VALUES (?, ?, 1, 'v1', ?)",
            [
                (ps, purpose, now)
                for ps, _ in pseudonyms
                for purpose in ("feedback", "panel_invitations", "updates", "quotes")
            ],
        )
        conn.executemany(
            "INSERT INTO dialogue_sessions (pseudonym, session, updated_at) VALUES (?, ?, ?)",
            [(ps, session, now) for ps, _ in pseudonyms],
        )


async def run_yousaid(
    people: tuple[int, int],
    folder: Path,
    name: str,
    server_in_process: bool,
    profile: cProfile.Profile | None = None,
    limit: int | None = None,
) -> Measure:
    measure = Measure(name)
    timer = Timer()
    async with crowd_for(people, server_in_process) as crowd:
        settings = load_settings(
            {
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_API_BASE_URL": crowd.base_url,
                "DATABASE_PATH": str(folder / f"{name}.db"),
                "SECRETS_PATH": str(folder / "secrets"),
                # The local server enforces no limit here (the pace: `UNPACED`, below).
                "SEND_RATE_PER_SECOND": "1000",
                "LOG_LEVEL": "WARNING",
            }
        )
        runtime = await build_runtime(
            settings,
            poll_timeout=1,
            chat_pacer=ChatPacer(burst=1000, window=1.0),
            send_rate=UNPACED,
        )
        seed_yousaid(settings.database_path, settings.secrets_path, people_for(*people))
        timer.install(runtime.application)
        await start(runtime)

        async def settled() -> bool:
            return await outbox_settled(runtime.db)

        try:
            if profile is not None:
                profile.enable()
            await drive(crowd, timer, measure, settled, limit)
        finally:
            if profile is not None:
                profile.disable()
            await stop(runtime)
        measure.notes["answers_stored"] = _count(
            settings.database_path, "SELECT COUNT(*) FROM checkin_scores"
        ) + _count(settings.database_path, "SELECT COUNT(*) FROM answers")
        measure.notes["pending_in_inbox"] = _count(
            settings.database_path, "SELECT COUNT(*) FROM inbox WHERE status = 'pending'"
        )
        measure.http_calls, measure.notes["failed_calls"] = await crowd.totals()
    return measure


async def outbox_settled(db: Database) -> bool:
    """Every reply queued so far was sent and recorded (a sent row stays pending until its
    confirmation is committed)."""
    async with (
        db.read() as conn,
        conn.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'") as cursor,
    ):
        row = await cursor.fetchone()
    return row is not None and row[0] == 0


def _count(database: str, sql: str) -> int:
    try:
        with sqlite3.connect(database) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return -1


def _calls(api: LocalBotApi) -> int:
    return len([c for c in api.calls() if c.method.lower() != "getupdates"])


def _failed(api: LocalBotApi) -> int:
    """Bot API calls the server refused, e.g. a button answered after Telegram's deadline
    (the local server, like Telegram, gives up on a callback query after a while)."""
    return len([c for c in api.calls() if c.method.lower() != "getupdates" and c.status != 200])


def _application(
    base_url: str, persistence: PicklePersistence[Any, Any, Any] | None = None
) -> Application[Any, Any, Any, Any, Any, Any]:
    """The ceiling is built as YouSaid's Application is (bot/runtime.py: aiohttp requests,
    64 updates at once; PTB's own processor, where YouSaid's keeps each chat in order); the
    peer exactly as the examples build theirs: PTB's default httpx requests, one update at
    a time. (Until the third round the peer was given 64 updates at once, thought to help
    it; measured, it made the peer about a third slower: 108 against 163 - 177 updates/s.
    The ceiling is as fast one at a time as 64 at once, within the noise: FINDINGS.md.)"""
    base = ApplicationBuilder().token(TOKEN).base_url(base_url)
    if persistence is None:
        base = base.concurrent_updates(64)
        base = base.request(AiohttpRequest(pool_size=16, pool_timeout=10))
        base = base.get_updates_request(AiohttpRequest(pool_size=1))
    else:
        base = base.persistence(persistence)
    return base.build()


async def _poll(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    await application.initialize()
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=0.0, timeout=1)


async def _unpoll(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    assert application.updater is not None
    await application.updater.stop()
    await application.stop()
    await application.shutdown()


async def _always() -> bool:
    return True


# -- ceiling -----------------------------------------------------------------------------

_CEILING_KEYBOARD = InlineKeyboardMarkup(
    [
        [InlineKeyboardButton(label, callback_data=f"c{i}")]
        for i, label in enumerate(("Start", *RATINGS, EXPLAIN))
    ]
)


async def run_ceiling(people: tuple[int, int], limit: int, server_in_process: bool) -> Measure:
    measure = Measure("ceiling (reply only)")
    timer = Timer()
    async with crowd_for(people, server_in_process) as crowd:
        application = _application(crowd.base_url)

        async def reply(update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
            if update.callback_query is not None:
                await update.callback_query.answer()
            assert update.effective_chat is not None
            await update.get_bot().send_message(
                update.effective_chat.id, "OK", reply_markup=_CEILING_KEYBOARD
            )

        application.add_handler(TypeHandler(Update, reply))
        timer.install(application)
        await _poll(application)
        try:
            await drive(crowd, timer, measure, _always, limit)
        finally:
            await _unpoll(application)
        measure.http_calls, measure.notes["failed_calls"] = await crowd.totals()
    return measure


# -- peer --------------------------------------------------------------------------------

INTRO, VOICE, RESPECT, NEUTRALITY, TRUST, IMPROVE_STATE = range(6)
_QUESTIONS = {
    VOICE: ("voice", "When you talk to probation, do they listen to you?"),
    RESPECT: ("respect", "Do probation staff treat you with respect?"),
    NEUTRALITY: ("neutrality", "Does probation treat you in a fair way?"),
    TRUST: ("trust", "Do you trust probation to do what they say?"),
}


def _rating_keyboard() -> InlineKeyboardMarkup:
    rows = [[InlineKeyboardButton(label, callback_data=f"r{i}")] for i, label in enumerate(RATINGS)]
    rows.append([InlineKeyboardButton(EXPLAIN, callback_data="explain")])
    return InlineKeyboardMarkup(rows)


class Peer:
    """The check-in as python-telegram-bot's conversationbot/inlinekeyboard2 examples teach."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def store(self, user_id: int, question: str, answer: str) -> None:
        await self.db.execute(
            "INSERT INTO answers (user_id, question, answer, at) VALUES (?, ?, ?, ?)",
            (user_id, question, answer, time.time()),
        )
        await self.db.commit()

    async def feedback(self, update: Update, _: ContextTypes.DEFAULT_TYPE) -> int:
        assert update.message is not None
        keyboard = InlineKeyboardMarkup(
            [
                [InlineKeyboardButton("Start", callback_data="start")],
                [InlineKeyboardButton("Not now", callback_data="later")],
            ]
        )
        await update.message.reply_text(
            "We want to know how probation treats you.", reply_markup=keyboard
        )
        return INTRO

    async def begin(self, update: Update, _: ContextTypes.DEFAULT_TYPE) -> int:
        query = update.callback_query
        assert query is not None
        await query.answer()
        await query.edit_message_text(_QUESTIONS[VOICE][1], reply_markup=_rating_keyboard())
        return VOICE

    def rating(self, state: int) -> Callable[[Update, Any], Coroutine[Any, Any, int]]:
        async def handler(update: Update, _: ContextTypes.DEFAULT_TYPE) -> int:
            query = update.callback_query
            assert query is not None and query.data is not None
            await query.answer()
            assert update.effective_user is not None
            label = RATINGS[int(query.data[1:])]
            await self.store(update.effective_user.id, _QUESTIONS[state][0], label)
            if state == TRUST:
                await query.edit_message_text(f"{label}.\n\nWhat one thing would make it better?")
                return IMPROVE_STATE
            await query.edit_message_text(
                f"{label}.\n\n{_QUESTIONS[state + 1][1]}", reply_markup=_rating_keyboard()
            )
            return state + 1

        return handler

    def explain(self, state: int) -> Callable[[Update, Any], Coroutine[Any, Any, int]]:
        async def handler(update: Update, _: ContextTypes.DEFAULT_TYPE) -> int:
            query = update.callback_query
            assert query is not None
            await query.answer()
            await query.edit_message_text(
                f"In other words: {_QUESTIONS[state][1]}", reply_markup=_rating_keyboard()
            )
            return state

        return handler

    async def improve(self, update: Update, _: ContextTypes.DEFAULT_TYPE) -> int:
        assert update.message is not None and update.effective_user is not None
        await self.store(update.effective_user.id, "improve", update.message.text or "")
        await update.message.reply_text("Thank you.")
        return ConversationHandler.END

    def handler(self) -> ConversationHandler[Any]:
        states: dict[object, list[Any]] = {
            INTRO: [CallbackQueryHandler(self.begin, pattern="^start$")],
            IMPROVE_STATE: [MessageHandler(filters.TEXT & ~filters.COMMAND, self.improve)],
        }
        for state in (VOICE, RESPECT, NEUTRALITY, TRUST):
            states[state] = [
                CallbackQueryHandler(self.explain(state), pattern="^explain$"),
                CallbackQueryHandler(self.rating(state), pattern="^r[0-5]$"),
            ]
        # per_message=False on purpose (one conversation per person, as in the examples);
        # PTB warns about it on every construction.
        warnings.filterwarnings("ignore", message="If 'per_message=False'")
        return ConversationHandler(
            entry_points=[CommandHandler("feedback", self.feedback)],
            states=states,
            fallbacks=[],
            name="feedback",
            persistent=True,
            per_message=False,
        )


async def run_peer(
    people: tuple[int, int], folder: Path, limit: int, server_in_process: bool
) -> Measure:
    measure = Measure("peer (ConversationHandler)")
    timer = Timer()
    db = await aiosqlite.connect(str(folder / "peer.db"))
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = FULL")
    await db.execute(
        "CREATE TABLE answers (id INTEGER PRIMARY KEY, user_id INTEGER, question TEXT, "
        "answer TEXT, at REAL)"
    )
    await db.commit()
    async with crowd_for(people, server_in_process) as crowd:
        persistence = PicklePersistence(str(folder / "peer.pickle"))
        application = _application(crowd.base_url, persistence)
        application.add_handler(Peer(db).handler())
        timer.install(application)
        await _poll(application)
        try:
            await drive(crowd, timer, measure, _always, limit)
        finally:
            await _unpoll(application)
            await db.close()
        measure.notes["answers_stored"] = _count(
            str(folder / "peer.db"), "SELECT COUNT(*) FROM answers"
        )
        measure.http_calls, measure.notes["failed_calls"] = await crowd.totals()
    return measure


# -- main --------------------------------------------------------------------------------


async def run(
    people_count: int,
    baseline_updates: int,
    profile_path: str | None,
    server_in_process: bool,
    repeats: int = 1,
) -> list[list[Measure]]:
    """`repeats` rounds of the three on the same subset, one after the other (ceiling, peer,
    yousaid; again...), so that each yousaid run has baselines measured a minute before it,
    then yousaid on the whole burst: the subset runs, then the whole-burst run in a list."""
    trios: list[list[Measure]] = []
    with tempfile.TemporaryDirectory() as tmp:
        # Baselines and yousaid on the same subset (same people, same steps), then yousaid on
        # the whole burst. Subset: whole check-ins adding up to about `baseline_updates`.
        per_person = statistics.mean(len(script_for(n)) for n in range(100))
        subset = (max(1, int(baseline_updates / per_person)), 740_000_000)
        inside = server_in_process
        for repeat in range(repeats):
            folder = Path(tmp) / f"run{repeat}"  # each run its own databases
            folder.mkdir()
            trio = [await run_ceiling(subset, baseline_updates, inside)]
            trio.append(await run_peer(subset, folder, baseline_updates, inside))
            # The baselines stop at `baseline_updates`, part of the way through a round: so
            # does yousaid's run on the subset (before the fifth round it ran the whole subset).
            same = "yousaid (same subset)"
            trio.append(await run_yousaid(subset, folder, same, inside, limit=baseline_updates))
            trios.append(trio)
            print(
                f"subset run {repeat + 1} of {repeats}: "
                + ", ".join(f"{m.name} {m.per_second:.1f}/s" for m in trio),
                file=sys.stderr,
                flush=True,
            )
        profile = cProfile.Profile() if profile_path else None
        everyone = (people_count, 750_000_000)
        name = f"yousaid ({people_count:,} people)"
        folder = Path(tmp) / "whole"
        folder.mkdir()
        whole = await run_yousaid(everyone, folder, name, inside, profile)
        if profile is not None and profile_path:
            profile.dump_stats(profile_path)
    return [*trios, [whole]]


def _median_run(runs: list[Measure]) -> Measure:
    """The run whose updates/s is the median (the lower middle one of an even count)."""
    ordered = sorted(runs, key=lambda m: m.per_second)
    return ordered[(len(ordered) - 1) // 2]


def report(results: list[list[Measure]], server_in_process: bool) -> dict[str, Any]:
    """Rows: each bot's median run. Subset ratios: the median of each run's yousaid ÷ the
    baselines of the same run (paired: what slowed the machine for one, a minute apart,
    slowed it for both); whole burst ÷ the median baseline run."""
    *trios, (full,) = results
    ceilings, peers, sames = ([trio[k] for trio in trios] for k in range(3))
    ceiling, peer, same = _median_run(ceilings), _median_run(peers), _median_run(sames)
    vs_ceiling = [t[2].per_second / t[0].per_second for t in trios]
    vs_peer = [t[2].per_second / t[1].per_second for t in trios]
    # yousaid's CPU per update ÷ the baseline's, paired as the speeds are
    cpu_vs_ceiling = [_cpu_ratio(t[2], t[0]) for t in trios]
    cpu_vs_peer = [_cpu_ratio(t[2], t[1]) for t in trios]
    # One core's worth of CPU a second ÷ yousaid's CPU per update: the most it could handle
    # in one process however quiet the machine, against the rate 3 x the peer means; and
    # the most with every core of the machine, shared with the server, perfectly used.
    one_core_limit = 1000 / full.cpu_ms_per_update if full.cpu_ms_per_update else 0.0
    cores = len(os.sched_getaffinity(0))  # the cores this process may run on
    with_server = full.cpu_seconds + (full.server_cpu_seconds or 0.0)
    machine_limit = cores * full.updates / with_server if with_server else 0.0
    return {
        "rows": [m.row() for m in (ceiling, peer, same, full)],
        "server": "in the bot's process" if server_in_process else "in its own process",
        "repeats": len(trios),
        "runs_updates_per_s": {
            "ceiling": [round(m.per_second, 1) for m in ceilings],
            "peer": [round(m.per_second, 1) for m in peers],
            "yousaid_same_subset": [round(m.per_second, 1) for m in sames],
        },
        "ratio_vs_ceiling": round(full.per_second / ceiling.per_second, 3),
        "ratio_vs_peer": round(full.per_second / peer.per_second, 3),
        "subset_ratio_vs_ceiling": round(statistics.median(vs_ceiling), 3),
        "subset_ratio_vs_peer": round(statistics.median(vs_peer), 3),
        "subset_ratios_vs_ceiling": [round(r, 3) for r in vs_ceiling],
        "subset_ratios_vs_peer": [round(r, 3) for r in vs_peer],
        "subset_cpu_vs_ceiling": round(statistics.median(cpu_vs_ceiling), 3),
        "subset_cpu_vs_peer": round(statistics.median(cpu_vs_peer), 3),
        "one_core_limit_updates_per_s": round(one_core_limit, 1),
        "cores": cores,
        "machine_limit_updates_per_s": None
        if full.server_cpu_seconds is None
        else round(machine_limit, 1),
        "three_times_peer_updates_per_s": round(3 * peer.per_second, 1),
    }


def _cpu_ratio(mine: Measure, baseline: Measure) -> float:
    if not baseline.cpu_ms_per_update:
        return 0.0
    return mine.cpu_ms_per_update / baseline.cpu_ms_per_update


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--baseline-updates", type=int, default=5000)
    parser.add_argument("--profile", help="write cProfile stats of the full yousaid run here")
    parser.add_argument("--json", help="write the results here as JSON")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of the three bots on the subset, one after the other; the table shows the "
        "median (default 3)",
    )
    parser.add_argument(
        "--server-in-process",
        action="store_true",
        help="run the local Bot API server and the people in the bot's own process, as the "
        "first four rounds did (their CPU is then charged to the bot under test)",
    )
    args = parser.parse_args()
    inside = args.server_in_process
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    results = asyncio.run(
        run(args.people, args.baseline_updates, args.profile, inside, args.repeats)
    )
    summary = report(results, inside)
    for row in summary["rows"]:
        print(json.dumps(row))
    for key in ("ratio_vs_ceiling", "ratio_vs_peer", "subset_ratio_vs_ceiling"):
        print(f"{key}: {summary[key]}")
    print(f"subset_ratio_vs_peer: {summary['subset_ratio_vs_peer']}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    if args.profile:
        stats = pstats.Stats(args.profile)
        stats.sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
