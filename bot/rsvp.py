"""People's side of panels: Yes / Maybe / No, support needs, "Cancel my place", the
waiting list moving up, and replies to the organiser passed on by the bot.

An answer, the promotion it triggers and both people's messages are one transaction. The
buttons carry the invitation's random token; a token that is not the tapping person's own
(forged or forwarded) is refused and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import aiosqlite

from bot.access import access_of
from bot.conversation import Actor, ConversationService, Sender
from bot.desk import Desk
from bot.panel_texts import INTERPRETER_LANGUAGES, SUPPORT_NEEDS, PanelTexts, Payload
from bot.panels import OVER_AFTER_MS, REPLY_OPEN_FOR_MS, audit_panel
from bot.rendering import split_payload
from state_machines.engine import Engine
from state_machines.events import Begin
from storage.broadcasts import Broadcasts
from storage.clock import Clock
from storage.database import Database
from storage.panels import ANSWERS, Invitation, Panel, Panels, RsvpOutcome
from storage.people import ConsentLedger, People
from storage.queues import PRIORITY_REPLY, STALE_AT, Outbox
from storage.staff import StaffRoles

_CHOICES = {"y": "yes", "m": "maybe", "n": "no", "c": "cancel"}
# A text with no question open this soon after an organiser's message is a reply to it.
_TYPED_REPLY_WITHIN_MS = 3 * 86_400_000


class RsvpService(Desk[PanelTexts]):
    """Answers to invitations, and messages between the people coming and the organiser."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        engine: Engine,
        texts: PanelTexts,
        conversations: ConversationService,
        on_queued: Callable[[], None],
    ) -> None:
        super().__init__(db, clock, engine, texts, conversations, on_queued)
        conversations.register_submit("relay_reply", self.relay_reply)
        conversations.on_withdrawal(self.on_withdrawn)
        conversations.on_reachable_again(self.on_reachable_again)

    async def on_answer(
        self, update_id: int, sender: Sender, token: str, action: str, message_id: int | None
    ) -> None:
        """A person tapped a button on an invitation or an answer: Yes, Maybe, No, Cancel
        my place, a support need, Done, Reply, or "I don't understand"."""
        if action == "r":
            await self._begin_reply(update_id, sender, token)
            return
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._acting(update_id, sender, pseudonym) as acting:
            if acting is None:
                return
            conn, now, actor = acting
            panels = Panels(conn)
            invitation = await panels.invitation(token)
            panel = await panels.get(invitation.panel_id) if invitation else None
            if invitation is None or panel is None or invitation.pseudonym != pseudonym:
                await self._tell(conn, actor, self._engine.message("not_available"), now, True)
                return
            if action in ("y", "m") and not await _wants_invitations(conn, pseudonym):
                # Said no to panels (or /stop) since: a place they would never hear about
                # again is not given; how to say yes again is.
                await self._tell(conn, actor, "panel_needs_consent", now)
            elif action in _CHOICES:
                outcome = await panels.respond(token, _CHOICES[action], now)
                await self._answered(conn, actor, panel, outcome, now)
            elif action.startswith("s:"):
                await self._toggle_need(conn, actor, panel, invitation, action[2:], message_id, now)
            elif action.startswith("l:"):
                await self._choose_language(
                    conn, actor, panel, invitation, action[2:], message_id, now
                )
            elif action == "e":
                payload = self._texts.invitation_explained(token, actor.locale)
                await Outbox(conn).enqueue(actor.chat_id, PRIORITY_REPLY, "message", payload, now)
            elif action == "x":  # "I don't understand" under the help they can ask for
                payload = self._texts.support_explained(panel, invitation, actor.locale)
                await Outbox(conn).enqueue(actor.chat_id, PRIORITY_REPLY, "message", payload, now)
            elif action == "d":
                await self._needs_done(conn, actor, panel, invitation, now)

    async def _needs_done(
        self,
        conn: aiosqlite.Connection,
        actor: Actor,
        panel: Panel,
        invitation: Invitation,
        now: int,
    ) -> None:
        """Done under the help buttons: the person hears what was noted; help the panel does
        not offer goes to its organiser now (each need once), with the Answer button, so
        "we will ask" is kept: the ticket list alone waited for the organiser to look."""
        if _started(panel, now):  # an old message tapped on the day: nothing to arrange now
            await self._tell(conn, actor, "panel_closed", now)
            return
        chosen = invitation.support_needs
        if not chosen:
            await self._tell(conn, actor, "support_none_saved", now)
            return
        language = invitation.interpreter_language
        needs = self._texts.needs(chosen, actor.locale, language)
        not_offered = [n for n in chosen if n not in panel.support_offered]
        # Noted as told only when someone reads it: with nobody to tell, a later Done tries
        # again (the ticket list still marks the need for whoever looks).
        readers = await self._organisers(conn, panel) if not_offered else []
        asked = await Panels(conn).note_needs_told(invitation.token, not_offered) if readers else ()
        for chat_id, locale in readers if asked else []:
            payload = self._texts.needs_to_organiser(panel, invitation, asked, locale)
            await Outbox(conn).enqueue(chat_id, PRIORITY_REPLY, "message", payload, now)
        if asked:
            asked_names = self._texts.needs(asked, actor.locale, language)
            await self._tell(
                conn, actor, "support_saved_asked", now, needs=needs, asked=asked_names
            )
        elif not_offered and not readers:
            missing = self._texts.needs(not_offered, actor.locale, language)
            await self._tell(conn, actor, "support_not_passed_on", now, needs=needs, asked=missing)
        else:
            await self._tell(conn, actor, "support_saved", now, needs=needs)

    async def pass_on_typed_reply(
        self, conn: aiosqlite.Connection, actor: Actor, text: str, now: int
    ) -> bool:
        """Someone a panel's organiser wrote to in the last few days writes with no
        question open: a reply typed rather than sent with the Reply button ("I can't
        make it, my son is ill"). It goes to the organiser, as a Reply would, but only
        while the organiser's message is the last the bot sent them of its own accord: a
        word typed under an update or a check-in is not the organiser's to read."""
        latest = await Broadcasts(conn).latest_sent_to(actor.chat_id, now - _TYPED_REPLY_WITHIN_MS)
        if latest is None or latest[0] != "panel_message":
            return False
        panel_id = latest[1].removeprefix("panel:")
        if not panel_id.isdigit():
            return False
        # On the day too, until the panel is over: "it's locked, where are you?" typed at
        # the door after the start time is the organiser's to read.
        invitation = next(
            (
                i
                for i in await Panels(conn).active_invitations(actor.pseudonym, now - OVER_AFTER_MS)
                if i.panel_id == int(panel_id)
            ),
            None,
        )
        if invitation is None:
            return False
        values = {
            "invitation": invitation.token,
            "to": "organiser",
            "message": text,
            "opened_at": str(now),  # typed now, with no prompt: nothing to expire
        }
        await self.relay_reply(conn, actor, values, now)
        return True

    async def relay_reply(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Pass on a reply: from an invited person to the organiser ("to": "organiser"),
        or from staff to one invited person ("to": "person"). Neither sees the other's
        Telegram account; the organiser sees the ticket or the answer instead of a name."""
        panels = Panels(conn)
        invitation = await panels.invitation(values.get("invitation", ""))
        panel = await panels.get(invitation.panel_id) if invitation else None
        if invitation is None or panel is None:
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            return
        opened = values.get("opened_at", "")
        # A prompt opened before prompts were timed (no opened_at) counts as expired too:
        # it may have been open for days; tapping again is cheap.
        if not opened.isdigit() or now - int(opened) > REPLY_OPEN_FOR_MS:
            title = self._texts.title_of(panel, actor.locale)
            await self._tell(conn, actor, "reply_expired", now, title=title)
            return
        message = values.get("message", "")
        if values.get("to") == "person":
            if not (await access_of(conn, actor.pseudonym)).is_staff_in(panel.region):
                await self._tell(conn, actor, self._engine.message("not_available"), now, True)
                return
            attendee = next(
                (
                    a
                    for a in await panels.attendees(panel.id, ANSWERS)
                    if a.token == invitation.token
                ),
                None,
            )
            await audit_panel(conn, actor, "panel.answer_sent", panel, now)
            readers = [] if attendee is None else [(attendee.chat_id, attendee.locale)]
        elif invitation.pseudonym == actor.pseudonym:
            readers = await self._organisers(conn, panel)
        else:
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            return
        if not readers:
            await self._tell(conn, actor, "message_not_passed_on", now)
            return
        for chat_id, locale in readers:
            if values.get("to") == "person":
                payload = self._texts.relayed(panel, invitation.token, message, locale)
            else:
                payload = self._texts.reply_to_organiser(panel, invitation, message, locale)
            for part in split_payload(payload):  # a long reply typed, not written in the form
                await Outbox(conn).enqueue(chat_id, PRIORITY_REPLY, "message", part, now)
        await self._tell(conn, actor, "message_passed_on", now)

    async def _organisers(self, conn: aiosqlite.Connection, panel: Panel) -> list[tuple[int, str]]:
        """Who reads replies about a panel (chat id, locale): its organiser; or, once the
        organiser has left (the role revoked) or cannot be reached, the managers of its
        area, else the admins: replies must not be lost for as long as the panel runs."""
        organiser = await People(conn).get(panel.organiser)
        still_staff = (await access_of(conn, panel.organiser)).is_staff_in(panel.region)
        if organiser is not None and organiser.reachable and still_staff:
            return [(organiser.chat_id, organiser.locale)]
        roles = StaffRoles(conn)
        for standing_in in (
            await roles.holders("manager", panel.region),
            await roles.holders("admin", None),
        ):
            found = [await People(conn).get(p) for p in standing_in if p != panel.organiser]
            reachable = [(p.chat_id, p.locale) for p in found if p is not None and p.reachable]
            if reachable:
                return reachable
        return []

    async def on_withdrawn(
        self, conn: aiosqlite.Connection, pseudonym: str, purposes: frozenset[str], now: int
    ) -> frozenset[str]:
        """Someone said no more panel invitations (or /stop): give back their places and
        waiting-list spots, so the next person gets them, and forget their support needs."""
        if "panel_invitations" not in purposes:
            return frozenset()
        panels = Panels(conn)
        person = await People(conn).get(pseudonym)
        for invitation in await panels.active_invitations(pseudonym, now):
            outcome = await panels.respond(invitation.token, "cancel", now)
            panel = await panels.get(invitation.panel_id)
            if panel is None:
                continue
            await self._tell_promoted(conn, panel, outcome.promoted, now)
            if person is not None and person.reachable:
                # Said once, now: a place quietly gone would be found out at the door.
                told = self._texts.given_up(panel, invitation, person.locale)
                await Outbox(conn).enqueue(person.chat_id, PRIORITY_REPLY, "message", told, now)
        return frozenset()

    async def on_reachable_again(
        self, conn: aiosqlite.Connection, pseudonym: str, now: int
    ) -> None:
        """Someone on a waiting list who had blocked the bot unblocked it. A place given back
        while they (and all waiting before them) could not be told stayed free; it goes now
        to whoever is first in turn of those who can be told, them or another, each told
        with their ticket, as when a place is given back."""
        panels = Panels(conn)
        for invitation in await panels.active_invitations(pseudonym, now):
            if invitation.answer != "waiting":
                continue
            panel = await panels.get(invitation.panel_id)
            if panel is None:
                continue
            for promoted in await panels.fill_free_places(panel.id, now):
                await self._tell_promoted(conn, panel, promoted, now)

    async def _answered(
        self, conn: aiosqlite.Connection, actor: Actor, panel: Panel, outcome: RsvpOutcome, now: int
    ) -> None:
        if outcome.closed:
            await self._tell(conn, actor, "panel_closed", now)
            return
        payload = self._texts.answer(
            panel, outcome.invitation, actor.locale, outcome.waiting_position
        )
        await Outbox(conn).enqueue(actor.chat_id, PRIORITY_REPLY, "message", payload, now)
        await self._tell_promoted(conn, panel, outcome.promoted, now)

    async def _tell_promoted(
        self, conn: aiosqlite.Connection, panel: Panel, promoted: Invitation | None, now: int
    ) -> None:
        """Whoever got the place that was given back hears so, with their ticket."""
        if promoted is None:
            return
        person = await People(conn).get(promoted.pseudonym)
        if person is not None and person.reachable:
            freed = self._texts.place_freed(panel, promoted, person.locale)
            # Not once the panel has begun (a long outage of Telegram's, say).
            stale = {**freed, STALE_AT: panel.starts_at}
            await Outbox(conn).enqueue(person.chat_id, PRIORITY_REPLY, "message", stale, now)

    async def _toggle_need(
        self,
        conn: aiosqlite.Connection,
        actor: Actor,
        panel: Panel,
        invitation: Invitation,
        need: str,
        message_id: int | None,
        now: int,
    ) -> None:
        """Tick or untick a support need, and show it ticked on the same message. Any of the
        four, offered or not: someone who needs an interpreter at a panel that offers none
        says so (staff see it, and the digest counts what was asked for and not offered),
        rather than drop out without a word."""
        if need not in SUPPORT_NEEDS:
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            return
        if _started(panel, now):
            await self._tell(conn, actor, "panel_closed", now)
            return
        needs = set(invitation.support_needs) ^ {need}
        panels = Panels(conn)
        if not await panels.set_support_needs(invitation.token, sorted(needs)):
            await self._tell(conn, actor, "needs_not_now", now)  # not coming: nothing to arrange
            return
        updated = await panels.invitation(invitation.token)
        assert updated is not None
        if need == "interpreter" and need in needs:
            # Which language: without it the organiser has to ask, in writing, someone
            # who may not read English. On the same message; a tap brings the help back.
            payload = self._texts.language_picker(panel, updated, actor.locale)
        else:
            payload = self._texts.answer(panel, updated, actor.locale)
        await self._show(conn, actor, payload, message_id, now)

    async def _choose_language(
        self,
        conn: aiosqlite.Connection,
        actor: Actor,
        panel: Panel,
        invitation: Invitation,
        language: str,
        message_id: int | None,
        now: int,
    ) -> None:
        """The interpreter's language, tapped: noted, and the help shown again with it.
        Skip ("none") shows the help again, Interpreter still ticked, no language noted."""
        if language != "none" and language not in INTERPRETER_LANGUAGES:
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            return
        if _started(panel, now):
            await self._tell(conn, actor, "panel_closed", now)
            return
        panels = Panels(conn)
        if invitation.answer not in ("yes", "maybe", "waiting"):
            await self._tell(conn, actor, "needs_not_now", now)  # not coming
            return
        # An old picker tapped after Interpreter was unticked elsewhere: nothing noted,
        # the help shown again as it is.
        if language != "none":
            await panels.set_interpreter_language(invitation.token, language)
        updated = await panels.invitation(invitation.token)
        assert updated is not None
        await self._show(
            conn, actor, self._texts.answer(panel, updated, actor.locale), message_id, now
        )

    async def _show(
        self,
        conn: aiosqlite.Connection,
        actor: Actor,
        payload: Payload,
        message_id: int | None,
        now: int,
    ) -> None:
        """On the tapped message, edited in place (a new message if it is not known)."""
        if message_id is None:
            await Outbox(conn).enqueue(actor.chat_id, PRIORITY_REPLY, "message", payload, now)
        else:
            payload["message_id"] = message_id
            await Outbox(conn).enqueue(actor.chat_id, PRIORITY_REPLY, "edit", payload, now)

    async def _begin_reply(self, update_id: int, sender: Sender, token: str) -> None:
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._db.read() as conn:
            invitation = await Panels(conn).invitation(token)
            panel = await Panels(conn).get(invitation.panel_id) if invitation else None
            person = await People(conn).get(pseudonym)
        if invitation is None or panel is None or invitation.pseudonym != pseudonym:
            await self._refuse(update_id, sender, pseudonym)
            return
        locale = person.locale if person else "en"
        values = {
            "invitation": token,
            "title": self._texts.title_of(panel, locale),
            "to": "organiser",
            "opened_at": str(self._clock.now_ms()),
        }
        await self._conversations.handle_event(update_id, sender, Begin("panel_reply", values))


async def _wants_invitations(conn: aiosqlite.Connection, pseudonym: str) -> bool:
    return (await ConsentLedger(conn).current(pseudonym)).get("panel_invitations", False)


def _started(panel: Panel, now: int) -> bool:
    """No longer taking answers or help asked for: called off, over, or begun."""
    return panel.status != "open" or panel.starts_at <= now
