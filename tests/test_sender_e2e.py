"""The paced sender against the local Bot API server: priority, limits, 429, 403, errors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot import sender as sender_module
from bot.local_api import FakePerson, LocalBotApi
from bot.runtime import Runtime
from bot.sender import ChatPacer
from storage.clock import ManualClock
from storage.queues import (
    PRIORITY_BROADCAST,
    PRIORITY_REPLY,
    PRIORITY_SAFEGUARDING,
    STALE_AT,
    Outbox,
)
from tests.harness import (
    ADA,
    BRAN,
    TOKEN,
    Chat,
    Records,
    eventually,
    running_bot,
    settings_for,
    settled,
)

COHORT = [FakePerson(user_id=710000000 + n, first_name=f"Person{n}") for n in range(1000)]


@pytest.fixture()
async def api() -> AsyncIterator[LocalBotApi]:
    async with LocalBotApi(
        token=TOKEN, bot_username="yousaid_test_bot", enforce_limits=True
    ) as server:
        yield server


async def queue(
    runtime: Runtime, people: list[FakePerson], priority: int, text: str = "Panel news"
) -> None:
    now = runtime.clock.now_ms()
    async with runtime.db.transaction() as conn:
        outbox = Outbox(conn)
        for person in people:
            await outbox.enqueue(person.chat_id, priority, "message", {"text": text}, now)
    runtime.sender.wake()


def delivered(api: LocalBotApi, text: str) -> int:
    return sum(
        1 for c in api.calls("sendMessage") if c.outcome == "ok" and c.params.get("text") == text
    )


async def test_a_reply_jumps_a_thousand_queued_broadcasts(api: LocalBotApi, tmp_path: Path) -> None:
    for person in COHORT:
        api.add_chat(person)
    async with running_bot(api, tmp_path, SEND_RATE_PER_SECOND="30") as runtime:
        await queue(runtime, COHORT, PRIORITY_BROADCAST)
        await api.wait_for_calls("sendMessage", 20, timeout=10)
        reply = await Chat(api, ADA).say("/start")
        assert "Which language" in reply.text
        sent_before_reply = delivered(api, "Panel news")
        assert sent_before_reply < 200, sent_before_reply  # far ahead of the other 800+
        async with runtime.db.read() as conn:
            assert await Outbox(conn).count("pending", PRIORITY_BROADCAST) > 500
    assert api.too_many_requests_count == 0


async def test_pacing_stays_inside_telegrams_limits(api: LocalBotApi, tmp_path: Path) -> None:
    """90 broadcasts to 90 people plus 6 replies to one person, at the real pace: the server
    (which enforces 30/s overall and 3 per 3 s per chat) never has to say 429."""
    for person in COHORT[:90]:
        api.add_chat(person)
    api.add_chat(ADA)
    async with running_bot(api, tmp_path, pacer=ChatPacer(), SEND_RATE_PER_SECOND="28") as runtime:
        started = time.monotonic()
        await queue(runtime, [ADA] * 6, PRIORITY_REPLY, "Reply")
        await queue(runtime, COHORT[:90], PRIORITY_BROADCAST)
        await api.wait_for_messages(ADA.chat_id, 6, timeout=20)
        await api.wait_for_calls("sendMessage", 96, timeout=20)
        elapsed = time.monotonic() - started
    assert api.too_many_requests_count == 0
    assert delivered(api, "Panel news") == 90
    assert elapsed >= 3.0  # 96 messages at 28/s cannot take less, nor 6 to one chat


async def test_429_pauses_the_sender_and_loses_nothing(api: LocalBotApi, tmp_path: Path) -> None:
    people = COHORT[:20]
    for person in people:
        api.add_chat(person)
    api.fail_next("sendMessage", status=429, retry_after=1, times=1)
    async with running_bot(api, tmp_path) as runtime:
        started = time.monotonic()
        await queue(runtime, people, PRIORITY_BROADCAST)
        await api.wait_for_calls("sendMessage", 21, timeout=20)
        elapsed = time.monotonic() - started
    assert delivered(api, "Panel news") == 20
    assert [m.text for p in people for m in api.messages(p.chat_id)] == ["Panel news"] * 20
    assert elapsed >= 1.0
    # During retry_after the whole sender was silent, not just the message that got 429:
    # only sends already under way when the 429 came back may follow it closely.
    calls = api.calls("sendMessage")
    refused = next(c for c in calls if c.status == 429)
    gaps = [c.time - refused.time for c in calls if c.time > refused.time]
    assert len([gap for gap in gaps if gap < 0.1]) <= 8  # the sender's concurrency
    assert not [gap for gap in gaps if 0.1 <= gap < 0.95]


async def test_403_marks_the_person_unreachable_and_cancels_their_queue(
    api: LocalBotApi, tmp_path: Path
) -> None:
    chat = Chat(api, ADA)
    async with running_bot(api, tmp_path) as runtime:
        await chat.say("/start")
        api.block(ADA.chat_id)
        await queue(runtime, [ADA, ADA], PRIORITY_BROADCAST)
        await api.wait_for_calls("sendMessage", 2, timeout=10)
        records = Records(settings_for(api, tmp_path))
        await eventually(lambda: records.query("SELECT reachable FROM people") == [(0,)])
        assert records.query(
            "SELECT status, COUNT(*) FROM outbox WHERE priority = 2 GROUP BY status"
        ) == [("cancelled", 2)]
        api.unblock(ADA.chat_id)
        await chat.say("/help")  # writing again makes them reachable
        assert records.query("SELECT reachable FROM people") == [(1,)]


async def test_a_chat_that_is_gone_is_treated_as_blocked(api: LocalBotApi, tmp_path: Path) -> None:
    """400 "chat not found" (the account was deleted) will never succeed: the person is
    unreachable, as after a 403, so later broadcasts do not try them again and again."""
    chat = Chat(api, ADA)
    async with running_bot(api, tmp_path) as runtime:
        await chat.say("/start")
        api.fail_next(
            "sendMessage", 400, None, chat_id=ADA.chat_id, description="Bad Request: chat not found"
        )
        await queue(runtime, [ADA, ADA], PRIORITY_BROADCAST)
        records = Records(settings_for(api, tmp_path))
        await eventually(lambda: records.query("SELECT reachable FROM people") == [(0,)])
        assert records.query(
            "SELECT status, COUNT(*) FROM outbox WHERE priority = 2 GROUP BY status"
        ) == [("cancelled", 2)]


async def test_a_message_telegram_refuses_is_alerted_not_only_logged(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another 400 (a message we built wrong) loses a message someone needed: it is sent
    to Sentry as well as logged (a log line reaches Sentry only as a breadcrumb)."""
    alerts: list[str] = []
    monkeypatch.setattr(sender_module.error_reporting, "alert", alerts.append)
    api.add_chat(ADA)
    refusal = "Bad Request: can't parse entities"
    api.fail_next("sendMessage", 400, None, times=3, chat_id=ADA.chat_id, description=refusal)
    async with running_bot(api, tmp_path) as runtime:
        await queue(runtime, [ADA, ADA, ADA], PRIORITY_REPLY, "Refused")
        records = Records(settings_for(api, tmp_path))
        failed = [("failed",)] * 3
        await eventually(lambda: records.query("SELECT status FROM outbox") == failed)
    # Three alike are one alert (a bad broadcast to thousands must not use up the quota).
    # (python-telegram-bot drops "Bad Request: " and capitalises what is left.)
    said = "Telegram refused an outbox message (message kind, priority 1): Can't parse entities"
    assert alerts == [said]


async def test_a_file_too_large_is_given_up_and_the_chat_goes_on(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """413 (over Telegram's size limit) comes to us as a network error: it is tried a few
    times, then given up, and the person's next messages go (it was retried for ever,
    holding their chat back)."""
    api.add_chat(ADA)
    api.fail_next("sendMessage", 413, None, times=3, chat_id=ADA.chat_id)
    async with running_bot(api, tmp_path) as runtime:
        await queue(runtime, [ADA], PRIORITY_REPLY, "Too big")
        await queue(runtime, [ADA], PRIORITY_REPLY, "Next")
        await api.wait_for_messages(ADA.chat_id, 1, timeout=20)
        records = Records(settings_for(api, tmp_path))
        outcome = "SELECT status, attempts FROM outbox ORDER BY id"
        await eventually(lambda: records.query(outcome) == [("failed", 3), ("sent", 0)])
    assert [c.status for c in api.calls("sendMessage")] == [413, 413, 413, 200]


async def test_the_safety_signpost_goes_past_a_broadcast_waiting_minutes_to_retry(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """After a spell of network trouble a broadcast to Ada waits five minutes for its
    retry; the 999 and Samaritans message queued for her now goes at once."""
    api.add_chat(ADA)
    async with running_bot(api, tmp_path) as runtime:
        now = runtime.clock.now_ms()
        async with runtime.db.transaction() as conn:
            outbox = Outbox(conn)
            stuck = await outbox.enqueue(
                ADA.chat_id, PRIORITY_BROADCAST, "message", {"text": "News"}, now
            )
            await outbox.retry_later(stuck, now + 300_000, "NetworkError")
        await queue(runtime, [ADA], PRIORITY_SAFEGUARDING, "Call 999 or Samaritans on 116 123")
        await api.wait_for_messages(ADA.chat_id, 1, timeout=10)
    assert delivered(api, "Call 999 or Samaritans on 116 123") == 1
    assert delivered(api, "News") == 0


async def test_a_tap_answer_told_to_wait_is_sent_again_in_time(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """A tap is answered as soon as it is stored; told to wait a second (429), the answer
    goes again after it, within Telegram's ~15 s (before, the spinner ran until Telegram
    gave up)."""
    chat = Chat(api, ADA)
    async with running_bot(api, tmp_path):
        await chat.say("/start")
        api.fail_next("answerCallbackQuery", 429, retry_after=1)
        await chat.tap("English")
        await eventually(lambda: len(api.calls("answerCallbackQuery")) == 2)
    assert [c.status for c in api.calls("answerCallbackQuery")] == [429, 200]


async def test_a_tap_answer_lost_to_a_blip_is_sent_again(api: LocalBotApi, tmp_path: Path) -> None:
    """A 502 (or a dropped connection) on a tap's answer is tried again at once: it was
    counted as refused, and the spinner ran for the rest of Telegram's ~15 s. A refusal
    for good (400: too old) is not tried again."""
    chat = Chat(api, ADA)
    async with running_bot(api, tmp_path):
        await chat.say("/start")
        api.fail_next("answerCallbackQuery", 502, times=2)
        await chat.tap("English")
        await eventually(lambda: len(api.calls("answerCallbackQuery")) == 3)
        api.fail_next("answerCallbackQuery", 400, description="Bad Request: query is too old")
        await chat.tap("OK, go on")
        await eventually(lambda: len(api.calls("answerCallbackQuery")) == 4)
        await chat.tap("Yes")  # answered at once: the refused one was not tried again
        await eventually(lambda: len(api.calls("answerCallbackQuery")) == 5)
    assert [c.status for c in api.calls("answerCallbackQuery")] == [502, 502, 200, 400, 200]


async def test_server_errors_are_retried_until_delivered(api: LocalBotApi, tmp_path: Path) -> None:
    api.add_chat(ADA)
    api.fail_next("sendMessage", status=500, times=2)
    async with running_bot(api, tmp_path) as runtime:
        await queue(runtime, [ADA], PRIORITY_REPLY, "Still here")
        await api.wait_for_messages(ADA.chat_id, 1, timeout=20)
    assert delivered(api, "Still here") == 1
    assert [c.status for c in api.calls("sendMessage")] == [500, 500, 200]


async def test_a_message_whose_moment_passed_while_it_waited_is_not_sent(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Telegram was out of reach for hours: "your panel is tomorrow", still queued after
    the panel began, is cancelled rather than sent; a message still true goes."""
    api.add_chat(ADA)
    async with running_bot(api, tmp_path) as runtime:
        now = runtime.clock.now_ms()
        async with runtime.db.transaction() as conn:
            outbox = Outbox(conn)
            late = {"text": "Your panel is tomorrow", STALE_AT: now - 1}
            await outbox.enqueue(ADA.chat_id, PRIORITY_BROADCAST, "message", late, now)
            still = {"text": "Your panel is next week", STALE_AT: now + 3_600_000}
            await outbox.enqueue(ADA.chat_id, PRIORITY_BROADCAST, "message", still, now)
        runtime.sender.wake()
        await api.wait_for_messages(ADA.chat_id, 1, timeout=10)
        records = Records(settings_for(api, tmp_path))
        outcome = "SELECT status, payload IS NULL FROM outbox ORDER BY id"
        await eventually(lambda: records.query(outcome) == [("cancelled", 1), ("sent", 1)])
    assert [m.text for m in api.messages(ADA.chat_id)] == ["Your panel is next week"]


async def test_messages_held_back_by_an_outage_go_once_telegram_answers_again(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Ada's message met network trouble through an outage and waits to try again (its
    backoff doubled up to five minutes). Once a send goes through again, it goes at once:
    it waited out its backoff, a safety message among them. (The clock stands still here:
    without that, Ada's message would wait for ever.)"""
    for person in (ADA, BRAN):
        api.add_chat(person)
    clock = ManualClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        api.fail_next("sendMessage", 502, chat_id=ADA.chat_id)
        await queue(runtime, [ADA], PRIORITY_SAFEGUARDING, "Call 999 or Samaritans on 116 123")
        await eventually(lambda: len(api.calls("sendMessage")) == 1)
        records = Records(runtime.settings)
        waiting = "SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND attempts = 1"
        await eventually(lambda: records.query(waiting) == [(1,)])
        async with runtime.db.transaction() as conn:  # as an outage's tries leave it
            await conn.execute(
                "UPDATE outbox SET attempts = 8, not_before = ? WHERE status = 'pending'",
                (clock.now_ms() + 300_000,),
            )
        await queue(runtime, [BRAN], PRIORITY_REPLY, "Thank you")
        await api.wait_for_messages(ADA.chat_id, 1, timeout=10)
    assert delivered(api, "Call 999 or Samaritans on 116 123") == 1
    assert delivered(api, "Thank you") == 1


async def test_a_journey_tapped_as_fast_as_possible_meets_no_429_at_telegrams_limits(
    tmp_path: Path,
) -> None:
    """Most tests run the local server without limits, and the bot with a fast pacer. Here
    both are as in production: Telegram's 30 a second and about one a second per chat
    (edits counted), the sender's default pace and pacer. Ada signs up and starts a check-in
    as fast as the bot answers, each tap answered by an edit and a message: never one 429.
    (Paced at about a message a second, so kept short.)"""
    async with LocalBotApi(TOKEN, "yousaid_test_bot", enforce_limits=True) as api:
        api.add_chat(ADA)
        async with running_bot(
            api, tmp_path, pacer=ChatPacer(), SEND_RATE_PER_SECOND="28"
        ) as runtime:
            ada = Chat(api, ADA)
            await ada.start()
            await ada.tap("OK, go on")
            for answer in ("Yes", "Yes", "Yes", "Yes", "London"):
                await ada.tap(answer)
            await ada.say("/feedback")
            await ada.tap("Start")
            assert "respect" in (await ada.tap("Always")).text
            await settled(api, Records(runtime.settings))
        assert api.too_many_requests_count == 0
        edits = [c for c in api.calls("editMessageText") if c.outcome == "ok"]
        assert len(edits) >= 8  # "You chose: ..." under each tapped question
