"""Rotating the text key: new free text is encrypted under a new key, and every stored
encrypted value is re-encrypted under it, after which the old key is forgotten.

The pseudonym key never rotates: pseudonyms are identities (consents, answers and roles are
filed under them), and enrolment and invite codes are stored as keyed hashes of it.

Safe to interrupt and run again at any point:
1. the new key is added to the secrets file as the current one, the old key kept beside it
   (one atomic rename); a rerun that finds an old key carries on instead of adding another;
2. rows are re-encrypted in small transactions; a row already under the new key is left
   alone, so a rerun only does what is left;
3. only when every value reads with the new key alone is the WAL emptied (no page holding an
   old ciphertext stays in it) and the old key removed from the secrets file.

The bot must be stopped meanwhile: a running bot holds the old key in memory, could not read
what was re-encrypted, and would go on writing under a key about to be forgotten.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import InvalidToken

from bot.payload_seal import SEALED
from bot.secrets_file import Secrets, load_secrets, replace_secrets_file
from storage.clock import SystemClock
from storage.database import Database
from storage.staff import AuditLog


@dataclass(frozen=True)
class EncryptedColumn:
    table: str
    key: str  # the table's integer primary key
    column: str
    sealed_json: bool = False  # TEXT: JSON whose "sealed" field is the token (bot/payload_seal.py)


# Every column holding text encrypted with Secrets.encrypt_text. A test checks that every
# BLOB column of the schema is listed here, so a new one cannot be missed by a rotation.
ENCRYPTED_COLUMNS = (
    EncryptedColumn("answers", "id", "ciphertext"),  # free-text answers
    EncryptedColumn("answers", "id", "quote"),  # their scrubbed, quotable copies
    EncryptedColumn("inbox", "seq", "payload"),  # updates received, not yet handled
    EncryptedColumn("outbox", "id", "payload", sealed_json=True),  # messages not yet sent
)
_BATCH = 200  # rows per transaction: the write lock is held briefly


@dataclass
class RotationReport:
    started_new_key: bool = False
    reencrypted: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # "table.column #id", no content
    finished: bool = False


async def rotate_text_key(
    database: str, secrets_path: Path, say: Callable[[str], None] = print
) -> RotationReport:
    """Run (or resume) a rotation; see the module docstring."""
    report = RotationReport()
    keys = load_secrets(str(secrets_path), production=True)
    if not keys.old_text_keys:
        keys = Secrets(keys.pseudonym_key, secrets.token_bytes(32), (keys.text_key,))
        replace_secrets_file(secrets_path, keys)
        report.started_new_key = True
        say("new text key added to the secrets file (the old one kept until the end)")
    else:
        say("carrying on with the rotation under way (the secrets file holds an old key)")
    db = await Database.open(database)
    try:
        for column in ENCRYPTED_COLUMNS:
            done = await _reencrypt(db, keys, column, report)
            report.reencrypted[f"{column.table}.{column.column}"] = done
            say(f"{column.table}.{column.column}: {done} re-encrypted")
        if report.unreadable:
            say(
                f"{len(report.unreadable)} value(s) read with no key; the old key is kept: "
                + ", ".join(report.unreadable[:20])
            )
            return report
        async with db.transaction() as conn:  # an admin's action like any other: audited
            details = {name: str(count) for name, count in report.reencrypted.items()}
            await AuditLog(conn).record(
                "cli", "keys.rotated", "text_key", details, SystemClock().now_ms()
            )
        # Emptied before the old key goes: the WAL may still hold pages with old ciphertext.
        await db.checkpoint()
    finally:
        await db.close()
    replace_secrets_file(secrets_path, Secrets(keys.pseudonym_key, keys.text_key))
    report.finished = True
    say("done: every value is under the new key, and the old key is removed")
    return report


async def _reencrypt(
    db: Database, keys: Secrets, column: EncryptedColumn, report: RotationReport
) -> int:
    """Re-encrypt one column's values not yet under the current key; returns how many."""
    select = (
        f"SELECT {column.key}, {column.column} FROM {column.table} "
        f"WHERE {column.key} > ? AND {column.column} IS NOT NULL ORDER BY {column.key} LIMIT ?"
    )
    update = (
        f"UPDATE {column.table} SET {column.column} = ? "
        f"WHERE {column.key} = ? AND {column.column} = ?"
    )
    after, changed = -1, 0
    while True:
        async with db.transaction() as conn:
            async with conn.execute(select, (after, _BATCH)) as cursor:
                rows = list(await cursor.fetchall())
            for row_id, value in rows:
                sealed = _sealed_json(value) if column.sealed_json else None
                if column.sealed_json and sealed is None:
                    continue  # stored as it is (never sealed): nothing to re-encrypt
                token = sealed[SEALED].encode("ascii") if sealed else bytes(value)
                if keys.under_current_key(token):
                    continue
                try:
                    plain = keys.decrypt_text(token)
                except (InvalidToken, UnicodeDecodeError):
                    report.unreadable.append(f"{column.table}.{column.column} #{row_id}")
                    continue
                token = keys.encrypt_text(plain)
                fresh: bytes | str = token
                if sealed is not None:
                    sealed[SEALED] = token.decode("ascii")
                    fresh = json.dumps(sealed, separators=(",", ":"))
                # Only if unchanged since read (it is: the transaction holds the write lock).
                cursor = await conn.execute(update, (fresh, row_id, value))
                changed += cursor.rowcount
        if len(rows) < _BATCH:
            return changed
        after = int(rows[-1][0])


def _sealed_json(value: object) -> dict[str, str] | None:
    """A sealed payload's JSON, or None for one stored as it is."""
    found = json.loads(str(value))
    if isinstance(found, dict) and isinstance(found.get(SEALED), str):
        return found
    return None
