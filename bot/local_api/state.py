"""Everything the fake Telegram knows: the bot, chats, files, queries and updates."""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field

from ._json import ChatId, JsonDict
from .errors import bad_request
from .notify import Notifier
from .people import BotIdentity
from .records import ChatState, SentMessage, StoredFile
from .updates import UpdateQueue
from .webhook import RetryPolicy, WebhookDispatcher

_FILE_PREFIX = {
    "document": "BQACAgIAAxkBAA",
    "photo": "AgACAgIAAxkBAA",
    "sticker": "CAACAgIAAxkBAA",
    "voice": "AwACAgIAAxkBAA",
}
_FILE_DIRS = {"document": "documents", "photo": "photos", "sticker": "stickers", "voice": "voice"}
_FILE_EXTENSIONS = {"photo": "jpg", "sticker": "webp", "voice": "oga"}


@dataclass(frozen=True, slots=True)
class StateOptions:
    """Tunables that tests may want to shrink."""

    callback_query_ttl: float = 15.0
    webhook_retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Where update ids start. A server restarted against the same bot database must not
    # reuse ids the bot has already seen (the sandbox starts from the clock).
    first_update_id: int = 1


class ApiState:
    """Shared by the HTTP handlers and the test-facing injection methods."""

    def __init__(self, token: str, bot: BotIdentity, options: StateOptions) -> None:
        self.token = token
        self.bot = bot
        self.options = options
        self.notifier = Notifier()
        self.chats: dict[int, ChatState] = {}
        self.files: dict[str, StoredFile] = {}
        self.callback_queries: dict[str, float] = {}
        self.callback_answers: list[JsonDict] = []
        self.left_chats: set[int] = set()
        self.commands: dict[str, list[JsonDict]] = {}
        self.updates = UpdateQueue(self.notifier, options.first_update_id)
        self.webhook = WebhookDispatcher(self.updates, self.notifier, options.webhook_retry)
        self.poll_generation = 0
        self.closing = False
        self._counter = 0

    def next_serial(self) -> int:
        """A server-wide counter for ids that must be unique (files, callback queries)."""
        self._counter += 1
        return self._counter

    def ensure_chat(self, chat: JsonDict) -> ChatState:
        """Register a chat (or refresh its details) because an update came from it."""
        chat_id = int(chat["id"])
        state = self.chats.get(chat_id)
        if state is None:
            state = self.chats[chat_id] = ChatState(chat=dict(chat))
        else:
            state.chat.update(chat)
        return state

    def find_chat(self, chat_id: ChatId | None) -> ChatState | None:
        """A known chat by id or @username, else None."""
        if isinstance(chat_id, int):
            return self.chats.get(chat_id)
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for state in self.chats.values():
                if state.chat.get("username") == chat_id[1:]:
                    return state
        return None

    def chat(self, chat_id: ChatId | None) -> ChatState:
        """A known chat, or Telegram's 400 for chats that never talked to the bot."""
        if chat_id is None or chat_id == "":
            raise bad_request("chat_id is empty")
        state = self.find_chat(chat_id)
        if state is None:
            raise bad_request("chat not found")
        return state

    def render(self, msg: SentMessage) -> JsonDict:
        """A bot message as Bot API JSON."""
        return msg.to_json(dict(self.chats[msg.chat_id].chat), self.bot.user_json())

    def add_sent(self, chat: ChatState, msg: SentMessage) -> JsonDict:
        """Record a delivered message and wake anyone waiting for it."""
        chat.sent[msg.message_id] = msg
        self.notifier.notify()
        return self.render(msg)

    def new_file(
        self, kind: str, file_name: str | None, mime_type: str | None, content: bytes | None
    ) -> StoredFile:
        """Register a file under fresh, Telegram-looking identifiers."""
        serial = self.next_serial()
        digest = hashlib.sha256(f"{self.bot.bot_id}:{serial}".encode()).hexdigest()
        if file_name and "." in file_name:
            # Sanitised: the name comes from the uploader and ends up in a URL path.
            extension = re.sub(r"[^A-Za-z0-9]", "", file_name.rpartition(".")[2])[:10] or "bin"
        else:
            extension = _FILE_EXTENSIONS.get(kind, "bin")
        stored = StoredFile(
            file_id=f"{_FILE_PREFIX.get(kind, 'BQACAgIAAxkBAA')}{serial:06d}{digest[:24]}",
            file_unique_id=f"AgAD{digest[24:36]}",
            file_path=f"{_FILE_DIRS.get(kind, 'documents')}/file_{serial}.{extension}",
            file_name=file_name,
            mime_type=mime_type,
            content=content,
        )
        self.files[stored.file_id] = stored
        return stored

    def file_by_path(self, path: str) -> StoredFile | None:
        """Lookup for the file download route."""
        for stored in self.files.values():
            if stored.file_path == path:
                return stored
        return None

    def issue_callback_query(self) -> str:
        """A fresh callback query id; answers are only accepted within the TTL."""
        query_id = str(4_000_000_000_000_000 + self.next_serial())
        self.callback_queries[query_id] = time.monotonic()
        return query_id

    def consume_callback_query(self, query_id: str) -> bool:
        """True when the query exists and is fresh; each query can be answered once."""
        issued = self.callback_queries.pop(query_id, None)
        return issued is not None and time.monotonic() - issued <= self.options.callback_query_ttl

    @staticmethod
    def commands_key(scope: object, language_code: object) -> str:
        """Commands are stored per scope and language, as in the Bot API."""
        scope_json = json.dumps(scope or {"type": "default"}, sort_keys=True)
        return f"{scope_json}|{language_code or ''}"
