"""Keeping a free-text answer: only with the feedback consent, encrypted, tagged with themes
at once, and (only with the quote consent) a scrubbed copy for quoting in reports.

The themes are tagged from the text before it is encrypted, so the digest can count them
without ever decrypting, and in both English and Welsh, whichever language the person chose;
the quote is scrubbed of names, numbers and addresses first.
"""

from __future__ import annotations

import logging

import aiosqlite

from bot.log_tags import person_tag
from bot.scrub import scrub
from bot.secrets_file import Secrets
from bot.themes import LANGUAGES, Taxonomy
from storage.answers import Answers
from storage.checkins import Checkins
from storage.people import ConsentLedger

log = logging.getLogger(__name__)


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
        quote = None
        if consents.get("quotes", False):
            quote = self._secrets.encrypt_text(scrub(text))
        answer_id = await Answers(conn).add(
            pseudonym,
            dialogue,
            question,
            self._secrets.encrypt_text(text),
            now,
            checkin_id=checkin.id if checkin else None,
            quote=quote,
        )
        if self._taxonomy is not None:
            # Tagged in English and Welsh whatever the person chose, as the safeguarding check
            # reads both: people in Wales switch. The chosen language only settles words that
            # mean something else in the other one ("plant", "son": see bot/themes.py).
            lang = locale if locale in LANGUAGES else "en"
            themes = self._taxonomy.tag(text, lang)
            if themes:
                await Checkins(conn).tag_answer(answer_id, themes)
        return answer_id
