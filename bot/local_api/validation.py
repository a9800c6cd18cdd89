"""Checks Telegram applies to message content before accepting it."""

from __future__ import annotations

from typing import Any

from ._json import JsonDict, Params
from .errors import bad_request
from .formatting import parse_formatted
from .parsing import str_param

MAX_TEXT = 4096
MAX_CAPTION = 1024
_MAX_CALLBACK_DATA = 64
_TEXT_BUTTON = (
    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
)
_MARKUP_KINDS = ("inline_keyboard", "keyboard", "remove_keyboard", "force_reply")
_BUTTON_ACTIONS = (
    "callback_data",
    "url",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def message_text(params: Params) -> tuple[str, str, list[JsonDict]]:
    """(raw text, displayed text, entities) of sendMessage/editMessageText."""
    raw = str_param(params, "text") or ""
    if not raw.strip():
        raise bad_request("message text is empty")
    text, entities = _formatted(raw, params, "entities")
    if not text.strip():
        raise bad_request("message text is empty")
    if len(text) > MAX_TEXT:
        raise bad_request("message is too long")
    return raw, text, entities


def caption_text(params: Params) -> tuple[str | None, list[JsonDict]]:
    """(displayed caption, entities) of a media message; None when absent."""
    raw = str_param(params, "caption")
    if not raw:
        return None, []
    caption, entities = _formatted(raw, params, "caption_entities")
    if len(caption) > MAX_CAPTION:
        raise bad_request("message caption is too long")
    return caption, entities


def _formatted(raw: str, params: Params, entities_field: str) -> tuple[str, list[JsonDict]]:
    explicit = params.get(entities_field)
    if isinstance(explicit, list) and not params.get("parse_mode"):
        return raw, [dict(e) for e in explicit if isinstance(e, dict)]
    return parse_formatted(raw, str_param(params, "parse_mode"))


def reply_markup(params: Params) -> JsonDict | None:
    """The validated reply_markup, or None when absent."""
    markup = params.get("reply_markup")
    if markup is None or markup == "":
        return None
    if not isinstance(markup, dict) or not any(kind in markup for kind in _MARKUP_KINDS):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        _check_inline_keyboard(markup["inline_keyboard"])
    return markup


def _check_inline_keyboard(rows: Any) -> None:
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request("can't parse reply keyboard markup JSON object")
    for row in rows:
        for button in row:
            _check_inline_button(button)


def _check_inline_button(button: Any) -> None:
    if not isinstance(button, dict) or not str(button.get("text", "")):
        raise bad_request(_TEXT_BUTTON)
    if not any(action in button for action in _BUTTON_ACTIONS):
        raise bad_request(_TEXT_BUTTON)
    data = button.get("callback_data")
    if data is not None:
        size = len(str(data).encode("utf-8"))
        if size < 1 or size > _MAX_CALLBACK_DATA:
            raise bad_request("BUTTON_DATA_INVALID")
