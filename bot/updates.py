""" "You said, we did": staff publish what was done about a theme, and exactly the people who
raised it (and want updates) hear back, in their language; everyone in the region who wants
updates can list them with /updates. Reactions ("This helps" / "It doesn't help") are kept
per delivery; "Tell us what you think" opens a short free-text reply coded like a feedback answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiosqlite

from bot.access import access_of
from bot.broadcasts import BroadcastService
from bot.conversation import Actor, ConversationService, Sender
from bot.desk import Desk, DialogueTexts
from bot.digest import DEFAULT_K
from bot.enrolment import REGION_NAMES
from bot.log_tags import person_tag
from bot.themes import Taxonomy
from state_machines.engine import Engine
from state_machines.events import Begin
from storage.clock import Clock
from storage.database import Database
from storage.people import ConsentLedger, People
from storage.queues import PRIORITY_REPLY, Job, Outbox, Schedules
from storage.staff import AuditLog
from storage.updates import Reactions, Update, Updates

log = logging.getLogger(__name__)

BUTTON_PREFIX = "us:"  # us:<token>:<h|n|m>
_REACTIONS = {"h": "helps", "n": "not_helps", "m": "more"}
_LISTED = 5
_KINDS = ("changed", "working", "cannot")
DELIVER_JOB = "update_deliver"  # the next part of an update's deliveries
WITHDRAW_PREFIX = "uw:"  # uw:<update id>: staff take an update back
WITHDRAW_JOB = "update_withdraw"  # a pass over a taken-back update's copies to edit
# The copies are edited a minute after: a message on its way as the update is taken back is
# delivered all the same, and its message is known only once the sender records it sent. A
# last pass a quarter of an hour on edits what was recorded later (the sender's record held
# up: a busy or failing database), and only then are the deliveries stopped before they
# were sent forgotten.
EDIT_PASSES_MS = (60_000, 15 * 60_000)
EDIT_BATCH = 200
DELIVER_BATCH = 200  # people an update is queued for per transaction (see publish)


class UpdateService(Desk[DialogueTexts]):
    """Publishing updates, delivering them, and reactions to them."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        engine: Engine,
        texts: DialogueTexts,
        conversations: ConversationService,
        broadcasts: BroadcastService,
        taxonomy: Taxonomy,
        lookback_ms: int,
        on_queued: Callable[[], None],
        k: int = DEFAULT_K,
    ) -> None:
        super().__init__(db, clock, engine, texts, conversations, on_queued)
        self._broadcasts = broadcasts
        self._taxonomy = taxonomy
        self._lookback_ms = lookback_ms
        self._k = k  # the digest's small-number floor: fewer raisers are not counted out
        conversations.register_submit("publish_update", self.publish, bulk=True)
        conversations.register_submit("withdraw_update", self.withdraw, bulk=True)
        conversations.add_value_formatter(self.form_values)
        conversations.add_context_provider("update_reach", self.preview_reach)

    async def preview_reach(
        self, conn: aiosqlite.Connection, pseudonym: str, locale: str, values: Mapping[str, str]
    ) -> str:
        """How many the update in the /yousaid form would reach if sent now: as told after
        it is sent (fewer than k is not counted out: staff may be a writer's officer)."""
        themes = [t for t in values.get("themes", "").split(",") if t in self._taxonomy.ids]
        now = self._clock.now_ms()
        count = await Updates(conn).count_raisers(
            values.get("region", ""), themes, now - self._lookback_ms, now
        )
        if count < self._k:
            return self._texts.text(locale, "reach_few", k=self._texts.number(self._k, locale))
        return self._texts.number(count, locale)

    def form_values(self, values: Mapping[str, str], locale: str) -> dict[str, str]:
        """The /yousaid (and theme review) form as staff read it."""
        shown: dict[str, str] = {}
        shown["themes"] = self.theme_names(values.get("themes", "").split(","), locale)
        if values.get("region"):
            shown["region"] = self._texts.common(locale, REGION_NAMES.get(values["region"], ""))
        if values.get("kind") in _KINDS:
            shown["kind"] = self._texts.text(locale, f"kind_{values['kind']}")
        shown.setdefault("text_cy", self._texts.text(locale, "no_welsh"))
        if values.get("text_cy"):
            shown["text_cy"] = values["text_cy"]
        return shown

    def theme_names(self, themes: list[str] | tuple[str, ...], locale: str) -> str:
        names = [
            self._texts.common(locale, self._taxonomy.label(t))
            for t in self._taxonomy.ids
            if t in set(themes)
        ]
        return ", ".join(names) or self._texts.text(locale, "no_welsh")

    async def publish(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Save the update and send it to the people who raised its themes lately: the
        first DELIVER_BATCH here, the rest in parts that follow (`on_deliver_more`)."""
        region, kind = values.get("region", ""), values.get("kind", "")
        themes = [t for t in values.get("themes", "").split(",") if t in self._taxonomy.ids]
        text_en = values.get("text_en", "").strip()
        if not themes and region and kind in _KINDS and text_en:
            # "Chosen: none. Is that right?" can be answered yes: say what is missing.
            await self._tell(conn, actor, "update_needs_theme", now)
            return
        if not (region and kind in _KINDS and themes and text_en):
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            return
        if not (await access_of(conn, actor.pseudonym)).is_staff_in(region):
            await self._tell(conn, actor, "update_not_your_area", now)
            return
        if region == "wales" and not values.get("text_cy", "").strip():
            # Welsh is a legal expectation in Wales (the brief): both languages, or none.
            await self._tell(conn, actor, "update_needs_welsh", now)
            return
        updates = Updates(conn)
        update = await updates.publish(
            region, kind, themes, text_en, values.get("text_cy"), actor.pseudonym, now
        )
        everyone = await self._raisers(updates, update)
        # Staff include the writers' own officers: how many in an area raised a theme, when
        # fewer than the digest would show, is not told, nor shown by progress messages.
        few = len(everyone) < self._k
        if few:
            k = self._texts.number(self._k, actor.locale)
            await self._tell(conn, actor, "published_few", now, k=k)
        else:
            count = self._texts.number(len(everyone), actor.locale)
            await self._tell(conn, actor, "published", now, count=count)  # before progress
        broadcast_id = await self._broadcasts.queue_in(
            conn,
            "update",
            f"update:{update.id}",
            region,
            actor.pseudonym,
            await self._deliver(updates, update, everyone[:DELIVER_BATCH]),
            None if few else (actor.chat_id, actor.locale),
            now,
            expected=len(everyone),
        )
        if len(everyone) > DELIVER_BATCH:
            await self._deliver_more_later(conn, update.id, broadcast_id, 1, now)
        details = {"region": region, "kind": kind, "themes": ",".join(themes)}
        await AuditLog(conn).record(
            actor.pseudonym, "update.published", f"update:{update.id}", details, now
        )

    async def on_deliver_more(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """The next part of an update's deliveries: those who raised its themes by the time
        it was published, after the last it reached (a withdrawn consent or an erasure since
        is respected), added to its broadcast; none after "Stop sending"."""
        updates = Updates(conn)
        update = await updates.get(int(job.payload["update"]))
        broadcast_id = int(job.payload["broadcast"])
        if update is None or update.withdrawn_at is not None:
            return
        if await self._broadcasts.was_stopped(conn, broadcast_id):
            return
        recipients = await self._raisers(updates, update, DELIVER_BATCH + 1)
        broadcast_id = await self._broadcasts.queue_more(
            conn,
            broadcast_id,
            "update",
            f"update:{update.id}",
            update.region,
            update.published_by,
            await self._deliver(updates, update, recipients[:DELIVER_BATCH]),
            now,
        )
        if len(recipients) > DELIVER_BATCH:
            part = int(job.payload["part"]) + 1
            await self._deliver_more_later(conn, update.id, broadcast_id, part, now)

    async def _raisers(
        self, updates: Updates, update: Update, limit: int = -1
    ) -> list[tuple[str, int, str]]:
        """Who the update is for and has not reached yet (see `Updates.raisers`)."""
        since = update.published_at - self._lookback_ms
        return await updates.raisers(
            update.region, update.themes, since, update.published_at, update.id, limit
        )

    async def _deliver(
        self, updates: Updates, update: Update, recipients: list[tuple[str, int, str]]
    ) -> list[tuple[int, dict[str, Any]]]:
        """Record the deliveries (each one's token for its buttons) and write the messages:
        the text once per language, the buttons per person."""
        tokens = await updates.deliver_all(update.id, [pseudonym for pseudonym, _, _ in recipients])
        texts: dict[str, str] = {}
        messages: list[tuple[int, dict[str, Any]]] = []
        for (_, chat_id, locale), token in zip(recipients, tokens, strict=True):
            if locale not in texts:
                texts[locale] = self._text(update, locale)
            messages.append((chat_id, self._payload(texts[locale], locale, token)))
        return messages

    async def _deliver_more_later(
        self, conn: aiosqlite.Connection, update_id: int, broadcast_id: int, part: int, now: int
    ) -> None:
        """Thousands may have raised a theme: all in the staff member's transaction, the
        update held the database lock for 3.4 s (9,960 people; bench/FINDINGS.md), and
        everyone's messages waited. The rest go in parts, each its own job, a moment later."""
        payload = {"update": update_id, "broadcast": broadcast_id, "part": part}
        key = f"{DELIVER_JOB}:{update_id}:{part}"
        await self._broadcasts.next_part_later(conn, broadcast_id, DELIVER_JOB, key, payload, now)

    def _message(self, update: Update, locale: str, token: str | None) -> dict[str, Any]:
        """An update in the person's language (English with a note when there is no Welsh),
        with the reaction buttons when it was delivered to them (`token`)."""
        return self._payload(self._text(update, locale), locale, token)

    def _text(self, update: Update, locale: str) -> str:
        text = update.text_cy if locale == "cy" and update.text_cy else update.text_en
        if locale != "en" and text == update.text_en:
            text += "\n\n" + self._texts.text(locale, "only_in_english")
        return self._texts.text(
            locale,
            "update_message",
            themes=self.theme_names(update.themes, locale),
            kind=self._texts.text(locale, f"kind_{update.kind}"),
            text=text,
        )

    def _payload(self, body: str, locale: str, token: str | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"text": body}
        if token is not None:
            data = f"{BUTTON_PREFIX}{token}:"
            payload["buttons"] = [
                [
                    {"text": self._texts.text(locale, "helps_button"), "callback_data": data + "h"},
                    {
                        "text": self._texts.text(locale, "not_helps_button"),
                        "callback_data": data + "n",
                    },
                ],
                [{"text": self._texts.text(locale, "more_button"), "callback_data": data + "m"}],
            ]
        return payload

    async def on_reaction(self, update_id: int, sender: Sender, token: str, action: str) -> None:
        """This helps / It doesn't help / Tell us what you think."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._db.read() as conn:
            delivery = await Updates(conn).delivery(token)
        if delivery is None or delivery.pseudonym != pseudonym:
            await self._refuse(update_id, sender, pseudonym)
            return
        async with self._acting(update_id, sender, pseudonym) as acting:
            if acting is None:
                return
            conn, now, actor = acting
            update = await Updates(conn).get(delivery.update_id)
            if update is None or update.withdrawn_at is not None:
                await self._tell(conn, actor, "update_taken_back_reaction", now)
                return
            if action == "m":
                await Updates(conn).react(token, "more", now)
                # Their words would be kept like a feedback answer, which needs that
                # consent: asking for them and then dropping them would mislead. Read in
                # the same transaction as the dialogue begins, so a change cannot slip in.
                if (await ConsentLedger(conn).current(pseudonym)).get("feedback", False):
                    await self._conversations.step_in(conn, actor, Begin("update_reply"), now)
                else:
                    await self._tell(conn, actor, "more_needs_consent", now)
                return
            await Updates(conn).react(token, _REACTIONS[action], now)
            await self._tell(conn, actor, "reaction_thanks", now)

    async def on_withdraw(self, update_id: int, sender: Sender, target: int) -> None:
        """ "Take it back" under an update in a staff member's /updates: ask to be sure."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._db.read() as conn:
            update = await Updates(conn).get(target)
            access = await access_of(conn, pseudonym)
        if update is None or not access.is_staff_in(update.region):
            await self._refuse(update_id, sender, pseudonym)
            return
        if update.withdrawn_at is not None:
            async with self._acting(update_id, sender, pseudonym) as acting:
                if acting is not None:
                    conn, now, actor = acting
                    await self._tell(conn, actor, "update_already_withdrawn", now)
            return
        values = {"update": str(update.id), "themes": ",".join(update.themes)}
        await self._conversations.handle_event(update_id, sender, Begin("update_withdraw", values))

    async def withdraw(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Take the update back: nobody more gets it (its broadcast stops, and parts still
        to come queue nothing), /updates no longer lists it to people, and in a minute the
        copies people have are edited to say so (`on_withdraw_edit`). Staff of its area
        may, as they may publish one; audited."""
        chosen = values.get("update", "")
        updates = Updates(conn)
        update = await updates.get(int(chosen)) if chosen.isdigit() else None
        if update is None or not (await access_of(conn, actor.pseudonym)).is_staff_in(
            update.region
        ):
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            return
        if not await updates.withdraw(update.id, now):
            await self._tell(conn, actor, "update_already_withdrawn", now)
            return
        subject = f"update:{update.id}"
        not_sent = await self._broadcasts.stop_about(
            conn, subject, ("update",), actor.pseudonym, now
        )
        for index, after in enumerate(EDIT_PASSES_MS):
            await self._edit_later(conn, update.id, index, now + after, now)
        await AuditLog(conn).record(
            actor.pseudonym, "update.withdrawn", subject, {"not_sent": str(not_sent)}, now
        )
        await self._tell(conn, actor, "update_withdrawn_done", now)

    async def on_withdraw_edit(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """A pass over a taken-back update's copies: EDIT_BATCH of those not yet edited,
        edited to say so (as a broadcast: an edit wakes nobody and sends nothing new), the
        rest in the next part of the pass. The last pass first forgets the deliveries that
        were stopped before they were sent."""
        updates = Updates(conn)
        update = await updates.get(int(job.payload["update"]))
        if update is None or update.withdrawn_at is None:
            return
        edit_pass, part = int(job.payload.get("pass", 0)), int(job.payload.get("part", 0))
        if edit_pass == len(EDIT_PASSES_MS) - 1 and part == 0:
            await updates.forget_unsent(update.id)
        copies = await updates.copies_to_edit(update.id, EDIT_BATCH + 1)
        texts: dict[str, str] = {}
        edits: list[tuple[int, dict[str, Any]]] = []
        for copy in copies[:EDIT_BATCH]:
            if copy.locale not in texts:
                themes = self.theme_names(update.themes, copy.locale)
                texts[copy.locale] = self._texts.text(
                    copy.locale, "update_taken_back", themes=themes
                )
            edits.append(
                (copy.chat_id, {"text": texts[copy.locale], "message_id": copy.message_id})
            )
        if edits:
            await updates.mark_edited(update.id, [c.pseudonym for c in copies[:EDIT_BATCH]], now)
            await self._broadcasts.queue_in(
                conn,
                "update_withdrawal",
                f"update:{update.id}",
                update.region,
                "system",
                edits,
                None,
                now,
                outbox_kind="edit",
            )
        if len(copies) > EDIT_BATCH:
            await self._edit_later(conn, update.id, edit_pass, now, now, part + 1)

    async def _edit_later(
        self,
        conn: aiosqlite.Connection,
        update_id: int,
        edit_pass: int,
        due: int,
        now: int,
        part: int = 0,
    ) -> None:
        payload = {"update": update_id, "pass": edit_pass, "part": part}
        key = f"{WITHDRAW_JOB}:{update_id}:{edit_pass}:{part}"
        await Schedules(conn).add(WITHDRAW_JOB, key, due, payload, now)
        self._on_queued()  # wake the scheduler

    def _received(self, reactions: Reactions, locale: str) -> str:
        """How an update was received, for staff: nothing under the digest's floor (k), so
        a reaction cannot be tied to the one or two people an update reached."""
        k = self._texts.number(self._k, locale)
        if reactions.sent < self._k:
            return self._texts.text(locale, "update_reactions_few", k=k)

        def count(value: int) -> str:
            if value < self._k:
                return self._texts.text(locale, "reach_few", k=k)
            return self._texts.number(value, locale)

        return self._texts.text(
            locale,
            "update_reactions",
            sent=count(reactions.sent),
            helps=count(reactions.helps),
            not_helps=count(reactions.not_helps),
            more=count(reactions.more),
        )

    async def on_list(self, update_id: int, sender: Sender) -> None:
        """/updates: the latest updates of the person's region. Asking is not being sent
        them, so it needs no consent; without "Tell me what changed" the list says that new
        ones will not be sent and how to change it."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._acting(update_id, sender, pseudonym) as acting:
            if acting is None:
                return
            conn, now, actor = acting
            person = await People(conn).get(pseudonym)
            locale = actor.locale
            regions = [person.region] if person and person.region else []
            as_staff = not regions
            if as_staff:
                # Staff (not signed up as people on licence, so with no area of their own):
                # the updates of the areas they act for, to see what went out and how it
                # was received.
                regions = sorted((await access_of(conn, pseudonym)).staff_regions())
            if not regions:
                await self._tell(conn, actor, "updates_need_area", now)
                return
            updates = Updates(conn)
            found = [
                u
                for region in regions
                for u in await updates.latest(region, _LISTED, taken_back_too=as_staff)
            ]
            latest = sorted(found, key=lambda u: (u.published_at, u.id), reverse=True)[:_LISTED]
            if not latest:
                await self._tell(conn, actor, "no_updates", now)
                return
            # "You said no" only to someone who did (not staff, nor someone not yet asked).
            said_no = (await ConsentLedger(conn).current(pseudonym)).get("updates") is False
            await self._tell(
                conn, actor, "updates_list_not_sent" if said_no else "updates_list", now
            )
            received = await updates.reactions([u.id for u in latest]) if as_staff else {}
            for update in latest:
                payload = self._message(update, locale, None)
                if as_staff:
                    reactions = received.get(update.id, Reactions(0, 0, 0, 0))
                    payload["text"] += "\n\n" + self._received(reactions, locale)
                    if update.withdrawn_at is not None:
                        payload["text"] += "\n" + self._texts.text(locale, "taken_back_note")
                    else:
                        label = self._texts.text(locale, "take_back_button")
                        data = f"{WITHDRAW_PREFIX}{update.id}"
                        payload["buttons"] = [[{"text": label, "callback_data": data}]]
                await Outbox(conn).enqueue(sender.chat_id, PRIORITY_REPLY, "message", payload, now)
        log.info("person %s listed updates", person_tag(pseudonym))
