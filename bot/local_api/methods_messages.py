"""Bot API methods that create, change or remove messages."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._json import JsonDict, Params
from .errors import bad_request
from .parsing import UploadedFile, bool_param, chat_id_of, int_param, str_param
from .records import ChatState, MessageKind, SentMessage, StoredFile
from .state import ApiState
from .validation import caption_text, message_text, reply_markup

Handler = Callable[[ApiState, Params], Awaitable[Any]]

_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)


def _now() -> int:
    return int(time.time())


async def send_message(state: ApiState, params: Params) -> JsonDict:
    chat = state.chat(chat_id_of(params))
    raw, text, entities = message_text(params)
    msg = SentMessage(
        message_id=chat.take_message_id(),
        chat_id=chat.id,
        text=text,
        reply_markup=reply_markup(params),
        kind="text",
        date=_now(),
        parse_mode=str_param(params, "parse_mode"),
        raw_text=raw,
        entities=entities,
        disable_notification=bool_param(params, "disable_notification"),
    )
    return state.add_sent(chat, msg)


async def send_document(state: ApiState, params: Params) -> JsonDict:
    return _send_file(state, params, "document")


async def send_photo(state: ApiState, params: Params) -> JsonDict:
    return _send_file(state, params, "photo")


def _send_file(state: ApiState, params: Params, kind: MessageKind) -> JsonDict:
    chat = state.chat(chat_id_of(params))
    caption, entities = caption_text(params)
    stored = _resolve_file(state, params.get(kind), kind)
    msg = SentMessage(
        message_id=chat.take_message_id(),
        chat_id=chat.id,
        text=None,
        reply_markup=reply_markup(params),
        kind=kind,
        caption=caption,
        file_name=stored.file_name,
        date=_now(),
        content=stored.content,
        parse_mode=str_param(params, "parse_mode"),
        entities=entities,
        file=stored,
        disable_notification=bool_param(params, "disable_notification"),
    )
    return state.add_sent(chat, msg)


def _resolve_file(state: ApiState, value: object, kind: str) -> StoredFile:
    if isinstance(value, UploadedFile):
        if not value.data:
            raise bad_request("file must be non-empty")
        return state.new_file(kind, value.filename, value.content_type, value.data)
    if not isinstance(value, str) or not value:
        raise bad_request(f"there is no {kind} in the request")
    if value.startswith(("http://", "https://")):
        # The sandbox has no internet, and Telegram would fetch the URL itself.
        raise bad_request("failed to get HTTP URL content")
    stored = state.files.get(value)
    if stored is None:
        raise bad_request("wrong file identifier/HTTP URL specified")
    return stored


def _message_to_edit(state: ApiState, params: Params) -> tuple[ChatState, SentMessage]:
    if params.get("inline_message_id"):
        raise bad_request("MESSAGE_ID_INVALID")
    chat = state.chat(chat_id_of(params))
    message_id = int_param(params, "message_id")
    msg = chat.live_message(message_id)
    if msg is None:
        if message_id in chat.incoming:
            raise bad_request("message can't be edited")
        raise bad_request("message to edit not found")
    return chat, msg


async def edit_message_text(state: ApiState, params: Params) -> JsonDict:
    _, msg = _message_to_edit(state, params)
    if msg.kind != "text":
        raise bad_request("there is no text in the message to edit")
    raw, text, entities = message_text(params)
    # Like Telegram, an edit without reply_markup removes the inline keyboard.
    markup = reply_markup(params)
    if (text, entities, markup) == (msg.text, msg.entities, msg.reply_markup):
        raise bad_request(_NOT_MODIFIED)
    msg.text, msg.raw_text, msg.entities, msg.reply_markup = text, raw, entities, markup
    msg.parse_mode = str_param(params, "parse_mode")
    return _mark_edited(state, msg)


async def edit_message_caption(state: ApiState, params: Params) -> JsonDict:
    _, msg = _message_to_edit(state, params)
    if msg.kind == "text":
        raise bad_request("there is no caption in the message to edit")
    caption, entities = caption_text(params)
    markup = reply_markup(params)
    if (caption, entities, markup) == (msg.caption, msg.entities, msg.reply_markup):
        raise bad_request(_NOT_MODIFIED)
    msg.caption, msg.entities, msg.reply_markup = caption, entities, markup
    return _mark_edited(state, msg)


async def edit_message_reply_markup(state: ApiState, params: Params) -> JsonDict:
    _, msg = _message_to_edit(state, params)
    markup = reply_markup(params)
    if markup == msg.reply_markup:
        raise bad_request(_NOT_MODIFIED)
    msg.reply_markup = markup
    return _mark_edited(state, msg)


def _mark_edited(state: ApiState, msg: SentMessage) -> JsonDict:
    msg.edited = True
    msg.edit_date = _now()
    state.notifier.notify()
    return state.render(msg)


async def delete_message(state: ApiState, params: Params) -> bool:
    chat = state.chat(chat_id_of(params))
    message_id = int_param(params, "message_id")
    msg = chat.live_message(message_id)
    if msg is not None:
        msg.deleted = True
    elif chat.is_private and message_id in chat.incoming:
        # Bots may delete incoming messages in private chats.
        del chat.incoming[message_id]
    else:
        raise bad_request("message to delete not found")
    state.notifier.notify()
    return True


async def send_chat_action(state: ApiState, params: Params) -> bool:
    state.chat(chat_id_of(params))
    if str_param(params, "action") not in _CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    return True


MESSAGE_HANDLERS: dict[str, Handler] = {
    "sendMessage": send_message,
    "sendDocument": send_document,
    "sendPhoto": send_photo,
    "editMessageText": edit_message_text,
    "editMessageCaption": edit_message_caption,
    "editMessageReplyMarkup": edit_message_reply_markup,
    "deleteMessage": delete_message,
    "sendChatAction": send_chat_action,
}
