"""When a message signals danger: help first, then contact only if the person asks for it.

Every free text is checked before the dialogue sees it. On a match the bot signposts 999,
Samaritans and NHS 111 (safeguarding priority: ahead of every reply and broadcast), then
asks whether the person wants someone from probation to contact them. Only on an explicit
yes are the staff holding the safeguarding duty for the person's region alerted, with a
way to write to the person through the bot; the person may share a phone number with
Telegram's contact button. Without that yes nothing identifying leaves the bot. The
person's words are never stored or logged here, and the bot never claims to be watched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import aiosqlite

from bot import error_reporting
from bot.access import DUTY_HANDOVER_JOB, access_of
from bot.answer_keeper import ADD_TO_ANSWER_WITHIN_MS
from bot.conversation import (
    LOOSE_TEXT_CONTACT_QUESTION,
    LOOSE_TEXT_DUTY_STAFF,
    LOOSE_TEXT_DUTY_STAFF_WROTE_LAST,
    STAFF_WORDS,
    Actor,
    ConversationService,
    Sender,
)
from bot.desk import Desk, DialogueTexts
from bot.enrolment import REGION_NAMES
from bot.rendering import split_payload
from bot.safeguarding import RiskPhrases
from state_machines.definition import EXPLAIN_BUTTON_LABEL, REGION_SLUGS
from state_machines.engine import Engine
from state_machines.events import Begin, Started
from state_machines.session import Session
from storage.answers import Answers
from storage.clock import Clock
from storage.database import Database
from storage.people import People, Sessions
from storage.queues import PRIORITY_SAFEGUARDING, Job, Outbox, Schedules
from storage.safeguarding import SafeguardingRequest, SafeguardingRequests
from storage.staff import AuditLog, StaffRoles

log = logging.getLogger(__name__)

# sg:<token>:<y|n|r|a<area>>: the person's answer, Reply, or their area when asked for it
ANSWER_PREFIX = "sg:"
STAFF_PREFIX = "sa:"  # sa:<token>: staff with the duty write to the person
CALLED_ACTION = "c"  # sa:<token>:c: a duty holder called the number the person shared
FOLLOW_UP_JOB = "safety_follow_up"
FOLLOW_UP_AFTER_MS = 60_000
_FOLLOW_UPS = 10  # look again for up to ten minutes while alerts wait in the queue
# The person was told "someone will write to you here". If no duty holder has written this
# long after the alert, the request is raised again: with the duty staff, with the admins
# (who can find someone), and the person hears that we are still trying, with the numbers;
# a day after the alert, once more with the staff and admins only (someone given the duty
# since then gets the request and its button then).
UNANSWERED_JOB = "safety_unanswered"
_RAISE_AFTER_MS = (4 * 3_600_000, 24 * 3_600_000)
# A new duty holder the bot cannot write to yet is looked for again this often, this long.
_HANDOVER_RETRY_MS = 3_600_000
_HANDOVER_TRIES = 7 * 24
# A risk message within this long of a contact question still unanswered, or of an alert,
# gets the help again but no second question (nor a second alert).
_ASKED_AGAIN_AFTER_MS = 3_600_000
# A shared phone number is passed on for the person's latest alerted request this recent.
_CONTACT_WINDOW_MS = 7 * 86_400_000


class SafetyService(Desk[DialogueTexts]):
    """Signposting, the contact question, alerts to duty staff, and the relay."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        engine: Engine,
        texts: DialogueTexts,
        conversations: ConversationService,
        phrases: RiskPhrases,
        on_queued: Callable[[], None],
    ) -> None:
        super().__init__(db, clock, engine, texts, conversations, on_queued)
        self._phrases = phrases
        conversations.set_text_guard(self.guard)
        # Not for a risk message: the guard has just signposted it (and asked, if need be).
        # Also mid-dialogue, where only a tap answers: a reply to the duty staff typed
        # during a check-in is theirs, not an aside kept as feedback nor "please tap".
        conversations.add_loose_text_handler(
            LOOSE_TEXT_CONTACT_QUESTION, self.ask_contact_again, mid_dialogue=True
        )
        conversations.add_loose_text_handler(
            LOOSE_TEXT_DUTY_STAFF_WROTE_LAST,
            self.pass_on_reply_to_latest,
            risky_too=True,
            mid_dialogue=True,
        )
        conversations.add_loose_text_handler(
            LOOSE_TEXT_DUTY_STAFF, self.pass_on_typed_reply, risky_too=True, mid_dialogue=True
        )
        conversations.register_submit("relay_safety", self.relay)

    async def guard(self, conn: aiosqlite.Connection, actor: Actor, text: str, now: int) -> bool:
        """Check one free text; on a risk phrase signpost at once, ask about contact, and
        return True (the text is then not taken as an answer)."""
        match = self._phrases.check(text, actor.locale)
        if match is None:
            return False
        stored = await Sessions(conn).load(actor.pseudonym)
        session = Session.from_json(stored) if stored else Session()
        place = session.place
        if place is not None and self._staff_words(place.dialogue, session):
            # Staff writing ("do you have a plan to end it?", a panel on self-harm, an
            # update about suicide prevention): their words are not a call for help, and no
            # request is opened in their name.
            return False
        outbox = Outbox(conn)
        signpost = {"text": self._texts.text(actor.locale, "signpost")}
        await outbox.enqueue(actor.chat_id, PRIORITY_SAFEGUARDING, "message", signpost, now)
        log.info("a person was signposted")  # not who: this log outlives an erasure
        requests = SafeguardingRequests(conn)
        recent = await requests.latest_open(actor.pseudonym, now - _ASKED_AGAIN_AFTER_MS)
        if recent is not None and recent.category == match.category:
            # Several messages in a row about the same: the help every time, but one
            # question, and one alert, not one per message. Something else (a knife after
            # self-harm) is asked about again, so its alert says what it is.
            if recent.status == "alerted":
                told = {"text": self._texts.text(actor.locale, "already_told")}
                await outbox.enqueue(actor.chat_id, PRIORITY_SAFEGUARDING, "message", told, now)
            return True
        replying = place is None or place.dialogue == "safety_reply"
        if replying and await requests.latest_answered(actor.pseudonym, now - _CONTACT_WINDOW_MS):
            # A reply to the duty staff writing to them (typed, or with Reply): it is passed
            # on to them as it is, and they can act on it; no new question.
            return True
        person = await People(conn).get(actor.pseudonym)
        region = person.region if person else None
        token = await requests.open(actor.pseudonym, region, match.category, now)
        question = self._contact_question(actor.locale, token)
        await outbox.enqueue(actor.chat_id, PRIORITY_SAFEGUARDING, "message", question, now)
        return True

    def _staff_words(self, dialogue_id: str, session: Session) -> bool:
        """Whether text typed in this dialogue is staff's: a staff-only form, or a relay
        (duty staff, a panel's organiser) started with `to: person`."""
        dialogue = self._engine.dialogues.get(dialogue_id)
        if dialogue is None:
            return False
        if dialogue.settings.get("risk_text") == STAFF_WORDS:
            return True
        relay = dialogue.settings.get("risk_text") == "passed_on"
        return relay and session.values_of(dialogue_id).get("to") == "person"

    async def ask_contact_again(
        self, conn: aiosqlite.Connection, actor: Actor, text: str, now: int
    ) -> bool:
        """A text typed while the contact question waits (asked within the hour): "yes
        please" typed means the question, so it is asked again with its buttons, not
        passed to anyone else nor taken for anything else."""
        waiting = await SafeguardingRequests(conn).latest_open(
            actor.pseudonym, now - _ASKED_AGAIN_AFTER_MS, statuses=("asked",)
        )
        if waiting is None:
            return False
        lead = self._engine.message("use_buttons")
        question = self._contact_question(
            actor.locale, waiting.token, self._texts.common(actor.locale, lead)
        )
        await Outbox(conn).enqueue(actor.chat_id, PRIORITY_SAFEGUARDING, "message", question, now)
        return True

    async def pass_on_reply_to_latest(
        self, conn: aiosqlite.Connection, actor: Actor, text: str, now: int
    ) -> bool:
        """As `pass_on_typed_reply`, ahead of the answer just written (whose rest, sent in
        parts, is otherwise added to it), when the duty staff wrote after that answer: the
        text then answers them ("yes im at my sisters" after "Are you safe?"), and must
        neither be lost to them nor kept as feedback."""
        request = await SafeguardingRequests(conn).latest_answered(
            actor.pseudonym, now - _CONTACT_WINDOW_MS
        )
        if request is None or request.answered_at is None:
            return False
        fresh = await Answers(conn).latest_since(actor.pseudonym, now - ADD_TO_ANSWER_WITHIN_MS)
        if fresh is not None and fresh.created_at > request.answered_at:
            return False  # the person wrote an answer since: the text may be more of it
        return await self.pass_on_typed_reply(conn, actor, text, now)

    async def pass_on_typed_reply(
        self, conn: aiosqlite.Connection, actor: Actor, text: str, now: int
    ) -> bool:
        """Someone the duty staff wrote to this past week writes with no question open: a
        reply, typed as most people reply, not with the Reply button. It is passed on (they
        are told so), not met with "nothing to answer" and lost. Several messages in a row
        go on one by one, as they were written."""
        request = await SafeguardingRequests(conn).latest_answered(
            actor.pseudonym, now - _CONTACT_WINDOW_MS
        )
        if request is None:
            return False
        values = {"request": request.token, "to": "staff", "message": text}
        await self.relay(conn, actor, values, now)
        return True

    def _reads(self, staff_locale: str, person_locale: str) -> str:
        """The line telling duty staff which language the person reads the bot in (a
        language shipped without its line: the English one, not a failed alert)."""
        key = f"reads_{person_locale}"
        return self._texts.text(staff_locale, key if self._texts.has(key) else "reads_en")

    def _contact_question(self, locale: str, token: str, lead: str = "") -> dict[str, Any]:
        """ "Would you like someone from probation to get in touch?", with Yes, No and "I
        don't understand" (after `lead`, the explanation, when that was tapped)."""
        text = self._texts.text(locale, "contact_question")
        explain = {
            "text": self._texts.common(locale, EXPLAIN_BUTTON_LABEL),
            "callback_data": f"{ANSWER_PREFIX}{token}:e",
        }
        return {
            "text": f"{lead}\n\n{text}" if lead else text,
            "buttons": [
                [self._button(locale, "contact_yes", f"{ANSWER_PREFIX}{token}:y")],
                [self._button(locale, "contact_no", f"{ANSWER_PREFIX}{token}:n")],
                [explain],
            ],
        }

    async def on_answer(self, update_id: int, sender: Sender, token: str, action: str) -> None:
        """The person answered the contact question (or tapped Reply on a message)."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        if action == "r":
            await self._begin_reply(update_id, sender, pseudonym, token)
            return
        async with self._acting(update_id, sender, pseudonym) as acting:
            if acting is None:
                return
            conn, now, actor = acting
            requests = SafeguardingRequests(conn)
            request = await requests.by_token(token)
            if request is None or request.pseudonym != pseudonym:
                await self._tell(conn, actor, self._engine.message("not_available"), now, True)
                return
            area = action[1:] if action.startswith("a") else None
            late = request.status == "asked" and now - request.created_at > _ASKED_AGAIN_AFTER_MS
            if action == "y" and (request.status == "declined" or late):
                # A no can become a yes (someone may need a moment, or feel worse later),
                # and a yes may come long after the question: either way it is timed from
                # now. A yes is not taken back here: staff may be on their way.
                await requests.reconsider(request.id, now)
                request = replace(request, status="asked", created_at=now)
            if request.status != "asked":
                await self._tell(conn, actor, "already_answered", now)
            elif action == "e":  # what saying yes or no does, then the question again
                lead = self._texts.text(actor.locale, "contact_explained")
                question = self._contact_question(actor.locale, token, lead)
                await Outbox(conn).enqueue(
                    actor.chat_id, PRIORITY_SAFEGUARDING, "message", question, now
                )
                return
            elif action == "y" or area is not None:
                request = await self._with_area(conn, request, area)
                if request.region is None:
                    await self._ask_area(conn, actor, request, now)
                    return  # the contact flow goes on when they tap their area
                await self._alert(conn, actor, request, now)
            else:
                await requests.decide(request.id, "declined", now)
                await self._tell(conn, actor, "contact_declined", now)
            await self._carry_on(conn, actor, now)

    async def _with_area(
        self, conn: aiosqlite.Connection, request: SafeguardingRequest, area: str | None
    ) -> SafeguardingRequest:
        """The request with the area whose duty staff are to be told: the one it was opened
        with; else the one the person has chosen since, or just tapped. A risk phrase can
        come before onboarding's last question (the area), and with no area no one could be
        told."""
        if request.region is not None:
            return request
        if area is None:
            person = await People(conn).get(request.pseudonym)
            area = person.region if person else None
        if area not in REGION_SLUGS:
            return request
        requests = SafeguardingRequests(conn)
        await requests.set_region(request.id, area)
        updated = await requests.get(request.id)
        assert updated is not None
        return updated

    async def _ask_area(
        self, conn: aiosqlite.Connection, actor: Actor, request: SafeguardingRequest, now: int
    ) -> None:
        """Which area's duty staff to tell, asked only when it is not known yet."""
        buttons = [
            [
                {
                    "text": self._texts.common(actor.locale, REGION_NAMES[slug]),
                    "callback_data": f"{ANSWER_PREFIX}{request.token}:a{slug}",
                }
            ]
            for slug in REGION_SLUGS
        ]
        question = {
            "text": self._texts.text(actor.locale, "contact_which_area"),
            "buttons": buttons,
        }
        await Outbox(conn).enqueue(actor.chat_id, PRIORITY_SAFEGUARDING, "message", question, now)

    async def _alert(
        self, conn: aiosqlite.Connection, actor: Actor, request: SafeguardingRequest, now: int
    ) -> None:
        """Tell every reachable duty holder of the region; tell the person what happened."""
        holders = []
        if request.region is not None:
            for pseudonym in await StaffRoles(conn).safeguarding_for(request.region):
                person = await People(conn).get(pseudonym)
                if person is not None and person.reachable:
                    holders.append(person)
        requests = SafeguardingRequests(conn)
        if not holders:
            await requests.decide(request.id, "no_one_reached", now)
            await self._tell(conn, actor, "contact_not_reached", now)
            await self._no_one_reached(conn, request, now)
            return
        for holder in holders:
            params = {
                "ref": _reference(request),
                "region": self._texts.common(
                    holder.locale, REGION_NAMES.get(request.region or "", "")
                ),
                "category": self._texts.text(holder.locale, f"category_{request.category}"),
                "reads": self._reads(holder.locale, actor.locale),
            }
            alert = {
                "text": self._texts.text(holder.locale, "alert", **params),
                "buttons": self._write_to_them(holder.locale, request),
            }
            outbox_id = await Outbox(conn).enqueue(
                holder.chat_id, PRIORITY_SAFEGUARDING, "message", alert, now
            )
            await requests.mark_alert(outbox_id, request.id)
        await requests.decide(request.id, "alerted", now)
        await Schedules(conn).add(
            UNANSWERED_JOB,
            f"{UNANSWERED_JOB}:{request.id}",
            now + _RAISE_AFTER_MS[0],
            {"request_id": request.id, "attempt": 0},
            now,
        )
        await Schedules(conn).add(
            FOLLOW_UP_JOB,
            f"{FOLLOW_UP_JOB}:{request.id}:0",
            now + FOLLOW_UP_AFTER_MS,
            {"request_id": request.id, "attempt": 0},
            now,
        )
        await AuditLog(conn).record(
            "system", "safeguarding.alerted", _reference(request), {"staff": str(len(holders))}, now
        )
        sent = {
            "text": self._texts.text(actor.locale, "contact_sent"),
            "contact_button": self._texts.text(actor.locale, "share_number"),
        }
        await Outbox(conn).enqueue(actor.chat_id, PRIORITY_SAFEGUARDING, "message", sent, now)

    async def on_follow_up(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """A minute after alerting: if no alert reached anyone (every duty holder blocked
        the bot, or Telegram refused), the person is told plainly and signposted again;
        while alerts are still queued (e.g. Telegram asked us to wait), look again later."""
        request_id, attempt = int(job.payload["request_id"]), int(job.payload["attempt"])
        requests = SafeguardingRequests(conn)
        sent, waiting = await requests.alert_delivery(request_id)
        if sent:
            return
        if waiting and attempt < _FOLLOW_UPS:
            await Schedules(conn).add(
                FOLLOW_UP_JOB,
                f"{FOLLOW_UP_JOB}:{request_id}:{attempt + 1}",
                now + FOLLOW_UP_AFTER_MS,
                {"request_id": request_id, "attempt": attempt + 1},
                now,
            )
            return
        request = await requests.get(request_id)
        if request is None or not await requests.mark_unreached(request_id, now):
            return
        person = await People(conn).get(request.pseudonym)
        if person is None:
            return
        # "Share my number" goes: there is no one to pass a number to.
        not_reached = {
            "text": self._texts.text(person.locale, "contact_not_reached"),
            "remove_keyboard": True,
        }
        await Outbox(conn).enqueue(
            person.chat_id, PRIORITY_SAFEGUARDING, "message", not_reached, now
        )
        await self._no_one_reached(conn, request, now)

    async def _no_one_reached(
        self, conn: aiosqlite.Connection, request: SafeguardingRequest, now: int
    ) -> None:
        """No duty holder could be told of a yes: the admins are asked to give someone the
        duty, who is then sent the request (`on_handover`). With no admin to ask either,
        it is an error for the operators."""
        admins = await self._to_admins(conn, request, "admin_no_one_reached", now)
        await AuditLog(conn).record(
            "system",
            "safeguarding.no_one_reached",
            _reference(request),
            {"admins": str(admins)},
            now,
        )
        if admins:
            log.warning("a safety request reached no duty holder; the admins were asked")
        else:
            error_reporting.alert(
                "a safety request reached no duty holder and there is no admin to ask"
            )

    async def on_unanswered(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """Hours after the alert, no duty holder has written to the person (about this
        request or a later one): ask the duty staff again (with "Write to them"), ask the
        admins to find someone, and, the first time, tell the person plainly that we are
        still trying, with the numbers again (or, if there was nobody to ask, that we could
        not reach anyone). Not the person when they shared a phone number (staff may have
        phoned). Nothing when someone wrote, when no alert reached anyone (the person was
        told then), or when the person is gone or blocked the bot and left no number."""
        requests = SafeguardingRequests(conn)
        request = await requests.get(int(job.payload["request_id"]))
        attempt = int(job.payload.get("attempt", 0))
        if request is None or request.status != "alerted":
            return
        if await requests.answered_since(request.pseudonym, request.created_at):
            return
        person = await People(conn).get(request.pseudonym)
        if person is None or (not person.reachable and request.number_shared_at is None):
            return
        hours = str(max(1, (now - request.created_at) // 3_600_000))
        duty = await self._to_duty_holders(conn, request, "staff_unanswered", now, hours=hours)
        admin_key = "admin_unanswered" if duty else "admin_unanswered_no_duty"
        admins = await self._to_admins(conn, request, admin_key, now, hours=hours)
        if attempt + 1 < len(_RAISE_AFTER_MS):
            await Schedules(conn).add(
                UNANSWERED_JOB,
                f"{UNANSWERED_JOB}:{request.id}:{attempt + 1}",
                request.created_at + _RAISE_AFTER_MS[attempt + 1],
                {"request_id": request.id, "attempt": attempt + 1},
                now,
            )
        if attempt == 0 and person.reachable and request.number_shared_at is None:
            told: dict[str, Any] = {"text": self._texts.text(person.locale, "still_trying")}
            if not duty + admins:  # no one to ask, nor to pass a number to
                told = {
                    "text": self._texts.text(person.locale, "contact_not_reached"),
                    "remove_keyboard": True,
                }
            await Outbox(conn).enqueue(person.chat_id, PRIORITY_SAFEGUARDING, "message", told, now)
        await AuditLog(conn).record(
            "system",
            "safeguarding.unanswered",
            _reference(request),
            {"staff": str(duty), "admins": str(admins), "attempt": str(attempt)},
            now,
        )
        log.warning("a safety request had no answer from staff; raised again")

    async def _to_admins(
        self,
        conn: aiosqlite.Connection,
        request: SafeguardingRequest,
        key: str,
        now: int,
        **params: str,
    ) -> int:
        """Tell every reachable admin (but those with the duty, told with the button
        already) to find someone to write, or to give someone the duty; returns how many."""
        holders = set(await StaffRoles(conn).safeguarding_for(request.region or ""))
        told = 0
        for pseudonym in await StaffRoles(conn).holders("admin", None):
            admin = await People(conn).get(pseudonym)
            if pseudonym in holders or admin is None or not admin.reachable:
                continue
            region = self._texts.common(admin.locale, REGION_NAMES.get(request.region or "", ""))
            text = self._texts.text(
                admin.locale, key, ref=_reference(request), region=region, **params
            )
            await Outbox(conn).enqueue(
                admin.chat_id, PRIORITY_SAFEGUARDING, "message", {"text": text}, now
            )
            told += 1
        return told

    async def on_handover(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """Someone was just given the duty for a region: send them, with "Write to them",
        each recent request there that no one has written to (its person still here and
        reachable, or with a number shared). A request no alert reached counts as alerted
        from now, so a number shared reaches the new holder and it is raised once more if
        they do not write."""
        holder_pseudonym, region = str(job.payload["holder"]), str(job.payload["region"])
        if holder_pseudonym not in await StaffRoles(conn).safeguarding_for(region):
            return  # the duty was taken away again before this ran
        holder = await People(conn).get(holder_pseudonym)
        if holder is None or not holder.reachable:
            # Granted from the command line before they ever wrote to the bot (it cannot
            # write first), or they blocked it: look again every hour, for a week.
            tries = int(job.payload.get("tries", 0)) + 1
            if tries <= _HANDOVER_TRIES:
                await Schedules(conn).add(
                    DUTY_HANDOVER_JOB,
                    f"{DUTY_HANDOVER_JOB}:{holder_pseudonym}:{region}:{now}:{tries}",
                    now + _HANDOVER_RETRY_MS,
                    {**job.payload, "tries": tries},
                    now,
                )
            return
        requests = SafeguardingRequests(conn)
        for request in await requests.waiting_in(region, now - _CONTACT_WINDOW_MS):
            person = await People(conn).get(request.pseudonym)
            if person is None or (not person.reachable and request.number_shared_at is None):
                continue
            params = {
                "ref": _reference(request),
                "region": self._texts.common(holder.locale, REGION_NAMES.get(region, "")),
                "reads": self._reads(holder.locale, person.locale),
            }
            payload = {
                "text": self._texts.text(holder.locale, "staff_handover", **params),
                "buttons": self._write_to_them(holder.locale, request),
            }
            outbox_id = await Outbox(conn).enqueue(
                holder.chat_id, PRIORITY_SAFEGUARDING, "message", payload, now
            )
            if await requests.reopen(request.id, now):
                await requests.mark_alert(outbox_id, request.id)
                last = len(_RAISE_AFTER_MS) - 1  # staff and admins only: the person was told
                await Schedules(conn).add(
                    UNANSWERED_JOB,
                    f"{UNANSWERED_JOB}:{request.id}:handover",
                    now + _RAISE_AFTER_MS[0],
                    {"request_id": request.id, "attempt": last},
                    now,
                )
            await AuditLog(conn).record(
                "system", "safeguarding.handed_over", _reference(request), {}, now
            )

    async def on_staff_write(self, update_id: int, sender: Sender, token: str) -> None:
        """A duty holder tapped "Write to them" under an alert."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._db.read() as conn:
            request = await SafeguardingRequests(conn).by_token(token)
            access = await access_of(conn, pseudonym)
            person = await People(conn).get(request.pseudonym) if request else None
        if request is not None and not access.has_safeguarding_duty(request.region or ""):
            await self._refuse(update_id, sender, pseudonym)
            return
        if request is None or person is None or not person.reachable:
            # Said now, before they write: "Sent" for a message nobody can get, in a
            # risk case, would leave staff thinking contact was made.
            async with self._acting(update_id, sender, pseudonym) as acting:
                if acting is not None:
                    conn, now, actor = acting
                    gone = "person_gone" if person is None else "person_unreachable"
                    await self._tell(conn, actor, gone, now)
            return
        values = {"request": token, "to": "person"}
        await self._conversations.handle_event(update_id, sender, Begin("safety_reply", values))

    async def on_staff(
        self, update_id: int, sender: Sender, token: str, action: str | None
    ) -> None:
        """A duty holder tapped "Write to them", or "I called them" (`action` "c")."""
        if action == CALLED_ACTION:
            await self.on_staff_called(update_id, sender, token)
        else:
            await self.on_staff_write(update_id, sender, token)

    async def on_staff_called(self, update_id: int, sender: Sender, token: str) -> None:
        """A duty holder tapped "I called them" under a shared number: someone has been in
        touch, so the request is not raised again (as when they write through the bot)."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._acting(update_id, sender, pseudonym) as acting:
            if acting is None:
                return
            conn, now, actor = acting
            requests = SafeguardingRequests(conn)
            request = await requests.by_token(token)
            access = await access_of(conn, pseudonym)
            if request is None or not access.has_safeguarding_duty(request.region or ""):
                await self._tell(conn, actor, self._engine.message("not_available"), now, True)
                return
            await requests.mark_answered(request.id, now)
            await AuditLog(conn).record(
                pseudonym, "safeguarding.called", _reference(request), {}, now
            )
            await self._to_duty_holders(conn, request, "staff_colleague_called", now, but=pseudonym)
            await self._tell(conn, actor, "called_noted", now, ref=_reference(request))

    async def _begin_reply(
        self, update_id: int, sender: Sender, pseudonym: str, token: str
    ) -> None:
        async with self._db.read() as conn:
            request = await SafeguardingRequests(conn).by_token(token)
        if request is None or request.pseudonym != pseudonym:
            await self._refuse(update_id, sender, pseudonym)
            return
        values = {"request": token, "to": "staff"}
        await self._conversations.handle_event(update_id, sender, Begin("safety_reply", values))

    async def relay(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Pass a message on: duty staff to the person (with a Reply button), or the person
        to every duty holder of the region (with "Write to them")."""
        request = await SafeguardingRequests(conn).by_token(values.get("request", ""))
        message = values.get("message", "")
        if request is None:
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            return
        if values.get("to") == "person":
            access = await access_of(conn, actor.pseudonym)
            person = await People(conn).get(request.pseudonym)
            if not access.has_safeguarding_duty(request.region or ""):
                await self._tell(conn, actor, self._engine.message("not_available"), now, True)
                return
            if person is None or not person.reachable:
                # Not "Sent", and not marked answered: the request is raised again.
                gone = "person_gone" if person is None else "person_unreachable"
                await self._tell(conn, actor, gone, now)
                return
            payload = {
                "text": self._texts.text(person.locale, "from_probation", message=message),
                "buttons": [
                    [
                        self._button(
                            person.locale, "reply_button", f"{ANSWER_PREFIX}{request.token}:r"
                        )
                    ]
                ],
            }
            for part in split_payload(payload):
                await Outbox(conn).enqueue(
                    person.chat_id, PRIORITY_SAFEGUARDING, "message", part, now
                )
            await SafeguardingRequests(conn).mark_answered(request.id, now)
            await AuditLog(conn).record(
                actor.pseudonym, "safeguarding.message_sent", _reference(request), {}, now
            )
            await self._to_duty_holders(
                conn, request, "staff_colleague_wrote", now, but=actor.pseudonym, message=message
            )
        elif request.pseudonym == actor.pseudonym:
            told = await self._to_duty_holders(
                conn, request, "staff_from_them", now, message=message
            )
            if not told:
                await self._tell(conn, actor, "contact_not_reached", now)
                return
        else:
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            return
        await self._tell(conn, actor, "message_passed_on", now)

    async def on_contact(
        self, update_id: int, sender: Sender, phone: str, own_number: bool
    ) -> None:
        """The person shared a phone number with the contact button: pass it to the duty
        staff of their latest alerted request (never stored: only the outbox holds it)."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._acting(update_id, sender, pseudonym) as acting:
            if acting is None:
                return
            conn, now, actor = acting
            request = await SafeguardingRequests(conn).latest_alerted(
                pseudonym, now - _CONTACT_WINDOW_MS
            )
            requests = SafeguardingRequests(conn)
            if not own_number or (
                request is None and not await requests.said_yes_before(pseudonym)
            ):
                # Someone else's contact card, or a number never asked for: not what the
                # "Share my number" button sends.
                text = self._engine.message("unsupported_content")
                await self._tell(conn, actor, text, now, True)
                return
            if request is None or not await self._to_duty_holders(
                conn, request, "staff_number", now, called_button=True, phone=phone
            ):
                # A late tap of "Share my number" (the request is over a week old, or no
                # alert reached anyone): said plainly, and the button goes.
                key = "number_not_passed_on" if request is None else "contact_not_reached"
                gone = {"text": self._texts.text(actor.locale, key), "remove_keyboard": True}
                await Outbox(conn).enqueue(
                    actor.chat_id, PRIORITY_SAFEGUARDING, "message", gone, now
                )
                return
            await requests.mark_number_shared(request.id, now)
            done = {
                "text": self._texts.text(actor.locale, "number_passed_on"),
                "remove_keyboard": True,
            }
            await Outbox(conn).enqueue(actor.chat_id, PRIORITY_SAFEGUARDING, "message", done, now)

    async def _to_duty_holders(
        self,
        conn: aiosqlite.Connection,
        request: SafeguardingRequest,
        key: str,
        now: int,
        called_button: bool = False,
        but: str | None = None,
        **params: str,
    ) -> int:
        """Send to every reachable duty holder of the request's region (`but` the one who
        acted, when one did); returns how many. `called_button`: with "I called them" too
        (under a phone number shared)."""
        told = 0
        for pseudonym in await StaffRoles(conn).safeguarding_for(request.region or ""):
            if pseudonym == but:
                continue
            holder = await People(conn).get(pseudonym)
            if holder is None or not holder.reachable:
                continue
            text = self._texts.text(holder.locale, key, ref=_reference(request), **params)
            buttons = self._write_to_them(holder.locale, request)
            if called_button:
                data = f"{STAFF_PREFIX}{request.token}:{CALLED_ACTION}"
                buttons.append([self._button(holder.locale, "called_them", data)])
            payload: dict[str, Any] = {"text": text, "buttons": buttons}
            for part in split_payload(payload):  # a long reply typed to them, in full
                await Outbox(conn).enqueue(
                    holder.chat_id, PRIORITY_SAFEGUARDING, "message", part, now
                )
            told += 1
        return told

    async def _carry_on(self, conn: aiosqlite.Connection, actor: Actor, now: int) -> None:
        """Back to the question the person was on, if any ("here is where you were")."""
        stored = await Sessions(conn).load(actor.pseudonym)
        session = Session.from_json(stored) if stored else Session()
        if session.place is not None:
            await self._conversations.step_in(conn, actor, Started(), now)

    def _write_to_them(
        self, locale: str, request: SafeguardingRequest
    ) -> list[list[dict[str, str]]]:
        """The "Write to them" button under everything duty staff are sent about a request."""
        return [[self._button(locale, "write_to_them", f"{STAFF_PREFIX}{request.token}")]]

    def _button(self, locale: str, key: str, data: str) -> dict[str, str]:
        return {"text": self._texts.text(locale, key), "callback_data": data}


def _reference(request: SafeguardingRequest) -> str:
    """A short reference staff can quote to each other: not the person's identity."""
    return f"SG-{request.id}"
