"""What the services behind app buttons share (panels, RSVP, check-ins, safeguarding): one
update's transaction, telling a person something in their language, and refusing what is
not theirs to do."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

import aiosqlite
from babel.numbers import format_decimal

from bot.conversation import Actor, ConversationService, Sender
from bot.log_tags import person_tag
from bot.rendering import Catalogs, fill, split_text
from state_machines.engine import Engine
from storage.clock import Clock
from storage.database import Database
from storage.people import People
from storage.queues import PRIORITY_REPLY, Inbox, Outbox

log = logging.getLogger(__name__)


class DialogueTexts:
    """The `messages` of one dialogue file, translated for a person."""

    def __init__(self, engine: Engine, catalogs: Catalogs, dialogue_id: str) -> None:
        self._messages = engine.dialogues[dialogue_id].messages
        self._catalogs = catalogs

    @property
    def catalogs(self) -> Catalogs:
        return self._catalogs

    def text(self, locale: str, key: str, **params: str) -> str:
        return fill(self._catalogs.gettext(locale, self._messages[key]), params)

    def has(self, key: str) -> bool:
        return key in self._messages

    def common(self, locale: str, msgid: str) -> str:
        """A text that is already an English msgid (e.g. a shared message)."""
        return self._catalogs.gettext(locale, msgid)

    def number(self, value: int, locale: str) -> str:
        return str(format_decimal(value, locale=locale))


TextsT = TypeVar("TextsT", bound=DialogueTexts)


class Desk(Generic[TextsT]):
    """The base of the services that answer app buttons outside the dialogue engine."""

    # An update's transaction runs its statements on the event loop (Database.transaction's
    # `quick`): right for a person's tap or command, wrong for a service whose handling
    # scans (the digest), which sets this False.
    _quick = True

    def __init__(
        self,
        db: Database,
        clock: Clock,
        engine: Engine,
        texts: TextsT,
        conversations: ConversationService,
        on_queued: Callable[[], None],
    ) -> None:
        self._db = db
        self._clock = clock
        self._engine = engine
        self._texts = texts
        self._conversations = conversations
        self._on_queued = on_queued

    @asynccontextmanager
    async def _handling(
        self, update_id: int
    ) -> AsyncIterator[tuple[aiosqlite.Connection, int] | None]:
        """One update's transaction, marked handled at the end, waking the sender after the
        commit; None when the update was handled already (a redelivery: do nothing)."""
        now = self._clock.now_ms()
        async with self._db.transaction(quick=self._quick) as conn:
            if await Inbox(conn).status(update_id) != "pending":
                yield None
                return
            yield conn, now
            await Inbox(conn).mark_handled(update_id, now)
        self._on_queued()

    @asynccontextmanager
    async def _acting(
        self, update_id: int, sender: Sender, pseudonym: str
    ) -> AsyncIterator[tuple[aiosqlite.Connection, int, Actor] | None]:
        """`_handling`, with the person acting (in their language) worked out too. Someone
        marked as not to be written to (they blocked the bot) who taps a button can be
        again: Telegram's word of their unblocking was lost. Marked so before the action
        (their own Yes takes a free place in turn), the rest that follows after it."""
        async with self._handling(update_id) as handling:
            if handling is None:
                yield None
                return
            conn, now = handling
            person = await People(conn).get(pseudonym)
            locale = person.locale if person else self._conversations.default_locale
            came_back = person is not None and not person.reachable
            if came_back:
                await People(conn).set_reachable(sender.chat_id, True, now)
            yield conn, now, Actor(pseudonym, sender.chat_id, locale)
            if came_back:
                await self._conversations.reachable_again(conn, pseudonym, now)

    async def _refuse(self, update_id: int, sender: Sender, pseudonym: str) -> None:
        """Not this person's to do (e.g. forged button data): say so, change nothing."""
        async with self._acting(update_id, sender, pseudonym) as acting:
            if acting is None:
                return
            conn, now, actor = acting
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
        log.info("refused a button for person %s", person_tag(pseudonym))

    async def _tell(
        self,
        conn: aiosqlite.Connection,
        actor: Actor,
        key_or_text: str,
        now: int,
        is_text: bool = False,
        **params: str,
    ) -> None:
        """Send the person one message of the service's dialogue file (by key), or an
        already chosen common text."""
        if is_text:
            text = self._texts.common(actor.locale, key_or_text)
        else:
            text = self._texts.text(actor.locale, key_or_text, **params)
        for part in split_text(text):  # e.g. a long list of door tickets
            await Outbox(conn).enqueue(
                actor.chat_id, PRIORITY_REPLY, "message", {"text": part}, now
            )
