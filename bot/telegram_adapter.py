"""The Telegram adapter: python-telegram-bot handlers that turn updates into engine events.

Thin on purpose: each handler answers what must be answered at once (callback queries),
builds one event and passes it to the conversation service. Nothing here decides dialogue.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from telegram import Chat, ChatMember, Message, Update
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.broadcasts import CANCEL_PREFIX, BroadcastService
from bot.checkins import BUTTON_PREFIX as CHECKIN_PREFIX
from bot.checkins import CheckinService
from bot.conversation import ConversationService, Sender, TappedMessage
from bot.data_rights import FILE_BUTTON as MYDATA_FILE
from bot.data_rights import DataRightsService
from bot.digests import DigestService
from bot.flood import FloodGate, Verdict, sent_at
from bot.ingest import TapAnswers
from bot.panel_texts import ANSWER_PREFIX, MANAGE_PREFIX, RSVP_PREFIX
from bot.panels import PanelService
from bot.review import BUTTON_PREFIX as RETAG_PREFIX
from bot.review import ReviewService
from bot.rsvp import RsvpService
from bot.safety import ANSWER_PREFIX as SAFETY_PREFIX
from bot.safety import CALLED_ACTION as SAFETY_CALLED
from bot.safety import STAFF_PREFIX as SAFETY_STAFF_PREFIX
from bot.safety import SafetyService
from bot.stop_words import StopWords
from bot.updates import BUTTON_PREFIX as UPDATE_PREFIX
from bot.updates import WITHDRAW_PREFIX, UpdateService
from state_machines.events import (
    ButtonPressed,
    CommandSent,
    Started,
    TextSent,
    UnsupportedSent,
)

log = logging.getLogger(__name__)

_PRIVATE = filters.ChatType.PRIVATE
_BROADCAST_STOP = re.compile(r"^" + re.escape(CANCEL_PREFIX) + r"\d{1,12}$")
# Panel buttons (bot/panel_texts.py); anything else with these prefixes is an old button.
_TOKEN = r"(?P<token>[0-9a-f]{16})"
# The buttons of app messages (outside the dialogue engine), by their callback data. Anything
# else with these prefixes falls through to the engine, which calls it an old button.
_RSVP = re.compile(
    rf"^{re.escape(RSVP_PREFIX)}{_TOKEN}:(?P<action>[ymncdrex]|s:[a-z]{{1,20}}|l:[a-z]{{2,5}})$"
)
_MANAGE = re.compile(rf"^{re.escape(MANAGE_PREFIX)}(?P<panel>\d{{1,12}}):(?P<action>[mrwxtc])$")
_ANSWER = re.compile(rf"^{re.escape(ANSWER_PREFIX)}{_TOKEN}$")
_SAFETY = re.compile(rf"^{re.escape(SAFETY_PREFIX)}{_TOKEN}:(?P<action>[ynre]|a[a-z-]{{1,24}})$")
# sa:<token> (write to them) or sa:<token>:c (I called them)
_SAFETY_STAFF = re.compile(
    rf"^{re.escape(SAFETY_STAFF_PREFIX)}{_TOKEN}(?::(?P<action>{SAFETY_CALLED}))?$"
)
_MYDATA_FILE = re.compile(rf"^{re.escape(MYDATA_FILE)}$")
_CHECKIN = re.compile(rf"^{re.escape(CHECKIN_PREFIX)}{_TOKEN}$")
_RETAG = re.compile(rf"^{re.escape(RETAG_PREFIX)}(?P<answer>\d{{1,12}})$")
_UPDATE = re.compile(rf"^{re.escape(UPDATE_PREFIX)}{_TOKEN}:(?P<action>[hnm])$")
_WITHDRAW = re.compile(rf"^{re.escape(WITHDRAW_PREFIX)}(?P<update>\d{{1,12}})$")


@dataclass(frozen=True)
class AppServices:
    """The services behind app commands and buttons (outside the dialogue engine)."""

    panels: PanelService
    rsvp: RsvpService
    checkins: CheckinService
    safety: SafetyService
    rights: DataRightsService
    updates: UpdateService
    digests: DigestService
    review: ReviewService


ButtonRoute = Callable[[int, Sender, "re.Match[str]", int], Awaitable[None]]
CommandRoute = Callable[[int, Sender], Awaitable[None]]


def _button_routes(app: AppServices) -> list[tuple[re.Pattern[str], ButtonRoute]]:
    """(pattern, handler(update id, sender, match, tapped message id)) for app buttons."""
    return [
        (_RSVP, lambda u, s, m, mid: app.rsvp.on_answer(u, s, m["token"], m["action"], mid)),
        (_MANAGE, lambda u, s, m, _: app.panels.on_manage(u, s, int(m["panel"]), m["action"])),
        (_ANSWER, lambda u, s, m, _: app.panels.on_answer_person(u, s, m["token"])),
        (_CHECKIN, lambda u, s, m, _: app.checkins.on_button(u, s, m["token"])),
        (_SAFETY, lambda u, s, m, _: app.safety.on_answer(u, s, m["token"], m["action"])),
        (_SAFETY_STAFF, lambda u, s, m, _: app.safety.on_staff(u, s, m["token"], m["action"])),
        (_MYDATA_FILE, lambda u, s, m, _: app.rights.on_mydata(u, s, as_file=True)),
        (_UPDATE, lambda u, s, m, _: app.updates.on_reaction(u, s, m["token"], m["action"])),
        (_WITHDRAW, lambda u, s, m, _: app.updates.on_withdraw(u, s, int(m["update"]))),
        (_RETAG, lambda u, s, m, _: app.review.on_change(u, s, int(m["answer"]))),
    ]


def _command_routes(app: AppServices) -> dict[str, CommandRoute]:
    """App commands (the rest are dialogue commands, in dialogues/common.yaml)."""
    return {
        "panels": app.panels.on_list,
        "feedback": app.checkins.on_request,
        "mydata": lambda u, s: app.rights.on_mydata(u, s),
        "updates": app.updates.on_list,
        "digest": app.digests.on_request,
        "review": app.review.on_list,
    }


def _leave_unhandled(coroutine: Awaitable[Any]) -> None:
    """Drop an update's handling unstarted: it stays pending in the inbox (for the next
    start), and its coroutine is closed so Python does not warn it was never awaited."""
    if inspect.iscoroutine(coroutine):
        coroutine.close()


# A failed update's retries take at most about six minutes (runtime._retry's delays).
_HOLD_AT_MOST_S = 900.0


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """One update at a time per person, many people at once.

    The per-chat lock is taken *before* a concurrency slot, so one person flooding the bot
    queues behind their own lock instead of filling every slot and starving others. PTB's own
    semaphore (taken first, in its final `process_update`) is therefore sized so it never
    binds; the real limit is `self._slots`."""

    _UNBOUNDED = 1_000_000

    def __init__(
        self, max_concurrent_updates: int = 64, tap_answers: TapAnswers | None = None
    ) -> None:
        super().__init__(self._UNBOUNDED)
        self._locks: dict[int, asyncio.Lock] = {}
        self._waiting: Counter[int] = Counter()
        self._slots = asyncio.BoundedSemaphore(max_concurrent_updates)
        self._tap_answers = tap_answers
        # Chat -> (the update that failed and will be tried again, set once it is done):
        # the chat's later updates wait for it (see `hold_for_retry`).
        self._holding: dict[int, tuple[int, asyncio.Event]] = {}
        self._failed: set[int] = set()  # updates whose handling just failed
        self._letting_go = False  # stopping: held updates are left for the next start

    def hold_for_retry(self, update: object) -> None:
        """`update` failed and will be tried again in a few seconds: until it is handled
        (or given up) the chat's later updates wait, so a typed answer does not overtake
        the one before it and land on the wrong question."""
        key, update_id = _chat_key(update), getattr(update, "update_id", None)
        if key is None or update_id is None:
            return
        self._failed.add(update_id)
        self._holding.setdefault(key, (update_id, asyncio.Event()))

    def let_go(self) -> None:
        """At stop (the retries are cancelled): updates held behind a retry are left
        pending, not handled now, so the next start replays the chat's updates in order."""
        self._letting_go = True
        for _, done in self._holding.values():
            done.set()
        self._holding.clear()

    def release(self, update_id: int) -> None:
        """The held update is done with (handled, given up, or no longer pending)."""
        for key, (held, done) in list(self._holding.items()):
            if held == update_id:
                done.set()
                del self._holding[key]

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = _chat_key(update)
        if key is None:
            async with self._slots:
                await self._let_through()
                await coroutine
            return
        update_id = getattr(update, "update_id", None)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] += 1
        try:
            while True:
                if await self._held_back(key, update_id):
                    if self._letting_go:
                        _leave_unhandled(coroutine)
                        break
                    continue  # waited for an earlier update's retry: look again
                async with lock:
                    held = self._holding.get(key)
                    if held is not None and held[0] != update_id:
                        continue  # it failed while we queued: wait outside the lock
                    async with self._slots:
                        await self._let_through()
                        await coroutine
                    break
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
                del self._locks[key]
            if update_id is not None:
                if update_id in self._failed:
                    self._failed.discard(update_id)  # held until its retry
                else:
                    self.release(update_id)

    async def _held_back(self, key: int, update_id: int | None) -> bool:
        """Wait while another update of this chat awaits its retry; True if it waited. At
        most _HOLD_AT_MOST_S: a retry that never comes must not stop the chat for good."""
        held = self._holding.get(key)
        if held is None or held[0] == update_id:
            return False
        try:
            await asyncio.wait_for(held[1].wait(), _HOLD_AT_MOST_S)
        except TimeoutError:
            log.warning("an update's retry did not come; the chat goes on without it")
            self.release(held[0])
        return True

    async def _let_through(self) -> None:
        # Inside a slot: only the few updates about to start wait on the tap answers (after a
        # burst, thousands wait for a slot; all of them woken each time the answers thin out
        # would cost more than the answers).
        if self._tap_answers is not None:
            await self._tap_answers.let_through()

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to tear down."""


def _chat_key(update: object) -> int | None:
    if not isinstance(update, Update):
        return None
    if update.effective_chat is not None:
        return update.effective_chat.id
    return update.effective_user.id if update.effective_user else None


class TelegramAdapter:
    """Registers the handlers on an Application and routes updates to the service."""

    def __init__(
        self,
        service: ConversationService,
        broadcasts: BroadcastService,
        app: AppServices,
        stop_words: StopWords,
        flood: FloodGate | None = None,
    ) -> None:
        self._service = service
        self._stop_words = stop_words
        self._broadcasts = broadcasts
        self._app = app
        self._flood = flood or FloodGate()
        self._buttons = _button_routes(app)
        self._commands = _command_routes(app)

    def install(self, application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        groups = filters.ChatType.GROUPS & filters.UpdateType.MESSAGES
        # Only a person's own new messages in a private chat count: not business-account
        # messages, not edits, not forwards, not service notices (pins, timers).
        own = _PRIVATE & filters.UpdateType.MESSAGE & ~filters.FORWARDED
        # Before every other handler (an earlier group): a flood is dropped unread.
        application.add_handler(TypeHandler(Update, self.on_any_update), group=-1)
        application.add_handlers(
            [
                ChatMemberHandler(self.on_membership, ChatMemberHandler.MY_CHAT_MEMBER),
                MessageHandler(groups, self.on_group_message),
                CallbackQueryHandler(self.on_broadcast_stop, pattern=_BROADCAST_STOP),
                *(
                    CallbackQueryHandler(self.on_app_button, pattern=pattern)
                    for pattern, _ in self._buttons
                ),
                CallbackQueryHandler(self.on_button),
                MessageHandler(_PRIVATE & filters.UpdateType.EDITED_MESSAGE, self.on_edited),
                MessageHandler(
                    _PRIVATE & filters.UpdateType.MESSAGE & filters.FORWARDED, self.on_forwarded
                ),
                MessageHandler(own & filters.StatusUpdate.ALL, self.on_ignored),
                CommandHandler("start", self.on_start, filters=own),
                CommandHandler(list(self._commands), self.on_app_command, filters=own),
                MessageHandler(own & filters.COMMAND, self.on_command),
                MessageHandler(own & filters.TEXT, self.on_text),
                MessageHandler(own & filters.CONTACT, self.on_contact),
                MessageHandler(own, self.on_unsupported),
                TypeHandler(Update, self.on_ignored),
            ]
        )

    async def on_any_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """One person sending too much too fast: handle none of the excess (its text is
        dropped with the inbox payload), and say "slow down" once per window."""
        key = _chat_key(update)
        if key is None or update.my_chat_member is not None:
            return  # blocking/unblocking the bot must always count
        verdict = self._flood.check(key, sent_at(update), update.update_id)
        if verdict is Verdict.HANDLE:
            return
        message = update.message
        if message is not None and (
            message.contact is not None or self._stop_words.means_stop(message.text or "")
        ):
            # STOP, and a number shared for the duty staff, are never dropped. (Looked for
            # only over the limit: folding every update's text for it cost a tenth of the
            # CPU per update, bench/FINDINGS.md, thirteenth round.)
            self._flood.excuse(key, update.update_id)
            return
        chat, user = update.effective_chat, update.effective_user
        private = chat is not None and chat.type == Chat.PRIVATE
        if not private or chat is None or user is None or user.is_bot:
            await self._service.ignore(update.update_id)
            raise ApplicationHandlerStop
        warn = verdict is Verdict.WARN
        if warn:
            log.info("a person is sending too fast; slowing them down")
        # An edit is read for risk too: one can add a threat (as on_edited reads it). Not a
        # button's message, whose words are the bot's own.
        written = message or update.edited_message
        text = (written.text or written.caption) if written else None
        sender = Sender(user.id, chat.id, user.language_code)
        await self._service.drop_flooded(update.update_id, sender, text, warn)
        raise ApplicationHandlerStop

    async def on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/start, with or without a deep-link payload."""
        payload = context.args[0] if context.args else None
        # The service redeems the payload (enrolment code or staff invite) in the update's
        # own transaction; until then it is just what the link carried.
        await self._step(update, Started(payload=payload, payload_accepted=False))

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Any other slash command (/help, /privacy, /stop, ...)."""
        text = update.effective_message.text if update.effective_message else ""
        words = (text or "/").split(maxsplit=1)
        name = words[0][1:].split("@")[0].lower()
        await self._step(update, CommandSent(name), free_text=words[1] if len(words) > 1 else None)

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Plain text: STOP on its own, in any language (bot/stop_words.py), means /stop;
        anything else is an answer."""
        text = update.effective_message.text if update.effective_message else None
        text = text or ""
        if self._stop_words.means_stop(text):
            await self._step(update, CommandSent("stop"))
        else:
            await self._step(update, TextSent(text))

    async def on_broadcast_stop(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The organiser's "Stop sending" button on a broadcast's progress message."""
        query, user, chat = update.callback_query, update.effective_user, update.effective_chat
        assert query is not None
        if query.data is None or not _BROADCAST_STOP.match(query.data):
            # PTB hands a query with no data to every pattern; it is no stop button.
            await self.on_button(update, context)
            return
        if user is None or chat is None or chat.type != Chat.PRIVATE:
            await self._service.ignore(update.update_id)
            return
        broadcast_id = int(query.data.removeprefix(CANCEL_PREFIX))
        pseudonym = self._service.pseudonym_of(user.id)
        locale = await self._service.locale_of(pseudonym)
        await self._broadcasts.stop_requested(
            update.update_id, broadcast_id, pseudonym, chat.id, locale
        )

    async def on_contact(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A phone number shared with Telegram's contact button (after a safety request)."""
        sender, message = self._sender(update), update.effective_message
        if sender is None or message is None or message.contact is None:
            await self._service.ignore(update.update_id)
            return
        own = message.contact.user_id == sender.user_id
        await self._app.safety.on_contact(
            update.update_id, sender, message.contact.phone_number, own
        )

    async def on_app_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/panels, /feedback, /mydata, /updates: handled by their services."""
        sender, message = self._sender(update), update.effective_message
        if sender is None or message is None or not message.text:
            await self._service.ignore(update.update_id)
            return
        name = message.text.split()[0][1:].split("@")[0].lower()
        await self._commands[name](update.update_id, sender)

    async def on_app_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A button of an app message (panel invitation, check-in, safety, update...)."""
        query = update.callback_query
        assert query is not None
        if query.data is None or not any(p.match(query.data) for p, _ in self._buttons):
            await self.on_button(update, context)  # no data: see on_broadcast_stop
            return
        sender = self._sender(update)
        if sender is None or query.message is None:
            await self._service.ignore(update.update_id)
            return
        for pattern, route in self._buttons:
            if match := pattern.match(query.data):
                await route(update.update_id, sender, match, query.message.message_id)
                return

    def _sender(self, update: Update) -> Sender | None:
        """Who wrote, when it is a person in a private chat (else None: ignore it)."""
        user, chat = update.effective_user, update.effective_chat
        if user is None or chat is None or user.is_bot or chat.type != Chat.PRIVATE:
            return None
        return Sender(user.id, chat.id, user.language_code)

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A button tap (answered to Telegram when it was stored, bot/ingest.py): a step."""
        query = update.callback_query
        assert query is not None
        if query.message is None or query.message.chat.type != Chat.PRIVATE:
            await self._service.ignore(update.update_id)
            return
        tapped = None
        if isinstance(query.message, Message) and query.message.text:
            tapped = TappedMessage(query.message.message_id, query.message.text)
        await self._step(update, ButtonPressed(query.data or ""), tapped)

    async def on_unsupported(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stickers, photos, voice notes, locations...: a kind answer, then the question."""
        message = update.effective_message
        kind = _content_kind(message) if message else "unknown"
        caption = message.caption if message else None
        await self._step(update, UnsupportedSent(_ANSWERED_AS.get(kind, kind)), free_text=caption)

    async def on_forwarded(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A forwarded message is someone else's words: never taken as an answer. It is
        still checked for risk phrases: a threat someone received may be forwarded to us."""
        message = update.effective_message
        shown = (message.text or message.caption) if message else None
        await self._step(update, UnsupportedSent("forwarded"), free_text=shown)

    async def on_edited(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An edited message: the original was already answered; say so kindly. It is
        still checked for risk phrases (an edit can add one)."""
        sender, message = self._sender(update), update.effective_message
        if sender is None or message is None:
            await self._reply(update, "edited_message")
            return
        text = message.text or message.caption or ""  # a photo's caption can be edited too
        if not text:
            # A live location sends every move as an edit, for up to hours: answering each
            # would flood the chat (and ask them to send it again), so nothing is said.
            await self._service.ignore(update.update_id)
            return
        await self._service.handle_edited(update.update_id, sender, text)

    async def on_group_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """YouSaid works in private chats only: say so and leave the group."""
        chat = update.effective_chat
        assert chat is not None
        await self._service.reply_with_message(
            update.update_id, chat.id, "private_only", leave_chat=True
        )

    async def on_membership(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The person blocked or unblocked the bot, or someone added it to a group."""
        member = update.my_chat_member
        assert member is not None
        if member.chat.type != Chat.PRIVATE:
            added = member.new_chat_member.status in (ChatMember.MEMBER, ChatMember.ADMINISTRATOR)
            if not added:
                await self._service.ignore(update.update_id)
                return
            # A channel is public: leave without posting anything there.
            message = None if member.chat.type == Chat.CHANNEL else "private_only"
            await self._service.reply_with_message(
                update.update_id, member.chat.id, message, leave_chat=True
            )
            return
        blocked = member.new_chat_member.status in (ChatMember.BANNED, ChatMember.LEFT)
        await self._service.set_reachable(update.update_id, member.chat.id, not blocked)

    async def on_ignored(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Updates YouSaid has no use for (channel posts, polls...): marked handled."""
        await self._service.ignore(update.update_id)

    async def _step(
        self,
        update: Update,
        event: Any,
        tapped: TappedMessage | None = None,
        free_text: str | None = None,
    ) -> None:
        user, chat = update.effective_user, update.effective_chat
        if user is None or chat is None or user.is_bot:
            await self._service.ignore(update.update_id)
            return
        message_id = update.message.message_id if update.message else None
        sender = Sender(user.id, chat.id, user.language_code, message_id)
        await self._service.handle_event(update.update_id, sender, event, tapped, free_text)

    async def _reply(self, update: Update, message_key: str) -> None:
        chat = update.effective_chat
        if chat is None:
            await self._service.ignore(update.update_id)
            return
        await self._service.reply_with_message(update.update_id, chat.id, message_key)


# Kinds answered with the same words (common.yaml's unsupported_<kind>): whatever is
# spoken is a voice message to the person; a moving picture is a video.
_ANSWERED_AS = {"audio": "voice", "video_note": "voice", "animation": "video"}


def _content_kind(message: Message) -> str:
    # "animation" before "document": Telegram sets both on a GIF.
    for kind in (
        "animation",
        "sticker",
        "photo",
        "voice",
        "video",
        "video_note",
        "audio",
        "document",
        "location",
        "contact",
        "poll",
        "dice",
    ):
        if getattr(message, kind, None):
            return kind
    return "other"
