"""The SQLite database: one connection, durable pragmas, serialised transactions, migrations."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import aiosqlite

Row = sqlite3.Row

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

# Pragmas every connection gets. synchronous=FULL because consents, answers and withdrawals
# must survive a power cut; secure_delete so erased text is overwritten, not left in free pages.
_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA secure_delete = ON",
    # Temporary tables and sorts in memory, not in temporary files: the digest's temporary
    # tables name people (storage/digest_data.py).
    "PRAGMA temp_store = MEMORY",
)


class MigrationError(Exception):
    """A migration failed; the database was left at the last good version."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def bundled_migrations() -> list[Migration]:
    """The numbered SQL files shipped in storage/migrations, in order, checked for gaps."""
    found: list[Migration] = []
    for entry in resources.files("storage.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"migration numbers must run 1, 2, 3...: found {migration.name}")
    return found


# Outgoing messages (outbox.payload) can hold a person's own words: their /mydata export, a
# message relayed between them and staff, a shared phone number. The application may seal
# them (encrypt) as they are written and open them as they are read, through the SQL
# functions seal_payload() and open_payload(), so no such text sits readable in the database
# file or its WAL. Storage never needs the key; without a sealer both functions return the
# text as it is.
PayloadCodec = Callable[[str | None], str | None]


def _as_is(text: str | None) -> str | None:
    return text


async def _register_payload_functions(
    connection: aiosqlite.Connection, seal: PayloadCodec, unseal: PayloadCodec
) -> None:
    await connection.create_function("seal_payload", 1, seal)
    await connection.create_function("open_payload", 1, unseal)


class Database:
    """One writer connection. Every use goes through `transaction()` or `read()`, which take
    one lock, so coroutines never see each other's uncommitted work."""

    def __init__(self, connection: aiosqlite.Connection, path: str) -> None:
        self._connection = connection
        self._lock = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, path: str, busy_timeout_ms: int = 10_000) -> Database:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None)
        connection.row_factory = sqlite3.Row
        await connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        for pragma in _PRAGMAS:
            await connection.execute(pragma)
        await _register_payload_functions(connection, _as_is, _as_is)
        return cls(connection, path)

    async def seal_payloads(self, seal: PayloadCodec, unseal: PayloadCodec) -> None:
        """Seal outgoing payloads from now on (see PayloadCodec); rows written before, or
        by a command run without the key, are read as they are."""
        async with self._lock:
            await _register_payload_functions(self._connection, seal, unseal)

    async def close(self) -> None:
        async with self._lock:
            await self._connection.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: BEGIN IMMEDIATE (take the write lock before reading), commit
        on success, roll back on any error."""
        async with self._lock:
            try:
                await self._connection.execute("BEGIN IMMEDIATE")
                yield self._connection
                await self._connection.commit()
            except BaseException:
                # Whatever failed (BEGIN, the work, COMMIT) or was cancelled: never leave the one
                # connection mid-transaction. The rollback is queued after anything already
                # sent to the connection's thread (a BEGIN whose await was cancelled still
                # runs), and shielded so a second cancel cannot skip it. Outside a
                # transaction it is a no-op.
                await asyncio.shield(self._connection.rollback())
                raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """Read committed data (no transaction of another coroutine can be open meanwhile)."""
        async with self._lock:
            yield self._connection

    async def schema_version(self) -> int:
        async with self.read() as conn, conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def migrate(self, migrations: list[Migration] | None = None) -> list[str]:
        """Apply every migration newer than the database, each in its own transaction.

        Errors are never swallowed: a failed migration rolls back and raises, leaving the
        database at the last version that applied cleanly."""
        applied: list[str] = []
        current = await self.schema_version()
        for migration in migrations if migrations is not None else bundled_migrations():
            if migration.version <= current:
                continue
            script = (
                f"BEGIN IMMEDIATE;\n{migration.sql}\n"
                f"PRAGMA user_version = {migration.version};\nCOMMIT;"
            )
            async with self._lock:
                try:
                    await self._connection.executescript(script)
                except sqlite3.Error as exc:
                    if self._connection.in_transaction:
                        await self._connection.rollback()
                    raise MigrationError(f"{migration.name}: {exc}") from exc
            applied.append(migration.name)
        return applied

    async def checkpoint(self) -> None:
        """Copy the WAL into the database file and empty it, so deleted rows (zeroed there by
        secure_delete) leave no old copy behind in the WAL (e.g. after an erasure)."""
        for attempt in range(20):
            async with self.read() as conn, conn.execute("PRAGMA wal_checkpoint(TRUNCATE)") as c:
                row = await c.fetchone()
            if row is not None and row[0] == 0:  # not blocked by a reader: done
                return
            await asyncio.sleep(0.05 * (attempt + 1))
        raise sqlite3.OperationalError("the WAL could not be emptied (a reader held it)")

    async def integrity_check(self) -> str:
        async with self.read() as conn, conn.execute("PRAGMA integrity_check") as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row else "no answer"
