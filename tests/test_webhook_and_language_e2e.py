"""Webhook mode over HTTP, English and Welsh, /language at any time, and the secret check."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.local_api import LocalBotApi
from bot.runtime import Runtime
from tests.harness import ADA, BRAN, Chat, Records, running_bot, settings_for

NOTICE = "2026-11-v2"
SECRET = "invented-webhook-secret_0123456789abcdef"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture()
async def webhook_bot(api: LocalBotApi, tmp_path: Path) -> AsyncIterator[tuple[Runtime, str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    extra = {"WEBHOOK_URL": url, "WEBHOOK_SECRET": SECRET, "WEBHOOK_LISTEN": f"127.0.0.1:{port}"}
    async with running_bot(api, tmp_path, **extra) as runtime:
        yield runtime, url


async def test_onboarding_in_english_and_welsh_over_the_webhook(
    api: LocalBotApi, webhook_bot: tuple[Runtime, str], tmp_path: Path
) -> None:
    _, url = webhook_bot
    assert api.webhook_info["url"] == url
    assert not api.calls("getUpdates")  # nothing polls in webhook mode
    english, welsh = Chat(api, ADA), Chat(api, BRAN)
    await english.start("English")
    await english.tap("OK, go on")
    for answer in ("Yes", "No", "No", "Yes"):
        await english.tap(answer)
    assert "You are signed up" in (await english.tap("Wales")).text

    notice = await welsh.start("Cymraeg")
    assert "Gwasanaeth Prawf" in notice.text and "116 123" in notice.text
    await welsh.tap(welsh.messages[-1].reply_markup["inline_keyboard"][0][0]["text"])
    for answer in ("Cewch", "Cewch", "Na chewch", "Cewch"):
        await welsh.tap(answer)
    done = await welsh.tap("Cymru")
    assert "Rydych chi wedi cofrestru" in done.text and "What happens next" not in done.text
    records = Records(settings_for(api, tmp_path))
    assert records.consents(BRAN) == [
        ("feedback", 1, NOTICE),
        ("panel_invitations", 1, NOTICE),
        ("updates", 0, NOTICE),
        ("quotes", 1, NOTICE),
    ]
    assert records.query("SELECT locale, region FROM people ORDER BY locale") == [
        ("cy", "wales"),
        ("en", "wales"),
    ]


@pytest.mark.parametrize("secret", [None, "wrong-secret", SECRET + "x", ""])
async def test_a_missing_or_wrong_secret_gets_403_and_changes_nothing(
    api: LocalBotApi, webhook_bot: tuple[Runtime, str], tmp_path: Path, secret: str | None
) -> None:
    _, url = webhook_bot
    records = Records(settings_for(api, tmp_path))
    update = {
        "update_id": 999,
        "message": {
            "message_id": 1,
            "date": 1_790_000_000,
            "chat": {"id": ADA.chat_id, "type": "private", "first_name": "Ada"},
            "from": {"id": ADA.user_id, "is_bot": False, "first_name": "Ada"},
            "text": "/start",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=update, headers=headers) as response,
    ):
        assert response.status == 403
    assert records.query("SELECT COUNT(*) FROM inbox") == [(0,)]
    assert records.query("SELECT COUNT(*) FROM people") == [(0,)]
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
        ) as response,
    ):
        assert response.status == 200  # the right secret is let in
    assert records.query("SELECT COUNT(*) FROM inbox") == [(1,)]


async def test_language_mid_dialogue_switches_and_reasks_the_question(
    api: LocalBotApi, tmp_path: Path
) -> None:
    async with running_bot(api, tmp_path):
        chat = Chat(api, ADA)
        await chat.start("English")
        await chat.tap("OK, go on")
        assert "Can we keep your answers" in chat.messages[-1].text
        chooser = await chat.say("/language")
        assert "Which language" in chooser.text
        await chat.tap("Cymraeg")
        confirm, question = (await api.wait_for_messages(ADA.chat_id, 6))[-2:]
        assert "Gymraeg" in confirm.text
        assert "Gawn ni gadw eich atebion" in question.text
        buttons = [b["text"] for row in question.reply_markup["inline_keyboard"] for b in row]
        assert buttons == ["Cewch", "Na chewch", "Dw i ddim yn deall"]
        await chat.tap("Cewch")
        records = Records(settings_for(api, tmp_path))
        assert records.consents(ADA) == [("feedback", 1, NOTICE)]
        assert records.place(ADA) == ["onboarding", "consent_invitations"]
        await chat.say("/language")
        await chat.tap("English")
        back = (await api.wait_for_messages(ADA.chat_id, 10))[-1]
        assert "Can we invite you to panels" in back.text
