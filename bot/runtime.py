"""Wiring: builds the application from settings and runs its long-lived tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
from asyncio import FIRST_COMPLETED
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from telegram import Update
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes

from bot import error_reporting
from bot.access import DUTY_HANDOVER_JOB
from bot.answer_keeper import AnswerKeeper
from bot.broadcasts import PROGRESS_JOB, BroadcastService
from bot.checkins import EXPIRE_JOB, NUDGE_JOB, ROUND_JOB, ROUNDS_CHECK_JOB, CheckinService
from bot.conversation import LOOSE_TEXT_ORGANISER, ConversationService
from bot.data_rights import DataRightsService
from bot.desk import DialogueTexts
from bot.dialogue_files import build_engine
from bot.digests import DIGEST_CHECK_JOB, DIGEST_JOB, REPORT_JOB, DigestService
from bot.flood import FloodGate
from bot.http_request import AiohttpRequest
from bot.ingest import ALLOWED_UPDATES, POLL_TIMEOUT_S, Ingest, TapAnswers
from bot.panel_texts import PanelTexts
from bot.panels import (
    CORRECT_JOB,
    INVITE_JOB,
    OVER_JOB,
    REMINDER_JOB,
    REWORD_JOB,
    PanelService,
)
from bot.payload_seal import payload_codec
from bot.rendering import Catalogs
from bot.retention import RETENTION_JOB, RETENTION_WAL_JOB, RetentionJob, RetentionRules
from bot.review import ReviewService
from bot.rsvp import RsvpService
from bot.safeguarding import load_risk_phrases
from bot.safety import FOLLOW_UP_JOB as SAFETY_FOLLOW_UP
from bot.safety import UNANSWERED_JOB as SAFETY_UNANSWERED
from bot.safety import SafetyService
from bot.scheduler import Scheduler
from bot.secrets_file import Secrets, load_secrets
from bot.sender import ChatPacer, OutboxSender
from bot.settings import SHIPPED_LOCALES, Settings
from bot.stop_words import STOP_WORDS_FILE, load_stop_words
from bot.telegram_adapter import AppServices, PerChatUpdateProcessor, TelegramAdapter
from bot.themes import load_taxonomy
from bot.updates import DELIVER_JOB, WITHDRAW_JOB, UpdateService
from bot.webhook import WebhookConfig, WebhookReceiver
from state_machines.engine import Engine
from storage.clock import Clock, SystemClock
from storage.database import Database
from storage.queues import HEARTBEAT_KEY, Meta

log = logging.getLogger(__name__)
# A failing update is retried after 2, 4, 8... seconds. Database trouble (locked, disk full)
# is usually brief, so it gets more tries than a fault in the handling itself.
_FIRST_RETRY_DELAY_S = 2.0
_MAX_RETRY_DELAY_S = 120.0
_TRIES_FOR_HANDLING_FAULTS = 3
_TRIES_FOR_DATABASE_TROUBLE = 10


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
    broadcasts: BroadcastService
    panels: PanelService
    digests: DigestService
    updates: UpdateService
    checkins: CheckinService
    webhook: WebhookReceiver | None = None
    # Long-lived tasks (poller, sender, scheduler): if one ends, the process must stop.
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    retries: set[asyncio.Task[None]] = field(default_factory=set)
    # Failed attempts of updates whose failure the database could not record (update id ->
    # how many), so that their retries still end.
    unrecorded_failures: dict[int, int] = field(default_factory=dict)


async def build_runtime(
    settings: Settings,
    clock: Clock | None = None,
    poll_timeout: int = POLL_TIMEOUT_S,
    chat_pacer: ChatPacer | None = None,
    send_rate: float | None = None,
) -> Runtime:
    """Everything `run` needs, checked before any message is handled. `chat_pacer` and
    `send_rate` (messages a second, in place of SEND_RATE_PER_SECOND, whose ceiling is
    1,000) are for benchmarks against a local server that enforces no limit."""
    token = settings.require_token()
    clock = clock or SystemClock()
    engine = build_engine(settings.dialogues_dir, clock, settings.timezone)
    secrets = load_secrets(settings.secrets_path, production=settings.production)
    db = await Database.open(settings.database_path)
    try:
        return await _assemble(
            settings, db, token, clock, engine, secrets, poll_timeout, chat_pacer, send_rate
        )
    except BaseException:
        # A start that fails (a migration, a bad token, Telegram unreachable) must not
        # leave the database open: its worker thread would keep the process from exiting.
        await db.close()
        raise


async def _assemble(
    settings: Settings,
    db: Database,
    token: str,
    clock: Clock,
    engine: Engine,
    secrets: Secrets,
    poll_timeout: int,
    chat_pacer: ChatPacer | None,
    send_rate: float | None,
) -> Runtime:
    await db.seal_payloads(*payload_codec(secrets))
    applied = await db.migrate()
    if applied:
        log.info("database migrated: %s", ", ".join(applied))
    tap_answers = TapAnswers()
    application = (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.api_base_url)
        .base_file_url(_file_url(settings.api_base_url))
        .updater(None)
        .concurrent_updates(PerChatUpdateProcessor(64, tap_answers))
        # aiohttp, not PTB's default httpx: httpx's pool dominated the CPU profile under a
        # burst of updates (bench/RESULTS.md, inbound).
        .request(AiohttpRequest(pool_size=16, pool_timeout=10))
        .get_updates_request(AiohttpRequest(pool_size=1))
        .build()
    )
    catalogs = Catalogs(settings.locales_dir, SHIPPED_LOCALES)
    sender = OutboxSender(
        db, application.bot, clock, send_rate or settings.send_rate_per_second, pacer=chat_pacer
    )
    taxonomy = load_taxonomy(settings.dialogues_dir / "themes.yaml")
    service = ConversationService(
        db,
        engine,
        catalogs,
        secrets,
        clock,
        settings.default_locale,
        SHIPPED_LOCALES,
        sender.wake,
        AnswerKeeper(secrets, taxonomy),
    )
    ingest = Ingest(db, application, clock, secrets, tap_answers, poll_timeout)
    scheduler = Scheduler(db, clock, after_jobs=sender.wake)

    def wake_sender_and_scheduler() -> None:
        """A broadcast queued messages and scheduled its progress reports."""
        sender.wake()
        scheduler.wake()

    broadcasts = BroadcastService(
        db, clock, engine, catalogs, settings.send_rate_per_second, wake_sender_and_scheduler
    )
    scheduler.register(PROGRESS_JOB, broadcasts.on_progress_tick)
    texts = PanelTexts(engine, catalogs, settings.timezone)
    panels = PanelService(db, clock, engine, texts, service, broadcasts, wake_sender_and_scheduler)
    rsvp = RsvpService(db, clock, engine, texts, service, wake_sender_and_scheduler)
    checkins = CheckinService(
        db,
        clock,
        engine,
        service,
        broadcasts,
        DialogueTexts(engine, catalogs, "feedback"),
        settings.timezone,
        int(settings.checkin_nudge_hours * 3_600_000),
        int(settings.checkin_expire_days * 86_400_000),
        wake_sender_and_scheduler,
    )
    safety = SafetyService(
        db,
        clock,
        engine,
        DialogueTexts(engine, catalogs, "safety"),
        service,
        load_risk_phrases(settings.dialogues_dir / "safeguarding.yaml"),
        sender.wake,
    )
    service.add_loose_text_handler(LOOSE_TEXT_ORGANISER, rsvp.pass_on_typed_reply)
    rights = DataRightsService(
        db,
        clock,
        engine,
        DialogueTexts(engine, catalogs, "my_data"),
        service,
        secrets,
        wake_sender_and_scheduler,
    )
    updates = UpdateService(
        db,
        clock,
        engine,
        DialogueTexts(engine, catalogs, "yousaid"),
        service,
        broadcasts,
        taxonomy,
        int(settings.update_lookback_weeks * 7 * 86_400_000),
        wake_sender_and_scheduler,
        settings.digest_k,
    )
    digests = DigestService(
        db,
        clock,
        engine,
        DialogueTexts(engine, catalogs, "digest"),
        service,
        [(t.id, t.label) for t in taxonomy.themes],
        settings.timezone,
        settings.digest_k,
        wake_sender_and_scheduler,
        secrets.decrypt_text,
    )
    scheduler.register_prepared(DIGEST_JOB, digests.prepare_weekly, digests.on_weekly)
    scheduler.register_prepared(REPORT_JOB, digests.prepare_report, digests.send_report)
    scheduler.register(DIGEST_CHECK_JOB, digests.on_check)  # hourly; first at start()
    scheduler.register(SAFETY_FOLLOW_UP, safety.on_follow_up, keep_trying=True)
    scheduler.register(SAFETY_UNANSWERED, safety.on_unanswered, keep_trying=True)
    scheduler.register(DUTY_HANDOVER_JOB, safety.on_handover, keep_trying=True)
    scheduler.register(ROUND_JOB, checkins.on_round, quick=True)  # each a part of a round
    scheduler.register(NUDGE_JOB, checkins.on_nudge)
    scheduler.register(EXPIRE_JOB, checkins.on_expire)
    scheduler.register(ROUNDS_CHECK_JOB, checkins.on_rounds_check)
    await checkins.ensure_rounds()  # a round given up after failures goes on; hourly after
    scheduler.register(REMINDER_JOB, panels.on_reminder)
    scheduler.register(OVER_JOB, panels.on_over)
    scheduler.register(INVITE_JOB, panels.on_invite_more, quick=True)
    scheduler.register(REWORD_JOB, panels.on_reword, quick=True)  # each a part
    scheduler.register(CORRECT_JOB, panels.on_correct, quick=True)  # each a part
    # Not quick: when few raised the theme, a part's query walks much of the region; the
    # loop stays free meanwhile. (A round's and a panel's query stops at 200 found.)
    scheduler.register(DELIVER_JOB, updates.on_deliver_more)
    scheduler.register(WITHDRAW_JOB, updates.on_withdraw_edit, quick=True)  # each a part
    rules = RetentionRules(settings.retention_months, settings.safeguarding_retention_days)
    retention = RetentionJob(db, rules)
    scheduler.register(RETENTION_JOB, retention.on_due, keep_trying=True)
    scheduler.register_prepared(RETENTION_WAL_JOB, retention.empty_wal, retention.after_empty_wal)
    await retention.ensure_scheduled(clock.now_ms())  # today's run, if not yet scheduled
    review = ReviewService(
        db,
        clock,
        engine,
        DialogueTexts(engine, catalogs, "retag"),
        service,
        secrets,
        updates,
        wake_sender_and_scheduler,
        settings.digest_k,
        settings.timezone,
    )
    services = AppServices(panels, rsvp, checkins, safety, rights, updates, digests, review)
    unhandled = service.unhandled_submits()
    if unhandled:
        raise RuntimeError(f"dialogue submits with no handler: {', '.join(unhandled)}")
    stop_words = load_stop_words(settings.dialogues_dir / STOP_WORDS_FILE)
    TelegramAdapter(
        service, broadcasts, services, stop_words, FloodGate(settings.flood_limit)
    ).install(application)
    runtime = Runtime(
        settings,
        db,
        engine,
        clock,
        application,
        service,
        sender,
        ingest,
        scheduler,
        broadcasts,
        panels,
        digests,
        updates,
        checkins,
    )
    if settings.webhook_url and settings.webhook_secret:
        host, port = settings.webhook_listen
        path = urlparse(settings.webhook_url).path or "/"
        config = WebhookConfig(settings.webhook_url, settings.webhook_secret, host, port, path)
        runtime.webhook = WebhookReceiver(config, ingest)
    application.add_error_handler(_error_handler(runtime))
    return runtime


def _file_url(base_url: str) -> str:
    head, _, tail = base_url.rstrip("/").rpartition("/")
    return f"{head}/file/{tail}" if head else base_url


def _error_handler(runtime: Runtime) -> Any:
    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Report, then retry the update with growing delays before giving up kindly."""
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
        tries = (
            _TRIES_FOR_DATABASE_TROUBLE
            if isinstance(error, sqlite3.OperationalError)
            else _TRIES_FOR_HANDLING_FAULTS
        )
        chat_id = update.effective_chat.id if update.effective_chat else None
        try:
            attempts = await runtime.service.record_failure(update.update_id, chat_id, tries)
        except sqlite3.Error as unrecorded:
            # The database is in trouble too (locked past busy_timeout, the disk full): the
            # attempt cannot be counted there, so it is counted here, and the update tried
            # again all the same; left without a retry, it would wait for the next start.
            log.warning("a failed update could not be recorded (%s)", type(unrecorded).__name__)
            counted = runtime.unrecorded_failures.get(update.update_id, 0) + 1
            runtime.unrecorded_failures[update.update_id] = counted
            attempts = counted if counted < tries else None
        in_order = runtime.application.update_processor
        if isinstance(in_order, PerChatUpdateProcessor):
            if attempts is not None:
                in_order.hold_for_retry(update)
            else:
                in_order.release(update.update_id)
        if attempts is not None:
            delay = min(_MAX_RETRY_DELAY_S, _FIRST_RETRY_DELAY_S * 2 ** (attempts - 1))
            task = asyncio.create_task(_retry(runtime, update.update_id, delay))
            runtime.retries.add(task)
            task.add_done_callback(runtime.retries.discard)

    return on_error


async def _retry(runtime: Runtime, update_id: int, delay: float) -> None:
    await asyncio.sleep(delay)
    requeued = False
    try:
        requeued = await runtime.ingest.redispatch(update_id)
    finally:
        if not requeued:
            # Handled meanwhile, given up, or the retry itself failed: the chat's later
            # updates must not wait for it.
            in_order = runtime.application.update_processor
            if isinstance(in_order, PerChatUpdateProcessor):
                in_order.release(update_id)


async def start(runtime: Runtime) -> None:
    """Connect to Telegram, resume unfinished work, and start the long-lived tasks:
    receiving (long polling, or the webhook when WEBHOOK_URL is set), sending, schedules."""
    await runtime.application.initialize()
    await runtime.application.start()
    bot = runtime.application.bot
    if runtime.webhook is None:
        # A webhook left set would make getUpdates fail with 409.
        await bot.delete_webhook(drop_pending_updates=False)
    resumed = await runtime.ingest.redispatch_pending()
    if resumed:
        log.info("resumed %d updates received before the last stop", resumed)
    await runtime.scheduler.ensure_housekeeping()
    await runtime.digests.ensure_scheduled()
    runtime.tasks.append(runtime.sender.start())
    runtime.tasks.append(asyncio.create_task(runtime.scheduler.run(), name="scheduler"))
    if runtime.webhook is None:
        runtime.tasks.append(asyncio.create_task(runtime.ingest.poll(), name="poller"))
        return
    await runtime.webhook.start()
    settings = runtime.settings
    await bot.set_webhook(
        settings.webhook_url or "",
        secret_token=settings.webhook_secret,
        allowed_updates=list(ALLOWED_UPDATES),
    )


async def stop(runtime: Runtime) -> None:
    """Stop receiving, finish the updates in hand, let sends under way be recorded, close.
    The webhook stays registered, so Telegram keeps updates for us while we are down."""
    runtime.ingest.stop()
    runtime.scheduler.stop()
    if runtime.webhook is not None:
        await runtime.webhook.stop()
    for task in runtime.tasks:
        if task.get_name() in ("poller", "scheduler"):
            task.cancel()
    for task in runtime.retries:
        task.cancel()
    await asyncio.gather(*runtime.retries, return_exceptions=True)
    in_order = runtime.application.update_processor
    if isinstance(in_order, PerChatUpdateProcessor):
        in_order.let_go()  # what waited behind a cancelled retry waits for the next start
    if runtime.application.running:
        await runtime.application.stop()  # waits for the updates already dispatched
    await runtime.ingest.tap_answers.finish()
    await runtime.sender.stop()
    await asyncio.gather(*runtime.tasks, return_exceptions=True)
    await runtime.application.shutdown()
    async with runtime.db.transaction() as conn:
        # Stopped cleanly: `health` and `restore` see at once that no bot is running.
        await Meta(conn).set(HEARTBEAT_KEY, "0")
    await runtime.db.close()


async def run_until_signalled(settings: Settings) -> int:
    """`python -m bot run` until SIGINT or SIGTERM. Returns 1 if a long-lived task died (so a
    supervisor restarts the process), else 0."""
    try:
        runtime = await build_runtime(settings)
    except TelegramError as exc:
        raise StartFailed(_why_not_started(exc)) from None
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await start(runtime)
    except BaseException as exc:
        await _abandon(runtime)
        if isinstance(exc, TelegramError | OSError):
            raise StartFailed(_why_not_started(exc)) from None
        raise
    log.info(
        "YouSaid is running as @%s (%s, database %s)",
        runtime.application.bot.username,
        "webhook" if runtime.webhook else "long polling",
        Path(settings.database_path).name,
    )
    return await supervise(runtime, stopping)


class StartFailed(Exception):
    """The bot could not start; the message says why in one line, with no token in it."""


def _why_not_started(exc: BaseException) -> str:
    # python-telegram-bot puts the token itself in InvalidToken's message.
    said = error_reporting.scrub_text(str(exc)) or type(exc).__name__
    if isinstance(exc, InvalidToken):
        return (
            f"Telegram refused the bot token ({said}): check TELEGRAM_BOT_TOKEN, and "
            "TELEGRAM_API_BASE_URL if you set it"
        )
    if isinstance(exc, NetworkError):
        return f"could not reach Telegram ({said}); the bot stops, to be started again"
    if isinstance(exc, OSError):
        return f"could not start ({said}): is the webhook's port (WEBHOOK_LISTEN) in use?"
    return f"could not start: {said}"


async def _abandon(runtime: Runtime) -> None:
    """Undo a start that failed half way, so the process can exit (and be started again):
    whatever was started is stopped, and the database closed."""
    for task in runtime.tasks:
        task.cancel()
    await asyncio.gather(*runtime.tasks, return_exceptions=True)
    with contextlib.suppress(Exception):
        if runtime.webhook is not None:
            await runtime.webhook.stop()
    with contextlib.suppress(Exception):
        if runtime.application.running:
            await runtime.application.stop()
        await runtime.application.shutdown()
    with contextlib.suppress(Exception):
        # Not done by the application's shutdown when its start failed in get_me: the
        # connection pools were opened all the same.
        await runtime.application.bot.shutdown()
    await runtime.db.close()


async def supervise(runtime: Runtime, stopping: asyncio.Event) -> int:
    """Wait for a stop request or for a long-lived task to end; then stop everything."""
    signal_task = asyncio.create_task(stopping.wait())
    done, _ = await asyncio.wait([signal_task, *runtime.tasks], return_when=FIRST_COMPLETED)
    signal_task.cancel()
    crashed = [task for task in done if task is not signal_task]
    for task in crashed:
        error = None if task.cancelled() else task.exception()
        log.error(
            "%s stopped unexpectedly (%s); YouSaid stops",
            task.get_name(),
            type(error).__name__ if error else "no error",
        )
        if error is not None:
            error_reporting.report(error)
    log.info("stopping")
    await stop(runtime)
    return 1 if crashed else 0
