"""Kill -9 in the middle of handling: nothing acknowledged is lost, nothing happens twice.

The bot runs as a real separate process (`python -m bot run`) against the local Bot API
server in this test's process, so the server's records survive the kill."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from bot.ingest import minimise
from bot.local_api import LocalBotApi
from bot.settings import PROJECT_ROOT
from storage.clock import SystemClock
from tests.harness import (
    ADA,
    BotProcess,
    Chat,
    Records,
    eventually,
    running_bot,
    settings_for,
)

NOTICE = "2026-11-v2"
PENDING = "SELECT COUNT(*) FROM outbox WHERE status = 'pending'"


@pytest.mark.parametrize(
    ("held_call", "delivered", "replies"),
    [("sendMessage", False, 1), ("answerCallbackQuery", False, 1), ("sendMessage", True, 2)],
)
async def test_kill_mid_handling_takes_effect_exactly_once(
    api: LocalBotApi, tmp_path: Path, held_call: str, delivered: bool, replies: int
) -> None:
    """sendMessage: killed after the update was handled, while its reply was in flight.
    answerCallbackQuery: killed while the tap's answer was in flight (it is answered as soon
    as it is stored), after getUpdates had already confirmed the update to the server, so
    only the inbox still has it, handled (its reply not yet sent) or not yet.
    sendMessage, delivered: Telegram processed the reply but the answer never reached the
    bot; no sender can know, so the reply is sent again (at least once, bounded by what
    was in flight) while the update's effect still happens exactly once."""
    bot = BotProcess(api, tmp_path)
    chat = Chat(api, ADA)
    try:
        await bot.start()
        await chat.start()
        await chat.tap("OK, go on")
        records = Records(settings_for(api, tmp_path))
        # Let the previous step settle (its reply confirmed and marked sent), so the only
        # thing in flight at the kill is update N; a reply confirmed by Telegram but not
        # yet marked sent would be repeated after a crash (bounded by what was in flight).
        await eventually(lambda: records.query(PENDING) == [(0,)])
        hold = api.hold(held_call, chat_id=ADA.chat_id if held_call == "sendMessage" else None)
        # A tap is answered when stored and handled meanwhile: its reply is held too, so the
        # kill finds it handled but not yet replied to, or not handled yet (either way one
        # reply after the restart).
        reply = api.hold("sendMessage", ADA.chat_id) if held_call != "sendMessage" else None
        message, data = chat.find_button("Yes")
        update_n = api.press_button(ADA, message.message_id, data)
        await hold.wait(timeout=20)
        # The poller's next getUpdates confirms N (a tap is answered before that call).
        await eventually(lambda: api.pending_update_count == 0)
        await bot.kill()
        hold.release(deliver=delivered)
        if reply is not None:
            reply.release(deliver=False)  # withdrawn if it never came
        assert api.pending_update_count == 0  # the server forgot N: only our inbox has it

        await bot.start()
        question = await chat.expect(3 + replies)
        assert "Can we invite you to panels" in question.text
        assert records.consents(ADA) == [("feedback", 1, NOTICE)]
        assert records.place(ADA) == ["onboarding", "consent_invitations"]
        assert records.query("SELECT status FROM inbox WHERE update_id = ?", update_n) == [
            ("handled",)
        ]
        assert len([m for m in chat.messages if "Can we invite" in m.text]) == replies
        if not delivered:
            assert any(c.outcome == "dropped" for c in api.calls(held_call))

        for answer in ("No", "Yes", "No"):
            await chat.tap(answer)
        await chat.tap("Wales")
        assert records.consents(ADA) == [
            ("feedback", 1, NOTICE),
            ("panel_invitations", 0, NOTICE),
            ("updates", 1, NOTICE),
            ("quotes", 0, NOTICE),
        ]
        assert records.query("PRAGMA integrity_check") == [("ok",)]
    finally:
        await bot.terminate()
        if os.environ.get("CI"):
            sys.stderr.write(bot.log_path.read_text() if bot.log_path.exists() else "")


async def test_health_reports_a_polling_bot(api: LocalBotApi, tmp_path: Path) -> None:
    bot = BotProcess(api, tmp_path)

    async def health() -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "health",
            cwd=PROJECT_ROOT,
            env=bot.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await process.wait()

    assert await health() == 1  # no database yet
    try:
        await bot.start()
        await Chat(api, ADA).say("/start")
        assert await health() == 0
    finally:
        await bot.terminate()


@pytest.mark.parametrize(("stored_ago_ms", "answered"), [(0, 1), (60_000, 0)])
async def test_a_tap_stored_but_not_answered_before_a_crash_is_answered_at_restart(
    api: LocalBotApi, tmp_path: Path, stored_ago_ms: int, answered: int
) -> None:
    """The state a crash between storing a tap and answering it leaves: the tap pending in
    the inbox, unanswered, and (its batch confirmed to Telegram before the answer went, or
    not) possibly fetched again. The restart answers it while Telegram still accepts an
    answer (~15 s; not a minute later, when it would only be refused), and handles it once;
    the refetch is recognised and not answered twice."""
    chat = Chat(api, ADA)
    async with running_bot(api, tmp_path):
        await chat.start()
    message, data = chat.find_button("OK, go on")
    update_id = api.press_button(ADA, message.message_id, data)
    (raw,) = [u for u in api.pending_updates() if u["update_id"] == update_id]
    records = Records(settings_for(api, tmp_path))
    sealed = records.secrets.encrypt_text(json.dumps(minimise(raw)))
    records.query(
        "INSERT INTO inbox (update_id, payload, received_at) VALUES (?, ?, ?)",
        update_id,
        sealed,
        SystemClock().now_ms() - stored_ago_ms,
    )
    answered_before = len(api.callback_answers)

    async with running_bot(api, tmp_path):
        consent = await chat.expect(len(chat.messages) + 1)
        assert "Can we keep your answers" in consent.text
        if answered:
            await eventually(lambda: len(api.callback_answers) > answered_before)
        await eventually(lambda: api.pending_update_count == 0)  # refetched, recognised
        assert len(api.callback_answers) == answered_before + answered
        assert records.query("SELECT status FROM inbox WHERE update_id = ?", update_id) == [
            ("handled",)
        ]
    assert len([m for m in chat.messages if "Can we keep your answers" in m.text]) == 1
