"""Onboarding end to end: the real python-telegram-bot Application over HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.local_api import FakePerson, LocalBotApi
from bot.payload_seal import payload_codec
from bot.secrets_file import load_secrets
from storage.clock import ManualClock
from tests.harness import (
    ADA,
    BRAN,
    CERI,
    Chat,
    Records,
    eventually,
    onboard,
    running_bot,
    settings_for,
    settled,
)

NOTICE = "2026-11-v2"


@pytest.fixture()
async def bot(api: LocalBotApi, tmp_path: Path) -> AsyncIterator[Records]:
    async with running_bot(api, tmp_path):
        yield Records(settings_for(api, tmp_path))


async def test_onboarding_records_one_ledger_row_per_decision(
    api: LocalBotApi, bot: Records
) -> None:
    chat = Chat(api, ADA)
    notice = await chat.start()
    assert "will not change your licence" in notice.text
    assert "never see your answers" in notice.text and "116 123" in notice.text
    await chat.tap("OK, go on")
    # A tapped question is marked answered and loses its buttons (no stale taps).
    answered = chat.messages[-2]
    assert answered.reply_markup is None and "You chose: OK, go on" in answered.text
    for answer in ("Yes", "Yes", "No", "Yes"):
        await chat.tap(answer)
    done = await chat.tap("Greater Manchester")
    assert "What happens next" in done.text
    assert bot.consents(ADA) == [
        ("feedback", 1, NOTICE),
        ("panel_invitations", 1, NOTICE),
        ("updates", 0, NOTICE),
        ("quotes", 1, NOTICE),
    ]
    assert bot.query("SELECT region, reachable FROM people") == [("greater-manchester", 1)]
    # Only pseudonyms are stored: no name anywhere, chat id only where sending needs it.
    assert bot.query("SELECT pseudonym FROM people")[0][0] == bot.pseudonym(ADA)
    tables = [t for (t,) in bot.query("SELECT name FROM sqlite_master WHERE type = 'table'")]
    # A sealed outbox payload is read as the sender reads it: its base64 ciphertext holds
    # any three letters now and then by chance, and its plain text is what must not leak.
    _, unseal = payload_codec(load_secrets(bot.settings.secrets_path, production=False))
    for table in tables:
        for row in bot.query(f"SELECT * FROM {table}"):
            texts = [v for v in row if isinstance(v, str)]
            opened = [unseal(v) or "" if v.startswith('{"sealed"') else v for v in texts]
            assert not any("Ada" in v for v in opened), table
    # Nor in the files as text: the Telegram id in digits (the name's three letters turn up
    # by chance in the ciphertext of a large enough file, so they are looked for above).
    stored = b"".join(
        path.read_bytes() for path in Path(bot.settings.database_path).parent.glob("yousaid.db*")
    )
    assert str(ADA.user_id).encode() not in stored


async def test_privacy_changes_one_consent_and_adds_a_row(api: LocalBotApi, bot: Records) -> None:
    chat = Chat(api, ADA)
    await onboard(chat)
    overview = await chat.say("/privacy")
    assert "Tell me what changed: no" in overview.text
    await chat.tap("Tell me what changed")
    after = await chat.tap("Yes")
    assert "Tell me what changed: yes" in after.text
    finished = await chat.tap("That is all")
    assert "Your choices are saved" in finished.text
    assert len(bot.consents(ADA)) == 5
    assert bot.consents(ADA)[-1] == ("updates", 1, NOTICE)


# Invented people who write to the bot in their own language (it speaks English to them).
DOROTA = FakePerson(user_id=700000061, first_name="Dorota", language_code="pl")
IMRAN = FakePerson(user_id=700000062, first_name="Imran", language_code="ur")
MEI = FakePerson(user_id=700000063, first_name="Mei", language_code="zh-hans")


async def test_stop_command_and_bare_stop_withdraw_everything(
    api: LocalBotApi, bot: Records
) -> None:
    """/stop, or the word STOP on its own in any language (dialogues/stop_words.yaml)."""
    said = (
        (ADA, "/stop"),
        (BRAN, "STOP"),
        (CERI, "  Stop! "),
        (DOROTA, "Przestań!"),
        (IMRAN, "بند کرو"),
        (MEI, "停止"),
    )
    for person, word in said:
        chat = Chat(api, person)
        await onboard(chat)
        reply = await chat.say(word)
        assert "no more messages" in reply.text
        assert bot.current_consents(person) == {
            "feedback": False,
            "panel_invitations": False,
            "updates": False,
            "quotes": False,
        }
        assert bot.place(person) is None


async def test_stop_inside_a_sentence_withdraws_nothing(api: LocalBotApi, bot: Records) -> None:
    chat = Chat(api, ADA)
    await onboard(chat)
    rows_before = bot.consents(ADA)
    reply = await chat.say("please stop asking me about housing")
    assert "nothing to answer right now" in reply.text
    assert bot.consents(ADA) == rows_before


async def test_the_same_update_twice_has_the_effect_of_once(api: LocalBotApi, bot: Records) -> None:
    chat = Chat(api, ADA)
    await chat.start()
    await chat.tap("OK, go on")
    message, data = chat.find_button("Yes")
    update = {
        "update_id": 424242,
        "callback_query": {
            "id": "dup-1",
            "chat_instance": "ci-1",
            "data": data,
            "from": {"id": ADA.user_id, "is_bot": False, "first_name": "Ada"},
            "message": {
                "message_id": message.message_id,
                "date": 1_790_000_000,
                "chat": {"id": ADA.chat_id, "type": "private", "first_name": "Ada"},
                "text": message.text,
            },
        },
    }
    api.send_update(dict(update))
    api.send_update(dict(update))
    await chat.expect(4)
    await chat.say("/help")  # a later update proves the duplicate was seen and ignored
    assert bot.consents(ADA) == [("feedback", 1, NOTICE)]
    assert bot.query("SELECT COUNT(*) FROM inbox WHERE update_id = 424242") == [(1,)]
    assert sum("Can we invite you" in m.text for m in chat.messages) == 1


async def test_bad_input_gets_kind_answers_and_keeps_data_consistent(
    api: LocalBotApi, bot: Records
) -> None:
    chat = Chat(api, ADA)
    await chat.start()
    await chat.tap("OK, go on")
    assert "Please tap one of the buttons" in (await chat.say("yes please")).text
    before = len(chat.messages)
    api.send_sticker(ADA)
    assert "only read text" in (await chat.expect(before + 1)).text
    # Someone who speaks or shows rather than types is told nobody will hear or see it,
    # and where to get help now (they may be in crisis).
    api.send_photo(ADA)
    photo = await chat.expect(before + 2)
    assert "cannot look at pictures" in photo.text and "116 123" in photo.text
    api.send_voice(ADA)
    voice = await chat.expect(before + 3)
    assert "cannot listen to voice" in voice.text and "999" in voice.text
    api.send_animation(ADA)  # a GIF: an animation and a document at once
    assert "cannot watch videos" in (await chat.expect(before + 4)).text
    api.send_video_note(ADA)  # answered as a voice note is (not straight after one)
    video_note = await chat.expect(before + 5)
    assert "cannot listen to voice" in video_note.text and "116 123" in video_note.text
    assert "Can we keep your answers" in video_note.text  # then the question again
    old_message, old_data = chat.messages[0], "b" + "0" * 16
    before = len(chat.messages)
    api.press_button(ADA, old_message.message_id, old_data)
    assert "older message" in (await chat.expect(before + 1)).text
    assert "Here is where you were" in (await chat.say("/start")).text
    assert "Please tap one of the buttons" in (await chat.say("x" * 4096)).text
    assert "I do not know that command" in (await chat.say("/dance")).text
    await chat.tap("Yes")  # and the dialogue carries on from the right step
    assert bot.consents(ADA) == [("feedback", 1, NOTICE)]
    assert bot.place(ADA) == ["onboarding", "consent_invitations"]


async def test_unredeemable_start_code_is_explained_then_onboarding_goes_on(
    api: LocalBotApi, bot: Records
) -> None:
    chat = Chat(api, ADA)
    api.send_command(ADA, "start", "NOSUCHCODE123")
    first, second = (await api.wait_for_messages(ADA.chat_id, 2))[:2]
    assert "code I cannot use" in first.text and "ask you for your area" in first.text
    assert "Which language" in second.text
    await chat.tap("English")
    await chat.tap("OK, go on")
    for answer in ("No", "No", "No", "No"):
        await chat.tap(answer)
    assert "Which area" in chat.messages[-1].text


async def test_group_chats_are_told_and_left(api: LocalBotApi, bot: Records) -> None:
    api.send_group_message(ADA, chat_id=-100123, text="hello bot")
    await api.wait_for_messages(-100123, 1)
    await api.wait_for_calls("leaveChat", 1)
    assert "only work in private chats" in api.messages(-100123)[0].text
    assert -100123 in api.left_chats
    assert bot.query("SELECT COUNT(*) FROM people") == [(0,)]


async def test_a_group_that_refuses_the_goodbye_is_left_without_an_alert(
    api: LocalBotApi, bot: Records, caplog: pytest.LogCaptureFixture
) -> None:
    """A group where the bot may not post refuses its "private chats only" (400): it
    still leaves, and no error is raised for operators (the alert is for lost messages
    someone needed: a stranger adding the bot to groups would bury them)."""
    api.fail_next(
        "sendMessage",
        400,
        chat_id=-100124,
        description="Bad Request: not enough rights to send text messages to the chat",
    )
    api.send_group_message(ADA, chat_id=-100124, text="hello bot")
    await api.wait_for_calls("leaveChat", 1)
    await settled(api, bot)
    assert -100124 in api.left_chats
    assert bot.query("SELECT status FROM outbox WHERE chat_id = -100124 AND kind = 'message'") == [
        ("failed",)
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_blocking_marks_unreachable_and_writing_again_restores(
    api: LocalBotApi, bot: Records
) -> None:
    chat = Chat(api, ADA)
    await onboard(chat)
    api.send_my_chat_member(ADA, status="kicked")
    await eventually(lambda: bot.query("SELECT reachable FROM people") == [(0,)])
    api.send_my_chat_member(ADA, status="member")
    await chat.say("/help")
    assert bot.query("SELECT reachable FROM people") == [(1,)]


async def test_a_button_typed_rather_than_tapped_is_taken_as_the_tap(
    api: LocalBotApi, bot: Records
) -> None:
    """Some people type what a button says. Typed exactly (case, punctuation and emoji
    aside), in their language or in English, it answers the question on screen; anything
    else is asked again, as before."""
    chat = Chat(api, ADA)
    await chat.start()
    await chat.tap("OK, go on")
    assert "Can we invite you to panels" in (await chat.say("YES!")).text
    assert "Can we tell you what changed" in (await chat.say("no 👎")).text
    assert "Please tap one of the buttons" in (await chat.say("yes, if you want")).text
    assert "Can we use your words" in (await chat.say("yes")).text
    await chat.tap("No")
    assert "You are signed up" in (await chat.say("wales")).text
    assert bot.current_consents(ADA) == {
        "feedback": True,
        "panel_invitations": False,
        "updates": True,
        "quotes": False,
    }
    assert bot.query("SELECT region FROM people") == [("wales",)]


async def test_yes_typed_before_a_question_came_does_not_answer_it(
    api: LocalBotApi, bot: Records
) -> None:
    """No signal: Ada types "yes" three times at "Can we keep your answers?", and all three
    arrive together. The first answers it; the others were written before the next
    questions reached her, so they say yes to nothing she had not read."""
    chat = Chat(api, ADA)
    await chat.start()
    asked = (await chat.tap("OK, go on")).text
    assert "Can we keep your answers" in asked
    before = len(chat.messages)
    for _ in range(3):
        api.send_text(ADA, "yes")
    await chat.expect(before + 3)  # the next question, then "came before" twice
    await settled(api, bot)
    replies = [m.text or "" for m in chat.messages[before:]]
    assert "Can we invite you to panels" in replies[0]
    for reply in replies[1:]:
        assert "came before this question" in reply and "Can we invite you to panels" in reply
    assert len(replies) == 3
    assert bot.current_consents(ADA) == {"feedback": True}
    # Asked again after "hmm", it is the same question: a "yes" after it answers it.
    assert "Please tap one of the buttons" in (await chat.say("hmm")).text
    assert "Can we tell you what changed" in (await chat.say("yes")).text  # read, then typed
    assert bot.current_consents(ADA) == {"feedback": True, "panel_invitations": True}


async def test_no_thanks_at_the_notice_keeps_nothing(api: LocalBotApi, bot: Records) -> None:
    """Ada reads the notice and says no, thanks: she is told plainly that nothing will be
    asked or sent and that it changes nothing; no consent is recorded; writing later is
    not taken as signing up, and /start begins again."""
    chat = Chat(api, ADA)
    await chat.start()
    declined = await chat.tap("No, thanks")
    assert "We will not ask you anything" in declined.text
    assert "changes nothing for your licence" in declined.text
    assert bot.query("SELECT COUNT(*) FROM consent_ledger") == [(0,)]
    assert "You said no to taking part" in (await chat.say("ok")).text
    assert "Which language" in (await chat.say("/start")).text


async def test_no_thanks_after_an_earlier_yes_takes_the_yes_back(
    api: LocalBotApi, bot: Records
) -> None:
    """Ada said yes to two things, left sign-up with /cancel, began again and said no,
    thanks at the notice: "we will not send you messages" holds, so the yeses go."""
    chat = Chat(api, ADA)
    await chat.start()
    await chat.tap("OK, go on")
    await chat.tap("Yes")
    await chat.tap("Yes")
    await chat.say("/cancel")
    assert "Which language" in (await chat.say("/start")).text  # sign-up begins again
    await chat.tap("English")
    assert "We will not ask you anything" in (await chat.tap("No, thanks")).text
    assert bot.current_consents(ADA) == {"feedback": False, "panel_invitations": False}


async def test_the_area_can_be_kept_back(api: LocalBotApi, bot: Records) -> None:
    """Being in a probation area says something about a person: "I'd rather not say" keeps
    it back, and they are told plainly what that means, not that questions will come."""
    chat = Chat(api, ADA)
    await chat.start()
    await chat.tap("OK, go on")
    for answer in ("No", "No", "No", "No"):
        await chat.tap(answer)
    done = await chat.tap("I'd rather not say")
    assert "we will not send you questions, panels or news" in done.text
    assert "signed up" not in done.text and "/area" in done.text
    assert bot.query("SELECT region FROM people") == [(None,)]
    assert "nothing to answer" in (await chat.say("hello")).text  # she finished signing up


async def test_an_album_gets_one_answer_not_one_per_photo(api: LocalBotApi, tmp_path: Path) -> None:
    """An album of photos arrives as one update per photo: one kind answer (and the
    question again), not five. A photo sent later is answered again."""
    clock = ManualClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        chat = Chat(api, ADA)
        await chat.start()
        before = len(chat.messages)
        for _ in range(5):
            api.send_photo(ADA)
        answered = await chat.expect(before + 1)
        assert "cannot look at pictures" in answered.text
        records = Records(runtime.settings)
        handled = "SELECT COUNT(*) FROM inbox WHERE status <> 'pending'"
        await eventually(lambda: records.query(handled) == [(7,)])  # /start, English, 5
        await settled(api, records)
        assert len(chat.messages) == before + 1
        clock.advance(11)
        api.send_photo(ADA)
        assert "cannot look at pictures" in (await chat.expect(before + 2)).text


async def test_an_edited_message_gets_a_kind_answer(api: LocalBotApi, bot: Records) -> None:
    chat = Chat(api, ADA)
    await chat.say("/start")
    before = len(chat.messages)
    api.send_edited_message(ADA, 1, "/start again")
    assert "only new messages" in (await chat.expect(before + 1)).text


async def test_a_live_location_is_answered_once_not_at_every_move(
    api: LocalBotApi, bot: Records
) -> None:
    """Telegram sends each move of a live location as an edit of its message, for up to
    hours: the location gets its one kind answer, and the moves none."""
    chat = Chat(api, ADA)
    await chat.say("/start")
    before = len(chat.messages)
    api.send_live_location(ADA)
    answered = await chat.expect(before + 1)
    assert "only read text" in answered.text
    await settled(api, bot)  # and the question she was on, again
    had = len(chat.messages)
    moves = [api.move_live_location(ADA) for _ in range(5)]
    handled = f"SELECT COUNT(*) FROM inbox WHERE update_id >= {moves[0]} AND status <> 'pending'"
    await eventually(lambda: bot.query(handled) == [(5,)])
    await settled(api, bot)
    assert len(chat.messages) == had


def raw_message(update_id: int, **content: object) -> dict[str, object]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 900 + update_id % 100,
            "date": 1_790_000_000,
            "chat": {"id": ADA.chat_id, "type": "private", "first_name": "Ada"},
            "from": {"id": ADA.user_id, "is_bot": False, "first_name": "Ada"},
            **content,
        },
    }


# An invented name with a space in it: encrypted values are stored as base64 text, in which
# a short name without one ("Zed") turns up by chance now and then.
FORWARDED_FROM = "Zed Quillon"


async def test_contacts_and_forwards_get_kind_answers_and_store_nothing_of_them(
    api: LocalBotApi, bot: Records
) -> None:
    chat = Chat(api, ADA)
    await chat.start()
    before = len(chat.messages)
    api.send_update(
        raw_message(
            5001,
            contact={"phone_number": "+447700900123", "first_name": "Ada", "user_id": ADA.user_id},
        )
    )
    assert "only read text" in (await chat.expect(before + 1)).text
    api.send_update(
        raw_message(
            5002,
            text="yes",
            forward_origin={"type": "hidden_user", "sender_user_name": FORWARDED_FROM, "date": 1},
        )
    )
    reply = await chat.expect(before + 2)
    assert "messages sent on from someone else" in reply.text and reply.reply_markup
    await chat.tap("OK, go on")  # and the dialogue goes on where it was
    stored = b"".join(
        path.read_bytes() for path in Path(bot.settings.database_path).parent.glob("yousaid.db*")
    )
    assert b"447700900123" not in stored and FORWARDED_FROM.encode() not in stored


async def test_a_redelivery_after_handling_is_ignored(api: LocalBotApi, bot: Records) -> None:
    """Telegram may redeliver an update long after it was handled (a later batch)."""
    chat = Chat(api, ADA)
    await chat.start()
    update = raw_message(
        4242, text="/privacy", entities=[{"type": "bot_command", "offset": 0, "length": 8}]
    )
    api.send_update(dict(update))
    overview = await chat.expect(3)
    assert "Please sign up first" in overview.text  # answered once
    api.send_update(dict(update))  # the same update id again, in a later getUpdates batch
    await chat.say("/help")
    assert sum("Please sign up first" in m.text for m in chat.messages) == 1
