"""What the server remembers: chats, files, the bot's messages and every API call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ._json import ChatId, JsonDict

MessageKind = Literal["text", "document", "photo"]
Outcome = Literal["pending", "ok", "error", "dropped"]

# Uploaded photos are not decoded, so every photo reports one plausible size.
_PHOTO_SIDE = 320


@dataclass(slots=True)
class StoredFile:
    """A file known to the server: uploaded by the bot or attached to an injected update."""

    file_id: str
    file_unique_id: str
    file_path: str
    file_name: str | None
    mime_type: str | None
    content: bytes | None

    @property
    def size(self) -> int:
        """Size in bytes (0 when only a placeholder exists)."""
        return len(self.content or b"")

    def document_json(self) -> JsonDict:
        """Bot API ``Document`` object."""
        doc: JsonDict = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.size,
        }
        if self.file_name is not None:
            doc["file_name"] = self.file_name
        if self.mime_type is not None:
            doc["mime_type"] = self.mime_type
        return doc

    def photo_json(self) -> list[JsonDict]:
        """Bot API ``PhotoSize`` array."""
        return [
            {
                "file_id": self.file_id,
                "file_unique_id": self.file_unique_id,
                "width": _PHOTO_SIDE,
                "height": _PHOTO_SIDE,
                "file_size": self.size,
            }
        ]

    def file_json(self) -> JsonDict:
        """Bot API ``File`` object answered by getFile."""
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.size,
            "file_path": self.file_path,
        }


@dataclass(slots=True)
class SentMessage:
    """A message the bot delivered; ``text``/``caption`` are as displayed (markup parsed)."""

    message_id: int
    chat_id: int
    text: str | None
    reply_markup: JsonDict | None
    kind: MessageKind
    caption: str | None = None
    file_name: str | None = None
    edited: bool = False
    date: int = 0
    content: bytes | None = None
    deleted: bool = False
    parse_mode: str | None = None
    raw_text: str | None = None
    entities: list[JsonDict] = field(default_factory=list)
    edit_date: int | None = None
    file: StoredFile | None = None
    disable_notification: bool = False

    def __repr__(self) -> str:
        # Keep message content out of reprs: they end up in logs and assertion output.
        return (
            f"SentMessage(chat_id={self.chat_id}, message_id={self.message_id}, "
            f"kind={self.kind!r}, edited={self.edited}, deleted={self.deleted})"
        )

    def to_json(self, chat: JsonDict, sender: JsonDict) -> JsonDict:
        """Bot API ``Message`` object as Telegram returns it."""
        msg: JsonDict = {
            "message_id": self.message_id,
            "from": sender,
            "chat": chat,
            "date": self.date,
        }
        if self.edit_date is not None:
            msg["edit_date"] = self.edit_date
        if self.kind == "text":
            msg["text"] = self.text or ""
            if self.entities:
                msg["entities"] = self.entities
        else:
            self._put_media(msg)
        # As Telegram does, a sent Message carries only an inline keyboard; a reply keyboard
        # (e.g. a "share my phone number" button) is kept here for tests but not echoed.
        if self.reply_markup is not None and "inline_keyboard" in self.reply_markup:
            msg["reply_markup"] = self.reply_markup
        return msg

    def _put_media(self, msg: JsonDict) -> None:
        if self.file is not None:
            if self.kind == "photo":
                msg["photo"] = self.file.photo_json()
            else:
                msg["document"] = self.file.document_json()
        if self.caption:
            msg["caption"] = self.caption
            if self.entities:
                msg["caption_entities"] = self.entities


@dataclass(slots=True)
class CallRecord:
    """One API call as received; ``outcome`` stays "pending" while the call is in flight."""

    method: str
    params: dict[str, Any]
    time: float
    chat_id: ChatId | None
    outcome: Outcome = "pending"
    status: int | None = None
    description: str | None = None

    def __repr__(self) -> str:
        # Params may hold user text; the repr shows only what identifies the call.
        return (
            f"CallRecord({self.method}, chat_id={self.chat_id}, outcome={self.outcome!r}, "
            f"status={self.status})"
        )


@dataclass(slots=True)
class ChatState:
    """A chat the server knows about and the messages in it."""

    chat: JsonDict
    next_message_id: int = 1
    sent: dict[int, SentMessage] = field(default_factory=dict)
    incoming: dict[int, JsonDict] = field(default_factory=dict)
    kicked: bool = False
    left: bool = False

    @property
    def id(self) -> int:
        """The chat id."""
        return int(self.chat["id"])

    @property
    def is_private(self) -> bool:
        """True for one-to-one chats with a user."""
        return bool(self.chat.get("type") == "private")

    def take_message_id(self) -> int:
        """Next message id; Telegram numbers user and bot messages from one per-chat sequence."""
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id

    def live_message(self, message_id: int) -> SentMessage | None:
        """The bot's message with that id unless it was deleted."""
        msg = self.sent.get(message_id)
        return None if msg is None or msg.deleted else msg
