"""An experiment, not part of `make bench`: does a second core help if the outbox sender
runs in a process of its own?

YouSaid's whole inbound burst (as `bench/inbound.py` runs it) twice, one after the other:
the bot as it ships (one process), then with its sender parked and an `OutboxSender` in a
child process on the same database, sending what the bot queues. The child is woken when
the outbox's newest id changes (looked at every 5 ms; a design for production would
signal it instead: woken every 5 ms regardless, the sender reread and unsealed its
candidates each time and the burst ran at half the speed). Reported per run: updates/s
and the CPU of the bot, the sender and the local Bot API server with the people
(`/proc/<pid>/stat`). The sender process commits only its own "sent" records, as the
bot's sender does.

    .venv/bin/python -m bench.sender_process [--people 2000] [--repeats 1]
        [--sender-rate 100000] [--taps-not-first]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import cast

from telegram import Bot

from bench.inbound import (
    TOKEN,
    UNPACED,
    Measure,
    Timer,
    crowd_for,
    drive,
    outbox_settled,
    people_for,
    process_cpu_seconds,
    seed_yousaid,
)
from bot.http_request import AiohttpRequest
from bot.payload_seal import payload_codec
from bot.runtime import build_runtime, start, stop
from bot.secrets_file import load_secrets
from bot.sender import ChatPacer, OutboxSender
from bot.settings import load_settings
from storage.clock import SystemClock
from storage.database import Database

_WAKE_EVERY_S = 0.005


def _environment(base_url: str, folder: Path) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": base_url,
        "DATABASE_PATH": str(folder / "yousaid.db"),
        "SECRETS_PATH": str(folder / "secrets"),
        "SEND_RATE_PER_SECOND": "1000",  # its ceiling; the pace used is `sender_rate`
        "LOG_LEVEL": "WARNING",
    }


def _sender_process(
    environment: dict[str, str], rate: float, ready: ProcessEvent, done: ProcessEvent
) -> None:
    """The child: an OutboxSender on the bot's database until `done` is set, pacing itself
    to `rate` messages a second."""

    async def send() -> None:
        settings = load_settings(environment)
        secrets = load_secrets(settings.secrets_path, production=False)
        db = await Database.open(settings.database_path)
        await db.seal_payloads(*payload_codec(secrets))
        request = AiohttpRequest(pool_size=16, pool_timeout=10)
        bot = Bot(TOKEN, base_url=settings.api_base_url, request=request)
        await bot.initialize()
        pacer = ChatPacer(burst=1000, window=1.0)
        sender = OutboxSender(db, bot, SystemClock(), rate, pacer=pacer)
        sender.start()
        ready.set()
        newest_seen = -1
        while not done.is_set():
            await asyncio.sleep(_WAKE_EVERY_S)
            async with (
                db.read(quick=True) as conn,
                conn.execute("SELECT MAX(id) FROM outbox") as cursor,
            ):
                row = await cursor.fetchone()
            newest = int(row[0]) if row and row[0] is not None else 0
            if newest != newest_seen:
                newest_seen = newest
                sender.wake()
        await sender.stop()
        await bot.shutdown()
        await db.close()

    asyncio.run(send())


class _ParkedSender:
    """Stands in for the bot's own sender while the child process sends."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(asyncio.sleep(10**6), name="sender")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def wake(self) -> None:
        """The child notices new rows itself."""


async def run_once(
    people: int,
    folder: Path,
    separate_sender: bool,
    sender_rate: float = UNPACED,
    tap_priority: bool = True,
) -> dict[str, object]:
    """`sender_rate`: the pace of whichever sender sends, the bot's own or the child (the
    same in both shapes). `tap_priority`: False lets updates be handled while many button taps are
    still being answered (`TapAnswers` holds new handling back for up to 2 s a burst)."""
    name = "sender in its own process" if separate_sender else "one process (as shipped)"
    if not tap_priority:
        name += ", taps not first"
    measure, timer = Measure(name), Timer()
    async with crowd_for((people, 750_000_000), False) as crowd:
        environment = _environment(crowd.base_url, folder)
        settings = load_settings(environment)
        runtime = await build_runtime(
            settings,
            poll_timeout=1,
            chat_pacer=ChatPacer(burst=1000, window=1.0),
            send_rate=sender_rate,
        )
        seed_yousaid(settings.database_path, settings.secrets_path, people_for(people, 750_000_000))
        timer.install(runtime.application)
        if not tap_priority:  # on this runtime's instance only
            runtime.ingest.tap_answers.THRESHOLD = 10**9
        context = multiprocessing.get_context("spawn")
        ready, done = context.Event(), context.Event()
        child = None
        if separate_sender:
            runtime.sender = cast(OutboxSender, _ParkedSender())
            child = context.Process(
                target=_sender_process, args=(environment, sender_rate, ready, done)
            )
            child.start()
            # a process's Event, not asyncio's: waited for in a thread
            await asyncio.to_thread(ready.wait, 60)
        await start(runtime)

        async def settled() -> bool:
            return await outbox_settled(runtime.db)

        sender_pid = child.pid if child is not None else None
        sender_cpu = process_cpu_seconds(sender_pid) if sender_pid else 0.0
        try:
            await drive(crowd, timer, measure, settled)  # measures the bot's and server's CPU
            if sender_pid:
                sender_cpu = process_cpu_seconds(sender_pid) - sender_cpu
        finally:
            await stop(runtime)
            done.set()
            if child is not None:
                child.join(60)
        calls, failed_calls = await crowd.totals()
    return {
        "name": name,
        "updates": measure.updates,
        "updates_per_s": round(measure.per_second, 1),
        "wall_s": round(measure.wall_seconds, 1),
        "bot_cpu_s": round(measure.cpu_seconds, 1),
        "sender_process_cpu_s": round(sender_cpu, 1),
        "server_and_people_cpu_s": round(measure.server_cpu_seconds or 0.0, 1),
        "replies_missing": measure.notes.get("rounds_without_a_reply", 0),
        "bot_api_calls": calls,
        "failed_calls": failed_calls,
    }


async def run(
    people: int, repeats: int, sender_rate: float, tap_priority: bool
) -> list[dict[str, object]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            for separate in (False, True):
                folder = Path(tmp) / f"{repeat}-{separate}"
                folder.mkdir()
                row = await run_once(people, folder, separate, sender_rate, tap_priority)
                print(row, file=sys.stderr, flush=True)
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--sender-rate",
        type=float,
        default=UNPACED,
        help="messages a second the sender may send, in both shapes (default: unpaced, as in "
        "bench/inbound.py)",
    )
    parser.add_argument(
        "--taps-not-first",
        action="store_true",
        help="handle updates while button taps are still being answered, in both shapes",
    )
    args = parser.parse_args()
    if args.people < 1 or args.repeats < 1 or args.sender_rate <= 0:
        parser.error("--people and --repeats must be at least 1, --sender-rate above 0")
    rows = asyncio.run(run(args.people, args.repeats, args.sender_rate, not args.taps_not_first))
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
