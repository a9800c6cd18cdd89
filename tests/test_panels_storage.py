"""Panels and RSVP on a real SQLite file: places, the waiting list, tickets, who may be told.

Every person here is invented; pseudonyms look like "p-ada"."""

from __future__ import annotations

import asyncio
import itertools
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.broadcasts import Broadcasts
from storage.database import Database
from storage.panels import (
    TICKET_ALPHABET,
    Panels,
    RsvpOutcome,
    UnknownInvitation,
    new_ticket,
)
from storage.people import ConsentLedger, People

NOW = 1_790_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR
CHAT_IDS = itertools.count(1000)
TICKET = re.compile(rf"^[{TICKET_ALPHABET}]{{3}}-[{TICKET_ALPHABET}]{{3}}$")


@pytest.fixture()
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(str(tmp_path / "test.db"))
    await database.migrate()
    yield database
    await database.close()


async def add_people(
    db: Database, pseudonyms: Sequence[str], *, consent: bool = True, region: str = "london"
) -> None:
    async with db.transaction() as conn:
        people, ledger = People(conn), ConsentLedger(conn)
        for pseudonym in pseudonyms:
            await people.touch(pseudonym, next(CHAT_IDS), "en", NOW)
            await people.set_region(pseudonym, region, NOW)
            if consent:
                await ledger.record(pseudonym, "panel_invitations", True, "v1", NOW)


async def new_panel(
    db: Database,
    *,
    capacity: int = 2,
    region: str = "london",
    starts_at: int = NOW + 7 * DAY,
    support: Sequence[str] = ("travel", "childcare"),
    title: str = "Reporting in person",
) -> int:
    async with db.transaction() as conn:
        return await Panels(conn).create(
            region, title, starts_at, "online", capacity, support, "s-organiser", NOW
        )


async def invite(db: Database, panel_id: int, pseudonyms: Sequence[str]) -> dict[str, str]:
    """Invite everyone; returns pseudonym -> token."""
    tokens = {}
    async with db.transaction() as conn:
        for pseudonym in pseudonyms:
            token = await Panels(conn).invite(panel_id, pseudonym, NOW)
            assert token is not None
            tokens[pseudonym] = token
    return tokens


async def respond(db: Database, token: str, choice: str, now: int = NOW + HOUR) -> RsvpOutcome:
    async with db.transaction() as conn:
        return await Panels(conn).respond(token, choice, now)


async def answers(db: Database, panel_id: int) -> dict[str, tuple[str, str | None]]:
    """pseudonym -> (answer, ticket), straight from the table."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT pseudonym, answer, ticket FROM panel_invitations WHERE panel_id = ?",
            (panel_id,),
        ) as cursor,
    ):
        return {r[0]: (r[1], r[2]) for r in await cursor.fetchall()}


SIX = ["p-ada", "p-bea", "p-cal", "p-dev", "p-eli", "p-fay"]


async def test_capacity_fills_then_yes_joins_the_waiting_list(db: Database) -> None:
    await add_people(db, SIX[:4])
    panel_id = await new_panel(db, capacity=2)
    tokens = await invite(db, panel_id, SIX[:4])

    first = await respond(db, tokens["p-ada"], "yes")
    second = await respond(db, tokens["p-bea"], "yes", NOW + HOUR + 1)
    assert (first.invitation.answer, second.invitation.answer) == ("yes", "yes")
    assert first.previous == "invited" and first.waiting_position is None
    assert first.invitation.ticket and TICKET.match(first.invitation.ticket)

    third = await respond(db, tokens["p-cal"], "yes", NOW + HOUR + 2)
    fourth = await respond(db, tokens["p-dev"], "yes", NOW + HOUR + 3)
    assert third.invitation.answer == "waiting" and third.invitation.ticket is None
    assert (third.waiting_position, fourth.waiting_position) == (1, 2)
    assert third.invitation.answered_at == NOW + HOUR + 2
    assert not third.closed and third.promoted is None


async def test_a_cancelled_place_goes_to_the_earliest_waiting_with_a_new_ticket(
    db: Database,
) -> None:
    await add_people(db, SIX[:4])
    panel_id = await new_panel(db, capacity=2)
    tokens = await invite(db, panel_id, SIX[:4])
    ada = await respond(db, tokens["p-ada"], "yes", NOW + 1)
    await respond(db, tokens["p-bea"], "yes", NOW + 2)
    # dev asked before cal, even though cal was invited first
    await respond(db, tokens["p-dev"], "yes", NOW + 3)
    await respond(db, tokens["p-cal"], "yes", NOW + 4)

    outcome = await respond(db, tokens["p-ada"], "cancel", NOW + 5)
    assert outcome.previous == "yes"
    assert outcome.invitation.answer == "cancelled"
    assert outcome.invitation.ticket is None and outcome.invitation.support_needs == ()
    assert outcome.promoted is not None
    assert outcome.promoted.pseudonym == "p-dev" and outcome.promoted.answer == "yes"
    assert outcome.promoted.ticket and TICKET.match(outcome.promoted.ticket)
    assert outcome.promoted.ticket != ada.invitation.ticket

    state = await answers(db, panel_id)
    assert state["p-cal"] == ("waiting", None)
    cal = await respond(db, tokens["p-cal"], "yes", NOW + 6)
    assert cal.waiting_position == 1  # moved up the queue
    async with db.read() as conn:
        assert [code for code, _, _ in await Panels(conn).tickets(panel_id)] == sorted(
            [state["p-bea"][1], state["p-dev"][1]]
        )


async def test_yes_to_maybe_gives_the_place_back(db: Database) -> None:
    await add_people(db, SIX[:3])
    panel_id = await new_panel(db, capacity=1)
    tokens = await invite(db, panel_id, SIX[:3])
    await respond(db, tokens["p-ada"], "yes", NOW + 1)
    await respond(db, tokens["p-bea"], "yes", NOW + 2)

    outcome = await respond(db, tokens["p-ada"], "maybe", NOW + 3)
    assert outcome.invitation.answer == "maybe" and outcome.invitation.ticket is None
    assert outcome.promoted is not None and outcome.promoted.pseudonym == "p-bea"

    # and back to yes: the panel is full again, so ada waits
    again = await respond(db, tokens["p-ada"], "yes", NOW + 4)
    assert again.invitation.answer == "waiting" and again.waiting_position == 1


async def test_yes_to_no_gives_the_place_back_and_forgets_needs(db: Database) -> None:
    await add_people(db, SIX[:2])
    panel_id = await new_panel(db, capacity=1)
    tokens = await invite(db, panel_id, SIX[:2])
    await respond(db, tokens["p-ada"], "yes", NOW + 1)
    await respond(db, tokens["p-bea"], "yes", NOW + 2)
    async with db.transaction() as conn:
        assert await Panels(conn).set_support_needs(tokens["p-ada"], ["travel"])

    outcome = await respond(db, tokens["p-ada"], "no", NOW + 3)
    assert outcome.invitation.answer == "no" and outcome.invitation.support_needs == ()
    assert outcome.promoted is not None and outcome.promoted.pseudonym == "p-bea"


async def test_repeated_yes_changes_nothing(db: Database) -> None:
    await add_people(db, SIX[:3])
    panel_id = await new_panel(db, capacity=1)
    tokens = await invite(db, panel_id, SIX[:3])
    first = await respond(db, tokens["p-ada"], "yes", NOW + 1)
    again = await respond(db, tokens["p-ada"], "yes", NOW + 2)
    assert again.invitation == first.invitation  # same ticket, same answered_at
    assert again.previous == "yes" and again.promoted is None

    await respond(db, tokens["p-bea"], "yes", NOW + 3)
    await respond(db, tokens["p-cal"], "yes", NOW + 4)
    bea = await respond(db, tokens["p-bea"], "yes", NOW + 5)
    assert bea.invitation.answer == "waiting" and bea.waiting_position == 1
    assert bea.invitation.answered_at == NOW + 3  # kept their turn


async def test_a_place_left_free_while_the_waiting_could_not_be_told_goes_on_their_yes(
    db: Database,
) -> None:
    """Ada gives her place back while Bea and Cal, waiting, have blocked the bot: nobody can
    be told, so the place stays free. Cal comes back first and taps Yes again: Bea waited
    longer but still cannot be told, so Cal gets it; Bea, back later, waits (full again)."""
    await add_people(db, SIX[:3])
    panel_id = await new_panel(db, capacity=1)
    tokens = await invite(db, panel_id, SIX[:3])
    await respond(db, tokens["p-ada"], "yes", NOW + 1)
    await respond(db, tokens["p-bea"], "yes", NOW + 2)
    await respond(db, tokens["p-cal"], "yes", NOW + 3)
    async with db.transaction() as conn:
        chats = {}
        for pseudonym in ("p-bea", "p-cal"):
            person = await People(conn).get(pseudonym)
            assert person is not None
            chats[pseudonym] = person.chat_id
            await People(conn).set_reachable(person.chat_id, False, NOW + 4)
    gone = await respond(db, tokens["p-ada"], "cancel", NOW + 5)
    assert gone.promoted is None  # nobody waiting can be told

    async with db.transaction() as conn:
        await People(conn).set_reachable(chats["p-cal"], True, NOW + 6)
    cal = await respond(db, tokens["p-cal"], "yes", NOW + 7)
    assert cal.invitation.answer == "yes" and cal.invitation.ticket and cal.promoted is None
    async with db.transaction() as conn:
        await People(conn).set_reachable(chats["p-bea"], True, NOW + 8)
    bea = await respond(db, tokens["p-bea"], "yes", NOW + 9)
    assert bea.invitation.answer == "waiting" and bea.waiting_position == 1


async def test_cancel_without_a_place_changes_nothing(db: Database) -> None:
    await add_people(db, SIX[:1])
    panel_id = await new_panel(db)
    tokens = await invite(db, panel_id, SIX[:1])
    await respond(db, tokens["p-ada"], "no", NOW + 1)
    outcome = await respond(db, tokens["p-ada"], "cancel", NOW + 2)
    assert outcome.invitation.answer == "no" and outcome.invitation.answered_at == NOW + 1


async def test_a_cancelled_or_started_panel_takes_no_answers(db: Database) -> None:
    await add_people(db, SIX[:2])
    starts = NOW + DAY
    cancelled = await new_panel(db, starts_at=starts)
    started = await new_panel(db, starts_at=starts)
    cancelled_tokens = await invite(db, cancelled, SIX[:2])
    started_tokens = await invite(db, started, SIX[:2])
    await respond(db, started_tokens["p-ada"], "yes", NOW + 1)

    async with db.transaction() as conn:
        assert await Panels(conn).cancel(cancelled, NOW + 2)
        assert not await Panels(conn).cancel(cancelled, NOW + 3)  # once
        assert not await Panels(conn).reschedule(cancelled, starts + DAY, NOW + 3)
    outcome = await respond(db, cancelled_tokens["p-ada"], "yes", NOW + 4)
    assert outcome.closed and outcome.invitation.answer == "invited"
    assert outcome.promoted is None and outcome.waiting_position is None

    for now in (starts, starts + 1):
        late = await respond(db, started_tokens["p-bea"], "yes", now)
        assert late.closed and late.invitation.answer == "invited"
        leaving = await respond(db, started_tokens["p-ada"], "cancel", now)
        assert leaving.closed and leaving.invitation.answer == "yes"
    assert (await answers(db, started))["p-ada"][0] == "yes"


async def test_rescheduling_reopens_answers_until_the_new_time(db: Database) -> None:
    await add_people(db, SIX[:1])
    panel_id = await new_panel(db, starts_at=NOW + DAY)
    tokens = await invite(db, panel_id, SIX[:1])
    async with db.transaction() as conn:
        assert await Panels(conn).reschedule(panel_id, NOW + 3 * DAY, NOW)
        panel = await Panels(conn).get(panel_id)
    assert panel is not None and panel.starts_at == NOW + 3 * DAY
    assert not (await respond(db, tokens["p-ada"], "yes", NOW + 2 * DAY)).closed


async def test_tickets_are_unique_and_readable(db: Database) -> None:
    pseudonyms = [f"p-{i:02d}" for i in range(40)]
    await add_people(db, pseudonyms)
    panel_id = await new_panel(db, capacity=40)
    tokens = await invite(db, panel_id, pseudonyms)
    for i, pseudonym in enumerate(pseudonyms):
        await respond(db, tokens[pseudonym], "yes", NOW + i)
    async with db.read() as conn:
        tickets = [code for code, _, _ in await Panels(conn).tickets(panel_id)]
    assert len(tickets) == len(set(tickets)) == 40
    assert tickets == sorted(tickets)
    assert all(TICKET.match(t) for t in tickets)
    samples = {new_ticket() for _ in range(2000)}
    assert all(TICKET.match(t) for t in samples)
    assert not set("".join(samples)) & set("0O1IL")


async def test_a_ticket_collision_is_retried(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    await add_people(db, SIX[:2])
    panel_id = await new_panel(db)
    tokens = await invite(db, panel_id, SIX[:2])
    codes = iter(["AAA-AAA", "AAA-AAA", "CCC-CCC"])
    monkeypatch.setattr("storage.panels.new_ticket", lambda: next(codes))
    first = await respond(db, tokens["p-ada"], "yes")
    second = await respond(db, tokens["p-bea"], "yes")
    assert (first.invitation.ticket, second.invitation.ticket) == ("AAA-AAA", "CCC-CCC")


async def test_the_table_refuses_a_place_without_a_ticket(db: Database) -> None:
    await add_people(db, SIX[:1])
    panel_id = await new_panel(db)
    tokens = await invite(db, panel_id, SIX[:1])
    with pytest.raises(sqlite3.IntegrityError):
        async with db.transaction() as conn:
            await conn.execute(
                "UPDATE panel_invitations SET answer = 'yes', answered_at = 1 WHERE token = ?",
                (tokens["p-ada"],),
            )


async def test_inviting_twice_gives_no_second_invitation(db: Database) -> None:
    await add_people(db, SIX[:1])
    panel_id = await new_panel(db)
    async with db.transaction() as conn:
        token = await Panels(conn).invite(panel_id, "p-ada", NOW)
        assert await Panels(conn).invite(panel_id, "p-ada", NOW + 1) is None
        invitation = await Panels(conn).invitation(token or "")
    assert token is not None and re.fullmatch(r"[0-9a-f]{16}", token)
    assert invitation is not None
    assert (invitation.answer, invitation.ticket, invitation.answered_at) == ("invited", None, None)
    assert invitation.invited_at == NOW


async def test_a_part_invites_many_at_once_each_once_tokens_in_order(db: Database) -> None:
    await add_people(db, SIX[:5])
    panel_id = await new_panel(db)
    async with db.transaction() as conn:
        panels = Panels(conn)
        first = await panels.invite(panel_id, SIX[1], NOW)
        part = [SIX[3], SIX[1], SIX[0], SIX[2]]  # not in pseudonym order; one invited already
        tokens = await panels.invite_all(panel_id, part, NOW + 1)
        assert tokens[1] is None
        assert await panels.invite_all(panel_id, [], NOW) == []
        twice = await panels.invite_all(panel_id, [SIX[4], SIX[4]], NOW)  # one invitation
        assert twice[0] is not None and twice[1] is None
        for pseudonym, token in zip(part, tokens, strict=True):
            invitation = await panels.invitation(token or str(first))
            assert invitation is not None and invitation.pseudonym == pseudonym
    assert len({*tokens, first} - {None}) == 4  # four people, four different tokens


async def test_unknown_tokens_and_choices_are_refused(db: Database) -> None:
    await add_people(db, SIX[:1])
    panel_id = await new_panel(db)
    tokens = await invite(db, panel_id, SIX[:1])
    with pytest.raises(UnknownInvitation):
        await respond(db, "0123456789abcdef", "yes")
    with pytest.raises(ValueError, match="choice"):
        await respond(db, tokens["p-ada"], "waiting")
    async with db.read() as conn:
        assert await Panels(conn).invitation("0123456789abcdef") is None


async def test_attendees_are_reachable_people_who_still_consent(db: Database) -> None:
    await add_people(db, SIX[:4])
    await add_people(db, ["p-eli"], consent=False)  # never asked about panels
    panel_id = await new_panel(db, capacity=5)
    tokens = await invite(db, panel_id, [*SIX[:4], "p-eli"])
    for pseudonym in tokens:
        await respond(db, tokens[pseudonym], "yes")
    await respond(db, tokens["p-dev"], "maybe")
    async with db.transaction() as conn:
        bea = await People(conn).get("p-bea")
        assert bea is not None
        await People(conn).set_reachable(bea.chat_id, False, NOW + 1)  # blocked the bot
        ledger = ConsentLedger(conn)
        await ledger.record("p-cal", "panel_invitations", False, "v1", NOW + 1)
        # dev withdrew, then said yes again: the latest decision counts
        await ledger.record("p-dev", "panel_invitations", False, "v1", NOW + 1)
        await ledger.record("p-dev", "panel_invitations", True, "v1", NOW + 2)

    async with db.read() as conn:
        coming = await Panels(conn).attendees(panel_id, ["yes"])
        likely = await Panels(conn).attendees(panel_id, {"yes", "maybe"})
        nobody = await Panels(conn).attendees(panel_id, [])
    assert [a.pseudonym for a in coming] == ["p-ada"]
    ada = coming[0]
    assert ada.locale == "en" and ada.token == tokens["p-ada"]
    assert ada.answer == "yes" and ada.ticket and TICKET.match(ada.ticket)
    assert [(a.pseudonym, a.answer, a.ticket) for a in likely][1] == ("p-dev", "maybe", None)
    assert nobody == []


async def test_support_needs_are_sorted_kept_only_while_coming_and_erased_when_over(
    db: Database,
) -> None:
    await add_people(db, SIX[:3])
    panel_id = await new_panel(db, capacity=2)
    tokens = await invite(db, panel_id, SIX[:3])
    await respond(db, tokens["p-ada"], "yes")
    await respond(db, tokens["p-bea"], "maybe")
    async with db.transaction() as conn:
        panels = Panels(conn)
        assert await panels.set_support_needs(tokens["p-ada"], ["travel", "childcare", "travel"])
        assert await panels.set_support_needs(tokens["p-bea"], ["travel"])
        # not coming: nothing to arrange
        assert not await panels.set_support_needs(tokens["p-cal"], ["travel"])
        with pytest.raises(TypeError):
            await panels.set_support_needs(tokens["p-ada"], "travel")
        invitation = await panels.invitation(tokens["p-ada"])
    assert invitation is not None and invitation.support_needs == ("childcare", "travel")

    # maybe keeps what was asked for
    kept = await respond(db, tokens["p-bea"], "yes")
    assert kept.invitation.support_needs == ("travel",)

    async with db.transaction() as conn:
        panels = Panels(conn)
        assert await panels.mark_over(panel_id, NOW + 8 * DAY) == 2
        assert await panels.mark_over(panel_id, NOW + 8 * DAY) == 0
        assert not await panels.set_support_needs(tokens["p-ada"], ["travel"])
        panel = await panels.get(panel_id)
    assert panel is not None and panel.status == "over"
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT COUNT(*) FROM panel_invitations WHERE support_needs IS NOT NULL"
        ) as cursor,
    ):
        assert (await cursor.fetchone())[0] == 0
    assert (await respond(db, tokens["p-cal"], "yes", NOW + HOUR)).closed


async def test_an_interpreter_s_language_is_kept_only_with_the_interpreter_ticked(
    db: Database,
) -> None:
    """The language needs Interpreter ticked; it goes when the tick goes, when the place is
    given up, and for everyone once the panel is over, as the needs do."""
    await add_people(db, SIX[:3])
    panel_id = await new_panel(db, capacity=3)
    tokens = await invite(db, panel_id, SIX[:3])
    for pseudonym in ("p-ada", "p-bea"):
        await respond(db, tokens[pseudonym], "yes")

    async def language(pseudonym: str) -> str | None:
        async with db.read() as conn:
            invitation = await Panels(conn).invitation(tokens[pseudonym])
        assert invitation is not None
        return invitation.interpreter_language

    async with db.transaction() as conn:
        panels = Panels(conn)
        assert not await panels.set_interpreter_language(tokens["p-ada"], "pl")  # not ticked
        for pseudonym in ("p-ada", "p-bea"):
            assert await panels.set_support_needs(tokens[pseudonym], ["interpreter", "travel"])
            assert await panels.set_interpreter_language(tokens[pseudonym], "pl")
        assert not await panels.set_interpreter_language(tokens["p-cal"], "pl")  # not coming
        # The organiser told of the interpreter hears of a new language at the next Done.
        assert await panels.note_needs_told(tokens["p-bea"], ["interpreter"]) == ("interpreter",)
        assert await panels.set_interpreter_language(tokens["p-bea"], "pl")  # the same
        assert await panels.note_needs_told(tokens["p-bea"], ["interpreter"]) == ()
        assert await panels.set_interpreter_language(tokens["p-bea"], "ro")
        assert await panels.note_needs_told(tokens["p-bea"], ["interpreter"]) == ("interpreter",)
        assert await panels.set_interpreter_language(tokens["p-bea"], "pl")
        assert await panels.set_support_needs(tokens["p-ada"], ["travel"])  # unticked
        tickets = await panels.tickets(panel_id)
    assert await language("p-ada") is None and await language("p-bea") == "pl"
    assert {language for _, _, language in tickets} == {None, "pl"}

    await respond(db, tokens["p-bea"], "cancel")
    assert await language("p-bea") is None
    await respond(db, tokens["p-bea"], "yes")
    async with db.transaction() as conn:
        panels = Panels(conn)
        assert await panels.set_support_needs(tokens["p-bea"], ["interpreter"])
        assert await panels.set_interpreter_language(tokens["p-bea"], "bsl")
        assert await panels.mark_over(panel_id, NOW + 8 * DAY) >= 1
    assert await language("p-bea") is None


async def test_each_need_is_passed_to_the_organiser_once_and_forgotten_with_the_needs(
    db: Database,
) -> None:
    await add_people(db, SIX[:2])
    panel_id = await new_panel(db, capacity=2)
    tokens = await invite(db, panel_id, SIX[:2])
    for pseudonym in ("p-ada", "p-bea"):
        await respond(db, tokens[pseudonym], "yes")

    async def told() -> list[tuple[str, str | None]]:
        async with (
            db.read() as conn,
            conn.execute(
                "SELECT pseudonym, needs_told FROM panel_invitations ORDER BY pseudonym"
            ) as cursor,
        ):
            return [(str(r[0]), r[1]) for r in await cursor.fetchall()]

    async with db.transaction() as conn:
        panels = Panels(conn)
        assert await panels.note_needs_told(tokens["p-ada"], ["interpreter"]) == ("interpreter",)
        assert await panels.note_needs_told(tokens["p-ada"], ["interpreter"]) == ()
        assert await panels.note_needs_told(tokens["p-ada"], ["interpreter", "access"]) == (
            "access",
        )
        assert await panels.note_needs_told(tokens["p-bea"], ["childcare"]) == ("childcare",)
        assert await panels.note_needs_told("no-such-token", ["travel"]) == ()
    assert await told() == [("p-ada", '["access","interpreter"]'), ("p-bea", '["childcare"]')]
    # A need unticked is no longer one the organiser was told of (nor shown so in /mydata);
    # ticked again, it is passed on again.
    async with db.transaction() as conn:
        assert await Panels(conn).set_support_needs(tokens["p-ada"], ["interpreter", "travel"])
    assert (await told())[0] == ("p-ada", '["interpreter"]')
    async with db.transaction() as conn:
        assert await Panels(conn).set_support_needs(tokens["p-bea"], [])
        assert await Panels(conn).note_needs_told(tokens["p-ada"], ["access"]) == ("access",)
    assert await told() == [("p-ada", '["access","interpreter"]'), ("p-bea", None)]
    async with db.transaction() as conn:
        assert await Panels(conn).note_needs_told(tokens["p-bea"], ["childcare"]) == ("childcare",)

    # Saying no drops the needs and what was told of them: a yes later asks afresh.
    await respond(db, tokens["p-bea"], "no")
    assert await told() == [("p-ada", '["access","interpreter"]'), ("p-bea", None)]
    async with db.transaction() as conn:
        assert await Panels(conn).mark_over(panel_id, NOW + 8 * DAY) == 1
    assert await told() == [("p-ada", None), ("p-bea", None)]


async def test_cancelling_a_panel_erases_needs_and_keeps_its_status_when_marked_over(
    db: Database,
) -> None:
    await add_people(db, SIX[:1])
    panel_id = await new_panel(db)
    tokens = await invite(db, panel_id, SIX[:1])
    await respond(db, tokens["p-ada"], "yes")
    async with db.transaction() as conn:
        panels = Panels(conn)
        await panels.set_support_needs(tokens["p-ada"], ["travel"])
        assert await panels.cancel(panel_id, NOW + 1)
        invitation = await panels.invitation(tokens["p-ada"])
        assert await panels.mark_over(panel_id, NOW + 8 * DAY) == 0
        panel = await panels.get(panel_id)
    assert invitation is not None and invitation.support_needs == ()
    assert invitation.answer == "yes" and invitation.ticket  # still told it is off
    assert panel is not None and panel.status == "cancelled"


async def test_upcoming_counts_answers_and_requested_support(db: Database) -> None:
    await add_people(db, SIX)
    await add_people(db, ["p-gus"], region="wales")
    later = await new_panel(db, capacity=2, starts_at=NOW + 9 * DAY, title="Later")
    await new_panel(db, capacity=5, starts_at=NOW + 2 * DAY, title="Sooner")
    cancelled = await new_panel(db, starts_at=NOW + 3 * DAY, title="Off")
    past = await new_panel(db, starts_at=NOW - DAY, title="Past")
    wales = await new_panel(db, region="wales", starts_at=NOW + 4 * DAY, title="Cymru")
    async with db.transaction() as conn:
        await Panels(conn).cancel(cancelled, NOW)
    tokens = await invite(db, later, SIX)
    await invite(db, past, SIX[:1])
    await invite(db, wales, ["p-gus"])
    for pseudonym, choice in [
        ("p-ada", "yes"),
        ("p-bea", "yes"),
        ("p-cal", "yes"),  # waits
        ("p-dev", "maybe"),
        ("p-eli", "no"),
    ]:
        await respond(db, tokens[pseudonym], choice)
    async with db.transaction() as conn:
        panels = Panels(conn)
        await panels.set_support_needs(tokens["p-ada"], ["travel", "childcare"])
        await panels.set_support_needs(tokens["p-cal"], ["travel"])  # waiting: not counted
        await panels.set_support_needs(tokens["p-dev"], ["travel"])

    async with db.read() as conn:
        london = await Panels(conn).upcoming(["london"], NOW)
        everywhere = await Panels(conn).upcoming(None, NOW)
        nowhere = await Panels(conn).upcoming([], NOW)
        one = await Panels(conn).summary(later)
    assert [s.panel.title for s in london] == ["Sooner", "Later"]
    assert [s.panel.title for s in everywhere] == ["Sooner", "Cymru", "Later"]
    assert nowhere == []
    empty, summary = london
    assert (empty.yes, empty.invited, empty.support_requested) == (0, 0, {})
    assert summary == one
    assert (summary.yes, summary.maybe, summary.waiting, summary.no) == (2, 1, 1, 1)
    assert (summary.cancelled, summary.invited) == (0, 1)
    assert summary.support_requested == {"childcare": 1, "travel": 2}
    assert summary.panel.support_offered == ("travel", "childcare")
    assert summary.panel.capacity == 2 and summary.panel.organiser == "s-organiser"


# The property: whatever order ~8 people answer in, a capacity-3 panel is never overbooked,
# tickets go with places and only with places, and nobody waits while a place is free. A
# small model of the rules runs alongside and must agree on every answer and promotion.

PEOPLE = [f"p-{name}" for name in ("ada", "bea", "cal", "dev", "eli", "fay", "gus", "hal")]
CAPACITY = 3
STEP = st.tuples(
    st.integers(0, len(PEOPLE) - 1),
    # 'yes' three times as often: the waiting list only gets interesting once the panel is full
    st.sampled_from(["yes", "yes", "yes", "maybe", "no", "cancel", "needs"]),
    st.integers(0, 1),  # how far the clock moves: 0 makes ties, broken by invitation order
)


@dataclass
class Model:
    answer: dict[int, str] = field(default_factory=lambda: dict.fromkeys(range(8), "invited"))
    answered_at: dict[int, int] = field(default_factory=dict)
    needs: dict[int, bool] = field(default_factory=lambda: dict.fromkeys(range(8), False))

    def respond(self, who: int, choice: str, now: int) -> tuple[int | None, int | None]:
        """Apply an answer; returns (who was promoted, waiting position)."""
        before = self.answer[who]
        if choice == "needs":
            self.needs[who] = self.needs[who] or before in ("yes", "maybe", "waiting")
            return None, None
        after = before
        if choice == "yes" and before not in ("yes", "waiting"):
            after = "yes" if self.count("yes") < CAPACITY else "waiting"
        elif choice in ("maybe", "no") and before != choice:
            after = choice
        elif choice == "cancel" and before in ("yes", "maybe", "waiting"):
            after = "cancelled"
        if after != before:
            self.answer[who], self.answered_at[who] = after, now
            if after in ("no", "cancelled"):
                self.needs[who] = False
        promoted = None
        if before == "yes" and after != "yes":
            queue = self.queue()
            if queue:
                promoted = queue[0]
                self.answer[promoted], self.answered_at[promoted] = "yes", now
        position = self.queue().index(who) + 1 if self.answer[who] == "waiting" else None
        return promoted, position

    def count(self, answer: str) -> int:
        return sum(a == answer for a in self.answer.values())

    def queue(self) -> list[int]:
        waiting = [i for i, a in self.answer.items() if a == "waiting"]
        return sorted(waiting, key=lambda i: (self.answered_at[i], i))


async def play(db: Database, steps: list[tuple[int, str, int]]) -> None:
    panel_id = await new_panel(db, capacity=CAPACITY)
    tokens = [(await invite(db, panel_id, [p]))[p] for p in PEOPLE]
    model, now = Model(), NOW
    for who, choice, tick in steps:
        now += tick
        expected_promoted, expected_position = model.respond(who, choice, now)
        async with db.transaction() as conn:
            panels = Panels(conn)
            if choice == "needs":
                await panels.set_support_needs(tokens[who], ["travel"])
            else:
                outcome = await panels.respond(tokens[who], choice, now)
                promoted = (
                    None if outcome.promoted is None else PEOPLE.index(outcome.promoted.pseudonym)
                )
                assert (promoted, outcome.waiting_position) == (
                    expected_promoted,
                    expected_position,
                )
            async with conn.execute(
                "SELECT pseudonym, answer, ticket, support_needs, answered_at "
                "FROM panel_invitations "
                "WHERE panel_id = ? ORDER BY id",
                (panel_id,),
            ) as cursor:
                rows = await cursor.fetchall()
        assert [r[1] for r in rows] == [model.answer[i] for i in range(len(PEOPLE))]
        assert [r[3] is not None for r in rows] == [model.needs[i] for i in range(len(PEOPLE))]
        assert [r[4] for r in rows] == [model.answered_at.get(i) for i in range(len(PEOPLE))]
        yes = [r for r in rows if r[1] == "yes"]
        assert len(yes) <= CAPACITY
        assert all(r[2] is not None and TICKET.match(r[2]) for r in yes)
        assert all(r[2] is None for r in rows if r[1] != "yes")
        assert len({r[2] for r in yes}) == len(yes)
        if any(r[1] == "waiting" for r in rows):
            assert len(yes) == CAPACITY


def test_places_are_never_overbooked_whatever_the_order_of_answers(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    database = loop.run_until_complete(Database.open(str(tmp_path / "property.db")))
    try:
        loop.run_until_complete(database.migrate())
        loop.run_until_complete(add_people(database, PEOPLE))

        @settings(max_examples=150, deadline=None)
        @given(st.lists(STEP, min_size=10, max_size=60))
        def check(steps: list[tuple[int, str, int]]) -> None:
            loop.run_until_complete(play(database, steps))

        check()
    finally:
        loop.run_until_complete(database.close())
        loop.close()


async def test_a_freed_place_skips_people_who_blocked_the_bot_or_said_no_to_panels(
    db: Database,
) -> None:
    """Someone who cannot be told, or no longer wants invitations, would hold the place
    without knowing while others wait."""
    await add_people(db, SIX[:5])
    panel_id = await new_panel(db, capacity=1)
    tokens = await invite(db, panel_id, SIX[:5])
    await respond(db, tokens["p-ada"], "yes")
    for offset, who in enumerate(("p-bea", "p-cal", "p-dev"), start=1):
        await respond(db, tokens[who], "yes", NOW + HOUR + offset)
    async with db.transaction() as conn:
        chat_of_bea = await People(conn).get("p-bea")
        assert chat_of_bea is not None
        await People(conn).set_reachable(chat_of_bea.chat_id, False, NOW + HOUR)
        await ConsentLedger(conn).record("p-cal", "panel_invitations", False, "v1", NOW + HOUR)
    freed = await respond(db, tokens["p-ada"], "cancel", NOW + 2 * HOUR)
    assert freed.promoted is not None and freed.promoted.pseudonym == "p-dev"


async def test_an_edit_since_does_not_hide_the_organiser_s_message_as_the_last_sent(
    db: Database,
) -> None:
    """A typed reply goes to the organiser while their message is the last the bot sent
    the person: a silent edit since (an update taken back) is not a message they saw."""
    async with db.transaction() as conn:
        broadcasts = Broadcasts(conn)
        for kind, subject, outbox_kind, sent_at in (
            ("panel_message", "panel:1", "message", 100),
            ("update_withdrawal", "update:5", "edit", 200),
        ):
            made = await broadcasts.create(
                kind, subject, "london", "s", [(7, {"text": "-"})], None, 0, outbox_kind=outbox_kind
            )
            await conn.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ? WHERE broadcast_id = ?",
                (sent_at, made),
            )
        assert await broadcasts.latest_sent_to(7, 0) == ("panel_message", "panel:1")
