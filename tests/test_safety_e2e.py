"""A message that signals danger, end to end: help first, contact only on a yes, a relay
between the person and the staff holding the safeguarding duty. Everyone is invented."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from bot.access import create_invite, grant_role
from bot.local_api import FakePerson, LocalBotApi, SentMessage
from bot.runtime import Runtime
from bot.secrets_file import load_secrets
from bot.settings import PROJECT_ROOT, SHIPPED_LOCALES
from storage.clock import ManualClock
from storage.staff import StaffRoles
from tests.harness import ADA, BRAN, Chat, Records, eventually, onboard, running_bot, settled

SAM = FakePerson(user_id=740000001, first_name="Sam", language_code="en")  # London duty
MORGAN = FakePerson(user_id=740000002, first_name="Morgan", language_code="en")  # an admin
RHYS = FakePerson(user_id=740000003, first_name="Rhys", language_code="en")  # given a duty later
RISK = "honestly some days I just want to end it all"


async def give_sam_the_duty(runtime: Runtime, api: LocalBotApi) -> Chat:
    sam = Chat(api, SAM)
    await sam.say("/help")  # Sam has talked to the bot, so it can write to Sam
    await sam.expect(1)  # the help
    async with runtime.db.transaction() as conn:
        who = runtime.service.pseudonym_of(SAM.user_id)
        await StaffRoles(conn).grant(who, "staff", "london", True, "cli", 0)
    return sam


async def make_morgan_an_admin(runtime: Runtime, api: LocalBotApi) -> Chat:
    """Morgan has talked to the bot (so it can write to Morgan) and is made an admin."""
    morgan = Chat(api, MORGAN)
    await morgan.say("/help")
    await morgan.expect(1)
    async with runtime.db.transaction() as conn:
        who = runtime.service.pseudonym_of(MORGAN.user_id)
        await StaffRoles(conn).grant(who, "admin", None, False, "cli", 0)
    return morgan


async def scores_a_check_in(chat: Chat) -> None:
    """/feedback, Start, and "Sometimes" to the four questions: the written one is next."""
    await chat.say("/feedback")
    await chat.tap("Start")
    for answer in ("Sometimes", "Sometimes", "Sometimes", "Sometimes"):
        await chat.tap(answer)


async def ada_is_asked_about_contact(ada: Chat) -> int:
    """Ada signs up and writes a risk message: the numbers, then the contact question.
    Returns how many messages she had before the risk message."""
    await onboard(ada)
    had = len(ada.messages)
    await ada.say("i want to kill myself")
    await ada.expect(had + 2)
    return had


async def ada_asks_for_contact(ada: Chat) -> tuple[int, SentMessage]:
    """Ada signs up, writes a risk message and says yes to contact: (how many messages she
    had before the risk message, the answer to her yes)."""
    had = await ada_is_asked_about_contact(ada)
    return had, await ada.tap("Yes, please")


async def said(chat: Chat, words: str, since: int) -> None:
    """Wait until one of the bot's messages after the first `since` contains `words`."""
    async with asyncio.timeout(10):
        while not any(words in (m.text or "") for m in chat.messages[since:]):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def sam_writes_to_ada(
    runtime: Runtime, api: LocalBotApi, words: str = "Hello, this is Sam from probation."
) -> tuple[Chat, Chat]:
    """Ada says yes to contact, Sam (the London duty) is alerted and writes to her, and
    her copy has arrived (with the question she was on, if any, after it)."""
    sam = await give_sam_the_duty(runtime, api)
    ada = Chat(api, ADA)
    had, _ = await ada_asks_for_contact(ada)
    await sam.expect(2)
    await sam.tap("Write to them")
    await sam.say(words)
    await said(ada, words, had)
    await settled(api, Records(runtime.settings))
    return sam, ada


def contact_update(person: FakePerson, phone: str, user_id: int) -> dict[str, object]:
    chat = {"id": person.chat_id, "type": "private", "first_name": person.first_name}
    return {
        "message": {
            "message_id": 990000 + person.user_id % 1000,
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": person.user_id, "is_bot": False, "first_name": person.first_name},
            "contact": {"phone_number": phone, "first_name": person.first_name, "user_id": user_id},
        }
    }


def forwarded(person: FakePerson, text: str, message_id: int) -> dict[str, object]:
    """A message `person` forwards to the bot: someone else's words (a hidden sender)."""
    chat = {"id": person.chat_id, "type": "private", "first_name": person.first_name}
    return {
        "message": {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": person.user_id, "is_bot": False, "first_name": person.first_name},
            "text": text,
            "forward_origin": {"type": "hidden_user", "sender_user_name": "-", "date": 1},
        }
    }


async def ada_shares_her_number(api: LocalBotApi, ada: Chat) -> None:
    """Ada taps "Share my number" and is told it was passed on."""
    before = len(ada.messages)
    api.send_update(contact_update(ADA, "+447700900123", ADA.user_id))
    await said(ada, "passed your number", before)


async def test_signpost_first_then_contact_only_on_yes(api: LocalBotApi, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        ada = Chat(api, ADA)
        await onboard(ada)
        await scores_a_check_in(ada)
        before, sam_had = len(ada.messages), len(sam.messages)
        signpost = await ada.say(RISK)
        assert ada.messages[before] is signpost  # the very first reply
        for number in ("999", "116 123", "111"):
            assert number in signpost.text
        question = await ada.expect(before + 2)
        assert "get in touch" in question.text
        not_saved = await ada.expect(before + 3)  # and what became of her words
        assert "not saved what you wrote" in not_saved.text
        assert len(sam.messages) == sam_had  # nobody is told before a yes
        records = Records(runtime.settings)
        assert records.query("SELECT COUNT(*) FROM answers") == [(0,)]  # not kept as an answer

        sent = await ada.tap("Yes, please")
        assert "told the probation team" in sent.text
        assert "keyboard" in str(sent.reply_markup)  # Telegram's share-my-number button
        again = await ada.expect(before + 5)  # and the question she was on, again
        assert "What one thing" in again.text
        alert = await sam.expect(sam_had + 1)
        assert "SG-1" in alert.text and "suicide" in alert.text
        assert "They read our messages in English." in alert.text
        assert RISK not in alert.text and str(ADA.user_id) not in str(alert.reply_markup)

        await sam.tap("Write to them")
        await sam.say("Hello, this is Sam from probation. Can I call you today?")
        relayed = await ada.expect(before + 6)
        assert "Can I call you today?" in relayed.text
        # Her reply through the bot reaches Sam even though it is itself a risk message:
        # she is signposted again, and it is not dropped.
        assert "Write your message" in (await ada.tap("Reply")).text
        sam_before_reply, ada_before_reply = len(sam.messages), len(ada.messages)
        again = await ada.say("I still want to end it all tonight")
        assert "116 123" in again.text
        # Sam was told within the hour: the help again, but no second question or alert.
        assert "already asked the probation team" in (await ada.expect(len(ada.messages) + 1)).text
        passed_on = await sam.expect(sam_before_reply + 1)
        assert "I still want to end it all tonight" in passed_on.text
        await said(ada, "passed on your message", ada_before_reply)
        sam_before_number, ada_before_number = len(sam.messages), len(ada.messages)
        api.send_update(contact_update(ADA, "+447700900123", ADA.user_id))
        await said(ada, "passed your number", ada_before_number)
        number = await sam.expect(sam_before_number + 1)
        assert "+447700900123" in number.text
        actions = [a for (a,) in records.query("SELECT action FROM audit_log")]
        assert "safeguarding.alerted" in actions and "safeguarding.message_sent" in actions
        statuses = records.query("SELECT status FROM safeguarding_requests ORDER BY id")
        assert statuses == [("alerted",)]  # her risky reply to Sam opened no second one


async def test_an_answer_held_after_a_signpost_is_saved_when_sent_again(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """An ordinary complaint can read like a risk phrase. It is signposted and, the first
    time, held back with a word on how to save it; sent again at the same question it is
    signposted again and saved as her answer, so she is heard without having to skip."""
    complaint = "My officer keeps threatening me with recall"
    async with running_bot(api, tmp_path) as runtime:
        ada = Chat(api, ADA)
        await onboard(ada)
        await scores_a_check_in(ada)
        records = Records(runtime.settings)
        before = len(ada.messages)
        assert "116 123" in (await ada.say(complaint)).text
        assert "send it again" in (await ada.expect(before + 3)).text
        assert records.query("SELECT COUNT(*) FROM answers") == [(0,)]
        await ada.tap("No, thank you")
        await ada.expect(before + 5)  # "we have not told anyone", and the question again
        assert "What one thing" in ada.messages[-1].text

        again = len(ada.messages)
        assert "116 123" in (await ada.say(complaint)).text  # signposted every time
        thanks = await ada.expect(again + 3)  # the signpost, the contact question, thanks
        assert "Thank you" in thanks.text
        assert records.query("SELECT COUNT(*) FROM answers") == [(1,)]
        requests = records.query("SELECT status FROM safeguarding_requests ORDER BY id")
        assert requests == [("declined",), ("asked",)]


async def test_the_alert_says_the_person_reads_welsh(api: LocalBotApi, tmp_path: Path) -> None:
    """Sam's first message must be one Ada can read: she switched the bot to Welsh, so the
    alert says so (in Sam's own language, English)."""
    async with running_bot(api, tmp_path) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        ada = Chat(api, ADA)
        await onboard(ada)
        await ada.say("/language")
        await ada.tap("Cymraeg")
        had, sam_had = len(ada.messages), len(sam.messages)
        await ada.say(RISK)
        await ada.expect(had + 2)  # the numbers, then the question, in Welsh
        await ada.tap("Hoffwn, os gwelwch yn dda")
        alert = await sam.expect(sam_had + 1)
        assert "SG-1" in alert.text
        assert "They read our messages in Welsh. Write to them in Welsh if you can." in (alert.text)


def test_every_language_shipped_has_its_line_for_duty_staff() -> None:
    """The alert and the handover say which language the person reads: a language shipped
    without its line would fall back to English, and be wrong."""
    messages = yaml.safe_load((PROJECT_ROOT / "dialogues" / "safety.yaml").read_text())["messages"]
    assert {f"reads_{locale}" for locale in SHIPPED_LOCALES} <= set(messages)


async def test_a_person_whose_area_is_not_known_yet_is_asked_for_it_before_the_alert(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """A risk phrase can come before onboarding's last question, the area; with no area
    no duty holder could be told. On "Yes, please" the person is asked for it, and the
    alert goes to that area's duty holders."""
    async with running_bot(api, tmp_path) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        sam_had = len(sam.messages)
        ada = Chat(api, ADA)
        await ada.start()  # the notice: no area chosen yet
        before = len(ada.messages)
        await ada.say(RISK)
        await ada.expect(before + 2)  # the signpost, then the contact question
        area = await ada.tap("Yes, please")
        assert "Which area" in area.text
        assert len(sam.messages) == sam_had
        sent = await ada.tap("London")
        assert "told the probation team" in sent.text
        alert = await sam.expect(sam_had + 1)
        assert "SG-1" in alert.text and "London" in alert.text
        records = Records(runtime.settings)
        assert records.query("SELECT region, status FROM safeguarding_requests") == [
            ("london", "alerted")
        ]
        # Told for this request only: her area is still hers to choose in onboarding.
        ada_is = records.pseudonym(ADA)
        assert records.query("SELECT region FROM people WHERE pseudonym = ?", ada_is) == [(None,)]


async def test_a_forwarded_threat_and_an_edited_caption_are_signposted(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Neither is an answer, but both are read for risk: a threat someone received may be
    forwarded to us, and a photo's caption can be edited to say what the photo did not."""
    async with running_bot(api, tmp_path):
        ada = Chat(api, ADA)
        await onboard(ada)
        chat = {"id": ADA.chat_id, "type": "private", "first_name": ADA.first_name}
        sender = {"id": ADA.user_id, "is_bot": False, "first_name": ADA.first_name}
        before = len(ada.messages)
        api.send_update(forwarded(ADA, "he'll kill me if I go back there", 991001))
        assert "116 123" in (await ada.expect(before + 1)).text
        assert "get in touch" in (await ada.expect(before + 2)).text

        before = len(ada.messages)
        photo = [{"file_id": "AgAD-invented", "file_unique_id": "inv1", "width": 1, "height": 1}]
        api.send_update(
            {
                "edited_message": {
                    "message_id": 991002,
                    "date": int(time.time()) - 60,
                    "edit_date": int(time.time()),
                    "chat": chat,
                    "from": sender,
                    "photo": photo,
                    "caption": "i want to kill myself",
                }
            }
        )
        assert "116 123" in (await ada.expect(before + 1)).text


async def test_no_is_respected_and_no_one_to_tell_is_said_plainly(
    api: LocalBotApi, tmp_path: Path
) -> None:
    async with running_bot(api, tmp_path) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        sam_had = len(sam.messages)
        ada = Chat(api, ADA)
        await onboard(ada)  # London
        before = len(ada.messages)
        await ada.say("i want to kill my self")
        await ada.expect(before + 2)  # the signpost, then the question
        declined = await ada.tap("No, thank you")
        assert "We have not told anyone" in declined.text
        had = len(ada.messages)
        api.send_photo(ADA, caption="i want to kill myself")  # a caption is read too
        assert "116 123" in (await ada.expect(had + 1)).text
        bran = Chat(api, BRAN)
        await onboard(bran, region="Wales")  # nobody in Wales holds the duty
        before = len(bran.messages)
        await bran.say("I'm not safe at home")
        await bran.expect(before + 2)
        reached = await bran.tap("Yes, please")
        assert "could not reach anyone" in reached.text and "999" in reached.text
        assert len(sam.messages) == sam_had  # Sam (London) heard of neither
        statuses = {
            s
            for (s,) in Records(runtime.settings).query("SELECT status FROM safeguarding_requests")
        }
        assert statuses == {"declined", "no_one_reached", "asked"}  # asked: the caption


async def test_when_no_alert_reaches_anyone_the_person_is_told(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Sam holds the duty but has blocked the bot: the alert fails with 403, and a minute
    later Ada hears plainly that nobody could be reached, with the numbers again."""
    clock = ManualClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        api.block(SAM.chat_id)
        ada = Chat(api, ADA)
        had = await ada_is_asked_about_contact(ada)
        assert "told the probation team" in (await ada.tap("Yes, please")).text
        records = Records(runtime.settings)
        async with asyncio.timeout(10):  # the 403 comes back
            while not records.query("SELECT 1 FROM people WHERE reachable = 0"):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        clock.advance(61)
        await runtime.scheduler.run_due()
        await said(ada, "could not reach anyone", had)
        assert "116 123" in ada.messages[-1].text
        assert "remove_keyboard" in str(ada.messages[-1].reply_markup)  # "Share my number"
        assert records.query("SELECT status FROM safeguarding_requests") == [("no_one_reached",)]
        assert len(sam.messages) == 1  # only the /help answer from before
        # A tap of "Share my number" that was still on her screen is answered plainly.
        before = len(ada.messages)
        api.send_update(contact_update(ADA, "+447700900123", ADA.user_id))
        late = await ada.expect(before + 1)
        assert "cannot pass on your number now" in late.text and "999" in late.text
        assert "remove_keyboard" in str(late.reply_markup)


@pytest.mark.parametrize("sam_writes", [False, True])
async def test_a_request_no_one_answers_is_raised_again_and_the_person_told(
    api: LocalBotApi, tmp_path: Path, sam_writes: bool
) -> None:
    """Ada was told "someone will write to you here". Four hours on, if no one has, Sam
    (the duty) is asked again with the button, Morgan (an admin) is asked to find someone,
    and Ada hears plainly that we are still trying, with the numbers. If Sam wrote, nothing
    more happens."""
    clock = ManualClock(datetime(2026, 11, 26, 22, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        morgan = await make_morgan_an_admin(runtime, api)
        ada = Chat(api, ADA)
        had, sent = await ada_asks_for_contact(ada)
        assert "Someone will write to you here" in sent.text
        alert = await sam.expect(2)
        assert "SG-1" in alert.text
        if sam_writes:
            await sam.tap("Write to them")
            await sam.say("Hello, this is Sam from probation.")
            await said(ada, "Hello, this is Sam", had)
        ada_had, sam_had, morgan_had = len(ada.messages), len(sam.messages), len(morgan.messages)

        clock.advance(4 * 3_600 + 1)
        await runtime.scheduler.run_due()
        records = Records(runtime.settings)
        raised = "SELECT COUNT(*) FROM audit_log WHERE action = 'safeguarding.unanswered'"
        if sam_writes:
            assert records.query(raised) == [(0,)]
            await settled(api, Records(runtime.settings))  # nothing is on its way either
            assert (len(ada.messages), len(sam.messages), len(morgan.messages)) == (
                ada_had,
                sam_had,
                morgan_had,
            )
            return
        assert records.query(raised) == [(1,)]
        again = await sam.expect(sam_had + 1)
        assert "SG-1" in again.text and "4 hours" in again.text
        assert "Write to them" in str(again.reply_markup)
        told = await morgan.expect(morgan_had + 1)
        assert "SG-1 (London)" in told.text and "write to them today" in told.text
        still = await ada.expect(ada_had + 1)
        assert "no one from probation has written to you yet" in still.text
        assert "999" in still.text and "116 123" in still.text


@pytest.mark.parametrize(
    "case", ["a later request answered", "nobody to ask", "no duty, an admin", "number shared"]
)
async def test_what_the_person_is_told_four_hours_on_is_true(
    api: LocalBotApi, tmp_path: Path, case: str
) -> None:
    """Four hours after Ada's alert, what she is told must be so: nothing, when Sam wrote to
    her about a later request; "could not reach anyone" (not "we have asked them again")
    when nobody holds the duty any more and there is no admin; nothing when she shared
    her number (Sam may have phoned), though Sam is asked again."""
    clock = ManualClock(datetime(2026, 11, 26, 22, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        ada = Chat(api, ADA)
        await ada_asks_for_contact(ada)
        await sam.expect(2)
        if case == "a later request answered":
            clock.advance(2 * 3_600)  # within the hour it would be the same request
            before = len(ada.messages)
            await ada.say("i want to end it all")
            await ada.expect(before + 2)
            await ada.tap("Yes, please")
            await sam.expect(3)  # SG-2's alert
            await sam.tap("Write to them")  # under the newest alert: SG-2
            await sam.say("Hello, this is Sam from probation.")
            await said(ada, "Hello, this is Sam", before)
        elif case in ("nobody to ask", "no duty, an admin"):
            async with runtime.db.transaction() as conn:
                who = runtime.service.pseudonym_of(SAM.user_id)
                await StaffRoles(conn).revoke_safeguarding(who, "london")
            if case == "no duty, an admin":
                morgan = await make_morgan_an_admin(runtime, api)
        else:
            await ada_shares_her_number(api, ada)
            await sam.expect(3)
        ada_had, sam_had = len(ada.messages), len(sam.messages)

        clock.set(datetime(2026, 11, 27, 2, 0, 1, tzinfo=UTC))  # four hours after SG-1
        await runtime.scheduler.run_due()
        records = Records(runtime.settings)
        raised = "SELECT details FROM audit_log WHERE action = 'safeguarding.unanswered'"
        if case == "a later request answered":
            assert records.query(raised) == []
        elif case == "nobody to ask":
            told = await ada.expect(ada_had + 1)
            assert "could not reach anyone" in told.text and "asked them again" not in told.text
            assert len(sam.messages) == sam_had
        elif case == "no duty, an admin":
            asked = await morgan.expect(2)
            assert "No one in London has the safety duty" in asked.text
            assert "asked them again" in (await ada.expect(ada_had + 1)).text
        else:
            again = await sam.expect(sam_had + 1)
            assert "SG-1" in again.text and "Write to them" in str(again.reply_markup)
            await settled(api, Records(runtime.settings))
            assert len(ada.messages) == ada_had


async def test_i_dont_understand_on_the_contact_question(api: LocalBotApi, tmp_path: Path) -> None:
    """The contact question can be explained (what yes and no do), and is asked again with
    its buttons; the answer given after it counts once."""
    async with running_bot(api, tmp_path) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        ada = Chat(api, ADA)
        await ada_is_asked_about_contact(ada)
        explained = await ada.tap("I don't understand")
        assert "If you say no, we tell no one." in explained.text
        assert explained.text.endswith("We will only tell them if you say yes.")
        assert "Yes, please" in str(explained.reply_markup)
        assert "told the probation team" in (await ada.tap("Yes, please")).text
        assert "SG-1" in (await sam.expect(2)).text
        assert "already have your answer" in (await ada.tap("No, thank you")).text


async def test_a_yes_no_one_could_be_told_of_reaches_whoever_is_given_the_duty(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Nobody holds the duty in Wales when Bran says yes to contact: he hears plainly that
    no one could be reached, and Morgan (an admin) is asked at once to give someone the
    duty. Rhys takes it with an invite link and is sent Bran's request straight away, with
    the button that lets him write to Bran."""
    async with running_bot(api, tmp_path) as runtime:
        morgan = await make_morgan_an_admin(runtime, api)
        bran = Chat(api, BRAN)
        await onboard(bran, region="Wales")
        before = len(bran.messages)
        await bran.say("I'm not safe at home")
        await bran.expect(before + 2)
        assert "could not reach anyone" in (await bran.tap("Yes, please")).text
        asked = await morgan.expect(2)
        assert "SG-1 (Wales)" in asked.text
        assert "could not reach anyone with the safety duty in Wales" in asked.text
        records = Records(runtime.settings)
        assert records.query("SELECT status FROM safeguarding_requests") == [("no_one_reached",)]

        link = await create_invite(
            runtime.db,
            records.secrets,
            "staff",
            "wales",
            True,
            24,
            "yousaid_test_bot",
            runtime.clock.now_ms(),
            "cli",
        )
        rhys = Chat(api, RHYS)
        welcome = await rhys.say(f"/start {link.rsplit('=', 1)[1]}")
        assert "a staff member for Wales, with the safety duty" in welcome.text
        await runtime.scheduler.run_due()
        await said(rhys, "You now have the safety duty for Wales", 0)
        handed = next(m for m in rhys.messages if "safety duty for Wales" in (m.text or ""))
        assert "SG-1" in handed.text and "Write to them" in str(handed.reply_markup)
        assert "They read our messages in English." in handed.text  # as the alert says
        assert records.query("SELECT status FROM safeguarding_requests") == [("alerted",)]

        bran_had = len(bran.messages)
        await rhys.tap("Write to them")
        await rhys.say("Hello Bran, this is Rhys from probation.")
        await said(bran, "this is Rhys from probation", bran_had)
        actions = [a for (a,) in records.query("SELECT action FROM audit_log ORDER BY id")]
        assert actions.index("safeguarding.no_one_reached") < actions.index(
            "safeguarding.handed_over"
        )
        assert "safeguarding.message_sent" in actions


async def test_a_new_duty_holder_gets_only_the_requests_no_one_has_written_to(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Sam (London) wrote to Ada but not yet to Bran. Rhys, given the London duty from the
    command line, is sent Bran's request and not Ada's; given it again, nothing more."""
    async with running_bot(api, tmp_path) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        ada, bran = Chat(api, ADA), Chat(api, BRAN)
        had, _ = await ada_asks_for_contact(ada)
        await sam.expect(2)
        await sam.tap("Write to them")
        await sam.say("Hello, this is Sam from probation.")
        await said(ada, "Hello, this is Sam", had)
        await ada_asks_for_contact(bran)  # Bran is in London too
        assert "SG-2" in (await sam.expect(4)).text  # 3: "Sent", 4: Bran's alert
        rhys = Chat(api, RHYS)
        await rhys.say("/help")
        await rhys.expect(1)
        who = runtime.service.pseudonym_of(RHYS.user_id)
        for _ in range(2):
            now = runtime.clock.now_ms()
            await grant_role(runtime.db, who, "staff", "london", True, "cli", now)
            await runtime.scheduler.run_due()
        handed = await rhys.expect(2)
        assert "SG-2" in handed.text and "SG-1" not in handed.text
        records = Records(runtime.settings)
        await settled(api, records)  # nothing else on its way
        assert len(rhys.messages) == 2
        handovers = "SELECT target FROM audit_log WHERE action = 'safeguarding.handed_over'"
        assert records.query(handovers) == [("SG-2",)]


async def test_a_reply_typed_without_the_reply_button_is_passed_on(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Sam wrote to Ada. Ada types her answer, in two messages, instead of tapping Reply:
    each is passed on to Sam and she is told so, not that there is nothing to answer."""
    async with running_bot(api, tmp_path) as runtime:
        sam, ada = await sam_writes_to_ada(runtime, api, "Are you safe right now?")
        sam_had = len(sam.messages)
        assert "passed on your message" in (await ada.say("im at home on my own")).text
        assert "passed on your message" in (await ada.say("please ring me")).text
        first, second = await sam.expect(sam_had + 2), sam.messages[sam_had]
        assert "SG-1" in first.text and "SG-1" in second.text
        assert "im at home on my own" in second.text and "please ring me" in first.text
        assert "Write to them" in str(first.reply_markup)
        # A message as long as Telegram lets her send: with the reference in front it is
        # over the cap, so it reaches Sam in two parts, the button under the last.
        long_reply = " ".join(["I could not sleep and kept walking about all night."] * 80)
        long_reply = long_reply[:4090]
        assert "passed on your message" in (await ada.say(long_reply)).text
        last = await sam.expect(sam_had + 4)
        whole = "\n".join(m.text or "" for m in sam.messages[sam_had + 2 :])
        assert "".join(long_reply.split()) in "".join(whole.split())  # every word of it
        assert "Write to them" in str(last.reply_markup)
        assert sam.messages[sam_had + 2].reply_markup is None


async def test_several_risk_messages_in_a_row_get_the_help_each_time_and_one_question(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Three risk messages in a row: the numbers after each, one contact question, and so
    one alert at most. An hour later, a new message asks again."""
    clock = ManualClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        ada = Chat(api, ADA)
        await onboard(ada)
        before = len(ada.messages)
        for words in ("I want to die", "i cant go on", "I want to end it"):
            had = len(ada.messages)
            assert "116 123" in (await ada.say(words)).text
            await ada.expect(had + (2 if had == before else 1))
        await settled(api, Records(runtime.settings))
        questions = [m for m in ada.messages[before:] if "get in touch" in (m.text or "")]
        assert len(questions) == 1
        records = Records(runtime.settings)
        assert records.query("SELECT COUNT(*) FROM safeguarding_requests") == [(1,)]
        clock.advance(3_601)
        had = len(ada.messages)
        await ada.say("I want to die")
        assert "get in touch" in (await ada.expect(had + 2)).text
        assert records.query("SELECT COUNT(*) FROM safeguarding_requests") == [(2,)]


async def test_a_no_to_contact_can_become_a_yes(api: LocalBotApi, tmp_path: Path) -> None:
    """Ada says no, then taps "Yes, please" on the same question: the duty staff are told.
    A yes is not taken back by a later no (staff may be on their way)."""
    async with running_bot(api, tmp_path) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        ada = Chat(api, ADA)
        await ada_is_asked_about_contact(ada)
        assert "We have not told anyone" in (await ada.tap("No, thank you")).text
        assert "told the probation team" in (await ada.tap("Yes, please")).text
        assert "SG-1" in (await sam.expect(2)).text
        assert "already have your answer" in (await ada.tap("No, thank you")).text
        statuses = Records(runtime.settings).query("SELECT status FROM safeguarding_requests")
        assert statuses == [("alerted",)]


async def test_a_risky_reply_typed_hours_later_reaches_the_staff_writing_to_them(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Two hours after her alert Sam writes to Ada, and she types back a risk message: she
    gets the numbers, and it goes to Sam as written; she is not asked the contact question
    again (Sam is already in touch)."""
    clock = ManualClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        ada = Chat(api, ADA)
        had, _ = await ada_asks_for_contact(ada)
        await sam.expect(2)
        clock.advance(2 * 3_600)
        await sam.tap("Write to them")
        await sam.say("Hello, this is Sam from probation.")
        await said(ada, "this is Sam from probation", had)
        await settled(api, Records(runtime.settings))
        sam_had, ada_had = len(sam.messages), len(ada.messages)
        assert "116 123" in (await ada.say("no im going to end it all tonight")).text
        passed_on = await sam.expect(sam_had + 1)
        assert "SG-1" in passed_on.text and "end it all tonight" in passed_on.text
        await said(ada, "passed on your message", ada_had)
        assert not any("get in touch" in (m.text or "") for m in ada.messages[ada_had:])
        records = Records(runtime.settings)
        assert records.query("SELECT COUNT(*) FROM safeguarding_requests") == [(1,)]


async def test_a_typed_yes_is_not_taken_for_another_question_while_help_is_asked(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Half-way through signing up Ada writes a risk message: the contact question is now
    the one she sees. A typed "Yes" is not taken as her answer to "Can we keep your
    answers?" (nor as a yes to contact: that is a tap)."""
    async with running_bot(api, tmp_path) as runtime:
        ada = Chat(api, ADA)
        await ada.start()
        await ada.tap("OK, go on")
        had = len(ada.messages)
        await ada.say("i want to kill myself")
        await ada.expect(had + 2)
        assert "tap one of the buttons" in (await ada.say("Yes")).text
        records = Records(runtime.settings)
        assert records.query("SELECT COUNT(*) FROM consent_ledger") == [(0,)]


async def test_words_added_to_a_fresh_answer_are_not_sent_to_the_duty_staff(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Sam wrote to Ada this week. She then does a check-in, and sends the rest of her
    written answer as a second message: it is added to her answer (which her officer
    never sees), not passed on to Sam."""
    async with running_bot(api, tmp_path) as runtime:
        sam, ada = await sam_writes_to_ada(runtime, api)
        await scores_a_check_in(ada)
        await ada.say("My officer never listens")
        sam_had = len(sam.messages)
        assert "added this to what you wrote" in (await ada.say("and he shouts at me")).text
        await settled(api, Records(runtime.settings))
        assert len(sam.messages) == sam_had


async def test_a_reply_to_duty_staff_who_wrote_after_her_answer_reaches_them(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Ada writes a check-in answer, then asks for contact; Sam writes "Are you safe?"
    minutes later. Her typed "yes im at my sisters" answers Sam: it reaches Sam, and is
    not added to her feedback (where managers could quote it)."""
    async with running_bot(api, tmp_path) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        ada = Chat(api, ADA)
        await onboard(ada)
        await scores_a_check_in(ada)
        await ada.say("The appointments keep moving")
        had = len(ada.messages)
        await ada.say("i want to kill myself")
        await ada.expect(had + 2)
        await ada.tap("Yes, please")
        await sam.expect(2)
        await sam.tap("Write to them")
        await sam.say("Are you safe right now?")
        await said(ada, "Are you safe right now?", had)
        await settled(api, Records(runtime.settings))
        sam_had = len(sam.messages)
        told = await ada.say("yes im at my sisters on Elm Road now")
        assert "passed on your message" in told.text
        assert "at my sisters" in (await sam.expect(sam_had + 1)).text
        records = Records(runtime.settings)
        keys = load_secrets(runtime.settings.secrets_path, production=False)
        kept = [
            keys.decrypt_text(bytes(c)) for (c,) in records.query("SELECT ciphertext FROM answers")
        ]
        assert kept == ["The appointments keep moving"]


async def test_the_other_duty_holders_see_that_a_colleague_wrote_or_called(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Sam and Rhys both hold London's duty. Sam writes to Ada: Rhys is told, with what
    Sam wrote, so Ada does not hear from two officers who do not know of each other.
    After Ada shares her number, Rhys calls her: Sam is told."""
    async with running_bot(api, tmp_path) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        rhys = Chat(api, RHYS)
        await rhys.say("/help")
        await rhys.expect(1)
        async with runtime.db.transaction() as conn:
            who = runtime.service.pseudonym_of(RHYS.user_id)
            await StaffRoles(conn).grant(who, "staff", "london", True, "cli", 0)
        ada = Chat(api, ADA)
        had, _ = await ada_asks_for_contact(ada)
        await sam.expect(2)
        await rhys.expect(2)  # the alert, to both
        await sam.tap("Write to them")
        sam_had = len(sam.messages)
        await sam.say("Are you safe right now? This is Sam.")
        told = await rhys.expect(3)
        assert "SG-1. Someone else on duty wrote this to them" in told.text
        assert "Are you safe right now? This is Sam." in told.text
        assert "Write to them" in str(told.reply_markup)
        await said(ada, "Are you safe right now?", had)
        await settled(api, Records(runtime.settings))
        assert len(sam.messages) == sam_had + 1  # "passed on": nothing about themselves

        await ada_shares_her_number(api, ada)
        assert "shared a phone number" in (await rhys.expect(4)).text
        await rhys.tap("I called them")
        assert "someone else on duty called them" in (await sam.expect(sam_had + 3)).text


async def test_a_risk_of_another_kind_within_the_hour_is_asked_about_again(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """After a self-harm alert, "he's got a knife" within the hour is something else: the
    contact question again, so its alert says what it is."""
    async with running_bot(api, tmp_path) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        ada = Chat(api, ADA)
        await onboard(ada)
        had = len(ada.messages)
        await ada.say("I keep cutting myself")
        await ada.expect(had + 2)
        await ada.tap("Yes, please")
        assert "self-harm" in (await sam.expect(2)).text
        had = len(ada.messages)
        await ada.say("he's got a knife")
        assert "get in touch" in (await ada.expect(had + 2)).text
        await ada.tap("Yes, please")
        assert "being in danger" in (await sam.expect(3)).text


async def test_a_yes_long_after_the_question_is_timed_from_the_yes(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Ada says no, and a day and a half later taps "Yes, please": the request counts from
    her yes (the re-raise four hours on says 4 hours, not 40), not from the question."""
    clock = ManualClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        ada = Chat(api, ADA)
        await ada_is_asked_about_contact(ada)
        await ada.tap("No, thank you")
        clock.advance(36 * 3_600)
        assert "told the probation team" in (await ada.tap("Yes, please")).text
        await sam.expect(2)
        records = Records(runtime.settings)
        assert records.query("SELECT created_at FROM safeguarding_requests") == [
            (runtime.clock.now_ms(),)
        ]
        clock.advance(4 * 3_600 + 1)
        await runtime.scheduler.run_due()
        again = await sam.expect(3)
        assert "for 4 hours" in again.text


async def test_a_duty_given_before_the_holder_ever_wrote_reaches_them_when_they_do(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Rhys is given the London duty from the command line before he has written to the
    bot (it cannot write first). When he does, within the hour he is sent Bran's request
    no one could be told of."""
    clock = ManualClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        bran = Chat(api, BRAN)
        await ada_asks_for_contact(bran)  # nobody in London holds the duty
        who = runtime.service.pseudonym_of(RHYS.user_id)
        await grant_role(runtime.db, who, "staff", "london", True, "cli", clock.now_ms())
        await runtime.scheduler.run_due()  # he cannot be written to yet
        rhys = Chat(api, RHYS)
        await rhys.say("/help")
        await rhys.expect(2)  # the help, the staff commands
        clock.advance(3_601)
        await runtime.scheduler.run_due()
        handed = await rhys.expect(3)
        assert "SG-1" in handed.text and "Write to them" in str(handed.reply_markup)


async def test_duty_staff_asking_about_risk_are_not_signposted(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Sam asks Ada "do you have a plan to end it?": words a duty holder must be able to
    write. Sam is not signposted and no request is opened in Sam's name; Ada gets it."""
    async with running_bot(api, tmp_path) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        ada = Chat(api, ADA)
        had, _ = await ada_asks_for_contact(ada)
        await sam.expect(2)
        await sam.tap("Write to them")
        sent = await sam.say("Do you have a plan to end it? I can call you today.")
        assert "passed on your message" in sent.text and "116 123" not in sent.text
        await said(ada, "Do you have a plan to end it?", had)
        records = Records(runtime.settings)
        assert records.query("SELECT COUNT(*) FROM safeguarding_requests") == [(1,)]


async def test_a_duty_holder_who_called_the_number_is_not_asked_again(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Ada shares her number; Sam phones her and taps "I called them" under it. Four
    hours on, nobody is asked again about her request (someone has been in touch), and
    staff without the duty cannot tap it for them."""
    clock = ManualClock(datetime(2026, 11, 26, 22, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        ada = Chat(api, ADA)
        await ada_asks_for_contact(ada)
        await sam.expect(2)
        await ada_shares_her_number(api, ada)
        number = await sam.expect(3)
        assert "I called them" in str(number.reply_markup)
        morgan = await make_morgan_an_admin(runtime, api)  # an admin, without the duty
        _, called = sam.find_button("I called them")
        api.press_button(MORGAN, morgan.messages[-1].message_id, called)
        assert "not available" in (await morgan.expect(2)).text
        assert "will not ask again" in (await sam.tap("I called them")).text
        clock.advance(4 * 3_600 + 1)
        await runtime.scheduler.run_due()
        records = Records(runtime.settings)
        raised = "SELECT COUNT(*) FROM audit_log WHERE action = 'safeguarding.unanswered'"
        assert records.query(raised) == [(0,)]
        called_audit = "SELECT COUNT(*) FROM audit_log WHERE action = 'safeguarding.called'"
        assert records.query(called_audit) == [(1,)]


async def test_a_threat_forwarded_among_many_is_still_signposted(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Ada forwards sixty messages she was sent, all at once: over the flood limit, so the
    last are not answered, but each is still read for risk: the threat among them gets the
    numbers and the contact question (it was dropped unread)."""
    async with running_bot(api, tmp_path, FLOOD_LIMIT="20") as runtime:
        ada = Chat(api, ADA)
        await onboard(ada)
        before = len(ada.messages)
        for n in range(60):  # however a 10 s window splits them, over 20 in one
            words = "he'll kill me if I go back there" if n == 59 else f"see you at {n}"
            api.send_update(forwarded(ADA, words, 992000 + n))
        await said(ada, "116 123", before)
        await said(ada, "get in touch", before)
        records = Records(runtime.settings)
        assert records.query("SELECT category FROM safeguarding_requests") == [
            ("immediate_danger",)
        ]
        assert any("sending a lot of messages" in (m.text or "") for m in ada.messages)


async def test_a_threat_edited_into_a_message_in_a_flood_is_still_signposted(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Ada sends thirty messages in a rush and then edits one to say what is happening:
    over the flood limit the edit is not answered, but it is read for risk as a new
    message is (the flood path read only new messages' text)."""
    async with running_bot(api, tmp_path, FLOOD_LIMIT="20") as runtime:
        ada = Chat(api, ADA)
        await onboard(ada)
        before = len(ada.messages)
        for n in range(30):
            api.send_text(ADA, f"on my way, part {n}")
        api.send_edited_message(ADA, api.latest_message_id(ADA), "he'll kill me if I go back there")
        await said(ada, "116 123", before)
        records = Records(runtime.settings)
        await eventually(
            lambda: (
                records.query("SELECT category FROM safeguarding_requests")
                == [("immediate_danger",)]
            )
        )


async def test_a_threat_in_a_flood_reaches_the_duty_staff_writing_to_them(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Sam is writing to Ada. She sends sixty messages in a rush, the last a threat, and
    forwards one she was sent: over the flood limit, not answered, but each threat still
    reaches Sam (the guard leaves a reply to the duty staff to be passed on, and the flood
    path did not pass it). A STOP in the rush is not dropped either."""
    async with running_bot(api, tmp_path, FLOOD_LIMIT="20") as runtime:
        sam, _ = await sam_writes_to_ada(runtime, api, "Are you safe right now?")
        sam_had = len(sam.messages)
        for n in range(60):
            api.send_text(
                ADA, "he'll kill me if I go back there" if n == 59 else f"on my way, part {n}"
            )
        await eventually(
            lambda: any("he'll kill me" in (m.text or "") for m in sam.messages[sam_had:])
        )
        api.send_update(forwarded(ADA, "I'm going to kill you when I find you", 993001))
        await eventually(lambda: any("when I find you" in (m.text or "") for m in sam.messages))
        api.send_text(ADA, "STOP")
        records = Records(runtime.settings)
        await eventually(lambda: not any(records.current_consents(ADA).values()))


async def test_a_forwarded_threat_reaches_the_duty_staff_writing_to_them(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Sam is writing to Ada; she forwards a threat she was sent. It is no answer, and the
    guard opens no new request for someone the duty staff already write to: so it goes to
    Sam, as a typed one would (it went nowhere)."""
    async with running_bot(api, tmp_path) as runtime:
        sam, _ = await sam_writes_to_ada(runtime, api, "Are you safe right now?")
        api.send_update(forwarded(ADA, "I'm going to kill you when I find you", 994001))
        await eventually(lambda: any("when I find you" in (m.text or "") for m in sam.messages))


async def test_a_threat_forwarded_while_writing_to_the_duty_staff_reaches_them(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Ada has tapped Reply to write to Sam, and forwards a threat before writing: it is no
    answer to the question on screen, and it still reaches Sam."""
    async with running_bot(api, tmp_path) as runtime:
        sam, ada = await sam_writes_to_ada(runtime, api, "Are you safe right now?")
        await ada.tap("Reply")
        api.send_update(forwarded(ADA, "I'm going to kill you when I find you", 995001))
        await eventually(lambda: any("when I find you" in (m.text or "") for m in sam.messages))


async def test_a_reply_to_the_duty_staff_typed_during_a_check_in_reaches_them(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Sam writes "Are you safe?" while Ada is at a check-in question. Her typed answer is
    for Sam: passed on, not kept as a check-in aside (feedback a manager might quote) nor
    met with "please tap". Nor is what she writes to the contact question kept."""
    async with running_bot(api, tmp_path) as runtime:
        sam, ada = await sam_writes_to_ada(runtime, api)
        records = Records(runtime.settings)
        await ada.say("/feedback")
        await ada.tap("Start")
        await sam.tap("Write to them")
        await sam.say("Are you safe right now? This is Sam.")
        await settled(api, records)
        sam_had = len(sam.messages)
        told = await ada.say("yes I am safe now, I am staying at my sisters house")
        assert "kept what you wrote" not in told.text
        await eventually(
            lambda: any("my sisters house" in (m.text or "") for m in sam.messages[sam_had:])
        )
        assert records.query("SELECT COUNT(*) FROM answers") == [(0,)]


async def test_words_typed_while_the_contact_question_waits_are_not_kept_as_an_aside(
    api: LocalBotApi, tmp_path: Path
) -> None:
    async with running_bot(api, tmp_path) as runtime:
        records = Records(runtime.settings)
        ada = Chat(api, ADA)
        await onboard(ada)
        await ada.say("/feedback")
        await ada.tap("Start")
        had = len(ada.messages)
        await ada.say("some days i just want to end it all")
        await ada.expect(had + 2)  # the numbers, then the contact question
        asked = await ada.say("no please do not tell anyone about this")
        assert "get in touch" in asked.text  # the contact question again, with its buttons
        await settled(api, records)
        assert records.query("SELECT COUNT(*) FROM answers") == [(0,)]


@pytest.mark.parametrize("gone", ["blocked", "deleted"])
async def test_write_to_them_says_so_when_the_person_cannot_be_written_to(
    api: LocalBotApi, tmp_path: Path, gone: str
) -> None:
    """Ada asked for contact, then blocked the bot (or deleted her data). Sam taps "Write
    to them": he is told at once that nothing can reach her, not "Sent" for a message
    nobody gets (a risk case left as if contact was made), nor "not available to you"."""
    async with running_bot(api, tmp_path) as runtime:
        sam = await give_sam_the_duty(runtime, api)
        ada = Chat(api, ADA)
        await ada_asks_for_contact(ada)
        await sam.expect(2)  # the alert
        records = Records(runtime.settings)
        if gone == "blocked":
            api.send_my_chat_member(ADA, status="kicked")
            reachable = "SELECT reachable FROM people WHERE pseudonym = ?"
            who = records.pseudonym(ADA)
            await eventually(lambda: records.query(reachable, who) == [(0,)])
        else:
            await ada.say("/delete")
            message, data = ada.find_button("Yes, delete it all")
            api.press_button(ADA, message.message_id, data)  # its goodbye is deleted after
            await eventually(lambda: records.query("SELECT COUNT(*) FROM people") == [(1,)])
        told = await sam.tap("Write to them")
        expected = "cannot get our messages" if gone == "blocked" else "no longer keep this request"
        assert expected in told.text and "Nothing was sent" in told.text
        answered = "SELECT COUNT(*) FROM safeguarding_requests WHERE answered_at IS NOT NULL"
        assert records.query(answered) == [(0,)]
