"""Staff's side of panels: create one in Telegram and invite a region, list what is
coming up, move or cancel a panel, write to the people coming; and the scheduled reminder
and erasure of support needs. (People's answers are in bot.rsvp.)

Every change and the messages it causes are one transaction. Staff actions are allowed
only to staff of the panel's region (or admins), checked again at the moment of the change
however the request arrived (forged button data included), and each is written to the
audit log without message bodies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiosqlite

from bot.access import access_of
from bot.broadcasts import BroadcastService
from bot.conversation import Actor, ConversationService, Sender
from bot.desk import Desk
from bot.panel_texts import (
    CHANGED_BOTH,
    CHANGED_PLACE,
    CHANGED_TIME,
    SUPPORT_NEEDS,
    PanelTexts,
)
from state_machines.engine import Engine
from state_machines.events import Begin
from storage.clock import Clock
from storage.database import Database
from storage.panels import Panel, Panels, SentInvitation
from storage.people import (
    People,
    Recipient,
    count_reachable_with_consent,
    reachable_with_consent,
)
from storage.queues import PRIORITY_REPLY, STALE_AT, Job, Outbox, Schedules
from storage.staff import AuditLog

log = logging.getLogger(__name__)

REMINDER_JOB = "panel_reminder"
OVER_JOB = "panel_over"
INVITE_JOB = "panel_invite"  # the next part of a panel's invitations
REWORD_JOB = "panel_reword"  # the next part of a moved panel's invitations still queued
CORRECT_JOB = "panel_correct"  # the next part of a changed panel's invitations already sent
INVITE_BATCH = 200  # people invited per transaction (see `_invite_more_later`)
_HOUR_MS = 3_600_000
REMINDER_BEFORE_MS = 24 * _HOUR_MS
# A panel's support needs are kept until it is surely over: its start plus this long.
OVER_AFTER_MS = 12 * _HOUR_MS
# A Reply (or an organiser's Answer) tapped and left open: what is typed after this is not
# passed on. A prompt left from days before sent everyday chatter ("I hate my PO"), word for
# word, to staff of the person's area.
REPLY_OPEN_FOR_MS = 60 * 60_000
# People told when a panel moves or is called off, and who get the organiser's messages.
_COMING = ("yes", "maybe", "waiting")
# Corrections of the invitations already sent begin this long after a move or a call-off:
# by then the sends on their way at the change (a few seconds at most) are recorded too,
# with the message each went out as, and are corrected with the rest.
CORRECT_AFTER_MS = 60_000
# The broadcasts that announce a panel, stopped when it is called off (its own corrections
# follow and correct every invitation).
_ANNOUNCING = ("panel_invitation", "panel_reminder", "panel_correction")
_LISTED_AT_MOST = 20
# A new date or place: (the broadcast telling those coming, the audit action, the staff
# member's "done").
_CHANGE_NOTICES = {
    CHANGED_TIME: ("panel_moved", "panel.moved", "panel_moved_done"),
    CHANGED_PLACE: ("panel_place_changed", "panel.place_changed", "panel_place_changed_done"),
}


class PanelService(Desk[PanelTexts]):
    """Panel creation and changes, for staff of the panel's region."""

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
        super().__init__(db, clock, engine, texts, conversations, on_queued)
        self._broadcasts = broadcasts
        for action, handler in {
            "create_panel": self.create_panel,
            "move_panel": self.move_panel,
            "cancel_panel": self.cancel_panel,
            "message_attendees": self.message_attendees,
            "set_panel_places": self.set_places,
            "change_panel_place": self.change_place,
        }.items():
            conversations.register_submit(action, handler, bulk=True)
        conversations.add_value_formatter(texts.form_values)
        conversations.add_context_provider("panel_reach", self.preview_reach)

    async def preview_reach(
        self, conn: aiosqlite.Connection, pseudonym: str, locale: str, values: Mapping[str, str]
    ) -> str:
        """How many the invite in the /panel_new form would go to if sent now (as told
        once it is sent: everyone in the area who said yes to panels, but the organiser)."""
        count = await count_reachable_with_consent(
            conn, values.get("region", ""), "panel_invitations", leaving_out=pseudonym
        )
        return self._texts.number(count, locale)

    # --- submits from the staff dialogues (inside the update's transaction) -------------
    async def create_panel(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Save the panel, invite everyone in the region who said yes to panel invitations
        (as one broadcast, with a progress message for the organiser), and schedule the
        reminder and the erasure of support needs."""
        form = _panel_form(values)
        if form is None:  # e.g. a session from an older version of the dialogue
            await self._tell(conn, actor, "panel_start_again", now)
            return
        region, starts_at, capacity = form
        if not (await access_of(conn, actor.pseudonym)).is_staff_in(region):
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            return
        if starts_at <= now:
            await self._tell(conn, actor, "panel_time_passed", now)
            return
        if region == "wales" and not values.get("title_cy", "").strip():
            await self._tell(conn, actor, "panel_needs_welsh", now)
            return
        panels = Panels(conn)
        support = tuple(n for n in SUPPORT_NEEDS if n in values.get("support", "").split(","))
        panel_id = await panels.create(
            region,
            values["title"],
            starts_at,
            values["place"],
            capacity,
            support,
            actor.pseudonym,
            now,
            title_cy=values.get("title_cy", "").strip() or None,
            place_cy=values.get("place_cy", "").strip() or None,
        )
        panel = await panels.get(panel_id)
        assert panel is not None
        # The whole count for the organiser, but only the first part read (all of a
        # region's 20,000 read here held the lock for 0.45 s).
        everyone = await count_reachable_with_consent(
            conn, region, "panel_invitations", leaving_out=actor.pseudonym
        )
        recipients = await self._to_invite(conn, panel, INVITE_BATCH)
        await audit_panel(conn, actor, "panel.created", panel, now, invited=str(everyone))
        await self._tell(
            conn,
            actor,
            "panel_created",
            now,
            count=self._texts.number(everyone, actor.locale),
        )
        broadcast_id = await self._broadcasts.queue_in(
            conn,
            "panel_invitation",
            f"panel:{panel_id}",
            region,
            actor.pseudonym,
            await self._invite(conn, panel, recipients, now),
            (actor.chat_id, actor.locale),
            now,
            expected=everyone,
        )
        if everyone > INVITE_BATCH:
            await self._invite_more_later(conn, panel, broadcast_id, 1, now)
        await self._schedule(conn, panel, now)

    async def on_invite_more(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """The next part of a panel's invitations (see INVITE_BATCH), while the panel is
        open and has not started; added to the panel's broadcast."""
        panel = await Panels(conn).get(int(job.payload["panel_id"]))
        if panel is None or panel.status != "open" or panel.starts_at <= now:
            return
        if await self._broadcasts.was_stopped(conn, int(job.payload["broadcast"])):
            return  # the organiser said "Stop sending": nobody else is invited
        recipients = await self._to_invite(conn, panel, INVITE_BATCH + 1)  # + 1: any more?
        messages = await self._invite(conn, panel, recipients[:INVITE_BATCH], now)
        broadcast_id = await self._broadcasts.queue_more(
            conn,
            int(job.payload["broadcast"]),
            "panel_invitation",
            f"panel:{panel.id}",
            panel.region,
            panel.organiser,
            messages,
            now,
        )
        if len(recipients) > INVITE_BATCH:
            await self._invite_more_later(
                conn, panel, broadcast_id, int(job.payload["part"]) + 1, now
            )

    async def _to_invite(
        self, conn: aiosqlite.Connection, panel: Panel, limit: int = -1
    ) -> list[Recipient]:
        """Everyone in the panel's region who said yes to panel invitations and has not been
        invited to it yet (at most `limit`, -1: all); never its organiser.

        Places go first come, first served, and a region's invitations take minutes to go
        out: each panel walks the region from its own starting point, round to where it
        began, so that nobody is among the first invited to every panel (pseudonyms are a
        fixed order). The point is random, kept with the panel (migration 0023), so its
        parts and a restart between them walk from the same place."""
        found = await reachable_with_consent(
            conn,
            panel.region,
            "panel_invitations",
            panel.id,
            limit + 1 if limit >= 0 else -1,
            start=panel.invite_start,
        )
        invite = [r for r in found if r.pseudonym != panel.organiser]
        return invite if limit < 0 else invite[:limit]

    async def _invite(
        self, conn: aiosqlite.Connection, panel: Panel, recipients: list[Recipient], now: int
    ) -> list[tuple[int, dict[str, Any]]]:
        tokens = await Panels(conn).invite_all(panel.id, [r.pseudonym for r in recipients], now)
        texts: dict[str, str] = {}
        messages: list[tuple[int, dict[str, Any]]] = []
        for recipient, token in zip(recipients, tokens, strict=True):
            if token is None:  # invited already (a part run twice)
                continue
            locale = recipient.locale
            if locale not in texts:
                texts[locale] = self._texts.invitation_text(panel, locale)
            messages.append(
                (recipient.chat_id, self._texts.invitation_with(texts[locale], token, locale))
            )
        return messages

    async def _invite_more_later(
        self, conn: aiosqlite.Connection, panel: Panel, broadcast_id: int, part: int, now: int
    ) -> None:
        """A region is up to ~20,000 people: invited all in the organiser's transaction,
        everyone's updates would wait seconds for the database lock. The rest go in parts,
        each its own job and transaction, a moment later."""
        payload = {"panel_id": panel.id, "broadcast": broadcast_id, "part": part}
        key = f"{INVITE_JOB}:{panel.id}:{part}"
        await self._broadcasts.next_part_later(conn, broadcast_id, INVITE_JOB, key, payload, now)

    async def move_panel(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Change the date; tell everyone coming, waiting or unsure, in their language.
        Invitations still queued (a region's take minutes to go out) are written again
        with the new date, those already sent are edited to show it, and a reminder still
        going out with the old one stops (the new date has its own)."""
        panel = await self._panel_for_staff(conn, actor, values, now)
        if panel is None:
            return
        starts_at = int(values["starts_at"]) if values.get("starts_at", "").isdigit() else 0
        if starts_at <= now:
            await self._tell(conn, actor, "panel_time_passed", now)
            return
        if starts_at == panel.starts_at:
            # Nobody is told their panel moved to when it already is.
            await self._tell(conn, actor, "panel_move_same", now, title=panel.title)
            return
        panels = Panels(conn)
        await panels.reschedule(panel.id, starts_at, now)
        moved = await panels.get(panel.id)
        assert moved is not None
        await self._reword_queued_invitations(conn, moved, 0, now, now)
        # A reminder of the old date, or an earlier move's corrections, still going out
        # stop; this move's corrections correct every invitation.
        await self._broadcasts.stop_about(
            conn, f"panel:{panel.id}", ("panel_reminder", "panel_correction"), actor.pseudonym, now
        )
        await self._correct_later(conn, moved, 0, now, now + CORRECT_AFTER_MS, now)
        await self._tell_coming(conn, actor, moved, CHANGED_TIME, now)
        await self._schedule(conn, moved, now)  # the old jobs see the old time and do nothing

    async def change_place(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Change where the panel is; tell everyone coming, waiting or unsure, in their
        language, as a move does: invitations still queued are written again with the new
        place, those already sent are edited to show it, and so are reminders still going
        out (no later reminder replaces them, as after a move)."""
        panel = await self._panel_for_staff(conn, actor, values, now)
        if panel is None:
            return
        place = values.get("place", "").strip()
        if not place:  # e.g. a session from an older version of the dialogue
            await self._tell(conn, actor, "panel_start_again", now)
            return
        place_cy = values.get("place_cy", "").strip() or None
        if (place, place_cy) == (panel.place, panel.place_cy):
            # Nobody is told their panel moved to where it already is.
            await self._tell(conn, actor, "panel_place_same", now, title=panel.title)
            return
        panels = Panels(conn)
        await panels.set_place(panel.id, place, place_cy, now)
        changed = await panels.get(panel.id)
        assert changed is not None
        await self._reword_queued_invitations(conn, changed, 0, now, now)
        # Reminders still going out say the new place (no later reminder would replace
        # them, as a move's does); an earlier change's corrections stop (these follow).
        await self._reword_queued_reminders(conn, changed, now)
        await self._broadcasts.stop_about(
            conn, f"panel:{panel.id}", ("panel_correction",), actor.pseudonym, now
        )
        await self._correct_later(conn, changed, 0, now, now + CORRECT_AFTER_MS, now)
        await self._tell_coming(conn, actor, changed, CHANGED_PLACE, now)

    async def _tell_coming(
        self, conn: aiosqlite.Connection, actor: Actor, panel: Panel, changed: str, now: int
    ) -> None:
        """Tell everyone coming, waiting or unsure of the panel's new date or place
        (`changed`), in their language; audit it; tell the staff member how many."""
        kind, action, done = _CHANGE_NOTICES[changed]
        texts = self._texts.moved if changed == CHANGED_TIME else self._texts.place_changed
        coming = await Panels(conn).attendees(panel.id, _COMING)
        messages = [(a.chat_id, texts(panel, a.token, a.answer, a.locale)) for a in coming]
        await self._notify(conn, actor, kind, panel, messages, now)
        await audit_panel(conn, actor, action, panel, now, told=str(len(messages)))
        count = self._texts.number(len(messages), actor.locale)
        await self._tell(conn, actor, done, now, count=count)

    async def on_reword(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """The next part of a moved panel's invitations still queued (see
        `_reword_queued_invitations`), unless it was called off or moved again since (that
        move began again from the first)."""
        panel = await Panels(conn).get(int(job.payload["panel_id"]))
        if panel is None or panel.status != "open":
            return
        after, moved_at = int(job.payload["after"]), int(job.payload["moved_at"])
        if panel.starts_at != int(job.payload["starts_at"]) or _changed_since(panel, moved_at):
            return
        await self._reword_queued_invitations(conn, panel, after, moved_at, now)

    async def _reword_queued_invitations(
        self, conn: aiosqlite.Connection, panel: Panel, after: int, moved_at: int, now: int
    ) -> None:
        """Write the panel's invitations still queued again with its date as it is now, in
        the order they go out: INVITE_BATCH of them here, the rest in parts that follow (a
        region's 20,000 in one transaction would hold everyone's updates up). The sender
        sends a few a second, so the first part is done before it reaches them. Only those
        queued by the move (`moved_at`): parts of the invitations after it have the new
        date. Each move's parts are keyed by its time, so moving back and forth cannot meet
        an earlier move's finished part and stop."""
        queued = await Panels(conn).queued_invitations(panel.id, after, moved_at, INVITE_BATCH + 1)
        texts: dict[str, str] = {}
        payloads: list[tuple[int, dict[str, Any]]] = []
        for outbox_id, token, locale in queued[:INVITE_BATCH]:
            if locale not in texts:
                texts[locale] = self._texts.invitation_text(panel, locale)
            payloads.append((outbox_id, self._texts.invitation_with(texts[locale], token, locale)))
        rewritten = await Outbox(conn).rewrite_pending(payloads)
        if payloads:
            log.info(
                "panel %d moved: %d queued invitations given its new date", panel.id, rewritten
            )
        if len(queued) > INVITE_BATCH:
            last = payloads[-1][0]
            payload = {
                "panel_id": panel.id,
                "starts_at": panel.starts_at,
                "moved_at": moved_at,
                "after": last,
            }
            key = f"{REWORD_JOB}:{panel.id}:{moved_at}:{last}"
            await Schedules(conn).add(REWORD_JOB, key, now, payload, now)
            self._on_queued()  # wake the scheduler (as BroadcastService.next_part_later)

    async def _reword_queued_reminders(
        self, conn: aiosqlite.Connection, panel: Panel, now: int
    ) -> None:
        """Write the panel's reminders still queued again as the panel is now. There are
        only as many as places and maybes, so all at once."""
        panels, outbox = Panels(conn), Outbox(conn)
        queued = await panels.queued_invitations(panel.id, 0, now, -1, kind="panel_reminder")
        payloads: list[tuple[int, dict[str, Any]]] = []
        for outbox_id, token, locale in queued:
            invitation = await panels.invitation(token)
            if invitation is not None and invitation.answer in ("yes", "maybe"):
                reminder = self._texts.reminder(panel, invitation, locale)
                payloads.append((outbox_id, {**reminder, STALE_AT: panel.starts_at}))
            else:  # said no or gave the place back since: not reminded at all
                await outbox.cancel_one(outbox_id, "no longer coming")
        if payloads:
            await outbox.rewrite_pending(payloads)

    async def on_correct(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """The next part of a changed panel's invitations already sent (see
        `_correct_sent_invitations`), unless the panel changed again since (that change
        corrects every invitation from the first) or, moved, has begun."""
        panel = await Panels(conn).get(int(job.payload["panel_id"]))
        if panel is None or panel.status != job.payload["status"]:
            return
        after, changed_at = int(job.payload["after"]), int(job.payload["changed_at"])
        if panel.status == "open" and (
            panel.starts_at != int(job.payload["starts_at"])
            or panel.starts_at <= now
            or _changed_since(panel, changed_at)
        ):
            return
        await self._correct_sent_invitations(conn, panel, after, changed_at, now)

    async def _correct_later(
        self,
        conn: aiosqlite.Connection,
        panel: Panel,
        after: int,
        changed_at: int,
        due: int,
        now: int,
    ) -> None:
        """A part of `_correct_sent_invitations`, as a job due at `due`; keyed by the
        change (its kind and time) and the part, so a change and the next never meet."""
        payload = {
            "panel_id": panel.id,
            "status": panel.status,
            "starts_at": panel.starts_at,
            "changed_at": changed_at,
            "after": after,
        }
        key = f"{CORRECT_JOB}:{panel.id}:{panel.status}:{changed_at}:{after}"
        await Schedules(conn).add(CORRECT_JOB, key, due, payload, now)
        self._on_queued()  # wake the scheduler (as `_reword_queued_invitations`)

    async def _correct_sent_invitations(
        self, conn: aiosqlite.Connection, panel: Panel, after: int, changed_at: int, now: int
    ) -> None:
        """Edit the invitations already sent to show the panel as it is now: its new date
        or place (still answerable, saying what changed since each was sent) or that it
        is called off (no buttons). An invitation can
        sit unread for days, and whoever reads the old date decides on it; an edit tells
        nobody twice, and wakes nobody. INVITE_BATCH here, as a broadcast (stopped by a
        later change, and for someone who says no to panel invitations), the rest in parts
        that follow. After a move or a new place, only invitations sent before it: those
        sent since show it."""
        sent_before = changed_at if panel.status == "open" else None
        sent = await Panels(conn).sent_invitations(panel.id, after, sent_before, INVITE_BATCH + 1)
        texts: dict[str, str] = {}
        edits: list[tuple[int, dict[str, Any]]] = []
        for invitation in sent[:INVITE_BATCH]:
            locale = invitation.locale
            if panel.status == "open":
                if locale not in texts:
                    texts[locale] = self._texts.invitation_text(panel, locale)
                changed = _what_changed(panel, invitation)
                payload = self._texts.invitation_moved(
                    texts[locale], invitation.token, locale, changed
                )
            else:
                payload = self._texts.called_off(panel, locale)
            payload["message_id"] = invitation.message_id
            edits.append((invitation.chat_id, payload))
        if edits:
            await self._broadcasts.queue_in(
                conn,
                "panel_correction",
                f"panel:{panel.id}",
                panel.region,
                "system",
                edits,
                None,
                now,
                outbox_kind="edit",
            )
        if len(sent) > INVITE_BATCH:
            last = sent[INVITE_BATCH - 1].id
            await self._correct_later(conn, panel, last, changed_at, now, now)

    async def cancel_panel(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Call the panel off; tell everyone coming, waiting or unsure; forget their needs.
        Invitations and reminders still being sent stop: a region's invitations take
        minutes to go out, and nobody should be invited to a panel already called off.
        Those already sent are edited to say it is off."""
        panel = await self._panel_for_staff(conn, actor, values, now)
        if panel is None:
            return
        panels = Panels(conn)
        coming = await panels.attendees(panel.id, _COMING)
        await panels.cancel(panel.id, now)
        not_sent = await self._broadcasts.stop_about(
            conn, f"panel:{panel.id}", _ANNOUNCING, actor.pseudonym, now
        )
        messages = [(a.chat_id, self._texts.called_off(panel, a.locale)) for a in coming]
        await self._notify(conn, actor, "panel_cancelled", panel, messages, now)
        cancelled = await panels.get(panel.id)
        assert cancelled is not None
        await self._correct_later(conn, cancelled, 0, now, now + CORRECT_AFTER_MS, now)
        await audit_panel(
            conn,
            actor,
            "panel.cancelled",
            panel,
            now,
            told=str(len(messages)),
            not_sent=str(not_sent),
        )
        await self._tell(
            conn,
            actor,
            "panel_cancelled_done",
            now,
            count=self._texts.number(len(messages), actor.locale),
        )

    async def set_places(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Change how many places the panel has (the room changed, more chairs). Places
        that come free go to the waiting list in order, each told with their ticket; fewer
        places than are taken is refused (a place given is not taken back)."""
        panel = await self._panel_for_staff(conn, actor, values, now)
        if panel is None:
            return
        wanted = values.get("capacity", "")
        capacity = int(wanted) if wanted.isdigit() else 0
        panels = Panels(conn)
        if capacity < 1 or not await panels.set_capacity(panel.id, capacity, now):
            taken = await panels.places_taken(panel.id)
            await self._tell(
                conn,
                actor,
                "panel_places_too_few",
                now,
                taken=self._texts.number(taken, actor.locale),
            )
            return
        changed = await panels.get(panel.id)
        assert changed is not None
        promoted = await panels.fill_free_places(panel.id, now)
        # Maybe hundreds at once: told at a broadcast's pace, not ahead of everyone's
        # replies, and not once the panel has begun.
        messages = []
        for invitation in promoted:
            person = await People(conn).get(invitation.pseudonym)
            if person is not None and person.reachable:
                freed = self._texts.place_freed(changed, invitation, person.locale)
                messages.append((person.chat_id, {**freed, STALE_AT: changed.starts_at}))
        await self._notify(conn, actor, "panel_place_given", changed, messages, now)
        await audit_panel(
            conn,
            actor,
            "panel.places_changed",
            changed,
            now,
            capacity=str(capacity),
            given_places=str(len(promoted)),
        )
        await self._tell(
            conn,
            actor,
            "panel_places_done",
            now,
            capacity=self._texts.number(capacity, actor.locale),
            count=self._texts.number(len(promoted), actor.locale),
        )

    async def message_attendees(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Pass the organiser's words to everyone coming or unsure, with a Reply button.
        The words are not kept: only the outbox holds them until they are sent. On the
        day too, until the panel is over (it is listed till then)."""
        panel = await self._panel_for_staff(conn, actor, values, now, on_the_day=True)
        if panel is None:
            return
        coming = await Panels(conn).attendees(panel.id, ("yes", "maybe"))
        text = values.get("message", "")
        messages = [
            (a.chat_id, self._texts.relayed(panel, a.token, text, a.locale)) for a in coming
        ]
        await self._notify(conn, actor, "panel_message", panel, messages, now)
        await audit_panel(
            conn, actor, "panel.message_sent", panel, now, recipients=str(len(messages))
        )
        await self._tell(
            conn,
            actor,
            "message_sent_done",
            now,
            count=self._texts.number(len(messages), actor.locale),
        )

    # --- button taps and /panels ----------------------------------------------------
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
        dialogue = {
            "m": "panel_message",
            "r": "panel_move",
            "w": "panel_where",
            "x": "panel_cancel",
            "c": "panel_places",
        }.get(action)
        changes = ("panel_move", "panel_where", "panel_cancel", "panel_places")
        if dialogue in changes and panel.starts_at <= self._clock.now_ms():
            # Under a list from before it began: said now, not after the new date is typed.
            async with self._acting(update_id, sender, pseudonym) as acting:
                if acting is not None:
                    conn, now, actor = acting
                    await self._tell(conn, actor, "panel_started_staff", now)
            return
        if dialogue is not None:
            values = {
                "panel": str(panel.id),
                "title": panel.title,
                "starts_at": str(panel.starts_at),
            }
            if dialogue == "panel_where":
                values |= {"place": panel.place}
            if dialogue == "panel_places":
                async with self._db.read() as conn:
                    taken = await Panels(conn).places_taken(panel.id)
                values |= {"capacity": str(panel.capacity), "taken": str(taken)}
            await self._conversations.handle_event(update_id, sender, Begin(dialogue, values))
            return
        async with self._acting(update_id, sender, pseudonym) as acting:
            if acting is None:
                return
            conn, now, actor = acting
            tickets = await Panels(conn).tickets(panel.id)
            await audit_panel(conn, actor, "panel.tickets_viewed", panel, now)
            # The help asked for (step-free access, an interpreter: it can say a lot about
            # someone's life) goes to whoever arranges the day: the organiser, and the
            # region's managers and admins; other staff see the codes.
            arranges = actor.pseudonym == panel.organiser or access.is_manager_in(panel.region)
            if tickets:
                lines = [
                    self._texts.ticket_line(
                        ticket,
                        needs if arranges else (),
                        panel.support_offered,
                        actor.locale,
                        language if arranges else None,
                    )
                    for ticket, needs, language in tickets
                ]
                await self._tell(
                    conn,
                    actor,
                    "tickets_list",
                    now,
                    title=panel.title,
                    count=self._texts.number(len(tickets), actor.locale),
                    tickets="\n".join(lines),
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
        values = {
            "invitation": token,
            "title": panel.title,
            "to": "person",
            "opened_at": str(self._clock.now_ms()),
        }
        await self._conversations.handle_event(update_id, sender, Begin("panel_reply", values))

    async def on_list(self, update_id: int, sender: Sender) -> None:
        """/panels: the upcoming panels of the staff member's regions, with answers so far
        and the help people asked for, each with buttons to change it."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._acting(update_id, sender, pseudonym) as acting:
            if acting is None:
                return
            conn, now, actor = acting
            access = await access_of(conn, pseudonym)
            regions = access.staff_regions()
            if not regions:
                await self._tell(conn, actor, self._engine.message("not_available"), now, True)
                return
            # Listed until they are over, so the door tickets are there on the day.
            since = now - OVER_AFTER_MS
            summaries = await Panels(conn).upcoming(None if access.is_admin else regions, since)
            await AuditLog(conn).record(
                pseudonym, "panel.listed", "panels", {"shown": str(len(summaries))}, now
            )
            if not summaries:
                await self._tell(conn, actor, "no_panels", now)
            for summary in summaries[:_LISTED_AT_MOST]:
                panel = summary.panel
                started = panel.starts_at <= now
                # As with the tickets: the help asked for goes to who arranges the day.
                arranges = pseudonym == panel.organiser or access.is_manager_in(panel.region)
                await Outbox(conn).enqueue(
                    sender.chat_id,
                    PRIORITY_REPLY,
                    "message",
                    self._texts.summary(summary, actor.locale, started, arranges),
                    now,
                )
            if len(summaries) > _LISTED_AT_MOST:  # the soonest are shown: say what is not
                total = self._texts.number(len(summaries), actor.locale)
                await self._tell(conn, actor, "more_panels", now, total=total)

    # --- scheduled jobs ----------------------------------------------------------------
    async def on_reminder(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """24 hours before: remind those with a place (with their ticket) and those who said
        maybe. Not sent if the panel moved (a new reminder exists) or was called off, nor
        once it has begun (the bot was down when the reminder was due)."""
        panels = Panels(conn)
        panel = await panels.get(int(job.payload["panel_id"]))
        if panel is None or panel.status != "open" or panel.starts_at != job.payload["starts_at"]:
            return
        if panel.starts_at <= now:
            return
        messages = []
        for attendee in await panels.attendees(panel.id, ("yes", "maybe")):
            invitation = await panels.invitation(attendee.token)
            if invitation is not None:
                reminder = self._texts.reminder(panel, invitation, attendee.locale)
                messages.append((attendee.chat_id, {**reminder, STALE_AT: panel.starts_at}))
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
    async def _panel_for_staff(
        self,
        conn: aiosqlite.Connection,
        actor: Actor,
        values: Mapping[str, str],
        now: int,
        on_the_day: bool = False,
    ) -> Panel | None:
        """The open panel a staff dialogue is about, if this person may change it: before
        it starts, or (`on_the_day`: a message to everyone coming, "we are in room B12")
        until it is over."""
        panel_id = values.get("panel", "")
        panel = await Panels(conn).get(int(panel_id)) if panel_id.isdigit() else None
        access = await access_of(conn, actor.pseudonym)
        if panel is None or not access.is_staff_in(panel.region):
            await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            return None
        if panel.status != "open" or panel.starts_at + OVER_AFTER_MS <= now:
            await self._tell(conn, actor, "panel_over_staff", now)
            return None
        if panel.starts_at <= now and not on_the_day:
            await self._tell(conn, actor, "panel_started_staff", now)
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


async def audit_panel(
    conn: aiosqlite.Connection, actor: Actor, action: str, panel: Panel, now: int, **details: str
) -> None:
    """One audit entry for a staff action on a panel (never a message body)."""
    await AuditLog(conn).record(
        actor.pseudonym, action, f"panel:{panel.id}", {"region": panel.region, **details}, now
    )


def _changed_since(panel: Panel, changed_at: int) -> bool:
    """Whether the panel's date or place changed again after the change made at
    `changed_at`: the later change's own parts then correct every invitation."""
    last = panel.last_changed_at
    return last is not None and last > changed_at


def _what_changed(panel: Panel, invitation: SentInvitation) -> str:
    """What changed since the invitation was sent (the corrections of an open panel read
    only invitations sent before the change): its time, its place, or both. A change made
    before migration 0031 recorded neither; those were all moves."""
    sent_at = invitation.sent_at if invitation.sent_at is not None else 0
    moved = panel.moved_at is not None and panel.moved_at > sent_at
    new_place = panel.place_changed_at is not None and panel.place_changed_at > sent_at
    if moved and new_place:
        return CHANGED_BOTH
    return CHANGED_PLACE if new_place else CHANGED_TIME


def _panel_form(values: Mapping[str, str]) -> tuple[str, int, int] | None:
    """(region, start, capacity) of a finished /panel_new form, or None if incomplete."""
    region = values.get("region", "")
    starts_at, capacity = values.get("starts_at", ""), values.get("capacity", "")
    if not (region and values.get("title") and values.get("place")):
        return None
    if not (starts_at.isdigit() and capacity.isdigit()):
        return None
    return region, int(starts_at), int(capacity)
