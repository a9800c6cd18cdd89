"""Keeping a free-text answer: only with the feedback consent, scrubbed, encrypted, tagged
with themes at once, and (only with the quote consent) marked as quotable in reports.

The themes are tagged from the text as written, before it is scrubbed and encrypted, so the
digest can count them without ever decrypting, and in both English and Welsh, whichever
language the person chose. What is kept is scrubbed of names, numbers and addresses: the
consent question says "We never keep your name", and nothing reads the words as written
once they are tagged (a person's /mydata shows what is kept).
"""

from __future__ import annotations

import logging

import aiosqlite

from bot.log_tags import person_tag
from bot.scrub import scrub
from bot.secrets_file import Secrets
from bot.stop_words import fold
from bot.themes import LANGUAGES, Taxonomy
from storage.answers import Answers
from storage.checkins import Checkins
from storage.people import ConsentLedger

log = logging.getLogger(__name__)

# A text sent with no question open this soon after a written answer is more of that answer.
ADD_TO_ANSWER_WITHIN_MS = 10 * 60_000
# The most an answer grows to with what is added (a written answer alone is up to 3,500).
MAX_ADDED_ANSWER = 7_000


class AnswerKeeper:
    """Stores people's free-text answers with their themes."""

    def __init__(self, secrets: Secrets, taxonomy: Taxonomy | None) -> None:
        self._secrets = secrets
        self._taxonomy = taxonomy

    async def keep(
        self,
        conn: aiosqlite.Connection,
        pseudonym: str,
        dialogue: str,
        question: str,
        text: str,
        locale: str,
        now: int,
    ) -> int | None:
        """Store the answer; None when it may not be kept (no feedback consent)."""
        consents = await ConsentLedger(conn).current(pseudonym)
        if not consents.get("feedback", False):
            log.info("answer from person %s not kept: no feedback consent", person_tag(pseudonym))
            return None
        checkin = await Checkins(conn).open_for(pseudonym) if dialogue == "feedback" else None
        kept = scrub(text)
        quote = self._secrets.encrypt_text(kept) if consents.get("quotes", False) else None
        answer_id = await Answers(conn).add(
            pseudonym,
            dialogue,
            question,
            self._secrets.encrypt_text(kept),
            now,
            checkin_id=checkin.id if checkin else None,
            quote=quote,
        )
        await self._tag(conn, answer_id, text, locale)
        return answer_id

    async def add_to_recent(
        self, conn: aiosqlite.Connection, pseudonym: str, text: str, locale: str, now: int
    ) -> bool:
        """Add `text` to the answer the person wrote in the last few minutes, if any (and
        they still let us keep answers): people often send one thought as several messages.
        False when there is none to add to."""
        if len(fold(text).split()) < 2:
            return False  # "thanks", "ok", an emoji: not more of the answer
        answers = Answers(conn)
        recent = await answers.latest_since(pseudonym, now - ADD_TO_ANSWER_WITHIN_MS)
        if recent is None:
            return False
        consents = await ConsentLedger(conn).current(pseudonym)
        if not consents.get("feedback", False):
            return False
        whole = f"{self._secrets.decrypt_text(recent.ciphertext)}\n{text}"
        if len(whole) > MAX_ADDED_ANSWER:
            return False
        kept = scrub(whole)
        quote = self._secrets.encrypt_text(kept) if consents.get("quotes") else None
        await answers.rewrite(recent.id, self._secrets.encrypt_text(kept), quote)
        await self._tag(conn, recent.id, text, locale)  # themes it adds; those it had stay
        log.info("person %s added to an answer", person_tag(pseudonym))
        return True

    async def _tag(
        self, conn: aiosqlite.Connection, answer_id: int, text: str, locale: str
    ) -> None:
        if self._taxonomy is None:
            return
        # Tagged in English and Welsh whatever the person chose, as the safeguarding check
        # reads both: people in Wales switch. The chosen language only settles words that
        # mean something else in the other one ("plant", "son": see bot/themes.py).
        lang = locale if locale in LANGUAGES else "en"
        themes = self._taxonomy.tag(text, lang)
        if themes:
            await Checkins(conn).tag_answer(answer_id, themes)
