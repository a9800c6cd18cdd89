"""The conversation service: one update, one transaction.

Loads the person's session, steps the engine, and stores the consent/region changes, the new
session, the outgoing messages and the inbox mark together, so a crash at any moment leaves
either all of it or none of it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import aiosqlite

from bot.access import access_of
from bot.answer_keeper import AnswerKeeper
from bot.log_tags import person_tag
from bot.rendering import Catalogs, consent_summary, fill, render_message
from bot.secrets_file import Secrets
from bot.start_links import redeem_start_payload
from bot.stop_words import fold
from state_machines.definition import (
    CONSENT_PURPOSES,
    GrantConsent,
    SetLocale,
    SetRegion,
    StoreAnswer,
    Submit,
    WithdrawAllConsents,
)
from state_machines.engine import Engine
from state_machines.events import (
    Abandon,
    Apply,
    ButtonPressed,
    CommandSent,
    ConfirmChoice,
    Event,
    Say,
    Started,
    TextSent,
    UnsupportedSent,
)
from state_machines.session import Session
from storage.clock import Clock
from storage.database import Database, in_worker_thread
from storage.people import ConsentLedger, People, Sessions
from storage.queues import PRIORITY_BROADCAST, PRIORITY_REPLY, Inbox, Outbox
from storage.safeguarding import SafeguardingRequests

log = logging.getLogger(__name__)

# Session values (not any dialogue's) marking a written answer held back after a signpost,
# and how long sending it again at the same question saves it (see `_holds_risk_text`).
_RISK_TEXT = "_risk_text"
_SEND_AGAIN_WITHIN_MS = 3_600_000
# Session values marking the last thing answered with "I can only read text" (its kind and
# when): the same kind again this soon is part of the same album or batch of forwards.
_UNSUPPORTED = "_unsupported"
# Session values of the service: the outbox row of the message that asked the question on
# screen, kept when the person's place changes (see `_read_text`).
_ASKED = "_asked"
_QUIET_AFTER_MS = 10_000
# A safety contact question asked this recently may still be the one on screen.
_CONTACT_QUESTION_OPEN_MS = 3_600_000

# The broadcasts each consent is for. Saying no to one cancels its messages still queued to
# the person: a region's broadcast takes minutes to go out, and "no" means from now.
BROADCASTS_FOR_PURPOSE: dict[str, tuple[str, ...]] = {
    "feedback": ("checkin",),
    "panel_invitations": (
        "panel_invitation",
        "panel_reminder",
        "panel_moved",
        "panel_place_changed",
        "panel_cancelled",
        "panel_message",
        "panel_correction",
        "panel_place_given",
    ),
    "updates": ("update",),
}


@dataclass(frozen=True)
class Sender:
    """Who an update came from: the Telegram user and private chat, and the app language."""

    user_id: int
    chat_id: int
    language_code: str | None
    # The Telegram id of the person's message, when the update is one: it tells what they
    # wrote before a question reached them (see `_read_text`).
    message_id: int | None = None


@dataclass(frozen=True)
class Actor:
    """The person a dialogue's Submit comes from: who, which chat, which language."""

    pseudonym: str
    chat_id: int
    locale: str


# Acts on a dialogue's Submit inside the update's transaction, and answers the person itself.
SubmitHandler = Callable[[aiosqlite.Connection, Actor, Mapping[str, str], int], Awaitable[None]]
# Told, inside the transaction, that a person withdrew consent for these purposes; returns
# the dialogues that must close because of it (e.g. a check-in, without the feedback consent).
WithdrawalHandler = Callable[
    [aiosqlite.Connection, str, frozenset[str], int], Awaitable[frozenset[str]]
]
# Told, inside the transaction, that a person who could not be written to (they had blocked
# the bot) can be again (e.g. to give them a place left free while they could not be told).
ReachableHandler = Callable[[aiosqlite.Connection, str, int], Awaitable[None]]
# Checks a person's free text before the dialogue sees it; True when it was handled (e.g. a
# risk phrase was signposted) and must not be taken as an answer.
TextGuard = Callable[[aiosqlite.Connection, "Actor", str, int], Awaitable[bool]]
# A text written when no question is open (e.g. a reply to a message from probation, typed
# instead of tapping Reply): True when the handler dealt with it; if none did, "nothing to
# answer right now".
LooseTextHandler = Callable[[aiosqlite.Connection, "Actor", str, int], Awaitable[bool]]
# The dialogue someone is in while writing to the duty staff with Reply (bot/safety.py).
_REPLYING_TO_DUTY_STAFF = "safety_reply"
# Longer than any button's label, in any language: such a text is an answer, not a tap.
_LONGEST_TYPED_LABEL = 60
# The kind of answer (common.yaml's unsupported_<kind>) for a button's words typed before
# its question reached the person.
_TYPED_BEFORE_ASKED = "typed_early"
# Words typed at a question only a tap answers, kept (see `_kept_aside`): the answer's key,
# the least number of words, and the kind of answer whose message says they were kept.
_ASIDE_KEY = "aside"
_ASIDE_WORDS = 4
_ASIDE_KEPT = "aside_kept"
# A dialogue's `risk_text` setting for staff-only forms: what staff type there is their own
# words for people on licence, so it is taken as typed (bot/safety.py does not signpost it).
STAFF_WORDS = "staff_words"
# The order loose text handlers are tried in: a safety contact question waiting comes
# first; then the duty staff, if they wrote to the person after the person's latest answer
# (the text is a reply to them); then the answer just written (its rest, sent in parts);
# then the duty staff writing to the person; then a panel organiser's message.
LOOSE_TEXT_CONTACT_QUESTION = 10
LOOSE_TEXT_DUTY_STAFF_WROTE_LAST = 15
LOOSE_TEXT_FRESH_ANSWER = 20
LOOSE_TEXT_DUTY_STAFF = 30
LOOSE_TEXT_ORGANISER = 40
# Shows a dialogue's remembered values as a person reads them (dates, places...).
ValueFormatter = Callable[[Mapping[str, str], str], Mapping[str, str]]
# Fills one placeholder from stored data: (conn, pseudonym, locale, the dialogue's values).
ContextProvider = Callable[[aiosqlite.Connection, str, str, Mapping[str, str]], Awaitable[str]]


@dataclass(frozen=True)
class TappedMessage:
    """The message whose button was tapped, so it can be marked answered."""

    message_id: int
    text: str


class ConversationService:
    """Applies people's updates to their dialogue sessions."""

    def __init__(
        self,
        db: Database,
        engine: Engine,
        catalogs: Catalogs,
        secrets: Secrets,
        clock: Clock,
        default_locale: str,
        shipped_locales: tuple[str, ...],
        on_outbox_changed: Callable[[], None],
        keeper: AnswerKeeper | None = None,
    ) -> None:
        self._db = db
        self._engine = engine
        self._catalogs = catalogs
        self._secrets = secrets
        self._clock = clock
        self._default_locale = default_locale
        self._shipped_locales = shipped_locales
        self._on_outbox_changed = on_outbox_changed
        self._keeper = keeper or AnswerKeeper(secrets, taxonomy=None)
        self.notice_version = engine.common.settings.get("notice_version", "unversioned")
        self._submit_handlers: dict[str, SubmitHandler] = {}
        self._bulk_submits: set[str] = set()
        self._value_formatters: list[ValueFormatter] = []
        self._context_providers: dict[str, ContextProvider] = {}
        self._withdrawal_handlers: list[WithdrawalHandler] = []
        self._reachable_handlers: list[ReachableHandler] = []
        self._text_guard: TextGuard | None = None
        # (order, handler, risky_too, mid_dialogue), tried in order; the fresh answer's at 20.
        self._loose_text_handlers: list[tuple[int, LooseTextHandler, bool, bool]] = [
            (LOOSE_TEXT_FRESH_ANSWER, self._add_to_fresh_answer, False, False)
        ]
        self._after_commit: list[Callable[[], Awaitable[None]]] = []

    def after_commit(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run `action` once the current update's transaction has committed (e.g. empty the
        WAL after an erasure)."""
        self._after_commit.append(action)

    async def withdraw_everything(
        self, conn: aiosqlite.Connection, pseudonym: str, now: int
    ) -> None:
        """Tell every withdrawal handler the person withdrew every consent (e.g. before an
        erasure, so panel places go to the next person)."""
        await self._withdrawn(conn, pseudonym, frozenset(CONSENT_PURPOSES), now)

    def set_text_guard(self, guard: TextGuard) -> None:
        """Every free text goes through `guard` first (safeguarding)."""
        self._text_guard = guard

    def add_loose_text_handler(
        self,
        order: int,
        handler: LooseTextHandler,
        risky_too: bool = False,
        mid_dialogue: bool = False,
    ) -> None:
        """A text written with no question open goes to each handler in turn (lowest
        `order` first; LOOSE_TEXT_FRESH_ANSWER is the answer just written) until one deals
        with it, before the dialogue. A text that was just signposted goes only to
        handlers `risky_too` (the safety ones: duty staff can act). Handlers `mid_dialogue`
        also get words typed where only a tap answers (a reply to the duty staff typed
        during a check-in), before they are kept as an aside or met with "please tap"."""
        self._loose_text_handlers.append((order, handler, risky_too, mid_dialogue))
        self._loose_text_handlers.sort(key=lambda entry: entry[0])

    def on_withdrawal(self, handler: WithdrawalHandler) -> None:
        """Call `handler` whenever a person withdraws a consent (e.g. to give back a place)."""
        self._withdrawal_handlers.append(handler)

    def on_reachable_again(self, handler: ReachableHandler) -> None:
        """Call `handler` when a person who had blocked the bot unblocks it (Telegram's
        my_chat_member update, which comes before anything they write), or writes to it
        while marked so (that update lost, e.g. the bot down for over a day)."""
        self._reachable_handlers.append(handler)

    def register_submit(self, action: str, handler: SubmitHandler, bulk: bool = False) -> None:
        """Say what a dialogue's `submit: <action>` does. bulk: it writes for a whole
        region (e.g. a panel's invitations), so its statements run in the database's worker
        thread, not on the event loop like the rest of an update's transaction."""
        self._submit_handlers[action] = handler
        if bulk:
            self._bulk_submits.add(action)

    def add_value_formatter(self, formatter: ValueFormatter) -> None:
        """Show remembered values for people (each formatter rewrites the names it knows)."""
        self._value_formatters.append(formatter)

    def add_context_provider(self, placeholder: str, provider: ContextProvider) -> None:
        """Fill `{placeholder}` from stored data when a message has it (e.g. how many a
        form's preview will reach), in the update's transaction."""
        self._context_providers[placeholder] = provider

    def unhandled_submits(self) -> list[str]:
        """Submit actions the dialogues use that nothing handles (checked at start-up)."""
        used = {
            effect.action
            for dialogue in self._engine.dialogues.values()
            for state in dialogue.states.values()
            for effect in (
                *(e for b in state.buttons for e in b.effects),
                *(state.text.effects if state.text else ()),
            )
            if isinstance(effect, Submit)
        }
        return sorted(used - set(self._submit_handlers))

    async def handle_event(
        self,
        update_id: int,
        sender: Sender,
        event: Event,
        tapped: TappedMessage | None = None,
        free_text: str | None = None,
    ) -> None:
        """Step the person's dialogue with one event and store everything it caused.
        `free_text` is anything the person wrote that is not a plain text message (a
        photo's caption, a command's words): it is checked for risk phrases too."""
        pseudonym = self._secrets.pseudonym(sender.user_id)
        now = self._clock.now_ms()
        async with self._db.transaction(quick=True) as conn:
            if not await self._claim(conn, update_id):
                return
            person, came_back = await People(conn).arrive(
                pseudonym, sender.chat_id, self._locale_for(sender), now
            )
            step_event: Event | None = event
            if isinstance(event, CommandSent):
                access = await access_of(conn, pseudonym)
                roles = access.roles()
                # Staff joined by invite, not by the participants' sign-up: not sent there.
                consented = bool(roles) or bool(await ConsentLedger(conn).current(pseudonym))
                step_event = replace(
                    event, roles=roles, consented=consented, regions=access.staff_regions()
                )
            written = event.text if isinstance(event, TextSent) else free_text
            held = False
            if written:
                actor = Actor(pseudonym, sender.chat_id, person.locale)
                signposted = await self._guard_text(conn, actor, written, now)
                answer = isinstance(event, TextSent)
                held = signposted and await self._holds_risk_text(conn, actor, answer, now)
                if signposted and not answer:
                    # A caption or a forwarded threat, sent to someone the duty staff
                    # write to: theirs to read, as a typed one is (`_read_text`).
                    await self._pass_on_risky(conn, actor, written, now)
                if held:
                    step_event = None  # signposted: the dialogue waits, it is asked again later
            read: Session | None = None  # the session as _read_text found it
            if isinstance(event, TextSent):
                actor = Actor(pseudonym, sender.chat_id, person.locale)
                step_event, read = await self._read_text(
                    conn, actor, event, now, held, update_id, sender.message_id
                )
            if (
                isinstance(event, UnsupportedSent)
                and step_event is event
                and await self._answered_just_now(conn, pseudonym, event.kind, now)
            ):
                step_event = None  # an album's next photo, the next of many forwards
            if isinstance(event, Started) and event.payload:
                step_event = await self._redeem_start_link(
                    conn, pseudonym, sender.chat_id, person.locale, event.payload, now
                )
            elif isinstance(event, Started) and await self._staff_not_signed_up(conn, pseudonym):
                # Staff are not people on licence: /start does not sign them up as one (to
                # be asked check-ins and counted in digests), it says what they can do.
                text = self._catalogs.gettext(person.locale, self._engine.message("staff_start"))
                await Outbox(conn).enqueue(
                    sender.chat_id, PRIORITY_REPLY, "message", {"text": text}, now
                )
                step_event = None
            if step_event is not None:
                await self._step_and_store(
                    conn, pseudonym, sender.chat_id, person.locale, step_event, tapped, now, read
                )
            if came_back:  # after what they asked: a STOP gives up what this would give
                await self.reachable_again(conn, pseudonym, now)
            await Inbox(conn).mark_handled(update_id, now)
        log.info("handled update for person %s", person_tag(pseudonym))
        self._on_outbox_changed()  # after the commit: the sender reads committed rows only
        while self._after_commit:
            await self._after_commit.pop()()

    async def _staff_not_signed_up(
        self, conn: aiosqlite.Connection, pseudonym: str, session: Session | None = None
    ) -> bool:
        """Someone with a staff role who never signed up as a participant, and is not in
        the middle of anything (`session`: theirs, when the caller has just read it)."""
        if not (await access_of(conn, pseudonym)).roles():
            return False
        if session is None:
            stored = await Sessions(conn).load(pseudonym)
            session = Session.from_json(stored) if stored else Session()
        return session.place is None and self._engine.entry not in session.completed

    async def _answered_just_now(
        self, conn: aiosqlite.Connection, pseudonym: str, kind: str, now: int
    ) -> bool:
        """Whether something of this kind (a photo, a forward...) was answered moments ago.
        An album of ten photos, or forty messages forwarded at once, arrive as one update
        each: one kind answer (and the question again) is enough, not one per item. A
        caption or forwarded text is still checked for risk phrases before this."""
        stored = await Sessions(conn).load(pseudonym)
        session = Session.from_json(stored) if stored else Session()
        last = session.values_of(_UNSUPPORTED)
        at = last.get("at", "")
        if last.get("kind") == kind and at.isdigit() and now - int(at) < _QUIET_AFTER_MS:
            return True
        session = session.with_values(_UNSUPPORTED, {"kind": kind, "at": str(now)})
        await Sessions(conn).save(pseudonym, session.to_json(), now)
        return False

    async def _read_text(
        self,
        conn: aiosqlite.Connection,
        actor: Actor,
        event: TextSent,
        now: int,
        held: bool,
        update_id: int,
        message_id: int | None = None,
    ) -> tuple[Event | None, Session]:
        """The event a text steps, with the session read (so that stepping it need not read
        it again). `held`: it was signposted and is not an answer (None, unless a loose text
        handler passes it on: a risky reply to the duty staff must reach them).

        The tap of the one button whose words were typed ("yes", "Sometimes", "Skip": some
        people type rather than tap; where a written answer is asked for, other words are
        that answer), unless a safety contact question is
        waiting (its "Yes, please" is what a "yes" then means). With no question open: added
        to the answer written moments before (a thought sent in parts), or dealt with by a
        loose text handler (a reply to the duty staff), or else "nothing to answer".

        A button's words typed before the question on screen reached the person (`message_id`:
        their message; the question's outbox row is kept in the session, `_ASKED`, when the
        place changes: a question asked again after "hmm" is the same question) are not its
        tap: three "yes" typed with
        no signal, arriving together, would say yes to two consent questions never read.
        The question is asked again instead."""
        stored = await Sessions(conn).load(actor.pseudonym)
        session = Session.from_json(stored) if stored else Session()
        if session.place is not None:
            if held:
                return None, session
            tap = self._typed_button(session, actor.locale, event.text)
            asked = session.values_of(_ASKED).get("row", "")
            if (
                tap is not None
                and message_id is not None
                and asked.isdigit()
                and await Outbox(conn).sent_after_written(int(asked), update_id, message_id)
            ):
                return UnsupportedSent(_TYPED_BEFORE_ASKED), session
            if tap is not None and not await SafeguardingRequests(conn).latest_open(
                actor.pseudonym, now - _CONTACT_QUESTION_OPEN_MS, statuses=("asked",)
            ):
                return tap, session
            if tap is None and self._only_a_tap_answers(session):
                for _, handler, _, mid_dialogue in self._loose_text_handlers:
                    if mid_dialogue and await handler(conn, actor, event.text, now):
                        return None, session
                if await self._kept_aside(conn, actor, session, event.text, now):
                    return UnsupportedSent(_ASIDE_KEPT), session
            return event, session
        for _, handler, risky_too, _ in self._loose_text_handlers:
            if (risky_too or not held) and await handler(conn, actor, event.text, now):
                return None, session
        if not held and await self._staff_not_signed_up(conn, actor.pseudonym, session):
            # Staff writing with no form open ("thanks, got it") are not walked into the
            # sign-up for people on licence, as /start from them is not.
            text = self._catalogs.gettext(actor.locale, self._engine.message("staff_start"))
            await Outbox(conn).enqueue(
                actor.chat_id, PRIORITY_REPLY, "message", {"text": text}, now
            )
            return None, session
        return (None if held else event), session

    def _only_a_tap_answers(self, session: Session) -> bool:
        """The question on screen takes no written answer (buttons only)."""
        place = session.place
        dialogue = self._engine.dialogues.get(place.dialogue) if place else None
        state = dialogue.states.get(place.state) if dialogue and place else None
        return state is not None and state.text is None

    async def _kept_aside(
        self, conn: aiosqlite.Connection, actor: Actor, session: Session, text: str, now: int
    ) -> bool:
        """Kept: words typed where only a tap answers, in a dialogue whose `asides` setting
        is `keep` (a check-in), past its first question (whether to begin at all). "They
        never listen, last week she didn't even look up" typed at "Do they listen to you?"
        is the person's voice: kept as a written answer (with the feedback consent, as any
        answer), not dropped with "please tap one of the buttons"."""
        place = session.place
        dialogue = self._engine.dialogues.get(place.dialogue) if place else None
        if place is None or dialogue is None or dialogue.settings.get("asides") != "keep":
            return False
        if place.state == dialogue.start:
            return False
        if len(fold(text).split()) < _ASIDE_WORDS:
            return False  # "idk", "not sure": no more than a tap would say
        kept = await self._keeper.keep(
            conn, actor.pseudonym, place.dialogue, _ASIDE_KEY, text, actor.locale, now
        )
        return kept is not None

    async def _add_to_fresh_answer(
        self, conn: aiosqlite.Connection, actor: Actor, text: str, now: int
    ) -> bool:
        """More of the answer written moments before (a thought sent in parts)."""
        if not await self._keeper.add_to_recent(conn, actor.pseudonym, text, actor.locale, now):
            return False
        told = self._catalogs.gettext(actor.locale, self._engine.message("answer_added"))
        await Outbox(conn).enqueue(actor.chat_id, PRIORITY_REPLY, "message", {"text": told}, now)
        return True

    def _typed_button(self, session: Session, locale: str, text: str) -> ButtonPressed | None:
        """The button of the question on screen whose label the text is (in the person's
        language or in English, case, punctuation and emoji aside), when exactly one is."""
        place = session.place
        dialogue = self._engine.dialogues.get(place.dialogue) if place else None
        state = dialogue.states.get(place.state) if dialogue and place else None
        if place is None or state is None:
            return None  # nothing asked
        # Where a written answer is asked for too, only a button's exact words count as
        # its tap: "skip" typed at "Welsh text, or Skip" is not the Welsh text, nor is "do
        # not send" typed under "Write your message" a message to pass on. (An answer
        # longer than any label is not folded at all: this runs for every written answer.)
        if state.text is not None and len(text) > _LONGEST_TYPED_LABEL:
            return None
        typed = fold(text)
        question = self._engine.current_question(session)
        if not typed or question is None:
            return None
        # The buttons shown (a staff member's own areas, not all twelve): another area typed
        # is no tap of a button they were never offered.
        matches = [
            view
            for view in question.buttons
            if typed in (fold(view.label), fold(self._catalogs.gettext(locale, view.label)))
        ]
        if len(matches) != 1:
            return None
        return ButtonPressed(matches[0].token)

    async def _redeem_start_link(
        self,
        conn: aiosqlite.Connection,
        pseudonym: str,
        chat_id: int,
        locale: str,
        payload: str,
        now: int,
    ) -> Started | None:
        """Redeem a /start payload; None when it was a staff invite, answered here (a staff
        member is not onboarded as a participant)."""
        outcome = await redeem_start_payload(conn, self._secrets, pseudonym, payload, now)
        if outcome.event is not None:
            return outcome.event
        text = self._catalogs.gettext(locale, self._engine.message(outcome.reply or ""))
        params = dict(outcome.params)
        if "role" in params:  # "manager" in a Welsh sentence read "yn manager"
            params["role"] = self._engine.message(f"role_{params['role']}")
        params = {name: self._catalogs.gettext(locale, value) for name, value in params.items()}
        await Outbox(conn).enqueue(
            chat_id, PRIORITY_REPLY, "message", {"text": fill(text, params)}, now
        )
        return None

    async def step_in(
        self, conn: aiosqlite.Connection, actor: Actor, event: Event, now: int
    ) -> None:
        """Step a person's dialogue inside the caller's transaction (e.g. a check-in the
        application begins, or closes when it expires)."""
        await self._step_and_store(
            conn, actor.pseudonym, actor.chat_id, actor.locale, event, None, now
        )

    async def _step_and_store(
        self,
        conn: aiosqlite.Connection,
        pseudonym: str,
        chat_id: int,
        locale: str,
        event: Event,
        tapped: TappedMessage | None,
        now: int,
        session: Session | None = None,
    ) -> None:
        """One engine step: its data effects, its messages, and the new session (`session`:
        as just read from the store in this transaction, when the caller has it)."""
        if session is None:
            stored = await Sessions(conn).load(pseudonym)
            session = Session.from_json(stored) if stored else Session()
        step = self._engine.step(session, event)
        outbox = Outbox(conn)
        closing: set[str] = set()
        last_row: int | None = None  # the last message queued: the question, if one is asked
        for effect in step.effects:
            if isinstance(effect, Apply) and isinstance(effect.effect, Submit):
                action = effect.effect.action
                handler = self._submit_handlers[action]
                with in_worker_thread(conn) if action in self._bulk_submits else nullcontext():
                    await handler(conn, Actor(pseudonym, chat_id, locale), effect.values, now)
                if await People(conn).get(pseudonym) is None:
                    return  # they were just erased: nothing more is said or kept
            elif isinstance(effect, Apply):
                closing |= await self._apply(conn, pseudonym, chat_id, effect, now)
                if isinstance(effect.effect, SetLocale):
                    locale = effect.effect.locale  # what follows is in the new language
            elif isinstance(effect, Say):
                context = await self._context(conn, pseudonym, locale, effect)
                payloads = render_message(effect, locale, self._catalogs, context)
                if effect.in_place and tapped is not None and len(payloads) == 1:
                    edit = {"message_id": tapped.message_id, **payloads[0]}
                    await outbox.enqueue(chat_id, PRIORITY_REPLY, "edit", edit, now)
                    continue
                for payload in payloads:
                    last_row = await outbox.enqueue(
                        chat_id, PRIORITY_REPLY, "message", payload, now
                    )
            elif isinstance(effect, ConfirmChoice) and tapped is not None:
                answered = self._answered(tapped, effect, locale)
                await outbox.enqueue(chat_id, PRIORITY_REPLY, "edit", answered, now)
        new_session = step.session
        for dialogue in sorted(closing):  # e.g. a check-in, once the feedback consent went
            new_session = self._engine.step(new_session, Abandon(dialogue)).session
        if new_session.place != session.place:
            # The question now on screen went last (its message, after any lead-in).
            asked = {"row": str(last_row)} if new_session.place and last_row else {}
            new_session = new_session.with_values(_ASKED, asked)
        await Sessions(conn).save(pseudonym, new_session.to_json(), now)

    async def handle_edited(self, update_id: int, sender: Sender, text: str) -> None:
        """An edited message is not an answer, but a risk phrase in it is signposted."""
        pseudonym = self._secrets.pseudonym(sender.user_id)
        now = self._clock.now_ms()
        async with self._db.transaction(quick=True) as conn:
            if not await self._claim(conn, update_id):
                return
            person, came_back = await People(conn).arrive(
                pseudonym, sender.chat_id, self._locale_for(sender), now
            )
            actor = Actor(pseudonym, sender.chat_id, person.locale)
            locale = person.locale
            if not await self._guard_text(conn, actor, text, now):
                message = self._catalogs.gettext(locale, self._engine.message("edited_message"))
                await Outbox(conn).enqueue(
                    sender.chat_id, PRIORITY_REPLY, "message", {"text": message}, now
                )
            if came_back:
                await self.reachable_again(conn, pseudonym, now)
            await Inbox(conn).mark_handled(update_id, now)
        self._on_outbox_changed()

    async def _holds_risk_text(
        self, conn: aiosqlite.Connection, actor: Actor, answer: bool, now: int
    ) -> bool:
        """Whether a text just signposted is held back from the dialogue (not taken as an
        answer) while the person reads the signpost.

        Not held: a message the bot passes on to someone (a relay, e.g. to the staff holding
        the safeguarding duty), which may itself be a call for help; nor the same answer
        sent again at the same question soon after (an ordinary complaint such as "my
        officer keeps threatening me with recall" reads like a risk phrase, and dropping it
        every time would leave its writer no way to be heard but to skip). The first time,
        the person is told it was not saved and how to save it. `answer`: the text was
        typed as a message, not a caption or a forwarded message (never an answer)."""
        stored = await Sessions(conn).load(actor.pseudonym)
        session = Session.from_json(stored) if stored else Session()
        place = session.place
        if place is None or place.dialogue not in self._engine.dialogues:
            return True
        dialogue = self._engine.dialogues[place.dialogue]
        if dialogue.settings.get("risk_text") in ("passed_on", STAFF_WORDS):
            return False
        state = dialogue.states.get(place.state)
        if not answer or state is None or state.text is None:
            return True  # no written answer is asked for here, or this is none
        here = f"{place.dialogue}:{place.state}"
        held = session.values_of(_RISK_TEXT).get("held_at", "")
        where, _, when = held.rpartition("@")
        if where == here and when.isdigit() and now - int(when) <= _SEND_AGAIN_WITHIN_MS:
            session = session.with_values(_RISK_TEXT, {})
            await Sessions(conn).save(actor.pseudonym, session.to_json(), now)
            return False
        session = session.with_values(_RISK_TEXT, {"held_at": f"{here}@{now}"})
        await Sessions(conn).save(actor.pseudonym, session.to_json(), now)
        text = self._catalogs.gettext(actor.locale, self._engine.message("risk_text_not_saved"))
        await Outbox(conn).enqueue(actor.chat_id, PRIORITY_REPLY, "message", {"text": text}, now)
        return True

    async def _guard_text(
        self, conn: aiosqlite.Connection, actor: Actor, text: str, now: int
    ) -> bool:
        return self._text_guard is not None and await self._text_guard(conn, actor, text, now)

    async def reply_with_message(
        self, update_id: int, chat_id: int, message_key: str | None, leave_chat: bool = False
    ) -> None:
        """Answer with one shared message (no dialogue step), e.g. to a group chat, and
        leave the chat if asked."""
        now = self._clock.now_ms()
        async with self._db.transaction(quick=True) as conn:
            if not await self._claim(conn, update_id):
                return
            outbox = Outbox(conn)
            if message_key is not None:
                person = await People(conn).by_chat(chat_id)
                locale = person.locale if person else self._default_locale
                text = self._catalogs.gettext(locale, self._engine.message(message_key))
                await outbox.enqueue(chat_id, PRIORITY_REPLY, "message", {"text": text}, now)
            if leave_chat:
                await outbox.enqueue(chat_id, PRIORITY_REPLY, "leave", {}, now)
            await Inbox(conn).mark_handled(update_id, now)
        self._on_outbox_changed()

    async def set_reachable(self, update_id: int, chat_id: int, reachable: bool) -> None:
        """The person blocked or unblocked the bot (my_chat_member)."""
        now = self._clock.now_ms()
        async with self._db.transaction(quick=True) as conn:
            if not await self._claim(conn, update_id):
                return
            pseudonym = await People(conn).set_reachable(chat_id, reachable, now)
            if not reachable:
                await Outbox(conn).cancel_chat(chat_id, "blocked by the person")
            elif pseudonym is not None:
                await self.reachable_again(conn, pseudonym, now)
            await Inbox(conn).mark_handled(update_id, now)
        self._on_outbox_changed()  # the sender must not send what was just cancelled
        if pseudonym:
            state = "reachable" if reachable else "unreachable"
            log.info("person %s is now %s", person_tag(pseudonym), state)

    async def reachable_again(self, conn: aiosqlite.Connection, pseudonym: str, now: int) -> None:
        """The person, marked as not to be written to, can be again: tell the handlers
        (`on_reachable_again`)."""
        for handler in self._reachable_handlers:
            await handler(conn, pseudonym, now)

    async def record_failure(
        self, update_id: int, chat_id: int | None, give_up_after: int
    ) -> int | None:
        """Handling raised: count the attempt. Returns the attempts so far when it should be
        retried; after the last one the update is dropped and the person told, kindly."""
        now = self._clock.now_ms()
        async with self._db.transaction(quick=True) as conn:
            if await Inbox(conn).status(update_id) != "pending":
                return None
            attempts = await Inbox(conn).record_failure(update_id, now, give_up_after)
            if attempts is None and chat_id is not None:
                person = await People(conn).by_chat(chat_id)
                locale = person.locale if person else self._default_locale
                text = self._catalogs.gettext(locale, self._engine.message("something_went_wrong"))
                await Outbox(conn).enqueue(chat_id, PRIORITY_REPLY, "message", {"text": text}, now)
        self._on_outbox_changed()
        return attempts

    @property
    def default_locale(self) -> str:
        return self._default_locale

    def pseudonym_of(self, telegram_user_id: int) -> str:
        return self._secrets.pseudonym(telegram_user_id)

    async def locale_of(self, pseudonym: str) -> str:
        """The person's language, or the default for someone not yet known."""
        async with self._db.read(quick=True) as conn:
            person = await People(conn).get(pseudonym)
        return person.locale if person else self._default_locale

    async def drop_flooded(
        self, update_id: int, sender: Sender, text: str | None, warn: bool
    ) -> None:
        """An update over the flood limit: not read as an answer and not answered (`warn`:
        "slow down" once), but any text in it is still checked for risk phrases: forty
        threatening messages forwarded at once are a flood and a call for help."""
        now = self._clock.now_ms()
        async with self._db.transaction(quick=True) as conn:
            if not await self._claim(conn, update_id):
                return
            person = await People(conn).get(self._secrets.pseudonym(sender.user_id))
            locale = person.locale if person else self._default_locale
            if person is not None and text:
                # (Known: the flood's first updates were handled, and touched them.)
                actor = Actor(person.pseudonym, sender.chat_id, locale)
                if await self._guard_text(conn, actor, text, now):
                    await self._pass_on_risky(conn, actor, text, now)
            if warn:
                said = self._catalogs.gettext(locale, self._engine.message("slow_down"))
                await Outbox(conn).enqueue(
                    sender.chat_id, PRIORITY_REPLY, "message", {"text": said}, now
                )
            await Inbox(conn).mark_handled(update_id, now)
        self._on_outbox_changed()

    async def _pass_on_risky(
        self, conn: aiosqlite.Connection, actor: Actor, text: str, now: int
    ) -> None:
        """A signposted text sent with no question open goes to the handlers that take
        risky text (the duty staff writing to the person: the guard leaves it to them and
        opens no request of its own), as `_read_text` would have passed it."""
        stored = await Sessions(conn).load(actor.pseudonym)
        place = Session.from_json(stored).place if stored else None
        if place is not None and place.dialogue != _REPLYING_TO_DUTY_STAFF:
            return  # (writing with Reply to the duty staff: theirs too)
        for _, handler, risky_too, _ in self._loose_text_handlers:
            if risky_too and await handler(conn, actor, text, now):
                return

    async def ignore(self, update_id: int) -> None:
        """An update with nothing to do (e.g. a channel post): mark it handled."""
        async with self._db.transaction(quick=True) as conn:
            await Inbox(conn).mark_handled(update_id, self._clock.now_ms())

    async def _claim(self, conn: aiosqlite.Connection, update_id: int) -> bool:
        """True when this update still needs handling (redeliveries are no-ops)."""
        return await Inbox(conn).status(update_id) == "pending"

    def _locale_for(self, sender: Sender) -> str:
        code = (sender.language_code or "").split("-")[0].lower()
        return code if code in self._shipped_locales else self._default_locale

    async def _apply(
        self, conn: aiosqlite.Connection, pseudonym: str, chat_id: int, apply: Apply, now: int
    ) -> frozenset[str]:
        """Carry out one data effect; returns the dialogues a withdrawal closes."""
        effect = apply.effect
        if isinstance(effect, GrantConsent):
            await ConsentLedger(conn).record(
                pseudonym, effect.purpose, effect.granted, self.notice_version, now
            )
            if not effect.granted:
                closing = await self._withdrawn(conn, pseudonym, frozenset({effect.purpose}), now)
                await Outbox(conn).cancel_broadcasts_to(
                    chat_id,
                    BROADCASTS_FOR_PURPOSE.get(effect.purpose, ()),
                    "person withdrew consent",
                )
                return closing
        elif isinstance(effect, SetRegion):
            await People(conn).set_region(pseudonym, effect.region or None, now)
        elif isinstance(effect, SetLocale) and effect.locale in self._shipped_locales:
            await People(conn).set_locale(pseudonym, effect.locale, now)
        elif isinstance(effect, WithdrawAllConsents):
            await ConsentLedger(conn).withdraw_all(pseudonym, self.notice_version, now)
            closing = await self._withdrawn(conn, pseudonym, frozenset(CONSENT_PURPOSES), now)
            await Outbox(conn).cancel_chat(
                chat_id, "person withdrew consent", min_priority=PRIORITY_BROADCAST
            )
            return closing
        elif isinstance(effect, StoreAnswer) and apply.value is not None:
            await self._store_answer(conn, pseudonym, apply, effect, now)
        return frozenset()

    async def _withdrawn(
        self, conn: aiosqlite.Connection, pseudonym: str, purposes: frozenset[str], now: int
    ) -> frozenset[str]:
        """Tell every handler; returns the dialogues to close."""
        closing: set[str] = set()
        for handler in self._withdrawal_handlers:
            closing |= await handler(conn, pseudonym, purposes, now)
        return frozenset(closing)

    async def _store_answer(
        self,
        conn: aiosqlite.Connection,
        pseudonym: str,
        apply: Apply,
        effect: StoreAnswer,
        now: int,
    ) -> None:
        """Keep a free-text answer (the keeper checks the consent and encrypts it)."""
        person = await People(conn).get(pseudonym)
        locale = person.locale if person else self._default_locale
        await self._keeper.keep(
            conn, pseudonym, apply.dialogue or "", effect.key, apply.value or "", locale, now
        )

    async def _context(
        self, conn: aiosqlite.Connection, pseudonym: str, locale: str, say: Say
    ) -> dict[str, str]:
        """Values for placeholders: what the dialogue remembered, shown for the person, and
        what comes from stored data, computed only when used."""
        context: dict[str, str] = dict(say.values)
        # Also with nothing remembered yet, when the text has a placeholder: a form's first
        # question may show its (empty) choices, which must read "none", not "{themes}".
        if say.values or "{" in say.text:
            for formatter in self._value_formatters:
                context.update(formatter(say.values, locale))
        if "{consent_summary}" in say.text:
            current = await ConsentLedger(conn).current(pseudonym)
            context["consent_summary"] = consent_summary(
                current, locale, self._catalogs, self._engine.common.messages
            )
        for placeholder, provider in self._context_providers.items():
            if f"{{{placeholder}}}" in say.text:
                context[placeholder] = await provider(conn, pseudonym, locale, say.values)
        return context

    def _answered(
        self, tapped: TappedMessage, choice: ConfirmChoice, locale: str
    ) -> dict[str, Any]:
        label = self._catalogs.gettext(locale, choice.label)
        note = fill(
            self._catalogs.gettext(locale, self._engine.message("choice_made")), {"choice": label}
        )
        return {"message_id": tapped.message_id, "text": f"{tapped.text}\n\n{note}"[:4096]}
