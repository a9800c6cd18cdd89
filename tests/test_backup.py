"""Backup while the bot is busy, and restore: `python -m bot backup` taken in the middle of
a broadcast to many invented people holds every row committed before it began and passes
integrity_check; `python -m bot restore` refuses while the bot runs and refuses a damaged
or too-new backup without touching anything, and otherwise puts the backup in place."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.local_api import FakePerson, LocalBotApi
from bot.secrets_file import load_secrets
from bot.settings import PROJECT_ROOT, Settings
from storage.clock import SystemClock
from storage.people import ConsentLedger, People
from tests.harness import (
    ADA,
    BRAN,
    TOKEN,
    Chat,
    Records,
    eventually,
    onboard,
    running_bot,
    settings_for,
)

COHORT = [FakePerson(user_id=750000000 + n, first_name="-") for n in range(600)]
WRITER = FakePerson(user_id=760000001, first_name="Gwen", language_code="en")
ANSWER = "Yarrowick hostel curfew makes evening courses impossible"
NOTICE = "Invented notice for the backup test."
# Tables whose rows only ever grow while a broadcast runs (nothing is deleted meanwhile).
TABLES = ("people", "consent_ledger", "answers", "broadcasts", "outbox", "inbox", "schedules")


@pytest.fixture()
async def busy_api() -> AsyncIterator[LocalBotApi]:
    async with LocalBotApi(TOKEN, "yousaid_test_bot") as server:
        for person in [*COHORT, WRITER]:
            server.add_chat(person)
        yield server


@contextlib.contextmanager
def opened(path: str | Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def rows(path: str | Path) -> dict[str, set[int]]:
    """Every table's row ids, and the ids of the broadcast's messages already sent."""
    with opened(path) as conn:
        found = {t: {int(r[0]) for r in conn.execute(f"SELECT rowid FROM {t}")} for t in TABLES}
        sent = conn.execute(
            "SELECT id FROM outbox WHERE status = 'sent' AND broadcast_id IS NOT NULL"
        )
        found["sent"] = {int(r[0]) for r in sent}
    return found


def env_of(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_PATH": settings.database_path,
        "SECRETS_PATH": settings.secrets_path,
    }


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=PROJECT_ROOT,
        env=env_of(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def delivered(api: LocalBotApi) -> int:
    return sum(
        1
        for c in api.calls("sendMessage")
        if c.outcome == "ok" and str(c.params.get("text", "")) == NOTICE
    )


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_backup_taken_during_a_broadcast_restores_everything_committed_before_it(
    busy_api: LocalBotApi, tmp_path: Path
) -> None:
    settings = settings_for(busy_api, tmp_path, SEND_RATE_PER_SECOND="80")
    out = tmp_path / "backups" / "yousaid-backup.db"
    async with running_bot(busy_api, tmp_path, SEND_RATE_PER_SECOND="80") as runtime:
        gwen = Chat(busy_api, WRITER)
        await onboard(gwen)
        await gwen.say("/feedback")
        await gwen.tap("Start")
        for score in ("Always", "Always", "Always", "Always"):
            await gwen.tap(score)
        await gwen.say(ANSWER)
        now = SystemClock().now_ms()
        async with runtime.db.transaction() as conn:
            for person in COHORT:
                pseudonym = f"p{person.user_id}"
                await People(conn).touch(pseudonym, person.chat_id, "en", now)
                await People(conn).set_region(pseudonym, "wales", now)
                await ConsentLedger(conn).record(pseudonym, "updates", True, "v1", now)
        broadcast = await runtime.broadcasts.start_for_region(
            "update", "update:test", "wales", "updates", "p-staff", lambda _: {"text": NOTICE}
        )
        progress = await runtime.broadcasts.progress(broadcast)
        assert progress is not None and progress.total == len(COHORT)
        async with asyncio.timeout(30):
            while delivered(busy_api) < 50:  # noqa: ASYNC110 - the server's records
                await asyncio.sleep(0.05)

        before = rows(settings.database_path)  # committed before the backup begins
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "backup",
            "--out",
            str(out),
            cwd=PROJECT_ROOT,
            env=env_of(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        during = delivered(busy_api)
        refused = await asyncio.to_thread(cli, settings, "restore", "--from", str(out))
        assert refused.returncode == 1 and "open in another process" in refused.stderr
        async with asyncio.timeout(60):
            while delivered(busy_api) < len(COHORT):  # noqa: ASYNC110 - the server's records
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # the last sends recorded
    assert "useless without its secrets file" in stdout.decode()

    backed_up = rows(out)
    for table, ids in before.items():
        assert ids <= backed_up[table], table  # nothing committed before it is missing
    assert before["sent"] and len(backed_up["sent"]) < len(COHORT)  # taken mid-broadcast
    assert during < len(COHORT)
    with opened(out) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one file
    beside = out.with_name(out.name + ".secrets")
    assert beside.read_bytes() == Path(settings.secrets_path).read_bytes()  # noqa: ASYNC240
    assert (beside.stat().st_mode & 0o777) == 0o600 and (out.stat().st_mode & 0o777) == 0o600
    live = Path(settings.database_path)
    assert len(rows(live)["sent"]) == len(COHORT)  # the broadcast finished after it

    # A damaged backup, and one from a newer YouSaid, are refused; nothing is touched.
    untouched = digest_of(live)
    damaged = tmp_path / "damaged.db"
    shutil.copyfile(out, damaged)
    shutil.copy2(beside, damaged.with_name("damaged.db.secrets"))
    with damaged.open("r+b") as handle:  # a few table pages near the end overwritten
        handle.seek(damaged.stat().st_size - 3 * 4096 + 100)
        handle.write(b"\x07" * 3000)
    result = cli(settings, "restore", "--from", str(damaged))
    assert result.returncode == 1 and "integrity" in result.stderr + result.stdout
    newer = tmp_path / "newer.db"
    shutil.copyfile(out, newer)
    shutil.copy2(beside, newer.with_name("newer.db.secrets"))
    with opened(newer) as conn:
        conn.execute("PRAGMA user_version = 999")
    result = cli(settings, "restore", "--from", str(newer))
    assert result.returncode == 1 and "newer than this code" in result.stderr
    assert digest_of(live) == untouched

    restored = cli(settings, "restore", "--from", str(out))  # stopped cleanly: no --force
    assert restored.returncode == 0, restored.stderr
    after = rows(live)
    assert after == backed_up
    with opened(live) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (ciphertext,) = conn.execute("SELECT ciphertext FROM answers").fetchone()
    keys = load_secrets(settings.secrets_path, production=False)
    assert keys.decrypt_text(bytes(ciphertext)) == ANSWER
    kept = list(tmp_path.glob("yousaid.db.before-restore-*"))  # noqa: ASYNC240
    assert len([k for k in kept if not k.name.endswith(".secrets")]) == 1
    assert not Path(f"{live}-wal").exists()  # noqa: ASYNC240
    assert not list(tmp_path.glob(".yousaid.db.*"))  # noqa: ASYNC240 - no staged copy left


async def test_a_restore_does_not_bring_back_someone_erased_since_the_backup(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Ada used /delete after the backup was taken, then wrote again; restoring it keeps
    what she had said before erased (her tombstone comes with it), and Bran, who did not,
    is restored as he was."""
    settings = settings_for(api, tmp_path)
    out = tmp_path / "backups" / "yousaid-backup.db"
    records = Records(settings)
    async with running_bot(api, tmp_path):
        ada, bran = Chat(api, ADA), Chat(api, BRAN)
        await onboard(ada)
        await onboard(bran)
        made = await asyncio.to_thread(cli, settings, "backup", "--out", str(out))
        assert made.returncode == 0, made.stderr
        await ada.say("/delete")
        message, data = ada.find_button("Yes, delete it all")
        api.press_button(ADA, message.message_id, data)
        ada_is = records.pseudonym(ADA)
        known = "SELECT COUNT(*) FROM people WHERE pseudonym = ?"
        await eventually(lambda: records.query(known, ada_is) == [(0,)])
        # She writes again (the goodbye invites it): known anew, and still erased before.
        await ada.say("hello")
        assert records.query(known, ada_is) == [(1,)]
        # Bran says STOP after the backup: the restore must not turn his no back into yes.
        await bran.say("STOP")
        await eventually(lambda: not any(records.current_consents(BRAN).values()))

    backup_audited = "SELECT actor, target FROM audit_log WHERE action = 'ops.backup'"
    assert records.query(backup_audited) == [("cli", "backup:yousaid-backup.db")]

    restored = cli(settings, "restore", "--from", str(out))
    assert restored.returncode == 0, restored.stderr
    assert "1 person erased since the backup was taken" in restored.stdout
    # The restored audit log says which backup it came from, and that it was restored.
    assert records.query(backup_audited) == [("cli", "backup:yousaid-backup.db")]
    (restore_entry,) = records.query(
        "SELECT actor, target, details FROM audit_log WHERE action = 'ops.restored'"
    )
    kept = next(tmp_path.glob("yousaid.db.before-restore-*[0-9]"))  # noqa: ASYNC240
    assert restore_entry[:2] == ("cli", "database")
    assert json.loads(restore_entry[2]) == {
        "from": "yousaid-backup.db",
        "erased_again": "1",
        "decisions_carried": "3",
        "replaced_kept_as": kept.name,
    }
    assert records.query(known, ada_is) == [(0,)]
    assert records.consents(ADA) == []
    assert records.query("SELECT COUNT(*) FROM erasures WHERE pseudonym = ?", ada_is) == [(1,)]
    assert records.query(known, records.pseudonym(BRAN)) == [(1,)]
    # His four decisions at sign-up (one of them a no), and the three noes since.
    assert len(records.consents(BRAN)) == 7
    assert records.current_consents(BRAN) == dict.fromkeys(
        ("feedback", "panel_invitations", "updates", "quotes"), False
    )
    assert "3 consent decisions made since the backup" in restored.stdout
    with opened(settings.database_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert not list(tmp_path.glob(".yousaid.db.*"))  # noqa: ASYNC240 - no staged copy left
