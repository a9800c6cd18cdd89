"""The broadcast engine against the local Bot API server, enforcing Telegram's limits."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.local_api import FakePerson, LocalBotApi
from bot.runtime import Runtime
from bot.sender import DEFAULT_CONCURRENCY, FLUSH_AT, ChatPacer
from storage.broadcasts import Broadcasts
from storage.clock import SystemClock
from storage.database import Database
from storage.people import ConsentLedger, People, reachable_with_consent
from storage.queues import PRIORITY_REPLY, Outbox
from storage.staff import StaffRoles
from tests.harness import (
    ADA,
    TOKEN,
    BotProcess,
    Chat,
    Records,
    eventually,
    running_bot,
    settings_for,
)

COHORT = [FakePerson(user_id=720000000 + n, first_name="-") for n in range(2000)]
INVITATION = "You are invited to a panel."
PANEL_INVITATION = "You are invited to a panel: Housing panel"
ORGANISER = FakePerson(user_id=730000001, first_name="Orla")


async def enrol(db: Database, people: list[FakePerson], region: str = "london") -> None:
    """Invented people who said yes to panel invitations, as onboarding would leave them."""
    now = SystemClock().now_ms()
    async with db.transaction() as conn:
        for person in people:
            pseudonym = f"p{person.user_id}"
            await People(conn).touch(pseudonym, person.chat_id, "en", now)
            await People(conn).set_region(pseudonym, region, now)
            await ConsentLedger(conn).record(pseudonym, "panel_invitations", True, "v1", now)


async def invite_everyone(runtime: Runtime, region: str = "london") -> int:
    return await runtime.broadcasts.start_for_region(
        "panel_invitation",
        "panel:test",
        region,
        "panel_invitations",
        "p-organiser",
        lambda recipient: {"text": INVITATION},
    )


def received(api: LocalBotApi, text: str = INVITATION) -> Counter[int]:
    """How many invitations (texts starting with `text`) each chat got, by the server's own
    records."""
    return Counter(
        c.chat_id
        for c in api.calls("sendMessage")
        if c.outcome == "ok"
        and str(c.params.get("text", "")).startswith(text)
        and c.chat_id is not None
    )


async def wait_for_invitations(api: LocalBotApi, count: int, text: str = INVITATION) -> None:
    """Wait (up to 90 s) until `count` people have their invitation."""
    async with asyncio.timeout(90):
        while len(received(api, text)) < count:  # noqa: ASYNC110 - the server's records
            await asyncio.sleep(0.1)


@pytest.fixture()
async def limited_api() -> AsyncIterator[LocalBotApi]:
    """The local server answering 429 above 200 messages a second, as Telegram does above 30."""
    async with LocalBotApi(
        TOKEN, "yousaid_test_bot", enforce_limits=True, global_rate=200.0
    ) as server:
        for person in [*COHORT, ADA]:
            server.add_chat(person)
        yield server


async def staff_creates_a_panel(api: LocalBotApi, runtime: Runtime) -> None:
    """A London staff member makes a panel in Telegram (/panel_new) and sends the invite."""
    async with runtime.db.transaction() as conn:
        organiser = runtime.service.pseudonym_of(ORGANISER.user_id)
        await StaffRoles(conn).grant(organiser, "staff", "london", False, "cli", 0)
    staff = Chat(api, ORGANISER)
    in_a_month = (datetime.now(UTC) + timedelta(days=30)).strftime("%d/%m/%Y 14:00")
    for answer in ("/panel_new", "Housing panel", in_a_month, "Town hall", "40"):
        await staff.say(answer)
    await staff.tap("Skip")  # the title in Welsh
    await staff.tap("Skip")  # the place in Welsh
    await staff.tap("Done")  # London's staff only: the area is not asked
    assert "invite is going to: 2,000." in (await staff.tap("Send the invite")).text


async def test_2000_invitations_at_the_limit_each_exactly_once(
    limited_api: LocalBotApi, tmp_path: Path
) -> None:
    async with running_bot(
        limited_api, tmp_path, pacer=ChatPacer(), SEND_RATE_PER_SECOND="190"
    ) as runtime:
        await enrol(runtime.db, COHORT)
        await staff_creates_a_panel(limited_api, runtime)
        await wait_for_invitations(limited_api, 2000, PANEL_INVITATION)
        await asyncio.sleep(0.5)
        progress = await runtime.broadcasts.progress(1)
    assert set(received(limited_api, PANEL_INVITATION).values()) == {1}
    assert len(received(limited_api, PANEL_INVITATION)) == 2000
    assert limited_api.too_many_requests_count == 0
    assert progress is not None and progress.sent == 2000 and progress.pending == 0
    assert progress.kind == "panel_invitation" and progress.total == 2000


async def test_injected_429_403_and_500_lose_no_one_and_skip_the_blocked(
    limited_api: LocalBotApi, tmp_path: Path
) -> None:
    chooser = random.Random(20261126)
    blocked = set(chooser.sample([p.chat_id for p in COHORT], 25))
    for chat_id in blocked:
        limited_api.block(chat_id)

    async def inject_faults() -> None:
        for _ in range(6):
            await asyncio.sleep(chooser.uniform(0.5, 2.0))
            kind = chooser.choice(["429", "500"])
            if kind == "429":
                limited_api.fail_next("sendMessage", status=429, retry_after=1)
            else:
                limited_api.fail_next("sendMessage", status=500, times=chooser.randint(1, 3))

    async with running_bot(
        limited_api, tmp_path, pacer=ChatPacer(), SEND_RATE_PER_SECOND="190"
    ) as runtime:
        await enrol(runtime.db, COHORT)
        faults = asyncio.create_task(inject_faults())
        await invite_everyone(runtime)
        await wait_for_invitations(limited_api, 2000 - len(blocked))
        await faults
        records = Records(settings_for(limited_api, tmp_path))
        unreachable = {
            int(r[0]) for r in records.query("SELECT chat_id FROM people WHERE reachable = 0")
        }
        async with runtime.db.read() as conn:
            later = {
                r.chat_id for r in await reachable_with_consent(conn, "london", "panel_invitations")
            }
    counts = received(limited_api)
    assert set(counts.values()) == {1}
    assert set(counts) == {p.chat_id for p in COHORT} - blocked
    assert unreachable == blocked
    assert not later & blocked  # the next broadcast skips them
    statuses = [c.status for c in limited_api.calls("sendMessage")]
    assert 429 in statuses and 500 in statuses


async def test_a_chats_messages_keep_their_order_through_failures(
    limited_api: LocalBotApi, tmp_path: Path
) -> None:
    """Three replies to one person among many other messages; the first one's send fails
    (500, then 429): the person still gets them first, second, third."""
    limited_api.fail_next("sendMessage", status=500, chat_id=ADA.chat_id)
    async with running_bot(limited_api, tmp_path, SEND_RATE_PER_SECOND="100") as runtime:
        now = runtime.clock.now_ms()
        async with runtime.db.transaction() as conn:
            outbox = Outbox(conn)
            for text in ("first", "second", "third"):
                await outbox.enqueue(ADA.chat_id, PRIORITY_REPLY, "message", {"text": text}, now)
            for person in COHORT[:40]:
                await outbox.enqueue(person.chat_id, PRIORITY_REPLY, "message", {"text": "x"}, now)
        runtime.sender.wake()
        await limited_api.wait_for_messages(ADA.chat_id, 3, timeout=20)
        limited_api.fail_next("sendMessage", status=429, retry_after=1, chat_id=ADA.chat_id)
        async with runtime.db.transaction() as conn:
            for text in ("fourth", "fifth"):
                await Outbox(conn).enqueue(
                    ADA.chat_id, PRIORITY_REPLY, "message", {"text": text}, now
                )
        runtime.sender.wake()
        messages = await limited_api.wait_for_messages(ADA.chat_id, 5, timeout=20)
    assert [m.text for m in messages] == ["first", "second", "third", "fourth", "fifth"]
    statuses = [c.status for c in limited_api.calls("sendMessage") if c.chat_id == ADA.chat_id]
    assert statuses.count(500) == 1 and statuses.count(429) >= 1


async def test_a_reply_overtakes_a_running_broadcast(
    limited_api: LocalBotApi, tmp_path: Path
) -> None:
    """At 30 messages a second, someone who writes mid-broadcast is answered before the
    sender has sent 60 more broadcast messages (counted by the server, not timed)."""
    async with running_bot(limited_api, tmp_path, SEND_RATE_PER_SECOND="30") as runtime:
        await enrol(runtime.db, COHORT)
        await invite_everyone(runtime)
        await wait_for_invitations(limited_api, 100)
        before = sum(received(limited_api).values())
        reply = await Chat(limited_api, ADA).say("/start")
        after = sum(received(limited_api).values())
    assert "Which language" in reply.text
    assert after - before <= 60, after - before


async def test_a_risk_phrase_is_signposted_before_60_more_broadcast_messages(
    limited_api: LocalBotApi, tmp_path: Path
) -> None:
    """Safeguarding answers go first: counted by the server, not timed."""
    async with running_bot(limited_api, tmp_path, SEND_RATE_PER_SECOND="30") as runtime:
        await enrol(runtime.db, COHORT)
        ada = Chat(limited_api, ADA)
        await ada.say("/start")
        await invite_everyone(runtime)
        await wait_for_invitations(limited_api, 100)
        before = sum(received(limited_api).values())
        signpost = await ada.say("i dont want to be alive anymore")
        after = sum(received(limited_api).values())
    assert "116 123" in signpost.text and "999" in signpost.text
    assert after - before <= 60, after - before


async def test_the_organiser_sees_progress_and_can_stop_it(
    limited_api: LocalBotApi, tmp_path: Path
) -> None:
    organiser = Chat(limited_api, ADA)
    async with running_bot(limited_api, tmp_path, SEND_RATE_PER_SECOND="30") as runtime:
        await organiser.say("/start")  # the organiser is a person the bot knows
        records = Records(settings_for(limited_api, tmp_path))
        await enrol(runtime.db, COHORT[:600])
        async with runtime.db.read() as conn:
            recipients = await reachable_with_consent(conn, "london", "panel_invitations")
        broadcast_id = await runtime.broadcasts.start(
            "panel_invitation",
            "panel:test",
            "london",
            records.pseudonym(ADA),
            [(r.chat_id, {"text": INVITATION}) for r in recipients],
            organiser=(ADA.chat_id, "en"),
        )
        progress_message = await organiser.expect(2)
        assert progress_message.text.startswith("Sending:")
        async with asyncio.timeout(20):
            while "Sending: 0 of" in organiser.messages[-1].text:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        assert "of 600 sent" in organiser.messages[-1].text
        message, data = organiser.find_button("Stop sending")
        limited_api.press_button(ADA, message.message_id, data)  # edits; no new message
        async with asyncio.timeout(20):
            while not organiser.messages[-1].text.startswith("Stopped"):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        sent_at_stop = sum(received(limited_api).values())
        await asyncio.sleep(1.0)
        assert sum(received(limited_api).values()) == sent_at_stop  # nothing more goes out
        progress = await runtime.broadcasts.progress(broadcast_id)
        assert records.query("SELECT actor, action FROM audit_log ORDER BY id") == [
            (records.pseudonym(ADA), "broadcast.started"),
            (records.pseudonym(ADA), "broadcast.stopped"),
        ]
    assert progress is not None and progress.status == "cancelled"
    assert progress.sent == sent_at_stop < 600
    assert organiser.messages[-1].reply_markup is None  # the stop button is gone


@pytest.mark.parametrize(
    ("grant", "stopped"),
    [
        (None, False),
        (("staff", "wales"), False),
        (("staff", "london"), True),
        (("admin", None), True),
    ],
)
async def test_only_the_organiser_staff_of_the_region_or_an_admin_can_stop_it(
    limited_api: LocalBotApi,
    tmp_path: Path,
    grant: tuple[str, str | None] | None,
    stopped: bool,
) -> None:
    """Forged "Stop sending" data from anyone else changes nothing and is refused kindly."""
    async with running_bot(limited_api, tmp_path, SEND_RATE_PER_SECOND="30") as runtime:
        records = Records(settings_for(limited_api, tmp_path))
        if grant is not None:
            async with runtime.db.transaction() as conn:
                await StaffRoles(conn).grant(
                    records.pseudonym(ADA), grant[0], grant[1], False, "cli", 0
                )
        await enrol(runtime.db, COHORT[:300])
        broadcast_id = await invite_everyone(runtime)
        someone = Chat(limited_api, ADA)
        await someone.say("/start")
        update = {
            "update_id": 777001,
            "callback_query": {
                "id": "forged-1",
                "chat_instance": "ci",
                "data": f"bc:{broadcast_id}",
                "from": {"id": ADA.user_id, "is_bot": False, "first_name": "-"},
                "message": {
                    "message_id": 1,
                    "date": 1_790_000_000,
                    "chat": {"id": ADA.chat_id, "type": "private", "first_name": "-"},
                    "text": "forged",
                },
            },
        }
        limited_api.send_update(update)
        if not stopped:
            assert "not available" in (await someone.expect(2)).text
        else:
            await eventually(
                lambda: records.query("SELECT status FROM broadcasts") == [("cancelled",)]
            )
        progress = await runtime.broadcasts.progress(broadcast_id)
    assert progress is not None
    assert progress.status == ("cancelled" if stopped else "running")
    audited = records.query("SELECT action FROM audit_log WHERE action = 'broadcast.stopped'")
    assert len(audited) == int(stopped)


async def test_kill_mid_broadcast_misses_no_one(tmp_path: Path) -> None:
    """kill -9 in the middle of a 2,000-person broadcast, then restart: everyone gets the
    invitation, and duplicates are at most the sends that were in flight: under way (the
    sender's concurrency) or confirmed but not yet group-committed (FLUSH_AT)."""
    async with LocalBotApi(TOKEN, "yousaid_test_bot") as api:
        for person in COHORT:
            api.add_chat(person)
        bot = BotProcess(api, tmp_path, SEND_RATE_PER_SECOND="400")
        try:
            await bot.start()
            db = await Database.open(str(tmp_path / "yousaid.db"))
            await enrol(db, COHORT)
            async with db.transaction() as conn:
                recipients = await reachable_with_consent(conn, "london", "panel_invitations")
                await Broadcasts(conn).create(
                    "panel_invitation",
                    "panel:test",
                    "london",
                    "p-organiser",
                    [(r.chat_id, {"text": INVITATION}) for r in recipients],
                    None,
                    SystemClock().now_ms(),
                )
            await db.close()
            await wait_for_invitations(api, 600)
            await bot.kill()
            at_kill = sum(received(api).values())
            assert at_kill < 2000
            await bot.start()
            await wait_for_invitations(api, 2000)
            await asyncio.sleep(1.0)
        finally:
            await bot.terminate()
    counts = received(api)
    assert set(counts) == {p.chat_id for p in COHORT}
    assert sum(counts.values()) - 2000 <= DEFAULT_CONCURRENCY + FLUSH_AT
