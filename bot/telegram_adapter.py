"""The Telegram adapter: python-telegram-bot handlers that turn updates into engine events.

Thin on purpose: each handler answers what must be answered at once (callback queries),
builds one event and passes it to the conversation service. Nothing here decides dialogue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import Awaitable
from typing import Any

from telegram import Chat, ChatMember, Message, Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
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
from bot.panel_texts import ANSWER_PREFIX, MANAGE_PREFIX, RSVP_PREFIX
from bot.panels import PanelService
from bot.rsvp import RsvpService
from bot.safety import ANSWER_PREFIX as SAFETY_PREFIX
from bot.safety import STAFF_PREFIX as SAFETY_STAFF_PREFIX
from bot.safety import SafetyService
from state_machines.events import (
    ButtonPressed,
    CommandSent,
    Started,
    TextSent,
    UnsupportedSent,
)

log = logging.getLogger(__name__)

# The word STOP (Welsh: STOPIO) on its own, in any case, with optional punctuation, means
# /stop; inside a sentence ("please stop asking me about housing") it does not.
_STOP_WORD = re.compile(r"^\s*(stop|stopio)\s*[.!]*\s*$", re.IGNORECASE)
_PRIVATE = filters.ChatType.PRIVATE
_BROADCAST_STOP = re.compile(r"^" + re.escape(CANCEL_PREFIX) + r"\d{1,12}$")
# Panel buttons (bot/panel_texts.py); anything else with these prefixes is an old button.
_RSVP = re.compile(
    r"^" + re.escape(RSVP_PREFIX) + r"(?P<token>[0-9a-f]{16}):(?P<action>[ymncdr]|s:[a-z]{1,20})$"
)
_MANAGE = re.compile(r"^" + re.escape(MANAGE_PREFIX) + r"(?P<panel>\d{1,12}):(?P<action>[mrxt])$")
_ANSWER = re.compile(r"^" + re.escape(ANSWER_PREFIX) + r"(?P<token>[0-9a-f]{16})$")
_SAFETY = re.compile(
    r"^" + re.escape(SAFETY_PREFIX) + r"(?P<token>[0-9a-f]{16}):(?P<action>[ynr])$"
)
_SAFETY_STAFF = re.compile(r"^" + re.escape(SAFETY_STAFF_PREFIX) + r"(?P<token>[0-9a-f]{16})$")
_MYDATA_FILE = re.compile(r"^" + re.escape(MYDATA_FILE) + r"$")
_CHECKIN = re.compile(r"^" + re.escape(CHECKIN_PREFIX) + r"(?P<token>[0-9a-f]{16})$")


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """One update at a time per person, many people at once.

    The per-chat lock is taken *before* a concurrency slot, so one person flooding the bot
    queues behind their own lock instead of filling every slot and starving others. PTB's own
    semaphore (taken first, in its final `process_update`) is therefore sized so it never
    binds; the real limit is `self._slots`."""

    _UNBOUNDED = 1_000_000

    def __init__(self, max_concurrent_updates: int = 64) -> None:
        super().__init__(self._UNBOUNDED)
        self._locks: dict[int, asyncio.Lock] = {}
        self._waiting: Counter[int] = Counter()
        self._slots = asyncio.BoundedSemaphore(max_concurrent_updates)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = _chat_key(update)
        if key is None:
            async with self._slots:
                await coroutine
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] += 1
        try:
            async with lock, self._slots:
                await coroutine
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
                del self._locks[key]

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
        panels: PanelService,
        rsvp: RsvpService,
        checkins: CheckinService,
        safety: SafetyService,
        rights: DataRightsService,
    ) -> None:
        self._service = service
        self._broadcasts = broadcasts
        self._panels = panels
        self._rsvp = rsvp
        self._checkins = checkins
        self._safety = safety
        self._rights = rights

    def install(self, application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        groups = filters.ChatType.GROUPS & filters.UpdateType.MESSAGES
        # Only a person's own new messages in a private chat count: not business-account
        # messages, not edits, not forwards, not service notices (pins, timers).
        own = _PRIVATE & filters.UpdateType.MESSAGE & ~filters.FORWARDED
        application.add_handlers(
            [
                ChatMemberHandler(self.on_membership, ChatMemberHandler.MY_CHAT_MEMBER),
                MessageHandler(groups, self.on_group_message),
                CallbackQueryHandler(self.on_broadcast_stop, pattern=_BROADCAST_STOP),
                CallbackQueryHandler(self.on_panel_button, pattern=_RSVP),
                CallbackQueryHandler(self.on_panel_button, pattern=_MANAGE),
                CallbackQueryHandler(self.on_panel_button, pattern=_ANSWER),
                CallbackQueryHandler(self.on_panel_button, pattern=_CHECKIN),
                CallbackQueryHandler(self.on_panel_button, pattern=_SAFETY),
                CallbackQueryHandler(self.on_panel_button, pattern=_SAFETY_STAFF),
                CallbackQueryHandler(self.on_panel_button, pattern=_MYDATA_FILE),
                CallbackQueryHandler(self.on_button),
                MessageHandler(_PRIVATE & filters.UpdateType.EDITED_MESSAGE, self.on_edited),
                MessageHandler(
                    _PRIVATE & filters.UpdateType.MESSAGE & filters.FORWARDED, self.on_forwarded
                ),
                MessageHandler(own & filters.StatusUpdate.ALL, self.on_ignored),
                CommandHandler("start", self.on_start, filters=own),
                CommandHandler("panels", self.on_panels, filters=own),
                CommandHandler("feedback", self.on_feedback, filters=own),
                CommandHandler("mydata", self.on_mydata, filters=own),
                MessageHandler(own & filters.COMMAND, self.on_command),
                MessageHandler(own & filters.TEXT, self.on_text),
                MessageHandler(own & filters.CONTACT, self.on_contact),
                MessageHandler(own, self.on_unsupported),
                TypeHandler(Update, self.on_ignored),
            ]
        )

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
        """Plain text: STOP on its own means /stop; anything else is an answer."""
        text = update.effective_message.text if update.effective_message else None
        text = text or ""
        if _STOP_WORD.match(text):
            await self._step(update, CommandSent("stop"))
        else:
            await self._step(update, TextSent(text))

    async def on_broadcast_stop(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The organiser's "Stop sending" button on a broadcast's progress message."""
        query, user, chat = update.callback_query, update.effective_user, update.effective_chat
        assert query is not None and query.data is not None
        with contextlib.suppress(TelegramError):
            await query.answer()
        if user is None or chat is None or chat.type != Chat.PRIVATE:
            await self._service.ignore(update.update_id)
            return
        broadcast_id = int(query.data.removeprefix(CANCEL_PREFIX))
        pseudonym = self._service.pseudonym_of(user.id)
        locale = await self._service.locale_of(pseudonym)
        await self._broadcasts.stop_requested(
            update.update_id, broadcast_id, pseudonym, chat.id, locale
        )

    async def on_panels(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/panels (staff): the upcoming panels with answers so far."""
        sender = self._sender(update)
        if sender is None:
            await self._service.ignore(update.update_id)
            return
        await self._panels.on_list(update.update_id, sender)

    async def on_contact(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A phone number shared with Telegram's contact button (after a safety request)."""
        sender, message = self._sender(update), update.effective_message
        if sender is None or message is None or message.contact is None:
            await self._service.ignore(update.update_id)
            return
        own = message.contact.user_id == sender.user_id
        await self._safety.on_contact(update.update_id, sender, message.contact.phone_number, own)

    async def on_mydata(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/mydata: everything kept about the person."""
        sender = self._sender(update)
        if sender is None:
            await self._service.ignore(update.update_id)
            return
        await self._rights.on_mydata(update.update_id, sender)

    async def on_feedback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/feedback: a check-in now (with the feedback consent)."""
        sender = self._sender(update)
        if sender is None:
            await self._service.ignore(update.update_id)
            return
        await self._checkins.on_request(update.update_id, sender)

    async def on_panel_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A button of a panel invitation, answer, relayed message or staff summary."""
        query = update.callback_query
        assert query is not None and query.data is not None
        with contextlib.suppress(TelegramError):
            await query.answer()
        sender = self._sender(update)
        if sender is None or query.message is None:
            await self._service.ignore(update.update_id)
            return
        data, update_id = query.data, update.update_id
        if match := _RSVP.match(data):
            message_id = query.message.message_id
            await self._rsvp.on_answer(
                update_id, sender, match["token"], match["action"], message_id
            )
        elif match := _MANAGE.match(data):
            await self._panels.on_manage(update_id, sender, int(match["panel"]), match["action"])
        elif match := _ANSWER.match(data):
            await self._panels.on_answer_person(update_id, sender, match["token"])
        elif match := _CHECKIN.match(data):
            await self._checkins.on_button(update_id, sender, match["token"])
        elif match := _SAFETY.match(data):
            await self._safety.on_answer(update_id, sender, match["token"], match["action"])
        elif data == MYDATA_FILE:
            await self._rights.on_mydata(update_id, sender, as_file=True)
        elif match := _SAFETY_STAFF.match(data):
            await self._safety.on_staff_write(update_id, sender, match["token"])

    def _sender(self, update: Update) -> Sender | None:
        """Who wrote, when it is a person in a private chat (else None: ignore it)."""
        user, chat = update.effective_user, update.effective_chat
        if user is None or chat is None or user.is_bot or chat.type != Chat.PRIVATE:
            return None
        return Sender(user.id, chat.id, user.language_code)

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A button tap: answer Telegram at once (it gives up after ~15 s), then step."""
        query = update.callback_query
        assert query is not None
        try:
            await query.answer()
        except TelegramError as exc:
            log.warning("could not answer a callback query (%s)", type(exc).__name__)
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
        await self._step(update, UnsupportedSent(kind), free_text=caption)

    async def on_forwarded(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A forwarded message is someone else's words: never taken as an answer."""
        await self._step(update, UnsupportedSent("forwarded"))

    async def on_edited(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An edited message: the original was already answered; say so kindly. It is
        still checked for risk phrases (an edit can add one)."""
        sender, message = self._sender(update), update.effective_message
        if sender is None or message is None:
            await self._reply(update, "edited_message")
            return
        await self._service.handle_edited(update.update_id, sender, message.text or "")

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
        sender = Sender(user.id, chat.id, user.language_code)
        await self._service.handle_event(update.update_id, sender, event, tapped, free_text)

    async def _reply(self, update: Update, message_key: str) -> None:
        chat = update.effective_chat
        if chat is None:
            await self._service.ignore(update.update_id)
            return
        await self._service.reply_with_message(update.update_id, chat.id, message_key)


def _content_kind(message: Message) -> str:
    for kind in (
        "sticker",
        "photo",
        "voice",
        "video",
        "video_note",
        "audio",
        "document",
        "location",
        "contact",
        "animation",
        "poll",
        "dice",
    ):
        if getattr(message, kind, None):
            return kind
    return "other"
