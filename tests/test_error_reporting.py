"""Errors: a failing update is retried, then given up kindly; reports carry no personal data."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.error_reporting import _scrubbed_excepthook, scrub_event, scrub_text
from bot.local_api import LocalBotApi
from tests.harness import ADA, Chat, Records, eventually, running_bot, settings_for


def test_scrub_masks_tokens_and_ids() -> None:
    text = "chat 700000001 failed with 123456789:AAinventedTOKENforTESTSonly_abcdefgh"
    assert scrub_text(text) == "chat <number> failed with <token>"


def test_scrub_event_drops_personal_parts() -> None:
    event = {
        "request": {"data": "hello"},
        "user": {"id": 700000001},
        "extra": {"text": "my words"},
        "breadcrumbs": {"values": [{"message": "my words"}]},
        "exception": {
            "values": [
                {
                    "value": "person 700000001",
                    "stacktrace": {"frames": [{"function": "f", "vars": {"text": "my words"}}]},
                }
            ]
        },
    }
    scrubbed = scrub_event(event)
    assert set(scrubbed) == {"exception"}
    value = scrubbed["exception"]["values"][0]
    assert value["value"] == "person <number>"
    assert "vars" not in value["stacktrace"]["frames"][0]


def test_scrub_event_leaves_machine_made_fields_whole() -> None:
    """Masking digit runs in these would make Sentry refuse the event or lose its release."""
    event = {
        "event_id": "e630bc36d6444aee9268eada98316192",
        "timestamp": "2026-11-26T14:43:19.988420Z",
        "release": "29fb48aca1cba20391f2e24ccead55718a2be",
        "modules": {"sentry-sdk": "2.75.0"},
        "server_name": "host-700000001",
    }
    scrubbed = scrub_event(dict(event))
    assert {k: scrubbed[k] for k in ("event_id", "timestamp", "release", "modules")} == {
        k: event[k] for k in ("event_id", "timestamp", "release", "modules")
    }
    assert scrubbed["server_name"] == "host-<number>"


async def test_a_failing_update_is_retried_then_the_person_is_told(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """A real fault in the database (a trigger that aborts) fails the handler's transaction:
    nothing half-done is stored, the update is retried, and after the last try the person
    hears that something went wrong. Once the fault is gone they carry on."""
    chat = Chat(api, ADA)
    async with running_bot(api, tmp_path):
        records = Records(settings_for(api, tmp_path))
        await chat.start()
        await chat.tap("OK, go on")
        await _change_schema(
            records.settings.database_path,
            "CREATE TRIGGER injected_fault BEFORE INSERT ON consent_ledger "
            "BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
        )
        message, data = chat.find_button("Yes")
        api.press_button(ADA, message.message_id, data)
        sorry = await api.wait_for_messages(ADA.chat_id, 4, timeout=20)
        assert "something went wrong" in sorry[-1].text
        await eventually(
            lambda: (
                records.query("SELECT status, attempts, payload FROM inbox ORDER BY seq")[-1]
                == ("failed", 3, None)
            )
        )
        assert records.consents(ADA) == []
        assert records.place(ADA) == ["onboarding", "consent_feedback"]
        await _change_schema(records.settings.database_path, "DROP TRIGGER injected_fault")
        question = await chat.tap("Yes")
        assert "Can we invite you" in question.text
        assert records.consents(ADA) == [("feedback", 1, "2026-11-v2")]


async def _change_schema(database: str, statement: str) -> None:
    """Runs `statement` from a second connection in a worker thread. On the event loop it
    would deadlock: the bot in this process may hold a grouped write transaction whose
    COMMIT needs the loop, while the blocked loop waits for that write lock."""

    def change() -> None:
        with sqlite3.connect(database, timeout=30) as conn:
            conn.execute(statement)

    await asyncio.to_thread(change)


def test_an_error_nobody_caught_is_printed_without_the_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Python prints an uncaught error itself, past the logging formatter: a library's
    message holding the token ("The token `...` was rejected") is masked there too
    (setup_logging makes this the process's excepthook)."""
    token = "123456789:AAinventedTOKENforTESTSonly_abcdefgh"
    try:
        raise RuntimeError(f"The token `{token}` was rejected by the server.")
    except RuntimeError as exc:
        _scrubbed_excepthook(type(exc), exc, exc.__traceback__)
    printed = capsys.readouterr().err
    assert "The token `<token>` was rejected" in printed and token not in printed
