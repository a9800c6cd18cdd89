"""Panels end to end: a staff member creates one in Telegram, people answer, the waiting
list moves, the date changes, messages are relayed, reminders go out across a restart.

The real bot (python-telegram-bot, storage, sender, scheduler) talks HTTP to the local Bot
API server; time is a manual clock moved by the test. Everyone here is invented."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import pytest

from bot import panels as panels_module
from bot.broadcasts import PROGRESS_JOB
from bot.conversation import Actor
from bot.local_api import FakePerson, LocalBotApi, SentMessage
from bot.panels import CORRECT_JOB, INVITE_JOB
from bot.runtime import Runtime
from state_machines.session import Session
from storage.clock import ManualClock
from storage.panels import Panels
from storage.people import ConsentLedger, People, Sessions
from storage.queues import Job
from storage.staff import StaffRoles
from tests.harness import Chat, Records, eventually, hold_jobs, running_bot, settled

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = 86_400

ORGANISER = FakePerson(user_id=710000001, first_name="Orla", language_code="en")
WALES_STAFF = FakePerson(user_id=710000002, first_name="Wyn", language_code="en")
AMARA = FakePerson(user_id=710000011, first_name="Amara", language_code="en")
BILAL = FakePerson(user_id=710000012, first_name="Bilal", language_code="en")
CARYS = FakePerson(user_id=710000013, first_name="Carys", language_code="cy")
DEV = FakePerson(user_id=710000014, first_name="Dev", language_code="en")
ELLIS = FakePerson(user_id=710000015, first_name="Ellis", language_code="en")
COHORT = [AMARA, BILAL, CARYS, DEV, ELLIS]
LEE = FakePerson(user_id=710000003, first_name="Lee", language_code="en")  # London staff


async def set_up_people(api: LocalBotApi, runtime: Runtime) -> None:
    """Orla is London staff, Wyn is Wales staff; five people in London said yes to panels
    (Carys reads Welsh). As onboarding and `roles grant` would leave them."""
    now = runtime.clock.now_ms()
    pseudonym = runtime.service.pseudonym_of
    for person in COHORT:
        api.add_chat(person)  # they have talked to the bot before
    async with runtime.db.transaction() as conn:
        for person in COHORT:
            who = pseudonym(person.user_id)
            locale = "cy" if person is CARYS else "en"
            await People(conn).touch(who, person.chat_id, locale, now)
            await People(conn).set_region(who, "london", now)
            await ConsentLedger(conn).record(who, "panel_invitations", True, "v1", now)
        roles = StaffRoles(conn)
        await roles.grant(pseudonym(ORGANISER.user_id), "staff", "london", False, "cli", now)
        await roles.grant(pseudonym(WALES_STAFF.user_id), "staff", "wales", False, "cli", now)


async def create_panel(staff: Chat, capacity: str = "2") -> SentMessage:
    """/panel_new through to the preview; returns the preview."""
    assert "What is it called" in (await staff.say("/panel_new")).text
    assert "When is it" in (await staff.say("Housing panel")).text
    assert "cannot read that date" in (await staff.say("next week sometime")).text
    assert "Where is it" in (await staff.say("3/12/2026 14:00")).text
    assert "How many places" in (await staff.say("Town hall, Bute Street")).text
    # Staff of one area (London) are not asked which: then the title in Welsh (or Skip).
    assert "title in Welsh, or tap Skip" in (await staff.say(capacity)).text
    assert "in Welsh?" in (await staff.tap("Skip")).text
    assert "What help" in (await staff.tap("Skip")).text
    await staff.toggle("Travel costs")
    await staff.toggle("Childcare")
    chosen = await staff.tap("Done")
    assert "People it will go to now: 5." in chosen.text  # London's five, not Orla
    return chosen


async def invite_the_cohort(api: LocalBotApi) -> Chat:
    """The organiser makes a panel of 10 places and invites the area; returns the
    organiser's chat."""
    staff = Chat(api, ORGANISER)
    await create_panel(staff, capacity="10")
    await staff.tap("Send the invite")
    return staff


async def amara_takes_a_place(api: LocalBotApi, staff: Chat) -> tuple[Chat, SentMessage]:
    """The organiser sends the invite made; Amara says yes. Returns her chat, and the
    answer with her ticket."""
    await staff.tap("Send the invite")
    amara = Chat(api, AMARA)
    await amara.expect(1)
    return amara, await amara.tap("Yes, I can come")


async def each_invited(api: LocalBotApi) -> dict[int, Chat]:
    """Everyone in the cohort's chat (by user id), once each has their invitation."""
    chats = {p.user_id: Chat(api, p) for p in COHORT}
    for chat in chats.values():
        await chat.expect(1)
    return chats


# Invitations whose message id is kept (migration 0024): sent, and correctable.
KEPT = "SELECT COUNT(*) FROM panel_invitations WHERE message_id IS NOT NULL"


async def invite_and_keep(api: LocalBotApi, runtime: Runtime) -> tuple[Chat, Records]:
    """The organiser invites the cohort; returns once every invitation went out and its
    message id is kept (the organiser's chat, and the records)."""
    staff = await invite_the_cohort(api)
    records = Records(runtime.settings)
    await eventually(lambda: records.query(KEPT) == [(len(COHORT),)])
    return staff, records


async def amara_about_to_say_no(api: LocalBotApi) -> Chat:
    """Amara opens /privacy and taps "Invite me to panels": the No that withdraws the
    consent is one tap away, for the test to press when it has set the scene."""
    amara = Chat(api, AMARA)
    await amara.say("/privacy")
    await amara.tap("Invite me to panels")
    return amara


MEG = FakePerson(user_id=710000004, first_name="Meg", language_code="en")  # to be a manager


async def meg_has_written(api: LocalBotApi) -> tuple[FakePerson, Chat]:
    """Meg, London's manager to be, has written to the bot (it cannot write first)."""
    meg = Chat(api, MEG)
    await meg.say("/help")
    await meg.expect(1)
    return MEG, meg


def texts(chat: Chat) -> list[str]:
    return [m.text or "" for m in chat.messages]


async def test_a_panel_from_creation_to_waiting_list_promotion(
    api: LocalBotApi, tmp_path: Path
) -> None:
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff = Chat(api, ORGANISER)
        preview = await create_panel(staff)
        assert "Housing panel" in preview.text
        assert "Thursday 3 December 2026, 14:00" in preview.text  # Europe/London, by Babel
        assert "Travel costs, Childcare" in preview.text
        created = await staff.tap("Send the invite")
        assert "invite is going to: 5." in created.text

        chats = {p.user_id: Chat(api, p) for p in COHORT}
        for chat in chats.values():
            await chat.expect(1)
        assert "You are invited to a panel: Housing panel" in chats[AMARA.user_id].messages[0].text
        welsh = chats[CARYS.user_id].messages[0].text or ""
        assert "Rhagfyr" in welsh and "You are invited" not in welsh  # her language

        amara, bilal, dev, ellis = (chats[p.user_id] for p in (AMARA, BILAL, DEV, ELLIS))
        explained = await amara.tap("I don't understand")  # what a panel is; then ask again
        assert "A panel is a meeting" in explained.text and explained.text.endswith("come?")
        assert "Yes, I can come" in str(explained.reply_markup)
        held = await amara.tap("Yes, I can come")
        clock.advance(60)  # people answer one after another: the queue keeps that order
        assert "You have a place" in held.text
        ticket_a = held.text.split("Your ticket is ")[1][:7]
        assert len(ticket_a) == 7 and ticket_a[3] == "-"
        bilal_place = await bilal.tap("Yes, I can come")
        assert "You have a place" in bilal_place.text
        ticket_b = bilal_place.text.split("Your ticket is ")[1][:7]
        assert "number 1 on the waiting list" in (await dev.tap("Yes, I can come")).text
        clock.advance(60)
        assert "number 2 on the waiting list" in (await ellis.tap("Yes, I can come")).text

        # Support needs: explained if asked ("I don't understand" under them), ticked in
        # place on the same message, then saved. Help the panel does not offer can be
        # asked for too ("we will ask"): it is what Bilal needs.
        helped = await bilal.tap("I don't understand")
        assert "Interpreter: someone who speaks your language" in helped.text
        assert "You have a place" in helped.text and "Travel costs" in str(helped.reply_markup)
        ticked = await bilal.toggle("Travel costs")
        assert ticked.message_id == helped.message_id
        assert "✓ Travel costs" in str(ticked.reply_markup)
        assert "not on offer yet" in (ticked.text or "")
        # An interpreter: in which language? Asked on the same message, each language
        # named in itself too; the help comes back with it.
        asked_language = await bilal.toggle("Interpreter (we will ask)")
        assert "Which language do you need?" in (asked_language.text or "")
        assert ticket_b in (asked_language.text or "")  # the ticket stays in view
        assert "British Sign Language" in str(asked_language.reply_markup)
        ticked = await bilal.toggle("polski (Polish)")
        assert ticked.message_id == helped.message_id
        assert "✓ Interpreter: Polish (we will ask)" in str(ticked.reply_markup)
        # Done: the help not on offer goes to Orla at once (the ticket list waited for her to
        # look), once, naming his ticket, with Answer to tell him it is sorted.
        staff_had = len(staff.messages)
        done = await bilal.tap("Done")
        assert "Travel costs, Interpreter: Polish" in done.text
        assert "Not on offer yet: Interpreter: Polish. We have asked the staff who run" in (
            done.text
        )
        asked = await staff.expect(staff_had + 1)
        assert f"Ticket {ticket_b} needs help to come to Housing panel: Interpreter: Polish." in (
            asked.text
        )
        assert "Travel costs" not in asked.text  # on offer: hers to arrange anyway
        assert str(BILAL.user_id) not in str(asked.reply_markup) + asked.text
        assert "Not on offer yet" not in (await bilal.tap("Done")).text  # asked once only
        await settled(api, Records(runtime.settings))
        assert len(staff.messages) == staff_had + 1
        bilal_had = len(bilal.messages)
        await staff.tap("Answer")
        await staff.say("We have booked an interpreter for you.")
        assert "booked an interpreter" in (await bilal.expect(bilal_had + 1)).text
        # His data says what was passed on, and to whom.
        [his] = (await bilal.mydata_file())["panels"]
        assert his["help_asked_for"] == ["interpreter", "travel"]
        assert his["interpreter_language"] == "pl"
        assert his["help_passed_to_organiser"] == ["interpreter"]

        # Amara gives her place back: Dev (first waiting) gets it, and a ticket; Ellis waits.
        assert "Your place is cancelled" in (await amara.tap("Cancel my place")).text
        freed = await dev.expect(3)
        assert "A place came up" in freed.text and "Your ticket is" in freed.text
        assert ticket_a not in freed.text
        records = Records(runtime.settings)
        answers = dict(
            records.query("SELECT pseudonym, answer FROM panel_invitations ORDER BY id")  # type: ignore[arg-type]
        )
        assert sorted(answers.values()) == ["cancelled", "invited", "waiting", "yes", "yes"]

        # /panels shows the counts and the help asked for, with no names.
        summary = await staff.say("/panels")
        assert "Yes: 2 of 2 places" in summary.text and "Waiting list: 1" in summary.text
        assert "Cancelled: 1" in summary.text  # Amara
        assert "Travel costs 1" in summary.text and "Interpreter 1" in summary.text
        tickets = await staff.tap("Tickets")
        assert "places taken: 2." in tickets.text and ticket_a not in tickets.text
        # By ticket, the help each asked for: what the organiser arranges for the day.
        lines = tickets.text.splitlines()
        assert f"{ticket_b}: Travel costs, Interpreter: Polish (not on offer: please sort it)" in (
            lines
        )
        ticket_d = freed.text.split("Your ticket is ")[1][:7]
        assert ticket_d in lines  # Dev asked for nothing
        # Other staff of the area see the codes, not the help (it says a lot about a life).
        api.add_chat(LEE)
        async with runtime.db.transaction() as conn:
            lee_is = runtime.service.pseudonym_of(LEE.user_id)
            await People(conn).touch(lee_is, LEE.chat_id, "en", clock.now_ms())
            await StaffRoles(conn).grant(lee_is, "staff", "london", False, "cli", 0)
        lee = Chat(api, LEE)
        listed = await lee.say("/panels")  # not in the summary either: with the codes, it
        assert "Interpreter" not in listed.text  # would say whose need it is
        assert "only the one who runs it and managers see this" in listed.text
        seen_by_lee = (await lee.tap("Tickets")).text.splitlines()
        assert ticket_b in seen_by_lee and ticket_d in seen_by_lee
        assert "Travel costs" not in " ".join(seen_by_lee)

        # Bilal sends /stop: his place goes to Ellis, the next in the queue, and his
        # support needs are forgotten. He is told what he gave up, not left to find out
        # at the door.
        had = len(bilal.messages)
        await bilal.say("/stop")
        assert "A place came up" in (await ellis.expect(3)).text
        await bilal.expect(had + 2)
        told = " ".join(m.text for m in bilal.messages[had:])
        assert "no more messages" in told and "do not have your place at" in told
        bilal_row = records.query(
            "SELECT answer, support_needs FROM panel_invitations WHERE pseudonym = ?",
            records.pseudonym(BILAL),
        )
        assert bilal_row == [("cancelled", None)]


async def test_help_asked_for_once_the_panel_has_begun_goes_to_no_one(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """The invitation's help buttons tapped on the day, after the start (an old message):
    nothing to arrange any more, so the organiser is not asked to sort it."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff = Chat(api, ORGANISER)
        await create_panel(staff)
        amara, _ = await amara_takes_a_place(api, staff)
        await amara.toggle("Interpreter (we will ask)")
        skipped = await amara.toggle("Skip this")  # no language given: the need stays ticked
        assert "✓ Interpreter (we will ask)" in str(skipped.reply_markup)
        clock.advance(31 * DAY + 6 * 3600)  # Thursday 3 December, 15:00: it began at 14:00
        records = Records(runtime.settings)
        await settled(api, records)
        staff_had = len(staff.messages)
        assert "cannot answer this any more" in (await amara.tap("Done")).text
        assert "cannot answer this any more" in (await amara.tap("Childcare")).text
        await settled(api, records)
        assert len(staff.messages) == staff_had


async def test_a_language_chosen_after_the_organiser_was_told_is_passed_on_at_the_next_done(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Amara ticks Interpreter, then taps Done on a newer copy of her answer before choosing
    a language: Orla is asked for an interpreter, the language not known. Amara then
    chooses Polish on the question still open: the next Done tells Orla which, once."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff = Chat(api, ORGANISER)
        await create_panel(staff)
        amara, _ = await amara_takes_a_place(api, staff)
        question = await amara.toggle("Interpreter (we will ask)")
        assert "Which language do you need?" in (question.text or "")
        await amara.tap("Yes, I can come")  # her answer again: a new copy, with the help
        staff_had = len(staff.messages)
        await amara.tap("Done")
        told = await staff.expect(staff_had + 1)
        assert "needs help to come to Housing panel: Interpreter." in told.text

        chosen = await amara.toggle("polski (Polish)")  # the question left open above
        assert chosen.message_id == question.message_id
        await amara.tap("Done")
        told = await staff.expect(staff_had + 2)
        assert "needs help to come to Housing panel: Interpreter: Polish." in told.text
        await amara.tap("Done")
        await settled(api, Records(runtime.settings))
        assert len(staff.messages) == staff_had + 2  # told once of the language


async def test_more_places_go_to_the_waiting_list_and_fewer_than_taken_is_refused(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """The room is bigger than thought: Orla gives the panel a third place, and Dev, first
    on the waiting list, gets it with a ticket; Ellis still waits. One place, with two
    taken, is refused: a place given is not taken back."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff = Chat(api, ORGANISER)
        await create_panel(staff)  # 2 places
        await staff.tap("Send the invite")
        chats = await each_invited(api)
        amara, bilal, dev, ellis = (chats[p.user_id] for p in (AMARA, BILAL, DEV, ELLIS))
        for chat in (amara, bilal, dev):
            await chat.tap("Yes, I can come")
            clock.advance(60)
        await ellis.tap("Yes, I can come")

        await staff.say("/panels")
        asked = await staff.tap("Change the number of places")
        assert "Housing panel has 2 places now, and 2 are taken" in asked.text
        assert "Give Housing panel 1 places?" in (await staff.say("1")).text
        refused = await staff.tap("Yes, change it")
        assert "Nothing changed. 2 people have a place already." in refused.text

        await staff.say("/panels")
        await staff.tap("Change the number of places")
        await staff.say("3")
        done = await staff.tap("Yes, change it")
        assert "The panel has 3 places now. People given a place from the waiting list: 1." in (
            done.text
        )
        freed = await dev.expect(3)  # the invitation, "waiting list", the place
        assert "A place came up" in freed.text and "Your ticket is" in freed.text
        records = Records(runtime.settings)
        await settled(api, records)
        assert len(ellis.messages) == 2  # still waiting, not told anything new
        summary = await staff.say("/panels")
        assert "Yes: 3 of 3 places" in summary.text and "Waiting list: 1" in summary.text
        audit = [a for (a,) in records.query("SELECT action FROM audit_log")]
        assert audit.count("panel.places_changed") == 1


@pytest.mark.parametrize("comes_back", ["unblocks", "writes", "taps", "asks for her data"])
async def test_a_place_left_free_while_the_waiting_had_blocked_the_bot_goes_when_one_comes_back(
    api: LocalBotApi, tmp_path: Path, comes_back: str
) -> None:
    """Dev and Ellis wait for a place, and both block the bot. Amara gives hers back:
    nobody waiting can be told, so it stays free. Ellis unblocks the bot first: Dev waited
    longer but still cannot be told, so the place is Ellis's, with a ticket, without a
    tap. Dev, back later, finds the panel full again and is told nothing new. The same
    when Ellis just writes to the bot, asks for her data, or taps Yes again (Telegram's
    word of the unblocking lost): her Yes takes the place, and she is told once."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff = Chat(api, ORGANISER)
        await create_panel(staff)  # 2 places
        await staff.tap("Send the invite")
        chats = await each_invited(api)
        amara, bilal, dev, ellis = (chats[p.user_id] for p in (AMARA, BILAL, DEV, ELLIS))
        for chat in (amara, bilal, dev, ellis):
            await chat.tap("Yes, I can come")
            clock.advance(60)
        records = Records(runtime.settings)
        reachable = "SELECT reachable FROM people WHERE pseudonym = ?"
        for person in (DEV, ELLIS):
            api.block(person.chat_id)
            if comes_back == "unblocks" or person is DEV:
                api.send_my_chat_member(person, status="kicked")
            else:  # as the sender records a 403; Telegram's word of the unblocking is lost
                async with runtime.db.transaction() as conn:
                    await People(conn).set_reachable(person.chat_id, False, clock.now_ms())
            who = records.pseudonym(person)
            await eventually(lambda who=who: records.query(reachable, who) == [(0,)])

        await amara.tap("Cancel my place")
        await settled(api, records)
        summary = await staff.say("/panels")
        assert "Yes: 1 of 2 places" in summary.text and "Waiting list: 2" in summary.text

        api.unblock(ELLIS.chat_id)
        if comes_back == "taps":  # her own Yes again: the place, in turn
            assert "You have a place" in (await ellis.tap("Yes, I can come")).text
        else:
            if comes_back == "unblocks":
                api.send_my_chat_member(ELLIS, status="member")
            else:
                await ellis.say("/help" if comes_back == "writes" else "/mydata")

            def freed() -> list[str]:
                return [m.text or "" for m in ellis.messages if "A place came up" in (m.text or "")]

            await eventually(lambda: len(freed()) == 1)
            assert "Your ticket is" in freed()[0]
        api.unblock(DEV.chat_id)
        api.send_my_chat_member(DEV, status="member")
        await eventually(lambda: records.query(reachable, records.pseudonym(DEV)) == [(1,)])
        await settled(api, records)
        assert len(dev.messages) == 2  # still waiting, not told anything new
        summary = await staff.say("/panels")
        assert "Yes: 2 of 2 places" in summary.text and "Waiting list: 1" in summary.text


async def test_moving_and_cancelling_tell_everyone_coming_in_their_language(
    api: LocalBotApi, tmp_path: Path
) -> None:
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff = await invite_the_cohort(api)
        chats = await each_invited(api)
        amara, bilal, carys, dev = (chats[p.user_id] for p in (AMARA, BILAL, CARYS, DEV))
        await amara.tap("Yes, I can come")
        await bilal.tap("Maybe")
        await carys.tap(carys_yes(carys))
        await dev.tap("No, I can't come")

        await staff.say("/panels")
        asked = (await staff.tap("Change the date")).text
        assert "is on Thursday 3 December 2026, 14:00 now" in asked and "new date" in asked
        confirm = await staff.say("10/12/2026 18:30")
        assert "Thursday 10 December 2026, 18:30" in confirm.text
        assert "wait for a place" in confirm.text  # the waiting list is told too
        assert "tell the new time: 3." in (await staff.tap("Yes, move it")).text
        for chat in (amara, bilal):
            moved = await chat.expect(3)  # the invitation, their answer, the move
            assert "has moved" in moved.text and "10 December 2026, 18:30" in moved.text
        # Bilal said maybe: asked again, with the answers (no reminder may follow a move).
        assert "You said maybe. Can you come?" in bilal.messages[2].text
        assert "Yes, I can come" in str(bilal.messages[2].reply_markup)
        assert "Cancel my place" in str(amara.messages[2].reply_markup)
        moved_cy = await carys.expect(3)
        assert "Rhagfyr" in moved_cy.text and "has moved" not in moved_cy.text
        assert len(dev.messages) == 2  # said no: not told

        # Dev's invitation, as he has it before the panel is called off (the invitation is
        # then edited to say so, buttons gone, but a tap can be on its way already).
        invitation, yes = dev.find_button("Yes, I can come")
        await staff.say("/panels")
        await staff.tap("Cancel the panel")
        assert "People we will tell: 3." in (await staff.tap("Yes, cancel it")).text
        called_off = await amara.expect(4)
        assert "is cancelled" in called_off.text
        # After the cancellation, answers are refused kindly and nothing changes.
        api.press_button(DEV, invitation.message_id, yes)
        assert "cannot answer this any more" in (await dev.expect(3)).text
        records = Records(runtime.settings)
        assert records.query(
            "SELECT COUNT(*) FROM panel_invitations WHERE support_needs IS NOT NULL"
        ) == [(0,)]


async def test_a_new_place_is_told_to_everyone_coming_and_shown_on_the_invitations_sent(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """The room changed. Orla gives the panel its new place, and the place in Welsh.
    Everyone coming, unsure or waiting is told at once in their language (Carys reads the
    Welsh place); Dev, who said no, is not. A minute later every invitation already sent
    is edited to show the new place, saying what changed, still answerable: whoever reads
    an old invitation days later goes to the right room. /panels shows the new place."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff, records = await invite_and_keep(api, runtime)
        chats = await each_invited(api)
        amara, bilal, carys, dev, ellis = (chats[p.user_id] for p in COHORT)
        clock.advance(60)  # the invitations went out a minute before the change
        await amara.tap("Yes, I can come")
        await bilal.tap("Maybe")
        await carys.tap(carys_yes(carys))
        await dev.tap("No, I can't come")

        await staff.say("/panels")
        asked = await staff.tap("Change the place")
        assert "Housing panel is at Town hall, Bute Street now" in asked.text
        assert "in Welsh?" in (await staff.say("Room B12, 1 High Street")).text
        confirm = await staff.say("Ystafell B12, 1 Stryd Fawr")
        assert "Change where Housing panel is to Room B12, 1 High Street?" in confirm.text
        assert "tell the new place: 3." in (await staff.tap("Yes, change it")).text
        for chat in (amara, bilal):
            told = await chat.expect(3)  # the invitation, their answer, the new place
            assert "is in a new place now" in told.text
            assert "Where: Room B12, 1 High Street" in told.text
            assert "3 December 2026, 14:00" in told.text  # the time has not changed
        assert "Cancel my place" in str(amara.messages[2].reply_markup)
        assert "You said maybe. Can you come?" in bilal.messages[2].text
        assert "Yes, I can come" in str(bilal.messages[2].reply_markup)
        told_cy = await carys.expect(3)
        assert "Ystafell B12, 1 Stryd Fawr" in told_cy.text and "new place" not in told_cy.text

        clock.advance(61)  # corrections begin a minute after the change
        await runtime.scheduler.run_due()
        nothing_queued = (
            "SELECT (SELECT COUNT(*) FROM outbox WHERE status = 'pending') + (SELECT COUNT(*) "
            "FROM schedules WHERE kind = 'panel_correct' AND status = 'pending')"
        )
        await eventually(lambda: records.query(nothing_queued) == [(0,)])
        invitation = ellis.messages[0]
        assert invitation.edited and invitation.text is not None
        assert invitation.text.startswith("Changed: this panel is in a new place.")
        assert "Where: Room B12, 1 High Street" in invitation.text
        assert "Town hall" not in invitation.text
        assert "Yes, I can come" in str(invitation.reply_markup)  # still answerable
        assert "Ystafell B12" in (carys.messages[0].text or "")
        assert len(ellis.messages) == 1 and len(dev.messages) == 2  # edited; said no

        summary = await staff.say("/panels")
        assert "Room B12, 1 High Street" in summary.text and "Town hall" not in summary.text
        audit = [a for (a,) in records.query("SELECT action FROM audit_log")]
        assert audit.count("panel.place_changed") == 1


async def test_a_new_date_then_a_new_place_edit_each_invitation_once_saying_both(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Orla moves the panel, then changes the room before its invitations are corrected:
    the move's corrections give way to the place's, which say both changed, so each
    invitation is edited once. Giving the place or the date it has already changes
    nothing."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff, records = await invite_and_keep(api, runtime)
        ellis = (await each_invited(api))[ELLIS.user_id]
        clock.advance(60)  # the invitations went out a minute before the changes
        await staff.say("/panels")
        await staff.tap("Change the date")
        await staff.say("10/12/2026 18:30")
        await staff.tap("Yes, move it")
        clock.advance(30)
        await staff.say("/panels")
        await staff.tap("Change the place")
        await staff.say("Room B12, 1 High Street")
        await staff.tap("Skip")
        assert "tell the new place: 0." in (await staff.tap("Yes, change it")).text

        clock.advance(31)  # the move's corrections are due: they give way
        await runtime.scheduler.run_due()
        clock.advance(30)  # the new place's
        await runtime.scheduler.run_due()
        nothing_queued = (
            "SELECT (SELECT COUNT(*) FROM outbox WHERE status = 'pending') + (SELECT COUNT(*) "
            "FROM schedules WHERE kind = 'panel_correct' AND status = 'pending')"
        )
        await eventually(lambda: records.query(nothing_queued) == [(0,)])
        invitation = ellis.messages[0]
        assert invitation.edited and invitation.text is not None
        assert invitation.text.startswith("Changed: this panel has a new time and place.")
        assert "10 December 2026, 18:30" in invitation.text
        assert "Where: Room B12, 1 High Street" in invitation.text
        edits = "SELECT COUNT(*) FROM outbox WHERE kind = 'edit' AND chat_id = ?"
        assert records.query(edits, ELLIS.chat_id) == [(1,)]

        await staff.say("/panels")
        await staff.tap("Change the place")
        await staff.say("Room B12, 1 High Street")
        await staff.tap("Skip")
        same = await staff.tap("Yes, change it")
        assert "Nothing changed. That is where Housing panel is already." in same.text
        await staff.say("/panels")
        await staff.tap("Change the date")
        await staff.say("10/12/2026 18:30")
        same = await staff.tap("Yes, move it")
        assert "Nothing changed. That is when Housing panel is already." in same.text
        audit = [a for (a,) in records.query("SELECT action FROM audit_log")]
        assert audit.count("panel.place_changed") == 1 and audit.count("panel.moved") == 1


async def test_invitations_already_sent_show_the_panel_as_it_is_after_a_move_or_call_off(
    api: LocalBotApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An invitation can sit unread for days, and whoever reads it decides on the date it
    shows. A move edits every invitation already sent (in parts) to the new date, saying
    what changed, still answerable; calling the panel off edits them to say so, buttons
    gone. Edits, not new messages: nobody is told twice. Someone who said stop is not
    written to, and an invitation the person deleted is given up quietly."""
    monkeypatch.setattr(panels_module, "INVITE_BATCH", 2)  # four to correct: two parts each
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff, records = await invite_and_keep(api, runtime)
        chats = await each_invited(api)
        amara, bilal, carys, dev, ellis = (chats[p.user_id] for p in COHORT)
        clock.advance(60)  # the invitations went out a minute before the move
        await amara.tap("Yes, I can come")
        await bilal.say("/stop")
        api.delete_for_person(DEV, dev.messages[0].message_id)
        # Nothing left to send, and no later part of the corrections left to run.
        nothing_queued = (
            "SELECT (SELECT COUNT(*) FROM outbox WHERE status = 'pending') + (SELECT COUNT(*) "
            "FROM schedules WHERE kind = 'panel_correct' AND status = 'pending')"
        )

        await staff.say("/panels")
        await staff.tap("Change the date")
        await staff.say("10/12/2026 18:30")
        assert "tell the new time: 1." in (await staff.tap("Yes, move it")).text
        await amara.expect(3)  # the invitation, her place, the move
        clock.advance(61)  # corrections begin a minute after the change
        await runtime.scheduler.run_due()
        await eventually(lambda: records.query(nothing_queued) == [(0,)])
        for chat in (amara, ellis):
            invitation = chat.messages[0]
            assert invitation.edited and invitation.text is not None
            assert invitation.text.startswith("Changed: this panel has a new time.")
            assert "10 December 2026, 18:30" in invitation.text
            assert "3 December" not in invitation.text
        welsh = carys.messages[0]
        assert welsh.edited and (welsh.text or "").startswith("Newid:")
        assert len(ellis.messages) == 1 and len(carys.messages) == 1  # edited, not sent again
        assert not bilal.messages[0].edited  # said stop: not written to
        gone = "SELECT status, last_error FROM outbox WHERE kind = 'edit' AND chat_id = ?"
        assert records.query(gone, DEV.chat_id) == [("failed", "400: Message to edit not found")]

        # The corrected invitation still answers, with the new date.
        place = await ellis.tap("Yes, I can come")
        assert "You have a place" in place.text and "10 December 2026, 18:30" in place.text

        await staff.say("/panels")
        await staff.tap("Cancel the panel")
        await staff.tap("Yes, cancel it")
        await ellis.expect(3)  # the invitation, his place, the call-off
        clock.advance(61)
        await runtime.scheduler.run_due()
        await eventually(lambda: records.query(nothing_queued) == [(0,)])
        for chat in (amara, carys, ellis):
            invitation = chat.messages[0]
            assert invitation.reply_markup is None, "a called-off invitation takes no answer"
            assert "Changed:" not in (invitation.text or "")
            assert "Newid:" not in (invitation.text or "")
        assert "is cancelled" in (amara.messages[0].text or "")
        assert "wedi'i ganslo" in (carys.messages[0].text or "")
        assert not bilal.messages[0].edited
        parts = "SELECT status, COUNT(*) FROM schedules WHERE kind = 'panel_correct' GROUP BY 1"
        assert records.query(parts) == [("done", 4)]  # two parts for each change
        async with runtime.db.transaction() as conn:  # the day after: the ids are let go
            assert await Panels(conn).mark_over(1, clock.now_ms()) == 0
        assert records.query(KEPT) == [(0,)]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def change_the_panel(staff: Chat, change: str, to: str = "10/12/2026 18:30") -> None:
    """The organiser moves the panel (`to`) or calls it off, through /panels."""
    await staff.say("/panels")
    if change == "move":
        await staff.tap("Change the date")
        await staff.say(to)
        await staff.tap("Yes, move it")
    else:
        await staff.tap("Cancel the panel")
        await staff.tap("Yes, cancel it")


@pytest.mark.parametrize("second", ["move", "cancel"])
async def test_a_correction_part_still_to_run_does_nothing_once_the_panel_changed_again(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second: str
) -> None:
    """A move's later part of corrections, run after the panel moved again or was called
    off, edits nothing: it would put the older date back over the newer change (the
    newer change corrects every invitation from the first)."""
    monkeypatch.setattr(panels_module, "INVITE_BATCH", 2)
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        held = hold_jobs(runtime, CORRECT_JOB)  # later parts wait for the test
        await set_up_people(api, runtime)
        staff, records = await invite_and_keep(api, runtime)

        clock.advance(60)  # the invitations went out a minute before the move
        await change_the_panel(staff, "move")
        clock.advance(61)
        runtime.scheduler.wake()
        await eventually(lambda: len(held) == 1)
        await change_the_panel(staff, second, to="17/12/2026 18:30")  # moved again, or off
        clock.advance(61)
        runtime.scheduler.wake()
        await eventually(lambda: len(held) == 2)
        edits = "SELECT COUNT(*) FROM outbox WHERE kind = 'edit' AND priority = 2"
        before = records.query(edits)
        async with runtime.db.transaction() as conn:
            await runtime.panels.on_correct(conn, held[0], clock.now_ms())
        assert records.query(edits) == before, "the first move's part did nothing"
        async with runtime.db.transaction() as conn:
            await runtime.panels.on_correct(conn, held[1], clock.now_ms())
        assert records.query(edits)[0][0] == before[0][0] + 2  # the newer change's part


@pytest.mark.parametrize("second", ["move", "cancel"])
async def test_corrections_still_queued_stop_for_a_no_and_for_a_later_change(
    api: LocalBotApi, tmp_path: Path, second: str
) -> None:
    """A move's corrections wait (each edit failed once): Amara then says no to panel
    invitations, and hers is not sent; the panel is then moved again or called off, and
    the first move's stop, the second change's own corrections going out instead (not to
    Amara)."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        amara = await amara_about_to_say_no(api)
        staff, records = await invite_and_keep(api, runtime)
        clock.advance(60)
        for person in COHORT:
            api.fail_next("editMessageText", 500, retry_after=None, chat_id=person.chat_id)
        await change_the_panel(staff, "move")
        clock.advance(61)
        await runtime.scheduler.run_due()
        waiting = (
            "SELECT COUNT(*) FROM outbox WHERE kind = 'edit' AND priority = 2 "
            "AND status = 'pending' AND attempts = 1"
        )
        await eventually(lambda: records.query(waiting) == [(len(COHORT),)])

        message, data = amara.find_button("No")
        api.press_button(AMARA, message.message_id, data)
        await eventually(lambda: records.query(waiting) == [(len(COHORT) - 1,)])
        await change_the_panel(staff, second, to="17/12/2026 18:30")
        assert records.query(waiting) == [(0,)]
        clock.advance(61)
        await runtime.scheduler.run_due()
        clock.advance(3_600)  # long past every retry's time
        runtime.sender.wake()
        nothing_queued = "SELECT COUNT(*) FROM outbox WHERE status = 'pending'"
        await eventually(lambda: records.query(nothing_queued) == [(0,)])
        for person in (BILAL, CARYS, DEV, ELLIS):
            invitation = Chat(api, person).messages[0]
            assert invitation.edited, person.first_name
            text = invitation.text or ""
            if second == "move":
                assert "17 " in text and "10 " not in text, person.first_name
            else:
                assert invitation.reply_markup is None and "Changed:" not in text
        invitation_to_amara = next(m for m in amara.messages if "You are invited" in (m.text or ""))
        assert not invitation_to_amara.edited


# Invitations sent but not yet delivered: each failed once and waits for its retry (the
# manual clock stands still, so they wait until the test moves it on).
INVITATIONS_WAITING = (
    "SELECT COUNT(*) FROM outbox WHERE broadcast_id IS NOT NULL "
    "AND status = 'pending' AND attempts = 1"
)


async def invite_with_every_invitation_waiting(api: LocalBotApi, runtime: Runtime) -> Chat:
    """The organiser invites the cohort, and every invitation fails once (Telegram
    stumbling), so all of them wait, queued, for their retry. Returns the organiser."""
    for person in COHORT:
        api.fail_next("sendMessage", 500, retry_after=None, chat_id=person.chat_id)
    staff = await invite_the_cohort(api)
    records = Records(runtime.settings)
    await eventually(lambda: records.query(INVITATIONS_WAITING) == [(len(COHORT),)])
    return staff


async def test_calling_a_panel_off_stops_its_invitations_still_waiting_to_go(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """A region's invitations take minutes to go out (and wait longer when Telegram
    stumbles): calling the panel off meanwhile stops them, so nobody is invited to a panel
    that is not happening. Here every invitation failed once and waits for its retry."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff = await invite_with_every_invitation_waiting(api, runtime)
        records = Records(runtime.settings)

        await staff.say("/panels")
        await staff.tap("Cancel the panel")
        assert "People we will tell: 0." in (await staff.tap("Yes, cancel it")).text
        assert records.query("SELECT kind, status FROM broadcasts") == [
            ("panel_invitation", "cancelled")
        ]
        stopped = records.query("SELECT details FROM audit_log WHERE action = 'broadcast.stopped'")
        assert [json.loads(str(d))["not_sent"] for (d,) in stopped] == ["5"]

        clock.advance(3_600)  # long past every retry's time
        runtime.sender.wake()
        await runtime.scheduler.run_due()
        await eventually(lambda: "cancelled" in (staff.messages[-1].text or ""))
        for person in COHORT:
            assert api.messages(person.chat_id) == []


async def test_moving_a_panel_gives_its_invitations_still_waiting_to_go_the_new_date(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A region's invitations take minutes to go out: a panel moved meanwhile (its date
    was wrong) must not invite the rest to the old date. The invitations still queued are
    written again, in parts (two here), in each person's language, and their buttons still
    answer them."""
    monkeypatch.setattr(panels_module, "INVITE_BATCH", 2)
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        held = hold_jobs(runtime, CORRECT_JOB)  # run by hand once all are delivered
        await set_up_people(api, runtime)
        staff = await invite_with_every_invitation_waiting(api, runtime)
        await staff.say("/panels")
        await staff.tap("Change the date")
        await staff.say("10/12/2026 18:30")
        assert "tell the new time: 0." in (await staff.tap("Yes, move it")).text
        records = Records(runtime.settings)
        parts = "SELECT COUNT(*) FROM schedules WHERE kind = ? AND status = 'done'"
        await eventually(  # 2 with the move, then parts of 2 and 1
            lambda: records.query(parts, panels_module.REWORD_JOB) == [(2,)]
        )

        clock.advance(3_600)  # long past every retry's time
        runtime.sender.wake()
        chats = {p.user_id: Chat(api, p) for p in COHORT}
        for person, chat in chats.items():
            invitation = (await chat.expect(1)).text
            new_date = "10 Rhagfyr 2026" if person == CARYS.user_id else "10 December 2026"
            assert new_date in invitation and " 3 " not in invitation, person
        answer = await chats[AMARA.user_id].tap("Yes, I can come")
        assert "10 December 2026, 18:30" in answer.text
        assert len(chats[AMARA.user_id].messages) == 2  # one invitation, then her answer
        # They went out after the move, with its date: its corrections leave them alone
        # (no "Changed:" over an invitation that never showed the old date).
        await eventually(lambda: len(held) == 1)
        async with runtime.db.transaction() as conn:
            await runtime.panels.on_correct(conn, held[0], clock.now_ms())
        corrections = "SELECT COUNT(*) FROM outbox WHERE kind = 'edit' AND priority = 2"
        assert records.query(corrections) == [(0,)]


async def test_a_panel_moved_back_and_forth_invites_with_its_last_date(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moved to the 10th, back to the 3rd, then to the 10th again while its invitations
    wait to go: each move writes them all again (in parts of two), and the last date is
    the one that goes (the third move's parts once met the first's, finished, and stopped)."""
    monkeypatch.setattr(panels_module, "INVITE_BATCH", 2)
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff = await invite_with_every_invitation_waiting(api, runtime)
        records = Records(runtime.settings)
        parts = "SELECT COUNT(*) FROM schedules WHERE kind = ? AND status = 'done'"
        for n, when in enumerate(("10/12/2026 18:30", "3/12/2026 14:00", "10/12/2026 18:30")):
            clock.advance(0.1)  # moves a moment apart (the retries wait a second)
            await staff.say("/panels")
            await staff.tap("Change the date")
            await staff.say(when)
            await staff.tap("Yes, move it")
            await eventually(  # each move: 2 with it, then parts of 2 and 1
                lambda n=n: records.query(parts, panels_module.REWORD_JOB) == [(2 * (n + 1),)]
            )
        clock.advance(3_600)  # long past every retry's time
        runtime.sender.wake()
        for person in COHORT:
            invitation = (await Chat(api, person).expect(1)).text
            new_date = "10 Rhagfyr 2026" if person is CARYS else "10 December 2026"
            assert new_date in invitation, person.first_name


async def test_an_invitation_on_its_way_when_the_panel_moves_goes_again_with_the_new_date(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Amara's invitation is on its way to Telegram (held there) when the panel moves: it
    arrives with the old date, and is not recorded as sent, so it goes again with the new
    one (before, the old date stood: she has not answered, so no "moved" message comes)."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        on_its_way = api.hold("sendMessage", chat_id=AMARA.chat_id)
        staff = await invite_the_cohort(api)
        await asyncio.wait_for(on_its_way.arrived.wait(), 10)
        api.send_text(ORGANISER, "/panels")  # answered among the invite's progress messages
        await eventually(
            lambda: any("Change the date" in str(m.reply_markup) for m in staff.messages)
        )
        await staff.tap("Change the date")
        await staff.say("10/12/2026 18:30")
        assert "tell the new time: 0." in (await staff.tap("Yes, move it")).text
        on_its_way.release(deliver=True)
        amara = Chat(api, AMARA)
        second = await amara.expect(2)
        assert "3 December" in (amara.messages[0].text or "")  # the old, as it went
        assert "10 December 2026" in second.text
        records = Records(runtime.settings)
        await eventually(
            lambda: records.query("SELECT COUNT(*) FROM outbox WHERE status = 'pending'") == [(0,)]
        )
        assert len(amara.messages) == 2


async def amara_s_reminder_waits_for_a_retry(
    api: LocalBotApi, runtime: Runtime, clock: ManualClock
) -> tuple[Chat, Chat, Records]:
    """Orla invites the area and Amara takes a place; the day before, the reminders go out
    and Amara's fails once, waiting for its retry. Returns Orla's chat, Amara's and the
    records."""
    await set_up_people(api, runtime)
    staff = await invite_the_cohort(api)
    amara = Chat(api, AMARA)
    await amara.expect(1)
    await amara.tap("Yes, I can come")
    records = Records(runtime.settings)
    api.fail_next("sendMessage", 500, retry_after=None, chat_id=AMARA.chat_id)
    clock.set(datetime(2026, 12, 2, 14, 0, tzinfo=UTC))  # a day before
    runtime.scheduler.wake()
    waiting = "SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND attempts = 1"
    await eventually(lambda: records.query(waiting) == [(1,)])
    return staff, amara, records


async def test_moving_a_panel_stops_a_reminder_of_the_old_date_still_waiting_to_go(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """The day before, the reminder goes out; Amara's waits for a retry when the panel is
    moved. She is told of the move, and not reminded of the old date."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        staff, amara, records = await amara_s_reminder_waits_for_a_retry(api, runtime, clock)

        await staff.say("/panels")
        await staff.tap("Change the date")
        await staff.say("10/12/2026 18:30")
        assert "tell the new time: 1." in (await staff.tap("Yes, move it")).text
        clock.advance(3_600)
        runtime.sender.wake()
        moved = await amara.expect(3)
        assert "has moved" in moved.text
        reminders = "SELECT status FROM broadcasts WHERE kind = 'panel_reminder'"
        assert records.query(reminders) == [("cancelled",)]
        await eventually(
            lambda: records.query("SELECT COUNT(*) FROM outbox WHERE status = 'pending'") == [(0,)]
        )
    assert not any("A reminder" in (m.text or "") for m in amara.messages)


async def test_a_reminder_still_waiting_to_go_when_the_place_changes_gives_the_new_place(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """The day before, the reminder goes out; Amara's waits for a retry when the room
    changes. No later reminder would replace it (the date is the same), so it goes with
    the new place, ticket and all, and she is told of the change too."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        staff, amara, records = await amara_s_reminder_waits_for_a_retry(api, runtime, clock)

        await staff.say("/panels")
        await staff.tap("Change the place")
        await staff.say("Room B12, 1 High Street")
        await staff.tap("Skip")
        assert "tell the new place: 1." in (await staff.tap("Yes, change it")).text
        clock.advance(3_600)
        runtime.sender.wake()
        await amara.expect(4)  # the invitation, her place, the change, the reminder
        await eventually(
            lambda: records.query("SELECT COUNT(*) FROM outbox WHERE status = 'pending'") == [(0,)]
        )
    [reminder] = [m.text or "" for m in amara.messages if "A reminder" in (m.text or "")]
    assert "Where: Room B12, 1 High Street" in reminder and "Your ticket is" in reminder
    assert not any("Town hall" in (m.text or "") for m in amara.messages[2:])


async def test_saying_no_to_panel_invitations_cancels_an_invitation_still_queued(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """ "No" to panel invitations means from now: an invitation already queued to the person
    (waiting here for its retry) is not sent; everyone else's is."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        amara = await amara_about_to_say_no(api)
        shown_to_amara = len(amara.messages)
        await invite_with_every_invitation_waiting(api, runtime)
        records = Records(runtime.settings)

        message, data = amara.find_button("No")
        api.press_button(AMARA, message.message_id, data)
        await eventually(lambda: not records.current_consents(AMARA)["panel_invitations"])
        assert records.query(INVITATIONS_WAITING) == [(4,)]

        clock.advance(3_600)  # long past every retry's time
        runtime.sender.wake()
        for person in (BILAL, CARYS, DEV, ELLIS):
            await Chat(api, person).expect(1)
        summary = await amara.expect(shown_to_amara + 1)  # her choices, not the invitation
        assert "Invite me to panels: no" in summary.text
        queued = "SELECT COUNT(*) FROM outbox WHERE broadcast_id IS NOT NULL AND status = 'pending'"
        await eventually(lambda: records.query(queued) == [(0,)])
        assert len(amara.messages) == shown_to_amara + 1


async def test_a_reminder_missed_while_the_bot_was_down_is_not_sent_once_the_panel_began(
    api: LocalBotApi, tmp_path: Path
) -> None:
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        await invite_the_cohort(api)
        amara = Chat(api, AMARA)
        await amara.expect(1)
        await amara.tap("Yes, I can come")
    sent_before = len(amara.messages)

    # The bot was down from before the reminder's time until an hour into the panel.
    clock.set(datetime(2026, 12, 3, 15, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await runtime.scheduler.run_due()
        records = Records(runtime.settings)
        assert records.pending_jobs("panel_reminder") == 0  # it ran, and queued nothing
        assert records.query("SELECT kind FROM broadcasts WHERE kind = 'panel_reminder'") == []
        assert len(amara.messages) == sent_before


async def test_panels_lists_the_soonest_twenty_and_says_how_many_there_are(
    api: LocalBotApi, tmp_path: Path
) -> None:
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        now = clock.now_ms()
        async with runtime.db.transaction() as conn:
            for day in range(21, 0, -1):  # made latest first: listed soonest first
                starts_at = now + day * DAY * 1000
                await Panels(conn).create(
                    "london", f"Panel {day}", starts_at, "Online", 10, (), "p-org", now
                )
        staff = Chat(api, ORGANISER)
        await staff.say("/panels")
        note = await staff.expect(21)
        assert note.text == "These are the 20 soonest of the 21 panels coming up."
        listed = [m.text or "" for m in staff.messages[:20]]
        assert listed[0].startswith("Panel 1") and listed[19].startswith("Panel 20")
        assert not any(t.startswith("Panel 21") for t in listed)


def carys_yes(chat: Chat) -> str:
    """The Welsh label of the Yes button on Carys's invitation."""
    buttons = chat.messages[0].reply_markup or {}
    return str(buttons["inline_keyboard"][0][0]["text"])


async def test_the_reminder_goes_out_a_day_before_even_across_a_restart(
    api: LocalBotApi, tmp_path: Path
) -> None:
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        await invite_the_cohort(api)
        amara, bilal, dev, ellis = (Chat(api, p) for p in (AMARA, BILAL, DEV, ELLIS))
        for chat in (amara, bilal, dev, ellis):
            await chat.expect(1)
        await amara.tap("Yes, I can come")
        await bilal.tap("Maybe")
        await dev.tap("Yes, I can come")
        await dev.tap("Cancel my place")
        await ellis.tap("No, I can't come")
    sent_before = {c.person.user_id: len(c.messages) for c in (amara, bilal, dev, ellis)}

    # The bot was down; it comes back 23 hours before the panel (the reminder is due).
    clock.set(datetime(2026, 12, 2, 15, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        reminder = await amara.expect(sent_before[AMARA.user_id] + 1)
        assert "A reminder: Housing panel is tomorrow" in reminder.text
        assert "Your ticket is" in reminder.text
        maybe = await bilal.expect(sent_before[BILAL.user_id] + 1)
        assert "Can you come?" in maybe.text
        await runtime.scheduler.run_due()
        assert len(dev.messages) == sent_before[DEV.user_id]  # cancelled: no reminder
        assert len(ellis.messages) == sent_before[ELLIS.user_id]  # said no
        # Once over, the support needs are erased.
        clock.set(datetime(2026, 12, 4, 9, 0, tzinfo=UTC))
        await runtime.scheduler.run_due()
        records = Records(runtime.settings)
        assert records.query("SELECT status FROM panels") == [("over",)]
    # Run again: the reminder is not sent twice.
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await runtime.scheduler.run_due()
        assert len(amara.messages) == sent_before[AMARA.user_id] + 1


async def orla_writes_to_everyone_coming(
    staff: Chat, amara: Chat
) -> tuple[SentMessage, SentMessage]:
    """The organiser writes to everyone coming from /panels; returns her answer and the
    message as Amara (who took a place) gets it, with its Reply button."""
    await staff.say("/panels")
    await staff.tap("Write to them all")
    await staff.say("The minibus leaves the office at 13:15.")
    sent = await staff.tap("Send it")
    return sent, await amara.expect(3)  # after the invitation and her place


async def test_a_reply_typed_long_after_tapping_reply_is_not_passed_on(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Amara tapped Reply and put the phone down. What she types two hours later is not
    passed on word for word to the organiser (staff of her area); she is told to tap it
    again, and then it goes. The same for the organiser's Answer."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff = Chat(api, ORGANISER)
        await create_panel(staff)
        amara, _ = await amara_takes_a_place(api, staff)
        records = Records(runtime.settings)
        await orla_writes_to_everyone_coming(staff, amara)
        assert "Write your message" in (await amara.tap("Reply")).text
        clock.advance(2 * 3_600)
        staff_had = len(staff.messages)
        late = await amara.say("fed up with all of it today honestly")
        assert "over an hour ago" in late.text and "Housing panel" in late.text
        await settled(api, records)
        assert len(staff.messages) == staff_had
        await amara.tap("Reply")
        await amara.say("Can I bring my daughter?")
        reply = await staff.expect(staff_had + 1)
        assert "Can I bring my daughter?" in reply.text
        await staff.tap("Answer")
        clock.advance(2 * 3_600)
        amara_had = len(amara.messages)
        assert "over an hour ago" in (await staff.say("Yes, there is a creche.")).text
        await settled(api, records)
        assert len(amara.messages) == amara_had


async def test_messages_are_relayed_both_ways_without_ids(api: LocalBotApi, tmp_path: Path) -> None:
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff = Chat(api, ORGANISER)
        await create_panel(staff)
        amara, held = await amara_takes_a_place(api, staff)
        ticket = held.text.split("Your ticket is ")[1][:7]

        sent, relayed = await orla_writes_to_everyone_coming(staff, amara)
        assert "People it is going to: 1." in sent.text
        assert "The minibus leaves the office at 13:15." in relayed.text

        assert "Write your message" in (await amara.tap("Reply")).text
        staff_had = len(staff.messages)
        await amara.say("I will bring my daughter, is that OK?")
        reply = await staff.expect(staff_had + 1)
        assert f"Ticket {ticket} says this about Housing panel" in reply.text
        assert str(AMARA.user_id) not in str(reply.reply_markup) + reply.text
        await staff.tap("Answer")
        await staff.say("Yes, there is a creche.")
        answer = await amara.expect(6)
        assert "Yes, there is a creche." in answer.text
        assert str(ORGANISER.user_id) not in str(answer.reply_markup) + answer.text
        # A reply typed rather than sent with Reply goes to the organiser too.
        staff_had = len(staff.messages)
        await amara.say("Thank you, we will be at the office at 13:00")
        typed = await staff.expect(staff_had + 1)
        assert f"Ticket {ticket}" in typed.text and "we will be at the office" in typed.text
        # A risk message is signposted, and is not the organiser's to read; nor is a
        # "yes please" typed under the contact question (asked again, with its buttons).
        had = len(amara.messages)
        assert "116 123" in (await amara.say("i want to kill myself")).text
        await amara.expect(had + 2)  # and the contact question
        again = await amara.say("yes please")
        assert "tap one of the buttons" in again.text and "get in touch" in again.text
        await settled(api, Records(runtime.settings))
        assert len(staff.messages) == staff_had + 1
        # Once the bot has sent her something else of its own accord (the panel moved), a
        # word typed under it is not the organiser's to read either.
        clock.advance(3_601)  # the contact question is no longer waiting
        before = len(amara.messages)
        await change_the_panel(staff, "move", "10/12/2026 18:30")
        assert "has moved" in (await amara.expect(before + 1)).text
        await settled(api, Records(runtime.settings))  # its row marked sent (one reads first)
        staff_had = len(staff.messages)
        await amara.say("ok that is fine")  # (Amara was made in the database: not signed up)
        await settled(api, Records(runtime.settings))
        assert len(staff.messages) == staff_had


async def test_nothing_privileged_without_the_role_and_region(
    api: LocalBotApi, tmp_path: Path
) -> None:
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        amara = Chat(api, AMARA)
        assert "not available" in (await amara.say("/panel_new")).text
        assert "not available" in (await amara.say("/panels")).text
        staff = Chat(api, ORGANISER)
        await create_panel(staff)
        await staff.tap("Send the invite")
        await amara.expect(3)
        panel_id = Records(runtime.settings).query("SELECT id FROM panels")[0][0]

        # Wales staff, with forged buttons for a London panel: refused, nothing changes.
        wyn = Chat(api, WALES_STAFF)
        assert "no panels coming up" in (await wyn.say("/panels")).text  # not London's
        own = wyn.messages[-1].message_id
        for action in ("x", "r", "m", "t"):
            before = len(wyn.messages)
            api.press_button(WALES_STAFF, own, f"pm:{panel_id}:{action}")
            assert "not available" in (await wyn.expect(before + 1)).text
        # A participant pressing someone else's invitation button.
        bilal_token = Records(runtime.settings).query(
            "SELECT token FROM panel_invitations WHERE pseudonym = ?",
            runtime.service.pseudonym_of(BILAL.user_id),
        )[0][0]
        before = len(amara.messages)
        api.press_button(AMARA, amara.messages[0].message_id, f"pr:{bilal_token}:y")
        assert "not available" in (await amara.expect(before + 1)).text
        records = Records(runtime.settings)
        assert records.query("SELECT status FROM panels") == [("open",)]
        assert records.query(
            "SELECT COUNT(*) FROM panel_invitations WHERE answer != 'invited'"
        ) == [(0,)]
        actions = {a for (a,) in records.query("SELECT action FROM audit_log")}
        assert {"panel.created", "broadcast.started"} <= actions


async def test_a_large_region_is_invited_in_parts_each_person_once(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A region is invited at most INVITE_BATCH people per transaction (a whole region in
    the organiser's one would hold the database lock for seconds), the rest in parts that
    follow, all in the panel's one broadcast; the organiser hears the whole count at once."""
    monkeypatch.setattr(panels_module, "INVITE_BATCH", 2)
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff = Chat(api, ORGANISER)
        await create_panel(staff)
        assert "invite is going to: 5." in (await staff.tap("Send the invite")).text
        chats = [Chat(api, person) for person in COHORT]
        for chat in chats:
            assert "Housing panel" in (await chat.expect(1)).text  # in their own language
        records = Records(runtime.settings)
        await eventually(lambda: records.pending_jobs(INVITE_JOB) == 0)
    invited = records.query("SELECT pseudonym, COUNT(*) FROM panel_invitations GROUP BY 1")
    assert sorted(n for _, n in invited) == [1] * len(COHORT)
    assert records.query("SELECT kind, total FROM broadcasts") == [("panel_invitation", 5)]
    started = "SELECT details ->> 'recipients' FROM audit_log WHERE action = 'broadcast.started'"
    assert records.query(started) == [("5",)]  # the whole broadcast, not its first part
    parts = records.query("SELECT key, status FROM schedules WHERE kind = 'panel_invite'")
    assert [status for _, status in parts] == ["done", "done"]  # 2 + 2 + 1
    assert all(len(chat.messages) == 1 for chat in chats)


async def test_stop_sending_also_stops_the_invitations_still_to_come(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Stop sending" on the invitations cancels what is queued; the next part, when its
    job runs, invites nobody else (before, it queued the rest as a new broadcast)."""
    monkeypatch.setattr(panels_module, "INVITE_BATCH", 2)
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        held = hold_jobs(runtime, INVITE_JOB)  # the next part waits for the test
        await set_up_people(api, runtime)
        for person in COHORT:  # the first part is still going out when the organiser stops
            api.set_delay("sendMessage", 2.0, chat_id=person.chat_id)
        staff = Chat(api, ORGANISER)
        await create_panel(staff)
        assert "invite is going to: 5." in (await staff.tap("Send the invite")).text
        await eventually(lambda: bool(held) and staff.messages[-1].text.startswith("Sending"))
        message, data = staff.find_button("Stop sending")
        api.press_button(ORGANISER, message.message_id, data)
        records = Records(runtime.settings)
        stopped = "SELECT 1 FROM broadcasts WHERE status = 'cancelled'"
        await eventually(lambda: bool(records.query(stopped)))

        async with runtime.db.transaction() as conn:
            await runtime.panels.on_invite_more(conn, held[0], clock.now_ms())
        assert records.query("SELECT kind, status FROM broadcasts") == [
            ("panel_invitation", "cancelled")
        ]
        assert records.query("SELECT COUNT(*) FROM panel_invitations") == [(2,)]
        assert records.query("SELECT COUNT(*) FROM schedules WHERE kind = 'panel_invite'") == [(1,)]


@pytest.mark.parametrize("failures", [1, 5])
async def test_a_failed_part_joins_the_same_broadcast_or_is_reported(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failures: int
) -> None:
    """The next part of the invitations fails; the first part has all gone by then. The
    broadcast waits for the part's retries (a minute, then longer): the organiser is not
    told it has finished. Retried once, the rest join the same broadcast with its
    progress message (before, the progress tick finished it and the retried part began a
    new broadcast). Given up after five failures, the organiser is told it did not finish,
    of how many; while a retry is awaited the time left counts it, a minute at a time,
    with no repeated edits."""
    monkeypatch.setattr(panels_module, "INVITE_BATCH", 2)
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        attempts: list[int] = []

        async def fails(conn: aiosqlite.Connection, job: Job, now: int) -> None:
            attempts.append(now)
            if len(attempts) <= failures:
                raise ConnectionError("an invented failure of the part")
            await runtime.panels.on_invite_more(conn, job, now)

        runtime.scheduler.register(INVITE_JOB, fails)
        await set_up_people(api, runtime)
        staff = Chat(api, ORGANISER)
        await create_panel(staff)
        assert "invite is going to: 5." in (await staff.tap("Send the invite")).text
        records = Records(runtime.settings)
        sent = "SELECT COUNT(*) FROM outbox WHERE broadcast_id IS NOT NULL AND status = 'sent'"
        await eventually(lambda: len(attempts) == 1 and records.query(sent) == [(2,)])
        progress_message = (  # known once sent: a tick can edit it from then on
            "SELECT o.message_id IS NOT NULL FROM broadcasts b "
            "JOIN outbox o ON o.id = b.progress_outbox_id"
        )
        await eventually(lambda: records.query(progress_message) == [(1,)])

        ticks = "SELECT COUNT(*) FROM schedules WHERE kind = ? AND status = 'done'"
        clock.advance(6)  # the progress tick comes before the retry
        runtime.scheduler.wake()
        await eventually(lambda: records.query(ticks, PROGRESS_JOB) == [(1,)])
        assert records.query("SELECT status, total FROM broadcasts") == [("running", 2)]
        # the tick's edit: still sending, to all 5
        await eventually(lambda: staff.messages[-1].text.startswith("Sending: 2 of 5 sent"))
        # the rest wait for the retry, due in 54 s ("About 1 second left", before)
        assert "About 1 minute left" in staff.messages[-1].text
        edits = "SELECT COUNT(*) FROM outbox WHERE kind = 'edit'"
        edits_before = records.query(edits)[0][0]

        def over_as_time_goes_by() -> bool:  # the retries (1, 2, 4, 8 min); ticks every 5 s
            if staff.messages[-1].text.startswith(("Finished", "Not finished")):
                return True
            clock.advance(5)
            runtime.scheduler.wake()
            return False

        await eventually(over_as_time_goes_by)
        edits_after = records.query(edits)[0][0]
        broadcasts = records.query("SELECT status, total FROM broadcasts")
        last = staff.messages[-1]
    assert "Stop sending" not in str(last.reply_markup)
    if failures == 1:
        assert broadcasts == [("done", 5)]
        assert last.text.startswith("Finished: 5 of 5 sent")
        assert len(attempts) == 3  # the failure, its retry, the last part
        assert all(len(Chat(api, person).messages) == 1 for person in COHORT)
    else:
        assert broadcasts == [("done", 2)]
        assert last.text.startswith("Not finished: 2 of 5 sent")
        assert len(attempts) == 5  # given up
        # While the later retries wait (2, 4, 8 minutes), the time left counts down a minute
        # at a time, and no edit repeats the text before it (~190 ticks, ~15 edits).
        shown = [
            str(call.params["text"])
            for call in api.calls("editMessageText")
            if call.chat_id == ORGANISER.user_id
        ]
        assert any("About 8 minutes left" in text for text in shown)
        assert any("About 7 minutes left" in text for text in shown)
        assert all(before != after for before, after in itertools.pairwise(shown))
        assert edits_after - edits_before <= 2 + 4 + 8 + 1  # a minute at a time, then the end


async def test_staff_writing_about_risk_for_people_on_licence_are_not_signposted(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Orla runs a panel on suicide prevention, writes to everyone coming about self harm,
    and answers Amara's question about it: her own words, for people on licence. She is
    never signposted nor asked about contact, and no safety request is opened in her name.
    Amara, writing the same words, still is."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff = Chat(api, ORGANISER)
        await staff.say("/panel_new")
        assert "When is it" in (await staff.say("Suicide prevention panel")).text
        assert "Where is it" in (await staff.say("3/12/2026 14:00")).text
        assert "How many places" in (await staff.say("Town hall, Bute Street")).text
        await staff.say("5")
        await staff.tap("Skip")  # no Welsh title: London
        assert "What help" in (await staff.tap("Skip")).text
        preview = await staff.tap("Done")
        assert "Suicide prevention panel" in preview.text
        amara, _ = await amara_takes_a_place(api, staff)

        await staff.say("/panels")
        await staff.tap("Write to them all")
        confirm = await staff.say("We will talk about self harm and how to end it safely.")
        assert "116 123" not in confirm.text
        await staff.tap("Send it")
        await amara.expect(3)
        await amara.tap("Reply")
        staff_had = len(staff.messages)
        await amara.say("Will you ask if we have a plan to end it?")
        await staff.expect(staff_had + 1)
        await staff.tap("Answer")
        sent = await staff.say("Only if you want to talk about a plan to end it.")
        assert "116 123" not in sent.text
        answer = await amara.expect(6)
        assert "Only if you want to talk about a plan to end it." in answer.text

        assert not [t for t in texts(staff) if "116 123" in t or "get in touch" in t]
        records = Records(runtime.settings)
        in_her_name = "SELECT COUNT(*) FROM safeguarding_requests WHERE pseudonym = ?"
        assert records.query(in_her_name, records.pseudonym(ORGANISER)) == [(0,)]
        # Amara, writing such words herself, is signposted (her reply above was too).
        assert records.query(in_her_name, records.pseudonym(AMARA)) == [(1,)]


async def test_on_the_day_the_organiser_can_still_write_to_everyone_coming(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Orla types "We are in room B12" at 13:58 and taps Send at 14:01: it goes (it was
    refused once the start time passed, in words meant for people on licence). Once it has
    started, /panels no longer offers to move it or call it off, and an old button says why
    in staff's words. Twelve hours on, it is over."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        staff = Chat(api, ORGANISER)
        await create_panel(staff)  # 3/12/2026 14:00, UK time (GMT)
        amara, _ = await amara_takes_a_place(api, staff)
        clock.set(datetime(2026, 12, 3, 13, 58, tzinfo=UTC))
        listed = await staff.say("/panels")
        assert "Change the date" in str(listed.reply_markup)
        await staff.tap("Write to them all")
        await staff.say("We are in room B12 now.")
        clock.set(datetime(2026, 12, 3, 14, 1, tzinfo=UTC))
        assert "People it is going to: 1." in (await staff.tap("Send it")).text
        assert "We are in room B12 now." in (await amara.expect(3)).text
        staff_had = len(staff.messages)
        async with runtime.db.transaction() as conn:  # signed up, as everyone invited is
            signed_up = Session(completed=frozenset({"onboarding"})).to_json()
            await Sessions(conn).save(Records(runtime.settings).pseudonym(AMARA), signed_up, 0)
        await settled(api, Records(runtime.settings))  # its row marked sent (one reads first)
        await amara.say("It is locked, where are you?")  # typed at the door, after 14:00
        assert "It is locked" in (await staff.expect(staff_had + 1)).text

        started = await staff.say("/panels")
        markup = str(started.reply_markup)
        assert "Write to them all" in markup and "Change the date" not in markup
        assert "Cancel the panel" not in markup and "Change the number of places" not in markup
        # "Change the date" under the list from before it began: refused, in staff's words.
        [data] = [
            b["callback_data"]
            for row in (listed.reply_markup or {})["inline_keyboard"]
            for b in row
            if b["text"] == "Change the date"
        ]
        had = len(staff.messages)
        api.press_button(ORGANISER, listed.message_id, data)
        assert "has started, so you cannot change it" in (await staff.expect(had + 1)).text

        clock.set(datetime(2026, 12, 4, 2, 1, tzinfo=UTC))  # twelve hours on: over
        await staff.tap("Write to them all")
        await staff.say("Thanks for coming.")
        assert "is over or was called off" in (await staff.tap("Send it")).text


async def test_replies_reach_the_area_s_managers_once_the_organiser_has_left(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Orla leaves (her role is revoked) with her panel still to come. Amara's question
    about it used to meet "please try again later", every time, for ever: it goes to
    London's manager now, who can answer it."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        manager, meg = await meg_has_written(api)
        staff = Chat(api, ORGANISER)
        await create_panel(staff)
        amara, _ = await amara_takes_a_place(api, staff)
        await staff.say("/panels")
        await staff.tap("Write to them all")
        await staff.say("The minibus leaves the office at 13:15.")
        await staff.tap("Send it")
        await amara.expect(3)
        async with runtime.db.transaction() as conn:
            roles = StaffRoles(conn)
            who = runtime.service.pseudonym_of
            await roles.grant(who(manager.user_id), "manager", "london", False, "cli", 0)
            await roles.revoke(who(ORGANISER.user_id), "staff", "london")
        await amara.tap("Reply")
        told = await amara.say("Is there a lift at the town hall?")
        assert "passed on your message" in told.text
        question = await meg.expect(2)
        assert "Is there a lift at the town hall?" in question.text
        await meg.tap("Answer")
        await meg.say("Yes, by the side door.")
        await eventually(lambda: "Yes, by the side door." in (amara.messages[-1].text or ""))


async def test_help_not_on_offer_with_no_one_to_ask_says_so_and_asks_again_later(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Orla leaves and London has no manager (nor the bot an admin): Amara's interpreter
    need has no one to go to. She is told so, and it is not noted as passed on, so her
    Done the next day reaches the manager London has by then."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        manager, meg = await meg_has_written(api)
        staff = Chat(api, ORGANISER)
        await create_panel(staff)
        amara, _ = await amara_takes_a_place(api, staff)
        who = runtime.service.pseudonym_of
        async with runtime.db.transaction() as conn:
            await StaffRoles(conn).revoke(who(ORGANISER.user_id), "staff", "london")
        await amara.toggle("Interpreter (we will ask)")
        await amara.toggle("Another language")
        alone = await amara.tap("Done")
        assert "Not on offer yet: Interpreter: Another language. We could not reach" in alone.text
        records = Records(runtime.settings)
        assert records.query(
            "SELECT needs_told FROM panel_invitations WHERE ticket IS NOT NULL"
        ) == [(None,)]
        async with runtime.db.transaction() as conn:
            await StaffRoles(conn).grant(who(manager.user_id), "manager", "london", False, "cli", 0)
        assert "We have asked the staff who run the panel" in (await amara.tap("Done")).text
        told = (await meg.expect(2)).text
        assert "needs help to come to Housing panel: Interpreter: Another language." in told


async def test_staff_are_not_signed_up_as_people_on_licence_and_find_their_commands(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Orla, granted staff from the command line, sends /start, or just writes: she is not
    taken through the sign-up for people on probation (to be sent check-ins, counted in
    digests), and /help shows her the staff commands."""
    async with running_bot(api, tmp_path) as runtime:
        await set_up_people(api, runtime)
        staff = Chat(api, ORGANISER)
        assert "You have a staff role here" in (await staff.say("thanks, got it")).text
        started = await staff.say("/start")
        assert "You have a staff role here" in started.text
        assert not [m for m in staff.messages if "Which language" in (m.text or "")]
        await staff.say("/help")
        assert "/panel_new" in (await staff.expect(4)).text
        records = Records(runtime.settings)
        assert records.consents(ORGANISER) == []


async def test_a_panel_for_wales_goes_with_its_title_in_welsh(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Welsh is a legal expectation in Wales: Wyn (staff of Wales only, so not asked the
    area) is asked the Welsh title with no Skip, and a form that somehow has none is not
    sent (and says why); with it, Carys (who reads Welsh) is invited with the Welsh title
    and place, and Dev with the English."""
    clock = ManualClock(START)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await set_up_people(api, runtime)
        async with runtime.db.transaction() as conn:
            for person in (CARYS, DEV):
                who = runtime.service.pseudonym_of(person.user_id)
                await People(conn).set_region(who, "wales", clock.now_ms())
        wyn = Chat(api, WALES_STAFF)
        await wyn.say("/panel_new")
        await wyn.say("Housing panel")
        await wyn.say("3/12/2026 14:00")
        await wyn.say("Town hall, Bute Street")
        asked = await wyn.say("5")
        assert "must have its title in Welsh too" in asked.text and not asked.reply_markup
        await wyn.say("Panel tai")
        await wyn.say("Neuadd y dref, Stryd Bute")
        preview = await wyn.tap("Done")
        assert "In Welsh: Panel tai." in preview.text and "Neuadd y dref" in preview.text
        await wyn.tap("Send the invite")
        # The application's own check, for a form that reaches Send without it (a session
        # begun before the question was asked so): not sent, and it says why.
        who = runtime.service.pseudonym_of(WALES_STAFF.user_id)
        wyn_actor = Actor(who, WALES_STAFF.chat_id, "en")
        had = len(wyn.messages)
        values = {
            "title": "Jobs panel",
            "starts_at": str(clock.now_ms() + 30 * DAY * 1000),
            "place": "online",
            "capacity": "5",
            "region": "wales",
        }
        async with runtime.db.transaction() as conn:
            await runtime.panels.create_panel(conn, wyn_actor, values, clock.now_ms())
        runtime.sender.wake()
        await eventually(
            lambda: any("must have its title in" in (m.text or "") for m in wyn.messages[had:])
        )
        records = Records(runtime.settings)
        assert records.query("SELECT title FROM panels") == [("Housing panel",)]
        carys = (await Chat(api, CARYS).expect(1)).text
        assert "Panel tai" in carys and "Neuadd y dref, Stryd Bute" in carys
        assert "Housing panel" not in carys
        dev = (await Chat(api, DEV).expect(1)).text
        assert "Housing panel" in dev and "Town hall, Bute Street" in dev
