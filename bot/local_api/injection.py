"""Test/sandbox side: make invented people talk to the bot by enqueuing updates."""

from __future__ import annotations

import re
import time
from typing import Literal

from ._json import JsonDict
from .formatting import utf16_len
from .people import FakePerson, group_chat_json
from .records import ChatState
from .state import ApiState

_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]+)?")
# Placeholder bytes so the bot can getFile/download what a fake person "sent".
_FAKE_MEDIA = {
    "sticker": b"RIFF-fake-webp",
    "photo": b"\xff\xd8fake-jpeg",
    "voice": b"OggSfake-opus",
    "video_note": b"\x00\x00\x00\x18ftypmp42fake",
    "animation": b"\x00\x00\x00\x18ftypisomfake",
}


class UpdateInjector:
    """Builds Telegram-shaped updates from invented people; each method returns the update_id.

    Must be called from the event loop thread that runs the server.
    """

    _state: ApiState

    def add_chat(self, person: FakePerson) -> None:
        """Make the person's private chat known without sending an update."""
        self._state.ensure_chat(person.private_chat_json())

    def send_update(self, update: JsonDict, update_id: int | None = None) -> int:
        """Raw injection; the update_id is assigned unless given (duplicates are allowed).

        An ``update_id`` inside the dict counts as given when the argument is None.
        """
        if update_id is None and isinstance(update.get("update_id"), int):
            update_id = update["update_id"]
        update = {key: value for key, value in update.items() if key != "update_id"}
        body = next(iter(update.values()), None)
        if isinstance(body, dict):
            for holder in (body, body.get("message")):
                if isinstance(holder, dict) and isinstance(holder.get("chat"), dict):
                    self._state.ensure_chat(holder["chat"])
        return self._state.updates.push(update, update_id)

    def send_text(self, person: FakePerson, text: str) -> int:
        """A private text message; a leading /command gets a bot_command entity."""
        message = self._new_message(person, self._private(person))
        message["text"] = text
        command = _COMMAND_RE.match(text)
        if command is not None:
            length = utf16_len(command.group(0))
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return self._push_message(person.chat_id, message)

    def send_command(self, person: FakePerson, command: str, payload: str | None = None) -> int:
        """Shortcut for ``/command payload``."""
        text = f"/{command.lstrip('/')}"
        return self.send_text(person, f"{text} {payload}" if payload else text)

    def send_sticker(self, person: FakePerson, emoji: str = "👍") -> int:
        """A sticker message with a fake file."""
        message = self._new_message(person, self._private(person))
        file = self._media_file("sticker", "image/webp")
        message["sticker"] = {
            **file,
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "type": "regular",
            "emoji": emoji,
        }
        return self._push_message(person.chat_id, message)

    def send_photo(self, person: FakePerson, caption: str | None = None) -> int:
        """A photo message with a fake file."""
        message = self._new_message(person, self._private(person))
        file = self._media_file("photo", "image/jpeg")
        message["photo"] = [{**file, "width": 1280, "height": 960}]
        if caption:
            message["caption"] = caption
        return self._push_message(person.chat_id, message)

    def send_voice(self, person: FakePerson, duration: int = 3) -> int:
        """A voice message with a fake file."""
        message = self._new_message(person, self._private(person))
        file = self._media_file("voice", "audio/ogg")
        message["voice"] = {**file, "duration": duration, "mime_type": "audio/ogg"}
        return self._push_message(person.chat_id, message)

    def send_video_note(self, person: FakePerson, duration: int = 3) -> int:
        """A round video message (a "video note") with a fake file."""
        message = self._new_message(person, self._private(person))
        file = self._media_file("video_note", "video/mp4")
        message["video_note"] = {**file, "length": 240, "duration": duration}
        return self._push_message(person.chat_id, message)

    def send_animation(self, person: FakePerson) -> int:
        """A GIF, as Telegram sends one: an animation that is also a document."""
        message = self._new_message(person, self._private(person))
        file = self._media_file("animation", "video/mp4")
        message["animation"] = {**file, "width": 320, "height": 240, "duration": 2}
        message["document"] = {**file, "file_name": "dance.gif.mp4", "mime_type": "video/mp4"}
        return self._push_message(person.chat_id, message)

    def send_group_message(
        self,
        person: FakePerson,
        chat_id: int = -100123,
        text: str = "hi",
        title: str = "Test group",
    ) -> int:
        """A text message from the person in a group chat."""
        chat = self._state.ensure_chat(group_chat_json(chat_id, title))
        message = self._new_message(person, chat)
        message["text"] = text
        return self._push_message(chat_id, message)

    def send_live_location(self, person: FakePerson, live_period: int = 900) -> int:
        """The person shares their live location (Telegram then sends each move as an
        edit of this message: see `move_live_location`)."""
        message = self._new_message(person, self._private(person))
        message["location"] = {"latitude": 51.5, "longitude": -0.12, "live_period": live_period}
        return self._push_message(person.chat_id, message)

    def move_live_location(self, person: FakePerson) -> int:
        """The person's latest live location moved: an edit of its message, with no text
        (StopIteration if they shared none)."""
        chat = self._private(person)
        original = next(
            m for _, m in sorted(chat.incoming.items(), reverse=True) if "location" in m
        )
        location = dict(original["location"])
        location["latitude"] = float(location["latitude"]) + 0.001
        edited = {**original, "location": location, "edit_date": int(time.time())}
        chat.incoming[original["message_id"]] = edited
        return self._state.updates.push({"edited_message": edited})

    def latest_message_id(self, person: FakePerson) -> int:
        """The id of the person's latest message to the bot, e.g. to edit it."""
        return max(self._private(person).incoming)

    def send_edited_message(self, person: FakePerson, message_id: int, text: str) -> int:
        """The person edited one of their earlier messages (KeyError if unknown)."""
        chat = self._private(person)
        original = chat.incoming[message_id]
        edited = {**original, "text": text, "edit_date": int(time.time())}
        edited.pop("entities", None)
        chat.incoming[message_id] = edited
        return self._state.updates.push({"edited_message": edited})

    def press_button(
        self, person: FakePerson, message_id: int, callback_data: str, chat_id: int | None = None
    ) -> int:
        """The person pressed an inline button on a bot message (KeyError if unknown).

        The message is looked up in the person's private chat unless chat_id names
        another known chat. callback_data is not checked against the keyboard:
        modified clients can send any data, so bots must not trust it either.
        """
        chat = self._private(person) if chat_id is None else self._state.chats.get(chat_id)
        msg = None if chat is None else chat.live_message(message_id)
        if chat is None or msg is None:
            raise KeyError(f"no bot message {message_id} in chat {chat_id or person.chat_id}")
        query = {
            "id": self._state.issue_callback_query(),
            "from": person.user_json(),
            "message": self._state.render(msg),
            "chat_instance": f"{abs(hash((self._state.bot.bot_id, chat.id))) % 10**18}",
            "data": callback_data,
        }
        return self._state.updates.push({"callback_query": query})

    def delete_for_person(self, person: FakePerson, message_id: int) -> None:
        """The person deleted one of the bot's messages in their chat (KeyError if
        unknown). Telegram tells the bot nothing; an edit of it then fails with 400."""
        chat = self._private(person)
        msg = chat.live_message(message_id)
        if msg is None:
            raise KeyError(f"no bot message {message_id} in chat {person.chat_id}")
        msg.deleted = True

    def send_my_chat_member(self, person: FakePerson, status: Literal["kicked", "member"]) -> int:
        """The person blocked ("kicked") or unblocked ("member") the bot."""
        chat = self._private(person)
        chat.kicked = status == "kicked"
        old_status = "member" if chat.kicked else "kicked"
        bot_user = self._state.bot.user_json()
        new_member: JsonDict = {"user": bot_user, "status": status}
        if status == "kicked":
            new_member["until_date"] = 0
        old_member: JsonDict = {"user": bot_user, "status": old_status}
        if old_status == "kicked":
            old_member["until_date"] = 0
        update = {
            "chat": dict(chat.chat),
            "from": person.user_json(),
            "date": int(time.time()),
            "old_chat_member": old_member,
            "new_chat_member": new_member,
        }
        return self._state.updates.push({"my_chat_member": update})

    def _private(self, person: FakePerson) -> ChatState:
        return self._state.ensure_chat(person.private_chat_json())

    def _new_message(self, person: FakePerson, chat: ChatState) -> JsonDict:
        return {
            "message_id": chat.take_message_id(),
            "from": person.user_json(),
            "chat": dict(chat.chat),
            "date": int(time.time()),
        }

    def _push_message(self, chat_id: int, message: JsonDict) -> int:
        self._state.chats[chat_id].incoming[message["message_id"]] = message
        return self._state.updates.push({"message": message})

    def _media_file(self, kind: str, mime_type: str) -> JsonDict:
        stored = self._state.new_file(kind, None, mime_type, _FAKE_MEDIA[kind])
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
        }
