"""Wiring: builds the application from settings and runs its long-lived tasks."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telegram import Update
from telegram.ext import Application, ApplicationBuilder, ContextTypes

from bot import error_reporting
from bot.conversation import ConversationService
from bot.dialogue_files import load_dialogues
from bot.ingest import POLL_TIMEOUT_S, Ingest
from bot.rendering import Catalogs
from bot.scheduler import Scheduler
from bot.secrets_file import load_secrets
from bot.sender import ChatPacer, OutboxSender
from bot.settings import SHIPPED_LOCALES, Settings
from bot.telegram_adapter import PerChatUpdateProcessor, TelegramAdapter
from state_machines.engine import Engine
from storage.clock import Clock, SystemClock
from storage.database import Database

log = logging.getLogger(__name__)
_RETRY_DELAY_S = 2.0


@dataclass
class Runtime:
    settings: Settings
    db: Database
    engine: Engine
    clock: Clock
    application: Application[Any, Any, Any, Any, Any, Any]
    service: ConversationService
    sender: OutboxSender
    ingest: Ingest
    scheduler: Scheduler
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def build_runtime(
    settings: Settings,
    clock: Clock | None = None,
    poll_timeout: int = POLL_TIMEOUT_S,
    chat_pacer: ChatPacer | None = None,
) -> Runtime:
    """Everything `run` needs, checked before any message is handled."""
    token = settings.require_token()
    engine = Engine(load_dialogues(settings.dialogues_dir))
    secrets = load_secrets(settings.secrets_path, production=settings.production)
    clock = clock or SystemClock()
    db = await Database.open(settings.database_path)
    applied = await db.migrate()
    if applied:
        log.info("database migrated: %s", ", ".join(applied))
    application = (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.api_base_url)
        .base_file_url(_file_url(settings.api_base_url))
        .updater(None)
        .concurrent_updates(PerChatUpdateProcessor(64))
        .connection_pool_size(16)
        .pool_timeout(10)
        .build()
    )
    catalogs = Catalogs(settings.locales_dir, SHIPPED_LOCALES)
    sender = OutboxSender(
        db, application.bot, clock, settings.send_rate_per_second, pacer=chat_pacer
    )
    service = ConversationService(
        db, engine, catalogs, secrets, clock, settings.default_locale, SHIPPED_LOCALES, sender.wake
    )
    TelegramAdapter(service).install(application)
    ingest = Ingest(db, application, clock, secrets, poll_timeout)
    runtime = Runtime(
        settings, db, engine, clock, application, service, sender, ingest, Scheduler(db, clock)
    )
    application.add_error_handler(_error_handler(runtime))
    return runtime


def _file_url(base_url: str) -> str:
    head, _, tail = base_url.rstrip("/").rpartition("/")
    return f"{head}/file/{tail}" if head else base_url


def _error_handler(runtime: Runtime) -> Any:
    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Report, then retry the update a few times before giving up on it kindly."""
        error = context.error
        log.error(
            "handling an update failed: %s",
            type(error).__name__,
            exc_info=(type(error), error, error.__traceback__) if error else None,
        )
        if error is not None:
            error_reporting.report(error)
        if not isinstance(update, Update):
            return
        chat_id = update.effective_chat.id if update.effective_chat else None
        if await runtime.service.record_failure(update.update_id, chat_id):
            task = asyncio.create_task(_retry(runtime, update.update_id))
            runtime.tasks.append(task)

    return on_error


async def _retry(runtime: Runtime, update_id: int) -> None:
    await asyncio.sleep(_RETRY_DELAY_S)
    await runtime.ingest.redispatch(update_id)


async def start(runtime: Runtime, *, poll: bool = True) -> None:
    """Connect to Telegram, resume unfinished work, and start the long-lived tasks."""
    await runtime.application.initialize()
    await runtime.application.start()
    if poll:
        # A webhook left set would make getUpdates fail with 409.
        await runtime.application.bot.delete_webhook(drop_pending_updates=False)
    resumed = await runtime.ingest.redispatch_pending()
    if resumed:
        log.info("resumed %d updates received before the last stop", resumed)
    await runtime.scheduler.ensure_housekeeping()
    runtime.tasks.append(asyncio.create_task(runtime.sender.run(), name="sender"))
    runtime.tasks.append(asyncio.create_task(runtime.scheduler.run(), name="scheduler"))
    if poll:
        runtime.tasks.append(asyncio.create_task(runtime.ingest.poll(), name="poller"))


async def stop(runtime: Runtime) -> None:
    """Stop polling, finish the updates in hand, flush what is in flight, close."""
    runtime.ingest.stop()
    runtime.scheduler.stop()
    if runtime.application.running:
        await runtime.application.stop()
    await runtime.sender.stop()
    for task in runtime.tasks:
        task.cancel()
    await asyncio.gather(*runtime.tasks, return_exceptions=True)
    await runtime.application.shutdown()
    await runtime.db.close()


async def run_until_signalled(settings: Settings) -> None:
    """`python -m bot run`: long polling until SIGINT or SIGTERM."""
    runtime = await build_runtime(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await start(runtime)
    me = runtime.application.bot
    log.info(
        "YouSaid is running as @%s (database %s)", me.username, Path(settings.database_path).name
    )
    await stopping.wait()
    log.info("stopping")
    await stop(runtime)
