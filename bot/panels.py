"""Panels: staff create them in Telegram and invite a region; people answer, wait, cancel.

Every change and the messages it causes are one transaction: an answer, the waiting-list
promotion it triggers and both people's messages are stored together or not at all. Staff
actions are allowed only to staff of the panel's region (or admins), checked again at the
moment of the change however the request arrived (forged button data included), and each
is written to the audit log without message bodies.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from bot.access import access_of
from bot.broadcasts import BroadcastService
from bot.conversation import Actor, ConversationService, Sender
from bot.panel_texts import SUPPORT_NEEDS, PanelTexts
from state_machines.engine import Engine
from state_machines.events import Begin
from storage.clock import Clock
from storage.database import Database
from storage.panels import ANSWERS, Invitation, Panel, Panels, RsvpOutcome
from storage.people import People, reachable_with_consent
from storage.queues import PRIORITY_REPLY, Inbox, Job, Outbox, Schedules
from storage.staff import AuditLog

log = logging.getLogger(__name__)

REMINDER_JOB = "panel_reminder"
OVER_JOB = "panel_over"
_HOUR_MS = 3_600_000
REMINDER_BEFORE_MS = 24 * _HOUR_MS
# A panel's support needs are kept until it is surely over: its start plus this long.
OVER_AFTER_MS = 12 * _HOUR_MS
# People told when a panel moves or is called off, and who get the organiser's messages.
_COMING = ("yes", "maybe", "waiting")
_LISTED_AT_MOST = 20
_CHOICES = {"y": "yes", "m": "maybe", "n": "no", "c": "cancel"}


class PanelService:
    """Panel creation and changes (staff), answers and relayed messages (everyone)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        engine: Engine,
        texts: PanelTexts,
        conversations: ConversationService,
        broadcasts: BroadcastService,
        on_queued: Callable[[], None],
    ) -> None:
        self._db = db
        self._clock = clock
        self._engine = engine
        self._texts = texts
        self._conversations = conversations
        self._broadcasts = broadcasts
        self._on_queued = on_queued
        for action, handler in {
            "create_panel": self.create_panel,
            "move_panel": self.move_panel,
            "cancel_panel": self.cancel_panel,
            "message_attendees": self.message_attendees,
            "relay_reply": self.relay_reply,
        }.items():
            conversations.register_submit(action, handler)
        conversations.set_value_formatter(texts.form_values)
        conversations.on_withdrawal(self.on_withdrawn)

    # --- submits from the staff dialogues (inside the update's transaction) -------------
    async def create_panel(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Save the panel, invite everyone in the region who said yes to panel invitations
        (as one broadcast, with a progress message for the organiser), and schedule the
        reminder and the erasure of support needs."""
        region, starts_at = values["region"], int(values["starts_at"])
        if not (await access_of(conn, actor.pseudonym)).is_staff_in(region):
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            return
        if starts_at <= now:
            await self._tell(conn, actor, "panel_time_passed", now)
            return
        panels = Panels(conn)
        support = tuple(n for n in SUPPORT_NEEDS if n in values.get("support", "").split(","))
        panel_id = await panels.create(
            region,
            values["title"],
            starts_at,
            values["place"],
            int(values["capacity"]),
            support,
            actor.pseudonym,
            now,
        )
        panel = await panels.get(panel_id)
        assert panel is not None
        messages: list[tuple[int, dict[str, Any]]] = []
        for recipient in await reachable_with_consent(conn, region, "panel_invitations"):
            token = await panels.invite(panel_id, recipient.pseudonym, now)
            if token is not None and recipient.pseudonym != actor.pseudonym:
                messages.append(
                    (recipient.chat_id, self._texts.invitation(panel, token, recipient.locale))
                )
        await self._audit(conn, actor, "panel.created", panel, now, invited=str(len(messages)))
        await self._tell(
            conn, actor, "panel_created", now, count=self._texts.number(len(messages), actor.locale)
        )
        await self._broadcasts.queue_in(
            conn,
            "panel_invitation",
            f"panel:{panel_id}",
            region,
            actor.pseudonym,
            messages,
            (actor.chat_id, actor.locale),
            now,
        )
        await self._schedule(conn, panel, now)

    async def move_panel(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Change the date; tell everyone coming, waiting or unsure, in their language."""
        panel = await self._panel_for_staff(conn, actor, values, now)
        if panel is None:
            return
        starts_at = int(values["starts_at"])
        if starts_at <= now:
            await self._tell(conn, actor, "panel_time_passed", now)
            return
        panels = Panels(conn)
        await panels.reschedule(panel.id, starts_at, now)
        moved = await panels.get(panel.id)
        assert moved is not None
        coming = await panels.attendees(panel.id, _COMING)
        messages = [(a.chat_id, self._texts.moved(moved, a.token, a.locale)) for a in coming]
        await self._notify(conn, actor, "panel_moved", moved, messages, now)
        await self._audit(conn, actor, "panel.moved", moved, now, told=str(len(messages)))
        await self._tell(
            conn,
            actor,
            "panel_moved_done",
            now,
            count=self._texts.number(len(messages), actor.locale),
        )
        await self._schedule(conn, moved, now)  # the old jobs see the old time and do nothing

    async def cancel_panel(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Call the panel off; tell everyone coming, waiting or unsure; forget their needs."""
        panel = await self._panel_for_staff(conn, actor, values, now)
        if panel is None:
            return
        panels = Panels(conn)
        coming = await panels.attendees(panel.id, _COMING)
        await panels.cancel(panel.id, now)
        messages = [(a.chat_id, self._texts.called_off(panel, a.locale)) for a in coming]
        await self._notify(conn, actor, "panel_cancelled", panel, messages, now)
        await self._audit(conn, actor, "panel.cancelled", panel, now, told=str(len(messages)))
        await self._tell(
            conn,
            actor,
            "panel_cancelled_done",
            now,
            count=self._texts.number(len(messages), actor.locale),
        )

    async def message_attendees(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Pass the organiser's words to everyone coming or unsure, with a Reply button.
        The words are not kept: only the outbox holds them until they are sent."""
        panel = await self._panel_for_staff(conn, actor, values, now)
        if panel is None:
            return
        coming = await Panels(conn).attendees(panel.id, ("yes", "maybe"))
        text = values.get("message", "")
        messages = [
            (a.chat_id, self._texts.relayed(panel, a.token, text, a.locale)) for a in coming
        ]
        await self._notify(conn, actor, "panel_message", panel, messages, now)
        await self._audit(
            conn, actor, "panel.message_sent", panel, now, recipients=str(len(messages))
        )
        await self._tell(
            conn,
            actor,
            "message_sent_done",
            now,
            count=self._texts.number(len(messages), actor.locale),
        )

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
            target = None if attendee is None else (attendee.chat_id, attendee.locale)
            payload = (
                None
                if attendee is None
                else self._texts.relayed(panel, invitation.token, message, attendee.locale)
            )
            await self._audit(conn, actor, "panel.answer_sent", panel, now)
        else:
            if invitation.pseudonym != actor.pseudonym:
                await self._tell(conn, actor, self._engine.message("not_available"), now, True)
                return
            organiser = await People(conn).get(panel.organiser)
            target = (
                (organiser.chat_id, organiser.locale)
                if organiser is not None and organiser.reachable
                else None
            )
            payload = (
                None
                if target is None
                else self._texts.reply_to_organiser(panel, invitation, message, target[1])
            )
        if target is None or payload is None:
            await self._tell(conn, actor, "message_not_passed_on", now)
            return
        await Outbox(conn).enqueue(target[0], PRIORITY_REPLY, "message", payload, now)
        await self._tell(conn, actor, "message_passed_on", now)

    # --- button taps and /panels ----------------------------------------------------
    async def on_answer(
        self, update_id: int, sender: Sender, token: str, action: str, message_id: int | None
    ) -> None:
        """A person tapped a button on an invitation or an answer: Yes, Maybe, No, Cancel
        my place, a support need, Done, or Reply."""
        if action == "r":
            await self._begin_reply(update_id, sender, token)
            return
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._handling(update_id) as handling:
            if handling is None:
                return
            conn, now = handling
            locale = await self._locale(conn, pseudonym)
            actor = Actor(pseudonym, sender.chat_id, locale)
            panels = Panels(conn)
            invitation = await panels.invitation(token)
            panel = await panels.get(invitation.panel_id) if invitation else None
            if invitation is None or panel is None or invitation.pseudonym != pseudonym:
                await self._tell(conn, actor, self._engine.message("not_available"), now, True)
                return
            if action in _CHOICES:
                outcome = await panels.respond(token, _CHOICES[action], now)
                await self._answered(conn, actor, panel, outcome, now)
            elif action.startswith("s:"):
                await self._toggle_need(conn, actor, panel, invitation, action[2:], message_id, now)
            elif action == "d":
                key = "support_saved" if invitation.support_needs else "support_none_saved"
                needs = self._texts.needs(invitation.support_needs, locale)
                await self._tell(conn, actor, key, now, needs=needs)

    async def on_manage(self, update_id: int, sender: Sender, panel_id: int, action: str) -> None:
        """A staff member tapped a button under a panel in /panels."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._db.read() as conn:
            panel = await Panels(conn).get(panel_id)
            access = await access_of(conn, pseudonym)
        allowed = panel is not None and panel.status == "open" and access.is_staff_in(panel.region)
        if not allowed or panel is None:
            await self._refuse(update_id, sender, pseudonym)
            return
        dialogue = {"m": "panel_message", "r": "panel_move", "x": "panel_cancel"}.get(action)
        if dialogue is not None:
            values = {
                "panel": str(panel.id),
                "title": panel.title,
                "starts_at": str(panel.starts_at),
            }
            await self._conversations.handle_event(update_id, sender, Begin(dialogue, values))
            return
        async with self._handling(update_id) as handling:
            if handling is None:
                return
            conn, now = handling
            locale = await self._locale(conn, pseudonym)
            actor = Actor(pseudonym, sender.chat_id, locale)
            tickets = await Panels(conn).tickets(panel.id)
            await self._audit(conn, actor, "panel.tickets_viewed", panel, now)
            if tickets:
                await self._tell(
                    conn,
                    actor,
                    "tickets_list",
                    now,
                    title=panel.title,
                    count=self._texts.number(len(tickets), locale),
                    tickets="\n".join(tickets),
                )
            else:
                await self._tell(conn, actor, "no_tickets", now, title=panel.title)

    async def on_answer_person(self, update_id: int, sender: Sender, token: str) -> None:
        """The organiser tapped Answer under a relayed reply: write back to that person."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._db.read() as conn:
            invitation = await Panels(conn).invitation(token)
            panel = await Panels(conn).get(invitation.panel_id) if invitation else None
            access = await access_of(conn, pseudonym)
        if invitation is None or panel is None or not access.is_staff_in(panel.region):
            await self._refuse(update_id, sender, pseudonym)
            return
        values = {"invitation": token, "title": panel.title, "to": "person"}
        await self._conversations.handle_event(update_id, sender, Begin("panel_reply", values))

    async def on_list(self, update_id: int, sender: Sender) -> None:
        """/panels: the upcoming panels of the staff member's regions, with answers so far
        and the help people asked for, each with buttons to change it."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._handling(update_id) as handling:
            if handling is None:
                return
            conn, now = handling
            locale = await self._locale(conn, pseudonym)
            actor = Actor(pseudonym, sender.chat_id, locale)
            access = await access_of(conn, pseudonym)
            regions = access.staff_regions()
            if not regions:
                await self._tell(conn, actor, self._engine.message("not_available"), now, True)
                return
            summaries = await Panels(conn).upcoming(None if access.is_admin else regions, now)
            await AuditLog(conn).record(
                pseudonym, "panel.listed", "panels", {"shown": str(len(summaries))}, now
            )
            if not summaries:
                await self._tell(conn, actor, "no_panels", now)
            for summary in summaries[:_LISTED_AT_MOST]:
                await Outbox(conn).enqueue(
                    sender.chat_id,
                    PRIORITY_REPLY,
                    "message",
                    self._texts.summary(summary, locale),
                    now,
                )

    # --- scheduled jobs ----------------------------------------------------------------
    async def on_reminder(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """24 hours before: remind those with a place (with their ticket) and those who said
        maybe. Not sent if the panel moved (a new reminder exists) or was called off."""
        panels = Panels(conn)
        panel = await panels.get(int(job.payload["panel_id"]))
        if panel is None or panel.status != "open" or panel.starts_at != job.payload["starts_at"]:
            return
        messages = []
        for attendee in await panels.attendees(panel.id, ("yes", "maybe")):
            invitation = await panels.invitation(attendee.token)
            if invitation is not None:
                messages.append(
                    (attendee.chat_id, self._texts.reminder(panel, invitation, attendee.locale))
                )
        await self._broadcasts.queue_in(
            conn, "panel_reminder", f"panel:{panel.id}", panel.region, "system", messages, None, now
        )

    async def on_over(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """The panel is over: erase every support need (kept only to arrange the day)."""
        panel = await Panels(conn).get(int(job.payload["panel_id"]))
        if panel is None or panel.starts_at != job.payload["starts_at"]:
            return
        erased = await Panels(conn).mark_over(panel.id, now)
        await AuditLog(conn).record(
            "system", "panel.needs_erased", f"panel:{panel.id}", {"invitations": str(erased)}, now
        )

    # --- helpers -------------------------------------------------------------------------
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
        await self._tell_promoted(conn, panel, outcome, now)

    async def _tell_promoted(
        self, conn: aiosqlite.Connection, panel: Panel, outcome: RsvpOutcome, now: int
    ) -> None:
        """Whoever got the place that was given back hears so, with their ticket."""
        promoted = outcome.promoted
        if promoted is None:
            return
        person = await People(conn).get(promoted.pseudonym)
        if person is not None and person.reachable:
            freed = self._texts.place_freed(panel, promoted, person.locale)
            await Outbox(conn).enqueue(person.chat_id, PRIORITY_REPLY, "message", freed, now)

    async def on_withdrawn(
        self, conn: aiosqlite.Connection, pseudonym: str, purposes: frozenset[str], now: int
    ) -> None:
        """Someone said no more panel invitations (or /stop): give back their places and
        waiting-list spots, so the next person gets them, and forget their support needs."""
        if "panel_invitations" not in purposes:
            return
        panels = Panels(conn)
        for invitation in await panels.active_invitations(pseudonym, now):
            outcome = await panels.respond(invitation.token, "cancel", now)
            panel = await panels.get(invitation.panel_id)
            if panel is not None:
                await self._tell_promoted(conn, panel, outcome, now)

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
        """Tick or untick a support need, and show it ticked on the same message."""
        if need not in panel.support_offered:
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            return
        needs = set(invitation.support_needs) ^ {need}
        panels = Panels(conn)
        if not await panels.set_support_needs(invitation.token, sorted(needs)):
            await self._tell(conn, actor, "panel_closed", now)
            return
        updated = await panels.invitation(invitation.token)
        assert updated is not None
        payload = self._texts.answer(panel, updated, actor.locale)
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
        if invitation is None or panel is None or invitation.pseudonym != pseudonym:
            await self._refuse(update_id, sender, pseudonym)
            return
        values = {"invitation": token, "title": panel.title, "to": "organiser"}
        await self._conversations.handle_event(update_id, sender, Begin("panel_reply", values))

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

    async def _panel_for_staff(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> Panel | None:
        """The open panel a staff dialogue is about, if this person may change it."""
        panel_id = values.get("panel", "")
        panel = await Panels(conn).get(int(panel_id)) if panel_id.isdigit() else None
        access = await access_of(conn, actor.pseudonym)
        if panel is None or not access.is_staff_in(panel.region):
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            return None
        if panel.status != "open" or panel.starts_at <= now:
            await self._tell(conn, actor, "panel_closed", now)
            return None
        return panel

    async def _notify(
        self,
        conn: aiosqlite.Connection,
        actor: Actor,
        kind: str,
        panel: Panel,
        messages: list[tuple[int, dict[str, Any]]],
        now: int,
    ) -> None:
        if messages:
            await self._broadcasts.queue_in(
                conn, kind, f"panel:{panel.id}", panel.region, actor.pseudonym, messages, None, now
            )

    async def _schedule(self, conn: aiosqlite.Connection, panel: Panel, now: int) -> None:
        """The reminder 24 hours before (unless that has passed) and the erasure of support
        needs after the panel, keyed by the start time so a move adds new ones."""
        schedules = Schedules(conn)
        payload = {"panel_id": panel.id, "starts_at": panel.starts_at}
        remind_at = panel.starts_at - REMINDER_BEFORE_MS
        if remind_at > now:
            key = f"{REMINDER_JOB}:{panel.id}:{panel.starts_at}"
            await schedules.add(REMINDER_JOB, key, remind_at, payload, now)
        over_at = panel.starts_at + OVER_AFTER_MS
        await schedules.add(
            OVER_JOB, f"{OVER_JOB}:{panel.id}:{panel.starts_at}", over_at, payload, now
        )

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
