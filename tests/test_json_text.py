"""storage/json_text.py reads back what it writes, whatever the text: a person's message
may hold a lone UTF-16 surrogate (orjson refuses it; the standard library takes it), and
Telegram's answer is read as PTB read it, without its content in any log."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from telegram.error import TelegramError

from bot.http_request import AiohttpRequest
from storage import json_text

# Any str, lone surrogates included (st.text() leaves them out by default).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()))
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)


@given(VALUES)
def test_what_is_written_reads_back_as_the_standard_library_reads_it(value: object) -> None:
    text = json_text.dumps(value)
    assert json_text.loads(text) == json.loads(json.dumps(value)) == value
    assert json_text.loads(json_text.dumps_bytes(value)) == value


def test_a_lone_surrogate_and_integer_keys_fall_back_to_the_standard_library() -> None:
    assert json_text.loads(json_text.dumps({"t": "\ud83d alone"})) == {"t": "\ud83d alone"}
    assert json_text.loads('"\\ud83d"') == "\ud83d"
    assert json_text.dumps({1: "x"}) == '{"1":"x"}'
    assert json_text.dumps({"n": 2**70}) == '{"n":1180591620717411303424}'


def test_telegram_s_answer_is_read_and_an_unreadable_one_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    read = AiohttpRequest.parse_json_payload
    assert read(b'{"ok":true,"result":[{"text":"\\ud83d Zephyrine"}]}') == {
        "ok": True,
        "result": [{"text": "\ud83d Zephyrine"}],
    }
    assert read(b'{"ok":true,"text":"\xff Zephyrine"}') == {"ok": True, "text": "\ufffd Zephyrine"}
    with caplog.at_level(logging.DEBUG), pytest.raises(TelegramError, match="Invalid server"):
        read(b'{"ok":true,"text":"Quorvath clash with my shifts')
    assert "Quorvath" not in caplog.text


def test_dates_and_dataclasses_are_refused_as_the_standard_library_refuses_them() -> None:
    @dataclasses.dataclass
    class Point:
        x: int

    for value in ({"at": datetime.datetime(2026, 11, 28)}, {"p": Point(1)}):
        with pytest.raises(TypeError):
            json_text.dumps(value)
        with pytest.raises(TypeError):
            json_text.dumps_bytes(value)
