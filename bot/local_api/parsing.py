"""Decode Bot API requests the way Telegram accepts them.

python-telegram-bot sends ``application/x-www-form-urlencoded`` bodies whose non-string
values are JSON-encoded, or ``multipart/form-data`` when uploading files
(see telegram/request/_requestparameter.py). curl users send JSON or query strings.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._json import ChatId, Params
from .errors import bad_request

# Fields whose values are plain strings even when they look like JSON ("123", "true").
STRING_FIELDS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "inline_query_id",
        "url",
        "secret_token",
        "action",
        "language_code",
        "ip_address",
        "business_connection_id",
        "message_effect_id",
        "emoji",
        "question",
        "explanation",
        "title",
        "description",
        "short_description",
        "name",
        "file_id",
        "inline_message_id",
        "document",
        "photo",
        "sticker",
        "voice",
        "audio",
        "video",
        "animation",
        "thumbnail",
        "first_name",
        "last_name",
        "phone_number",
        "vcard",
        "address",
        "custom_emoji_id",
        "filename",
    }
)
_JSON_LIKE = re.compile(
    r"\s*(\{.*\}|\[.*\]|-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null)\s*", re.DOTALL
)
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file part of a multipart request."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes

    def __repr__(self) -> str:
        # Never dump uploaded bytes into logs or assertion messages.
        return (
            f"UploadedFile(field={self.field!r}, filename={self.filename!r}, size={len(self.data)})"
        )


def decode_value(name: str, value: Any) -> Any:
    """JSON-decode string values that carry non-string Bot API types."""
    if not isinstance(value, str) or name in STRING_FIELDS or not _JSON_LIKE.fullmatch(value):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


async def read_params(request: web.Request) -> Params:
    """All parameters of a call: query string first, then the body (which wins)."""
    params: Params = {key: decode_value(key, value) for key, value in request.query.items()}
    if request.body_exists:
        if request.content_type == "application/json":
            params.update(await _read_json(request))
        elif request.content_type in _FORM_TYPES:
            params.update(await _read_form(request))
    _resolve_attachments(params)
    return params


async def _read_json(request: web.Request) -> Params:
    try:
        body = await request.json()
    except ValueError as exc:
        raise bad_request("can't parse JSON object") from exc
    if not isinstance(body, dict):
        raise bad_request("JSON object expected")
    return {str(key): decode_value(str(key), value) for key, value in body.items()}


async def _read_form(request: web.Request) -> Params:
    form = await request.post()
    params: Params = {}
    for key, value in form.items():
        if isinstance(value, web.FileField):
            params[key] = UploadedFile(key, value.filename, value.content_type, value.file.read())
        else:
            params[key] = decode_value(key, value)
    return params


def _resolve_attachments(params: Params) -> None:
    # "attach://<name>" points at another multipart part of the same request.
    for key, value in list(params.items()):
        if isinstance(value, str) and value.startswith("attach://"):
            target = params.get(value.removeprefix("attach://"))
            if isinstance(target, UploadedFile):
                params[key] = target


def chat_id_of(params: Params) -> ChatId | None:
    """The chat a call targets, if any (ints stay ints, '@username' stays a string)."""
    value = params.get("chat_id")
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    return value


def int_param(params: Params, name: str, default: int | None = None) -> int:
    """An integer parameter; 400 when missing without default or malformed."""
    value = params.get(name)
    if value is None or value == "":
        if default is None:
            raise bad_request(f"{name} is empty")
        return default
    if isinstance(value, bool):
        raise bad_request(f"invalid {name} specified")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise bad_request(f"invalid {name} specified") from exc


def bool_param(params: Params, name: str) -> bool:
    """A boolean parameter (absent → False)."""
    value = params.get(name)
    if isinstance(value, str):
        return value.lower() in ("true", "1")
    return bool(value)


def str_param(params: Params, name: str) -> str | None:
    """A string parameter, or None when absent."""
    value = params.get(name)
    return None if value is None else str(value)
