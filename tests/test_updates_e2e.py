""" "You said, we did" end to end over HTTP: an update reaches exactly the people who raised
its theme and want updates, in their language, and their reactions are kept. Everyone here
is invented."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot import updates as updates_module
from bot.conversation import Actor
from bot.digests import week_of
from bot.local_api import FakePerson, LocalBotApi, SentMessage
from bot.runtime import Runtime
from bot.updates import DELIVER_JOB, WITHDRAW_JOB
from storage.answers import Answers
from storage.broadcasts import Broadcasts
from storage.checkins import Checkins
from storage.clock import ManualClock
from storage.digest_data import DigestFigures
from storage.people import ConsentLedger, People
from storage.queues import Job, Outbox
from storage.staff import StaffRoles
from storage.updates import Updates
from tests.harness import Chat, Records, eventually, hold_jobs, running_bot, settled

ORLA = FakePerson(user_id=750000001, first_name="Orla", language_code="en")  # London staff
ADA = FakePerson(user_id=750000011, first_name="Ada")  # London, housing, wants updates
BEA = FakePerson(user_id=750000012, first_name="Bea")  # London, work only
CAL = FakePerson(user_id=750000013, first_name="Cal")  # London, housing, said no since
DAI = FakePerson(user_id=750000014, first_name="Dai")  # Wales, housing
EIRA = FakePerson(user_id=750000015, first_name="Eira", language_code="cy")  # London, Welsh
# (region, locale, themes raised, wants updates)
PEOPLE = {
    ADA: ("london", "en", ("housing",), True),
    BEA: ("london", "en", ("work_training",), True),
    CAL: ("london", "en", ("housing",), False),
    DAI: ("wales", "en", ("housing",), True),
    EIRA: ("london", "cy", ("housing", "money_benefits"), True),
}


async def seed(api: LocalBotApi, runtime: Runtime) -> None:
    """As check-ins would have left them: answers tagged with themes, and consents."""
    now = runtime.clock.now_ms()
    pseudonym = runtime.service.pseudonym_of
    async with runtime.db.transaction() as conn:
        for person, (region, locale, themes, updates) in PEOPLE.items():
            api.add_chat(person)
            who = pseudonym(person.user_id)
            await People(conn).touch(who, person.chat_id, locale, now)
            await People(conn).set_region(who, region, now)
            ledger = ConsentLedger(conn)
            await ledger.record(who, "feedback", True, "v1", now)
            await ledger.record(who, "updates", True, "v1", now)
            if not updates:
                await ledger.record(who, "updates", False, "v1", now + 1)
            answer = await Answers(conn).add(who, "feedback", "improve", b"-", now)
            await Checkins(conn).tag_answer(answer, themes)
        await StaffRoles(conn).grant(pseudonym(ORLA.user_id), "staff", "london", False, "cli", 0)


async def write_housing_update(
    orla: Chat, area: str | None, english: str, welsh: str | None = None
) -> SentMessage:
    """Orla writes a housing update for `area` through /yousaid (None: she is staff of one
    area, so not asked which; the Welsh skipped when None) and taps Send it; returns the
    answer."""
    await orla.say("/yousaid")
    await orla.toggle("Housing")
    await orla.tap("Done")
    await orla.tap("Yes, go on")
    await orla.tap("We changed this")
    await orla.say(english)
    if area is not None:
        await orla.tap(area)
    await (orla.tap("Skip") if welsh is None else orla.say(welsh))
    return await orla.tap("Send it")


async def publish_housing(orla: Chat, going_to: str) -> None:
    """Orla publishes the housing update for London through the /yousaid dialogue."""
    english = "From January the housing team is in the probation office every Tuesday."
    assert going_to in (await write_housing_update(orla, None, english)).text


async def test_an_update_reaches_exactly_those_who_raised_the_theme(
    api: LocalBotApi, tmp_path: Path
) -> None:
    async with running_bot(api, tmp_path) as runtime:
        await seed(api, runtime)
        orla = Chat(api, ORLA)
        first = (await orla.say("/yousaid")).text
        assert "Which themes" in first and "Chosen: none" in first and "{" not in first
        asked = len(orla.messages)
        ticked = await orla.toggle("Housing")  # the question itself shows the choice
        assert "Chosen: Housing" in ticked.text and len(orla.messages) == asked
        assert "Is that right" in (await orla.tap("Done")).text
        assert "What kind of answer" in (await orla.tap("Yes, go on")).text  # London's only
        await orla.tap("We changed this")
        await orla.say("From January the housing team is in the probation office every Tuesday.")
        preview = await orla.say("skip")  # typed, not tapped: not the Welsh text
        assert "Themes: Housing" in preview.text and "Area: London" in preview.text
        # Before it is sent, how many it would reach: as after, fewer than k not counted.
        assert "People it will go to now: fewer than 10." in preview.text
        assert "Welsh: skip" not in preview.text and "Welsh:" in preview.text
        # Two raised it: fewer than the digest would show, so not counted out to staff (one
        # may be their officer), nor by a progress message.
        assert "going to fewer than 10 people" in (await orla.tap("Send it")).text

        ada, eira = Chat(api, ADA), Chat(api, EIRA)
        update = await ada.expect(1)
        assert "You said, we did: Housing" in update.text
        assert "every Tuesday" in update.text and "We changed this" in update.text
        welsh = await eira.expect(1)
        assert "every Tuesday" in welsh.text and "Tai" in welsh.text  # English, with a note
        assert "(This update is only in English for now.)" not in welsh.text
        for person in (BEA, CAL, DAI):
            assert api.messages(person.chat_id) == []
        assert not [m for m in orla.messages if (m.text or "").startswith(("Sending", "Finish"))]

        assert "Thank you" in (await ada.tap("This helps")).text
        assert "What do you think about this" in (await ada.tap("Tell us what you think")).text
        assert "Thank you" in (await ada.say("Tuesdays are hard for me, I work then")).text
        records = Records(runtime.settings)
        # Without "Keep my answers" her words could not be kept: she is told, not asked.
        async with runtime.db.transaction() as conn:
            await ConsentLedger(conn).record(records.pseudonym(ADA), "feedback", False, "v1", 0)
        assert "cannot keep what you write" in (await ada.tap("Tell us what you think")).text
        reactions = records.query("SELECT reaction FROM update_deliveries ORDER BY pseudonym")
        assert ("more",) in reactions
        replies = records.query("SELECT COUNT(*) FROM answers WHERE dialogue = 'update_reply'")
        assert replies == [(1,)]
        audit = [a for (a,) in records.query("SELECT action FROM audit_log")]
        assert "update.published" in audit

        bea = Chat(api, BEA)
        listed = await bea.say("/updates")
        assert "latest updates" in listed.text
        assert "every Tuesday" in (await bea.expect(2)).text
        # Cal said no to being sent updates; asking to see them is not being sent them.
        cal = Chat(api, CAL)
        listed = await cal.say("/updates")
        assert "we will not send you new ones" in listed.text
        assert "every Tuesday" in (await cal.expect(2)).text
        # Orla, staff with no area of her own, sees what went out in hers (she was told
        # "we do not know your area yet").
        had = len(orla.messages)
        assert "latest updates" in (await orla.say("/updates")).text
        seen = await orla.expect(had + 2)
        assert "every Tuesday" in seen.text
        # How it was received: not for two people (one may be hers to supervise).
        assert "Sent to: fewer than 10. We do not show how they felt" in seen.text
        assert "This helps:" not in seen.text

        # Ada stops letting us keep her answers and deletes what she said: the record of
        # the update sent to her goes too (it says what she raised).
        sent_to_ada = "SELECT COUNT(*) FROM update_deliveries WHERE pseudonym = ?"
        assert records.query(sent_to_ada, records.pseudonym(ADA)) == [(1,)]
        await ada.say("/privacy")
        await ada.tap("Keep my answers")
        assert "delete the answers" in (await ada.tap("No")).text
        assert "deleted the answers" in (await ada.tap("Yes, delete them")).text
        assert records.query(sent_to_ada, records.pseudonym(ADA)) == [(0,)]
        assert records.query(sent_to_ada, records.pseudonym(EIRA)) == [(1,)]


async def test_staff_see_how_an_update_was_received_when_enough_got_it(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/updates from staff: under each update, who it went to and what they tapped; a count
    under the floor (k, 2 here: two raisers stand for many) is not given."""
    async with running_bot(api, tmp_path) as runtime:
        monkeypatch.setattr(runtime.updates, "_k", 2)
        await seed(api, runtime)
        orla = Chat(api, ORLA)
        await publish_housing(orla, "People it is going to: 2.")
        for person in (ADA, EIRA):
            chat = Chat(api, person)
            await chat.expect(1)
            await chat.tap("This helps" if person is ADA else "Mae hyn yn helpu")
        await settled(api, Records(runtime.settings))
        had = len(orla.messages)
        await orla.say("/updates")
        seen = await orla.expect(had + 2)
        assert "every Tuesday" in seen.text
        assert "Sent to: 2." in seen.text
        assert (
            "This helps: 2. It doesn't help: fewer than 2. Wanted to say more: fewer than 2."
        ) in seen.text


async def test_staff_take_an_update_back_and_the_copies_people_have_say_so(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Orla's housing update was wrong: from /updates she takes it back. A minute later Ada's
    and Eira's copies say so, in their language, buttons gone (edited: nothing new sent); a
    tap on a copy not yet edited counts for nothing; /updates no longer shows it to people,
    and shows staff that it was taken back. Audited."""
    clock = ManualClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await seed(api, runtime)
        orla = Chat(api, ORLA)
        await publish_housing(orla, "going to fewer than 10 people")
        ada, eira = Chat(api, ADA), Chat(api, EIRA)
        copy = await ada.expect(1)
        await eira.expect(1)
        records = Records(runtime.settings)
        await settled(api, records)

        await orla.say("/updates")
        listed = await orla.expect(len(orla.messages) + 1)
        assert "every Tuesday" in listed.text
        asked = await orla.tap("Take it back")
        assert "Take back the update about Housing?" in asked.text
        assert "OK. The update stays." in (await orla.tap("No, keep the update")).text
        await orla.tap("Take it back")
        done = await orla.tap("Yes, take it back")
        assert "No one else will get it" in done.text

        # Before the copies are edited, Ada taps "This helps" on hers: not counted.
        message, data = ada.find_button("This helps")
        had = len(ada.messages)
        api.press_button(ADA, message.message_id, data)
        assert "your answer to it is not needed" in (await ada.expect(had + 1)).text
        assert records.query(
            "SELECT COUNT(*) FROM update_deliveries WHERE reaction IS NOT NULL"
        ) == [(0,)]

        clock.advance(61)  # the copies are edited a minute after
        await runtime.scheduler.run_due()
        await eventually(lambda: ada.messages[0].edited and eira.messages[0].edited)
        assert ada.messages[0].message_id == copy.message_id
        taken = ada.messages[0].text or ""
        assert taken.startswith("We took back this update about Housing.")
        assert "every Tuesday" not in taken and not ada.messages[0].reply_markup
        assert (eira.messages[0].text or "").startswith("Rydyn ni wedi tynnu")
        assert len(eira.messages) == 1  # edited, not sent again

        listed = await ada.say("/updates")
        assert "no updates for your area" in listed.text
        had = len(orla.messages)
        await orla.say("/updates")
        seen = await orla.expect(had + 2)
        assert (
            "Taken back. We changed the copies we sent" in seen.text
            and "Take it back" not in str(seen.reply_markup)
        )
        audit = [a for (a,) in records.query("SELECT action FROM audit_log")]
        assert "update.withdrawn" in audit
        # It answered nothing: the digest does not count it, and housing waits for an answer.
        week = week_of(runtime.clock.now_ms(), "Europe/London")
        async with runtime.db.read() as conn, DigestFigures(conn) as figures:
            loop = (await figures.read("london", week, "Europe/London")).loop
        assert (loop.published_week, loop.published_trend) == (0, 0)
        assert loop.reactions["delivered"].value == 0
        assert not any(t.answered for t in loop.raised)
        # Ada's data says she was sent it, and that it was taken back. (Her answer, seeded
        # as "-", is sealed first: /mydata opens it.)
        sealed = records.secrets.encrypt_text("Zephyrine housing officers never call back")
        async with runtime.db.transaction() as conn:
            await conn.execute("UPDATE answers SET ciphertext = ?", (sealed,))
        [received] = (await ada.mydata_file())["updates_received"]
        assert received["taken_back_on"] == "2026-11-02"


async def test_a_take_back_confirmed_after_the_role_went_changes_nothing(
    api: LocalBotApi, tmp_path: Path
) -> None:
    async with running_bot(api, tmp_path) as runtime:
        await seed(api, runtime)
        orla = Chat(api, ORLA)
        await publish_housing(orla, "going to fewer than 10 people")
        await orla.say("/updates")
        await orla.expect(len(orla.messages) + 1)
        await orla.tap("Take it back")
        async with runtime.db.transaction() as conn:
            orla_is = runtime.service.pseudonym_of(ORLA.user_id)
            await StaffRoles(conn).revoke(orla_is, "staff", "london")
        assert "not available" in (await orla.tap("Yes, take it back")).text
        assert Records(runtime.settings).query("SELECT withdrawn_at FROM updates") == [(None,)]


async def test_an_update_for_many_goes_in_parts_each_person_once(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands may have raised a theme: the staff member's transaction queues the first
    DELIVER_BATCH, the rest follow in parts, in the update's one broadcast, and the staff
    member hears the whole count at once."""
    monkeypatch.setattr(updates_module, "DELIVER_BATCH", 1)
    async with running_bot(api, tmp_path) as runtime:
        await seed(api, runtime)
        await publish_housing(Chat(api, ORLA), "going to fewer than 10 people")
        for person in (ADA, EIRA):
            assert "every Tuesday" in (await Chat(api, person).expect(1)).text
        records = Records(runtime.settings)
        await eventually(lambda: records.pending_jobs(DELIVER_JOB) == 0)
    delivered = records.query("SELECT pseudonym, COUNT(*) FROM update_deliveries GROUP BY 1")
    assert sorted(n for _, n in delivered) == [1, 1]
    assert records.query("SELECT kind, total FROM broadcasts") == [("update", 2)]
    parts = records.query("SELECT status FROM schedules WHERE kind = 'update_deliver'")
    assert parts == [("done",)]  # 1 + 1
    for person in (ADA, EIRA):
        assert len(api.messages(person.chat_id)) == 1
    for person in (BEA, CAL, DAI):
        assert api.messages(person.chat_id) == []


async def test_stop_sending_also_stops_the_parts_still_to_come(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Stop sending" cancels what is queued; the next part, when its job runs, must not
    queue the rest as a broadcast of its own."""
    monkeypatch.setattr(updates_module, "DELIVER_BATCH", 1)
    async with running_bot(api, tmp_path) as runtime:
        held = hold_jobs(runtime, DELIVER_JOB)  # the next part waits for the test
        # Two raisers stand for many here: below the floor (k) the count and the progress,
        # with its Stop button, are not shown (see the first test).
        monkeypatch.setattr(runtime.updates, "_k", 2)
        await seed(api, runtime)
        for person in (ADA, EIRA):  # the first part is still going out when Orla stops it
            api.set_delay("sendMessage", 2.0, chat_id=person.chat_id)
        orla = Chat(api, ORLA)
        await publish_housing(orla, "People it is going to: 2.")
        await eventually(lambda: bool(held) and orla.messages[-1].text.startswith("Sending"))
        message, data = orla.find_button("Stop sending")
        api.press_button(ORLA, message.message_id, data)
        await eventually(lambda: orla.messages[-1].text.startswith("Stopped"))
        records = Records(runtime.settings)
        assert records.query("SELECT status FROM broadcasts") == [("cancelled",)]

        async with runtime.db.transaction() as conn:
            await runtime.updates.on_deliver_more(conn, held[0], runtime.clock.now_ms())
        await settled(api, Records(runtime.settings))  # nothing queued
        assert records.query("SELECT COUNT(*) FROM broadcasts") == [(1,)]
        assert records.query("SELECT COUNT(*) FROM update_deliveries") == [(1,)]
        assert records.query("SELECT COUNT(*) FROM schedules WHERE kind = 'update_deliver'") == [
            (1,)
        ]
        # Parts go in pseudonym order: the second part's person was never written to.
        first, second = sorted((ADA, EIRA), key=records.pseudonym)
        delivered = records.query("SELECT pseudonym FROM update_deliveries")
        assert delivered == [(records.pseudonym(first),)]
    assert api.messages(second.chat_id) == []


async def test_an_update_that_cannot_go_says_why(api: LocalBotApi, tmp_path: Path) -> None:
    """A form answered to the end is not met with "not available to you" when the reason is
    something else: no theme chosen ("Chosen: none. Is that right?" can be answered yes), or
    an area where the staff member is no longer staff (Wales, taken away before Send)."""
    async with running_bot(api, tmp_path) as runtime:
        await seed(api, runtime)
        orla = Chat(api, ORLA)
        who = runtime.service.pseudonym_of(ORLA.user_id)
        async with runtime.db.transaction() as conn:
            await StaffRoles(conn).grant(who, "staff", "wales", False, "cli", 0)
        for themes, area, why in (
            ((), "London", "must be about at least one theme"),
            (("Housing",), "Wales", "only to the areas where you are staff"),
        ):
            await orla.say("/yousaid")
            for theme in themes:
                await orla.toggle(theme)
            assert "Is that right" in (await orla.tap("Done")).text
            await orla.tap("Yes, go on")
            await orla.tap("We changed this")
            await orla.say("The housing team now comes every Wednesday.")
            await orla.tap(area)
            await (orla.tap("Skip") if area == "London" else orla.say("Mae'r tîm yn dod."))
            if area == "Wales":
                async with runtime.db.transaction() as conn:
                    assert await StaffRoles(conn).revoke(who, "staff", "wales")
            refused = await orla.tap("Send it")
            assert why in refused.text and "Nothing was sent" in refused.text
        records = Records(runtime.settings)
        assert records.query("SELECT COUNT(*) FROM updates") == [(0,)]
        for person in (ADA, EIRA):
            assert api.messages(person.chat_id) == []


async def test_an_update_for_wales_goes_in_both_languages(api: LocalBotApi, tmp_path: Path) -> None:
    """Welsh is a legal expectation in Wales: the Welsh of an update for Wales is asked
    with no Skip (the area is asked first), and one that somehow has none is not sent (and
    says why); written in both, it goes."""
    async with running_bot(api, tmp_path) as runtime:
        await seed(api, runtime)
        async with runtime.db.transaction() as conn:
            who = runtime.service.pseudonym_of(ORLA.user_id)
            await StaffRoles(conn).grant(who, "staff", "wales", False, "cli", 0)
        orla = Chat(api, ORLA)
        records = Records(runtime.settings)
        english = "The housing team now comes every Wednesday."
        answer = await write_housing_update(orla, "Wales", english, "Mae'r tîm tai yma.")
        asked = [m for m in orla.messages if "must be in Welsh too" in (m.text or "")]
        assert asked and not asked[-1].reply_markup  # no Skip
        assert "going to fewer than 10 people" in answer.text
        # The application's own check, for a form reaching Send without it (a session begun
        # before the Welsh was asked so).
        had = len(orla.messages)
        values = {"themes": "housing", "region": "wales", "kind": "changed", "text_en": english}
        async with runtime.db.transaction() as conn:
            actor = Actor(who, ORLA.chat_id, "en")
            await runtime.updates.publish(conn, actor, values, runtime.clock.now_ms())
        runtime.sender.wake()
        await eventually(
            lambda: any("also be in Welsh" in (m.text or "") for m in orla.messages[had:])
        )
        assert records.query("SELECT region, text_cy IS NOT NULL FROM updates") == [("wales", 1)]
        assert "every Wednesday" in (await Chat(api, DAI).expect(1)).text


async def test_an_update_about_self_harm_is_staff_words_not_a_call_for_help(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Orla's update says the service now runs a group on self harm and suicide: she is
    not signposted nor asked about contact, and the update goes out as she wrote it."""
    async with running_bot(api, tmp_path) as runtime:
        await seed(api, runtime)
        orla = Chat(api, ORLA)
        english = "We now run a group on self harm and suicide every Monday."
        sent = await write_housing_update(orla, None, english)
        assert "going to fewer than 10 people" in sent.text
        assert not [m for m in orla.messages if "116 123" in (m.text or "")]
        assert english in (await Chat(api, ADA).expect(1)).text
        records = Records(runtime.settings)
        assert records.query("SELECT COUNT(*) FROM safeguarding_requests") == [(0,)]


@pytest.mark.parametrize(("weeks", "reaches_ffion"), [(None, False), ("14", True)])
async def test_an_update_reaches_only_those_who_raised_it_within_the_lookback(
    api: LocalBotApi, tmp_path: Path, weeks: str | None, reaches_ffion: bool
) -> None:
    """UPDATE_LOOKBACK_WEEKS (12 by default): Ffion raised housing 13 weeks ago, so this
    update is not for her; Ada raised it this week. With 14 weeks it reaches Ffion too (a
    slip of units, seconds for milliseconds, would pass a test where every answer is new)."""
    ffion = FakePerson(user_id=750000016, first_name="Ffion")
    week = 7 * 86_400_000
    extra = {} if weeks is None else {"UPDATE_LOOKBACK_WEEKS": weeks}
    async with running_bot(api, tmp_path, **extra) as runtime:
        await seed(api, runtime)
        api.add_chat(ffion)
        now = runtime.clock.now_ms()
        async with runtime.db.transaction() as conn:
            who = runtime.service.pseudonym_of(ffion.user_id)
            await People(conn).touch(who, ffion.chat_id, "en", now)
            await People(conn).set_region(who, "london", now)
            await ConsentLedger(conn).record(who, "feedback", True, "v1", now)
            await ConsentLedger(conn).record(who, "updates", True, "v1", now)
            answer = await Answers(conn).add(who, "feedback", "improve", b"-", now - 13 * week)
            await Checkins(conn).tag_answer(answer, ("housing",))
        await publish_housing(Chat(api, ORLA), "fewer than 10")
        assert "every Tuesday" in (await Chat(api, ADA).expect(1)).text
        await settled(api, Records(runtime.settings))
        assert bool(api.messages(ffion.chat_id)) is reaches_ffion


async def test_a_send_recorded_after_the_first_pass_is_still_edited_not_forgotten(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """A copy on its way as the update is taken back, whose send the sender records only
    after the first pass (a busy database): it is not forgotten as never sent, and the
    last pass edits it."""
    async with running_bot(api, tmp_path) as runtime:
        await seed(api, runtime)
        now = runtime.clock.now_ms()
        ada_is = runtime.service.pseudonym_of(ADA.user_id)
        async with runtime.db.transaction() as conn:
            updates = Updates(conn)
            update = await updates.publish("london", "changed", ["housing"], "-", None, "s", now)
            await updates.deliver(update.id, ada_is)
            broadcast = await Broadcasts(conn).create(
                "update",
                f"update:{update.id}",
                "london",
                "s",
                [(ADA.chat_id, {"text": "-"})],
                None,
                now,
            )
            await Broadcasts(conn).cancel(broadcast, now)  # taken back while on its way
            await updates.withdraw(update.id, now)

        async def edit_pass(number: int) -> None:
            job = Job(0, WITHDRAW_JOB, "-", now, {"update": update.id, "pass": number}, 0)
            async with runtime.db.transaction() as conn:
                await runtime.updates.on_withdraw_edit(conn, job, now)

        records = Records(runtime.settings)
        kept = "SELECT message_id, edited_at IS NOT NULL FROM update_deliveries"
        await edit_pass(0)
        assert records.query(kept) == [(None, 0)]  # not known to be sent yet: kept
        async with runtime.db.transaction() as conn:  # the send is recorded, late
            [(row, version)] = records.query("SELECT id, version FROM outbox")
            await Outbox(conn).mark_sent_many([(int(row), 777, int(version))], now)
        await edit_pass(1)
        assert records.query(kept) == [(777, 1)]  # edited in the last pass
