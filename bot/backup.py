"""Backup and restore of the database, with the secrets file that makes it readable.

A backup is taken with SQLite's online backup API in one step: one read transaction, so the
copy is exactly the database as committed when the backup began, while the bot carries on
writing (WAL readers do not block writers). The copy is checked (integrity_check) before it
is given its final name, and the secrets file is copied beside it: without the keys the
backup cannot be linked to people or decrypted, so a backup without them is useless.

A restore checks the backup (integrity, schema version, that its keys read its text) before
anything is replaced, refuses while the bot is running, keeps the database it replaces, and
replaces it with one atomic rename, so a crash at any moment leaves either the old database
or the restored one, never a mixture. Everyone erased in the database it replaces (by
/delete since the backup was taken) is erased from the restored one before the rename: a
restore must not bring back someone who asked to be forgotten.

Both are audited like any admin's action: a backup in the live database and in the copy
itself (so a restored database says which backup it came from and when that was taken), a
restore in the restored database, whose own audit log stops at the backup.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bot.conversation import BROADCASTS_FOR_PURPOSE
from bot.secrets_file import Secrets, load_secrets, replace_secrets_file, sync_directory
from bot.settings import SettingsError
from storage.answers import Answers
from storage.clock import SystemClock
from storage.database import Database, bundled_migrations
from storage.erasure import erase_person
from storage.people import ConsentLedger
from storage.queues import HEARTBEAT_KEY, Outbox
from storage.staff import AuditLog

# Who the audit log names for backups and restores: the operator at the command line.
OPS_ACTOR = "cli"

_DAY_MS = 86_400_000
# A heartbeat this recent means the bot is (or was a moment ago) running; it beats every 30 s.
LIVE_WITHIN_S = 120
SECRETS_SUFFIX = ".secrets"


class OpsError(Exception):
    """The operation was refused or failed; nothing was replaced. The message says why."""


def secrets_beside(backup: Path) -> Path:
    """Where a backup's secrets file lives: FILE.secrets."""
    return backup.with_name(backup.name + SECRETS_SUFFIX)


# --- is the bot running? ------------------------------------------------------------------


def heartbeat_age_s(database: Path) -> float | None:
    """Seconds since the bot's last heartbeat; None when it stopped cleanly or never ran."""
    if not database.exists():
        return None
    conn = _connect(database)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (HEARTBEAT_KEY,)).fetchone()
    except sqlite3.OperationalError:  # no meta table: never migrated, never ran
        return None
    finally:
        conn.close()
    beat = int(row[0]) if row and str(row[0]).isdigit() else 0
    return None if beat <= 0 else (SystemClock().now_ms() - beat) / 1000


def open_elsewhere(database: Path) -> bool:
    """True when another process has the database open. SQLite deletes the WAL file when the
    last connection closes, so a WAL file still there after we open and close the database
    means someone else holds it. A process killed with kill -9 does not count: our close
    (as the last connection) checkpoints and removes its WAL."""
    if not database.exists():
        return False
    conn = _connect(database)
    conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    conn.close()
    return Path(f"{database}-wal").exists()


def refuse_if_running(database: Path, force: bool, doing: str) -> None:
    """Raise OpsError when the bot looks alive: its database open in another process (never
    overridden), or a heartbeat in the last two minutes (overridden by --force, for a bot
    that was killed and cannot have stopped cleanly)."""
    if open_elsewhere(database):
        raise OpsError(
            f"the database is open in another process (is the bot running?): stop the bot, "
            f"and close anything else using {database.name}, before you {doing}"
        )
    age = heartbeat_age_s(database)
    if age is not None and age < LIVE_WITHIN_S and not force:
        raise OpsError(
            f"the bot reported itself alive {age:.0f} s ago: stop it before you {doing}. "
            "If it was killed rather than stopped, wait 2 minutes or add --force"
        )


# --- backup -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupResult:
    path: Path
    secrets: Path
    pages: int
    version: int
    seconds: float


def backup(database: Path, secrets_path: Path, out: Path) -> BackupResult:
    """Copy the live database to `out` (and its secrets file to `out`.secrets)."""
    if not database.exists():
        raise OpsError(f"no database at {database}")
    if not secrets_path.exists():
        raise OpsError(f"no secrets file at {secrets_path}: a backup without it is useless")
    if out.exists() or secrets_beside(out).exists():
        raise OpsError(f"{out} (or its .secrets file) already exists; it is never overwritten")
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    started = time.monotonic()
    partial = out.with_name(f".{out.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        source = _connect(database)
        target = sqlite3.connect(_private(partial))
        try:
            # pages=-1: everything in one step, inside one read transaction, so the copy is
            # a consistent snapshot however busy the bot is (stepping in chunks would start
            # over after every write of the bot, and might never finish).
            source.backup(target, pages=-1)
            # One self-contained file: no -wal beside the backup.
            target.execute("PRAGMA journal_mode = DELETE").fetchone()
            taken_at = SystemClock().now_ms()
            audit = _backup_audited(out, taken_at)
            _record(target, *audit)
            version, pages, verdict = _inspect(target)
        finally:
            target.close()
            source.close()
        if verdict != "ok":
            raise OpsError(f"the copy failed its integrity check ({verdict}); nothing was kept")
        _fsync(partial)
        os.chmod(partial, 0o600)
        # Keys first: a backup file never exists without its keys beside it.
        _copy_private(secrets_path, secrets_beside(out))
        os.replace(partial, out)
        sync_directory(out.parent)
    finally:
        partial.unlink(missing_ok=True)
    live = _connect(database)
    try:
        _record(live, *audit)
    except sqlite3.OperationalError as exc:  # busy beyond the timeout: the copy is made
        raise OpsError(
            f"the backup was written to {out}, but the live database could not record it in "
            f"its audit log ({exc}); the backup itself records it"
        ) from None
    finally:
        live.close()
    return BackupResult(out, secrets_beside(out), pages, version, time.monotonic() - started)


# --- restore ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreResult:
    version: int
    kept_as: Path | None  # the database that was replaced, kept here
    keys: str  # "unchanged", "installed" (there were none) or "merged" (old key added)
    erased_again: int = 0  # people erased since the backup, erased from it again


def restore(
    source: Path,
    database: Path,
    secrets_path: Path,
    *,
    force: bool = False,
    source_secrets: Path | None = None,
    say: Callable[[str], None] = print,
) -> RestoreResult:
    """Replace the live database with the backup at `source`, after checking it."""
    keys_path = source_secrets or secrets_beside(source)
    if not source.exists():
        raise OpsError(f"no backup at {source}")
    if not keys_path.exists():
        raise OpsError(
            f"no secrets file at {keys_path}: the backup cannot be read without it "
            "(give its place with --secrets)"
        )
    try:
        backup_keys = load_secrets(str(keys_path), production=True)
    except SettingsError as exc:  # about the backup's keys, not SECRETS_PATH
        raise OpsError(f"the backup's secrets file: {str(exc).split(': ', 1)[1]}") from None
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Checked as a private copy beside the live database: the backup file itself is never
    # opened for writing, and the final step is a rename within one file system.
    staged = database.with_name(f".{database.name}.restoring")
    staged.unlink(missing_ok=True)
    try:
        shutil.copyfile(source, _private(staged))
        version = _check_backup(staged, backup_keys)
        say(f"backup checked: integrity ok, schema version {version}, its keys read its text")
        refuse_if_running(database, force, "restore")
        current_keys = (
            load_secrets(str(secrets_path), production=True) if secrets_path.exists() else None
        )
        if current_keys is not None and current_keys.pseudonym_key != backup_keys.pseudonym_key:
            raise OpsError(
                "the backup belongs to another installation (its pseudonym key differs from "
                f"the one in {secrets_path}); move that file away first if you really mean "
                "to replace this installation"
            )
        kept_as = _keep_current(database)
        erased_again, decided_again = asyncio.run(
            _prepare_restored(
                staged,
                _erased_in(database),
                # A day's margin: a decision stamped a little before the copy's latest (a
                # clock stepped back) is still looked at; the ones it holds are skipped.
                _decisions_in(database, since=_latest_decision(staged) - _DAY_MS),
                source.name,
                kept_as,
            )
        )
        if erased_again:
            who = "person" if erased_again == 1 else "people"
            say(f"{erased_again} {who} erased since the backup was taken: erased from it again")
        if decided_again:
            say(
                f"{decided_again} consent decisions made since the backup was taken (a no to "
                "panels, a STOP): carried over"
            )
        if kept_as is not None and current_keys is not None:
            # The kept copy is only readable with today's keys, which a rotation may retire.
            _copy_private(secrets_path, secrets_beside(kept_as))
        # The keys go first, as a superset that reads both the old and the restored data,
        # so a crash between the two steps leaves a database its keys can read.
        merged = _merged(current_keys, backup_keys)
        if merged != current_keys:
            replace_secrets_file(secrets_path, merged)
        _fsync(staged)
        # The old database's WAL must never be replayed over the restored one. We were the
        # last to close it, so it is gone, unless someone opened the database meanwhile.
        if open_elsewhere(database):
            raise OpsError("the database was opened by another process during the restore")
        Path(f"{database}-shm").unlink(missing_ok=True)
        os.replace(staged, database)
        sync_directory(database.parent)
    finally:
        for leftover in (staged, Path(f"{staged}-wal"), Path(f"{staged}-shm")):
            leftover.unlink(missing_ok=True)
    keys = (
        "installed" if current_keys is None else "unchanged" if merged == current_keys else "merged"
    )
    return RestoreResult(version, kept_as, keys, erased_again)


def _erased_in(database: Path) -> dict[str, int]:
    """Everyone erased in `database`, with the time of their latest erasure. Someone who
    wrote again after /delete is here too: what they did before it must not come back."""
    if not database.exists():
        return {}
    conn = _connect(database)
    try:
        found = conn.execute(
            "SELECT pseudonym, MAX(erased_at) FROM erasures GROUP BY pseudonym"
        ).fetchall()
    except sqlite3.OperationalError:  # a database from before erasures existed
        return {}
    finally:
        conn.close()
    return {str(r[0]): int(r[1]) for r in found}


async def _prepare_restored(
    staged: Path,
    erased: dict[str, int],
    decisions: list[tuple[str, str, int, str, int]],
    source_name: str,
    kept_as: Path | None,
) -> tuple[int, int]:
    """Make the copy about to be put in place ready: migrated (as the bot's next start would
    do, so every table erasure knows is there), everyone erased since erased again, every
    consent decision made since carried over, and the restore audited in it. One
    transaction. Returns how many were erased again, and how many decisions carried."""
    db = await Database.open(str(staged))
    try:
        await db.migrate()
        now = SystemClock().now_ms()
        async with db.transaction() as conn:
            count = await _erase_again(conn, erased, now)
            carried = await _decide_again(conn, decisions)
            details = {
                "from": source_name,
                "erased_again": str(count),
                "decisions_carried": str(carried),
            }
            if kept_as is not None:
                details["replaced_kept_as"] = kept_as.name
            await AuditLog(conn).record(OPS_ACTOR, "ops.restored", "database", details, now)
    finally:
        await db.close()
    return count, carried


def _latest_decision(copy: Path) -> int:
    """When the copy's latest consent decision was made (0 when it has none): every
    decision made since the backup is later than that."""
    conn = _connect(copy)
    try:
        row = conn.execute("SELECT MAX(recorded_at) FROM consent_ledger").fetchone()
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()
    return int(row[0]) if row and row[0] is not None else 0


def _decisions_in(database: Path, since: int) -> list[tuple[str, str, int, str, int]]:
    """The consent decisions in `database` made at `since` or later (pseudonym, purpose,
    granted, notice version, when), oldest first: only those can be newer than the copy's
    (at national scale the ledger holds a million rows; a restore reads a few)."""
    if not database.exists():
        return []
    conn = _connect(database)
    try:
        return [
            (str(r[0]), str(r[1]), int(r[2]), str(r[3]), int(r[4]))
            for r in conn.execute(
                "SELECT pseudonym, purpose, granted, notice_version, recorded_at "
                "FROM consent_ledger WHERE recorded_at >= ? ORDER BY id",
                (since,),
            )
        ]
    except sqlite3.OperationalError:  # no ledger: nothing decided
        return []
    finally:
        conn.close()


async def _decide_again(
    conn: aiosqlite.Connection, decisions: list[tuple[str, str, int, str, int]]
) -> int:
    """Add to the restored copy each decision made after its own latest one on the same
    purpose, for everyone it knows: a no given since the backup (to panels, to updates, a
    STOP) must not turn back into a yes. A no to quotes takes their quotes away again, as
    it did; messages the copy still had queued for a purpose now refused are cancelled.
    Returns how many decisions were added."""
    added = 0
    for pseudonym, purpose, granted, version, at in decisions:
        known = await conn.execute_fetchall(
            "SELECT chat_id FROM people WHERE pseudonym = ?", (pseudonym,)
        )
        if not list(known):
            continue  # not in the copy (they came later, or were erased since)
        latest = await conn.execute_fetchall(
            "SELECT MAX(recorded_at) FROM consent_ledger WHERE pseudonym = ? AND purpose = ?",
            (pseudonym, purpose),
        )
        newest = next(iter(latest))[0]
        if newest is not None and int(newest) >= at:
            continue
        await ConsentLedger(conn).record(pseudonym, purpose, bool(granted), version, at)
        added += 1
        if not granted:
            if purpose == "quotes":
                await Answers(conn).forget_quotes(pseudonym)
            chat_id = int(next(iter(known))[0])
            kinds = BROADCASTS_FOR_PURPOSE.get(purpose, ())
            await Outbox(conn).cancel_broadcasts_to(chat_id, kinds, "withdrawn before restore")
    return added


async def _erase_again(conn: aiosqlite.Connection, erased: dict[str, int], now: int) -> int:
    """Erase from the restored copy everyone erased in the database it replaces, unless the
    copy already records that erasure (it was taken after it: what it holds of them is from
    after they came back). Returns how many."""
    count = 0
    for pseudonym, erased_at in erased.items():
        recorded = await conn.execute_fetchall(
            "SELECT 1 FROM erasures WHERE pseudonym = ? AND erased_at >= ?",
            (pseudonym, erased_at),
        )
        if list(recorded):
            continue
        known = await conn.execute_fetchall(
            "SELECT chat_id FROM people WHERE pseudonym = ?", (pseudonym,)
        )
        chat_ids = [int(r[0]) for r in known]
        # No chat id known: no message can be queued to them either.
        await erase_person(conn, pseudonym, chat_ids[0] if chat_ids else 0, now)
        count += 1
    return count


def _check_backup(path: Path, keys: Secrets) -> int:
    try:
        return _checked_version(path, keys)
    except sqlite3.DatabaseError as exc:  # not a database at all, or damaged beyond reading
        raise OpsError(f"the backup fails its integrity check (unreadable: {exc})") from None


def _checked_version(path: Path, keys: Secrets) -> int:
    conn = sqlite3.connect(path)
    try:
        version, _, verdict = _inspect(conn)
        if verdict != "ok":
            raise OpsError(f"the backup fails PRAGMA integrity_check: {verdict}")
        known = len(bundled_migrations())
        if version < 1:
            raise OpsError("the file is not a YouSaid database (schema version 0)")
        if version > known:
            raise OpsError(
                f"the backup is at schema version {version}, newer than this code ({known}): "
                "restore it with the version of YouSaid that made it"
            )
        sample = conn.execute(
            "SELECT ciphertext FROM answers UNION ALL SELECT payload FROM inbox "
            "WHERE payload IS NOT NULL LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    if sample is not None:
        try:
            keys.decrypt_text(bytes(sample[0]))
        except Exception:
            raise OpsError("the secrets file given does not read this backup's text") from None
    return version


def _keep_current(database: Path) -> Path | None:
    """Copy the database about to be replaced (consistently, WAL included) beside it."""
    if not database.exists():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    kept = database.with_name(f"{database.name}.before-restore-{stamp}")
    source, target = _connect(database), sqlite3.connect(_private(kept))
    try:
        source.backup(target, pages=-1)
        target.execute("PRAGMA journal_mode = DELETE").fetchone()
    finally:
        target.close()
        source.close()
    os.chmod(kept, 0o600)
    _fsync(kept)
    return kept


def _merged(current: Secrets | None, restored: Secrets) -> Secrets:
    """Keys that read both: the current text key stays the one new text is written under."""
    if current is None:
        return restored
    known = (current.text_key, *current.old_text_keys)
    extra = tuple(k for k in (restored.text_key, *restored.old_text_keys) if k not in known)
    if not extra:
        return current
    return Secrets(current.pseudonym_key, current.text_key, (*current.old_text_keys, *extra))


def _backup_audited(out: Path, taken_at: int) -> tuple[str, str, dict[str, str], int]:
    """The audit entry of a backup: where it was written (the file's name) and when."""
    return "ops.backup", f"backup:{out.name}", {}, taken_at


def _record(
    conn: sqlite3.Connection, action: str, target: str, details: dict[str, str], now: int
) -> None:
    """One audit entry through a plain sqlite3 connection (backup runs outside the loop)."""
    conn.execute(
        "INSERT INTO audit_log (actor, action, target, details, recorded_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (OPS_ACTOR, action, target, json.dumps(details, sort_keys=True), now),
    )
    conn.commit()


def _inspect(conn: sqlite3.Connection) -> tuple[int, int, str]:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    # The first few problems are enough to say it is damaged (there can be thousands).
    found = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(5)").fetchall()]
    verdict = "; ".join(line for problem in found for line in problem.splitlines()[:5])
    return version, pages, verdict


def _connect(database: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(database, timeout=10)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def _private(path: Path) -> Path:
    """`path` made now as an empty file only its owner can read, so a copy of the database
    (chat ids, pseudonyms) is never readable by others, not even while it is written."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return path


def _copy_private(source: Path, target: Path) -> None:
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(source.read_bytes())
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
