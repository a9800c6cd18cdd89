"""The local Bot API server, exercised through the real python-telegram-bot client."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Update
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes
from telegram.request import HTTPXRequest

from bot.local_api import DEFAULT_TOKEN, FakePerson, LocalBotApi

pytestmark = [
    pytest.mark.asyncio,
    # PTB itself reads RetryAfter.retry_after while constructing it, which warns.
    pytest.mark.filterwarnings("ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning"),
]

TOKEN = DEFAULT_TOKEN
ALICE = FakePerson(user_id=700000001, first_name="Alice", language_code="en")
BOB = FakePerson(user_id=700000002, first_name="Bob", language_code="de")
KEYBOARD = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="answer:yes")]])


@pytest.fixture
async def api() -> AsyncIterator[LocalBotApi]:
    async with LocalBotApi(token=TOKEN, bot_username="yousaid_test_bot") as server:
        yield server


@pytest.fixture
async def bot(api: LocalBotApi) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=api.base_url, base_file_url=api.base_file_url) as client:
        yield client


def _seconds(value: int | dtm.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


async def test_get_me_describes_the_bot(bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.first_name, me.is_bot) == (
        123456789,
        "yousaid_test_bot",
        "YouSaid",
        True,
    )


async def test_wrong_token_is_invalid(api: LocalBotApi) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("987654321:AAwrongTOKENwrongTOKENwrongTOKEN12", base_url=api.base_url):
            pass
    assert api.calls()[-1].status == 401


async def test_send_message_with_keyboard_is_recorded(api: LocalBotApi, bot: Bot) -> None:
    api.add_chat(ALICE)
    sent = await bot.send_message(ALICE.chat_id, "Hello", reply_markup=KEYBOARD)
    assert sent.message_id == 1 and sent.reply_markup == KEYBOARD
    [record] = api.messages(ALICE.chat_id)
    assert (record.text, record.kind, record.edited) == ("Hello", "text", False)
    assert record.reply_markup == KEYBOARD.to_dict()
    [call] = api.calls("sendMessage")
    assert (call.outcome, call.status, call.chat_id) == ("ok", 200, ALICE.chat_id)


async def test_unknown_chat_and_bad_text_are_rejected(api: LocalBotApi, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(BOB.chat_id, "Hi")
    api.add_chat(BOB)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(BOB.chat_id, "x" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(BOB.chat_id, "1 < 2", parse_mode=ParseMode.HTML)
    assert api.messages(BOB.chat_id) == []


async def test_html_markup_is_parsed_like_telegram(api: LocalBotApi, bot: Bot) -> None:
    api.add_chat(ALICE)
    sent = await bot.send_message(ALICE.chat_id, "<b>Hi</b> &lt;3", parse_mode=ParseMode.HTML)
    assert sent.text == "Hi <3"
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [("bold", 0, 2)]
    assert api.messages(ALICE.chat_id)[0].raw_text == "<b>Hi</b> &lt;3"


async def test_edit_message_text_updates_record(api: LocalBotApi, bot: Bot) -> None:
    api.add_chat(ALICE)
    sent = await bot.send_message(ALICE.chat_id, "Draft", reply_markup=KEYBOARD)
    edited = await bot.edit_message_text("Final", ALICE.chat_id, sent.message_id)
    assert not isinstance(edited, bool) and edited.text == "Final"
    record = api.messages(ALICE.chat_id)[0]
    assert record.text == "Final"
    # Telegram drops the inline keyboard when an edit omits reply_markup.
    assert record.edited and record.reply_markup is None
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("Final", ALICE.chat_id, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("Other", ALICE.chat_id, 999)


async def test_get_updates_offset_confirms(api: LocalBotApi, bot: Bot) -> None:
    first = api.send_command(ALICE, "start", "abc")
    second = api.send_text(ALICE, "hello")
    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [first, second]
    message = updates[0].message
    assert message is not None and message.text == "/start abc"
    assert [(e.type, e.offset, e.length) for e in message.entities] == [("bot_command", 0, 6)]
    assert [u.update_id for u in await bot.get_updates(offset=first + 1)] == [second]
    assert [u.update_id for u in await bot.get_updates()] == [second]
    assert await bot.get_updates(offset=second + 1) == ()
    assert api.pending_update_count == 0


async def test_injected_ids_may_repeat_or_jump_back(api: LocalBotApi, bot: Bot) -> None:
    api.add_chat(ALICE)
    body = {"message": {"message_id": 1, "date": 0, "chat": ALICE.private_chat_json()}}
    api.send_update(body, update_id=50)
    api.send_update(body, update_id=50)
    api.send_update(body, update_id=7)
    assert [u.update_id for u in await bot.get_updates()] == [50, 50, 7]
    assert [u.update_id for u in await bot.get_updates(offset=8)] == [50, 50]
    assert api.send_text(ALICE, "next") == 51
    assert [u.update_id for u in await bot.get_updates(offset=51)] == [51]


async def test_long_poll_times_out_empty(bot: Bot) -> None:
    """It waits the whole timeout (the upper bound only catches a hang)."""
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 <= time.monotonic() - started < 10


async def test_long_poll_wakes_on_update(api: LocalBotApi, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    uid = api.send_text(ALICE, "wake up")
    assert [u.update_id for u in await poll] == [uid]
    assert time.monotonic() - started < 4.5  # woken, not timed out after 5 s


async def test_second_poller_terminates_first(api: LocalBotApi, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    async with Bot(TOKEN, base_url=api.base_url) as other_instance:
        assert await other_instance.get_updates(timeout=0) == ()
    with pytest.raises(Conflict, match="terminated by other getUpdates"):
        await first


async def test_callback_query_round_trip(api: LocalBotApi, bot: Bot) -> None:
    api.add_chat(ALICE)
    sent = await bot.send_message(ALICE.chat_id, "Agree?", reply_markup=KEYBOARD)
    api.press_button(ALICE, sent.message_id, "answer:yes")
    [update] = await bot.get_updates()
    query = update.callback_query
    assert query is not None and query.data == "answer:yes"
    assert query.message is not None and query.message.message_id == sent.message_id
    assert await bot.answer_callback_query(query.id, text="Thanks") is True
    assert api.callback_answers[0]["text"] == "Thanks"
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(query.id)
    with pytest.raises(KeyError):
        api.press_button(ALICE, 999, "answer:yes")


async def test_send_document_keeps_bytes(api: LocalBotApi, bot: Bot) -> None:
    api.add_chat(ALICE)
    report = InputFile(b"line 1\nline 2\n", filename="report.txt")
    sent = await bot.send_document(ALICE.chat_id, report, caption="Your report")
    assert sent.document is not None and sent.document.file_name == "report.txt"
    [record] = api.messages(ALICE.chat_id)
    assert (record.kind, record.file_name, record.caption) == (
        "document",
        "report.txt",
        "Your report",
    )
    assert record.content == b"line 1\nline 2\n"
    downloaded = await (await bot.get_file(sent.document.file_id)).download_as_bytearray()
    assert bytes(downloaded) == record.content
    resent = await bot.send_document(ALICE.chat_id, sent.document.file_id)
    assert resent.document is not None and resent.document.file_id == sent.document.file_id


async def test_fail_next_429_raises_retry_after(api: LocalBotApi, bot: Bot) -> None:
    api.add_chat(ALICE)
    api.fail_next("sendMessage", status=429, retry_after=3)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(ALICE.chat_id, "Hi")
    assert _seconds(caught.value.retry_after) == 3
    await bot.send_message(ALICE.chat_id, "Hi again")
    assert [c.status for c in api.calls("sendMessage")] == [429, 200]
    assert len(api.messages(ALICE.chat_id)) == 1


async def test_fail_next_500_is_network_error(api: LocalBotApi, bot: Bot) -> None:
    api.add_chat(ALICE)
    api.fail_next("sendMessage", status=500)
    with pytest.raises(NetworkError) as caught:
        await bot.send_message(ALICE.chat_id, "Hi")
    assert not isinstance(caught.value, BadRequest | Forbidden | RetryAfter)


async def test_blocked_chats_are_forbidden(api: LocalBotApi, bot: Bot) -> None:
    api.add_chat(ALICE)
    api.block(ALICE.chat_id)
    with pytest.raises(Forbidden, match="blocked by the user"):
        await bot.send_message(ALICE.chat_id, "Hi")
    api.unblock(ALICE.chat_id)
    await bot.send_message(ALICE.chat_id, "Hi")
    api.send_my_chat_member(ALICE, status="kicked")
    with pytest.raises(Forbidden):
        await bot.send_message(ALICE.chat_id, "Still there?")
    api.send_my_chat_member(ALICE, status="member")
    await bot.send_message(ALICE.chat_id, "Welcome back")
    kinds = [
        u.my_chat_member.new_chat_member.status for u in await bot.get_updates() if u.my_chat_member
    ]
    assert kinds == ["kicked", "member"]


async def test_hold_then_drop_records_nothing(api: LocalBotApi, bot: Bot) -> None:
    api.add_chat(ALICE)
    hold = api.hold("sendMessage", chat_id=ALICE.chat_id)
    sending = asyncio.create_task(bot.send_message(ALICE.chat_id, "Lost"))
    params = await hold.wait(timeout=5)
    assert params["text"] == "Lost" and api.calls("sendMessage")[0].outcome == "pending"
    hold.release(deliver=False)
    with pytest.raises(NetworkError):
        await sending
    assert [c.outcome for c in api.calls("sendMessage")] == ["dropped"]
    assert api.messages(ALICE.chat_id) == []
    await bot.send_message(ALICE.chat_id, "Next")
    assert [m.text for m in api.messages(ALICE.chat_id)] == ["Next"]


async def test_hold_then_deliver_records_once(api: LocalBotApi, bot: Bot) -> None:
    api.add_chat(ALICE)
    hold = api.hold("sendMessage")
    sending = asyncio.create_task(bot.send_message(ALICE.chat_id, "Slow"))
    await hold.wait(timeout=5)
    hold.release(deliver=True)
    assert (await sending).text == "Slow"
    assert [c.outcome for c in api.calls("sendMessage")] == ["ok"]
    assert len(api.messages(ALICE.chat_id)) == 1


async def test_held_call_survives_client_timeout(api: LocalBotApi, bot: Bot) -> None:
    # The client gives up, yet Telegram still delivers: the classic duplicate-send trap.
    api.add_chat(ALICE)
    hold = api.hold("sendMessage")
    with pytest.raises(TimedOut):
        await bot.send_message(ALICE.chat_id, "Maybe", read_timeout=0.2)
    hold.release(deliver=True)
    assert [m.text for m in await api.wait_for_messages(ALICE.chat_id, 1, timeout=5)] == ["Maybe"]
    assert (await bot.get_me()).username == "yousaid_test_bot"


async def test_set_delay_slows_answers(api: LocalBotApi, bot: Bot) -> None:
    api.add_chat(ALICE)
    api.set_delay("sendMessage", 0.3)
    started = time.monotonic()
    await bot.send_message(ALICE.chat_id, "Later")
    assert time.monotonic() - started >= 0.3


async def test_flood_limits_when_enforced() -> None:
    people = [FakePerson(user_id=710000000 + n) for n in range(31)]
    async with LocalBotApi(token=TOKEN, enforce_limits=True) as api:
        for person in people:
            api.add_chat(person)
        async with Bot(TOKEN, base_url=api.base_url) as client:
            results = await asyncio.gather(
                *(client.send_message(p.chat_id, "Hi") for p in people), return_exceptions=True
            )
            limited = [r for r in results if isinstance(r, RetryAfter)]
            assert len(limited) == 1 and _seconds(limited[0].retry_after) >= 1
            assert api.too_many_requests_count == 1
            assert sum(len(api.messages(p.chat_id)) for p in people) == 30


async def test_per_chat_burst_limit() -> None:
    async with LocalBotApi(token=TOKEN, enforce_limits=True) as api:
        api.add_chat(ALICE)
        async with Bot(TOKEN, base_url=api.base_url) as client:
            for n in range(3):
                await client.send_message(ALICE.chat_id, f"burst {n}")
            with pytest.raises(RetryAfter):
                await client.send_message(ALICE.chat_id, "one too many")


async def test_during_a_429_every_send_is_refused_and_edits_count() -> None:
    """As TELEGRAM.md says of Telegram: while a 429's retry_after runs, every call fails, a
    send to another chat too (a sender that paused only one chat would meet more 429s).
    Edits count against the per-chat limit as sends do."""
    bob = FakePerson(user_id=710000099, first_name="Bob")
    async with LocalBotApi(token=TOKEN, enforce_limits=True) as api:
        api.add_chat(ALICE)
        api.add_chat(bob)
        async with Bot(TOKEN, base_url=api.base_url) as client:
            sent = await client.send_message(ALICE.chat_id, "first")
            for n in range(2):
                await client.edit_message_text(f"edited {n}", ALICE.chat_id, sent.message_id)
            with pytest.raises(RetryAfter):
                await client.edit_message_text("edited again", ALICE.chat_id, sent.message_id)
            with pytest.raises(RetryAfter):
                await client.send_message(bob.chat_id, "another chat, in the same spell")
            assert api.too_many_requests_count == 2
            assert api.messages(bob.chat_id) == []


async def test_group_messages_and_leave_chat(api: LocalBotApi, bot: Bot) -> None:
    api.send_group_message(ALICE, chat_id=-100123, text="hi all")
    [update] = await bot.get_updates()
    assert update.effective_chat is not None and update.effective_chat.type == "group"
    assert await bot.leave_chat(-100123) is True
    assert api.left_chats == {-100123}
    with pytest.raises(Forbidden):
        await bot.send_message(-100123, "bye")


async def test_wait_for_messages_explains_timeout(api: LocalBotApi, bot: Bot) -> None:
    api.add_chat(ALICE)
    await bot.send_message(ALICE.chat_id, "only one")
    with pytest.raises(TimeoutError, match=r"expected 2 message\(s\).*got 1"):
        await api.wait_for_messages(ALICE.chat_id, 2, timeout=0.2)


async def test_plain_http_clients(api: LocalBotApi) -> None:
    api.add_chat(ALICE)
    async with httpx.AsyncClient(base_url=f"{api.base_url}{TOKEN}") as http:
        as_json = await http.post("/sendMessage", json={"chat_id": ALICE.chat_id, "text": "123"})
        as_query = await http.get(
            "/sendMessage", params={"chat_id": str(ALICE.chat_id), "text": "x"}
        )
        unknown = await http.post("/noSuchMethod")
    assert as_json.json()["result"]["text"] == "123"
    assert as_query.json()["ok"] is True
    assert unknown.status_code == 404
    assert unknown.json() == {
        "ok": False,
        "error_code": 404,
        "description": "Not Found: method not found",
    }


class _Receiver:
    """A tiny webhook endpoint that fails its first request."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        self.secrets: list[str | None] = []
        self.got_update = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.secrets.append(request.headers.get("X-Telegram-Bot-Api-Secret-Token"))
        self.bodies.append(json.loads(await request.read()))
        if len(self.bodies) == 1:
            return web.Response(status=500)
        self.got_update.set()
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[_Receiver, str]]:
    target = _Receiver()
    app = web.Application()
    app.router.add_post("/hook", target.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield target, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    await runner.cleanup()


async def test_webhook_delivery_retries_with_secret(
    api: LocalBotApi, bot: Bot, receiver: tuple[_Receiver, str]
) -> None:
    target, url = receiver
    assert await bot.set_webhook(url, secret_token="s3cret-token") is True
    uid = api.send_text(ALICE, "via webhook")
    await asyncio.wait_for(target.got_update.wait(), timeout=5)
    assert [body["update_id"] for body in target.bodies] == [uid, uid]
    assert target.secrets == ["s3cret-token", "s3cret-token"]
    assert api.pending_update_count == 0
    info = await bot.get_webhook_info()
    assert info.url == url and "500" in (info.last_error_message or "")
    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates()
    assert await bot.delete_webhook() is True
    assert await bot.get_updates() == ()


async def test_webhook_only_to_loopback(bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)bad webhook"):
        await bot.set_webhook("https://example.com/hook")


async def test_application_polls_and_replies(api: LocalBotApi) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(f"You said: {context.args}")

    app = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(api.base_url)
        .request(HTTPXRequest())
        .get_updates_request(HTTPXRequest())
        .build()
    )
    app.add_handler(CommandHandler("start", start))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=1)
        api.send_command(ALICE, "start", "xyz")
        [reply] = await api.wait_for_messages(ALICE.chat_id, 1, timeout=5)
        await app.updater.stop()
        await app.stop()
    assert reply.text == "You said: ['xyz']"
    assert api.pending_update_count == 0


async def test_webhook_keeps_per_chat_order(api: LocalBotApi, bot: Bot) -> None:
    arrivals: list[tuple[int, str]] = []
    everything = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        update = json.loads(await request.read())
        text = update["message"]["text"]
        if text == "a1":
            await asyncio.sleep(0.3)  # a slow first update must not be overtaken in its chat
        arrivals.append((update["message"]["chat"]["id"], text))
        if len(arrivals) == 3:
            everything.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        await bot.set_webhook(f"http://127.0.0.1:{runner.addresses[0][1]}/hook")
        for person, text in ((ALICE, "a1"), (ALICE, "a2"), (BOB, "b1")):
            api.send_text(person, text)
        await asyncio.wait_for(everything.wait(), timeout=5)
        await bot.delete_webhook()
    finally:
        await runner.cleanup()
    assert [text for _, text in arrivals] == ["b1", "a1", "a2"]
