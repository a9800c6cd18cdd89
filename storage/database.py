"""The SQLite database: one connection, durable pragmas, serialised transactions, migrations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

Row = sqlite3.Row

log = logging.getLogger(__name__)

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


# The database file and the files SQLite keeps beside it (which it creates with the
# database's own mode).
_DATABASE_FILES = ("", "-wal", "-shm", "-journal")


def _keep_private(path: str) -> None:
    """Only the bot's own user may read the database: it holds chat ids beside what people
    told us. Under the usual umask (022) SQLite would create it, and its -wal and -shm,
    readable by every user of the machine. A new folder is made private too; a file left
    readable by an older version is made private at the next start."""
    database = Path(path)
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for suffix in _DATABASE_FILES:
        file = Path(f"{path}{suffix}")
        try:
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)
        except FileNotFoundError:
            continue
        except PermissionError:
            log.warning("%s is readable by others and not ours to change: chmod 600 it", file)


class MigrationError(Exception):
    """A migration failed; the database was left at the last good version."""


# The oldest SQLite the schema and the queries run on: STRICT tables (3.37), RETURNING
# (3.35), and up to 32,766 bound values a statement (3.32; a part of a check-in round binds
# 1,400, where older builds allowed 999). Python uses the system's SQLite, and an older one
# failed at the first migration with "near STRICT: syntax error".
MINIMUM_SQLITE = (3, 37, 0)


class SQLiteTooOld(MigrationError):
    """This Python's SQLite cannot hold YouSaid's database."""


_WHAT_TO_DO = (
    "Run the bot from its Docker image (see README.md), or with a Python built against a "
    "newer SQLite."
)


def require_sqlite() -> None:
    """Refuse, before any file is made, an SQLite that could not hold the database."""
    if sqlite3.sqlite_version_info < MINIMUM_SQLITE:
        wanted = ".".join(map(str, MINIMUM_SQLITE))
        raise SQLiteTooOld(
            f"YouSaid needs SQLite {wanted} or newer, and this Python uses SQLite "
            f"{sqlite3.sqlite_version}. {_WHAT_TO_DO}"
        )
    if not _has_json_functions():
        raise SQLiteTooOld(
            f"this Python's SQLite ({sqlite3.sqlite_version}) was built without its JSON "
            f"functions, which YouSaid's queries use. {_WHAT_TO_DO}"
        )


def _has_json_functions() -> bool:
    """json_each() and json_extract() are in the queries; a build may leave them out."""
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("SELECT json_valid('[]')")
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()
    return True


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


class _Connection(aiosqlite.Connection):
    """aiosqlite's connection, which can also run statements on the event loop's own thread.

    aiosqlite sends every statement to its worker thread and wakes the event loop with the
    result: one trip per statement, and on a busy loop each trip waits its turn behind
    everything else that is ready to run. An update's transaction makes about 14 statements
    under the one database lock, so the lock was held for the trips, not the work (the
    inbound benchmark's profile: 7.7 ms per update, of which the statements themselves are a
    few hundred microseconds; bench/FINDINGS.md). While `inline` is set (by
    `Database.transaction(quick=True)` or `read(quick=True)`, inside the lock, and only when
    the worker thread has nothing left to run: see `idle`), statements run at once where they
    are awaited. The rest goes to the thread: COMMIT, which waits for fsync; every rollback;
    the whole of a transaction whose BEGIN found another process writing; bulk steps
    (`in_worker_thread`)."""

    inline = False

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        # check_same_thread=False: the sqlite3 connection is used from the worker thread and,
        # while `inline`, from the event loop's; the Database lock and `idle` keep the two
        # apart.
        super().__init__(
            lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False),
            iter_chunk_size=64,
        )
        self.busy_timeout_ms = busy_timeout_ms
        self._in_thread = 0  # calls given to the worker thread and not yet finished there

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        if self.inline:
            return fn(*args, **kwargs)
        return await self.in_thread(fn, *args, **kwargs)

    def in_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Give `fn` to the worker thread now (as aiosqlite's own _execute does; aiosqlite is
        pinned) and return its future. The call is counted until the thread has finished
        it, not until its future is done: a future is done at once when the coroutine
        awaiting it is cancelled, while the thread may still be running the call."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def run() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody counts
                    loop.call_soon_threadsafe(self._finished_in_thread)

        self._in_thread += 1
        self._tx.put_nowait((future, run))
        return future

    def _finished_in_thread(self) -> None:
        self._in_thread -= 1

    def rollback_in_thread(self) -> asyncio.Future[Any]:
        """Queue a rollback now (after anything already given to the thread)."""
        return self.in_thread(self._conn.rollback)

    def commit_in_thread(self) -> asyncio.Future[Any]:
        """Queue COMMIT now; it fails if no transaction is open (a plain COMMIT would then
        do nothing, and the work it was meant to keep would be reported kept)."""

        def commit() -> None:
            connection = self._conn
            if not connection.in_transaction:
                raise sqlite3.OperationalError("the transaction ended before its commit")
            connection.commit()

        return self.in_thread(commit)

    def undo_savepoint_in_thread(self, name: str) -> asyncio.Future[Any]:
        """Queue `ROLLBACK TO name; RELEASE name` now. The future's result is False when
        the enclosing transaction is gone instead (SQLite ends the whole transaction on some
        errors, e.g. a full disk), after rolling back whatever is left of it."""

        def undo() -> bool:
            connection = self._conn
            if not connection.in_transaction:
                return False
            try:
                connection.execute(f"ROLLBACK TO {name}")
                connection.execute(f"RELEASE {name}")
            except sqlite3.Error:
                connection.rollback()
                return False
            return True

        return self.in_thread(undo)

    def idle(self) -> bool:
        """True when nothing given to the worker thread is still waiting or running."""
        return self._in_thread == 0

    def begin_now(self) -> bool:
        """BEGIN IMMEDIATE on this thread if no other connection is writing; False (nothing
        begun) if one is, so the caller waits for it in the worker thread instead, where
        waiting up to busy_timeout holds up nothing else."""
        connection = self._conn
        connection.execute("PRAGMA busy_timeout = 0")
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                return False
            raise
        finally:
            connection.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        return True

    def checkpoint_now(self) -> tuple[int, int, int]:
        """In the worker thread: one TRUNCATE checkpoint that waits for nobody. Returns
        SQLite's (busy, WAL frames, frames copied); busy is 1 while someone reads an older
        snapshot or another connection writes."""
        connection = self._conn
        connection.execute("PRAGMA busy_timeout = 0")
        try:
            busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            connection.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        return int(busy), int(frames), int(copied)


@contextmanager
def in_worker_thread(conn: aiosqlite.Connection) -> Iterator[None]:
    """Inside a quick transaction, a bulk step (e.g. a whole region's invitations): its
    statements go back to the worker thread, so the event loop keeps serving everyone else
    while they run."""
    inline = isinstance(conn, _Connection) and conn.inline
    if isinstance(conn, _Connection):
        conn.inline = False
    try:
        yield
    finally:
        if isinstance(conn, _Connection):
            conn.inline = inline


_SAVEPOINT = "quick_transaction"


def _read_outcome(future: asyncio.Future[Any]) -> None:
    """Read a future nobody awaits, so a failure is not reported as never retrieved."""
    if not future.cancelled():
        future.exception()


async def _wait_out(awaitable: Awaitable[Any]) -> bool:
    """Await to the end even if cancelled meanwhile; True if a cancel came."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    task.result()
    return cancelled


class _CommitGroup:
    """Quick transactions sharing one SQLite transaction, and how its COMMIT went."""

    def __init__(self) -> None:
        self.committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Read even when every member was cancelled, so a failure is never reported as an
        # exception nobody retrieved.
        self.committed.add_done_callback(_read_outcome)

    def succeeded(self) -> None:
        if not self.committed.done():
            self.committed.set_result(None)

    def failed(self, error: BaseException) -> None:
        if not self.committed.done():
            if not isinstance(error, Exception):  # e.g. cancelled mid-COMMIT
                error = sqlite3.OperationalError("the commit was interrupted")
            self.committed.set_exception(error)


class Database:
    """One writer connection. Every use goes through `transaction()` or `read()`, which take
    one lock, so coroutines never see each other's uncommitted work."""

    def __init__(self, connection: _Connection, path: str) -> None:
        self._connection = connection
        self._lock = asyncio.Lock()
        self.path = path
        # For `snapshot`, worked out now: the working directory could change later.
        self._read_only_uri = (
            "" if path == ":memory:" else f"{Path(path).absolute().as_uri()}?mode=ro"
        )
        # Quick transactions begun but not yet committed (see `transaction`), and the task
        # that will commit them once the coroutines already waiting for the lock had theirs.
        self._group: _CommitGroup | None = None
        self._committer: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def _locked(self, join_group: bool = False) -> AsyncIterator[None]:
        """The one lock. Whoever takes it sees only committed data: an open commit group is
        committed first, unless the taker is a quick transaction joining it."""
        async with self._lock:
            try:
                if not join_group:
                    await self._commit_group()
                yield
            finally:
                if self._group is not None and (self._committer is None or self._committer.done()):
                    # Queued behind everyone waiting now: the quick transactions among them
                    # join the group, then it commits (one fsync for all of them).
                    self._committer = asyncio.create_task(self._commit_when_my_turn())

    async def _commit_when_my_turn(self) -> None:
        try:
            async with self._lock:
                self._committer = None
                await self._commit_group()
        finally:
            self._committer = None

    async def _commit_group(self) -> None:
        """Commit the open group (the lock is held) and tell its members how it went. The
        lock is kept until COMMIT is over, even if this coroutine is cancelled meanwhile:
        what runs next must find the connection committed or rolled back."""
        group, self._group = self._group, None
        if group is None:
            return
        if await _wait_out(self._finish(group)):
            raise asyncio.CancelledError

    async def _finish(self, group: _CommitGroup) -> None:
        try:
            await self._connection.commit_in_thread()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await self._connection.rollback_in_thread()
            group.failed(exc)
        else:
            group.succeeded()

    @classmethod
    async def open(cls, path: str, busy_timeout_ms: int = 10_000) -> Database:
        require_sqlite()
        if path != ":memory:":
            _keep_private(path)
        connection = _Connection(path, int(busy_timeout_ms))
        await connection  # starts its worker thread and connects there
        connection.row_factory = sqlite3.Row
        await connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        for pragma in _PRAGMAS:
            await connection.execute(pragma)
        await _register_payload_functions(connection, _as_is, _as_is)
        return cls(connection, path)

    async def seal_payloads(self, seal: PayloadCodec, unseal: PayloadCodec) -> None:
        """Seal outgoing payloads from now on (see PayloadCodec); rows written before, or
        by a command run without the key, are read as they are."""
        async with self._locked():
            await _register_payload_functions(self._connection, seal, unseal)

    async def close(self) -> None:
        async with self._locked():
            await self._connection.close()
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)

    @asynccontextmanager
    async def transaction(self, quick: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: BEGIN IMMEDIATE (take the write lock before reading), commit
        on success, roll back on any error.

        quick: run the statements on the event loop's thread (see _Connection), for the
        hot path's transactions of a few small indexed statements (an update's handling,
        the inbox, the outbox). Never for a scan (a digest, retention, a whole region):
        while a statement runs inline, nothing else in the bot does. The commit and its
        fsync stay in the worker thread either way, and the transaction is durable when
        this block exits, exactly as without `quick`.

        Group commit: quick transactions that queue for the lock while one runs are
        committed together (each in a SAVEPOINT of one transaction, so a failing one is
        undone alone), with one COMMIT and one fsync for all of them. Each block still exits
        only once its work is committed, and nobody else reads in between: any other user
        of the lock commits the group first. Under a burst this saves the fsync wait that
        otherwise stalls every update in turn (bench/FINDINGS.md). A block cancelled while
        it waits for the group's COMMIT raises CancelledError, but its work is committed
        with the group. Never `executescript` inside one: it COMMITs the whole group."""
        if quick:
            async with self._grouped() as connection:
                yield connection
            return
        async with self._locked():
            try:
                await self._connection.execute("BEGIN IMMEDIATE")
                yield self._connection
                await self._connection.commit()
            except BaseException:
                # Whatever failed (BEGIN, the work, COMMIT) or was cancelled: never leave the one
                # connection mid-transaction. The rollback is given to the connection's thread
                # now, before the lock can pass on (after anything already sent there: a BEGIN
                # whose await was cancelled still runs), and shielded so a second cancel
                # cannot skip it. Outside a transaction it is a no-op.
                await asyncio.shield(self._connection.rollback_in_thread())
                raise

    @asynccontextmanager
    async def _grouped(self) -> AsyncIterator[aiosqlite.Connection]:
        """A quick transaction: a SAVEPOINT in the open commit group (begun here if none
        is), statements inline, and out only once the group has committed."""
        connection = self._connection
        async with self._locked(join_group=True):
            if self._group is None:
                try:
                    # BEGIN here only when the thread is idle (a rollback of a cancelled
                    # transaction may still be running there) and no other process is
                    # writing; else in the thread, where waiting holds up nothing else.
                    if not (connection.idle() and connection.begin_now()):
                        await connection.execute("BEGIN IMMEDIATE")
                except BaseException:
                    await asyncio.shield(connection.rollback_in_thread())
                    raise
                self._group = _CommitGroup()
            group = self._group
            released = False
            try:
                connection.inline = connection.idle()
                try:
                    await connection.execute(f"SAVEPOINT {_SAVEPOINT}")
                    yield connection
                    release = connection.execute(f"RELEASE {_SAVEPOINT}")
                    if connection.inline:
                        await release  # runs at once, on this thread: nothing can cut in
                        released = True
                    else:
                        # In the thread it is waited out, even through a cancel: an undo
                        # queued behind it would find no savepoint and take the whole group.
                        cancelled = await _wait_out(release)
                        released = True
                        if cancelled:
                            raise asyncio.CancelledError
                finally:
                    connection.inline = False
            except BaseException as exc:
                if not released:
                    await self._undo_member(group, exc)
                raise
        # A cancel here ends the wait, not the work: it commits with the group (as a cancel
        # during a COMMIT always could have let it).
        await asyncio.shield(group.committed)

    async def _undo_member(self, group: _CommitGroup, error: BaseException) -> None:
        """Undo a failed member's work alone, queued in the thread before the lock passes
        on. If that cannot be done or its outcome is unknown (the transaction was gone, the
        undo failed, a second cancel came), the whole group is rolled back and its members
        are told, rather than reporting work kept that may not be."""
        connection = self._connection
        try:
            kept = bool(await asyncio.shield(connection.undo_savepoint_in_thread(_SAVEPOINT)))
        except BaseException:
            kept = False
            # Queued behind the undo (the thread runs calls in order); not awaited, as this
            # coroutine may be being cancelled: the next user's statements queue behind it.
            connection.rollback_in_thread().add_done_callback(_read_outcome)
        if not kept and self._group is group:
            self._group = None
            group.failed(
                sqlite3.OperationalError(
                    f"rolled back with a failed transaction ({type(error).__name__})"
                )
            )

    @asynccontextmanager
    async def read(self, quick: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """Read committed data (no transaction of another coroutine can be open meanwhile).
        quick: as for `transaction`, for a few small indexed reads. In WAL mode a read does
        not wait for a writer; it can wait (up to busy_timeout, on the event loop) only
        while another process recovers the WAL or runs a RESTART or TRUNCATE checkpoint."""
        async with self._locked():
            self._connection.inline = quick and self._connection.idle()
            try:
                yield self._connection
            finally:
                self._connection.inline = False

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        """A long read (the weekly digest's figures, seconds at national scale) of committed
        data, consistent from its first statement to its end, on a second, read-only
        connection of its own. It does not take the one lock, so the bot's writes go on
        meanwhile: under `read()` every update would wait for it. Temporary tables may be
        made (in memory) and are gone when it ends; anything else it tries to write fails.
        An in-memory database has no second connection: there it is `read()`."""
        if self.path == ":memory:":
            async with self.read() as conn:
                yield conn
            return
        conn = aiosqlite.connect(self._read_only_uri, uri=True, isolation_level=None)
        await conn
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout = {self._connection.busy_timeout_ms}")
            await conn.execute("PRAGMA temp_store = MEMORY")  # see _PRAGMAS
            await conn.execute("BEGIN")  # one snapshot, from its first read to the end
            yield conn
            if conn.in_transaction:  # an error may have ended it; closing ends it anyway
                await conn.execute("ROLLBACK")
        finally:
            await conn.close()

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
        known = migrations if migrations is not None else bundled_migrations()
        newest = max((m.version for m in known), default=0)
        if current > newest:
            # Older code on a newer schema (an image rolled back after an upgrade) would
            # read and write tables it does not know the shape of.
            raise MigrationError(
                f"the database is at schema version {current}, newer than this code "
                f"({newest}): run the version of YouSaid that last used it"
            )
        for migration in known:
            if migration.version <= current:
                continue
            script = (
                f"BEGIN IMMEDIATE;\n{migration.sql}\n"
                f"PRAGMA user_version = {migration.version};\nCOMMIT;"
            )
            async with self._locked():
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
        secure_delete) leave no old copy behind in the WAL (e.g. after an erasure).

        TRUNCATE cannot finish while anyone reads an older snapshot (this bot's `snapshot`,
        a backup in another process). It is tried without waiting (busy_timeout 0) and waited
        for between tries, outside the lock, a little longer each time: the bot never stops
        for someone else's long read."""
        for attempt in range(40):  # about 40 s of patience in all, none of it in the lock
            async with self._locked():
                busy, _, _ = await self._connection.in_thread(self._connection.checkpoint_now)
            if not busy:
                return
            await asyncio.sleep(0.05 * (attempt + 1))
        raise sqlite3.OperationalError("the WAL could not be emptied (a reader held it)")

    async def integrity_check(self) -> str:
        async with self.read() as conn, conn.execute("PRAGMA integrity_check") as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row else "no answer"
