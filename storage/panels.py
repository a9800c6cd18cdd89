"""Panels, the invitations to them, and the answers people give (RSVP).

A panel has a fixed number of places. Only 'yes' holds one, and with it a door ticket; a
'yes' when the panel is full joins the waiting list, which is served first come, first
served whenever a place is given back. Every method runs inside the caller's transaction
(Database.transaction, BEGIN IMMEDIATE) and never commits: a reply, the promotion it causes
and the messages that announce them are written together or not at all.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import aiosqlite

from storage.database import Row

ANSWERS: tuple[str, ...] = ("invited", "yes", "maybe", "no", "waiting", "cancelled")
CHOICES: tuple[str, ...] = ("yes", "maybe", "no", "cancel")

# Letters and digits that cannot be mistaken for one another when read off a phone at a door
# or over a bad line: no 0/O, 1/I/L, 2/Z, 5/S, 6/G, 8/B, Q.
TICKET_ALPHABET = "ACDEFHJKMNPRTUVWXY3479"
TICKET_LENGTH = 6

# The answers that still count on being there: a cancelled place can be given back from these.
_CANCELLABLE = ("yes", "maybe", "waiting")


class UnknownInvitation(LookupError):
    """No invitation has this token (a stale or made-up button)."""


@dataclass(frozen=True)
class Panel:
    id: int
    region: str
    title: str
    starts_at: int
    place: str
    capacity: int
    support_offered: tuple[str, ...]
    organiser: str
    status: str
    created_at: int
    updated_at: int
    # where its invitations start in the region's pseudonym order (migration 0023; '' for
    # panels made before: the plain order)
    invite_start: str = ""
    # the title and place in Welsh, when given (migration 0027)
    title_cy: str | None = None
    place_cy: str | None = None
    # when its date and its place last changed (migration 0031; None: never, or before it)
    moved_at: int | None = None
    place_changed_at: int | None = None

    @property
    def last_changed_at(self) -> int | None:
        """When its date or place last changed (None: neither, as far as is known)."""
        changes = [at for at in (self.moved_at, self.place_changed_at) if at is not None]
        return max(changes) if changes else None


@dataclass(frozen=True)
class Invitation:
    id: int
    panel_id: int
    pseudonym: str
    token: str
    answer: str
    ticket: str | None
    support_needs: tuple[str, ...]
    answered_at: int | None
    invited_at: int
    # the language an interpreter is needed in, when chosen (migration 0032)
    interpreter_language: str | None = None


@dataclass(frozen=True)
class PanelSummary:
    panel: Panel
    yes: int
    maybe: int
    waiting: int
    no: int
    cancelled: int
    invited: int
    # need id -> how many of the people currently 'yes' or 'maybe' asked for it
    support_requested: Mapping[str, int]


@dataclass(frozen=True)
class RsvpOutcome:
    invitation: Invitation  # as it is after the answer
    previous: str  # the answer before
    promoted: Invitation | None  # who got the place this answer gave back, to be told
    waiting_position: int | None  # 1-based, when the invitation is now 'waiting'
    closed: bool  # the panel takes no answers any more; nothing was changed


@dataclass(frozen=True)
class Attendee:
    pseudonym: str
    chat_id: int
    locale: str
    token: str
    answer: str
    ticket: str | None


@dataclass(frozen=True)
class SentInvitation:
    """An invitation message Telegram holds, which can be edited in place."""

    id: int
    chat_id: int
    message_id: int
    token: str
    locale: str
    sent_at: int | None = None


_PANEL_COLUMNS = (
    "p.id, p.region, p.title, p.starts_at, p.place, p.capacity, p.support_offered, "
    "p.organiser, p.status, p.created_at, p.updated_at, p.invite_start, p.title_cy, "
    "p.place_cy, p.moved_at, p.place_changed_at"
)
_INVITATION_COLUMNS = (
    "id, panel_id, pseudonym, token, answer, ticket, support_needs, answered_at, invited_at, "
    "interpreter_language"
)

# The same place count is used to decide a 'yes' and a promotion, inside the one statement
# that writes it, so the decision can never rest on a number read earlier.
_HAS_FREE_PLACE = (
    "(SELECT COUNT(*) FROM panel_invitations WHERE panel_id = :panel AND answer = 'yes') "
    "< (SELECT capacity FROM panels WHERE id = :panel)"
)


# Only someone who can be told, and still wants panel invitations, is given a freed place
# (someone who blocked the bot would hold it unknowingly while others wait).
_STILL_CONSENTS = (
    "(SELECT granted FROM consent_ledger WHERE id = (SELECT MAX(id) FROM consent_ledger "
    "WHERE pseudonym = i.pseudonym AND purpose = 'panel_invitations')) = 1"
)


def _needs(value: str | None) -> tuple[str, ...]:
    return tuple(json.loads(value)) if value else ()


def _json_list(values: Sequence[str]) -> str:
    return json.dumps(list(values), separators=(",", ":"))


def _strings(values: Collection[str], what: str) -> list[str]:
    # A bare string is a sequence of one-letter strings: "travel" would become t, r, a...
    if isinstance(values, str):
        raise TypeError(f"{what} must be a list of ids, not a string")
    return list(values)


def new_invite_start() -> str:
    """A new panel's random starting point in its region's pseudonym order (32 hex digits,
    as pseudonyms are)."""
    return secrets.token_hex(16)


def _panel(row: Row) -> Panel:
    return Panel(
        row["id"],
        row["region"],
        row["title"],
        row["starts_at"],
        row["place"],
        row["capacity"],
        _needs(row["support_offered"]),
        row["organiser"],
        row["status"],
        row["created_at"],
        row["updated_at"],
        row["invite_start"],
        row["title_cy"],
        row["place_cy"],
        row["moved_at"],
        row["place_changed_at"],
    )


def _invitation(row: Row) -> Invitation:
    return Invitation(
        row["id"],
        row["panel_id"],
        row["pseudonym"],
        row["token"],
        row["answer"],
        row["ticket"],
        _needs(row["support_needs"]),
        row["answered_at"],
        row["invited_at"],
        row["interpreter_language"],
    )


def new_ticket() -> str:
    """A door code such as 'ACD-479': 22^6 (about 113 million) possibilities."""
    code = "".join(secrets.choice(TICKET_ALPHABET) for _ in range(TICKET_LENGTH))
    return f"{code[:3]}-{code[3:]}"


class Panels:
    """The panels and panel_invitations tables."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    # Panels

    async def create(
        self,
        region: str,
        title: str,
        starts_at: int,
        place: str,
        capacity: int,
        support_offered: Sequence[str],
        organiser: str,
        now: int,
        title_cy: str | None = None,
        place_cy: str | None = None,
    ) -> int:
        """Record a new open panel; returns its id. Repeated need ids are kept once, in order.
        Its invitations start at a random point of the region's pseudonym order (32 hex
        digits, as pseudonyms are), kept with it: see `reachable_with_consent`."""
        offered = list(dict.fromkeys(_strings(support_offered, "support_offered")))
        start = new_invite_start()
        async with self._conn.execute(
            "INSERT INTO panels (region, title, starts_at, place, capacity, support_offered, "
            "organiser, created_at, updated_at, invite_start, title_cy, place_cy) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                region,
                title,
                starts_at,
                place,
                capacity,
                _json_list(offered),
                organiser,
                now,
                now,
                start,
                title_cy or None,
                place_cy or None,
            ),
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def get(self, panel_id: int) -> Panel | None:
        async with self._conn.execute(
            f"SELECT {_PANEL_COLUMNS} FROM panels p WHERE p.id = ?", (panel_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return _panel(row) if row else None

    async def upcoming(self, regions: Collection[str] | None, now: int) -> list[PanelSummary]:
        """Open panels that have not started yet, soonest first, with their numbers.
        `regions` None means every region (admins); an empty collection means none."""
        if regions is None:
            return await self._summaries("p.status = 'open' AND p.starts_at > ?", (now,))
        wanted = sorted(set(_strings(regions, "regions")))
        if not wanted:
            return []
        return await self._summaries(
            "p.status = 'open' AND p.region IN (SELECT value FROM json_each(?)) "
            "AND p.starts_at > ?",
            (_json_list(wanted), now),
        )

    async def summary(self, panel_id: int) -> PanelSummary | None:
        """One panel's numbers, whatever its status (the organiser's view of it)."""
        found = await self._summaries("p.id = ?", (panel_id,))
        return found[0] if found else None

    async def reschedule(self, panel_id: int, starts_at: int, now: int) -> bool:
        """Move an open panel; True when it was open (a cancelled or past one stays put)."""
        cursor = await self._conn.execute(
            "UPDATE panels SET starts_at = ?, moved_at = ?, updated_at = ? "
            "WHERE id = ? AND status = 'open'",
            (starts_at, now, now, panel_id),
        )
        return cursor.rowcount > 0

    async def set_place(self, panel_id: int, place: str, place_cy: str | None, now: int) -> bool:
        """Where an open panel is now (`place_cy` in Welsh, None: not given); True when it
        was open."""
        cursor = await self._conn.execute(
            "UPDATE panels SET place = ?, place_cy = ?, place_changed_at = ?, updated_at = ? "
            "WHERE id = ? AND status = 'open'",
            (place, place_cy, now, now, panel_id),
        )
        return cursor.rowcount > 0

    async def cancel(self, panel_id: int, now: int) -> bool:
        """Call an open panel off; True when it was open. From now on it takes no answers.

        Answers and tickets stay, so the caller can still tell everyone who was coming. The
        support needs go now: nobody will be travelling or arranging childcare for it, so
        there is no reason to keep what they say about people's lives."""
        cursor = await self._conn.execute(
            "UPDATE panels SET status = 'cancelled', updated_at = ? "
            "WHERE id = ? AND status = 'open'",
            (now, panel_id),
        )
        await self._forget_needs(panel_id)
        return cursor.rowcount > 0

    async def mark_over(self, panel_id: int, now: int) -> int:
        """The panel has happened: no more answers, and every support need is erased (they
        were kept only to arrange the day). Returns how many invitations had needs.

        A cancelled panel keeps its status, so a job that marks every past panel over cannot
        turn 'cancelled' into 'over'; its needs are erased all the same."""
        await self._conn.execute(
            "UPDATE panels SET status = 'over', updated_at = ? WHERE id = ? AND status = 'open'",
            (now, panel_id),
        )
        # Which message each invitation went out as, and when, was kept only to correct it
        # if the panel changed (migration 0024).
        await self._conn.execute(
            "UPDATE panel_invitations SET message_id = NULL, sent_at = NULL "
            "WHERE panel_id = ? AND message_id IS NOT NULL",
            (panel_id,),
        )
        return await self._forget_needs(panel_id)

    # Invitations

    async def invite(self, panel_id: int, pseudonym: str, now: int) -> str | None:
        """Invite a person; returns the new invitation's token, or None when they already
        had one for this panel (so a broadcast that is run twice invites nobody twice)."""
        return (await self.invite_all(panel_id, [pseudonym], now))[0]

    async def invite_all(
        self, panel_id: int, pseudonyms: Sequence[str], now: int
    ) -> list[str | None]:
        """Invite each person, in one statement (a part of a panel's invitations); returns
        the tokens in the same order, None for anyone already invited (see `invite`)."""
        if not pseudonyms:
            return []
        once = list(dict.fromkeys(pseudonyms))  # the same person twice: invited once
        rows = [(panel_id, pseudonym, secrets.token_hex(8), now) for pseudonym in once]
        async with self._conn.execute(
            "INSERT INTO panel_invitations (panel_id, pseudonym, token, invited_at) VALUES "
            + ", ".join(["(?, ?, ?, ?)"] * len(rows))
            + " ON CONFLICT (panel_id, pseudonym) DO NOTHING RETURNING pseudonym, token",
            [value for row in rows for value in row],
        ) as cursor:
            made = {str(r[0]): str(r[1]) for r in await cursor.fetchall()}  # in no set order
        return [made.pop(pseudonym, None) for pseudonym in pseudonyms]

    async def invitation(self, token: str) -> Invitation | None:
        async with self._conn.execute(
            f"SELECT {_INVITATION_COLUMNS} FROM panel_invitations WHERE token = ?", (token,)
        ) as cursor:
            row = await cursor.fetchone()
        return _invitation(row) if row else None

    async def respond(self, token: str, choice: str, now: int) -> RsvpOutcome:
        """Record a person's answer ('yes', 'maybe', 'no' or 'cancel' for "Cancel my place").

        Only an open panel that has not started takes answers; otherwise nothing changes and
        the outcome says `closed`. Saying 'yes' again never moves anybody ahead: someone with
        a place keeps their ticket, someone waiting keeps their turn (but takes a place left
        free, if first in turn of those who can be told). When a place is given back, the
        first person waiting gets it (returned as `promoted`, to be told)."""
        if choice not in CHOICES:
            raise ValueError(f"unknown choice {choice!r}")
        async with self._conn.execute(
            "SELECT i.id, i.panel_id, i.pseudonym, i.token, i.answer, i.ticket, "
            "i.support_needs, i.answered_at, i.invited_at, i.interpreter_language, p.status, "
            "p.starts_at "
            "FROM panel_invitations i JOIN panels p ON p.id = i.panel_id WHERE i.token = ?",
            (token,),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise UnknownInvitation(token)
        before = _invitation(row)
        if row["status"] != "open" or row["starts_at"] <= now:
            return RsvpOutcome(before, before.answer, None, None, closed=True)

        after = before
        if choice == "yes":
            if before.answer not in ("yes", "waiting"):
                after = await self._take_place(before, now)
        elif choice in ("maybe", "no"):
            if before.answer != choice:
                after = await self._set_answer(before, choice, now, keep_needs=choice == "maybe")
        elif before.answer in _CANCELLABLE:
            after = await self._set_answer(before, "cancelled", now, keep_needs=False)

        promoted = None
        if before.answer == "yes" and after.answer != "yes":
            promoted = await self._promote(before.panel_id, now)
        elif choice == "yes" and before.answer == "waiting":
            # A place may have been left free while those waiting could not be told (they
            # had blocked the bot): a "yes" from the list fills it, in turn; this person,
            # or whoever waited longer and can be told.
            promoted = await self._promote(before.panel_id, now)
            if promoted is not None and promoted.id == before.id:
                after, promoted = promoted, None
        position = await self._waiting_position(after) if after.answer == "waiting" else None
        return RsvpOutcome(after, before.answer, promoted, position, closed=False)

    async def set_support_needs(self, token: str, needs: Sequence[str]) -> bool:
        """Record what someone needs to be able to come (sorted, each need once). Only for
        people still thinking of coming ('yes', 'maybe', 'waiting') to a panel that is still
        open; True when it was stored."""
        chosen = sorted(set(_strings(needs, "needs")))
        # What the organiser was told of keeps only the needs still asked for: a need
        # unticked is not kept as told (nor shown so in /mydata).
        cursor = await self._conn.execute(
            "UPDATE panel_invitations SET support_needs = :needs, needs_told = ("
            "  SELECT CASE WHEN COUNT(*) THEN json_group_array(value) END "
            "  FROM json_each(needs_told) WHERE value IN (SELECT value FROM json_each(:needs))), "
            "interpreter_language = CASE WHEN 'interpreter' IN "
            "  (SELECT value FROM json_each(:needs)) THEN interpreter_language END "
            "WHERE token = :token AND answer IN ('yes', 'maybe', 'waiting') "
            "AND (SELECT status FROM panels WHERE id = panel_id) = 'open'",
            {"needs": _json_list(chosen), "token": token},
        )
        return cursor.rowcount > 0

    async def set_interpreter_language(self, token: str, language: str) -> bool:
        """The language the person needs an interpreter in, once they ticked Interpreter
        (`set_support_needs`); True when it was stored. A language new since the organiser
        was told of the interpreter is theirs to hear of too: the need is no longer noted
        as told, so the next Done passes it on (with the language)."""
        cursor = await self._conn.execute(
            "UPDATE panel_invitations SET needs_told = CASE "
            "  WHEN interpreter_language IS :language THEN needs_told ELSE ("
            "  SELECT CASE WHEN COUNT(*) THEN json_group_array(value) END "
            "  FROM json_each(needs_told) WHERE value <> 'interpreter') END, "
            "interpreter_language = :language "
            "WHERE token = :token AND answer IN ('yes', 'maybe', 'waiting') "
            "AND 'interpreter' IN (SELECT value FROM json_each(support_needs)) "
            "AND (SELECT status FROM panels WHERE id = panel_id) = 'open'",
            {"language": language, "token": token},
        )
        return cursor.rowcount > 0

    async def note_needs_told(self, token: str, needs: Sequence[str]) -> tuple[str, ...]:
        """Note that the panel's organiser is told of `needs` for this invitation; returns
        those they had not been told of before (sorted), so each is passed on once however
        often Done is tapped or a need unticked and ticked again."""
        async with self._conn.execute(
            "SELECT needs_told FROM panel_invitations WHERE token = ?", (token,)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return ()
        before = set(_needs(row[0]))
        new = sorted(set(_strings(needs, "needs")) - before)
        if new:
            await self._conn.execute(
                "UPDATE panel_invitations SET needs_told = ? WHERE token = ?",
                (_json_list(sorted(before | set(new))), token),
            )
        return tuple(new)

    async def attendees(self, panel_id: int, answers: Collection[str]) -> list[Attendee]:
        """The people with one of `answers` who may be messaged about this panel now: still
        reachable, and their latest decision on panel invitations is a yes. Someone who
        withdrew that consent hears nothing more, even about a panel they said yes to."""
        wanted = sorted(set(_strings(answers, "answers")))
        if not wanted:
            return []
        async with self._conn.execute(
            "SELECT i.pseudonym, p.chat_id, p.locale, i.token, i.answer, i.ticket "
            "FROM panel_invitations i JOIN people p ON p.pseudonym = i.pseudonym "
            "JOIN consent_ledger c ON c.id = (SELECT MAX(id) FROM consent_ledger "
            "  WHERE pseudonym = p.pseudonym AND purpose = 'panel_invitations') "
            "WHERE i.panel_id = ? AND i.answer IN (SELECT value FROM json_each(?)) "
            "AND p.reachable = 1 AND c.granted = 1 ORDER BY i.id",
            (panel_id, _json_list(wanted)),
        ) as cursor:
            rows = await cursor.fetchall()
        return [Attendee(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def sent_invitations(
        self, panel_id: int, after_id: int, sent_before: int | None, limit: int
    ) -> list[SentInvitation]:
        """The panel's invitations that went out as a message we know (migration 0024), in
        invitation order after `after_id`, sent before `sent_before` (None: whenever), at
        most `limit`: whatever the person answered, their invitation still shows the panel
        as it was. Only people still reachable who still want panel invitations (someone
        who said stop is not written to, even by an edit)."""
        async with self._conn.execute(
            "SELECT i.id, p.chat_id, i.message_id, i.token, p.locale, i.sent_at "
            "FROM panel_invitations i JOIN people p ON p.pseudonym = i.pseudonym "
            "WHERE i.panel_id = ? AND i.id > ? AND i.message_id IS NOT NULL "
            "AND (? IS NULL OR i.sent_at < ?) "
            f"AND p.reachable = 1 AND {_STILL_CONSENTS} ORDER BY i.id LIMIT ?",
            (panel_id, after_id, sent_before, sent_before, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [SentInvitation(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def queued_invitations(
        self,
        panel_id: int,
        after_outbox_id: int,
        queued_by: int,
        limit: int,
        kind: str = "panel_invitation",
    ) -> list[tuple[int, str, str]]:
        """(outbox id, invitation token, the person's locale) of this panel's invitation
        messages still queued, by the running broadcasts inviting to it, in outbox order after
        `after_outbox_id`, queued by `queued_by` (those queued later have the new date
        already): at most `limit`. A panel moved while its invitations are going out has
        them written again with its new date. `kind` "panel_reminder": its reminders
        still queued, the same way."""
        async with self._conn.execute(
            "SELECT o.id, i.token, p.locale FROM broadcasts b "
            "JOIN outbox o ON o.broadcast_id = b.id AND o.status = 'pending' AND o.id > ? "
            "  AND o.created_at <= ? "
            "JOIN people p ON p.chat_id = o.chat_id "
            "JOIN panel_invitations i ON i.panel_id = ? AND i.pseudonym = p.pseudonym "
            "WHERE b.subject = ? AND b.kind = ? AND b.status = 'running' "
            "ORDER BY o.id LIMIT ?",
            (after_outbox_id, queued_by, panel_id, f"panel:{panel_id}", kind, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def active_invitations(self, pseudonym: str, now: int) -> list[Invitation]:
        """A person's places, maybes and waiting-list spots on panels still to come (to
        give them back when the person withdraws consent)."""
        columns = ", ".join(f"i.{c.strip()}" for c in _INVITATION_COLUMNS.split(","))
        async with self._conn.execute(
            f"SELECT {columns} FROM panel_invitations i JOIN panels p ON p.id = i.panel_id "
            "WHERE i.pseudonym = ? AND i.answer IN ('yes', 'maybe', 'waiting') "
            "AND p.status = 'open' AND p.starts_at > ? ORDER BY i.id",
            (pseudonym, now),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_invitation(row) for row in rows]

    async def tickets(self, panel_id: int) -> list[tuple[str, tuple[str, ...], str | None]]:
        """(door code, the help they asked for, the interpreter's language) of everyone
        holding a place, sorted by code: the list at the door, and what the organiser
        arranges for the day, by ticket, never by name."""
        async with self._conn.execute(
            "SELECT ticket, support_needs, interpreter_language FROM panel_invitations "
            "WHERE panel_id = ? AND answer = 'yes' ORDER BY ticket",
            (panel_id,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [(str(r[0]), _needs(r[1]), r[2]) for r in rows]

    # Internals

    async def _take_place(self, invitation: Invitation, now: int) -> Invitation:
        """'yes' with a ticket if a place is free, else the end of the waiting list."""
        ticket = await self._free_ticket(invitation.panel_id)
        async with self._conn.execute(
            "UPDATE panel_invitations SET "
            f"answer = CASE WHEN {_HAS_FREE_PLACE} THEN 'yes' ELSE 'waiting' END, "
            f"ticket = CASE WHEN {_HAS_FREE_PLACE} THEN :ticket END, "
            f"answered_at = :now WHERE id = :id RETURNING {_INVITATION_COLUMNS}",
            {"panel": invitation.panel_id, "ticket": ticket, "now": now, "id": invitation.id},
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return _invitation(row)

    async def _set_answer(
        self, invitation: Invitation, answer: str, now: int, *, keep_needs: bool
    ) -> Invitation:
        """An answer that holds no place: the ticket goes; the needs too unless kept."""
        async with self._conn.execute(
            "UPDATE panel_invitations SET answer = :answer, ticket = NULL, answered_at = :now, "
            "support_needs = CASE WHEN :keep THEN support_needs END, "
            "needs_told = CASE WHEN :keep THEN needs_told END, "
            "interpreter_language = CASE WHEN :keep THEN interpreter_language END "
            f"WHERE id = :id RETURNING {_INVITATION_COLUMNS}",
            {"answer": answer, "now": now, "keep": int(keep_needs), "id": invitation.id},
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return _invitation(row)

    async def set_capacity(self, panel_id: int, capacity: int, now: int) -> bool:
        """Give an open panel `capacity` places; False (nothing changed) when more people
        than that have a place already: a place given is not taken back."""
        cursor = await self._conn.execute(
            "UPDATE panels SET capacity = :capacity, updated_at = :now "
            "WHERE id = :panel AND status = 'open' AND :capacity > 0 AND :capacity >= "
            "(SELECT COUNT(*) FROM panel_invitations WHERE panel_id = :panel AND answer = 'yes')",
            {"capacity": capacity, "now": now, "panel": panel_id},
        )
        return cursor.rowcount > 0

    async def places_taken(self, panel_id: int) -> int:
        async with self._conn.execute(
            "SELECT COUNT(*) FROM panel_invitations WHERE panel_id = ? AND answer = 'yes'",
            (panel_id,),
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def fill_free_places(self, panel_id: int, now: int) -> list[Invitation]:
        """Give the free places to those who have waited longest (as a place given back
        does), each with a ticket; returns who got one, in order."""
        promoted: list[Invitation] = []
        while (invitation := await self._promote(panel_id, now)) is not None:
            promoted.append(invitation)
        return promoted

    async def _promote(self, panel_id: int, now: int) -> Invitation | None:
        """Give a free place to whoever has waited longest; None if nobody is waiting."""
        ticket = await self._free_ticket(panel_id)
        async with self._conn.execute(
            "UPDATE panel_invitations SET answer = 'yes', ticket = :ticket, answered_at = :now "
            "WHERE id = (SELECT i.id FROM panel_invitations i "
            "  JOIN people p ON p.pseudonym = i.pseudonym AND p.reachable = 1 "
            "  WHERE i.panel_id = :panel AND i.answer = 'waiting' "
            f"  AND {_STILL_CONSENTS} ORDER BY i.answered_at, i.id LIMIT 1) "
            f"AND {_HAS_FREE_PLACE} RETURNING {_INVITATION_COLUMNS}",
            {"panel": panel_id, "ticket": ticket, "now": now},
        ) as cursor:
            row = await cursor.fetchone()
        return _invitation(row) if row else None

    async def _waiting_position(self, invitation: Invitation) -> int:
        async with self._conn.execute(
            "SELECT COUNT(*) FROM panel_invitations WHERE panel_id = ? AND answer = 'waiting' "
            "AND (answered_at, id) <= (?, ?)",
            (invitation.panel_id, invitation.answered_at, invitation.id),
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def _free_ticket(self, panel_id: int) -> str:
        """A ticket nobody at this panel has had. The caller's write lock keeps it free until
        it is written; UNIQUE (panel_id, ticket) is the backstop."""
        while True:
            ticket = new_ticket()
            async with self._conn.execute(
                "SELECT 1 FROM panel_invitations WHERE panel_id = ? AND ticket = ?",
                (panel_id, ticket),
            ) as cursor:
                if await cursor.fetchone() is None:
                    return ticket

    async def _forget_needs(self, panel_id: int) -> int:
        cursor = await self._conn.execute(
            "UPDATE panel_invitations SET support_needs = NULL, needs_told = NULL, "
            "interpreter_language = NULL WHERE panel_id = ? AND (support_needs IS NOT NULL "
            "OR needs_told IS NOT NULL OR interpreter_language IS NOT NULL)",
            (panel_id,),
        )
        return cursor.rowcount

    async def _summaries(self, where: str, params: tuple[object, ...]) -> list[PanelSummary]:
        """Panels matching `where` (a fixed SQL fragment over `p`), soonest first, with how
        many people gave each answer and which support the likely comers asked for."""
        async with self._conn.execute(
            f"SELECT {_PANEL_COLUMNS}, "
            "COALESCE(SUM(i.answer = 'yes'), 0) AS n_yes, "
            "COALESCE(SUM(i.answer = 'maybe'), 0) AS n_maybe, "
            "COALESCE(SUM(i.answer = 'waiting'), 0) AS n_waiting, "
            "COALESCE(SUM(i.answer = 'no'), 0) AS n_no, "
            "COALESCE(SUM(i.answer = 'cancelled'), 0) AS n_cancelled, "
            "COALESCE(SUM(i.answer = 'invited'), 0) AS n_invited "
            "FROM panels p LEFT JOIN panel_invitations i ON i.panel_id = p.id "
            f"WHERE {where} GROUP BY p.id ORDER BY p.starts_at, p.id",
            params,
        ) as cursor:
            rows = await cursor.fetchall()
        async with self._conn.execute(
            "SELECT i.panel_id, n.value, COUNT(DISTINCT i.id) "
            "FROM panels p JOIN panel_invitations i ON i.panel_id = p.id, "
            "json_each(i.support_needs) n "
            f"WHERE {where} AND i.answer IN ('yes', 'maybe') "
            "GROUP BY i.panel_id, n.value ORDER BY i.panel_id, n.value",
            params,
        ) as cursor:
            needs = await cursor.fetchall()
        requested: dict[int, dict[str, int]] = {}
        for panel_id, need, count in needs:
            requested.setdefault(panel_id, {})[need] = count
        return [
            PanelSummary(
                _panel(r),
                r["n_yes"],
                r["n_maybe"],
                r["n_waiting"],
                r["n_no"],
                r["n_cancelled"],
                r["n_invited"],
                requested.get(r["id"], {}),
            )
            for r in rows
        ]
