"""Storage on real SQLite files: migrations from empty, pragmas, the ledger, the queues."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from storage import database as database_module
from storage.database import (
    Database,
    Migration,
    MigrationError,
    SQLiteTooOld,
    bundled_migrations,
    require_sqlite,
)
from storage.erasure import erase_person
from storage.people import (
    ConsentLedger,
    People,
    Sessions,
    count_reachable_with_consent,
    reachable_with_consent,
)
from storage.queues import (
    PRIORITY_BROADCAST,
    PRIORITY_REPLY,
    PRIORITY_SAFEGUARDING,
    Inbox,
    Meta,
    Outbox,
    Schedules,
)

NOW = 1_790_000_000_000


@pytest.fixture()
async def db(tmp_path: Path) -> Database:
    database = await Database.open(str(tmp_path / "test.db"))
    await database.migrate()
    yield database  # type: ignore[misc]
    await database.close()


async def test_every_migration_applies_from_empty(tmp_path: Path) -> None:
    database = await Database.open(str(tmp_path / "fresh.db"))
    applied = await database.migrate()
    assert applied == [m.name for m in bundled_migrations()]
    assert await database.schema_version() == len(applied)
    assert await database.migrate() == []  # idempotent
    assert await database.integrity_check() == "ok"
    await database.close()


async def test_a_broadcast_running_at_the_upgrade_waits_for_its_next_part(
    tmp_path: Path,
) -> None:
    """Migration 0018 names the waiting part of each running broadcast queued in parts,
    so an upgrade during a part's retries does not finish the broadcast early."""
    database = await Database.open(str(tmp_path / "upgrade.db"))
    migrations = bundled_migrations()
    at = next(i for i, m in enumerate(migrations) if m.name.startswith("0018_"))
    await database.migrate(migrations[:at])
    async with database.transaction() as conn:
        for broadcast_id, status in ((1, "running"), (2, "running"), (3, "done")):
            await conn.execute(
                "INSERT INTO broadcasts (id, kind, subject, region, created_by, total, status, "
                "created_at) VALUES (?, 'panel_invitation', 'panel:1', 'london', 's-1', 2, ?, 0)",
                (broadcast_id, status),
            )
        for key, status, payload in (
            ("panel_invite:1:1", "done", '{"panel_id":1,"broadcast":1,"part":1}'),
            ("panel_invite:1:2", "pending", '{"panel_id":1,"broadcast":1,"part":2}'),
            ("broadcast_progress:2:5", "pending", '{"broadcast_id":2}'),
            ("panel_invite:3:1", "pending", '{"panel_id":3,"broadcast":3,"part":1}'),
        ):
            await conn.execute(
                "INSERT INTO schedules (kind, key, due_at, payload, created_at, status) "
                "VALUES (?, ?, 0, ?, 0, ?)",
                (key.split(":")[0], key, payload, status),
            )
    await database.migrate()
    waiting = "SELECT id, next_part_key FROM broadcasts ORDER BY id"
    async with database.read() as conn, conn.execute(waiting) as cursor:
        rows = [tuple(r) for r in await cursor.fetchall()]
    await database.close()
    assert rows == [(1, "panel_invite:1:2"), (2, None), (3, None)]


async def test_invitations_keep_the_message_they_went_out_as(tmp_path: Path) -> None:
    """Migration 0024 fills in, from the outbox rows still kept, which message each
    invitation to a panel still open went out as (not a reminder's, not a panel over);
    after it, a trigger records it as the sender marks an invitation sent."""
    database = await Database.open(str(tmp_path / "upgrade.db"))
    migrations = bundled_migrations()
    at = next(i for i, m in enumerate(migrations) if m.name.startswith("0024_"))
    await database.migrate(migrations[:at])
    async with database.transaction() as conn:
        for pseudonym, chat_id in (("p-1", 501), ("p-2", 502)):
            await conn.execute(
                "INSERT INTO people (pseudonym, chat_id, locale, created_at, updated_at) "
                "VALUES (?, ?, 'en', 0, 0)",
                (pseudonym, chat_id),
            )
        for panel_id, status in ((1, "open"), (2, "over")):
            await conn.execute(
                "INSERT INTO panels (id, region, title, starts_at, place, capacity, "
                "support_offered, organiser, status, created_at, updated_at) "
                "VALUES (?, 'london', 'Housing', 9, 'online', 5, '[]', 's-1', ?, 0, 0)",
                (panel_id, status),
            )
        for broadcast_id, kind, subject in (
            (1, "panel_invitation", "panel:1"),
            (2, "panel_invitation", "panel:2"),
            (3, "panel_reminder", "panel:1"),
        ):
            await conn.execute(
                "INSERT INTO broadcasts (id, kind, subject, region, created_by, total, "
                "created_at) VALUES (?, ?, ?, 'london', 's-1', 1, 0)",
                (broadcast_id, kind, subject),
            )
        for panel_id, pseudonym, token in (
            (1, "p-1", "a" * 16),
            (1, "p-2", "b" * 16),
            (2, "p-1", "c" * 16),
        ):
            await conn.execute(
                "INSERT INTO panel_invitations (panel_id, pseudonym, token, invited_at) "
                "VALUES (?, ?, ?, 0)",
                (panel_id, pseudonym, token),
            )
        for chat_id, broadcast_id, status, message_id in (
            (501, 1, "sent", 11),  # p-1's invitation to panel 1
            (502, 1, "pending", None),  # p-2's, still to go
            (501, 3, "sent", 12),  # a reminder, not an invitation
            (501, 2, "sent", 13),  # panel 2 is over
        ):
            await conn.execute(
                "INSERT INTO outbox (chat_id, priority, kind, payload, status, not_before, "
                "created_at, sent_at, message_id, broadcast_id) "
                "VALUES (?, 2, 'message', NULL, ?, 0, 0, 100, ?, ?)",
                (chat_id, status, message_id, broadcast_id),
            )
    await database.migrate()
    kept = "SELECT panel_id, pseudonym, message_id, sent_at FROM panel_invitations ORDER BY id"
    async with database.read() as conn, conn.execute(kept) as cursor:
        rows = [tuple(r) for r in await cursor.fetchall()]
    assert rows == [(1, "p-1", 11, 100), (1, "p-2", None, None), (2, "p-1", None, None)]

    async with database.transaction() as conn:
        await Outbox(conn).mark_sent_many([(2, 21, 0)], 200)
    async with database.read() as conn, conn.execute(kept) as cursor:
        rows = [tuple(r) for r in await cursor.fetchall()]
    await database.close()
    assert rows[1] == (1, "p-2", 21, 200)


async def test_every_foreign_key_leads_an_index(db: Database) -> None:
    """When a row is deleted (the daily housekeeping, retention, an erasure), SQLite looks
    up the rows that refer to it; without an index that is a scan of the whole referring
    table for every deleted row (broadcasts.progress_outbox_id made a 50,000-row prune take
    27 s under the database lock)."""
    async with db.read() as conn:
        tables = [
            str(r[0])
            for r in await conn.execute_fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        unindexed = []
        for table in tables:
            leading = set()
            for index in await conn.execute_fetchall(f"PRAGMA index_list({table})"):
                columns = await conn.execute_fetchall(f"PRAGMA index_info({index[1]})")
                leading.add(str(columns[0][2]))
            for key in await conn.execute_fetchall(f"PRAGMA foreign_key_list({table})"):
                if str(key[3]) not in leading:
                    unindexed.append(f"{table}.{key[3]} -> {key[2]}")
    assert tables and unindexed == []


async def test_erasing_a_person_finds_each_of_their_rows_through_an_index(db: Database) -> None:
    """An erasure runs under the one database lock: a statement that scans a table grows
    with everyone's data (the outbox's sent rows were scanned: 128 - 144 ms at 2,000,000
    rows). Every statement of `erase_person` is planned as an index search."""
    statements: list[str] = []
    async with db.transaction() as conn:
        await conn.set_trace_callback(statements.append)
        await erase_person(conn, "f" * 32, 730000001, NOW)
        await conn.set_trace_callback(None)
        scans = []
        for sql in statements:
            if sql.split()[0].upper() not in ("SELECT", "INSERT", "UPDATE", "DELETE"):
                continue
            for row in await conn.execute_fetchall("EXPLAIN QUERY PLAN " + sql):
                detail = str(row[3])
                # A SCAN reads a whole table or index (json_each is the statement's own list).
                if detail.startswith("SCAN") and "json_each" not in detail:
                    scans.append(f"{sql.split(' WHERE')[0]}: {detail}")
    assert len(statements) >= 10 and scans == []


async def test_durable_pragmas(db: Database) -> None:
    async with db.read() as conn:
        values = {}
        for pragma in (
            "journal_mode",
            "synchronous",
            "secure_delete",
            "foreign_keys",
            "busy_timeout",
        ):
            async with conn.execute(f"PRAGMA {pragma}") as cursor:
                values[pragma] = (await cursor.fetchone())[0]
    assert values == {
        "journal_mode": "wal",
        "synchronous": 2,
        "secure_delete": 1,
        "foreign_keys": 1,
        "busy_timeout": 10_000,
    }


async def test_a_failing_migration_rolls_back_and_raises(tmp_path: Path) -> None:
    database = await Database.open(str(tmp_path / "broken.db"))
    good = bundled_migrations()
    bad = Migration(
        len(good) + 1, "9999_broken.sql", "CREATE TABLE half_done (x INTEGER);\nTHIS IS NOT SQL;"
    )
    with pytest.raises(MigrationError, match=r"9999_broken\.sql"):
        await database.migrate([*good, bad])
    assert await database.schema_version() == len(good)
    async with (
        database.read() as conn,
        conn.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'") as cursor,
    ):
        assert await cursor.fetchone() is None
    await database.close()


@pytest.mark.parametrize(
    ("version", "text", "refused"),
    [((3, 34, 1), "3.34.1", True), ((3, 36, 9), "3.36.9", True), ((3, 37, 0), "3.37.0", False)],
)
def test_an_sqlite_too_old_for_the_schema_is_refused_with_what_to_do(
    version: tuple[int, int, int],
    text: str,
    refused: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", version)
    monkeypatch.setattr(sqlite3, "sqlite_version", text)
    if not refused:
        require_sqlite()
        return
    with pytest.raises(SQLiteTooOld) as raised:
        require_sqlite()
    assert f"needs SQLite 3.37.0 or newer, and this Python uses SQLite {text}" in str(raised.value)
    assert "Docker image" in str(raised.value)


async def test_an_sqlite_without_json_functions_is_refused_before_a_file_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe itself runs in every other test (each opens a database); here its answer
    is "no", as on a build without JSON."""
    monkeypatch.setattr(database_module, "_has_json_functions", lambda: False)
    with pytest.raises(SQLiteTooOld, match="built without its JSON functions") as raised:
        await Database.open(str(tmp_path / "data" / "yousaid.db"))
    assert "Docker image" in str(raised.value)
    assert not (tmp_path / "data").exists()


async def test_the_database_and_its_side_files_are_readable_by_the_bot_alone(
    tmp_path: Path,
) -> None:
    """Under the usual umask (022) SQLite makes files every user can read; this one holds
    chat ids beside what people told us. A file an older version left readable is made
    private at the next open."""
    path = tmp_path / "data" / "yousaid.db"
    old_umask = os.umask(0o022)
    try:
        db = await Database.open(str(path))
        await db.migrate()
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
        made = {f.name: f.stat().st_mode & 0o777 for f in path.parent.iterdir()}
        await db.close()
        assert made == {"yousaid.db": 0o600, "yousaid.db-wal": 0o600, "yousaid.db-shm": 0o600}
        assert path.parent.stat().st_mode & 0o777 == 0o700

        path.chmod(0o644)
        db = await Database.open(str(path))
        await db.close()
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old_umask)


async def test_consent_ledger_is_append_only_and_current_is_latest(db: Database) -> None:
    async with db.transaction() as conn:
        await People(conn).touch("p-ada", 1001, "en", NOW)
        ledger = ConsentLedger(conn)
        await ledger.record("p-ada", "feedback", True, "v1", NOW)
        await ledger.record("p-ada", "quotes", True, "v1", NOW)
        await ledger.record("p-ada", "feedback", False, "v1", NOW + 1)
        assert await ledger.current("p-ada") == {"feedback": False, "quotes": True}
        assert await ledger.withdraw_all("p-ada", "v1", NOW + 2) == ["quotes"]
        assert len(await ledger.history("p-ada")) == 4
    for statement in ("UPDATE consent_ledger SET granted = 1", "DELETE FROM consent_ledger"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            async with db.transaction() as conn:
                await conn.execute(statement)


async def test_the_count_of_a_broadcasts_recipients_matches_the_list(db: Database) -> None:
    """What staff are told ("going to N people") is what the parts will find: reachable,
    in the region, the latest decision a yes; the organiser left out."""
    async with db.transaction() as conn:
        people, ledger = People(conn), ConsentLedger(conn)
        for n, (who, region, says) in enumerate(
            (
                ("p-ada", "london", [True]),
                ("p-bo", "london", [True, False]),  # withdrew
                ("p-cy", "london", [False, True]),  # changed their mind: yes
                ("p-di", "wales", [True]),  # another region
                ("p-ed", "london", [True]),  # blocked the bot
                ("p-fi", "london", []),  # never asked
                ("s-org", "london", [True]),  # the organiser
            )
        ):
            await people.touch(who, 3000 + n, "en", NOW)
            await people.set_region(who, region, NOW)
            for step, granted in enumerate(says):
                await ledger.record(who, "panel_invitations", granted, "v1", NOW + step)
        await people.set_reachable(3004, False, NOW)
        found = [
            r.pseudonym for r in await reachable_with_consent(conn, "london", "panel_invitations")
        ]
        assert found == ["p-ada", "p-cy", "s-org"]
        assert await count_reachable_with_consent(conn, "london", "panel_invitations") == 3
        assert await count_reachable_with_consent(conn, "london", "panel_invitations", "s-org") == 2
        assert await count_reachable_with_consent(conn, "london", "updates") == 0


async def test_people_touch_makes_reachable_again(db: Database) -> None:
    async with db.transaction() as conn:
        people = People(conn)
        await people.touch("p-bo", 2002, "en", NOW)
        assert await people.set_reachable(2002, False, NOW) == "p-bo"
        assert not (await people.get("p-bo")).reachable  # type: ignore[union-attr]
        await people.touch("p-bo", 2002, "en", NOW + 1)
        assert (await people.get("p-bo")).reachable  # type: ignore[union-attr]
        await Sessions(conn).save("p-bo", "{}", NOW)
        assert await Sessions(conn).load("p-bo") == "{}"


async def test_inbox_recognises_redelivery_and_forgets_payloads(db: Database) -> None:
    async with db.transaction() as conn:
        inbox = Inbox(conn)
        assert await inbox.add(500, b"sealed-500", NOW)
        assert not await inbox.add(500, b"sealed-500", NOW)
        assert await inbox.add(17, b"sealed-17", NOW)  # ids may jump backwards
        assert [p.update_id for p in await inbox.pending()] == [500, 17]
        await inbox.mark_handled(500, NOW)
        assert await inbox.status(500) == "handled"
        assert [p.update_id for p in await inbox.pending()] == [17]
        async with conn.execute("SELECT payload FROM inbox WHERE update_id = 500") as cursor:
            assert (await cursor.fetchone())[0] is None
        assert await inbox.record_failure(17, NOW, give_up_after=2) == 1
        assert await inbox.record_failure(17, NOW, give_up_after=2) is None
        assert await inbox.record_failure(500, NOW, give_up_after=2) is None  # not pending
        assert await inbox.status(17) == "failed"
        assert await inbox.prune(NOW + 1) == 2


async def test_outbox_orders_by_priority_then_age(db: Database) -> None:
    async with db.transaction() as conn:
        outbox = Outbox(conn)
        broadcast = await outbox.enqueue(1, PRIORITY_BROADCAST, "message", {"text": "b"}, NOW)
        reply = await outbox.enqueue(2, PRIORITY_REPLY, "message", {"text": "r"}, NOW)
        urgent = await outbox.enqueue(3, PRIORITY_SAFEGUARDING, "message", {"text": "s"}, NOW)
        assert [m.id for m in await outbox.most_urgent(10, NOW)] == [urgent, reply, broadcast]
        assert [m.id for m in await outbox.most_urgent(10, NOW, [3])] == [reply, broadcast]
        await outbox.retry_later(reply, NOW + 5000, "TimedOut")
        later = await outbox.enqueue(2, PRIORITY_BROADCAST, "message", {"text": "l"}, NOW)
        # chat 2 waits for its retry, so its later message waits too (order kept)
        assert [m.id for m in await outbox.most_urgent(10, NOW)] == [urgent, broadcast]
        assert await outbox.next_retry_time(NOW) == NOW + 5000
        assert [m.id for m in await outbox.most_urgent(10, NOW + 5000)][:3] == [
            urgent,
            reply,
            broadcast,
        ]
        assert later in [m.id for m in await outbox.most_urgent(10, NOW + 5000)]
        await outbox.mark_sent(urgent, NOW, 77)
        assert await outbox.cancel_chat(1, "stop", min_priority=PRIORITY_BROADCAST) == 1
        assert [m.id for m in await outbox.most_urgent(10, NOW + 5000)] == [reply, later]


async def test_a_more_urgent_message_goes_past_one_waiting_for_its_retry(db: Database) -> None:
    """A broadcast met a network fault and waits minutes for its retry: the person's reply
    and the safety signpost go now; their later broadcast waits behind it (order kept)."""
    async with db.transaction() as conn:
        outbox = Outbox(conn)
        stuck = await outbox.enqueue(1, PRIORITY_BROADCAST, "message", {"text": "b"}, NOW)
        await outbox.retry_later(stuck, NOW + 300_000, "NetworkError")
        behind = await outbox.enqueue(1, PRIORITY_BROADCAST, "message", {"text": "l"}, NOW)
        reply = await outbox.enqueue(1, PRIORITY_REPLY, "message", {"text": "r"}, NOW)
        signpost = await outbox.enqueue(1, PRIORITY_SAFEGUARDING, "message", {"text": "s"}, NOW)
        assert [m.id for m in await outbox.most_urgent(10, NOW)] == [signpost, reply]
        await outbox.retry_later(reply, NOW + 60_000, "TimedOut")
        assert [m.id for m in await outbox.most_urgent(10, NOW)] == [signpost]
        assert [m.id for m in await outbox.most_urgent(10, NOW + 300_000)] == [
            signpost,
            reply,
            stuck,
            behind,
        ]


async def test_schedules_are_idempotent_by_key(db: Database) -> None:
    async with db.transaction() as conn:
        schedules = Schedules(conn)
        assert await schedules.add("nudge", "nudge:p-ada:1", NOW + 10, {}, NOW)
        assert not await schedules.add("nudge", "nudge:p-ada:1", NOW + 99, {}, NOW)
        assert await schedules.due(NOW) == []
        (job,) = await schedules.due(NOW + 10)
        await schedules.mark_done(job.id, NOW + 10)
        assert await schedules.due(NOW + 100) == []
        await Meta(conn).set("k", "v")
        assert await Meta(conn).get("k") == "v"


@pytest.mark.parametrize("quick", [False, True])
async def test_a_cancelled_transaction_never_leaves_the_connection_stuck(
    db: Database, quick: bool
) -> None:
    """Cancelled at any point (even while BEGIN is on its way to the connection's thread),
    a transaction rolls back and the next one starts cleanly; a quick one too, whose
    statements run on the event loop (and the next quick one, while the rollback may still
    be running in the thread)."""
    for yields_before_cancel in range(8):

        async def work() -> None:
            async with db.transaction(quick=quick) as conn:
                await Meta(conn).set("half", "done")
                await asyncio.sleep(0.01)

        task = asyncio.create_task(work())
        for _ in range(yields_before_cancel):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async with db.transaction(quick=quick) as conn:
            await Meta(conn).set("after", str(yields_before_cancel))
        async with db.read(quick=quick) as conn:
            assert await Meta(conn).get("half") is None
            assert await Meta(conn).get("after") == str(yields_before_cancel)


async def test_no_statement_runs_inline_while_the_thread_still_runs_a_cancelled_call(
    db: Database,
) -> None:
    """A read cancelled while its statement runs in the worker thread: the statement goes on
    there after the lock has passed on, so the next quick transaction must not use the
    connection from the event loop meanwhile (it runs in the thread, after that call)."""
    started, finished = threading.Event(), threading.Event()

    def slow_statement() -> None:
        started.set()
        time.sleep(0.3)
        finished.set()

    async def reader() -> None:
        async with db.read() as conn:
            await conn._execute(slow_statement)  # type: ignore[attr-defined]

    reading = asyncio.create_task(reader())
    assert await asyncio.to_thread(started.wait, 5)
    reading.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reading
    async with db.transaction(quick=True) as conn:
        # Its BEGIN waited in the thread behind the slow call; inline only after that.
        assert finished.is_set() or not conn.inline  # type: ignore[attr-defined]
        await Meta(conn).set("after", "the slow call")
    await asyncio.sleep(0.4)  # the thread has finished: quick means inline again
    async with db.transaction(quick=True) as conn:
        assert conn.inline  # type: ignore[attr-defined]
    async with db.read(quick=True) as conn:
        assert await Meta(conn).get("after") == "the slow call"


async def test_a_quick_transaction_commits_durably_and_rolls_back_on_error(
    db: Database, tmp_path: Path
) -> None:
    async with db.transaction(quick=True) as conn:
        await Meta(conn).set("kept", "yes")
    with pytest.raises(RuntimeError):
        async with db.transaction(quick=True) as conn:
            await Meta(conn).set("lost", "yes")
            raise RuntimeError("the handler failed")
    # Another connection (another process, in effect) sees what was committed, only that.
    other = sqlite3.connect(tmp_path / "test.db")
    try:
        found = other.execute("SELECT key FROM meta WHERE key IN ('kept', 'lost')").fetchall()
    finally:
        other.close()
    assert found == [("kept",)]


async def test_a_quick_transaction_waits_for_another_writer_without_stopping_the_loop(
    db: Database, tmp_path: Path
) -> None:
    """While another process holds the write lock, a quick transaction's BEGIN waits in the
    worker thread (up to busy_timeout), not on the event loop: everyone else keeps going."""
    other = sqlite3.connect(tmp_path / "test.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def write() -> None:
        async with db.transaction(quick=True) as conn:
            await Meta(conn).set("waited", "yes")

    ticking = asyncio.create_task(ticker())
    writing = asyncio.create_task(write())
    await asyncio.sleep(0.5)
    assert not writing.done()
    assert ticks >= 10  # about 50; none at all if the BEGIN blocked the loop
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(writing, timeout=10)
    ticking.cancel()
    async with db.read(quick=True) as conn:
        assert await Meta(conn).get("waited") == "yes"


def _committed_keys(path: Path) -> set[str]:
    """What another connection (another process, in effect) sees as committed."""
    other = sqlite3.connect(path)
    try:
        return {row[0] for row in other.execute("SELECT key FROM meta")}
    finally:
        other.close()


async def test_quick_transactions_queued_together_share_one_commit(
    db: Database, tmp_path: Path
) -> None:
    """Group commit: transactions that queue while one runs commit with it, one COMMIT
    (one fsync) for all, and each block exits only once its own work is durable."""
    commits = 0
    original_commit = db._connection.commit_in_thread

    def counted_commit() -> asyncio.Future[None]:
        nonlocal commits
        commits += 1
        return original_commit()

    db._connection.commit_in_thread = counted_commit  # type: ignore[method-assign]
    durable_at_exit: dict[str, bool] = {}

    async def write(key: str) -> None:
        async with db.transaction(quick=True) as conn:
            await Meta(conn).set(key, "yes")
            await asyncio.sleep(0)  # the others queue for the lock meanwhile
        durable_at_exit[key] = key in _committed_keys(tmp_path / "test.db")

    keys = [f"k{n}" for n in range(20)]
    await asyncio.gather(*(write(key) for key in keys))
    assert durable_at_exit == dict.fromkeys(keys, True)
    assert 1 <= commits <= 3  # one per group, not one per transaction (20)


async def test_a_failing_transaction_in_a_group_is_undone_alone(
    db: Database, tmp_path: Path
) -> None:
    async def write(key: str, fail: bool) -> None:
        async with db.transaction(quick=True) as conn:
            await Meta(conn).set(key, "yes")
            await asyncio.sleep(0)
            if fail:
                raise RuntimeError("this handler failed")

    outcomes = await asyncio.gather(
        *(write(f"k{n}", fail=n % 3 == 1) for n in range(9)), return_exceptions=True
    )
    failed = {f"k{n}" for n, outcome in enumerate(outcomes) if isinstance(outcome, Exception)}
    assert failed == {"k1", "k4", "k7"}
    assert _committed_keys(tmp_path / "test.db") == {f"k{n}" for n in range(9)} - failed


async def test_a_group_whose_transaction_is_lost_fails_every_member(
    db: Database, tmp_path: Path
) -> None:
    """When SQLite ends the whole transaction (some errors do, e.g. a full disk), every
    member still waiting for the commit is told its work was not kept."""
    kept_order: list[str] = []

    async def write(key: str) -> None:
        async with db.transaction(quick=True) as conn:
            await Meta(conn).set(key, "yes")
            await asyncio.sleep(0)
            if key == "k2":
                await conn.execute("ROLLBACK")  # as SQLite does itself on such an error
                raise sqlite3.OperationalError("database or disk is full")
        kept_order.append(key)

    outcomes = await asyncio.gather(*(write(f"k{n}") for n in range(4)), return_exceptions=True)
    assert all(isinstance(outcome, sqlite3.OperationalError) for outcome in outcomes[:3])
    assert kept_order == ["k3"] and outcomes[3] is None  # the next group
    assert _committed_keys(tmp_path / "test.db") == {"k3"}


async def test_a_reader_never_sees_a_group_before_it_is_committed(
    db: Database, tmp_path: Path
) -> None:
    """Whoever else takes the lock (a read, e.g. the sender choosing what to send) commits
    the open group first: nothing is read, so nothing is sent, before it is durable."""
    seen_durable: list[bool] = []

    async def write(key: str) -> None:
        async with db.transaction(quick=True) as conn:
            await Meta(conn).set(key, "yes")
            await asyncio.sleep(0)

    async def read() -> None:
        await asyncio.sleep(0)
        async with db.read(quick=True) as conn, conn.execute("SELECT key FROM meta") as cursor:
            visible = {row[0] for row in await cursor.fetchall()}
        seen_durable.append(bool(visible) and visible <= _committed_keys(tmp_path / "test.db"))

    await asyncio.gather(write("a"), read(), write("b"), read(), write("c"))
    assert seen_durable == [True, True]


async def test_a_group_lost_while_a_cancel_interrupts_the_undo_is_never_reported_kept(
    db: Database, tmp_path: Path
) -> None:
    """A member whose transaction SQLite ended is cancelled while its undo runs: the undo's
    outcome is unknown, so the group is rolled back and the earlier member is told, rather
    than told its work was kept (a plain COMMIT with no transaction open does nothing)."""
    exited: list[str] = []

    async def first() -> None:
        async with db.transaction(quick=True) as conn:
            await Meta(conn).set("a", "yes")
            await asyncio.sleep(0)
        exited.append("a")

    async def failing() -> None:
        async with db.transaction(quick=True) as conn:
            await Meta(conn).set("b", "yes")
            await conn.execute("ROLLBACK")  # as SQLite does itself on a full disk
            asyncio.get_running_loop().call_soon(failing_task.cancel)  # lands during the undo
            raise sqlite3.OperationalError("database or disk is full")

    async def later() -> None:
        await asyncio.sleep(0)
        async with db.transaction(quick=True) as conn:
            await Meta(conn).set("c", "yes")
        exited.append("c")

    first_task = asyncio.create_task(first())
    failing_task = asyncio.create_task(failing())
    later_task = asyncio.create_task(later())
    outcomes = await asyncio.gather(first_task, failing_task, later_task, return_exceptions=True)
    committed = _committed_keys(tmp_path / "test.db")
    assert "a" not in committed and "b" not in committed
    assert isinstance(outcomes[0], sqlite3.OperationalError)  # told, not "exited normally"
    assert exited == ["c"] and committed == {"c"}


async def test_a_snapshot_reads_committed_data_beside_the_writer_and_stays_consistent(
    db: Database,
) -> None:
    """A long read (the weekly digest) on its own read-only connection: it does not wait for
    the one lock (a `read()` inside the open transaction below would never start), it never
    sees uncommitted work, it reads one moment to its end while writes commit beside it,
    and it may make temporary tables but can write nothing else."""
    async with db.transaction() as conn:
        await Meta(conn).set("before", "1")
    async with db.transaction() as conn:
        await Meta(conn).set("uncommitted", "1")
        async with asyncio.timeout(10), db.snapshot() as snapshot:
            keys = {row[0] for row in await snapshot.execute_fetchall("SELECT key FROM meta")}
            await snapshot.execute("CREATE TEMP TABLE scratch AS SELECT key FROM meta")
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                await snapshot.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
    assert "before" in keys and "uncommitted" not in keys

    async with db.snapshot() as snapshot:
        (first,) = await snapshot.execute_fetchall("SELECT COUNT(*) FROM meta")
        async with db.transaction(quick=True) as conn:
            await Meta(conn).set("meanwhile", "1")
        ((again,),) = await snapshot.execute_fetchall("SELECT COUNT(*) FROM meta")
        assert again == first[0]
    async with db.snapshot() as snapshot:
        assert await snapshot.execute_fetchall("SELECT value FROM meta WHERE key = 'meanwhile'")


@contextlib.asynccontextmanager
async def _a_long_read(db: Database, path: Path, reader: str) -> AsyncIterator[None]:
    """A reader holding one snapshot of `path` until the block ends: this bot's own
    `snapshot`, or a connection in another thread (as a backup in another process)."""
    if reader == "snapshot":
        async with db.snapshot() as snapshot:
            await snapshot.execute_fetchall("SELECT * FROM meta")
            yield
        return
    reading, done = threading.Event(), threading.Event()

    def read() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN")
            other.execute("SELECT * FROM meta").fetchall()
            reading.set()
            done.wait(30)
            other.execute("COMMIT")
        finally:
            other.close()

    thread = threading.Thread(target=read)
    thread.start()
    try:
        await asyncio.to_thread(reading.wait, 10)
        yield
    finally:
        done.set()
        await asyncio.to_thread(thread.join, 10)


@pytest.mark.parametrize("reader", ["snapshot", "other process"])
async def test_a_checkpoint_waits_for_a_long_reader_without_holding_up_the_bot(
    db: Database, tmp_path: Path, reader: str
) -> None:
    """TRUNCATE cannot finish while someone reads an older snapshot (the weekly digest's,
    or a backup in another process). It waits for them outside the lock: meanwhile the
    bot's transactions go on (they would wait for busy_timeout, 10 s, if it waited in the
    lock), and it empties the WAL once the reader is done."""
    async with db.transaction() as conn:
        await Meta(conn).set("before", "1")
    async with _a_long_read(db, tmp_path / "test.db", reader):
        async with db.transaction() as conn:  # newer than what the reader reads
            await Meta(conn).set("after", "1")
        checkpointing = asyncio.create_task(db.checkpoint())
        await asyncio.sleep(0.3)
        assert not checkpointing.done()
        async with asyncio.timeout(5), db.transaction(quick=True) as conn:
            await Meta(conn).set("meanwhile", "1")
    await asyncio.wait_for(checkpointing, 30)
    assert (tmp_path / "test.db-wal").stat().st_size == 0


async def test_update_deliveries_keep_the_message_they_went_out_as(tmp_path: Path) -> None:
    """Migration 0029 fills in, from the outbox rows still kept, which message each delivery
    of an update went out as (not another broadcast's, not one still to go); after it, a
    trigger records it as the sender marks a delivery sent (so a copy can be corrected
    once the update is taken back)."""
    database = await Database.open(str(tmp_path / "upgrade.db"))
    migrations = bundled_migrations()
    at = next(i for i, m in enumerate(migrations) if m.name.startswith("0029_"))
    await database.migrate(migrations[:at])
    async with database.transaction() as conn:
        for pseudonym, chat_id in (("p-1", 501), ("p-2", 502)):
            await conn.execute(
                "INSERT INTO people (pseudonym, chat_id, locale, created_at, updated_at) "
                "VALUES (?, ?, 'en', 0, 0)",
                (pseudonym, chat_id),
            )
        await conn.execute(
            "INSERT INTO updates (id, region, kind, themes, text_en, published_by, "
            "published_at) VALUES (7, 'london', 'changed', '[\"housing\"]', 'x', 's-1', 0)"
        )
        for pseudonym, token in (("p-1", "a" * 16), ("p-2", "b" * 16)):
            await conn.execute(
                "INSERT INTO update_deliveries (update_id, pseudonym, token) VALUES (7, ?, ?)",
                (pseudonym, token),
            )
        for broadcast_id, kind, subject in ((1, "update", "update:7"), (2, "panel_message", "x")):
            await conn.execute(
                "INSERT INTO broadcasts (id, kind, subject, region, created_by, total, "
                "created_at) VALUES (?, ?, ?, 'london', 's-1', 1, 0)",
                (broadcast_id, kind, subject),
            )
        for outbox_id, chat_id, broadcast_id, status, message_id in (
            (1, 501, 1, "sent", 11),  # p-1's copy
            (2, 502, 1, "pending", None),  # p-2's, still to go
            (3, 502, 2, "sent", 12),  # another broadcast's message to p-2
        ):
            await conn.execute(
                "INSERT INTO outbox (id, chat_id, priority, kind, payload, status, not_before, "
                "created_at, sent_at, message_id, broadcast_id) "
                "VALUES (?, ?, 2, 'message', NULL, ?, 0, 0, 100, ?, ?)",
                (outbox_id, chat_id, status, message_id, broadcast_id),
            )
    await database.migrate()
    kept = "SELECT pseudonym, message_id FROM update_deliveries ORDER BY pseudonym"
    async with database.read() as conn, conn.execute(kept) as cursor:
        assert [tuple(r) for r in await cursor.fetchall()] == [("p-1", 11), ("p-2", None)]

    async with database.transaction() as conn:
        await Outbox(conn).mark_sent_many([(2, 21, 0)], 200)
    async with database.read() as conn, conn.execute(kept) as cursor:
        rows = [tuple(r) for r in await cursor.fetchall()]
    await database.close()
    assert rows == [("p-1", 11), ("p-2", 21)]


async def late_record_after_a_reply_is_queued(conn: aiosqlite.Connection, forgotten: int) -> None:
    """A reply to someone else is queued after the row `forgotten` was emptied; then the
    sender's late record of sending that row arrives. The reply stays to be sent, and the
    emptied row keeps nothing of its person (no chat, words or message id)."""
    reply = await Outbox(conn).enqueue(502, 1, "message", {"text": "to staff"}, 1)
    assert reply != forgotten
    await Outbox(conn).mark_sent_many([(forgotten, 77, 0)], 2)
    async with conn.execute(
        "SELECT id, chat_id, status, payload, message_id FROM outbox"
    ) as cursor:
        rows = {int(r[0]): (int(r[1]), str(r[2]), r[3], r[4]) for r in await cursor.fetchall()}
    assert rows[reply][:2] == (502, "pending")
    assert rows[forgotten] == (0, "cancelled", None, None)


async def test_an_erased_person_s_rows_keep_their_ids_so_a_late_sent_record_hits_no_new_row(
    db: Database,
) -> None:
    """The sender records sends in batches, by row id. A person erased just after their
    newest row went out: were the row deleted, the next row queued would take its id
    (SQLite reuses the highest) and the late record would mark it sent, never sent (a reply
    to duty staff was lost so). Emptied instead, it keeps its id and nothing of them."""
    async with db.transaction() as conn:
        await People(conn).touch("p-gone", 501, "en", 0)
        outbox = Outbox(conn)
        last_words = await outbox.enqueue(501, 1, "message", {"text": "-"}, 0)
        await erase_person(conn, "p-gone", 501, 1)
        await late_record_after_a_reply_is_queued(conn, last_words)


@pytest.mark.parametrize("cancelled_by", ["cancel_chat", "cancel_one"])
async def test_a_goodbye_cancelled_while_on_its_way_keeps_its_id_so_its_late_record_hits_no_new_row(
    db: Database, cancelled_by: str
) -> None:
    """The goodbye to an erased person is forgotten once done with, as erasure forgets: by
    emptying its row, not deleting it. Cancelled while the sender had it on its way (the
    person blocked the bot meanwhile), a deleted row's id went to the next row queued, and
    the sender's late record of the goodbye marked that one sent, never sent."""
    async with db.transaction() as conn:
        outbox = Outbox(conn)
        goodbye = await outbox.enqueue(501, 1, "message", {"text": "-", "forget_chat": True}, 0)
        if cancelled_by == "cancel_chat":
            await outbox.cancel_chat(501, "blocked")
        else:
            await outbox.cancel_one(goodbye, "stale")
        await late_record_after_a_reply_is_queued(conn, goodbye)
