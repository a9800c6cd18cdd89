"""Invented Telegram users and the bot's own identity, rendered as Bot API JSON."""

from __future__ import annotations

from dataclasses import dataclass

from ._json import JsonDict


@dataclass(frozen=True, slots=True)
class FakePerson:
    """An invented Telegram user; never put a real person's data here.

    Telegram gives a user's private chat with a bot the same id as the user,
    so ``chat_id == user_id``.
    """

    user_id: int
    first_name: str = "Test"
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = "en"

    def __post_init__(self) -> None:
        if self.user_id <= 0:
            raise ValueError("Telegram user ids are positive integers")

    @property
    def chat_id(self) -> int:
        """Id of this person's private chat with the bot."""
        return self.user_id

    def user_json(self) -> JsonDict:
        """Bot API ``User`` object."""
        user: JsonDict = {"id": self.user_id, "is_bot": False, "first_name": self.first_name}
        _put_optional(user, last_name=self.last_name, username=self.username)
        _put_optional(user, language_code=self.language_code)
        return user

    def private_chat_json(self) -> JsonDict:
        """Bot API ``Chat`` object for the private chat with the bot."""
        chat: JsonDict = {"id": self.user_id, "type": "private", "first_name": self.first_name}
        _put_optional(chat, last_name=self.last_name, username=self.username)
        return chat


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """Who the bot is, derived from its token the way Telegram does."""

    bot_id: int
    first_name: str
    username: str

    @classmethod
    def from_token(cls, token: str, first_name: str, username: str) -> BotIdentity:
        """The bot id is the integer before ':' in the token."""
        head, sep, tail = token.partition(":")
        if not sep or not head.isdigit() or not tail:
            raise ValueError("token must look like '<bot id>:<secret>'")
        return cls(bot_id=int(head), first_name=first_name, username=username)

    def user_json(self) -> JsonDict:
        """Short ``User`` object used as ``from`` of the bot's messages."""
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    def get_me_json(self) -> JsonDict:
        """Full ``User`` object answered by getMe."""
        return {
            **self.user_json(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }


def group_chat_json(chat_id: int, title: str) -> JsonDict:
    """Bot API ``Chat`` object for a basic group."""
    return {"id": chat_id, "type": "group", "title": title}


def _put_optional(target: JsonDict, **values: str | None) -> None:
    # The Bot API omits absent optional fields rather than sending null.
    for key, value in values.items():
        if value is not None:
            target[key] = value
