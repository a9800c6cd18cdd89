"""What the panel services share: one update's transaction, telling a person something in
their language, refusing what is not theirs to do, and the audit entry."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiosqlite

from bot.conversation import Actor, ConversationService, Sender
from bot.panel_texts import PanelTexts
from state_machines.engine import Engine
from storage.clock import Clock
from storage.database import Database
from storage.panels import Panel
from storage.people import People
from storage.queues import PRIORITY_REPLY, Inbox, Outbox
from storage.staff import AuditLog

log = logging.getLogger(__name__)


class PanelDesk:
    """The base of the staff (bot.panels) and participant (bot.rsvp) panel services."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        engine: Engine,
        texts: PanelTexts,
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
        async with self._db.transaction() as conn:
            if await Inbox(conn).status(update_id) != "pending":
                yield None
                return
            yield conn, now
            await Inbox(conn).mark_handled(update_id, now)
        self._on_queued()

    async def _refuse(self, update_id: int, sender: Sender, pseudonym: str) -> None:
        """Not this person's to do (e.g. forged button data): say so, change nothing."""
        async with self._handling(update_id) as handling:
            if handling is None:
                return
            conn, now = handling
            locale = await self._locale(conn, pseudonym)
            actor = Actor(pseudonym, sender.chat_id, locale)
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
        log.info("refused a panel action for person %s", pseudonym[:12])

    async def _tell(
        self,
        conn: aiosqlite.Connection,
        actor: Actor,
        key_or_text: str,
        now: int,
        is_text: bool = False,
        **params: str,
    ) -> None:
        """Send the person one panel message (by key) or an already chosen common text."""
        if is_text:
            text = self._texts.common(actor.locale, key_or_text)
        else:
            text = self._texts.text(actor.locale, key_or_text, **params)
        await Outbox(conn).enqueue(actor.chat_id, PRIORITY_REPLY, "message", {"text": text}, now)

    async def _audit(
        self,
        conn: aiosqlite.Connection,
        actor: Actor,
        action: str,
        panel: Panel,
        now: int,
        **details: str,
    ) -> None:
        await AuditLog(conn).record(
            actor.pseudonym, action, f"panel:{panel.id}", {"region": panel.region, **details}, now
        )

    async def _locale(self, conn: aiosqlite.Connection, pseudonym: str) -> str:
        person = await People(conn).get(pseudonym)
        return person.locale if person else self._conversations.default_locale
