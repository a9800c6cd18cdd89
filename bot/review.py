"""Theme review: managers of a region (and admins) read the week's quotable answers (only
with the quote consent, and only the scrubbed copy) and correct their themes; the digest
counts the reviewed themes (staff tags replace keyword guesses).

Not staff: the notice promises "your probation officer will never see your answers", and
staff of a region include the writer's officer, who could place a quote they heard an hour
before (the digest's quotes go to managers and admins only, for the same reason). Even for
managers the newest answer of few is easy to place, so answers are shown only once two
days old (2 to 9 days ago), only from a region where at least DIGEST_K people wrote
quotable ones in that time, and ten picked by a ranking fixed for the reader and the week
(`pick_for_review`), not the newest: asking again shows the same ones, not a fresh draw."""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

import aiosqlite

from bot.access import access_of
from bot.checkins import iso_week
from bot.conversation import Actor, ConversationService, Sender
from bot.desk import Desk, DialogueTexts
from bot.rendering import split_text
from bot.secrets_file import Secrets
from bot.updates import UpdateService
from state_machines.engine import Engine
from state_machines.events import Begin
from storage.answers import Answers
from storage.checkins import Checkins
from storage.clock import Clock
from storage.database import Database
from storage.queues import PRIORITY_REPLY, Outbox
from storage.staff import AuditLog

log = logging.getLogger(__name__)

BUTTON_PREFIX = "rt:"  # rt:<answer id>: change this answer's themes
_DAY_MS = 86_400_000
_WINDOW = (9 * _DAY_MS, 2 * _DAY_MS)  # answers written this long ago, from and to
_SHOWN = 10


def pick_for_review(answer_ids: Sequence[int], reader: str, week: str, limit: int) -> list[int]:
    """Up to `limit` answers, ranked by a hash of who reads, the week and the answer: the
    same picks each time that reader asks that week, in the same order whatever order the
    ids come in, and an answer added to the window displaces at most one of them."""

    def rank(answer_id: int) -> bytes:
        return hashlib.sha256(f"{reader}:{week}:{answer_id}".encode()).digest()

    return sorted(answer_ids, key=rank)[:limit]


class ReviewService(Desk[DialogueTexts]):
    """/review and the re-tagging of one answer."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        engine: Engine,
        texts: DialogueTexts,
        conversations: ConversationService,
        secrets: Secrets,
        updates: UpdateService,
        on_queued: Callable[[], None],
        k: int,
        zone: str,
    ) -> None:
        super().__init__(db, clock, engine, texts, conversations, on_queued)
        self._secrets = secrets
        self._k = k  # people a region's quotable answers must come from before any is shown
        self._zone = zone
        self._names = updates  # theme names in a person's language
        conversations.register_submit("retag_answer", self.retag)

    async def on_list(self, update_id: int, sender: Sender) -> None:
        """/review: quotable answers from 2 to 9 days ago in the manager's regions."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._acting(update_id, sender, pseudonym) as acting:
            if acting is None:
                return
            conn, now, actor = acting
            regions = sorted((await access_of(conn, pseudonym)).manager_regions())
            if not regions:
                await self._tell(conn, actor, self._engine.message("not_available"), now, True)
                return
            answers, shown = await self._reviewable(conn, regions, now)
            if not answers:
                await self._tell(conn, actor, "nothing_to_review", now)
                return
            if not shown:
                k = self._texts.number(self._k, actor.locale)
                await self._tell(conn, actor, "too_few_to_review", now, k=k)
                return
            picked = pick_for_review(shown, pseudonym, iso_week(now, self._zone), _SHOWN)
            quotes = await Answers(conn).quotes(picked)
            count = self._texts.number(len(picked), actor.locale)
            await self._tell(conn, actor, "review_intro", now, count=count)
            for answer_id in picked:
                quote = quotes[answer_id]
                themes = await Checkins(conn).themes_of(answer_id)
                text = self._texts.text(
                    actor.locale,
                    "review_item",
                    quote=self._secrets.decrypt_text(quote),
                    themes=self._names.theme_names(themes, actor.locale),
                )
                label = self._texts.text(actor.locale, "change_button")
                button = {"text": label, "callback_data": f"{BUTTON_PREFIX}{answer_id}"}
                # Scrubbing can lengthen an answer past Telegram's limit ("[name]" for
                # "Jo"): sent in parts, the button under the last, rather than refused.
                *first, last = split_text(text)
                for part in first:
                    await Outbox(conn).enqueue(
                        actor.chat_id, PRIORITY_REPLY, "message", {"text": part}, now
                    )
                payload = {"text": last, "buttons": [[button]]}
                await Outbox(conn).enqueue(actor.chat_id, PRIORITY_REPLY, "message", payload, now)
            await AuditLog(conn).record(
                pseudonym, "answers.reviewed", f"regions:{','.join(regions)}", {}, now
            )

    async def _reviewable(
        self, conn: aiosqlite.Connection, regions: list[str], now: int
    ) -> tuple[list[tuple[int, str, str]], list[int]]:
        """The quotable answers from 2 to 9 days ago in `regions` (id, region, author), and
        the ids of those a manager may see: from regions with at least k writers."""
        earliest, latest = (now - ago for ago in _WINDOW)
        answers = await Answers(conn).reviewable(regions, earliest, latest)
        writers: dict[str, set[str]] = defaultdict(set)
        for _, region, author in answers:
            writers[region].add(author)
        return answers, [a for a, region, _ in answers if len(writers[region]) >= self._k]

    async def _may_review(
        self,
        conn: aiosqlite.Connection,
        pseudonym: str,
        answer_id: int,
        now: int,
        saving: bool = False,
    ) -> str | None:
        """The answer's region, when `pseudonym` manages it and /review could show them the
        answer now; else None. A button's answer id is checked, not trusted: ids run in
        order, and a forged one must not show (or change) the themes of an answer written a
        minute ago, one its writer did not let us quote, or one from a region of few.
        `saving`: the themes chosen on a form opened from such a button are saved while the
        answer may still be quoted, though it may have passed out of /review's window (or
        its region below k writers) while the form was open."""
        region = await Answers(conn).region_of(answer_id)
        if region is None or not (await access_of(conn, pseudonym)).is_manager_in(region):
            return None
        if saving:
            return region if await Answers(conn).quotes([answer_id]) else None
        _, shown = await self._reviewable(conn, [region], now)
        return region if answer_id in shown else None

    async def on_change(self, update_id: int, sender: Sender, answer_id: int) -> None:
        """ "Change themes" under an answer: only managers of the answer's region, and only
        for an answer /review could show them."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._db.read() as conn:
            region = await self._may_review(conn, pseudonym, answer_id, self._clock.now_ms())
            themes = await Checkins(conn).themes_of(answer_id)
        if region is None:
            await self._refuse(update_id, sender, pseudonym)
            return
        values = {"answer": str(answer_id), "themes": ",".join(themes)}
        await self._conversations.handle_event(update_id, sender, Begin("retag", values))

    async def retag(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        answer = values.get("answer", "")
        region = (
            await self._may_review(conn, actor.pseudonym, int(answer), now, saving=True)
            if answer.isdigit()
            else None
        )
        if region is None:
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            return
        themes = [t for t in values.get("themes", "").split(",") if t]
        await Checkins(conn).retag_answer(int(answer), themes)
        details = {"region": region, "themes": ",".join(themes)}
        await AuditLog(conn).record(
            actor.pseudonym, "answer.retagged", f"answer:{answer}", details, now
        )
        await self._tell(conn, actor, "retagged", now)
