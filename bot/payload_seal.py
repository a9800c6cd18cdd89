"""Sealing outgoing payloads at rest (storage/database.py, PayloadCodec).

An outbox row can hold a person's own words until it is sent (their /mydata export, a
message relayed to or from staff, a shared phone number), and SQLite keeps old versions of
a row in its WAL for a while even after the row is cleared. So the whole payload is
encrypted with the text key as it is written, and opened as the sender reads it. The
`forget_chat` flag stays outside the seal: SQL reads it to empty a goodbye row once sent.
"""

from __future__ import annotations

import logging

from cryptography.fernet import InvalidToken

from bot.secrets_file import Secrets
from storage import json_text
from storage.database import PayloadCodec

log = logging.getLogger(__name__)

SEALED = "sealed"
UNREADABLE = '{"unreadable":true}'  # the sender gives such a row up after a few tries


def payload_codec(secrets: Secrets) -> tuple[PayloadCodec, PayloadCodec]:
    """(seal, unseal) for Database.seal_payloads."""

    def seal(text: str | None) -> str | None:
        if text is None:
            return None
        sealed: dict[str, object] = {SEALED: secrets.encrypt_text(text).decode("ascii")}
        if json_text.loads(text).get("forget_chat"):
            sealed["forget_chat"] = True
        return json_text.dumps(sealed)

    def unseal(text: str | None) -> str | None:
        if text is None:
            return None
        found = json_text.loads(text)
        token = found.get(SEALED) if isinstance(found, dict) else None
        if not isinstance(token, str):
            return text  # written before sealing, or by a command run without the key
        try:
            return secrets.decrypt_text(token.encode("ascii"))
        except InvalidToken:
            log.error("an outbox message is sealed under a key this bot does not hold")
            return UNREADABLE

    return seal, unseal
