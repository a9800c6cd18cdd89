"""Free-text answers. The text arrives already encrypted; this layer never sees plain text."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite


@dataclass(frozen=True)
class StoredAnswer:
    dialogue: str
    question: str
    ciphertext: bytes
    created_at: int


class Answers:
    """The answers table."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def add(
        self, pseudonym: str, dialogue: str, question: str, ciphertext: bytes, now: int
    ) -> None:
        await self._conn.execute(
            "INSERT INTO answers (pseudonym, dialogue, question, ciphertext, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (pseudonym, dialogue, question, ciphertext, now),
        )

    async def of(self, pseudonym: str) -> list[StoredAnswer]:
        async with self._conn.execute(
            "SELECT dialogue, question, ciphertext, created_at FROM answers "
            "WHERE pseudonym = ? ORDER BY id",
            (pseudonym,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [StoredAnswer(r[0], r[1], bytes(r[2]), r[3]) for r in rows]
