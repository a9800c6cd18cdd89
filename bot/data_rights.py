"""People's data rights: /mydata shows everything kept about them (and sends it as a file),
/delete erases it all, leaving only a tombstone that it happened.

What is shown is read in one transaction and decrypted only to be sent to the person; the
erasure is one transaction too, after which the database's WAL is emptied so no old copy of
a deleted row stays on disk. Staff are not erased this way: their audit trail must stay.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiosqlite
from babel.dates import format_date

from bot.access import access_of
from bot.conversation import Actor, ConversationService, Sender
from bot.desk import Desk, DialogueTexts
from bot.enrolment import REGION_NAMES
from bot.log_tags import person_tag
from bot.rendering import consent_summary, split_text
from bot.retention import RETENTION_WAL_JOB
from bot.secrets_file import Secrets
from state_machines.definition import CONSENT_PURPOSES
from state_machines.engine import Engine
from storage.answers import Answers
from storage.clock import Clock
from storage.database import Database
from storage.erasure import erase_person
from storage.people import ConsentLedger, People, Person
from storage.queues import PRIORITY_REPLY, Outbox, Schedules

log = logging.getLogger(__name__)

FILE_BUTTON = "md:file"


class DataRightsService(Desk[DialogueTexts]):
    """/mydata and /delete."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        engine: Engine,
        texts: DialogueTexts,
        conversations: ConversationService,
        secrets: Secrets,
        on_queued: Callable[[], None],
    ) -> None:
        super().__init__(db, clock, engine, texts, conversations, on_queued)
        self._secrets = secrets
        # bulk: erasing deletes from whole tables (the outbox by chat has no full index)
        conversations.register_submit("erase_me", self.erase, bulk=True)

    async def on_mydata(self, update_id: int, sender: Sender, as_file: bool = False) -> None:
        """Everything kept about the person, in their language (or as a JSON file)."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._acting(update_id, sender, pseudonym) as acting:
            if acting is None:
                return
            conn, now, actor = acting
            person = await People(conn).get(pseudonym)
            if person is None:
                await self._tell(conn, actor, "nothing_kept", now)
                return
            record = await self._record(conn, person)
            if as_file:
                await self._send_file(conn, actor, record, now)
            else:
                await self._show(conn, actor, record, now)
        log.info("person %s saw their data", person_tag(pseudonym))

    async def _record(self, conn: aiosqlite.Connection, person: Person) -> dict[str, Any]:
        """Everything about one person, as plain data (the file's content)."""
        who = person.pseudonym
        consents = await ConsentLedger(conn).history(who)
        answers = []
        held = await Answers(conn).of(who)
        quotes = await Answers(conn).quotes([a.id for a in held if a.quotable])
        for answer in held:
            quote = quotes.get(answer.id)
            answers.append(
                {
                    "date": _day(answer.created_at),
                    "question": answer.question,
                    "text": self._secrets.decrypt_text(answer.ciphertext),
                    "themes": await _themes(conn, answer.id),
                    "may_be_quoted": answer.quotable,
                    # What managers may read, names and places taken out.
                    "as_quoted": self._secrets.decrypt_text(quote) if quote else None,
                }
            )
        return {
            "language": person.locale,
            "area": REGION_NAMES.get(person.region or "", None),
            "consents": [
                {
                    "purpose": c.purpose,
                    "agreed": c.granted,
                    "date": _day(c.recorded_at),
                    "notice_version": c.notice_version,
                }
                for c in consents
            ],
            "check_ins": await _rows(
                conn,
                "SELECT c.week, c.status, s.principle, s.score FROM checkins c "
                "LEFT JOIN checkin_scores s ON s.checkin_id = c.id WHERE c.pseudonym = ? "
                "ORDER BY c.id",
                who,
                ("week", "status", "question", "score"),
            ),
            "answers": answers,
            "panels": await _rows(
                conn,
                "SELECT p.title, p.starts_at, i.answer, i.ticket, i.support_needs, "
                "i.interpreter_language, i.needs_told "
                "FROM panel_invitations i JOIN panels p ON p.id = i.panel_id "
                "WHERE i.pseudonym = ? ORDER BY i.id",
                who,
                (
                    "panel",
                    "starts_at",
                    "answer",
                    "ticket",
                    "help_asked_for",
                    "interpreter_language",
                    "help_passed_to_organiser",
                ),
            ),
            "updates_received": await _rows(
                conn,
                "SELECT u.published_at, u.kind, u.text_en, d.reaction, u.withdrawn_at "
                "FROM update_deliveries d JOIN updates u ON u.id = d.update_id "
                "WHERE d.pseudonym = ? ORDER BY u.id",
                who,
                ("date", "kind", "text", "your_reaction", "taken_back_on"),
            ),
            "safety_requests": await _rows(
                conn,
                "SELECT created_at, category, region, status, answered_at, number_shared_at "
                "FROM safeguarding_requests WHERE pseudonym = ? ORDER BY id",
                who,
                ("date", "about", "area", "outcome", "staff_wrote_on", "number_shared_on"),
            ),
        }

    async def _show(
        self, conn: aiosqlite.Connection, actor: Actor, record: dict[str, Any], now: int
    ) -> None:
        locale = actor.locale
        current = await ConsentLedger(conn).current(actor.pseudonym)
        summary = consent_summary(
            {p: current[p] for p in CONSENT_PURPOSES if p in current},
            locale,
            self._texts._catalogs,
            self._engine.common.messages,
        )
        area = record["area"]
        text = self._texts.text(
            locale,
            "mydata_summary",
            area=self._texts.common(locale, area) if area else "-",
            consents=summary,
            check_ins=self._texts.number(len({r["week"] for r in record["check_ins"]}), locale),
            answers=self._texts.number(len(record["answers"]), locale),
            panels=self._texts.number(len(record["panels"]), locale),
            updates=self._texts.number(len(record["updates_received"]), locale),
            safety=self._texts.number(len(record["safety_requests"]), locale),
        )
        button = {"text": self._texts.text(locale, "file_button"), "callback_data": FILE_BUTTON}
        outbox = Outbox(conn)
        await outbox.enqueue(
            actor.chat_id, PRIORITY_REPLY, "message", {"text": text, "buttons": [[button]]}, now
        )
        if record["answers"]:
            lines = [self._texts.text(locale, "mydata_answers")]
            for answer in record["answers"]:
                date = format_date(datetime.fromisoformat(answer["date"]), "d MMM y", locale=locale)
                lines.append(f"• {date}: {answer['text']}")
            for part in split_text("\n".join(lines)):
                await outbox.enqueue(actor.chat_id, PRIORITY_REPLY, "message", {"text": part}, now)

    async def _send_file(
        self, conn: aiosqlite.Connection, actor: Actor, record: dict[str, Any], now: int
    ) -> None:
        content = json.dumps({"yousaid_data_export": 1, **record}, ensure_ascii=False, indent=2)
        payload = {
            "document": {"filename": "yousaid-my-data.json", "content": content},
            "text": self._texts.text(actor.locale, "file_caption"),
        }
        await Outbox(conn).enqueue(actor.chat_id, PRIORITY_REPLY, "message", payload, now)

    async def erase(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """/delete, confirmed: give back panel places (the next person gets them), then
        delete every row about the person; the last message to them forgets the chat."""
        if (await access_of(conn, actor.pseudonym)).is_privileged:
            await self._tell(conn, actor, "staff_cannot_delete", now)
            return
        await self._conversations.withdraw_everything(conn, actor.pseudonym, now)
        deleted = await erase_person(conn, actor.pseudonym, actor.chat_id, now)
        goodbye = {"text": self._texts.text(actor.locale, "erased"), "forget_chat": True}
        await Outbox(conn).enqueue(actor.chat_id, PRIORITY_REPLY, "message", goodbye, now)
        # The WAL still holds copies of what was deleted until it is emptied, which waits
        # for anyone reading an older snapshot (a backup, a digest): a stored job, retried
        # until it is done, not a step after this update that could fail once and be lost.
        await Schedules(conn).add(RETENTION_WAL_JOB, f"{RETENTION_WAL_JOB}:{now}", now, {}, now)
        self._conversations.after_commit(self._wake_scheduler)
        log.info("a person was erased (%d rows)", sum(deleted.values()))

    async def _wake_scheduler(self) -> None:
        self._on_queued()


async def _themes(conn: aiosqlite.Connection, answer_id: int) -> list[str]:
    async with conn.execute(
        "SELECT theme FROM answer_themes WHERE answer_id = ? ORDER BY theme", (answer_id,)
    ) as cursor:
        return [str(row[0]) for row in await cursor.fetchall()]


async def _rows(
    conn: aiosqlite.Connection, sql: str, pseudonym: str, names: tuple[str, ...]
) -> list[dict[str, Any]]:
    async with conn.execute(sql, (pseudonym,)) as cursor:
        rows = await cursor.fetchall()
    result = []
    for row in rows:
        item = dict(zip(names, tuple(row), strict=True))
        for key in ("date", "starts_at", "staff_wrote_on", "number_shared_on", "taken_back_on"):
            if isinstance(item.get(key), int):
                item[key] = _day(item[key])
        for key in ("help_asked_for", "help_passed_to_organiser"):
            if isinstance(item.get(key), str):
                item[key] = json.loads(item[key])
        result.append(item)
    return result


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()
